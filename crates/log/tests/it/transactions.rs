//! Transactions in the log (KIP-98): transactional batches open a transaction, markers close
//! it; the first unstable offset bounds what `read_committed` readers see; aborted
//! transactions are indexed for them, survive reopens (clean and crash) and are removed by
//! the cleaner without ever superseding a committed value; markers are removed by the cleaner
//! once no data of their transaction is left and their delete horizon has passed, without
//! changing what `read_committed` readers see or what a reopen rebuilds.

use std::collections::HashSet;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use kafka_protocol::records::Compression as Codec;
use proptest::prelude::*;
use runnel_log::testing::{producer_batch, set_attribute_bits, set_producer, ATTR_TRANSACTIONAL};
use runnel_log::{
    AbortedTxn, CleanerOptions, LogConfig, LogError, ManualClock, OpenMode, PartitionLog,
    ReadResult, Storage, StorageFile,
};
use runnel_model::batch::Batches;
use runnel_model::control::{parse_marker, Marker};

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

// Transaction markers and the cleaner (Kafka's `CleanedTransactionMetadata` and the delete
// horizon of markers, KIP-534).

const RETENTION_MS: i64 = 10 * MINUTE_MS;

fn cleaner_options() -> CleanerOptions {
    CleanerOptions {
        delete_retention_ms: RETENTION_MS,
        clock: Arc::new(ManualClock::new(Duration::from_millis(1))),
        ..CleanerOptions::default()
    }
}

/// Segments that roll only when told to (or after a minute), so tests place markers.
fn marker_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 128,
        segment_ms: MINUTE_MS,
        ..LogConfig::default()
    }
}

/// Appends a transactional batch of keyed records of `producer_id` (epoch 0) at `now_ms`.
fn send_keyed_txn(
    log: &PartitionLog,
    producer_id: i64,
    sequence: i32,
    records: &[(Option<&str>, Option<&str>)],
    now_ms: i64,
) -> i64 {
    let mut b = keyed(records, now_ms, Codec::None);
    set_producer(&mut b, producer_id, 0, sequence);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    log.append(&mut b, 0, now_ms)
        .expect("transactional append")
        .base_offset
}

fn end_txn_at(log: &PartitionLog, producer_id: i64, commit: bool, now_ms: i64) -> i64 {
    let marker = Marker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    };
    log.append_marker(&marker, 0, now_ms)
        .expect("marker")
        .base_offset
}

/// Cleans at `now_ms` with a delete retention of `RETENTION_MS`.
fn clean_at(log: &PartitionLog, now_ms: i64) -> runnel_log::CleanStats {
    log.clean(now_ms, &cleaner_options()).expect("clean")
}

/// Producer 1 commits `a` then `z` (its last batch), and a plain record supersedes `a`, all at
/// `T0_MS`. Returns the two commit markers' offsets.
fn write_superseded_commit(log: &PartitionLog) -> (i64, i64) {
    send_keyed_txn(log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    let m1 = end_txn_at(log, 1, true, T0_MS);
    send_keyed_txn(log, 1, 1, &[(Some("z"), Some("t2"))], T0_MS);
    let m2 = end_txn_at(log, 1, true, T0_MS);
    append_keyed(log, &[(Some("a"), Some("plain"))], T0_MS);
    (m1, m2)
}

/// A log in `dir` holding [`write_superseded_commit`], rolled and cleaned once at `c1`.
/// Returns it, the two markers' offsets, `c1` and the clean's stats.
fn cleaned_superseded_commit(
    dir: &std::path::Path,
) -> (PartitionLog, i64, i64, i64, runnel_log::CleanStats) {
    let log = open(fs(), dir, marker_config());
    let (m1, m2) = write_superseded_commit(&log);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(&log, c1);
    let stats = clean_at(&log, c1);
    (log, m1, m2, c1, stats)
}

/// Rolls the active segment (written before `now_ms - 1 min`).
fn roll(log: &PartitionLog, now_ms: i64) {
    assert!(log.maybe_roll(now_ms).unwrap(), "rolled at {now_ms}");
}

/// The markers in the log: `(offset, producer id, commit)`.
fn markers_of(log: &PartitionLog) -> Vec<(i64, i64, bool)> {
    let bytes = read_all(log);
    Batches::new(&bytes)
        .map(Result::unwrap)
        .filter(|b| b.is_control())
        .map(|b| {
            let m = parse_marker(&b).unwrap().expect("a transaction marker");
            (b.base_offset(), m.producer_id, m.commit)
        })
        .collect()
}

/// What a `read_committed` consumer gets (Kafka's `CompletedFetch`): fetches of `max_bytes`
/// from the log start up to the last stable offset, each with the aborted transactions the log
/// reports for it; a producer's transactional batches are dropped from the first offset of an
/// aborted transaction of it until its abort marker.
fn read_committed(log: &PartitionLog, max_bytes: usize) -> Vec<Rec> {
    let stable = log
        .first_unstable_offset()
        .unwrap_or_else(|| log.log_end_offset());
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    // Bounded: each read returns at least one batch (min_one_batch) or ends the loop.
    loop {
        let r = log.read(offset, max_bytes, stable, true).expect("read");
        if r.batch_count == 0 {
            break;
        }
        let aborted = log.aborted_transactions(offset, r.next_offset);
        out.extend(committed_records(&r.bytes, aborted));
        offset = r.next_offset;
    }
    out
}

/// The records of `bytes` that a `read_committed` consumer keeps, given the fetch's aborted
/// transactions: a producer's transactional batches are dropped from the first offset of an
/// aborted transaction of it until its abort marker.
fn committed_records(bytes: &[u8], mut aborted: Vec<AbortedTxn>) -> Vec<Rec> {
    let mut out = Vec::new();
    aborted.sort_by_key(|t| t.first_offset);
    let mut aborted = aborted.into_iter().peekable();
    let mut aborted_producers = HashSet::new();
    for b in Batches::new(bytes) {
        let b = b.unwrap();
        if b.producer_id() >= 0 {
            while let Some(t) = aborted.next_if(|t| t.first_offset <= b.last_offset()) {
                aborted_producers.insert(t.producer_id);
            }
        }
        if b.is_control() {
            if parse_marker(&b).unwrap().is_some_and(|m| !m.commit) {
                aborted_producers.remove(&b.producer_id());
            }
            continue;
        }
        if b.is_transactional() && aborted_producers.contains(&b.producer_id()) {
            continue;
        }
        out.extend(decode_records(b.as_bytes()));
    }
    out
}

/// The latest committed value of each key, as a `read_committed` consumer reads them in one
/// fetch and one batch at a time (which must agree).
fn committed_values(
    log: &PartitionLog,
) -> std::collections::BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let whole = latest_by_key(&read_committed(log, usize::MAX));
    assert_eq!(
        latest_by_key(&read_committed(log, 1)),
        whole,
        "one fetch and many small fetches agree"
    );
    whole
}

