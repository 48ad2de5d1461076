//! Kafka error codes, and the one place log and metadata errors become them.

use strata_log::LogError;
use strata_meta::MetaError;

pub const NONE: i16 = 0;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

pub fn log_error(e: &LogError) -> i16 {
    match e {
        LogError::UnknownPartition(_) => UNKNOWN_TOPIC_OR_PARTITION,
        LogError::NotLeader(_) => NOT_LEADER_OR_FOLLOWER,
        LogError::Corrupt(strata_format::FormatError::UnsupportedCompression(_)) => {
            UNSUPPORTED_COMPRESSION_TYPE
        }
        LogError::Corrupt(strata_format::FormatError::UnsupportedMagic(_)) => {
            UNSUPPORTED_FOR_MESSAGE_FORMAT
        }
        LogError::Corrupt(_) => CORRUPT_MESSAGE,
        LogError::TooLarge { .. } => MESSAGE_TOO_LARGE,
        LogError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        LogError::Timeout => REQUEST_TIMED_OUT,
        LogError::Store(_) => KAFKA_STORAGE_ERROR,
        LogError::Meta(m) => meta_error(m),
        LogError::Shutdown => NOT_LEADER_OR_FOLLOWER,
        LogError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
        LogError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
    }
}

pub fn meta_error(e: &MetaError) -> i16 {
    match e {
        MetaError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        MetaError::UnknownTopic(_) | MetaError::UnknownPartition(_) => UNKNOWN_TOPIC_OR_PARTITION,
        MetaError::InvalidPartitions(_) => INVALID_PARTITIONS,
        MetaError::Fenced { .. } => NOT_LEADER_OR_FOLLOWER,
        MetaError::OffsetMismatch { .. } => NOT_LEADER_OR_FOLLOWER,
        MetaError::InvalidOffset(_) => OFFSET_OUT_OF_RANGE,
        MetaError::Storage(m) if m.contains("topic config") => INVALID_CONFIG,
        MetaError::Storage(_) => KAFKA_STORAGE_ERROR,
        MetaError::UnknownBroker(_) => NOT_LEADER_OR_FOLLOWER,
    }
}
