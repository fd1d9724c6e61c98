//! Behaviour of the public API on a healthy disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use runnel_log::partition_log::CLEAN_SHUTDOWN_FILE;
use runnel_log::testing::FaultyStorage;
use runnel_log::{FsStorage, LogConfig, LogError, PartitionLog, TimestampOffset, TimestampType};
use runnel_model::batch::{BatchView, Batches};

use crate::common::*;

#[test]
fn partition_log_should_be_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
    assert_send_sync::<Arc<PartitionLog>>();
}

#[test]
fn given_absent_dir_when_opened_should_create_empty_log_at_offset_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("topic-0");
    let log = open(fs(), &dir, LogConfig::default());
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        names_in(&dir),
        vec![
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex"
        ]
    );
    let r = log.read(0, 1000, i64::MAX, true).unwrap();
    assert!(r.bytes.is_empty());
    assert_eq!(r.next_offset, 0);
    assert_eq!(log.max_timestamp_offset(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
}

#[test]
fn given_appends_should_assign_contiguous_offsets_and_stamp_leader_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    let mut first = batch(3);
    let info = log.append(&mut first, 7, T0_MS).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert_eq!(info.log_append_time_ms, -1);
    assert_eq!(info.batch_count, 1);
    assert_eq!(info.size_bytes, first.len() as u64);
    // Two batches in one record set.
    let mut set = batch(2);
    set.extend_from_slice(&batch(4));
    let info = log.append(&mut set, 7, T0_MS).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batch_count),
        (3, 8, 2)
    );
    assert_eq!(log.log_end_offset(), 9);

    let all = read_all(&log);
    assert_eq!(offsets_of(&all), vec![(0, 2), (3, 4), (5, 8)]);
    for b in Batches::new(&all) {
        assert_eq!(b.unwrap().partition_leader_epoch(), 7);
    }
    // Stored exactly as the (rewritten) record sets.
    let mut expected = first.clone();
    expected.extend_from_slice(&set);
    assert_eq!(all, expected);
    assert_eq!(log.size_bytes(), expected.len() as u64);
}

#[test]
fn given_offset_inside_a_batch_when_read_should_return_the_whole_containing_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    for count in [3, 1, 5, 2, 4, 6, 1, 3] {
        append(&log, count);
    }
    let leo = log.log_end_offset();
    for offset in 0..leo {
        let r = log.read(offset, usize::MAX, i64::MAX, true).unwrap();
        let batches = offsets_of(&r.bytes);
        let (base, last) = batches[0];
        assert!(
            base <= offset && offset <= last,
            "{offset} in {base}..={last}"
        );
        assert_eq!(batches.last().unwrap().1 + 1, leo);
        assert_eq!(r.next_offset, leo);
        assert_eq!(r.log_end_offset, leo);
    }
}

#[test]
fn given_max_bytes_should_stop_before_exceeding_it_and_min_one_batch_should_override() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    let (_, b0) = append(&log, 2);
    let (_, b1) = append(&log, 2);
    append(&log, 2);
    let one = b0.len();
    let r = log.read(0, one + b1.len(), i64::MAX, false).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(0, 1), (2, 3)]);
    assert_eq!(r.batch_count, 2);
    assert_eq!(r.next_offset, 4);
    let r = log.read(0, one + b1.len() - 1, i64::MAX, false).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(0, 1)]);
    // The first batch alone is larger than max_bytes.
    let r = log.read(0, 10, i64::MAX, false).unwrap();
    assert!(r.bytes.is_empty());
    assert_eq!(r.next_offset, 0);
    let r = log.read(0, 10, i64::MAX, true).unwrap();
    assert_eq!(offsets_of(&r.bytes), vec![(0, 1)]);
}

