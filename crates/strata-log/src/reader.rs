//! Reads of sealed segments: ranged GETs of the Parquet footer and of just
//! the row groups needed, re-encoded into Kafka batches and kept in a foyer
//! hybrid cache (memory, then local disk) by row group, with the next row
//! group fetched ahead so a replay streams instead of waiting on one GET at
//! a time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use strata_format::segment::{
    arrow_to_batches, row_groups_from_offset, with_value_views, ServedBatch,
};
use strata_meta::SegmentEntry;
use strata_store::ObjectFileReader;

use crate::LogError;

/// One row group re-encoded, batch by batch.
type Chunk = Arc<Vec<ServedBatch>>;

/// A cached row group: its batches, each its own `Bytes`. A just-sealed
/// segment's groups are the very batches the unsealed tail held, shared
/// rather than copied, so sealing does not hold every byte twice. On the
/// disk tier it is the batches back to back, split again when read.
#[derive(Clone)]
pub(crate) struct Group(Chunk);

impl Group {
    fn bytes(&self) -> usize {
        self.0.iter().map(|(_, _, b)| b.len()).sum()
    }
}

impl foyer::Code for Group {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        self.bytes().encode(writer)?;
        for (_, _, b) in self.0.iter() {
            writer.write_all(b).map_err(foyer::Error::io_error)?;
        }
        Ok(())
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let data = Bytes::decode(reader)?;
        chunk_of(&data).map(Group).map_err(|e| {
            foyer::Error::new(foyer::ErrorKind::Parse, "cached row group").with_source(e)
        })
    }

    fn estimated_size(&self) -> usize {
        std::mem::size_of::<usize>() + self.bytes()
    }
}

/// Where and how large the segment cache is.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub memory_bytes: usize,
    /// Local folder for the disk tier; `None` keeps the cache in memory only.
    pub dir: Option<PathBuf>,
    pub disk_bytes: usize,
}

#[derive(Clone)]
pub(crate) struct SegmentReader {
    store: Arc<dyn ObjectStore>,
    /// Row groups as their batches, keyed `<segment key>#<row group>`.
    cache: HybridCache<String, Group>,
    footers: Arc<Mutex<HashMap<String, ArrowReaderMetadata>>>,
    /// Segments whose footer and first row group a read that does not wait
    /// (`min_bytes` 0) left loading in the background, so that the fetches
    /// asking again meanwhile do not start the same GETs.
    opening: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Row groups being fetched and decoded, so every fetch and read-ahead that
    /// wants one while it loads waits for that one load. Without this, each
    /// fetch of a cold replay started its own GET and decode of the groups
    /// already on their way: twice the GETs, and 2.6 GiB of RSS replaying 2 GiB.
    loading: Arc<Mutex<HashMap<String, Load<Chunk>>>>,
    /// Footers being fetched, likewise.
    footer_loads: Arc<Mutex<HashMap<String, Load<ArrowReaderMetadata>>>>,
    /// Decodes running at once, one per core. Every partition of a replay has
    /// its groups and read-ahead loading together; decoded all at once, each
    /// held its Arrow arrays and its re-encoded batches at the same time,
    /// while the cores could only work on a few of them.
    decoding: Arc<tokio::sync::Semaphore>,
    /// Compressed bytes of the read-ahead loads under way, kept under
    /// [`READ_AHEAD_BYTES`]: each partition of a replay reads two groups
    /// ahead, and eight partitions' worth held 110 MiB of fetched row groups
    /// waiting for a core to decode them.
    ahead: Arc<std::sync::atomic::AtomicUsize>,
    ahead_budget: usize,
}

/// Compressed bytes read ahead at once across all partitions: six ranged
/// GETs of a row group of 1 KiB records, enough to keep the store serving at
/// its full rate. With fetches answering from the cache first, 64 MiB
/// replayed no faster and peaked 30 MiB higher.
const READ_AHEAD_BYTES: usize = 48 << 20;

/// Footers are read with the page index (the writer always writes the offset
/// index): knowing where each page starts, the Parquet reader slices pages out
/// of a fetched row group instead of copying each one into a zeroed buffer.
fn footer_options() -> ArrowReaderOptions {
    ArrowReaderOptions::new().with_page_index(true)
}

