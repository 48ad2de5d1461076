//! Parquet segments: the long-term form of a partition's records, one row per record,
//! readable by any Parquet tool and re-encodable into record batches that keep the
//! original batch boundaries, offsets, timestamps, headers and producer fields.
//!
//! Columns, in order: `offset` int64, `timestamp` timestamp(ms), `key` binary?, `value`
//! binary?, `headers` list<struct<key: utf8, value: binary?>>, then the batch fields
//! repeated on every row (cheap under dictionary/RLE): `batch_base_offset` int64,
//! `batch_attributes` int16, `producer_id` int64, `producer_epoch` int16,
//! `base_sequence` int32, `partition_leader_epoch` int32.

mod read;
mod write;

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub use read::{
    arrow_to_batches, read_segment_bytes, row_groups_from_offset, with_value_views, ServedBatch,
};
pub use write::{write_segment, write_segment_grouped, write_segment_iter};

/// Version written to `strata.format_version`; bump on incompatible schema changes.
pub const SEGMENT_FORMAT_VERSION: &str = "1";

/// Key-value metadata keys of a segment file.
pub const META_TOPIC: &str = "strata.topic";
pub const META_TOPIC_ID: &str = "strata.topic_id";
pub const META_PARTITION: &str = "strata.partition";
pub const META_FIRST_OFFSET: &str = "strata.first_offset";
pub const META_LAST_OFFSET: &str = "strata.last_offset";
pub const META_FORMAT_VERSION: &str = "strata.format_version";

/// Column indices, matching [`segment_schema`].
pub(crate) mod col {
    pub const OFFSET: usize = 0;
    pub const TIMESTAMP: usize = 1;
    pub const KEY: usize = 2;
    pub const VALUE: usize = 3;
    pub const HEADERS: usize = 4;
    pub const BATCH_BASE_OFFSET: usize = 5;
    pub const BATCH_ATTRIBUTES: usize = 6;
    pub const PRODUCER_ID: usize = 7;
    pub const PRODUCER_EPOCH: usize = 8;
    pub const BASE_SEQUENCE: usize = 9;
    pub const PARTITION_LEADER_EPOCH: usize = 10;
}

/// Which partition a segment belongs to; written into the file's key-value metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub topic: String,
    pub topic_id: String,
    pub partition: i32,
}

/// Knobs for [`write_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentWriteOptions {
    /// Rows per row group: the unit a reader fetches to serve an offset.
    pub row_group_rows: usize,
    /// Zstd level for the columns that hold data, except `value` when a trial on the first
    /// row group's values shows zstd saving under 10%; columns whose pages hold next to
    /// nothing (the batch fields, empty headers) are left uncompressed. `None` writes
    /// uncompressed pages throughout.
    pub zstd_level: Option<i32>,
}

impl Default for SegmentWriteOptions {
    fn default() -> Self {
        SegmentWriteOptions {
            row_group_rows: 8192,
            zstd_level: Some(3),
        }
    }
}

pub(crate) fn header_struct_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The list item field of `headers`; items are never null, only the value inside may be.
pub(crate) fn header_item_field() -> Arc<Field> {
    Arc::new(Field::new(
        "item",
        DataType::Struct(header_struct_fields()),
        false,
    ))
}

/// The Arrow schema every segment is written with.
pub fn segment_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("offset", DataType::Int64, false),
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, None),
                    false,
                ),
                Field::new("key", DataType::Binary, true),
                Field::new("value", DataType::Binary, true),
                Field::new("headers", DataType::List(header_item_field()), false),
                Field::new("batch_base_offset", DataType::Int64, false),
                Field::new("batch_attributes", DataType::Int16, false),
                Field::new("producer_id", DataType::Int64, false),
                Field::new("producer_epoch", DataType::Int16, false),
                Field::new("base_sequence", DataType::Int32, false),
                Field::new("partition_leader_epoch", DataType::Int32, false),
            ]))
        })
        .clone()
}

#[cfg(test)]
mod tests;
