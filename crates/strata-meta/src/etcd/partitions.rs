//! Partition leadership and manifests: acquire, WAL commits, sealed
//! segments and truncation, each a compare-and-swap on the manifest keys it
//! read, so a stale leader epoch is refused however many replicas serve.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use strata_common::TopicPartition;
use strata_proto::mvccpb::KeyValue;

use super::{from_json, refs, scratch, to_json, txn, Conflicts, EtcdMetadata};
use crate::state::Op;
use crate::{Freed, MetaError, PartitionManifest, Result, SegmentEntry, TopicMeta, WalCommit};

/// A partition's leader and epoch, kept beside its manifest so listing
/// leaders never reads manifests.
#[derive(Serialize, Deserialize)]
pub(super) struct Leader {
    pub(super) leader: i32,
    pub(super) epoch: i32,
}

/// The manifest of `tp` and its revision, if the partition is live: its
/// topic exists and counts it. Partition keys written ahead of their topic
/// key by a create still under way (or one that died) are not.
fn live(
    tp: &TopicPartition,
    topic: Option<&KeyValue>,
    manifest: Option<&KeyValue>,
) -> Result<Option<(PartitionManifest, i64)>> {
    let (Some(topic), Some(manifest)) = (topic, manifest) else {
        return Ok(None);
    };
    let t: TopicMeta = from_json(topic)?;
    if tp.partition < 0 || tp.partition >= t.partitions {
        return Ok(None);
    }
    Ok(Some((from_json(manifest)?, manifest.mod_revision)))
}

/// A live partition's manifest and its revision.
pub(super) async fn load(
    meta: &EtcdMetadata,
    tp: &TopicPartition,
) -> Result<(PartitionManifest, i64)> {
    let keys = meta.keys();
    let (_, r) = meta
        .read(vec![
            txn::get(&keys.topic(&tp.topic)),
            txn::get(&keys.partition(tp)),
        ])
        .await?;
    let mut kvs = r.into_iter().map(txn::single);
    let (t, m) = (kvs.next().flatten(), kvs.next().flatten());
    live(tp, t.as_ref(), m.as_ref())?.ok_or_else(|| MetaError::UnknownPartition(tp.clone()))
}

pub(super) async fn acquire(
    meta: &EtcdMetadata,
    tp: &TopicPartition,
    broker: i32,
) -> Result<PartitionManifest> {
    let key = meta.keys().partition(tp);
    let mut conflicts = Conflicts::new("acquire partition");
    loop {
        let (m, rev) = load(meta, tp).await?;
        let epoch = m.leader_epoch + 1;
        let mut st = scratch([(tp.clone(), m)]);
        st.apply(Op::Acquire(tp.clone(), broker, epoch));
        let m = st.manifest(tp)?.clone();
        let leader = to_json(&Leader {
            leader: broker,
            epoch,
        })?;
        let ops = vec![
            txn::put(&key, to_json(&m)?),
            txn::put(&meta.keys().leader(tp), leader),
        ];
        if meta.cas(vec![txn::unchanged(&key, rev)], ops).await? {
            tracing::debug!(%tp, broker, epoch, "partition acquired");
            return Ok(m);
        }
        conflicts.wait().await?;
    }
}

/// Commits in chunks small enough for one etcd transaction each; a
/// partition's commits stay in one chunk, so they are checked together as
/// the embedded backend checks a whole call.
pub(super) async fn commit_wal(
    meta: &EtcdMetadata,
    commits: Vec<WalCommit>,
) -> Result<Vec<Result<()>>> {
    let mut by_partition: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<&TopicPartition, usize> = HashMap::new();
    for (i, c) in commits.iter().enumerate() {
        match seen.get(&c.tp) {
            Some(&g) => by_partition[g].push(i),
            None => {
                seen.insert(&c.tp, by_partition.len());
                by_partition.push(vec![i]);
            }
        }
    }
    // A chunk reads a topic, a manifest and a WAL counter per commit at most.
    let per_chunk = (meta.max_ops / 3).max(1);
    let mut chunks: Vec<Vec<usize>> = vec![Vec::new()];
    for g in by_partition {
        let last = chunks.last_mut().expect("one chunk");
        if !last.is_empty() && last.len() + g.len() > per_chunk {
            chunks.push(g);
        } else {
            last.extend(g);
        }
    }
    let mut results: Vec<Option<Result<()>>> = (0..commits.len()).map(|_| None).collect();
    for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
        let part = chunk.iter().map(|&i| commits[i].clone()).collect();
        for (i, r) in chunk.into_iter().zip(commit_chunk(meta, part).await?) {
            results[i] = Some(r);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every commit is in a chunk"))
        .collect())
}

