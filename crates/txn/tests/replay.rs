//! Loading a partition: replay rebuilds the state the records describe, and transactions
//! caught between prepare and complete resume their markers.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use runnel_txn::{
    MarkerCommand, TransactionCoordinatorShard, TransactionMetadata, TxnConfig, TxnRecord,
    TxnResult, TxnState,
};

#[test]
fn given_a_prepared_commit_in_the_log_when_loaded_should_resend_its_markers() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.add("tx", p, &[("orders", &[0, 1])]);
    h.end("tx", p, true);
    let lost = h.markers.clone();
    // The coordinator moves before the markers are written.
    let mut shard = h.replayed();
    assert_eq!(
        shard.transaction("tx").unwrap().state,
        TxnState::PrepareCommit
    );
    let out = shard.loaded(h.now + 1);
    assert!(out.records.is_empty());
    assert_eq!(out.markers.len(), 1);
    let m = &out.markers[0];
    assert_eq!(
        m.coordinator_epoch,
        COORDINATOR_EPOCH + 1,
        "the new coordinator's epoch"
    );
    assert_eq!(
        MarkerCommand {
            coordinator_epoch: COORDINATOR_EPOCH,
            ..m.clone()
        },
        lost[0]
    );
    let out = shard.markers_written("tx", m.producer_id, m.producer_epoch, m.result, h.now + 2);
    assert_eq!(out.records.len(), 1);
    assert_eq!(
        shard.transaction("tx").unwrap().state,
        TxnState::CompleteCommit
    );
}

#[test]
fn given_a_prepared_abort_without_partitions_in_the_log_when_loaded_should_complete_it() {
    let mut h = Harness::default();
    let mut t = TransactionMetadata::new("tx", 9, 1_000, T0);
    t.producer_epoch = 3;
    t.state = TxnState::PrepareAbort;
    t.start_timestamp_ms = T0;
    t.client_transaction_version = 2;
    let (k, v) = TxnRecord {
        transactional_id: "tx".into(),
        value: Some(t.to_value(1)),
    }
    .encode();
    h.log.push((k, v));
    let mut shard = h.replayed();
    let out = shard.loaded(T0 + 5);
    assert!(out.markers.is_empty());
    assert_eq!(out.records.len(), 1);
    let done = shard.transaction("tx").unwrap();
    assert_eq!(done.state, TxnState::CompleteAbort);
    assert_eq!(done.last_update_timestamp_ms, T0 + 5);
}

#[test]
fn given_requests_before_loaded_when_handled_should_load_first() {
    let mut h = Harness::default();
    let p = h.init("tx");
    h.add("tx", p, &[("orders", &[0])]);
    h.end("tx", p, false);
    h.markers.clear();
    h.shard = h.replayed();
    // No `loaded` call: the first request runs it, and its output carries the markers.
    h.describe(&["tx"]);
    assert_eq!(h.markers.len(), 1);
    assert_eq!(h.markers[0].result, TxnResult::Abort);
}

#[test]
fn given_a_tombstone_or_a_dead_value_when_replayed_should_forget_the_id() {
    let mut shard = TransactionCoordinatorShard::new(0, 0, TxnConfig::default());
    let mut t = TransactionMetadata::new("tx", 9, 1_000, T0);
    t.producer_epoch = 0;
    let live = TxnRecord {
        transactional_id: "tx".into(),
        value: Some(t.to_value(1)),
    };
    shard.replay(&live).unwrap();
    assert!(shard.transaction("tx").is_some());
    shard
        .replay(&TxnRecord {
            transactional_id: "tx".into(),
            value: None,
        })
        .unwrap();
    assert!(shard.transaction("tx").is_none());
    shard.replay(&live).unwrap();
    t.state = TxnState::Dead;
    shard
        .replay(&TxnRecord {
            transactional_id: "tx".into(),
            value: Some(t.to_value(1)),
        })
        .unwrap();
    assert!(shard.transaction("tx").is_none());
}

#[test]
fn given_a_transaction_version_0_cluster_when_writing_should_use_value_version_0() {
    let mut h = Harness::new(TxnConfig {
        transaction_version: 0,
        ..TxnConfig::default()
    });
    let p = h.init("tx");
    h.add("tx", p, &[("orders", &[0])]);
    assert!(h
        .log
        .iter()
        .all(|(_, v)| v.as_ref().is_some_and(|v| v[..2] == [0, 0])));
}

// ---- replay equivalence ------------------------------------------------------------------

