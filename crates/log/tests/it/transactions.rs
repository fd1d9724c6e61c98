//! Transactions in the log (KIP-98): transactional batches open a transaction, markers close
//! it; the first unstable offset bounds what `read_committed` readers see; aborted
//! transactions are indexed for them, survive reopens (clean and crash) and are removed by
//! the cleaner without ever superseding a committed value.

use kafka_protocol::records::Compression as Codec;
use runnel_log::testing::{producer_batch, set_attribute_bits, set_producer, ATTR_TRANSACTIONAL};
use runnel_log::{AbortedTxn, CleanerOptions, LogConfig, LogError, PartitionLog};
use runnel_model::control::Marker;

use crate::common::*;

const MINUTE_MS: i64 = 60_000;

/// Small segments that roll after a minute, so the cleaner has closed segments to clean.
fn compacting_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_ms: MINUTE_MS,
        ..LogConfig::default()
    }
}

fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    let mut b = producer_batch(producer_id, epoch, sequence, records, T0_MS);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    b
}

fn send_txn(log: &PartitionLog, producer_id: i64, sequence: i32, records: usize) -> (i64, i64) {
    let mut b = txn_batch(producer_id, 0, sequence, records);
    let info = log.append(&mut b, 0, T0_MS).expect("transactional append");
    (info.base_offset, info.last_offset)
}

fn end_txn(log: &PartitionLog, producer_id: i64, commit: bool) -> i64 {
    let marker = Marker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    };
    log.append_marker(&marker, 0, T0_MS)
        .expect("marker")
        .base_offset
}

#[test]
fn given_open_transactions_should_bound_the_stable_offset_until_their_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    append(&log, 2); // 0..=1
    let (a_first, _) = send_txn(&log, 1, 0, 3); // 2..=4
    let (b_first, _) = send_txn(&log, 2, 0, 2); // 5..=6
    assert_eq!(log.first_unstable_offset(), Some(a_first));
    assert_eq!(log.ongoing_transactions(), vec![(a_first, 1), (b_first, 2)]);
    let abort_at = end_txn(&log, 1, false);
    assert_eq!(log.first_unstable_offset(), Some(b_first));
    let commit_at = end_txn(&log, 2, true);
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(
        log.aborted_transactions(0, log.log_end_offset()),
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: a_first,
            last_offset: abort_at,
            last_stable_offset: b_first,
        }]
    );
    assert!(log
        .aborted_transactions(abort_at + 1, commit_at + 1)
        .is_empty());
    assert!(log.aborted_transactions(0, a_first).is_empty());
}

#[test]
fn given_aborted_transaction_when_reopened_cleanly_or_after_crash_should_keep_index_and_open_transactions(
) {
    for crash in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(fs(), tmp.path(), small_config());
        let (first, _) = send_txn(&log, 1, 0, 2);
        let abort_at = end_txn(&log, 1, false);
        // Enough data to roll segments after the marker, then a transaction left open.
        for _ in 0..20 {
            append(&log, 4);
        }
        let (open_first, _) = send_txn(&log, 3, 0, 1);
        let expected = log.aborted_transactions(0, i64::MAX);
        assert_eq!(expected.len(), 1);
        if crash {
            log.flush().unwrap();
            drop(log); // no close: the next open recovers
        } else {
            log.close().unwrap();
        }
        let log = open(fs(), tmp.path(), small_config());
        assert_eq!(
            log.aborted_transactions(0, i64::MAX),
            expected,
            "crash={crash}"
        );
        assert_eq!(log.aborted_transactions(0, i64::MAX)[0].first_offset, first);
        assert_eq!(
            log.aborted_transactions(0, i64::MAX)[0].last_offset,
            abort_at
        );
        assert_eq!(
            log.first_unstable_offset(),
            Some(open_first),
            "crash={crash}"
        );
        // The open transaction can still be closed after the reopen.
        end_txn(&log, 3, true);
        assert_eq!(log.first_unstable_offset(), None);
    }
}

#[test]
fn given_open_transaction_when_producer_sends_plain_batch_should_refuse_with_invalid_txn_state() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    send_txn(&log, 1, 0, 1);
    let mut plain = producer_batch(1, 0, 1, 1, T0_MS);
    let err = log.append(&mut plain, 0, T0_MS).unwrap_err();
    assert!(
        matches!(err, LogError::InvalidTxnState { producer_id: 1 }),
        "{err:?}"
    );
}

#[test]
fn kip_890_given_marker_between_verification_and_append_should_refuse_to_open_a_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    // Verified, then appended: the transaction opens.
    let guard = log.start_txn_verification(1, T0_MS);
    let b = txn_batch(1, 0, 0, 2);
    log.append_shared(&b, 0, T0_MS, Some(guard))
        .expect("a verified append opens the transaction");
    assert_eq!(log.ongoing_transactions(), vec![(0, 1)]);
    // A second request of the same transaction continues it, whatever its guard.
    let stale = log.start_txn_verification(1, T0_MS);
    assert_eq!(end_txn(&log, 1, false), 2, "aborted (say, timed out)");
    let late = txn_batch(1, 0, 2, 1);
    // Verified before the abort, appended after: it would open a transaction nothing closes.
    let err = log.append_shared(&late, 0, T0_MS, Some(stale)).unwrap_err();
    assert!(
        matches!(err, LogError::InvalidTxnState { producer_id: 1 }),
        "{err:?}"
    );
    assert!(log.ongoing_transactions().is_empty(), "nothing written");
    assert_eq!(log.log_end_offset(), 3);
    // Verified again (the coordinator says the new transaction includes the partition): the
    // stale guard still does not open it, the fresh one does.
    let fresh = log.start_txn_verification(1, T0_MS);
    assert_ne!(fresh, stale);
    let err = log.append_shared(&late, 0, T0_MS, Some(stale)).unwrap_err();
    assert!(matches!(err, LogError::InvalidTxnState { .. }), "{err:?}");
    log.append_shared(&late, 0, T0_MS, Some(fresh))
        .expect("a fresh verification opens the next transaction");
    assert_eq!(log.ongoing_transactions(), vec![(3, 1)]);
}

