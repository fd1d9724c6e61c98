//! Recovery: damaged segment and index files on reopen yield exactly the intact prefix,
//! readable, with appends continuing at the right offset.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use proptest::prelude::*;
use runnel_log::partition_log::CLEAN_SHUTDOWN_FILE;
use runnel_log::{LogConfig, LogError, PartitionLog};
use runnel_model::batch::testing::simple_batch;

use crate::common::*;

/// A log with `batches` appends of 2 records each under `small_config`; returns it and the
/// stored bytes of each batch.
fn filled(dir: &Path, batches: usize) -> (PartitionLog, Vec<Vec<u8>>) {
    let log = open(fs(), dir, small_config());
    let stored = (0..batches).map(|_| append(&log, 2).1).collect();
    (log, stored)
}

fn concat(batches: &[Vec<u8>]) -> Vec<u8> {
    batches.concat()
}

fn active_log_path(log: &PartitionLog, dir: &Path) -> std::path::PathBuf {
    seg_path(dir, *log.segment_base_offsets().last().unwrap(), ".log")
}

fn cut(path: &Path, bytes: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - bytes).unwrap();
}

fn flip_byte(path: &Path, from_end: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let pos = f.metadata().unwrap().len() - from_end;
    let mut b = [0u8];
    f.read_exact_at(&mut b, pos).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], pos).unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Reopens and checks that exactly `intact` batches survive, then that appends continue.
fn assert_reopens_with_prefix(dir: &Path, stored: &[Vec<u8>], intact: usize) {
    let log = open(fs(), dir, small_config());
    assert_eq!(log.log_end_offset(), 2 * intact as i64);
    assert_eq!(read_all(&log), concat(&stored[..intact]));
    let (info, _) = append(&log, 3);
    assert_eq!(info.base_offset, 2 * intact as i64);
    let all = offsets_of(&read_all(&log));
    assert_eq!(all.len(), intact + 1);
    assert_eq!(
        all.last(),
        Some(&(2 * intact as i64, 2 * intact as i64 + 2))
    );
    // And it survives another crash.
    drop(log);
    let log = open(fs(), dir, small_config());
    assert_eq!(log.log_end_offset(), 2 * intact as i64 + 3);
}

#[test]
fn given_active_segment_cut_mid_batch_when_reopened_after_crash_should_keep_intact_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 12);
    let active = active_log_path(&log, tmp.path());
    drop(log);
    cut(&active, 10);
    assert_reopens_with_prefix(tmp.path(), &stored, 11);
}

#[test]
fn given_active_segment_cut_inside_header_should_keep_intact_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 12);
    let active = active_log_path(&log, tmp.path());
    drop(log);
    let last = stored.last().unwrap().len() as u64;
    cut(&active, last - 5);
    assert_reopens_with_prefix(tmp.path(), &stored, 11);
}

#[test]
fn given_flipped_byte_in_last_batch_when_reopened_after_crash_should_drop_that_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 12);
    let active = active_log_path(&log, tmp.path());
    drop(log);
    flip_byte(&active, 3);
    assert_reopens_with_prefix(tmp.path(), &stored, 11);
}

#[test]
fn given_garbage_after_the_last_batch_when_reopened_should_drop_the_garbage() {
    for clean in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (log, stored) = filled(tmp.path(), 12);
        let active = active_log_path(&log, tmp.path());
        if clean {
            log.close().unwrap();
        }
        drop(log);
        append_bytes(&active, &[0xab; 37]);
        assert_reopens_with_prefix(tmp.path(), &stored, 12);
    }
}

#[test]
fn given_next_batch_of_valid_bytes_but_wrong_offset_should_drop_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 12);
    let active = active_log_path(&log, tmp.path());
    drop(log);
    append_bytes(&active, &simple_batch(1_000, 2));
    assert_reopens_with_prefix(tmp.path(), &stored, 12);
}

