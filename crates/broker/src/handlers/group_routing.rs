//! Routing of group requests to the coordinator shard that owns the group, and fan-out of
//! requests that name several groups.

use std::sync::Arc;

use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};

use crate::errors::KafkaError;
use crate::state::Broker;

/// Sends a single-group request to its shard and unwraps the expected response kind.
pub(crate) async fn route<T>(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    group_id: &str,
    version: i16,
    body: GroupRequest,
    unwrap: fn(GroupResponse) -> Option<T>,
) -> Result<T, KafkaError> {
    let response = broker
        .group_request(group_id, ctx, ShardRequest { version, body })
        .await?;
    unwrap(response).ok_or_else(|| {
        KafkaError::with_message(
            kafka_protocol::ResponseError::UnknownServerError,
            "coordinator answered with another response kind",
        )
    })
}

/// Splits `items` (each naming a group) by the shard that owns the group. Returns the
/// shard index and the positions of its items in the original order.
pub(crate) async fn split_by_shard<'a, I>(
    broker: &Arc<Broker>,
    group_ids: I,
) -> Result<Vec<(usize, Vec<usize>)>, KafkaError>
where
    I: IntoIterator<Item = &'a str>,
{
    let shards = broker.group_coordinators().await?.len();
    let mut by_shard: Vec<(usize, Vec<usize>)> = Vec::new();
    for (pos, id) in group_ids.into_iter().enumerate() {
        let shard = runnel_group::partition_for_group(id, shards as i32) as usize;
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, v)) => v.push(pos),
            None => by_shard.push((shard, vec![pos])),
        }
    }
    Ok(by_shard)
}
