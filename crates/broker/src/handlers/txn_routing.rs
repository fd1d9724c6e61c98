//! Routing of transaction requests to the coordinator shard that owns the transactional id.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use runnel_txn::{ShardRequest, TxnRequest, TxnResponse};

use crate::errors::KafkaError;
use crate::state::{Broker, TopicState};

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

/// KIP-890 part 1: before a transactional batch (a produce, or the group coordinator's
/// batch of transactional offset commits) opens a transaction in a partition, the
/// transaction coordinator confirms that the producer's ongoing transaction includes that
/// partition (AddPartitionsToTxn verify_only). A late or stray write (say, a retry after the
/// transaction was aborted) is refused instead of opening a transaction that nothing would
/// ever close (a "hanging" transaction, which would hold the partition's last stable offset
/// back for good): with TRANSACTION_ABORTABLE for clients that know it
/// (`abortable_known`: Produce v11+, TxnOffsetCommit v4+), else INVALID_TXN_STATE, and a
/// fenced producer with INVALID_PRODUCER_EPOCH, as Kafka's AddPartitionsToTxnManager answers.
pub(crate) async fn verify_transaction(
    broker: &Arc<Broker>,
    transactional_id: &str,
    topic: &TopicState,
    index: i32,
    producer: (i64, i16),
    abortable_known: bool,
) -> Result<(), KafkaError> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName};
    let Some(partition) = topic.partition(index) else {
        return Ok(());
    };
    if partition
        .log
        .ongoing_transactions()
        .iter()
        .any(|&(_, producer_id)| producer_id == producer.0)
    {
        return Ok(());
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(super::sb(transactional_id).into())
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_verify_only(true)
            .with_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(super::sb(&topic.name)))
                .with_partitions(vec![index])]),
    ]);
    let refused = |code: i16| {
        let error = match ResponseError::try_from_code(code) {
            // A fenced producer: answered with INVALID_PRODUCER_EPOCH, as Kafka does
            // (PRODUCER_FENCED is not among Produce's or TxnOffsetCommit's error codes).
            Some(ResponseError::ProducerFenced) | Some(ResponseError::InvalidProducerEpoch) => {
                ResponseError::InvalidProducerEpoch
            }
            Some(ResponseError::TransactionAbortable) => not_in_transaction(abortable_known),
            Some(e) => e,
            None => ResponseError::InvalidTxnState,
        };
        KafkaError::with_message(
            error,
            "the partition is not part of the producer's ongoing transaction",
        )
    };
    let response = route(
        broker,
        transactional_id,
        4,
        runnel_txn::TxnRequest::AddPartitionsToTxn(request),
    )
    .await;
    let runnel_txn::TxnResponse::AddPartitionsToTxn(r) = response else {
        return Err(refused(ResponseError::InvalidTxnState.code()));
    };
    if r.error_code != 0 {
        return Err(refused(r.error_code));
    }
    // The answer must name this partition with no error: anything else (an error, or an
    // answer about other partitions only) refuses.
    let mut confirmed = false;
    for result in &r.results_by_transaction {
        for t in &result.topic_results {
            for p in &t.results_by_partition {
                if p.partition_error_code != 0 {
                    return Err(refused(p.partition_error_code));
                }
                confirmed |= t.name.as_str() == topic.name && p.partition_index == index;
            }
        }
    }
    if confirmed {
        Ok(())
    } else {
        Err(refused(ResponseError::InvalidTxnState.code()))
    }
}

/// The error for a write outside the producer's transaction: TRANSACTION_ABORTABLE for
/// clients that know it (`abortable_known`), else INVALID_TXN_STATE (Kafka's
/// AddPartitionsToTxnManager).
pub(crate) fn not_in_transaction(abortable_known: bool) -> ResponseError {
    if abortable_known {
        ResponseError::TransactionAbortable
    } else {
        ResponseError::InvalidTxnState
    }
}
