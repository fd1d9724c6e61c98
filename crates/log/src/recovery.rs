//! Opening a partition directory: listing and cleaning it (completing a clean's swap that
//! passed its commit point, removing what an unfinished clean or a segment deletion left),
//! loading the checkpoints, and
//! loading every segment — cheaply checked when it can be trusted, scanned batch by batch,
//! truncated at the first torn or corrupt batch and re-indexed when it cannot.
//!
//! Which segments are scanned:
//! - the last (active) one, unless the log was closed cleanly (the clean-shutdown marker);
//! - any segment with a missing or damaged index file (size not a multiple of the entry size,
//!   entries not increasing, pointing beyond the `.log`, past the segment's last offset);
//! - any segment whose batches after the last offset index entry do not parse, or that does
//!   not end exactly where the next segment begins.
//!
//! A closed segment may have gaps between its batches (the cleaner rewrote it); the active
//! segment may not. A closed segment never becomes the active one: when the segments after it
//! are removed, a new empty active segment is rolled after it.
//!
//! Then the idempotent producers' state is loaded: the latest snapshot at or below the
//! recovered log end offset, plus a walk of the batch headers after it
//! ([`load_producer_state`]).
//!
//! Rolled segments were fsynced when rolled, so only the active one can hold torn bytes after
//! a crash; a cut in an older segment means damage, and (as Kafka does) the segments after it
//! are removed, since keeping them would leave a hole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::checkpoint::CleanerCheckpoint;
use crate::checkpoint::{self, TMP_SUFFIX};
use crate::epoch::LeaderEpochCache;
use crate::error::LogError;
use crate::index::{self, IndexFile, IndexLimits, IndexState, OffsetEntry, TimeEntry};
use crate::partition_log::{
    create_segment_files, empty_segment, CLEANER_CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE,
    LEADER_EPOCH_CHECKPOINT_FILE, LOG_START_OFFSET_CHECKPOINT_FILE,
};
use crate::producer_state::{
    parse_snapshot_file_name, snapshot_file_name, ProducerStates, PRODUCERS_PER_PARTITION_MAX,
};
use crate::segment::{
    self, Segment, SegmentFileKind, SegmentFiles, CLEANED_SUFFIX, DELETED_SUFFIX, LOG_SUFFIX,
    OFFSET_INDEX_SUFFIX, SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::segment::{BatchHeader, ChunkReader, HeaderAt, SCAN_CHUNK_BYTES};
use crate::storage::{OpenMode, Storage};

/// What is in a partition directory.
/// Files a partition directory may hold besides segments: our checkpoints, and Kafka's
/// `partition.metadata` (topic id), which the broker keeps there.
const KNOWN_OTHER_FILES: [&str; 4] = [
    LEADER_EPOCH_CHECKPOINT_FILE,
    LOG_START_OFFSET_CHECKPOINT_FILE,
    CLEANER_CHECKPOINT_FILE,
    "partition.metadata",
];

#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub clean_shutdown: bool,
    /// Offsets of the producer-state snapshot files.
    pub snapshots: BTreeSet<i64>,
    /// Base offset → which of its files exist (log, offset index, time index).
    segments: BTreeMap<i64, [bool; 3]>,
    /// Base offset → which of its `.swap` files exist (log, offset index, time index).
    swaps: BTreeMap<i64, [bool; 3]>,
    /// Temporary files of checkpoint writes, files of an unfinished clean (`*.cleaned`), and
    /// files of deleted segments (`*.deleted`): all removed at open.
    tmp_files: Vec<String>,
}

fn kind_slot(kind: SegmentFileKind) -> usize {
    match kind {
        SegmentFileKind::Log => 0,
        SegmentFileKind::OffsetIndex => 1,
        SegmentFileKind::TimeIndex => 2,
    }
}

