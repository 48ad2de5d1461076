//! Topics (create, grow, configure, delete) and producer id allocation.
//!
//! A topic's partition keys are written before its topic key (in one
//! transaction when they fit, else in batches ahead of it, each guarded by
//! the same compare), and a partition counts only once its topic key covers
//! it; so a create or grow that dies halfway leaves nothing visible.

use std::collections::BTreeMap;

use strata_common::TopicPartition;
use strata_proto::etcdserverpb::{Compare, RangeResponse, RequestOp};

use super::{from_json, refs, storage, to_json, txn, Conflicts, EtcdMetadata};
use crate::state::{check_configs, check_growth, check_new_topic};
use crate::{MetaError, PartitionManifest, Result, TopicMeta};

/// Where producer ids start, as in the embedded backend.
const FIRST_PRODUCER_ID: i64 = 1000;

/// Writes `ahead` and then `last` while every compare in `guard` holds; false
/// (and `last` unwritten) when one does not.
async fn guarded(
    meta: &EtcdMetadata,
    guard: Vec<Compare>,
    ahead: Vec<RequestOp>,
    last: Vec<RequestOp>,
) -> Result<bool> {
    let room = meta.max_ops - last.len();
    if ahead.len() <= room && txn::fits(&ahead, meta.max_ops) {
        let mut ops = ahead;
        ops.extend(last);
        return meta.cas(guard, ops).await;
    }
    for batch in txn::batches(ahead, meta.max_ops) {
        if !meta.cas(guard.clone(), batch).await? {
            return Ok(false);
        }
    }
    meta.cas(guard, last).await
}

fn fresh_partitions(
    meta: &EtcdMetadata,
    name: &str,
    range: std::ops::Range<i32>,
) -> Result<Vec<RequestOp>> {
    let fresh = to_json(&PartitionManifest {
        leader: -1,
        ..Default::default()
    })?;
    Ok(range
        .map(|p| {
            let key = meta.keys().partition(&TopicPartition::new(name, p));
            txn::put(&key, fresh.clone())
        })
        .collect())
}

