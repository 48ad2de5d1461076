use bytes::Bytes;

use super::*;
use crate::records::{encode_batch, BatchSpec, Record};

pub(crate) fn spec(base_offset: i64) -> BatchSpec {
    BatchSpec {
        base_offset,
        partition_leader_epoch: 7,
        attributes: 0,
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 11,
    }
}

pub(crate) fn records(base_offset: i64, n: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: base_offset + i,
            timestamp: 1_700_000_000_000 + i * 10,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; i as usize])),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        })
        .collect()
}

pub(crate) fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_i32(batch: &mut [u8], at: usize, v: i32) {
    batch[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn header_fields_parse() {
    let batch = encode_batch(&spec(100), &records(100, 3));
    let h = parse_header(&batch).unwrap();
    assert_eq!(h.base_offset, 100);
    assert_eq!(h.batch_length as usize + LOG_OVERHEAD, batch.len());
    assert_eq!(h.partition_leader_epoch, 7);
    assert_eq!(h.magic, 2);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.base_timestamp, 1_700_000_000_000);
    assert_eq!(h.max_timestamp, 1_700_000_000_020);
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 3, 11)
    );
    assert_eq!(h.records_count, 3);
    assert_eq!(h.compression().unwrap(), Compression::None);
    assert!(!h.is_transactional() && !h.is_control() && !h.timestamp_type_log_append());
    assert_eq!(h.last_offset(), 102);
}

#[test]
fn attribute_flags() {
    let mut s = spec(0);
    s.attributes = 0x08 | 0x10 | 0x20;
    let h = parse_header(&encode_batch(&s, &records(0, 1))).unwrap();
    assert!(h.is_transactional() && h.is_control() && h.timestamp_type_log_append());
    for (bits, codec) in [
        (1, Compression::Gzip),
        (2, Compression::Snappy),
        (3, Compression::Lz4),
        (4, Compression::Zstd),
    ] {
        assert_eq!(Compression::from_attributes(bits | 0x10).unwrap(), codec);
        assert_eq!(codec.bits(), bits);
    }
    for bits in 5..8 {
        assert!(Compression::from_attributes(bits)
            .unwrap_err()
            .is_unsupported());
    }
}

#[test]
fn splits_concatenated_batches() {
    let a = encode_batch(&spec(0), &records(0, 2));
    let b = encode_batch(&spec(2), &records(2, 5));
    let c = encode_batch(&spec(7), &[]);
    let all = [a.as_ref(), b.as_ref(), c.as_ref()].concat();
    let ranges = split_batches(&all).unwrap();
    assert_eq!(
        ranges,
        vec![
            0..a.len(),
            a.len()..a.len() + b.len(),
            a.len() + b.len()..all.len()
        ]
    );
    assert!(split_batches(&[]).unwrap().is_empty());
}

#[test]
fn corrupt_crc_rejected() {
    let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    let err = split_batches(&batch).unwrap_err();
    assert!(matches!(err, FormatError::CrcMismatch { .. }), "{err}");
    assert!(err.is_corrupt());
    // The CRC field itself damaged.
    let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
    batch[CRC_AT] ^= 0xff;
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::CrcMismatch { .. })
    ));
}

#[test]
fn wrong_record_count_rejected() {
    for (count, last_delta) in [(2, 1), (4, 3)] {
        let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
        put_i32(&mut batch, 57, count);
        put_i32(&mut batch, 23, last_delta);
        fix_crc(&mut batch);
        let err = split_batches(&batch).unwrap_err();
        assert!(
            matches!(err, FormatError::RecordCountMismatch { .. }),
            "{err}"
        );
        assert!(err.is_corrupt());
    }
}

#[test]
fn last_offset_delta_must_match_count() {
    let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
    put_i32(&mut batch, 23, 5);
    fix_crc(&mut batch);
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::Corrupt(_))
    ));
    let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
    put_i32(&mut batch, 57, -1);
    fix_crc(&mut batch);
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::Corrupt(_))
    ));
}

