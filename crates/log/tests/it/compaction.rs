//! Log compaction: latest value per key, tombstones and their delete horizon, compressed
//! batches, the compaction lags, producer state, throttling, crash safety of the swap, and a
//! property test on generated logs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::records::Compression as Codec;
use proptest::prelude::*;
use runnel_log::testing::{set_producer, FaultyStorage};
use runnel_log::{CleanerOptions, LogConfig, LogError, ManualClock, PartitionLog};
use runnel_model::batch::{BatchView, Batches, Compression};

use crate::common::*;

const MINUTE_MS: i64 = 60_000;
const RETENTION_MS: i64 = 10 * MINUTE_MS;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_ms: MINUTE_MS,
        ..LogConfig::default()
    }
}

fn options() -> CleanerOptions {
    CleanerOptions {
        delete_retention_ms: RETENTION_MS,
        clock: Arc::new(ManualClock::new(Duration::from_millis(1))),
        ..CleanerOptions::default()
    }
}

fn key(k: usize) -> String {
    format!("key-{k:02}")
}

/// Appends 20 keys × 5 values (batches of 4 records) and then tombstones for keys 0..5, all
/// at `T0_MS` with `codec`; rolls the active segment so everything is cleanable. Returns
/// every record appended.
fn write_acceptance_log(log: &PartitionLog, codec: Codec) -> Vec<Rec> {
    let mut history = Vec::new();
    let mut pending: Vec<(String, Option<String>)> = Vec::new();
    let flush = |pending: &mut Vec<(String, Option<String>)>, history: &mut Vec<Rec>| {
        let records: Vec<(Option<&str>, Option<&str>)> = pending
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_deref()))
            .collect();
        let mut bytes = keyed(&records, T0_MS, codec);
        let info = log.append(&mut bytes, 0, T0_MS).unwrap();
        for (i, (k, v)) in pending.drain(..).enumerate() {
            history.push((
                info.base_offset + i as i64,
                Some(k.into_bytes()),
                v.map(String::into_bytes),
            ));
        }
    };
    for round in 0..5 {
        for k in 0..20 {
            pending.push((key(k), Some(format!("value-{k:02}-{round}"))));
            if pending.len() == 4 {
                flush(&mut pending, &mut history);
            }
        }
    }
    for k in 0..5 {
        pending.push((key(k), None));
    }
    flush(&mut pending, &mut history);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    history
}

/// The latest record of each key, in offset order; without tombstones if `drop_tombstones`.
fn expected_latest(history: &[Rec], drop_tombstones: bool) -> Vec<Rec> {
    let mut latest: Vec<Rec> = latest_by_key(history)
        .into_iter()
        .filter(|(_, (_, v))| !(drop_tombstones && v.is_none()))
        .map(|(k, (offset, v))| (offset, Some(k), v))
        .collect();
    latest.sort_by_key(|r| r.0);
    latest
}

fn stray_files(dir: &Path) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
        .collect()
}

