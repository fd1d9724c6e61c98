//! Routing of transaction requests to the coordinator shard that owns the transactional id.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use runnel_txn::{ShardRequest, TxnRequest, TxnResponse};

use crate::state::Broker;

/// Sends a request to the shard owning `transactional_id`. If the coordinator cannot answer,
/// the answer is the request's own error response (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE:
/// clients find the coordinator again and retry).
pub(crate) async fn route(
    broker: &Arc<Broker>,
    transactional_id: &str,
    version: i16,
    body: TxnRequest,
) -> TxnResponse {
    let request = ShardRequest { version, body };
    let fallback = request.clone();
    match broker.txn_request(transactional_id, request).await {
        Ok(response) => response,
        Err(e) => runnel_txn::error_response(
            &fallback,
            ResponseError::try_from_code(e.code()).unwrap_or(ResponseError::NotCoordinator),
        ),
    }
}

/// Sends `body` to every shard of the coordinator and collects the answers (a shard that
/// cannot answer gives its request's error response).
pub(crate) async fn to_every_shard(
    broker: &Arc<Broker>,
    version: i16,
    body: TxnRequest,
) -> Result<Vec<TxnResponse>, crate::errors::KafkaError> {
    let shards = broker.txn_coordinators().await?.len();
    let mut answers = Vec::with_capacity(shards);
    for index in 0..shards {
        let request = ShardRequest {
            version,
            body: body.clone(),
        };
        let fallback = request.clone();
        answers.push(match broker.txn_shard_request(index, request).await {
            Ok(r) => r,
            Err(e) => runnel_txn::error_response(
                &fallback,
                ResponseError::try_from_code(e.code()).unwrap_or(ResponseError::NotCoordinator),
            ),
        });
    }
    Ok(answers)
}
