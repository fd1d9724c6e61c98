//! AddOffsetsToTxn (key 25): adds the group's partition of `__consumer_offsets` to the
//! producer's transaction (`send_offsets_to_transaction`), answered by the transaction
//! coordinator shard that owns the transactional id.

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use runnel_txn::{TxnRequest, TxnResponse};

use super::txn_routing::route;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

pub async fn handle(
    broker: &Arc<Broker>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.to_string();
    match route(broker, &id, version, TxnRequest::AddOffsetsToTxn(req)).await {
        TxnResponse::AddOffsetsToTxn(r) => r,
        _ => AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::UnknownServerError.code()),
    }
}
