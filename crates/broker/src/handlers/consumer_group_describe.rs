//! ConsumerGroupDescribe (key 69, KIP-848): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId,
};
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use super::group_routing::split_by_shard;
use super::sb;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 1);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let ids: Vec<String> = req.group_ids.iter().map(|g| g.0.to_string()).collect();
    let error_group = |id: &str, code: i16| {
        DescribedGroup::default()
            .with_group_id(GroupId(sb(id)))
            .with_error_code(code)
            .with_authorized_operations(i32::MIN)
    };
    let split = match split_by_shard(broker, ids.iter().map(|s| s.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            return ConsumerGroupDescribeResponse::default()
                .with_groups(ids.iter().map(|id| error_group(id, e.code())).collect())
        }
    };
    let mut answers: Vec<Option<DescribedGroup>> = vec![None; ids.len()];
    for (shard, positions) in split {
        let mut sub = req.clone();
        sub.group_ids = positions
            .iter()
            .map(|&p| req.group_ids[p].clone())
            .collect();
        let result = broker
            .shard_request(
                shard,
                ctx,
                ShardRequest {
                    version,
                    body: GroupRequest::ConsumerGroupDescribe(sub),
                },
            )
            .await;
        match result {
            Ok(GroupResponse::ConsumerGroupDescribe(resp)) => {
                for (g, &p) in resp.groups.into_iter().zip(&positions) {
                    answers[p] = Some(g);
                }
            }
            Ok(_) => {}
            Err(e) => {
                for &p in &positions {
                    answers[p] = Some(error_group(&ids[p], e.code()));
                }
            }
        }
    }
    let unknown = kafka_protocol::ResponseError::UnknownServerError.code();
    ConsumerGroupDescribeResponse::default().with_groups(
        answers
            .into_iter()
            .zip(&ids)
            .map(|(a, id)| a.unwrap_or_else(|| error_group(id, unknown)))
            .collect(),
    )
}
