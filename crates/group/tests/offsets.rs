//! Committed offsets and group administration: OffsetCommit checks, OffsetFetch,
//! OffsetDelete, DeleteGroups, ListGroups, DescribeGroups and offset expiration.

mod common;

use common::*;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest};
use runnel_group::{GroupConfig, GroupRecord, GroupRequest, GroupResponse};

const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// A stable one-member group "g" subscribed to "orders"; returns (member, generation).
fn stable_group(h: &mut Harness) -> (String, i32) {
    h.stable_group("g", None)
}

#[test]
fn given_simple_commit_to_unknown_group_should_create_an_empty_group_holding_offsets() {
    let mut h = Harness::new();
    let r = h.commit(
        8,
        "simple",
        "",
        -1,
        &[("orders", 0, 42, Some("meta")), ("events", 2, 7, None)],
    );
    assert_eq!(Harness::commit_codes(&r), vec![0, 0]);
    assert_eq!(
        h.fetch("simple", None),
        vec![
            ("events".into(), 2, 7, "".into(), 0),
            ("orders".into(), 0, 42, "meta".into(), 0)
        ]
    );
    assert_eq!(h.state("simple"), "Empty");
    assert_eq!(
        h.list(5, &[], &[]),
        vec![("simple".into(), "".into(), "Empty".into(), "classic".into())]
    );
    // Kafka's formats: offsets are records of key type 1, no group record for a simple group.
    assert!(h
        .log
        .iter()
        .all(|r| matches!(r, GroupRecord::OffsetCommit { .. })));
}

