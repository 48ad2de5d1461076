//! Test support shared with other crates (feature `testing`): the behaviour
//! every [`Metadata`] backend must show, run against each one (embedded,
//! embedded behind gRPC, etcd), so a difference between backends surfaces
//! here rather than as a double leader or a lost commit in production.
//!
//! The suite assumes nothing about state it did not create: names carry a
//! random run id and broker ids are random, so it can run repeatedly, and
//! concurrently, against one shared backend.

mod data;
pub mod etcd;
mod liveness;

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_common::TopicPartition;

use crate::{
    CommittedOffset, MetaError, Metadata, PartitionManifest, Result, SegmentEntry, WalCommit,
    WalRange,
};

/// Runs every check against `meta`, panicking on the first difference.
///
/// Broker expiry is awaited, not simulated: give the backend a short session
/// timeout (a second or so) or the suite waits out the default one.
pub async fn conformance_suite(meta: Arc<dyn Metadata>) {
    let run = Run::new();
    let m = &*meta;
    cluster_id(m).await;
    data::topics(m, &run).await;
    data::partitions_and_configs(m, &run).await;
    data::delete_topic(m, &run).await;
    data::leadership_and_wal(m, &run).await;
    data::segments(m, &run).await;
    data::truncation(m, &run).await;
    producer_ids(meta.clone()).await;
    data::offsets(m, &run).await;
    liveness::cluster_view(m, &run).await;
    liveness::brokers(m, &run).await;
}

/// Names and ids unique to one run of the suite.
pub(crate) struct Run {
    id: String,
    broker_base: i32,
}

impl Run {
    fn new() -> Self {
        let u = uuid::Uuid::new_v4();
        let bits = u.as_u128();
        Self {
            id: u.simple().to_string()[..12].to_string(),
            // Far from the small ids real brokers use.
            broker_base: 1_000_000 + (bits % 1_000_000_000) as i32,
        }
    }

    pub(crate) fn name(&self, what: &str) -> String {
        format!("conformance-{}-{what}", self.id)
    }

    pub(crate) fn broker(&self, n: i32) -> i32 {
        self.broker_base + n
    }
}

pub(crate) fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

pub(crate) fn range(key: &str, base: i64, last: i64) -> WalRange {
    WalRange {
        key: key.to_string(),
        start: 100,
        end: 200,
        base_offset: base,
        last_offset: last,
        max_timestamp: 1_000 + last,
    }
}

pub(crate) fn commit(tp: &TopicPartition, epoch: i32, range: WalRange) -> WalCommit {
    WalCommit {
        tp: tp.clone(),
        epoch,
        range,
    }
}

pub(crate) fn segment(base: i64, last: i64) -> SegmentEntry {
    SegmentEntry {
        base_offset: base,
        last_offset: last,
        key: format!("topics/t/0/{base:020}.parquet"),
        size_bytes: 4096,
        max_timestamp: 1_000 + last,
        producers: None,
    }
}

pub(crate) fn offset(o: i64) -> CommittedOffset {
    CommittedOffset {
        offset: o,
        leader_epoch: if o % 2 == 0 { -1 } else { 3 },
        metadata: format!("meta-{o}"),
        commit_timestamp: 1_700_000_000_000 + o,
    }
}

pub(crate) fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Commits one range and insists it was accepted.
pub(crate) async fn commit_ok(m: &dyn Metadata, c: WalCommit) {
    let what = format!("{c:?}");
    let results = m.commit_wal(vec![c]).await.expect("commit_wal call");
    assert_eq!(results.len(), 1, "one result per commit");
    if let Err(e) = &results[0] {
        panic!("commit {what} refused: {e}");
    }
}

/// Creates a topic and makes broker `leader` lead every partition; returns
/// the epochs, by partition.
pub(crate) async fn led_topic(
    m: &dyn Metadata,
    name: &str,
    partitions: i32,
    leader: i32,
) -> Vec<i32> {
    m.create_topic(name, partitions, BTreeMap::new())
        .await
        .expect("create topic");
    let mut epochs = Vec::new();
    for p in 0..partitions {
        let man = m
            .acquire_partition(&tp(name, p), leader)
            .await
            .expect("acquire");
        epochs.push(man.leader_epoch);
    }
    epochs
}

pub(crate) async fn manifest(m: &dyn Metadata, tp: &TopicPartition) -> PartitionManifest {
    m.manifest(tp).await.expect("manifest")
}

pub(crate) fn expect_err<T: std::fmt::Debug>(
    r: Result<T>,
    what: &str,
    ok: impl FnOnce(&MetaError) -> bool,
) {
    match r {
        Err(e) if ok(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    }
}

async fn cluster_id(m: &dyn Metadata) {
    let id = m.cluster_id();
    assert!(!id.is_empty(), "cluster id is set");
    assert_eq!(m.cluster_id(), id, "cluster id is stable");
}

/// Ids stay unique under concurrent allocation, where a backend that reads
/// and then writes without a compare-and-swap would hand one out twice.
async fn producer_ids(meta: Arc<dyn Metadata>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let meta = meta.clone();
        tasks.spawn(async move { meta.allocate_producer_id().await });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let id = r.expect("task").expect("allocate_producer_id");
        assert!(id >= 0, "producer id {id} is not negative");
        ids.push(id);
    }
    ids.push(meta.allocate_producer_id().await.expect("allocate"));
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "producer ids are unique: {ids:?}");
}
