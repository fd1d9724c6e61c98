//! Idempotent producers: sequence and epoch checks (Kafka's non-transactional rule: a producer
//! without state, new, expired or evicted, may start at any sequence; one with state must
//! continue it), duplicates answered with the original offsets and stored once, the producer
//! state surviving clean and crash reopens (with, without and with damaged snapshots), its
//! bounds, and the sequence wrap at `i32::MAX`.

use std::path::{Path, PathBuf};

use runnel_log::testing::{
    producer_batch, set_attribute_bits, set_last_offset_delta, FaultyStorage, WriteFault,
    ATTR_CONTROL, ATTR_TRANSACTIONAL,
};
use runnel_log::{
    AppendInfo, LogConfig, LogError, PartitionLog, TimestampType, PRODUCERS_PER_PARTITION_MAX,
};
use runnel_model::batch::{BatchView, Batches};

use crate::common::*;

const PID: i64 = 4_242;

fn send(
    log: &PartitionLog,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    records: usize,
) -> Result<AppendInfo, LogError> {
    let mut b = producer_batch(producer_id, epoch, sequence, records, T0_MS);
    log.append(&mut b, 0, T0_MS)
}

/// `(producer_id, epoch, base_sequence, base_offset, last_offset)` of every stored batch.
fn stored(log: &PartitionLog) -> Vec<(i64, i16, i32, i64, i64)> {
    Batches::new(&read_all(log))
        .map(|b| {
            let b: BatchView<'_> = b.expect("whole batch");
            (
                b.producer_id(),
                b.producer_epoch(),
                b.base_sequence(),
                b.base_offset(),
                b.last_offset(),
            )
        })
        .collect()
}

fn snapshots_in(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".snapshot"))
        .collect()
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

fn remove_snapshots(dir: &Path) {
    for name in snapshots_in(dir) {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
}

fn assert_out_of_order(r: Result<AppendInfo, LogError>, expected: i32) {
    match r {
        Err(LogError::OutOfOrderSequence {
            expected_sequence, ..
        }) => assert_eq!(expected_sequence, expected),
        other => panic!("expected OutOfOrderSequence, got {other:?}"),
    }
}

#[test]
fn given_retried_batch_when_appended_again_should_acknowledge_once_and_store_once() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    let first = send(&log, PID, 0, 0, 3).unwrap();
    assert!(!first.duplicate);
    assert_eq!((first.base_offset, first.last_offset), (0, 2));
    let second = send(&log, PID, 0, 3, 2).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (3, 4));

    let retry = send(&log, PID, 0, 0, 3).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
    assert_eq!((retry.size_bytes, retry.batch_count), (0, 1));
    assert_eq!(retry.max_timestamp_ms, T0_MS);
    assert_eq!(retry.log_append_time_ms, -1);
    let retry = send(&log, PID, 0, 3, 2).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (3, 4));

    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(
        stored(&log),
        vec![(PID, 0, 0, 0, 2), (PID, 0, 3, 3, 4)],
        "each batch stored once"
    );
    let state = log.producer_state(PID).unwrap();
    assert_eq!(
        (state.producer_epoch, state.last_sequence, state.last_offset),
        (0, 4, 4)
    );
    assert_eq!(log.active_producers(), 1);
    // The producer continues after its retries.
    assert_eq!(send(&log, PID, 0, 5, 1).unwrap().base_offset, 5);
}

#[test]
fn given_log_append_time_when_duplicate_should_report_the_original_append_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config);
    let mut b = producer_batch(PID, 0, 0, 1, T0_MS);
    log.append(&mut b, 0, T0_MS + 5).unwrap();
    let mut b = producer_batch(PID, 0, 0, 1, T0_MS);
    let retry = log.append(&mut b, 0, T0_MS + 99).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.log_append_time_ms, T0_MS + 5);
}

