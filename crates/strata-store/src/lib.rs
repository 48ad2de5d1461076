//! Strata's object storage layer: opening a store from a spec (local folder or S3),
//! decorators stacked over `Arc<dyn ObjectStore>` (retries, reused read buffers, request
//! metrics, fault injection), ranged Parquet reads, and multipart uploads of large objects.
//!
//! A typical stack, outermost first: `RetryingStore` → `PooledReads` → `CountingStore` →
//! backend, so every retry is counted as the billed request it is. Tests put a
//! `FaultyStore` just above the backend.

mod error;
mod faulty;
mod metrics;
mod open;
mod pooled;
mod reader;
mod retry;
mod upload;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use error::{is_transient, StoreError};
pub use faulty::{FaultHandle, FaultyStore};
pub use metrics::{CountingStore, MetricsSnapshot, StoreMetrics};
pub use open::{open_s3, open_store, S3Options, DEFAULT_REGION};
pub use pooled::{PooledReads, MIN_POOLED_READ};
pub use reader::{ObjectFileReader, DEFAULT_FOOTER_PREFETCH};
pub use retry::{RetryPolicy, RetryingStore};
pub use upload::{put_large, MIN_PART_SIZE};

pub use object_store::{path::Path, ObjectStore};
