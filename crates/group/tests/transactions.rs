//! Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit writes pending offsets
//! as a transactional batch; the producer's marker commits or drops them; OffsetFetch with
//! `require_stable` answers UNSTABLE_OFFSET_COMMIT while they are pending; a restart
//! replays to the same state.

mod common;

use common::*;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use runnel_group::{GroupConfig, GroupRecord, GroupRequest, GroupResponse};

const PID: i64 = 4_000;

type Row = (String, i32, i64, String, i16);

fn row(topic: &str, partition: i32, offset: i64, error: i16) -> Row {
    (topic.to_string(), partition, offset, String::new(), error)
}

fn orders0(h: &mut Harness, group: &str) -> Row {
    h.fetch(group, Some(&[("orders", &[0])])).remove(0)
}

fn orders0_stable(h: &mut Harness, group: &str) -> Row {
    h.fetch_stable(group, Some(&[("orders", &[0])])).remove(0)
}

#[test]
fn given_a_txn_offset_commit_should_write_a_transactional_batch_of_the_producer() {
    let mut h = Harness::new();
    let out = h.shard.handle(
        1,
        runnel_group::ShardRequest {
            version: 3,
            body: GroupRequest::TxnOffsetCommit(
                TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(sb("t")))
                    .with_group_id(gid("g"))
                    .with_producer_id(ProducerId(PID))
                    .with_producer_epoch(3)
                    .with_topics(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                            .with_name(tname("orders"))
                            .with_partitions(vec![
                                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(42)
                                    .with_committed_leader_epoch(5)
                                    .with_committed_metadata(Some(sb("m"))),
                            ]),
                    ]),
            ),
        },
        &h.topics,
        h.now,
    );
    assert!(out.records.is_empty(), "{:?}", out.records);
    let txn = out.txn_records.expect("a transactional batch");
    assert_eq!((txn.producer_id, txn.producer_epoch), (PID, 3));
    match txn.records.as_slice() {
        [GroupRecord::OffsetCommit {
            group,
            topic,
            partition: 0,
            value: Some(v),
        }] => {
            assert_eq!((group.as_str(), topic.as_str()), ("g", "orders"));
            assert_eq!(
                (v.offset, v.leader_epoch, v.metadata.as_str()),
                (42, 5, "m")
            );
            assert_eq!(v.commit_timestamp, h.now);
            assert_eq!(v.expire_timestamp, None);
        }
        other => panic!("{other:?}"),
    }
    match out.responses.as_slice() {
        [(1, GroupResponse::TxnOffsetCommit(r))] => {
            assert_eq!(Harness::txn_codes(r), vec![0]);
            assert_encodes(&GroupResponse::TxnOffsetCommit(r.clone()), 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn given_a_txn_offset_commit_when_the_commit_marker_is_written_should_make_the_offset_visible() {
    let mut h = Harness::new();
    let r = h.txn_commit(
        PID,
        "g",
        &[("orders", 0, 42, Some("m")), ("events", 1, 7, None)],
    );
    assert_eq!(Harness::txn_codes(&r), vec![0, 0]);
    assert_eq!(
        orders0(&mut h, "g"),
        row("orders", 0, -1, 0),
        "pending, not committed"
    );
    assert!(h.fetch("g", None).is_empty());
    assert_eq!(h.shard.pending_txn_offsets(PID).len(), 2);
    assert_eq!(h.shard.open_txn_producers(), vec![PID]);

    h.marker(PID, true);
    assert_eq!(
        h.fetch("g", None),
        vec![
            row("events", 1, 7, 0),
            ("orders".into(), 0, 42, "m".into(), 0)
        ]
    );
    assert!(h.shard.pending_txn_offsets(PID).is_empty());
    assert!(h.shard.open_txn_producers().is_empty());
    // The group is a simple group, as for a plain commit outside group management.
    assert_eq!(h.state("g"), "Empty");
}

#[test]
fn given_a_txn_offset_commit_when_the_abort_marker_is_written_should_keep_the_previous_offset() {
    let mut h = Harness::new();
    assert_eq!(
        Harness::commit_codes(&h.commit(8, "g", "", -1, &[("orders", 0, 10, None)])),
        vec![0]
    );
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.marker(PID, false);
    assert_eq!(orders0(&mut h, "g"), row("orders", 0, 10, 0));
    assert_eq!(orders0_stable(&mut h, "g"), row("orders", 0, 10, 0));
    assert!(h.shard.pending_txn_offsets(PID).is_empty());
}

#[test]
fn given_a_pending_txn_offset_when_fetched_with_require_stable_should_answer_unstable_offset_commit(
) {
    let mut h = Harness::new();
    h.commit(
        8,
        "g",
        "",
        -1,
        &[("orders", 0, 10, None), ("orders", 1, 11, None)],
    );
    h.txn_commit(PID, "g", &[("orders", 0, 42, None), ("events", 0, 5, None)]);

    // Partition level, offset -1; other partitions answer as usual.
    assert_eq!(
        h.fetch_stable("g", Some(&[("orders", &[0, 1]), ("events", &[0])])),
        vec![
            row("events", 0, -1, ResponseError::UnstableOffsetCommit.code()),
            row("orders", 0, -1, ResponseError::UnstableOffsetCommit.code()),
            row("orders", 1, 11, 0),
        ]
    );
    // All offsets: only partitions with a committed offset are listed (as Kafka).
    assert_eq!(
        h.fetch_stable("g", None),
        vec![
            row("orders", 0, -1, ResponseError::UnstableOffsetCommit.code()),
            row("orders", 1, 11, 0)
        ]
    );
    // Without require_stable: the last committed offset.
    assert_eq!(orders0(&mut h, "g"), row("orders", 0, 10, 0));
    // OffsetFetch v7 (single group): the error is at partition level too.
    let old = h.fetch_old(7, "g", Some(&[("orders", &[0])]));
    let mut req_stable = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_require_stable(true)
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(tname("orders"))
                .with_partition_indexes(vec![0]),
        ]));
    assert_eq!(old.topics[0].partitions[0].error_code, 0);
    let stable = match h.call(7, GroupRequest::OffsetFetch(req_stable.clone())) {
        GroupResponse::OffsetFetch(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(stable.error_code, 0);
    assert_eq!(
        stable.topics[0].partitions[0].error_code,
        ResponseError::UnstableOffsetCommit.code()
    );
    assert_eq!(stable.topics[0].partitions[0].committed_offset, -1);
    // Before v7 there is no require_stable.
    req_stable.require_stable = true;
    let v6 = match h.call(6, GroupRequest::OffsetFetch(req_stable)) {
        GroupResponse::OffsetFetch(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(v6.topics[0].partitions[0].committed_offset, 10);

    h.marker(PID, true);
    assert_eq!(orders0_stable(&mut h, "g"), row("orders", 0, 42, 0));
}

#[test]
fn given_a_plain_commit_after_a_txn_commit_when_the_marker_commits_should_keep_the_later_plain_commit(
) {
    let mut h = Harness::new();
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.commit(8, "g", "", -1, &[("orders", 0, 50, None)]);
    // The plain commit is committed at once; the partition is still unstable.
    assert_eq!(orders0(&mut h, "g"), row("orders", 0, 50, 0));
    assert_eq!(
        orders0_stable(&mut h, "g").4,
        ResponseError::UnstableOffsetCommit.code()
    );
    h.marker(PID, true);
    assert_eq!(orders0_stable(&mut h, "g"), row("orders", 0, 50, 0));
    assert_eq!(orders0(&mut h.restarted(), "g"), row("orders", 0, 50, 0));
}

#[test]
fn given_a_plain_commit_before_a_txn_commit_when_the_marker_commits_should_take_the_txn_offset() {
    let mut h = Harness::new();
    h.commit(8, "g", "", -1, &[("orders", 0, 50, None)]);
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.marker(PID, true);
    assert_eq!(orders0(&mut h, "g"), row("orders", 0, 42, 0));
}

#[test]
fn given_two_producers_when_the_later_commits_first_should_keep_the_latest_in_log_order() {
    let mut h = Harness::new();
    h.txn_commit(1, "g", &[("orders", 0, 5, None)]);
    h.txn_commit(2, "g", &[("orders", 0, 7, None)]);
    h.marker(2, true);
    // Producer 1 still pending: unstable.
    assert_eq!(
        orders0_stable(&mut h, "g").4,
        ResponseError::UnstableOffsetCommit.code()
    );
    h.marker(1, true);
    assert_eq!(orders0_stable(&mut h, "g"), row("orders", 0, 7, 0));
}

#[test]
fn given_a_marker_with_nothing_pending_should_change_nothing() {
    let mut h = Harness::new();
    h.commit(8, "g", "", -1, &[("orders", 0, 10, None)]);
    h.marker(99, true);
    h.marker(99, false);
    assert_eq!(orders0(&mut h, "g"), row("orders", 0, 10, 0));
}

#[test]
fn given_pending_txn_offsets_when_restarted_should_stay_pending_until_the_marker() {
    let mut h = Harness::new();
    h.commit(8, "g", "", -1, &[("orders", 0, 10, None)]);
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.txn_commit(PID + 1, "g", &[("orders", 1, 9, None)]);
    h.marker(PID + 1, false);
    let mut r = h.restarted();
    assert_eq!(
        r.shard.pending_txn_offsets(PID),
        h.shard.pending_txn_offsets(PID)
    );
    assert_eq!(r.shard.open_txn_producers(), vec![PID]);
    assert_eq!(
        orders0_stable(&mut r, "g").4,
        ResponseError::UnstableOffsetCommit.code()
    );
    assert_eq!(orders0(&mut r, "g"), row("orders", 0, 10, 0));
    r.marker(PID, true);
    assert_eq!(orders0_stable(&mut r, "g"), row("orders", 0, 42, 0));
    assert_eq!(r.fetch("g", Some(&[("orders", &[1])]))[0].2, -1);
    // And the marker replays too.
    assert_eq!(
        orders0_stable(&mut r.restarted(), "g"),
        row("orders", 0, 42, 0)
    );
}

// ---- validation ---------------------------------------------------------------------------

#[test]
fn given_txn_offset_commit_v3_should_check_member_and_generation_as_kafka() {
    let mut h = Harness::new();
    let (m, gen) = h.stable_group("g", None);
    let ok = h.txn_commit_as(3, PID, "g", &m, None, gen, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::txn_codes(&ok), vec![0]);
    let stale = h.txn_commit_as(3, PID, "g", &m, None, gen + 1, &[("orders", 0, 2, None)]);
    assert_eq!(
        Harness::txn_codes(&stale),
        vec![ResponseError::IllegalGeneration.code()]
    );
    let unknown = h.txn_commit_as(4, PID, "g", "who", None, gen, &[("orders", 0, 2, None)]);
    assert_eq!(
        Harness::txn_codes(&unknown),
        vec![ResponseError::UnknownMemberId.code()]
    );
    let no_member = h.txn_commit_as(3, PID, "g", "", None, gen, &[("orders", 0, 2, None)]);
    assert_eq!(
        Harness::txn_codes(&no_member),
        vec![ResponseError::UnknownMemberId.code()]
    );
    // Only the accepted commit is pending.
    let pending = h.shard.pending_txn_offsets(PID);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].3.offset, 1);
}

#[test]
fn given_txn_offset_commit_v3_with_a_fenced_static_member_should_answer_fenced_instance_id() {
    let mut h = Harness::new();
    let (m, gen) = h.stable_group("g", Some("i1"));
    let ok = h.txn_commit_as(3, PID, "g", &m, Some("i1"), gen, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::txn_codes(&ok), vec![0]);
    let fenced = h.txn_commit_as(
        3,
        PID,
        "g",
        "old",
        Some("i1"),
        gen,
        &[("orders", 0, 1, None)],
    );
    assert_eq!(
        Harness::txn_codes(&fenced),
        vec![ResponseError::FencedInstanceId.code()]
    );
    let unknown = h.txn_commit_as(3, PID, "g", &m, Some("i2"), gen, &[("orders", 0, 1, None)]);
    assert_eq!(
        Harness::txn_codes(&unknown),
        vec![ResponseError::UnknownMemberId.code()]
    );
}

#[test]
fn given_txn_offset_commit_v0_to_v2_should_be_accepted_by_a_classic_group_with_members() {
    // Those versions carry no member: Kafka accepts them whatever the group's state.
    for version in 0..=2 {
        let mut h = Harness::new();
        let (m, gen) = h.stable_group("g", None);
        // Member fields are ignored below v3 even if set.
        let r = h.txn_commit_as(
            version,
            PID,
            "g",
            &m,
            None,
            gen + 5,
            &[("orders", 0, 3, None)],
        );
        assert_eq!(Harness::txn_codes(&r), vec![0], "v{version}");
        let pending = h.shard.pending_txn_offsets(PID);
        let expected_epoch = if version >= 2 { 7 } else { -1 };
        assert_eq!(pending[0].3.leader_epoch, expected_epoch, "v{version}");
    }
}

#[test]
fn given_a_group_completing_a_rebalance_should_accept_a_txn_commit_but_not_a_plain_one() {
    let mut h = Harness::new();
    let (m, gen) = h.joined_group("g", None);
    let plain = h.commit(8, "g", &m, gen, &[("orders", 0, 1, None)]);
    assert_eq!(
        Harness::commit_codes(&plain),
        vec![ResponseError::RebalanceInProgress.code()]
    );
    let txn = h.txn_commit_as(3, PID, "g", &m, None, gen, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::txn_codes(&txn), vec![0]);
}

#[test]
fn given_an_unknown_group_and_a_generation_should_answer_illegal_generation_and_create_nothing() {
    let mut h = Harness::new();
    let r = h.txn_commit_as(3, PID, "nope", "m", None, 3, &[("orders", 0, 1, None)]);
    assert_eq!(
        Harness::txn_codes(&r),
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert!(h.list(5, &[], &[]).is_empty());
    assert!(h.entries.is_empty());
}

#[test]
fn given_a_kip848_group_should_check_member_epoch_and_answer_illegal_generation_when_stale() {
    let mut h = Harness::new();
    let member = "5mZL2ZwSRq6SPSQSQBhIhg";
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid("cg"))
        .with_member_id(sb(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![tname("orders")]))
        .with_topic_partitions(Some(vec![]));
    let epoch = match h.call(1, GroupRequest::ConsumerGroupHeartbeat(req)) {
        GroupResponse::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error_code, 0);
            r.member_epoch
        }
        other => panic!("{other:?}"),
    };
    let ok = h.txn_commit_as(4, PID, "cg", member, None, epoch, &[("orders", 0, 1, None)]);
    assert_eq!(Harness::txn_codes(&ok), vec![0]);
    let stale = h.txn_commit_as(
        4,
        PID,
        "cg",
        member,
        None,
        epoch - 1,
        &[("orders", 0, 1, None)],
    );
    assert_eq!(
        Harness::txn_codes(&stale),
        vec![ResponseError::IllegalGeneration.code()]
    );
    let unknown = h.txn_commit_as(4, PID, "cg", "who", None, epoch, &[("orders", 0, 1, None)]);
    assert_eq!(
        Harness::txn_codes(&unknown),
        vec![ResponseError::UnknownMemberId.code()]
    );
    // Without member fields, a consumer group with members refuses (Kafka).
    let v2 = h.txn_commit_as(2, PID, "cg", "", None, -1, &[("orders", 0, 1, None)]);
    assert_eq!(
        Harness::txn_codes(&v2),
        vec![ResponseError::UnknownMemberId.code()]
    );
}