/// What a reopen must rebuild: the first unstable offset, the aborted transactions, and each
/// producer's `(id, epoch, last sequence, open transaction)` (a replay from the log reads no
/// coordinator epochs).
type TxnState = (
    Option<i64>,
    Vec<AbortedTxn>,
    Vec<(i64, i16, i32, Option<i64>)>,
);

fn txn_state(log: &PartitionLog) -> TxnState {
    let mut producers: Vec<_> = log
        .producers()
        .into_iter()
        .map(|p| {
            (
                p.producer_id,
                p.producer_epoch,
                p.last_sequence,
                p.current_txn_first_offset,
            )
        })
        .collect();
    producers.sort();
    (
        log.first_unstable_offset(),
        log.aborted_transactions(0, i64::MAX),
        producers,
    )
}

/// `log` holds `expected`, and so does it once closed and reopened twice: with its
/// snapshots, and rebuilt from the log alone.
fn assert_reopens_to(log: PartitionLog, dir: &std::path::Path, expected: &TxnState) {
    assert_eq!(&txn_state(&log), expected, "before reopening");
    log.close().unwrap();
    let log = open(fs(), dir, marker_config());
    assert_eq!(&txn_state(&log), expected, "reopened with snapshots");
    log.close().unwrap();
    for name in names_in(dir) {
        if name.ends_with(".snapshot") {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
    }
    let log = open(fs(), dir, marker_config());
    assert_eq!(&txn_state(&log), expected, "rebuilt from the log");
}

#[test]
fn given_commit_marker_whose_data_is_superseded_when_cleaned_should_keep_it_before_the_horizon_and_remove_it_after(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    let (m1, m2) = write_superseded_commit(&log);
    let committed = committed_values(&log);
    let state = txn_state(&log);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(&log, c1);
    // The first clean removes the superseded record; its batch was read, so m1 stays.
    let stats = clean_at(&log, c1);
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(markers_of(&log), vec![(m1, 1, true), (m2, 1, true)]);
    // A later clean, before the horizon: m1 has no data left, but stays.
    append_keyed(&log, &[(Some("q"), Some("1"))], c1);
    let c2 = c1 + 2 * MINUTE_MS;
    roll(&log, c2);
    let stats = clean_at(&log, c2);
    assert!(stats.cleaned);
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(markers_of(&log).len(), 2);
    // The horizon of a range without tombstones makes no clean due; a clean at or after it
    // removes m1; m2 follows the producer's last batch and stays.
    let horizon = c1 + RETENTION_MS;
    assert!(!log.needs_cleaning(horizon, &cleaner_options()).unwrap());
    let stats = clean_at(&log, horizon);
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(markers_of(&log), vec![(m2, 1, true)]);
    let mut expected = committed;
    expected.insert(b"q".to_vec(), (m2 + 2, Some(b"1".to_vec())));
    assert_eq!(committed_values(&log), expected);
    assert_reopens_to(log, tmp.path(), &state);
}

#[test]
fn given_a_horizon_range_of_markers_only_when_its_horizon_passes_should_not_make_a_clean_due_but_a_tombstone_range_should(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, m1, m2, c1, _) = cleaned_superseded_commit(tmp.path());
    // The clean recorded a range for the markers it covered first, and no tombstone.
    assert!(!log
        .needs_cleaning(c1 + RETENTION_MS, &cleaner_options())
        .unwrap());
    // A tombstone's range makes a clean due at its horizon; that clean removes the marker
    // whose own horizon passed before.
    append_keyed(&log, &[(Some("q"), None)], c1);
    let c2 = c1 + 2 * MINUTE_MS;
    roll(&log, c2);
    assert_eq!(clean_at(&log, c2).markers_removed, 0);
    assert!(!log
        .needs_cleaning(c2 + RETENTION_MS - 1, &cleaner_options())
        .unwrap());
    assert!(log
        .needs_cleaning(c2 + RETENTION_MS, &cleaner_options())
        .unwrap());
    let stats = clean_at(&log, c2 + RETENTION_MS);
    assert_eq!((stats.markers_removed, stats.tombstones_removed), (1, 1));
    assert_eq!(markers_of(&log), vec![(m2, 1, true)]);
    assert!(m1 < m2);
}

