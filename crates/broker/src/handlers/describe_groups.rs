//! DescribeGroups (key 15): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::fan_out;
use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 6);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let ids: Vec<String> = req.groups.iter().map(|g| g.0.to_string()).collect();
    let groups = fan_out(
        broker,
        ctx,
        version,
        &ids,
        |positions| {
            let mut sub = req.clone();
            sub.groups = positions.iter().map(|&p| req.groups[p].clone()).collect();
            GroupRequest::DescribeGroups(sub)
        },
        |r| match r {
            GroupResponse::DescribeGroups(r) => Some(r.groups),
            _ => None,
        },
        |id, code| {
            DescribedGroup::default()
                .with_group_id(GroupId(sb(id)))
                .with_error_code(code)
                .with_authorized_operations(i32::MIN)
        },
    )
    .await;
    DescribeGroupsResponse::default().with_groups(groups)
}