fn assert_acceptance(tmp: &Path, codec: Codec) {
    let log = open(fs(), tmp, config());
    let history = write_acceptance_log(&log, codec);
    assert_eq!(history.len(), 105);
    let end = log.log_end_offset();
    let segments_before = log.segment_base_offsets().len();
    assert!(segments_before >= 4, "{segments_before} segments");
    let opts = options();
    let now = T0_MS + 3 * MINUTE_MS;
    assert!((log.cleanable_ratio(now, &opts) - 1.0).abs() < 1e-9);
    assert!(log.needs_cleaning(now, &opts).unwrap());

    let stats = log.clean(now, &opts).unwrap();
    assert!(stats.cleaned);
    assert_eq!(stats.first_dirty_offset, 0);
    assert_eq!(stats.end_offset, end);
    assert_eq!(stats.records_superseded, 105 - 20);
    assert_eq!(stats.tombstones_removed, 0);
    // Exactly the 15 latest values and the 5 tombstones, in offset order.
    let records = records_of(&log);
    assert_eq!(records, expected_latest(&history, false));
    assert_eq!(records.iter().filter(|r| r.2.is_none()).count(), 5);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.cleanable_ratio(now, &opts), 0.0);
    assert!(!log.needs_cleaning(now, &opts).unwrap());
    for &base in &log.segment_base_offsets() {
        assert!(file_len(&seg_path(tmp, base, ".log")) <= config().segment_bytes);
    }
    // Compressed batches stay compressed with their codec.
    let bytes = read_all(&log);
    for b in Batches::new(&bytes) {
        let b = b.unwrap();
        if b.records_count() > 0 {
            let want = match codec {
                Codec::None => Compression::None,
                Codec::Gzip => Compression::Gzip,
                Codec::Snappy => Compression::Snappy,
                Codec::Lz4 => Compression::Lz4,
                Codec::Zstd => Compression::Zstd,
            };
            assert_eq!(b.compression().unwrap(), want);
        }
    }

    // Before delete.retention.ms the tombstones stay, after it the next clean removes them.
    let stats = log.clean(now + RETENTION_MS - 1, &opts).unwrap();
    assert!(
        !stats.cleaned,
        "nothing dirty and no horizon passed: {stats:?}"
    );
    assert_eq!(records_of(&log), expected_latest(&history, false));
    assert!(!log.needs_cleaning(now + RETENTION_MS - 1, &opts).unwrap());
    assert!(log.needs_cleaning(now + RETENTION_MS, &opts).unwrap());
    let stats = log.clean(now + RETENTION_MS, &opts).unwrap();
    assert_eq!(stats.tombstones_removed, 5);
    // The segments the first clean shrank are merged into one.
    assert!(stats.segments_written < stats.segments_cleaned, "{stats:?}");
    assert_eq!(log.segment_base_offsets().len(), 2);
    let records = records_of(&log);
    assert_eq!(records, expected_latest(&history, true));
    assert_eq!(records.len(), 15);
    assert!(!log.needs_cleaning(now + RETENTION_MS, &opts).unwrap());

    // Survives a crash and a clean close; the log keeps working.
    drop(log);
    let log = open(fs(), tmp, config());
    assert_eq!(records_of(&log), expected_latest(&history, true));
    assert_eq!(log.log_end_offset(), end);
    append_keyed(
        &log,
        &[(Some("key-07"), Some("newest"))],
        T0_MS + 30 * MINUTE_MS,
    );
    log.close().unwrap();
    let log = open(fs(), tmp, config());
    let latest = latest_by_key(&records_of(&log));
    assert_eq!(
        latest[b"key-07".as_slice()].1.as_deref(),
        Some(b"newest".as_slice())
    );
    assert!(stray_files(tmp).is_empty());
}

#[test]
fn given_twenty_keys_five_values_and_five_tombstones_when_cleaned_should_keep_latest_and_expire_tombstones(
) {
    let tmp = tempfile::tempdir().unwrap();
    assert_acceptance(tmp.path(), Codec::None);
}

#[test]
fn given_compressed_batches_when_cleaned_should_compact_them_and_keep_their_codec() {
    for codec in [Codec::Gzip, Codec::Zstd, Codec::Snappy, Codec::Lz4] {
        let tmp = tempfile::tempdir().unwrap();
        assert_acceptance(tmp.path(), codec);
    }
}

