//! The shard around KIP-848 consumer groups: routing, group-type conflicts and conversions,
//! offsets with member epochs, administration and replay.

mod common;

use common::*;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use runnel_group::{GroupRecord, GroupRequest, GroupResponse};

const GROUP_ID_NOT_FOUND: i16 = 69;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const NON_EMPTY_GROUP: i16 = 68;
const STALE_MEMBER_EPOCH: i16 = 113;
const UNKNOWN_MEMBER_ID: i16 = 25;
const UNSUPPORTED_VERSION: i16 = 35;

fn heartbeat(
    h: &mut Harness,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ConsumerGroupHeartbeatResponse {
    let mut req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(sb(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    if let Some(t) = topics {
        req.subscribed_topic_names = Some(t.iter().map(|t| tname(t)).collect());
        req.topic_partitions = Some(vec![]);
    }
    match h.call(1, GroupRequest::ConsumerGroupHeartbeat(req)) {
        GroupResponse::ConsumerGroupHeartbeat(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A consumer group "cg" with one member; returns (member id, epoch).
fn consumer_group(h: &mut Harness) -> (String, i32) {
    let member = "5mZL2ZwSRq6SPSQSQBhIhg";
    let r = heartbeat(h, "cg", member, 0, Some(&["orders"]));
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    (member.to_string(), r.member_epoch)
}

#[test]
fn given_consumer_group_heartbeat_should_create_a_consumer_group_listed_with_its_type() {
    let mut h = Harness::new();
    let (_m, epoch) = consumer_group(&mut h);
    assert!(epoch > 0);
    assert!(h.log.iter().all(|r| matches!(r, GroupRecord::Consumer(_))));
    let listed = h.list(5, &[], &["consumer"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "cg");
    assert_eq!(listed[0].1, "consumer");
    assert_eq!(listed[0].3, "consumer");
    assert!(h.list(5, &[], &["classic"]).is_empty());
    let state = listed[0].2.to_lowercase();
    assert_eq!(
        h.list(5, &[&state], &[]).len(),
        1,
        "state filter matches the consumer group's state"
    );
    // DescribeGroups describes classic groups only.
    let d = h.describe(5, &["cg"]);
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
    let d = h.describe(6, &["cg"]);
    assert_eq!(d.groups[0].error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(
        d.groups[0].error_message.as_deref().map(|s| s.to_string()),
        Some("Group cg is not a classic group.".into())
    );
    // ConsumerGroupDescribe does.
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("cg"), gid("nope")]);
    let GroupResponse::ConsumerGroupDescribe(r) =
        h.call(0, GroupRequest::ConsumerGroupDescribe(req))
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].members.len(), 1);
    assert_eq!(r.groups[0].members[0].client_host.as_str(), "/10.0.0.1");
    assert_eq!(r.groups[1].error_code, GROUP_ID_NOT_FOUND);
}

#[test]
fn given_classic_group_with_members_when_consumer_heartbeat_should_answer_group_id_not_found() {
    let mut h = Harness::new();
    let _j = h.join_dynamic("g", "c", &["orders"]);
    let r = heartbeat(&mut h, "g", "m1", 0, Some(&["orders"]));
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g")]);
    let GroupResponse::ConsumerGroupDescribe(r) =
        h.call(0, GroupRequest::ConsumerGroupDescribe(req))
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, GROUP_ID_NOT_FOUND);
    // A heartbeat that is not a join, to no group at all.
    let r = heartbeat(&mut h, "none", "m1", 3, None);
    assert_eq!(r.error_code, GROUP_ID_NOT_FOUND);
}

#[test]
fn given_empty_classic_group_with_offsets_when_consumer_joins_should_convert_and_keep_offsets() {
    let mut h = Harness::new();
    h.commit(8, "g", "", -1, &[("orders", 0, 40, Some("kept"))]);
    let before = h.log.len();
    let r = heartbeat(&mut h, "g", "m1", 0, Some(&["orders"]));
    assert_eq!(r.error_code, 0);
    assert!(
        matches!(
            &h.log[before],
            GroupRecord::GroupMetadata { value: None, .. }
        ),
        "the classic group's tombstone first"
    );
    assert_eq!(
        h.fetch("g", None),
        vec![("orders".into(), 0, 40, "kept".into(), 0)]
    );
    assert_eq!(h.list(5, &[], &[])[0].3, "consumer");
    let mut r = h.restarted();
    assert_eq!(r.list(5, &[], &[])[0].3, "consumer");
    assert_eq!(r.fetch("g", None), h.fetch("g", None));
}

#[test]
fn given_consumer_group_when_classic_member_joins_should_refuse_unless_empty() {
    let mut h = Harness::new();
    let (m, epoch) = consumer_group(&mut h);
    let id = h.join(5, &Join::new("cg", "c", &["orders"]));
    assert_eq!(h.join_response(id).error_code, INCONSISTENT_GROUP_PROTOCOL);
    // The member leaves: the empty consumer group becomes a classic group on the next join.
    let r = heartbeat(&mut h, "cg", &m, -1, None);
    assert_eq!(r.error_code, 0);
    let _ = epoch;
    let id = h.join(5, &Join::new("cg", "c", &["orders"]));
    assert_eq!(
        h.join_response(id).error_code,
        79,
        "MEMBER_ID_REQUIRED: a classic group now"
    );
    assert_eq!(h.list(5, &[], &[])[0].3, "classic");
    let r = h.restarted().list(5, &[], &[]);
    assert_eq!(r[0].3, "classic");
}

#[test]
fn given_consumer_group_member_when_committing_should_check_its_member_epoch() {
    let mut h = Harness::new();
    let (m, epoch) = consumer_group(&mut h);
    let ok = h.commit(9, "cg", &m, epoch, &[("orders", 0, 5, None)]);
    assert_eq!(Harness::commit_codes(&ok), vec![0]);
    let stale = h.commit(9, "cg", &m, epoch - 1, &[("orders", 0, 6, None)]);
    assert_eq!(Harness::commit_codes(&stale), vec![STALE_MEMBER_EPOCH]);
    let unknown = h.commit(9, "cg", "ghost", epoch, &[("orders", 0, 6, None)]);
    assert_eq!(Harness::commit_codes(&unknown), vec![UNKNOWN_MEMBER_ID]);
    let old = h.commit(8, "cg", &m, epoch, &[("orders", 0, 6, None)]);
    assert_eq!(Harness::commit_codes(&old), vec![UNSUPPORTED_VERSION]);
    // OffsetFetch v9 with the member's id and epoch.
    let fetch = |h: &mut Harness, member: Option<&str>, epoch: i32| {
        let req =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid("cg"))
                .with_member_id(member.map(sb))
                .with_member_epoch(epoch)
                .with_topics(None)]);
        let GroupResponse::OffsetFetch(r) = h.call(9, GroupRequest::OffsetFetch(req)) else {
            panic!()
        };
        r.groups[0].clone()
    };
    let g = fetch(&mut h, Some(&m), epoch);
    assert_eq!(g.error_code, 0);
    assert_eq!(g.topics[0].partitions[0].committed_offset, 5);
    assert_eq!(
        fetch(&mut h, Some(&m), epoch + 7).error_code,
        STALE_MEMBER_EPOCH
    );
    assert_eq!(
        fetch(&mut h, None, -1).error_code,
        0,
        "an admin client's fetch"
    );
}

