//! The consumer group state machine driven through joins, reconciliation, leaves, timeouts,
//! fencing, static membership and replay, with simulated clients and no sockets or sleeps.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::shard::GroupConfig;
use crate::topics::{StaticTopics, TopicInfo};

const GROUP: &str = "analytics-service";

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic(name: &str, id: u8, partitions: i32) -> TopicInfo {
    TopicInfo {
        name: name.to_string(),
        topic_id: Uuid::from_bytes([id; 16]),
        partitions,
    }
}

fn tid(id: u8) -> Uuid {
    Uuid::from_bytes([id; 16])
}

fn parts(entries: &[(u8, &[i32])]) -> Assignment {
    entries
        .iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (tid(*t), ps.iter().copied().collect()))
        .collect()
}

fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

fn owned_list(a: &Assignment) -> Vec<TopicPartitions> {
    a.iter()
        .map(|(t, ps)| {
            TopicPartitions::default()
                .with_topic_id(*t)
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

fn join_request(member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(sb(GROUP)))
        .with_member_id(sb(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(sb(t))).collect()))
        .with_topic_partitions(Some(vec![]))
}

fn beat_request(
    member: &str,
    epoch: i32,
    owned: Option<&Assignment>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(sb(GROUP)))
        .with_member_id(sb(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned.map(owned_list))
}

fn assignment_of(resp: &ConsumerGroupHeartbeatResponse) -> Option<Assignment> {
    resp.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
            .collect()
    })
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A client as librdkafka behaves: it keeps the last assignment it was given and reports
/// it on every heartbeat.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

struct Harness {
    group: ConsumerGroup,
    topics: StaticTopics,
    config: GroupConfig,
    now: i64,
    log: Vec<ConsumerRecord>,
}

impl Harness {
    fn new(topics: Vec<TopicInfo>) -> Self {
        Harness {
            group: ConsumerGroup::new(GROUP.to_string()),
            topics: StaticTopics(topics),
            config: GroupConfig::default(),
            now: 1_000_000,
            log: Vec::new(),
        }
    }

    fn session_ms(&self) -> i64 {
        i64::from(self.config.consumer_session_timeout_ms)
    }

    fn send(&mut self, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        self.send_version(1, req)
    }

    fn send_version(
        &mut self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let (records, resp) =
            self.group
                .heartbeat(version, req, &self.topics, &self.config, self.now);
        if resp.error_code != 0 {
            assert!(records.is_empty(), "a refused heartbeat wrote {records:?}");
        }
        self.log.extend(records);
        resp
    }

    fn join(&mut self, member: &str, topics: &[&str]) -> Client {
        let resp = self.send(&join_request(member, topics));
        assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
        Client {
            id: member.to_string(),
            epoch: resp.member_epoch,
            owned: assignment_of(&resp).expect("a join gets its assignment"),
        }
    }

    /// One heartbeat of a client reporting what it owns; it takes what it is given.
    fn step(&mut self, c: &mut Client) -> ConsumerGroupHeartbeatResponse {
        let resp = self.send(&beat_request(&c.id, c.epoch, Some(&c.owned)));
        assert_eq!(resp.error_code, 0, "{}: {:?}", c.id, resp.error_message);
        c.epoch = resp.member_epoch;
        if let Some(a) = assignment_of(&resp) {
            c.owned = a;
        }
        resp
    }

    fn tick(&mut self) {
        let records = self.group.tick(&self.config, self.now);
        self.log.extend(records);
    }

    fn replayed(&self) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(GROUP.to_string());
        for r in &self.log {
            // through the byte encoding, as from the log
            let (key, value) = r.encode();
            let decoded = ConsumerRecord::decode(r.key_version(), &key, value.as_deref()).unwrap();
            g.replay(&decoded);
        }
        g
    }

    fn assert_replay_equivalent(&self) {
        assert_eq!(
            self.replayed().persistent_view(),
            self.group.persistent_view()
        );
    }
}

/// No partition is owned by two clients at once.
fn assert_disjoint(clients: &[&Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}/{p} owned twice: {clients:?}");
            }
        }
    }
}

