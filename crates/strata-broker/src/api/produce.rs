//! Produce: appends each partition's batches in arrival order, answers
//! acks=0/1 at once and acks=all once the WAL object is committed.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use strata_common::TopicPartition;

use super::Reply;
use crate::{codes, Broker};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: ProduceRequest,
) -> Reply {
    let acks = req.acks;
    let v = header.request_api_version;
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
    let mut responses = Vec::new();
    let mut waits = Vec::new();
    let mut any_error = false;
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::new();
        for p in topic.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_log_append_time_ms(-1);
            if !matches!(acks, -1..=1) {
                r.error_code = codes::INVALID_REQUIRED_ACKS;
            } else {
                let tp = TopicPartition::new(name.as_str(), p.index);
                let records = p.records.unwrap_or_default();
                match broker.log.append(&tp, &records, timeout).await {
                    Ok((part, res)) => {
                        if res.duplicate {
                            tracing::debug!(%tp, base = res.base_offset, last = res.last_offset,
                                "retried batch already written; answering its offsets");
                        }
                        // For a retry these are the original batch's offsets,
                        // and acks=all still waits for them to be durable.
                        r.base_offset = res.base_offset;
                        r.log_append_time_ms = res.log_append_time;
                        if v >= 5 {
                            r.log_start_offset = res.log_start_offset;
                        }
                        if acks == -1 {
                            waits.push((parts.len(), responses.len(), part, res.last_offset));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%tp, error = %e, "produce refused");
                        r.error_code = broker.log_error_code(&tp, &e);
                        if v >= 8 {
                            r.error_message = Some(StrBytes::from_string(e.to_string()));
                        }
                        r.base_offset = -1;
                    }
                }
            }
            any_error |= r.error_code != codes::NONE;
            parts.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(parts),
        );
    }
    if acks == 0 {
        // Kafka closes the connection so an acks=0 producer notices errors.
        return if any_error {
            Reply::Close
        } else {
            Reply::Now(None)
        };
    }
    let header = header.clone();
    if waits.is_empty() {
        return Reply::frame(
            &header,
            &ProduceResponse::default().with_responses(responses),
        );
    }
    Reply::Later(Box::pin(async move {
        let mut responses = responses;
        for (pi, ti, part, last) in waits {
            if let Err(e) = part.wait_durable(last, timeout).await {
                tracing::warn!(tp = %part.tp, error = %e, "acks=all produce not durable in time");
                let r = &mut responses[ti].partition_responses[pi];
                r.error_code = codes::log_error(&e);
                if v >= 8 {
                    r.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
        }
        crate::conn::frame(
            &header,
            &ProduceResponse::default().with_responses(responses),
        )
    }))
}