#[test]
fn given_commits_with_member_and_generation_should_check_them_as_kafka() {
    let mut h = Harness::new();
    let (m, gen) = stable_group(&mut h);
    let ok = h.commit(8, "g", &m, gen, &[("orders", 1, 100, Some("x"))]);
    assert_eq!(Harness::commit_codes(&ok), vec![0]);
    let stale = h.commit(8, "g", &m, gen - 1, &[("orders", 1, 101, None)]);
    assert_eq!(Harness::commit_codes(&stale), vec![ILLEGAL_GENERATION]);
    let unknown = h.commit(8, "g", "who", gen, &[("orders", 1, 101, None)]);
    assert_eq!(Harness::commit_codes(&unknown), vec![UNKNOWN_MEMBER_ID]);
    // A simple commit to a group with members is refused.
    let simple = h.commit(8, "g", "", -1, &[("orders", 1, 101, None)]);
    assert_eq!(Harness::commit_codes(&simple), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(h.fetch("g", Some(&[("orders", &[1])]))[0].2, 100);
    // Unknown group with a generation: ILLEGAL_GENERATION before v9, GROUP_ID_NOT_FOUND from v9.
    let r = h.commit(8, "nope", "m", 3, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::commit_codes(&r), vec![ILLEGAL_GENERATION]);
    let r = h.commit(9, "nope", "m", 3, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::commit_codes(&r), vec![GROUP_ID_NOT_FOUND]);
}

#[test]
fn given_group_completing_a_rebalance_when_member_commits_should_answer_rebalance_in_progress() {
    let mut h = Harness::new();
    let j = h.join_dynamic("g", "c", &["orders"]);
    h.advance(5_000);
    let r = h.join_response(j);
    let c = h.commit(
        7,
        "g",
        r.member_id.as_str(),
        r.generation_id,
        &[("orders", 0, 5, None)],
    );
    assert_eq!(Harness::commit_codes(&c), vec![REBALANCE_IN_PROGRESS]);
}

#[test]
fn given_commit_should_bound_metadata_per_partition_and_keep_it_exactly() {
    let mut h = Harness::with_config(GroupConfig {
        offset_metadata_max_bytes: 8,
        ..GroupConfig::default()
    });
    let r = h.commit(
        8,
        "g",
        "",
        -1,
        &[
            ("orders", 0, 1, Some("ünï😀")),
            ("orders", 1, 2, Some("123456789")),
            ("orders", 2, 3, Some("")),
        ],
    );
    assert_eq!(
        Harness::commit_codes(&r),
        vec![0, OFFSET_METADATA_TOO_LARGE, 0]
    );
    let rows = h.fetch("g", None);
    assert_eq!(
        rows,
        vec![
            ("orders".into(), 0, 1, "ünï😀".into(), 0),
            ("orders".into(), 2, 3, "".into(), 0)
        ]
    );
}

#[test]
fn given_commit_to_unknown_topic_or_partition_should_refuse_those_partitions_only() {
    let mut h = Harness::new();
    let r = h.commit(
        8,
        "g",
        "",
        -1,
        &[
            ("orders", 0, 1, None),
            ("orders", 99, 1, None),
            ("ghost", 0, 1, None),
        ],
    );
    assert_eq!(
        Harness::commit_codes(&r),
        vec![0, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]
    );
    // Only unknown partitions: no group is created and nothing is written.
    let mut h = Harness::new();
    let r = h.commit(8, "g2", "m", 5, &[("ghost", 0, 1, None)]);
    assert_eq!(Harness::commit_codes(&r), vec![UNKNOWN_TOPIC_OR_PARTITION]);
    assert!(h.log.is_empty());
}

#[test]
fn given_commit_v6_plus_should_keep_the_leader_epoch_and_commit_time() {
    let mut h = Harness::new();
    h.commit(6, "g", "", -1, &[("orders", 0, 10, None)]);
    let r = h.fetch_old(6, "g", Some(&[("orders", &[0])]));
    assert_eq!(r.topics[0].partitions[0].committed_leader_epoch, 7);
    match h.log.last() {
        Some(GroupRecord::OffsetCommit { value: Some(v), .. }) => {
            assert_eq!(v.commit_timestamp, h.now);
            assert_eq!(v.leader_epoch, 7);
            assert_eq!(v.expire_timestamp, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn given_offset_fetch_should_answer_all_one_and_unknown_as_kafka() {
    let mut h = Harness::new();
    h.commit(
        8,
        "g",
        "",
        -1,
        &[
            ("orders", 0, 10, Some("m0")),
            ("orders", 3, 13, None),
            ("events", 1, 21, None),
        ],
    );
    // All offsets (topics null), v2+.
    let r = h.fetch_old(5, "g", None);
    let all: Vec<(String, i32, i64)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(
        all,
        vec![
            ("events".into(), 1, 21),
            ("orders".into(), 0, 10),
            ("orders".into(), 3, 13)
        ]
    );
    assert_eq!(r.error_code, 0);
    // Named partitions, one unknown: offset -1, empty metadata, no error.
    let r = h.fetch_old(1, "g", Some(&[("orders", &[0, 1])]));
    let p = &r.topics[0].partitions;
    assert_eq!(
        (
            p[0].committed_offset,
            p[0].metadata.as_deref().map(|m| m.to_string())
        ),
        (10, Some("m0".into()))
    );
    assert_eq!((p[1].committed_offset, p[1].error_code), (-1, 0));
    assert_eq!(p[1].metadata.as_ref().map(|m| m.as_str()), Some(""));
    // Unknown group: -1 for named partitions, nothing for all.
    assert_eq!(
        h.fetch("nope", Some(&[("orders", &[0])])),
        vec![("orders".into(), 0, -1, "".into(), 0)]
    );
    assert!(h.fetch("nope", None).is_empty());
    // v8: several groups in one request, in order.
    h.commit(8, "h", "", -1, &[("audit", 0, 5, None)]);
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("h"))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(None),
    ]);
    let GroupResponse::OffsetFetch(r) = h.call(8, GroupRequest::OffsetFetch(req)) else {
        panic!()
    };
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].group_id.as_str(), "h");
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 5);
    assert_eq!(r.groups[1].topics.len(), 2);
}

fn offset_delete(h: &mut Harness, group: &str, topic: &str, partitions: &[i32]) -> (i16, Vec<i16>) {
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid(group))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(tname(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                    .collect(),
            )]);
    let GroupResponse::OffsetDelete(r) = h.call(0, GroupRequest::OffsetDelete(req)) else {
        panic!()
    };
    let codes = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    (r.error_code, codes)
}

