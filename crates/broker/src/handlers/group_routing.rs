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
    expect_kind(response, unwrap)
}

/// The response unwrapped to the kind the request expects; UNKNOWN_SERVER_ERROR otherwise.
pub(crate) fn expect_kind<T>(
    response: GroupResponse,
    unwrap: fn(GroupResponse) -> Option<T>,
) -> Result<T, KafkaError> {
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

/// Sends a request naming several groups to the shards that own them and merges the
/// answers in request order. `request_for(positions)` builds one shard's request from the
/// positions of its groups; `answers(response)` takes the per-group results out of a shard's
/// response, in the order of its request; `error_item(id, code)` stands for a group whose
/// shard could not answer.
pub(crate) async fn fan_out<T>(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    version: i16,
    group_ids: &[String],
    request_for: impl Fn(&[usize]) -> GroupRequest,
    answers: impl Fn(GroupResponse) -> Option<Vec<T>>,
    error_item: impl Fn(&str, i16) -> T,
) -> Vec<T> {
    let split = match split_by_shard(broker, group_ids.iter().map(|s| s.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            return group_ids
                .iter()
                .map(|id| error_item(id, e.code()))
                .collect()
        }
    };
    let mut merged: Vec<Option<T>> = group_ids.iter().map(|_| None).collect();
    for (shard, positions) in split {
        let request = ShardRequest {
            version,
            body: request_for(&positions),
        };
        match broker
            .shard_request(shard, ctx, request)
            .await
            .map(&answers)
        {
            Ok(Some(items)) => {
                for (item, &p) in items.into_iter().zip(&positions) {
                    merged[p] = Some(item);
                }
            }
            Ok(None) => {}
            Err(e) => {
                for &p in &positions {
                    merged[p] = Some(error_item(&group_ids[p], e.code()));
                }
            }
        }
    }
    let unknown = kafka_protocol::ResponseError::UnknownServerError.code();
    merged
        .into_iter()
        .zip(group_ids)
        .map(|(item, id)| item.unwrap_or_else(|| error_item(id, unknown)))
        .collect()
}