#[test]
fn given_gap_in_sequence_should_reject_out_of_order_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    send(&log, PID, 0, 0, 2).unwrap();
    assert_out_of_order(send(&log, PID, 0, 3, 1), 2);
    // Overlapping but not identical to a stored batch: not a duplicate either.
    assert_out_of_order(send(&log, PID, 0, 1, 1), 2);
    assert_out_of_order(send(&log, PID, 0, 0, 1), 2);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 1);
}

#[test]
fn given_older_epoch_should_reject_invalid_producer_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    send(&log, PID, 5, 0, 1).unwrap();
    match send(&log, PID, 4, 1, 1) {
        Err(LogError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch,
        }) => assert_eq!((producer_id, epoch, current_epoch), (PID, 4, 5)),
        other => panic!("expected InvalidProducerEpoch, got {other:?}"),
    }
    // Even a retry of an old epoch's batch is fenced, not a duplicate.
    assert!(matches!(
        send(&log, PID, 4, 0, 1),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn given_epoch_bump_with_sequence_zero_should_accept_and_restart_the_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    send(&log, PID, 0, 0, 3).unwrap();
    send(&log, PID, 0, 3, 3).unwrap();
    assert_out_of_order(send(&log, PID, 1, 6, 1), 0);
    let bumped = send(&log, PID, 1, 0, 2).unwrap();
    assert!(!bumped.duplicate);
    assert_eq!(bumped.base_offset, 6);
    let state = log.producer_state(PID).unwrap();
    assert_eq!((state.producer_epoch, state.last_sequence), (1, 1));
    // The old epoch is fenced now; the new one continues.
    assert!(matches!(
        send(&log, PID, 0, 6, 1),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    assert!(send(&log, PID, 1, 0, 2).unwrap().duplicate);
    assert_eq!(send(&log, PID, 1, 2, 1).unwrap().base_offset, 8);
}

#[test]
fn given_unknown_producer_with_nonzero_sequence_should_accept_as_kafka_does() {
    // Kafka's non-transactional rule: a producer the partition has no state for may start at
    // any sequence (and epoch); from then on its batches must continue from there.
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let first = send(&log, PID, 0, 7, 2).unwrap();
    assert!(!first.duplicate);
    assert_eq!((first.base_offset, first.last_offset), (0, 1));
    let state = log.producer_state(PID).unwrap();
    assert_eq!(
        (state.producer_epoch, state.last_sequence, state.last_offset),
        (0, 8, 1)
    );
    // Now it has state: a gap, or starting over at 0, is out of order; a retry is a duplicate.
    assert_out_of_order(send(&log, PID, 0, 10, 1), 9);
    assert_out_of_order(send(&log, PID, 0, 0, 1), 9);
    let retry = send(&log, PID, 0, 7, 2).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (0, 1));
    assert_eq!(send(&log, PID, 0, 9, 1).unwrap().base_offset, 2);

    // The same at a non-zero epoch.
    assert_eq!(send(&log, PID + 1, 3, 1, 1).unwrap().base_offset, 3);
    assert_out_of_order(send(&log, PID + 1, 3, 3, 1), 2);
    assert!(send(&log, PID + 1, 3, 1, 1).unwrap().duplicate);
    assert_eq!(send(&log, PID + 1, 3, 2, 1).unwrap().base_offset, 4);

    // Within one record set, the second batch of a new producer must continue the first:
    // nothing of a set with a gap is written, and the producer stays unknown.
    let mut set = producer_batch(PID + 2, 0, 5, 2, T0_MS);
    set.extend_from_slice(&producer_batch(PID + 2, 0, 8, 1, T0_MS));
    assert_out_of_order(log.append(&mut set, 0, T0_MS), 7);
    assert_eq!(log.producer_state(PID + 2), None);
    assert_eq!(log.log_end_offset(), 5);
    let mut set = producer_batch(PID + 2, 0, 5, 2, T0_MS);
    set.extend_from_slice(&producer_batch(PID + 2, 0, 7, 1, T0_MS));
    let info = log.append(&mut set, 0, T0_MS).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (5, 7));
    assert_eq!(log.producer_state(PID + 2).unwrap().last_sequence, 7);

    assert_eq!(
        stored(&log),
        vec![
            (PID, 0, 7, 0, 1),
            (PID, 0, 9, 2, 2),
            (PID + 1, 3, 1, 3, 3),
            (PID + 1, 3, 2, 4, 4),
            (PID + 2, 0, 5, 5, 6),
            (PID + 2, 0, 7, 7, 7),
        ],
        "each batch stored once"
    );
    assert_eq!(log.active_producers(), 3);

    // The state rebuilt from the log after a crash (no snapshots) starts where the producers
    // started, and still refuses gaps.
    drop(log);
    remove_snapshots(tmp.path());
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.active_producers(), 3);
    assert!(send(&log, PID, 0, 9, 1).unwrap().duplicate);
    assert_out_of_order(send(&log, PID, 0, 11, 1), 10);
    assert_out_of_order(send(&log, PID + 2, 0, 9, 1), 8);
    assert_eq!(send(&log, PID + 1, 3, 3, 1).unwrap().base_offset, 8);
}

