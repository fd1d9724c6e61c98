//! A harness that drives a `GroupCoordinatorShard` without sockets: requests in, records
//! kept as the log would keep them, responses checked to encode at their request's version.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_group::{
    GroupConfig, GroupCoordinatorShard, GroupRecord, GroupRequest, GroupResponse, Output,
    RequestContext, RequestId, ShardRequest, StaticTopics, TopicInfo,
};
use uuid::Uuid;

pub const T0: i64 = 1_700_000_000_000;

pub fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn gid(s: &str) -> GroupId {
    GroupId(sb(s))
}

pub fn tname(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// A ConsumerProtocolSubscription v0: topics, no user data.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

pub fn topics() -> StaticTopics {
    StaticTopics(vec![
        TopicInfo {
            name: "orders".into(),
            topic_id: Uuid::from_u128(1),
            partitions: 6,
        },
        TopicInfo {
            name: "events".into(),
            topic_id: Uuid::from_u128(2),
            partitions: 3,
        },
        TopicInfo {
            name: "audit".into(),
            topic_id: Uuid::from_u128(3),
            partitions: 1,
        },
    ])
}

/// Encodes a response at `version`, as the broker will.
pub fn assert_encodes(r: &GroupResponse, version: i16) {
    let mut buf = BytesMut::new();
    let result = match r {
        GroupResponse::JoinGroup(r) => r.encode(&mut buf, version),
        GroupResponse::SyncGroup(r) => r.encode(&mut buf, version),
        GroupResponse::Heartbeat(r) => r.encode(&mut buf, version),
        GroupResponse::LeaveGroup(r) => r.encode(&mut buf, version),
        GroupResponse::OffsetCommit(r) => r.encode(&mut buf, version),
        GroupResponse::TxnOffsetCommit(r) => r.encode(&mut buf, version),
        GroupResponse::OffsetFetch(r) => r.encode(&mut buf, version),
        GroupResponse::OffsetDelete(r) => r.encode(&mut buf, version),
        GroupResponse::ListGroups(r) => r.encode(&mut buf, version),
        GroupResponse::DescribeGroups(r) => r.encode(&mut buf, version),
        GroupResponse::DeleteGroups(r) => r.encode(&mut buf, version),
        GroupResponse::ConsumerGroupHeartbeat(r) => r.encode(&mut buf, version),
        GroupResponse::ConsumerGroupDescribe(r) => r.encode(&mut buf, version),
    };
    if let Err(e) = result {
        panic!("response does not encode at v{version}: {e}\n{r:?}");
    }
}

/// One entry of the partition as the runtime writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// A record of a plain batch.
    Plain(GroupRecord),
    /// A record of a transactional batch of this producer id.
    Txn(i64, GroupRecord),
    /// A transaction marker of this producer id (true: commit).
    Marker(i64, bool),
}

pub struct Harness {
    pub shard: GroupCoordinatorShard,
    pub topics: StaticTopics,
    pub now: i64,
    next_id: RequestId,
    /// Every record the shard emitted, in order (the log), transactional ones included.
    pub log: Vec<GroupRecord>,
    /// The partition as written: records with their batch kind, and markers, in order.
    pub entries: Vec<LogEntry>,
    /// Answers not yet taken by the test.
    pub answers: BTreeMap<RequestId, GroupResponse>,
    /// Requests sent and not yet answered (id → version).
    pub waiting: BTreeMap<RequestId, i16>,
    /// How many times each request was answered (must be once).
    pub answered: BTreeMap<RequestId, usize>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    pub fn with_config(config: GroupConfig) -> Self {
        Harness {
            shard: GroupCoordinatorShard::new(0, config).with_member_id_seed(42),
            topics: topics(),
            now: T0,
            next_id: 1,
            log: Vec::new(),
            entries: Vec::new(),
            answers: BTreeMap::new(),
            waiting: BTreeMap::new(),
            answered: BTreeMap::new(),
        }
    }

    pub fn absorb(&mut self, out: Output) {
        // Every record must survive the trip through its stored form.
        for r in &out.records {
            let (k, v) = r.encode();
            let back = GroupRecord::decode(&k, v.as_deref()).expect("record decodes");
            assert_eq!(&back, r, "record round trip");
        }
        self.entries
            .extend(out.records.iter().cloned().map(LogEntry::Plain));
        self.log.extend(out.records);
        if let Some(txn) = out.txn_records {
            assert!(!txn.records.is_empty(), "an empty transactional batch");
            for r in &txn.records {
                let (k, v) = r.encode();
                let back = GroupRecord::decode(&k, v.as_deref()).expect("record decodes");
                assert_eq!(&back, r, "record round trip");
                self.entries.push(LogEntry::Txn(txn.producer_id, r.clone()));
            }
            self.log.extend(txn.records);
        }
        for (id, r) in out.responses {
            let version = self
                .waiting
                .remove(&id)
                .unwrap_or_else(|| panic!("answer to request {id} that is not waiting: {r:?}"));
            assert_encodes(&r, version);
            *self.answered.entry(id).or_insert(0) += 1;
            self.answers.insert(id, r);
        }
    }

