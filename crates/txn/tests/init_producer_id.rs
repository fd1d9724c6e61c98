//! InitProducerId with a transactional id: new ids, epoch bumps, exhaustion, KIP-360
//! recovery and fencing a second producer with the same transactional id.

mod common;

use common::*;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};
use kafka_protocol::ResponseError;
use runnel_txn::{
    ProducerIdBlock, ShardRequest, TopicPartition, TransactionMetadata, TxnConfig, TxnRequest,
    TxnResponse, TxnResult, TxnState,
};

const NONE: i16 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Puts `tid` at `epoch`, as if many InitProducerIds had happened.
fn at_epoch(h: &mut Harness, tid: &str, producer_id: i64, epoch: i16) {
    let mut t = TransactionMetadata::new(tid, producer_id, 60_000, h.now);
    t.producer_epoch = epoch;
    h.seed(t);
}

#[test]
fn given_a_new_transactional_id_when_init_producer_id_should_allocate_an_id_at_epoch_0() {
    let mut h = Harness::default();
    assert_eq!(h.init("tx"), (FIRST_PRODUCER_ID, 0));
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::Empty);
    assert_eq!(t.timeout_ms, 60_000);
    assert_eq!(t.start_timestamp_ms, -1);
    assert_eq!(t.last_update_timestamp_ms, T0);
    assert_eq!(h.last_records.len(), 1);
    let v = h.last_records[0].value.clone().unwrap();
    assert_eq!(
        (v.version, v.producer_id, v.producer_epoch),
        (1, FIRST_PRODUCER_ID, 0)
    );
    assert_eq!(v.partitions, None, "Empty stores no partition list");
}

#[test]
fn given_a_known_transactional_id_when_init_again_should_bump_the_epoch_and_keep_the_id() {
    let mut h = Harness::default();
    let (id, _) = h.init("tx");
    h.now += 5;
    assert_eq!(h.init("tx"), (id, 1));
    assert_eq!(h.init("tx"), (id, 2));
    assert_eq!(h.txn("tx").last_update_timestamp_ms, T0 + 5);
}

#[test]
fn given_a_timeout_above_the_maximum_when_init_should_answer_invalid_transaction_timeout() {
    let mut h = Harness::new(TxnConfig {
        transaction_max_timeout_ms: 30_000,
        ..TxnConfig::default()
    });
    for timeout in [30_001, 0, -5] {
        let (c, id, epoch) = h.init_at(4, "tx", timeout, None);
        assert_eq!(c, code(ResponseError::InvalidTransactionTimeout));
        assert_eq!((id, epoch), (-1, -1));
    }
    assert!(h.log.is_empty());
    assert_eq!(h.init_at(4, "tx", 30_000, None).0, NONE);
}

#[test]
fn given_an_empty_transactional_id_or_half_an_identity_when_init_should_answer_invalid_request() {
    let mut h = Harness::default();
    assert_eq!(
        h.init_at(4, "", 1000, None).0,
        code(ResponseError::InvalidRequest)
    );
    assert_eq!(
        h.init_at(4, "tx", 1000, Some((5, -1))).0,
        code(ResponseError::InvalidRequest)
    );
    assert_eq!(
        h.init_at(4, "tx", 1000, Some((-1, 3))).0,
        code(ResponseError::InvalidRequest)
    );
    assert!(h.log.is_empty());
}

#[test]
fn given_no_producer_id_available_when_init_should_answer_coordinator_load_in_progress() {
    let mut h = Harness::default();
    h.ids = ProducerIdBlock { next: 9, end: 9 };
    assert_eq!(
        h.init_at(4, "tx", 1000, None).0,
        code(ResponseError::CoordinatorLoadInProgress)
    );
    assert!(h.shard.transaction("tx").is_none());
    assert!(h.log.is_empty());
    h.ids = ProducerIdBlock { next: 9, end: 10 };
    assert_eq!(h.init("tx"), (9, 0));
}