#[test]
fn given_duplicate_of_a_batch_older_than_the_last_five_should_reject_out_of_order() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    for seq in 0..7 {
        send(&log, PID, 0, seq, 1).unwrap();
    }
    for seq in 2..7 {
        let info = send(&log, PID, 0, seq, 1).unwrap();
        assert!(info.duplicate);
        assert_eq!(info.base_offset, i64::from(seq));
    }
    assert_out_of_order(send(&log, PID, 0, 1, 1), 7);
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn given_record_set_with_a_rejected_later_batch_should_write_nothing_and_keep_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    send(&log, PID, 0, 0, 1).unwrap();
    // Two in-order batches of one producer and one of another: all accepted.
    let mut set = producer_batch(PID, 0, 1, 2, T0_MS);
    set.extend_from_slice(&producer_batch(PID, 0, 3, 1, T0_MS));
    set.extend_from_slice(&producer_batch(PID + 1, 0, 0, 1, T0_MS));
    let info = log.append(&mut set, 0, T0_MS).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batch_count),
        (1, 4, 3)
    );
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 3);

    // The second batch has a gap: nothing of the set is written, no state changes.
    let mut set = producer_batch(PID + 2, 0, 0, 1, T0_MS);
    set.extend_from_slice(&producer_batch(PID, 0, 4, 1, T0_MS));
    set.extend_from_slice(&producer_batch(PID, 0, 6, 1, T0_MS));
    assert_out_of_order(log.append(&mut set, 0, T0_MS), 5);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.producer_state(PID + 2), None);
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 3);

    // A retried batch followed by a new one is refused too, rather than half dropped.
    let mut set = producer_batch(PID, 0, 3, 1, T0_MS);
    set.extend_from_slice(&producer_batch(PID, 0, 4, 1, T0_MS));
    assert!(matches!(
        log.append(&mut set, 0, T0_MS),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    // A whole retried set is a duplicate spanning the originals.
    let mut set = producer_batch(PID, 0, 1, 2, T0_MS);
    set.extend_from_slice(&producer_batch(PID, 0, 3, 1, T0_MS));
    let info = log.append(&mut set, 0, T0_MS).unwrap();
    assert!(info.duplicate);
    assert_eq!(
        (info.base_offset, info.last_offset, info.batch_count),
        (1, 3, 2)
    );
    assert_eq!(log.log_end_offset(), 5);
}

#[test]
fn given_transactional_batches_should_be_tracked_and_control_batches_not_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    let mut b = producer_batch(PID, 0, 0, 2, T0_MS);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    log.append(&mut b, 0, T0_MS).unwrap();
    let mut b = producer_batch(PID, 0, 0, 2, T0_MS);
    set_attribute_bits(&mut b, ATTR_TRANSACTIONAL, true);
    assert!(log.append(&mut b, 0, T0_MS).unwrap().duplicate);
    // A control batch (a transaction marker) carries no sequence to check.
    let mut marker = runnel_model::control::build_marker_batch(
        &runnel_model::control::Marker {
            producer_id: PID,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: true,
        },
        T0_MS,
    );
    assert_eq!(log.append(&mut marker, 0, T0_MS).unwrap().base_offset, 2);
    // A control batch that is not a well-formed marker is refused.
    let mut bogus = producer_batch(PID, 0, -1, 1, T0_MS);
    set_attribute_bits(&mut bogus, ATTR_CONTROL | ATTR_TRANSACTIONAL, true);
    assert!(matches!(
        log.append(&mut bogus, 0, T0_MS),
        Err(LogError::InvalidRecords(_))
    ));
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 1);
    // Batches without a producer id are not tracked.
    append(&log, 2);
    append(&log, 2);
    assert_eq!(log.active_producers(), 1);
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn given_clean_reopen_should_still_detect_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    for seq in 0..10 {
        send(&log, PID, 0, seq * 2, 2).unwrap();
    }
    log.close().unwrap();
    drop(log);
    assert!(snapshots_in(tmp.path()).contains(&"00000000000000000020.snapshot".to_string()));

    let log = open(fs(), tmp.path(), small_config());
    let retry = send(&log, PID, 0, 18, 2).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (18, 19));
    assert_out_of_order(send(&log, PID, 0, 21, 1), 20);
    assert_eq!(send(&log, PID, 0, 20, 1).unwrap().base_offset, 20);
    assert_eq!(log.log_end_offset(), 21);
}

