//! `MetaError` on the wire: as a `strata.meta.v1.MetaError` message (also
//! used for per-commit results of CommitWal) and as a `tonic::Status` whose
//! details carry that message, so every variant comes back with its fields.

use prost::Message;
use strata_proto::strata::meta::v1 as pb;
use tonic::{Code, Status};

use super::{required, FromPb, Invalid, ToPb};
use crate::MetaError;

use pb::meta_error::Kind;

/// Type URL of the `MetaError` detail, as `google.protobuf.Any` spells it.
const ERROR_TYPE_URL: &str = "type.googleapis.com/strata.meta.v1.MetaError";

impl ToPb for MetaError {
    type Pb = pb::MetaError;
    fn to_pb(&self) -> pb::MetaError {
        use pb::meta_error as e;
        let kind = match self {
            MetaError::TopicExists(topic) => Kind::TopicExists(e::TopicExists {
                topic: topic.clone(),
            }),
            MetaError::UnknownTopic(topic) => Kind::UnknownTopic(e::UnknownTopic {
                topic: topic.clone(),
            }),
            MetaError::UnknownPartition(tp) => Kind::UnknownPartition(e::UnknownPartition {
                partition: Some(tp.to_pb()),
            }),
            MetaError::InvalidPartitions(reason) => Kind::InvalidPartitions(e::InvalidPartitions {
                reason: reason.clone(),
            }),
            MetaError::Fenced { tp, current, given } => Kind::Fenced(e::Fenced {
                partition: Some(tp.to_pb()),
                current_epoch: *current,
                given_epoch: *given,
            }),
            MetaError::OffsetMismatch { tp, end, given } => {
                Kind::OffsetMismatch(e::OffsetMismatch {
                    partition: Some(tp.to_pb()),
                    end_offset: *end,
                    given_offset: *given,
                })
            }
            MetaError::InvalidOffset(offset) => {
                Kind::InvalidOffset(e::InvalidOffset { offset: *offset })
            }
            MetaError::Storage(message) => Kind::Storage(e::Storage {
                message: message.clone(),
            }),
            MetaError::UnknownBroker(id) => {
                Kind::UnknownBroker(e::UnknownBroker { broker_id: *id })
            }
        };
        pb::MetaError { kind: Some(kind) }
    }
}

impl FromPb for MetaError {
    type Pb = pb::MetaError;
    fn from_pb(pb: pb::MetaError) -> Result<Self, Invalid> {
        let kind = pb
            .kind
            .ok_or_else(|| Invalid("error kind missing".into()))?;
        Ok(match kind {
            Kind::TopicExists(e) => MetaError::TopicExists(e.topic),
            Kind::UnknownTopic(e) => MetaError::UnknownTopic(e.topic),
            Kind::UnknownPartition(e) => {
                MetaError::UnknownPartition(required(e.partition, "error partition")?)
            }
            Kind::InvalidPartitions(e) => MetaError::InvalidPartitions(e.reason),
            Kind::Fenced(e) => MetaError::Fenced {
                tp: required(e.partition, "error partition")?,
                current: e.current_epoch,
                given: e.given_epoch,
            },
            Kind::OffsetMismatch(e) => MetaError::OffsetMismatch {
                tp: required(e.partition, "error partition")?,
                end: e.end_offset,
                given: e.given_offset,
            },
            Kind::InvalidOffset(e) => MetaError::InvalidOffset(e.offset),
            Kind::Storage(e) => MetaError::Storage(e.message),
            Kind::UnknownBroker(e) => MetaError::UnknownBroker(e.broker_id),
        })
    }
}

/// The gRPC code a generic client (or a human with grpcurl) should see.
fn code(e: &MetaError) -> Code {
    match e {
        MetaError::TopicExists(_) => Code::AlreadyExists,
        MetaError::UnknownTopic(_) | MetaError::UnknownPartition(_) => Code::NotFound,
        MetaError::UnknownBroker(_) => Code::NotFound,
        MetaError::InvalidPartitions(_) => Code::InvalidArgument,
        MetaError::InvalidOffset(_) => Code::OutOfRange,
        // Retrying cannot help until a new leader epoch is acquired.
        MetaError::Fenced { .. } => Code::FailedPrecondition,
        // A sequencing conflict: gRPC's guidance is Aborted.
        MetaError::OffsetMismatch { .. } => Code::Aborted,
        MetaError::Storage(_) => Code::Unavailable,
    }
}

/// `e` as a status carrying the typed error in its details.
pub(crate) fn to_status(e: &MetaError) -> Status {
    let code = code(e);
    let message = e.to_string();
    let details = pb::StatusDetails {
        code: code as i32,
        message: message.clone(),
        details: vec![pb::AnyDetail {
            type_url: ERROR_TYPE_URL.to_string(),
            value: e.to_pb().encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// The backend's error `status` carries, if it carries one; `None` for a
/// status made by the transport (or by something that is not this service).
pub(crate) fn from_status(status: &Status) -> Option<MetaError> {
    if status.details().is_empty() {
        return None;
    }
    let details = pb::StatusDetails::decode(status.details()).ok()?;
    let any = details
        .details
        .into_iter()
        .find(|d| d.type_url == ERROR_TYPE_URL)?;
    let pb = pb::MetaError::decode(any.value.as_slice()).ok()?;
    MetaError::from_pb(pb).ok()
}
