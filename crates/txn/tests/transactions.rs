//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and the marker round trip, for both
//! transaction protocol versions.

mod common;

use common::*;
use kafka_protocol::messages::AddPartitionsToTxnRequest;
use kafka_protocol::ResponseError;
use runnel_txn::{
    TopicPartition, TransactionMetadata, TxnRequest, TxnResponse, TxnResult, TxnState,
    OFFSETS_TOPIC,
};

const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn ongoing(h: &mut Harness, tid: &str) -> (i64, i16) {
    let p = h.init(tid);
    assert_eq!(
        h.add(tid, p, &[("orders", &[0, 1]), ("payments", &[1])]),
        NONE
    );
    p
}

#[test]
fn given_an_empty_transaction_when_partitions_are_added_should_start_it() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.now += 10;
    let codes = h.add_at(3, "tx", p, &[("orders", &[0, 1])]);
    assert_eq!(
        codes,
        vec![("orders".into(), 0, NONE), ("orders".into(), 1, NONE)]
    );
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::Ongoing);
    assert_eq!(t.start_timestamp_ms, T0 + 10);
    assert_eq!(t.partitions.len(), 2);
    let v = h.last_records[0].value.clone().unwrap();
    assert_eq!(v.state, TxnState::Ongoing);
    assert_eq!(v.start_timestamp_ms, T0 + 10);
}

#[test]
fn given_partitions_already_in_the_transaction_when_added_again_should_write_nothing() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    let before = h.log.len();
    h.now += 100;
    assert_eq!(h.add("tx", p, &[("orders", &[1])]), NONE);
    assert_eq!(h.log.len(), before);
    // A new partition extends the set and keeps the start time.
    assert_eq!(h.add("tx", p, &[("orders", &[3])]), NONE);
    let t = h.txn("tx");
    assert_eq!(t.partitions.len(), 4);
    assert_eq!(t.start_timestamp_ms, T0);
    assert_eq!(t.last_update_timestamp_ms, T0 + 100);
}

#[test]
fn given_an_unknown_partition_when_added_should_fail_the_request_and_attempt_nothing() {
    let mut h = Harness::default();
    let p = h.init("tx");
    let before = h.log.len();
    let codes = h.add_at(3, "tx", p, &[("orders", &[0, 9]), ("nope", &[0])]);
    assert_eq!(
        codes,
        vec![
            (
                "orders".into(),
                0,
                code(ResponseError::OperationNotAttempted)
            ),
            (
                "orders".into(),
                9,
                code(ResponseError::UnknownTopicOrPartition)
            ),
            (
                "nope".into(),
                0,
                code(ResponseError::UnknownTopicOrPartition)
            ),
        ]
    );
    assert_eq!(h.log.len(), before);
    assert_eq!(h.txn("tx").state, TxnState::Empty);
}

#[test]
fn given_a_wrong_identity_when_adding_should_answer_kafkas_error_codes() {
    let mut h = Harness::default();
    let (id, epoch) = h.init("tx");
    let parts: &[(&str, &[i32])] = &[("orders", &[0])];
    assert_eq!(
        h.add("unknown", (id, epoch), parts),
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("tx", (id + 1, epoch), parts),
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.add("tx", (id, epoch + 1), parts),
        code(ResponseError::ProducerFenced)
    );
    // AddPartitionsToTxn v1 predates PRODUCER_FENCED.
    assert_eq!(
        h.add_at(1, "tx", (id, epoch + 1), parts)[0].2,
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        h.add("", (id, epoch), parts),
        code(ResponseError::InvalidRequest)
    );
}

#[test]
fn given_a_transaction_being_committed_when_adding_should_answer_concurrent_transactions() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    assert_eq!(h.end("tx", p, true), NONE);
    assert_eq!(
        h.add("tx", p, &[("orders", &[2])]),
        code(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.add_offsets_at(3, "tx", p, "g"),
        code(ResponseError::ConcurrentTransactions)
    );
}

