//! DescribeTransactions (key 65): the state of transactional ids, each answered by the shard
//! that owns it (`kafka-transactions.sh describe`, AdminClient `describeTransactions`).

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use runnel_txn::{TxnRequest, TxnResponse};

use super::txn_routing::route;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 0);

pub async fn handle(
    broker: &Arc<Broker>,
    req: DescribeTransactionsRequest,
    version: i16,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in &req.transactional_ids {
        let single =
            DescribeTransactionsRequest::default().with_transactional_ids(vec![id.clone()]);
        match route(
            broker,
            id.as_str(),
            version,
            TxnRequest::DescribeTransactions(single),
        )
        .await
        {
            TxnResponse::DescribeTransactions(r) => states.extend(r.transaction_states),
            _ => states.push(
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(ResponseError::UnknownServerError.code()),
            ),
        }
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
