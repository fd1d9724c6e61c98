//! DeleteGroups (key 42): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use super::group_routing::split_by_shard;
use super::sb;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let error_result = |id: &str, code: i16| {
        DeletableGroupResult::default()
            .with_group_id(GroupId(sb(id)))
            .with_error_code(code)
    };
    let split = match split_by_shard(broker, ids.iter().map(|s| s.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            return DeleteGroupsResponse::default()
                .with_results(ids.iter().map(|id| error_result(id, e.code())).collect())
        }
    };
    let mut answers: Vec<Option<DeletableGroupResult>> = vec![None; ids.len()];
    for (shard, positions) in split {
        let sub = DeleteGroupsRequest::default().with_groups_names(
            positions
                .iter()
                .map(|&p| req.groups_names[p].clone())
                .collect(),
        );
        let result = broker
            .shard_request(
                shard,
                ctx,
                ShardRequest {
                    version,
                    body: GroupRequest::DeleteGroups(sub),
                },
            )
            .await;
        match result {
            Ok(GroupResponse::DeleteGroups(resp)) => {
                for r in resp.results {
                    if let Some(&p) = positions
                        .iter()
                        .find(|&&p| ids[p] == r.group_id.0.as_str() && answers[p].is_none())
                    {
                        answers[p] = Some(r);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                for &p in &positions {
                    answers[p] = Some(error_result(&ids[p], e.code()));
                }
            }
        }
    }
    let unknown = kafka_protocol::ResponseError::UnknownServerError.code();
    DeleteGroupsResponse::default().with_results(
        answers
            .into_iter()
            .zip(&ids)
            .map(|(a, id)| a.unwrap_or_else(|| error_result(id, unknown)))
            .collect(),
    )
}
