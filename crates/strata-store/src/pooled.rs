//! `PooledReads`: a store layer that reads large byte ranges into buffers reused from a
//! small pool, instead of a fresh allocation per request.
//!
//! A cold replay fetches a row group (megabytes) per request. Collected into a new
//! buffer each time, every body was copied into pages the process had never touched,
//! and the page faults that followed were about a tenth of the broker's CPU while
//! replaying. A buffer handed back to the pool when the last `Bytes` pointing into it
//! is dropped keeps its pages, so the next request of a similar size copies into
//! memory that is already mapped.
//!
//! Only `get_range` and `get_ranges` change; every other call goes to the inner store
//! as it is. Place it under `RetryingStore`, which retries a whole ranged read,
//! including a body that fails part way.

use std::fmt;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    coalesce_ranges, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result, OBJECT_STORE_COALESCE_DEFAULT,
};

/// Reads shorter than this are left to the inner store: footers and index pages are
/// small, and a small slice of a pooled buffer kept alive (a cached footer, say) would
/// hold the whole buffer.
pub const MIN_POOLED_READ: usize = 1 << 20;

const ROUND_TO: usize = 1 << 20;

/// Buffers kept for reuse, reported in bytes of capacity.
struct Pool {
    idle: Mutex<Vec<Vec<u8>>>,
    max_idle_bytes: usize,
}

impl Pool {
    /// An empty buffer that holds `len` bytes: the smallest idle one that fits, else a
    /// new one. New buffers are rounded up to whole mebibytes: a partition's row groups
    /// differ by a few bytes, and one allocated to the byte would be too small for the
    /// next.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let best = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut buf = idle.swap_remove(i);
                buf.clear();
                buf
            }
            None => Vec::with_capacity(len.next_multiple_of(ROUND_TO)),
        }
    }

    /// Keeps `buf` if there is room, making room by freeing smaller idle buffers: a
    /// larger one fits more of the reads to come.
    fn give(&self, buf: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if buf.capacity() > self.max_idle_bytes {
            return;
        }
        let mut held: usize = idle.iter().map(Vec::capacity).sum();
        while held + buf.capacity() > self.max_idle_bytes {
            let smallest = idle
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.capacity())
                .filter(|(_, b)| b.capacity() < buf.capacity())
                .map(|(i, _)| i);
            match smallest {
                Some(i) => held -= idle.swap_remove(i).capacity(),
                None => return,
            }
        }
        idle.push(buf);
    }

    fn idle_bytes(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter().map(Vec::capacity).sum()
    }
}

/// A pooled buffer while `Bytes` point into it; back to the pool when they are gone.
struct Lease {
    buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Reads large ranges of the inner store into reused buffers; see the module docs.
pub struct PooledReads {
    inner: Arc<dyn ObjectStore>,
    pool: Arc<Pool>,
}

impl fmt::Debug for PooledReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledReads")
            .field("inner", &self.inner)
            .field("max_idle_bytes", &self.pool.max_idle_bytes)
            .finish()
    }
}

impl fmt::Display for PooledReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pooled({})", self.inner)
    }
}

fn generic(source: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "PooledReads",
        source: source.into(),
    }
}