#[test]
fn given_crash_reopen_should_still_detect_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    for seq in 0..10 {
        send(&log, PID, 0, seq * 2, 2).unwrap();
    }
    // Crash: no close, so no snapshot at the log end (only those of the rolls).
    drop(log);
    assert!(!snapshots_in(tmp.path()).contains(&"00000000000000000020.snapshot".to_string()));

    let log = open(fs(), tmp.path(), small_config());
    for seq in 5..10 {
        let retry = send(&log, PID, 0, seq * 2, 2).unwrap();
        assert!(retry.duplicate, "{seq}");
        assert_eq!(retry.base_offset, i64::from(seq) * 2);
    }
    assert_eq!(log.log_end_offset(), 20);
    let state = log.producer_state(PID).unwrap();
    assert_eq!((state.last_sequence, state.last_offset), (19, 19));
}

#[test]
fn given_snapshots_deleted_when_reopened_should_rebuild_from_the_log() {
    for clean in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(fs(), tmp.path(), small_config());
        for seq in 0..10 {
            send(&log, PID, 0, seq, 1).unwrap();
            send(&log, PID + 1, 2, seq * 3, 3).unwrap();
        }
        if clean {
            log.close().unwrap();
        }
        drop(log);
        assert!(!snapshots_in(tmp.path()).is_empty());
        remove_snapshots(tmp.path());

        let log = open(fs(), tmp.path(), small_config());
        assert_eq!(log.active_producers(), 2, "clean: {clean}");
        assert!(send(&log, PID, 0, 9, 1).unwrap().duplicate);
        assert!(send(&log, PID + 1, 2, 27, 3).unwrap().duplicate);
        assert_out_of_order(send(&log, PID + 1, 2, 31, 1), 30);
        assert_eq!(log.log_end_offset(), 40);
        let state = log.producer_state(PID + 1).unwrap();
        assert_eq!(
            (state.producer_epoch, state.last_sequence, state.last_offset),
            (2, 29, 39)
        );
    }
}