pub(crate) fn list_or_create(storage: &dyn Storage, dir: &Path) -> Result<Listing, LogError> {
    let names = match storage.list_dir(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            storage
                .create_dir_all(dir)
                .map_err(|e| LogError::io("create directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                storage
                    .sync_dir(parent)
                    .map_err(|e| LogError::io("fsync directory", parent, e))?;
            }
            Vec::new()
        }
        Err(e) => return Err(LogError::io("list directory", dir, e)),
    };
    let mut listing = Listing::default();
    for name in names {
        let Some(name) = name.to_str() else {
            warn!(dir = %dir.display(), name = ?name, "ignoring a file whose name is not UTF-8");
            continue;
        };
        if name == CLEAN_SHUTDOWN_FILE {
            listing.clean_shutdown = true;
        } else if name.ends_with(TMP_SUFFIX)
            || name.ends_with(CLEANED_SUFFIX)
            || name.ends_with(DELETED_SUFFIX)
        {
            listing.tmp_files.push(name.to_string());
        } else if let Some((base_offset, kind)) = name
            .strip_suffix(SWAP_SUFFIX)
            .and_then(segment::parse_file_name)
        {
            listing.swaps.entry(base_offset).or_default()[kind_slot(kind)] = true;
        } else if let Some(offset) = parse_snapshot_file_name(name) {
            listing.snapshots.insert(offset);
        } else if let Some((base_offset, kind)) = segment::parse_file_name(name) {
            listing.segments.entry(base_offset).or_default()[kind_slot(kind)] = true;
        } else if !KNOWN_OTHER_FILES.contains(&name) {
            warn!(dir = %dir.display(), name, "ignoring an unknown file in a partition directory");
        }
    }
    Ok(listing)
}

/// Completes the swaps of cleans interrupted after their commit point. A clean writes a
/// cleaned segment as `<base>.{index,timeindex,log}.cleaned`, fsyncs them, renames the index
/// files and then the `.log` to `.swap` and fsyncs the directory: a `<base>.log.swap` means the
/// cleaned segment is whole and replaces every segment with a base offset in
/// `[base, its next offset)` (a cleaned segment ends exactly where the segments it replaces
/// ended). Those are removed and the `.swap` files renamed to their final names, as the clean
/// would have done. Swap index files without a `.log.swap` belong to a clean that did not reach
/// its commit point and are removed with the other leftovers. Returns whether anything was
/// done (the caller lists the directory again).
pub(crate) fn complete_swaps(
    storage: &dyn Storage,
    dir: &Path,
    listing: &Listing,
) -> Result<bool, LogError> {
    let mut changed = false;
    let remove = |path: PathBuf| -> Result<(), LogError> {
        match storage.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io("remove", path, e)),
        }
    };
    // Bounded by the number of swap files.
    for (&base_offset, &[log, offset_index, time_index]) in &listing.swaps {
        if !log {
            continue;
        }
        let swap_path = segment::temp_path(dir, base_offset, LOG_SUFFIX, SWAP_SUFFIX);
        let file = storage
            .open(&swap_path, OpenMode::ReadWrite)
            .map_err(|e| LogError::io("open", &swap_path, e))?;
        let len_bytes = file
            .len()
            .map_err(|e| LogError::io("stat", &swap_path, e))?;
        // Any limits do: only the next offset is used.
        let limits = IndexLimits {
            index_interval_bytes: u64::MAX,
            offset_entries_max: 0,
            time_entries_max: 0,
        };
        let outcome = segment::scan(&*file, base_offset, len_bytes, &limits, true)
            .map_err(|e| LogError::io("read", &swap_path, e))?;
        drop(file);
        if outcome.valid_bytes == 0 {
            // Cannot happen (the cleaned files were fsynced before the rename, and a cleaned
            // segment holds at least one batch): keep the old segments.
            error!(
                path = %swap_path.display(),
                reason = outcome.stopped.as_deref().unwrap_or("empty"),
                "removing a swap segment without a valid batch; keeping the segments it was to replace"
            );
            for suffix in segment::SEGMENT_SUFFIXES {
                remove(segment::temp_path(dir, base_offset, suffix, SWAP_SUFFIX))?;
            }
            changed = true;
            continue;
        }
        let end_offset = outcome.next_offset;
        let replaced: Vec<i64> = listing
            .segments
            .range(base_offset..end_offset)
            .map(|(&b, _)| b)
            .collect();
        warn!(
            dir = %dir.display(),
            base_offset,
            end_offset,
            replaced_segments = replaced.len(),
            "completing the swap of a clean interrupted after its commit point"
        );
        for old_base in replaced {
            for suffix in segment::SEGMENT_SUFFIXES {
                remove(segment::segment_path(dir, old_base, suffix))?;
            }
        }
        for (suffix, present) in [
            (OFFSET_INDEX_SUFFIX, offset_index),
            (TIME_INDEX_SUFFIX, time_index),
            (LOG_SUFFIX, true),
        ] {
            if present {
                let from = segment::temp_path(dir, base_offset, suffix, SWAP_SUFFIX);
                let to = segment::segment_path(dir, base_offset, suffix);
                storage
                    .rename(&from, &to)
                    .map_err(|e| LogError::io("rename", &from, e))?;
            }
        }
        changed = true;
    }
    if changed {
        storage
            .sync_dir(dir)
            .map_err(|e| LogError::io("fsync directory", dir, e))?;
    }
    Ok(changed)
}

