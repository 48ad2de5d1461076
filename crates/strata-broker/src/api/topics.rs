//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_common::{config, valid_topic_name};

use super::Reply;
use crate::{codes, Broker};

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

pub(crate) async fn create(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: CreateTopicsRequest,
) -> Reply {
    let v = header.request_api_version;
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let partitions = if t.num_partitions == -1 {
            broker.config.default_partitions
        } else {
            t.num_partitions
        };
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            if let Some(v) = &c.value {
                if let Err(e) = config::validate(&c.name, v) {
                    bad_config = Some(e.to_string());
                }
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        if !valid_topic_name(&name) {
            r.error_code = codes::INVALID_TOPIC_EXCEPTION;
            r.error_message = msg(format!("topic name {name:?} is not valid"));
        } else if partitions < 1 {
            r.error_code = codes::INVALID_PARTITIONS;
            r.error_message = msg("number of partitions must be at least 1");
        } else if !t.assignments.is_empty() {
            r.error_code = codes::INVALID_REQUEST;
            r.error_message = msg("manual replica assignment is not supported: leadership is assigned by the metadata service");
        } else if t.replication_factor != -1 && t.replication_factor < 1 {
            r.error_code = codes::INVALID_REPLICATION_FACTOR;
            r.error_message =
                msg("replication factor must be at least 1 (durability comes from object storage)");
        } else if let Some(e) = bad_config {
            r.error_code = codes::INVALID_CONFIG;
            r.error_message = msg(e);
        } else if req.validate_only {
            if let Ok(Some(_)) = broker.meta.topic(&name).await {
                r.error_code = codes::TOPIC_ALREADY_EXISTS;
                r.error_message = msg(format!("topic {name} already exists"));
            } else {
                r.num_partitions = partitions;
                r.replication_factor = 1;
            }
        } else {
            match broker.meta.create_topic(&name, partitions, configs).await {
                Ok(meta) => {
                    r.topic_id = meta.id;
                    r.num_partitions = meta.partitions;
                    r.replication_factor = 1;
                    tracing::info!(topic = name, partitions, "created topic");
                    broker
                        .membership
                        .await_leaders(&meta, crate::LEADER_WAIT)
                        .await;
                }
                Err(e) => {
                    r.error_code = codes::meta_error(&e);
                    r.error_message = msg(e.to_string());
                }
            }
        }
        if v < 7 {
            r.topic_id = uuid::Uuid::nil();
        }
        if v < 5 {
            r.num_partitions = -1;
            r.replication_factor = -1;
        }
        results.push(r);
    }
    Reply::frame(
        header,
        &CreateTopicsResponse::default().with_topics(results),
    )
}

pub(crate) async fn delete(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DeleteTopicsRequest,
) -> Reply {
    // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    let v = header.request_api_version;
    let all = broker.meta.topics().await.unwrap_or_default();
    let mut results = Vec::new();
    for (name, id) in targets {
        let name = name.or_else(|| all.iter().find(|t| t.id == id).map(|t| t.name.clone()));
        let mut r = DeletableTopicResult::default().with_topic_id(id);
        match name {
            None => r.error_code = 100, // UNKNOWN_TOPIC_ID
            Some(name) => {
                r.name = Some(TopicName(StrBytes::from_string(name.clone())));
                match broker.meta.delete_topic(&name).await {
                    Ok((meta, wal_keys)) => {
                        r.topic_id = meta.id;
                        broker.log.drop_topic(&name, wal_keys).await;
                        tracing::info!(topic = name, "deleted topic");
                    }
                    Err(e) => {
                        r.error_code = codes::meta_error(&e);
                        r.error_message = msg(e.to_string());
                    }
                }
            }
        }
        if v < 6 {
            r.topic_id = uuid::Uuid::nil();
        }
        if v < 5 {
            r.error_message = None;
        }
        results.push(r);
    }
    Reply::frame(
        header,
        &DeleteTopicsResponse::default().with_responses(results),
    )
}

pub(crate) async fn create_partitions(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: CreatePartitionsRequest,
) -> Reply {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let current = broker.meta.topic(&name).await;
        match current {
            Ok(Some(meta)) if t.count <= meta.partitions => {
                r.error_code = codes::INVALID_PARTITIONS;
                r.error_message = msg(format!(
                    "topic currently has {} partitions, which is higher than or equal to the requested {}",
                    meta.partitions, t.count
                ));
            }
            Ok(Some(_)) if req.validate_only => {}
            Ok(Some(_)) => match broker.meta.create_partitions(&name, t.count).await {
                Ok(meta) => {
                    broker
                        .membership
                        .await_leaders(&meta, crate::LEADER_WAIT)
                        .await;
                }
                Err(e) => {
                    r.error_code = codes::meta_error(&e);
                    r.error_message = msg(e.to_string());
                }
            },
            Ok(None) => {
                r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                r.error_message = msg(format!("topic {name} does not exist"));
            }
            Err(e) => {
                r.error_code = codes::meta_error(&e);
                r.error_message = msg(e.to_string());
            }
        }
        results.push(r);
    }
    Reply::frame(
        header,
        &CreatePartitionsResponse::default().with_results(results),
    )
}