#[test]
fn given_commit_marker_whose_transaction_still_has_a_batch_when_cleaned_past_its_horizon_should_keep_it(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    send_keyed_txn(&log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    let m1 = end_txn_at(&log, 1, true, T0_MS);
    send_keyed_txn(&log, 1, 1, &[(Some("b"), Some("t2"))], T0_MS);
    let m2 = end_txn_at(&log, 1, true, T0_MS);
    let committed = committed_values(&log);
    let mut now = T0_MS + 2 * MINUTE_MS;
    roll(&log, now);
    for _ in 0..3 {
        let stats = clean_at(&log, now);
        assert!(stats.cleaned);
        assert_eq!(stats.markers_removed, 0);
        now += RETENTION_MS;
        append_keyed(&log, &[(Some("filler"), Some("x"))], now);
        now += 2 * MINUTE_MS;
        roll(&log, now);
    }
    assert_eq!(markers_of(&log), vec![(m1, 1, true), (m2, 1, true)]);
    let values = committed_values(&log);
    assert_eq!(values.get(&b"a"[..]), committed.get(&b"a"[..]));
    assert_eq!(values.get(&b"b"[..]), committed.get(&b"b"[..]));
}

#[test]
fn given_abort_marker_when_its_data_is_read_in_the_same_clean_should_keep_it_and_remove_it_at_a_later_clean_past_the_horizon(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    append_keyed(&log, &[(Some("a"), Some("committed"))], T0_MS);
    send_keyed_txn(&log, 2, 0, &[(Some("a"), Some("aborted"))], T0_MS);
    let abort = end_txn_at(&log, 2, false, T0_MS);
    let aborted = log.aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 1);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(&log, c1);
    // The aborted record goes; its batch is the producer's last, kept as an empty header.
    let stats = clean_at(&log, c1);
    assert_eq!((stats.markers_removed, stats.empty_batches_kept), (0, 1));
    // Past the horizon the empty header (of the aborted transaction) is still read by every
    // clean: the marker after it stays, with its index entry.
    let c2 = c1 + RETENTION_MS;
    let stats = clean_at(&log, c2);
    assert!(stats.cleaned);
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(markers_of(&log), vec![(abort, 2, false)]);
    assert_eq!(log.aborted_transactions(0, i64::MAX), aborted);
    // The producer writes on: its aborted batch is no longer its last, and the next clean
    // drops it, but read it, so the marker still stays.
    send_keyed_txn(&log, 2, 1, &[(Some("c"), Some("ok"))], c2);
    let commit = end_txn_at(&log, 2, true, c2);
    let committed = committed_values(&log);
    let state = txn_state(&log);
    let c3 = c2 + 2 * MINUTE_MS;
    roll(&log, c3);
    let stats = clean_at(&log, c3);
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(markers_of(&log), vec![(abort, 2, false), (commit, 2, true)]);
    // The next clean past the horizon finds no data of it: the marker and its entry go.
    let stats = clean_at(&log, c3 + RETENTION_MS);
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(markers_of(&log), vec![(commit, 2, true)]);
    // The producer's committed transaction after the removed abort is still read (an entry
    // left without its marker would have the reader drop it).
    assert_eq!(committed_values(&log), committed);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    let (fuo, _, producers) = state;
    let state = (fuo, Vec::new(), producers);
    assert_reopens_to(log, tmp.path(), &state);
}

