//! The classic group protocol driven through the shard: joins, syncs, heartbeats, leaves,
//! expiries, static membership and fencing.

mod common;

use bytes::Bytes;
use common::*;
use runnel_group::{GroupConfig, GroupRecord, GroupRequest, GroupResponse};

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const FENCED_INSTANCE_ID: i16 = 82;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const INVALID_GROUP_ID: i16 = 24;
const GROUP_MAX_SIZE_REACHED: i16 = 81;

/// A formed group: members (id, instance) and its generation.
struct Formed {
    members: Vec<String>,
    leader: String,
    generation: i32,
}

fn assignment_for(member: &str) -> Bytes {
    Bytes::from(format!("assignment-of-{member}"))
}

/// Completes a rebalance whose JoinGroups are `joins`: every member gets its answer, the
/// leader syncs the assignments, then the followers sync.
fn finish_rebalance(h: &mut Harness, group: &str, joins: &[u64]) -> Formed {
    for id in joins {
        assert!(!h.is_waiting(*id), "JoinGroup {id} is answered");
    }
    let responses: Vec<_> = joins.iter().map(|id| h.join_response(*id)).collect();
    for r in &responses {
        assert_eq!(r.error_code, 0, "{r:?}");
    }
    let generation = responses[0].generation_id;
    let leader = responses[0].leader.to_string();
    let members: Vec<String> = responses.iter().map(|r| r.member_id.to_string()).collect();
    let leader_resp = responses
        .iter()
        .find(|r| r.member_id.as_str() == leader)
        .expect("the leader is a member");
    assert_eq!(
        leader_resp.members.len(),
        members.len(),
        "the leader sees every member"
    );
    let assignments: Vec<(&str, Bytes)> = members
        .iter()
        .map(|m| (m.as_str(), assignment_for(m)))
        .collect();
    let follower_syncs: Vec<(String, u64)> = members
        .iter()
        .filter(|m| **m != leader)
        .map(|m| (m.clone(), h.sync(5, group, m, generation, &[])))
        .collect();
    for (_, id) in &follower_syncs {
        assert!(
            h.is_waiting(*id),
            "followers wait for the leader's assignment"
        );
    }
    let records_before = h.log.len();
    let leader_sync = h.sync(5, group, &leader, generation, &assignments);
    assert!(
        matches!(
            h.log.get(records_before),
            Some(GroupRecord::GroupMetadata { .. })
        ),
        "the assignment is persisted with the answers"
    );
    let r = h.sync_response(leader_sync);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.assignment, assignment_for(&leader));
    for (m, id) in follower_syncs {
        let r = h.sync_response(id);
        assert_eq!(r.error_code, 0);
        assert_eq!(r.assignment, assignment_for(&m));
        assert_eq!(r.protocol_name.as_ref().map(|s| s.as_str()), Some("range"));
    }
    Formed {
        members,
        leader,
        generation,
    }
}

fn form_group(h: &mut Harness, group: &str, n: usize) -> Formed {
    let joins: Vec<u64> = (0..n)
        .map(|i| h.join_dynamic(group, &format!("client-{i}"), &["orders"]))
        .collect();
    h.advance(10_000);
    finish_rebalance(h, group, &joins)
}

#[test]
fn given_empty_group_when_two_members_join_should_answer_both_after_the_initial_delay() {
    let mut h = Harness::new();
    let a = h.join_dynamic("g", "client-a", &["orders"]);
    assert!(
        h.is_waiting(a),
        "the first join waits for the initial delay"
    );
    assert_eq!(h.state("g"), "PreparingRebalance");
    // The group exists in the log from its creation.
    assert!(
        matches!(&h.log[0], GroupRecord::GroupMetadata { group, value: Some(v) } if group == "g" && v.generation == 0)
    );
    h.advance(1_000);
    let b = h.join_dynamic("g", "client-b", &["orders", "events"]);
    h.advance_to(T0 + 2_999);
    assert!(h.is_waiting(a) && h.is_waiting(b));
    // The delay is extended once because a member joined during it.
    h.advance_to(T0 + 3_000);
    assert!(
        h.is_waiting(a) && h.is_waiting(b),
        "a new member extends the delay"
    );
    h.advance_to(T0 + 6_000);
    let ra = h.join_response(a);
    let rb = h.join_response(b);
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.generation_id, 1);
    assert_eq!(ra.generation_id, rb.generation_id);
    assert_eq!(ra.leader, rb.leader);
    assert_eq!(ra.protocol_name.as_ref().map(|s| s.as_str()), Some("range"));
    let (leader, follower) = if ra.leader == ra.member_id {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    assert_eq!(
        leader.members.len(),
        2,
        "the leader gets every member's metadata"
    );
    assert!(follower.members.is_empty());
    let b_meta = leader
        .members
        .iter()
        .find(|m| m.member_id == rb.member_id)
        .expect("b is listed");
    assert_eq!(b_meta.metadata, subscription(&["orders", "events"]));
    assert!(
        ra.member_id.starts_with("client-a-"),
        "member ids are client id + uuid"
    );
    assert_eq!(h.state("g"), "CompletingRebalance");
}