#[test]
fn given_a_batched_request_when_adding_for_several_transactions_should_answer_each() {
    let mut h = Harness::default();
    let a = h.init("a");
    let b = h.init("b");
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        batched("a", a.0, a.1, &[("orders", &[0])], false),
        batched("b", b.0, b.1 + 1, &[("orders", &[1])], false),
        batched("c", 1, 0, &[("nope", &[0])], false),
    ]);
    let TxnResponse::AddPartitionsToTxn(r) = h.call(4, TxnRequest::AddPartitionsToTxn(req)) else {
        panic!()
    };
    assert_eq!(r.error_code, NONE);
    let results: Vec<(String, Codes)> = r
        .results_by_transaction
        .iter()
        .map(|t| (t.transactional_id.0.to_string(), flatten(&t.topic_results)))
        .collect();
    assert_eq!(
        results,
        vec![
            ("a".into(), vec![("orders".into(), 0, NONE)]),
            (
                "b".into(),
                vec![("orders".into(), 1, code(ResponseError::ProducerFenced))]
            ),
            (
                "c".into(),
                vec![(
                    "nope".into(),
                    0,
                    code(ResponseError::UnknownTopicOrPartition)
                )]
            ),
        ]
    );
    assert_eq!(h.txn("a").state, TxnState::Ongoing);
    assert_eq!(h.txn("b").state, TxnState::Empty);
}

#[test]
fn given_verify_only_when_checking_partitions_should_answer_per_partition_without_writing() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.add("tx", p, &[("orders", &[0])]);
    let before = h.log.len();
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        batched("tx", p.0, p.1, &[("orders", &[0, 1])], true),
        batched("tx", p.0, p.1 + 1, &[("orders", &[0])], true),
        batched("other", p.0, p.1, &[("orders", &[0])], true),
    ]);
    let TxnResponse::AddPartitionsToTxn(r) = h.call(4, TxnRequest::AddPartitionsToTxn(req)) else {
        panic!()
    };
    let codes: Vec<Codes> = r
        .results_by_transaction
        .iter()
        .map(|t| flatten(&t.topic_results))
        .collect();
    assert_eq!(
        codes,
        vec![
            vec![
                ("orders".into(), 0, NONE),
                (
                    "orders".into(),
                    1,
                    code(ResponseError::TransactionAbortable)
                ),
            ],
            vec![("orders".into(), 0, code(ResponseError::ProducerFenced))],
            vec![(
                "orders".into(),
                0,
                code(ResponseError::InvalidProducerIdMapping)
            )],
        ]
    );
    assert_eq!(h.log.len(), before);
}

#[test]
fn given_add_partitions_v5_when_adding_should_record_transaction_version_2() {
    let mut h = Harness::default();
    let p = h.init("tx");
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![batched(
        "tx",
        p.0,
        p.1,
        &[("orders", &[0])],
        false,
    )]);
    h.call(5, TxnRequest::AddPartitionsToTxn(req));
    assert_eq!(h.txn("tx").client_transaction_version, 2);
    assert_eq!(
        h.last_records[0]
            .value
            .clone()
            .unwrap()
            .client_transaction_version,
        2
    );
}

#[test]
fn given_add_offsets_when_called_should_add_the_groups_consumer_offsets_partition() {
    let mut h = Harness::default();
    let p = h.init("tx");
    assert_eq!(h.add_offsets_at(3, "tx", p, "my-group"), NONE);
    let expected = runnel_group::partition_for_group("my-group", 50);
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::Ongoing);
    assert!(t
        .partitions
        .contains(&TopicPartition::new(OFFSETS_TOPIC, expected)));
    assert_eq!(
        h.add_offsets_at(1, "tx", (p.0, p.1 + 1), "my-group"),
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        h.add_offsets_at(2, "tx", (p.0, p.1 + 1), "my-group"),
        code(ResponseError::ProducerFenced)
    );
}

#[test]
fn given_consumer_offsets_with_other_than_the_configured_partitions_should_add_the_groups_real_partition(
) {
    // The group coordinator places a group by the partitions __consumer_offsets has, not by
    // offsets.topic.num.partitions (changed after the topic was created): so must this.
    let mut h = Harness::default();
    h.topics.0.push(runnel_group::TopicInfo {
        name: OFFSETS_TOPIC.into(),
        topic_id: uuid::Uuid::from_u128(99),
        partitions: 7,
    });
    let p = h.init("tx");
    assert_eq!(h.add_offsets_at(3, "tx", p, "my-group"), NONE);
    let expected = runnel_group::partition_for_group("my-group", 7);
    assert_ne!(expected, runnel_group::partition_for_group("my-group", 50));
    assert!(h
        .txn("tx")
        .partitions
        .contains(&TopicPartition::new(OFFSETS_TOPIC, expected)));
}

