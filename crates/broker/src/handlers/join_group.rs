//! JoinGroup (key 11), answered by the group coordinator shard that owns the group.

use std::sync::Arc;

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::route;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 9);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let group_id = req.group_id.0.to_string();
    let unwrap = |r| match r {
        GroupResponse::JoinGroup(r) => Some(r),
        _ => None,
    };
    let member_id = req.member_id.clone();
    match route(
        broker,
        ctx,
        &group_id,
        version,
        GroupRequest::JoinGroup(req),
        unwrap,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_generation_id(-1)
            .with_member_id(member_id),
    }
}