/// Producer 2 aborts `a`, then commits `c`; cleans at `c1` and `c2` leave the abort marker
/// with no data of its transaction, so a clean at the returned time removes it. Returns that
/// time and the abort marker's offset.
fn write_removable_abort(log: &PartitionLog) -> (i64, i64) {
    append_keyed(log, &[(Some("a"), Some("committed"))], T0_MS);
    send_keyed_txn(log, 2, 0, &[(Some("a"), Some("aborted"))], T0_MS);
    let abort = end_txn_at(log, 2, false, T0_MS);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(log, c1);
    clean_at(log, c1);
    let c2 = c1 + RETENTION_MS;
    send_keyed_txn(log, 2, 1, &[(Some("c"), Some("ok"))], c2);
    end_txn_at(log, 2, true, c2);
    let c3 = c2 + 2 * MINUTE_MS;
    roll(log, c3);
    clean_at(log, c3);
    (c3 + RETENTION_MS, abort)
}

#[test]
fn given_failed_directory_fsync_when_the_cleaner_rewrites_the_aborted_index_should_keep_a_later_abort_filtered_after_reopen(
) {
    let tmp = tempfile::tempdir().unwrap();
    let faulty = runnel_log::testing::FaultyStorage::new(fs());
    let storage: Arc<dyn runnel_log::storage::Storage> = faulty.clone();
    let log = open(storage, tmp.path(), marker_config());
    let (at, _) = write_removable_abort(&log);
    // The index rewrite's rename lands; its directory fsync fails: the clean gives up.
    let dir_name = tmp
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    faulty.fail_next_sync(&dir_name);
    log.clean(at, &cleaner_options()).unwrap_err();
    // The log goes on: producer 3 aborts `x`.
    send_keyed_txn(&log, 3, 0, &[(Some("x"), Some("aborted"))], at);
    end_txn_at(&log, 3, false, at);
    let committed = committed_values(&log);
    assert!(!committed.contains_key(b"x".as_slice()));
    log.close().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    assert_eq!(committed_values(&log), committed, "x is still filtered");
}

/// Storage whose next read of a `.log` file, once armed, says so and waits to be let go.
#[derive(Debug)]
struct PausingStorage {
    inner: Arc<dyn Storage>,
    pause: Arc<Mutex<Option<Pause>>>,
}

/// `(reached, go)`: the paused read sends on `reached`, then waits for `go`.
type Pause = (mpsc::Sender<()>, mpsc::Receiver<()>);

#[derive(Debug)]
struct PausingFile {
    inner: Box<dyn StorageFile>,
    pause: Option<Arc<Mutex<Option<Pause>>>>,
}

impl Storage for PausingStorage {
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(path)
    }
    fn open(
        &self,
        path: &std::path::Path,
        mode: OpenMode,
    ) -> std::io::Result<Box<dyn StorageFile>> {
        let is_log = path.extension().is_some_and(|e| e == "log");
        Ok(Box::new(PausingFile {
            inner: self.inner.open(path, mode)?,
            pause: is_log.then(|| self.pause.clone()),
        }))
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
}

impl StorageFile for PausingFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        let armed = self.pause.as_ref().and_then(|p| p.lock().unwrap().take());
        if let Some((reached, go)) = armed {
            reached.send(()).unwrap();
            go.recv().unwrap();
        }
        self.inner.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> std::io::Result<usize> {
        self.inner.write_at(buf, pos)
    }
    fn set_len(&self, len_bytes: u64) -> std::io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
}

/// A log on [`PausingStorage`], with one value committed, one aborted by producer 2 (its
/// marker's offset returned) and a roll two minutes later.
fn log_with_an_aborted_value(
    tmp: &std::path::Path,
) -> (Arc<PartitionLog>, Arc<Mutex<Option<Pause>>>, i64) {
    let pause = Arc::new(Mutex::new(None));
    let storage = Arc::new(PausingStorage {
        inner: fs(),
        pause: pause.clone(),
    });
    let log = Arc::new(open(storage, tmp, marker_config()));
    append_keyed(&log, &[(Some("a"), Some("committed"))], T0_MS);
    send_keyed_txn(&log, 2, 0, &[(Some("a"), Some("aborted"))], T0_MS);
    let marker = end_txn_at(&log, 2, false, T0_MS);
    roll(&log, T0_MS + 2 * MINUTE_MS);
    (log, pause, marker)
}

/// A held read's thread, and the sender that lets it go on.
type HeldRead = (
    std::thread::JoinHandle<Result<(ReadResult, Vec<AbortedTxn>), LogError>>,
    mpsc::Sender<()>,
);

/// A `read_committed` read of the whole log up to `stable`, on its own thread, held once it
/// has taken its segment: it goes on when the returned sender sends.
fn held_read_committed_read(
    log: &Arc<PartitionLog>,
    pause: &Mutex<Option<Pause>>,
    stable: i64,
) -> HeldRead {
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    *pause.lock().unwrap() = Some((reached_tx, go_rx));
    let reader = std::thread::spawn({
        let log = log.clone();
        move || log.read_with_aborted(0, usize::MAX, stable, true)
    });
    reached.recv().unwrap();
    (reader, go)
}

/// The values a client keeps of a read, with its aborted transactions filtered out.
fn kept_values(read: &ReadResult, aborted: Vec<AbortedTxn>) -> Vec<Option<Vec<u8>>> {
    committed_records(&read.bytes, aborted)
        .into_iter()
        .map(|r| r.2)
        .collect()
}