    pub fn send_as(&mut self, client: &str, version: i16, body: GroupRequest) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.insert(id, version);
        let ctx = RequestContext {
            client_id: client.to_string(),
            client_host: "/10.0.0.1".to_string(),
        };
        let out = self.shard.handle_with_context(
            id,
            ShardRequest { version, body },
            &ctx,
            &self.topics,
            self.now,
        );
        self.absorb(out);
        id
    }

    pub fn send(&mut self, version: i16, body: GroupRequest) -> RequestId {
        self.send_as("client", version, body)
    }

    /// Sends and expects the answer at once.
    pub fn call(&mut self, version: i16, body: GroupRequest) -> GroupResponse {
        let id = self.send(version, body);
        self.take(id).expect("an immediate answer")
    }

    pub fn take(&mut self, id: RequestId) -> Option<GroupResponse> {
        self.answers.remove(&id)
    }

    pub fn is_waiting(&self, id: RequestId) -> bool {
        self.waiting.contains_key(&id)
    }

    /// Moves the clock to `t`, firing every timer due on the way, in order.
    pub fn advance_to(&mut self, t: i64) {
        loop {
            match self.shard.next_deadline_ms() {
                Some(d) if d <= t => {
                    self.now = self.now.max(d);
                    let out = self.shard.tick(&self.topics, self.now);
                    self.absorb(out);
                }
                _ => break,
            }
        }
        self.now = t;
        let out = self.shard.tick(&self.topics, self.now);
        self.absorb(out);
    }

    pub fn advance(&mut self, ms: i64) {
        let t = self.now + ms;
        self.advance_to(t);
    }

    // ---- request builders ----------------------------------------------------------

    pub fn join(&mut self, version: i16, j: &Join) -> RequestId {
        let mut req = JoinGroupRequest::default()
            .with_group_id(gid(&j.group))
            .with_session_timeout_ms(j.session_timeout_ms)
            .with_rebalance_timeout_ms(j.rebalance_timeout_ms)
            .with_member_id(sb(&j.member_id))
            .with_protocol_type(sb(&j.protocol_type))
            .with_protocols(
                j.protocols
                    .iter()
                    .map(|(n, m)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(sb(n))
                            .with_metadata(m.clone())
                    })
                    .collect(),
            );
        req.group_instance_id = j.instance.as_deref().map(sb);
        self.send_as(&j.client, version, GroupRequest::JoinGroup(req))
    }

    pub fn join_response(&mut self, id: RequestId) -> JoinGroupResponse {
        match self.take(id) {
            Some(GroupResponse::JoinGroup(r)) => r,
            other => panic!("expected a JoinGroup answer, got {other:?}"),
        }
    }

    /// JoinGroup v5 with MEMBER_ID_REQUIRED handled: returns the request id of the second join.
    pub fn join_dynamic(&mut self, group: &str, client: &str, topics: &[&str]) -> RequestId {
        let j = Join::new(group, client, topics);
        let first = self.join(5, &j);
        let r = self.join_response(first);
        assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
        let mut j = j;
        j.member_id = r.member_id.to_string();
        self.join(5, &j)
    }

    /// A one-member group subscribed to "orders", joined (JoinGroup v5, with `instance` as
    /// static member) but not yet synced: CompletingRebalance. Returns (member, generation).
    pub fn joined_group(&mut self, group: &str, instance: Option<&str>) -> (String, i32) {
        let j = match instance {
            None => self.join_dynamic(group, "c", &["orders"]),
            Some(i) => self.join(5, &Join::new(group, "c", &["orders"]).instance(i)),
        };
        self.advance(5_000);
        let r = self.join_response(j);
        assert_eq!(r.error_code, 0);
        (r.member_id.to_string(), r.generation_id)
    }

    /// The group of [`joined_group`](Self::joined_group), synced: Stable.
    pub fn stable_group(&mut self, group: &str, instance: Option<&str>) -> (String, i32) {
        let (m, gen) = self.joined_group(group, instance);
        let s = self.sync(5, group, &m, gen, &[(&m, Bytes::from_static(b"a"))]);
        assert_eq!(self.sync_response(s).error_code, 0);
        (m, gen)
    }

    pub fn sync(
        &mut self,
        version: i16,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, Bytes)],
    ) -> RequestId {
        let mut req = SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(sb(member_id))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(sb(m))
                            .with_assignment(a.clone())
                    })
                    .collect(),
            );
        if version >= 5 {
            req.protocol_type = Some(sb("consumer"));
            req.protocol_name = Some(sb("range"));
        }
        self.send(version, GroupRequest::SyncGroup(req))
    }

    pub fn sync_response(&mut self, id: RequestId) -> SyncGroupResponse {
        match self.take(id) {
            Some(GroupResponse::SyncGroup(r)) => r,
            other => panic!("expected a SyncGroup answer, got {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, group: &str, member_id: &str, generation: i32) -> i16 {
        self.heartbeat_static(group, member_id, None, generation)
    }

    pub fn heartbeat_static(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut req = HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(sb(member_id));
        req.group_instance_id = instance.map(sb);
        match self.call(4, GroupRequest::Heartbeat(req)) {
            GroupResponse::Heartbeat(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    pub fn leave(
        &mut self,
        version: i16,
        group: &str,
        members: &[(&str, Option<&str>)],
    ) -> LeaveGroupResponse {
        let mut req = LeaveGroupRequest::default().with_group_id(gid(group));
        if version >= 3 {
            req.members = members
                .iter()
                .map(|(m, i)| {
                    let mut mi = MemberIdentity::default().with_member_id(sb(m));
                    mi.group_instance_id = i.map(sb);
                    mi
                })
                .collect();
        } else {
            req.member_id = sb(members[0].0);
        }
        match self.call(version, GroupRequest::LeaveGroup(req)) {
            GroupResponse::LeaveGroup(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        version: i16,
        group: &str,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64, Option<&str>)],
    ) -> OffsetCommitResponse {
        let mut by_topic: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (t, p, o, m) in offsets {
            let part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(if version >= 6 { 7 } else { -1 })
                .with_committed_metadata(m.map(sb));
            match by_topic.iter_mut().find(|x| x.name.as_str() == *t) {
                Some(x) => x.partitions.push(part),
                None => by_topic.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(tname(t))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(gid(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(sb(member_id))
            .with_topics(by_topic);
        match self.call(version, GroupRequest::OffsetCommit(req)) {
            GroupResponse::OffsetCommit(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// Error codes of a commit answer, flattened in request order.
    pub fn commit_codes(r: &OffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// OffsetFetch v8 for one group: (topic, partition, offset, metadata, error) sorted.
    pub fn fetch(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> Vec<(String, i32, i64, String, i16)> {
        self.fetch_at(8, group, topics, false)
    }

    /// OffsetFetch v8+ for one group: (topic, partition, offset, metadata, error) sorted.
    pub fn fetch_at(
        &mut self,
        version: i16,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
        require_stable: bool,
    ) -> Vec<(String, i32, i64, String, i16)> {
        let req = OffsetFetchRequest::default()
            .with_require_stable(require_stable)
            .with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopics::default()
                                .with_name(tname(t))
                                .with_partition_indexes(ps.to_vec())
                        })
                        .collect()
                }))]);
        let r = match self.call(version, GroupRequest::OffsetFetch(req)) {
            GroupResponse::OffsetFetch(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.groups[0].error_code, 0);
        let mut rows: Vec<_> = r.groups[0]
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        p.error_code,
                    )
                })
            })
            .collect();
        rows.sort();
        rows
    }

    /// OffsetFetch v1–v7 for one group.
    pub fn fetch_old(
        &mut self,
        version: i16,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> OffsetFetchResponse {
        let req = OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(tname(t))
                            .with_partition_indexes(ps.to_vec())
                    })
                    .collect()
            }));
        match self.call(version, GroupRequest::OffsetFetch(req)) {
            GroupResponse::OffsetFetch(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// TxnOffsetCommit at `version` for `group` by `producer_id` (epoch 0), with the member
    /// fields of v3+.
    #[allow(clippy::too_many_arguments)]
    pub fn txn_commit_as(
        &mut self,
        version: i16,
        producer_id: i64,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        offsets: &[(&str, i32, i64, Option<&str>)],
    ) -> TxnOffsetCommitResponse {
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let mut by_topic: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (t, p, o, m) in offsets {
            let part = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(if version >= 2 { 7 } else { -1 })
                .with_committed_metadata(m.map(sb));
            match by_topic.iter_mut().find(|x| x.name.as_str() == *t) {
                Some(x) => x.partitions.push(part),
                None => by_topic.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(tname(t))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let mut req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(sb(&format!("txn-{producer_id}"))))
            .with_group_id(gid(group))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0)
            .with_topics(by_topic);
        if version >= 3 {
            req.generation_id = generation;
            req.member_id = sb(member_id);
            req.group_instance_id = instance.map(sb);
        }
        match self.call(version, GroupRequest::TxnOffsetCommit(req)) {
            GroupResponse::TxnOffsetCommit(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// TxnOffsetCommit v3 outside group management (generation -1, no member).
    pub fn txn_commit(
        &mut self,
        producer_id: i64,
        group: &str,
        offsets: &[(&str, i32, i64, Option<&str>)],
    ) -> TxnOffsetCommitResponse {
        self.txn_commit_as(3, producer_id, group, "", None, -1, offsets)
    }

    /// Error codes of a TxnOffsetCommit answer, flattened in request order.
    pub fn txn_codes(r: &TxnOffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    /// OffsetFetch v8 with `require_stable`, for one group: (topic, partition, offset,
    /// metadata, error) sorted.
    pub fn fetch_stable(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> Vec<(String, i32, i64, String, i16)> {
        self.fetch_at(8, group, topics, true)
    }

    pub fn describe(&mut self, version: i16, groups: &[&str]) -> DescribeGroupsResponse {
        let req =
            DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect());
        match self.call(version, GroupRequest::DescribeGroups(req)) {
            GroupResponse::DescribeGroups(r) => r,
            other => panic!("{other:?}"),
        }
    }

    pub fn state(&mut self, group: &str) -> String {
        self.describe(5, &[group]).groups[0].group_state.to_string()
    }

    pub fn list(
        &mut self,
        version: i16,
        states: &[&str],
        types: &[&str],
    ) -> Vec<(String, String, String, String)> {
        let req = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|s| sb(s)).collect())
            .with_types_filter(types.iter().map(|s| sb(s)).collect());
        match self.call(version, GroupRequest::ListGroups(req)) {
            GroupResponse::ListGroups(r) => r
                .groups
                .iter()
                .map(|g| {
                    (
                        g.group_id.to_string(),
                        g.protocol_type.to_string(),
                        g.group_state.to_string(),
                        g.group_type.to_string(),
                    )
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    pub fn delete_groups(&mut self, groups: &[&str]) -> Vec<(String, i16)> {
        let req = DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|g| gid(g)).collect());
        match self.call(2, GroupRequest::DeleteGroups(req)) {
            GroupResponse::DeleteGroups(r) => r
                .results
                .iter()
                .map(|r| (r.group_id.to_string(), r.error_code))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Writes a transaction marker for `producer_id` to the partition and tells the shard,
    /// as the runtime does.
    pub fn marker(&mut self, producer_id: i64, commit: bool) {
        self.entries.push(LogEntry::Marker(producer_id, commit));
        let out = self.shard.complete_txn(producer_id, commit, self.now);
        self.absorb(out);
    }

    /// Replays the whole log into a fresh shard (as a restart does).
    pub fn restarted(&self) -> Harness {
        let mut shard =
            GroupCoordinatorShard::new(0, self.shard.config().clone()).with_member_id_seed(7);
        let decode = |r: &GroupRecord| {
            let (k, v) = r.encode();
            GroupRecord::decode(&k, v.as_deref()).expect("decode")
        };
        for e in &self.entries {
            match e {
                LogEntry::Plain(r) => shard.replay(&decode(r), self.now).expect("replay"),
                LogEntry::Txn(pid, r) => shard
                    .replay_transactional(*pid, &decode(r), self.now)
                    .expect("replay"),
                LogEntry::Marker(pid, commit) => shard.replay_txn_marker(*pid, *commit),
            }
        }
        let mut h = Harness {
            shard,
            topics: self.topics.clone(),
            now: self.now,
            next_id: 1_000_000,
            log: self.log.clone(),
            entries: self.entries.clone(),
            answers: BTreeMap::new(),
            waiting: BTreeMap::new(),
            answered: BTreeMap::new(),
        };
        let out = h.shard.loaded(h.now);
        h.absorb(out);
        h
    }
}

/// A JoinGroup, with the settings most tests use.
#[derive(Clone, Debug)]
pub struct Join {
    pub group: String,
    pub client: String,
    pub member_id: String,
    pub instance: Option<String>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

impl Join {
    pub fn new(group: &str, client: &str, topics: &[&str]) -> Self {
        Join {
            group: group.to_string(),
            client: client.to_string(),
            member_id: String::new(),
            instance: None,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), subscription(topics))],
        }
    }

    pub fn member(mut self, id: &str) -> Self {
        self.member_id = id.to_string();
        self
    }

    pub fn instance(mut self, id: &str) -> Self {
        self.instance = Some(id.to_string());
        self
    }
}