#[test]
fn given_offset_delete_should_check_the_group_and_subscriptions_and_write_tombstones() {
    let mut h = Harness::new();
    assert_eq!(
        offset_delete(&mut h, "nope", "orders", &[0]).0,
        GROUP_ID_NOT_FOUND
    );
    let (m, gen) = stable_group(&mut h);
    h.commit(
        8,
        "g",
        &m,
        gen,
        &[("orders", 0, 1, None), ("events", 0, 2, None)],
    );
    // The consumer group is subscribed to orders, not to events.
    assert_eq!(
        offset_delete(&mut h, "g", "orders", &[0]),
        (0, vec![GROUP_SUBSCRIBED_TO_TOPIC])
    );
    let before = h.log.len();
    assert_eq!(
        offset_delete(&mut h, "g", "events", &[0, 1]),
        (0, vec![0, 0])
    );
    assert_eq!(
        h.log.len(),
        before + 1,
        "one tombstone: only partition 0 had an offset"
    );
    assert!(
        matches!(&h.log[before], GroupRecord::OffsetCommit { topic, partition: 0, value: None, .. } if topic == "events")
    );
    assert_eq!(
        h.fetch("g", None),
        vec![("orders".into(), 0, 1, "".into(), 0)]
    );
    assert_eq!(
        offset_delete(&mut h, "g", "ghost", &[0]),
        (0, vec![UNKNOWN_TOPIC_OR_PARTITION])
    );
    // A non-consumer protocol group with members refuses.
    let mut j = Join::new("connect", "w", &[]);
    j.protocol_type = "connect".into();
    let id = h.join(3, &j);
    h.advance(5_000);
    let r = h.join_response(id);
    let s = h.sync(3, "connect", r.member_id.as_str(), r.generation_id, &[]);
    h.sync_response(s);
    assert_eq!(
        offset_delete(&mut h, "connect", "orders", &[0]).0,
        NON_EMPTY_GROUP
    );
}

#[test]
fn given_delete_groups_should_refuse_non_empty_and_unknown_and_delete_empty_with_tombstones() {
    let mut h = Harness::new();
    let (m, gen) = stable_group(&mut h);
    h.commit(8, "g", &m, gen, &[("orders", 0, 1, None)]);
    h.commit(
        8,
        "empty",
        "",
        -1,
        &[("orders", 0, 1, None), ("events", 2, 3, None)],
    );
    let before = h.log.len();
    let r = h.delete_groups(&["g", "nope", "empty"]);
    assert_eq!(
        r,
        vec![
            ("g".into(), NON_EMPTY_GROUP),
            ("nope".into(), GROUP_ID_NOT_FOUND),
            ("empty".into(), 0)
        ]
    );
    let written: Vec<&GroupRecord> = h.log[before..].iter().collect();
    assert_eq!(written.len(), 3, "two offset tombstones and the group's");
    assert!(matches!(
        written[0],
        GroupRecord::OffsetCommit { value: None, .. }
    ));
    assert!(matches!(
        written[1],
        GroupRecord::OffsetCommit { value: None, .. }
    ));
    assert!(
        matches!(written[2], GroupRecord::GroupMetadata { group, value: None } if group == "empty")
    );
    assert!(h.fetch("empty", None).is_empty());
    assert_eq!(
        h.describe(5, &["empty"]).groups[0].group_state.as_str(),
        "Dead"
    );
    // After the member leaves the group is Empty and can be deleted.
    h.leave(3, "g", &[(&m, None)]);
    assert_eq!(h.delete_groups(&["g"]), vec![("g".into(), 0)]);
    assert!(h.fetch("g", None).is_empty());
    // And the deletion survives a restart.
    let mut r = h.restarted();
    assert!(r.fetch("g", None).is_empty());
    assert!(r.list(5, &[], &[]).is_empty());
}

#[test]
fn given_empty_group_when_retention_passes_should_expire_its_offsets_and_delete_it() {
    let config = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (m, gen) = stable_group(&mut h);
    h.commit(
        8,
        "g",
        &m,
        gen,
        &[("orders", 0, 1, None), ("events", 0, 5, None)],
    );
    // While the group has members, subscribed offsets do not expire: events (not
    // subscribed) expires 60 s after its commit; orders stays.
    for _ in 0..40 {
        h.advance(2_000);
        assert_eq!(h.heartbeat("g", &m, gen), 0);
    }
    assert_eq!(
        h.fetch("g", None),
        vec![("orders".into(), 0, 1, "".into(), 0)]
    );
    // The member leaves at t: the group is Empty; offsets go 60 s later.
    h.leave(3, "g", &[(&m, None)]);
    let emptied = h.now;
    h.advance_to(emptied + 59_000);
    assert_eq!(h.fetch("g", None).len(), 1);
    h.advance_to(emptied + 61_000);
    assert!(h.fetch("g", None).is_empty());
    assert_eq!(
        h.describe(5, &["g"]).groups[0].group_state.as_str(),
        "Dead",
        "the empty group is deleted"
    );
    assert!(matches!(
        h.log.last(),
        Some(GroupRecord::GroupMetadata { value: None, .. })
    ));
}

