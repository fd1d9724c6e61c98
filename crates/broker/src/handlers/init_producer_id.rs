//! InitProducerId (key 22) for idempotent producers: a fresh producer id with epoch 0.
//! Producer ids come in blocks recorded in the metadata log, so none is ever reused, across
//! restarts too. (Kafka 3+ clients enable idempotence by default.) Transactional producers
//! are refused until the transaction coordinator exists.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use tracing::error;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let refused = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return refused(ResponseError::InvalidRequest);
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
