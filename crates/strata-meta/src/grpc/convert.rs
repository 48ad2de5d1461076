//! Conversions between the [`Metadata`](crate::Metadata) trait's types and
//! the `strata.meta.v1` messages, both ways, and between [`MetaError`] and
//! `tonic::Status`: the one place the wire format meets the Rust types.
//!
//! Errors travel as a status whose details hold a `google.rpc.Status`-shaped
//! message carrying one `MetaError` message, so the client rebuilds exactly
//! the error the backend raised, fields and all (see `error`).

use std::collections::BTreeMap;

use strata_common::TopicPartition;
use strata_proto::strata::meta::v1 as pb;
use tonic::Status;

use crate::{
    BrokerInfo, ClusterView, CommittedOffset, Freed, MetaError, PartitionLeader, PartitionManifest,
    ProducerBatch, ProducerEntry, ProducerSnapshot, SegmentEntry, TopicMeta, WalCommit, WalRange,
};

mod error;

pub(crate) use error::{from_status, to_status};

/// A message that has no Rust value: a required field missing or a number
/// out of range. Only version skew or a bug produces one.
#[derive(Debug)]
pub(crate) struct Invalid(pub(crate) String);

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Self {
        Status::invalid_argument(e.0)
    }
}

impl From<Invalid> for MetaError {
    fn from(e: Invalid) -> Self {
        MetaError::Storage(format!("invalid metadata service response: {}", e.0))
    }
}

pub(crate) trait ToPb {
    type Pb;
    fn to_pb(&self) -> Self::Pb;
}

pub(crate) trait FromPb: Sized {
    type Pb;
    fn from_pb(pb: Self::Pb) -> Result<Self, Invalid>;
}

/// A message field proto3 cannot make mandatory, but the API does.
pub(crate) fn required<T: FromPb>(pb: Option<T::Pb>, what: &str) -> Result<T, Invalid> {
    T::from_pb(pb.ok_or_else(|| Invalid(format!("{what} missing")))?)
}

pub(crate) fn all_from_pb<T: FromPb>(pbs: Vec<T::Pb>) -> Result<Vec<T>, Invalid> {
    pbs.into_iter().map(T::from_pb).collect()
}

pub(crate) fn all_to_pb<T: ToPb>(values: &[T]) -> Vec<T::Pb> {
    values.iter().map(T::to_pb).collect()
}

pub(crate) fn configs_from_pb(
    configs: std::collections::HashMap<String, String>,
) -> BTreeMap<String, String> {
    configs.into_iter().collect()
}

impl ToPb for TopicPartition {
    type Pb = pb::TopicPartition;
    fn to_pb(&self) -> pb::TopicPartition {
        pb::TopicPartition {
            topic: self.topic.to_string(),
            partition: self.partition,
        }
    }
}

impl FromPb for TopicPartition {
    type Pb = pb::TopicPartition;
    fn from_pb(pb: pb::TopicPartition) -> Result<Self, Invalid> {
        Ok(TopicPartition::new(pb.topic, pb.partition))
    }
}

impl ToPb for TopicMeta {
    type Pb = pb::Topic;
    fn to_pb(&self) -> pb::Topic {
        pb::Topic {
            name: self.name.clone(),
            topic_id: self.id.hyphenated().to_string(),
            partitions: self.partitions,
            configs: self.configs.clone().into_iter().collect(),
        }
    }
}

impl FromPb for TopicMeta {
    type Pb = pb::Topic;
    fn from_pb(pb: pb::Topic) -> Result<Self, Invalid> {
        let id = uuid::Uuid::parse_str(&pb.topic_id)
            .map_err(|e| Invalid(format!("topic id {:?}: {e}", pb.topic_id)))?;
        Ok(TopicMeta {
            name: pb.name,
            id,
            partitions: pb.partitions,
            configs: configs_from_pb(pb.configs),
        })
    }
}

impl ToPb for ProducerBatch {
    type Pb = pb::ProducerBatch;
    fn to_pb(&self) -> pb::ProducerBatch {
        pb::ProducerBatch {
            first_sequence: self.first_seq,
            last_sequence: self.last_seq,
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            timestamp: self.timestamp,
        }
    }
}

impl FromPb for ProducerBatch {
    type Pb = pb::ProducerBatch;
    fn from_pb(pb: pb::ProducerBatch) -> Result<Self, Invalid> {
        Ok(ProducerBatch {
            first_seq: pb.first_sequence,
            last_seq: pb.last_sequence,
            base_offset: pb.base_offset,
            last_offset: pb.last_offset,
            timestamp: pb.timestamp,
        })
    }
}