#[test]
fn given_corrupt_snapshot_when_reopened_should_rebuild_from_the_log_and_remove_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    for seq in 0..10 {
        send(&log, PID, 0, seq, 1).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let newest = snapshot_path(tmp.path(), 10);
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&newest, &bytes).unwrap();

    let log = open(fs(), tmp.path(), small_config());
    assert!(!newest.exists(), "the damaged snapshot is removed");
    assert!(send(&log, PID, 0, 9, 1).unwrap().duplicate);
    assert_eq!(log.producer_state(PID).unwrap().last_offset, 9);

    // A snapshot that is not a snapshot at all is ignored the same way.
    log.close().unwrap();
    drop(log);
    std::fs::write(snapshot_path(tmp.path(), 10), b"garbage").unwrap();
    let log = open(fs(), tmp.path(), small_config());
    assert!(send(&log, PID, 0, 9, 1).unwrap().duplicate);
    assert_eq!(send(&log, PID, 0, 10, 1).unwrap().base_offset, 10);
}

#[test]
fn given_log_truncated_by_recovery_should_leave_producer_state_matching_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    for seq in 0..4 {
        send(&log, PID, 0, seq, 1).unwrap();
    }
    log.close().unwrap();
    drop(log);
    assert_eq!(
        snapshots_in(tmp.path()),
        vec!["00000000000000000004.snapshot"]
    );
    // The last batch is torn after the close (the disk lost it): recovery cuts it, and the
    // snapshot taken at offset 4 describes a log that no longer exists.
    std::fs::remove_file(
        tmp.path()
            .join(runnel_log::partition_log::CLEAN_SHUTDOWN_FILE),
    )
    .unwrap();
    let log_path = seg_path(tmp.path(), 0, ".log");
    let len = file_len(&log_path);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let log = open(fs(), tmp.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 3);
    assert!(
        snapshots_in(tmp.path()).is_empty(),
        "snapshot past the log end removed"
    );
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 2);
    // Sequence 3 is not in the log: its retry is appended (once), not called a duplicate.
    let info = send(&log, PID, 0, 3, 1).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 3);
    assert!(send(&log, PID, 0, 3, 1).unwrap().duplicate);
    assert_eq!(
        stored(&log).iter().map(|b| b.2).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn given_many_rolls_should_keep_at_most_two_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let mut seq = 0;
    for i in 0..60 {
        let records = 2 + i % 3;
        send(&log, PID, 0, seq, records).unwrap_or_else(|e| panic!("{seq}: {e}"));
        seq += records as i32;
    }
    assert!(log.segment_base_offsets().len() > 4);
    let snapshots = snapshots_in(tmp.path());
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = *log.segment_base_offsets().last().unwrap();
    assert_eq!(snapshots[1], format!("{newest:020}.snapshot"));
    log.close().unwrap();
    assert_eq!(snapshots_in(tmp.path()).len(), 2);
    assert!(snapshots_in(tmp.path()).contains(&format!("{:020}.snapshot", log.log_end_offset())));
}

#[test]
fn given_failed_snapshot_write_at_roll_should_keep_appending_and_rebuild_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(fs());
    let log = PartitionLog::open(storage.clone(), tmp.path(), small_config(), T0_MS).unwrap();
    let mut seq = 0;
    while log.segment_base_offsets().len() < 2 {
        storage.fail_next_write(".snapshot.tmp", WriteFault::Fail);
        send(&log, PID, 0, seq, 2).unwrap();
        seq += 2;
    }
    storage.heal();
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert!(send(&log, PID, 0, seq - 2, 2).unwrap().duplicate);
    assert_eq!(log.log_end_offset(), i64::from(seq));
}