#[test]
fn given_crash_after_a_clean_open_should_still_scan_the_active_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 12);
    log.close().unwrap();
    let log = open(fs(), tmp.path(), small_config());
    assert!(!tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let active = active_log_path(&log, tmp.path());
    drop(log);
    flip_byte(&active, 3);
    assert_reopens_with_prefix(tmp.path(), &stored, 11);
}

fn index_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".index") || n.ends_with(".timeindex"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn given_deleted_index_files_when_reopened_should_rebuild_identical_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 40);
    log.close().unwrap();
    let before = index_files(tmp.path());
    assert!(
        before.iter().any(|(_, b)| !b.is_empty()),
        "indexes were written"
    );
    for (name, _) in &before {
        std::fs::remove_file(tmp.path().join(name)).unwrap();
    }
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(read_all(&log), concat(&stored));
    log.close().unwrap();
    assert_eq!(index_files(tmp.path()), before);
}

#[test]
fn given_damaged_index_files_when_reopened_should_rebuild_them() {
    type Damage = (&'static str, fn(&Path));
    let damages: [Damage; 6] = [
        (".index", |p| append_bytes(p, &[1, 2, 3])),
        (".timeindex", |p| append_bytes(p, &[1, 2, 3, 4, 5])),
        (".index", |p| {
            // Entries not increasing.
            std::fs::write(p, [0, 0, 0, 5, 0, 0, 0, 100, 0, 0, 0, 3, 0, 0, 0, 200]).unwrap()
        }),
        (".index", |p| {
            // Entry pointing beyond the log.
            std::fs::write(p, [0, 0, 0, 1, 0, 0xff, 0, 0]).unwrap()
        }),
        (".index", |p| {
            // Entry pointing inside a batch, not at its start.
            std::fs::write(p, [0, 0, 0, 2, 0, 0, 0, 100]).unwrap()
        }),
        (".timeindex", |p| {
            // Decreasing timestamps.
            let mut b = Vec::new();
            b.extend_from_slice(&9_000i64.to_be_bytes());
            b.extend_from_slice(&1u32.to_be_bytes());
            b.extend_from_slice(&8_000i64.to_be_bytes());
            b.extend_from_slice(&2u32.to_be_bytes());
            std::fs::write(p, b).unwrap()
        }),
    ];
    for (i, (suffix, damage)) in damages.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, stored) = filled(tmp.path(), 40);
        log.close().unwrap();
        let before = index_files(tmp.path());
        for base in [0, *log.segment_base_offsets().last().unwrap()] {
            damage(&seg_path(tmp.path(), base, suffix));
        }
        let log = open(fs(), tmp.path(), small_config());
        assert_eq!(read_all(&log), concat(&stored), "damage {i}");
        for offset in 0..log.log_end_offset() {
            let r = log.read(offset, 1, i64::MAX, true).unwrap();
            let (base, last) = offsets_of(&r.bytes)[0];
            assert!(base <= offset && offset <= last, "damage {i}");
        }
        log.close().unwrap();
        assert_eq!(index_files(tmp.path()), before, "damage {i}");
    }
}

/// The `(relative_offset, position)` entries of an offset index file.
fn offset_entries(path: &Path) -> Vec<(u32, u32)> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|e| {
            (
                u32::from_be_bytes(e[..4].try_into().unwrap()),
                u32::from_be_bytes(e[4..].try_into().unwrap()),
            )
        })
        .collect()
}

fn write_offset_entries(path: &Path, entries: &[(u32, u32)]) {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|&(o, p)| o.to_be_bytes().into_iter().chain(p.to_be_bytes()))
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// A closed log of one segment holding 20 appends, whose offset index's second entry was then
/// moved 10 bytes into the batch it names (the open trusts it: a clean shutdown, and the last
/// entry is right). Returns the config and the stored batches.
fn closed_log_with_an_entry_inside_its_batch(dir: &Path) -> (LogConfig, Vec<Vec<u8>>) {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = open(fs(), dir, config.clone());
    let stored = (0..20).map(|_| append(&log, 2).1).collect();
    log.close().unwrap();
    let index = seg_path(dir, 0, ".index");
    let mut entries = offset_entries(&index);
    assert!(entries.len() >= 3, "{entries:?}");
    entries[1].1 += 10;
    write_offset_entries(&index, &entries);
    (config, stored)
}