#[test]
fn given_offsets_removed_by_cleaning_when_read_should_return_the_next_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    for i in 0..10 {
        let v = format!("v{i}");
        append_keyed(
            &log,
            &[(Some("a"), Some(v.as_str())), (Some("b"), Some(v.as_str()))],
            T0_MS,
        );
    }
    append_keyed(&log, &[(Some("c"), Some("x"))], T0_MS);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    log.clean(T0_MS + 3 * MINUTE_MS, &options()).unwrap();
    // Offsets 0..18 are gone; a read there returns the first batch after them.
    let r = log.read(3, usize::MAX, i64::MAX, true).unwrap();
    let recs = decode_records(&r.bytes);
    assert_eq!(recs[0].0, 18);
    assert_eq!(r.next_offset, 21);
    let offsets: Vec<i64> = records_of(&log).iter().map(|r| r.0).collect();
    assert_eq!(offsets, vec![18, 19, 20]);
    // Out of range stays out of range.
    assert!(matches!(
        log.read(22, usize::MAX, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn given_min_compaction_lag_when_cleaning_should_leave_younger_segments_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    let old_ts = T0_MS;
    let young_ts = T0_MS + 10 * MINUTE_MS;
    for i in 0..12 {
        let v = format!("old-{i}");
        append_keyed(
            &log,
            &[
                (Some("a"), Some(v.as_str())),
                (Some("b"), Some(v.as_str())),
                (Some("c"), Some(v.as_str())),
            ],
            old_ts,
        );
    }
    // The young batches start in a new segment.
    assert!(log.maybe_roll(old_ts + 2 * MINUTE_MS).unwrap());
    let first_young = log.log_end_offset();
    for i in 0..12 {
        let v = format!("young-{i}");
        append_keyed(
            &log,
            &[(Some("a"), Some(v.as_str())), (Some("b"), Some(v.as_str()))],
            young_ts,
        );
    }
    assert!(log.maybe_roll(young_ts + 2 * MINUTE_MS).unwrap());
    let before = records_of(&log);
    let opts = CleanerOptions {
        min_compaction_lag_ms: 5 * MINUTE_MS,
        ..options()
    };
    // 3 minutes after the young batches: only the old segments are cleanable.
    let now = young_ts + 3 * MINUTE_MS;
    let stats = log.clean(now, &opts).unwrap();
    assert_eq!(stats.first_uncleanable_offset, first_young);
    assert_eq!(stats.end_offset, first_young);
    let after = records_of(&log);
    let (old, young): (Vec<Rec>, Vec<Rec>) = after.iter().cloned().partition(|r| r.0 < first_young);
    // Below: one record per key; from the first young segment on: nothing removed.
    assert_eq!(old.len(), 3);
    assert_eq!(
        young,
        before
            .iter()
            .filter(|r| r.0 >= first_young)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(!log.needs_cleaning(now, &opts).unwrap());
    // Once the lag has passed, the rest is cleaned; "c" keeps its old value.
    let now = young_ts + 6 * MINUTE_MS;
    assert!(log.needs_cleaning(now, &opts).unwrap());
    log.clean(now, &opts).unwrap();
    let after = records_of(&log);
    assert_eq!(after.len(), 3);
    let latest = latest_by_key(&after);
    assert_eq!(
        latest[b"a".as_slice()].1.as_deref(),
        Some(b"young-11".as_slice())
    );
    assert_eq!(
        latest[b"c".as_slice()].1.as_deref(),
        Some(b"old-11".as_slice())
    );
}

#[test]
fn given_max_compaction_lag_should_need_cleaning_whatever_the_dirty_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    for i in 0..8 {
        let v = format!("v{i}");
        append_keyed(&log, &[(Some("a"), Some(v.as_str()))], T0_MS);
    }
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    log.clean(T0_MS + 2 * MINUTE_MS, &options()).unwrap();
    // A little new dirty data: a low ratio.
    for i in 0..2 {
        let v = format!("w{i}");
        append_keyed(
            &log,
            &[(Some("b"), Some(v.as_str()))],
            T0_MS + 3 * MINUTE_MS,
        );
    }
    assert!(log.maybe_roll(T0_MS + 5 * MINUTE_MS).unwrap());
    let opts = CleanerOptions {
        min_cleanable_dirty_ratio: 0.99,
        max_compaction_lag_ms: 30 * MINUTE_MS,
        ..options()
    };
    let ratio = log.cleanable_ratio(T0_MS + 6 * MINUTE_MS, &opts);
    assert!(ratio > 0.0 && ratio < 0.99, "{ratio}");
    assert!(!log.needs_cleaning(T0_MS + 6 * MINUTE_MS, &opts).unwrap());
    assert!(log.needs_cleaning(T0_MS + 34 * MINUTE_MS, &opts).unwrap());
    assert!(!log
        .needs_cleaning(
            T0_MS + 34 * MINUTE_MS,
            &CleanerOptions {
                max_compaction_lag_ms: i64::MAX,
                ..opts.clone()
            }
        )
        .unwrap());
}

#[test]
fn given_keyless_records_when_cleaned_should_drop_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    append_keyed(
        &log,
        &[(None, Some("x")), (Some("a"), Some("1")), (None, Some("y"))],
        T0_MS,
    );
    append_keyed(&log, &[(None, Some("z"))], T0_MS);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    let stats = log.clean(T0_MS + 2 * MINUTE_MS, &options()).unwrap();
    assert_eq!(stats.records_without_key, 3);
    assert_eq!(
        records_of(&log),
        vec![(1, Some(b"a".to_vec()), Some(b"1".to_vec()))]
    );
    assert_eq!(log.log_end_offset(), 4);
}

/// A keyed batch of producer `producer_id` with base sequence `sequence`.
fn producer_keyed(
    records: &[(Option<&str>, Option<&str>)],
    producer_id: i64,
    sequence: i32,
) -> Vec<u8> {
    let mut b = keyed(records, T0_MS, Codec::None);
    set_producer(&mut b, producer_id, 0, sequence);
    b
}

#[test]
fn given_idempotent_producer_when_its_records_are_superseded_should_keep_its_last_batch_for_producer_state(
) {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    let mut b = producer_keyed(&[(Some("a"), Some("p0")), (Some("b"), Some("p0"))], 7, 0);
    log.append(&mut b, 0, T0_MS).unwrap();
    let mut b = producer_keyed(&[(Some("a"), Some("p1")), (Some("b"), Some("p1"))], 7, 2);
    let last = log.append(&mut b, 0, T0_MS).unwrap();
    let state = log.producer_state(7).unwrap();
    // Another writer supersedes every record of the producer.
    append_keyed(
        &log,
        &[(Some("a"), Some("x")), (Some("b"), Some("x"))],
        T0_MS,
    );
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    let stats = log.clean(T0_MS + 2 * MINUTE_MS, &options()).unwrap();
    assert_eq!(stats.empty_batches_kept, 1);
    assert_eq!(stats.batches_dropped, 1);
    assert_eq!(records_of(&log).len(), 2);
    // The producer's last batch is still there, as an empty batch with its producer fields.
    let bytes = read_all(&log);
    let batches: Vec<BatchView<'_>> = Batches::new(&bytes).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (
            batches[0].base_offset(),
            batches[0].last_offset(),
            batches[0].records_count(),
            batches[0].producer_id(),
            batches[0].base_sequence()
        ),
        (last.base_offset, last.last_offset, 0, 7, 2)
    );
    // Rebuilt from the log alone (no snapshot), the producer state is the same, and a retry of
    // its last batch is still a duplicate.
    log.close().unwrap();
    for name in names_in(tmp.path()) {
        if name.ends_with(".snapshot") {
            std::fs::remove_file(tmp.path().join(name)).unwrap();
        }
    }
    let log = open(fs(), tmp.path(), config());
    assert_eq!(log.producer_state(7), Some(state));
    let mut retry = producer_keyed(&[(Some("a"), Some("p1")), (Some("b"), Some("p1"))], 7, 2);
    let info = log.append(&mut retry, 0, T0_MS).unwrap();
    assert!(info.duplicate);
    assert_eq!(info.base_offset, last.base_offset);
}