pub(super) async fn create(
    meta: &EtcdMetadata,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<TopicMeta> {
    check_new_topic(name, partitions, &configs)?;
    let t = TopicMeta {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions,
        configs,
    };
    let key = meta.keys().topic(name);
    let ahead = fresh_partitions(meta, name, 0..partitions)?;
    let last = vec![txn::put(&key, to_json(&t)?)];
    if guarded(meta, vec![txn::unchanged(&key, 0)], ahead, last).await? {
        Ok(t)
    } else {
        Err(MetaError::TopicExists(name.to_string()))
    }
}

/// A topic and the revision of its key.
pub(super) async fn get(meta: &EtcdMetadata, name: &str) -> Result<Option<(TopicMeta, i64)>> {
    match meta.get(&meta.keys().topic(name)).await? {
        Some(kv) => Ok(Some((from_json(&kv)?, kv.mod_revision))),
        None => Ok(None),
    }
}

pub(super) async fn list(meta: &EtcdMetadata) -> Result<Vec<TopicMeta>> {
    meta.list(&meta.keys().topics(), false)
        .await?
        .iter()
        .map(from_json)
        .collect()
}

pub(super) async fn grow(meta: &EtcdMetadata, name: &str, total: i32) -> Result<TopicMeta> {
    let key = meta.keys().topic(name);
    let mut conflicts = Conflicts::new("create partitions");
    loop {
        let (mut t, rev) = get(meta, name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        check_growth(&t, total)?;
        let ahead = fresh_partitions(meta, name, t.partitions..total)?;
        t.partitions = total;
        let last = vec![txn::put(&key, to_json(&t)?)];
        if guarded(meta, vec![txn::unchanged(&key, rev)], ahead, last).await? {
            return Ok(t);
        }
        conflicts.wait().await?;
    }
}

pub(super) async fn set_configs(
    meta: &EtcdMetadata,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<TopicMeta> {
    check_configs(&configs)?;
    let key = meta.keys().topic(name);
    let mut conflicts = Conflicts::new("set topic configs");
    loop {
        let (mut t, rev) = get(meta, name)
            .await?
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))?;
        t.configs = configs.clone();
        let ops = vec![txn::put(&key, to_json(&t)?)];
        if meta.cas(vec![txn::unchanged(&key, rev)], ops).await? {
            return Ok(t);
        }
        conflicts.wait().await?;
    }
}

/// Deletes the topic key, every partition and leader key and the topic's
/// group offsets in one transaction, with the release records of the WAL
/// references its manifests held. Group offsets beyond what fits are
/// deleted right after: they name a topic that no longer exists.
pub(super) async fn delete(meta: &EtcdMetadata, name: &str) -> Result<(TopicMeta, Vec<String>)> {
    let keys = meta.keys();
    let tkey = keys.topic(name);
    let parts = keys.partitions(name);
    let mut conflicts = Conflicts::new("delete topic");
    loop {
        let (rev, r) = meta
            .read(vec![
                txn::get(&tkey),
                txn::get_prefix(&parts, false),
                txn::get_prefix(&keys.all_groups(), true),
            ])
            .await?;
        let [t, manifests, groups]: [RangeResponse; 3] = r
            .try_into()
            .map_err(|_| storage("etcd txn: expected three range results"))?;
        let Some(tkv) = txn::single(t) else {
            return Err(MetaError::UnknownTopic(name.to_string()));
        };
        let topic: TopicMeta = from_json(&tkv)?;
        let mut dropped: BTreeMap<String, i64> = BTreeMap::new();
        for kv in &manifests.kvs {
            let m: PartitionManifest = from_json(kv)?;
            for (k, n) in refs::count(&m.wal) {
                *dropped.entry(k).or_default() += n;
            }
        }
        let mut offsets = Vec::new();
        for kv in &groups.kvs {
            let k = txn::key_str(kv)?;
            if keys
                .parse_offset(k)
                .is_some_and(|(_, tp)| &*tp.topic == name)
            {
                offsets.push(txn::delete(k));
            }
        }
        let (records, mut ops): (Vec<String>, Vec<_>) =
            refs::records(meta, dropped)?.into_iter().unzip();
        ops.push(txn::delete(&tkey));
        ops.push(txn::delete_prefix(&parts));
        ops.push(txn::delete_prefix(&keys.leaders(name)));
        let now = meta.max_ops.saturating_sub(ops.len()).min(offsets.len());
        let later = offsets.split_off(now);
        ops.extend(offsets);
        // Partition keys only go with their topic key, so the topic's
        // compare covers deletions; `none_newer` covers every other change.
        let compare = vec![
            txn::unchanged(&tkey, tkv.mod_revision),
            txn::none_newer(&parts, rev),
        ];
        if meta.cas(compare, ops).await? {
            for batch in txn::batches(later, meta.max_ops) {
                if let Err(e) = meta.cas(Vec::new(), batch).await {
                    tracing::warn!(topic = name, error = %e, "deleting a deleted topic's group offsets failed");
                }
            }
            tracing::info!(topic = name, "topic deleted");
            return Ok((topic, refs::finish(meta, records).await));
        }
        conflicts.wait().await?;
    }
}

pub(super) async fn allocate_producer_id(meta: &EtcdMetadata) -> Result<i64> {
    let key = meta.keys().producer_id();
    let mut conflicts = Conflicts::new("allocate producer id");
    loop {
        let kv = meta.get(&key).await?;
        let id = match &kv {
            Some(kv) => refs::parse_count(Some(kv))?,
            None => FIRST_PRODUCER_ID,
        };
        let rev = kv.map_or(0, |kv| kv.mod_revision);
        let ops = vec![txn::put(&key, (id + 1).to_string())];
        if meta.cas(vec![txn::unchanged(&key, rev)], ops).await? {
            return Ok(id);
        }
        conflicts.wait().await?;
    }
}
