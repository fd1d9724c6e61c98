//! One module per API key, each with the version range it implements beside its handler.
//! `SUPPORTED` is what ApiVersions advertises: only APIs implemented here and tested.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use runnel_protocol::request::DecodedRequest;
use runnel_protocol::VersionRange;
use tracing::warn;

use crate::state::Broker;

mod api_versions;
mod create_topics;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;

/// Every API this broker implements, with its versions.
pub const SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (ApiKey::DescribeConfigs, describe_configs::VERSIONS),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
];

pub fn supported(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}

/// What a handler produced.
pub enum Reply {
    Response(Box<ResponseKind>),
    /// Produce with acks=0: Kafka sends nothing back.
    NoResponse,
}

impl<T: Into<ResponseKind>> From<T> for Reply {
    fn from(r: T) -> Self {
        Reply::Response(Box::new(r.into()))
    }
}

pub async fn dispatch(broker: &Arc<Broker>, req: DecodedRequest) -> Reply {
    let v = req.api_version;
    match req.body {
        RequestKind::ApiVersions(r) => api_versions::handle(broker, r, v).into(),
        RequestKind::Metadata(r) => metadata::handle(broker, r, v).await.into(),
        RequestKind::Produce(r) => produce::handle(broker, r, v).await,
        RequestKind::Fetch(r) => fetch::handle(broker, r, v).await.into(),
        RequestKind::ListOffsets(r) => list_offsets::handle(broker, r, v).into(),
        RequestKind::CreateTopics(r) => create_topics::handle(broker, r, v).await.into(),
        RequestKind::DeleteTopics(r) => delete_topics::handle(broker, r, v).await.into(),
        RequestKind::OffsetForLeaderEpoch(r) => {
            offset_for_leader_epoch::handle(broker, r, v).into()
        }
        RequestKind::DescribeConfigs(r) => describe_configs::handle(broker, r, v).into(),
        RequestKind::DescribeCluster(r) => describe_cluster::handle(broker, r, v).into(),
        other => {
            // decode_request only lets through keys listed in SUPPORTED.
            warn!(api_key = ?req.api_key, "request for an API without a handler");
            let _ = other;
            Reply::NoResponse
        }
    }
}

/// `StrBytes` from a `&str`.
pub(crate) fn sb(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}
