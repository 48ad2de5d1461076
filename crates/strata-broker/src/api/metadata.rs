//! Metadata: brokers, and for each topic its partitions and leaders, with
//! Kafka's auto-create behaviour for unknown topics.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_common::{valid_topic_name, TopicPartition};
use strata_meta::TopicMeta;

use super::Reply;

/// Without ACLs every principal may do every topic operation: READ, WRITE,
/// CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS as bits.
pub(crate) const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Cluster operations: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE (Kafka's set for the
/// cluster resource).
pub(crate) const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
use crate::{codes, Broker};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: MetadataRequest,
) -> Reply {
    let v = header.request_api_version;
    let node = broker.config.node_id;
    let brokers = broker
        .live_brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
        })
        .collect();
    // There is no controller among the brokers; the metadata service plays
    // that part. Clients only need a live broker here, so name this one.
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id((v >= 2).then(|| StrBytes::from_string(broker.meta.cluster_id())))
        .with_controller_id(BrokerId(if v >= 1 { node } else { -1 }));
    // v0 has no null: an empty list means every topic there.
    let wanted: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && v == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create = broker.config.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    let topics = match wanted {
        None => broker
            .meta
            .topics()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(Ok)
            .collect(),
        Some(names) => {
            let mut out = Vec::new();
            for name in names {
                out.push(lookup(broker, &name, auto_create).await);
            }
            out
        }
    };
    if req.include_cluster_authorized_operations && (8..=10).contains(&v) {
        resp.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    for t in topics {
        let entry = match t {
            Ok(t) => {
                let mut e = describe_topic(broker, &t, v).await;
                if req.include_topic_authorized_operations && v >= 8 {
                    e.topic_authorized_operations = TOPIC_OPERATIONS;
                }
                e
            }
            Err((name, code)) => MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name))))
                .with_error_code(code),
        };
        resp.topics.push(entry);
    }
    Reply::frame(header, &resp)
}

async fn lookup(
    broker: &Arc<Broker>,
    name: &str,
    auto_create: bool,
) -> Result<TopicMeta, (String, i16)> {
    match broker.meta.topic(name).await {
        Ok(Some(t)) => return Ok(t),
        Ok(None) => {}
        Err(e) => return Err((name.to_string(), codes::meta_error(&e))),
    }
    if !valid_topic_name(name) {
        return Err((name.to_string(), codes::INVALID_TOPIC_EXCEPTION));
    }
    if !auto_create {
        return Err((name.to_string(), codes::UNKNOWN_TOPIC_OR_PARTITION));
    }
    let created = match broker
        .meta
        .create_topic(name, broker.config.default_partitions, BTreeMap::new())
        .await
    {
        Ok(t) => {
            tracing::info!(
                topic = name,
                partitions = t.partitions,
                "auto-created topic"
            );
            t
        }
        // Another connection created it first.
        Err(strata_meta::MetaError::TopicExists(_)) => match broker.meta.topic(name).await {
            Ok(Some(t)) => t,
            _ => return Err((name.to_string(), codes::UNKNOWN_TOPIC_OR_PARTITION)),
        },
        Err(e) => return Err((name.to_string(), codes::meta_error(&e))),
    };
    broker
        .membership
        .await_leaders(&created, crate::LEADER_WAIT)
        .await;
    Ok(created)
}

pub(crate) async fn describe_topic(
    broker: &Arc<Broker>,
    t: &TopicMeta,
    v: i16,
) -> MetadataResponseTopic {
    // A partition assigned since this broker's last sync has no leader in
    // its view yet: sync now (briefly) rather than send clients retrying.
    broker
        .membership
        .await_leaders(t, std::time::Duration::from_millis(500))
        .await;
    let mut parts = Vec::new();
    for p in 0..t.partitions {
        let tp = TopicPartition::new(t.name.as_str(), p);
        broker.await_own_open(&tp).await;
        let (code, leader, epoch) = match broker.leader_of(&tp).await {
            Some((leader, epoch)) => (codes::NONE, leader, epoch),
            None => (codes::LEADER_NOT_AVAILABLE, -1, -1),
        };
        // Every broker reads every partition from the shared bucket, but
        // only the leader serves it; report it as the one replica.
        let replicas = if leader >= 0 {
            vec![BrokerId(leader)]
        } else {
            vec![]
        };
        parts.push(
            MetadataResponsePartition::default()
                .with_error_code(code)
                .with_partition_index(p)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(if v >= 7 { epoch } else { -1 })
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas),
        );
    }
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(if v >= 10 { t.id } else { uuid::Uuid::nil() })
        .with_partitions(parts)
}
