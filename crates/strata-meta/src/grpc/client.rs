//! [`RemoteMetadata`]: the [`Metadata`] trait over gRPC, for brokers whose
//! metadata service runs elsewhere, usually several `strata meta` replicas
//! in front of one etcd.
//!
//! Failover is the point. A call goes to the replica that answered last; if
//! it cannot be reached the call moves on to the next one. Whether it may
//! also move on after an *ambiguous* failure (a timeout, a connection lost
//! mid-call: the first replica may have applied it) depends on the call:
//! ones that are safe to apply twice do; the rest return a retriable
//! `Storage` error and leave the choice to the caller, who knows whether a
//! `TopicExists` on retry means success.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use strata_common::TopicPartition;
use strata_proto::strata::meta::v1 as pb;
use strata_proto::strata::meta::v1::metadata_service_client::MetadataServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::convert::{all_from_pb, all_to_pb, from_status, required, FromPb, ToPb};
use super::MAX_MESSAGE_BYTES;
use crate::{
    BrokerInfo, ClusterView, CommittedOffset, Freed, MetaError, Metadata, PartitionManifest,
    Result, SegmentEntry, TopicMeta, WalCommit,
};

/// How long calls may take.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Whole-call limit per replica tried. A stalled replica costs this
    /// much before the next one is asked.
    pub call_timeout: Duration,
    /// TCP connect limit, kept short: a refused or unroutable replica
    /// should be skipped quickly.
    pub connect_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

type Client = MetadataServiceClient<Channel>;

struct Replica {
    uri: String,
    client: Client,
}

/// The metadata service reached over gRPC, failing over across replicas.
pub struct RemoteMetadata {
    replicas: Vec<Replica>,
    /// Index of the replica to try first.
    preferred: AtomicUsize,
    call_timeout: Duration,
    cluster_id: String,
}

/// Whether a call may be sent to another replica after a failure that left
/// its outcome unknown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Applying it twice is the same as once (reads, replacing writes,
    /// commits the backend recognises as already done).
    Safe,
    /// A second application differs (`TopicExists`, a doubled segment).
    Unsafe,
}

/// How a call failed, which decides whether another replica is asked.
enum Failure {
    /// The service answered: any replica would say the same.
    Answered(MetaError),
    /// The request never left this process (connect refused or timed out).
    Unreached(String),
    /// The request may or may not have been applied.
    Ambiguous(String),
}

fn classify(status: Status) -> Failure {
    if let Some(e) = from_status(&status) {
        return Failure::Answered(e);
    }
    match status.code() {
        // Only a server decoding our request refuses it this way; another
        // replica runs the same code.
        Code::InvalidArgument | Code::Unimplemented => Failure::Answered(MetaError::Storage(
            format!("metadata service refused the request: {}", status.message()),
        )),
        _ if never_sent(&status) => Failure::Unreached(status.message().to_string()),
        _ => Failure::Ambiguous(status.message().to_string()),
    }
}

/// True when the status came from failing to open a connection, so the
/// request was never written.
fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Splits `http://a:1,http://b:2`; a bare `host:port` means plain http.
fn parse_endpoints(endpoints: &str) -> Result<Vec<String>> {
    let uris: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s.to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect();
    if uris.is_empty() {
        return Err(MetaError::Storage(format!(
            "no metadata service endpoint in {endpoints:?}"
        )));
    }
    Ok(uris)
}

impl RemoteMetadata {
    /// Connects to the replicas listed in `endpoints` (comma separated) with
    /// default timeouts. Fails when none of them answers.
    pub async fn connect(endpoints: &str) -> Result<Self> {
        Self::connect_with(endpoints, RemoteOptions::default()).await
    }

    pub async fn connect_with(endpoints: &str, options: RemoteOptions) -> Result<Self> {
        let mut this = Self::unconnected(endpoints, &options)?;
        // The trait's cluster_id() is sync, so it is asked once, here.
        let resp = this
            .call("get_cluster_id", Replay::Safe, |mut c| async move {
                c.get_cluster_id(pb::GetClusterIdRequest {}).await
            })
            .await?;
        this.cluster_id = resp.cluster_id;
        Ok(this)
    }

    /// Channels to every replica, none opened yet.
    fn unconnected(endpoints: &str, options: &RemoteOptions) -> Result<Self> {
        let mut replicas = Vec::new();
        for uri in parse_endpoints(endpoints)? {
            let endpoint = Endpoint::from_shared(uri.clone())
                .map_err(|e| MetaError::Storage(format!("metadata endpoint {uri}: {e}")))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                // Finds a replica that died without closing the connection
                // before a call has to time out on it.
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            // Lazy: an unreachable replica must not stop us starting, and
            // each call reconnects a dropped channel by itself.
            let client = MetadataServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            replicas.push(Replica { uri, client });
        }
        Ok(Self {
            replicas,
            preferred: AtomicUsize::new(0),
            call_timeout: options.call_timeout,
            cluster_id: String::new(),
        })
    }

