//! The metadata service's gRPC front: any [`Metadata`] backend (embedded
//! file, etcd) served over `strata.meta.v1.MetadataService`, so brokers on
//! other machines reach it through [`RemoteMetadata`](super::RemoteMetadata).
//!
//! The server adds no state and no policy of its own: fencing, idempotence
//! and validation are the backend's, which is what lets several replicas
//! run in front of one etcd.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::strata::meta::v1 as pb;
use strata_proto::strata::meta::v1::metadata_service_server::{
    MetadataService, MetadataServiceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::convert::{all_from_pb, all_to_pb, configs_from_pb, required, to_status, ToPb};
use super::MAX_MESSAGE_BYTES;
use crate::{MetaError, Metadata, Result};

/// Serves `backend` over gRPC.
pub struct MetaServer {
    backend: Arc<dyn Metadata>,
}

impl MetaServer {
    pub fn new(backend: Arc<dyn Metadata>) -> Self {
        Self { backend }
    }

    /// The tonic service, ready to mount.
    pub fn into_service(self) -> MetadataServiceServer<Self> {
        MetadataServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves `backend` on `listener` until `shutdown` is cancelled, then stops
/// accepting and lets in-flight calls finish.
pub async fn serve_meta(
    listener: TcpListener,
    backend: Arc<dyn Metadata>,
    shutdown: CancellationToken,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| MetaError::Storage(e.to_string()))?;
    tracing::info!(%addr, cluster_id = %backend.cluster_id(), "metadata service listening");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // Notices clients that vanished without closing, so their
        // connections do not pile up.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .serve_with_incoming_shutdown(
            MetaServer::new(backend).into_service(),
            incoming,
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|e| MetaError::Storage(format!("metadata service on {addr}: {e}")))?;
    tracing::info!(%addr, "metadata service stopped");
    Ok(())
}

type Reply<T> = std::result::Result<Response<T>, Status>;

/// Maps a backend error once, here, at the boundary. Storage failures are
/// the backend's trouble rather than the caller's, so they are logged.
fn fail(method: &'static str, e: MetaError) -> Status {
    if let MetaError::Storage(_) = e {
        tracing::warn!(method, error = %e, "metadata backend failed");
    } else {
        tracing::debug!(method, error = %e, "metadata call refused");
    }
    to_status(&e)
}

fn ok<T>(message: T) -> Reply<T> {
    Ok(Response::new(message))
}

#[tonic::async_trait]
impl MetadataService for MetaServer {
    async fn get_cluster_id(
        &self,
        _: Request<pb::GetClusterIdRequest>,
    ) -> Reply<pb::GetClusterIdResponse> {
        ok(pb::GetClusterIdResponse {
            cluster_id: self.backend.cluster_id(),
        })
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Reply<pb::CreateTopicResponse> {
        let r = req.into_inner();
        let t = self
            .backend
            .create_topic(&r.name, r.partitions, configs_from_pb(r.configs))
            .await
            .map_err(|e| fail("create_topic", e))?;
        ok(pb::CreateTopicResponse {
            topic: Some(t.to_pb()),
        })
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Reply<pb::DeleteTopicResponse> {
        let (t, orphans) = self
            .backend
            .delete_topic(&req.into_inner().name)
            .await
            .map_err(|e| fail("delete_topic", e))?;
        ok(pb::DeleteTopicResponse {
            topic: Some(t.to_pb()),
            orphaned_wal_keys: orphans,
        })
    }

    async fn list_topics(
        &self,
        _: Request<pb::ListTopicsRequest>,
    ) -> Reply<pb::ListTopicsResponse> {
        let topics = self.backend.topics().await.map_err(|e| fail("topics", e))?;
        ok(pb::ListTopicsResponse {
            topics: all_to_pb(&topics),
        })
    }

    async fn get_topic(&self, req: Request<pb::GetTopicRequest>) -> Reply<pb::GetTopicResponse> {
        let t = self
            .backend
            .topic(&req.into_inner().name)
            .await
            .map_err(|e| fail("topic", e))?;
        ok(pb::GetTopicResponse {
            topic: t.as_ref().map(ToPb::to_pb),
        })
    }

    async fn create_partitions(
        &self,
        req: Request<pb::CreatePartitionsRequest>,
    ) -> Reply<pb::CreatePartitionsResponse> {
        let r = req.into_inner();
        let t = self
            .backend
            .create_partitions(&r.name, r.total)
            .await
            .map_err(|e| fail("create_partitions", e))?;
        ok(pb::CreatePartitionsResponse {
            topic: Some(t.to_pb()),
        })
    }

    async fn set_topic_configs(
        &self,
        req: Request<pb::SetTopicConfigsRequest>,
    ) -> Reply<pb::SetTopicConfigsResponse> {
        let r = req.into_inner();
        let t = self
            .backend
            .set_topic_configs(&r.name, configs_from_pb(r.configs))
            .await
            .map_err(|e| fail("set_topic_configs", e))?;
        ok(pb::SetTopicConfigsResponse {
            topic: Some(t.to_pb()),
        })
    }

    async fn acquire_partition(
        &self,
        req: Request<pb::AcquirePartitionRequest>,
    ) -> Reply<pb::AcquirePartitionResponse> {
        let r = req.into_inner();
        let tp = required(r.partition, "partition")?;
        let m = self
            .backend
            .acquire_partition(&tp, r.broker_id)
            .await
            .map_err(|e| fail("acquire_partition", e))?;
        ok(pb::AcquirePartitionResponse {
            manifest: Some(m.to_pb()),
        })
    }

    async fn get_manifest(
        &self,
        req: Request<pb::GetManifestRequest>,
    ) -> Reply<pb::GetManifestResponse> {
        let tp = required(req.into_inner().partition, "partition")?;
        let m = self
            .backend
            .manifest(&tp)
            .await
            .map_err(|e| fail("manifest", e))?;
        ok(pb::GetManifestResponse {
            manifest: Some(m.to_pb()),
        })
    }

    async fn commit_wal(&self, req: Request<pb::CommitWalRequest>) -> Reply<pb::CommitWalResponse> {
        let commits = all_from_pb(req.into_inner().commits)?;
        let results = self
            .backend
            .commit_wal(commits)
            .await
            .map_err(|e| fail("commit_wal", e))?;
        ok(pb::CommitWalResponse {
            results: results
                .into_iter()
                .map(|r| pb::WalCommitResult {
                    error: r.err().map(|e| e.to_pb()),
                })
                .collect(),
        })
    }

    async fn commit_segment(
        &self,
        req: Request<pb::CommitSegmentRequest>,
    ) -> Reply<pb::CommitSegmentResponse> {
        let r = req.into_inner();
        let tp = required(r.partition, "partition")?;
        let segment = required(r.segment, "segment")?;
        let orphans = self
            .backend
            .commit_segment(&tp, r.leader_epoch, segment)
            .await
            .map_err(|e| fail("commit_segment", e))?;
        ok(pb::CommitSegmentResponse {
            orphaned_wal_keys: orphans,
        })
    }

    async fn truncate_front(
        &self,
        req: Request<pb::TruncateFrontRequest>,
    ) -> Reply<pb::TruncateFrontResponse> {
        let r = req.into_inner();
        let tp = required(r.partition, "partition")?;
        let freed = self
            .backend
            .truncate_front(&tp, r.leader_epoch, r.log_start_offset)
            .await
            .map_err(|e| fail("truncate_front", e))?;
        ok(freed.to_pb())
    }

    async fn allocate_producer_id(
        &self,
        _: Request<pb::AllocateProducerIdRequest>,
    ) -> Reply<pb::AllocateProducerIdResponse> {
        let id = self
            .backend
            .allocate_producer_id()
            .await
            .map_err(|e| fail("allocate_producer_id", e))?;
        ok(pb::AllocateProducerIdResponse { producer_id: id })
    }

    async fn commit_offsets(
        &self,
        req: Request<pb::CommitOffsetsRequest>,
    ) -> Reply<pb::CommitOffsetsResponse> {
        let r = req.into_inner();
        let offsets = all_from_pb(r.offsets)?;
        self.backend
            .commit_offsets(&r.group, offsets)
            .await
            .map_err(|e| fail("commit_offsets", e))?;
        ok(pb::CommitOffsetsResponse {})
    }

    async fn fetch_offsets(
        &self,
        req: Request<pb::FetchOffsetsRequest>,
    ) -> Reply<pb::FetchOffsetsResponse> {
        let offsets = self
            .backend
            .fetch_offsets(&req.into_inner().group)
            .await
            .map_err(|e| fail("fetch_offsets", e))?;
        ok(pb::FetchOffsetsResponse {
            offsets: all_to_pb(&offsets),
        })
    }

    async fn list_offset_groups(
        &self,
        _: Request<pb::ListOffsetGroupsRequest>,
    ) -> Reply<pb::ListOffsetGroupsResponse> {
        let groups = self
            .backend
            .offset_groups()
            .await
            .map_err(|e| fail("offset_groups", e))?;
        ok(pb::ListOffsetGroupsResponse { groups })
    }

    async fn delete_offsets(
        &self,
        req: Request<pb::DeleteOffsetsRequest>,
    ) -> Reply<pb::DeleteOffsetsResponse> {
        let r = req.into_inner();
        let partitions = match r.partitions {
            Some(list) => Some(all_from_pb(list.partitions)?),
            None => None,
        };
        self.backend
            .delete_offsets(&r.group, partitions)
            .await
            .map_err(|e| fail("delete_offsets", e))?;
        ok(pb::DeleteOffsetsResponse {})
    }

    async fn register_broker(
        &self,
        req: Request<pb::RegisterBrokerRequest>,
    ) -> Reply<pb::RegisterBrokerResponse> {
        let broker = required(req.into_inner().broker, "broker")?;
        self.backend
            .register_broker(broker)
            .await
            .map_err(|e| fail("register_broker", e))?;
        ok(pb::RegisterBrokerResponse {})
    }

    async fn heartbeat_broker(
        &self,
        req: Request<pb::HeartbeatBrokerRequest>,
    ) -> Reply<pb::HeartbeatBrokerResponse> {
        self.backend
            .heartbeat_broker(req.into_inner().broker_id)
            .await
            .map_err(|e| fail("heartbeat_broker", e))?;
        ok(pb::HeartbeatBrokerResponse {})
    }

    async fn get_cluster_view(
        &self,
        _: Request<pb::GetClusterViewRequest>,
    ) -> Reply<pb::GetClusterViewResponse> {
        let view = self
            .backend
            .cluster()
            .await
            .map_err(|e| fail("cluster", e))?;
        ok(view.to_pb())
    }

    async fn check_assignment_leader(
        &self,
        req: Request<pb::CheckAssignmentLeaderRequest>,
    ) -> Reply<pb::CheckAssignmentLeaderResponse> {
        let is_leader = self
            .backend
            .assignment_leader(&req.into_inner().replica)
            .await
            .map_err(|e| fail("assignment_leader", e))?;
        ok(pb::CheckAssignmentLeaderResponse { is_leader })
    }
}
