//! [`GroupCoordinatorShard`]: the groups and committed offsets of one `__consumer_offsets`
//! partition, as an I/O-free state machine.
//!
//! The runtime replays the partition ([`replay`](GroupCoordinatorShard::replay)), calls
//! [`loaded`](GroupCoordinatorShard::loaded) once, then feeds requests
//! ([`handle`](GroupCoordinatorShard::handle) /
//! [`handle_with_context`](GroupCoordinatorShard::handle_with_context)) and clock ticks
//! ([`tick`](GroupCoordinatorShard::tick), at [`next_deadline_ms`](GroupCoordinatorShard::next_deadline_ms)).
//! Each call returns an [`Output`]: records to append, then responses to send.
//!
//! **If the runtime cannot append an output's records, it must discard the shard** (its
//! memory already holds what the records say) and rebuild it by replaying the partition.
//! Requests the discarded shard was holding (JoinGroup and SyncGroup waiting on a rebalance)
//! are then answered by the runtime with an error; [`unload`](GroupCoordinatorShard::unload)
//! produces those answers (NOT_COORDINATOR) if the runtime wants them from the shard.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::consumer_group_describe_response;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestPartition;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::classic::{sb, ClassicGroup, JoinAnswer, Waiter, CONSUMER_PROTOCOL_TYPE};
use crate::consumer::{ClientInfo, ConsumerGroup, ConsumerRecord};
use crate::offsets::OffsetStore;
use crate::records::{GroupRecord, OffsetCommitValue, RecordError};
use crate::topics::TopicMetadata;
use crate::{GroupRequest, GroupResponse, Output, RequestId, ShardRequest, TxnRecords};

