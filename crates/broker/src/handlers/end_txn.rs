//! EndTxn (key 26): commit or abort the producer's transaction, answered by the transaction
//! coordinator shard that owns the transactional id once the prepare state is durable; the
//! markers follow (see `crate::txn_coordinator`). Version 5 (transaction version 2, KIP-890)
//! is not advertised: the coordinator runs transaction version 0/1 semantics for clients.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use runnel_txn::{TxnRequest, TxnResponse};

use super::txn_routing::route;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

pub async fn handle(broker: &Arc<Broker>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = req.transactional_id.0.to_string();
    match route(broker, &id, version, TxnRequest::EndTxn(req)).await {
        TxnResponse::EndTxn(r) => r,
        _ => EndTxnResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
    }
}