#[test]
fn given_a_new_group_when_the_first_member_joins_should_get_every_partition() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let resp = h.send(&join_request("m1", &["orders"]));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_id.as_deref(), Some("m1"));
    assert_eq!(resp.member_epoch, 1);
    assert_eq!(
        resp.heartbeat_interval_ms,
        h.config.consumer_heartbeat_interval_ms
    );
    assert_eq!(assignment_of(&resp), Some(parts(&[(1, &[0, 1, 2, 3])])));
    assert_eq!(h.group.group_epoch(), 1);
    assert_eq!(h.group.state_name(), "Stable");
    let kinds: Vec<i16> = h.log.iter().map(|r| r.key_version()).collect();
    assert_eq!(kinds, vec![5, 4, 3, 7, 6, 8]);

    // A steady heartbeat carries no assignment.
    let resp = h.send(&beat_request("m1", 1, None));
    assert_eq!(resp.member_epoch, 1);
    assert!(resp.assignment.is_none());
    h.assert_replay_equivalent();
}

#[test]
fn given_a_second_member_when_it_joins_should_get_partitions_only_after_the_first_revokes() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let mut a = h.join("a", &["orders"]);
    assert_eq!(count(&a.owned), 4);

    let mut b = h.join("b", &["orders"]);
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(b.epoch, 2, "b moves to the target epoch at once");
    assert!(b.owned.is_empty(), "b gets nothing a still owns");
    assert_eq!(h.group.state_name(), "Reconciling");

    // a is asked to revoke two partitions and stays at epoch 1 meanwhile
    let resp = h.step(&mut a);
    assert_eq!(resp.member_epoch, 1);
    assert_eq!(count(&a.owned), 2);
    let (_, state, _, pending) = h.group.member_state("a").unwrap();
    assert_eq!(state, MemberState::UnrevokedPartitions);
    assert_eq!(count(&pending), 2);

    // b still gets nothing: a has not confirmed the revocation yet
    let resp = h.send(&beat_request("b", 2, None));
    assert!(resp.assignment.is_none());

    // a confirms (its heartbeat reports two partitions) and moves to epoch 2
    h.step(&mut a);
    assert_eq!(a.epoch, 2);
    // now b receives the released partitions
    let resp = h.step(&mut b);
    assert!(resp.assignment.is_some());
    assert_eq!(count(&b.owned), 2);
    assert_disjoint(&[&a, &b]);
    assert_eq!(h.group.state_name(), "Stable");
    h.assert_replay_equivalent();
}

#[test]
fn given_a_member_that_leaves_when_the_others_heartbeat_should_take_its_partitions() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let mut a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    for _ in 0..3 {
        h.step(&mut a);
        h.step(&mut b);
    }
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));

    let resp = h.send(&beat_request("b", b.epoch, None).with_member_epoch(-1));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, -1);
    assert_eq!(h.group.members().len(), 1);
    let epoch_after_leave = h.group.group_epoch();

    h.step(&mut a);
    assert_eq!(count(&a.owned), 4);
    assert_eq!(a.epoch, epoch_after_leave);
    assert_eq!(h.group.state_name(), "Stable");
    h.assert_replay_equivalent();
}

#[test]
fn given_a_silent_member_when_its_session_expires_should_fence_it_and_reassign() {
    let mut h = Harness::new(vec![topic("orders", 1, 6)]);
    let mut a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    for _ in 0..3 {
        h.step(&mut a);
        h.step(&mut b);
    }
    let session = h.session_ms();
    assert_eq!(h.group.next_deadline_ms(), Some(h.now + session));

    // a keeps beating, b goes silent
    let interval = i64::from(h.config.consumer_heartbeat_interval_ms);
    let b_deadline = h.now + session;
    while h.now + interval < b_deadline {
        h.now += interval;
        h.step(&mut a);
        h.tick();
    }
    assert_eq!(h.group.members().len(), 2);
    h.now = h.group.next_deadline_ms().unwrap();
    h.tick();
    assert_eq!(h.group.members().len(), 1, "b is fenced");
    let resp = h.send(&beat_request("b", b.epoch, Some(&b.owned)));
    assert_eq!(resp.error_code, code(ResponseError::UnknownMemberId));

    h.step(&mut a);
    assert_eq!(count(&a.owned), 6);
    h.assert_replay_equivalent();
}

