//! `CountingStore`: counts requests and bytes passing through to the inner store.
//!
//! Request counts are what object storage bills for and what the design budgets
//! (one WAL PUT per broker per flush), so tests assert on them and the broker exports them.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

/// Live counters shared by a [`CountingStore`] and whoever reports them.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    puts: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
    bytes_put: AtomicU64,
    bytes_got: AtomicU64,
}

/// A point-in-time copy of [`StoreMetrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// PUT-class requests: single puts, copies, multipart initiations, parts and completions.
    pub puts: u64,
    /// GET requests, ranged or whole (each range of `get_ranges` counts once).
    pub gets: u64,
    pub heads: u64,
    pub deletes: u64,
    /// List calls (one per `list`/`list_with_delimiter`, not per page).
    pub lists: u64,
    pub bytes_put: u64,
    /// Bytes in the responses to GETs (the requested range, for streamed bodies).
    pub bytes_got: u64,
}

impl StoreMetrics {
    pub fn new() -> Arc<StoreMetrics> {
        Arc::new(StoreMetrics::default())
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            heads: self.heads.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            bytes_put: self.bytes_put.load(Ordering::Relaxed),
            bytes_got: self.bytes_got.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts every request made through it; see [`StoreMetrics`].
///
/// Requests are counted when issued, whether or not they succeed: a failed request is
/// still a billed request.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<StoreMetrics>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<StoreMetrics>) -> Self {
        CountingStore { inner, metrics }
    }

    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }

    fn count_put(&self, payload: &PutPayload) {
        StoreMetrics::add(&self.metrics.puts, 1);
        StoreMetrics::add(&self.metrics.bytes_put, payload.content_length() as u64);
    }

    fn count_get(&self, result: &Result<GetResult>) {
        if let Ok(r) = result {
            StoreMetrics::add(&self.metrics.bytes_got, r.range.end - r.range.start);
        }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        self.count_put(&payload);
        self.inner.put(location, payload).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.count_put(&payload);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart(&self, location: &Path) -> Result<Box<dyn MultipartUpload>> {
        self.put_multipart_opts(location, PutMultipartOptions::default())
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        StoreMetrics::add(&self.metrics.puts, 1);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            metrics: Arc::clone(&self.metrics),
        }))
    }

    async fn get(&self, location: &Path) -> Result<GetResult> {
        self.get_opts(location, GetOptions::default()).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        StoreMetrics::add(
            if head {
                &self.metrics.heads
            } else {
                &self.metrics.gets
            },
            1,
        );
        let result = self.inner.get_opts(location, options).await;
        if !head {
            self.count_get(&result);
        }
        result
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        StoreMetrics::add(&self.metrics.gets, 1);
        let bytes = self.inner.get_range(location, range).await?;
        StoreMetrics::add(&self.metrics.bytes_got, bytes.len() as u64);
        Ok(bytes)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // The inner store may coalesce nearby ranges into fewer requests; we count what we
        // asked for, an upper bound on what was billed.
        StoreMetrics::add(&self.metrics.gets, ranges.len() as u64);
        let parts = self.inner.get_ranges(location, ranges).await?;
        let total: usize = parts.iter().map(Bytes::len).sum();
        StoreMetrics::add(&self.metrics.bytes_got, total as u64);
        Ok(parts)
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        StoreMetrics::add(&self.metrics.heads, 1);
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        StoreMetrics::add(&self.metrics.deletes, 1);
        self.inner.delete(location).await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        let metrics = Arc::clone(&self.metrics);
        let counted = locations
            .inspect(move |l| {
                if l.is_ok() {
                    StoreMetrics::add(&metrics.deletes, 1);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        StoreMetrics::add(&self.metrics.lists, 1);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        StoreMetrics::add(&self.metrics.lists, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        StoreMetrics::add(&self.metrics.lists, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        StoreMetrics::add(&self.metrics.puts, 1);
        self.inner.copy(from, to).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        StoreMetrics::add(&self.metrics.puts, 1);
        StoreMetrics::add(&self.metrics.deletes, 1);
        self.inner.rename(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        StoreMetrics::add(&self.metrics.puts, 1);
        self.inner.copy_if_not_exists(from, to).await
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        StoreMetrics::add(&self.metrics.puts, 1);
        StoreMetrics::add(&self.metrics.deletes, 1);
        self.inner.rename_if_not_exists(from, to).await
    }
}

/// Counts each part and the completion of a multipart upload as PUT-class requests.
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    metrics: Arc<StoreMetrics>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        StoreMetrics::add(&self.metrics.puts, 1);
        StoreMetrics::add(&self.metrics.bytes_put, data.content_length() as u64);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        StoreMetrics::add(&self.metrics.puts, 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        StoreMetrics::add(&self.metrics.deletes, 1);
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_requests_and_bytes() {
        let metrics = StoreMetrics::new();
        let store = CountingStore::new(Arc::new(InMemory::new()), Arc::clone(&metrics));
        let p = Path::from("a/b");
        store
            .put(&p, Bytes::from_static(b"hello world").into())
            .await
            .unwrap();
        store.get(&p).await.unwrap().bytes().await.unwrap();
        store.get_range(&p, 0..5).await.unwrap();
        store.get_ranges(&p, &[0..1, 2..4]).await.unwrap();
        store.head(&p).await.unwrap();
        store.list_with_delimiter(None).await.unwrap();
        store.delete(&p).await.unwrap();
        assert_eq!(
            metrics.snapshot(),
            MetricsSnapshot {
                puts: 1,
                gets: 4,
                heads: 1,
                deletes: 1,
                lists: 1,
                bytes_put: 11,
                bytes_got: 11 + 5 + 3,
            }
        );
    }
}
