//! The sparse offset index (`.index`) and time index (`.timeindex`) of a segment.
//!
//! Both files are flat arrays of big-endian entries, as in Kafka:
//!
//! - offset index entry, 8 bytes: `relative_offset: u32` (offset − segment base offset), then
//!   `position: u32`, the byte position in the `.log` of the batch whose base offset that is.
//! - time index entry, 12 bytes: `timestamp_ms: i64`, the largest batch timestamp in the
//!   segment up to this point, then `relative_offset: u32`, the base offset of the first batch
//!   that carries that timestamp.
//!
//! Entries are added by one rule, [`IndexState::on_batch`], used both when appending and when
//! rebuilding an index from the `.log` during recovery, so a rebuilt index equals the one the
//! appends wrote. Both columns strictly increase in every entry of both files (a time entry is
//! only added when the maximum timestamp grows).
//!
//! Index files are not preallocated (there is no mmap here): a file holds exactly the entries
//! it has. The log keeps only the entry counts and a few summary values in memory; a lookup
//! reads the index's last [`TAIL_ENTRIES`] entries with one read and binary-searches them, or,
//! for a target before them, the rest of the file entry by entry, bounded by an entry count
//! snapshot taken under the log's lock, so a lookup never sees an entry still being written.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{OpenMode, Storage, StorageFile};

/// Size of one offset index entry.
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Size of one time index entry.
pub(crate) const TIME_ENTRY_BYTES: usize = 12;
/// Bytes read at a time when validating an index file (a multiple of both entry sizes).
const VALIDATE_CHUNK_BYTES: usize = 2048 * 24;

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

/// A fixed-size index entry.
pub(crate) trait Entry: Copy {
    const BYTES: usize;
    fn encode_into(&self, out: &mut Vec<u8>);
    /// `bytes` holds exactly `BYTES` bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// The key lookups search by.
    fn key(&self) -> i64;
}

impl Entry for OffsetEntry {
    const BYTES: usize = OFFSET_ENTRY_BYTES;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            position: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
}

impl Entry for TimeEntry {
    const BYTES: usize = TIME_ENTRY_BYTES;
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[..8]);
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }
    fn key(&self) -> i64 {
        self.timestamp_ms
    }
}

pub(crate) fn encode_entries<E: Entry>(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * E::BYTES);
    for e in entries {
        e.encode_into(&mut out);
    }
    out
}

/// The entry with the largest key `<= target` among `count` entries sorted by key, fetched
/// one at a time by `get(i)`. At most `log2(count) + 2` fetches.
pub(crate) fn floor_search<E: Entry>(
    count: u64,
    target: i64,
    mut get: impl FnMut(u64) -> io::Result<E>,
) -> io::Result<Option<E>> {
    // Invariant: entries [0, lo) have key <= target, entries [hi, count) have key > target.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if get(mid)?.key() <= target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        Ok(None)
    } else {
        get(lo - 1).map(Some)
    }
}

/// Reads entry `i` of an index file.
pub(crate) fn read_entry<E: Entry>(file: &dyn StorageFile, i: u64) -> io::Result<E> {
    let mut buf = [0u8; TIME_ENTRY_BYTES];
    let buf = &mut buf[..E::BYTES];
    file.read_exact_at(buf, i * E::BYTES as u64)?;
    Ok(E::decode(buf))
}

/// Entries a lookup reads with one read from the end of the index before it searches entry
/// by entry. Consumers near the log end look up offsets a little before the last entry (the
/// last entry itself is taken from memory): a binary search of the whole file cost them
/// `log2(count)` reads of one entry each, six index reads per log read in a W3 run slowed by
/// tracing, in which consumers lagged (`docs/performance.md`). Kafka keeps tail lookups on the same pages for the same reason
/// (the index's "warm section", its last 8 KiB, KAFKA-6432).
const TAIL_ENTRIES: usize = 512;