const IDS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Debug, Clone)]
enum Op {
    /// InitProducerId, naming the client's identity (KIP-360) or not.
    Init {
        tid: usize,
        recover: bool,
    },
    /// AddPartitionsToTxn v3 with the client's identity (or a stale epoch).
    Add {
        tid: usize,
        partition: i32,
        stale: bool,
    },
    AddOffsets {
        tid: usize,
        group: u8,
    },
    /// EndTxn v4 or (version 2) v5.
    End {
        tid: usize,
        commit: bool,
        v5: bool,
        stale: bool,
    },
    /// The runtime reports every pending marker written.
    WriteMarkers,
    /// Time passes (sweeps run).
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, any::<bool>()).prop_map(|(tid, recover)| Op::Init { tid, recover }),
        4 => (0..3usize, 0..4i32, proptest::bool::weighted(0.1))
            .prop_map(|(tid, partition, stale)| Op::Add { tid, partition, stale }),
        1 => (0..3usize, 0..5u8).prop_map(|(tid, group)| Op::AddOffsets { tid, group }),
        3 => (0..3usize, any::<bool>(), any::<bool>(), proptest::bool::weighted(0.1))
            .prop_map(|(tid, commit, v5, stale)| Op::End { tid, commit, v5, stale }),
        2 => Just(Op::WriteMarkers),
        2 => (1..40_000i64).prop_map(Op::Advance),
    ]
}

/// What replay must rebuild: everything but the last epoch (Kafka does not store it), and
/// at value version 0 the tagged fields too.
fn stored(t: &TransactionMetadata, value_version: i16) -> TransactionMetadata {
    let mut d = durable(t);
    if value_version == 0 {
        d.previous_producer_id = -1;
        d.next_producer_id = -1;
        d.client_transaction_version = 0;
    }
    d
}

fn sorted_markers(mut m: Vec<MarkerCommand>) -> Vec<MarkerCommand> {
    for c in &mut m {
        c.coordinator_epoch = 0;
    }
    m.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    m
}

fn run(transaction_version: i16, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(TxnConfig {
        transaction_version,
        transactional_id_expiration_ms: 120_000,
        remove_expired_transactional_ids_interval_ms: 30_000,
        ..TxnConfig::default()
    });
    // The identity each client holds.
    let mut clients: BTreeMap<usize, (i64, i16)> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Init { tid, recover } => {
                let expected = if recover {
                    clients.get(&tid).copied()
                } else {
                    None
                };
                let (code, id, epoch) = h.init_at(5, IDS[tid], 30_000, expected);
                if code == 0 {
                    clients.insert(tid, (id, epoch));
                }
            }
            Op::Add {
                tid,
                partition,
                stale,
            } => {
                let (id, epoch) = clients.get(&tid).copied().unwrap_or((1, 0));
                let epoch = if stale { epoch - 1 } else { epoch };
                h.add(IDS[tid], (id, epoch), &[("orders", &[partition])]);
            }
            Op::AddOffsets { tid, group } => {
                let p = clients.get(&tid).copied().unwrap_or((1, 0));
                h.add_offsets_at(3, IDS[tid], p, &format!("group-{group}"));
            }
            Op::End {
                tid,
                commit,
                v5,
                stale,
            } => {
                let (id, epoch) = clients.get(&tid).copied().unwrap_or((1, 0));
                let epoch = if stale { epoch - 1 } else { epoch };
                // Version-2 clients exist only on clusters at transaction version 2 (they
                // see the feature in ApiVersions); at value version 0 nothing records them.
                let v5 = v5 && transaction_version >= 1;
                let (code, id2, epoch2) =
                    h.end_at(if v5 { 5 } else { 4 }, IDS[tid], (id, epoch), commit);
                if code == 0 && v5 {
                    clients.insert(tid, (id2, epoch2));
                }
            }
            Op::WriteMarkers => h.write_markers(),
            Op::Advance(ms) => {
                let t = h.now + ms;
                h.advance_to(t);
            }
        }
        // Every transition the shard made is one Kafka allows, and every stored record
        // rebuilds exactly what the shard holds.
        let value_version = i16::from(transaction_version >= 1);
        let replayed = h.replayed();
        let live: Vec<TransactionMetadata> = h
            .shard
            .transactions()
            .map(|t| stored(t, value_version))
            .collect();
        let rebuilt: Vec<TransactionMetadata> = replayed
            .transactions()
            .map(|t| stored(t, value_version))
            .collect();
        prop_assert_eq!(live, rebuilt);
        // Markers outstanding are exactly those a reload resends.
        prop_assert_eq!(
            sorted_markers(h.markers.clone()),
            sorted_markers(replayed.pending_markers())
        );
        for t in h.shard.transactions() {
            prop_assert!(t.state != TxnState::Dead && t.state != TxnState::PrepareEpochFence);
            prop_assert!(t.producer_epoch >= 0);
            if t.state == TxnState::Ongoing || t.state.is_prepare() {
                prop_assert!(t.start_timestamp_ms >= T0);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn given_any_request_sequence_when_its_records_are_replayed_should_rebuild_the_same_state(
        transaction_version in 0..=2i16,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(transaction_version, ops)?;
    }
}
