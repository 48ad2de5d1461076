use bytes::Bytes;

use super::*;
use crate::batch::tests::{fix_crc, records, spec};
use crate::batch::Compression;
use crate::compression::test_codecs;

/// Rebuilds an uncompressed batch with its body replaced by `body` and codec bits set,
/// as a Kafka client would produce it.
fn recompress(batch: &[u8], codec: Compression, body: Vec<u8>) -> Vec<u8> {
    let mut out = batch[..BATCH_HEADER_LEN].to_vec();
    out.extend_from_slice(&body);
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    let attributes = i16::from_be_bytes([out[21], out[22]]) | codec.bits();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    fix_crc(&mut out);
    out
}

#[test]
fn uncompressed_round_trip() {
    let recs = records(10, 5);
    let batch = encode_batch(&spec(10), &recs);
    let decoded = decode_batch(&batch).unwrap();
    assert_eq!(decoded.records, recs);
    assert_eq!(decoded.header.records_count, 5);
    assert_eq!(BatchSpec::from_header(&decoded.header), spec(10));
}

#[test]
fn every_codec_decodes() {
    let recs = records(500, 40);
    let plain = encode_batch(&spec(500), &recs);
    let body = &plain[BATCH_HEADER_LEN..];
    let mut cases = vec![];
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        cases.push((codec, test_codecs::compress(codec, body)));
    }
    cases.push((Compression::Snappy, test_codecs::snappy_xerial(body, 64)));
    for (codec, compressed) in cases {
        let batch = recompress(&plain, codec, compressed);
        crate::split_batches(&batch).unwrap();
        let decoded = decode_batch(&batch).unwrap();
        assert_eq!(decoded.header.compression().unwrap(), codec);
        assert_eq!(decoded.records, recs, "{codec:?}");
        // Re-encoding clears the codec bits.
        let again = encode_batch(&BatchSpec::from_header(&decoded.header), &decoded.records);
        assert_eq!(again, plain);
    }
}

#[test]
fn shared_decode_slices_uncompressed_batches_and_decompresses_the_rest() {
    let recs = records(500, 40);
    let plain = encode_batch(&spec(500), &recs);
    let zstd = Bytes::from(recompress(
        &plain,
        Compression::Zstd,
        test_codecs::compress(Compression::Zstd, &plain[BATCH_HEADER_LEN..]),
    ));
    let span = plain.as_ptr() as usize..plain.as_ptr() as usize + plain.len();
    let decoded = decode_batch_shared(&plain).unwrap();
    assert_eq!(decoded.records, recs);
    assert_eq!(decoded.header, decode_batch(&plain).unwrap().header);
    for r in &decoded.records {
        let value = r.value.as_ref().unwrap();
        assert!(
            span.contains(&(value.as_ptr() as usize)),
            "a slice, not a copy"
        );
    }
    assert_eq!(decode_batch_shared(&zstd).unwrap().records, recs);
    let mut corrupt = plain.to_vec();
    corrupt[BATCH_HEADER_LEN + 3] ^= 1;
    assert!(decode_batch_shared(&Bytes::from(corrupt)).is_err());
}

#[test]
fn a_checked_batch_is_decoded_without_its_crc_but_its_length_still_counts() {
    // The last record ends with its value and an empty header count.
    let mut recs = records(500, 40);
    if let Some(last) = recs.last_mut() {
        last.value = Some(Bytes::from(vec![7u8; 100]));
        last.headers.clear();
    }
    let plain = encode_batch(&spec(500), &recs);
    let decoded = decode_checked_batch(&plain).unwrap();
    assert_eq!(decoded.records, recs);
    assert_eq!(decoded.header, decode_batch_shared(&plain).unwrap().header);
    // A flipped value byte is the caller's to have caught: the CRC is not checked again.
    let mut flipped = plain.to_vec();
    let last = flipped.len() - 2;
    flipped[last] ^= 1;
    let flipped = Bytes::from(flipped);
    assert!(decode_batch_shared(&flipped).is_err());
    assert_ne!(decode_checked_batch(&flipped).unwrap().records, recs);
    // Bytes that are not one whole batch are refused all the same.
    assert!(decode_checked_batch(&plain.slice(..plain.len() - 1)).is_err());
    let mut longer = plain.to_vec();
    longer.push(0);
    assert!(decode_checked_batch(&Bytes::from(longer)).is_err());
}

