//! ConsumerGroupDescribe (key 69, KIP-848): split by shard, merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId,
};
use runnel_group::shard::RequestContext;
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::fan_out;
use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 1);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let ids: Vec<String> = req.group_ids.iter().map(|g| g.0.to_string()).collect();
    let groups = fan_out(
        broker,
        ctx,
        version,
        &ids,
        |positions| {
            let mut sub = req.clone();
            sub.group_ids = positions
                .iter()
                .map(|&p| req.group_ids[p].clone())
                .collect();
            GroupRequest::ConsumerGroupDescribe(sub)
        },
        |r| match r {
            GroupResponse::ConsumerGroupDescribe(r) => Some(r.groups),
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
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
