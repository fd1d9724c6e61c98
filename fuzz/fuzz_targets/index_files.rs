//! Arbitrary `.index` / `.timeindex` bytes next to a valid segment.
//!
//! A template log is built once with `PartitionLog` itself (small batches, an index interval
//! of 100 bytes, so the real index files have entries) and closed cleanly. Each input replaces
//! one segment's index files with arbitrary bytes (format: `runnel_fuzz::IndexSpec`) and opens
//! the directory; the `.log` files are always the valid ones.
//!
//! Invariants checked: open succeeds (it accepts the index files or rebuilds them), the log
//! end offset and segments are the template's, a read at every offset returns exactly the
//! stored batch holding it (byte for byte), whatever the index files held; after a close,
//! the reopened log (trusting the index files, rebuilt or not) serves the same bytes.
//! Timestamp lookups: exact when the index files were rebuilt; when they were trusted (clean
//! shutdown, or a rolled segment), a lookup may miss (the time index is trusted, as in Kafka:
//! a lying entry cannot be told from a true one without scanning) but must answer with a real
//! qualifying batch or refuse with `Corrupt`, never panic.

#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use runnel_fuzz::{IndexSpec, IndexTemplate, Scratch, NOW_MS};
use runnel_log::{FsStorage, LogError, PartitionLog, Storage, TimestampOffset};

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(Scratch::new)
}

fn template(two_segments: bool) -> &'static IndexTemplate {
    static ONE: OnceLock<IndexTemplate> = OnceLock::new();
    static TWO: OnceLock<IndexTemplate> = OnceLock::new();
    let cell = if two_segments { &TWO } else { &ONE };
    cell.get_or_init(|| IndexTemplate::build(two_segments, &scratch().fresh()))
}

fn write_dir(dir: &Path, t: &IndexTemplate, spec: &IndexSpec) {
    let target = runnel_fuzz::stem(t.segments[0]);
    for (name, bytes) in &t.files {
        let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
        let replaced = match (stem == target, ext) {
            (true, "index") => Some(&spec.index),
            (true, "timeindex") => Some(&spec.time_index),
            _ => None,
        };
        match replaced {
            Some(Some(bytes)) => std::fs::write(dir.join(name), bytes).unwrap(),
            Some(None) => {} // missing
            None => std::fs::write(dir.join(name), bytes).unwrap(),
        }
    }
    if spec.clean_shutdown {
        std::fs::write(dir.join("clean-shutdown"), b"").unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let spec = IndexSpec::parse(data);
    let t = template(spec.two_segments);
    let dir = scratch().fresh();
    write_dir(&dir, t, &spec);

    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
    let log = PartitionLog::open(storage, &dir, t.config(), NOW_MS)
        .unwrap_or_else(|e| panic!("open with damaged index files failed: {e}"));
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), t.end, "a valid segment lost offsets");
    assert_eq!(log.segment_base_offsets(), t.segments);

    let trusted = (spec.clean_shutdown || spec.two_segments)
        && spec.index.is_some()
        && spec.time_index.is_some();
    for b in &t.batches {
        for offset in b.base_offset..b.next_offset {
            // Whatever the index files hold (finding `index-entries`, fixed: entries trusted
            // at open are checked by the reads that follow them, and rebuilt when wrong).
            let r = log
                .read(offset, 1, i64::MAX, true)
                .unwrap_or_else(|e| panic!("read at offset {offset} of a valid log failed: {e}"));
            assert_eq!(r.batch_count, 1, "read at {offset}");
            assert_eq!(r.next_offset, b.next_offset, "read at {offset}");
            assert!(r.bytes == b.bytes, "read at {offset} returned other bytes");
        }
    }
    match log.read(0, usize::MAX, i64::MAX, true) {
        Ok(r) => assert_eq!(r.batch_count as usize, t.batches.len()),
        Err(e) => panic!("reading the whole valid log failed: {e}"),
    }

    let mut targets: Vec<i64> = t.batches.iter().map(|b| b.max_timestamp).collect();
    targets.extend(t.batches.iter().map(|b| b.max_timestamp + 1));
    targets.extend([0, i64::MAX]);
    // The time index is trusted after a clean shutdown (as Kafka does): entries that lie about
    // timestamps cannot be told from true ones without scanning the `.log`, so a lookup may
    // miss the first qualifying batch, or refuse with `Corrupt`. What it returns must still be
    // a real batch that qualifies. With the index files rebuilt (no clean shutdown of the
    // segment holding them), the answer must be exact.
    for ts in targets {
        let expected = t
            .batches
            .iter()
            .find(|b| b.max_timestamp >= ts)
            .map(|b| TimestampOffset {
                timestamp_ms: b.max_timestamp,
                offset: b.base_offset,
            });
        match log.offset_for_timestamp(ts) {
            Ok(got) if got == expected => {}
            Ok(got) if trusted => {
                if let Some(got) = got {
                    assert!(
                        t.batches.iter().any(|b| b.base_offset == got.offset
                            && b.max_timestamp == got.timestamp_ms
                            && b.max_timestamp >= ts),
                        "offset_for_timestamp({ts}) returned {got:?}, not a qualifying batch"
                    );
                }
            }
            Err(LogError::Corrupt { .. }) if trusted => {}
            got => panic!("offset_for_timestamp({ts}): {got:?}, expected {expected:?}"),
        }
    }
    if !trusted {
        let max = t.batches.iter().map(|b| b.max_timestamp).max().unwrap();
        let first_max = t.batches.iter().find(|b| b.max_timestamp == max).unwrap();
        assert_eq!(
            log.max_timestamp_offset(),
            Some(TimestampOffset {
                timestamp_ms: max,
                offset: first_max.base_offset
            })
        );
    } else {
        let _ = log.max_timestamp_offset();
    }

    // Index files rebuilt by the reads above are whole: a close and reopen trusts them.
    log.close()
        .unwrap_or_else(|e| panic!("close after the reads failed: {e}"));
    drop(log);
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
    let log = PartitionLog::open(storage, &dir, t.config(), NOW_MS)
        .unwrap_or_else(|e| panic!("reopen failed: {e}"));
    assert_eq!(log.log_end_offset(), t.end);
    match log.read(0, usize::MAX, i64::MAX, true) {
        Ok(r) => assert!(r.bytes == t.all_bytes(), "reopened log serves other bytes"),
        Err(e) => panic!("reading the whole reopened log failed: {e}"),
    }
});
