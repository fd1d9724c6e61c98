//! Retention by time and size, the segment.ms roll timer, DeleteRecords, delayed file
//! deletion and run-time config changes.

use runnel_log::partition_log::LOG_START_OFFSET_CHECKPOINT_FILE;
use runnel_log::testing::FaultyStorage;
use runnel_log::{LogConfig, LogError, PartitionLog, TimestampType};
use std::path::Path;

use crate::common::*;

const MINUTE_MS: i64 = 60_000;

/// Appends `count` batches of 2 records timestamped (and appended at) `timestamp_ms`.
fn append_at(log: &PartitionLog, count: usize, timestamp_ms: i64) {
    for _ in 0..count {
        let mut bytes = batch_with(2, 40, timestamp_ms);
        log.append(&mut bytes, 0, timestamp_ms).expect("append");
    }
}

fn deleted_files(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".deleted"))
        .collect()
}

fn assert_out_of_range(log: &PartitionLog, offset: i64) {
    assert!(
        matches!(
            log.read(offset, usize::MAX, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ),
        "offset {offset}"
    );
}

#[test]
fn given_small_segments_when_retention_by_time_should_delete_old_segments_and_move_log_start() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    append_at(&log, 20, T0_MS);
    assert!(log.segment_base_offsets().len() >= 3);
    let first_new_offset = log.log_end_offset();
    append_at(&log, 20, T0_MS + 10 * MINUTE_MS);
    let end = log.log_end_offset();
    // The segments holding only old batches: they end at or before the first new batch.
    let expected_deleted = log
        .segment_base_offsets()
        .windows(2)
        .filter(|w| w[1] <= first_new_offset)
        .count();
    assert!(expected_deleted >= 2);

    // Nothing is old enough yet.
    let outcome = log
        .apply_retention(T0_MS + 5 * MINUTE_MS, 6 * MINUTE_MS, -1)
        .unwrap();
    assert_eq!(outcome.deleted_segments, 0);

    let now = T0_MS + 10 * MINUTE_MS;
    let outcome = log.apply_retention(now, 5 * MINUTE_MS, -1).unwrap();
    // Every segment whose largest timestamp is the old one goes; a segment that holds both
    // old and new batches stays.
    assert_eq!(outcome.deleted_segments, expected_deleted);
    assert_eq!(outcome.deleted_by_time, expected_deleted);
    assert!(!outcome.busy);
    let start = log.log_start_offset();
    assert_eq!(outcome.log_start_offset, start);
    assert_eq!(start, log.segment_base_offsets()[0]);
    assert!(start > 0);
    assert_out_of_range(&log, 0);
    assert_out_of_range(&log, start - 1);
    let all = offsets_of(&read_all(&log));
    assert_eq!(all.first().unwrap().0, start);
    assert_eq!(all.last().unwrap().1, end - 1);
    assert_eq!(
        log.size_bytes(),
        log.segment_base_offsets()
            .iter()
            .map(|&b| file_len(&seg_path(tmp.path(), b, ".log")))
            .sum::<u64>()
    );
    // The deleted segments' files wait under *.deleted; the log start is checkpointed.
    assert_eq!(deleted_files(tmp.path()).len(), 3 * expected_deleted);
    assert!(!seg_path(tmp.path(), 0, ".log").exists());
    let checkpoint =
        std::fs::read_to_string(tmp.path().join(LOG_START_OFFSET_CHECKPOINT_FILE)).unwrap();
    assert_eq!(checkpoint, format!("0\n{start}\n"));

    // After a crash (no close) the start and the data are the same, and the leftover
    // *.deleted files are removed at open.
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
    assert_out_of_range(&log, start - 1);
    assert!(deleted_files(tmp.path()).is_empty());
}

#[test]
fn given_retention_bytes_should_keep_the_log_within_the_bound_plus_one_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config();
    let log = open(fs(), tmp.path(), config.clone());
    append_at(&log, 60, T0_MS);
    let size_before = log.size_bytes();
    let bound = 3_000u64;
    assert!(size_before > 2 * bound);
    let outcome = log.apply_retention(T0_MS, -1, bound as i64).unwrap();
    assert!(outcome.deleted_segments > 0);
    assert_eq!(outcome.deleted_by_size, outcome.deleted_segments);
    assert_eq!(size_before - outcome.deleted_bytes, log.size_bytes());
    assert!(log.size_bytes() >= bound, "never below the bound");
    assert!(
        log.size_bytes() <= bound + config.segment_bytes,
        "{} > bound + one segment",
        log.size_bytes()
    );
    // The next run has nothing to do.
    assert_eq!(
        log.apply_retention(T0_MS, -1, bound as i64)
            .unwrap()
            .deleted_segments,
        0
    );
    // Retention -1 deletes nothing.
    assert_eq!(
        log.apply_retention(T0_MS + 1_000 * MINUTE_MS, -1, -1)
            .unwrap()
            .deleted_segments,
        0
    );
}

