//! Reading segments back: choosing row groups by offset, and turning rows into record
//! batches with their original boundaries and batch fields.

use arrow_array::{
    Array, BinaryArray, Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMillisecondArray,
};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use super::col;
use crate::batch::without_compression;
use crate::records::{encode_batch, BatchSpec, Record};
use crate::FormatError;

/// Rows of one batch (or of a piece of one, see [`arrow_to_records`]).
pub type BatchGroup = (BatchSpec, Vec<Record>);

fn column<'a, T: Array + 'static>(
    rb: &'a RecordBatch,
    index: usize,
    name: &str,
) -> Result<&'a T, FormatError> {
    let schema = rb.schema_ref();
    let array = rb
        .columns()
        .get(index)
        .filter(|_| schema.field(index).name() == name)
        .ok_or_else(|| FormatError::InvalidSegment(format!("column {name} missing")))?;
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| FormatError::InvalidSegment(format!("column {name} has the wrong type")))
}

fn required<'a, T: Array + 'static>(
    rb: &'a RecordBatch,
    index: usize,
    name: &str,
) -> Result<&'a T, FormatError> {
    let array = column::<T>(rb, index, name)?;
    if array.null_count() != 0 {
        return Err(FormatError::InvalidSegment(format!(
            "column {name} has nulls"
        )));
    }
    Ok(array)
}

fn binary(array: &BinaryArray, row: usize) -> Option<Bytes> {
    (!array.is_null(row)).then(|| Bytes::copy_from_slice(array.value(row)))
}

/// Turns segment rows back into batches: consecutive rows with the same
/// `batch_base_offset` form one group, whose spec carries that base offset, the batch
/// attributes with the compression bits cleared, and the producer fields of the row.
///
/// Groups only within `rb`: a batch split across row groups or reader chunks comes out as
/// two groups with the same base offset. Feed every `RecordBatch` of a read through
/// [`merge_groups`] to rejoin them before encoding.
pub fn arrow_to_records(rb: &RecordBatch) -> Result<Vec<BatchGroup>, FormatError> {
    let offset = required::<Int64Array>(rb, col::OFFSET, "offset")?;
    let timestamp = required::<TimestampMillisecondArray>(rb, col::TIMESTAMP, "timestamp")?;
    let key = column::<BinaryArray>(rb, col::KEY, "key")?;
    let value = column::<BinaryArray>(rb, col::VALUE, "value")?;
    let headers = required::<ListArray>(rb, col::HEADERS, "headers")?;
    let base_offset = required::<Int64Array>(rb, col::BATCH_BASE_OFFSET, "batch_base_offset")?;
    let attributes = required::<Int16Array>(rb, col::BATCH_ATTRIBUTES, "batch_attributes")?;
    let producer_id = required::<Int64Array>(rb, col::PRODUCER_ID, "producer_id")?;
    let producer_epoch = required::<Int16Array>(rb, col::PRODUCER_EPOCH, "producer_epoch")?;
    let base_sequence = required::<Int32Array>(rb, col::BASE_SEQUENCE, "base_sequence")?;
    let leader_epoch =
        required::<Int32Array>(rb, col::PARTITION_LEADER_EPOCH, "partition_leader_epoch")?;

    let header_structs = headers
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| FormatError::InvalidSegment("headers are not structs".into()))?;
    let (header_keys, header_values) = match header_structs.columns() {
        [k, v] => (
            k.as_any().downcast_ref::<StringArray>(),
            v.as_any().downcast_ref::<BinaryArray>(),
        ),
        _ => (None, None),
    };
    let (Some(header_keys), Some(header_values)) = (header_keys, header_values) else {
        return Err(FormatError::InvalidSegment(
            "headers have the wrong fields".into(),
        ));
    };
    if header_keys.null_count() != 0 {
        return Err(FormatError::InvalidSegment("null header key".into()));
    }
    let header_offsets = headers.value_offsets();

    let mut groups: Vec<BatchGroup> = Vec::new();
    for row in 0..rb.num_rows() {
        let start = usize::try_from(header_offsets[row]).unwrap_or(0);
        let end = usize::try_from(header_offsets[row + 1]).unwrap_or(0);
        let record = Record {
            offset: offset.value(row),
            timestamp: timestamp.value(row),
            key: binary(key, row),
            value: binary(value, row),
            headers: (start..end)
                .map(|h| (header_keys.value(h).to_owned(), binary(header_values, h)))
                .collect(),
        };
        let spec = BatchSpec {
            base_offset: base_offset.value(row),
            partition_leader_epoch: leader_epoch.value(row),
            attributes: without_compression(attributes.value(row)),
            producer_id: producer_id.value(row),
            producer_epoch: producer_epoch.value(row),
            base_sequence: base_sequence.value(row),
        };
        match groups.last_mut() {
            Some((last, records)) if last.base_offset == spec.base_offset => records.push(record),
            _ => groups.push((spec, vec![record])),
        }
    }
    Ok(groups)
}