/// Removes temporary files of interrupted checkpoint writes, files of unfinished cleans and of
/// deleted segments, swap index files without a swap `.log`, and index files without a `.log`.
pub(crate) fn remove_leftovers(
    storage: &dyn Storage,
    dir: &Path,
    listing: &Listing,
) -> Result<(), LogError> {
    let mut removed = false;
    let mut remove = |path: PathBuf| -> Result<(), LogError> {
        match storage.remove_file(&path) {
            Ok(()) => {
                removed = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io("remove", path, e)),
        }
    };
    for name in &listing.tmp_files {
        remove(dir.join(name))?;
    }
    for (&base_offset, &[log, offset_index, time_index]) in &listing.swaps {
        if log {
            continue;
        }
        if offset_index {
            remove(segment::temp_path(
                dir,
                base_offset,
                OFFSET_INDEX_SUFFIX,
                SWAP_SUFFIX,
            ))?;
        }
        if time_index {
            remove(segment::temp_path(
                dir,
                base_offset,
                TIME_INDEX_SUFFIX,
                SWAP_SUFFIX,
            ))?;
        }
    }
    for (&base_offset, &[log, offset_index, time_index]) in &listing.segments {
        if log {
            continue;
        }
        warn!(dir = %dir.display(), base_offset, "removing index files that have no segment");
        if offset_index {
            remove(segment::segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX))?;
        }
        if time_index {
            remove(segment::segment_path(dir, base_offset, TIME_INDEX_SUFFIX))?;
        }
    }
    if removed {
        storage
            .sync_dir(dir)
            .map_err(|e| LogError::io("fsync directory", dir, e))?;
    }
    Ok(())
}

pub(crate) fn load_log_start_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_OFFSET_CHECKPOINT_FILE);
    let Some(bytes) =
        checkpoint::read_small(storage, &path).map_err(|e| LogError::io("read", &path, e))?
    else {
        return Ok(None);
    };
    match checkpoint::decode_log_start_offset(&bytes) {
        Ok(offset) => Ok(Some(offset)),
        Err(reason) => {
            warn!(path = %path.display(), %reason, "ignoring a damaged log start offset checkpoint");
            Ok(None)
        }
    }
}

/// The cleaner's checkpoint; a missing or damaged one is the state of a never-cleaned log
/// (everything dirty: the next clean sets fresh tombstone horizons, keeping tombstones longer,
/// never shorter).
pub(crate) fn load_cleaner_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<CleanerCheckpoint, LogError> {
    let path = dir.join(CLEANER_CHECKPOINT_FILE);
    let Some(bytes) =
        checkpoint::read_small(storage, &path).map_err(|e| LogError::io("read", &path, e))?
    else {
        return Ok(CleanerCheckpoint::default());
    };
    match CleanerCheckpoint::decode(&bytes) {
        Ok(c) => Ok(c),
        Err(reason) => {
            warn!(path = %path.display(), %reason, "ignoring a damaged cleaner checkpoint");
            Ok(CleanerCheckpoint::default())
        }
    }
}

pub(crate) fn load_epoch_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<LeaderEpochCache, LogError> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let Some(bytes) =
        checkpoint::read_small(storage, &path).map_err(|e| LogError::io("read", &path, e))?
    else {
        return Ok(LeaderEpochCache::default());
    };
    match LeaderEpochCache::decode(&bytes) {
        Ok(cache) => Ok(cache),
        Err(reason) => {
            warn!(path = %path.display(), %reason, "ignoring a damaged leader epoch checkpoint");
            Ok(LeaderEpochCache::default())
        }
    }
}

