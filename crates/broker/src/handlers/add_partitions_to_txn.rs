//! AddPartitionsToTxn (key 24): adds partitions to the producer's transaction before it
//! writes to them. Versions 0–3 name one transaction (clients); version 4 batches several and
//! may only verify (KIP-890 part 1, sent by brokers): the batch is split by the shard owning
//! each transactional id and the answers merged. Version 5 (transaction version 2) is not
//! advertised.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnResult;
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use runnel_txn::{TxnRequest, TxnResponse};

use super::txn_routing::route;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

fn unknown_error() -> AddPartitionsToTxnResponse {
    AddPartitionsToTxnResponse::default().with_error_code(ResponseError::UnknownServerError.code())
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let id = req.v3_and_below_transactional_id.0.to_string();
        return match route(broker, &id, version, TxnRequest::AddPartitionsToTxn(req)).await {
            TxnResponse::AddPartitionsToTxn(r) => r,
            _ => unknown_error(),
        };
    }
    // Version 4+: one request per transaction, answered by its own shard.
    let mut results: Vec<AddPartitionsToTxnResult> = Vec::with_capacity(req.transactions.len());
    let mut error_code = 0;
    for txn in &req.transactions {
        let id = txn.transactional_id.0.to_string();
        let single = AddPartitionsToTxnRequest::default().with_transactions(vec![txn.clone()]);
        match route(broker, &id, version, TxnRequest::AddPartitionsToTxn(single)).await {
            TxnResponse::AddPartitionsToTxn(r) => {
                if r.error_code != 0 {
                    error_code = r.error_code;
                }
                results.extend(r.results_by_transaction);
            }
            _ => return unknown_error(),
        }
    }
    AddPartitionsToTxnResponse::default()
        .with_error_code(error_code)
        .with_results_by_transaction(results)
}