/// Appends `more` to `acc`, joining the first group of `more` to the last of `acc` when
/// they are pieces of the same batch (same base offset).
pub fn merge_groups(acc: &mut Vec<BatchGroup>, more: Vec<BatchGroup>) {
    let mut more = more.into_iter();
    if let Some((spec, records)) = more.next() {
        match acc.last_mut() {
            Some((last, acc_records)) if last.base_offset == spec.base_offset => {
                acc_records.extend(records)
            }
            _ => acc.push((spec, records)),
        }
    }
    acc.extend(more);
}

fn leaf_column(meta: &ParquetMetaData, name: &str) -> Option<usize> {
    meta.file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [name])
}

/// Min and max of an int64 column chunk, from its statistics.
fn int64_stats(
    meta: &ParquetMetaData,
    rg: usize,
    column: Option<usize>,
) -> (Option<i64>, Option<i64>) {
    let stats = column.and_then(|c| meta.row_group(rg).column(c).statistics());
    match stats {
        Some(Statistics::Int64(s)) => (s.min_opt().copied(), s.max_opt().copied()),
        _ => (None, None),
    }
}

/// Indices of the row groups to read to serve `from_offset`: every group whose `offset`
/// max is >= `from_offset` (a group without statistics is included), widened backwards
/// so that the batch holding the first needed record is read whole even when it began in
/// an earlier group (detected by `batch_base_offset` min < `offset` min).
pub fn row_groups_from_offset(meta: &ParquetMetaData, from_offset: i64) -> Vec<usize> {
    let offset_col = leaf_column(meta, "offset");
    let base_col = leaf_column(meta, "batch_base_offset");
    let n = meta.num_row_groups();
    // Rows are sorted by offset, so the groups needed form a suffix.
    let Some(mut first) = (0..n).find(|&rg| {
        let (_, max) = int64_stats(meta, rg, offset_col);
        max.is_none_or(|max| max >= from_offset)
    }) else {
        return Vec::new();
    };
    while first > 0 {
        let (min_offset, _) = int64_stats(meta, first, offset_col);
        let (min_base, _) = int64_stats(meta, first, base_col);
        let starts_mid_batch = match (min_base, min_offset) {
            (Some(base), Some(offset)) => base < offset,
            _ => true,
        };
        if !starts_mid_batch {
            break;
        }
        first -= 1;
    }
    (first..n).collect()
}

/// Reads a whole segment from memory and returns, in order, the re-encoded (uncompressed)
/// batches whose last record is at `from_offset` or later. Original batch boundaries are
/// kept, so a batch containing `from_offset` is returned whole, as Kafka does.
pub fn read_segment_bytes(data: Bytes, from_offset: i64) -> Result<Vec<Bytes>, FormatError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)?;
    let row_groups = row_groups_from_offset(builder.metadata(), from_offset);
    let reader = builder.with_row_groups(row_groups).build()?;
    let mut groups = Vec::new();
    for rb in reader {
        merge_groups(&mut groups, arrow_to_records(&rb?)?);
    }
    Ok(groups
        .iter()
        .filter(|(_, records)| records.last().is_some_and(|r| r.offset >= from_offset))
        .map(|(spec, records)| encode_batch(spec, records))
        .collect())
}