#[test]
fn given_standalone_commits_should_expire_by_commit_time() {
    let config = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.commit(8, "s", "", -1, &[("orders", 0, 1, None)]);
    h.advance(30_000);
    h.commit(8, "s", "", -1, &[("orders", 1, 2, None)]);
    h.advance(31_000);
    assert_eq!(
        h.fetch("s", None),
        vec![("orders".into(), 1, 2, "".into(), 0)]
    );
    h.advance(30_000);
    assert!(h.fetch("s", None).is_empty());
    // An explicit retention (OffsetCommit v2–v4) sets the expiry of that commit.
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("r"))
        .with_retention_time_ms(5_000)
        .with_topics(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(tname("orders"))
            .with_partitions(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(9)])]);
    h.call(2, GroupRequest::OffsetCommit(req));
    assert!(
        matches!(h.log.last(), Some(GroupRecord::OffsetCommit { value: Some(v), .. }) if v.expire_timestamp == Some(h.now + 5_000))
    );
    h.advance(4_000);
    assert_eq!(h.fetch("r", None).len(), 1);
    h.advance(2_000);
    assert!(h.fetch("r", None).is_empty());
}

#[test]
fn given_groups_in_several_states_should_list_and_filter_them() {
    let mut h = Harness::new();
    stable_group(&mut h);
    h.commit(8, "simple", "", -1, &[("orders", 0, 1, None)]);
    let _joining = h.join_dynamic("joining", "c", &["orders"]);
    let all = h.list(3, &[], &[]);
    assert_eq!(
        all,
        vec![
            (
                "g".into(),
                "consumer".into(),
                "Stable".into(),
                "classic".into()
            ),
            (
                "joining".into(),
                "consumer".into(),
                "PreparingRebalance".into(),
                "classic".into()
            ),
            ("simple".into(), "".into(), "Empty".into(), "classic".into()),
        ]
    );
    let stable = h.list(4, &["stable", " Empty "], &[]);
    assert_eq!(
        stable.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        vec!["g", "simple"]
    );
    assert_eq!(h.list(5, &[], &["Classic"]).len(), 3);
    assert!(h.list(5, &[], &["consumer"]).is_empty());
    assert!(h.list(5, &[], &["bogus"]).is_empty());
    // Filters are ignored by versions that do not have them.
    assert_eq!(h.list(3, &["stable"], &["consumer"]).len(), 3);
}

#[test]
fn given_describe_groups_should_print_states_and_errors_per_version() {
    let mut h = Harness::new();
    stable_group(&mut h);
    for v in 0..=6 {
        let r = h.describe(v, &["g", "nope"]);
        assert_eq!(r.groups[0].group_state.as_str(), "Stable");
        assert_eq!(r.groups[0].error_code, 0);
        assert_eq!(r.groups[1].group_state.as_str(), "Dead");
        if v >= 6 {
            assert_eq!(r.groups[1].error_code, GROUP_ID_NOT_FOUND);
            assert_eq!(
                r.groups[1].error_message.as_deref().map(|s| s.to_string()),
                Some("Group nope not found.".into())
            );
        } else {
            assert_eq!(r.groups[1].error_code, 0);
        }
    }
    let req = kafka_protocol::messages::DescribeGroupsRequest::default()
        .with_groups(vec![gid("g")])
        .with_include_authorized_operations(true);
    let GroupResponse::DescribeGroups(r) = h.call(5, GroupRequest::DescribeGroups(req)) else {
        panic!()
    };
    assert_eq!(
        r.groups[0].authorized_operations,
        (1 << 3) | (1 << 6) | (1 << 8)
    );
}

#[test]
fn given_commits_and_groups_when_restarted_should_answer_the_same() {
    let mut h = Harness::new();
    let (m, gen) = stable_group(&mut h);
    h.commit(
        8,
        "g",
        &m,
        gen,
        &[("orders", 0, 11, Some("meta-0")), ("orders", 5, 15, None)],
    );
    h.commit(8, "s", "", -1, &[("audit", 0, 3, Some("x"))]);
    let mut r = h.restarted();
    assert_eq!(r.fetch("g", None), h.fetch("g", None));
    assert_eq!(r.fetch("s", None), h.fetch("s", None));
    let live = h.describe(5, &["g", "s"]);
    let back = r.describe(5, &["g", "s"]);
    assert_eq!(live, back);
    // The loaded member keeps its generation and must heartbeat within its session.
    assert_eq!(r.heartbeat("g", &m, gen), 0);
    r.advance(10_001);
    assert_eq!(r.heartbeat("g", &m, gen), UNKNOWN_MEMBER_ID);
}