/// Reads every offset of `log` one batch at a time and all of it at once, and checks each
/// against the stored batches.
fn assert_every_offset_reads_back(log: &PartitionLog, stored: &[Vec<u8>]) {
    assert_eq!(read_all(log), concat(stored));
    let mut offset = 0i64;
    for b in stored {
        let (base, last) = offsets_of(b)[0];
        assert_eq!(base, offset);
        for o in base..=last {
            let r = log.read(o, 1, i64::MAX, true).unwrap_or_else(|e| {
                panic!("read at offset {o} of intact data failed: {e}");
            });
            assert_eq!(r.bytes.as_ref(), b.as_slice(), "read at offset {o}");
            assert_eq!(r.next_offset, last + 1);
        }
        offset = last + 1;
    }
    assert_eq!(log.log_end_offset(), offset);
}

/// Regression of the fuzzing finding `index-entries` (fuzz/README.md): offset index entries
/// trusted at open (a clean shutdown; a segment that is not the last) that do not point at
/// the batch they name — inside a batch, at another batch, or (the last entry of a segment
/// where gaps are allowed) at a batch starting after the named offset. Reads answered
/// `Corrupt` for intact data for as long as the index was trusted.
#[test]
fn given_trusted_offset_index_entries_not_pointing_at_their_batch_when_read_should_serve_intact_data_and_rebuild_the_index(
) {
    type Damage = (&'static str, fn(&mut Vec<(u32, u32)>));
    let damages: [Damage; 3] = [
        ("an entry pointing inside a batch", |e| e[1].1 += 10),
        ("an entry naming another batch's offset", |e| {
            e[1].0 = e[0].0 + 1
        }),
        ("a last entry naming an offset below its batch's", |e| {
            let n = e.len();
            e[n - 1].0 = e[n - 2].0 + 1
        }),
    ];
    for (what, damage) in damages {
        let tmp = tempfile::tempdir().unwrap();
        let (log, stored) = filled(tmp.path(), 40);
        assert!(log.segment_base_offsets().len() >= 3, "{what}");
        log.close().unwrap();
        let before = index_files(tmp.path());
        let index = seg_path(tmp.path(), 0, ".index");
        let mut entries = offset_entries(&index);
        assert!(entries.len() >= 3, "{what}: {entries:?}");
        damage(&mut entries);
        write_offset_entries(&index, &entries);

        let log = open(fs(), tmp.path(), small_config());
        assert_every_offset_reads_back(&log, &stored);
        // The index was rebuilt from the `.log`, identical to the one the appends wrote.
        assert_eq!(index_files(tmp.path()), before, "{what}");
        let ts = log.offset_for_timestamp(T0_MS).unwrap().unwrap();
        assert_eq!(ts.offset, 0, "{what}");
        log.close().unwrap();
        assert_eq!(index_files(tmp.path()), before, "{what}");
        let log = open(fs(), tmp.path(), small_config());
        assert_every_offset_reads_back(&log, &stored);
    }
}

#[test]
fn given_bad_offset_index_entry_in_the_active_segment_when_read_should_rebuild_it_and_keep_appending(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, mut stored) = closed_log_with_an_entry_inside_its_batch(tmp.path());
    let log = open(fs(), tmp.path(), config.clone());
    assert_eq!(log.segment_base_offsets(), vec![0]);
    assert_every_offset_reads_back(&log, &stored);
    stored.extend((0..20).map(|_| append(&log, 2).1));
    assert_every_offset_reads_back(&log, &stored);
    log.close().unwrap();
    let rebuilt = index_files(tmp.path());
    for (name, _) in &rebuilt {
        std::fs::remove_file(tmp.path().join(name)).unwrap();
    }
    // The indexes are the ones a scan builds: appends after the rebuild continued them.
    let log = open(fs(), tmp.path(), config);
    assert_every_offset_reads_back(&log, &stored);
    log.close().unwrap();
    assert_eq!(index_files(tmp.path()), rebuilt);
}

