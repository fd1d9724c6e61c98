//! One module per API key, each with the version range it implements beside its handler.
//! `SUPPORTED` is what ApiVersions advertises: only APIs implemented here and tested.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use runnel_protocol::request::DecodedRequest;
use runnel_protocol::VersionRange;
use tracing::warn;

use runnel_group::shard::RequestContext;

use crate::state::Broker;

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_producers;
mod describe_transactions;
mod end_txn;
mod fetch;
mod find_coordinator;
mod group_routing;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod txn_offset_commit;
mod txn_routing;

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
    (ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (ApiKey::AlterConfigs, alter_configs::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        incremental_alter_configs::VERSIONS,
    ),
    (ApiKey::JoinGroup, join_group::VERSIONS),
    (ApiKey::SyncGroup, sync_group::VERSIONS),
    (ApiKey::Heartbeat, heartbeat::VERSIONS),
    (ApiKey::LeaveGroup, leave_group::VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    (ApiKey::OffsetDelete, offset_delete::VERSIONS),
    (ApiKey::ListGroups, list_groups::VERSIONS),
    (ApiKey::DescribeGroups, describe_groups::VERSIONS),
    (ApiKey::DeleteGroups, delete_groups::VERSIONS),
    (
        ApiKey::ConsumerGroupHeartbeat,
        consumer_group_heartbeat::VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        consumer_group_describe::VERSIONS,
    ),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::VERSIONS),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::VERSIONS),
    (ApiKey::EndTxn, end_txn::VERSIONS),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::VERSIONS),
    (ApiKey::DescribeProducers, describe_producers::VERSIONS),
    (
        ApiKey::DescribeTransactions,
        describe_transactions::VERSIONS,
    ),
    (ApiKey::ListTransactions, list_transactions::VERSIONS),
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

pub async fn dispatch(
    broker: &Arc<Broker>,
    req: DecodedRequest,
    peer: std::net::SocketAddr,
) -> Reply {
    let v = req.api_version;
    let ctx = RequestContext {
        client_id: req
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    };
    let ctx = &ctx;
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
        RequestKind::DeleteRecords(r) => delete_records::handle(broker, r, v).await.into(),
        RequestKind::CreatePartitions(r) => create_partitions::handle(broker, r, v).await.into(),
        RequestKind::AlterConfigs(r) => alter_configs::handle(broker, r, v).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            incremental_alter_configs::handle(broker, r, v).await.into()
        }
        RequestKind::InitProducerId(r) => init_producer_id::handle(broker, r, v).await.into(),
        RequestKind::FindCoordinator(r) => find_coordinator::handle(broker, r, v).await.into(),
        RequestKind::JoinGroup(r) => join_group::handle(broker, ctx, r, v).await.into(),
        RequestKind::SyncGroup(r) => sync_group::handle(broker, ctx, r, v).await.into(),
        RequestKind::Heartbeat(r) => heartbeat::handle(broker, ctx, r, v).await.into(),
        RequestKind::LeaveGroup(r) => leave_group::handle(broker, ctx, r, v).await.into(),
        RequestKind::OffsetCommit(r) => offset_commit::handle(broker, ctx, r, v).await.into(),
        RequestKind::OffsetFetch(r) => offset_fetch::handle(broker, ctx, r, v).await.into(),
        RequestKind::OffsetDelete(r) => offset_delete::handle(broker, ctx, r, v).await.into(),
        RequestKind::ListGroups(r) => list_groups::handle(broker, ctx, r, v).await.into(),
        RequestKind::DescribeGroups(r) => describe_groups::handle(broker, ctx, r, v).await.into(),
        RequestKind::DeleteGroups(r) => delete_groups::handle(broker, ctx, r, v).await.into(),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            consumer_group_heartbeat::handle(broker, ctx, r, v)
                .await
                .into()
        }
        RequestKind::ConsumerGroupDescribe(r) => consumer_group_describe::handle(broker, ctx, r, v)
            .await
            .into(),
        RequestKind::AddPartitionsToTxn(r) => {
            add_partitions_to_txn::handle(broker, r, v).await.into()
        }
        RequestKind::AddOffsetsToTxn(r) => add_offsets_to_txn::handle(broker, r, v).await.into(),
        RequestKind::EndTxn(r) => end_txn::handle(broker, r, v).await.into(),
        RequestKind::TxnOffsetCommit(r) => {
            txn_offset_commit::handle(broker, ctx, r, v).await.into()
        }
        RequestKind::DescribeProducers(r) => describe_producers::handle(broker, r, v).into(),
        RequestKind::DescribeTransactions(r) => {
            describe_transactions::handle(broker, r, v).await.into()
        }
        RequestKind::ListTransactions(r) => list_transactions::handle(broker, r, v).await.into(),
        other => {
            // decode_request only lets through keys listed in SUPPORTED.
            warn!(api_key = ?req.api_key, "request for an API without a handler");
            let _ = other;
            Reply::NoResponse
        }
    }
}

/// Whether a response reports an error, for the per-API error counter. Looks at top-level
/// codes and, for the data-path APIs, at partition codes.
pub(crate) fn has_error(r: &ResponseKind) -> bool {
    match r {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .any(|t| t.partition_responses.iter().any(|p| p.error_code != 0)),
        ResponseKind::Fetch(r) => {
            r.error_code != 0
                || r.responses
                    .iter()
                    .any(|t| t.partitions.iter().any(|p| p.error_code != 0))
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::Metadata(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .any(|t| t.partitions.iter().any(|p| p.error_code != 0)),
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => r.error_code != 0,
        ResponseKind::FindCoordinator(r) => {
            r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0)
        }
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::ConsumerGroupHeartbeat(r) => r.error_code != 0,
        ResponseKind::EndTxn(r) => r.error_code != 0,
        ResponseKind::AddOffsetsToTxn(r) => r.error_code != 0,
        _ => false,
    }
}

/// The Kafka error for a failed metadata change.
pub(crate) fn metadata_change_error(
    e: &crate::state::MetadataChangeError,
) -> crate::errors::KafkaError {
    use crate::state::MetadataChangeError as M;
    match e {
        M::Controller(c) => crate::errors::KafkaError::from(c),
        M::Log(l) => crate::errors::KafkaError::from(l),
        M::Store(_) | M::LogUnavailable(_) => crate::errors::KafkaError::with_message(
            kafka_protocol::ResponseError::KafkaStorageError,
            e.to_string(),
        ),
    }
}

/// `StrBytes` from a `&str`.
pub(crate) fn sb(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}