#[test]
fn given_a_member_that_never_revokes_when_the_rebalance_timeout_passes_should_fence_it() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    // a is told to revoke but keeps reporting both partitions
    let resp = h.send(&beat_request("a", a.epoch, Some(&parts(&[(1, &[0, 1])]))));
    assert_eq!(count(&assignment_of(&resp).unwrap()), 1);
    let deadline = h.group.next_deadline_ms().unwrap();
    assert_eq!(
        deadline,
        h.now + 30_000,
        "the rebalance timeout of the join"
    );
    h.now = deadline;
    h.send(&beat_request("a", a.epoch, Some(&parts(&[(1, &[0, 1])]))));
    h.tick();
    assert!(h.group.member_state("a").is_none(), "a is fenced");
    h.step(&mut b);
    h.step(&mut b);
    assert_eq!(count(&b.owned), 2);
    let resp = h.send(&beat_request("a", a.epoch, None));
    assert_eq!(resp.error_code, code(ResponseError::UnknownMemberId));
    h.assert_replay_equivalent();
}

#[test]
fn given_wrong_member_epochs_when_heartbeating_should_answer_fenced_member_epoch() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let mut a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    for _ in 0..3 {
        h.step(&mut a);
        h.step(&mut b);
    }
    assert_eq!(a.epoch, 2);
    // ahead of the coordinator
    let resp = h.send(&beat_request("a", 3, None));
    assert_eq!(resp.error_code, code(ResponseError::FencedMemberEpoch));
    // behind, and not the previous epoch
    let resp = h.send(&beat_request("a", 1, None));
    assert_eq!(
        resp.error_code,
        code(ResponseError::FencedMemberEpoch),
        "the previous epoch without owned partitions"
    );
    // the previous epoch with a subset of the assignment is accepted (a lost answer)
    let resp = h.send(&beat_request("a", 1, Some(&a.owned)));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, 2);
    // an unknown member
    let resp = h.send(&beat_request("zz", 2, None));
    assert_eq!(resp.error_code, code(ResponseError::UnknownMemberId));
    // a fenced member rejoins with epoch 0 and the same id (KAFKA-19233)
    let resp = h.send(&join_request("a", &["orders"]));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, 2);
    assert_eq!(assignment_of(&resp), Some(a.owned.clone()));
}

#[test]
fn given_a_static_member_when_it_leaves_with_minus_two_and_rejoins_should_keep_its_assignment() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let resp = h.send(&join_request("s1", &["orders"]).with_instance_id(Some(sb("instance-1"))));
    let mut s = Client {
        id: "s1".into(),
        epoch: resp.member_epoch,
        owned: assignment_of(&resp).unwrap(),
    };
    let mut d = h.join("d", &["orders"]);
    for _ in 0..3 {
        h.step(&mut s);
        h.step(&mut d);
    }
    let kept = s.owned.clone();
    assert_eq!(count(&kept), 2);
    let epoch = h.group.group_epoch();

    let resp = h.send(
        &beat_request("s1", s.epoch, None)
            .with_member_epoch(-2)
            .with_instance_id(Some(sb("instance-1"))),
    );
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, -2);
    assert_eq!(h.group.group_epoch(), epoch, "no rebalance");
    // d keeps beating and gains nothing
    h.step(&mut d);
    assert_eq!(count(&d.owned), 2);

    // The instance comes back under a new member id.
    let resp = h.send(&join_request("s2", &["orders"]).with_instance_id(Some(sb("instance-1"))));
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    assert_eq!(assignment_of(&resp), Some(kept));
    assert_eq!(resp.member_epoch, epoch);
    assert_eq!(h.group.group_epoch(), epoch, "still no rebalance");
    let ids: Vec<String> = h.group.members().into_iter().map(|m| m.member_id).collect();
    assert_eq!(ids, vec!["d".to_string(), "s2".to_string()]);
    assert_eq!(h.group.state_name(), "Stable");
    h.assert_replay_equivalent();

    // Another process with the same instance id while s2 is active is refused.
    let resp = h.send(&join_request("s3", &["orders"]).with_instance_id(Some(sb("instance-1"))));
    assert_eq!(resp.error_code, code(ResponseError::UnreleasedInstanceId));
    // And the old member id is fenced by the new one.
    let resp = h.send(&beat_request("s1", 1, None).with_instance_id(Some(sb("instance-1"))));
    assert_eq!(resp.error_code, code(ResponseError::FencedInstanceId));
}