#[test]
fn given_only_an_active_segment_when_retention_should_never_delete_it_until_rolled() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: MINUTE_MS,
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config);
    append_at(&log, 3, T0_MS);
    let now = T0_MS + 60 * MINUTE_MS;
    for (retention_ms, retention_bytes) in [(0, -1), (-1, 0), (0, 0)] {
        let outcome = log
            .apply_retention(now, retention_ms, retention_bytes)
            .unwrap();
        assert_eq!(outcome.deleted_segments, 0);
        assert_eq!(log.segment_base_offsets(), vec![0]);
    }
    // The roll timer closes the idle segment; then retention can delete it.
    assert!(log.maybe_roll(now).unwrap());
    assert_eq!(log.segment_base_offsets(), vec![0, 6]);
    let outcome = log.apply_retention(now, 0, -1).unwrap();
    assert_eq!(outcome.deleted_segments, 1);
    assert_eq!(log.log_start_offset(), 6);
    assert_eq!(log.segment_base_offsets(), vec![6]);
    let r = log.read(6, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(r.batch_count, 0);
    assert_eq!(r.log_start_offset, 6);
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, 6);
    assert_eq!(info.log_start_offset, 6);
}

#[test]
fn given_segment_ms_when_maybe_roll_should_roll_only_a_non_empty_segment_older_than_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 10 * MINUTE_MS,
        ..LogConfig::default()
    };
    let log = open(fs(), tmp.path(), config.clone());
    // Empty: never rolled.
    assert!(!log.maybe_roll(T0_MS + 100 * MINUTE_MS).unwrap());
    append_at(&log, 1, T0_MS);
    assert!(
        !log.maybe_roll(T0_MS + 10 * MINUTE_MS).unwrap(),
        "not older yet"
    );
    assert!(log.maybe_roll(T0_MS + 10 * MINUTE_MS + 1).unwrap());
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    assert!(
        !log.maybe_roll(T0_MS + 100 * MINUTE_MS).unwrap(),
        "the new segment is empty"
    );
    // After a reopen the timer starts at the first batch's timestamp.
    append_at(&log, 1, T0_MS + 20 * MINUTE_MS);
    log.close().unwrap();
    let log = PartitionLog::open(fs(), tmp.path(), config, T0_MS + 25 * MINUTE_MS).unwrap();
    assert!(!log.maybe_roll(T0_MS + 29 * MINUTE_MS).unwrap());
    assert!(log.maybe_roll(T0_MS + 31 * MINUTE_MS).unwrap());
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4]);
}

#[test]
fn given_delete_records_should_move_the_start_delete_segments_below_it_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    append_at(&log, 30, T0_MS);
    let end = log.log_end_offset();
    let segments = log.segment_base_offsets();
    let hw = end - 4;

    // Beyond the high watermark, or negative: OffsetOutOfRange, nothing changes.
    assert!(matches!(
        log.delete_records(hw + 1, hw),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.delete_records(-2, hw),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_start_offset(), 0);

    // Into the middle of the third segment.
    let target = segments[2] + 1;
    assert_eq!(log.delete_records(target, hw).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(&log.segment_base_offsets()[..], &segments[2..]);
    assert_out_of_range(&log, target - 1);
    assert_out_of_range(&log, 0);
    // Reading at the start returns the batch holding it.
    let first = offsets_of(&read_all(&log))[0];
    assert!(first.0 <= target && target <= first.1);
    // Earliest (ListOffsets -2) is the start.
    let r = log.read(target, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(r.log_start_offset, target);
    // Going backwards changes nothing.
    assert_eq!(log.delete_records(3, hw).unwrap(), target);

    // -1 means the high watermark.
    assert_eq!(log.delete_records(-1, hw).unwrap(), hw);
    assert_eq!(log.log_start_offset(), hw);
    let last_segment = *log.segment_base_offsets().last().unwrap();
    assert!(log.segment_base_offsets()[0] <= hw);
    assert_out_of_range(&log, hw - 1);
    let offsets = offsets_of(&read_all(&log));
    assert!(offsets[0].0 <= hw && hw <= offsets[0].1);
    assert_eq!(offsets.last().unwrap().1, end - 1);

    // After a crash and after a clean close alike.
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_start_offset(), hw);
    assert_out_of_range(&log, hw - 1);
    assert_eq!(*log.segment_base_offsets().last().unwrap(), last_segment);
    log.close().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_start_offset(), hw);
    assert_eq!(log.delete_records(-1, end).unwrap(), end);
    assert_eq!(
        log.segment_base_offsets().len(),
        1,
        "only the active segment"
    );
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, end);
}

