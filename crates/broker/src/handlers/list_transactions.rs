//! ListTransactions (key 66): every transactional id this coordinator knows, filtered by
//! state and producer id (from version 1 by duration, KIP-994; from version 2 by a regular
//! expression on the transactional id, KIP-1152), gathered from every shard.

use std::sync::Arc;

use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use runnel_protocol::VersionRange;
use runnel_txn::{TxnRequest, TxnResponse};

use super::txn_routing::to_every_shard;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

pub async fn handle(
    broker: &Arc<Broker>,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let answers = match to_every_shard(broker, version, TxnRequest::ListTransactions(req)).await {
        Ok(a) => a,
        Err(e) => return ListTransactionsResponse::default().with_error_code(e.code()),
    };
    let mut merged = ListTransactionsResponse::default();
    for answer in answers {
        if let TxnResponse::ListTransactions(r) = answer {
            if r.error_code != 0 {
                merged.error_code = r.error_code;
            }
            merged.unknown_state_filters.extend(r.unknown_state_filters);
            merged.transaction_states.extend(r.transaction_states);
        }
    }
    merged.unknown_state_filters.sort();
    merged.unknown_state_filters.dedup();
    merged
}
