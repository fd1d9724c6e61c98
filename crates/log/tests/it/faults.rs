//! Injected disk faults: failed fsyncs are never ignored, a full disk leaves the log
//! consistent, torn writes are cut by recovery.

use std::path::Path;
use std::sync::Arc;

use runnel_log::partition_log::CLEAN_SHUTDOWN_FILE;
use runnel_log::storage::is_no_space;
use runnel_log::testing::{FaultyStorage, WriteFault};
use runnel_log::{FsStorage, LogConfig, LogError, PartitionLog, Storage};

use crate::common::*;

fn faulty() -> Arc<FaultyStorage> {
    FaultyStorage::new(Arc::new(FsStorage::new()))
}

fn with_faults(dir: &Path, config: LogConfig) -> (Arc<FaultyStorage>, PartitionLog) {
    let storage = faulty();
    let log = open(storage.clone() as Arc<dyn Storage>, dir, config);
    (storage, log)
}

#[test]
fn given_failed_fsync_should_surface_the_error_refuse_writes_and_serve_only_durable_data_until_reopen(
) {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 1,
        ..small_config()
    };
    let (storage, log) = with_faults(tmp.path(), config.clone());
    append(&log, 2);
    let before = read_all(&log);
    storage.fail_next_sync(".log");
    let mut b = batch(2);
    match log.append(&mut b, 0, T0_MS) {
        Err(LogError::Io { op: "fsync", .. }) => {}
        other => panic!("expected the fsync error, got {other:?}"),
    }
    // Never ignored: every later write fails, even though the disk works again.
    assert!(log.failure().is_some());
    for _ in 0..3 {
        let mut b = batch(1);
        assert!(matches!(
            log.append(&mut b, 0, T0_MS),
            Err(LogError::Failed { .. })
        ));
    }
    assert!(matches!(log.flush(), Err(LogError::Failed { .. })));
    assert!(matches!(
        log.maybe_flush(i64::MAX),
        Err(LogError::Failed { .. })
    ));
    // Read-only: what an fsync made durable is served, the batch whose fsync failed is not.
    let r = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(r.bytes.to_vec(), before);
    assert_eq!(r.next_offset, 2);
    assert!(matches!(
        log.read(2, 100, i64::MAX, true),
        Err(LogError::Failed { .. })
    ));
    assert_eq!(log.offset_for_timestamp(0).unwrap().unwrap().offset, 0);
    assert!(matches!(log.close(), Err(LogError::Failed { .. })));
    assert!(
        !tmp.path().join(CLEAN_SHUTDOWN_FILE).exists(),
        "no clean marker"
    );
    drop(log);

    // Reopen: recovery re-reads what is on disk; what was acknowledged before is there.
    let log = open(fs(), tmp.path(), config);
    let after = read_all(&log);
    assert!(after.starts_with(&before));
    assert!(log.log_end_offset() == 2 || log.log_end_offset() == 4);
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, log.log_end_offset() - 1);
}

#[test]
fn given_failed_explicit_flush_should_fail_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), LogConfig::default());
    append(&log, 1);
    storage.fail_next_sync("");
    assert!(matches!(log.flush(), Err(LogError::Io { op: "fsync", .. })));
    assert!(matches!(log.flush(), Err(LogError::Failed { .. })));
    let mut b = batch(1);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Failed { .. })
    ));
}

#[test]
fn given_failed_fsync_while_rolling_should_fail_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    // With no flush policy, the first fsync of a .log is the one sealing segment 0 at a roll.
    storage.fail_next_sync(".log");
    let mut appended = 0;
    loop {
        let mut b = batch(2);
        match log.append(&mut b, 0, T0_MS) {
            Ok(_) => appended += 1,
            Err(LogError::Io { op: "fsync", .. }) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(appended < 100, "a roll should have happened");
    }
    assert_eq!(
        log.segment_base_offsets(),
        vec![0],
        "the roll did not happen"
    );
    assert_eq!(log.log_end_offset(), 2 * appended);
    let mut b = batch(1);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Failed { .. })
    ));
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_end_offset(), 2 * appended);
}

