//! The metadata service interface: topics and their configs, partition
//! leadership with epochs, each partition's manifest (sealed segments and
//! the WAL ranges after them), and producer id allocation.
//!
//! Object storage holds the records; this service holds everything needed to
//! find them. Backends sit behind the [`Metadata`] trait; [`embedded`] keeps
//! a durable local file for a single node; [`etcd`] keeps everything in
//! etcd, so several `strata meta` replicas serve one cluster; [`grpc`] serves
//! any backend over the network and reaches a remote one through the same
//! trait.

pub mod assign;
pub mod embedded;
pub mod etcd;
pub mod grpc;
mod state;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_common::TopicPartition;

pub use embedded::EmbeddedMetadata;

/// One topic as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
    /// Overrides only; defaults come from `strata_common::config`.
    pub configs: BTreeMap<String, String>,
}

/// A sealed Parquet segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub base_offset: i64,
    /// Inclusive.
    pub last_offset: i64,
    pub key: String,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    /// Idempotent producers' state as of `last_offset`; `None` for segments
    /// sealed before this state was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producers: Option<ProducerSnapshot>,
}

/// What a partition knows of its idempotent producers at one offset, kept
/// with each sealed segment so a new leader can rebuild the state without
/// reading sealed records, and so retries across a restart are caught.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    /// False once any producer's state was dropped (expired, or lost with
    /// snapshot-less segments): an unknown producer may then be a forgotten one.
    pub complete: bool,
    pub producers: Vec<ProducerEntry>,
}

/// One producer id's state on one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// Broker time of its last append, for producer.id.expiration.ms.
    pub last_seen_ms: i64,
    /// Its last appended batches, oldest first (at most five).
    pub batches: Vec<ProducerBatch>,
}

/// Where one producer batch landed, to recognise a retry of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp as stored (the append time on
    /// LogAppendTime topics), answered again to a retry.
    pub timestamp: i64,
}

/// Bytes `[start, end)` of WAL object `key` hold this partition's batches
/// with offsets `base_offset..=last_offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRange {
    pub key: String,
    pub start: u64,
    pub end: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// Where a partition's records are, and who may write it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    pub leader_epoch: i32,
    pub leader: i32,
    pub log_start_offset: i64,
    /// Next offset after the last committed record: the high watermark.
    pub end_offset: i64,
    pub segments: Vec<SegmentEntry>,
    pub wal: Vec<WalRange>,
}

/// One partition's share of a WAL object, committed under its leader epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalCommit {
    pub tp: TopicPartition,
    pub epoch: i32,
    pub range: WalRange,
}

/// A consumer group's committed position in one partition, as OffsetCommit
/// gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the client did not send one.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// What removing a log prefix freed: objects the caller should delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub segments: Vec<SegmentEntry>,
    pub wal_keys: Vec<String>,
}

/// A broker as clients reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// One partition's leader and epoch as last assigned (-1: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLeader {
    pub tp: TopicPartition,
    pub leader: i32,
    pub epoch: i32,
}

/// Live brokers and every partition's leader: what a broker needs to answer
/// Metadata and to know which partitions it should serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Sorted by id.
    pub brokers: Vec<BrokerInfo>,
    pub leaders: Vec<PartitionLeader>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown partition {0}")]
    UnknownPartition(TopicPartition),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    #[error("fenced: {tp} is at leader epoch {current}, commit carried {given}")]
    Fenced {
        tp: TopicPartition,
        current: i32,
        given: i32,
    },
    #[error("offset mismatch on {tp}: end offset is {end}, commit starts at {given}")]
    OffsetMismatch {
        tp: TopicPartition,
        end: i64,
        given: i64,
    },
    #[error("invalid offset {0}")]
    InvalidOffset(i64),
    #[error("metadata storage failed: {0}")]
    Storage(String),
    /// The broker's session expired (or the service restarted): register again.
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
}

impl MetaError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, MetaError::Fenced { .. })
    }

    pub fn is_retriable(&self) -> bool {
        matches!(self, MetaError::Storage(_))
    }
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// The metadata service as the broker sees it.
#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    fn cluster_id(&self) -> String;

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta>;
    /// Deletes a topic; also returns the WAL objects no partition references
    /// any more, for the caller to delete.
    async fn delete_topic(&self, name: &str) -> Result<(TopicMeta, Vec<String>)>;
    async fn topics(&self) -> Result<Vec<TopicMeta>>;
    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>>;
    /// Grows a topic to `total` partitions.
    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicMeta>;
    /// Replaces a topic's config overrides.
    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta>;

    /// Makes `broker` the leader of `tp` under a new, higher epoch.
    async fn acquire_partition(
        &self,
        tp: &TopicPartition,
        broker: i32,
    ) -> Result<PartitionManifest>;
    async fn manifest(&self, tp: &TopicPartition) -> Result<PartitionManifest>;
    /// Commits every partition's share of one WAL object in one call; each
    /// partition succeeds or fails (fenced) on its own.
    async fn commit_wal(&self, commits: Vec<WalCommit>) -> Result<Vec<Result<()>>>;
    /// Records a sealed segment, dropping the WAL ranges it covers; returns
    /// WAL objects no partition references any more.
    async fn commit_segment(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        segment: SegmentEntry,
    ) -> Result<Vec<String>>;
    /// Moves the log start offset forward, dropping whole segments and WAL
    /// ranges below it.
    async fn truncate_front(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        log_start_offset: i64,
    ) -> Result<Freed>;
    async fn allocate_producer_id(&self) -> Result<i64>;

    /// Stores a group's committed offsets, replacing earlier commits of the
    /// same partitions.
    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<()>;
    /// Every committed offset of a group (empty for an unknown group).
    async fn fetch_offsets(&self, group: &str) -> Result<Vec<(TopicPartition, CommittedOffset)>>;
    /// Groups that hold committed offsets.
    async fn offset_groups(&self) -> Result<Vec<String>>;
    /// Drops a group's offsets for `partitions`, or all of them.
    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<()>;

    /// Registers (or re-registers) a broker and starts its session, which
    /// lasts the backend's session timeout unless heartbeats extend it.
    async fn register_broker(&self, broker: BrokerInfo) -> Result<()>;
    /// Extends a broker's session; `UnknownBroker` once it has expired.
    async fn heartbeat_broker(&self, id: i32) -> Result<()>;
    /// Live brokers and every partition's current leader.
    async fn cluster(&self) -> Result<ClusterView>;
    /// True while the replica named `replica` should run the assignment
    /// loop; with several replicas on one backend, one at a time is.
    async fn assignment_leader(&self, replica: &str) -> Result<bool>;
}
