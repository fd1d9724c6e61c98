//! FindCoordinator (key 10): this node coordinates every group and every transactional id (a
//! cluster of one). The first request of a kind creates `__consumer_offsets` or
//! `__transaction_state` and starts that coordinator, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use super::sb;
use crate::errors::KafkaError;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 6);

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

async fn find(broker: &Arc<Broker>, key_type: i8, key: &str) -> Result<(), KafkaError> {
    match key_type {
        KEY_TYPE_GROUP => {
            if key.is_empty() {
                return Err(KafkaError::new(ResponseError::InvalidGroupId));
            }
            broker.group_coordinators().await.map(|_| ())
        }
        KEY_TYPE_TRANSACTION => {
            if key.is_empty() {
                return Err(KafkaError::new(ResponseError::InvalidRequest));
            }
            broker.txn_coordinators().await.map(|_| ())
        }
        other => Err(KafkaError::with_message(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let node = BrokerId(broker.node_id);
    let host = sb(&broker.advertised_host);
    let port = i32::from(broker.advertised_port);
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in &req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match find(broker, req.key_type, key.as_str()).await {
                Ok(()) => c.with_node_id(node).with_host(host.clone()).with_port(port),
                Err(e) => c
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(e.code())
                    .with_error_message(e.message.as_deref().map(sb)),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match find(broker, req.key_type, req.key.as_str()).await {
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port),
        Err(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message(if version >= 1 {
                e.message.as_deref().map(sb)
            } else {
                None
            })
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1),
    }
}
