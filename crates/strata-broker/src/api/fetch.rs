//! Fetch: committed batches (never beyond the high watermark) as the raw
//! bytes that came in, long-polling until `min_bytes` or `max_wait_ms`.
//! Fetch sessions are declined the way Kafka declines them when its cache is
//! full (session id 0), so clients fall back to full fetch requests.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, RequestHeader};
use strata_common::TopicPartition;

use super::Reply;
use crate::frame::RecordSets;
use crate::{codes, Broker};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: FetchRequest,
) -> Reply {
    let header = header.clone();
    if req.session_id != 0 {
        let resp = FetchResponse::default()
            .with_error_code(codes::FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(0);
        return Reply::frame(&header, &resp);
    }
    let broker = broker.clone();
    Reply::LaterFrame(Box::pin(async move {
        let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 60_000) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        let version = header.request_api_version;
        let enough = |bytes: usize, answer_now: bool| {
            bytes >= min_bytes.max(1) || answer_now || tokio::time::Instant::now() >= deadline
        };
        loop {
            let notified = broker.log.hw_changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // First from what is in memory and the cache; only if that is not
            // enough, again waiting for row groups still in the store, until
            // the client's max wait. A fetch of a replay's partitions otherwise
            // held every partition's cached records back until the one whose
            // next group was still on its way had it, while the consumer sat
            // idle; and a slow bucket kept a fetch past its max wait.
            let (resp, sets, bytes, answer_now) =
                gather(&broker, &req, version, Reads::Cached).await;
            if enough(bytes, answer_now) {
                // The batches are sent from the log's own buffers, not copied.
                return crate::frame::frame_sharing(&header, &resp, sets);
            }
            let waiting = gather(&broker, &req, version, Reads::Waiting);
            match tokio::time::timeout_at(deadline, waiting).await {
                Ok((resp, sets, bytes, answer_now)) if enough(bytes, answer_now) => {
                    return crate::frame::frame_sharing(&header, &resp, sets);
                }
                Ok(_) => {}
                // The loads go on without this fetch; the next one finds them.
                Err(_) => return crate::frame::frame_sharing(&header, &resp, sets),
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }))
}

/// What a pass over a fetch's partitions does with row groups of sealed
/// segments that are not cached.
#[derive(Clone, Copy)]
enum Reads {
    /// Starts loading them and answers without their records.
    Cached,
    /// Waits for them until the partition's read holds fetch.min.bytes.
    Waiting,
}

/// Partitions read at once by one fetch. Read one after another, a fetch of
/// eight partitions replaying cold segments waited for eight GETs in a row.
const READS_IN_PARALLEL: usize = 16;

/// One pass over the requested partitions: (response, the record sets its
/// frame refers to, record bytes, whether to answer now whatever the bytes:
/// a partition has an error the client must see, or records from a sealed
/// segment).
async fn gather(
    broker: &Arc<Broker>,
    req: &FetchRequest,
    version: i16,
    store_reads: Reads,
) -> (FetchResponse, RecordSets, usize, bool) {
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    // Every partition is read at once, each up to its own limit; the response's
    // total limit is applied below in request order, as Kafka applies it.
    // Waiting, a partition's read waits for row groups still in the store only
    // while it holds less than the whole response must (fetch.min.bytes).
    let min_bytes = match store_reads {
        Reads::Cached => 0,
        Reads::Waiting => req.min_bytes.max(1) as usize,
    };
    let wanted: Vec<(TopicPartition, i64, usize)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let tp = TopicPartition::new(t.topic.0.as_str(), p.partition);
                let limit = (p.partition_max_bytes.max(0) as usize).min(max_bytes);
                (tp, p.fetch_offset, limit)
            })
        })
        .collect();
    let mut reads = futures::stream::iter(wanted)
        .map(|(tp, offset, limit)| {
            let broker = broker.clone();
            async move {
                if limit == 0 {
                    return None;
                }
                Some(broker.log.read(&tp, offset, min_bytes, limit).await)
            }
        })
        .buffered(READS_IN_PARALLEL);
    let mut sets = RecordSets::default();
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut answer_now = false;
    let mut topics = Vec::new();
    let v5 = version >= 5;
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let mut parts = Vec::new();
        for p in &t.partitions {
            let read = reads.next().await.flatten();
            let tp = TopicPartition::new(name.as_str(), p.partition);
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1));
            let start_of = |s: i64| if v5 { s } else { -1 };
            let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
            match read {
                _ if limit == 0 => {
                    // Kafka still returns at least one batch for the first
                    // partition; later ones wait for the next fetch.
                    if let Some(part) = broker.log.partition(&tp).await {
                        pd.high_watermark = part.high_watermark();
                        pd.last_stable_offset = pd.high_watermark;
                        pd.log_start_offset = start_of(part.log_start_offset());
                    }
                }
                None => {}
                Some(Ok(r)) => {
                    pd.high_watermark = r.high_watermark;
                    pd.last_stable_offset = r.high_watermark;
                    pd.log_start_offset = start_of(r.log_start_offset);
                    // At least one batch, then as many as fit what is left.
                    let mut size = 0usize;
                    let keep = r
                        .batches
                        .iter()
                        .take_while(|b| {
                            let fits = size == 0 || size + b.len() <= limit;
                            if fits {
                                size += b.len();
                            }
                            fits
                        })
                        .count();
                    let records = sets.add(&r.batches[..keep]);
                    if records.is_some() {
                        answer_now |= r.sealed;
                        total += size;
                        remaining = remaining.saturating_sub(size);
                        pd.records = records;
                    }
                }
                Some(Err(e)) => {
                    if let strata_log::LogError::OffsetOutOfRange { start, end, .. } = &e {
                        pd.high_watermark = *end;
                        pd.last_stable_offset = *end;
                        pd.log_start_offset = start_of(*start);
                    } else {
                        tracing::warn!(%tp, offset = p.fetch_offset, error = %e, "fetch failed");
                    }
                    pd.error_code = broker.log_error_code(&tp, &e);
                    answer_now = true;
                }
            }
            parts.push(pd);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    let resp = FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics);
    (resp, sets, total, answer_now)
}
