//! The one error type of strata-format, with classifiers the broker maps to Kafka codes.

use thiserror::Error;

/// Everything that can go wrong while checking, decoding or encoding batches and segments.
#[derive(Debug, Error)]
pub enum FormatError {
    /// The input ends before a structure it announces is complete.
    #[error("truncated input: needed {needed} bytes, had {available}")]
    Truncated { needed: usize, available: usize },
    /// A batch whose magic byte is not 2 (legacy message sets v0/v1, or garbage).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The CRC-32C stored in the batch does not match its contents.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The header's record count disagrees with the records actually present.
    #[error("record count mismatch: header says {expected}, found {found}")]
    RecordCountMismatch { expected: i32, found: i64 },
    /// Compression codec bits 5, 6 or 7, which Kafka does not define.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i16),
    /// Decompressed data would exceed the allowed size (a decompression bomb, or an absurd batch).
    #[error("decompressed size exceeds limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The compressed payload could not be decompressed.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// Any other structural problem inside a batch.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A Parquet segment that does not follow the Strata segment schema or its rules.
    #[error("invalid segment: {0}")]
    InvalidSegment(String),
    /// Error from the parquet crate while writing or reading a segment.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Error from arrow while building or reading columns.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl FormatError {
    /// True when the batch bytes themselves are bad (Kafka's CORRUPT_MESSAGE family),
    /// as opposed to well-formed but unsupported input or a segment/library failure.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            FormatError::Truncated { .. }
                | FormatError::CrcMismatch { .. }
                | FormatError::RecordCountMismatch { .. }
                | FormatError::Decompress(_)
                | FormatError::TooLarge { .. }
                | FormatError::Corrupt(_)
        )
    }

    /// True for input that is well formed but uses something Strata does not accept
    /// (old magic, unknown codec); Kafka answers these with their own error codes.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            FormatError::UnsupportedMagic(_) | FormatError::UnsupportedCompression(_)
        )
    }

    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        FormatError::Corrupt(msg.into())
    }
}
