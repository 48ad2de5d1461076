//! Writing decoded batches as one Parquet segment file in memory.

use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression as ParquetCompression, Encoding, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::format::SortingColumn;
use parquet::schema::types::ColumnPath;

use super::{
    segment_schema, SegmentInfo, SegmentWriteOptions, META_FIRST_OFFSET, META_FORMAT_VERSION,
    META_LAST_OFFSET, META_PARTITION, META_TOPIC, META_TOPIC_ID, SEGMENT_FORMAT_VERSION,
};
use crate::batch::BatchHeader;
use crate::records::{DecodedBatch, Record};
use crate::FormatError;

/// Payload bytes (keys, values, headers) per row group. Readers decode a row group into
/// Arrow arrays whose binary columns use i32 offsets, so a group must stay well below
/// 2 GiB of data even when rows are few and huge.
const CHUNK_BYTE_BUDGET: usize = 512 * 1024 * 1024;

/// Writes `batches` (in offset order) as a Parquet segment and returns the file bytes.
///
/// Row groups end at batch boundaries: each holds whole batches, closed once it reaches
/// `opts.row_group_rows` rows (one large batch may exceed that), so a reader serves a
/// row group's batches as they were produced. Batches without records contribute no
/// rows. Statistics and the page index are written so that an offset seek touches one
/// row group. Fails if offsets are not strictly increasing or there is no record at all.
pub fn write_segment(
    info: &SegmentInfo,
    batches: &[DecodedBatch],
    opts: &SegmentWriteOptions,
) -> Result<Bytes, FormatError> {
    write_segment_iter(info, batches.iter().cloned().map(Ok), opts)
}

/// [`write_segment`] over batches produced one at a time (for example decoded lazily
/// from raw bytes), so only one row group's records are decoded in memory at once.
pub fn write_segment_iter(
    info: &SegmentInfo,
    batches: impl IntoIterator<Item = Result<DecodedBatch, FormatError>>,
    opts: &SegmentWriteOptions,
) -> Result<Bytes, FormatError> {
    write_segment_grouped(info, batches, opts).map(|(file, _)| file)
}

/// [`write_segment_iter`], also returning which input batches (by position, batches
/// without records left out) each row group holds, so a writer that still has the raw
/// batches can cache a row group's bytes without reading the file back.
pub fn write_segment_grouped(
    info: &SegmentInfo,
    batches: impl IntoIterator<Item = Result<DecodedBatch, FormatError>>,
    opts: &SegmentWriteOptions,
) -> Result<(Bytes, Vec<Vec<usize>>), FormatError> {
    let row_group_rows = opts.row_group_rows.max(1);
    // Created at the first row group, whose values decide how the value column is stored.
    let mut writer: Option<SerializedFileWriter<Vec<u8>>> = None;
    let mut pending: Vec<DecodedBatch> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    let mut first_offset = None;
    let mut last_offset: Option<i64> = None;
    let write_group = |writer: &mut Option<SerializedFileWriter<Vec<u8>>>,
                       pending: &mut Vec<DecodedBatch>| {
        let group: Vec<(&BatchHeader, &Record)> = pending
            .iter()
            .flat_map(|b| b.records.iter().map(move |r| (&b.header, r)))
            .collect();
        let writer = match writer {
            Some(w) => w,
            None => {
                let arrow_schema = segment_schema();
                let schema = ArrowSchemaConverter::new().convert(&arrow_schema)?;
                let mut props = properties(info, opts, &group)?;
                // As Arrow's own writer does: readers take the column types (int16,
                // timestamp without zone) from it rather than from the Parquet types.
                add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
                writer.insert(SerializedFileWriter::new(
                    Vec::new(),
                    schema.root_schema_ptr(),
                    Arc::new(props),
                )?)
            }
        };
        let mut rg = writer.next_row_group()?;
        write_columns(&mut rg, &group)?;
        rg.close()?;
        pending.clear();
        Ok::<(), FormatError>(())
    };
    for (index, batch) in batches.into_iter().enumerate() {
        let batch = batch?;
        if batch.records.is_empty() {
            continue;
        }
        for r in &batch.records {
            if let Some(prev) = last_offset.filter(|&p| p >= r.offset) {
                return Err(FormatError::InvalidSegment(format!(
                    "offsets not increasing: {prev} then {}",
                    r.offset
                )));
            }
            first_offset.get_or_insert(r.offset);
            last_offset = Some(r.offset);
        }
        let size: usize = batch.records.iter().map(payload_len).sum();
        if !pending.is_empty()
            && (rows >= row_group_rows || bytes.saturating_add(size) > CHUNK_BYTE_BUDGET)
        {
            write_group(&mut writer, &mut pending)?;
            groups.push(std::mem::take(&mut group));
            rows = 0;
            bytes = 0;
        }
        rows += batch.records.len();
        bytes = bytes.saturating_add(size);
        pending.push(batch);
        group.push(index);
    }
    let (Some(first), Some(last)) = (first_offset, last_offset) else {
        return Err(FormatError::InvalidSegment("segment has no records".into()));
    };
    write_group(&mut writer, &mut pending)?;
    groups.push(group);
    let Some(mut writer) = writer else {
        unreachable!("the last group has records, so the writer exists");
    };
    writer.append_key_value_metadata(KeyValue::new(META_FIRST_OFFSET.into(), first.to_string()));
    writer.append_key_value_metadata(KeyValue::new(META_LAST_OFFSET.into(), last.to_string()));
    Ok((Bytes::from(writer.into_inner()?), groups))
}