/// Loads every segment in order. The last one is scanned unless the shutdown was clean; any
/// segment whose indexes are damaged, or whose tail does not parse or does not end where the
/// next segment starts, is scanned and has its indexes rebuilt. If a scan cuts a segment that
/// is not the last, the later segments would leave a hole and are removed (as Kafka does), and
/// a new empty active segment starts where the cut one ends, so that the cut one stays a
/// closed segment (gaps allowed) at every later open. Returns the segments and the epoch
/// starts seen by the scans.
#[allow(clippy::type_complexity)]
pub(crate) fn load_segments(
    storage: &dyn Storage,
    dir: &Path,
    listing: &Listing,
    clean_shutdown: bool,
    limits: &IndexLimits,
    now_ms: i64,
) -> Result<(BTreeMap<i64, Segment>, Vec<(i32, i64)>), LogError> {
    let bases: Vec<i64> = listing
        .segments
        .iter()
        .filter(|(_, files)| files[0])
        .map(|(&base, _)| base)
        .collect();
    let mut segments = BTreeMap::new();
    let mut epoch_starts = Vec::new();
    for (i, &base_offset) in bases.iter().enumerate() {
        let next_base_offset = bases.get(i + 1).copied();
        let [_, has_offset_index, has_time_index] = listing.segments[&base_offset];
        let scan_reason = if !clean_shutdown && next_base_offset.is_none() {
            Some("the log was not closed cleanly")
        } else if !has_offset_index || !has_time_index {
            Some("an index file is missing")
        } else {
            None
        };
        let (segment, starts) = load_segment(
            storage,
            dir,
            base_offset,
            next_base_offset,
            scan_reason,
            limits,
            now_ms,
        )?;
        epoch_starts.extend(starts);
        let next_offset = segment.next_offset;
        segments.insert(base_offset, segment);
        if let Some(next_base_offset) = next_base_offset {
            if next_offset != next_base_offset {
                let later = &bases[i + 1..];
                error!(
                    dir = %dir.display(),
                    segment_base_offset = base_offset,
                    segment_next_offset = next_offset,
                    next_base_offset,
                    removed_segments = later.len(),
                    "segment does not end where the next one starts; removing the later segments"
                );
                for &later_base in later {
                    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        let path = segment::segment_path(dir, later_base, suffix);
                        match storage.remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(LogError::io("remove", path, e)),
                        }
                    }
                }
                // This segment was loaded as a closed one, gaps allowed (it may have been
                // cleaned). It must stay closed: as the active segment it would be checked
                // without gaps at the next open and cut at its first gap, appends made in
                // between included. A fresh active segment starts where it ends (an empty one
                // has no gaps and can stay active).
                if next_offset > base_offset {
                    let files = create_segment_files(storage, dir, next_offset)
                        .map_err(|(op, path, e)| LogError::io(op, path, e))?;
                    info!(
                        dir = %dir.display(),
                        base_offset = next_offset,
                        "rolled a new active segment after the segments removed"
                    );
                    segments.insert(next_offset, empty_segment(next_offset, files, now_ms));
                }
                storage
                    .sync_dir(dir)
                    .map_err(|e| LogError::io("fsync directory", dir, e))?;
                break;
            }
        }
    }
    Ok((segments, epoch_starts))
}