#[test]
fn given_upper_bound_should_return_only_batches_ending_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    append(&log, 2); // 0..=1
    append(&log, 3); // 2..=4
    append(&log, 1); // 5
    assert_eq!(
        offsets_of(&log.read(0, usize::MAX, 5, true).unwrap().bytes),
        vec![(0, 1), (2, 4)]
    );
    assert_eq!(
        offsets_of(&log.read(0, usize::MAX, 4, true).unwrap().bytes),
        vec![(0, 1)]
    );
    assert!(log.read(0, usize::MAX, 1, true).unwrap().bytes.is_empty());
    assert!(log.read(3, usize::MAX, 3, true).unwrap().bytes.is_empty());
}

#[test]
fn given_offset_outside_the_log_when_read_should_be_out_of_range_and_log_end_should_be_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    append(&log, 3);
    assert!(log.read(3, 100, i64::MAX, true).unwrap().bytes.is_empty());
    for offset in [-1, 4, i64::MAX] {
        match log.read(offset, 100, i64::MAX, true) {
            Err(LogError::OffsetOutOfRange {
                offset: o,
                log_start_offset: 0,
                log_end_offset: 3,
            }) => assert_eq!(o, offset),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn given_small_segment_bytes_should_roll_and_read_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let mut expected = Vec::new();
    for _ in 0..20 {
        let (_, stored) = append(&log, 3);
        expected.extend_from_slice(&stored);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3, "{bases:?}");
    for &base in &bases {
        assert!(seg_path(tmp.path(), base, ".log").exists());
        assert!(file_len(&seg_path(tmp.path(), base, ".log")) <= 1024);
    }
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.size_bytes(), expected.len() as u64);
    // A read starting in one segment continues into the next ones.
    let r = log.read(bases[1], usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(
        offsets_of(&r.bytes).last().unwrap().1,
        log.log_end_offset() - 1
    );
}

#[test]
fn given_segment_older_than_segment_ms_when_appending_should_roll() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config);
    let mut b = batch(1);
    log.append(&mut b, 0, T0_MS).unwrap();
    let mut b = batch(1);
    log.append(&mut b, 0, T0_MS + 1_000).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    let mut b = batch(1);
    log.append(&mut b, 0, T0_MS + 1_001).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn given_full_index_when_appending_should_roll() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        segment_index_bytes: 36, // 4 offset entries, 3 time entries
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config);
    for _ in 0..10 {
        append(&log, 1);
    }
    // The first batch of a segment gets no entry; the next four fill the offset index.
    assert_eq!(log.segment_base_offsets(), vec![0, 5]);
    assert_eq!(offsets_of(&read_all(&log)).len(), 10);
}

#[test]
fn given_record_set_larger_than_a_segment_should_reject_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    let mut big = batch_with(4, 400, T0_MS);
    assert!(matches!(
        log.append(&mut big, 0, T0_MS),
        Err(LogError::RecordSetTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn given_malformed_record_set_should_reject_it_and_leave_the_log_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    append(&log, 2);
    let mut trailing = batch(1);
    trailing.extend_from_slice(&[1, 2, 3]);
    let mut bad_magic = batch(1);
    bad_magic[16] = 1;
    for mut bad in [Vec::new(), vec![0u8; 5], trailing, bad_magic] {
        assert!(matches!(
            log.append(&mut bad, 0, T0_MS),
            Err(LogError::InvalidRecords(_))
        ));
    }
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(offsets_of(&read_all(&log)), vec![(0, 1)]);
}

#[test]
fn given_log_append_time_should_stamp_the_append_time_and_keep_the_crc_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config);
    let mut b = batch_with(2, 4, 5);
    let info = log.append(&mut b, 0, T0_MS + 42).unwrap();
    assert_eq!(info.log_append_time_ms, T0_MS + 42);
    assert_eq!(info.max_timestamp_ms, T0_MS + 42);
    let all = read_all(&log);
    let view = BatchView::parse(&all).unwrap();
    view.validate().unwrap();
    assert!(view.is_log_append_time());
    assert_eq!(view.max_timestamp(), T0_MS + 42);
}

/// Appends batches with the given timestamps (one record each); returns the log.
fn log_with_timestamps(dir: &std::path::Path, timestamps: &[i64]) -> PartitionLog {
    let config = LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let log = open(fs(), dir, config);
    for &ts in timestamps {
        let mut b = batch_with(1, 20, ts);
        log.append(&mut b, 0, T0_MS).unwrap();
    }
    assert!(log.segment_base_offsets().len() > 1);
    log
}