#[test]
fn given_io_limit_when_cleaning_should_sleep_on_the_injected_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    write_acceptance_log(&log, Codec::None);
    let clock = Arc::new(ManualClock::new(Duration::from_millis(10)));
    let opts = CleanerOptions {
        io_max_bytes_per_second: 2_000.0,
        clock: clock.clone(),
        ..options()
    };
    let stats = log.clean(T0_MS + 3 * MINUTE_MS, &opts).unwrap();
    assert!(stats.throttled > Duration::from_secs(1), "{stats:?}");
    assert_eq!(stats.throttled, clock.slept());
    // Roughly bytes / rate (the last bytes after the final check are not slowed down).
    let io_secs = (stats.bytes_read + stats.bytes_written) as f64 / 2_000.0;
    assert!(stats.throttled.as_secs_f64() <= io_secs, "{stats:?}");
}

#[test]
fn given_small_dedupe_buffer_should_clean_in_several_passes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    let history = write_acceptance_log(&log, Codec::Gzip);
    let opts = CleanerOptions {
        dedupe_buffer_bytes: 300,
        ..options()
    };
    let now = T0_MS + 3 * MINUTE_MS;
    let mut passes = 0;
    // Bounded: each pass maps at least one batch.
    loop {
        let stats = log.clean(now, &opts).unwrap();
        passes += 1;
        assert!(passes < 100);
        if stats.end_offset == stats.first_uncleanable_offset {
            break;
        }
    }
    assert!(passes > 2, "{passes} passes");
    assert_eq!(records_of(&log), expected_latest(&history, false));
    log.clean(now + RETENTION_MS, &opts).unwrap();
    assert_eq!(records_of(&log), expected_latest(&history, true));
}