#[test]
fn given_a_static_member_when_it_rejoins_with_its_own_member_id_should_be_served_in_place() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let join = |m: &str| join_request(m, &["orders"]).with_instance_id(Some(sb("i")));
    let resp = h.send(&join("s"));
    assert_eq!(resp.member_epoch, 1);
    // the answer was lost: the same member joins again and gets its state back
    let resp = h.send(&join("s"));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, 1);
    assert_eq!(count(&assignment_of(&resp).unwrap()), 2);
    // after a temporary leave, the same member id comes back to its assignment
    h.send(
        &beat_request("s", 1, None)
            .with_member_epoch(-2)
            .with_instance_id(Some(sb("i"))),
    );
    let resp = h.send(&join("s"));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, 1);
    assert_eq!(count(&assignment_of(&resp).unwrap()), 2);
    assert_eq!(h.group.group_epoch(), 1);
    // a member may not take another instance id
    let resp = h.send(&join_request("s", &["orders"]).with_instance_id(Some(sb("j"))));
    assert_eq!(resp.error_code, code(ResponseError::InvalidRequest));
    h.assert_replay_equivalent();
}

#[test]
fn given_a_revoking_member_when_it_rejoins_with_epoch_zero_should_release_its_partitions() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let mut a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    h.step(&mut a); // a is told to revoke two partitions
    assert_eq!(
        h.group.member_state("a").unwrap().1,
        MemberState::UnrevokedPartitions
    );
    // a lost track and rejoins owning nothing: it is not fenced, and its revocation is done
    let resp = h.send(&join_request("a", &["orders"]));
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, 2);
    a.epoch = resp.member_epoch;
    a.owned = assignment_of(&resp).unwrap();
    h.step(&mut b);
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
    assert_disjoint(&[&a, &b]);
}

#[test]
fn given_a_static_member_that_left_when_its_session_expires_should_be_removed() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let resp = h.send(&join_request("s1", &["orders"]).with_instance_id(Some(sb("i"))));
    assert_eq!(resp.member_epoch, 1);
    let resp = h.send(
        &beat_request("s1", 1, None)
            .with_member_epoch(-2)
            .with_instance_id(Some(sb("i"))),
    );
    assert_eq!(resp.member_epoch, -2);
    h.now += h.session_ms();
    h.tick();
    assert!(h.group.is_empty());
    assert_eq!(h.group.state_name(), "Empty");
    h.assert_replay_equivalent();
}

