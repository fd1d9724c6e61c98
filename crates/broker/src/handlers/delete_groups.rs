//! DeleteGroups (key 42): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};
use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::fan_out;
use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let results = fan_out(
        broker,
        ctx,
        version,
        &ids,
        |positions| {
            GroupRequest::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(
                    positions
                        .iter()
                        .map(|&p| req.groups_names[p].clone())
                        .collect(),
                ),
            )
        },
        |r| match r {
            GroupResponse::DeleteGroups(r) => Some(r.results),
            _ => None,
        },
        |id, code| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(sb(id)))
                .with_error_code(code)
        },
    )
    .await;
    DeleteGroupsResponse::default().with_results(results)
}
