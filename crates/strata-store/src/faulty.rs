//! `FaultyStore`: injects object store failures, latency and stalls, for tests of the
//! layers above (retries, flush back-pressure, fencing under slow storage).
//!
//! Faults are applied before the request reaches the inner store, so an injected failure
//! never has side effects. Multipart parts and list pages after the first are not
//! faulted; the initiation and the list call are.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::watch;

/// Controls a [`FaultyStore`]; clone it freely, every clone steers the same store.
#[derive(Clone, Debug)]
pub struct FaultHandle {
    state: Arc<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    fail_next: AtomicU64,
    down: AtomicBool,
    latency: Mutex<Duration>,
    stalled: watch::Sender<bool>,
    puts_only: AtomicBool,
    injected: AtomicU64,
    attempts: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Put,
    Other,
}

impl Default for FaultHandle {
    fn default() -> Self {
        FaultHandle::new()
    }
}

impl FaultHandle {
    pub fn new() -> Self {
        FaultHandle {
            state: Arc::new(FaultState {
                fail_next: AtomicU64::new(0),
                down: AtomicBool::new(false),
                latency: Mutex::new(Duration::ZERO),
                stalled: watch::Sender::new(false),
                puts_only: AtomicBool::new(false),
                injected: AtomicU64::new(0),
                attempts: AtomicU64::new(0),
            }),
        }
    }

    /// The next `n` faultable operations fail with a transient error (like S3's 503).
    pub fn fail_next(&self, n: u64) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// While down, every faultable operation fails with a transient error.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Adds this delay before every faultable operation.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// While stalled, faultable operations hang; they proceed once un-stalled (unless the
    /// caller gave up on them first).
    pub fn stall(&self, stalled: bool) {
        self.state.stalled.send_replace(stalled);
    }

    /// Restricts faults (failures, latency, stalls) to put-class operations.
    pub fn puts_only(&self, only: bool) {
        self.state.puts_only.store(only, Ordering::SeqCst);
    }

    /// Failures injected so far (not counting stalls or latency).
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Faultable operations started so far, whatever became of them.
    pub fn attempts(&self) -> u64 {
        self.state.attempts.load(Ordering::SeqCst)
    }

    async fn before(&self, kind: OpKind, path: &Path) -> Result<()> {
        let s = &self.state;
        if s.puts_only.load(Ordering::SeqCst) && kind != OpKind::Put {
            return Ok(());
        }
        s.attempts.fetch_add(1, Ordering::SeqCst);
        let latency = *s.latency.lock().unwrap_or_else(|e| e.into_inner());
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut stalled = s.stalled.subscribe();
        // The sender lives in `s`, so wait_for only fails if it was dropped: it was not.
        let _ = stalled.wait_for(|stalled| !*stalled).await;
        let take_one = s
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if s.down.load(Ordering::SeqCst) || take_one {
            s.injected.fetch_add(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected fault for {path}: 503 SlowDown").into(),
            });
        }
        Ok(())
    }
}

/// Wraps a store and misbehaves as its [`FaultHandle`] says.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: FaultHandle,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> (Self, FaultHandle) {
        let faults = FaultHandle::new();
        let store = FaultyStore {
            inner,
            faults: faults.clone(),
        };
        (store, faults)
    }

    pub fn handle(&self) -> FaultHandle {
        self.faults.clone()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        self.faults.before(OpKind::Put, location).await?;
        self.inner.put(location, payload).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.before(OpKind::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart(&self, location: &Path) -> Result<Box<dyn MultipartUpload>> {
        self.faults.before(OpKind::Put, location).await?;
        self.inner.put_multipart(location).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.faults.before(OpKind::Put, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get(&self, location: &Path) -> Result<GetResult> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.get(location).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.get_range(location, range).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.get_ranges(location, ranges).await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.faults.before(OpKind::Other, location).await?;
        self.inner.delete(location).await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        locations
            .map(move |location| async move {
                let location = location?;
                self.delete(&location).await?;
                Ok(location)
            })
            .buffered(10)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let faults = self.faults.clone();
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let at = prefix.clone().unwrap_or_default();
            faults
                .before(OpKind::Other, &at)
                .await
                .map(|()| inner.list(prefix.as_ref()))
        })
        .try_flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let faults = self.faults.clone();
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        let offset = offset.clone();
        futures::stream::once(async move {
            let at = prefix.clone().unwrap_or_default();
            faults
                .before(OpKind::Other, &at)
                .await
                .map(|()| inner.list_with_offset(prefix.as_ref(), &offset))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        self.faults.before(OpKind::Other, &at).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.faults.before(OpKind::Put, to).await?;
        self.inner.copy(from, to).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.faults.before(OpKind::Put, to).await?;
        self.inner.rename(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.faults.before(OpKind::Put, to).await?;
        self.inner.copy_if_not_exists(from, to).await
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.faults.before(OpKind::Put, to).await?;
        self.inner.rename_if_not_exists(from, to).await
    }
}
