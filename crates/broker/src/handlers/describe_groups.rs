//! DescribeGroups (key 15): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use super::group_routing::split_by_shard;
use super::sb;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 6);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let error_group = |id: &str, code: i16| {
        DescribedGroup::default()
            .with_group_id(GroupId(sb(id)))
            .with_error_code(code)
            .with_authorized_operations(i32::MIN)
    };
    let split = match split_by_shard(broker, ids.iter().map(|s| s.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            return DescribeGroupsResponse::default()
                .with_groups(ids.iter().map(|id| error_group(id, e.code())).collect())
        }
    };
    let mut answers: Vec<Option<DescribedGroup>> = vec![None; ids.len()];
    for (shard, positions) in split {
        let mut sub = req.clone();
        sub.groups = positions.iter().map(|&p| req.groups[p].clone()).collect();
        let result = broker
            .shard_request(
                shard,
                ctx,
                ShardRequest {
                    version,
                    body: GroupRequest::DescribeGroups(sub),
                },
            )
            .await;
        match result {
            Ok(GroupResponse::DescribeGroups(resp)) => {
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
    DescribeGroupsResponse::default().with_groups(
        answers
            .into_iter()
            .zip(&ids)
            .map(|(a, id)| a.unwrap_or_else(|| error_group(id, unknown)))
            .collect(),
    )
}