/// The first batch (= offset here) whose timestamp is >= target, by brute force.
fn expected_for(timestamps: &[i64], target: i64) -> Option<TimestampOffset> {
    timestamps
        .iter()
        .position(|&t| t >= target)
        .map(|i| TimestampOffset {
            timestamp_ms: timestamps[i],
            offset: i as i64,
        })
}

#[test]
fn given_timestamps_when_searching_by_time_should_find_first_batch_at_or_after_target() {
    let tmp = tempfile::tempdir().unwrap();
    // Mostly rising, with some out-of-order timestamps.
    let timestamps: Vec<i64> = (0..40)
        .map(|i| 1_000 + i * 10 - if i % 7 == 3 { 35 } else { 0 })
        .collect();
    let log = log_with_timestamps(tmp.path(), &timestamps);
    let check = |log: &PartitionLog| {
        for target in (900..1_420).step_by(3) {
            assert_eq!(
                log.offset_for_timestamp(target).unwrap(),
                expected_for(&timestamps, target),
                "target {target}"
            );
        }
        assert_eq!(
            log.max_timestamp_offset(),
            Some(TimestampOffset {
                timestamp_ms: 1_390,
                offset: 39
            })
        );
    };
    check(&log);
    log.close().unwrap();
    check(&open(fs(), tmp.path(), small_config()));
}

#[test]
fn given_equal_max_timestamps_should_report_the_first_batch_carrying_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = log_with_timestamps(tmp.path(), &[5, 9, 3, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        log.max_timestamp_offset(),
        Some(TimestampOffset {
            timestamp_ms: 9,
            offset: 1
        })
    );
    assert_eq!(log.offset_for_timestamp(10).unwrap(), None);
}

#[test]
fn given_leader_epochs_should_answer_offset_for_leader_epoch_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    for (epoch, count) in [(0, 2), (0, 3), (2, 1), (5, 4)] {
        let mut b = batch(count);
        log.append(&mut b, epoch, T0_MS).unwrap();
    }
    let check = |log: &PartitionLog| {
        assert_eq!(log.leader_epochs(), vec![(0, 0), (2, 5), (5, 6)]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 5));
        assert_eq!(log.end_offset_for_epoch(1), (0, 5));
        assert_eq!(log.end_offset_for_epoch(2), (2, 6));
        assert_eq!(log.end_offset_for_epoch(5), (5, 10));
        assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
        assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));
    };
    check(&log);
    let mut b = batch(1);
    assert!(matches!(
        log.append(&mut b, 4, T0_MS),
        Err(LogError::StaleLeaderEpoch {
            epoch: 4,
            latest_epoch: 5
        })
    ));
    drop(log); // crash: the checkpoint was written when each epoch started
    check(&open(fs(), tmp.path(), LogConfig::default()));
}

#[test]
fn given_flush_messages_one_should_fsync_every_append() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(Arc::new(FsStorage::new()));
    let config = LogConfig {
        flush_messages: 1,
        ..LogConfig::default()
    };
    let log = open(storage.clone(), tmp.path(), config);
    append(&log, 2); // also checkpoints the new leader epoch
    let before = storage.sync_count();
    append(&log, 2);
    append(&log, 2);
    assert_eq!(storage.sync_count() - before, 2);
    log.flush().unwrap();
    assert_eq!(storage.sync_count() - before, 2, "nothing left to flush");
}

