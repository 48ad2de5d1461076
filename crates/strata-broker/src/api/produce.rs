//! Produce: appends each partition's batches in arrival order, answers
//! acks=0/1 at once and acks=all once the WAL object is committed.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_common::TopicPartition;

use super::Reply;
use crate::{codes, Broker};

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: Bytes,
    peer: SocketAddr,
) -> Reply {
    let v = header.request_api_version;
    let Unpacked {
        header,
        acks,
        timeout_ms,
        topics,
    } = match unpack(header, body) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(%peer, api = ?ApiKey::Produce, version = v, error = %e, "malformed request; closing connection");
            return Reply::Close;
        }
    };
    let timeout = Duration::from_millis(timeout_ms.clamp(1, 300_000) as u64);
    let mut responses = Vec::new();
    let mut waits = Vec::new();
    let mut any_error = false;
    for (topic_name, partitions) in topics {
        let name = topic_name.0.to_string();
        let mut parts = Vec::new();
        for (index, records) in partitions {
            let mut r = PartitionProduceResponse::default()
                .with_index(index)
                .with_log_append_time_ms(-1);
            if !matches!(acks, -1..=1) {
                r.error_code = codes::INVALID_REQUIRED_ACKS;
            } else {
                let tp = TopicPartition::new(name.as_str(), index);
                match broker.log.append_in_place(&tp, records, timeout).await {
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
                .with_name(topic_name)
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

/// A produce request taken apart, its record sets in buffers the log may keep.
struct Unpacked {
    /// What the answer needs: api key, version and correlation id.
    header: RequestHeader,
    acks: i16,
    timeout_ms: i32,
    topics: Vec<(TopicName, Vec<(i32, BytesMut)>)>,
}

/// Decodes a produce request `body` and takes each partition's record set out of it
/// as a buffer of its own.
///
/// A record set is a slice of the request frame. Once nothing else refers to the
/// frame, the record sets are split off it without a copy, so the log writes offsets
/// into the bytes the socket delivered. A record set much smaller than the frame is
/// copied all the same: a slice keeps its whole frame allocated for as long as the log
/// holds it, and a few bytes of a quiet partition must not pin a megabyte that other
/// partitions have long released. While the frame is still shared, every record set
/// is copied.
fn unpack(header: RequestHeader, body: Bytes) -> Result<Unpacked, String> {
    let frame = body.clone();
    let req: ProduceRequest = super::decode(body, header.request_api_version)?;
    // Only these are kept: the client id is a slice of the frame.
    let answer = RequestHeader::default()
        .with_request_api_key(header.request_api_key)
        .with_request_api_version(header.request_api_version)
        .with_correlation_id(header.correlation_id);
    drop(header);
    let Located {
        acks,
        timeout_ms,
        topics,
        places,
    } = locate(req, &frame);
    let mut sets = split_frame(frame, places).into_iter();
    let topics = topics
        .into_iter()
        .map(|(name, indexes)| {
            let parts = indexes
                .into_iter()
                .map(|i| (i, sets.next().unwrap_or_default()))
                .collect();
            (name, parts)
        })
        .collect();
    Ok(Unpacked {
        header: answer,
        acks,
        timeout_ms,
        topics,
    })
}

/// A request's fields without its record sets, and where those are.
struct Located {
    acks: i16,
    timeout_ms: i32,
    /// Each topic's name (owned) and partition indexes, in request order.
    topics: Vec<(TopicName, Vec<i32>)>,
    /// Each partition's record set, in the same order.
    places: Vec<Place>,
}

/// Where one partition's record set is.
enum Place {
    /// A range of the frame.
    Frame(Range<usize>),
    /// A buffer of its own already.
    Own(BytesMut),
}

/// Consumes `req`, so that once this returns nothing decoded refers to `frame`.
fn locate(req: ProduceRequest, frame: &Bytes) -> Located {
    let base = frame.as_ptr() as usize;
    let within = |b: &Bytes| {
        let start = (b.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(b.len())?;
        (end <= frame.len()).then_some(start..end)
    };
    let mut places = Vec::new();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = TopicName(StrBytes::from_string(topic.name.0.to_string()));
        let mut indexes = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let records = p.records.unwrap_or_default();
            places.push(match within(&records) {
                Some(range) if !records.is_empty() => Place::Frame(range),
                _ => Place::Own(BytesMut::from(&records[..])),
            });
            indexes.push(p.index);
        }
        topics.push((name, indexes));
    }
    Located {
        acks: req.acks,
        timeout_ms: req.timeout_ms,
        topics,
        places,
    }
}

/// Record sets at least this fraction (1/N) of their frame are kept in it.
const MIN_SHARE_OF_FRAME: usize = 16;

/// The record sets at `places`, split off `frame` where it is no longer shared.
fn split_frame(frame: Bytes, places: Vec<Place>) -> Vec<BytesMut> {
    let total = frame.len();
    let ascending = places
        .iter()
        .filter_map(|p| match p {
            Place::Frame(r) => Some(r),
            Place::Own(_) => None,
        })
        .try_fold(0, |end, r| (r.start >= end).then_some(r.end))
        .is_some();
    let mut rest = match frame.try_into_mut() {
        Ok(buf) if ascending => Ok(buf),
        Ok(buf) => Err(buf.freeze()),
        Err(frame) => Err(frame),
    };
    let mut at = 0;
    places
        .into_iter()
        .map(|place| match (place, &mut rest) {
            (Place::Own(buf), _) => buf,
            (Place::Frame(r), Ok(buf)) => {
                buf.advance(r.start - at);
                at = r.end;
                let set = buf.split_to(r.len());
                if r.len().saturating_mul(MIN_SHARE_OF_FRAME) >= total {
                    set
                } else {
                    BytesMut::from(&set[..])
                }
            }
            (Place::Frame(r), Err(frame)) => BytesMut::from(&frame[r]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use strata_format::records::{encode_batch, BatchSpec, Record};

    /// One batch of `n` records of `size` bytes each.
    fn batch(n: usize, size: usize) -> Bytes {
        let spec = BatchSpec::unassigned();
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                offset: i as i64,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(vec![i as u8; size])),
                headers: Vec::new(),
            })
            .collect();
        encode_batch(&spec, &records)
    }

    /// A request frame as a connection reads it (one allocation), and the header and
    /// body a connection hands on after decoding the header from it.
    fn request(version: i16, sets: &[Bytes]) -> (Bytes, RequestHeader, Bytes) {
        let parts = sets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                PartitionProduceData::default()
                    .with_index(i as i32)
                    .with_records(Some(s.clone()))
            })
            .collect();
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partition_data(parts)]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(41)
            .with_client_id(Some(StrBytes::from_static_str("rdkafka")));
        let hv = ApiKey::Produce.request_header_version(version);
        let mut buf = BytesMut::new();
        header.encode(&mut buf, hv).unwrap();
        req.encode(&mut buf, version).unwrap();
        let frame = BytesMut::from(&buf[..]).freeze();
        let mut body = frame.clone();
        let header = RequestHeader::decode(&mut body, hv).unwrap();
        (frame, header, body)
    }

    /// Whether `set` lies in the allocation `span` (start address, length) describes.
    fn inside(set: &BytesMut, span: (usize, usize)) -> bool {
        let p = set.as_ptr() as usize;
        p >= span.0 && p + set.len() <= span.0 + span.1
    }

    fn span(frame: &Bytes) -> (usize, usize) {
        (frame.as_ptr() as usize, frame.len())
    }

    #[test]
    fn record_sets_are_taken_from_the_frame_they_arrived_in() {
        for version in [3, 8, 9, 12] {
            // Two sets large enough to stay in the frame, one too small to.
            let sets = [batch(40, 1024), batch(10, 1024), batch(1, 10)];
            let (frame, header, body) = request(version, &sets);
            let span = span(&frame);
            drop(frame);
            let u = unpack(header, body).unwrap();
            assert_eq!((u.acks, u.timeout_ms), (-1, 30_000));
            assert_eq!(u.header.correlation_id, 41);
            assert_eq!(u.header.request_api_version, version);
            let (name, parts) = &u.topics[0];
            assert_eq!(name.0.as_str(), "events");
            let indexes: Vec<i32> = parts.iter().map(|(i, _)| *i).collect();
            assert_eq!(indexes, [0, 1, 2]);
            for ((_, got), want) in parts.iter().zip(&sets) {
                assert_eq!(&got[..], &want[..], "v{version}");
            }
            let kept: Vec<bool> = parts.iter().map(|(_, s)| inside(s, span)).collect();
            assert_eq!(kept, [true, true, false], "v{version}");
        }
    }

    #[test]
    fn record_sets_of_a_frame_still_shared_are_copied() {
        let sets = [batch(40, 1024), batch(10, 1024)];
        let (frame, header, body) = request(9, &sets);
        let u = unpack(header, body).unwrap();
        for ((_, got), want) in u.topics[0].1.iter().zip(&sets) {
            assert_eq!(&got[..], &want[..]);
            assert!(!inside(got, span(&frame)));
        }
    }

    #[test]
    fn offsets_written_into_one_set_leave_its_neighbours_intact() {
        let sets = [batch(20, 1024), batch(20, 1024)];
        let (frame, header, body) = request(9, &sets);
        drop(frame);
        let mut u = unpack(header, body).unwrap();
        let mut parts = std::mem::take(&mut u.topics[0].1).into_iter();
        let (_, mut first) = parts.next().unwrap();
        let (_, second) = parts.next().unwrap();
        strata_format::batch::set_base_offset(&mut first, 1_000);
        assert_eq!(&first[..8], &1_000i64.to_be_bytes());
        assert_eq!(&first[8..], &sets[0][8..]);
        assert_eq!(&second[..], &sets[1][..]);
    }
}