/// The largest entry with key `<= target` among the first `count` entries of `file`: one
/// read of the last [`TAIL_ENTRIES`] entries; only a target before them is searched entry by
/// entry. At most `log2(count) + 3` reads.
pub(crate) fn lookup<E: Entry>(
    file: &dyn StorageFile,
    count: u64,
    target: i64,
) -> io::Result<Option<E>> {
    let tail_count = count.min(TAIL_ENTRIES as u64);
    if tail_count == 0 {
        return Ok(None);
    }
    let tail_start = count - tail_count;
    // The largest entry is 12 bytes: 6 KiB on the stack.
    let mut buf = [0u8; TAIL_ENTRIES * TIME_ENTRY_BYTES];
    let tail = &mut buf[..tail_count as usize * E::BYTES];
    file.read_exact_at(tail, tail_start * E::BYTES as u64)?;
    let tail = &*tail;
    let entry = |i: u64| E::decode(&tail[i as usize * E::BYTES..(i as usize + 1) * E::BYTES]);
    if tail_start > 0 && entry(0).key() > target {
        // Before the tail: the answer is among the entries before it (or there is none).
        return floor_search(tail_start, target, |i| read_entry::<E>(file, i));
    }
    floor_search(tail_count, target, |i| Ok(entry(i)))
}

/// True if `len_bytes` is a whole number of `entry_bytes`-sized entries.
fn holds_whole_entries(len_bytes: u64, entry_bytes: usize) -> bool {
    len_bytes / entry_bytes as u64 * entry_bytes as u64 == len_bytes
}

/// What a valid index file holds, in summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexSummary<E> {
    pub entries: u64,
    pub last: Option<E>,
}

/// Checks that `bytes` (a whole index file's content) is a well-formed index for a `.log`
/// of `log_len_bytes` bytes. Returns the reason it is not.
pub(crate) fn check_entries<E: Entry + Checked>(
    bytes: &[u8],
    log_len_bytes: u64,
    previous: Option<E>,
) -> Result<Option<E>, String> {
    if !holds_whole_entries(bytes.len() as u64, E::BYTES) {
        return Err(format!(
            "{} bytes is not a multiple of the {}-byte entry size",
            bytes.len(),
            E::BYTES
        ));
    }
    let mut previous = previous;
    for chunk in bytes.chunks_exact(E::BYTES) {
        let entry = E::decode(chunk);
        entry.check(previous.as_ref(), log_len_bytes)?;
        previous = Some(entry);
    }
    Ok(previous)
}

/// Per-entry sanity rules.
pub(crate) trait Checked: Sized {
    fn check(&self, previous: Option<&Self>, log_len_bytes: u64) -> Result<(), String>;
}

impl Checked for OffsetEntry {
    fn check(&self, previous: Option<&Self>, log_len_bytes: u64) -> Result<(), String> {
        if self.relative_offset > i32::MAX as u32 {
            return Err(format!(
                "relative offset {} exceeds i32",
                self.relative_offset
            ));
        }
        if u64::from(self.position) >= log_len_bytes {
            return Err(format!(
                "entry points at position {} beyond the log's {log_len_bytes} bytes",
                self.position
            ));
        }
        if let Some(p) = previous {
            if self.relative_offset <= p.relative_offset || self.position <= p.position {
                return Err(format!("entries not increasing: {p:?} then {self:?}"));
            }
        }
        Ok(())
    }
}

impl Checked for TimeEntry {
    fn check(&self, previous: Option<&Self>, _log_len_bytes: u64) -> Result<(), String> {
        if self.relative_offset > i32::MAX as u32 {
            return Err(format!(
                "relative offset {} exceeds i32",
                self.relative_offset
            ));
        }
        if self.timestamp_ms < 0 {
            return Err(format!("negative timestamp {}", self.timestamp_ms));
        }
        if let Some(p) = previous {
            if self.timestamp_ms <= p.timestamp_ms || self.relative_offset <= p.relative_offset {
                return Err(format!("entries not increasing: {p:?} then {self:?}"));
            }
        }
        Ok(())
    }
}

