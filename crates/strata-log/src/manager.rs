//! The broker's set of led partitions and the background loops that keep
//! them durable: the WAL flusher, the sealer and retention.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use strata_common::config::TopicConfig;
use strata_common::{Clock, TopicPartition};
use strata_meta::{Metadata, TopicMeta};
use tokio::sync::{Notify, RwLock};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::partition::{Located, MemBatch, Partition};
use crate::reader::SegmentReader;
use crate::LogError;

/// Broker-level knobs of the log (topic-level ones are topic configs).
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub broker_id: i32,
    pub wal_flush_ms: u64,
    pub wal_flush_bytes: usize,
    /// Unflushed bytes across partitions above which producers wait.
    pub max_pending_bytes: usize,
    pub cache_memory_bytes: usize,
    /// Disk tier of the segment cache; `None` for memory only.
    pub cache_dir: Option<std::path::PathBuf>,
    pub cache_disk_bytes: usize,
    pub seal_check_ms: u64,
    /// Unsealed bytes held in memory across partitions above which the
    /// largest tails are sealed early, before segment.bytes.
    pub max_unsealed_bytes: usize,
    pub retention_check_ms: u64,
    pub row_group_rows: usize,
    pub multipart_part_bytes: usize,
    /// Kafka's producer.id.expiration.ms: an idempotent producer idle this
    /// long is forgotten (its retries are then no longer recognised).
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            broker_id: 1,
            wal_flush_ms: 5,
            wal_flush_bytes: 4 << 20,
            max_pending_bytes: 64 << 20,
            cache_memory_bytes: 256 << 20,
            cache_dir: None,
            cache_disk_bytes: 1 << 30,
            seal_check_ms: 1_000,
            max_unsealed_bytes: 512 << 20,
            retention_check_ms: 5_000,
            row_group_rows: 8192,
            multipart_part_bytes: 16 << 20,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

/// What a fetch of one partition returns.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub batches: Vec<Bytes>,
    /// Read from a sealed segment, which a read never crosses: what follows it
    /// is there already, so a fetch holding these batches is answered now even
    /// if short of its fetch.min.bytes (as Kafka answers a fetch at once when
    /// its offset is not in the active segment), instead of sitting out its
    /// max wait at every segment's end.
    pub sealed: bool,
}

/// WAL objects being written at once. One at a time made a large object (a
/// slow store, or many MB pending) delay every acknowledgement behind it.
const FLUSHES_IN_FLIGHT: usize = 4;

pub(crate) struct Inner {
    pub config: LogConfig,
    pub store: Arc<dyn ObjectStore>,
    pub meta: Arc<dyn Metadata>,
    pub clock: Arc<dyn Clock>,
    pub boot_id: String,
    pub partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    pub hw_changed: Notify,
    pub backpressure: Notify,
    pub flush_now: Notify,
    /// Signalled on every append: the flusher sleeps while nothing is pending.
    pub appended: Notify,
    pub reader: SegmentReader,
    pub shutdown: CancellationToken,
    seq: AtomicU64,
    /// Flushes in flight (see [`FLUSHES_IN_FLIGHT`]).
    pub(crate) flushes: Arc<tokio::sync::Semaphore>,
}

/// Handle to the log of one broker. Cheap to clone.
#[derive(Clone)]
pub struct LogManager {
    pub(crate) inner: Arc<Inner>,
}