#[test]
fn given_closed_log_when_cleaning_should_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), config());
    write_acceptance_log(&log, Codec::None);
    log.close().unwrap();
    assert!(matches!(
        log.clean(T0_MS, &options()),
        Err(LogError::Closed { .. })
    ));
    let bad = CleanerOptions {
        min_cleanable_dirty_ratio: 2.0,
        ..options()
    };
    let log = open(fs(), tmp.path(), config());
    assert!(matches!(
        log.clean(T0_MS, &bad),
        Err(LogError::InvalidConfig(_))
    ));
}

/// Every record of `records` is one of `history` (same offset, key and value).
fn assert_from_history(records: &[Rec], history: &[Rec], context: &str) {
    let known: BTreeSet<&Rec> = history.iter().collect();
    for r in records {
        assert!(known.contains(r), "{context}: {r:?} was never written");
    }
}

/// Checks the reopened log after a crash during a clean.
fn assert_recovered(dir: &Path, history: &[Rec], end: i64, context: &str) {
    let log = PartitionLog::open(fs(), dir, config(), T0_MS + 3 * MINUTE_MS)
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    assert!(
        stray_files(dir).is_empty(),
        "{context}: {:?}",
        stray_files(dir)
    );
    assert_eq!(log.log_end_offset(), end, "{context}");
    let records = records_of(&log);
    assert_from_history(&records, history, context);
    assert_eq!(
        latest_by_key(&records),
        latest_by_key(history),
        "{context}: latest value per key"
    );
    // The recovered log cleans to the right result.
    log.clean(T0_MS + 3 * MINUTE_MS, &options())
        .unwrap_or_else(|e| panic!("{context}: clean after recovery failed: {e}"));
    assert_eq!(
        records_of(&log),
        expected_latest(history, false),
        "{context}"
    );
}

#[test]
fn given_crash_at_any_step_of_a_clean_when_reopened_should_read_back_the_same_latest_values() {
    let template = tempfile::tempdir().unwrap();
    let (history, end) = {
        let log = open(fs(), template.path(), config());
        let history = write_acceptance_log(&log, Codec::Gzip);
        let end = log.log_end_offset();
        log.close().unwrap();
        (history, end)
    };
    let now = T0_MS + 3 * MINUTE_MS;
    let mutations = {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        let log = PartitionLog::open(faulty.clone(), tmp.path(), config(), now).unwrap();
        let before = faulty.mutation_count();
        assert!(log.clean(now, &options()).unwrap().segments_written >= 2);
        faulty.mutation_count() - before
    };
    assert!(mutations > 20, "{mutations}");
    let mut committed_steps = Vec::new();
    for step in 0..=mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(template.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        let log = PartitionLog::open(faulty.clone(), tmp.path(), config(), now).unwrap();
        faulty.crash_after_mutations(step);
        let result = log.clean(now, &options());
        assert_eq!(result.is_ok(), step == mutations, "step {step}: {result:?}");
        drop(log);
        if names_in(tmp.path())
            .iter()
            .any(|n| n.ends_with(".log.swap"))
        {
            committed_steps.push(step);
        }
        assert_recovered(tmp.path(), &history, end, &format!("crash at step {step}"));
    }
    assert!(
        !committed_steps.is_empty(),
        "some crash left a committed swap"
    );

    // A crash during the recovery of a committed swap, at each of its steps.
    let step = committed_steps[0];
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(template.path(), crashed.path());
    {
        let faulty = FaultyStorage::new(fs());
        let log = PartitionLog::open(faulty.clone(), crashed.path(), config(), now).unwrap();
        faulty.crash_after_mutations(step);
        assert!(log.clean(now, &options()).is_err());
    }
    let recovery_mutations = {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(crashed.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        let _log = PartitionLog::open(faulty.clone(), tmp.path(), config(), now).unwrap();
        faulty.mutation_count()
    };
    for recovery_step in 0..recovery_mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(crashed.path(), tmp.path());
        let faulty = FaultyStorage::new(fs());
        faulty.crash_after_mutations(recovery_step);
        let _ = PartitionLog::open(faulty.clone(), tmp.path(), config(), now);
        assert_recovered(
            tmp.path(),
            &history,
            end,
            &format!("crash at step {step}, then at recovery step {recovery_step}"),
        );
    }
}

