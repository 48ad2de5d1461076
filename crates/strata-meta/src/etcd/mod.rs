//! The etcd backend: every piece of metadata is an etcd key (layout in
//! `keys.rs`), so any number of `strata meta` replicas can serve one cluster
//! from the same etcd, and the cluster survives the loss of a machine.
//!
//! Semantics are the embedded backend's: the validations and manifest
//! changes are `crate::state`'s own code, run on the few manifests an
//! operation reads. What etcd adds is concurrency control: every
//! read-modify-write is a transaction that compares the `mod_revision` of
//! each key it read, retried from a fresh read when another replica got
//! there first. So a commit carrying a stale leader epoch is refused as
//! exactly as in one process. WAL object references are counted in
//! `walrefs/` keys (see `refs.rs`).

mod client;
mod groups;
mod keys;
mod partitions;
mod refs;
mod sessions;
mod topics;
mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use strata_common::TopicPartition;
use strata_proto::etcdserverpb::{Compare, RangeResponse, RequestOp, TxnRequest};
use strata_proto::mvccpb::KeyValue;

use crate::state::State;
use crate::{
    BrokerInfo, ClusterView, CommittedOffset, Freed, MetaError, Metadata, PartitionManifest,
    Result, SegmentEntry, TopicMeta, WalCommit,
};
use client::Client;
use keys::Keys;
pub use txn::DEFAULT_MAX_TXN_OPS;

/// Conflicting writers each make progress (a failed compare means another
/// write succeeded), so this many conflicts in a row means a hot key, not a
/// livelock; the caller gets a retriable error.
const MAX_CONFLICTS: u32 = 200;

/// Metadata kept in etcd under a key prefix. Cheap to clone; clones share
/// one set of connections.
#[derive(Clone)]
pub struct EtcdMetadata {
    inner: Arc<Inner>,
    max_ops: usize,
}

struct Inner {
    client: Client,
    keys: Keys,
    cluster_id: String,
    /// Lease TTL of broker sessions and of the assigner key.
    ttl_secs: i64,
}

impl EtcdMetadata {
    /// Connects to the etcd cluster at `endpoints` (`host:port` or URLs),
    /// keeping everything under `prefix`. Broker sessions and the assigner
    /// role last `session_timeout_ms` without renewal (rounded up to whole
    /// seconds, etcd's lease unit; etcd may raise short ones to its minimum).
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        session_timeout_ms: i64,
    ) -> Result<Self> {
        let client = Client::new(endpoints)?;
        let keys = Keys::new(prefix);
        let key = keys.cluster_id();
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        // Whoever creates the id first wins; everyone else reads theirs.
        let resp = client
            .txn(TxnRequest {
                compare: vec![txn::unchanged(&key, 0)],
                success: vec![txn::put(&key, fresh.clone())],
                failure: vec![txn::get(&key)],
            })
            .await?;
        let cluster_id = if resp.succeeded {
            fresh
        } else {
            let kv = txn::ranges(resp)?
                .into_iter()
                .next()
                .and_then(txn::single)
                .ok_or_else(|| MetaError::Storage("cluster id vanished".into()))?;
            String::from_utf8(kv.value).map_err(storage)?
        };
        tracing::info!(cluster_id, prefix, "connected to etcd");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                keys,
                cluster_id,
                ttl_secs: ((session_timeout_ms.max(1) + 999) / 1000).max(1),
            }),
            max_ops: DEFAULT_MAX_TXN_OPS,
        })
    }

    /// For an etcd run with a `--max-txn-ops` other than the default 128:
    /// bigger changes then take fewer transactions.
    pub fn with_max_txn_ops(mut self, max_ops: usize) -> Self {
        // Every planned transaction needs a few fixed operations besides
        // its batch.
        self.max_ops = max_ops.max(8);
        self
    }

    /// Gives up the assigner role if `replica` holds it, so another replica
    /// takes it at once instead of after the lease runs out.
    pub async fn resign(&self, replica: &str) -> Result<()> {
        sessions::resign(self, replica).await
    }

    fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(txn::single(self.client().range(txn::range(key)).await?))
    }

    async fn list(&self, prefix: &str, keys_only: bool) -> Result<Vec<KeyValue>> {
        Ok(self
            .client()
            .range(txn::range_prefix(prefix, keys_only))
            .await?
            .kvs)
    }

    /// Runs range operations as one read-only transaction, so they see one
    /// revision of the store; returns that revision and their results.
    async fn read(&self, ops: Vec<RequestOp>) -> Result<(i64, Vec<RangeResponse>)> {
        let resp = self
            .client()
            .txn(TxnRequest {
                compare: Vec::new(),
                success: ops,
                failure: Vec::new(),
            })
            .await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok((revision, txn::ranges(resp)?))
    }

    /// Applies `ops` if every compare holds; false when one did not.
    async fn cas(&self, compare: Vec<Compare>, ops: Vec<RequestOp>) -> Result<bool> {
        let resp = self
            .client()
            .txn(TxnRequest {
                compare,
                success: ops,
                failure: Vec::new(),
            })
            .await?;
        Ok(resp.succeeded)
    }
}

