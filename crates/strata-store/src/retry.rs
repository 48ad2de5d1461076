//! `RetryingStore`: retries transient object store failures with capped exponential
//! backoff and jitter, and abandons attempts that stall.
//!
//! The HTTP client inside `object_store` already retries a few times; this layer sits
//! above it so that throttling storms, brief outages and hung connections (which the
//! client only notices after its long request timeout) do not fail a flush or a fetch.
//!
//! Retrying a conditional put is not idempotent: if a `PutMode::Create` attempt succeeded
//! on the server but its response was lost (or timed out here), the retry finds our own
//! object and returns `AlreadyExists`; likewise a retried `PutMode::Update` returns
//! `Precondition`. Callers that fence with conditional puts must treat such a conflict as
//! "maybe ours" and re-read the object to decide.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use rand::Rng;
use tracing::warn;

use crate::error::is_transient;

/// How hard [`RetryingStore`] tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry; doubles on each further retry.
    pub base_delay: Duration,
    /// Upper bound on any single delay.
    pub max_delay: Duration,
    /// Total attempts including the first; at least 1.
    pub max_attempts: u32,
    /// An attempt running longer than this is abandoned and counts as a transient failure.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_attempts: 10,
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that brokers throttled together do not retry
    /// in lockstep while each still waits at least half the nominal delay.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let nominal = exp.min(self.max_delay);
        let half = nominal / 2;
        let jitter_nanos = half.as_nanos().min(u64::MAX as u128) as u64;
        let jitter = if jitter_nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos))
        };
        half + jitter
    }
}

/// Retries transient failures of the inner store; see the module docs.
#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        RetryingStore { inner, policy }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    async fn retry<T, F, Fut>(&self, op: &'static str, path: &Path, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(self.policy.attempt_timeout, f()).await {
                Ok(result) => result,
                Err(_) => Err(object_store::Error::Generic {
                    store: "RetryingStore",
                    source: format!("attempt timed out after {:?}", self.policy.attempt_timeout)
                        .into(),
                }),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(err) if attempt < max_attempts && is_transient(&err) => {
                    let delay = self.policy.backoff(attempt);
                    warn!(
                        op,
                        path = %path,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "object store operation failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retrying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        // PutPayload is reference counted, so each attempt resends the same buffers.
        self.retry("put", location, || {
            self.inner.put(location, payload.clone())
        })
        .await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.retry("put", location, || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart(&self, location: &Path) -> Result<Box<dyn MultipartUpload>> {
        // Only the initiation is retried; the parts go straight to the inner upload.
        self.retry("put_multipart", location, || {
            self.inner.put_multipart(location)
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.retry("put_multipart", location, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get(&self, location: &Path) -> Result<GetResult> {
        // Retries obtaining the response; a failure while streaming its body is the
        // caller's to handle (get_range and get_ranges buffer, so they retry fully).
        self.retry("get", location, || self.inner.get(location))
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retry("get", location, || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.retry("get_range", location, || {
            self.inner.get_range(location, range.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.retry("get_ranges", location, || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.retry("head", location, || self.inner.head(location))
            .await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.retry("delete", location, || self.inner.delete(location))
            .await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // A stream cannot be restarted transparently once items were yielded.
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let root = Path::default();
        self.retry("list", prefix.unwrap_or(&root), || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        // Unconditional copy is idempotent; the *_if_not_exists forms are not retried.
        self.retry("copy", to, || self.inner.copy(from, to)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename_if_not_exists(from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 20,
            attempt_timeout: Duration::from_secs(1),
        };
        for retry in 1..40 {
            let d = policy.backoff(retry);
            let nominal = (Duration::from_millis(100) * 2u32.pow(retry.min(20) - 1))
                .min(Duration::from_secs(1));
            assert!(d >= nominal / 2 && d <= nominal, "retry {retry}: {d:?}");
        }
    }
}
