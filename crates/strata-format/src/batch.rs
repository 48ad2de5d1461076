//! Record batch v2 (magic 2) on the produce hot path: read the fixed header, split a
//! produce request's records field into batches and validate each one (size, magic, CRC,
//! record count) without decoding records, and patch the fields a leader rewrites.
//!
//! Layout of the 61-byte header (big-endian):
//! `baseOffset i64 @0 | batchLength i32 @8 | partitionLeaderEpoch i32 @12 | magic i8 @16 |
//! crc u32 @17 | attributes i16 @21 | lastOffsetDelta i32 @23 | baseTimestamp i64 @27 |
//! maxTimestamp i64 @35 | producerId i64 @43 | producerEpoch i16 @51 | baseSequence i32 @53 |
//! recordsCount i32 @57`, then the records. The CRC covers bytes 21.. to the batch end.

use std::ops::Range;

use crate::varint::read_varint;
use crate::FormatError;

/// Length of the fixed v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the bytes of a batch not counted by batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format Strata accepts.
pub const MAGIC_V2: i8 = 2;

pub(crate) const PARTITION_LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
pub(crate) const ATTRIBUTES_AT: usize = 21;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec of a batch, from attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Reads the codec from batch attributes; codecs 5-7 are not defined by Kafka.
    pub fn from_attributes(attributes: i16) -> Result<Self, FormatError> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(FormatError::UnsupportedCompression(other)),
        }
    }

    /// The attribute bits of this codec.
    pub fn bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// Clears the codec bits of batch attributes (re-encoded batches are uncompressed).
pub fn without_compression(attributes: i16) -> i16 {
    attributes & !COMPRESSION_MASK
}

/// The fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// The codec from attribute bits 0-2; an error for the undefined codecs 5-7.
    pub fn compression(&self) -> Result<Compression, FormatError> {
        Compression::from_attributes(self.attributes)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the broker's append time (max_timestamp) replaces every record's timestamp.
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Offset of the batch's last record (base_offset + last_offset_delta), saturating.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Total size of the batch in bytes, including the 12 bytes before batchLength counts.
    pub fn total_len(&self) -> Option<usize> {
        usize::try_from(self.batch_length)
            .ok()?
            .checked_add(LOG_OVERHEAD)
    }
}

fn be<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// Parses the fixed header of a v2 batch from the start of `buf`. Magic is checked first,
/// since legacy message sets keep it at the same position but are shorter.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, FormatError> {
    if buf.len() <= MAGIC_AT {
        return Err(FormatError::Truncated {
            needed: MAGIC_AT + 1,
            available: buf.len(),
        });
    }
    let magic = buf[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(FormatError::UnsupportedMagic(magic));
    }
    if buf.len() < BATCH_HEADER_LEN {
        return Err(FormatError::Truncated {
            needed: BATCH_HEADER_LEN,
            available: buf.len(),
        });
    }
    Ok(BatchHeader {
        base_offset: i64::from_be_bytes(be(buf, 0)),
        batch_length: i32::from_be_bytes(be(buf, 8)),
        partition_leader_epoch: i32::from_be_bytes(be(buf, PARTITION_LEADER_EPOCH_AT)),
        magic,
        crc: u32::from_be_bytes(be(buf, CRC_AT)),
        attributes: i16::from_be_bytes(be(buf, ATTRIBUTES_AT)),
        last_offset_delta: i32::from_be_bytes(be(buf, 23)),
        base_timestamp: i64::from_be_bytes(be(buf, 27)),
        max_timestamp: i64::from_be_bytes(be(buf, 35)),
        producer_id: i64::from_be_bytes(be(buf, 43)),
        producer_epoch: i16::from_be_bytes(be(buf, 51)),
        base_sequence: i32::from_be_bytes(be(buf, 53)),
        records_count: i32::from_be_bytes(be(buf, 57)),
    })
}

