//! The group coordinator as an I/O-free state machine.
//!
//! One [`GroupCoordinatorShard`] owns the groups whose id hashes to one partition of
//! `__consumer_offsets` ([`partition_for_group`]). The broker's runtime feeds it requests and
//! clock ticks; the shard answers with an [`Output`]: records to append to its partition of
//! `__consumer_offsets`, and responses to send — **only after** those records are durably
//! appended. At start-up (or when leadership of the partition moves here) the runtime replays
//! the partition's records through [`GroupCoordinatorShard::replay`] to rebuild the state.
//!
//! Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit makes the shard emit
//! OffsetCommit records in [`Output::txn_records`], which the runtime appends as a
//! transactional batch of the request's producer id and epoch. Those offsets stay pending
//! until the transaction's marker is written to the partition: the runtime then calls
//! [`GroupCoordinatorShard::complete_txn`] (after appending the marker, in the order of its
//! appends). At replay, records of transactional batches go through
//! [`GroupCoordinatorShard::replay_transactional`] and markers through
//! [`GroupCoordinatorShard::replay_txn_marker`].
//!
//! Nothing here touches sockets, files or clocks: time comes in as `now_ms`, so every test
//! is deterministic.

pub mod classic;
pub mod consumer;
mod offsets;
pub mod records;
pub mod shard;
pub mod topics;

pub use records::{GroupRecord, RecordError};
pub use shard::{GroupConfig, GroupCoordinatorShard, RequestContext};
pub use topics::{StaticTopics, TopicInfo, TopicMetadata};

use kafka_protocol::messages::*;

/// Identifies a request the runtime is waiting to answer.
pub type RequestId = u64;

/// A request for one shard, with the API version it arrived in (behaviour differs by
/// version, e.g. MEMBER_ID_REQUIRED from JoinGroup v4). Batched requests naming several groups (OffsetFetch v8+,
/// DescribeGroups, DeleteGroups, ListGroups) are split by the broker into one request per
/// shard, holding only that shard's groups, and the answers merged.
#[derive(Debug, Clone)]
pub struct ShardRequest {
    pub version: i16,
    pub body: GroupRequest,
}

#[derive(Debug, Clone)]
pub enum GroupRequest {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetDelete(OffsetDeleteRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
}

#[derive(Debug, Clone)]
pub enum GroupResponse {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    OffsetDelete(OffsetDeleteResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroups(DescribeGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerGroupDescribe(ConsumerGroupDescribeResponse),
}

/// What the shard asks the runtime to do.
#[derive(Debug, Default)]
pub struct Output {
    /// To append, in order, to the shard's `__consumer_offsets` partition, before any
    /// response of this output is sent.
    pub records: Vec<GroupRecord>,
    /// Answers, possibly to requests received earlier (a JoinGroup waits for the rebalance).
    pub responses: Vec<(RequestId, GroupResponse)>,
    /// Records to append **after** `records`, as one transactional batch (v2 batch,
    /// `isTransactional` set, with the given producer id and epoch), also before any
    /// response of this output is sent. Only TxnOffsetCommit fills it. The runtime must
    /// replay such a batch's records with
    /// [`replay_transactional`](GroupCoordinatorShard::replay_transactional).
    pub txn_records: Option<TxnRecords>,
}

/// OffsetCommit records of one producer's transaction, pending until its marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecords {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub records: Vec<GroupRecord>,
}

/// Kafka's `__consumer_offsets` partition for a group: `abs(groupId.hashCode) % partitions`,
/// with Java's `String.hashCode` over UTF-16 code units, so a group maps to the same partition
/// as in Kafka.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "__consumer_offsets has at least one partition"
    );
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps Integer.MIN_VALUE to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::partition_for_group;

    #[test]
    fn group_partition_matches_java_string_hashcode() {
        // "analytics-service".hashCode() and friends, computed with Java's rule.
        assert_eq!(partition_for_group("", 50), 0);
        assert_eq!(partition_for_group("a", 50), 97 % 50);
        assert_eq!(partition_for_group("ab", 50), (97 * 31 + 98) % 50);
    }
}