impl LogManager {
    /// Opens the log with no partitions: they are taken as the metadata
    /// service assigns them ([`LogManager::take_partition`]) or, in a
    /// process without an assigner, with [`LogManager::open_topic`].
    pub async fn open(
        config: LogConfig,
        store: Arc<dyn ObjectStore>,
        meta: Arc<dyn Metadata>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LogError> {
        let boot_id = format!("{:x}", clock.now_ms());
        let reader = SegmentReader::new(
            store.clone(),
            &crate::reader::CacheConfig {
                memory_bytes: config.cache_memory_bytes,
                dir: config.cache_dir.clone(),
                disk_bytes: config.cache_disk_bytes,
            },
        )
        .await?;
        let inner = Arc::new(Inner {
            config,
            store,
            meta,
            clock,
            boot_id,
            partitions: RwLock::new(HashMap::new()),
            hw_changed: Notify::new(),
            backpressure: Notify::new(),
            flush_now: Notify::new(),
            appended: Notify::new(),
            reader,
            shutdown: CancellationToken::new(),
            seq: AtomicU64::new(0),
            flushes: Arc::new(tokio::sync::Semaphore::new(FLUSHES_IN_FLIGHT)),
        });
        let this = Self { inner };
        this.collect_wal_garbage().await;
        Ok(this)
    }

    /// Deletes this broker's WAL objects that no manifest references: left
    /// by a crash between a WAL PUT and its commit, or by a seal whose
    /// deletes failed. Runs at open, before this broker writes new ones.
    async fn collect_wal_garbage(&self) {
        // Every partition counts, not only those led here: after a failover
        // another broker's partitions may still be served from our objects.
        let mut live = std::collections::HashSet::new();
        let Ok(topics) = self.inner.meta.topics().await else {
            return;
        };
        for t in topics {
            for p in 0..t.partitions {
                let tp = TopicPartition::new(t.name.as_str(), p);
                match self.inner.meta.manifest(&tp).await {
                    Ok(m) => live.extend(m.wal.into_iter().map(|w| w.key)),
                    // Unsure what is referenced: keep everything.
                    Err(_) => return,
                }
            }
        }
        let prefix = Path::from(format!("wal/{}", self.inner.config.broker_id));
        for key in list_keys(self.inner.store.as_ref(), &prefix).await {
            if live.contains(key.as_ref()) {
                continue;
            }
            match self.inner.store.delete(&key).await {
                Ok(()) => tracing::info!(%key, "deleted unreferenced wal object"),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "deleting unreferenced wal object failed")
                }
            }
        }
    }

    /// Starts the flusher, sealer and retention loops.
    pub fn start(&self) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let inner = self.inner.clone();
        set.spawn(async move { inner.flush_loop().await });
        let inner = self.inner.clone();
        set.spawn(async move { inner.maintenance_loop().await });
        set
    }

    /// Stops the loops after one last flush of everything pending.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        // Flushes already in flight commit first, so the last one joins up.
        let _all = self
            .inner
            .flushes
            .acquire_many(FLUSHES_IN_FLIGHT as u32)
            .await;
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner.flush_once(seq).await;
        self.inner.reader.close().await;
    }

    pub fn hw_changed(&self) -> &Notify {
        &self.inner.hw_changed
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    pub fn meta(&self) -> &Arc<dyn Metadata> {
        &self.inner.meta
    }

    pub fn broker_id(&self) -> i32 {
        self.inner.config.broker_id
    }

    pub async fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.inner.partitions.read().await.get(tp).cloned()
    }

    /// A partition this broker leads, or `UnknownPartition`.
    async fn led(&self, tp: &TopicPartition) -> Result<Arc<Partition>, LogError> {
        self.partition(tp)
            .await
            .ok_or_else(|| LogError::UnknownPartition(tp.to_string()))
    }

    /// Takes leadership of the topic's partitions not yet open here, each
    /// under a new epoch. A single process without an assigner uses this;
    /// brokers in a cluster take what the assigner gave them instead
    /// ([`LogManager::take_partition`]).
    pub async fn open_topic(&self, topic: &TopicMeta) -> Result<(), LogError> {
        for p in 0..topic.partitions {
            let tp = TopicPartition::new(topic.name.as_str(), p);
            if self.inner.partitions.read().await.contains_key(&tp) {
                continue;
            }
            let manifest = self
                .inner
                .meta
                .acquire_partition(&tp, self.inner.config.broker_id)
                .await?;
            self.open_partition(topic, tp, manifest).await?;
        }
        Ok(())
    }

    /// Starts serving a partition the metadata service assigned to this
    /// broker at `epoch`; `false` when the manifest shows a newer
    /// assignment (the next sync will catch up).
    pub async fn take_partition(
        &self,
        topic: &TopicMeta,
        partition: i32,
        epoch: i32,
    ) -> Result<bool, LogError> {
        let tp = TopicPartition::new(topic.name.as_str(), partition);
        if self.inner.partitions.read().await.contains_key(&tp) {
            return Ok(true);
        }
        let manifest = self.inner.meta.manifest(&tp).await?;
        if manifest.leader != self.inner.config.broker_id || manifest.leader_epoch != epoch {
            return Ok(false);
        }
        self.open_partition(topic, tp, manifest).await?;
        Ok(true)
    }

    /// Stops serving a partition (it moved to another broker): appends and
    /// durability waits on it fail with NOT_LEADER from now on.
    pub async fn release_partition(&self, tp: &TopicPartition) {
        if let Some(p) = self.inner.partitions.write().await.remove(tp) {
            p.close();
            self.inner.hw_changed.notify_waiters();
        }
    }

    /// Partitions served here, with the epoch each was taken at.
    pub async fn held(&self) -> Vec<(TopicPartition, i32)> {
        self.inner
            .partitions
            .read()
            .await
            .iter()
            .map(|(tp, p)| (tp.clone(), p.epoch()))
            .collect()
    }

    /// Rebuilds a partition's unsealed tail from its WAL ranges and serves it.
    async fn open_partition(
        &self,
        topic: &TopicMeta,
        tp: TopicPartition,
        manifest: strata_meta::PartitionManifest,
    ) -> Result<(), LogError> {
        let config = TopicConfig::from_overrides(&topic.configs);
        let mut mem: Vec<MemBatch> = Vec::new();
        let now = self.inner.clock.now_ms();
        let loads = manifest.wal.iter().cloned().map(|r| {
            let store = self.inner.store.clone();
            async move {
                let data = store
                    .get_range(&Path::from(r.key.as_str()), r.start..r.end)
                    .await?;
                crate::flush::batches_of(&r, data, now)
            }
        });
        let mut loads = futures::stream::iter(loads).buffered(16);
        while let Some(batches) = loads.next().await {
            mem.extend(batches?);
        }
        tracing::info!(%tp, epoch = manifest.leader_epoch, end = manifest.end_offset,
            segments = manifest.segments.len(), wal_ranges = manifest.wal.len(), "partition opened");
        let part = Partition::new(
            tp.clone(),
            topic.id,
            config.clone(),
            &manifest,
            mem,
            self.inner.clock.now_ms(),
        );
        self.inner
            .partitions
            .write()
            .await
            .insert(tp, Arc::new(part));
        Ok(())
    }

    pub async fn refresh_config(&self, topic: &TopicMeta) {
        let config = TopicConfig::from_overrides(&topic.configs);
        for (tp, p) in self.inner.partitions.read().await.iter() {
            if *tp.topic == *topic.name {
                p.set_config(config.clone());
            }
        }
    }

    /// Forgets a deleted topic and removes its sealed segments and the WAL
    /// objects (`wal_keys`) only it referenced.
    pub async fn drop_topic(&self, name: &str, wal_keys: Vec<String>) {
        let mut parts = self.inner.partitions.write().await;
        parts.retain(|tp, p| {
            if *tp.topic == *name {
                p.close();
                false
            } else {
                true
            }
        });
        drop(parts);
        let store = self.inner.store.clone();
        let prefix = Path::from(strata_common::topic_prefix(name).trim_end_matches('/'));
        tokio::spawn(async move {
            let mut keys = list_keys(store.as_ref(), &prefix).await;
            keys.extend(wal_keys.iter().map(|k| Path::from(k.as_str())));
            crate::seal::delete_keys(store.as_ref(), keys).await;
        });
    }

    /// Appends (validating every batch first), waiting up to `timeout`
    /// while too much is unflushed. Durability is awaited separately with
    /// [`Partition::wait_durable`], so a connection can append its next
    /// request meanwhile.
    pub async fn append(
        &self,
        tp: &TopicPartition,
        records: &Bytes,
        timeout: Duration,
    ) -> Result<(Arc<Partition>, crate::AppendResult), LogError> {
        self.append_in_place(tp, BytesMut::from(&records[..]), timeout)
            .await
    }

    /// [`LogManager::append`] of a buffer the caller gives up: its batches are
    /// kept where they are, with their offsets written into them.
    pub async fn append_in_place(
        &self,
        tp: &TopicPartition,
        records: BytesMut,
        timeout: Duration,
    ) -> Result<(Arc<Partition>, crate::AppendResult), LogError> {
        let part = self.led(tp).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.backpressure.notified();
            let (pending, unsealed) = self.pending_and_unsealed_bytes().await;
            // Sealing runs behind a producer faster than it (a seal is ~1.5 s per
            // 64 MiB on two cores): past half again the unsealed budget, appends
            // wait for seals rather than let the tail, and a restart's reload of
            // it, grow without bound.
            let unsealed_cap = self.inner.config.max_unsealed_bytes.saturating_mul(3) / 2;
            if pending < self.inner.config.max_pending_bytes && unsealed < unsealed_cap {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(LogError::Timeout);
            }
        }
        let res = part.append_in_place(records, self.inner.clock.now_ms())?;
        if part.unflushed_bytes() >= self.inner.config.wal_flush_bytes {
            self.inner.flush_now.notify_one();
        } else {
            self.inner.appended.notify_one();
        }
        Ok((part, res))
    }

    /// Bytes not yet in a WAL object, and bytes not yet sealed, across partitions.
    async fn pending_and_unsealed_bytes(&self) -> (usize, usize) {
        let parts = self.inner.partitions.read().await;
        parts.values().fold((0, 0), |(pending, unsealed), p| {
            (pending + p.unflushed_bytes(), unsealed + p.lock().mem_bytes)
        })
    }

    /// Reads committed batches from `offset`, up to about `max_bytes`
    /// (always at least one batch when any is available). From a sealed
    /// segment, row groups still to be fetched from the store are waited for
    /// only until the batches reach `min_bytes`.
    pub async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        min_bytes: usize,
        max_bytes: usize,
    ) -> Result<ReadResult, LogError> {
        let part = self.led(tp).await?;
        let located = part.locate(offset, max_bytes)?;
        let (high_watermark, log_start_offset) = {
            let st = part.lock();
            (st.hw, st.log_start)
        };
        let (batches, sealed) = match located {
            Located::Memory(b) => (b, false),
            Located::Nothing => (Vec::new(), false),
            Located::Segment(seg) => {
                let read = self.inner.reader.read(&seg, offset, min_bytes, max_bytes);
                (read.await?, true)
            }
        };
        Ok(ReadResult {
            high_watermark,
            log_start_offset,
            batches,
            sealed,
        })
    }

    /// Kafka's ListOffsets for one partition: -2 earliest, -1 latest, -3 max
    /// timestamp, else the first offset whose timestamp is >= `timestamp`.
    /// Returns (offset, timestamp); offset -1 when none.
    pub async fn list_offset(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
    ) -> Result<(i64, i64), LogError> {
        let part = self.led(tp).await?;
        crate::seal::list_offset(&self.inner, &part, timestamp).await
    }

    /// Kafka's DeleteRecords: moves the log start offset to `offset`
    /// (-1 means the high watermark). Returns the new low watermark.
    pub async fn delete_records(&self, tp: &TopicPartition, offset: i64) -> Result<i64, LogError> {
        let part = self.led(tp).await?;
        let (epoch, hw, start) = {
            let st = part.lock();
            (st.epoch, st.hw, st.log_start)
        };
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: hw,
            });
        }
        crate::seal::truncate_front(&self.inner, &part, epoch, target).await?;
        Ok(part.log_start_offset())
    }
}

