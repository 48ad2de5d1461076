//! The embedded backend: state in memory, every change appended to a local
//! log file and fsynced before it is acknowledged, compacted into a snapshot
//! from time to time. Used by a single-node `strata serve`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use strata_common::{Clock, SystemClock, TopicPartition};

use crate::state::{check_configs, check_growth, check_new_topic, Op, State};
use crate::{
    BrokerInfo, ClusterView, CommittedOffset, Freed, MetaError, Metadata, PartitionLeader,
    PartitionManifest, Result, SegmentEntry, TopicMeta, WalCommit,
};

/// Log entries between snapshots: bounds both replay time and file size.
const COMPACT_EVERY: usize = 20_000;

struct Inner {
    dir: PathBuf,
    state: State,
    log: File,
    log_entries: usize,
}

/// Metadata kept in `dir` (`snapshot.json` + `log.jsonl`). Broker
/// sessions are kept in memory only: after a restart brokers register again.
#[derive(Clone)]
pub struct EmbeddedMetadata {
    inner: Arc<Mutex<Inner>>,
    cluster_id: String,
    sessions: Arc<Mutex<Sessions>>,
}

/// Live brokers and when each session ends.
struct Sessions {
    clock: Arc<dyn Clock>,
    timeout_ms: i64,
    brokers: BTreeMap<i32, (BrokerInfo, i64)>,
}

impl Sessions {
    fn expire(&mut self) {
        let now = self.clock.now_ms();
        self.brokers.retain(|id, (_, until)| {
            let live = *until > now;
            if !live {
                tracing::info!(broker = id, "broker session expired");
            }
            live
        });
    }
}

/// Kafka's `broker.session.timeout.ms` is 9 s; brokers here heartbeat every
/// second, so a shorter default moves partitions off a dead broker sooner.
pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 6_000;

fn storage<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Storage(e.to_string())
}

impl EmbeddedMetadata {
    /// Opens (or creates) the metadata in `dir`, replaying its log.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(storage)?;
        let snap_path = dir.join("snapshot.json");
        let mut state: State = match fs::read(&snap_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(storage)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                cluster_id: uuid::Uuid::new_v4().simple().to_string(),
                next_producer_id: 1000,
                ..Default::default()
            },
            Err(e) => return Err(storage(e)),
        };
        state.rebuild_refs();
        let log_path = dir.join("log.jsonl");
        let mut log_entries = 0;
        if let Ok(f) = File::open(&log_path) {
            for line in BufReader::new(f).lines() {
                let line = line.map_err(storage)?;
                // A torn last line (crash mid-write) was never acknowledged.
                match serde_json::from_str::<Op>(&line) {
                    Ok(op) => {
                        state.apply(op);
                        log_entries += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring torn metadata log entry");
                        break;
                    }
                }
            }
        }
        let cluster_id = state.cluster_id.clone();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(storage)?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            state,
            log,
            log_entries,
        };
        // Compact at open too, so a torn tail never stays in the log.
        inner.compact()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
            cluster_id,
            sessions: Arc::new(Mutex::new(Sessions {
                clock: Arc::new(SystemClock),
                timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
                brokers: BTreeMap::new(),
            })),
        })
    }

    /// Sets how long a broker stays live without heartbeats, and the clock
    /// that measures it.
    pub fn with_sessions(self, timeout_ms: i64, clock: Arc<dyn Clock>) -> Self {
        {
            let mut s = self.sessions.lock().unwrap();
            s.timeout_ms = timeout_ms;
            s.clock = clock;
        }
        self
    }

    /// Runs `f` with the state locked, off the async runtime (it fsyncs).
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner
                .lock()
                .map_err(|_| storage("metadata lock poisoned"))?;
            f(&mut g)
        })
        .await
        .map_err(storage)?
    }
}

impl Inner {
    fn commit(&mut self, op: Op) -> Result<()> {
        let mut line = serde_json::to_vec(&op).map_err(storage)?;
        line.push(b'\n');
        self.log.write_all(&line).map_err(storage)?;
        self.log.sync_data().map_err(storage)?;
        self.state.apply(op);
        self.log_entries += 1;
        if self.log_entries >= COMPACT_EVERY {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        let tmp = self.dir.join("snapshot.json.tmp");
        let body = serde_json::to_vec(&self.state).map_err(storage)?;
        let mut f = File::create(&tmp).map_err(storage)?;
        f.write_all(&body).map_err(storage)?;
        f.sync_all().map_err(storage)?;
        fs::rename(&tmp, self.dir.join("snapshot.json")).map_err(storage)?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.log = File::create(self.dir.join("log.jsonl")).map_err(storage)?;
        self.log.sync_all().map_err(storage)?;
        self.log_entries = 0;
        Ok(())
    }
}

#[async_trait]
impl Metadata for EmbeddedMetadata {
    fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        check_new_topic(name, partitions, &configs)?;
        let name = name.to_string();
        self.with(move |inner| {
            if inner.state.topics.contains_key(&name) {
                return Err(MetaError::TopicExists(name));
            }
            let t = TopicMeta {
                name,
                id: uuid::Uuid::new_v4(),
                partitions,
                configs,
            };
            inner.commit(Op::CreateTopic(t.clone()))?;
            Ok(t)
        })
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<(TopicMeta, Vec<String>)> {
        let name = name.to_string();
        self.with(move |inner| {
            let t = inner.state.topic(&name)?.clone();
            let orphans = inner.state.preview_delete(&t);
            inner.commit(Op::DeleteTopic(name))?;
            Ok((t, orphans))
        })
        .await
    }

