//! DescribeCluster (key 60).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

/// `endpoint_type` 1 = brokers; 2 = controllers (KIP-919), which a single node combines.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &Broker,
    req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(sb(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.node_id))
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id))
            .with_host(sb(&broker.advertised_host))
            .with_port(i32::from(broker.advertised_port))
            .with_rack(broker.config.broker_rack.as_deref().map(sb))]);
    if version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS && req.endpoint_type != 2 {
        resp.error_code = ResponseError::UnsupportedEndpointType.code();
        resp.error_message = Some(sb("endpoint_type must be 1 (brokers) or 2 (controllers)"));
        resp.brokers.clear();
    }
    resp
}