#[test]
fn given_flush_ms_should_fsync_only_once_the_oldest_unflushed_append_is_old_enough() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(Arc::new(FsStorage::new()));
    let config = LogConfig {
        flush_ms: 500,
        ..LogConfig::default()
    };
    let log = open(storage.clone(), tmp.path(), config);
    append(&log, 1); // also checkpoints the new leader epoch
    log.flush().unwrap();
    log.maybe_flush(T0_MS + 10_000).unwrap();
    let before = storage.sync_count();
    let mut b = batch(1);
    log.append(&mut b, 0, T0_MS).unwrap();
    log.maybe_flush(T0_MS + 499).unwrap();
    assert_eq!(storage.sync_count(), before);
    log.maybe_flush(T0_MS + 500).unwrap();
    assert_eq!(storage.sync_count(), before + 1);
    log.maybe_flush(T0_MS + 10_000).unwrap();
    assert_eq!(storage.sync_count(), before + 1);
}

#[test]
fn given_close_should_leave_a_marker_that_the_next_open_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    for _ in 0..10 {
        append(&log, 2);
    }
    let before = read_all(&log);
    log.close().unwrap();
    log.close().unwrap();
    assert!(tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert!(matches!(
        log.append(&mut batch(1), 0, T0_MS),
        Err(LogError::Closed { .. })
    ));
    assert!(matches!(
        log.read(0, 10, i64::MAX, true),
        Err(LogError::Closed { .. })
    ));
    let log = open(fs(), tmp.path(), small_config());
    assert!(!tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(read_all(&log), before);
    assert_eq!(log.log_end_offset(), 20);
}

#[test]
fn given_delete_should_remove_the_partition_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-3");
    let log = open(fs(), &dir, small_config());
    append(&log, 2);
    log.delete().unwrap();
    assert!(!dir.exists());
    assert_eq!(log.log_end_offset(), 2);
    assert!(matches!(
        log.append(&mut batch(1), 0, T0_MS),
        Err(LogError::Closed { .. })
    ));
}