/// Found by fuzzing: the base offset is not covered by the CRC, and a batch of a trusted
/// segment claiming offsets past the segment's end made reads stop there without an error,
/// short of the log end (consumers stuck).
#[test]
fn given_trusted_batch_claiming_offsets_past_its_segment_when_read_should_answer_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 40);
    let segments = log.segment_base_offsets();
    log.close().unwrap();
    // The first batch of segment 0 (before its first index entry) now claims offset 2^32.
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(tmp.path(), 0, ".log"))
        .unwrap();
    f.write_all_at(&(1i64 << 32).to_be_bytes(), 0).unwrap();
    drop(f);
    let log = open(fs(), tmp.path(), small_config());
    assert!(matches!(
        log.read(0, usize::MAX, i64::MAX, true),
        Err(LogError::Corrupt { .. })
    ));
    // The other segments are served.
    let r = log.read(segments[1], usize::MAX, i64::MAX, true).unwrap();
    let skipped: usize = stored
        .iter()
        .take(segments[1] as usize / 2)
        .map(Vec::len)
        .sum();
    assert_eq!(r.bytes.as_ref(), &concat(&stored)[skipped..]);
}

/// Found by fuzzing the fix of `index-entries`: when the `.log` of a segment is damaged too,
/// an index rebuilt up to the damage made the next open walk the tail from inside the damage
/// and cut the segment there, with appends acknowledged since.
#[test]
fn given_damaged_batch_and_bad_index_entry_in_the_active_segment_when_read_should_keep_appends_across_reopen(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = closed_log_with_an_entry_inside_its_batch(tmp.path());
    let entries = offset_entries(&seg_path(tmp.path(), 0, ".index"));
    // The first batch's length now runs past the end of the file.
    let f = OpenOptions::new()
        .write(true)
        .open(seg_path(tmp.path(), 0, ".log"))
        .unwrap();
    f.write_all_at(&i32::MAX.to_be_bytes(), 8).unwrap();
    drop(f);

    let log = open(fs(), tmp.path(), config.clone());
    let end = log.log_end_offset();
    assert_eq!(end, 40);
    let target = i64::from(entries[1].0) + 1;
    assert!(matches!(
        log.read(target, usize::MAX, i64::MAX, true),
        Err(LogError::Corrupt { .. })
    ));
    let (info, appended) = append(&log, 3);
    assert_eq!(info.base_offset, end);
    log.close().unwrap();
    let log = open(fs(), tmp.path(), config);
    assert_eq!(log.log_end_offset(), end + 3);
    let r = log.read(end, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(r.bytes.as_ref(), appended.as_slice());
}

#[test]
fn given_corrupt_batch_in_an_older_segment_when_read_should_refuse_to_serve_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 40);
    log.close().unwrap();
    // The second batch of segment 0: flip a payload byte (CRC-covered).
    let seg0 = seg_path(tmp.path(), 0, ".log");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg0)
        .unwrap();
    let pos = stored[0].len() as u64 + stored[1].len() as u64 - 2;
    f.write_all_at(&[0xee], pos).unwrap();
    drop(f);
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(
        offsets_of(&log.read(0, stored[0].len(), i64::MAX, true).unwrap().bytes),
        vec![(0, 1)]
    );
    assert!(matches!(
        log.read(2, usize::MAX, i64::MAX, true),
        Err(LogError::Corrupt { .. })
    ));
    assert!(matches!(
        log.read(0, usize::MAX, i64::MAX, true),
        Err(LogError::Corrupt { .. })
    ));
}

