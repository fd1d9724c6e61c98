//! TxnOffsetCommit (key 28): offsets a transactional producer commits for a consumer group
//! inside its transaction (`send_offsets_to_transaction`), answered by the group coordinator
//! shard that owns the group. They are written as a transactional batch of the producer into
//! `__consumer_offsets` and become visible only when the transaction commits (its marker
//! reaches that partition). Version 5 (transaction version 2) is not advertised.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::route;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    // Every partition gets the coordinator's error if it cannot answer.
    let topics = req.topics.clone();
    let unwrap = |r| match r {
        GroupResponse::TxnOffsetCommit(r) => Some(r),
        _ => None,
    };
    match route(
        broker,
        ctx,
        &group_id,
        version,
        GroupRequest::TxnOffsetCommit(req),
        unwrap,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => TxnOffsetCommitResponse::default().with_topics(
            topics
                .into_iter()
                .map(|t| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}