/// One generated operation.
#[derive(Debug, Clone)]
enum Op {
    /// Records as `(key id, value id)`: key 255 is no key, value `None` a tombstone.
    Append {
        records: Vec<(u8, Option<u8>)>,
        codec: u8,
    },
    Clean {
        advance_ms: i64,
    },
    Roll {
        advance_ms: i64,
    },
    Reopen {
        clean_close: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        prop_oneof![9 => 0u8..12, 1 => Just(255u8)],
        prop::option::weighted(0.8, 0u8..50),
    );
    prop_oneof![
        6 => (prop::collection::vec(record, 1..5), 0u8..5)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => (0i64..3_000).prop_map(|advance_ms| Op::Clean { advance_ms }),
        1 => (0i64..3_000).prop_map(|advance_ms| Op::Roll { advance_ms }),
        1 => any::<bool>().prop_map(|clean_close| Op::Reopen { clean_close }),
    ]
}

fn codec(n: u8) -> Codec {
    [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ][usize::from(n % 5)]
}

/// Checks the invariants of a log against everything appended to it.
fn check_against_history(log: &PartitionLog, history: &[Rec], cleaned_up_to: i64) {
    let records = records_of(log);
    assert_from_history(&records, history, "generated log");
    let in_log = latest_by_key(&records);
    let written = latest_by_key(history);
    for (key, (offset, value)) in &written {
        match in_log.get(key) {
            Some(got) => assert_eq!(got, &(*offset, value.clone()), "latest of {key:?}"),
            None => assert!(value.is_none(), "{key:?} lost its latest value"),
        }
    }
    assert!(in_log.keys().all(|k| written.contains_key(k)));
    // Nothing at or past the cleaned offsets was removed.
    let kept: BTreeSet<i64> = records.iter().map(|r| r.0).collect();
    for r in history.iter().filter(|r| r.0 >= cleaned_up_to) {
        assert!(kept.contains(&r.0), "uncleaned record {r:?} missing");
    }
    // Below them, every key appears once and every record has a key.
    let mut seen = BTreeSet::new();
    for r in records.iter().filter(|r| r.0 < cleaned_up_to) {
        let key = r.1.as_ref().expect("keyless records are cleaned away");
        assert!(
            seen.insert(key.clone()),
            "{key:?} twice below {cleaned_up_to}"
        );
    }
}