impl PooledReads {
    /// Keeps at most `max_idle_bytes` of buffer capacity between reads; a buffer that
    /// comes back when the pool is full is freed.
    pub fn new(inner: Arc<dyn ObjectStore>, max_idle_bytes: usize) -> Self {
        PooledReads {
            inner,
            pool: Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
                max_idle_bytes,
            }),
        }
    }

    /// Capacity of the buffers waiting for reuse.
    pub fn idle_bytes(&self) -> usize {
        self.pool.idle_bytes()
    }

    async fn read(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| generic(format!("range {range:?} does not fit in memory")))?;
        if len < MIN_POOLED_READ {
            return self.inner.get_range(location, range).await;
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = self.inner.get_opts(location, options).await?;
        if result.range != range {
            return Err(generic(format!(
                "asked {location} for bytes {range:?}, got {:?}",
                result.range
            )));
        }
        let mut lease = Lease {
            buf: self.pool.take(len),
            pool: Arc::clone(&self.pool),
        };
        match result.payload {
            GetResultPayload::Stream(mut body) => {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    if lease.buf.len() + chunk.len() > len {
                        return Err(generic(format!(
                            "{location}: body longer than the {len} bytes asked for"
                        )));
                    }
                    lease.buf.extend_from_slice(&chunk);
                }
            }
            GetResultPayload::File(file, path) => {
                lease = tokio::task::spawn_blocking(move || {
                    let mut lease = lease;
                    read_file_range(&file, range.start, len, &mut lease.buf)
                        .map(|()| lease)
                        .map_err(|e| generic(format!("reading {}: {e}", path.display())))
                })
                .await
                .map_err(|e| generic(format!("file read task failed: {e}")))??;
            }
        }
        if lease.buf.len() != len {
            return Err(generic(format!(
                "{location}: body of {} bytes, {len} asked for",
                lease.buf.len()
            )));
        }
        Ok(Bytes::from_owner(lease))
    }
}

fn read_file_range(file: &std::fs::File, at: u64, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.resize(len, 0);
    file.read_exact_at(buf, at)
}