/// Reads and checks a whole index file in bounded chunks. `Ok(Err(reason))` if it is damaged.
pub(crate) fn validate_file<E: Entry + Checked>(
    file: &dyn StorageFile,
    log_len_bytes: u64,
) -> io::Result<Result<IndexSummary<E>, String>> {
    let len_bytes = file.len()?;
    if !holds_whole_entries(len_bytes, E::BYTES) {
        return Ok(Err(format!(
            "{len_bytes} bytes is not a multiple of the {}-byte entry size",
            E::BYTES
        )));
    }
    let mut buf = vec![0u8; VALIDATE_CHUNK_BYTES.min(len_bytes as usize)];
    let mut last = None;
    let mut pos = 0u64;
    // Bounded: advances by a non-empty chunk until the (fixed) length is reached.
    while pos < len_bytes {
        let n = (len_bytes - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        match check_entries::<E>(&buf[..n], log_len_bytes, last) {
            Ok(l) => last = l,
            Err(reason) => return Ok(Err(format!("entry {}: {reason}", pos / E::BYTES as u64))),
        }
        pos += n as u64;
    }
    Ok(Ok(IndexSummary {
        entries: len_bytes / E::BYTES as u64,
        last,
    }))
}

/// Replaces the content of an index file with `entries`.
pub(crate) fn rewrite_file<E: Entry>(file: &dyn StorageFile, entries: &[E]) -> io::Result<()> {
    file.set_len(0)?;
    if !entries.is_empty() {
        file.write_all_at(&encode_entries(entries), 0)?;
    }
    Ok(())
}

/// Writes `entries` after the first `existing` entries of an index file.
pub(crate) fn append_entries<E: Entry>(
    file: &dyn StorageFile,
    existing: u64,
    entries: &[E],
) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    file.write_all_at(&encode_entries(entries), existing * E::BYTES as u64)
}

/// A segment's index file, opened when first used.
///
/// Most idle partitions have one segment below `index.interval.bytes`, whose indexes are
/// empty; keeping every index open cost two of the three open files per partition, so 10,000
/// partitions did not fit in a 20,000-file limit (`docs/performance.md`, W4 at rest). The
/// file exists from the segment's creation, as in Kafka; only the handle waits (Kafka's
/// `LazyIndex` defers its index files the same way). A segment's indexes are closed again
/// once it is loaded and once it is sealed: reads at the tail take the last offset entry from
/// memory, and a reader further back reopens them.
///
/// Invariants:
/// - closed means nothing was written through this index since it was last made durable (or
///   emptied at creation): [`IndexFile::sync_data`] of a closed index has nothing to do, and
///   [`IndexFile::truncate`] nothing to undo;
/// - a closed index is opened by `path`. Every segment in the log has its files under their
///   own names; before a segment's files are renamed (deleted or replaced by a cleaned
///   segment of the same base offset), [`IndexFile::pin`] opens them, so that no later
///   reader of that segment opens a file that is no longer its own.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    /// Locked only to take or set the handle, never across other I/O than the open.
    file: Mutex<Option<Arc<dyn StorageFile>>>,
}

impl IndexFile {
    /// An index whose handle is already open.
    pub(crate) fn open(path: PathBuf, file: Box<dyn StorageFile>) -> Self {
        IndexFile {
            path,
            file: Mutex::new(Some(Arc::from(file))),
        }
    }

