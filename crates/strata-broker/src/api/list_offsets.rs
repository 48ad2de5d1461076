//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest
//! local (-4, the log start here: everything is "local" to the bucket),
//! or the first offset at or after a timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use strata_common::TopicPartition;

use super::Reply;
use crate::Broker;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: ListOffsetsRequest,
) -> Reply {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partitions {
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            let mut r = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let ts = match p.timestamp {
                -4 => -2,
                -5 => -1,
                t => t,
            };
            match broker.log.list_offset(&tp, ts).await {
                Ok((offset, timestamp)) => {
                    r.offset = offset;
                    r.timestamp = timestamp;
                    if header.request_api_version >= 4 {
                        if let Some(part) = broker.log.partition(&tp).await {
                            r.leader_epoch = part.epoch();
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%tp, error = %e, "list offsets failed");
                    r.error_code = broker.log_error_code(&tp, &e);
                }
            }
            parts.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    Reply::frame(header, &ListOffsetsResponse::default().with_topics(topics))
}