#[test]
fn given_an_ongoing_transaction_when_committed_should_prepare_then_complete_after_markers() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    h.now += 50;
    assert_eq!(h.end_at(4, "tx", p, true), (NONE, -1, -1));
    assert_eq!(h.txn("tx").state, TxnState::PrepareCommit);
    assert_eq!(h.last_records.len(), 1);
    assert_eq!(
        h.last_records[0].value.clone().unwrap().state,
        TxnState::PrepareCommit
    );
    assert_eq!(h.markers.len(), 1);
    let m = h.markers[0].clone();
    assert_eq!(m.result, TxnResult::Commit);
    assert_eq!((m.producer_id, m.producer_epoch), p);
    assert_eq!(m.coordinator_epoch, COORDINATOR_EPOCH);
    assert_eq!(m.transaction_version, 0);
    assert_eq!(
        m.partitions,
        vec![
            TopicPartition::new("orders", 0),
            TopicPartition::new("orders", 1),
            TopicPartition::new("payments", 1),
        ]
    );
    h.now += 50;
    h.write_markers();
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::CompleteCommit);
    assert!(t.partitions.is_empty());
    assert_eq!(t.last_update_timestamp_ms, T0 + 100);
    assert_eq!(
        (t.producer_id, t.producer_epoch),
        p,
        "version 1 keeps the epoch"
    );
    let v = h.last_records[0].value.clone().unwrap();
    assert_eq!(v.state, TxnState::CompleteCommit);
    assert_eq!(
        v.partitions,
        Some(vec![]),
        "complete states store an empty list"
    );
}

#[test]
fn given_a_stale_markers_report_when_received_should_be_ignored() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    h.end("tx", p, false);
    let m = h.markers[0].clone();
    h.write_markers();
    let before = h.log.len();
    let out = h.shard.markers_written(
        &m.transactional_id,
        m.producer_id,
        m.producer_epoch,
        m.result,
        h.now,
    );
    assert!(out.is_empty());
    let out = h
        .shard
        .markers_written("unknown", m.producer_id, m.producer_epoch, m.result, h.now);
    assert!(out.is_empty());
    assert_eq!(h.log.len(), before);
}

#[test]
fn given_a_completed_commit_when_end_txn_is_retried_should_succeed_without_writing() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    h.end("tx", p, true);
    h.write_markers();
    let before = h.log.len();
    assert_eq!(h.end("tx", p, true), NONE);
    assert_eq!(h.end("tx", p, false), code(ResponseError::InvalidTxnState));
    assert_eq!(h.log.len(), before);
    assert!(h.markers.is_empty());
}