#[test]
fn given_file_delete_delay_should_remove_deleted_files_only_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    append_at(&log, 20, T0_MS);
    let segments = log.segment_base_offsets();
    let now = T0_MS + 10 * MINUTE_MS;
    let outcome = log.apply_retention(now, MINUTE_MS, -1).unwrap();
    assert_eq!(outcome.deleted_segments, segments.len() - 1);
    let deleted = deleted_files(tmp.path());
    assert_eq!(deleted.len(), 3 * outcome.deleted_segments);
    assert_eq!(log.pending_deleted_files(), deleted.len());
    let delay = MINUTE_MS;
    assert_eq!(log.delete_expired_files(now + delay - 1, delay).unwrap(), 0);
    assert_eq!(deleted_files(tmp.path()).len(), deleted.len());
    assert_eq!(
        log.delete_expired_files(now + delay, delay).unwrap(),
        deleted.len()
    );
    assert!(deleted_files(tmp.path()).is_empty());
    assert_eq!(log.pending_deleted_files(), 0);

    // DeleteRecords has no clock: its files wait `delay` from the first timer call.
    append_at(&log, 20, T0_MS);
    let hw = log.log_end_offset();
    log.delete_records(-1, hw).unwrap();
    let deleted = deleted_files(tmp.path()).len();
    assert!(deleted > 0);
    let later = now + 100 * MINUTE_MS;
    assert_eq!(log.delete_expired_files(later, delay).unwrap(), 0);
    assert_eq!(
        log.delete_expired_files(later + delay, delay).unwrap(),
        deleted
    );
    // A zero delay removes at once.
    append_at(&log, 20, T0_MS);
    log.delete_records(-1, log.log_end_offset()).unwrap();
    assert!(log.delete_expired_files(later, 0).unwrap() > 0);
    assert!(deleted_files(tmp.path()).is_empty());
}

#[test]
fn given_config_update_should_apply_to_later_appends_and_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    append_at(&log, 5, T0_MS);
    assert_eq!(log.segment_base_offsets().len(), 1);
    assert!(matches!(
        log.update_config(LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        }),
        Err(LogError::InvalidConfig(_))
    ));
    assert_eq!(log.config(), LogConfig::default());

    let smaller = LogConfig {
        segment_bytes: 600,
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    log.update_config(smaller.clone()).unwrap();
    assert_eq!(log.config(), smaller);
    let mut bytes = batch_with(2, 40, T0_MS);
    let info = log.append(&mut bytes, 0, T0_MS + 7).unwrap();
    assert_eq!(info.log_append_time_ms, T0_MS + 7);
    assert_eq!(
        log.segment_base_offsets().len(),
        2,
        "rolled at the new size"
    );
    append_at(&log, 10, T0_MS);
    assert!(log.segment_base_offsets().len() >= 4);
    for &base in &log.segment_base_offsets() {
        assert!(file_len(&seg_path(tmp.path(), base, ".log")) <= 600 || base == 0);
    }
}

#[test]
fn given_crash_at_any_step_of_retention_should_reopen_consistent() {
    let template = tempfile::tempdir().unwrap();
    {
        let log = open(fs(), template.path(), small_config());
        append_at(&log, 20, T0_MS);
        append_at(&log, 10, T0_MS + 10 * MINUTE_MS);
        log.close().unwrap();
    }
    let now = T0_MS + 10 * MINUTE_MS;
    let full_records = {
        let log = open(fs(), template.path(), small_config());
        let all = read_all(&log);
        drop(log);
        all
    };
    // Count the mutations of a whole run.
    let (mutations, segments_left) = {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        let log = PartitionLog::open(faulty.clone(), tmp.path(), small_config(), now).unwrap();
        let before = faulty.mutation_count();
        assert!(
            log.apply_retention(now, MINUTE_MS, -1)
                .unwrap()
                .deleted_segments
                >= 2
        );
        (
            faulty.mutation_count() - before,
            log.segment_base_offsets().len(),
        )
    };
    assert!(mutations > 5);
    for step in 0..=mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        let log = PartitionLog::open(faulty.clone(), tmp.path(), small_config(), now).unwrap();
        faulty.crash_after_mutations(step);
        let _ = log.apply_retention(now, MINUTE_MS, -1);
        drop(log);
        let log = PartitionLog::open(fs(), tmp.path(), small_config(), now)
            .unwrap_or_else(|e| panic!("reopen after a crash at step {step}: {e}"));
        // Whatever the start, the log from it is a suffix of the original, intact.
        let start = log.log_start_offset();
        let rest = read_all(&log);
        assert!(full_records.ends_with(&rest), "step {step}");
        assert_eq!(offsets_of(&rest).first().unwrap().0, start, "step {step}");
        // And the next retention finishes the job.
        log.apply_retention(now, MINUTE_MS, -1).unwrap();
        assert_eq!(
            log.segment_base_offsets().len(),
            segments_left,
            "step {step}"
        );
    }
}