fn storage<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError::Storage(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(storage)
}

fn from_json<T: DeserializeOwned>(kv: &KeyValue) -> Result<T> {
    serde_json::from_slice(&kv.value).map_err(|e| {
        MetaError::Storage(format!(
            "bad value at {}: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })
}

/// A state holding just `parts`, to run `crate::state`'s checks and changes
/// on manifests read from etcd.
fn scratch(parts: impl IntoIterator<Item = (TopicPartition, PartitionManifest)>) -> State {
    let mut s = State::default();
    for (tp, m) in parts {
        s.partitions.insert(crate::state::pkey(&tp), m);
    }
    s
}

/// Paces the retries of a compare-and-swap loop.
struct Conflicts {
    what: &'static str,
    seen: u32,
}

impl Conflicts {
    fn new(what: &'static str) -> Self {
        Self { what, seen: 0 }
    }

    async fn wait(&mut self) -> Result<()> {
        self.seen += 1;
        if self.seen >= MAX_CONFLICTS {
            return Err(MetaError::Storage(format!(
                "{}: gave up after {} conflicting writes",
                self.what, self.seen
            )));
        }
        tracing::debug!(
            what = self.what,
            conflicts = self.seen,
            "etcd write conflicted; retrying"
        );
        if self.seen > 2 {
            tokio::time::sleep(Duration::from_millis(u64::from(self.seen.min(50)))).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Metadata for EtcdMetadata {
    fn cluster_id(&self) -> String {
        self.inner.cluster_id.clone()
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        topics::create(self, name, partitions, configs).await
    }

    async fn delete_topic(&self, name: &str) -> Result<(TopicMeta, Vec<String>)> {
        topics::delete(self, name).await
    }

    async fn topics(&self) -> Result<Vec<TopicMeta>> {
        topics::list(self).await
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        topics::get(self, name).await.map(|t| t.map(|(t, _)| t))
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicMeta> {
        topics::grow(self, name, total).await
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        topics::set_configs(self, name, configs).await
    }

    async fn acquire_partition(
        &self,
        tp: &TopicPartition,
        broker: i32,
    ) -> Result<PartitionManifest> {
        partitions::acquire(self, tp, broker).await
    }

    async fn manifest(&self, tp: &TopicPartition) -> Result<PartitionManifest> {
        Ok(partitions::load(self, tp).await?.0)
    }

    async fn commit_wal(&self, commits: Vec<WalCommit>) -> Result<Vec<Result<()>>> {
        partitions::commit_wal(self, commits).await
    }

    async fn commit_segment(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        segment: SegmentEntry,
    ) -> Result<Vec<String>> {
        partitions::commit_segment(self, tp, epoch, segment).await
    }

    async fn truncate_front(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        log_start_offset: i64,
    ) -> Result<Freed> {
        partitions::truncate_front(self, tp, epoch, log_start_offset).await
    }

    async fn allocate_producer_id(&self) -> Result<i64> {
        topics::allocate_producer_id(self).await
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<()> {
        groups::commit(self, group, offsets).await
    }

    async fn fetch_offsets(&self, group: &str) -> Result<Vec<(TopicPartition, CommittedOffset)>> {
        groups::fetch(self, group).await
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        groups::list(self).await
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<()> {
        groups::delete(self, group, partitions).await
    }

    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        sessions::register(self, broker).await
    }

    async fn heartbeat_broker(&self, id: i32) -> Result<()> {
        sessions::heartbeat(self, id).await
    }

    async fn cluster(&self) -> Result<ClusterView> {
        sessions::cluster(self).await
    }

    async fn assignment_leader(&self, replica: &str) -> Result<bool> {
        sessions::assignment_leader(self, replica).await
    }
}
