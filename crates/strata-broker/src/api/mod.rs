//! One module per Kafka API. `dispatch` decodes the body for the request's
//! version and hands it to the API's handler.

pub mod api_versions;
mod cluster;
mod configs;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod records;
mod topics;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::Broker;

/// A response that is not ready until durability or data arrives.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// A [`Pending`] response whose frame references buffers it did not copy.
pub(crate) type PendingFrame = Pin<Box<dyn Future<Output = Option<crate::frame::Frame>> + Send>>;

pub(crate) enum Reply {
    /// A response frame now (`None`: none is due, as for acks=0).
    Now(Option<Bytes>),
    Later(Pending),
    LaterFrame(PendingFrame),
    Close,
}

impl Reply {
    fn frame<T: Encodable>(header: &RequestHeader, body: &T) -> Reply {
        match crate::conn::frame(header, body) {
            Some(b) => Reply::Now(Some(b)),
            None => Reply::Close,
        }
    }
}

/// Versions Strata answers, per API; `None` for APIs it does not serve.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    Some(match key {
        ApiKey::Produce => (3, 12),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 10),
        ApiKey::Metadata => (0, 12),
        ApiKey::ApiVersions => (0, 4),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 6),
        ApiKey::DeleteRecords => (0, 2),
        ApiKey::InitProducerId => (0, 5),
        ApiKey::DescribeConfigs => (1, 4),
        ApiKey::AlterConfigs => (0, 2),
        ApiKey::CreatePartitions => (0, 3),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DescribeCluster => (0, 1),
        ApiKey::FindCoordinator => (0, 6),
        ApiKey::JoinGroup => (0, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 5),
        ApiKey::OffsetCommit => (2, 9),
        ApiKey::OffsetFetch => (1, 9),
        ApiKey::ListGroups => (0, 5),
        ApiKey::DescribeGroups => (0, 6),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::OffsetDelete => (0, 0),
        _ => return None,
    })
}

/// Decodes a request body; decoder failures (or panics, which would be a
/// bug in the decoder) become an error instead of taking the task down.
fn decode<T: Decodable>(body: Bytes, version: i16) -> Result<T, String> {
    std::panic::catch_unwind(move || {
        let mut body = body;
        T::decode(&mut body, version).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("decoder panicked".to_string()))
}

/// Parses a whole request frame body (header and message) the way a
/// connection does, without acting on it. The fuzz target drives this: any
/// input must give `Ok` or `Err`, never a panic or a hang.
pub fn parse_request(frame: Bytes) -> Result<ApiKey, String> {
    use kafka_protocol::messages::*;
    if frame.len() < 8 {
        return Err("frame shorter than a request header".into());
    }
    let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]]))
        .map_err(|_| "unknown api key".to_string())?;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let (min, max) = supported(key).ok_or("api not supported")?;
    if version < min || version > max {
        return Err("unsupported version".into());
    }
    let mut frame = frame;
    let hv = key.request_header_version(version);
    std::panic::catch_unwind(move || RequestHeader::decode(&mut frame, hv).map(|_| frame))
        .map_err(|_| "header decoder panicked".to_string())?
        .map_err(|e| e.to_string())
        .and_then(|body| match key {
            ApiKey::Produce => decode::<ProduceRequest>(body, version).map(drop),
            ApiKey::Fetch => decode::<FetchRequest>(body, version).map(drop),
            ApiKey::ListOffsets => decode::<ListOffsetsRequest>(body, version).map(drop),
            ApiKey::Metadata => decode::<MetadataRequest>(body, version).map(drop),
            ApiKey::ApiVersions => decode::<ApiVersionsRequest>(body, version).map(drop),
            ApiKey::CreateTopics => decode::<CreateTopicsRequest>(body, version).map(drop),
            ApiKey::DeleteTopics => decode::<DeleteTopicsRequest>(body, version).map(drop),
            ApiKey::DeleteRecords => decode::<DeleteRecordsRequest>(body, version).map(drop),
            ApiKey::InitProducerId => decode::<InitProducerIdRequest>(body, version).map(drop),
            ApiKey::DescribeConfigs => decode::<DescribeConfigsRequest>(body, version).map(drop),
            ApiKey::AlterConfigs => decode::<AlterConfigsRequest>(body, version).map(drop),
            ApiKey::CreatePartitions => decode::<CreatePartitionsRequest>(body, version).map(drop),
            ApiKey::IncrementalAlterConfigs => {
                decode::<IncrementalAlterConfigsRequest>(body, version).map(drop)
            }
            ApiKey::DescribeCluster => decode::<DescribeClusterRequest>(body, version).map(drop),
            ApiKey::FindCoordinator => decode::<FindCoordinatorRequest>(body, version).map(drop),
            ApiKey::JoinGroup => decode::<JoinGroupRequest>(body, version).map(drop),
            ApiKey::SyncGroup => decode::<SyncGroupRequest>(body, version).map(drop),
            ApiKey::Heartbeat => decode::<HeartbeatRequest>(body, version).map(drop),
            ApiKey::LeaveGroup => decode::<LeaveGroupRequest>(body, version).map(drop),
            ApiKey::OffsetCommit => decode::<OffsetCommitRequest>(body, version).map(drop),
            ApiKey::OffsetFetch => decode::<OffsetFetchRequest>(body, version).map(drop),
            ApiKey::ListGroups => decode::<ListGroupsRequest>(body, version).map(drop),
            ApiKey::DescribeGroups => decode::<DescribeGroupsRequest>(body, version).map(drop),
            ApiKey::DeleteGroups => decode::<DeleteGroupsRequest>(body, version).map(drop),
            ApiKey::OffsetDelete => decode::<OffsetDeleteRequest>(body, version).map(drop),
            _ => Err("api not supported".into()),
        })
        .map(|_| key)
}

