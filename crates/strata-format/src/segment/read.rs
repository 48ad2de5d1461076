//! Reading segments back: choosing row groups by offset, and turning rows into record
//! batches with their original boundaries and batch fields.

use std::sync::Arc;

use arrow_array::{
    Array, BinaryArray, BinaryViewArray, Int16Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, StructArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use super::col;
use crate::batch::without_compression;
use crate::records::{encode_batch_refs, BatchSpec, RecordRef};
use crate::FormatError;

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

/// A binary column as Arrow holds it: copied into one buffer (`Binary`), or as views
/// into the pages it was decoded from (`BinaryView`, see [`with_value_views`]).
#[derive(Clone, Copy)]
enum Bin<'a> {
    Plain(&'a BinaryArray),
    View(&'a BinaryViewArray),
}

impl<'a> Bin<'a> {
    fn of(rb: &'a RecordBatch, index: usize, name: &str) -> Result<Self, FormatError> {
        match column::<BinaryViewArray>(rb, index, name) {
            Ok(views) => Ok(Bin::View(views)),
            Err(_) => column::<BinaryArray>(rb, index, name).map(Bin::Plain),
        }
    }

    fn get(self, row: usize) -> Option<&'a [u8]> {
        match self {
            Bin::Plain(a) => binary(a, row),
            Bin::View(a) => (!a.is_null(row)).then(|| a.value(row)),
        }
    }
}

fn binary(array: &BinaryArray, row: usize) -> Option<&[u8]> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// `meta` with `key` and `value` read as `BinaryView`. Decoded that way, a record's
/// value points into the page it came from (an uncompressed page is the fetched file
/// bytes themselves) instead of being copied into a new buffer first: re-encoding a
/// batch then copies each value once. The file and its schema are unchanged.
pub fn with_value_views(meta: ArrowReaderMetadata) -> Result<ArrowReaderMetadata, FormatError> {
    let fields: Vec<Arc<Field>> = meta
        .schema()
        .fields()
        .iter()
        .map(|f| match (f.name().as_str(), f.data_type()) {
            ("key" | "value", DataType::Binary) => {
                Arc::new(f.as_ref().clone().with_data_type(DataType::BinaryView))
            }
            _ => f.clone(),
        })
        .collect();
    let schema = Schema::new_with_metadata(fields, meta.schema().metadata().clone());
    let options = ArrowReaderOptions::new().with_schema(Arc::new(schema));
    Ok(ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        options,
    )?)
}

/// The typed columns of one Arrow batch of segment rows.
struct Columns<'a> {
    offset: &'a Int64Array,
    timestamp: &'a TimestampMillisecondArray,
    key: Bin<'a>,
    value: Bin<'a>,
    header_offsets: &'a [i32],
    header_keys: &'a StringArray,
    header_values: &'a BinaryArray,
    base_offset: &'a Int64Array,
    attributes: &'a Int16Array,
    producer_id: &'a Int64Array,
    producer_epoch: &'a Int16Array,
    base_sequence: &'a Int32Array,
    leader_epoch: &'a Int32Array,
}

impl<'a> Columns<'a> {
    fn of(rb: &'a RecordBatch) -> Result<Self, FormatError> {
        let headers = required::<ListArray>(rb, col::HEADERS, "headers")?;
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
        Ok(Columns {
            offset: required(rb, col::OFFSET, "offset")?,
            timestamp: required(rb, col::TIMESTAMP, "timestamp")?,
            key: Bin::of(rb, col::KEY, "key")?,
            value: Bin::of(rb, col::VALUE, "value")?,
            header_offsets: headers.value_offsets(),
            header_keys,
            header_values,
            base_offset: required(rb, col::BATCH_BASE_OFFSET, "batch_base_offset")?,
            attributes: required(rb, col::BATCH_ATTRIBUTES, "batch_attributes")?,
            producer_id: required(rb, col::PRODUCER_ID, "producer_id")?,
            producer_epoch: required(rb, col::PRODUCER_EPOCH, "producer_epoch")?,
            base_sequence: required(rb, col::BASE_SEQUENCE, "base_sequence")?,
            leader_epoch: required(rb, col::PARTITION_LEADER_EPOCH, "partition_leader_epoch")?,
        })
    }

    fn spec(&self, row: usize) -> BatchSpec {
        BatchSpec {
            base_offset: self.base_offset.value(row),
            partition_leader_epoch: self.leader_epoch.value(row),
            attributes: without_compression(self.attributes.value(row)),
            producer_id: self.producer_id.value(row),
            producer_epoch: self.producer_epoch.value(row),
            base_sequence: self.base_sequence.value(row),
        }
    }

    fn record(&self, row: usize) -> RecordRef<'a> {
        let start = usize::try_from(self.header_offsets[row]).unwrap_or(0);
        let end = usize::try_from(self.header_offsets[row + 1]).unwrap_or(0);
        RecordRef {
            offset: self.offset.value(row),
            timestamp: self.timestamp.value(row),
            key: self.key.get(row),
            value: self.value.get(row),
            headers: (start..end)
                .map(|h| {
                    (
                        self.header_keys.value(h).as_bytes(),
                        binary(self.header_values, h),
                    )
                })
                .collect(),
        }
    }
}

/// One re-encoded batch: its first and last record offsets and its bytes.
pub type ServedBatch = (i64, i64, Bytes);

/// Turns segment rows back into record batches: consecutive rows with the same
/// `batch_base_offset` form one batch, whose header carries that base offset, the batch
/// attributes with the compression bits cleared, and the producer fields of the row.
/// Rows are read in place from the Arrow arrays, and a batch whose rows continue from
/// one of `rbs` into the next (a reader hands out a row group in pieces) is one batch.
pub fn arrow_to_batches(rbs: &[RecordBatch]) -> Result<Vec<ServedBatch>, FormatError> {
    let columns = rbs.iter().map(Columns::of).collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut pending: Option<(BatchSpec, Vec<RecordRef<'_>>)> = None;
    for c in &columns {
        for row in 0..c.offset.len() {
            // The batch fields repeat on every row; read them once per batch.
            match &mut pending {
                Some((s, records)) if s.base_offset == c.base_offset.value(row) => {
                    records.push(c.record(row))
                }
                _ => {
                    let started = (c.spec(row), vec![c.record(row)]);
                    if let Some((s, records)) = pending.replace(started) {
                        out.push(served(&s, &records));
                    }
                }
            }
        }
    }
    if let Some((s, records)) = pending {
        out.push(served(&s, &records));
    }
    Ok(out)
}

fn served(spec: &BatchSpec, records: &[RecordRef<'_>]) -> ServedBatch {
    let first = records.first().map_or(spec.base_offset, |r| r.offset);
    let last = records.last().map_or(spec.base_offset, |r| r.offset);
    (first, last, encode_batch_refs(spec, records))
}

/// Index of the leaf column `name` (a top-level column), if the file has it.
pub(super) fn leaf_column(meta: &ParquetMetaData, name: &str) -> Option<usize> {
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
    let meta = with_value_views(ArrowReaderMetadata::load(&data, Default::default())?)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(data, meta);
    let row_groups = row_groups_from_offset(builder.metadata(), from_offset);
    let rbs = builder
        .with_row_groups(row_groups)
        .build()?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrow_to_batches(&rbs)?
        .into_iter()
        .filter(|(_, last, _)| *last >= from_offset)
        .map(|(_, _, b)| b)
        .collect())
}