#[test]
fn given_cleans_removing_an_abort_marker_during_a_read_committed_read_should_answer_batches_and_aborted_transactions_that_agree(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, pause, _) = log_with_an_aborted_value(tmp.path());
    let c1 = T0_MS + 2 * MINUTE_MS;
    let stable = log.log_end_offset();
    // A reader takes its segment before any clean, and is held before it reads the bytes.
    let (reader, go) = held_read_committed_read(&log, &pause, stable);
    // Meanwhile cleans drop the aborted data, then its marker and entry (as with
    // delete.retention.ms near 0).
    clean_at(&log, c1);
    let c2 = c1 + RETENTION_MS;
    send_keyed_txn(&log, 2, 1, &[(Some("c"), Some("ok"))], c2);
    end_txn_at(&log, 2, true, c2);
    let c3 = c2 + 2 * MINUTE_MS;
    roll(&log, c3);
    clean_at(&log, c3);
    assert_eq!(clean_at(&log, c3 + RETENTION_MS).markers_removed, 1);
    go.send(()).unwrap();
    let (read, aborted) = reader.join().unwrap().unwrap();
    let values = kept_values(&read, aborted);
    assert!(
        !values.contains(&Some(b"aborted".to_vec())),
        "aborted data without its aborted transaction: {values:?}"
    );
}

/// The same race with DeleteRecords (or retention) instead of a clean: the log start moves
/// past the abort marker while the read holds the segment, and the entry leaves the index.
#[test]
fn given_delete_records_past_an_abort_marker_during_a_read_committed_read_should_not_answer_its_aborted_data(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, pause, marker) = log_with_an_aborted_value(tmp.path());
    append_keyed(&log, &[(Some("b"), Some("later"))], T0_MS + 2 * MINUTE_MS);
    let stable = log.log_end_offset();
    let (reader, go) = held_read_committed_read(&log, &pause, stable);
    log.delete_records(marker + 1, stable).unwrap();
    go.send(()).unwrap();
    match reader.join().unwrap() {
        // The read is done again, from below the new log start (the consumer resets).
        Err(LogError::OffsetOutOfRange { .. }) => {}
        Err(e) => panic!("unexpected error: {e:?}"),
        Ok((read, aborted)) => {
            let values = kept_values(&read, aborted.clone());
            assert!(
                !values.contains(&Some(b"aborted".to_vec())),
                "aborted data without its aborted transaction: {values:?} aborted={aborted:?}"
            );
        }
    }
}