    /// Runs `rpc` against the preferred replica, then the others in turn as
    /// far as `replay` and the kind of failure allow.
    async fn call<T, F, Fut>(&self, method: &'static str, replay: Replay, rpc: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    {
        let n = self.replicas.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last_error = String::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let replica = &self.replicas[idx];
            let outcome =
                tokio::time::timeout(self.call_timeout, rpc(replica.client.clone())).await;
            let failure = match outcome {
                Ok(Ok(resp)) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(resp.into_inner());
                }
                Ok(Err(status)) => classify(status),
                Err(_) => Failure::Ambiguous(format!("no answer within {:?}", self.call_timeout)),
            };
            let (error, ambiguous) = match failure {
                Failure::Answered(e) => return Err(e),
                Failure::Unreached(e) => (e, false),
                Failure::Ambiguous(e) => (e, true),
            };
            tracing::warn!(
                endpoint = %replica.uri,
                method,
                ambiguous,
                error = %error,
                "metadata replica call failed"
            );
            // Later calls start at the next replica, unless a concurrent
            // call already moved on.
            let _ = self.preferred.compare_exchange(
                idx,
                (idx + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            last_error = format!("{}: {error}", replica.uri);
            if ambiguous && replay == Replay::Unsafe {
                return Err(MetaError::Storage(format!(
                    "metadata call {method} failed, outcome unknown: {last_error}"
                )));
            }
        }
        Err(MetaError::Storage(format!(
            "no metadata replica reachable for {method}; last: {last_error}"
        )))
    }
}

/// One RPC through [`RemoteMetadata::call`]: the request is cloned per
/// attempt, since a failed attempt consumed it.
macro_rules! rpc {
    ($self:ident, $method:ident, $replay:expr, $req:expr) => {{
        let req = $req;
        $self
            .call(stringify!($method), $replay, move |mut c| {
                let req = req.clone();
                async move { c.$method(req).await }
            })
            .await
    }};
}