fn run_generated(ops: Vec<Op>, segment_bytes: u64, delete_retention_ms: i64, dedupe_bytes: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let config = generated_log_config(segment_bytes);
    let opts = CleanerOptions {
        delete_retention_ms,
        dedupe_buffer_bytes: dedupe_bytes,
        ..options()
    };
    let mut now = T0_MS;
    let mut log = PartitionLog::open(fs(), tmp.path(), config.clone(), now).unwrap();
    let mut history: Vec<Rec> = Vec::new();
    let mut cleaned_up_to = 0i64;
    for op in ops {
        match op {
            Op::Append { records, codec: c } => {
                let owned: Vec<(Option<String>, Option<String>)> = records
                    .iter()
                    .map(|&(k, v)| {
                        (
                            (k != 255).then(|| format!("k{k}")),
                            v.map(|v| format!("v{v}-{now}")),
                        )
                    })
                    .collect();
                let refs: Vec<(Option<&str>, Option<&str>)> = owned
                    .iter()
                    .map(|(k, v)| (k.as_deref(), v.as_deref()))
                    .collect();
                let mut bytes = keyed(&refs, now, codec(c));
                let info = log.append(&mut bytes, 0, now).unwrap();
                for (i, (k, v)) in owned.into_iter().enumerate() {
                    history.push((
                        info.base_offset + i as i64,
                        k.map(String::into_bytes),
                        v.map(String::into_bytes),
                    ));
                }
                now += 10;
            }
            Op::Clean { advance_ms } => {
                now += advance_ms;
                let stats = log.clean(now, &opts).unwrap();
                cleaned_up_to = cleaned_up_to.max(stats.end_offset);
            }
            Op::Roll { advance_ms } => {
                now += advance_ms;
                log.maybe_roll(now).unwrap();
            }
            Op::Reopen { clean_close } => {
                if clean_close {
                    log.close().unwrap();
                }
                drop(log);
                log = PartitionLog::open(fs(), tmp.path(), config.clone(), now).unwrap();
            }
        }
        check_against_history(&log, &history, cleaned_up_to);
    }
    // Make everything cleanable, clean it all, then once more after every horizon.
    now += 2_000;
    log.maybe_roll(now).unwrap();
    // Bounded: each pass maps at least one batch of the dirty section.
    for _ in 0..200 {
        let stats = log.clean(now, &opts).unwrap();
        cleaned_up_to = cleaned_up_to.max(stats.end_offset);
        if stats.end_offset >= stats.first_uncleanable_offset {
            break;
        }
    }
    check_against_history(&log, &history, cleaned_up_to);
    now += delete_retention_ms + 1;
    log.clean(now, &opts).unwrap();
    let final_records = records_of(&log);
    assert_eq!(final_records, expected_latest(&history, true));
    drop(log);
    let log = PartitionLog::open(fs(), tmp.path(), config, now).unwrap();
    assert_eq!(records_of(&log), expected_latest(&history, true));
    assert!(stray_files(tmp.path()).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn given_generated_logs_when_cleaned_and_reopened_should_hold_exactly_the_latest_live_values(
        ops in prop::collection::vec(op(), 1..40),
        segment_bytes in 250u64..900,
        delete_retention_ms in prop_oneof![Just(0i64), Just(500i64), Just(4_000i64)],
        dedupe_bytes in prop_oneof![Just(150u64), Just(128u64 * 1024 * 1024)],
    ) {
        run_generated(ops, segment_bytes, delete_retention_ms, dedupe_bytes);
    }
}

#[test]
fn given_log_append_time_batches_when_cleaned_should_keep_the_append_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: runnel_log::TimestampType::LogAppendTime,
        ..config()
    };
    let log = open(fs(), tmp.path(), config);
    let mut b = keyed(
        &[(Some("a"), Some("1")), (Some("b"), Some("1"))],
        T0_MS,
        Codec::Zstd,
    );
    log.append(&mut b, 0, T0_MS + 5).unwrap();
    append_keyed(&log, &[(Some("a"), Some("2"))], T0_MS + 6);
    assert!(log.maybe_roll(T0_MS + 2 * MINUTE_MS).unwrap());
    log.clean(T0_MS + 2 * MINUTE_MS, &options()).unwrap();
    let bytes = read_all(&log);
    let first = BatchView::parse(&bytes).unwrap();
    assert!(first.is_log_append_time());
    assert_eq!(first.max_timestamp(), T0_MS + 5);
    assert_eq!((first.base_offset(), first.last_offset()), (1, 1));
}

#[test]
fn given_reads_while_cleaning_should_always_see_the_latest_value_of_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(open(fs(), tmp.path(), config()));
    let history = write_acceptance_log(&log, Codec::Gzip);
    let expected = latest_by_key(&history);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (log, done, history, expected) =
            (log.clone(), done.clone(), history.clone(), expected.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            // Bounded by the cleaning below (and at least a few rounds).
            while !done.load(std::sync::atomic::Ordering::SeqCst) || reads < 3 {
                let all = decode_records(&read_all(&log));
                assert_from_history(&all, &history, "concurrent read");
                assert_eq!(latest_by_key(&all), expected);
                // One batch at a time: consecutive reads may straddle a swap.
                let mut offset = log.log_start_offset();
                let mut pieces = Vec::new();
                loop {
                    let r = log.read(offset, 1, i64::MAX, true).unwrap();
                    if r.batch_count == 0 {
                        break;
                    }
                    pieces.extend(decode_records(&r.bytes));
                    offset = r.next_offset;
                }
                assert_eq!(latest_by_key(&pieces), expected);
                reads += 1;
            }
            reads
        })
    };
    let opts = CleanerOptions {
        dedupe_buffer_bytes: 300,
        ..options()
    };
    // Many small passes: many swaps while the reader reads.
    for _ in 0..100 {
        let stats = log.clean(T0_MS + 3 * MINUTE_MS, &opts).unwrap();
        if stats.end_offset == stats.first_uncleanable_offset {
            break;
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().unwrap() >= 3);
    assert_eq!(records_of(&log), expected_latest(&history, false));
}