#[test]
fn given_too_large_metadata_or_unknown_partitions_should_answer_per_partition() {
    let mut h = Harness::with_config(GroupConfig {
        offset_metadata_max_bytes: 4,
        ..GroupConfig::default()
    });
    let r = h.txn_commit(
        PID,
        "g",
        &[
            ("orders", 0, 1, Some("12345")),
            ("orders", 1, 2, Some("1234")),
            ("orders", 99, 3, None),
            ("nope", 0, 4, None),
        ],
    );
    assert_eq!(
        Harness::txn_codes(&r),
        vec![
            ResponseError::OffsetMetadataTooLarge.code(),
            0,
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let pending = h.shard.pending_txn_offsets(PID);
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].1.as_str(), pending[0].2), ("orders", 1));
}

#[test]
fn given_an_empty_group_id_should_answer_invalid_group_id() {
    let mut h = Harness::new();
    let r = h.txn_commit(PID, "", &[("orders", 0, 1, None), ("nope", 0, 1, None)]);
    assert_eq!(
        Harness::txn_codes(&r),
        vec![
            ResponseError::InvalidGroupId.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    assert!(h.entries.is_empty());
}

// ---- deletion and expiry --------------------------------------------------------------------

#[test]
fn given_pending_txn_offsets_when_the_group_is_deleted_should_tombstone_them_so_the_commit_marker_restores_nothing(
) {
    let mut h = Harness::new();
    h.commit(8, "g", "", -1, &[("orders", 0, 10, None)]);
    h.txn_commit(
        PID,
        "g",
        &[("orders", 0, 42, None), ("orders", 1, 43, None)],
    );
    let before = h.log.len();
    assert_eq!(h.delete_groups(&["g"]), vec![("g".to_string(), 0)]);
    // One tombstone per partition, committed or only pending, then the group's.
    let tombstones: Vec<(String, i32)> = h.log[before..]
        .iter()
        .filter_map(|r| match r {
            GroupRecord::OffsetCommit {
                topic,
                partition,
                value: None,
                ..
            } => Some((topic.clone(), *partition)),
            _ => None,
        })
        .collect();
    assert_eq!(
        tombstones,
        vec![("orders".to_string(), 0), ("orders".to_string(), 1)]
    );
    assert!(h.shard.pending_txn_offsets(PID).is_empty());
    h.marker(PID, true);
    assert!(h.fetch("g", None).is_empty());
    assert!(h.list(5, &[], &[]).is_empty());
    let mut r = h.restarted();
    assert!(r.fetch("g", None).is_empty());
    assert!(r.list(5, &[], &[]).is_empty());
}

#[test]
fn given_a_pending_txn_offset_should_delete_it_with_offset_delete() {
    let mut h = Harness::new();
    h.txn_commit(PID, "g", &[("orders", 2, 42, None)]);
    let req = OffsetDeleteRequest::default()
        .with_group_id(gid("g"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(tname("orders"))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(2)
            ])]);
    match h.call(0, GroupRequest::OffsetDelete(req)) {
        GroupResponse::OffsetDelete(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.log.last(),
        Some(GroupRecord::OffsetCommit {
            partition: 2,
            value: None,
            ..
        })
    ));
    assert_eq!(
        h.fetch_stable("g", Some(&[("orders", &[2])])),
        vec![row("orders", 2, -1, 0)]
    );
    h.marker(PID, true);
    assert_eq!(h.fetch("g", Some(&[("orders", &[2])]))[0].2, -1);
}

