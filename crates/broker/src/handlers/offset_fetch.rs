//! OffsetFetch (key 9). From v8 one request may name several groups; each shard gets the
//! groups it owns and the answers are merged in request order.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use runnel_group::{GroupRequest, GroupResponse, ShardRequest};
use runnel_protocol::VersionRange;

use super::group_routing::{route, split_by_shard};
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
    let error_group = |id: &str, code: i16| {
        OffsetFetchResponseGroup::default()
            .with_group_id(kafka_protocol::messages::GroupId(super::sb(id)))
            .with_error_code(code)
    };
    let split = match split_by_shard(broker, ids.iter().map(|s| s.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            return OffsetFetchResponse::default()
                .with_groups(ids.iter().map(|id| error_group(id, e.code())).collect());
        }
    };
    let mut answers: Vec<Option<OffsetFetchResponseGroup>> = vec![None; ids.len()];
    for (shard, positions) in split {
        let mut sub = req.clone();
        sub.groups = positions.iter().map(|&p| req.groups[p].clone()).collect();
        let result = broker
            .shard_request(
                shard,
                ctx,
                ShardRequest {
                    version,
                    body: GroupRequest::OffsetFetch(sub),
                },
            )
            .await
            .and_then(|r| {
                unwrap(r).ok_or_else(|| {
                    crate::errors::KafkaError::new(
                        kafka_protocol::ResponseError::UnknownServerError,
                    )
                })
            });
        match result {
            Ok(resp) => {
                for g in resp.groups {
                    if let Some(pos) = positions
                        .iter()
                        .copied()
                        .find(|&p| ids[p] == g.group_id.0.as_str() && answers[p].is_none())
                    {
                        answers[pos] = Some(g);
                    }
                }
            }
            Err(e) => {
                for &p in &positions {
                    answers[p] = Some(error_group(&ids[p], e.code()));
                }
            }
        }
    }
    let groups = answers
        .into_iter()
        .zip(&ids)
        .map(|(a, id)| {
            a.unwrap_or_else(|| {
                error_group(id, kafka_protocol::ResponseError::UnknownServerError.code())
            })
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}
