//! SyncGroup (key 14), answered by the group coordinator shard that owns the group.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::route;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = req.group_id.0.to_string();
    let unwrap = |r| match r {
        GroupResponse::SyncGroup(r) => Some(r),
        _ => None,
    };
    match route(
        broker,
        ctx,
        &group_id,
        version,
        GroupRequest::SyncGroup(req),
        unwrap,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()),
    }
}