#[test]
fn given_joined_members_when_they_sync_should_get_the_leaders_assignment_and_stabilize() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 3);
    assert_eq!(h.state("g"), "Stable");
    let d = h.describe(5, &["g"]);
    let g = &d.groups[0];
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 3);
    for m in &g.members {
        assert_eq!(m.member_assignment, assignment_for(m.member_id.as_str()));
        assert_eq!(m.member_metadata, subscription(&["orders"]));
        assert_eq!(m.client_host.as_str(), "/10.0.0.1");
        assert!(m.client_id.as_str().starts_with("client-"));
    }
    for m in &f.members {
        assert_eq!(h.heartbeat("g", m, f.generation), 0);
    }
}

#[test]
fn given_leader_assigns_only_some_members_when_syncing_should_give_others_an_empty_assignment() {
    let mut h = Harness::new();
    let joins: Vec<u64> = (0..2)
        .map(|i| h.join_dynamic("g", &format!("c{i}"), &["orders"]))
        .collect();
    h.advance(10_000);
    let rs: Vec<_> = joins.iter().map(|id| h.join_response(*id)).collect();
    let leader = rs[0].leader.to_string();
    let follower = rs
        .iter()
        .find(|r| r.member_id.as_str() != leader)
        .unwrap()
        .member_id
        .to_string();
    let gen = rs[0].generation_id;
    let fs = h.sync(3, "g", &follower, gen, &[]);
    let ls = h.sync(
        3,
        "g",
        &leader,
        gen,
        &[(leader.as_str(), Bytes::from_static(b"all"))],
    );
    assert_eq!(h.sync_response(ls).assignment, Bytes::from_static(b"all"));
    let f = h.sync_response(fs);
    assert_eq!(f.error_code, 0);
    assert!(f.assignment.is_empty());
}

#[test]
fn given_stable_group_when_a_third_member_joins_should_rebalance_into_a_new_generation() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 2);
    let c = h.join_dynamic("g", "client-c", &["orders"]);
    assert!(h.is_waiting(c));
    assert_eq!(h.state("g"), "PreparingRebalance");
    for m in &f.members {
        assert_eq!(h.heartbeat("g", m, f.generation), REBALANCE_IN_PROGRESS);
    }
    // The old members rejoin; the rebalance completes as soon as everyone has joined.
    let rejoins: Vec<u64> = f
        .members
        .iter()
        .map(|m| h.join(5, &Join::new("g", "client", &["orders"]).member(m)))
        .collect();
    let mut all = rejoins.clone();
    all.push(c);
    let g2 = finish_rebalance(&mut h, "g", &all);
    assert_eq!(g2.generation, f.generation + 1);
    assert_eq!(g2.members.len(), 3);
    assert_eq!(
        h.heartbeat("g", &f.members[0], f.generation),
        ILLEGAL_GENERATION
    );
    assert_eq!(h.heartbeat("g", &f.members[0], g2.generation), 0);
}

#[test]
fn given_member_stops_heartbeating_when_session_expires_should_remove_it_and_rebalance() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 2);
    let (alive, dead) = (&f.members[0], &f.members[1]);
    // The live member heartbeats every 3 s; the other never again.
    for _ in 0..3 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", alive, f.generation), 0);
    }
    h.advance(1_500); // 10.5 s after the last sync: the silent member's session is over
    assert_eq!(h.heartbeat("g", alive, f.generation), REBALANCE_IN_PROGRESS);
    assert_eq!(h.heartbeat("g", dead, f.generation), UNKNOWN_MEMBER_ID);
    let rejoin = h.join(5, &Join::new("g", "client", &["orders"]).member(alive));
    // Everyone left has rejoined: the rebalance completes at once.
    let g2 = finish_rebalance(&mut h, "g", &[rejoin]);
    assert_eq!(g2.members, vec![alive.clone()]);
    assert_eq!(g2.generation, f.generation + 1);
}

