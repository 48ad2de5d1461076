//! Consumer groups' committed offsets: one key per group and partition.
//! Commits are last-writer-wins, as in Kafka, so they need no compares.

use std::collections::{BTreeMap, BTreeSet};

use strata_common::TopicPartition;

use super::{from_json, to_json, txn, EtcdMetadata};
use crate::{CommittedOffset, Result};

/// Stores the offsets, a transaction per batch of partitions (a commit of
/// more partitions than one transaction carries lands in parts).
pub(super) async fn commit(
    meta: &EtcdMetadata,
    group: &str,
    offsets: Vec<(TopicPartition, CommittedOffset)>,
) -> Result<()> {
    // etcd refuses a transaction naming a key twice; the last commit of a
    // partition wins, as within one embedded commit.
    let latest: BTreeMap<TopicPartition, CommittedOffset> = offsets.into_iter().collect();
    let ops = latest
        .iter()
        .map(|(tp, o)| Ok(txn::put(&meta.keys().offset(group, tp), to_json(o)?)))
        .collect::<Result<Vec<_>>>()?;
    for batch in txn::batches(ops, meta.max_ops) {
        meta.cas(Vec::new(), batch).await?;
    }
    Ok(())
}

pub(super) async fn fetch(
    meta: &EtcdMetadata,
    group: &str,
) -> Result<Vec<(TopicPartition, CommittedOffset)>> {
    let kvs = meta.list(&meta.keys().group(group), false).await?;
    let mut out = Vec::new();
    for kv in &kvs {
        if let Some((g, tp)) = meta.keys().parse_offset(txn::key_str(kv)?) {
            if g == group {
                out.push((tp, from_json(kv)?));
            }
        }
    }
    // Keys sort "10" before "2"; callers expect partition order.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub(super) async fn list(meta: &EtcdMetadata) -> Result<Vec<String>> {
    let kvs = meta.list(&meta.keys().all_groups(), true).await?;
    let mut groups = BTreeSet::new();
    for kv in &kvs {
        if let Some((g, _)) = meta.keys().parse_offset(txn::key_str(kv)?) {
            groups.insert(g);
        }
    }
    Ok(groups.into_iter().collect())
}

pub(super) async fn delete(
    meta: &EtcdMetadata,
    group: &str,
    partitions: Option<Vec<TopicPartition>>,
) -> Result<()> {
    let ops = match partitions {
        None => vec![txn::delete_prefix(&meta.keys().group(group))],
        Some(tps) => tps
            .into_iter()
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|tp| txn::delete(&meta.keys().offset(group, tp)))
            .collect(),
    };
    for batch in txn::batches(ops, meta.max_ops) {
        meta.cas(Vec::new(), batch).await?;
    }
    Ok(())
}
