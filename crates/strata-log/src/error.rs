//! Errors of the log, with the classification the broker maps to Kafka codes.

use strata_common::TopicPartition;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("unknown topic or partition {0}")]
    UnknownPartition(String),
    #[error("this broker no longer leads {0}")]
    NotLeader(TopicPartition),
    #[error("corrupt record batch: {0}")]
    Corrupt(#[from] strata_format::FormatError),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: i32 },
    #[error("offset {offset} is outside {start}..={end}")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("timed out waiting for the write to become durable")]
    Timeout,
    #[error("object store: {0}")]
    Store(String),
    #[error("metadata: {0}")]
    Meta(#[from] strata_meta::MetaError),
    #[error("shutting down")]
    Shutdown,
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id} epoch {epoch} sent sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
}

impl LogError {
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            LogError::Timeout | LogError::Store(_) | LogError::NotLeader(_)
        ) || matches!(self, LogError::Meta(m) if m.is_retriable())
    }
}

impl From<object_store::Error> for LogError {
    fn from(e: object_store::Error) -> Self {
        LogError::Store(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for LogError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        LogError::Store(format!("parquet: {e}"))
    }
}