#[test]
fn given_an_expired_offset_with_a_pending_txn_offset_should_not_expire_it_nor_delete_the_group() {
    let config = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.commit(
        8,
        "g",
        "",
        -1,
        &[("orders", 0, 10, None), ("orders", 1, 11, None)],
    );
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.txn_commit(PID, "h", &[("orders", 0, 1, None)]);
    h.advance(120_000);
    // orders-1 expired; orders-0 is kept while the transaction is open, and so is the group.
    assert_eq!(h.fetch("g", None), vec![row("orders", 0, 10, 0)]);
    assert_eq!(
        h.list(5, &[], &[]).len(),
        2,
        "groups with open transactions stay"
    );
    h.marker(PID, true);
    assert_eq!(h.fetch("g", None), vec![row("orders", 0, 42, 0)]);
    assert_eq!(h.fetch("h", None), vec![row("orders", 0, 1, 0)]);
    // The committed offsets expire in their turn, then the groups go.
    h.advance(120_000);
    assert!(h.fetch("g", None).is_empty());
    assert!(h.list(5, &[], &[]).is_empty());
    let mut r = h.restarted();
    assert!(r.list(5, &[], &[]).is_empty());
}

#[test]
fn given_an_aborted_txn_on_a_new_group_should_leave_an_empty_simple_group_that_expires() {
    let config = GroupConfig {
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.txn_commit(PID, "g", &[("orders", 0, 42, None)]);
    h.marker(PID, false);
    assert!(h.fetch("g", None).is_empty());
    h.advance(20_000);
    assert!(h.list(5, &[], &[]).is_empty());
}