#[test]
fn given_rebalance_when_a_member_does_not_rejoin_within_the_rebalance_timeout_should_remove_it() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 3);
    let leaver = f.members[0].clone();
    // A member changes its subscription: rebalance.
    let j = h.join(
        5,
        &Join::new("g", "client", &["orders", "events"]).member(&f.members[1]),
    );
    assert!(h.is_waiting(j));
    let k = h.join(
        5,
        &Join::new("g", "client", &["orders"]).member(&f.members[2]),
    );
    assert!(h.is_waiting(k));
    // The third keeps heartbeating (so its session lives) but never rejoins.
    for _ in 0..9 {
        h.advance(3_000);
        assert_eq!(
            h.heartbeat("g", &leaver, f.generation),
            REBALANCE_IN_PROGRESS
        );
        assert!(h.is_waiting(j));
    }
    h.advance(3_000); // 30 s: the rebalance timeout
    let g2 = finish_rebalance(&mut h, "g", &[j, k]);
    assert_eq!(g2.members.len(), 2);
    assert!(!g2.members.contains(&leaver));
    assert_eq!(h.heartbeat("g", &leaver, g2.generation), UNKNOWN_MEMBER_ID);
}

#[test]
fn given_leader_never_syncs_when_the_rebalance_timeout_passes_should_rebalance_without_it() {
    let mut h = Harness::new();
    let joins: Vec<u64> = (0..2)
        .map(|i| h.join_dynamic("g", &format!("c{i}"), &["orders"]))
        .collect();
    h.advance(10_000);
    let rs: Vec<_> = joins.iter().map(|id| h.join_response(*id)).collect();
    let gen = rs[0].generation_id;
    let leader = rs[0].leader.to_string();
    let follower = rs
        .iter()
        .find(|r| r.member_id.as_str() != leader)
        .unwrap()
        .member_id
        .to_string();
    let fs = h.sync(5, "g", &follower, gen, &[]);
    assert!(h.is_waiting(fs));
    // The leader heartbeats (so its session lives) but never sends its SyncGroup. The join
    // phase ended at T0 + 6 s (initial delay, extended once).
    for _ in 0..8 {
        h.advance(3_000);
        assert_eq!(h.heartbeat("g", &leader, gen), 0);
        assert!(h.is_waiting(fs));
    }
    h.advance_to(T0 + 36_000); // the rebalance timeout since the join phase ended
    assert_eq!(h.sync_response(fs).error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.state("g"), "PreparingRebalance");
    assert_eq!(h.heartbeat("g", &leader, gen), UNKNOWN_MEMBER_ID);
    let rejoin = h.join(5, &Join::new("g", "c1", &["orders"]).member(&follower));
    let g2 = finish_rebalance(&mut h, "g", &[rejoin]);
    assert_eq!(g2.leader, follower);
}

#[test]
fn given_leader_dies_before_syncing_when_its_session_expires_should_send_waiting_followers_back_to_join(
) {
    let mut h = Harness::new();
    let joins: Vec<u64> = (0..2)
        .map(|i| h.join_dynamic("g", &format!("c{i}"), &["orders"]))
        .collect();
    h.advance(10_000);
    let rs: Vec<_> = joins.iter().map(|id| h.join_response(*id)).collect();
    let leader = rs[0].leader.to_string();
    let follower = rs
        .iter()
        .find(|r| r.member_id.as_str() != leader)
        .unwrap()
        .member_id
        .to_string();
    let fs = h.sync(5, "g", &follower, rs[0].generation_id, &[]);
    h.advance(10_001);
    assert_eq!(h.sync_response(fs).error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.state("g"), "PreparingRebalance");
    let rejoin = h.join(5, &Join::new("g", "c1", &["orders"]).member(&follower));
    let g2 = finish_rebalance(&mut h, "g", &[rejoin]);
    assert_eq!(g2.leader, follower);
}

