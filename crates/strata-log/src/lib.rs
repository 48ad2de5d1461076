//! Partitions on one broker: offset assignment, the in-memory active
//! segment, WAL flushing, sealing into Parquet, reads, retention and
//! recovery from the manifest. No sockets: the broker crate drives this.

mod error;
mod flush;
mod manager;
mod partition;
mod producers;
mod reader;
mod seal;

#[cfg(test)]
mod idempotence_tests;
#[cfg(test)]
mod sealed_read_tests;

pub use error::LogError;
pub use manager::{LogConfig, LogManager, ReadResult};
pub use partition::{AppendResult, Partition};
pub use producers::{BatchIds, ProducerState, Verdict};