#[test]
fn given_invalid_requests_when_heartbeating_should_answer_kafkas_errors() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let invalid = code(ResponseError::InvalidRequest);
    let cases: Vec<(ConsumerGroupHeartbeatRequest, i16, &str)> = vec![
        (join_request("", &["orders"]), invalid, "MemberId can't be empty."),
        (
            join_request("m", &["orders"]).with_group_id(GroupId(sb(" "))),
            invalid,
            "GroupId can't be empty.",
        ),
        (
            join_request("m", &["orders"]).with_instance_id(Some(sb(""))),
            invalid,
            "InstanceId can't be empty.",
        ),
        (
            join_request("m", &["orders"]).with_rack_id(Some(sb(" "))),
            invalid,
            "RackId can't be empty.",
        ),
        (
            join_request("m", &["orders"]).with_rebalance_timeout_ms(-1),
            invalid,
            "RebalanceTimeoutMs must be provided in first request.",
        ),
        (
            join_request("m", &["orders"]).with_topic_partitions(None),
            invalid,
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            join_request("m", &["orders"]).with_topic_partitions(Some(owned_list(&parts(&[(1, &[0])])))),
            invalid,
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            join_request("m", &["orders"]).with_subscribed_topic_names(None),
            invalid,
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
        ),
        (
            beat_request("m", -2, None),
            invalid,
            "InstanceId can't be null.",
        ),
        (beat_request("m", -3, None), invalid, "MemberEpoch is invalid."),
        (
            join_request("m", &["orders"]).with_server_assignor(Some(sb("sticky"))),
            code(ResponseError::UnsupportedAssignor),
            "ServerAssignor sticky is not supported. Supported assignors: uniform, range.",
        ),
        (
            join_request("m", &[]).with_subscribed_topic_regex(Some(sb("orders-("))),
            code(ResponseError::InvalidRegularExpression),
            "SubscribedTopicRegex `orders-(` is not a valid regular expression",
        ),
        (
            join_request(&"m".repeat(40_000), &["orders"]),
            invalid,
            "GroupId and MemberId must not be longer than 32767 bytes.",
        ),
        (
            beat_request("m", 3, None),
            code(ResponseError::GroupIdNotFound),
            "Consumer group analytics-service not found.",
        ),
    ];
    for (req, expected, message) in cases {
        let resp = h.send(&req);
        assert_eq!(resp.error_code, expected, "{message}");
        let got = resp
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string();
        assert!(got.starts_with(message), "{got} / {message}");
        assert!(h.log.is_empty());
    }
}

#[test]
fn given_version_zero_and_no_member_id_when_joining_should_generate_one() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let resp = h.send_version(0, &join_request("", &["orders"]));
    assert_eq!(resp.error_code, 0);
    let id = resp.member_id.as_deref().unwrap().to_string();
    assert_eq!(id.len(), 22);
    assert_eq!(h.group.members()[0].member_id, id);
    // version 0 still needs it afterwards
    let resp = h.send_version(0, &beat_request("", 1, None));
    assert_eq!(resp.error_code, code(ResponseError::InvalidRequest));
}

#[test]
fn given_a_full_group_when_a_new_member_joins_should_answer_group_max_size_reached() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    h.config.consumer_max_size = 1;
    h.join("a", &["orders"]);
    let resp = h.send(&join_request("b", &["orders"]));
    assert_eq!(resp.error_code, code(ResponseError::GroupMaxSizeReached));
    // the member already in the group is still served
    let resp = h.send(&join_request("a", &["orders"]));
    assert_eq!(resp.error_code, 0);
}

#[test]
fn given_a_regex_subscription_when_matching_topics_appear_should_assign_them() {
    let mut h = Harness::new(vec![
        topic("orders-eu", 1, 2),
        topic("orders-us", 2, 1),
        topic("payments", 3, 3),
        topic("__consumer_offsets", 9, 50),
    ]);
    let resp = h
        .send(&join_request("m", &[]).with_subscribed_topic_regex(Some(sb("(^orders-.*)|(__.*)"))));
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    let mut c = Client {
        id: "m".into(),
        epoch: resp.member_epoch,
        owned: assignment_of(&resp).unwrap(),
    };
    assert_eq!(c.owned, parts(&[(1, &[0, 1]), (2, &[0])]));
    assert_eq!(h.group.subscribed_topics(), vec!["orders-eu", "orders-us"]);

    // a new matching topic is noticed at the next refresh
    h.topics.0.push(topic("orders-apac", 4, 2));
    h.now += 1;
    h.step(&mut c);
    assert_eq!(count(&c.owned), 3, "not yet: refreshed every 10 s");
    h.now += REGEX_REFRESH_INTERVAL_MS;
    h.step(&mut c);
    assert_eq!(count(&c.owned), 5);
    h.assert_replay_equivalent();
}

