//! Committed offsets: OffsetCommit, OffsetFetch (single and multi-group) and
//! OffsetDelete. Commits are fenced by the coordinator, then made durable in
//! the metadata service before they are acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_common::TopicPartition;
use strata_meta::CommittedOffset;

use super::Reply;
use crate::group::{commit_entry, MAX_OFFSET_METADATA_BYTES};
use crate::{codes, Broker};

/// Partition counts of the named topics (absent: unknown topic).
async fn partition_counts(
    broker: &Broker,
    names: impl Iterator<Item = String>,
) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for n in names {
        if out.contains_key(&n) {
            continue;
        }
        if let Ok(Some(t)) = broker.meta.topic(&n).await {
            out.insert(n, t.partitions);
        }
    }
    out
}

pub(crate) async fn commit(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: OffsetCommitRequest,
) -> Reply {
    let v = header.request_api_version;
    let group = req.group_id.0.to_string();
    let instance = if v >= 7 {
        req.group_instance_id.as_ref().map(|i| i.to_string())
    } else {
        None
    };
    let mut fenced = if group.is_empty() {
        Err(codes::INVALID_GROUP_ID)
    } else if !broker.is_coordinator(&group) {
        Err(codes::NOT_COORDINATOR)
    } else {
        broker.groups.check_commit(
            &group,
            &req.member_id,
            instance.as_deref(),
            req.generation_id_or_member_epoch,
        )
    };
    let counts = partition_counts(broker, req.topics.iter().map(|t| t.name.0.to_string())).await;
    let now = broker.groups.now_ms();
    // (topic index, partition index, code), filled as each is decided.
    let mut results: Vec<(usize, i32, i16)> = Vec::new();
    let mut accepted: Vec<(TopicPartition, CommittedOffset)> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for p in &t.partitions {
            let code = if let Err(code) = fenced {
                code
            } else if !counts
                .get(&*t.name.0)
                .is_some_and(|n| (0..*n).contains(&p.partition_index))
            {
                codes::UNKNOWN_TOPIC_OR_PARTITION
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_OFFSET_METADATA_BYTES)
            {
                codes::OFFSET_METADATA_TOO_LARGE
            } else {
                let epoch = if v >= 6 { p.committed_leader_epoch } else { -1 };
                accepted.push((
                    TopicPartition::new(&*t.name.0, p.partition_index),
                    commit_entry(
                        p.committed_offset,
                        epoch,
                        p.committed_metadata.as_deref(),
                        now,
                    ),
                ));
                codes::NONE
            };
            results.push((ti, p.partition_index, code));
        }
    }
    if fenced.is_ok() && !accepted.is_empty() {
        if let Err(code) = broker.groups.commit(&group, accepted).await {
            fenced = Err(code);
        }
    }
    let topics = req
        .topics
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            let partitions = results
                .iter()
                .filter(|(i, _, _)| *i == ti)
                .map(|(_, p, code)| {
                    // A failed write fails every partition that was accepted.
                    let code = match fenced {
                        Err(c) if *code == codes::NONE => c,
                        _ => *code,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(*p)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Reply::frame(header, &OffsetCommitResponse::default().with_topics(topics))
}

/// The committed offsets of `group` for the requested topics (`None`: every
/// committed partition), as (topic, [(partition, offset, epoch, metadata)]).
type Fetched = Vec<(String, Vec<(i32, CommittedOffset)>)>;

async fn fetch_group(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, i16> {
    if !broker.is_coordinator(group) {
        return Err(codes::NOT_COORDINATOR);
    }
    let committed = broker.groups.fetch(group).await?;
    let none = CommittedOffset {
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: -1,
    };
    Ok(match topics {
        Some(ts) => ts
            .into_iter()
            .map(|(name, parts)| {
                let ps = parts
                    .into_iter()
                    .map(|p| {
                        let o = committed
                            .get(&TopicPartition::new(name.as_str(), p))
                            .cloned()
                            .unwrap_or_else(|| none.clone());
                        (p, o)
                    })
                    .collect();
                (name, ps)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, CommittedOffset)>> = BTreeMap::new();
            for (tp, o) in committed {
                by_topic
                    .entry(tp.topic.to_string())
                    .or_default()
                    .push((tp.partition, o));
            }
            by_topic.into_iter().collect()
        }
    })
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) async fn fetch(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: OffsetFetchRequest,
) -> Reply {
    let v = header.request_api_version;
    let epoch = |o: &CommittedOffset| if v >= 5 { o.leader_epoch } else { -1 };
    if v >= 8 {
        let mut groups = Vec::new();
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
            match fetch_group(broker, &g.group_id.0, wanted).await {
                Err(code) => out.error_code = code,
                Ok(fetched) => {
                    out.topics = fetched
                        .into_iter()
                        .map(|(name, ps)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(topic(&name))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, o)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o.offset)
                                                .with_committed_leader_epoch(epoch(&o))
                                                .with_metadata(Some(StrBytes::from_string(
                                                    o.metadata,
                                                )))
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                }
            }
            groups.push(out);
        }
        return Reply::frame(header, &OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let mut resp = OffsetFetchResponse::default();
    match fetch_group(broker, &req.group_id.0, wanted).await {
        Err(code) => {
            if v >= 2 {
                resp.error_code = code;
            }
        }
        Ok(fetched) => {
            resp.topics = fetched
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic(&name))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o.offset)
                                        .with_committed_leader_epoch(epoch(&o))
                                        .with_metadata(Some(StrBytes::from_string(o.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect();
        }
    }
    Reply::frame(header, &resp)
}

pub(crate) async fn delete(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: OffsetDeleteRequest,
) -> Reply {
    let group: GroupId = req.group_id;
    let wanted: Vec<TopicPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(&*t.name.0, p.partition_index))
        })
        .collect();
    let result = if broker.is_coordinator(&group.0) {
        broker.groups.delete_offsets(&group.0, wanted).await
    } else {
        Err(codes::NOT_COORDINATOR)
    };
    let resp = match result {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(done) => {
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = done
                                .iter()
                                .find(|(tp, _)| {
                                    *tp.topic == *t.name.0 && tp.partition == p.partition_index
                                })
                                .map(|(_, c)| *c)
                                .unwrap_or(codes::NONE);
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    };
    Reply::frame(header, &resp)
}