#[test]
fn record_length_overrunning_batch_rejected() {
    let mut batch = encode_batch(&spec(0), &records(0, 1)).to_vec();
    // The first record's length prefix (one byte varint) now claims 63 bytes.
    batch[BATCH_HEADER_LEN] = 0x7e;
    fix_crc(&mut batch);
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::Corrupt(_))
    ));
}

#[test]
fn truncated_input_rejected() {
    let a = encode_batch(&spec(0), &records(0, 2));
    let b = encode_batch(&spec(2), &records(2, 2));
    let all = [a.as_ref(), b.as_ref()].concat();
    for cut in [1, 5, 11, 12, 30, b.len() - 1] {
        let err = split_batches(&all[..all.len() - cut]).unwrap_err();
        assert!(
            matches!(err, FormatError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    assert!(parse_header(&a[..40]).is_err());
    assert!(parse_header(&a[..10]).is_err());
}

#[test]
fn batch_length_shorter_than_header_rejected() {
    let mut batch = encode_batch(&spec(0), &records(0, 1)).to_vec();
    put_i32(&mut batch, 8, 20);
    assert!(matches!(
        split_batches(&batch[..32]),
        Err(FormatError::Truncated { .. } | FormatError::Corrupt(_))
    ));
    put_i32(&mut batch, 8, -5);
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::Corrupt(_))
    ));
}

/// A legacy (v0/v1) message set entry: offset, size, crc, magic, attributes, ...
fn legacy_message(magic: u8) -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend_from_slice(&0i64.to_be_bytes());
    let body_len: i32 = if magic == 0 { 14 } else { 22 };
    msg.extend_from_slice(&body_len.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes()); // crc (not checked: magic decides first)
    msg.push(magic);
    msg.push(0); // attributes
    if magic == 1 {
        msg.extend_from_slice(&0i64.to_be_bytes()); // timestamp
    }
    msg.extend_from_slice(&(-1i32).to_be_bytes()); // null key
    msg.extend_from_slice(&0i32.to_be_bytes()); // empty value
    msg
}

#[test]
fn old_magic_rejected() {
    for magic in [0u8, 1] {
        let msg = legacy_message(magic);
        let err = split_batches(&msg).unwrap_err();
        assert!(
            matches!(err, FormatError::UnsupportedMagic(m) if m == magic as i8),
            "{err}"
        );
        assert!(err.is_unsupported() && !err.is_corrupt());
    }
    let mut batch = encode_batch(&spec(0), &records(0, 1)).to_vec();
    batch[MAGIC_AT] = 3;
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::UnsupportedMagic(3))
    ));
}

#[test]
fn unknown_codec_rejected() {
    let mut batch = encode_batch(&spec(0), &records(0, 1)).to_vec();
    batch[ATTRIBUTES_AT + 1] |= 0x06;
    fix_crc(&mut batch);
    assert!(matches!(
        split_batches(&batch),
        Err(FormatError::UnsupportedCompression(6))
    ));
}

#[test]
fn compressed_body_not_inflated_on_hot_path() {
    // A gzip-flagged batch whose body is not gzip passes the cheap checks.
    let mut batch = encode_batch(&spec(0), &records(0, 2)).to_vec();
    batch[ATTRIBUTES_AT + 1] |= 0x01;
    fix_crc(&mut batch);
    assert!(split_batches(&batch).is_ok());
    assert!(crate::decode_batch(&batch).is_err());
}

#[test]
fn rewrites_keep_crc_valid() {
    let mut batch = encode_batch(&spec(0), &records(0, 3)).to_vec();
    set_base_offset(&mut batch, 1_000_000);
    set_partition_leader_epoch(&mut batch, 99);
    let h = validate_batch(&batch).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1_000_000, 99));
    let decoded = crate::decode_batch(&batch).unwrap();
    assert_eq!(decoded.records[2].offset, 1_000_002);
}