    /// An index whose file exists at `path` and is not open.
    pub(crate) fn closed(path: PathBuf) -> Self {
        IndexFile {
            path,
            file: Mutex::new(None),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<dyn StorageFile>>> {
        // The slot holds a handle or nothing; a panic elsewhere cannot leave it half set.
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle if the index is open.
    fn opened(&self) -> Option<Arc<dyn StorageFile>> {
        self.slot().clone()
    }

    /// The handle, opening the file if it is closed.
    pub(crate) fn handle(&self, storage: &dyn Storage) -> io::Result<Arc<dyn StorageFile>> {
        let mut slot = self.slot();
        if let Some(file) = &*slot {
            return Ok(Arc::clone(file));
        }
        let file: Arc<dyn StorageFile> = Arc::from(storage.open(&self.path, OpenMode::ReadWrite)?);
        *slot = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Opens the file if it is closed, before its name changes (see the invariants).
    pub(crate) fn pin(&self, storage: &dyn Storage) -> io::Result<()> {
        self.handle(storage).map(drop)
    }

    /// Closes the handle (readers that hold it finish with it). Only once the file is
    /// durable: after a segment is sealed (its indexes fsynced), or loaded (a segment that was
    /// active at an unclean shutdown is scanned and its indexes rewritten and fsynced; every
    /// other one was sealed).
    pub(crate) fn close(&self) {
        self.slot().take();
    }

    /// [`lookup`] among the first `count` entries; no entries need no file.
    pub(crate) fn lookup<E: Entry>(
        &self,
        storage: &dyn Storage,
        count: u64,
        target: i64,
    ) -> io::Result<Option<E>> {
        if count == 0 {
            return Ok(None);
        }
        lookup(&*self.handle(storage)?, count, target)
    }

    /// [`append_entries`], opening the file if it is closed. Appending nothing opens nothing.
    pub(crate) fn append<E: Entry>(
        &self,
        storage: &dyn Storage,
        existing: u64,
        entries: &[E],
    ) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        append_entries(&*self.handle(storage)?, existing, entries)
    }

    /// Truncates the file to its first `entries` entries of `entry_bytes`, undoing a failed
    /// append. A closed index had nothing appended since it was last durable.
    pub(crate) fn truncate(&self, entries: u64, entry_bytes: usize) -> io::Result<()> {
        self.opened()
            .map_or(Ok(()), |file| file.set_len(entries * entry_bytes as u64))
    }

    /// [`StorageFile::sync_data`] of an open index; a closed one has nothing unsynced.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.opened().map_or(Ok(()), |file| file.sync_data())
    }
}

/// Limits the indexing rule works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexLimits {
    pub index_interval_bytes: u64,
    pub offset_entries_max: u64,
    pub time_entries_max: u64,
}

/// The indexing state of one segment, advanced batch by batch. `Copy`, so an append works on
/// a copy and commits it only once its bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexState {
    pub offset_entries: u64,
    pub time_entries: u64,
    /// Timestamp of the last time index entry, -1 if none.
    pub last_time_entry_ms: i64,
    /// Bytes of batches appended since the last offset index entry (or the segment start).
    pub bytes_since_index_entry: u64,
    /// Largest batch max timestamp in the segment, -1 if none.
    pub max_timestamp_ms: i64,
    /// Base offset of the first batch carrying `max_timestamp_ms`, -1 if none.
    pub offset_of_max_timestamp: i64,
    /// The offset index's last entry, if any: reads at the tail (consumers caught up) start
    /// from it without searching the index file.
    pub last_offset_entry: Option<OffsetEntry>,
}

impl IndexState {
    pub(crate) const EMPTY: IndexState = IndexState {
        offset_entries: 0,
        time_entries: 0,
        last_time_entry_ms: -1,
        bytes_since_index_entry: 0,
        max_timestamp_ms: -1,
        offset_of_max_timestamp: -1,
        last_offset_entry: None,
    };