#[test]
fn given_static_member_when_it_restarts_with_a_new_member_id_should_keep_its_assignment_without_rebalance(
) {
    let mut h = Harness::new();
    let ja = h.join(
        5,
        &Join::new("g", "app", &["orders"]).instance("instance-a"),
    );
    let jb = h.join(
        5,
        &Join::new("g", "app", &["orders"]).instance("instance-b"),
    );
    h.advance(10_000);
    let f = finish_rebalance(&mut h, "g", &[ja, jb]);
    let old_a = f.members[0].clone();
    assert!(
        old_a.starts_with("instance-a-"),
        "static member ids start with the instance id"
    );
    // instance-a restarts: it knows no member id.
    let records_before = h.log.len();
    let j = h.join(
        5,
        &Join::new("g", "app", &["orders"]).instance("instance-a"),
    );
    let r = h.join_response(j);
    assert_eq!(r.error_code, 0);
    let new_a = r.member_id.to_string();
    assert_ne!(new_a, old_a);
    assert_eq!(r.generation_id, f.generation, "no new generation");
    assert_eq!(h.state("g"), "Stable");
    assert!(
        matches!(&h.log[records_before], GroupRecord::GroupMetadata { value: Some(v), .. }
            if v.members.iter().any(|m| m.member_id == new_a)),
        "the new member id is persisted"
    );
    // It syncs and gets the assignment the old member id had.
    let s = h.sync(5, "g", &new_a, f.generation, &[]);
    assert_eq!(h.sync_response(s).assignment, assignment_for(&old_a));
    assert_eq!(
        h.heartbeat_static("g", &new_a, Some("instance-a"), f.generation),
        0
    );
    assert_eq!(
        h.heartbeat("g", &f.members[1], f.generation),
        0,
        "the other member saw no rebalance"
    );
}

#[test]
fn given_replaced_static_member_when_the_old_member_id_calls_should_be_fenced() {
    let mut h = Harness::new();
    let ja = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-a"));
    h.advance(10_000);
    let f = finish_rebalance(&mut h, "g", &[ja]);
    let old = f.members[0].clone();
    let j = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-a"));
    let new = h.join_response(j).member_id.to_string();
    assert_eq!(
        h.heartbeat_static("g", &old, Some("i-a"), f.generation),
        FENCED_INSTANCE_ID
    );
    let s = h.send(
        5,
        GroupRequest::SyncGroup({
            let mut r = kafka_protocol::messages::SyncGroupRequest::default()
                .with_group_id(gid("g"))
                .with_generation_id(f.generation)
                .with_member_id(sb(&old))
                .with_protocol_type(Some(sb("consumer")))
                .with_protocol_name(Some(sb("range")));
            r.group_instance_id = Some(sb("i-a"));
            r
        }),
    );
    assert_eq!(h.sync_response(s).error_code, FENCED_INSTANCE_ID);
    let rejoin = h.join(
        5,
        &Join::new("g", "app", &["orders"])
            .instance("i-a")
            .member(&old),
    );
    assert_eq!(h.join_response(rejoin).error_code, FENCED_INSTANCE_ID);
    let leave = h.leave(3, "g", &[(&old, Some("i-a"))]);
    assert_eq!(leave.members[0].error_code, FENCED_INSTANCE_ID);
    assert_eq!(h.heartbeat_static("g", &new, Some("i-a"), f.generation), 0);
}

#[test]
fn given_static_member_waiting_in_a_rebalance_when_it_restarts_should_fence_the_old_join() {
    let mut h = Harness::new();
    let ja = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-a"));
    let jb = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-b"));
    let jc = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-c"));
    h.advance(10_000);
    let f = finish_rebalance(&mut h, "g", &[ja, jb, jc]);
    // b changes its subscription (rebalance), a's old incarnation rejoins, then a restarts;
    // c rejoins last.
    let b = h.join(
        5,
        &Join::new("g", "app", &["orders", "events"])
            .instance("i-b")
            .member(&f.members[1]),
    );
    let a_old = h.join(
        5,
        &Join::new("g", "app", &["orders"])
            .instance("i-a")
            .member(&f.members[0]),
    );
    assert!(h.is_waiting(a_old) && h.is_waiting(b));
    let a_new = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-a"));
    assert_eq!(h.join_response(a_old).error_code, FENCED_INSTANCE_ID);
    assert!(h.is_waiting(a_new));
    let c = h.join(
        5,
        &Join::new("g", "app", &["orders"])
            .instance("i-c")
            .member(&f.members[2]),
    );
    // Everyone has joined: the rebalance completes.
    assert_eq!(h.join_response(c).generation_id, f.generation + 1);
    let rb = h.join_response(b);
    let ra = h.join_response(a_new);
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.generation_id, f.generation + 1);
    assert_eq!(ra.generation_id, rb.generation_id);
}

