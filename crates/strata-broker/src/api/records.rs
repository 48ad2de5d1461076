//! DeleteRecords (moves a partition's log start) and InitProducerId
//! (allocates producer ids through the metadata service).

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
                    r.error_code = codes::log_error(&e);
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

pub(crate) async fn init_producer_id(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    _req: InitProducerIdRequest,
) -> Reply {
    let resp = match broker.meta.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "producer id allocation failed");
            InitProducerIdResponse::default()
                .with_error_code(codes::meta_error(&e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    };
    Reply::frame(header, &resp)
}