#[test]
fn given_more_partitions_when_a_member_heartbeats_should_bump_the_epoch_and_assign_them() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let mut a = h.join("a", &["orders"]);
    assert_eq!(h.group.group_epoch(), 1);
    h.topics.0[0].partitions = 5;
    h.step(&mut a);
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(count(&a.owned), 5);
    h.assert_replay_equivalent();
}

#[test]
fn given_members_asking_for_range_when_assigning_should_use_range() {
    let mut h = Harness::new(vec![topic("x", 1, 4), topic("y", 2, 4)]);
    let range = |m: &str| join_request(m, &["x", "y"]).with_server_assignor(Some(sb("range")));
    h.send(&range("a"));
    h.send(&range("b"));
    let described = h.group.describe(&h.topics);
    assert_eq!(described.assignor_name.as_str(), "range");
    // co-partitioned: a gets 0,1 of both topics, b gets 2,3 of both
    assert_eq!(h.group.target_of("a"), parts(&[(1, &[0, 1]), (2, &[0, 1])]));
    assert_eq!(h.group.target_of("b"), parts(&[(1, &[2, 3]), (2, &[2, 3])]));
}

#[test]
fn given_members_when_committing_offsets_should_check_member_epochs() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    assert_eq!(h.group.validate_offset_commit("", -1), Ok(()));
    let a = h.join("a", &["orders"]);
    assert_eq!(h.group.validate_offset_commit("a", a.epoch), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("a", a.epoch - 1),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        h.group.validate_offset_commit("", -1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.group.validate_offset_commit("nobody", 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(h.group.validate_offset_fetch(Some("a"), a.epoch), Ok(()));
}

#[test]
fn given_a_group_when_described_should_show_members_and_assignments() {
    let mut h = Harness::new(vec![topic("orders", 1, 3)]);
    let req = join_request("a", &["orders"]).with_instance_id(Some(sb("i-a")));
    let (records, _) = h.group.heartbeat_with_client(
        1,
        &req,
        Some(ClientInfo {
            client_id: "rdkafka",
            client_host: "/127.0.0.1",
        }),
        &h.topics,
        &h.config,
        h.now,
    );
    h.log.extend(records);
    let d = h.group.describe(&h.topics);
    assert_eq!(d.group_id.0.as_str(), GROUP);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!((d.group_epoch, d.assignment_epoch), (1, 1));
    assert_eq!(d.assignor_name.as_str(), "uniform");
    let m = &d.members[0];
    assert_eq!(m.member_id.as_str(), "a");
    assert_eq!(m.instance_id.as_deref(), Some("i-a"));
    assert_eq!(m.client_id.as_str(), "rdkafka");
    assert_eq!(m.client_host.as_str(), "/127.0.0.1");
    assert_eq!(m.member_type, 1);
    assert_eq!(
        m.assignment.topic_partitions[0].topic_name.0.as_str(),
        "orders"
    );
    assert_eq!(m.assignment.topic_partitions[0].partitions, vec![0, 1, 2]);
    assert_eq!(m.target_assignment, m.assignment);
    let summary = &h.group.members()[0];
    assert_eq!(summary.assigned, vec![(tid(1), vec![0, 1, 2])]);
    assert_eq!(summary.subscribed_topic_names, vec!["orders".to_string()]);
}

#[test]
fn given_an_emptied_group_when_deleted_should_replay_to_dead() {
    let mut h = Harness::new(vec![topic("orders", 1, 2)]);
    let a = h.join("a", &["orders"]);
    h.send(&beat_request("a", a.epoch, None).with_member_epoch(-1));
    assert!(h.group.is_empty());
    let tombstones = h.group.delete_records();
    assert!(tombstones.iter().all(|r| r.is_tombstone()));
    for r in &tombstones {
        h.group.replay(r);
    }
    h.log.extend(tombstones);
    assert_eq!(h.group.state_name(), "Dead");
    assert_eq!(h.replayed().state_name(), "Dead");
    h.assert_replay_equivalent();
}

#[test]
fn given_a_replayed_group_when_ticked_should_give_every_member_a_new_session() {
    let mut h = Harness::new(vec![topic("orders", 1, 4)]);
    let mut a = h.join("a", &["orders"]);
    let mut b = h.join("b", &["orders"]);
    h.step(&mut a);
    let mut replayed = h.replayed();
    assert_eq!(replayed.next_deadline_ms(), Some(0));
    let records = replayed.tick(&h.config, h.now);
    assert!(records.is_empty());
    assert_eq!(
        replayed.next_deadline_ms(),
        Some(h.now + 30_000),
        "a is revoking: rebalance timeout"
    );
    // The replayed group carries on where the first left off.
    h.group = replayed;
    h.step(&mut a);
    h.step(&mut b);
    assert_disjoint(&[&a, &b]);
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Leave(usize),
    Beat(usize),
    Subscribe(usize, bool),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..4).prop_map(Op::Join),
        1 => (0usize..4).prop_map(Op::Leave),
        6 => (0usize..4).prop_map(Op::Beat),
        1 => ((0usize..4), any::<bool>()).prop_map(|(i, b)| Op::Subscribe(i, b)),
    ]
}