#[test]
fn decompression_is_capped() {
    let recs = vec![Record {
        offset: 0,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(vec![0u8; 1 << 20])),
        headers: vec![],
    }];
    let plain = encode_batch(&spec(0), &recs);
    let body = &plain[BATCH_HEADER_LEN..];
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = recompress(&plain, codec, test_codecs::compress(codec, body));
        assert!(batch.len() < 100_000, "{codec:?} compresses zeros");
        let err = decode_batch_with_limit(&batch, 1 << 19).unwrap_err();
        assert!(
            matches!(err, FormatError::TooLarge { .. }),
            "{codec:?}: {err}"
        );
        assert_eq!(decode_batch(&batch).unwrap().records, recs);
    }
}

#[test]
fn log_append_time_uses_max_timestamp() {
    let mut s = spec(0);
    s.attributes = 0x08;
    let recs = records(0, 3);
    let decoded = decode_batch(&encode_batch(&s, &recs)).unwrap();
    assert!(decoded.header.timestamp_type_log_append());
    assert!(decoded
        .records
        .iter()
        .all(|r| r.timestamp == recs[2].timestamp));
}

#[test]
fn sparse_offsets_and_nulls_round_trip() {
    let recs = vec![
        Record {
            offset: 100,
            timestamp: 5,
            key: None,
            value: None,
            headers: vec![],
        },
        Record {
            offset: 107,
            timestamp: 3,
            key: Some(Bytes::new()),
            value: Some(Bytes::new()),
            headers: vec![("".into(), None), ("é".into(), Some(Bytes::new()))],
        },
        Record {
            offset: 1000,
            timestamp: -1,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        },
    ];
    let batch = encode_batch(&spec(100), &recs);
    let h = crate::parse_header(&batch).unwrap();
    assert_eq!(
        (h.base_timestamp, h.max_timestamp, h.last_offset_delta),
        (5, 5, 900)
    );
    // Kafka requires contiguous offsets on produce, but decode accepts what compaction leaves.
    assert!(crate::validate_batch(&batch).is_err());
    assert_eq!(decode_batch(&batch).unwrap().records, recs);
}

#[test]
fn empty_batch_round_trips() {
    let batch = encode_batch(&spec(9), &[]);
    crate::split_batches(&batch).unwrap();
    let decoded = decode_batch(&batch).unwrap();
    assert!(decoded.records.is_empty());
}

#[test]
fn non_utf8_header_key_is_lossy() {
    let recs = vec![Record {
        offset: 0,
        timestamp: 0,
        key: None,
        value: None,
        headers: vec![("#k".into(), None)],
    }];
    let mut batch = encode_batch(&spec(0), &recs).to_vec();
    let at = batch.windows(2).position(|w| w == b"#k").unwrap();
    batch[at] = 0xff;
    fix_crc(&mut batch);
    let decoded = decode_batch(&batch).unwrap();
    assert_eq!(decoded.records[0].headers[0].0, "\u{fffd}k");
}

#[test]
fn record_level_corruption_is_an_error() {
    let recs = records(0, 2);
    let plain = encode_batch(&spec(0), &recs).to_vec();
    // Trailing garbage inside the body: one record too many.
    let mut extra = plain.clone();
    extra.extend_from_slice(&[0x02, 0x00]);
    let len = (extra.len() - LOG_OVERHEAD) as i32;
    extra[8..12].copy_from_slice(&len.to_be_bytes());
    fix_crc(&mut extra);
    assert!(matches!(
        decode_batch(&extra),
        Err(FormatError::RecordCountMismatch { .. })
    ));
    // A null header key.
    let with_header = encode_batch(&spec(0), &records(0, 1)).to_vec();
    let at = with_header
        .windows(2)
        .position(|w| w == [0x02, b'h'])
        .unwrap();
    let mut bad = with_header.clone();
    bad[at] = 0x01; // varint -1
    bad.remove(at + 1);
    let mut bad = recompress(&bad, Compression::None, bad[BATCH_HEADER_LEN..].to_vec());
    // Record length prefix shrinks by one byte too.
    bad[BATCH_HEADER_LEN] -= 2;
    fix_crc(&mut bad);
    assert!(decode_batch(&bad).is_err());
    // Batch bytes not matching batch length.
    assert!(decode_batch(&plain[..plain.len() - 1]).is_err());
    let mut longer = plain.clone();
    longer.push(0);
    assert!(decode_batch(&longer).is_err());
}