#[test]
fn given_producers_last_batch_kept_empty_when_cleaned_past_horizons_should_keep_the_marker_after_it(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    send_keyed_txn(&log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    let commit = end_txn_at(&log, 1, true, T0_MS);
    send_keyed_txn(&log, 2, 0, &[(Some("b"), Some("aborted"))], T0_MS);
    let abort = end_txn_at(&log, 2, false, T0_MS);
    append_keyed(&log, &[(Some("a"), Some("plain"))], T0_MS);
    let committed = committed_values(&log);
    let state = txn_state(&log);
    let now = T0_MS + 2 * MINUTE_MS;
    roll(&log, now);
    // The first clean empties both producers' batches; the second, at the horizon, reads them.
    for at in [now, now + RETENTION_MS] {
        let stats = clean_at(&log, at);
        assert!(stats.cleaned);
        assert_eq!(stats.markers_removed, 0);
    }
    // Both producers' last batches are empty headers, each followed by its marker: rebuilding
    // the state from the log opens their transactions there and closes them again.
    let bytes = read_all(&log);
    let empty: Vec<(i64, i64, bool)> = Batches::new(&bytes)
        .map(Result::unwrap)
        .filter(|b| b.records_count() == 0)
        .map(|b| (b.base_offset(), b.producer_id(), b.is_transactional()))
        .collect();
    assert_eq!(empty, vec![(0, 1, true), (2, 2, true)]);
    assert_eq!(markers_of(&log), vec![(commit, 1, true), (abort, 2, false)]);
    assert_eq!(committed_values(&log), committed);
    assert_reopens_to(log, tmp.path(), &state);
}

#[test]
fn given_epoch_bump_abort_marker_without_data_when_cleaned_twice_past_the_horizon_should_keep_it_as_its_producers_last_record(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    append_keyed(&log, &[(Some("a"), Some("1"))], T0_MS);
    // The coordinator fenced producer 5 (epoch bump to 1) before it wrote here: the abort
    // marker is its only record, and discardable (no data of its transaction).
    let fence = Marker {
        producer_id: 5,
        producer_epoch: 1,
        coordinator_epoch: 0,
        commit: false,
    };
    let bump = log.append_marker(&fence, 0, T0_MS).unwrap().base_offset;
    let state = txn_state(&log);
    let mut now = T0_MS + 2 * MINUTE_MS;
    roll(&log, now);
    clean_at(&log, now);
    for _ in 0..2 {
        append_keyed(&log, &[(Some("a"), Some("2"))], now);
        now += RETENTION_MS;
        roll(&log, now);
        let stats = clean_at(&log, now);
        assert!(stats.cleaned);
        assert_eq!(stats.markers_removed, 0, "at {now}");
    }
    assert_eq!(markers_of(&log), vec![(bump, 5, false)]);
    assert_eq!(txn_state(&log), state, "producer 5 keeps its epoch");
}

#[test]
fn given_removed_marker_at_the_end_of_a_group_should_leave_an_empty_header_so_segments_stay_contiguous(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    send_keyed_txn(&log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    append_keyed(&log, &[(Some("a"), Some("plain"))], T0_MS);
    let m1 = end_txn_at(&log, 1, true, T0_MS);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(&log, c1);
    // The producer's next transaction stays in the active segment.
    send_keyed_txn(&log, 1, 1, &[(Some("b"), Some("t2"))], c1);
    let m2 = end_txn_at(&log, 1, true, c1);
    let committed = committed_values(&log);
    let state = txn_state(&log);
    clean_at(&log, c1);
    let stats = clean_at(&log, c1 + RETENTION_MS);
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(markers_of(&log), vec![(m2, 1, true)]);
    assert_eq!(log.segment_base_offsets(), vec![0, m1 + 1]);
    // The cleaned segment ends where the segment it replaced ended: with an empty header,
    // without producer fields, in place of the marker.
    let bytes = read_all(&log);
    let at_marker = Batches::new(&bytes)
        .map(Result::unwrap)
        .find(|b| b.base_offset() == m1)
        .expect("a batch at the removed marker's offset");
    assert_eq!(
        (
            at_marker.last_offset(),
            at_marker.records_count(),
            at_marker.producer_id(),
            at_marker.is_control(),
            at_marker.is_transactional()
        ),
        (m1, 0, -1, false, false)
    );
    assert_eq!(committed_values(&log), committed);
    assert_reopens_to(log, tmp.path(), &state);
}

#[test]
fn given_open_transaction_when_markers_before_it_are_removed_should_leave_everything_from_its_first_offset_as_it_was(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    send_keyed_txn(&log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    end_txn_at(&log, 1, true, T0_MS);
    append_keyed(&log, &[(Some("a"), Some("plain"))], T0_MS);
    let c1 = T0_MS + 2 * MINUTE_MS;
    roll(&log, c1);
    // Producer 3's transaction stays open; producer 1 commits another one after it.
    let open_first = send_keyed_txn(&log, 3, 0, &[(Some("a"), Some("pending"))], c1);
    send_keyed_txn(&log, 1, 1, &[(Some("b"), Some("t2"))], c1);
    end_txn_at(&log, 1, true, c1);
    append_keyed(&log, &[(Some("b"), Some("plain"))], c1);
    let c2 = c1 + 2 * MINUTE_MS;
    roll(&log, c2);
    append_keyed(&log, &[(Some("c"), Some("active"))], c2);
    let unstable = log.read(open_first, usize::MAX, i64::MAX, true).unwrap();
    let state = txn_state(&log);
    assert_eq!(state.0, Some(open_first));
    let mut now = c2;
    let mut removed = 0;
    for _ in 0..3 {
        let stats = clean_at(&log, now);
        assert!(stats.end_offset <= open_first, "{stats:?}");
        removed += stats.markers_removed;
        now += RETENTION_MS;
    }
    assert_eq!(removed, 1, "only the marker before the open transaction");
    let after = log.read(open_first, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(after.bytes, unstable.bytes);
    assert_reopens_to(log, tmp.path(), &state);
}

#[test]
fn given_old_snapshot_holding_a_transaction_whose_marker_was_removed_when_reopened_should_not_reopen_that_transaction(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    send_keyed_txn(&log, 1, 0, &[(Some("a"), Some("t1"))], T0_MS);
    let c1 = T0_MS + 2 * MINUTE_MS;
    // The roll snapshots the state with producer 1's transaction open at 0.
    roll(&log, c1);
    let m1 = end_txn_at(&log, 1, true, c1);
    append_keyed(&log, &[(Some("a"), Some("plain"))], c1);
    let c2 = c1 + 2 * MINUTE_MS;
    roll(&log, c2);
    // The producer's next transaction, still open.
    let open_first = send_keyed_txn(&log, 1, 1, &[(Some("b"), Some("t2"))], c2);
    let state = txn_state(&log);
    assert_eq!(state.0, Some(open_first));
    let snapshot = |offset: i64| tmp.path().join(format!("{offset:020}.snapshot"));
    assert!(snapshot(m1).exists() && snapshot(open_first).exists());
    clean_at(&log, c2);
    let stats = clean_at(&log, c2 + RETENTION_MS);
    assert_eq!(stats.markers_removed, 1);
    // The snapshot that holds the transaction m1 closed open is gone with m1.
    assert!(!snapshot(m1).exists());
    // A crash, and the latest snapshot is damaged: the state is rebuilt from the log.
    log.flush().unwrap();
    drop(log);
    std::fs::write(snapshot(open_first), b"damaged").unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    assert_eq!(txn_state(&log), state);
}

#[test]
fn given_crash_at_any_step_of_a_clean_removing_an_abort_marker_and_a_snapshot_when_reopened_should_keep_entries_with_markers_and_the_same_committed_state(
) {
    let template = tempfile::tempdir().unwrap();
    let snapshot = |dir: &std::path::Path, offset: i64| dir.join(format!("{offset:020}.snapshot"));
    // Producer 2 aborts `a`; the roll before its marker snapshots the transaction open; it
    // then commits `c`. The clean at `c2` drops the aborted data and keeps the marker.
    let (abort, at, committed, state) = {
        let log = open(fs(), template.path(), marker_config());
        append_keyed(&log, &[(Some("a"), Some("committed"))], T0_MS);
        send_keyed_txn(&log, 2, 0, &[(Some("a"), Some("aborted"))], T0_MS);
        let c1 = T0_MS + 2 * MINUTE_MS;
        roll(&log, c1);
        let abort = end_txn_at(&log, 2, false, c1);
        send_keyed_txn(&log, 2, 1, &[(Some("c"), Some("ok"))], c1);
        end_txn_at(&log, 2, true, c1);
        let c2 = c1 + 2 * MINUTE_MS;
        roll(&log, c2);
        assert_eq!(clean_at(&log, c2).markers_removed, 0);
        let state = txn_state(&log);
        let committed = committed_values(&log);
        log.close().unwrap();
        (abort, c2 + RETENTION_MS, committed, state)
    };
    assert!(snapshot(template.path(), abort).exists());
    let (fuo, _, producers) = state;
    let open_faulty = |dir: &std::path::Path| {
        let faulty = runnel_log::testing::FaultyStorage::new(fs());
        let log = open(faulty.clone(), dir, marker_config());
        (faulty, log)
    };
    let mutations = {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let (faulty, log) = open_faulty(tmp.path());
        let before = faulty.mutation_count();
        assert_eq!(clean_at(&log, at).markers_removed, 1);
        assert!(!snapshot(tmp.path(), abort).exists());
        assert!(log.aborted_transactions(0, i64::MAX).is_empty());
        faulty.mutation_count() - before
    };
    for step in 0..=mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let (faulty, log) = open_faulty(tmp.path());
        faulty.crash_after_mutations(step);
        let result = log.clean(at, &cleaner_options());
        assert_eq!(result.is_ok(), step == mutations, "step {step}: {result:?}");
        drop(log);
        let log = open(fs(), tmp.path(), marker_config());
        assert_entries_have_markers(&log);
        assert_eq!(committed_values(&log), committed, "crash at step {step}");
        let (fuo_after, _, producers_after) = txn_state(&log);
        assert_eq!(
            (fuo_after, producers_after),
            (fuo, producers.clone()),
            "step {step}"
        );
    }
}

#[test]
fn given_version_0_cleaner_checkpoint_when_cleaned_should_keep_its_markers_until_a_horizon_set_after_it(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, m1, m2, c1, stats) = cleaned_superseded_commit(tmp.path());
    // As the cleaner before marker removal left it: cleaned to here, no tombstone range.
    log.close().unwrap();
    let checkpoint = tmp
        .path()
        .join(runnel_log::partition_log::CLEANER_CHECKPOINT_FILE);
    std::fs::write(&checkpoint, format!("0\n{}\n0\n", stats.end_offset)).unwrap();
    let log = open(fs(), tmp.path(), marker_config());
    // Long past any horizon, the first clean keeps m1 (no horizon recorded for it) and sets
    // one.
    append_keyed(&log, &[(Some("q"), Some("1"))], c1);
    let c2 = c1 + 10 * RETENTION_MS;
    roll(&log, c2);
    let stats = clean_at(&log, c2);
    assert!(stats.cleaned);
    assert_eq!(stats.markers_removed, 0);
    assert_eq!(markers_of(&log), vec![(m1, 1, true), (m2, 1, true)]);
    assert!(std::fs::read_to_string(&checkpoint)
        .unwrap()
        .starts_with("1\n"));
    assert!(!log
        .needs_cleaning(c2 + RETENTION_MS - 1, &cleaner_options())
        .unwrap());
    let stats = clean_at(&log, c2 + RETENTION_MS);
    assert_eq!(stats.markers_removed, 1);
    assert_eq!(markers_of(&log), vec![(m2, 1, true)]);
}

#[derive(Debug, Clone)]
enum TxnOp {
    /// A transactional batch of producer `producer` (1..=3) writing `keys`.
    Send {
        producer: i64,
        keys: Vec<u8>,
    },
    End {
        producer: i64,
        commit: bool,
    },
    Plain {
        key: u8,
    },
    Roll {
        advance_ms: i64,
    },
    Clean {
        advance_ms: i64,
    },
    Reopen {
        clean_close: bool,
    },
}

fn txn_op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        4 => (1i64..4, prop::collection::vec(0u8..6, 1..3))
            .prop_map(|(producer, keys)| TxnOp::Send { producer, keys }),
        3 => (1i64..4, prop::bool::weighted(0.6))
            .prop_map(|(producer, commit)| TxnOp::End { producer, commit }),
        2 => (0u8..6).prop_map(|key| TxnOp::Plain { key }),
        1 => (0i64..3_000).prop_map(|advance_ms| TxnOp::Roll { advance_ms }),
        2 => (0i64..3_000).prop_map(|advance_ms| TxnOp::Clean { advance_ms }),
        1 => any::<bool>().prop_map(|clean_close| TxnOp::Reopen { clean_close }),
    ]
}

