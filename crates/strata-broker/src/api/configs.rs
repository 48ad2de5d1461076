//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic
//! configs under Kafka's names; broker configs are described read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use strata_common::config;

use super::Reply;
use crate::{codes, Broker};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// Kafka's ConfigType for a value, as DescribeConfigs v3+ reports it.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,
        "preallocate"
        | "unclean.leader.election.enable"
        | "remote.storage.enable"
        | "auto.create.topics.enable" => 1,
        "min.cleanable.dirty.ratio" => 6,
        "max.message.bytes"
        | "segment.bytes"
        | "min.insync.replicas"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "num.partitions" => 3,
        "compression.type" | "message.timestamp.type" => 2,
        _ => 5,
    }
}

fn entry(
    name: &str,
    value: &str,
    source: i8,
    read_only: bool,
    v: i16,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(Some(s(value)))
        .with_read_only(read_only)
        .with_config_source(source)
        .with_config_type(if v >= 3 { config_type(name) } else { 0 })
}

pub(crate) async fn describe(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DescribeConfigsRequest,
) -> Reply {
    let v = header.request_api_version;
    let mut results = Vec::new();
    for res in req.resources {
        let wanted = |n: &str| {
            res.configuration_keys
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == n))
        };
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        match res.resource_type {
            TOPIC => match broker.meta.topic(&res.resource_name).await {
                Ok(Some(t)) => {
                    for (name, default) in config::DEFAULTS {
                        if !wanted(name) {
                            continue;
                        }
                        r.configs.push(match t.configs.get(*name) {
                            Some(val) => entry(name, val, SOURCE_DYNAMIC_TOPIC, false, v),
                            None => entry(name, default, SOURCE_DEFAULT, false, v),
                        });
                    }
                }
                Ok(None) => {
                    r.error_code = codes::UNKNOWN_TOPIC_OR_PARTITION;
                    r.error_message =
                        Some(s(format!("topic {} does not exist", &*res.resource_name)));
                }
                Err(e) => r.error_code = codes::meta_error(&e),
            },
            BROKER => {
                let c = &broker.config;
                let values = [
                    ("broker.id", c.node_id.to_string()),
                    ("node.id", c.node_id.to_string()),
                    ("num.partitions", c.default_partitions.to_string()),
                    (
                        "auto.create.topics.enable",
                        c.auto_create_topics.to_string(),
                    ),
                    ("socket.request.max.bytes", c.max_request_bytes.to_string()),
                    ("default.replication.factor", "1".to_string()),
                ];
                for (name, val) in values {
                    if wanted(name) {
                        r.configs
                            .push(entry(name, &val, SOURCE_STATIC_BROKER, true, v));
                    }
                }
            }
            other => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(s(format!("resource type {other} is not supported")));
            }
        }
        results.push(r);
    }
    Reply::frame(
        header,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

/// Validates and stores a topic's new override set; returns (code, message).
async fn apply(
    broker: &Arc<Broker>,
    resource_type: i8,
    topic: &str,
    build: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    if resource_type != TOPIC {
        return (
            codes::INVALID_REQUEST,
            Some(s("only topic configs can be altered")),
        );
    }
    let current = match broker.meta.topic(topic).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return (
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some(s(format!("topic {topic} does not exist"))),
            )
        }
        Err(e) => return (codes::meta_error(&e), Some(s(e.to_string()))),
    };
    let mut configs = current.configs.clone();
    if let Err(e) = build(&mut configs) {
        return (codes::INVALID_CONFIG, Some(s(e)));
    }
    for (k, v) in &configs {
        if let Err(e) = config::validate(k, v) {
            return (codes::INVALID_CONFIG, Some(s(e.to_string())));
        }
    }
    if validate_only {
        return (codes::NONE, None);
    }
    match broker.meta.set_topic_configs(topic, configs).await {
        Ok(t) => {
            broker.log.refresh_config(&t).await;
            tracing::info!(topic, configs = ?t.configs, "topic configs changed");
            (codes::NONE, None)
        }
        Err(e) => (codes::meta_error(&e), Some(s(e.to_string()))),
    }
}

pub(crate) async fn alter(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: AlterConfigsRequest,
) -> Reply {
    let mut out = Vec::new();
    for res in req.resources {
        let (code, message) = {
            let entries: Vec<(String, Option<String>)> = res
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            // AlterConfigs replaces the whole override set.
            let build = move |m: &mut BTreeMap<String, String>| {
                m.clear();
                for (k, v) in entries {
                    if let Some(v) = v {
                        m.insert(k, v);
                    }
                }
                Ok(())
            };
            apply(
                broker,
                res.resource_type,
                &res.resource_name,
                build,
                req.validate_only,
            )
            .await
        };
        out.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    Reply::frame(header, &AlterConfigsResponse::default().with_responses(out))
}

pub(crate) async fn incremental_alter(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: IncrementalAlterConfigsRequest,
) -> Reply {
    let mut out = Vec::new();
    for res in req.resources {
        let (code, message) = {
            let ops: Vec<(String, i8, Option<String>)> = res
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            let build = move |m: &mut BTreeMap<String, String>| {
                for (k, op, v) in ops {
                    let current = m
                        .get(&k)
                        .cloned()
                        .or_else(|| config::default_value(&k).map(str::to_string))
                        .unwrap_or_default();
                    let mut items: Vec<String> = current
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect();
                    match (op, v) {
                        (0, Some(v)) => {
                            m.insert(k, v);
                        }
                        (1, _) => {
                            m.remove(&k);
                        }
                        (2, Some(v)) => {
                            for x in v.split(',') {
                                if !items.iter().any(|i| i == x) {
                                    items.push(x.to_string());
                                }
                            }
                            m.insert(k, items.join(","));
                        }
                        (3, Some(v)) => {
                            let drop: Vec<&str> = v.split(',').collect();
                            items.retain(|i| !drop.contains(&i.as_str()));
                            m.insert(k, items.join(","));
                        }
                        (op, _) => return Err(format!("invalid operation {op} for config {k}")),
                    }
                }
                Ok(())
            };
            apply(
                broker,
                res.resource_type,
                &res.resource_name,
                build,
                req.validate_only,
            )
            .await
        };
        out.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    Reply::frame(
        header,
        &IncrementalAlterConfigsResponse::default().with_responses(out),
    )
}