    async fn topics(&self) -> Result<Vec<TopicMeta>> {
        let g = self.inner.lock().map_err(|_| storage("lock poisoned"))?;
        Ok(g.state.topics.values().cloned().collect())
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        let g = self.inner.lock().map_err(|_| storage("lock poisoned"))?;
        Ok(g.state.topics.get(name).cloned())
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicMeta> {
        let name = name.to_string();
        self.with(move |inner| {
            check_growth(inner.state.topic(&name)?, total)?;
            inner.commit(Op::SetPartitions(name.clone(), total))?;
            Ok(inner.state.topic(&name)?.clone())
        })
        .await
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        check_configs(&configs)?;
        let name = name.to_string();
        self.with(move |inner| {
            inner.state.topic(&name)?;
            inner.commit(Op::SetConfigs(name.clone(), configs))?;
            Ok(inner.state.topic(&name)?.clone())
        })
        .await
    }

    async fn acquire_partition(
        &self,
        tp: &TopicPartition,
        broker: i32,
    ) -> Result<PartitionManifest> {
        let tp = tp.clone();
        self.with(move |inner| {
            let epoch = inner.state.manifest(&tp)?.leader_epoch + 1;
            inner.commit(Op::Acquire(tp.clone(), broker, epoch))?;
            Ok(inner.state.manifest(&tp)?.clone())
        })
        .await
    }

    async fn manifest(&self, tp: &TopicPartition) -> Result<PartitionManifest> {
        let g = self.inner.lock().map_err(|_| storage("lock poisoned"))?;
        Ok(g.state.manifest(tp)?.clone())
    }

    async fn commit_wal(&self, commits: Vec<WalCommit>) -> Result<Vec<Result<()>>> {
        self.with(move |inner| {
            let (apply, results) = inner.state.check_wal(&commits);
            if !apply.is_empty() {
                inner.commit(Op::CommitWal(apply))?;
            }
            Ok(results)
        })
        .await
    }

    async fn commit_segment(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        segment: SegmentEntry,
    ) -> Result<Vec<String>> {
        let tp = tp.clone();
        self.with(move |inner| {
            let m = inner.state.check_epoch(&tp, epoch)?;
            if segment.last_offset >= m.end_offset {
                return Err(MetaError::InvalidOffset(segment.last_offset));
            }
            let orphans = inner.state.preview_segment(&tp, &segment);
            inner.commit(Op::CommitSegment(tp, segment))?;
            Ok(orphans)
        })
        .await
    }

    async fn truncate_front(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        log_start_offset: i64,
    ) -> Result<Freed> {
        let tp = tp.clone();
        self.with(move |inner| {
            let m = inner.state.check_epoch(&tp, epoch)?;
            if log_start_offset > m.end_offset || log_start_offset < 0 {
                return Err(MetaError::InvalidOffset(log_start_offset));
            }
            if log_start_offset <= m.log_start_offset {
                return Ok(Freed::default());
            }
            let freed = inner.state.preview_truncate(&tp, log_start_offset);
            inner.commit(Op::TruncateFront(tp, log_start_offset))?;
            Ok(freed)
        })
        .await
    }

    async fn allocate_producer_id(&self) -> Result<i64> {
        self.with(|inner| {
            let id = inner.state.next_producer_id;
            inner.commit(Op::ProducerId(id + 1))?;
            Ok(id)
        })
        .await
    }

    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        let mut s = self.sessions.lock().unwrap();
        let until = s.clock.now_ms() + s.timeout_ms;
        tracing::info!(broker = broker.id, host = %broker.host, port = broker.port, "broker registered");
        s.brokers.insert(broker.id, (broker, until));
        Ok(())
    }

    async fn heartbeat_broker(&self, id: i32) -> Result<()> {
        let mut s = self.sessions.lock().unwrap();
        s.expire();
        let until = s.clock.now_ms() + s.timeout_ms;
        match s.brokers.get_mut(&id) {
            Some(entry) => {
                entry.1 = until;
                Ok(())
            }
            None => Err(MetaError::UnknownBroker(id)),
        }
    }

    async fn cluster(&self) -> Result<ClusterView> {
        let brokers = {
            let mut s = self.sessions.lock().unwrap();
            s.expire();
            s.brokers.values().map(|(b, _)| b.clone()).collect()
        };
        let leaders = self
            .with(|inner| {
                Ok(inner
                    .state
                    .topics
                    .values()
                    .flat_map(|t| {
                        (0..t.partitions).map(|p| TopicPartition::new(t.name.as_str(), p))
                    })
                    .filter_map(|tp| {
                        let m = inner.state.manifest(&tp).ok()?;
                        Some(PartitionLeader {
                            leader: m.leader,
                            epoch: m.leader_epoch,
                            tp,
                        })
                    })
                    .collect())
            })
            .await?;
        Ok(ClusterView { brokers, leaders })
    }

    async fn assignment_leader(&self, _replica: &str) -> Result<bool> {
        // One process owns the embedded file, so it always assigns.
        Ok(true)
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = group.to_string();
        self.with(move |inner| inner.commit(Op::CommitOffsets(group, offsets)))
            .await
    }

    async fn fetch_offsets(&self, group: &str) -> Result<Vec<(TopicPartition, CommittedOffset)>> {
        let group = group.to_string();
        self.with(move |inner| Ok(inner.state.group_offsets(&group)))
            .await
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        self.with(|inner| Ok(inner.state.groups.keys().cloned().collect()))
            .await
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<()> {
        let group = group.to_string();
        self.with(move |inner| {
            if !inner.state.groups.contains_key(&group) {
                return Ok(());
            }
            inner.commit(Op::DeleteOffsets(group, partitions))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