/// Value bytes of the first row group that are compressed on trial, taken evenly across it.
const VALUE_SAMPLE_BYTES: usize = 64 * 1024;

/// Values whose trial compression saves less than this fraction are stored uncompressed.
const MIN_VALUE_SAVING: f64 = 0.1;

fn properties(
    info: &SegmentInfo,
    opts: &SegmentWriteOptions,
    first_group: &[(&BatchHeader, &Record)],
) -> Result<WriterProperties, FormatError> {
    let compression = match opts.zstd_level {
        Some(level) => ParquetCompression::ZSTD(ZstdLevel::try_new(level)?),
        None => ParquetCompression::UNCOMPRESSED,
    };
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        // Row groups are cut below by batch; the writer must never cut one itself.
        .set_max_row_group_size(usize::MAX)
        // Page statistics give chunk statistics plus the column index; the offset index
        // is on by default. Together they let a reader seek by offset.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: super::col::OFFSET as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_TOPIC.into(), info.topic.clone()),
            KeyValue::new(META_TOPIC_ID.into(), info.topic_id.clone()),
            KeyValue::new(META_PARTITION.into(), info.partition.to_string()),
            KeyValue::new(
                META_FORMAT_VERSION.into(),
                SEGMENT_FORMAT_VERSION.to_string(),
            ),
        ]));
    // Values almost never repeat: a dictionary only costs a hash and a copy of each,
    // until the writer gives up on it at a megabyte.
    builder = builder.set_column_dictionary_enabled(ColumnPath::from("value"), false);
    for column in STATISTICS_OFF {
        builder = builder.set_column_statistics_enabled(column.into(), EnabledStatistics::None);
    }
    for column in DELTA_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(column.into(), false)
            .set_column_encoding(column.into(), Encoding::DELTA_BINARY_PACKED);
    }
    if let Some(level) = opts.zstd_level {
        // Values that are already compressed or encrypted cost zstd time on every seal
        // and every cold read while saving nothing; the schema stays the same, only the
        // value column's pages are written as they are.
        if !compresses(first_group, level) {
            builder = builder.set_column_compression(
                ColumnPath::from("value"),
                ParquetCompression::UNCOMPRESSED,
            );
        }
        // Parquet starts a zstd stream for every page, and at level 3 that clears about
        // a megabyte of tables, whatever the page's size. Pages of a few bytes gain
        // nothing from it: the batch fields that repeat on every row of a batch (a few
        // bits per block of rows once delta-encoded), the base offset and sequence
        // too when batches are not tiny, and the headers when no record has any.
        for column in tiny_columns(first_group) {
            builder = builder.set_column_compression(column, ParquetCompression::UNCOMPRESSED);
        }
    }
    Ok(builder.build())
}

/// Columns written without minimum and maximum, which cost a comparison of every row with
/// both. Nobody seeks by `value` (12% of a seal of 1 KiB values), and queries that
/// filter on values read the pages anyway; the fields every record of a batch repeats
/// bound nothing a query asks for (8% of a seal of 100 B records). Statistics stay on
/// `offset` and `batch_base_offset` (the offset seek) and on `timestamp` and `key` (what
/// queries filter on).
const STATISTICS_OFF: [&str; 6] = [
    "value",
    "batch_attributes",
    "producer_id",
    "producer_epoch",
    "base_sequence",
    "partition_leader_epoch",
];