/// Opens one segment, checks it cheaply (index files, tail) unless there is already a
/// `scan_reason`, and scans, truncates and re-indexes it if needed.
fn load_segment(
    storage: &dyn Storage,
    dir: &Path,
    base_offset: i64,
    next_base_offset: Option<i64>,
    scan_reason: Option<&str>,
    limits: &IndexLimits,
    now_ms: i64,
) -> Result<(Segment, Vec<(i32, i64)>), LogError> {
    // Batches of a closed segment may have gaps between them (it may have been cleaned); the
    // active segment is only ever appended to, so its offsets must be contiguous.
    let gaps = next_base_offset.is_some();
    let log_path = segment::segment_path(dir, base_offset, LOG_SUFFIX);
    let index_path = segment::segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX);
    let time_path = segment::segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
    let open = |path: &Path, mode| {
        storage
            .open(path, mode)
            .map_err(|e| LogError::io("open", path, e))
    };
    let files = Arc::new(SegmentFiles {
        log: open(&log_path, OpenMode::ReadWrite)?,
        offset_index: IndexFile::open(
            index_path.clone(),
            open(&index_path, OpenMode::CreateOrOpen)?,
        ),
        time_index: IndexFile::open(time_path.clone(), open(&time_path, OpenMode::CreateOrOpen)?),
        log_path: log_path.clone(),
    });
    let log_len_bytes = files
        .log
        .len()
        .map_err(|e| LogError::io("stat", &log_path, e))?;

    let checked = if let Some(reason) = scan_reason {
        Err(reason.to_string())
    } else {
        check_without_scan(
            storage,
            &files,
            base_offset,
            log_len_bytes,
            next_base_offset,
        )?
    };
    let reason = match checked {
        Ok((next_offset, index_state)) => {
            close_indexes(&files);
            let segment = Segment {
                base_offset,
                files,
                size_bytes: log_len_bytes,
                next_offset,
                index: index_state,
                roll_start_ms: None,
                modified_ms: now_ms,
            };
            return Ok((segment, Vec::new()));
        }
        Err(reason) => reason,
    };
    if scan_reason.is_none() {
        warn!(segment = %log_path.display(), %reason, "segment needs recovery; scanning it");
    } else {
        info!(segment = %log_path.display(), %reason, "scanning segment");
    }

    let outcome = segment::scan(&*files.log, base_offset, log_len_bytes, limits, gaps)
        .map_err(|e| LogError::io("read", &log_path, e))?;
    if outcome.valid_bytes < log_len_bytes {
        warn!(
            segment = %log_path.display(),
            position = outcome.valid_bytes,
            bytes_dropped = log_len_bytes - outcome.valid_bytes,
            reason = outcome.stopped.as_deref().unwrap_or("unknown"),
            "truncating segment at the first invalid batch"
        );
        files
            .log
            .set_len(outcome.valid_bytes)
            .map_err(|e| LogError::io("truncate", &log_path, e))?;
    }
    let mut index_state = outcome.index;
    let mut time_entries = outcome.time_entries;
    if next_base_offset.is_some() {
        // Not the active segment: record its final maximum, as a roll would have.
        time_entries.extend(index_state.final_time_entry(base_offset));
    }
    // Both indexes are open while the segment is loaded (`close_empty_indexes` comes last).
    let offset_file = files
        .offset_index
        .handle(storage)
        .map_err(|e| LogError::io("open", &index_path, e))?;
    let time_file = files
        .time_index
        .handle(storage)
        .map_err(|e| LogError::io("open", &time_path, e))?;
    index::rewrite_file(&*offset_file, &outcome.offset_entries)
        .map_err(|e| LogError::io("write", &index_path, e))?;
    index::rewrite_file(&*time_file, &time_entries)
        .map_err(|e| LogError::io("write", &time_path, e))?;
    for (file, path) in [
        (&*files.log, &log_path),
        (&*offset_file, &index_path),
        (&*time_file, &time_path),
    ] {
        file.sync_data()
            .map_err(|e| LogError::io("fsync", path, e))?;
    }
    assert_eq!(
        index_state.offset_entries,
        outcome.offset_entries.len() as u64
    );
    assert_eq!(index_state.time_entries, time_entries.len() as u64);
    close_indexes(&files);
    let segment = Segment {
        base_offset,
        files,
        size_bytes: outcome.valid_bytes,
        next_offset: outcome.next_offset,
        index: index_state,
        roll_start_ms: None,
        modified_ms: now_ms,
    };
    Ok((segment, outcome.epoch_starts))
}

/// Closes the index files of a loaded segment, checked or rebuilt (see [`IndexFile`]): a
/// segment keeps only its `.log` open until a reader or an append needs an index.
fn close_indexes(files: &SegmentFiles) {
    files.offset_index.close();
    files.time_index.close();
}

