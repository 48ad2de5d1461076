//! Full decode of v2 record batches (any codec) into records, and encode of records into
//! an uncompressed v2 batch. Used when sealing segments and when serving them, never on
//! the produce hot path.

use bytes::Bytes;

use crate::batch::{
    check_length, check_length_and_crc, without_compression, BatchHeader, Compression,
    ATTRIBUTES_AT, BATCH_HEADER_LEN, CRC_AT, LOG_OVERHEAD, MAGIC_V2,
};
use crate::compression::{decompress, MAX_DECOMPRESSED_LEN};
use crate::varint::{
    read_varint, read_varlong, varint_len, varlong_len, write_varint, write_varlong,
};
use crate::FormatError;

/// One record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys are strings in Kafka; non-UTF-8 keys are converted lossily.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A batch's header together with all its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<Record>,
}

/// The batch-level fields [`encode_batch`] needs besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpec {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    /// Batch attributes; the compression bits are ignored, the output is uncompressed.
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchSpec {
    /// The spec that re-encodes a batch with the same batch-level fields.
    pub fn from_header(header: &BatchHeader) -> Self {
        BatchSpec {
            base_offset: header.base_offset,
            partition_leader_epoch: header.partition_leader_epoch,
            attributes: without_compression(header.attributes),
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
        }
    }

    /// A batch as a producer without idempotence sends it: base offset 0, nothing
    /// assigned by a broker or a producer id yet.
    pub fn unassigned() -> Self {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Smallest possible encoded record: length, attributes, timestamp delta, offset delta,
/// key length, value length, header count, one byte each. Bounds pre-allocation.
const MIN_RECORD_LEN: usize = 7;

/// Decodes one complete batch (exactly `batchLength + 12` bytes): checks magic and CRC,
/// decompresses the body (capped at [`MAX_DECOMPRESSED_LEN`]) and decodes every record.
/// Unlike [`crate::validate_batch`], lastOffsetDelta is not required to equal count - 1:
/// batches read back from storage may have offset gaps (compaction).
pub fn decode_batch(batch: &[u8]) -> Result<DecodedBatch, FormatError> {
    decode_batch_with_limit(batch, MAX_DECOMPRESSED_LEN)
}

/// [`decode_batch`] with a caller-chosen cap on the decompressed body size.
pub fn decode_batch_with_limit(batch: &[u8], limit: usize) -> Result<DecodedBatch, FormatError> {
    let header = check_length_and_crc(batch)?;
    let body = Bytes::from(decompress(
        header.compression()?,
        &batch[BATCH_HEADER_LEN..],
        limit,
    )?);
    decode_records(header, body)
}

/// [`decode_batch`] of a batch held in [`Bytes`]: the keys, values and headers of an
/// uncompressed batch are slices of `batch` rather than of a copy of its body.
pub fn decode_batch_shared(batch: &Bytes) -> Result<DecodedBatch, FormatError> {
    decode_shared(check_length_and_crc(batch)?, batch)
}

/// [`decode_batch_shared`] of a batch whose CRC-32C was checked when it entered the log
/// ([`crate::split_batches`] checks every batch of a produce request and of a WAL object
/// read back): its length is checked again, its CRC is not. A seal spent 9% of its time
/// checking CRCs of batches the broker had checked already.
pub fn decode_checked_batch(batch: &Bytes) -> Result<DecodedBatch, FormatError> {
    decode_shared(check_length(batch)?, batch)
}

fn decode_shared(header: BatchHeader, batch: &Bytes) -> Result<DecodedBatch, FormatError> {
    let body = match header.compression()? {
        Compression::None if batch.len() - BATCH_HEADER_LEN <= MAX_DECOMPRESSED_LEN => {
            batch.slice(BATCH_HEADER_LEN..)
        }
        codec => Bytes::from(decompress(
            codec,
            &batch[BATCH_HEADER_LEN..],
            MAX_DECOMPRESSED_LEN,
        )?),
    };
    decode_records(header, body)
}

/// Decodes the records of a batch whose (decompressed) body is `body`.
fn decode_records(header: BatchHeader, body: Bytes) -> Result<DecodedBatch, FormatError> {
    let expected = usize::try_from(header.records_count).map_err(|_| {
        FormatError::corrupt(format!("negative record count {}", header.records_count))
    })?;

    let mut records = Vec::with_capacity(expected.min(body.len() / MIN_RECORD_LEN));
    let mut pos = 0usize;
    while pos < body.len() {
        if records.len() == expected {
            return Err(FormatError::RecordCountMismatch {
                expected: header.records_count,
                found: expected as i64 + 1,
            });
        }
        let len = read_varint(&body, &mut pos)?;
        let len = usize::try_from(len)
            .map_err(|_| FormatError::corrupt(format!("negative record length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| FormatError::corrupt("record length exceeds the batch"))?;
        records.push(decode_record(&header, &body.slice(pos..end))?);
        pos = end;
    }
    if records.len() != expected {
        return Err(FormatError::RecordCountMismatch {
            expected: header.records_count,
            found: records.len() as i64,
        });
    }
    Ok(DecodedBatch { header, records })
}

/// Decodes one record's fields; `rec` is exactly the bytes its length prefix announced.
fn decode_record(header: &BatchHeader, rec: &Bytes) -> Result<Record, FormatError> {
    let mut pos = 0usize;
    let _attributes = take(rec, &mut pos, 1)?;
    let timestamp_delta = read_varlong(rec, &mut pos)?;
    let offset_delta = read_varint(rec, &mut pos)?;
    let offset = header
        .base_offset
        .checked_add(i64::from(offset_delta))
        .ok_or_else(|| FormatError::corrupt("record offset overflows"))?;
    let timestamp = if header.timestamp_type_log_append() {
        header.max_timestamp
    } else {
        header
            .base_timestamp
            .checked_add(timestamp_delta)
            .ok_or_else(|| FormatError::corrupt("record timestamp overflows"))?
    };
    let key = take_nullable(rec, &mut pos)?;
    let value = take_nullable(rec, &mut pos)?;
    let count = read_varint(rec, &mut pos)?;
    let count = usize::try_from(count)
        .map_err(|_| FormatError::corrupt(format!("negative header count {count}")))?;
    // Each header takes at least two bytes, which bounds the allocation.
    let mut headers = Vec::with_capacity(count.min(rec.len().saturating_sub(pos) / 2));
    for _ in 0..count {
        let key =
            take_nullable(rec, &mut pos)?.ok_or_else(|| FormatError::corrupt("null header key"))?;
        let key = String::from_utf8_lossy(&key).into_owned();
        headers.push((key, take_nullable(rec, &mut pos)?));
    }
    if pos != rec.len() {
        return Err(FormatError::corrupt(format!(
            "record has {} trailing bytes",
            rec.len() - pos
        )));
    }
    Ok(Record {
        offset,
        timestamp,
        key,
        value,
        headers,
    })
}

fn take(buf: &Bytes, pos: &mut usize, len: usize) -> Result<Bytes, FormatError> {
    let end =
        pos.checked_add(len)
            .filter(|&end| end <= buf.len())
            .ok_or(FormatError::Truncated {
                needed: pos.saturating_add(len),
                available: buf.len(),
            })?;
    let out = buf.slice(*pos..end);
    *pos = end;
    Ok(out)
}

/// A varint length (-1 for null) followed by that many bytes.
fn take_nullable(buf: &Bytes, pos: &mut usize) -> Result<Option<Bytes>, FormatError> {
    match read_varint(buf, pos)? {
        -1 => Ok(None),
        len if len < 0 => Err(FormatError::corrupt(format!("negative length {len}"))),
        len => take(buf, pos, len as usize).map(Some),
    }
}

/// Encodes `records` as one uncompressed v2 batch with a fresh CRC. Offsets need not be
/// contiguous (deltas are stored per record), but each must lie within i32 of
/// `spec.base_offset`, as in any Kafka batch; outside that range deltas wrap.
pub fn encode_batch(spec: &BatchSpec, records: &[Record]) -> Bytes {
    let refs: Vec<RecordRef<'_>> = records.iter().map(Record::as_ref).collect();
    encode_batch_refs(spec, &refs)
}

/// A record whose key, value and headers are borrowed from where they are stored
/// (Arrow arrays when serving a segment), so encoding copies each byte once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .collect(),
        }
    }
}

fn nullable_len(data: Option<&[u8]>) -> usize {
    data.map_or(1, |d| varint_len(d.len() as i32) + d.len())
}

/// [`encode_batch`] for borrowed records. The batch is sized exactly before it is
/// written: a served row group stays cached as these buffers, and one grown by doubling
/// kept up to twice its length allocated.
pub fn encode_batch_refs(spec: &BatchSpec, records: &[RecordRef<'_>]) -> Bytes {
    let base_timestamp = records.first().map_or(-1, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let last_offset_delta = records
        .last()
        .map_or(0, |r| r.offset.wrapping_sub(spec.base_offset) as i32);
    let body_len = |r: &RecordRef<'_>| -> usize {
        1 + varlong_len(r.timestamp.wrapping_sub(base_timestamp))
            + varint_len(r.offset.wrapping_sub(spec.base_offset) as i32)
            + nullable_len(r.key)
            + nullable_len(r.value)
            + varint_len(r.headers.len() as i32)
            + r.headers
                .iter()
                .map(|(k, v)| nullable_len(Some(k)) + nullable_len(*v))
                .sum::<usize>()
    };
    let total = BATCH_HEADER_LEN
        + records
            .iter()
            .map(|r| {
                let n = body_len(r);
                varint_len(n as i32) + n
            })
            .sum::<usize>();

    let mut buf = Vec::with_capacity(total);
    buf.extend_from_slice(&spec.base_offset.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes()); // batch length, patched below
    buf.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    buf.push(MAGIC_V2 as u8);
    buf.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    buf.extend_from_slice(&without_compression(spec.attributes).to_be_bytes());
    buf.extend_from_slice(&last_offset_delta.to_be_bytes());
    buf.extend_from_slice(&base_timestamp.to_be_bytes());
    buf.extend_from_slice(&max_timestamp.to_be_bytes());
    buf.extend_from_slice(&spec.producer_id.to_be_bytes());
    buf.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    buf.extend_from_slice(&spec.base_sequence.to_be_bytes());
    buf.extend_from_slice(&(records.len() as i32).to_be_bytes());

    for record in records {
        write_varint(&mut buf, body_len(record) as i32);
        buf.push(0); // record attributes: unused by Kafka
        write_varlong(&mut buf, record.timestamp.wrapping_sub(base_timestamp));
        write_varint(
            &mut buf,
            record.offset.wrapping_sub(spec.base_offset) as i32,
        );
        write_nullable(&mut buf, record.key);
        write_nullable(&mut buf, record.value);
        write_varint(&mut buf, record.headers.len() as i32);
        for (key, value) in &record.headers {
            write_nullable(&mut buf, Some(key));
            write_nullable(&mut buf, *value);
        }
    }
    debug_assert_eq!(buf.len(), total, "batch sized exactly");

    let batch_length = (buf.len() - LOG_OVERHEAD) as i32;
    buf[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(buf)
}

fn write_nullable(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        None => write_varint(out, -1),
        Some(data) => {
            write_varint(out, data.len() as i32);
            out.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