proptest! {
    // A fixed seed: the same cases on every run; failures are reported, not persisted.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(848),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// KIP-848's safety property: whatever members do, no partition is ever owned by two of
    /// them; once they all heartbeat enough, every partition is owned; and replaying the
    /// records rebuilds the same group.
    #[test]
    fn given_any_member_activity_should_never_assign_a_partition_twice(
        ops in proptest::collection::vec(arb_op(), 1..60),
        assignor in prop_oneof![Just("uniform"), Just("range")],
    ) {
        let mut h = Harness::new(vec![topic("x", 1, 5), topic("y", 2, 3)]);
        let mut clients: BTreeMap<usize, Client> = BTreeMap::new();
        for op in ops {
            h.now += 100;
            match op {
                Op::Join(i) => {
                    if clients.contains_key(&i) {
                        continue;
                    }
                    let id = format!("member-{i}");
                    let resp = h.send(&join_request(&id, &["x", "y"]).with_server_assignor(Some(sb(assignor))));
                    prop_assert_eq!(resp.error_code, 0);
                    clients.insert(i, Client { id, epoch: resp.member_epoch, owned: assignment_of(&resp).unwrap() });
                }
                Op::Leave(i) => {
                    if let Some(c) = clients.remove(&i) {
                        let resp = h.send(&beat_request(&c.id, c.epoch, None).with_member_epoch(-1));
                        prop_assert_eq!(resp.error_code, 0);
                    }
                }
                Op::Beat(i) => {
                    if let Some(c) = clients.get_mut(&i) {
                        h.step(c);
                    }
                }
                Op::Subscribe(i, both) => {
                    if let Some(c) = clients.get_mut(&i) {
                        let names: &[&str] = if both { &["x", "y"] } else { &["x"] };
                        let req = beat_request(&c.id, c.epoch, Some(&c.owned))
                            .with_subscribed_topic_names(Some(names.iter().map(|t| TopicName(sb(t))).collect()));
                        let resp = h.send(&req);
                        prop_assert_eq!(resp.error_code, 0);
                        c.epoch = resp.member_epoch;
                        if let Some(a) = assignment_of(&resp) {
                            c.owned = a;
                        }
                    }
                }
            }
            let all: Vec<&Client> = clients.values().collect();
            assert_disjoint(&all);
        }
        // Everyone heartbeats until the group settles.
        for _ in 0..6 {
            for c in clients.values_mut() {
                h.step(c);
            }
        }
        let all: Vec<&Client> = clients.values().collect();
        assert_disjoint(&all);
        if !clients.is_empty() {
            prop_assert_eq!(h.group.state_name(), "Stable");
            let subscribed_y = h.group.subscribed_topics().contains(&"y".to_string());
            let total: usize = clients.values().map(|c| count(&c.owned)).sum();
            prop_assert_eq!(total, if subscribed_y { 8 } else { 5 });
        }
        h.assert_replay_equivalent();
    }
}