/// The cheap checks of a segment at open: both index files well-formed and within the `.log`,
/// the batches after the last offset index entry parse up to the end of the file with
/// contiguous offsets, and the segment ends where the next one starts. Returns the next offset
/// and the index state, or why the segment must be scanned.
#[allow(clippy::type_complexity)]
fn check_without_scan(
    storage: &dyn Storage,
    files: &SegmentFiles,
    base_offset: i64,
    log_len_bytes: u64,
    next_base_offset: Option<i64>,
) -> Result<Result<(i64, IndexState), String>, LogError> {
    let index_path = files.log_path.with_extension("index");
    let time_path = files.log_path.with_extension("timeindex");
    let offsets = match files
        .offset_index
        .handle(storage)
        .and_then(|f| index::validate_file::<OffsetEntry>(&*f, log_len_bytes))
        .map_err(|e| LogError::io("read", &index_path, e))?
    {
        Ok(summary) => summary,
        Err(reason) => return Ok(Err(format!("offset index damaged: {reason}"))),
    };
    let times = match files
        .time_index
        .handle(storage)
        .and_then(|f| index::validate_file::<TimeEntry>(&*f, log_len_bytes))
        .map_err(|e| LogError::io("read", &time_path, e))?
    {
        Ok(summary) => summary,
        Err(reason) => return Ok(Err(format!("time index damaged: {reason}"))),
    };
    let (position, offset_at_position) = offsets.last.map_or((0, base_offset), |e| {
        (
            u64::from(e.position),
            base_offset + i64::from(e.relative_offset),
        )
    });
    let gaps = next_base_offset.is_some();
    // The other entries are checked by the readers that follow them (`crate::repair`):
    // checking them all here would read the whole `.log`.
    let next_offset = match segment::walk_tail(
        &*files.log,
        position,
        offset_at_position,
        log_len_bytes,
        gaps,
        offsets.last.is_some(),
    )
    .map_err(|e| LogError::io("read", &files.log_path, e))?
    {
        Ok(next_offset) => next_offset,
        Err(reason) => return Ok(Err(format!("tail does not parse: {reason}"))),
    };
    if let Some(e) = times.last {
        if base_offset + i64::from(e.relative_offset) >= next_offset {
            return Ok(Err(format!(
                "time index entry {e:?} is beyond the segment's last offset"
            )));
        }
    }
    if let Some(next_base_offset) = next_base_offset {
        if next_offset != next_base_offset {
            return Ok(Err(format!(
                "segment ends at offset {next_offset} but the next starts at {next_base_offset}"
            )));
        }
    }
    let (last_time_entry_ms, offset_of_max_timestamp) = times.last.map_or((-1, -1), |e| {
        (e.timestamp_ms, base_offset + i64::from(e.relative_offset))
    });
    Ok(Ok((
        next_offset,
        IndexState {
            offset_entries: offsets.entries,
            time_entries: times.entries,
            last_time_entry_ms,
            bytes_since_index_entry: log_len_bytes - position,
            max_timestamp_ms: last_time_entry_ms,
            offset_of_max_timestamp,
            last_offset_entry: offsets.last,
        },
    )))
}

/// The producer state of a recovered log ending at `log_end_offset`, and the snapshot files
/// kept. Kafka's approach: snapshots past the log end describe data the log no longer holds
/// and are deleted; the latest readable snapshot at or below the log end is loaded (a damaged
/// one is logged and deleted, and the next older one tried); then the batch headers from that
/// offset to the log end are replayed (from the first segment if no snapshot is usable).
/// Producers replayed from the log count as seen at `now_ms`. Producers whose last batch ends
/// below `log_start_offset` are dropped (Kafka drops them when the log start offset passes
/// them).
///
/// Deletions are made durable by the caller's directory fsync, before anything is appended:
/// a deleted snapshot from a truncated history must not come back.
pub(crate) fn load_producer_state(
    storage: &dyn Storage,
    dir: &Path,
    snapshots: &BTreeSet<i64>,
    segments: &BTreeMap<i64, Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    now_ms: i64,
) -> Result<(ProducerStates, BTreeSet<i64>), LogError> {
    let remove = |offset: i64| -> Result<(), LogError> {
        let path = dir.join(snapshot_file_name(offset));
        match storage.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io("remove", path, e)),
        }
    };
    for &offset in snapshots.range(log_end_offset.saturating_add(1)..) {
        warn!(
            dir = %dir.display(),
            snapshot_offset = offset,
            log_end_offset,
            "removing a producer state snapshot past the log end"
        );
        remove(offset)?;
    }
    let mut kept = BTreeSet::new();
    let mut loaded: Option<(i64, ProducerStates)> = None;
    for &offset in snapshots.range(..=log_end_offset).rev() {
        if loaded.is_some() {
            kept.insert(offset);
            continue;
        }
        let path = dir.join(snapshot_file_name(offset));
        let bytes = match checkpoint::read_small(storage, &path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(e) => {
                warn!(
                    path = %path.display(),
                    error = %e,
                    "ignoring an unreadable producer state snapshot"
                );
                kept.insert(offset);
                continue;
            }
        };
        match ProducerStates::decode_snapshot(&bytes, offset, PRODUCERS_PER_PARTITION_MAX) {
            Ok(states) => {
                kept.insert(offset);
                loaded = Some((offset, states));
            }
            Err(reason) => {
                warn!(
                    path = %path.display(),
                    %reason,
                    "removing a damaged producer state snapshot"
                );
                remove(offset)?;
            }
        }
    }
    let first_base_offset = segments.keys().next().copied().unwrap_or(log_end_offset);
    let (from_offset, mut states) = match loaded {
        Some((offset, states)) => (offset.max(first_base_offset), states),
        None => (first_base_offset, ProducerStates::default()),
    };
    let replayed = replay_batches(storage, &mut states, segments, from_offset, now_ms)?;
    states.remove_before(log_start_offset);
    info!(
        dir = %dir.display(),
        snapshot_offset = ?kept.last(),
        replayed_from = from_offset,
        replayed_batches = replayed,
        producers = states.len(),
        "loaded producer state"
    );
    Ok((states, kept))
}