#[test]
fn given_no_transactional_id_when_init_should_hand_out_a_fresh_id_without_writing() {
    let mut h = Harness::default();
    let req = InitProducerIdRequest::default().with_transactional_id(None);
    let r = h.call(4, TxnRequest::InitProducerId(req));
    let TxnResponse::InitProducerId(r) = r else {
        panic!()
    };
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, FIRST_PRODUCER_ID, 0)
    );
    assert!(h.log.is_empty());
}

#[test]
fn given_an_exhausted_epoch_when_init_should_rotate_to_a_new_producer_id_at_epoch_0() {
    let mut h = Harness::default();
    at_epoch(&mut h, "tx", 77, i16::MAX - 1);
    let (id, epoch) = h.init("tx");
    assert_eq!((id, epoch), (FIRST_PRODUCER_ID, 0));
    let t = h.txn("tx");
    assert_eq!(t.previous_producer_id, 77);
    let v = h.last_records[0].value.clone().unwrap();
    assert_eq!(v.previous_producer_id, 77, "stored in tag 0");
}

#[test]
fn given_a_producer_recovering_with_its_id_and_epoch_when_init_should_bump_once_even_if_retried() {
    let mut h = Harness::default();
    let (id, e0) = h.init("tx");
    // KIP-360: the producer names its current identity.
    assert_eq!(
        h.init_at(5, "tx", 60_000, Some((id, e0))),
        (NONE, id, e0 + 1)
    );
    // Its answer was lost: the retry names the old epoch again and gets the same one.
    assert_eq!(
        h.init_at(5, "tx", 60_000, Some((id, e0))),
        (NONE, id, e0 + 1)
    );
    assert_eq!(h.txn("tx").producer_epoch, e0 + 1);
}

#[test]
fn given_a_stale_identity_when_init_with_it_should_fence_the_producer() {
    let mut h = Harness::default();
    let (id, e0) = h.init("tx");
    h.init("tx"); // another producer took the id: epoch 1, last epoch forgotten
    h.init("tx"); // epoch 2
    assert_eq!(
        h.init_at(4, "tx", 60_000, Some((id, e0))).0,
        code(ResponseError::ProducerFenced)
    );
    // Before v4 clients only know INVALID_PRODUCER_EPOCH.
    assert_eq!(
        h.init_at(3, "tx", 60_000, Some((id, e0))).0,
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        h.init_at(4, "tx", 60_000, Some((id + 100, 2))).0,
        code(ResponseError::ProducerFenced),
        "someone else's producer id"
    );
}

#[test]
fn given_a_retry_after_a_rotation_when_init_with_the_old_identity_should_be_accepted() {
    let mut h = Harness::default();
    at_epoch(&mut h, "tx", 77, i16::MAX - 1);
    let (c, id, epoch) = h.init_at(5, "tx", 60_000, Some((77, i16::MAX - 1)));
    assert_eq!((c, id, epoch), (NONE, FIRST_PRODUCER_ID, 0));
    assert_eq!(h.txn("tx").last_producer_epoch, i16::MAX - 1);
    // The same request again: the old id is the previous one and its epoch is exhausted.
    let (c, id2, epoch2) = h.init_at(5, "tx", 60_000, Some((77, i16::MAX - 1)));
    assert_eq!(c, NONE);
    assert_eq!((id2, epoch2), (id, epoch), "no second rotation");
}

#[test]
fn given_an_id_created_by_recovery_when_init_with_any_identity_should_start_at_epoch_0() {
    let mut h = Harness::default();
    // A producer whose transactional id expired names its old identity.
    assert_eq!(
        h.init_at(5, "tx", 60_000, Some((12, 4))),
        (NONE, FIRST_PRODUCER_ID, 0)
    );
}

