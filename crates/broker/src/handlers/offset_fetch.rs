//! OffsetFetch (key 9). From v8 one request may name several groups; each shard gets the
//! groups it owns and the answers are merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use runnel_group::{GroupRequest, GroupResponse};
use runnel_protocol::VersionRange;

use super::group_routing::{fan_out, route};
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(1, 9);

fn unwrap(r: GroupResponse) -> Option<OffsetFetchResponse> {
    match r {
        GroupResponse::OffsetFetch(r) => Some(r),
        _ => None,
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        let group_id = req.group_id.0.to_string();
        return match route(
            broker,
            ctx,
            &group_id,
            version,
            GroupRequest::OffsetFetch(req),
            unwrap,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => OffsetFetchResponse::default().with_error_code(e.code()),
        };
    }
    let ids: Vec<String> = req
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    let groups = fan_out(
        broker,
        ctx,
        version,
        &ids,
        |positions| {
            let mut sub = req.clone();
            sub.groups = positions.iter().map(|&p| req.groups[p].clone()).collect();
            GroupRequest::OffsetFetch(sub)
        },
        |r| unwrap(r).map(|r| r.groups),
        |id, code| {
            OffsetFetchResponseGroup::default()
                .with_group_id(kafka_protocol::messages::GroupId(super::sb(id)))
                .with_error_code(code)
        },
    )
    .await;
    OffsetFetchResponse::default().with_groups(groups)
}