/// Every aborted-transaction entry has its abort marker in the log.
fn assert_entries_have_markers(log: &PartitionLog) {
    let markers = markers_of(log);
    for t in log.aborted_transactions(0, i64::MAX) {
        assert!(
            markers.contains(&(t.last_offset, t.producer_id, false)),
            "{t:?} outlived its marker"
        );
    }
}

/// `state` without the producers known only by markers (no batch, no open transaction): an
/// open drops those, as Kafka does when it loads producer state.
fn kept_at_open(state: TxnState) -> TxnState {
    let (fuo, aborted, mut producers) = state;
    producers.retain(|&(_, _, last_sequence, txn)| last_sequence >= 0 || txn.is_some());
    (fuo, aborted, producers)
}

/// Runs `ops`; every clean must leave what `read_committed` readers see, the first unstable
/// offset and the producers as they were, and every reopen (and a final rebuild from the log
/// alone) must restore them.
fn run_generated_txns(ops: Vec<TxnOp>, segment_bytes: u64, dedupe_bytes: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let config = generated_log_config(segment_bytes);
    let opts = CleanerOptions {
        delete_retention_ms: 2_000,
        dedupe_buffer_bytes: dedupe_bytes,
        ..cleaner_options()
    };
    let mut now = T0_MS;
    let mut log = PartitionLog::open(fs(), tmp.path(), config.clone(), now).unwrap();
    let mut sequences = [0i32; 4];
    for (i, op) in ops.into_iter().enumerate() {
        let value = format!("v{i}");
        match op {
            TxnOp::Send { producer, keys } => {
                let keys: Vec<String> = keys.iter().map(|k| format!("k{k}")).collect();
                let records: Vec<(Option<&str>, Option<&str>)> = keys
                    .iter()
                    .map(|k| (Some(k.as_str()), Some(value.as_str())))
                    .collect();
                let p = producer as usize;
                send_keyed_txn(&log, producer, sequences[p], &records, now);
                sequences[p] += records.len() as i32;
            }
            TxnOp::End { producer, commit } => {
                end_txn_at(&log, producer, commit, now);
            }
            TxnOp::Plain { key } => {
                append_keyed(&log, &[(Some(&format!("k{key}")), Some(&value))], now);
            }
            TxnOp::Roll { advance_ms } => {
                now += advance_ms;
                log.maybe_roll(now).unwrap();
            }
            TxnOp::Clean { advance_ms } => {
                now += advance_ms;
                let values = committed_values(&log);
                let (fuo, aborted, producers) = txn_state(&log);
                let stats = log.clean(now, &opts).unwrap();
                assert_eq!(committed_values(&log), values, "after {stats:?}");
                let (fuo_after, aborted_after, producers_after) = txn_state(&log);
                assert_eq!((fuo_after, producers_after), (fuo, producers));
                assert!(aborted_after.iter().all(|t| aborted.contains(t)));
                assert_entries_have_markers(&log);
            }
            TxnOp::Reopen { clean_close } => {
                let values = committed_values(&log);
                let state = txn_state(&log);
                if clean_close {
                    log.close().unwrap();
                } else {
                    log.flush().unwrap();
                }
                drop(log);
                log = PartitionLog::open(fs(), tmp.path(), config.clone(), now).unwrap();
                assert_eq!(committed_values(&log), values);
                assert_eq!(txn_state(&log), kept_at_open(state));
            }
        }
    }
    let values = committed_values(&log);
    let state = kept_at_open(txn_state(&log));
    log.close().unwrap();
    drop(log);
    for name in names_in(tmp.path()) {
        if name.ends_with(".snapshot") {
            std::fs::remove_file(tmp.path().join(name)).unwrap();
        }
    }
    let log = PartitionLog::open(fs(), tmp.path(), config, now).unwrap();
    assert_eq!(committed_values(&log), values);
    assert_eq!(txn_state(&log), state, "rebuilt from the log");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn given_generated_transactions_when_cleaned_and_reopened_should_read_the_same_committed_values_and_state(
        ops in prop::collection::vec(txn_op(), 1..60),
        segment_bytes in 250u64..900,
        dedupe_bytes in prop_oneof![Just(150u64), Just(128u64 * 1024 * 1024)],
    ) {
        run_generated_txns(ops, segment_bytes, dedupe_bytes);
    }
}
