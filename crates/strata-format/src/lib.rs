//! strata-format: Kafka record batches and Parquet segments, as pure functions over bytes
//! (no I/O, no async), so every encoder and decoder is tested without sockets or buckets.
//!
//! - [`batch`]: the produce hot path: split, validate and patch v2 batches without
//!   decoding records.
//! - [`records`]: full decode (every codec) and uncompressed encode of batches.
//! - [`segment`]: Parquet segment files, one row per record, and their re-encoding into
//!   batches that keep the original boundaries.

pub mod batch;
mod compression;
mod error;
pub mod records;
pub mod segment;
mod varint;

pub use batch::{
    parse_header, set_base_offset, set_log_append_time, set_partition_leader_epoch, split_batches,
    validate_batch, BatchHeader, Compression, BATCH_HEADER_LEN,
};
pub use compression::MAX_DECOMPRESSED_LEN;
pub use error::FormatError;
pub use records::{
    decode_batch, decode_batch_shared, decode_checked_batch, encode_batch, BatchSpec, DecodedBatch,
    Record,
};
pub use segment::{
    arrow_to_batches, read_segment_bytes, row_groups_from_offset, segment_schema, write_segment,
    SegmentInfo, SegmentWriteOptions,
};