#[test]
fn given_concurrent_appends_when_reading_should_only_ever_see_whole_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(open(fs(), tmp.path(), small_config()));
    const APPENDS: usize = 300;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|seed| {
            let log = Arc::clone(&log);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut i = seed;
                // Bounded: stops when the writer is done (the writer's loop is bounded).
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let leo = log.log_end_offset();
                    let start = if leo == 0 { 0 } else { (i * 7919) as i64 % leo };
                    let r = log.read(start, 700, i64::MAX, true).unwrap();
                    let mut expected = start;
                    let mut first = true;
                    for b in Batches::new(&r.bytes) {
                        let b = b.expect("whole batches only");
                        b.validate().unwrap();
                        if first {
                            assert!(b.base_offset() <= start && start <= b.last_offset());
                            first = false;
                        } else {
                            assert_eq!(b.base_offset(), expected);
                        }
                        expected = b.next_offset();
                    }
                    assert!(expected <= r.log_end_offset);
                    reads += 1;
                    i += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..APPENDS {
        append(&log, 1 + i % 4);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(offsets_of(&read_all(&log)).len(), APPENDS);
}

/// `append_shared` stores exactly what `append` stores (and answers the same), whether it
/// writes the batches as they are (large batches), copies them (small batches) or has to
/// restamp them (LogAppendTime); and its record set is left untouched.
#[test]
fn given_shared_record_set_when_appended_should_store_what_append_stores_and_leave_it_untouched() {
    let large = || {
        let mut set = batch_with(40, 2_000, T0_MS);
        set.extend_from_slice(&batch_with(50, 1_700, T0_MS + 1));
        set
    };
    let small = || {
        let mut set = batch(3);
        set.extend_from_slice(&batch(5));
        set
    };
    type Case = (&'static str, fn() -> Vec<u8>, TimestampType);
    let cases: [Case; 3] = [
        (
            "large batches, written as they are",
            large,
            TimestampType::CreateTime,
        ),
        ("small batches, copied", small, TimestampType::CreateTime),
        (
            "LogAppendTime, copied and restamped",
            large,
            TimestampType::LogAppendTime,
        ),
    ];
    for (name, make, timestamp_type) in cases {
        let config = LogConfig {
            timestamp_type,
            ..LogConfig::default()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let copied = open(fs(), a.path(), config.clone());
        let faulty = FaultyStorage::new(fs());
        let shared = open(faulty.clone(), b.path(), config.clone());
        for round in 0..3 {
            let original = make();
            let mut in_place = original.clone();
            let expected = copied.append(&mut in_place, 4, T0_MS + round).unwrap();
            // Short writes on the second round: the parts are completed like any write.
            if round == 1 {
                faulty.fail_next_write(
                    ".log",
                    runnel_log::testing::WriteFault::Short { max_bytes: 7 },
                );
            }
            let got = shared
                .append_shared(&original, 4, T0_MS + round, None)
                .unwrap();
            assert_eq!(got, expected, "{name}: round {round}");
            assert_eq!(
                original,
                make(),
                "{name}: the shared record set is not modified"
            );
        }
        assert_eq!(read_all(&shared), read_all(&copied), "{name}: stored bytes");
        drop(shared);
        let reopened = open(fs(), b.path(), config);
        assert_eq!(
            read_all(&reopened),
            read_all(&copied),
            "{name}: after a reopen"
        );
        let _ = offsets_of(&read_all(&reopened));
    }
}

/// Kafka's `maybeAssignEpochStartOffset`: a new leader's epoch starts at the log end offset,
/// recorded durably then, so the epoch's first append writes no checkpoint.
#[test]
fn given_epoch_assigned_at_leadership_should_start_at_log_end_and_spare_the_first_append_the_checkpoint(
) {
    let tmp = tempfile::tempdir().unwrap();
    let faulty = FaultyStorage::new(fs());
    let log = open(faulty.clone(), tmp.path(), LogConfig::default());
    log.assign_epoch_start_offset(0).unwrap();
    assert_eq!(log.leader_epochs(), vec![(0, 0)]);
    append(&log, 3);
    // Later epochs start at the log end; older, equal and negative ones change nothing.
    log.assign_epoch_start_offset(2).unwrap();
    for epoch in [2, 1, -1] {
        log.assign_epoch_start_offset(epoch).unwrap();
    }
    assert_eq!(log.leader_epochs(), vec![(0, 0), (2, 3)]);
    // The first append of epoch 2 writes no checkpoint: a failure armed for it stays armed.
    faulty.fail_next_sync("leader-epoch-checkpoint.tmp");
    let mut b = batch(2);
    log.append(&mut b, 2, T0_MS).unwrap();
    // An epoch not assigned beforehand is written by its first append, which hits the fault.
    let mut b = batch(1);
    assert!(log.append(&mut b, 3, T0_MS).is_err());
    faulty.heal();
    drop(log);
    let reopened = open(fs(), tmp.path(), LogConfig::default());
    assert_eq!(reopened.leader_epochs(), vec![(0, 0), (2, 3)]);
    assert_eq!(reopened.end_offset_for_epoch(2), (2, 5));
}

/// `(.log, .index, .timeindex)` handles open.
fn handles(storage: &FaultyStorage) -> (u64, u64, u64) {
    (
        storage.open_handle_count(".log"),
        storage.open_handle_count(".index"),
        storage.open_handle_count(".timeindex"),
    )
}

/// Kafka creates a segment's index files with the segment; Runnel creates them too but opens
/// them only when an append or a lookup needs them, and closes them again once a segment is
/// loaded or sealed, so an idle partition holds one open file, not three (10,000 partitions
/// within a 20,000-file limit). Reads, time lookups, rolls and reopens must not notice.
#[test]
fn given_segment_whose_indexes_are_not_in_use_should_keep_only_its_log_open() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(fs());
    let config = LogConfig {
        index_interval_bytes: 4096,
        ..LogConfig::default()
    };
    let log = open(storage.clone(), tmp.path(), config.clone());
    assert_eq!(handles(&storage), (1, 0, 0), "a new log");
    assert!(seg_path(tmp.path(), 0, ".index").exists());
    assert!(seg_path(tmp.path(), 0, ".timeindex").exists());

    // One small batch: below the index interval, no entry, nothing opened.
    let mut timestamps = vec![T0_MS];
    let mut b = batch_with(1, 100, T0_MS);
    log.append(&mut b, 0, T0_MS).unwrap();
    assert_eq!(handles(&storage), (1, 0, 0), "after one small batch");
    assert_eq!(offsets_of(&read_all(&log)), vec![(0, 0)]);
    assert_eq!(
        log.offset_for_timestamp(T0_MS).unwrap(),
        Some(TimestampOffset {
            timestamp_ms: T0_MS,
            offset: 0
        })
    );

    // Closing seals: the final time entry opens the time index, which closes once durable.
    log.close().unwrap();
    assert_eq!(handles(&storage), (1, 0, 0), "closed");
    drop(log);
    assert_eq!(handles(&storage), (0, 0, 0), "after close");
    let log = open(storage.clone(), tmp.path(), config.clone());
    assert_eq!(handles(&storage), (1, 0, 0), "reopened below the interval");

    // Past the interval: the first entries open both indexes.
    for i in 1..40 {
        let ts = T0_MS + i * 10;
        let mut b = batch_with(1, 500, ts);
        log.append(&mut b, 0, T0_MS).unwrap();
        timestamps.push(ts);
    }
    assert_eq!(handles(&storage), (1, 1, 1), "after the first entries");
    assert!(file_len(&seg_path(tmp.path(), 0, ".index")) > 0);
    let check = |log: &PartitionLog| {
        for (i, &ts) in timestamps.iter().enumerate() {
            let r = log.read(i as i64, 1, i64::MAX, true).unwrap();
            assert_eq!(
                offsets_of(&r.bytes),
                vec![(i as i64, i as i64)],
                "read at {i}"
            );
            assert_eq!(
                log.offset_for_timestamp(ts).unwrap().map(|t| t.offset),
                Some(i as i64),
                "time lookup of {ts}"
            );
        }
    };
    check(&log);

    // A roll seals the segment and closes its indexes; lookups in it reopen them. The new
    // active segment's indexes stay closed while it has no entries.
    log.maybe_roll(T0_MS + config.segment_ms + 1).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 40]);
    assert_eq!(handles(&storage), (2, 0, 0), "after a roll");
    check(&log);
    assert_eq!(
        handles(&storage),
        (2, 1, 1),
        "after lookups in the sealed segment"
    );

    // A reopen checks every index and closes them; lookups reopen them.
    log.close().unwrap();
    drop(log);
    let log = open(storage.clone(), tmp.path(), config);
    assert_eq!(handles(&storage), (2, 0, 0), "reopened after the roll");
    check(&log);
    assert_eq!(handles(&storage), (2, 1, 1), "after lookups");
}

