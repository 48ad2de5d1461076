//! Which WAL objects no manifest references any more, computed as the
//! embedded backend does: by counting references.
//!
//! `walrefs/<wal key>` holds how many WAL ranges, across all manifests, name
//! that object. `commit_wal` adds to the counters in the same transaction as
//! the manifests it changes, comparing the counters' revisions like the
//! manifests'. Dropping references (sealing, truncating, deleting a topic)
//! can touch hundreds of objects at once, more than etcd lets one
//! transaction carry; so the manifest change is written together with a
//! *release record* listing the references it dropped, atomically, and the
//! record is then drained: a chunk of counters decremented and the record
//! shrunk per compare-and-swap transaction. The transaction that takes a
//! counter to zero reports its object, so each orphan is reported exactly
//! once. Until a record is drained its counters are too high, which can only
//! delay an orphan, never report one still in use. A record whose writer died
//! mid-drain is finished by the next drop of references after
//! `ABANDONED_MS`, and its orphans reported to that caller (any broker can
//! delete a WAL object).
//!
//! Rejected: finding orphans by reading manifests. Whether another partition
//! still names an object needs every manifest that might, which is every
//! partition its broker led, read and compared on every seal, so each seal
//! would conflict with every WAL commit of those partitions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_common::{Clock, SystemClock};
use strata_proto::etcdserverpb::RequestOp;
use strata_proto::mvccpb::KeyValue;

use super::{from_json, storage, to_json, txn, Conflicts, EtcdMetadata};
use crate::{Result, WalRange};

/// A record untouched this long was left by a writer that died.
const ABANDONED_MS: i64 = 30_000;

/// Keeps each record well inside one etcd request.
const RECORD_BYTES: usize = 256 << 10;

/// References still to subtract: WAL key -> number of ranges dropped.
#[derive(Default, Serialize, Deserialize)]
struct Release {
    refs: BTreeMap<String, i64>,
}

/// How many of `ranges` name each WAL object.
pub(super) fn count<'a>(ranges: impl IntoIterator<Item = &'a WalRange>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in ranges {
        *out.entry(r.key.clone()).or_default() += 1;
    }
    out
}

/// A counter's value; a missing one is 0.
pub(super) fn parse_count(kv: Option<&KeyValue>) -> Result<i64> {
    match kv {
        None => Ok(0),
        Some(kv) => std::str::from_utf8(&kv.value)
            .map_err(storage)?
            .parse()
            .map_err(storage),
    }
}

/// Release records for `dropped`: their keys and the operations writing
/// them, to go into the transaction that drops the references.
pub(super) fn records(
    meta: &EtcdMetadata,
    dropped: BTreeMap<String, i64>,
) -> Result<Vec<(String, RequestOp)>> {
    let now = SystemClock.now_ms();
    let mut out = Vec::new();
    let mut rec = Release::default();
    let mut bytes = 0;
    for (k, n) in dropped {
        bytes += k.len() + 24;
        rec.refs.insert(k, n);
        if bytes >= RECORD_BYTES {
            let key = meta.keys().release(now);
            out.push((key.clone(), txn::put(&key, to_json(&rec)?)));
            rec = Release::default();
            bytes = 0;
        }
    }
    if !rec.refs.is_empty() {
        let key = meta.keys().release(now);
        out.push((key.clone(), txn::put(&key, to_json(&rec)?)));
    }
    Ok(out)
}

/// Drains `records` (just written by the caller), then any abandoned ones;
/// returns the WAL keys whose last reference went, sorted. The caller's
/// change is already committed, so a failure here is only logged: what is
/// left is drained by a later sweep.
pub(super) async fn finish(meta: &EtcdMetadata, records: Vec<String>) -> Vec<String> {
    let mut freed = Vec::new();
    for r in records {
        if let Err(e) = drain(meta, &r, &mut freed).await {
            tracing::warn!(record = r, error = %e, "releasing wal references failed; a later sweep finishes it");
        }
    }
    if let Err(e) = sweep(meta, &mut freed).await {
        tracing::warn!(error = %e, "sweeping abandoned wal reference releases failed");
    }
    freed.sort();
    freed.dedup();
    freed
}

/// Finishes release records older than `ABANDONED_MS`.
async fn sweep(meta: &EtcdMetadata, freed: &mut Vec<String>) -> Result<()> {
    let cutoff = SystemClock.now_ms() - ABANDONED_MS;
    let mut req = txn::range_prefix(&meta.keys().releases(), true);
    req.range_end = meta.keys().releases_before(cutoff).into_bytes();
    for kv in meta.client().range(req).await?.kvs {
        let key = txn::key_str(&kv)?;
        tracing::info!(record = key, "finishing an abandoned wal reference release");
        drain(meta, key, freed).await?;
    }
    Ok(())
}

/// Subtracts a record's references a chunk at a time until the record is
/// gone (here or by a concurrent drainer), adding orphans to `freed`.
async fn drain(meta: &EtcdMetadata, key: &str, freed: &mut Vec<String>) -> Result<()> {
    let mut conflicts = Conflicts::new("release wal references");
    let chunk_len = meta.max_ops - 1;
    loop {
        let Some(kv) = meta.get(key).await? else {
            return Ok(());
        };
        let mut rec: Release = from_json(&kv)?;
        let chunk: Vec<(String, i64)> = rec
            .refs
            .iter()
            .take(chunk_len)
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        let reads = chunk
            .iter()
            .map(|(k, _)| txn::get(&meta.keys().walref(k)))
            .collect();
        let (_, counters) = meta.read(reads).await?;
        let mut compare = vec![txn::unchanged(key, kv.mod_revision)];
        let mut ops = Vec::new();
        let mut zero = Vec::new();
        for ((wal, n), r) in chunk.into_iter().zip(counters) {
            let ckey = meta.keys().walref(&wal);
            let counter = txn::single(r);
            compare.push(txn::unchanged(
                &ckey,
                counter.as_ref().map_or(0, |c| c.mod_revision),
            ));
            let left = parse_count(counter.as_ref())? - n;
            rec.refs.remove(&wal);
            if left > 0 {
                ops.push(txn::put(&ckey, left.to_string()));
            } else {
                ops.push(txn::delete(&ckey));
                zero.push(wal);
            }
        }
        ops.push(if rec.refs.is_empty() {
            txn::delete(key)
        } else {
            txn::put(key, to_json(&rec)?)
        });
        if meta.cas(compare, ops).await? {
            freed.extend(zero);
        } else {
            conflicts.wait().await?;
        }
    }
}
