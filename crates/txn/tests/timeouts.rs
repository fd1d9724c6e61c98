//! Clock-driven work: aborting transactions open past their timeout, and expiring idle
//! transactional ids.

mod common;

use common::*;
use kafka_protocol::ResponseError;
use runnel_txn::{TxnConfig, TxnResult, TxnState};

const NONE: i16 = 0;
const MINUTE: i64 = 60_000;

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[test]
fn given_a_new_shard_when_loaded_should_schedule_both_sweeps() {
    let h = Harness::default();
    assert_eq!(h.shard.next_deadline_ms(), Some(T0 + 10_000));
}

#[test]
fn given_a_transaction_open_past_its_timeout_when_the_sweep_runs_should_abort_and_fence_it() {
    let mut h = Harness::default();
    let (code_, id, epoch) = h.init_at(5, "tx", 20_000, None);
    assert_eq!(code_, NONE);
    assert_eq!(h.add("tx", (id, epoch), &[("orders", &[0])]), NONE);
    // Not yet: the sweep at +10 s and +20 s finds start + timeout not below now.
    h.advance_to(T0 + 20_000);
    assert_eq!(h.txn("tx").state, TxnState::Ongoing);
    assert!(h.markers.is_empty());
    h.advance_to(T0 + 30_000);
    let t = h.txn("tx");
    assert_eq!(t.state, TxnState::PrepareAbort);
    assert_eq!(
        t.producer_epoch,
        epoch + 2,
        "fence bump, then the version-2 abort's"
    );
    assert_eq!(t.last_update_timestamp_ms, T0 + 30_000);
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.markers[0].result, TxnResult::Abort);
    assert_eq!(h.markers[0].producer_epoch, epoch + 2);
    h.write_markers();
    assert_eq!(h.txn("tx").state, TxnState::CompleteAbort);
    // The timed-out producer learns it was fenced.
    assert_eq!(
        h.end("tx", (id, epoch), true),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        h.add("tx", (id, epoch), &[("orders", &[0])]),
        code(ResponseError::ProducerFenced)
    );
    // KIP-360 recovery does not bring it back either.
    assert_eq!(
        h.init_at(5, "tx", 20_000, Some((id, epoch))).0,
        code(ResponseError::ProducerFenced)
    );
}

#[test]
fn given_a_version_1_cluster_when_a_transaction_times_out_should_bump_the_epoch_once() {
    let mut h = Harness::new(TxnConfig {
        transaction_version: 0,
        ..TxnConfig::default()
    });
    let (_, id, epoch) = h.init_at(4, "tx", 1_000, None);
    h.add("tx", (id, epoch), &[("orders", &[0])]);
    h.advance_to(T0 + 10_000);
    assert_eq!(h.txn("tx").producer_epoch, epoch + 1);
    assert_eq!(h.last_records[0].value.clone().unwrap().version, 0);
}

#[test]
fn given_transactions_that_are_not_open_when_the_sweep_runs_should_leave_them() {
    let mut h = Harness::default();
    let (_, id, epoch) = h.init_at(5, "idle", 1_000, None);
    let (_, id2, epoch2) = h.init_at(5, "preparing", 1_000, None);
    h.add("preparing", (id2, epoch2), &[("orders", &[0])]);
    h.end("preparing", (id2, epoch2), true);
    h.advance_to(T0 + 60_000);
    assert_eq!(h.txn("idle").state, TxnState::Empty);
    assert_eq!(h.txn("idle").producer_epoch, epoch);
    assert_eq!(h.txn("idle").producer_id, id);
    assert_eq!(h.txn("preparing").state, TxnState::PrepareCommit);
    assert_eq!(h.markers.len(), 1, "only the commit's markers");
}

#[test]
fn given_a_short_abort_interval_when_time_passes_should_abort_at_the_next_sweep() {
    let mut h = Harness::new(TxnConfig {
        abort_timed_out_transactions_interval_ms: 100,
        ..TxnConfig::default()
    });
    let (_, id, epoch) = h.init_at(5, "tx", 1_000, None);
    h.add("tx", (id, epoch), &[("orders", &[0])]);
    h.advance_to(T0 + 1_000);
    assert_eq!(h.txn("tx").state, TxnState::Ongoing);
    h.advance_to(T0 + 1_100);
    assert_eq!(h.txn("tx").state, TxnState::PrepareAbort);
}

#[test]
fn given_an_idle_transactional_id_when_past_expiration_should_write_a_tombstone() {
    let mut h = Harness::new(TxnConfig {
        transactional_id_expiration_ms: 10 * MINUTE,
        ..TxnConfig::default()
    });
    let p = h.init("idle");
    let q = h.init("busy");
    h.add("busy", q, &[("orders", &[0])]);
    let r = h.init("done");
    h.add("done", r, &[("orders", &[1])]);
    h.end("done", r, false);
    h.write_markers();
    // The first expiration sweep runs an hour after load.
    h.advance_to(T0 + 59 * MINUTE);
    assert!(h.shard.transaction("idle").is_some());
    h.advance_to(T0 + 60 * MINUTE);
    assert!(h.shard.transaction("idle").is_none());
    assert!(h.shard.transaction("done").is_none());
    // The open transaction timed out and was aborted instead; now it is idle, not expired.
    assert_eq!(h.txn("busy").state, TxnState::PrepareAbort);
    let tombstones: Vec<String> = h
        .last_records
        .iter()
        .filter(|r| r.value.is_none())
        .map(|r| r.transactional_id.clone())
        .collect();
    assert_eq!(tombstones, vec!["done".to_string(), "idle".to_string()]);
    // The expired id's producer is unknown now.
    assert_eq!(
        h.add("idle", p, &[("orders", &[0])]),
        code(ResponseError::InvalidProducerIdMapping)
    );
    // Replay forgets it too.
    let replayed = h.replayed();
    assert!(replayed.transaction("idle").is_none());
    assert!(replayed.transaction("busy").is_some());
}

#[test]
fn given_an_id_used_recently_when_the_expiration_sweep_runs_should_keep_it() {
    let mut h = Harness::new(TxnConfig {
        transactional_id_expiration_ms: 10 * MINUTE,
        ..TxnConfig::default()
    });
    h.init("tx");
    h.now = T0 + 55 * MINUTE;
    h.init("tx");
    h.advance_to(T0 + 60 * MINUTE);
    assert!(h.shard.transaction("tx").is_some());
    h.advance_to(T0 + 120 * MINUTE);
    assert!(h.shard.transaction("tx").is_none());
}
