//! The group coordinator as an I/O-free state machine.
//!
//! One [`GroupCoordinatorShard`] owns the groups whose id hashes to one partition of
//! `__consumer_offsets` ([`partition_for_group`]). The broker's runtime feeds it requests and
//! clock ticks; the shard answers with an [`Output`]: records to append to its partition of
//! `__consumer_offsets`, and responses to send — **only after** those records are durably
//! appended. At start-up (or when leadership of the partition moves here) the runtime replays
//! the partition's records through [`GroupCoordinatorShard::replay`] to rebuild the state.
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