#[test]
fn given_full_disk_on_data_write_should_leave_the_log_consistent_and_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    for _ in 0..3 {
        append(&log, 2);
    }
    let before = read_all(&log);
    let active = seg_path(
        tmp.path(),
        *log.segment_base_offsets().last().unwrap(),
        ".log",
    );
    let active_len = file_len(&active);

    storage.fail_next_write(".log", WriteFault::NoSpace { prefix_bytes: 30 });
    let mut b = batch(2);
    match log.append(&mut b, 0, T0_MS) {
        Err(LogError::Io { source, .. }) => assert!(is_no_space(&source), "{source}"),
        other => panic!("expected ENOSPC, got {other:?}"),
    }
    assert_eq!(log.log_end_offset(), 6, "LEO unchanged");
    assert_eq!(read_all(&log), before, "no partial batch visible");
    assert_eq!(file_len(&active), active_len, "the torn prefix was cut off");

    // Space is back: appends continue at the same offset.
    let (info, stored) = append(&log, 2);
    assert_eq!(info.base_offset, 6);
    let mut expected = before.clone();
    expected.extend_from_slice(&stored);
    assert_eq!(read_all(&log), expected);

    // A crash now recovers the same log.
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(read_all(&log), expected);
}

#[test]
fn given_full_disk_on_index_write_should_leave_the_log_consistent_and_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        index_interval_bytes: 0,
        ..small_config()
    };
    let (storage, log) = with_faults(tmp.path(), config.clone());
    append(&log, 2);
    let before = read_all(&log);
    storage.fail_next_write(".index", WriteFault::NoSpace { prefix_bytes: 3 });
    let mut b = batch(2);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Io { .. })
    ));
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log), before);
    assert_eq!(file_len(&seg_path(tmp.path(), 0, ".index")), 0);
    assert_eq!(
        file_len(&seg_path(tmp.path(), 0, ".log")),
        before.len() as u64
    );
    append(&log, 2);
    log.close().unwrap();
    let log = open(fs(), tmp.path(), config);
    assert_eq!(offsets_of(&read_all(&log)), vec![(0, 1), (2, 3)]);
}

#[test]
fn given_other_write_error_should_fail_the_log_and_recover_on_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    append(&log, 2);
    storage.fail_next_write(".log", WriteFault::Torn { prefix_bytes: 20 });
    let mut b = batch(2);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Io { op: "write", .. })
    ));
    assert_eq!(log.log_end_offset(), 2);
    let mut b = batch(1);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Failed { .. })
    ));
    drop(log);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn given_torn_write_then_crash_when_reopened_should_cut_the_torn_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    for _ in 0..4 {
        append(&log, 2);
    }
    let before = read_all(&log);
    let active = seg_path(
        tmp.path(),
        *log.segment_base_offsets().last().unwrap(),
        ".log",
    );
    let len_before = file_len(&active);
    // The process dies mid-write: a prefix reached the file and nothing can undo it.
    storage.fail_next_write(".log", WriteFault::TornThenCrash { prefix_bytes: 50 });
    let mut b = batch(2);
    assert!(log.append(&mut b, 0, T0_MS).is_err());
    let mut b = batch(2);
    assert!(matches!(
        log.append(&mut b, 0, T0_MS),
        Err(LogError::Failed { .. })
    ));
    drop(log);
    assert_eq!(
        file_len(&active),
        len_before + 50,
        "the torn prefix is on disk"
    );

    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(read_all(&log), before);
    assert_eq!(file_len(&active), len_before);
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, 8);
}

#[test]
fn given_short_writes_should_be_retried_transparently() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    let mut expected = Vec::new();
    for i in 0..10 {
        storage.fail_next_write(
            ".log",
            WriteFault::Short {
                max_bytes: 1 + i * 7,
            },
        );
        let (_, stored) = append(&log, 2);
        expected.extend_from_slice(&stored);
    }
    assert_eq!(storage.injected_count(), 10);
    assert_eq!(read_all(&log), expected);
    log.close().unwrap();
    assert_eq!(read_all(&open(fs(), tmp.path(), small_config())), expected);
}

