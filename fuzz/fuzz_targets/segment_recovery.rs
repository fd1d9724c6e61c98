//! Segment recovery from arbitrary bytes: a partition directory whose
//! `00000000000000000000.log` (and optionally `.index`, `.timeindex`, the checkpoints, a
//! producer snapshot, the clean-shutdown marker and a second segment) hold arbitrary bytes
//! (format: `runnel_fuzz::DirSpec`; a flag recomputes the batch CRCs of the `.log` files, so
//! that mutated headers get past the CRC check) is opened with `PartitionLog::open` on `FsStorage`, read
//! from the log start to the log end, appended to, closed and reopened.
//!
//! Invariants checked:
//! - nothing panics; open succeeds (bad contents are truncated or rebuilt, never fatal);
//! - every batch a read serves parses, verifies its CRC, and comes after the previous one
//!   ("a corrupt batch is never served"; offsets may jump where the cleaner removed batches);
//!   reads make progress up to the log end;
//! - when recovery scanned every segment (no clean-shutdown marker on a single segment, or
//!   missing index files), reads succeed: nothing corrupt was kept; otherwise (a segment
//!   trusted after a clean shutdown) a read may refuse with `LogError::Corrupt`;
//! - appending a valid batch succeeds at the log end offset, reads back, and a close and
//!   reopen keeps the log start and end offsets.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use runnel_fuzz::{DirSpec, Scratch, NOW_MS};
use runnel_log::{FsStorage, LogConfig, LogError, PartitionLog, Storage, TimestampType};
use runnel_model::batch::{testing::simple_batch, Batches};

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(Scratch::new)
}