/// Splits the records field of a produce request into its batches and validates each one
/// (see [`validate_batch`]). Returns the byte range of every batch, in order. A trailing
/// partial batch is an error: a producer never sends one.
pub fn split_batches(records: &[u8]) -> Result<Vec<Range<usize>>, FormatError> {
    let mut ranges = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err(FormatError::Truncated {
                needed: LOG_OVERHEAD,
                available: rest.len(),
            });
        }
        let batch_length = i32::from_be_bytes(be(rest, 8));
        let total = usize::try_from(batch_length)
            .ok()
            .and_then(|len| len.checked_add(LOG_OVERHEAD))
            .ok_or_else(|| FormatError::corrupt(format!("negative batch length {batch_length}")))?;
        if total > rest.len() {
            return Err(FormatError::Truncated {
                needed: total,
                available: rest.len(),
            });
        }
        validate_batch(&rest[..total])?;
        ranges.push(pos..pos + total);
        pos += total;
    }
    Ok(ranges)
}

/// Parses the header of one complete batch and checks that its length matches the bytes
/// given and that the CRC-32C holds: what every reader of a whole batch checks first.
pub(crate) fn check_length_and_crc(batch: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = check_length(batch)?;
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    if computed != header.crc {
        return Err(FormatError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Parses the header of one complete batch and checks that its length matches the bytes
/// given.
pub(crate) fn check_length(batch: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = parse_header(batch)?;
    let total = header
        .total_len()
        .ok_or_else(|| FormatError::corrupt("negative batch length"))?;
    if total < BATCH_HEADER_LEN {
        return Err(FormatError::corrupt(format!(
            "batch length {} shorter than the header",
            header.batch_length
        )));
    }
    if total != batch.len() {
        return Err(FormatError::corrupt(format!(
            "batch length {} does not match {} bytes given",
            header.batch_length,
            batch.len()
        )));
    }
    Ok(header)
}

/// Validates one complete batch (exactly `batchLength + 12` bytes): magic, CRC-32C, record
/// count against lastOffsetDelta, and for uncompressed batches that the records' length
/// prefixes tile the body exactly `recordsCount` times. Compressed bodies are not inflated.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, FormatError> {
    let header = check_length_and_crc(batch)?;
    if header.records_count < 0 {
        return Err(FormatError::corrupt(format!(
            "negative record count {}",
            header.records_count
        )));
    }
    if header.records_count > 0 && header.last_offset_delta != header.records_count - 1 {
        return Err(FormatError::corrupt(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.compression()? == Compression::None {
        let found = count_records(&batch[BATCH_HEADER_LEN..], header.records_count)?;
        if found != i64::from(header.records_count) {
            return Err(FormatError::RecordCountMismatch {
                expected: header.records_count,
                found,
            });
        }
    }
    Ok(header)
}

/// Walks length-prefixed records, stopping one past `expected` so a huge body costs
/// no more than the count it claims. Every record must fit inside the body.
fn count_records(body: &[u8], expected: i32) -> Result<i64, FormatError> {
    let mut pos = 0usize;
    let mut found: i64 = 0;
    while pos < body.len() && found <= i64::from(expected) {
        let len = read_varint(body, &mut pos)?;
        let len = usize::try_from(len)
            .map_err(|_| FormatError::corrupt(format!("negative record length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| FormatError::corrupt("record length exceeds the batch"))?;
        pos = end;
        found += 1;
    }
    Ok(found)
}

/// Rewrites the base offset (bytes 0..8), which the CRC does not cover.
/// The caller passes a batch already validated, so it is at least a header long.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch (bytes 12..16), which the CRC does not cover.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a validated batch with the broker's append time, as Kafka does for
/// topics with `message.timestamp.type=LogAppendTime`: sets the timestamp-type
/// attribute and the max timestamp, then recomputes the CRC they fall under.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    const MAX_TIMESTAMP_AT: usize = 35;
    let attrs = i16::from_be_bytes(be(batch, ATTRIBUTES_AT)) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod log_append_time_tests {
    use super::*;
    use crate::records::{decode_batch, encode_batch, BatchSpec, Record};

    #[test]
    fn log_append_time_keeps_the_batch_valid_and_sets_every_timestamp() {
        let spec = BatchSpec {
            base_offset: 0,
            partition_leader_epoch: 0,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                offset: i,
                timestamp: 1000 + i,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: vec![],
            })
            .collect();
        let mut b = encode_batch(&spec, &records).to_vec();
        set_log_append_time(&mut b, 99_999);
        let h = validate_batch(&b).expect("crc still valid");
        assert!(h.timestamp_type_log_append());
        let d = decode_batch(&b).unwrap();
        assert!(d.records.iter().all(|r| r.timestamp == 99_999));
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
pub(crate) mod tests;