#[test]
fn given_corrupt_older_segment_that_needs_a_scan_should_truncate_it_and_drop_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 40);
    let segments = log.segment_base_offsets();
    assert!(segments.len() >= 3);
    log.close().unwrap();
    let seg0 = seg_path(tmp.path(), 0, ".log");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg0)
        .unwrap();
    let pos = stored[0].len() as u64 + stored[1].len() as u64 - 2;
    f.write_all_at(&[0xee], pos).unwrap();
    drop(f);
    // A damaged index forces a scan of segment 0.
    append_bytes(&seg_path(tmp.path(), 0, ".index"), &[1]);
    let log = open(fs(), tmp.path(), small_config());
    // The cut segment stays a closed one; a new active segment starts where it ends.
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(read_all(&log), stored[0]);
    for &base in &segments[1..] {
        assert!(!seg_path(tmp.path(), base, ".log").exists());
    }
    let (info, _) = append(&log, 1);
    assert_eq!(info.base_offset, 2);
}

/// Regression of the fuzzing finding `gapped-active` (fuzz/README.md): a segment with gaps
/// between its batches (as the cleaner leaves them) that recovery left as the last one, by
/// removing the segments after it, became the active segment; the next open checked it as
/// the active one, without gaps, and cut it at its first gap, with the appends acknowledged
/// in between.
#[test]
fn given_gapped_segment_left_last_by_recovery_when_appended_and_reopened_should_keep_every_append()
{
    for clean in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        // A cleaned segment 0 (offsets 0-1, 5-6, 9: the others were compacted away), then a
        // segment at 12 where 10 was expected (segment 10 was lost): recovery removes it.
        let gapped = [simple_batch(0, 2), simple_batch(5, 2), simple_batch(9, 1)];
        std::fs::write(seg_path(tmp.path(), 0, ".log"), concat(&gapped)).unwrap();
        std::fs::write(seg_path(tmp.path(), 12, ".log"), simple_batch(12, 3)).unwrap();
        let log = open(fs(), tmp.path(), small_config());
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(log.segment_base_offsets(), vec![0, 10]);
        assert!(!seg_path(tmp.path(), 12, ".log").exists());
        let (info, appended) = append(&log, 3);
        assert_eq!(info.base_offset, 10);
        let mut expected = gapped.to_vec();
        expected.push(appended);
        if clean {
            log.close().unwrap();
        }
        drop(log);
        for _ in 0..2 {
            let log = open(fs(), tmp.path(), small_config());
            assert_eq!(log.log_end_offset(), 13, "clean {clean}");
            assert_eq!(read_all(&log), concat(&expected), "clean {clean}");
            drop(log);
        }
    }
}

#[test]
fn given_leftover_files_when_opened_should_remove_them_and_ignore_unknown_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 5);
    log.close().unwrap();
    std::fs::write(seg_path(tmp.path(), 500, ".index"), [0u8; 8]).unwrap();
    std::fs::write(seg_path(tmp.path(), 500, ".timeindex"), [0u8; 12]).unwrap();
    std::fs::write(tmp.path().join("leader-epoch-checkpoint.tmp"), b"junk").unwrap();
    std::fs::write(tmp.path().join("README"), b"hello").unwrap();
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(read_all(&log), concat(&stored));
    let names = names_in(tmp.path());
    assert!(!names
        .iter()
        .any(|n| n.contains("00000000000000000500") || n.ends_with(".tmp")));
    assert!(names.contains(&"README".to_string()));
}