#[test]
fn given_crash_right_after_a_roll_when_reopened_should_continue_in_the_empty_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    let mut expected = append(&log, 2).1;
    // Arm a crash on the first write into the segment the next roll creates (named by the LEO).
    loop {
        let leo = log.log_end_offset();
        storage.fail_next_write(
            &format!("{leo:020}.log"),
            WriteFault::TornThenCrash { prefix_bytes: 0 },
        );
        let mut b = batch(2);
        match log.append(&mut b, 0, T0_MS) {
            Ok(_) => expected.extend_from_slice(&b),
            Err(_) => break,
        }
        assert!(leo < 200, "a roll should have happened");
    }
    let bases = log.segment_base_offsets();
    drop(log);
    assert_eq!(bases.len(), 2);
    assert_eq!(file_len(&seg_path(tmp.path(), bases[1], ".log")), 0);

    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(read_all(&log), expected);
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, bases[1]);
    assert_eq!(
        log.segment_base_offsets(),
        bases,
        "no roll of an empty segment"
    );
}

#[test]
fn given_failed_fsync_at_close_should_write_no_clean_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), small_config());
    append(&log, 2);
    storage.fail_next_sync(".timeindex");
    assert!(log.close().is_err());
    assert!(!tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_end_offset(), 2);
}

mod random_faults {
    //! Random appends interleaved with random injected faults and reopens: the log is always
    //! either usable and exactly what was acknowledged, or failed; a reopen yields what was
    //! acknowledged, plus at most the one failed append whose bytes may have reached the disk
    //! whole — never a part of it.

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            records: usize,
            value_bytes: usize,
        },
        Arm {
            suffix: &'static str,
            fault: Option<WriteFault>,
        },
        CloseReopen,
        CrashReopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let write_fault = prop_oneof![
            (0usize..120).prop_map(|prefix_bytes| WriteFault::NoSpace { prefix_bytes }),
            (0usize..120).prop_map(|prefix_bytes| WriteFault::TornThenCrash { prefix_bytes }),
            (1usize..50).prop_map(|max_bytes| WriteFault::Short { max_bytes }),
            Just(WriteFault::Fail),
        ];
        prop_oneof![
            8 => (1usize..4, 0usize..60)
                .prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
            2 => (
                prop_oneof![Just(".log"), Just(".index"), Just(".timeindex")],
                proptest::option::of(write_fault),
            )
                .prop_map(|(suffix, fault)| Op::Arm { suffix, fault }),
            1 => Just(Op::CloseReopen),
            1 => Just(Op::CrashReopen),
        ]
    }

    struct Harness<'a> {
        dir: &'a Path,
        config: LogConfig,
        storage: Arc<FaultyStorage>,
        log: Option<PartitionLog>,
        acknowledged: Vec<u8>,
        /// Bytes of a failed append that may or may not have reached the log.
        uncertain: Option<Vec<u8>>,
    }

    impl Harness<'_> {
        fn log(&self) -> &PartitionLog {
            self.log.as_ref().expect("open")
        }

        fn reopen(&mut self, clean: bool) -> Result<(), TestCaseError> {
            let log = self.log.take().expect("open");
            if clean && log.close().is_err() {
                // A fault hit the close: no marker, so this is a crash.
                prop_assert!(!self.dir.join(CLEAN_SHUTDOWN_FILE).exists());
            }
            drop(log);
            self.storage.heal();
            self.log = Some(open(self.storage.clone(), self.dir, self.config.clone()));
            let all = read_all(self.log());
            match self.uncertain.take() {
                Some(extra) if all.len() > self.acknowledged.len() => {
                    let mut with = self.acknowledged.clone();
                    with.extend_from_slice(&extra);
                    prop_assert_eq!(&all, &with);
                    self.acknowledged = with;
                }
                _ => prop_assert_eq!(&all, &self.acknowledged),
            }
            prop_assert_eq!(
                self.log().log_end_offset(),
                offsets_of(&self.acknowledged).last().map_or(0, |b| b.1 + 1)
            );
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn given_random_faults_the_log_should_stay_consistent_and_lose_no_acknowledged_append(
            flush_every_append in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let config = LogConfig {
                segment_bytes: 600,
                index_interval_bytes: 50,
                flush_messages: if flush_every_append { 1 } else { u64::MAX },
                ..LogConfig::default()
            };
            let storage = faulty();
            let log = open(storage.clone(), tmp.path(), config.clone());
            let mut h = Harness {
                dir: tmp.path(),
                config,
                storage,
                log: Some(log),
                acknowledged: Vec::new(),
                uncertain: None,
            };
            for op in ops {
                match op {
                    Op::Append { records, value_bytes } => {
                        let mut b = batch_with(records, value_bytes, T0_MS);
                        let leo = h.log().log_end_offset();
                        match h.log().append(&mut b, 0, T0_MS) {
                            Ok(info) => {
                                prop_assert_eq!(info.base_offset, leo);
                                h.acknowledged.extend_from_slice(&b);
                            }
                            Err(LogError::Failed { .. }) => h.reopen(false)?,
                            Err(LogError::Io { .. }) if h.log().failure().is_none() => {
                                // Still usable: nothing of the failed append is visible.
                                let r = h.log().read(0, usize::MAX, i64::MAX, true)
                                    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
                                prop_assert_eq!(r.bytes.to_vec(), h.acknowledged.clone());
                                prop_assert_eq!(h.log().log_end_offset(), leo);
                            }
                            Err(LogError::Io { .. }) => {
                                // Failed, read-only: it serves only durable data, so a prefix
                                // of what was acknowledged (all of it when every append is
                                // fsynced), never the failed append.
                                match h.log().read(0, usize::MAX, i64::MAX, true) {
                                    Ok(r) if flush_every_append => {
                                        prop_assert_eq!(r.bytes.to_vec(), h.acknowledged.clone());
                                    }
                                    Ok(r) => prop_assert!(h.acknowledged.starts_with(&r.bytes)),
                                    // Nothing durable to serve, or the disk is gone ("crashed").
                                    Err(LogError::Failed { .. } | LogError::Io { .. }) => {}
                                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                                }
                                // Not acknowledged, but it may have reached the disk whole
                                // (e.g. the fsync or an index write failed after the data
                                // write): after a reopen it is either entirely there or
                                // entirely absent.
                                h.uncertain = Some(b.clone());
                                h.reopen(false)?;
                            }
                            Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                        }
                    }
                    Op::Arm { suffix, fault: Some(fault) } => h.storage.fail_next_write(suffix, fault),
                    Op::Arm { suffix, fault: None } => h.storage.fail_next_sync(suffix),
                    Op::CloseReopen => h.reopen(true)?,
                    Op::CrashReopen => h.reopen(false)?,
                }
            }
            h.reopen(false)?;
        }
    }
}