#[async_trait]
impl Metadata for RemoteMetadata {
    fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        let req = pb::CreateTopicRequest {
            name: name.to_string(),
            partitions,
            configs: configs.into_iter().collect(),
        };
        let resp = rpc!(self, create_topic, Replay::Unsafe, req)?;
        Ok(required(resp.topic, "topic")?)
    }

    async fn delete_topic(&self, name: &str) -> Result<(TopicMeta, Vec<String>)> {
        let req = pb::DeleteTopicRequest {
            name: name.to_string(),
        };
        // Unsafe: a second try answers UnknownTopic and loses the orphan list.
        let resp = rpc!(self, delete_topic, Replay::Unsafe, req)?;
        Ok((required(resp.topic, "topic")?, resp.orphaned_wal_keys))
    }

    async fn topics(&self) -> Result<Vec<TopicMeta>> {
        let resp = rpc!(self, list_topics, Replay::Safe, pb::ListTopicsRequest {})?;
        Ok(all_from_pb(resp.topics)?)
    }

    async fn topic(&self, name: &str) -> Result<Option<TopicMeta>> {
        let req = pb::GetTopicRequest {
            name: name.to_string(),
        };
        let resp = rpc!(self, get_topic, Replay::Safe, req)?;
        Ok(resp.topic.map(TopicMeta::from_pb).transpose()?)
    }

    async fn create_partitions(&self, name: &str, total: i32) -> Result<TopicMeta> {
        let req = pb::CreatePartitionsRequest {
            name: name.to_string(),
            total,
        };
        let resp = rpc!(self, create_partitions, Replay::Unsafe, req)?;
        Ok(required(resp.topic, "topic")?)
    }

    async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        let req = pb::SetTopicConfigsRequest {
            name: name.to_string(),
            configs: configs.into_iter().collect(),
        };
        let resp = rpc!(self, set_topic_configs, Replay::Safe, req)?;
        Ok(required(resp.topic, "topic")?)
    }

    async fn acquire_partition(
        &self,
        tp: &TopicPartition,
        broker: i32,
    ) -> Result<PartitionManifest> {
        let req = pb::AcquirePartitionRequest {
            partition: Some(tp.to_pb()),
            broker_id: broker,
        };
        // Safe: a doubled acquire only skips an epoch, and the caller uses
        // the one it is given.
        let resp = rpc!(self, acquire_partition, Replay::Safe, req)?;
        Ok(required(resp.manifest, "manifest")?)
    }

    async fn manifest(&self, tp: &TopicPartition) -> Result<PartitionManifest> {
        let req = pb::GetManifestRequest {
            partition: Some(tp.to_pb()),
        };
        let resp = rpc!(self, get_manifest, Replay::Safe, req)?;
        Ok(required(resp.manifest, "manifest")?)
    }

    async fn commit_wal(&self, commits: Vec<WalCommit>) -> Result<Vec<Result<()>>> {
        let n = commits.len();
        let req = pb::CommitWalRequest {
            commits: all_to_pb(&commits),
        };
        // Safe: the backend accepts a re-sent range as already committed.
        let resp = rpc!(self, commit_wal, Replay::Safe, req)?;
        if resp.results.len() != n {
            return Err(MetaError::Storage(format!(
                "commit_wal sent {n} commits, got {} results",
                resp.results.len()
            )));
        }
        resp.results
            .into_iter()
            .map(|r| match r.error {
                None => Ok(Ok(())),
                Some(e) => Ok(Err(MetaError::from_pb(e)?)),
            })
            .collect()
    }

    async fn commit_segment(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        segment: SegmentEntry,
    ) -> Result<Vec<String>> {
        let req = pb::CommitSegmentRequest {
            partition: Some(tp.to_pb()),
            leader_epoch: epoch,
            segment: Some(segment.to_pb()),
        };
        let resp = rpc!(self, commit_segment, Replay::Unsafe, req)?;
        Ok(resp.orphaned_wal_keys)
    }

    async fn truncate_front(
        &self,
        tp: &TopicPartition,
        epoch: i32,
        log_start_offset: i64,
    ) -> Result<Freed> {
        let req = pb::TruncateFrontRequest {
            partition: Some(tp.to_pb()),
            leader_epoch: epoch,
            log_start_offset,
        };
        // Unsafe: a second try frees nothing, hiding what the first freed.
        let resp = rpc!(self, truncate_front, Replay::Unsafe, req)?;
        Ok(Freed::from_pb(resp)?)
    }

    async fn allocate_producer_id(&self) -> Result<i64> {
        // Safe: a doubled allocation only wastes an id.
        let resp = rpc!(
            self,
            allocate_producer_id,
            Replay::Safe,
            pb::AllocateProducerIdRequest {}
        )?;
        Ok(resp.producer_id)
    }

    async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> Result<()> {
        let req = pb::CommitOffsetsRequest {
            group: group.to_string(),
            offsets: all_to_pb(&offsets),
        };
        rpc!(self, commit_offsets, Replay::Safe, req)?;
        Ok(())
    }

    async fn fetch_offsets(&self, group: &str) -> Result<Vec<(TopicPartition, CommittedOffset)>> {
        let req = pb::FetchOffsetsRequest {
            group: group.to_string(),
        };
        let resp = rpc!(self, fetch_offsets, Replay::Safe, req)?;
        Ok(all_from_pb(resp.offsets)?)
    }

    async fn offset_groups(&self) -> Result<Vec<String>> {
        let resp = rpc!(
            self,
            list_offset_groups,
            Replay::Safe,
            pb::ListOffsetGroupsRequest {}
        )?;
        Ok(resp.groups)
    }

    async fn delete_offsets(
        &self,
        group: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<()> {
        let req = pb::DeleteOffsetsRequest {
            group: group.to_string(),
            partitions: partitions.map(|tps| pb::PartitionList {
                partitions: all_to_pb(&tps),
            }),
        };
        rpc!(self, delete_offsets, Replay::Safe, req)?;
        Ok(())
    }

    async fn register_broker(&self, broker: BrokerInfo) -> Result<()> {
        let req = pb::RegisterBrokerRequest {
            broker: Some(broker.to_pb()),
        };
        rpc!(self, register_broker, Replay::Safe, req)?;
        Ok(())
    }

    async fn heartbeat_broker(&self, id: i32) -> Result<()> {
        let req = pb::HeartbeatBrokerRequest { broker_id: id };
        rpc!(self, heartbeat_broker, Replay::Safe, req)?;
        Ok(())
    }

    async fn cluster(&self) -> Result<ClusterView> {
        let resp = rpc!(
            self,
            get_cluster_view,
            Replay::Safe,
            pb::GetClusterViewRequest {}
        )?;
        Ok(ClusterView::from_pb(resp)?)
    }

    async fn assignment_leader(&self, replica: &str) -> Result<bool> {
        let req = pb::CheckAssignmentLeaderRequest {
            replica: replica.to_string(),
        };
        let resp = rpc!(self, check_assignment_leader, Replay::Safe, req)?;
        Ok(resp.is_leader)
    }
}

#[cfg(test)]
mod tests;