#[test]
fn given_an_ongoing_transaction_when_a_second_producer_inits_should_abort_it_and_fence_the_first() {
    let mut h = Harness::default();
    let first = h.init("tx");
    assert_eq!(h.add("tx", first, &[("orders", &[0, 1])]), NONE);
    // A second producer with the same transactional id.
    let (c, _, _) = h.init_at(5, "tx", 60_000, None);
    assert_eq!(c, code(ResponseError::ConcurrentTransactions));
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::PrepareAbort);
    // Transaction version 2 cluster: fence bump, then the abort's bump.
    assert_eq!(t.producer_epoch, first.1 + 2);
    assert_eq!(h.markers.len(), 1);
    let m = h.markers[0].clone();
    assert_eq!(m.result, TxnResult::Abort);
    assert_eq!((m.producer_id, m.producer_epoch), (first.0, first.1 + 2));
    assert_eq!(m.coordinator_epoch, COORDINATOR_EPOCH);
    assert_eq!(m.partitions.len(), 2);
    // The first producer is fenced everywhere at the coordinator.
    assert_eq!(
        h.add("tx", first, &[("orders", &[2])]),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.end("tx", first, true),
        code(ResponseError::ProducerFenced)
    );
    // The second producer keeps retrying while markers are written.
    assert_eq!(
        h.init_at(5, "tx", 60_000, None).0,
        code(ResponseError::ConcurrentTransactions)
    );
    h.write_markers();
    assert_eq!(h.txn("tx").state, TxnState::CompleteAbort);
    let second = h.init("tx");
    assert_eq!(second, (first.0, first.1 + 3));
    assert_eq!(
        h.end("tx", first, false),
        code(ResponseError::ProducerFenced)
    );
}

#[test]
fn given_a_transaction_version_1_cluster_when_fencing_should_bump_the_epoch_once() {
    let mut h = Harness::new(TxnConfig {
        transaction_version: 1,
        ..TxnConfig::default()
    });
    let first = h.init("tx");
    h.add("tx", first, &[("orders", &[0])]);
    h.init_at(4, "tx", 60_000, None);
    assert_eq!(h.txn("tx").producer_epoch, first.1 + 1);
    assert_eq!(h.txn("tx").client_transaction_version, 0);
    h.write_markers();
    assert_eq!(h.init("tx"), (first.0, first.1 + 2));
}

#[test]
fn given_markers_being_written_when_init_should_answer_concurrent_transactions() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.add("tx", p, &[("orders", &[0])]);
    assert_eq!(h.end("tx", p, true), NONE);
    let before = h.log.len();
    assert_eq!(
        h.init_at(5, "tx", 60_000, None).0,
        code(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(h.log.len(), before, "nothing written");
}

#[test]
fn given_a_new_timeout_when_init_should_store_it() {
    let mut h = Harness::default();
    h.init("tx");
    h.init_at(5, "tx", 5_000, None);
    assert_eq!(h.txn("tx").timeout_ms, 5_000);
}

#[test]
fn given_an_idempotent_request_without_ids_when_none_left_should_answer_load_in_progress() {
    let mut h = Harness::default();
    let mut none = || None::<i64>;
    let out = h.shard.handle(
        1,
        ShardRequest {
            version: 4,
            body: TxnRequest::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1)),
            ),
        },
        &h.topics,
        &mut none,
        h.now,
    );
    let TxnResponse::InitProducerId(r) = &out.responses[0].1 else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::CoordinatorLoadInProgress));
}

#[test]
fn given_an_ongoing_transaction_at_the_last_epoch_when_fenced_should_not_overflow_and_then_rotate()
{
    let mut h = Harness::default();
    let mut t = TransactionMetadata::new("tx", 77, 60_000, h.now);
    t.producer_epoch = i16::MAX - 1;
    t.state = TxnState::Ongoing;
    t.start_timestamp_ms = h.now;
    t.partitions.insert(TopicPartition::new("orders", 0));
    h.seed(t);
    assert_eq!(
        h.init_at(5, "tx", 60_000, None).0,
        code(ResponseError::ConcurrentTransactions)
    );
    assert_eq!(
        h.txn("tx").producer_epoch,
        i16::MAX,
        "saturates at the reserved epoch"
    );
    assert_eq!(h.markers[0].producer_epoch, i16::MAX);
    h.write_markers();
    assert_eq!(h.init("tx"), (FIRST_PRODUCER_ID, 0));
}