#[test]
fn given_consumer_group_should_be_deleted_only_when_empty_and_stay_deleted_after_restart() {
    let mut h = Harness::new();
    let (m, epoch) = consumer_group(&mut h);
    h.commit(9, "cg", &m, epoch, &[("orders", 1, 9, None)]);
    assert_eq!(
        h.delete_groups(&["cg"]),
        vec![("cg".into(), NON_EMPTY_GROUP)]
    );
    let restarted = h.restarted();
    drop(restarted);
    assert_eq!(heartbeat(&mut h, "cg", &m, -1, None).error_code, 0);
    let before = h.log.len();
    assert_eq!(h.delete_groups(&["cg"]), vec![("cg".into(), 0)]);
    assert!(matches!(
        &h.log[before],
        GroupRecord::OffsetCommit { value: None, .. }
    ));
    assert!(h.log[before + 1..]
        .iter()
        .all(|r| matches!(r, GroupRecord::Consumer(c) if c.is_tombstone())));
    assert!(h.list(5, &[], &[]).is_empty());
    let mut r = h.restarted();
    assert!(r.list(5, &[], &[]).is_empty());
    assert!(r.fetch("cg", None).is_empty());
}

#[test]
fn given_consumer_group_member_when_session_expires_after_a_restart_should_be_fenced() {
    let mut h = Harness::new();
    let (m, epoch) = consumer_group(&mut h);
    let mut r = h.restarted();
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("cg")]);
    let GroupResponse::ConsumerGroupDescribe(live) =
        h.call(0, GroupRequest::ConsumerGroupDescribe(req.clone()))
    else {
        panic!()
    };
    let GroupResponse::ConsumerGroupDescribe(back) =
        r.call(0, GroupRequest::ConsumerGroupDescribe(req.clone()))
    else {
        panic!()
    };
    assert_eq!(live, back);
    assert_eq!(heartbeat(&mut r, "cg", &m, epoch, None).error_code, 0);
    r.advance(46_000);
    let GroupResponse::ConsumerGroupDescribe(after) =
        r.call(0, GroupRequest::ConsumerGroupDescribe(req))
    else {
        panic!()
    };
    assert!(
        after.groups[0].members.is_empty(),
        "the silent member was fenced"
    );
}