#[test]
fn given_failed_write_should_leave_producer_state_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(fs());
    let log = PartitionLog::open(storage.clone(), tmp.path(), LogConfig::default(), T0_MS).unwrap();
    send(&log, PID, 0, 0, 1).unwrap();
    storage.fail_next_write(".log", WriteFault::NoSpace { prefix_bytes: 10 });
    assert!(matches!(send(&log, PID, 0, 1, 1), Err(LogError::Io { .. })));
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 0);
    // The client's retry is appended, not mistaken for a duplicate.
    let info = send(&log, PID, 0, 1, 1).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 1);
}

#[test]
fn given_idle_producer_when_expired_should_forget_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 60_000,
        ..LogConfig::default()
    };
    let send_at = |log: &PartitionLog, pid: i64, seq: i32, now_ms: i64| {
        let mut b = producer_batch(pid, 0, seq, 1, T0_MS);
        log.append(&mut b, 0, now_ms)
    };
    let log = open(fs(), tmp.path(), config.clone());
    send_at(&log, PID, 0, T0_MS).unwrap();
    send_at(&log, PID + 1, 0, T0_MS + 30_000).unwrap();
    assert_eq!(log.expire_producers(T0_MS + 59_999), 0);
    assert_eq!(log.expire_producers(T0_MS + 60_000), 1);
    assert_eq!(log.producer_state(PID), None);
    assert!(log.producer_state(PID + 1).is_some());

    // Appends expire lazily too. Until its expiration the other producer is known, so a gap
    // is out of order...
    assert_out_of_order(send_at(&log, PID + 1, 5, T0_MS + 89_999), 1);
    assert_eq!(log.active_producers(), 1);
    // ...and from then on it is forgotten: like a new producer (Kafka's rule), it may go on
    // at any sequence, here after a gap, and must continue from there.
    let info = send_at(&log, PID + 1, 5, T0_MS + 90_000).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 2);
    assert_eq!(log.producer_state(PID + 1).unwrap().last_sequence, 5);
    assert_out_of_order(send_at(&log, PID + 1, 7, T0_MS + 90_000), 6);
    assert_eq!(log.active_producers(), 1);
    assert_eq!(log.expire_producers(T0_MS + 150_000), 1);
    assert_eq!(log.active_producers(), 0);

    // Expired producers stay expired across a clean reopen...
    log.close().unwrap();
    drop(log);
    let log = open(fs(), tmp.path(), config);
    assert_eq!(log.active_producers(), 0);
    // ...and an idle producer goes on where it was, its retries now new batches.
    assert_eq!(
        send_at(&log, PID, 1, T0_MS + 200_000).unwrap().base_offset,
        3
    );
    assert_eq!(
        send_at(&log, PID + 1, 6, T0_MS + 200_000)
            .unwrap()
            .base_offset,
        4
    );
    assert_out_of_order(send_at(&log, PID, 3, T0_MS + 200_000), 2);
    assert_eq!(
        stored(&log).iter().map(|b| (b.0, b.2)).collect::<Vec<_>>(),
        vec![(PID, 0), (PID + 1, 0), (PID + 1, 5), (PID, 1), (PID + 1, 6)]
    );
}

