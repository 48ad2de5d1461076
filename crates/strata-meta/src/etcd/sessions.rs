//! Broker sessions and the assigner role, both etcd leases: a broker's key
//! and the assigner key are attached to a lease of the session timeout, so
//! etcd itself deletes them when renewals stop. Nothing is kept in the
//! replica, so a broker may heartbeat through any replica, and a replica
//! that restarts finds the role it held.

use std::collections::HashMap;

use strata_common::TopicPartition;
use strata_proto::etcdserverpb::{PutRequest, RangeResponse};

use super::partitions::Leader;
use super::{from_json, storage, to_json, txn, EtcdMetadata};
use crate::{BrokerInfo, ClusterView, MetaError, PartitionLeader, Result, TopicMeta};

pub(super) async fn register(meta: &EtcdMetadata, broker: BrokerInfo) -> Result<()> {
    let client = meta.client();
    let lease = client.grant(meta.inner.ttl_secs).await?;
    let put = PutRequest {
        key: meta.keys().broker(broker.id).into_bytes(),
        value: to_json(&broker)?,
        lease,
        prev_kv: true,
        ..Default::default()
    };
    let prev = match client.put(put).await {
        Ok(r) => r.prev_kv,
        Err(e) => {
            let _ = client.revoke(lease).await;
            return Err(e);
        }
    };
    // The key moved to the new lease; the old one would only linger.
    if let Some(old) = prev.filter(|p| p.lease != 0 && p.lease != lease) {
        if let Err(e) = client.revoke(old.lease).await {
            tracing::debug!(broker = broker.id, error = %e, "revoking a replaced broker lease failed");
        }
    }
    tracing::info!(broker = broker.id, host = %broker.host, port = broker.port, lease, "broker registered");
    Ok(())
}

pub(super) async fn heartbeat(meta: &EtcdMetadata, id: i32) -> Result<()> {
    let Some(kv) = meta.get(&meta.keys().broker(id)).await? else {
        return Err(MetaError::UnknownBroker(id));
    };
    if meta.client().keep_alive(kv.lease).await? <= 0 {
        return Err(MetaError::UnknownBroker(id));
    }
    Ok(())
}

/// Brokers, topics and leaders as of one revision.
pub(super) async fn cluster(meta: &EtcdMetadata) -> Result<ClusterView> {
    let keys = meta.keys();
    let (_, r) = meta
        .read(vec![
            txn::get_prefix(&keys.brokers(), false),
            txn::get_prefix(&keys.topics(), false),
            txn::get_prefix(&keys.all_leaders(), false),
        ])
        .await?;
    let [brokers, topics, leaders]: [RangeResponse; 3] = r
        .try_into()
        .map_err(|_| storage("etcd txn: expected three range results"))?;
    let mut brokers = brokers
        .kvs
        .iter()
        .map(from_json)
        .collect::<Result<Vec<BrokerInfo>>>()?;
    brokers.sort_by_key(|b| b.id);
    let mut current = HashMap::new();
    for kv in &leaders.kvs {
        if let Some(tp) = keys.parse_leader(txn::key_str(kv)?) {
            current.insert(tp, from_json::<Leader>(kv)?);
        }
    }
    let mut out = Vec::new();
    for kv in &topics.kvs {
        let t: TopicMeta = from_json(kv)?;
        for p in 0..t.partitions {
            // No key yet: never acquired, as a fresh manifest says.
            let (leader, epoch) = current
                .get(&(t.name.clone(), p))
                .map_or((-1, 0), |l| (l.leader, l.epoch));
            out.push(PartitionLeader {
                tp: TopicPartition::new(t.name.as_str(), p),
                leader,
                epoch,
            });
        }
    }
    Ok(ClusterView {
        brokers,
        leaders: out,
    })
}

/// Holds `assigner` while its value is `replica`: renews the lease when it
/// is ours, takes the key when it is free.
pub(super) async fn assignment_leader(meta: &EtcdMetadata, replica: &str) -> Result<bool> {
    let key = meta.keys().assigner();
    let client = meta.client();
    // Each pass either decides or saw the key vanish under it.
    for _ in 0..3 {
        match meta.get(&key).await? {
            Some(kv) if kv.value == replica.as_bytes() => {
                if client.keep_alive(kv.lease).await? > 0 {
                    return Ok(true);
                }
            }
            Some(_) => return Ok(false),
            None => {
                let lease = client.grant(meta.inner.ttl_secs).await?;
                let ops = vec![txn::put_leased(&key, replica, lease)];
                if meta.cas(vec![txn::unchanged(&key, 0)], ops).await? {
                    tracing::info!(replica, lease, "took the assigner role");
                    return Ok(true);
                }
                let _ = client.revoke(lease).await;
            }
        }
    }
    Ok(false)
}

pub(super) async fn resign(meta: &EtcdMetadata, replica: &str) -> Result<()> {
    let Some(kv) = meta.get(&meta.keys().assigner()).await? else {
        return Ok(());
    };
    if kv.value == replica.as_bytes() {
        meta.client().revoke(kv.lease).await?;
        tracing::info!(replica, "gave up the assigner role");
    }
    Ok(())
}