impl ToPb for ProducerEntry {
    type Pb = pb::ProducerEntry;
    fn to_pb(&self) -> pb::ProducerEntry {
        pb::ProducerEntry {
            producer_id: self.producer_id,
            producer_epoch: self.epoch.into(),
            last_seen_ms: self.last_seen_ms,
            batches: all_to_pb(&self.batches),
        }
    }
}

impl FromPb for ProducerEntry {
    type Pb = pb::ProducerEntry;
    fn from_pb(pb: pb::ProducerEntry) -> Result<Self, Invalid> {
        // Proto has no int16; a wider value is corrupt, not to be truncated.
        let epoch = i16::try_from(pb.producer_epoch)
            .map_err(|_| Invalid(format!("producer epoch {} out of range", pb.producer_epoch)))?;
        Ok(ProducerEntry {
            producer_id: pb.producer_id,
            epoch,
            last_seen_ms: pb.last_seen_ms,
            batches: all_from_pb(pb.batches)?,
        })
    }
}

impl ToPb for ProducerSnapshot {
    type Pb = pb::ProducerSnapshot;
    fn to_pb(&self) -> pb::ProducerSnapshot {
        pb::ProducerSnapshot {
            complete: self.complete,
            producers: all_to_pb(&self.producers),
        }
    }
}

impl FromPb for ProducerSnapshot {
    type Pb = pb::ProducerSnapshot;
    fn from_pb(pb: pb::ProducerSnapshot) -> Result<Self, Invalid> {
        Ok(ProducerSnapshot {
            complete: pb.complete,
            producers: all_from_pb(pb.producers)?,
        })
    }
}

impl ToPb for SegmentEntry {
    type Pb = pb::SegmentEntry;
    fn to_pb(&self) -> pb::SegmentEntry {
        pb::SegmentEntry {
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            key: self.key.clone(),
            size_bytes: self.size_bytes,
            max_timestamp: self.max_timestamp,
            producers: self.producers.as_ref().map(ToPb::to_pb),
        }
    }
}

impl FromPb for SegmentEntry {
    type Pb = pb::SegmentEntry;
    fn from_pb(pb: pb::SegmentEntry) -> Result<Self, Invalid> {
        Ok(SegmentEntry {
            base_offset: pb.base_offset,
            last_offset: pb.last_offset,
            key: pb.key,
            size_bytes: pb.size_bytes,
            max_timestamp: pb.max_timestamp,
            producers: pb.producers.map(ProducerSnapshot::from_pb).transpose()?,
        })
    }
}

impl ToPb for WalRange {
    type Pb = pb::WalRange;
    fn to_pb(&self) -> pb::WalRange {
        pb::WalRange {
            key: self.key.clone(),
            start: self.start,
            end: self.end,
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
        }
    }
}

impl FromPb for WalRange {
    type Pb = pb::WalRange;
    fn from_pb(pb: pb::WalRange) -> Result<Self, Invalid> {
        Ok(WalRange {
            key: pb.key,
            start: pb.start,
            end: pb.end,
            base_offset: pb.base_offset,
            last_offset: pb.last_offset,
            max_timestamp: pb.max_timestamp,
        })
    }
}

impl ToPb for PartitionManifest {
    type Pb = pb::PartitionManifest;
    fn to_pb(&self) -> pb::PartitionManifest {
        pb::PartitionManifest {
            leader_epoch: self.leader_epoch,
            leader: self.leader,
            log_start_offset: self.log_start_offset,
            end_offset: self.end_offset,
            segments: all_to_pb(&self.segments),
            wal_ranges: all_to_pb(&self.wal),
        }
    }
}

impl FromPb for PartitionManifest {
    type Pb = pb::PartitionManifest;
    fn from_pb(pb: pb::PartitionManifest) -> Result<Self, Invalid> {
        Ok(PartitionManifest {
            leader_epoch: pb.leader_epoch,
            leader: pb.leader,
            log_start_offset: pb.log_start_offset,
            end_offset: pb.end_offset,
            segments: all_from_pb(pb.segments)?,
            wal: all_from_pb(pb.wal_ranges)?,
        })
    }
}

