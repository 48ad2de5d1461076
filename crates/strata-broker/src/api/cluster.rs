//! DescribeCluster: this broker, the cluster id and the controller.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::Broker;

pub(crate) async fn describe(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    req: DescribeClusterRequest,
) -> Reply {
    let (host, port) = broker.advertised();
    let node = BrokerId(broker.config.node_id);
    let resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.meta.cluster_id()))
        .with_controller_id(node)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(host))
            .with_port(port)]);
    let resp = if req.include_cluster_authorized_operations {
        resp.with_cluster_authorized_operations(super::metadata::CLUSTER_OPERATIONS)
    } else {
        resp
    };
    Reply::frame(header, &resp)
}