fn config(spec: &DirSpec) -> LogConfig {
    LogConfig {
        index_interval_bytes: spec.index_interval_bytes(),
        segment_bytes: if spec.small_segments {
            1024
        } else {
            LogConfig::default().segment_bytes
        },
        timestamp_type: if spec.log_append_time {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        ..LogConfig::default()
    }
}

/// Checks what a read served: whole batches that verify, in offset order, the first one
/// holding `from` or (the cleaner removed it) after it, ending at `next_offset`. Offsets may
/// jump between batches (a cleaned segment keeps the offsets of the batches it keeps), never
/// go back or overlap.
fn check_served(bytes: &[u8], batch_count: u32, from: i64, next_offset: i64) {
    let mut count = 0;
    let mut expected: Option<i64> = None;
    for view in Batches::new(bytes) {
        let view = view.unwrap_or_else(|e| panic!("served bytes do not parse: {e}"));
        view.verify_crc()
            .unwrap_or_else(|e| panic!("a corrupt batch was served: {e}"));
        let last = view
            .base_offset()
            .checked_add(i64::from(view.last_offset_delta()))
            .filter(|l| *l >= view.base_offset() && *l < i64::MAX)
            .unwrap_or_else(|| {
                panic!(
                    "served batch has offsets {} + {} that do not add up",
                    view.base_offset(),
                    view.last_offset_delta()
                )
            });
        match expected {
            None => assert!(
                from <= last,
                "first batch {}..={last} served for offset {from} ends before it",
                view.base_offset(),
            ),
            Some(e) => assert!(
                view.base_offset() >= e,
                "served batches overlap or go back: {} after a batch ending before {e}",
                view.base_offset()
            ),
        }
        expected = Some(last + 1);
        count += 1;
    }
    assert_eq!(count, batch_count);
    assert_eq!(expected.unwrap_or(from), next_offset);
}

/// Reads everything from the log start. Returns false if a read refused with `Corrupt`
/// (allowed only when `corrupt_allowed`).
fn read_all(log: &PartitionLog, corrupt_allowed: bool) -> bool {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    assert!(offset <= end, "log start {offset} after log end {end}");
    // Bounded: every successful read advances (asserted), and offsets stop at the log end.
    while offset < end {
        match log.read(offset, 16 * 1024, i64::MAX, true) {
            Ok(r) => {
                check_served(&r.bytes, r.batch_count, offset, r.next_offset);
                assert!(
                    r.next_offset > offset,
                    "read at {offset} below the log end {end} made no progress"
                );
                assert!(r.next_offset <= end, "read past the log end");
                offset = r.next_offset;
            }
            Err(LogError::Corrupt { .. }) if corrupt_allowed => return false,
            Err(e) => panic!("read at offset {offset} (log end {end}) after recovery failed: {e}"),
        }
    }
    true
}

fn open(dir: &std::path::Path, spec: &DirSpec) -> PartitionLog {
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
    PartitionLog::open(storage, dir, config(spec), NOW_MS)
        .unwrap_or_else(|e| panic!("open after writing arbitrary files failed: {e}"))
}

fn latest_epoch(log: &PartitionLog) -> i32 {
    log.leader_epochs()
        .last()
        .map_or(0, |&(epoch, _)| epoch)
        .max(0)
}

fuzz_target!(|data: &[u8]| {
    let spec = DirSpec::parse(data);
    let dir = scratch().fresh();
    spec.write_to(&dir);
    // Recovery scans (and so fully checks) the first segment unless it may be trusted: a clean
    // shutdown with a second segment, or index files present that pass the cheap check.
    let all_scanned = spec.index.is_none()
        || spec.time_index.is_none()
        || (!spec.clean_shutdown && spec.second.is_none());

    let log = open(&dir, &spec);
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let _ = format!("{log:?}");
    let _ = (
        log.size_bytes(),
        log.segment_base_offsets(),
        log.max_timestamp_offset(),
        log.end_offset_for_epoch(0),
        log.end_offset_for_epoch(i32::MAX),
        log.active_producers(),
    );
    read_all(&log, !all_scanned);
    // Non-negative targets only: negative ones are ListOffsets' special timestamps, which
    // `offset_for_timestamp` leaves to its caller.
    for ts in [0, NOW_MS, i64::MAX] {
        match log.offset_for_timestamp(ts) {
            Ok(_) => {}
            Err(LogError::Corrupt { .. }) if !all_scanned => {}
            Err(e) => panic!("offset_for_timestamp({ts}) failed: {e}"),
        }
    }

    // A valid batch appends at the log end.
    let mut batch = simple_batch(0, 3);
    let epoch = latest_epoch(&log);
    match log.append(&mut batch, epoch, NOW_MS) {
        Ok(info) => {
            assert_eq!(info.base_offset, end, "append not at the log end offset");
            assert_eq!(info.last_offset, end + 2);
            assert_eq!(log.log_end_offset(), end + 3);
            match log.read(end, 1, i64::MAX, true) {
                Ok(r) => {
                    check_served(&r.bytes, r.batch_count, end, r.next_offset);
                    assert_eq!(r.batch_count, 1);
                    assert_eq!(r.next_offset, end + 3);
                }
                Err(LogError::Corrupt { .. }) if !all_scanned => {}
                Err(e) => panic!("reading the appended batch back failed: {e}"),
            }
        }
        Err(LogError::OffsetOverflow { .. }) if end > i64::MAX - 4 => return,
        Err(e) => panic!("append at log end {end} after recovery failed: {e}"),
    }
    // Finding `gapped-active` (fixed): a segment recovered with gaps allowed (it was not the
    // last one) stays a closed segment when recovery removes the segments after it, so the
    // appends made after it survive the reopen.
    log.close().unwrap_or_else(|e| panic!("close failed: {e}"));
    drop(log);

    let log = open(&dir, &spec);
    assert_eq!(
        log.log_start_offset(),
        start,
        "log start changed across close and reopen"
    );
    assert_eq!(
        log.log_end_offset(),
        end + 3,
        "log end changed across close and reopen"
    );
    read_all(&log, !all_scanned);
});