/// Every key under `prefix`; a listing error ends the listing early (the
/// callers are clean-ups that run again later).
async fn list_keys(store: &dyn ObjectStore, prefix: &Path) -> Vec<Path> {
    store
        .list(Some(prefix))
        .filter_map(|m| async move { m.ok().map(|m| m.location) })
        .collect()
        .await
}

impl Inner {
    /// Flushes pending batches once per `wal.flush.ms` on average, and at once past
    /// `wal.flush.bytes`. A write is flushed when it arrives unless the flushes so
    /// far are ahead of that rate; a broker may run one period ahead, so two
    /// flushes can go back to back but never more than one more per period. On a
    /// fixed tick, a producer sending one request per period waited for the next
    /// tick, up to a whole period, and its acks=all p99 carried nearly all of it;
    /// with no allowance at all, its requests, arriving a little more or less than
    /// a period apart, were held back to the next millisecond the timer could wake
    /// at and then paired up.
    async fn flush_loop(self: Arc<Self>) {
        let period = Duration::from_millis(self.config.wal_flush_ms.max(1));
        let (first, mut last_commit) = tokio::sync::oneshot::channel::<()>();
        let _ = first.send(());
        // When the next flush may start: one period after the schedule of one
        // flush per period would have put the last one, so the flusher can be one
        // flush ahead of it but no more.
        let start = tokio::time::Instant::now();
        let mut earliest = start.checked_sub(period).unwrap_or(start);
        loop {
            let full = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.appended.notified() => false,
                _ = self.flush_now.notified() => true,
            };
            if !full && tokio::time::Instant::now() < earliest {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(earliest) => {}
                    _ = self.flush_now.notified() => {}
                }
            }
            // A permit per flush in flight; waiting here when all are taken
            // is what keeps PUTs to one per period under a slow store.
            let Ok(permit) = self.flushes.clone().acquire_owned().await else {
                return;
            };
            if self.shutdown.is_cancelled() {
                // The final flush in `shutdown` takes what is left.
                return;
            }
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let Some(prepared) = self.prepare_flush(seq).await else {
                continue;
            };
            earliest = (earliest + period).max(tokio::time::Instant::now());
            let (done, done_rx) = tokio::sync::oneshot::channel::<()>();
            let previous = std::mem::replace(&mut last_commit, done_rx);
            let inner = self.clone();
            tokio::spawn(async move {
                // Objects are written side by side, so one slow PUT of a large
                // object no longer holds every later one back; commits still go
                // in order.
                inner.put_flush(&prepared).await;
                let _ = previous.await;
                inner.commit_flush(prepared).await;
                let _ = done.send(());
                drop(permit);
            });
        }
    }

    /// Keeps the unsealed tails within `max_unsealed_bytes` by sealing the
    /// largest ones early.
    async fn seal_for_memory(self: &Arc<Self>, parts: &[Arc<Partition>]) {
        for _ in 0..parts.len().saturating_mul(4).max(1) {
            let total: usize = parts.iter().map(|p| p.lock().mem_bytes).sum();
            if total <= self.config.max_unsealed_bytes {
                return;
            }
            let Some(largest) = parts.iter().max_by_key(|p| p.lock().mem_bytes) else {
                return;
            };
            tracing::debug!(tp = %largest.tp, total, budget = self.config.max_unsealed_bytes, "sealing early to bound memory");
            if !crate::seal::maybe_seal(self, largest, true).await {
                return;
            }
        }
    }

    async fn maintenance_loop(self: Arc<Self>) {
        let mut seal =
            tokio::time::interval(Duration::from_millis(self.config.seal_check_ms.max(10)));
        let mut retention = tokio::time::interval(Duration::from_millis(
            self.config.retention_check_ms.max(10),
        ));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = seal.tick() => {
                    let parts: Vec<_> = self.partitions.read().await.values().cloned().collect();
                    for p in &parts {
                        // Bounded, so one busy partition cannot starve the rest.
                        for _ in 0..64 {
                            if !crate::seal::maybe_seal(&self, p, false).await {
                                break;
                            }
                        }
                    }
                    self.seal_for_memory(&parts).await;
                }
                _ = retention.tick() => {
                    let parts: Vec<_> = self.partitions.read().await.values().cloned().collect();
                    for p in parts {
                        crate::seal::apply_retention(&self, &p).await;
                    }
                }
            }
        }
    }
}
