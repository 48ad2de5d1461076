//! ApiVersions: which APIs and versions this broker answers.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use super::Reply;
use crate::{codes, Broker};

fn versions() -> Vec<ApiVersion> {
    ApiKey::iter()
        .filter_map(|k| {
            super::supported(k).map(|(min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
        })
        .collect()
}

pub(crate) async fn handle(
    _broker: &Arc<Broker>,
    header: &RequestHeader,
    _req: ApiVersionsRequest,
) -> Reply {
    let resp = ApiVersionsResponse::default()
        .with_error_code(codes::NONE)
        .with_api_keys(versions());
    Reply::frame(header, &resp)
}

/// The v0-shaped UNSUPPORTED_VERSION answer to an ApiVersions request of a
/// version we do not know (its header may not even be decodable).
pub(crate) fn unsupported(correlation_id: i32) -> Option<Bytes> {
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i16(codes::UNSUPPORTED_VERSION);
    let v = versions();
    body.put_i32(v.len() as i32);
    for a in v {
        body.put_i16(a.api_key);
        body.put_i16(a.min_version);
        body.put_i16(a.max_version);
    }
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32);
    out.extend_from_slice(&body);
    Some(out.freeze())
}