/// Integer columns that count up (offsets, timestamps) or stay the same for a whole batch
/// (the batch fields). Delta encoding stores a run of equal steps in a few bits per block
/// of values and costs a subtraction per row, where a dictionary hashed every row and
/// plain encoding left zstd eight bytes per row to squeeze: together with the statistics
/// dropped above, seals of 100 B records ran about a third faster and their segments
/// were 3% smaller (benchmark notes, item 32). Every Parquet reader we point users at
/// (DuckDB, pyarrow, DataFusion, Spark 3.3 and later) decodes it.
const DELTA_COLUMNS: [&str; 8] = [
    "offset",
    "timestamp",
    "batch_base_offset",
    "batch_attributes",
    "producer_id",
    "producer_epoch",
    "base_sequence",
    "partition_leader_epoch",
];

/// Records per batch, on average, from which `batch_base_offset` and `base_sequence`
/// have so few distinct values per row group that their pages stay tiny.
const MIN_RECORDS_PER_BATCH_FOR_TINY_PAGES: usize = 8;

/// Columns whose pages in a segment like `first_group` hold next to nothing.
fn tiny_columns(first_group: &[(&BatchHeader, &Record)]) -> Vec<ColumnPath> {
    let mut columns: Vec<ColumnPath> = [
        "batch_attributes",
        "producer_id",
        "producer_epoch",
        "partition_leader_epoch",
    ]
    .into_iter()
    .map(ColumnPath::from)
    .collect();
    let batches = 1 + first_group
        .windows(2)
        .filter(|w| w[0].0.base_offset != w[1].0.base_offset)
        .count();
    if first_group.len() >= batches * MIN_RECORDS_PER_BATCH_FOR_TINY_PAGES {
        columns.extend(["batch_base_offset", "base_sequence"].map(ColumnPath::from));
    }
    if first_group.iter().all(|(_, r)| r.headers.is_empty()) {
        columns.extend(["key", "value"].map(|leaf| {
            ColumnPath::new(vec![
                "headers".into(),
                "list".into(),
                "item".into(),
                leaf.into(),
            ])
        }));
    }
    columns
}

/// Whether zstd at `level` shrinks a sample of the group's values by [`MIN_VALUE_SAVING`].
fn compresses(group: &[(&BatchHeader, &Record)], level: i32) -> bool {
    let values = || group.iter().filter_map(|(_, r)| r.value.as_deref());
    let total: usize = values().map(<[u8]>::len).sum();
    let stride = total.div_ceil(VALUE_SAMPLE_BYTES).max(1);
    let mut sample = Vec::with_capacity(VALUE_SAMPLE_BYTES);
    for value in values().step_by(stride) {
        // A single value may be megabytes; the trial stays at the sample's size.
        let room = VALUE_SAMPLE_BYTES - sample.len();
        sample.extend_from_slice(&value[..value.len().min(room)]);
        if sample.len() == VALUE_SAMPLE_BYTES {
            break;
        }
    }
    if sample.is_empty() {
        return true;
    }
    match zstd::bulk::compress(&sample, level) {
        Ok(packed) => (packed.len() as f64) <= sample.len() as f64 * (1.0 - MIN_VALUE_SAVING),
        // Let the writer's own zstd meet and report whatever went wrong.
        Err(_) => true,
    }
}

fn payload_len(record: &Record) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
    record
        .headers
        .iter()
        .fold(len(&record.key) + len(&record.value), |acc, (k, v)| {
            acc + k.len() + len(v)
        })
}