#[async_trait]
impl ObjectStore for PooledReads {
    async fn put(&self, location: &Path, payload: PutPayload) -> Result<PutResult> {
        self.inner.put(location, payload).await
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart(&self, location: &Path) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart(location).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get(&self, location: &Path) -> Result<GetResult> {
        self.inner.get(location).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_range(&self, location: &Path, range: Range<u64>) -> Result<Bytes> {
        self.read(location, range).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // Column chunks of one row group sit side by side: merged, they are one request
        // and one buffer, which each chunk is a slice of.
        coalesce_ranges(
            ranges,
            |range| self.read(location, range),
            OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.inner.delete(location).await
    }

    fn delete_stream<'a>(
        &'a self,
        locations: BoxStream<'a, Result<Path>>,
    ) -> BoxStream<'a, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
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
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy(from, to).await
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
    use std::time::Duration;

    use object_store::memory::InMemory;

    use super::*;
    use crate::{FaultyStore, RetryPolicy, RetryingStore};

    const MIB: u64 = 1 << 20;

    fn data(len: u64) -> Bytes {
        (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
    }

    async fn store_with(object: &Bytes) -> (Arc<dyn ObjectStore>, Path) {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("segment.parquet");
        inner.put(&path, object.clone().into()).await.unwrap();
        (inner, path)
    }

    fn slice(object: &Bytes, r: &Range<u64>) -> Bytes {
        object.slice(r.start as usize..r.end as usize)
    }

    #[tokio::test]
    async fn ranges_read_the_same_bytes_as_the_inner_store() {
        let object = data(12 * MIB);
        let (inner, path) = store_with(&object).await;
        let pooled = PooledReads::new(Arc::clone(&inner), 64 << 20);
        // Small and large, adjacent (merged into one request), overlapping, far apart,
        // empty, and the object's last byte.
        let wanted = [
            0..10,
            10..MIB + 5,
            MIB + 5..3 * MIB,
            2 * MIB..2 * MIB + 100,
            7 * MIB..9 * MIB,
            9 * MIB..9 * MIB,
            12 * MIB - 1..12 * MIB,
        ];
        let got = pooled.get_ranges(&path, &wanted).await.unwrap();
        assert_eq!(got.len(), wanted.len());
        for (r, bytes) in wanted.iter().zip(&got) {
            assert_eq!(bytes, &slice(&object, r), "{r:?}");
        }
        let one = pooled.get_range(&path, 4 * MIB..6 * MIB).await.unwrap();
        assert_eq!(one, slice(&object, &(4 * MIB..6 * MIB)));
    }

    #[tokio::test]
    async fn a_buffer_is_reused_only_after_every_slice_of_it_is_dropped() {
        let object = data(8 * MIB);
        let (inner, path) = store_with(&object).await;
        let pooled = PooledReads::new(inner, 64 << 20);
        let first = pooled.get_range(&path, 0..2 * MIB).await.unwrap();
        let kept = first.slice(100..200);
        let at = first.as_ptr();
        drop(first);
        assert_eq!(pooled.idle_bytes(), 0, "a slice still points into it");

        // While `kept` lives, a read of the same size gets a buffer of its own.
        let second = pooled.get_range(&path, 2 * MIB..4 * MIB).await.unwrap();
        assert_ne!(second.as_ptr(), at);
        assert_eq!(second, slice(&object, &(2 * MIB..4 * MIB)));
        assert_eq!(
            kept,
            slice(&object, &(100..200)),
            "untouched by the next read"
        );

        drop(kept);
        assert!(pooled.idle_bytes() >= 2 * MIB as usize);
        let third = pooled.get_range(&path, 4 * MIB..6 * MIB).await.unwrap();
        assert_eq!(third.as_ptr(), at, "the first buffer, reused");
        assert_eq!(third, slice(&object, &(4 * MIB..6 * MIB)));
    }

    #[tokio::test]
    async fn the_pool_keeps_no_more_than_its_limit() {
        let object = data(8 * MIB);
        let (inner, path) = store_with(&object).await;
        let pooled = PooledReads::new(inner, 3 * MIB as usize);
        let a = pooled.get_range(&path, 0..2 * MIB).await.unwrap();
        let b = pooled.get_range(&path, 2 * MIB..4 * MIB).await.unwrap();
        drop((a, b));
        assert_eq!(
            pooled.idle_bytes(),
            2 * MIB as usize,
            "the second one was freed"
        );
    }

    #[tokio::test]
    async fn a_full_pool_keeps_the_larger_buffers() {
        let object = data(8 * MIB);
        let (inner, path) = store_with(&object).await;
        let pooled = PooledReads::new(inner, 5 * MIB as usize);
        let small = pooled.get_range(&path, 0..2 * MIB).await.unwrap();
        let large = pooled.get_range(&path, 2 * MIB..6 * MIB).await.unwrap();
        let at = large.as_ptr();
        drop(small);
        drop(large);
        assert_eq!(
            pooled.idle_bytes(),
            4 * MIB as usize,
            "the 2 MiB one made room"
        );
        // Either size now comes out of the 4 MiB buffer.
        let again = pooled.get_range(&path, 6 * MIB..8 * MIB).await.unwrap();
        assert_eq!(again.as_ptr(), at);
        assert_eq!(again, slice(&object, &(6 * MIB..8 * MIB)));
    }

    #[tokio::test]
    async fn a_range_past_the_end_is_an_error_and_the_next_read_is_whole() {
        let object = data(3 * MIB);
        let (inner, path) = store_with(&object).await;
        let pooled = PooledReads::new(inner, 64 << 20);
        pooled
            .get_range(&path, 2 * MIB..5 * MIB)
            .await
            .expect_err("only 1 MiB of the 3 asked for exists");
        let ok = pooled.get_range(&path, MIB..3 * MIB).await.unwrap();
        assert_eq!(ok, slice(&object, &(MIB..3 * MIB)));
    }

    #[tokio::test]
    async fn under_retries_a_failed_read_is_made_again() {
        let object = data(4 * MIB);
        let (inner, path) = store_with(&object).await;
        let (faulty, faults) = FaultyStore::new(inner);
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let store = RetryingStore::new(
            Arc::new(PooledReads::new(Arc::new(faulty), 64 << 20)),
            policy,
        );
        faults.fail_next(2);
        let got = store
            .get_ranges(&path, &[0..MIB + 1, 3 * MIB..4 * MIB])
            .await
            .unwrap();
        assert_eq!(got[0], slice(&object, &(0..MIB + 1)));
        assert_eq!(got[1], slice(&object, &(3 * MIB..4 * MIB)));
        assert_eq!(faults.injected(), 2);
    }
}