#[test]
fn given_more_producers_than_the_bound_should_evict_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    send(&log, 0, 0, 0, 1).unwrap();
    let total = PRODUCERS_PER_PARTITION_MAX as i64 + 1;
    // One record set with a batch of each further producer (one write, fast).
    let mut set = Vec::new();
    for pid in 1..total {
        set.extend_from_slice(&producer_batch(pid, 0, 0, 1, T0_MS));
    }
    log.append(&mut set, 0, T0_MS).unwrap();
    let check = |log: &PartitionLog, label: &str| {
        assert_eq!(
            log.active_producers(),
            PRODUCERS_PER_PARTITION_MAX,
            "{label}"
        );
        assert_eq!(
            log.producer_state(0),
            None,
            "{label}: the oldest is evicted"
        );
        assert!(log.producer_state(1).is_some(), "{label}");
        assert!(log.producer_state(total - 1).is_some(), "{label}");
    };
    check(&log, "live");

    log.close().unwrap();
    drop(log);
    let log = open(fs(), tmp.path(), LogConfig::default());
    check(&log, "from the snapshot");

    drop(log);
    remove_snapshots(tmp.path());
    let log = open(fs(), tmp.path(), LogConfig::default());
    check(&log, "rebuilt from the log");
    // A producer still tracked refuses a gap...
    assert_out_of_order(send(&log, 1, 0, 5, 1), 1);
    // ...but the evicted one is unknown now: like a new producer (Kafka's rule) it may go on at
    // any sequence, and must continue from there. Its state evicts the least recently used
    // one, producer 1, which is then free to jump as well.
    let info = send(&log, 0, 0, 5, 1).unwrap();
    assert!(!info.duplicate);
    assert_eq!(log.producer_state(0).unwrap().last_sequence, 5);
    assert_eq!(log.producer_state(1), None);
    assert_eq!(log.active_producers(), PRODUCERS_PER_PARTITION_MAX);
    assert_out_of_order(send(&log, 0, 0, 7, 1), 6);
    assert!(!send(&log, 1, 0, 5, 1).unwrap().duplicate);
    assert_eq!(log.producer_state(1).unwrap().last_sequence, 5);
    assert_eq!(log.producer_state(2), None, "evicted in turn");
    assert_eq!(send(&log, 0, 0, 6, 1).unwrap().base_offset, total + 2);
}

#[test]
fn given_sequence_at_i32_max_should_wrap_to_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    // Batches spanning sequences 0..=MAX-1 and 0..=MAX-2 (test-only: a huge last offset delta
    // over one record).
    let mut b = producer_batch(PID, 0, 0, 1, T0_MS);
    set_last_offset_delta(&mut b, i32::MAX - 1);
    log.append(&mut b, 0, T0_MS).unwrap();
    let mut b = producer_batch(PID + 1, 0, 0, 1, T0_MS);
    set_last_offset_delta(&mut b, i32::MAX - 2);
    log.append(&mut b, 0, T0_MS).unwrap();
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, i32::MAX - 1);

    // PID: a batch ending at MAX, then the sequence wraps to 0.
    let at_max = send(&log, PID, 0, i32::MAX, 1).unwrap();
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, i32::MAX);
    assert_out_of_order(send(&log, PID, 0, 1, 1), 0);
    let wrapped = send(&log, PID, 0, 0, 2).unwrap();
    assert!(!wrapped.duplicate);
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 1);
    assert!(send(&log, PID, 0, 0, 2).unwrap().duplicate);
    let retry = send(&log, PID, 0, i32::MAX, 1).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, at_max.base_offset);

    // PID + 1: one batch crossing the wrap, MAX-1, MAX, 0, 1; the next starts at 2.
    let crossing = send(&log, PID + 1, 0, i32::MAX - 1, 4).unwrap();
    assert_eq!(log.producer_state(PID + 1).unwrap().last_sequence, 1);
    assert_out_of_order(send(&log, PID + 1, 0, 0, 1), 2);
    assert!(send(&log, PID + 1, 0, i32::MAX - 1, 4).unwrap().duplicate);

    // After a crash without snapshots, the wrapped state is rebuilt from the log.
    drop(log);
    remove_snapshots(tmp.path());
    let log = open(fs(), tmp.path(), LogConfig::default());
    assert_eq!(log.producer_state(PID).unwrap().last_sequence, 1);
    assert_eq!(log.producer_state(PID + 1).unwrap().last_sequence, 1);
    assert!(send(&log, PID, 0, 0, 2).unwrap().duplicate);
    let info = send(&log, PID + 1, 0, i32::MAX - 1, 4).unwrap();
    assert!(info.duplicate);
    assert_eq!(info.base_offset, crossing.base_offset);
    assert_eq!(
        send(&log, PID, 0, 2, 1).unwrap().base_offset,
        crossing.last_offset + 1
    );
}