    /// Kafka's rule, applied to each batch in order: first track the maximum timestamp; then,
    /// if more than `index_interval_bytes` were appended since the last entry, index this
    /// batch (offset entry at its position; time entry if the maximum grew since the last one);
    /// then count its bytes. Entries beyond an index's capacity are skipped (the index is
    /// sparse; the log rolls before that happens in practice).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_batch(
        &mut self,
        segment_base_offset: i64,
        position: u64,
        base_offset: i64,
        max_timestamp_ms: i64,
        size_bytes: u64,
        limits: &IndexLimits,
        offset_entries: &mut Vec<OffsetEntry>,
        time_entries: &mut Vec<TimeEntry>,
    ) {
        debug_assert!(base_offset >= segment_base_offset);
        debug_assert!(position <= u64::from(u32::MAX));
        if max_timestamp_ms > self.max_timestamp_ms {
            self.max_timestamp_ms = max_timestamp_ms;
            self.offset_of_max_timestamp = base_offset;
        }
        if self.bytes_since_index_entry > limits.index_interval_bytes {
            if self.offset_entries < limits.offset_entries_max {
                let entry = OffsetEntry {
                    relative_offset: (base_offset - segment_base_offset) as u32,
                    position: position as u32,
                };
                offset_entries.push(entry);
                self.offset_entries += 1;
                self.last_offset_entry = Some(entry);
            }
            if self.max_timestamp_ms > self.last_time_entry_ms
                && self.time_entries < limits.time_entries_max
            {
                time_entries.push(TimeEntry {
                    timestamp_ms: self.max_timestamp_ms,
                    relative_offset: (self.offset_of_max_timestamp - segment_base_offset) as u32,
                });
                self.time_entries += 1;
                self.last_time_entry_ms = self.max_timestamp_ms;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += size_bytes;
    }

    /// The entry that records the segment's final maximum timestamp when it stops being
    /// active (roll, close), if the time index does not have it yet. It may exceed the time
    /// index capacity by one, as in Kafka.
    pub(crate) fn final_time_entry(&mut self, segment_base_offset: i64) -> Option<TimeEntry> {
        if self.max_timestamp_ms > self.last_time_entry_ms {
            self.time_entries += 1;
            self.last_time_entry_ms = self.max_timestamp_ms;
            Some(TimeEntry {
                timestamp_ms: self.max_timestamp_ms,
                relative_offset: (self.offset_of_max_timestamp - segment_base_offset) as u32,
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FsStorage, OpenMode, Storage};

    fn offsets(pairs: &[(u32, u32)]) -> Vec<OffsetEntry> {
        pairs
            .iter()
            .map(|&(relative_offset, position)| OffsetEntry {
                relative_offset,
                position,
            })
            .collect()
    }

    fn search(entries: &[OffsetEntry], target: i64) -> Option<OffsetEntry> {
        floor_search(entries.len() as u64, target, |i| Ok(entries[i as usize])).unwrap()
    }

    #[test]
    fn given_offset_index_when_looking_up_should_return_largest_entry_not_after_target() {
        let entries = offsets(&[(10, 100), (20, 200), (30, 300)]);
        assert_eq!(search(&entries, 5), None);
        assert_eq!(search(&entries, 10), Some(entries[0]));
        assert_eq!(search(&entries, 19), Some(entries[0]));
        assert_eq!(search(&entries, 20), Some(entries[1]));
        assert_eq!(search(&entries, 29), Some(entries[1]));
        assert_eq!(search(&entries, 1_000), Some(entries[2]));
        assert_eq!(search(&[], 7), None);
    }

    #[test]
    fn given_time_index_when_looking_up_should_return_largest_timestamp_not_after_target() {
        let entries = [
            TimeEntry {
                timestamp_ms: 1_000,
                relative_offset: 3,
            },
            TimeEntry {
                timestamp_ms: 2_000,
                relative_offset: 9,
            },
        ];
        let find = |t| floor_search(2, t, |i| Ok(entries[i as usize])).unwrap();
        assert_eq!(find(999), None);
        assert_eq!(find(1_000), Some(entries[0]));
        assert_eq!(find(1_999), Some(entries[0]));
        assert_eq!(find(i64::MAX), Some(entries[1]));
    }

    #[test]
    fn given_entries_when_encoded_and_decoded_should_round_trip() {
        let o = OffsetEntry {
            relative_offset: 0x0102_0304,
            position: 0x0a0b_0c0d,
        };
        let bytes = encode_entries(&[o]);
        assert_eq!(bytes, [1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(OffsetEntry::decode(&bytes), o);
        let t = TimeEntry {
            timestamp_ms: 1_700_000_000_000,
            relative_offset: 42,
        };
        assert_eq!(TimeEntry::decode(&encode_entries(&[t])), t);
    }

    #[test]
    fn given_damaged_offset_entries_when_checked_should_report_why() {
        let ok = encode_entries(&offsets(&[(1, 10), (2, 20)]));
        assert_eq!(
            check_entries::<OffsetEntry>(&ok, 100, None),
            Ok(Some(offsets(&[(2, 20)])[0]))
        );
        assert!(check_entries::<OffsetEntry>(&ok[..7], 100, None).is_err());
        let not_increasing = encode_entries(&offsets(&[(2, 10), (2, 20)]));
        assert!(check_entries::<OffsetEntry>(&not_increasing, 100, None).is_err());
        let beyond_log = encode_entries(&offsets(&[(1, 10), (2, 100)]));
        assert!(check_entries::<OffsetEntry>(&beyond_log, 100, None).is_err());
    }

    #[test]
    fn given_damaged_time_entries_when_checked_should_report_why() {
        let e = |timestamp_ms, relative_offset| TimeEntry {
            timestamp_ms,
            relative_offset,
        };
        assert!(check_entries::<TimeEntry>(&encode_entries(&[e(5, 1), e(6, 2)]), 10, None).is_ok());
        assert!(
            check_entries::<TimeEntry>(&encode_entries(&[e(6, 1), e(5, 2)]), 10, None).is_err()
        );
        assert!(
            check_entries::<TimeEntry>(&encode_entries(&[e(5, 2), e(6, 1)]), 10, None).is_err()
        );
        assert!(check_entries::<TimeEntry>(&encode_entries(&[e(-5, 1)]), 10, None).is_err());
    }

    #[test]
    fn given_index_rule_when_batches_arrive_should_index_after_interval_bytes() {
        let limits = IndexLimits {
            index_interval_bytes: 100,
            offset_entries_max: 10,
            time_entries_max: 10,
        };
        let mut state = IndexState::EMPTY;
        let (mut o, mut t) = (Vec::new(), Vec::new());
        // Batches of 60 bytes at offsets 0.., timestamps rising by 10.
        for i in 0..6u64 {
            state.on_batch(
                0,
                i * 60,
                i as i64,
                1_000 + i as i64 * 10,
                60,
                &limits,
                &mut o,
                &mut t,
            );
        }
        // 60 (no), 120 > 100 at batch 2 (yes), then 60, 120 at batch 4 (yes).
        assert_eq!(o, offsets(&[(2, 120), (4, 240)]));
        assert_eq!(
            t.iter()
                .map(|e| (e.timestamp_ms, e.relative_offset))
                .collect::<Vec<_>>(),
            vec![(1_020, 2), (1_040, 4)]
        );
        assert_eq!(state.bytes_since_index_entry, 120);
        assert_eq!(state.max_timestamp_ms, 1_050);
        assert_eq!(state.offset_of_max_timestamp, 5);
        let last = state.final_time_entry(0).unwrap();
        assert_eq!((last.timestamp_ms, last.relative_offset), (1_050, 5));
        assert_eq!(state.final_time_entry(0), None);
    }

    /// A file that counts its reads.
    #[derive(Debug)]
    struct CountingFile {
        inner: Box<dyn StorageFile>,
        reads: std::sync::atomic::AtomicU64,
    }

    impl StorageFile for CountingFile {
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.read_at(buf, pos)
        }
        fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
            self.inner.write_at(buf, pos)
        }
        fn set_len(&self, len_bytes: u64) -> io::Result<()> {
            self.inner.set_len(len_bytes)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.inner.sync_data()
        }
    }

    #[test]
    fn given_large_index_when_looking_up_should_agree_with_a_search_of_every_entry_and_read_the_tail_once(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = CountingFile {
            inner: FsStorage::new()
                .open(&dir.path().join("0.index"), OpenMode::CreateOrOpen)
                .unwrap(),
            reads: Default::default(),
        };
        // Keys 10, 20, ..., one entry more than two tails.
        let entries: Vec<OffsetEntry> = (1..=(2 * TAIL_ENTRIES as u32 + 1))
            .map(|i| OffsetEntry {
                relative_offset: i * 10,
                position: i * 100,
            })
            .collect();
        rewrite_file(&file, &entries).unwrap();
        let total = entries.len() as u64;
        for count in [0, 1, 2, TAIL_ENTRIES as u64, TAIL_ENTRIES as u64 + 1, total] {
            let visible = &entries[..count as usize];
            let max_key = visible.last().map_or(0, |e| e.key());
            for target in (-5..max_key + 25).step_by(5) {
                let reads_before = file.reads.load(std::sync::atomic::Ordering::Relaxed);
                let found = lookup::<OffsetEntry>(&file, count, target).unwrap();
                let reads = file.reads.load(std::sync::atomic::Ordering::Relaxed) - reads_before;
                let expected = visible.iter().rev().find(|e| e.key() <= target).copied();
                assert_eq!(found, expected, "count {count}, target {target}");
                let tail_start = count.saturating_sub(TAIL_ENTRIES as u64);
                if count > 0 && target >= visible[tail_start as usize].key() {
                    assert_eq!(
                        reads, 1,
                        "a tail lookup reads once: count {count}, target {target}"
                    );
                } else {
                    assert!(
                        reads <= 64 - count.leading_zeros() as u64 + 3,
                        "{reads} reads: count {count}, target {target}"
                    );
                }
            }
        }
    }

    #[test]
    fn given_index_file_when_validated_rewritten_and_looked_up_should_agree() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new();
        let file = storage
            .open(&dir.path().join("0.index"), OpenMode::CreateOrOpen)
            .unwrap();
        let entries = offsets(&[(3, 40), (7, 90), (12, 160)]);
        rewrite_file(&*file, &entries[..2]).unwrap();
        append_entries(&*file, 2, &entries[2..]).unwrap();
        let summary = validate_file::<OffsetEntry>(&*file, 200).unwrap().unwrap();
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.last, Some(entries[2]));
        assert_eq!(
            lookup::<OffsetEntry>(&*file, 3, 8).unwrap(),
            Some(entries[1])
        );
        // Only the first two entries are visible to a lookup bounded by a count of 2.
        assert_eq!(
            lookup::<OffsetEntry>(&*file, 2, 100).unwrap(),
            Some(entries[1])
        );
        // A torn trailing entry makes the file invalid.
        file.write_all_at(&[1, 2, 3], 24).unwrap();
        assert!(validate_file::<OffsetEntry>(&*file, 200).unwrap().is_err());
        // Rebuilding fixes it.
        rewrite_file(&*file, &entries).unwrap();
        assert_eq!(
            validate_file::<OffsetEntry>(&*file, 200)
                .unwrap()
                .unwrap()
                .entries,
            3
        );
    }

    /// The hazard `IndexFile::pin` exists for: a cleaned segment takes the names of the first
    /// segment it replaces, so a closed index of the replaced segment, opened by name after
    /// the swap, would be the new segment's.
    #[test]
    fn given_pinned_index_when_its_file_is_renamed_and_replaced_should_keep_reading_its_own_entries(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new();
        let path = dir.path().join("0.index");
        let write = |entries: &[OffsetEntry]| {
            let f = storage.open(&path, OpenMode::CreateOrOpen).unwrap();
            rewrite_file(&*f, entries).unwrap();
        };
        let old = offsets(&[(10, 100), (20, 200)]);
        let new = offsets(&[(10, 50), (20, 90)]);
        for pinned in [true, false] {
            write(&old);
            let index = IndexFile::closed(path.clone());
            if pinned {
                index.pin(&storage).unwrap();
            }
            storage
                .rename(&path, &dir.path().join("0.index.deleted"))
                .unwrap();
            write(&new);
            let found = index.lookup::<OffsetEntry>(&storage, 2, 15).unwrap();
            let expected = if pinned { old[0] } else { new[0] };
            assert_eq!(found, Some(expected), "pinned: {pinned}");
        }
    }

    #[test]
    fn given_closed_index_should_open_on_first_use_and_again_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new();
        let path = dir.path().join("0.timeindex");
        drop(storage.open(&path, OpenMode::CreateNew).unwrap());
        let index = IndexFile::closed(path.clone());
        // Nothing to look up, sync or undo: no file needed.
        assert_eq!(index.lookup::<TimeEntry>(&storage, 0, 5).unwrap(), None);
        index.sync_data().unwrap();
        index.truncate(0, TIME_ENTRY_BYTES).unwrap();
        assert!(index.opened().is_none());
        // An append opens it; appending nothing does not.
        index.append::<TimeEntry>(&storage, 0, &[]).unwrap();
        assert!(index.opened().is_none());
        let entry = TimeEntry {
            timestamp_ms: 7,
            relative_offset: 3,
        };
        index.append(&storage, 0, &[entry]).unwrap();
        assert!(index.opened().is_some());
        index.sync_data().unwrap();
        index.close();
        assert!(index.opened().is_none());
        // A lookup reopens it and finds what was appended.
        assert_eq!(
            index.lookup::<TimeEntry>(&storage, 1, 9).unwrap(),
            Some(entry)
        );
        assert!(index.opened().is_some());
    }
}