/// The group coordinator's settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub group_max_size: i32,
    /// How long a new member's JoinGroup may wait for the rebalance to end before the member
    /// is dropped (Kafka's internal `group.classic.new.member.join.timeout.ms`, 5 minutes).
    pub new_member_join_timeout_ms: i32,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, per group (Runnel's
    /// bound; past it the oldest is forgotten and its client must join again).
    pub max_pending_members_per_group: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes` (Kafka compares it with the metadata's length in UTF-16
    /// code units).
    pub offset_metadata_max_bytes: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848).
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.min.session.timeout.ms`.
    pub consumer_min_session_timeout_ms: i32,
    /// `group.consumer.max.session.timeout.ms`.
    pub consumer_max_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms`.
    pub consumer_min_heartbeat_interval_ms: i32,
    /// `group.consumer.max.heartbeat.interval.ms`.
    pub consumer_max_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub consumer_max_size: i32,
    /// `group.consumer.assignors`: server-side assignors, the first is the default.
    pub consumer_assignors: Vec<String>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX,
            new_member_join_timeout_ms: 300_000,
            max_pending_members_per_group: 10_000,
            offsets_retention_ms: 10_080 * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
            consumer_session_timeout_ms: 45_000,
            consumer_min_session_timeout_ms: 45_000,
            consumer_max_session_timeout_ms: 60_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_min_heartbeat_interval_ms: 5_000,
            consumer_max_heartbeat_interval_ms: 15_000,
            consumer_max_size: i32::MAX,
            consumer_assignors: vec!["uniform".to_string(), "range".to_string()],
        }
    }
}

/// Who sent a request: Kafka records both on group members (DescribeGroups shows them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request header's client id.
    pub client_id: String,
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
}

/// Kafka's bit field of the operations allowed on a group (READ, DELETE, DESCRIBE), given to
/// DescribeGroups v3+ callers that ask for it: Runnel has no authorizer, so all are allowed.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

#[derive(Debug)]
enum Group {
    Classic(Box<ClassicGroup>),
    Consumer(Box<ConsumerGroup>),
}

impl Group {
    fn is_empty(&self) -> bool {
        match self {
            Group::Classic(g) => g.is_empty(),
            Group::Consumer(g) => g.is_empty(),
        }
    }

    fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match self {
            Group::Classic(g) => g.is_subscribed_to_topic(topic),
            Group::Consumer(g) => g.subscribed_topics().iter().any(|t| t == topic),
        }
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        match self {
            Group::Classic(g) => g.next_deadline_ms(),
            Group::Consumer(g) => g.next_deadline_ms(),
        }
    }
}

pub struct GroupCoordinatorShard {
    partition: i32,
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: OffsetStore,
    /// (deadline, group) of every group with a timer, and each group's entry in it.
    deadlines: BTreeSet<(i64, String)>,
    group_deadline: HashMap<String, i64>,
    /// The next sweep for expired offsets and empty groups.
    next_offsets_check_ms: Option<i64>,
    /// `loaded` has run (it runs by itself before the first request or tick otherwise).
    is_loaded: bool,
    /// Seed of a deterministic member-id generator (tests); random ids otherwise.
    id_seed: Option<u64>,
}

impl std::fmt::Debug for GroupCoordinatorShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinatorShard")
            .field("partition", &self.partition)
            .field("groups", &self.groups.len())
            .field("offsets", &self.offsets.count())
            .finish()
    }
}

fn error_message(
    e: ResponseError,
    message: String,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (e.code(), Some(sb(&message)))
}

/// The longest string a record key holds (Kafka's classic `STRING`, `int16` length).
const MAX_STRING_BYTES: usize = i16::MAX as usize;

/// A topic's committed offsets as fetched: (partition, offset, leader epoch, metadata,
/// partition error code).
type FetchedTopic = (String, Vec<(i32, i64, i32, String, i16)>);

/// A TxnOffsetCommit topic's partitions: each to commit, or refused with an error code.
type TxnCommitPlan<'a> = (
    &'a TopicName,
    Vec<(i32, Result<&'a TxnOffsetCommitRequestPartition, i16>)>,
);

/// Java's `String.length()`: the metadata bound counts UTF-16 code units.
fn java_length(s: &str) -> usize {
    s.encode_utf16().count()
}

impl GroupCoordinatorShard {
    pub fn new(partition: i32, config: GroupConfig) -> Self {
        GroupCoordinatorShard {
            partition,
            config,
            groups: BTreeMap::new(),
            offsets: OffsetStore::default(),
            deadlines: BTreeSet::new(),
            group_deadline: HashMap::new(),
            next_offsets_check_ms: None,
            is_loaded: false,
            id_seed: None,
        }
    }

    /// Member ids from a seeded generator instead of random UUIDs (for reproducible tests).
    pub fn with_member_id_seed(mut self, seed: u64) -> Self {
        self.id_seed = Some(seed);
        self
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn next_uuid(&mut self) -> Uuid {
        match self.id_seed.as_mut() {
            None => Uuid::new_v4(),
            Some(state) => {
                let mut next = || {
                    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = *state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^ (z >> 31)
                };
                let hi = next();
                let lo = next();
                uuid::Builder::from_u128((u128::from(hi) << 64) | u128::from(lo))
                    .with_version(uuid::Version::Random)
                    .with_variant(uuid::Variant::RFC4122)
                    .into_uuid()
            }
        }
    }

    // ---- replay ----------------------------------------------------------------------

    /// Rebuilds state from one stored record of a non-transactional batch, in log order,
    /// before any request.
    pub fn replay(&mut self, record: &GroupRecord, now_ms: i64) -> Result<(), RecordError> {
        self.replay_record(None, record, now_ms)
    }

    /// Rebuilds state from one record of a **transactional** batch of `producer_id` (the
    /// batch header's producer id), in log order: an OffsetCommit is pending until
    /// [`replay_txn_marker`](Self::replay_txn_marker) for that producer. Other records replay
    /// as with [`replay`](Self::replay).
    pub fn replay_transactional(
        &mut self,
        producer_id: i64,
        record: &GroupRecord,
        now_ms: i64,
    ) -> Result<(), RecordError> {
        self.replay_record(Some(producer_id), record, now_ms)
    }

    /// Replays a transaction marker (control batch) of `producer_id` read from the partition:
    /// `commit` moves the producer's pending offsets into the committed ones (each only if
    /// no later commit of its partition is there, as Kafka), an abort drops them. A marker
    /// with nothing pending is ignored.
    pub fn replay_txn_marker(&mut self, producer_id: i64, commit: bool) {
        for group in self.offsets.complete_txn(producer_id, commit) {
            self.ensure_simple_group(&group);
        }
    }

    /// Ends `producer_id`'s transaction once its marker is durably appended to this
    /// partition (the runtime calls it after that append, in the order of its appends, so
    /// that it matches [`replay_txn_marker`](Self::replay_txn_marker) at the next load). The
    /// marker itself is the record: the output holds no record of its own today.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool, now_ms: i64) -> Output {
        let out = self.ensure_loaded(now_ms);
        for group in self.offsets.complete_txn(producer_id, commit) {
            self.ensure_simple_group(&group);
            self.refresh_deadline(&group);
        }
        out
    }

    /// `producer_id`'s transactional offsets waiting for its marker: (group, topic,
    /// partition, value), sorted.
    pub fn pending_txn_offsets(
        &self,
        producer_id: i64,
    ) -> Vec<(String, String, i32, OffsetCommitValue)> {
        self.offsets.pending_of(producer_id)
    }

    /// Producers whose transaction committed offsets to this partition and has no marker
    /// yet.
    pub fn open_txn_producers(&self) -> Vec<i64> {
        self.offsets.open_producers()
    }

    /// The committed offset of a partition for a group (what OffsetFetch answers without
    /// `require_stable`).
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&OffsetCommitValue> {
        self.offsets.get(group, topic, partition)
    }

    /// A commit's metadata (null is empty), or OFFSET_METADATA_TOO_LARGE past
    /// `offset.metadata.max.bytes` (or what a record's string holds).
    fn commit_metadata(
        &self,
        metadata: Option<&kafka_protocol::protocol::StrBytes>,
    ) -> Result<String, ResponseError> {
        let metadata = metadata.map(|m| m.to_string()).unwrap_or_default();
        let max = usize::try_from(self.config.offset_metadata_max_bytes.max(0)).unwrap_or(0);
        if java_length(&metadata) > max || metadata.len() > MAX_STRING_BYTES {
            Err(ResponseError::OffsetMetadataTooLarge)
        } else {
            Ok(metadata)
        }
    }

    /// Offsets committed outside group management: a "simple" group holds them.
    fn ensure_simple_group(&mut self, group: &str) {
        if !self.groups.contains_key(group) {
            self.groups.insert(
                group.to_string(),
                Group::Classic(Box::new(ClassicGroup::new(group, None, &self.config))),
            );
        }
    }

    fn replay_record(
        &mut self,
        producer_id: Option<i64>,
        record: &GroupRecord,
        _now_ms: i64,
    ) -> Result<(), RecordError> {
        match record {
            GroupRecord::OffsetCommit {
                group,
                topic,
                partition,
                value,
            } => {
                if value.is_some() {
                    self.ensure_simple_group(group);
                }
                match producer_id {
                    None => self.offsets.apply(group, topic, *partition, value.clone()),
                    Some(pid) => {
                        self.offsets
                            .apply_txn(pid, group, topic, *partition, value.clone())
                    }
                }
            }
            GroupRecord::GroupMetadata { group, value } => match value {
                Some(v) => {
                    self.groups.insert(
                        group.clone(),
                        Group::Classic(Box::new(ClassicGroup::from_record(group, v, &self.config))),
                    );
                }
                None => {
                    self.groups.remove(group);
                }
            },
            GroupRecord::Consumer(r) => self.replay_consumer(r),
        }
        Ok(())
    }

    fn replay_consumer(&mut self, r: &ConsumerRecord) {
        let gid = r.group_id().to_string();
        let exists = matches!(self.groups.get(&gid), Some(Group::Consumer(_)));
        if !exists {
            if r.is_tombstone() {
                // A tombstone for a group that is gone: nothing to undo.
                return;
            }
            // A classic group under the same id is replaced: Kafka writes the classic
            // group's tombstone before the consumer group's first records.
            self.groups.insert(
                gid.clone(),
                Group::Consumer(Box::new(ConsumerGroup::new(gid.clone()))),
            );
        }
        if let Some(Group::Consumer(g)) = self.groups.get_mut(&gid) {
            g.replay(r);
        }
        if matches!(r, ConsumerRecord::GroupMetadata { value: None, .. }) {
            self.groups.remove(&gid);
        }
    }

    /// Called once after replay: schedules the session expiry of loaded members and the
    /// sweep of expired offsets.
    pub fn loaded(&mut self, now_ms: i64) -> Output {
        self.is_loaded = true;
        let mut out = Output::default();
        let max_size = usize::try_from(self.config.group_max_size.max(1)).unwrap_or(usize::MAX);
        for g in self.groups.values_mut() {
            if let Group::Classic(c) = g {
                c.on_loaded(now_ms);
                if c.members.len() > max_size {
                    // group.max.size was lowered: let the members rejoin, up to the size.
                    c.prepare_rebalance(now_ms, &mut out);
                }
            }
        }
        self.next_offsets_check_ms =
            Some(now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1)));
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            self.refresh_deadline(&id);
        }
        out
    }

    fn ensure_loaded(&mut self, now_ms: i64) -> Output {
        if self.is_loaded {
            Output::default()
        } else {
            self.loaded(now_ms)
        }
    }

    /// Answers every request the shard holds with NOT_COORDINATOR, e.g. before the shard
    /// is dropped (leadership moved, or an append failed and the shard is rebuilt).
    pub fn unload(&mut self) -> Output {
        let mut out = Output::default();
        for g in self.groups.values_mut() {
            if let Group::Classic(c) = g {
                c.abandon_waiters(ResponseError::NotCoordinator, &mut out);
            }
        }
        out
    }

    /// Number of requests waiting in the shard (JoinGroup and SyncGroup).
    pub fn waiting_requests(&self) -> usize {
        self.groups
            .values()
            .map(|g| match g {
                Group::Classic(c) => c.waiting_requests(),
                Group::Consumer(_) => 0,
            })
            .sum()
    }

    // ---- timers ------------------------------------------------------------------------

    fn refresh_deadline(&mut self, group_id: &str) {
        if let Some(old) = self.group_deadline.remove(group_id) {
            self.deadlines.remove(&(old, group_id.to_string()));
        }
        if let Some(d) = self.groups.get(group_id).and_then(Group::next_deadline_ms) {
            self.deadlines.insert((d, group_id.to_string()));
            self.group_deadline.insert(group_id.to_string(), d);
        }
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let groups = self.deadlines.first().map(|(d, _)| *d);
        match (groups, self.next_offsets_check_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due timers: session expiries, join and sync timeouts, the initial rebalance
    /// delay, KIP-848 timers, and the periodic sweep of expired offsets and empty groups.
    pub fn tick(&mut self, _topics: &dyn TopicMetadata, now_ms: i64) -> Output {
        let mut out = self.ensure_loaded(now_ms);
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .map(|(_, g)| g.clone())
            .collect();
        for gid in due {
            match self.groups.get_mut(&gid) {
                Some(Group::Classic(g)) => g.tick(&self.config, now_ms, &mut out),
                Some(Group::Consumer(g)) => {
                    let records = g.tick(&self.config, now_ms);
                    out.records
                        .extend(records.into_iter().map(GroupRecord::Consumer));
                }
                None => {}
            }
            self.refresh_deadline(&gid);
        }
        let check = *self.next_offsets_check_ms.get_or_insert(
            now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1)),
        );
        if check <= now_ms {
            self.cleanup_group_metadata(now_ms, &mut out);
            self.next_offsets_check_ms =
                Some(now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1)));
        }
        out
    }

    /// Kafka's periodic cleanup: expired offsets get tombstones, and an empty group whose
    /// offsets are all gone is deleted.
    fn cleanup_group_metadata(&mut self, now_ms: i64, out: &mut Output) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for gid in ids {
            let all_expired = self.cleanup_expired_offsets(&gid, now_ms, out);
            if all_expired && self.groups.get(&gid).is_some_and(Group::is_empty) {
                self.delete_group(&gid, out);
            }
        }
    }

    /// Returns whether the group has no offsets left.
    fn cleanup_expired_offsets(&mut self, gid: &str, now_ms: i64, out: &mut Output) -> bool {
        let Some(offsets) = self.offsets.group(gid) else {
            // Kafka answers true here even with transactions open; Runnel keeps the group
            // until their markers, as Kafka does when the group has committed offsets too.
            return !self.offsets.has_open_txns(gid);
        };
        let Some(group) = self.groups.get(gid) else {
            return false;
        };
        // The time from which an offset's retention runs (None: no offset of the group
        // expires now), as Kafka's OffsetExpirationCondition.
        let base: Box<dyn Fn(&OffsetCommitValue) -> i64> = match group {
            Group::Classic(c) => match &c.protocol_type {
                None => Box::new(|v: &OffsetCommitValue| v.commit_timestamp),
                Some(_) if c.is_empty() => {
                    let since = c.current_state_timestamp;
                    Box::new(move |v: &OffsetCommitValue| since.unwrap_or(v.commit_timestamp))
                }
                Some(_)
                    if c.uses_consumer_protocol()
                        && c.subscribed_topics.is_some()
                        && c.state == crate::classic::ClassicState::Stable =>
                {
                    Box::new(|v: &OffsetCommitValue| v.commit_timestamp)
                }
                Some(_) => return false,
            },
            Group::Consumer(_) => Box::new(|v: &OffsetCommitValue| v.commit_timestamp),
        };
        let retention = self.config.offsets_retention_ms;
        let consumer_topics: Option<BTreeSet<String>> = match group {
            Group::Consumer(g) => Some(g.subscribed_topics().into_iter().collect()),
            Group::Classic(_) => None,
        };
        let subscribed = |topic: &str| match &consumer_topics {
            Some(t) => t.contains(topic),
            None => group.is_subscribed_to_topic(topic),
        };
        let mut expired = Vec::new();
        let mut all_expired = true;
        for ((topic, partition), stored) in offsets {
            if subscribed(topic) {
                all_expired = false;
                continue;
            }
            let v = &stored.value;
            // An offset is not expired while a transaction holds a new one for it (Kafka).
            let is_expired = !self.offsets.has_pending(gid, topic, *partition)
                && match v.expire_timestamp {
                    Some(at) => now_ms >= at,
                    None => now_ms.saturating_sub(base(v)) >= retention,
                };
            if is_expired {
                expired.push((topic.clone(), *partition));
            } else {
                all_expired = false;
            }
        }
        for (topic, partition) in expired {
            self.emit_offset(gid, &topic, partition, None, out);
        }
        // A group is not removed while a transaction that committed its offsets is open.
        all_expired && !self.offsets.has_open_txns(gid)
    }

    /// Appends an OffsetCommit record to the output and applies it.
    fn emit_offset(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetCommitValue>,
        out: &mut Output,
    ) {
        self.offsets.apply(group, topic, partition, value.clone());
        out.records.push(GroupRecord::OffsetCommit {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            value,
        });
    }

    /// Tombstones for a group and all its offsets, also those only pending in a
    /// transaction (as Kafka's `deleteAllOffsets`: the tombstone drops the pending offset, so
    /// the transaction's commit marker no longer brings it back); the group is gone from
    /// memory too.
    fn delete_group(&mut self, gid: &str, out: &mut Output) {
        let mut keys = self.offsets.keys(gid);
        keys.extend(self.offsets.pending_only_keys(gid));
        for (topic, partition) in keys {
            self.emit_offset(gid, &topic, partition, None, out);
        }
        match self.groups.remove(gid) {
            Some(Group::Classic(_)) => out.records.push(GroupRecord::GroupMetadata {
                group: gid.to_string(),
                value: None,
            }),
            Some(Group::Consumer(g)) => out
                .records
                .extend(g.delete_records().into_iter().map(GroupRecord::Consumer)),
            None => {}
        }
        self.refresh_deadline(gid);
    }

    // ---- requests --------------------------------------------------------------------

    /// Handles a request without client information (members get an empty client id and
    /// host). See [`handle_with_context`](Self::handle_with_context).
    pub fn handle(
        &mut self,
        id: RequestId,
        request: ShardRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
    ) -> Output {
        self.handle_with_context(id, request, &RequestContext::default(), topics, now_ms)
    }

    /// Handles one request. Its response is in the output, or (JoinGroup and SyncGroup
    /// waiting on a rebalance) in the output of a later call, under the same `id`.
    pub fn handle_with_context(
        &mut self,
        id: RequestId,
        request: ShardRequest,
        ctx: &RequestContext,
        topics: &dyn TopicMetadata,
        now_ms: i64,
    ) -> Output {
        let mut out = self.ensure_loaded(now_ms);
        let version = request.version;
        let waiter = Waiter { id, version };
        let respond = |out: &mut Output, r: GroupResponse| out.responses.push((id, r));
        match request.body {
            GroupRequest::JoinGroup(req) => self.join_group(ctx, waiter, req, now_ms, &mut out),
            GroupRequest::SyncGroup(req) => self.sync_group(waiter, req, now_ms, &mut out),
            GroupRequest::Heartbeat(req) => {
                let r = self.heartbeat(req, now_ms);
                respond(&mut out, GroupResponse::Heartbeat(r));
            }
            GroupRequest::LeaveGroup(req) => {
                let r = self.leave_group(version, req, now_ms, &mut out);
                respond(&mut out, GroupResponse::LeaveGroup(r));
            }
            GroupRequest::OffsetCommit(req) => {
                let r = self.offset_commit(version, req, topics, now_ms, &mut out);
                respond(&mut out, GroupResponse::OffsetCommit(r));
            }
            GroupRequest::TxnOffsetCommit(req) => {
                let r = self.txn_offset_commit(version, req, topics, now_ms, &mut out);
                respond(&mut out, GroupResponse::TxnOffsetCommit(r));
            }
            GroupRequest::OffsetFetch(req) => {
                let r = self.offset_fetch(version, req, topics);
                respond(&mut out, GroupResponse::OffsetFetch(r));
            }
            GroupRequest::OffsetDelete(req) => {
                let r = self.offset_delete(req, topics, &mut out);
                respond(&mut out, GroupResponse::OffsetDelete(r));
            }
            GroupRequest::ListGroups(req) => {
                let r = self.list_groups(version, &req);
                respond(&mut out, GroupResponse::ListGroups(r));
            }
            GroupRequest::DescribeGroups(req) => {
                let r = self.describe_groups(version, &req);
                respond(&mut out, GroupResponse::DescribeGroups(r));
            }
            GroupRequest::DeleteGroups(req) => {
                let r = self.delete_groups(&req, &mut out);
                respond(&mut out, GroupResponse::DeleteGroups(r));
            }
            GroupRequest::ConsumerGroupHeartbeat(req) => {
                let r = self.consumer_group_heartbeat(version, ctx, req, topics, now_ms, &mut out);
                respond(&mut out, GroupResponse::ConsumerGroupHeartbeat(r));
            }
            GroupRequest::ConsumerGroupDescribe(req) => {
                let r = self.consumer_group_describe(&req, topics);
                respond(&mut out, GroupResponse::ConsumerGroupDescribe(r));
            }
        }
        out
    }

    // ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------

    fn join_group(
        &mut self,
        ctx: &RequestContext,
        waiter: Waiter,
        mut req: JoinGroupRequest,
        now_ms: i64,
        out: &mut Output,
    ) {
        let gid = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let fail = |out: &mut Output, e: ResponseError, member_id: &str| {
            out.responses.push((
                waiter.id,
                GroupResponse::JoinGroup(
                    JoinAnswer::error(e, member_id).into_response(waiter.version),
                ),
            ))
        };
        if gid.is_empty() || gid.len() > MAX_STRING_BYTES {
            return fail(out, ResponseError::InvalidGroupId, &member_id);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(out, ResponseError::InvalidSessionTimeout, &member_id);
        }
        if waiter.version == 0 {
            // JoinGroup v0 has no rebalance timeout: the session timeout serves.
            req.rebalance_timeout_ms = req.session_timeout_ms;
        }
        let converting = match self.groups.get(&gid) {
            Some(Group::Consumer(g)) if !g.is_empty() => {
                // Runnel does not mix classic members into a KIP-848 group.
                return fail(out, ResponseError::InconsistentGroupProtocol, &member_id);
            }
            Some(Group::Consumer(_)) => true,
            _ => false,
        };
        let is_new = converting || !self.groups.contains_key(&gid);
        if is_new && !member_id.is_empty() {
            return fail(out, ResponseError::UnknownMemberId, &member_id);
        }
        if converting {
            // An empty consumer group becomes a classic group (its offsets stay).
            if let Some(Group::Consumer(g)) = self.groups.remove(&gid) {
                out.records
                    .extend(g.delete_records().into_iter().map(GroupRecord::Consumer));
            }
        }
        if is_new {
            self.groups.insert(
                gid.clone(),
                Group::Classic(Box::new(ClassicGroup::new(
                    &gid,
                    Some(now_ms),
                    &self.config,
                ))),
            );
        }
        let uuid = self.next_uuid();
        let records_before = out.records.len();
        let Some(Group::Classic(group)) = self.groups.get_mut(&gid) else {
            unreachable!("the group was just made classic");
        };
        group.join(ctx, waiter, &req, &self.config, uuid, now_ms, out);
        if is_new && out.records.len() == records_before {
            // The new group exists in the log from now on, as in Kafka.
            out.records.push(group.empty_metadata_record());
        }
        self.refresh_deadline(&gid);
    }

    fn sync_group(&mut self, waiter: Waiter, req: SyncGroupRequest, now_ms: i64, out: &mut Output) {
        let gid = req.group_id.0.to_string();
        let fail = |out: &mut Output, e: ResponseError| {
            out.responses.push((
                waiter.id,
                GroupResponse::SyncGroup(crate::classic::sync_response(
                    waiter.version,
                    e.code(),
                    None,
                    None,
                    Default::default(),
                )),
            ))
        };
        if gid.is_empty() {
            return fail(out, ResponseError::InvalidGroupId);
        }
        if waiter.version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
            return fail(out, ResponseError::InconsistentGroupProtocol);
        }
        match self.groups.get_mut(&gid) {
            Some(Group::Classic(g)) => g.sync(waiter, &req, now_ms, out),
            _ => return fail(out, ResponseError::UnknownMemberId),
        }
        self.refresh_deadline(&gid);
    }

    fn heartbeat(&mut self, req: HeartbeatRequest, now_ms: i64) -> HeartbeatResponse {
        let gid = req.group_id.0.to_string();
        let result = if gid.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            match self.groups.get_mut(&gid) {
                Some(Group::Classic(g)) => g.heartbeat(
                    req.member_id.as_str(),
                    req.group_instance_id.as_ref().map(|s| s.as_str()),
                    req.generation_id,
                    now_ms,
                ),
                _ => Err(ResponseError::UnknownMemberId),
            }
        };
        self.refresh_deadline(&gid);
        HeartbeatResponse::default().with_error_code(result.err().map(|e| e.code()).unwrap_or(0))
    }

    fn leave_group(
        &mut self,
        version: i16,
        req: LeaveGroupRequest,
        now_ms: i64,
        out: &mut Output,
    ) -> LeaveGroupResponse {
        let gid = req.group_id.0.to_string();
        if gid.is_empty() {
            return LeaveGroupResponse::default()
                .with_error_code(ResponseError::InvalidGroupId.code());
        }
        let members: Vec<MemberIdentity> = if version >= 3 {
            req.members
        } else {
            vec![MemberIdentity::default().with_member_id(req.member_id)]
        };
        let mut responses = Vec::with_capacity(members.len());
        match self.groups.get_mut(&gid) {
            Some(Group::Classic(g)) => {
                let mut any_left = false;
                for m in &members {
                    let result = g.leave_member(
                        m.member_id.as_str(),
                        m.group_instance_id.as_ref().map(|s| s.as_str()),
                        out,
                    );
                    any_left |= result.is_ok();
                    responses.push((m, result.err().map(|e| e.code()).unwrap_or(0)));
                }
                if any_left {
                    g.after_leave(now_ms, out);
                }
            }
            _ => {
                for m in &members {
                    responses.push((m, ResponseError::UnknownMemberId.code()));
                }
            }
        }
        self.refresh_deadline(&gid);
        if version >= 3 {
            LeaveGroupResponse::default().with_members(
                responses
                    .into_iter()
                    .map(|(m, code)| {
                        MemberResponse::default()
                            .with_member_id(m.member_id.clone())
                            .with_group_instance_id(m.group_instance_id.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            )
        } else {
            let code = responses
                .iter()
                .map(|(_, c)| *c)
                .find(|c| *c != 0)
                .unwrap_or(0);
            LeaveGroupResponse::default().with_error_code(code)
        }
    }

    // ---- offsets -------------------------------------------------------------------------

    fn offset_commit(
        &mut self,
        version: i16,
        req: OffsetCommitRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> OffsetCommitResponse {
        let gid = req.group_id.0.to_string();
        // Partitions of unknown topics are refused before the group is looked at (as
        // Kafka's request handler does); the others wait for the group's verdict.
        enum Slot {
            Done(i16),
            Commit(String, offset_commit_request::OffsetCommitRequestPartition),
        }
        let mut plan: Vec<(OffsetCommitResponseTopic, Vec<(i32, Slot)>)> =
            Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let by_id = version >= 10 && !t.topic_id.is_nil();
            let info = if by_id {
                topics.topic_by_id(&t.topic_id)
            } else {
                topics.topic_by_name(t.name.as_str())
            };
            let mut rt = OffsetCommitResponseTopic::default().with_name(t.name.clone());
            if version >= 10 {
                rt.topic_id = t.topic_id;
            }
            let slots = t
                .partitions
                .iter()
                .map(|p| {
                    let slot = match &info {
                        Some(i) if p.partition_index >= 0 && p.partition_index < i.partitions => {
                            Slot::Commit(i.name.clone(), p.clone())
                        }
                        Some(_) => Slot::Done(ResponseError::UnknownTopicOrPartition.code()),
                        None if by_id => Slot::Done(ResponseError::UnknownTopicId.code()),
                        None => Slot::Done(ResponseError::UnknownTopicOrPartition.code()),
                    };
                    (p.partition_index, slot)
                })
                .collect();
            plan.push((rt, slots));
        }
        let any_valid = plan
            .iter()
            .any(|(_, slots)| slots.iter().any(|(_, s)| matches!(s, Slot::Commit(..))));
        let validation = if !any_valid {
            Ok(())
        } else if gid.len() > MAX_STRING_BYTES {
            // Too long for the record key (a classic string).
            Err(ResponseError::InvalidGroupId)
        } else {
            let generation = req.generation_id_or_member_epoch;
            let member_id = req.member_id.as_str();
            let instance_id = req.group_instance_id.as_ref().map(|s| s.as_str());
            match self.groups.get_mut(&gid) {
                None if generation < 0 => Ok(()),
                // v9 answers GROUP_ID_NOT_FOUND for both protocols; older versions keep
                // ILLEGAL_GENERATION.
                None if version >= 9 => Err(ResponseError::GroupIdNotFound),
                None => Err(ResponseError::IllegalGeneration),
                Some(Group::Classic(g)) => {
                    let r = g.validate_offset_commit(member_id, instance_id, generation);
                    if r.is_ok() {
                        g.on_offset_commit(member_id, now_ms);
                    }
                    r
                }
                Some(Group::Consumer(g)) if generation < 0 && g.is_empty() => Ok(()),
                Some(Group::Consumer(g)) => match g.validate_offset_commit(member_id, generation) {
                    // KIP-848 members commit with OffsetCommit v9+.
                    Ok(()) if version < 9 => Err(ResponseError::UnsupportedVersion),
                    r => r,
                },
            }
        };
        let expire_timestamp =
            (req.retention_time_ms != -1).then(|| now_ms.saturating_add(req.retention_time_ms));
        let mut resp_topics = Vec::with_capacity(plan.len());
        for (mut rt, slots) in plan {
            for (partition, slot) in slots {
                let code = match (slot, validation) {
                    (Slot::Done(code), _) => code,
                    (Slot::Commit(..), Err(e)) => e.code(),
                    (Slot::Commit(topic, p), Ok(())) => {
                        match self.commit_metadata(p.committed_metadata.as_ref()) {
                            Err(e) => e.code(),
                            Ok(metadata) => {
                                // A commit outside group management makes a simple group.
                                self.ensure_simple_group(&gid);
                                let value = OffsetCommitValue {
                                    offset: p.committed_offset,
                                    leader_epoch: p.committed_leader_epoch,
                                    metadata,
                                    commit_timestamp: now_ms,
                                    expire_timestamp,
                                    topic_id: None,
                                };
                                self.emit_offset(&gid, &topic, partition, Some(value), out);
                                0
                            }
                        }
                    }
                };
                rt.partitions.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(code),
                );
            }
            resp_topics.push(rt);
        }
        self.refresh_deadline(&gid);
        OffsetCommitResponse::default().with_topics(resp_topics)
    }

    /// TxnOffsetCommit (KIP-98; member checks of v3+ from KIP-447): the offsets are written
    /// as a transactional batch of the request's producer ([`Output::txn_records`]) and stay
    /// pending until the producer's transaction marker ([`complete_txn`](Self::complete_txn)).
    fn txn_offset_commit(
        &mut self,
        version: i16,
        req: TxnOffsetCommitRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> TxnOffsetCommitResponse {
        let gid = req.group_id.0.to_string();
        // Versions 0-2 have no member fields: they commit as outside group management.
        let (generation, member_id, instance_id) = if version >= 3 {
            (
                req.generation_id,
                req.member_id.to_string(),
                req.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        } else {
            (-1, String::new(), None)
        };
        // Partitions of unknown topics are refused before the group is looked at (Kafka's
        // request handler); the others wait for the group's verdict.
        let plan: Vec<TxnCommitPlan<'_>> = req
            .topics
            .iter()
            .map(|t| {
                let info = topics.topic_by_name(t.name.as_str());
                let slots = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let slot = match &info {
                            Some(i)
                                if p.partition_index >= 0 && p.partition_index < i.partitions =>
                            {
                                Ok(p)
                            }
                            _ => Err(ResponseError::UnknownTopicOrPartition.code()),
                        };
                        (p.partition_index, slot)
                    })
                    .collect();
                (&t.name, slots)
            })
            .collect();
        let any_valid = plan
            .iter()
            .any(|(_, slots)| slots.iter().any(|(_, s)| s.is_ok()));
        let validation = if !any_valid {
            Ok(())
        } else if gid.is_empty() || gid.len() > MAX_STRING_BYTES {
            Err(ResponseError::InvalidGroupId)
        } else if req.producer_id.0 < 0 || req.producer_epoch < 0 {
            // Runnel's guard: without a producer there is no transactional batch to write.
            Err(ResponseError::InvalidProducerIdMapping)
        } else {
            match self.groups.get(&gid) {
                // A simple group is made for a commit outside group management.
                None if generation < 0 => Ok(()),
                None => Err(ResponseError::IllegalGeneration),
                Some(Group::Classic(g)) => {
                    g.validate_txn_offset_commit(&member_id, instance_id.as_deref(), generation)
                }
                Some(Group::Consumer(g)) => {
                    match g.validate_offset_commit(&member_id, generation) {
                        // Kafka answers a stale member epoch with ILLEGAL_GENERATION here.
                        Err(ResponseError::StaleMemberEpoch) => {
                            Err(ResponseError::IllegalGeneration)
                        }
                        r => r,
                    }
                }
            }
        };
        let mut records = Vec::new();
        let mut resp_topics = Vec::with_capacity(plan.len());
        for (name, slots) in plan {
            let mut partitions = Vec::with_capacity(slots.len());
            for (partition, slot) in slots {
                let code = match (slot, validation) {
                    (Err(code), _) => code,
                    (Ok(_), Err(e)) => e.code(),
                    (Ok(p), Ok(())) => match self.commit_metadata(p.committed_metadata.as_ref()) {
                        Err(e) => e.code(),
                        Ok(metadata) => {
                            self.ensure_simple_group(&gid);
                            let value = OffsetCommitValue {
                                offset: p.committed_offset,
                                leader_epoch: if version >= 2 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata,
                                commit_timestamp: now_ms,
                                expire_timestamp: None,
                                topic_id: None,
                            };
                            self.offsets.apply_txn(
                                req.producer_id.0,
                                &gid,
                                name.as_str(),
                                partition,
                                Some(value.clone()),
                            );
                            records.push(GroupRecord::OffsetCommit {
                                group: gid.clone(),
                                topic: name.to_string(),
                                partition,
                                value: Some(value),
                            });
                            0
                        }
                    },
                };
                partitions.push(
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(code),
                );
            }
            resp_topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name.clone())
                    .with_partitions(partitions),
            );
        }
        if !records.is_empty() {
            debug_assert!(
                out.txn_records.is_none(),
                "one transactional batch per output"
            );
            out.txn_records = Some(TxnRecords {
                producer_id: req.producer_id.0,
                producer_epoch: req.producer_epoch,
                records,
            });
        }
        self.refresh_deadline(&gid);
        TxnOffsetCommitResponse::default().with_topics(resp_topics)
    }

    /// One group's committed offsets: `topics` None = all of them. An unknown partition
    /// (or group) gives offset -1 and no error, as in Kafka. With `require_stable`
    /// (OffsetFetch v7+), a partition with a transactional offset waiting for its marker
    /// answers UNSTABLE_OFFSET_COMMIT with offset -1 (Kafka's partition-level error; the
    /// client retries). Fetching all offsets lists only partitions with a committed one.
    fn fetch_group_offsets(
        &self,
        gid: &str,
        requested: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<FetchedTopic> {
        let unstable = |topic: &str, p: i32| {
            (require_stable && self.offsets.has_pending(gid, topic, p)).then(|| {
                (
                    p,
                    -1,
                    -1,
                    String::new(),
                    ResponseError::UnstableOffsetCommit.code(),
                )
            })
        };
        match requested {
            Some(topics) => topics
                .into_iter()
                .map(|(name, partitions)| {
                    let parts = partitions
                        .into_iter()
                        .map(|p| {
                            unstable(&name, p).unwrap_or_else(|| {
                                match self.offsets.get(gid, &name, p) {
                                    Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone(), 0),
                                    None => (p, -1, -1, String::new(), 0),
                                }
                            })
                        })
                        .collect();
                    (name, parts)
                })
                .collect(),
            None => {
                let mut by_topic: Vec<FetchedTopic> = Vec::new();
                if let Some(offsets) = self.offsets.group(gid) {
                    for ((topic, p), stored) in offsets {
                        let v = &stored.value;
                        let entry = unstable(topic, *p).unwrap_or_else(|| {
                            (*p, v.offset, v.leader_epoch, v.metadata.clone(), 0)
                        });
                        match by_topic.last_mut() {
                            Some((t, parts)) if t == topic => parts.push(entry),
                            _ => by_topic.push((topic.clone(), vec![entry])),
                        }
                    }
                }
                by_topic
            }
        }
    }

    /// KIP-848 groups check the member of a fetch that names one (v9+).
    fn validate_offset_fetch(
        &self,
        gid: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.groups.get(gid) {
            Some(Group::Consumer(g)) => g.validate_offset_fetch(member_id, member_epoch),
            _ => Ok(()),
        }
    }

    fn offset_fetch(
        &self,
        version: i16,
        req: OffsetFetchRequest,
        topics: &dyn TopicMetadata,
    ) -> OffsetFetchResponse {
        if version < 8 {
            let gid = req.group_id.0.to_string();
            let requested = req.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let require_stable = version >= 7 && req.require_stable;
            let result = self.fetch_group_offsets(&gid, requested, require_stable);
            let topics = result
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(sb(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, offset, epoch, metadata, error_code)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(sb(&metadata)))
                                        .with_error_code(error_code)
                                })
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default().with_topics(topics);
        }
        let require_stable = req.require_stable;
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let gid = g.group_id.0.to_string();
                let mut rg = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                if let Err(e) = self.validate_offset_fetch(
                    &gid,
                    g.member_id.as_ref().map(|s| s.as_str()),
                    g.member_epoch,
                ) {
                    return rg.with_error_code(e.code());
                }
                // Topic ids (v10) are resolved to names; unknown ids get UNKNOWN_TOPIC_ID.
                let mut unknown_ids: Vec<(Uuid, Vec<i32>)> = Vec::new();
                let mut ids_of: HashMap<String, Uuid> = HashMap::new();
                let requested = g.topics.map(|ts| {
                    let mut named = Vec::with_capacity(ts.len());
                    for t in ts {
                        if version >= 10 && !t.topic_id.is_nil() {
                            match topics.topic_by_id(&t.topic_id) {
                                Some(info) => {
                                    ids_of.insert(info.name.clone(), t.topic_id);
                                    named.push((info.name, t.partition_indexes));
                                }
                                None => unknown_ids.push((t.topic_id, t.partition_indexes)),
                            }
                        } else {
                            named.push((t.name.to_string(), t.partition_indexes));
                        }
                    }
                    named
                });
                let result = self.fetch_group_offsets(&gid, requested, require_stable);
                let mut rtopics: Vec<OffsetFetchResponseTopics> = result
                    .into_iter()
                    .map(|(name, parts)| {
                        let mut t = OffsetFetchResponseTopics::default()
                            .with_name(TopicName(sb(&name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, offset, epoch, metadata, error_code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(sb(&metadata)))
                                            .with_error_code(error_code)
                                    })
                                    .collect(),
                            );
                        if version >= 10 {
                            t.topic_id = ids_of
                                .get(&name)
                                .copied()
                                .or_else(|| topics.topic_by_name(&name).map(|i| i.topic_id))
                                .unwrap_or_default();
                            t.name = TopicName::default();
                        }
                        t
                    })
                    .collect();
                for (id, parts) in unknown_ids {
                    rtopics.push(
                        OffsetFetchResponseTopics::default()
                            .with_topic_id(id)
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_metadata(Some(sb("")))
                                            .with_error_code(ResponseError::UnknownTopicId.code())
                                    })
                                    .collect(),
                            ),
                    );
                }
                rg.topics = rtopics;
                rg
            })
            .collect();
        OffsetFetchResponse::default().with_groups(groups)
    }

    fn offset_delete(
        &mut self,
        req: OffsetDeleteRequest,
        topics: &dyn TopicMetadata,
        out: &mut Output,
    ) -> OffsetDeleteResponse {
        let gid = req.group_id.0.to_string();
        let top_error =
            |e: ResponseError| OffsetDeleteResponse::default().with_error_code(e.code());
        if gid.is_empty() {
            return top_error(ResponseError::InvalidGroupId);
        }
        let Some(group) = self.groups.get(&gid) else {
            return top_error(ResponseError::GroupIdNotFound);
        };
        if let Group::Classic(c) = group {
            if !c.is_empty() && !c.uses_consumer_protocol() {
                return top_error(ResponseError::NonEmptyGroup);
            }
        }
        let mut resp_topics = Vec::with_capacity(req.topics.len());
        let mut tombstones: Vec<(String, i32)> = Vec::new();
        for t in &req.topics {
            let name = t.name.to_string();
            let info = topics.topic_by_name(&name);
            let subscribed = group.is_subscribed_to_topic(&name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = match &info {
                        Some(i) if p.partition_index >= 0 && p.partition_index < i.partitions => {
                            if subscribed {
                                ResponseError::GroupSubscribedToTopic.code()
                            } else {
                                // A pending transactional offset gets a tombstone too (Kafka).
                                if self.offsets.get(&gid, &name, p.partition_index).is_some()
                                    || self.offsets.has_pending(&gid, &name, p.partition_index)
                                {
                                    tombstones.push((name.clone(), p.partition_index));
                                }
                                0
                            }
                        }
                        _ => ResponseError::UnknownTopicOrPartition.code(),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            resp_topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        for (topic, partition) in tombstones {
            if self.offsets.get(&gid, &topic, partition).is_some()
                || self.offsets.has_pending(&gid, &topic, partition)
            {
                self.emit_offset(&gid, &topic, partition, None, out);
            }
        }
        OffsetDeleteResponse::default().with_topics(resp_topics)
    }

    // ---- administration ------------------------------------------------------------------

    fn list_groups(&self, version: i16, req: &ListGroupsRequest) -> ListGroupsResponse {
        let states: BTreeSet<String> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            BTreeSet::new()
        };
        let types: BTreeSet<String> = if version >= 5 {
            req.types_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            BTreeSet::new()
        };
        let groups = self
            .groups
            .iter()
            .filter_map(|(gid, g)| {
                let (state, protocol_type, group_type) = match g {
                    Group::Classic(c) => (
                        c.state.name(),
                        c.protocol_type.clone().unwrap_or_default(),
                        "classic",
                    ),
                    Group::Consumer(c) => (
                        c.state_name(),
                        CONSUMER_PROTOCOL_TYPE.to_string(),
                        "consumer",
                    ),
                };
                let state_ok = states.is_empty() || states.contains(&state.to_lowercase());
                let type_ok = types.is_empty() || types.contains(group_type);
                (state_ok && type_ok).then(|| {
                    ListedGroup::default()
                        .with_group_id(GroupId(sb(gid)))
                        .with_protocol_type(sb(&protocol_type))
                        .with_group_state(sb(state))
                        .with_group_type(sb(group_type))
                })
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    fn describe_groups(&self, version: i16, req: &DescribeGroupsRequest) -> DescribeGroupsResponse {
        let groups = req
            .groups
            .iter()
            .map(|gid| {
                let id = gid.0.to_string();
                let not_found = |message: String| {
                    let mut d = describe_groups_response::DescribedGroup::default()
                        .with_group_id(gid.clone())
                        .with_group_state(sb("Dead"));
                    if version >= 6 {
                        let (code, msg) = error_message(ResponseError::GroupIdNotFound, message);
                        d.error_code = code;
                        d.error_message = msg;
                    }
                    d
                };
                match self.groups.get(&id) {
                    Some(Group::Classic(g)) => {
                        let mut d = g.describe(version);
                        if version >= 3 && req.include_authorized_operations {
                            d.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
                        }
                        d
                    }
                    Some(Group::Consumer(_)) => {
                        not_found(format!("Group {id} is not a classic group."))
                    }
                    None => not_found(format!("Group {id} not found.")),
                }
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    fn delete_groups(
        &mut self,
        req: &DeleteGroupsRequest,
        out: &mut Output,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for gid in &req.groups_names {
            let id = gid.0.to_string();
            let code = match self.groups.get(&id) {
                None => ResponseError::GroupIdNotFound.code(),
                Some(g) if !g.is_empty() => ResponseError::NonEmptyGroup.code(),
                Some(_) => {
                    self.delete_group(&id, out);
                    0
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid.clone())
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    // ---- KIP-848 ---------------------------------------------------------------------------

    fn consumer_group_heartbeat(
        &mut self,
        version: i16,
        ctx: &RequestContext,
        req: ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> ConsumerGroupHeartbeatResponse {
        let gid = req.group_id.0.to_string();
        let fail = |e: ResponseError, message: String| {
            let (code, msg) = error_message(e, message);
            let mut r = ConsumerGroupHeartbeatResponse::default().with_error_code(code);
            r.error_message = msg;
            r
        };
        if gid.is_empty() {
            return fail(
                ResponseError::InvalidRequest,
                "GroupId can't be empty.".to_string(),
            );
        }
        if gid.len() > MAX_STRING_BYTES {
            return fail(
                ResponseError::InvalidGroupId,
                "GroupId is too long.".to_string(),
            );
        }
        let joining = req.member_epoch == 0;
        let client = Some(ClientInfo {
            client_id: &ctx.client_id,
            client_host: &ctx.client_host,
        });
        let response = match self.groups.get_mut(&gid) {
            Some(Group::Consumer(g)) => {
                let (records, response) =
                    g.heartbeat_with_client(version, &req, client, topics, &self.config, now_ms);
                out.records
                    .extend(records.into_iter().map(GroupRecord::Consumer));
                response
            }
            Some(Group::Classic(c)) if !(joining && c.is_empty()) => {
                return fail(
                    ResponseError::GroupIdNotFound,
                    format!("Group {gid} is not a consumer group."),
                );
            }
            None if !joining => {
                return fail(
                    ResponseError::GroupIdNotFound,
                    format!("Group {gid} not found."),
                );
            }
            existing => {
                // A new group, or an empty classic group that becomes a consumer group (its
                // offsets stay). Nothing is kept if the heartbeat is refused.
                let replaces_classic = existing.is_some();
                let mut g = Box::new(ConsumerGroup::new(gid.clone()));
                let (records, response) =
                    g.heartbeat_with_client(version, &req, client, topics, &self.config, now_ms);
                if response.error_code == 0 {
                    if replaces_classic {
                        out.records.push(GroupRecord::GroupMetadata {
                            group: gid.clone(),
                            value: None,
                        });
                    }
                    out.records
                        .extend(records.into_iter().map(GroupRecord::Consumer));
                    self.groups.insert(gid.clone(), Group::Consumer(g));
                }
                response
            }
        };
        self.refresh_deadline(&gid);
        response
    }

    fn consumer_group_describe(
        &self,
        req: &ConsumerGroupDescribeRequest,
        topics: &dyn TopicMetadata,
    ) -> ConsumerGroupDescribeResponse {
        let groups = req
            .group_ids
            .iter()
            .map(|gid| {
                let id = gid.0.to_string();
                let fail = |e: ResponseError, message: String| {
                    let (code, msg) = error_message(e, message);
                    let mut d = consumer_group_describe_response::DescribedGroup::default()
                        .with_group_id(gid.clone())
                        .with_error_code(code);
                    d.error_message = msg;
                    d
                };
                if id.is_empty() {
                    return fail(
                        ResponseError::InvalidGroupId,
                        "GroupId can't be empty.".into(),
                    );
                }
                match self.groups.get(&id) {
                    Some(Group::Consumer(g)) => {
                        let mut d = g.describe(topics);
                        if req.include_authorized_operations {
                            d.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
                        }
                        d
                    }
                    Some(Group::Classic(_)) => fail(
                        ResponseError::GroupIdNotFound,
                        format!("Group {id} is not a consumer group."),
                    ),
                    None => fail(
                        ResponseError::GroupIdNotFound,
                        format!("Group {id} not found."),
                    ),
                }
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }
}
