//! ConsumerGroupHeartbeat (key 68), answered by the group coordinator shard that owns the group.

use std::sync::Arc;

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::route;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 1);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = req.group_id.0.to_string();
    let unwrap = |r| match r {
        GroupResponse::ConsumerGroupHeartbeat(r) => Some(r),
        _ => None,
    };
    match route(
        broker,
        ctx,
        &group_id,
        version,
        GroupRequest::ConsumerGroupHeartbeat(req),
        unwrap,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(e.message.as_deref().map(super::sb)),
    }
}