/// An index is opened before its segment is written: when it cannot be (no file handles
/// left), the append is refused, nothing is written, and the log stays usable.
#[test]
fn given_index_that_cannot_be_opened_when_appending_should_refuse_and_stay_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(fs());
    let config = LogConfig {
        index_interval_bytes: 100,
        ..LogConfig::default()
    };
    let log = open(storage.clone(), tmp.path(), config);
    // Past the index interval: the next append gets index entries.
    let mut first = batch_with(1, 200, T0_MS);
    log.append(&mut first, 0, T0_MS).unwrap();
    for kind in [".index", ".timeindex"] {
        storage.fail_next_open(kind);
        let mut b = batch_with(1, 500, T0_MS + 1);
        let refused = log.append(&mut b, 0, T0_MS);
        assert!(
            matches!(refused, Err(LogError::Io { .. })),
            "{kind}: {refused:?}"
        );
        assert_eq!(log.failure(), None, "{kind}");
        assert_eq!(log.log_end_offset(), 1, "{kind}");
        assert_eq!(read_all(&log), first, "{kind}");
        assert_eq!(
            file_len(&seg_path(tmp.path(), 0, ".log")),
            first.len() as u64
        );
    }
    let mut b = batch_with(1, 500, T0_MS + 1);
    log.append(&mut b, 0, T0_MS).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert!(file_len(&seg_path(tmp.path(), 0, ".index")) > 0);
    assert_eq!(offsets_of(&read_all(&log)), vec![(0, 0), (1, 1)]);
}