#[test]
fn given_markers_in_flight_when_end_txn_is_retried_should_answer_concurrent_or_invalid_state() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    h.end("tx", p, false);
    assert_eq!(
        h.end("tx", p, false),
        code(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(h.end("tx", p, true), code(ResponseError::InvalidTxnState));
}

#[test]
fn given_no_open_transaction_when_end_txn_v4_should_answer_invalid_txn_state() {
    let mut h = Harness::default();
    let p = h.init("tx");
    assert_eq!(h.end("tx", p, true), code(ResponseError::InvalidTxnState));
    assert_eq!(h.end("tx", p, false), code(ResponseError::InvalidTxnState));
}

#[test]
fn given_a_wrong_identity_when_ending_should_answer_kafkas_error_codes() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    assert_eq!(
        h.end("nope", p, true),
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("tx", (p.0 + 1, p.1), true),
        code(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("tx", (p.0, p.1 + 1), true),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end_at(1, "tx", (p.0, p.1 + 1), true).0,
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(h.end("", p, true), code(ResponseError::InvalidRequest));
    assert_eq!(h.txn("tx").state, TxnState::Ongoing);
}

#[test]
fn given_a_version_2_client_when_committing_should_bump_the_epoch_and_answer_it() {
    let mut h = Harness::default();
    let p = ongoing(&mut h, "tx");
    assert_eq!(h.end_at(5, "tx", p, true), (NONE, p.0, p.1 + 1));
    let t = h.txn("tx");
    assert_eq!(
        (t.state, t.producer_epoch),
        (TxnState::PrepareCommit, p.1 + 1)
    );
    assert_eq!(t.client_transaction_version, 2);
    let m = h.markers[0].clone();
    assert_eq!(m.producer_epoch, p.1 + 1, "markers carry the bumped epoch");
    assert_eq!(m.transaction_version, 2);
    // A retry while the markers are written.
    assert_eq!(
        h.end_at(5, "tx", p, true).0,
        code(ResponseError::ConcurrentTransactions)
    );
    h.write_markers();
    assert_eq!(h.txn("tx").producer_epoch, p.1 + 1);
    // A retry after completion: success, with the epoch to use next.
    assert_eq!(h.end_at(5, "tx", p, true), (NONE, p.0, p.1 + 1));
    assert_eq!(
        h.end_at(5, "tx", p, false).0,
        code(ResponseError::InvalidTxnState)
    );
    // The next transaction uses the bumped epoch.
    let next = (p.0, p.1 + 1);
    assert_eq!(h.add("tx", next, &[("orders", &[2])]), NONE);
    assert_eq!(h.end_at(5, "tx", next, false), (NONE, p.0, p.1 + 2));
}

#[test]
fn given_a_version_2_client_with_nothing_open_when_aborting_should_bump_and_complete_at_once() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.now += 7;
    assert_eq!(h.end_at(5, "tx", p, false), (NONE, p.0, p.1 + 1));
    let states: Vec<TxnState> = h
        .last_records
        .iter()
        .map(|r| r.value.clone().unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![TxnState::PrepareAbort, TxnState::CompleteAbort]
    );
    assert!(h.markers.is_empty(), "nothing to mark");
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::CompleteAbort);
    assert_eq!(t.start_timestamp_ms, T0 + 7);
    // Committing nothing is refused; the retry of the abort is not.
    let next = (p.0, p.1 + 1);
    assert_eq!(
        h.end_at(5, "tx", next, true).0,
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(h.end_at(5, "tx", p, false), (NONE, p.0, p.1 + 1));
    // An abort at the current epoch aborts (nothing) again.
    assert_eq!(h.end_at(5, "tx", next, false), (NONE, p.0, p.1 + 2));
}

#[test]
fn given_a_version_2_empty_transaction_when_a_retry_epoch_is_used_should_fence() {
    let mut h = Harness::default();
    h.init("tx");
    let p = h.init("tx"); // epoch 1
    assert_eq!(
        h.end_at(5, "tx", (p.0, p.1 - 1), false).0,
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end_at(5, "tx", p, true).0,
        code(ResponseError::InvalidTxnState)
    );
}

/// Puts an ongoing transaction at `epoch` in the log and the shard.
fn ongoing_at_epoch(h: &mut Harness, tid: &str, producer_id: i64, epoch: i16) {
    let mut t = TransactionMetadata::new(tid, producer_id, 60_000, h.now);
    t.producer_epoch = epoch;
    t.state = TxnState::Ongoing;
    t.start_timestamp_ms = h.now;
    t.partitions.insert(TopicPartition::new("orders", 0));
    h.seed(t);
}

#[test]
fn given_an_exhausted_epoch_when_a_version_2_client_commits_should_rotate_the_producer_id() {
    let mut h = Harness::default();
    let old = (77, i16::MAX - 1);
    ongoing_at_epoch(&mut h, "tx", old.0, old.1);
    let new_id = FIRST_PRODUCER_ID;
    assert_eq!(h.end_at(5, "tx", old, true), (NONE, new_id, 0));
    let t = h.txn("tx");
    assert_eq!((t.producer_id, t.producer_epoch), (77, i16::MAX));
    assert_eq!(t.next_producer_id, new_id);
    assert_eq!(
        h.last_records[0].value.clone().unwrap().next_producer_id,
        new_id,
        "stored in tag 1"
    );
    let m = h.markers[0].clone();
    assert_eq!((m.producer_id, m.producer_epoch), (77, i16::MAX));
    // The producer already moved on to the new id: not a fencing, just wait.
    assert_eq!(
        h.add("tx", (new_id, 0), &[("orders", &[1])]),
        code(ResponseError::ConcurrentTransactions)
    );
    h.write_markers();
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::CompleteCommit);
    assert_eq!((t.producer_id, t.producer_epoch), (new_id, 0));
    assert_eq!((t.previous_producer_id, t.next_producer_id), (77, -1));
    // A retry with the old identity learns the new one.
    assert_eq!(h.end_at(5, "tx", old, true), (NONE, new_id, 0));
    assert_eq!(h.add("tx", (new_id, 0), &[("orders", &[1])]), NONE);
}

#[test]
fn given_an_exhausted_epoch_and_no_producer_id_when_committing_should_ask_to_retry() {
    let mut h = Harness::default();
    ongoing_at_epoch(&mut h, "tx", 77, i16::MAX - 1);
    h.ids.end = h.ids.next;
    assert_eq!(
        h.end_at(5, "tx", (77, i16::MAX - 1), true).0,
        code(ResponseError::CoordinatorLoadInProgress)
    );
    assert_eq!(h.txn("tx").state, TxnState::Ongoing);
}