#[test]
fn kip_890_given_a_record_set_opening_another_producers_transaction_should_refuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let guard = log.start_txn_verification(1, T0_MS);
    let mut set = txn_batch(1, 0, 0, 1);
    set.extend_from_slice(&txn_batch(2, 0, 0, 1));
    let err = log.append_shared(&set, 0, T0_MS, Some(guard)).unwrap_err();
    assert!(
        matches!(err, LogError::InvalidTxnState { producer_id: 2 }),
        "{err:?}"
    );
    assert_eq!(log.log_end_offset(), 0, "nothing written");
}

#[test]
fn kip_890_given_a_verification_older_than_a_minute_should_forget_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let old = log.start_txn_verification(1, T0_MS);
    let later_ms = T0_MS + runnel_log::producer_state::VERIFICATION_AGE_MAX_MS;
    let err = log
        .append_shared(&txn_batch(1, 0, 0, 1), 0, later_ms, Some(old))
        .unwrap_err();
    assert!(matches!(err, LogError::InvalidTxnState { .. }), "{err:?}");
}

#[test]
fn kip_890_concurrent_requests_of_one_producer_should_share_a_verification() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let first = log.start_txn_verification(7, T0_MS);
    let second = log.start_txn_verification(7, T0_MS);
    assert_eq!(first, second, "joined, not replaced");
    assert_ne!(
        log.start_txn_verification(8, T0_MS),
        first,
        "another producer's own"
    );
    log.append_shared(&txn_batch(7, 0, 0, 1), 0, T0_MS, Some(first))
        .unwrap();
    // The other request appends after the first opened the transaction: it continues it.
    log.append_shared(&txn_batch(7, 0, 1, 1), 0, T0_MS, Some(second))
        .unwrap();
    assert_eq!(log.ongoing_transactions(), vec![(0, 7)]);
}

#[test]
fn given_marker_from_fenced_coordinator_should_refuse_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    send_txn(&log, 1, 0, 1);
    let marker = |coordinator_epoch| Marker {
        producer_id: 1,
        producer_epoch: 0,
        coordinator_epoch,
        commit: true,
    };
    log.append_marker(&marker(3), 0, T0_MS).unwrap();
    send_txn(&log, 1, 1, 1);
    let err = log.append_marker(&marker(2), 0, T0_MS).unwrap_err();
    assert!(
        matches!(err, LogError::TransactionCoordinatorFenced { .. }),
        "{err:?}"
    );
}

#[test]
fn given_aborted_values_when_cleaned_should_never_supersede_committed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), compacting_config());
    append_keyed(&log, &[(Some("k"), Some("committed"))], T0_MS);
    // A transaction writes a newer value for k and is aborted.
    let mut b = keyed(
        &[(Some("k"), Some("aborted")), (Some("j"), Some("aborted"))],
        T0_MS,
        Codec::None,
    );
    set_producer(&mut b, 9, 0, 0);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    log.append(&mut b, 0, T0_MS).unwrap();
    end_txn(&log, 9, false);
    // And a committed one after it.
    let mut b = keyed(&[(Some("j"), Some("ok"))], T0_MS, Codec::None);
    set_producer(&mut b, 9, 0, 2);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    log.append(&mut b, 0, T0_MS).unwrap();
    end_txn(&log, 9, true);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    log.clean(T0_MS + 2 * MINUTE_MS, &CleanerOptions::default())
        .unwrap();
    let values: Vec<(Vec<u8>, Option<Vec<u8>>)> = records_of(&log)
        .into_iter()
        .filter_map(|(_, k, v)| k.map(|k| (k, v)))
        .filter(|(k, _)| k == b"k" || k == b"j")
        .collect();
    assert_eq!(
        values,
        vec![
            (b"k".to_vec(), Some(b"committed".to_vec())),
            (b"j".to_vec(), Some(b"ok".to_vec())),
        ],
        "the aborted records are gone and superseded nothing"
    );
}

#[test]
fn given_open_transaction_should_not_clean_past_its_first_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), compacting_config());
    append_keyed(&log, &[(Some("k"), Some("v0"))], T0_MS);
    let mut b = keyed(&[(Some("k"), Some("pending"))], T0_MS, Codec::None);
    set_producer(&mut b, 9, 0, 0);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    let pending = log.append(&mut b, 0, T0_MS).unwrap();
    append_keyed(&log, &[(Some("k"), Some("v1"))], T0_MS);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    let stats = log
        .clean(T0_MS + 2 * MINUTE_MS, &CleanerOptions::default())
        .unwrap();
    assert!(
        stats.first_uncleanable_offset <= pending.base_offset,
        "{stats:?}"
    );
    assert_eq!(
        records_of(&log).len(),
        3,
        "nothing cleaned while the transaction is open"
    );
}
