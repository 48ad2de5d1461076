//! DeleteRecords (moves a partition's log start) and InitProducerId
//! (producer ids for idempotent producers, allocated by the metadata
//! service; transactions are not supported).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProducerId, RequestHeader,
};
use strata_common::TopicPartition;

use super::Reply;
use crate::{codes, Broker};

pub(crate) async fn delete_records(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DeleteRecordsRequest,
) -> Reply {
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partitions {
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            let mut r = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            match broker.log.delete_records(&tp, p.offset).await {
                Ok(low) => r.low_watermark = low,
                Err(e) => {
                    tracing::warn!(%tp, offset = p.offset, error = %e, "delete records failed");
                    r.error_code = broker.log_error_code(&tp, &e);
                }
            }
            parts.push(r);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    Reply::frame(
        header,
        &DeleteRecordsResponse::default().with_topics(topics),
    )
}

/// Allocates a producer id with epoch 0, or (v3+, KIP-360) bumps the epoch
/// of the id the producer already has, so it can restart its sequences
/// after a batch was lost without looking like a new producer.
///
/// A transactional id gets UNSUPPORTED_VERSION: Strata has no transaction
/// coordinator, and this is the error by which Kafka says a broker lacks a
/// feature. The Java client fails init_transactions with it at once;
/// librdkafka retries until init_transactions times out, then reports it.
/// COORDINATOR_NOT_AVAILABLE would promise a coordinator that never comes;
/// an authorization error would send users to their ACLs.
pub(crate) async fn init_producer_id(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: InitProducerIdRequest,
) -> Reply {
    let refuse = |code| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = &req.transactional_id {
        tracing::warn!(transactional_id = %id.0, "transactional producer refused: transactions are not supported");
        return Reply::frame(header, &refuse(codes::UNSUPPORTED_VERSION));
    }
    let (current, epoch) = (req.producer_id.0, req.producer_epoch);
    // Kafka gives a fresh id once the epoch would reach i16::MAX, which
    // stays reserved.
    if current >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        tracing::debug!(
            producer_id = current,
            epoch = epoch + 1,
            "producer epoch bumped"
        );
        let resp = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(current))
            .with_producer_epoch(epoch + 1);
        return Reply::frame(header, &resp);
    }
    let resp = match broker.meta.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "producer id allocation failed");
            refuse(codes::meta_error(&e))
        }
    };
    Reply::frame(header, &resp)
}