/// A load from the store that every reader wanting it awaits. It runs as its
/// own task: a fetch that stops waiting for it (its max wait is up, its
/// client went away) does not stop it, and the next fetch finds it done.
type Load<T> = Shared<BoxFuture<'static, Result<T, Arc<str>>>>;

/// The load of `key` under way in `loads`, or a new one made by `load`,
/// which leaves `loads` when it ends.
fn load_once<T, F>(
    loads: &Arc<Mutex<HashMap<String, Load<T>>>>,
    key: &str,
    load: impl FnOnce() -> F,
) -> Load<T>
where
    T: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<T, LogError>> + Send + 'static,
{
    let mut map = loads.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key.to_string())
        .or_insert_with(|| {
            let (loads, key, load) = (loads.clone(), key.to_string(), load());
            let task = tokio::spawn(async move {
                let r = load.await;
                loads.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                r.map_err(|e| Arc::<str>::from(e.to_string()))
            });
            async move { task.await.map_err(|e| Arc::<str>::from(e.to_string()))? }
                .boxed()
                .shared()
        })
        .clone()
}

/// Splits a cached row group back into its batches (headers only).
fn chunk_of(data: &Bytes) -> Result<Chunk, LogError> {
    let mut out = Vec::new();
    for r in strata_format::split_batches(data)? {
        let h = strata_format::parse_header(&data[r.clone()])?;
        out.push((h.base_offset, h.last_offset(), data.slice(r)));
    }
    Ok(Arc::new(out))
}

/// Row groups whose first fetch from the store is remembered, so that a second fetch
/// (the memory tier had dropped the group) writes it to the disk tier. 64 Ki hashes:
/// half a MiB, covering hundreds of GiB of row groups.
const FETCHES_REMEMBERED: usize = 1 << 16;

/// The disk tier's admission rule: a row group is written to disk the second time it
/// is fetched from the store, not the first. A replay reads each group once: writing
/// every group of a 2 GiB replay to a 1 GiB tier read none of them back and cost the
/// broker a quarter of its CPU (benches/, cold replay: 4.0–4.1 s with the tier, 3.0–3.2
/// s without). A group read again after memory dropped it (a second consumer of the
/// same range, or a read-ahead group evicted before it was served) is kept on disk
/// from then on.
#[derive(Debug, Default)]
struct SecondFetch {
    seen: Mutex<(
        std::collections::HashSet<u64>,
        std::collections::VecDeque<u64>,
    )>,
}

impl foyer::StorageFilterCondition for SecondFetch {
    fn filter(
        &self,
        _: &Arc<foyer::Statistics>,
        hash: u64,
        _: usize,
    ) -> foyer::StorageFilterResult {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(hash) {
            return foyer::StorageFilterResult::Admit;
        }
        order.push_back(hash);
        if order.len() > FETCHES_REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        foyer::StorageFilterResult::Reject
    }
}

/// The segment cache: `memory` bytes, then (folder, bytes, direct I/O) on disk.
async fn build_cache(
    memory: usize,
    disk: Option<(&std::path::Path, usize, bool)>,
) -> Result<HybridCache<String, Group>, LogError> {
    // Offered to the disk tier as soon as inserted; [`SecondFetch`] decides
    // which groups it keeps.
    let builder = HybridCacheBuilder::new()
        .with_name("strata-segments")
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(memory)
        // One LRU over the whole memory tier. Split into foyer's default eight
        // shards, each held a few row groups, and a replay's read-ahead groups
        // were pushed out of their shard before they were read, then read back
        // from the disk tier.
        .with_shards(1)
        .with_weighter(|k: &String, v: &Group| k.len() + v.bytes())
        .storage();
    let built = match disk {
        Some((dir, bytes, direct)) => {
            let device = FsDeviceBuilder::new(dir)
                .with_capacity(bytes)
                .with_direct(direct)
                .build()
                .map_err(|e| LogError::Store(format!("cache device: {e}")))?;
            // A row group must fit in one block.
            builder
                .with_engine_config(
                    BlockEngineConfig::new(device)
                        .with_block_size(16 << 20)
                        .with_admission_filter(
                            foyer::StorageFilter::new().with_condition(SecondFetch::default()),
                        ),
                )
                .build()
                .await
        }
        None => builder.build().await,
    };
    built.map_err(|e| LogError::Store(format!("segment cache: {e}")))
}

