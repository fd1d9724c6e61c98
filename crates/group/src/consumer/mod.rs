//! The new consumer group protocol (KIP-848): ConsumerGroupHeartbeat and
//! ConsumerGroupDescribe, with server-side assignment.
//!
//! A group has a **group epoch**, bumped whenever what the assignment depends on changes: a
//! member joins, leaves or is fenced, a subscription changes, a subscribed topic appears,
//! disappears or gains partitions. When the group epoch is ahead of the **target assignment
//! epoch**, the group's assignor (`uniform` or `range`, [`assignor`]) computes a new target
//! assignment. Each member then moves towards its target on its own heartbeats, at its own
//! **member epoch** ([`reconcile`]): it first gives up the partitions it must revoke (and
//! stays at its epoch until a heartbeat shows it no longer owns them), then moves to the
//! target epoch and receives new partitions — only those no other member still holds.
//!
//! Members are fenced when their session times out (no heartbeat for
//! `group.consumer.session.timeout.ms`) or when they keep partitions to revoke past their
//! rebalance timeout. A member leaves with epoch -1; a static member (with an instance id)
//! may leave with epoch -2 and come back, under a new member id, to its assignment before
//! its session expires.
//!
//! All state changes are [`ConsumerRecord`]s (Kafka's `__consumer_offsets` record types 3 to
//! 8, [`records`]); the group applies its own records as it emits them, and rebuilds itself
//! from them by [`ConsumerGroup::replay`].
//!
//! A member that rejoins with epoch 0 under a member id the group knows is served, not
//! fenced (Kafka's KAFKA-19233); a static member rejoining under its own member id, after a
//! lost answer or a temporary leave, is served in place, and may not change its instance id.
//!
//! Differences from Kafka, on purpose: the target assignment is computed synchronously in
//! the heartbeat that needs it; regular expressions are matched in the heartbeat (at most
//! every [`REGEX_REFRESH_INTERVAL_MS`]), never match internal topics, and their resolution is
//! not persisted; rack ids are stored but not used by the assignors.

pub mod assignor;
mod group;
pub mod reconcile;
pub mod records;

#[cfg(test)]
mod tests;

pub use group::{
    ClientInfo, ConsumerGroup, ConsumerMemberSummary, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH, REGEX_REFRESH_INTERVAL_MS,
};
pub use records::{
    Assignment, ConsumerRecord, CurrentMemberAssignmentValue, GroupMetadataValue,
    MemberMetadataValue, MemberState, PartitionMetadataValue, TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue, TopicMetadataValue,
};