#[test]
fn given_epoch_checkpoint_ahead_of_the_recovered_log_should_truncate_the_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    let mut b = batch(2);
    log.append(&mut b, 1, T0_MS).unwrap();
    let mut b = batch(2);
    log.append(&mut b, 3, T0_MS).unwrap();
    assert_eq!(log.leader_epochs(), vec![(1, 0), (3, 2)]);
    let active = active_log_path(&log, tmp.path());
    drop(log);
    cut(&active, 1);
    let log = open(fs(), tmp.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.leader_epochs(), vec![(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(1), (1, 2));
    assert_eq!(log.end_offset_for_epoch(3), (-1, -1));
    // A new leader epoch starts where the log ends now.
    let mut b = batch(1);
    log.append(&mut b, 4, T0_MS).unwrap();
    assert_eq!(log.leader_epochs(), vec![(1, 0), (4, 2)]);
}

#[test]
fn given_missing_epoch_checkpoint_should_relearn_epochs_of_the_scanned_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    for epoch in [2, 2, 6] {
        let mut b = batch(1);
        log.append(&mut b, epoch, T0_MS).unwrap();
    }
    drop(log);
    std::fs::remove_file(tmp.path().join("leader-epoch-checkpoint")).unwrap();
    let log = open(fs(), tmp.path(), LogConfig::default());
    assert_eq!(log.leader_epochs(), vec![(2, 0), (6, 2)]);
}

#[test]
fn given_damaged_checkpoints_when_opened_should_ignore_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 3);
    log.close().unwrap();
    std::fs::write(tmp.path().join("leader-epoch-checkpoint"), b"\xff\xfe").unwrap();
    std::fs::write(tmp.path().join("log-start-offset-checkpoint"), b"zzz").unwrap();
    let log = open(fs(), tmp.path(), small_config());
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(read_all(&log), concat(&stored));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn given_arbitrary_bytes_after_valid_batches_when_reopened_should_keep_the_valid_prefix(
        valid_batches in 0usize..4,
        garbage in proptest::collection::vec(any::<u8>(), 0..400),
        clean in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        let mut next = 0i64;
        for _ in 0..valid_batches {
            expected.extend_from_slice(&simple_batch(next, 2));
            next += 2;
        }
        let mut bytes = expected.clone();
        bytes.extend_from_slice(&garbage);
        std::fs::write(seg_path(tmp.path(), 0, ".log"), &bytes).unwrap();
        if clean {
            std::fs::write(tmp.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
        }
        let log = PartitionLog::open(fs(), tmp.path(), small_config(), T0_MS).unwrap();
        // Garbage that happens to be a valid batch continuing the offsets is astronomically
        // unlikely (it needs a matching CRC-32C).
        prop_assert_eq!(log.log_end_offset(), next);
        prop_assert_eq!(read_all(&log), expected);
        let (info, _) = append(&log, 1);
        prop_assert_eq!(info.base_offset, next);
    }
}

/// A read in the memory-only mode (a fetch on a worker thread) that finds an index entry to
/// rebuild does not rebuild there (it reads the whole segment and writes files): it answers
/// would-block, and the read that follows outside the mode rebuilds.
#[test]
fn given_an_index_entry_to_rebuild_when_read_in_memory_only_mode_should_leave_the_rebuild_to_a_read_that_may_wait(
) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, stored) = filled(tmp.path(), 40);
    let before = index_files(tmp.path());
    log.close().unwrap();
    let index = seg_path(tmp.path(), 0, ".index");
    let mut entries = offset_entries(&index);
    entries[1].1 += 10;
    write_offset_entries(&index, &entries);
    let damaged = index_files(tmp.path());

    let log = open(fs(), tmp.path(), small_config());
    let mut deferred = 0;
    for b in &stored {
        let (base, _) = offsets_of(b)[0];
        match runnel_log::storage::memory_only(|| log.read(base, 1, i64::MAX, true)) {
            Ok(r) => assert_eq!(r.bytes.as_ref(), b.as_slice(), "offset {base}"),
            Err(e) => {
                assert!(e.is_would_block(), "offset {base}: {e}");
                deferred += 1;
            }
        }
    }
    assert!(deferred > 0, "the damaged entry is met");
    assert_eq!(
        index_files(tmp.path()),
        damaged,
        "no rebuild inside the mode"
    );
    assert!(!log.has_failed());
    assert_every_offset_reads_back(&log, &stored);
    assert_eq!(index_files(tmp.path()), before, "rebuilt outside it");
}