impl SegmentReader {
    pub async fn new(store: Arc<dyn ObjectStore>, config: &CacheConfig) -> Result<Self, LogError> {
        let memory = config.memory_bytes.max(1 << 20);
        let cache = match &config.dir {
            Some(dir) if config.disk_bytes > 0 => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| LogError::Store(format!("cache dir {}: {e}", dir.display())))?;
                // Direct I/O: written through the page cache, filling the disk tier
                // during a replay cost the broker as much CPU as every other copy
                // together, and the page cache then held the bytes a second time.
                // Some filesystems (tmpfs) refuse it; they get buffered writes.
                match build_cache(memory, Some((dir, config.disk_bytes, true))).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(dir = %dir.display(), error = %e, "segment cache without direct I/O");
                        build_cache(memory, Some((dir, config.disk_bytes, false))).await?
                    }
                }
            }
            _ => build_cache(memory, None).await?,
        };
        Ok(Self {
            store,
            cache,
            footers: Arc::new(Mutex::new(HashMap::new())),
            opening: Arc::new(Mutex::new(std::collections::HashSet::new())),
            loading: Arc::new(Mutex::new(HashMap::new())),
            footer_loads: Arc::new(Mutex::new(HashMap::new())),
            decoding: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            ahead: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ahead_budget: READ_AHEAD_BYTES,
        })
    }

    /// Stops the cache's disk writers (what is written stays readable).
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the segment cache failed");
        }
    }

    fn file(&self, seg: &SegmentEntry) -> ObjectFileReader {
        ObjectFileReader::new(
            self.store.clone(),
            Path::from(seg.key.as_str()),
            seg.size_bytes,
        )
    }

    fn footers(&self) -> std::sync::MutexGuard<'_, HashMap<String, ArrowReaderMetadata>> {
        self.footers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember_footer(&self, seg: &SegmentEntry, m: ArrowReaderMetadata) {
        let mut f = self.footers();
        // Footers are small; a crude bound is enough.
        if f.len() > 4096 {
            f.clear();
        }
        f.insert(seg.key.clone(), m);
    }

    fn cache_key(seg: &SegmentEntry, rg: usize) -> String {
        format!("{}#{rg}", seg.key)
    }

    async fn footer(&self, seg: &SegmentEntry) -> Result<ArrowReaderMetadata, LogError> {
        if let Some(m) = self.footers().get(&seg.key) {
            return Ok(m.clone());
        }
        let load = load_once(&self.footer_loads, &seg.key, || {
            let (this, seg) = (self.clone(), seg.clone());
            async move {
                // As for row groups: it may have been loaded just now.
                let cached = this.footers().get(&seg.key).cloned();
                let m = match cached {
                    Some(m) => m,
                    None => {
                        let mut file = this.file(&seg);
                        let m =
                            ArrowReaderMetadata::load_async(&mut file, footer_options()).await?;
                        with_value_views(m)?
                    }
                };
                this.remember_footer(&seg, m.clone());
                Ok(m)
            }
        });
        load.await.map_err(|e| LogError::Store(e.to_string()))
    }

    /// Batches of `seg` from the one holding `offset`, up to about
    /// `max_bytes` (at least one batch when `min_bytes` > 0). Row groups not
    /// yet cached are waited for until the batches reach `min_bytes`; past
    /// that, the read stops at the first such group and leaves it loading
    /// (with `min_bytes` 0, at once: only cached groups are served).
    pub async fn read(
        &self,
        seg: &SegmentEntry,
        offset: i64,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        let cached_footer = self.footers().get(&seg.key).cloned();
        let footer = match cached_footer {
            Some(footer) => footer,
            None if min_bytes == 0 => {
                self.open_in_background(seg, offset);
                return Ok(Vec::new());
            }
            None => self.footer(seg).await?,
        };
        let groups = row_groups_from_offset(footer.metadata(), offset);
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut last_rg = None;
        let mut waited = false;
        'outer: for rg in groups.iter().copied() {
            let cached = self.cache.contains(&Self::cache_key(seg, rg));
            // Once the caller has what it asked for at least, a group still on
            // its way is left to the next fetch: this one answers with what it has
            // instead of waiting on a GET.
            if size >= min_bytes && !cached {
                self.read_ahead(seg, &footer, rg, self.ahead_budget);
                break;
            }
            if !cached && !waited {
                waited = true;
                let wanted = min_bytes.min(max_bytes).saturating_sub(size);
                self.load_needed_after(seg, &footer, rg, wanted);
            }
            let chunk = self.row_group(seg, &footer, rg).await?;
            last_rg = Some(rg);
            for (_, last, b) in chunk.iter() {
                if *last < offset {
                    continue;
                }
                if !out.is_empty() && size + b.len() > max_bytes {
                    break 'outer;
                }
                size += b.len();
                out.push(b.clone());
            }
        }
        // Two row groups ahead: one GET in flight while the next is decoded. The
        // second only while the budget is less than half spent, so that every
        // partition of a replay has its next group on the way before any has two.
        if let Some(rg) = last_rg {
            let groups = footer.metadata().num_row_groups();
            for (next, budget) in [(rg + 1, self.ahead_budget), (rg + 2, self.ahead_budget / 2)] {
                if next < groups {
                    self.read_ahead(seg, &footer, next, budget);
                }
            }
        }
        Ok(out)
    }

    /// Loads the footer of `seg` and the row group holding `offset` in the
    /// background, once however many reads ask meanwhile.
    fn open_in_background(&self, seg: &SegmentEntry, offset: i64) {
        let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if !opening.insert(seg.key.clone()) {
            return;
        }
        drop(opening);
        let (this, seg) = (self.clone(), seg.clone());
        tokio::spawn(async move {
            if let Err(e) = this.read(&seg, offset, 1, 1).await {
                tracing::debug!(key = seg.key, error = %e, "opening a segment failed");
            }
            this.opening
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seg.key);
        });
    }

    /// Starts loading, all at once, the groups after `rg` that a read about
    /// to wait for `rg` will go on to wait for as well: by their sizes in the
    /// footer, those it needs to hold `wanted` bytes. Waited for one after
    /// another, a consumer with a large fetch.min.bytes paid one GET per row
    /// group of every fetch.
    fn load_needed_after(
        &self,
        seg: &SegmentEntry,
        footer: &ArrowReaderMetadata,
        rg: usize,
        wanted: usize,
    ) {
        let meta = footer.metadata();
        let size = |g: usize| meta.row_group(g).total_byte_size().max(0) as usize;
        let mut expected = size(rg);
        for next in rg + 1..meta.num_row_groups() {
            if expected >= wanted {
                break;
            }
            self.read_ahead(seg, footer, next, self.ahead_budget);
            expected += size(next);
        }
    }

    /// Caches a just-sealed segment from what its writer holds: the footer parsed
    /// from the file bytes, and each row group as the batches it was written from.
    pub(crate) fn insert_sealed(&self, seg: &SegmentEntry, file: &Bytes, row_groups: Vec<Chunk>) {
        let footer = ArrowReaderMetadata::load(file, footer_options())
            .map_err(strata_format::FormatError::from)
            .and_then(with_value_views);
        match footer {
            Ok(m) => self.remember_footer(seg, m),
            Err(e) => tracing::debug!(key = seg.key, error = %e, "sealed footer not cached"),
        }
        // Memory only: the bytes are in the bucket and, on a local store, on this
        // very disk already; writing them to the disk tier as well made every
        // produced byte cost a third write. A replay that reads them back from the
        // bucket later fills the disk tier then.
        for (rg, data) in row_groups.into_iter().enumerate() {
            self.cache
                .memory()
                .insert(Self::cache_key(seg, rg), Group(data));
        }
    }

    /// Loads row group `rg` in the background if it is not cached or loading,
    /// and the read-ahead bytes in flight stay within `budget`.
    fn read_ahead(
        &self,
        seg: &SegmentEntry,
        footer: &ArrowReaderMetadata,
        rg: usize,
        budget: usize,
    ) {
        use std::sync::atomic::Ordering;
        let key = Self::cache_key(seg, rg);
        let loading = || {
            let loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            loading.contains_key(&key)
        };
        if self.cache.contains(&key) || loading() {
            return;
        }
        let size = footer.metadata().row_group(rg).compressed_size().max(0) as usize;
        let under_budget = self
            .ahead
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n == 0 || n + size <= budget).then_some(n + size)
            })
            .is_ok();
        if !under_budget {
            // The fetch that needs it loads it then.
            return;
        }
        let this = self.clone();
        let seg = seg.clone();
        let footer = footer.clone();
        tokio::spawn(async move {
            if let Err(e) = this.row_group(&seg, &footer, rg).await {
                tracing::debug!(key = seg.key, rg, error = %e, "read-ahead failed");
            }
            this.ahead.fetch_sub(size, Ordering::AcqRel);
        });
    }

    async fn row_group(
        &self,
        seg: &SegmentEntry,
        footer: &ArrowReaderMetadata,
        rg: usize,
    ) -> Result<Chunk, LogError> {
        let k = Self::cache_key(seg, rg);
        match self.cache.get(&k).await {
            Ok(Some(e)) => return Ok(e.value().0.clone()),
            Ok(None) => {}
            Err(e) => tracing::debug!(key = k, error = %e, "segment cache read failed"),
        }
        let load = load_once(&self.loading, &k, || {
            let (this, seg, footer, k) = (self.clone(), seg.clone(), footer.clone(), k.clone());
            async move {
                // A load that finished between this reader's cache miss and its
                // taking the lock is in the cache already.
                match this.cache.get(&k).await {
                    Ok(Some(e)) => Ok(e.value().0.clone()),
                    _ => this.load_row_group(&seg, &footer, rg, &k).await,
                }
            }
        });
        load.await.map_err(|e| LogError::Store(e.to_string()))
    }

    /// One GET of a row group, decoded off the runtime and cached.
    async fn load_row_group(
        &self,
        seg: &SegmentEntry,
        footer: &ArrowReaderMetadata,
        rg: usize,
        k: &str,
    ) -> Result<Chunk, LogError> {
        // The ranged GETs happen here; decompression and decoding, which
        // are CPU work, run off the runtime below.
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(self.file(seg), footer.clone())
                .with_row_groups(vec![rg])
                .build()?;
        let started = std::time::Instant::now();
        let rows = stream
            .next_row_group()
            .await?
            .ok_or_else(|| LogError::Store(format!("{}: row group {rg} missing", seg.key)))?;
        let get_ms = started.elapsed().as_millis() as u64;
        let _decoding = self
            .decoding
            .acquire()
            .await
            .map_err(|e| LogError::Store(format!("decode: {e}")))?;
        let chunk = tokio::task::spawn_blocking(move || -> Result<Chunk, LogError> {
            let arrow = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LogError::Store(format!("parquet: {e}")))?;
            Ok(Arc::new(arrow_to_batches(&arrow)?))
        })
        .await
        .map_err(|e| LogError::Store(format!("decode task: {e}")))??;
        tracing::debug!(
            key = k,
            get_ms,
            total_ms = started.elapsed().as_millis() as u64,
            "row group loaded"
        );
        self.cache.insert(k.to_string(), Group(chunk.clone()));
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;
    use strata_format::segment::{write_segment, SegmentInfo, SegmentWriteOptions};
    use strata_format::{decode_batch, encode_batch, BatchSpec, Record};

    fn segment() -> (Bytes, i64) {
        let mut batches = Vec::new();
        let mut offset = 0;
        for b in 0..20 {
            let records: Vec<Record> = (0..50)
                .map(|i| Record {
                    offset: offset + i,
                    timestamp: 1_700_000_000_000 + i,
                    key: Some(Bytes::from(format!("k{b}"))),
                    value: Some(Bytes::from(vec![b as u8; 100])),
                    headers: vec![],
                })
                .collect();
            let spec = BatchSpec {
                base_offset: offset,
                partition_leader_epoch: 1,
                attributes: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            };
            batches.push(decode_batch(&encode_batch(&spec, &records)).unwrap());
            offset += 50;
        }
        let info = SegmentInfo {
            topic: "t".into(),
            topic_id: "id".into(),
            partition: 0,
        };
        let opts = SegmentWriteOptions {
            row_group_rows: 200,
            ..Default::default()
        };
        (write_segment(&info, &batches, &opts).unwrap(), offset)
    }

    /// Reads at offset 420 until one succeeds (the disk tier is written in the
    /// background), clearing the memory tier before each, for `tries` tries.
    async fn read_from_disk_tier(
        reader: &SegmentReader,
        seg: &SegmentEntry,
        size: usize,
        tries: usize,
    ) -> Result<Vec<Bytes>, LogError> {
        let mut got = Err(LogError::Shutdown);
        for _ in 0..tries {
            reader.cache.memory().clear();
            got = reader.read(seg, 420, 1, size).await;
            if got.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_tier_keeps_row_groups_fetched_twice_after_memory_and_bucket_lost_them() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (file, end) = segment();
        let key = "topics/t/0/00000000000000000000.parquet";
        store
            .put(&Path::from(key), PutPayload::from(file.clone()))
            .await
            .unwrap();
        let seg = SegmentEntry {
            base_offset: 0,
            last_offset: end - 1,
            key: key.into(),
            size_bytes: file.len() as u64,
            max_timestamp: 0,
            producers: None,
        };
        let config = CacheConfig {
            memory_bytes: 1 << 20,
            dir: Some(dir.path().to_path_buf()),
            disk_bytes: 64 << 20,
        };
        let reader = SegmentReader::new(store.clone(), &config).await.unwrap();
        let first = reader.read(&seg, 420, 1, usize::MAX).await.unwrap();
        // The batch holding 420 starts at 400 and comes back whole.
        assert_eq!(
            strata_format::parse_header(&first[0]).unwrap().base_offset,
            400
        );
        // Its row group (200 rows) is served; the later groups are left loading.
        let total: i64 = first
            .iter()
            .map(|b| strata_format::parse_header(b).unwrap().records_count as i64)
            .sum();
        assert_eq!(total, 200);
        let size = first.iter().map(Bytes::len).sum();

        // Fetched once, as a replay does: the group is not written to disk, so with
        // memory and the object gone there is nothing to serve it from.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let copy = store
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        store.delete(&Path::from(key)).await.unwrap();
        read_from_disk_tier(&reader, &seg, size, 1)
            .await
            .expect_err("a group fetched once is not on disk");

        // Fetched a second time from the store, it is kept on disk: lose the object
        // and the memory tier again, and the disk tier serves it. The groups read
        // ahead meanwhile may be on disk as well, so the read asks for as many bytes
        // as the first one served.
        store
            .put(&Path::from(key), PutPayload::from(copy))
            .await
            .unwrap();
        reader.cache.memory().clear();
        assert_eq!(reader.read(&seg, 420, 1, size).await.unwrap(), first);
        store.delete(&Path::from(key)).await.unwrap();
        let again = read_from_disk_tier(&reader, &seg, size, 50).await;
        assert_eq!(again.expect("served from the disk tier"), first);
    }

    #[test]
    fn the_disk_tier_admits_a_group_on_its_second_fetch_and_forgets_old_first_fetches() {
        use foyer::StorageFilterCondition;
        let rule = SecondFetch::default();
        let stats = Arc::new(foyer::Statistics::new(foyer::Throttle::default()));
        let admitted = |hash: u64| rule.filter(&stats, hash, 1 << 20).is_admitted();
        assert!(!admitted(7), "first fetch");
        assert!(admitted(7), "second fetch");
        assert!(admitted(7), "and after");
        for hash in 100..100 + FETCHES_REMEMBERED as u64 {
            assert!(!admitted(hash));
        }
        // 7's first fetch was the oldest remembered: forgotten to make room. Counted
        // as a first fetch again, it pushes out 100, the next oldest.
        assert!(!admitted(7), "7 forgotten");
        assert!(!admitted(100), "100 forgotten");
        assert!(admitted(99 + FETCHES_REMEMBERED as u64));
    }

    /// A memory-only reader over a counting store holding one segment.
    async fn counted_reader() -> (SegmentReader, SegmentEntry, Arc<strata_store::StoreMetrics>) {
        let metrics = strata_store::StoreMetrics::new();
        let store: Arc<dyn ObjectStore> = Arc::new(strata_store::CountingStore::new(
            Arc::new(InMemory::new()),
            metrics.clone(),
        ));
        let (reader, seg) = reader_over(store).await;
        (reader, seg, metrics)
    }

    /// A memory-only reader over `store`, into which one segment is put.
    async fn reader_over(store: Arc<dyn ObjectStore>) -> (SegmentReader, SegmentEntry) {
        let (file, end) = segment();
        let key = "topics/t/0/00000000000000000000.parquet";
        store
            .put(&Path::from(key), PutPayload::from(file.clone()))
            .await
            .unwrap();
        let seg = SegmentEntry {
            base_offset: 0,
            last_offset: end - 1,
            key: key.into(),
            size_bytes: file.len() as u64,
            max_timestamp: 0,
            producers: None,
        };
        let cache = CacheConfig {
            memory_bytes: 64 << 20,
            dir: None,
            disk_bytes: 0,
        };
        let reader = SegmentReader::new(store, &cache).await.unwrap();
        (reader, seg)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_of_a_cold_row_group_share_one_get() {
        // GETs one reader alone needs for row group 2 after its footer.
        let one = {
            let (reader, seg, metrics) = counted_reader().await;
            let footer = reader.footer(&seg).await.unwrap();
            let before = metrics.snapshot().gets;
            reader.row_group(&seg, &footer, 2).await.unwrap();
            metrics.snapshot().gets - before
        };
        let (reader, seg, metrics) = counted_reader().await;
        let footer = reader.footer(&seg).await.unwrap();
        let before = metrics.snapshot().gets;
        // Eight fetches wanting the same row group at once, as consumers of a
        // replay do while its read-ahead is still on the way.
        let reads = (0..8).map(|_| {
            let (reader, seg, footer) = (reader.clone(), seg.clone(), footer.clone());
            tokio::spawn(async move { reader.row_group(&seg, &footer, 2).await })
        });
        let chunks: Vec<Chunk> = futures::future::join_all(reads)
            .await
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect();
        let gets = metrics.snapshot().gets - before;
        assert!(
            chunks.windows(2).all(|w| w[0] == w[1]),
            "every reader got the same batches"
        );
        assert_eq!(chunks[0].first().map(|c| c.0), Some(400));
        // A row group is as many ranged GETs as the parquet reader asks for; what
        // matters is that eight readers cost what one does.
        assert_eq!(
            gets, one,
            "eight concurrent readers caused {gets} GETs, one reader {one}"
        );
    }

    /// Waits until no read-ahead is under way.
    async fn settle(reader: &SegmentReader) {
        for _ in 0..100 {
            if reader.ahead.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_read_answers_from_the_groups_it_has_and_leaves_the_rest_loading() {
        let (reader, seg, _) = counted_reader().await;
        let bases = |batches: &[Bytes]| -> Vec<i64> {
            batches
                .iter()
                .map(|b| strata_format::parse_header(b).unwrap().base_offset)
                .collect()
        };
        // Cold: the group holding offset 0 is loaded; the next is not waited for.
        let first = reader.read(&seg, 0, 1, usize::MAX).await.unwrap();
        assert_eq!(bases(&first), [0, 50, 100, 150]);
        // Meanwhile groups 1 and 2 were read ahead: the same read now gets three
        // groups, and stops before the fourth, which it starts loading.
        settle(&reader).await;
        let second = reader.read(&seg, 0, 1, usize::MAX).await.unwrap();
        assert_eq!(bases(&second), (0..12).map(|b| b * 50).collect::<Vec<_>>());
        settle(&reader).await;
        let cached = |rg| reader.cache.contains(&SegmentReader::cache_key(&seg, rg));
        assert!(
            cached(3),
            "the group the read stopped at is loaded for the next one"
        );

        // A caller that needs more than the cached groups hold waits for the rest.
        let (reader, seg, _) = counted_reader().await;
        let all = reader.read(&seg, 0, usize::MAX, usize::MAX).await.unwrap();
        assert_eq!(bases(&all), (0..20).map(|b| b * 50).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_does_not_wait_serves_cached_groups_and_starts_the_rest() {
        let bases = |batches: &[Bytes]| -> Vec<i64> {
            batches
                .iter()
                .map(|b| strata_format::parse_header(b).unwrap().base_offset)
                .collect()
        };
        // GETs of one waiting read of a cold segment: footer and first group.
        let one = {
            let (reader, seg, metrics) = counted_reader().await;
            reader.read(&seg, 0, 1, 1).await.unwrap();
            metrics.snapshot().gets
        };
        let metrics = strata_store::StoreMetrics::new();
        let (faulty, faults) = strata_store::FaultyStore::new(Arc::new(InMemory::new()));
        let (reader, seg) = reader_over(Arc::new(strata_store::CountingStore::new(
            Arc::new(faulty),
            metrics.clone(),
        )))
        .await;
        // Cold, and the store held up: nothing to serve, whoever asks, and the
        // segment is opened once.
        faults.stall(true);
        for _ in 0..8 {
            let served = reader.read(&seg, 0, 0, usize::MAX).await.unwrap();
            assert!(served.is_empty());
        }
        faults.stall(false);
        let cached = |rg| reader.cache.contains(&SegmentReader::cache_key(&seg, rg));
        for _ in 0..250 {
            if cached(0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(cached(0), "the first group was loaded in the background");
        settle(&reader).await;
        let gets = metrics.snapshot().gets;
        // Its read-ahead may have added a group or two; eight openings would
        // have been eight footers and first groups at least.
        assert!(gets < one * 3, "{gets} GETs against {one} for one read");
        // Warm: the cached groups, up to the first that is not.
        let served = reader.read(&seg, 0, 0, usize::MAX).await.unwrap();
        assert!(served.len() >= 4, "at least the first group");
        let whole_groups: Vec<i64> = (0..served.len() as i64).map(|b| b * 50).collect();
        assert_eq!(bases(&served), whole_groups);
        assert_eq!(served.len() % 4, 0, "whole groups of four batches");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waiting_for_min_bytes_loads_the_groups_it_needs_at_once() {
        let (store, faults) = strata_store::FaultyStore::new(Arc::new(InMemory::new()));
        let (reader, seg) = reader_over(Arc::new(store)).await;
        let footer = reader.footer(&seg).await.unwrap();
        let groups = footer.metadata().num_row_groups();
        assert_eq!(groups, 5);
        let get = std::time::Duration::from_millis(300);
        faults.set_latency(get);
        // Asking for the whole segment at least: every group is waited for.
        let started = std::time::Instant::now();
        let all = reader.read(&seg, 0, usize::MAX, usize::MAX).await.unwrap();
        let took = started.elapsed();
        assert_eq!(all.len(), 20, "every batch of the segment");
        // One group after another would be five GETs at least.
        assert!(
            took < get * 3,
            "{groups} row groups took {took:?} with {get:?} per GET"
        );
    }

    // One runtime thread: group 1's read-ahead cannot finish, and free the
    // budget, before group 2's is considered (on two workers it sometimes did).
    #[tokio::test]
    async fn read_ahead_stops_at_its_byte_budget() {
        let group = {
            let (reader, seg, _) = counted_reader().await;
            let footer = reader.footer(&seg).await.unwrap();
            footer.metadata().row_group(1).compressed_size() as usize
        };
        // Reading the first row group reads groups 1 and 2 ahead; with a budget
        // smaller than one group, only the first of them (one is always allowed);
        // the second only while less than half the budget is spent.
        for (budget, second_ahead) in [
            (READ_AHEAD_BYTES, true),
            (1, false),
            (group * 5 / 2, false),
            (group * 9 / 2, true),
        ] {
            let (mut reader, seg, _) = counted_reader().await;
            reader.ahead_budget = budget;
            let served = reader.read(&seg, 0, 1, 1).await.unwrap();
            assert_eq!(served.len(), 1);
            settle(&reader).await;
            let cached = |rg| reader.cache.contains(&SegmentReader::cache_key(&seg, rg));
            assert!(cached(1), "budget {budget}: the next group is read ahead");
            assert_eq!(cached(2), second_ahead, "budget {budget}: group after it");
        }
    }
}
