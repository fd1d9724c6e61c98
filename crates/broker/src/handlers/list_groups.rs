//! ListGroups (key 16): asks every shard and merges their groups.

use std::sync::Arc;

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use crate::coordinator::OFFSETS_TOPIC;
use runnel_group::shard::RequestContext;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 5);

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    // Without __consumer_offsets there are no groups; listing them does not create it.
    if broker.group_shard_count().is_none() && broker.topic(OFFSETS_TOPIC).is_none() {
        return ListGroupsResponse::default();
    }
    let shards = match broker.group_coordinators().await {
        Ok(s) => s.len(),
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code()),
    };
    let mut resp = ListGroupsResponse::default();
    for shard in 0..shards {
        let request = ShardRequest {
            version,
            body: GroupRequest::ListGroups(req.clone()),
        };
        match broker.shard_request(shard, ctx, request).await {
            Ok(GroupResponse::ListGroups(r)) => {
                if resp.error_code == 0 {
                    resp.error_code = r.error_code;
                }
                resp.groups.extend(r.groups);
            }
            Ok(_) => {}
            Err(e) => {
                if resp.error_code == 0 {
                    resp.error_code = e.code();
                }
            }
        }
    }
    resp
}
