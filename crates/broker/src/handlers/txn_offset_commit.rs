//! TxnOffsetCommit (key 28): offsets a transactional producer commits for a consumer group
//! inside its transaction (`send_offsets_to_transaction`), answered by the group coordinator
//! shard that owns the group. They are written as a transactional batch of the producer into
//! `__consumer_offsets` and become visible only when the transaction commits (its marker
//! reaches that partition). Version 5 (transaction version 2) is not advertised.
//!
//! As in Kafka (KIP-890 part 1, the group coordinator's transactional writes), the handler
//! first asks the transaction coordinator whether the group's partition of
//! `__consumer_offsets` is in the producer's ongoing transaction (AddOffsetsToTxn put it
//! there), holding a verification of that partition's log from before the question until the
//! append: a commit outside the transaction, or one whose transaction ended meanwhile, is
//! refused instead of opening a transaction in `__consumer_offsets` that nothing would close.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use super::group_routing::{expect_kind, route};
use crate::coordinator::{TxnVerification, OFFSETS_TOPIC};
use crate::errors::KafkaError;
use crate::state::{now_ms, Broker};

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    // Every partition gets the coordinator's error if it cannot answer, or the verification's
    // if it refused, but for those of unknown topics (UNKNOWN_TOPIC_OR_PARTITION, as the
    // coordinator answers them).
    let topics = req.topics.clone();
    let known = |topic: &str, partition: i32| {
        broker
            .topic(topic)
            .is_some_and(|t| t.partition(partition).is_some())
    };
    let any_known = topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| known(t.name.as_str(), p.partition_index))
    });
    let unwrap = |r| match r {
        GroupResponse::TxnOffsetCommit(r) => Some(r),
        _ => None,
    };
    let answered = if group_id.is_empty() || !any_known {
        // INVALID_GROUP_ID, or UNKNOWN_TOPIC_OR_PARTITION for every partition, from the
        // coordinator, before any verification (as in Kafka).
        route(
            broker,
            ctx,
            &group_id,
            version,
            GroupRequest::TxnOffsetCommit(req),
            unwrap,
        )
        .await
    } else {
        verified(broker, ctx, req, version)
            .await
            .and_then(|r| expect_kind(r, unwrap))
    };
    match answered {
        Ok(r) => r,
        Err(e) => TxnOffsetCommitResponse::default().with_topics(
            topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let code = if known(t.name.as_str(), p.partition_index) {
                                e.code()
                            } else {
                                kafka_protocol::ResponseError::UnknownTopicOrPartition.code()
                            };
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect(),
        ),
    }
}

/// Verifies that the group's partition of `__consumer_offsets` is in the producer's ongoing
/// transaction (KIP-890), then sends the request to the shard that owns the group with the
/// verification its transactional batch must present.
async fn verified(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> Result<GroupResponse, KafkaError> {
    let shards = broker.group_coordinators().await?.len();
    let index = runnel_group::partition_for_group(req.group_id.as_str(), shards as i32);
    let topic = broker.topic(OFFSETS_TOPIC).ok_or_else(|| {
        KafkaError::with_message(
            kafka_protocol::ResponseError::CoordinatorNotAvailable,
            format!("{OFFSETS_TOPIC} is not open"),
        )
    })?;
    let producer = (req.producer_id.0, req.producer_epoch);
    let abortable_known = version >= 4;
    let refused_code = super::txn_routing::not_in_transaction(abortable_known).code();
    // Taken before asking: a marker written meanwhile (the transaction ended) voids it.
    let verification = topic.partition(index).map(|p| TxnVerification {
        guard: p.log.start_txn_verification(producer.0, now_ms()),
        refused_code,
    });
    super::txn_routing::verify_transaction(
        broker,
        req.transactional_id.as_str(),
        &topic,
        index,
        producer,
        abortable_known,
    )
    .await?;
    broker
        .shard_request_verified(
            index as usize,
            ctx,
            ShardRequest {
                version,
                body: GroupRequest::TxnOffsetCommit(req),
            },
            verification,
        )
        .await
}