impl ToPb for WalCommit {
    type Pb = pb::WalCommit;
    fn to_pb(&self) -> pb::WalCommit {
        pb::WalCommit {
            partition: Some(self.tp.to_pb()),
            leader_epoch: self.epoch,
            range: Some(self.range.to_pb()),
        }
    }
}

impl FromPb for WalCommit {
    type Pb = pb::WalCommit;
    fn from_pb(pb: pb::WalCommit) -> Result<Self, Invalid> {
        Ok(WalCommit {
            tp: required(pb.partition, "wal commit partition")?,
            epoch: pb.leader_epoch,
            range: required(pb.range, "wal commit range")?,
        })
    }
}

impl ToPb for CommittedOffset {
    type Pb = pb::CommittedOffset;
    fn to_pb(&self) -> pb::CommittedOffset {
        pb::CommittedOffset {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp: self.commit_timestamp,
        }
    }
}

impl FromPb for CommittedOffset {
    type Pb = pb::CommittedOffset;
    fn from_pb(pb: pb::CommittedOffset) -> Result<Self, Invalid> {
        Ok(CommittedOffset {
            offset: pb.offset,
            leader_epoch: pb.leader_epoch,
            metadata: pb.metadata,
            commit_timestamp: pb.commit_timestamp,
        })
    }
}

impl ToPb for (TopicPartition, CommittedOffset) {
    type Pb = pb::PartitionOffset;
    fn to_pb(&self) -> pb::PartitionOffset {
        pb::PartitionOffset {
            partition: Some(self.0.to_pb()),
            committed: Some(self.1.to_pb()),
        }
    }
}

impl FromPb for (TopicPartition, CommittedOffset) {
    type Pb = pb::PartitionOffset;
    fn from_pb(pb: pb::PartitionOffset) -> Result<Self, Invalid> {
        Ok((
            required(pb.partition, "offset partition")?,
            required(pb.committed, "committed offset")?,
        ))
    }
}

impl ToPb for Freed {
    type Pb = pb::TruncateFrontResponse;
    fn to_pb(&self) -> pb::TruncateFrontResponse {
        pb::TruncateFrontResponse {
            freed_segments: all_to_pb(&self.segments),
            freed_wal_keys: self.wal_keys.clone(),
        }
    }
}

impl FromPb for Freed {
    type Pb = pb::TruncateFrontResponse;
    fn from_pb(pb: pb::TruncateFrontResponse) -> Result<Self, Invalid> {
        Ok(Freed {
            segments: all_from_pb(pb.freed_segments)?,
            wal_keys: pb.freed_wal_keys,
        })
    }
}

impl ToPb for BrokerInfo {
    type Pb = pb::BrokerInfo;
    fn to_pb(&self) -> pb::BrokerInfo {
        pb::BrokerInfo {
            broker_id: self.id,
            host: self.host.clone(),
            port: self.port,
        }
    }
}

impl FromPb for BrokerInfo {
    type Pb = pb::BrokerInfo;
    fn from_pb(pb: pb::BrokerInfo) -> Result<Self, Invalid> {
        Ok(BrokerInfo {
            id: pb.broker_id,
            host: pb.host,
            port: pb.port,
        })
    }
}

impl ToPb for PartitionLeader {
    type Pb = pb::PartitionLeader;
    fn to_pb(&self) -> pb::PartitionLeader {
        pb::PartitionLeader {
            partition: Some(self.tp.to_pb()),
            leader: self.leader,
            leader_epoch: self.epoch,
        }
    }
}

impl FromPb for PartitionLeader {
    type Pb = pb::PartitionLeader;
    fn from_pb(pb: pb::PartitionLeader) -> Result<Self, Invalid> {
        Ok(PartitionLeader {
            tp: required(pb.partition, "leader partition")?,
            leader: pb.leader,
            epoch: pb.leader_epoch,
        })
    }
}

impl ToPb for ClusterView {
    type Pb = pb::GetClusterViewResponse;
    fn to_pb(&self) -> pb::GetClusterViewResponse {
        pb::GetClusterViewResponse {
            brokers: all_to_pb(&self.brokers),
            leaders: all_to_pb(&self.leaders),
        }
    }
}

impl FromPb for ClusterView {
    type Pb = pb::GetClusterViewResponse;
    fn from_pb(pb: pb::GetClusterViewResponse) -> Result<Self, Invalid> {
        Ok(ClusterView {
            brokers: all_from_pb(pb.brokers)?,
            leaders: all_from_pb(pb.leaders)?,
        })
    }
}

#[cfg(test)]
mod tests;