async fn commit_chunk(meta: &EtcdMetadata, commits: Vec<WalCommit>) -> Result<Vec<Result<()>>> {
    let keys = meta.keys();
    let tps: BTreeSet<&TopicPartition> = commits.iter().map(|c| &c.tp).collect();
    let topics: BTreeSet<&str> = tps.iter().map(|tp| &*tp.topic).collect();
    let wal: BTreeSet<&str> = commits.iter().map(|c| c.range.key.as_str()).collect();
    let mut conflicts = Conflicts::new("commit wal");
    loop {
        let mut reads = Vec::new();
        reads.extend(topics.iter().map(|t| txn::get(&keys.topic(t))));
        reads.extend(tps.iter().map(|tp| txn::get(&keys.partition(tp))));
        reads.extend(wal.iter().map(|w| txn::get(&keys.walref(w))));
        let (_, r) = meta.read(reads).await?;
        let mut kvs = r.into_iter().map(txn::single);
        let topic_kvs: BTreeMap<&str, Option<KeyValue>> =
            topics.iter().map(|t| (*t, kvs.next().flatten())).collect();
        let mut revs = BTreeMap::new();
        let mut parts = Vec::new();
        for tp in &tps {
            let m = kvs.next().flatten();
            if let Some((m, rev)) = live(tp, topic_kvs[&*tp.topic].as_ref(), m.as_ref())? {
                revs.insert((*tp).clone(), rev);
                parts.push(((*tp).clone(), m));
            }
        }
        let counters: BTreeMap<&str, Option<KeyValue>> =
            wal.iter().map(|w| (*w, kvs.next().flatten())).collect();

        let mut st = scratch(parts);
        let (apply, results) = st.check_wal(&commits);
        if apply.is_empty() {
            return Ok(results);
        }
        let added = refs::count(apply.iter().map(|c| &c.range));
        let touched: BTreeSet<TopicPartition> = apply.iter().map(|c| c.tp.clone()).collect();
        st.apply(Op::CommitWal(apply));
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        for tp in &touched {
            let key = keys.partition(tp);
            compare.push(txn::unchanged(&key, revs[tp]));
            ops.push(txn::put(&key, to_json(st.manifest(tp)?)?));
        }
        for (w, n) in &added {
            let counter = counters[w.as_str()].as_ref();
            let key = keys.walref(w);
            compare.push(txn::unchanged(&key, counter.map_or(0, |c| c.mod_revision)));
            ops.push(txn::put(
                &key,
                (refs::parse_count(counter)? + n).to_string(),
            ));
        }
        if meta.cas(compare, ops).await? {
            return Ok(results);
        }
        conflicts.wait().await?;
    }
}

pub(super) async fn commit_segment(
    meta: &EtcdMetadata,
    tp: &TopicPartition,
    epoch: i32,
    segment: SegmentEntry,
) -> Result<Vec<String>> {
    let key = meta.keys().partition(tp);
    let mut conflicts = Conflicts::new("commit segment");
    loop {
        let (m, rev) = load(meta, tp).await?;
        let mut st = scratch([(tp.clone(), m)]);
        let m = st.check_epoch(tp, epoch)?;
        if segment.last_offset >= m.end_offset {
            return Err(MetaError::InvalidOffset(segment.last_offset));
        }
        // A resend of a commit that applied but whose answer was lost (etcd
        // went away mid-call): applying it twice would list it twice.
        if m.segments.contains(&segment) {
            return Ok(Vec::new());
        }
        let dropped = refs::count(
            m.wal
                .iter()
                .filter(|w| w.last_offset <= segment.last_offset),
        );
        st.apply(Op::CommitSegment(tp.clone(), segment.clone()));
        let (records, mut ops): (Vec<String>, Vec<_>) =
            refs::records(meta, dropped)?.into_iter().unzip();
        ops.push(txn::put(&key, to_json(st.manifest(tp)?)?));
        if meta.cas(vec![txn::unchanged(&key, rev)], ops).await? {
            return Ok(refs::finish(meta, records).await);
        }
        conflicts.wait().await?;
    }
}

pub(super) async fn truncate_front(
    meta: &EtcdMetadata,
    tp: &TopicPartition,
    epoch: i32,
    log_start_offset: i64,
) -> Result<Freed> {
    let key = meta.keys().partition(tp);
    let mut conflicts = Conflicts::new("truncate partition");
    loop {
        let (m, rev) = load(meta, tp).await?;
        let mut st = scratch([(tp.clone(), m)]);
        let m = st.check_epoch(tp, epoch)?;
        if log_start_offset > m.end_offset || log_start_offset < 0 {
            return Err(MetaError::InvalidOffset(log_start_offset));
        }
        if log_start_offset <= m.log_start_offset {
            return Ok(Freed::default());
        }
        let segments = m
            .segments
            .iter()
            .filter(|s| s.last_offset < log_start_offset)
            .cloned()
            .collect();
        let dropped = refs::count(m.wal.iter().filter(|w| w.last_offset < log_start_offset));
        st.apply(Op::TruncateFront(tp.clone(), log_start_offset));
        let (records, mut ops): (Vec<String>, Vec<_>) =
            refs::records(meta, dropped)?.into_iter().unzip();
        ops.push(txn::put(&key, to_json(st.manifest(tp)?)?));
        if meta.cas(vec![txn::unchanged(&key, rev)], ops).await? {
            return Ok(Freed {
                segments,
                wal_keys: refs::finish(meta, records).await,
            });
        }
        conflicts.wait().await?;
    }
}