/// Applies the headers of every batch at or after `from_offset` (a batch boundary) to
/// `states`, reading headers only. Returns the number of batches read. The segments were
/// recovered, so the walk should not fail; if a header does not parse, the rest of that
/// segment is skipped (logged) and its producers' state may be incomplete.
fn replay_batches(
    storage: &dyn Storage,
    states: &mut ProducerStates,
    segments: &BTreeMap<i64, Segment>,
    from_offset: i64,
    seen_ms: i64,
) -> Result<u64, LogError> {
    let mut replayed = 0u64;
    for segment in segments.values() {
        if segment.next_offset <= from_offset || segment.size_bytes == 0 {
            continue;
        }
        let files = &segment.files;
        let mut position = 0u64;
        // The offset the index entry giving `position` names, until the header there is read.
        let mut named: Option<i64> = None;
        if segment.base_offset < from_offset {
            let entry = files
                .offset_index
                .lookup::<OffsetEntry>(
                    storage,
                    segment.index.offset_entries,
                    from_offset - segment.base_offset,
                )
                .map_err(|e| LogError::io("read", files.log_path.with_extension("index"), e))?;
            if let Some(e) = entry {
                position = u64::from(e.position);
                named = Some(segment.base_offset + i64::from(e.relative_offset));
            }
        }
        let mut reader = ChunkReader::new(&*files.log, segment.size_bytes, SCAN_CHUNK_BYTES);
        let mut expected_offset: Option<i64> = None;
        // Bounded: every iteration consumes a whole batch or leaves the loop (or, once, goes
        // back to the segment start after a bad index entry).
        loop {
            let at = reader
                .header_at(position)
                .map_err(|e| LogError::io("read", &files.log_path, e))?;
            if let Some(named) = named.take() {
                let starts_there = matches!(&at, HeaderAt::Header(h) if h.base_offset == named);
                if !starts_there {
                    // A trusted index is checked only cheaply at open (`crate::repair`).
                    warn!(
                        segment = %files.log_path.display(),
                        position,
                        named_offset = named,
                        "offset index entry does not point at the batch it names; replaying \
                         the segment from its start"
                    );
                    position = 0;
                    continue;
                }
            }
            let header: BatchHeader = match at {
                HeaderAt::End => break,
                HeaderAt::Header(h) => h,
                HeaderAt::Bad(reason) => {
                    error!(
                        segment = %files.log_path.display(),
                        position,
                        %reason,
                        "batch header does not parse; producer state may miss the rest of \
                         this segment"
                    );
                    break;
                }
            };
            // Cleaned segments have gaps between batches, never overlaps.
            if expected_offset.is_some_and(|o| header.base_offset < o) {
                error!(
                    segment = %files.log_path.display(),
                    position,
                    base_offset = header.base_offset,
                    "batch offsets go backwards; producer state may miss the rest of this \
                     segment"
                );
                break;
            }
            expected_offset = Some(header.last_offset() + 1);
            if header.base_offset >= from_offset {
                states.replay(&header.producer, header.base_offset, seen_ms);
                replayed += 1;
            }
            position += header.size_bytes;
        }
    }
    Ok(replayed)
}
