//! InitProducerId (key 22). For an idempotent producer: a fresh producer id with epoch 0.
//! Producer ids come in blocks recorded in the metadata log, so none is ever reused, across
//! restarts too. (Kafka 3+ clients enable idempotence by default.) For a transactional
//! producer: answered by the transaction coordinator shard that owns the transactional id
//! (epoch bumps, fencing of the previous instance, KIP-360 recovery).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use tracing::error;

use super::txn_routing::route;
use crate::state::Broker;
use runnel_txn::{TxnRequest, TxnResponse};

pub const VERSIONS: VersionRange = VersionRange::new(0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let refused = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = req.transactional_id.clone() {
        let id = id.to_string();
        return match route(broker, &id, version, TxnRequest::InitProducerId(req)).await {
            TxnResponse::InitProducerId(r) => r,
            _ => refused(ResponseError::UnknownServerError),
        };
    }
    match broker.allocate_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_error_code(0)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            error!(error = %e, "cannot allocate a producer id");
            refused(ResponseError::CoordinatorNotAvailable)
        }
    }
}