#[test]
fn given_join_v4_without_member_id_should_require_one_then_accept_it() {
    let mut h = Harness::new();
    let first = h.join(4, &Join::new("g", "cli", &["orders"]));
    let r = h.join_response(first);
    assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
    assert!(r.member_id.as_str().starts_with("cli-"));
    assert_eq!(r.generation_id, -1);
    let second = h.join(
        4,
        &Join::new("g", "cli", &["orders"]).member(r.member_id.as_str()),
    );
    assert!(h.is_waiting(second));
    h.advance(5_000);
    let r2 = h.join_response(second);
    assert_eq!(r2.error_code, 0);
    assert_eq!(r2.member_id, r.member_id);
    // v3 and older have no MEMBER_ID_REQUIRED: the member is added at once.
    let old = h.join(3, &Join::new("g2", "old", &["orders"]));
    assert!(h.is_waiting(old));
    h.advance(5_000);
    assert_eq!(h.join_response(old).error_code, 0);
}

#[test]
fn given_pending_member_id_when_unused_for_a_session_timeout_should_be_forgotten() {
    let mut h = Harness::new();
    let first = h.join(5, &Join::new("g", "cli", &["orders"]));
    let member = h.join_response(first).member_id.to_string();
    h.advance(10_001);
    let late = h.join(5, &Join::new("g", "cli", &["orders"]).member(&member));
    assert_eq!(h.join_response(late).error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn given_three_members_when_two_leave_in_one_batch_should_answer_each_and_rebalance() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 3);
    let r = h.leave(
        5,
        "g",
        &[
            (&f.members[0], None),
            ("nobody", None),
            (&f.members[1], None),
        ],
    );
    assert_eq!(r.error_code, 0);
    let codes: Vec<(String, i16)> = r
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (f.members[0].clone(), 0),
            ("nobody".to_string(), UNKNOWN_MEMBER_ID),
            (f.members[1].clone(), 0)
        ]
    );
    assert_eq!(h.state("g"), "PreparingRebalance");
    let last = &f.members[2];
    assert_eq!(h.heartbeat("g", last, f.generation), REBALANCE_IN_PROGRESS);
    let rejoin = h.join(5, &Join::new("g", "c", &["orders"]).member(last));
    let g2 = finish_rebalance(&mut h, "g", &[rejoin]);
    assert_eq!(g2.members, vec![last.clone()]);
    // The last one leaves (v0: one member, top-level error): the group is Empty.
    let r = h.leave(0, "g", &[(last, None)]);
    assert_eq!(r.error_code, 0);
    assert_eq!(h.state("g"), "Empty");
    assert!(
        matches!(h.log.last(), Some(GroupRecord::GroupMetadata { value: Some(v), .. }) if v.members.is_empty())
    );
    let r = h.leave(1, "g", &[(last, None)]);
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    let r = h.leave(3, "nope", &[("x", None)]);
    assert_eq!(r.members[0].error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn given_static_member_when_admin_removes_it_by_instance_id_should_rebalance() {
    let mut h = Harness::new();
    let ja = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-a"));
    let jb = h.join(5, &Join::new("g", "app", &["orders"]).instance("i-b"));
    h.advance(10_000);
    let _f = finish_rebalance(&mut h, "g", &[ja, jb]);
    let r = h.leave(4, "g", &[("", Some("i-a")), ("", Some("i-zzz"))]);
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(r.members[1].error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(h.state("g"), "PreparingRebalance");
}

#[test]
fn given_invalid_joins_should_answer_kafkas_errors() {
    let mut h = Harness::with_config(GroupConfig {
        group_max_size: 2,
        ..GroupConfig::default()
    });
    let mut j = Join::new("g", "c", &["orders"]);
    j.session_timeout_ms = 1_000;
    let id = h.join(5, &j);
    assert_eq!(h.join_response(id).error_code, INVALID_SESSION_TIMEOUT);
    let id = h.join(5, &Join::new("", "c", &["orders"]));
    assert_eq!(h.join_response(id).error_code, INVALID_GROUP_ID);
    let too_long = "g".repeat(40_000);
    let id = h.join(6, &Join::new(&too_long, "c", &["orders"]));
    assert_eq!(
        h.join_response(id).error_code,
        INVALID_GROUP_ID,
        "a key holds at most 32767 bytes"
    );
    let id = h.join(5, &Join::new("nope", "c", &["orders"]).member("made-up"));
    assert_eq!(h.join_response(id).error_code, UNKNOWN_MEMBER_ID);
    let mut j = Join::new("g", "c", &["orders"]);
    j.protocols.clear();
    let id = h.join(5, &j);
    assert_eq!(h.join_response(id).error_code, INCONSISTENT_GROUP_PROTOCOL);

    let f = form_group(&mut h, "g", 2);
    let mut other = Join::new("g", "c", &["orders"]).member(&f.members[0]);
    other.protocols = vec![("roundrobin".into(), subscription(&["orders"]))];
    let id = h.join(3, &other);
    assert_eq!(h.join_response(id).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let mut other = Join::new("g", "c", &["orders"]).member(&f.members[1]);
    other.protocol_type = "connect".into();
    let id = h.join(3, &other);
    assert_eq!(h.join_response(id).error_code, INCONSISTENT_GROUP_PROTOCOL);
    // A third member does not fit.
    let id = h.join(3, &Join::new("g", "c", &["orders"]));
    assert_eq!(h.join_response(id).error_code, GROUP_MAX_SIZE_REACHED);
    assert_eq!(h.heartbeat("g", &f.members[0], f.generation), 0);
}

#[test]
fn given_members_with_several_protocols_should_select_the_one_all_support_by_votes() {
    let mut h = Harness::new();
    let mut a = Join::new("g", "a", &["orders"]);
    a.protocols = vec![
        ("cooperative-sticky".into(), subscription(&["orders"])),
        ("range".into(), subscription(&["orders"])),
    ];
    let mut b = a.clone();
    b.client = "b".into();
    b.protocols = vec![
        ("range".into(), subscription(&["orders"])),
        ("cooperative-sticky".into(), subscription(&["orders"])),
    ];
    let mut c = a.clone();
    c.client = "c".into();
    let ja = h.join(3, &a);
    let jb = h.join(3, &b);
    let jc = h.join(3, &c);
    h.advance(10_000);
    for id in [ja, jb, jc] {
        let r = h.join_response(id);
        assert_eq!(
            r.protocol_name.as_ref().map(|s| s.as_str()),
            Some("cooperative-sticky")
        );
    }
}

#[test]
fn given_sync_with_wrong_generation_or_protocol_should_be_refused() {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 1);
    let id = h.sync(3, "g", &f.members[0], f.generation + 5, &[]);
    assert_eq!(h.sync_response(id).error_code, ILLEGAL_GENERATION);
    let mut req = kafka_protocol::messages::SyncGroupRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id(f.generation)
        .with_member_id(sb(&f.members[0]));
    let id = h.send(5, GroupRequest::SyncGroup(req.clone()));
    assert_eq!(
        h.sync_response(id).error_code,
        INCONSISTENT_GROUP_PROTOCOL,
        "v5 needs both"
    );
    req.protocol_type = Some(sb("consumer"));
    req.protocol_name = Some(sb("roundrobin"));
    let id = h.send(5, GroupRequest::SyncGroup(req));
    assert_eq!(h.sync_response(id).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let id = h.sync(3, "nope", "x", 1, &[]);
    assert_eq!(h.sync_response(id).error_code, UNKNOWN_MEMBER_ID);
}

/// Cooperative-sticky: the broker passes metadata through; a member that revoked partitions
/// rejoins with new metadata, which starts a second rebalance that completes normally.
#[test]
fn given_cooperative_members_when_one_rejoins_after_revoking_should_complete_a_follow_up_rebalance()
{
    let mut h = Harness::new();
    let coop = |client: &str, owned: &str| {
        let mut j = Join::new("g", client, &["orders"]);
        j.protocols = vec![(
            "cooperative-sticky".into(),
            Bytes::from(format!(
                "{}|owned={owned}",
                String::from_utf8_lossy(&subscription(&["orders"]))
            )),
        )];
        j
    };
    let ja = h.join(3, &coop("a", ""));
    h.advance(10_000);
    let ra = h.join_response(ja);
    let a = ra.member_id.to_string();
    let s = h.sync(
        3,
        "g",
        &a,
        ra.generation_id,
        &[(&a, Bytes::from_static(b"0-5"))],
    );
    assert_eq!(h.sync_response(s).error_code, 0);
    // b joins: first rebalance; a revokes 3-5 and keeps 0-2.
    let jb = h.join(3, &coop("b", ""));
    let ja2 = h.join(3, &coop("a", "0-5").member(&a));
    let rb = h.join_response(jb);
    let ra2 = h.join_response(ja2);
    let b = rb.member_id.to_string();
    let leader_meta = if ra2.leader.as_str() == a { &ra2 } else { &rb };
    assert!(
        leader_meta
            .members
            .iter()
            .any(|m| m.metadata.ends_with(b"owned=0-5")),
        "metadata passes through unchanged"
    );
    let gen = ra2.generation_id;
    let sb_ = h.sync(3, "g", &b, gen, &[]);
    let sa = h.sync(
        3,
        "g",
        &a,
        gen,
        &[(&a, Bytes::from_static(b"0-2")), (&b, Bytes::new())],
    );
    assert_eq!(h.sync_response(sa).assignment, Bytes::from_static(b"0-2"));
    assert!(h.sync_response(sb_).assignment.is_empty());
    // a rejoins after revoking: second rebalance, b gets the revoked partitions.
    let ja3 = h.join(3, &coop("a", "0-2").member(&a));
    assert_eq!(h.heartbeat("g", &b, gen), REBALANCE_IN_PROGRESS);
    let jb3 = h.join(3, &coop("b", "").member(&b));
    let ra3 = h.join_response(ja3);
    let rb3 = h.join_response(jb3);
    assert_eq!(ra3.generation_id, gen + 1);
    assert_eq!(rb3.generation_id, gen + 1);
    let sb3 = h.sync(3, "g", &b, gen + 1, &[]);
    let sa3 = h.sync(
        3,
        "g",
        &a,
        gen + 1,
        &[
            (&a, Bytes::from_static(b"0-2")),
            (&b, Bytes::from_static(b"3-5")),
        ],
    );
    assert_eq!(h.sync_response(sa3).assignment, Bytes::from_static(b"0-2"));
    assert_eq!(h.sync_response(sb3).assignment, Bytes::from_static(b"3-5"));
}

#[test]
fn given_old_member_never_rejoins_when_a_new_member_waits_should_complete_with_the_new_member_as_leader(
) {
    let mut h = Harness::new();
    let f = form_group(&mut h, "g", 1);
    // A second member joins; the first one heartbeats (its session lives) but never rejoins.
    let j = h.join(3, &Join::new("g", "late", &["orders"]));
    let mut t = 0;
    while t < 29_000 {
        h.advance(3_000);
        t += 3_000;
        let _ = h.heartbeat("g", &f.members[0], f.generation);
    }
    h.advance(2_000);
    // After the rebalance timeout the old member is removed and the new one completes.
    let r = h.join_response(j);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.leader, r.member_id);
}

#[test]
fn given_unload_should_answer_every_waiting_request_with_not_coordinator() {
    let mut h = Harness::new();
    let a = h.join_dynamic("g", "a", &["orders"]);
    assert_eq!(h.shard.waiting_requests(), 1);
    let out = h.shard.unload();
    h.absorb(out);
    match h.take(a) {
        Some(GroupResponse::JoinGroup(r)) => assert_eq!(r.error_code, 16),
        other => panic!("{other:?}"),
    }
}

#[test]
fn given_join_responses_at_every_version_should_encode() {
    for version in 0..=9 {
        let mut h = Harness::new();
        let g = format!("g{version}");
        let mut j = Join::new(&g, "c", &["orders"]);
        if version >= 5 {
            j = j.instance("inst");
        }
        let mut id = h.join(version, &j);
        if version == 4 {
            let r = h.join_response(id);
            assert_eq!(r.error_code, MEMBER_ID_REQUIRED);
            id = h.join(version, &j.clone().member(r.member_id.as_str()));
        }
        h.advance(10_000);
        let r = h.join_response(id);
        assert_eq!(r.error_code, 0, "v{version}");
        if version < 7 {
            assert_eq!(r.protocol_name.as_ref().map(|s| s.as_str()), Some("range"));
        }
        let s = h.sync(
            version.min(5),
            &g,
            r.member_id.as_str(),
            r.generation_id,
            &[],
        );
        assert_eq!(h.sync_response(s).error_code, 0);
    }
}
