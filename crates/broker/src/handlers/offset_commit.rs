//! OffsetCommit (key 8), answered by the shard that owns the group. The shard's records
//! are appended to `__consumer_offsets` before the answer goes out.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::route;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(2, 9);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_id = req.group_id.0.to_string();
    // On a coordinator error every partition carries it.
    let skeleton: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let unwrap = |r| match r {
        GroupResponse::OffsetCommit(r) => Some(r),
        _ => None,
    };
    match route(
        broker,
        ctx,
        &group_id,
        version,
        GroupRequest::OffsetCommit(req),
        unwrap,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => OffsetCommitResponse::default().with_topics(
            skeleton
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}