/// Writes `rows` as the columns of one row group, in schema order. Values go to the
/// Parquet column writers as slices of the batches they were decoded from: built into
/// Arrow arrays first and written by Arrow's writer, every value was copied into an
/// array, then into a page, and every finished column chunk once more into the file,
/// through a small buffer; a seal spent 40% of its time in those copies.
fn write_columns(
    rg: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    rows: &[(&BatchHeader, &Record)],
) -> Result<(), FormatError> {
    let i64s = |f: &dyn Fn(&BatchHeader, &Record) -> i64| -> Vec<i64> {
        rows.iter().map(|(h, r)| f(h, r)).collect()
    };
    let i32s =
        |f: &dyn Fn(&BatchHeader) -> i32| -> Vec<i32> { rows.iter().map(|(h, _)| f(h)).collect() };
    // An optional binary column: the values present, and a definition level per row.
    let optional = |get: &dyn Fn(&Record) -> Option<&Bytes>| {
        let mut values = Vec::with_capacity(rows.len());
        let mut defined = Vec::with_capacity(rows.len());
        for (_, r) in rows {
            match get(r) {
                Some(b) => {
                    values.push(ByteArray::from(b.clone()));
                    defined.push(1);
                }
                None => defined.push(0),
            }
        }
        Leaf::new(values, Some(defined), None)
    };
    // `headers`: a required list of required structs { required key, optional value }.
    // A record without headers is one level entry (definition 0, the empty list); each
    // header is an entry that repeats the list (repetition 1) after the first.
    let mut header_keys = Leaf::new(Vec::new(), Some(Vec::new()), Some(Vec::new()));
    let mut header_values = Leaf::new(Vec::new(), Some(Vec::new()), Some(Vec::new()));
    for (_, r) in rows {
        if r.headers.is_empty() {
            header_keys.level(0, 0);
            header_values.level(0, 0);
        }
        for (i, (k, v)) in r.headers.iter().enumerate() {
            let rep = i16::from(i > 0);
            header_keys
                .values
                .push(ByteArray::from(k.as_bytes().to_vec()));
            header_keys.level(1, rep);
            match v {
                Some(v) => {
                    header_values.values.push(ByteArray::from(v.clone()));
                    header_values.level(2, rep);
                }
                None => header_values.level(1, rep),
            }
        }
    }

    write_leaf::<Int64Type>(rg, "offset", &Leaf::required(i64s(&|_, r| r.offset)))?;
    write_leaf::<Int64Type>(rg, "timestamp", &Leaf::required(i64s(&|_, r| r.timestamp)))?;
    write_leaf::<ByteArrayType>(rg, "key", &optional(&|r| r.key.as_ref()))?;
    write_leaf::<ByteArrayType>(rg, "value", &optional(&|r| r.value.as_ref()))?;
    write_leaf::<ByteArrayType>(rg, "headers.list.item.key", &header_keys)?;
    write_leaf::<ByteArrayType>(rg, "headers.list.item.value", &header_values)?;
    let batch_base_offset = Leaf::required(i64s(&|h, _| h.base_offset));
    write_leaf::<Int64Type>(rg, "batch_base_offset", &batch_base_offset)?;
    let attributes = Leaf::required(i32s(&|h| i32::from(h.attributes)));
    write_leaf::<Int32Type>(rg, "batch_attributes", &attributes)?;
    let producer_id = Leaf::required(i64s(&|h, _| h.producer_id));
    write_leaf::<Int64Type>(rg, "producer_id", &producer_id)?;
    let producer_epoch = Leaf::required(i32s(&|h| i32::from(h.producer_epoch)));
    write_leaf::<Int32Type>(rg, "producer_epoch", &producer_epoch)?;
    let base_sequence = Leaf::required(i32s(&|h| h.base_sequence));
    write_leaf::<Int32Type>(rg, "base_sequence", &base_sequence)?;
    let leader_epoch = Leaf::required(i32s(&|h| h.partition_leader_epoch));
    write_leaf::<Int32Type>(rg, "partition_leader_epoch", &leader_epoch)?;
    Ok(())
}

/// One leaf column of a row group: its non-null values and, unless it is a required
/// top-level column, its definition and repetition levels.
struct Leaf<T> {
    values: Vec<T>,
    def: Option<Vec<i16>>,
    rep: Option<Vec<i16>>,
}

impl<T> Leaf<T> {
    fn new(values: Vec<T>, def: Option<Vec<i16>>, rep: Option<Vec<i16>>) -> Self {
        Leaf { values, def, rep }
    }

    fn required(values: Vec<T>) -> Self {
        Leaf::new(values, None, None)
    }

    fn level(&mut self, def: i16, rep: i16) {
        self.def.get_or_insert_with(Vec::new).push(def);
        self.rep.get_or_insert_with(Vec::new).push(rep);
    }
}

/// Writes the row group's next leaf column, which must be `path`: the columns are
/// written in schema order, and two of the same type written in each other's place
/// would otherwise go unnoticed.
fn write_leaf<T: DataType>(
    rg: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    path: &str,
    leaf: &Leaf<T::T>,
) -> Result<(), FormatError> {
    let Some(mut column) = rg.next_column()? else {
        return Err(FormatError::InvalidSegment(format!(
            "column {path} is not in the schema"
        )));
    };
    let writer = column.typed::<T>();
    let found = writer.get_descriptor().path().string();
    if found != path {
        return Err(FormatError::InvalidSegment(format!(
            "column {path} written where the schema has {found}"
        )));
    }
    writer.write_batch(&leaf.values, leaf.def.as_deref(), leaf.rep.as_deref())?;
    column.close()?;
    Ok(())
}