pub(crate) async fn dispatch(
    broker: &Arc<Broker>,
    key: ApiKey,
    header: RequestHeader,
    body: Bytes,
    peer: SocketAddr,
) -> Reply {
    let v = header.request_api_version;
    macro_rules! call {
        ($handler:path $(, $extra:expr)?) => {
            match decode(body, v) {
                Ok(req) => $handler(broker, &header, req $(, $extra)?).await,
                Err(e) => {
                    tracing::warn!(%peer, api = ?key, version = v, error = %e, "malformed request; closing connection");
                    Reply::Close
                }
            }
        };
    }
    match key {
        ApiKey::ApiVersions => call!(api_versions::handle),
        ApiKey::Metadata => call!(metadata::handle),
        // Decoded by its handler, which keeps the frame's record sets.
        ApiKey::Produce => produce::handle(broker, header, body, peer).await,
        ApiKey::Fetch => call!(fetch::handle),
        ApiKey::ListOffsets => call!(list_offsets::handle),
        ApiKey::CreateTopics => call!(topics::create),
        ApiKey::DeleteTopics => call!(topics::delete),
        ApiKey::CreatePartitions => call!(topics::create_partitions),
        ApiKey::DescribeConfigs => call!(configs::describe),
        ApiKey::AlterConfigs => call!(configs::alter),
        ApiKey::IncrementalAlterConfigs => call!(configs::incremental_alter),
        ApiKey::DescribeCluster => call!(cluster::describe),
        ApiKey::DeleteRecords => call!(records::delete_records),
        ApiKey::InitProducerId => call!(records::init_producer_id),
        ApiKey::FindCoordinator => call!(groups::find_coordinator),
        ApiKey::JoinGroup => call!(groups::join, peer),
        ApiKey::SyncGroup => call!(groups::sync),
        ApiKey::Heartbeat => call!(groups::heartbeat),
        ApiKey::LeaveGroup => call!(groups::leave),
        ApiKey::ListGroups => call!(groups::list),
        ApiKey::DescribeGroups => call!(groups::describe),
        ApiKey::DeleteGroups => call!(groups::delete),
        ApiKey::OffsetCommit => call!(offsets::commit),
        ApiKey::OffsetFetch => call!(offsets::fetch),
        ApiKey::OffsetDelete => call!(offsets::delete),
        _ => Reply::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};
    use proptest::prelude::*;

    fn frame_of<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        let mut buf = bytes::BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn well_formed_requests_parse() {
        let f = frame_of(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(parse_request(f), Ok(ApiKey::Metadata));
        let f = frame_of(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1));
        assert_eq!(parse_request(f), Ok(ApiKey::Produce));
    }

    #[test]
    fn every_truncation_of_a_request_is_an_error_not_a_panic() {
        let f = frame_of(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        );
        for cut in 0..f.len() {
            assert!(parse_request(f.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_truncation_of_a_group_request_is_an_error_not_a_panic() {
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        use kafka_protocol::messages::{GroupId, JoinGroupRequest, OffsetCommitRequest, TopicName};
        use kafka_protocol::protocol::StrBytes;
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t"))]);
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(5)
                ])]);
        for f in [
            frame_of(ApiKey::JoinGroup, 9, &join),
            frame_of(ApiKey::JoinGroup, 2, &join),
            frame_of(ApiKey::OffsetCommit, 9, &commit),
            frame_of(ApiKey::OffsetCommit, 2, &commit),
        ] {
            assert!(parse_request(f.clone()).is_ok());
            for cut in 0..f.len() {
                assert!(parse_request(f.slice(..cut)).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn unknown_keys_and_versions_are_refused() {
        let mut b = bytes::BytesMut::new();
        b.put_i16(9999);
        b.put_i16(0);
        b.put_i32(1);
        assert!(parse_request(b.freeze()).is_err());
        let f = frame_of(ApiKey::Metadata, 12, &MetadataRequest::default());
        let mut v = f.to_vec();
        v[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert_eq!(
            parse_request(Bytes::from(v)),
            Err("unsupported version".to_string())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn arbitrary_bytes_never_panic(key in 0i16..70, version in 0i16..16, rest in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = bytes::BytesMut::new();
            b.put_i16(key);
            b.put_i16(version);
            b.extend_from_slice(&rest);
            let _ = parse_request(b.freeze());
        }
    }
}