#[test]
fn given_appends_completing_a_mib_of_the_segment_should_start_its_writeback_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), LogConfig::default());
    let mut stored = Vec::new();
    // Three batches of about 600 KB: only the second completes the segment's first MiB, and
    // the third completes nothing.
    let mut positions = Vec::new();
    for _ in 0..3 {
        let mut b = batch_with(600, 1000, T0_MS);
        log.append(&mut b, 0, T0_MS).expect("append");
        stored.extend_from_slice(&b);
        positions.push(stored.len() as u64);
    }
    assert!(positions[0] < 1 << 20 && positions[1] >= 1 << 20 && positions[2] < 2 << 20);
    let hints = storage.writebacks();
    assert_eq!(hints.len(), 1, "one hint: {hints:?}");
    let (path, pos, len) = &hints[0];
    assert_eq!(path, &seg_path(tmp.path(), 0, ".log"));
    assert_eq!(
        (*pos, *len),
        (0, 1 << 20),
        "the whole first MiB, nothing unwritten"
    );
    assert_eq!(read_all(&log), stored);
}

#[test]
fn given_failing_writeback_hint_should_still_acknowledge_and_serve_the_append() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, log) = with_faults(tmp.path(), LogConfig::default());
    storage.fail_next_writeback();
    let mut b = batch_with(1100, 1000, T0_MS);
    let info = log
        .append(&mut b, 0, T0_MS)
        .expect("a failed hint fails nothing");
    assert_eq!(storage.injected_count(), 1, "the hint was tried and failed");
    assert_eq!((info.base_offset, info.last_offset), (0, 1099));
    assert!(log.failure().is_none());
    assert_eq!(read_all(&log), b);
    log.flush().expect("flush");
}
