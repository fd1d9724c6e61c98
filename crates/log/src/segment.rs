//! One segment: a `.log` file of whole batches, its sparse `.index` and `.timeindex`, named by
//! the segment's base offset (20 digits, zero-padded, as Kafka), and the reading and
//! recovery-scanning of its batches.
//!
//! Batches are read through [`ChunkReader`], which reads a bounded chunk at a time and parses
//! every batch with `runnel_model::batch::BatchView`; any bytes that do not parse, cross the
//! readable end, or break the offset sequence are reported, never panicked on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_model::batch::{BatchError, BatchView, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES};

use crate::index::{IndexFile, IndexLimits, IndexState, OffsetEntry, TimeEntry};
use crate::producer_state::BatchProducer;
use crate::storage::StorageFile;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// The three files of a segment, in the order they are renamed during a swap (the `.log`
/// last: its rename is the commit point).
pub(crate) const SEGMENT_SUFFIXES: [&str; 3] = [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX];
/// Appended to a segment file the cleaner is writing (`00..0.log.cleaned`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Appended to a cleaned segment file that is ready to replace the segments it covers.
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Appended to a file of a deleted segment until `file.delete.delay.ms` has passed.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";
/// Digits of a segment file name's base offset.
const BASE_OFFSET_DIGITS: usize = 20;
/// Chunk read at a time while scanning a segment during recovery.
pub(crate) const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunk read at a time while serving lookups.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Chunk read at a time while a read looks for its first batch, from headers only (the
/// batches it returns are read straight into the answer).
pub(crate) const LOCATE_CHUNK_BYTES: usize = 4 * 1024;

/// `00000000000000000042` for base offset 42.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:0width$}", width = BASE_OFFSET_DIGITS)
}

pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_stem(base_offset)))
}

/// Which segment file a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentFileKind {
    Log,
    OffsetIndex,
    TimeIndex,
}

/// `dir/00000000000000000042.log.swap` for `(42, ".log", ".swap")`.
pub(crate) fn temp_path(dir: &Path, base_offset: i64, suffix: &str, temp_suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}{temp_suffix}", file_stem(base_offset)))
}

/// Parses `00000000000000000042.log` into `(42, Log)`; `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, SegmentFileKind)> {
    let (stem, kind) = if let Some(stem) = name.strip_suffix(LOG_SUFFIX) {
        (stem, SegmentFileKind::Log)
    } else if let Some(stem) = name.strip_suffix(OFFSET_INDEX_SUFFIX) {
        (stem, SegmentFileKind::OffsetIndex)
    } else if let Some(stem) = name.strip_suffix(TIME_INDEX_SUFFIX) {
        (stem, SegmentFileKind::TimeIndex)
    } else {
        return None;
    };
    if stem.len() != BASE_OFFSET_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base_offset: i64 = stem.parse().ok()?;
    Some((base_offset, kind))
}

/// The open files of a segment. Shared (`Arc`) between the writer and readers; all I/O is
/// positional, so readers need no lock once they hold it. An index file without entries may
/// be closed ([`IndexFile`]): the `.log` is the one file every segment keeps open.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    pub log: Box<dyn StorageFile>,
    pub offset_index: IndexFile,
    pub time_index: IndexFile,
    pub log_path: PathBuf,
}

/// A segment's in-memory state. Owned by the log's `Inner` and changed only under its lock.
/// Invariant while the log is healthy: each file's length equals the committed length
/// (`size_bytes`, `index.offset_entries * 8`, `index.time_entries * 12`).
#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub files: Arc<SegmentFiles>,
    /// Committed bytes of the `.log`; readers never look past it.
    pub size_bytes: u64,
    /// The offset after the last batch (`base_offset` if empty).
    pub next_offset: i64,
    pub index: IndexState,
    /// When the roll timer (`segment_ms`) started: the first append's `now_ms`, or after a
    /// reopen the first batch's timestamp (as Kafka). `None` while empty.
    pub roll_start_ms: Option<i64>,
    /// Stands in for the file's modification time (the Storage trait has none): the last
    /// append's `now_ms`, or the open's `now_ms` for a loaded segment. Retention and the
    /// compaction lag use it for a segment without any batch timestamp, as Kafka uses
    /// `lastModified`.
    pub modified_ms: i64,
}

impl Segment {
    /// Kafka's `LogSegment.largestTimestamp`: the largest batch timestamp, or the
    /// modification time if no batch carries one.
    pub(crate) fn largest_timestamp_ms(&self) -> i64 {
        if self.index.max_timestamp_ms >= 0 {
            self.index.max_timestamp_ms
        } else {
            self.modified_ms
        }
    }
}

/// What a reader needs of a segment, copied under the lock.
#[derive(Debug, Clone)]
pub(crate) struct SegmentSnapshot {
    pub base_offset: i64,
    pub files: Arc<SegmentFiles>,
    pub size_bytes: u64,
    pub next_offset: i64,
    pub offset_entries: u64,
    pub time_entries: u64,
    pub last_offset_entry: Option<OffsetEntry>,
}

impl Segment {
    pub(crate) fn snapshot(&self) -> SegmentSnapshot {
        SegmentSnapshot {
            base_offset: self.base_offset,
            files: Arc::clone(&self.files),
            size_bytes: self.size_bytes,
            next_offset: self.next_offset,
            offset_entries: self.index.offset_entries,
            time_entries: self.index.time_entries,
            last_offset_entry: self.index.last_offset_entry,
        }
    }
}

/// The batch at a position, as seen by a [`ChunkReader`].
pub(crate) enum BatchAt<'a> {
    /// The position is the readable end.
    End,
    Batch(BatchView<'a>),
    /// The bytes there are not a whole batch below the readable end.
    Bad(BatchError),
}

/// Reads the batches of a file below `end`, a bounded chunk at a time.
pub(crate) struct ChunkReader<'f> {
    file: &'f dyn StorageFile,
    end: u64,
    chunk_bytes: usize,
    /// Holds the file's bytes `[buf_start, buf_start + buf_len)`; longer than that once it
    /// has held a larger chunk (kept, so that a refill does not zero it again).
    buf: Vec<u8>,
    buf_len: usize,
    buf_start: u64,
}

impl<'f> ChunkReader<'f> {
    pub(crate) fn new(file: &'f dyn StorageFile, end: u64, chunk_bytes: usize) -> Self {
        ChunkReader {
            file,
            end,
            chunk_bytes: chunk_bytes.max(BATCH_HEADER_BYTES),
            buf: Vec::new(),
            buf_len: 0,
            buf_start: 0,
        }
    }

    /// Makes `buf` cover `[pos, pos + len)`. Requires `pos + len <= end`. The buffer holds at
    /// most `max(len, chunk_bytes)` bytes.
    fn fill(&mut self, pos: u64, len: usize) -> io::Result<()> {
        debug_assert!(pos + len as u64 <= self.end);
        let buf_end = self.buf_start + self.buf_len as u64;
        if pos >= self.buf_start && pos + len as u64 <= buf_end {
            return Ok(());
        }
        let want = (len.max(self.chunk_bytes) as u64).min(self.end - pos) as usize;
        if self.buf.len() < want {
            // Zero-filled once when it grows, not on every refill (the memset showed in
            // the read profile).
            self.buf.resize(want, 0);
        }
        // Nothing is valid until the read succeeds.
        self.buf_len = 0;
        self.file.read_exact_at(&mut self.buf[..want], pos)?;
        self.buf_start = pos;
        self.buf_len = want;
        Ok(())
    }

    /// The header of the batch starting at `pos`, reading only the header (the batch must
    /// end by the readable end).
    pub(crate) fn header_at(&mut self, pos: u64) -> io::Result<HeaderAt> {
        if pos >= self.end {
            return Ok(HeaderAt::End);
        }
        let available = self.end - pos;
        if available < BATCH_HEADER_BYTES as u64 {
            return Ok(HeaderAt::Bad(format!(
                "{available} bytes at the end, short of a batch header"
            )));
        }
        self.fill(pos, BATCH_HEADER_BYTES)?;
        let start = (pos - self.buf_start) as usize;
        let bytes = &self.buf[start..start + BATCH_HEADER_BYTES];
        Ok(match BatchHeader::parse(bytes) {
            Ok(h) if h.size_bytes <= available => HeaderAt::Header(h),
            Ok(h) => HeaderAt::Bad(format!(
                "batch of {} bytes crosses the end ({available} bytes left)",
                h.size_bytes
            )),
            Err(reason) => HeaderAt::Bad(reason),
        })
    }

    /// The batch starting at `pos`.
    pub(crate) fn batch_at(&mut self, pos: u64) -> io::Result<BatchAt<'_>> {
        if pos >= self.end {
            return Ok(BatchAt::End);
        }
        let available = self.end - pos;
        let header = (BATCH_HEADER_BYTES as u64).min(available) as usize;
        self.fill(pos, header)?;
        let needed = {
            let bytes = &self.buf[(pos - self.buf_start) as usize..self.buf_len];
            match BatchView::parse(bytes) {
                Ok(view) => view.size_bytes(),
                Err(BatchError::Truncated { needed_bytes, .. }) => needed_bytes,
                Err(e) => return Ok(BatchAt::Bad(e)),
            }
        };
        if needed as u64 > available {
            return Ok(BatchAt::Bad(BatchError::Truncated {
                needed_bytes: needed,
                available_bytes: available as usize,
            }));
        }
        self.fill(pos, needed)?;
        let bytes = &self.buf[(pos - self.buf_start) as usize..self.buf_len];
        Ok(match BatchView::parse(bytes) {
            Ok(view) => BatchAt::Batch(view),
            Err(e) => BatchAt::Bad(e),
        })
    }
}

/// The fixed header fields of a batch, read without the batch's records (the producer-state
/// rebuild walks headers only). Offsets as in `runnel_model::batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    pub size_bytes: u64,
    pub producer: BatchProducer,
}

impl BatchHeader {
    /// Parses the first [`BATCH_HEADER_BYTES`] of `bytes`.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(format!("{} bytes, short of a batch header", bytes.len()));
        }
        let i16_at = |at: usize| i16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4"));
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        let batch_length = i32_at(8);
        if batch_length < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
            return Err(format!("invalid batch length {batch_length}"));
        }
        let magic = bytes[16] as i8;
        if magic != 2 {
            return Err(format!("unsupported magic {magic}"));
        }
        let last_offset_delta = i32_at(23);
        if last_offset_delta < 0 {
            return Err(format!("negative last offset delta {last_offset_delta}"));
        }
        Ok(BatchHeader {
            base_offset: i64_at(0),
            size_bytes: BATCH_LOG_OVERHEAD_BYTES as u64 + batch_length as u64,
            producer: BatchProducer {
                producer_id: i64_at(43),
                producer_epoch: i16_at(51),
                base_sequence: i32_at(53),
                last_offset_delta,
                is_control: i16_at(21) & 0x20 != 0,
                is_transactional: i16_at(21) & 0x10 != 0,
                coordinator_epoch: -1,
                max_timestamp_ms: i64_at(35),
            },
        })
    }

    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.producer.last_offset_delta)
    }
}

/// The batch header at a position, as seen by [`ChunkReader::header_at`].
pub(crate) enum HeaderAt {
    End,
    Header(BatchHeader),
    Bad(String),
}

/// The outcome of scanning a segment's `.log` batch by batch (recovery).
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Bytes of whole, valid batches from the start; everything after is to be truncated.
    pub valid_bytes: u64,
    pub next_offset: i64,
    pub index: IndexState,
    pub offset_entries: Vec<OffsetEntry>,
    pub time_entries: Vec<TimeEntry>,
    /// Max timestamp of the first batch (roll timer after a reopen).
    pub first_batch_max_timestamp_ms: Option<i64>,
    /// `(epoch, base_offset)` of each batch whose leader epoch differs from the previous one.
    pub epoch_starts: Vec<(i32, i64)>,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
}

/// Scans a `.log` of `file_len_bytes` from the start: every batch must parse, pass its CRC,
/// have a known compression codec and a non-negative last offset delta, start exactly at the
/// expected next offset (the first at `base_offset`) — or, with `gaps`, at or after it, as
/// batches of a cleaned segment do — and stay addressable (relative offset and position within
/// `i32`). Stops at the first batch that does not; rebuilds the index entries of the valid
/// prefix by the same rule appends use.
pub(crate) fn scan(
    file: &dyn StorageFile,
    base_offset: i64,
    file_len_bytes: u64,
    limits: &IndexLimits,
    gaps: bool,
) -> io::Result<ScanOutcome> {
    let mut reader = ChunkReader::new(file, file_len_bytes, SCAN_CHUNK_BYTES);
    let mut out = ScanOutcome {
        valid_bytes: 0,
        next_offset: base_offset,
        index: IndexState::EMPTY,
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
        first_batch_max_timestamp_ms: None,
        epoch_starts: Vec::new(),
        stopped: None,
    };
    let mut last_epoch: Option<i32> = None;
    // Bounded: every iteration consumes a whole batch (>= 61 bytes) or stops.
    loop {
        let pos = out.valid_bytes;
        let view = match reader.batch_at(pos)? {
            BatchAt::End => break,
            BatchAt::Bad(e) => {
                out.stopped = Some(e.to_string());
                break;
            }
            BatchAt::Batch(view) => view,
        };
        if let Err(reason) = check_stored_batch(&view, out.next_offset, gaps, base_offset, pos) {
            out.stopped = Some(reason);
            break;
        }
        if out.first_batch_max_timestamp_ms.is_none() {
            out.first_batch_max_timestamp_ms = Some(view.max_timestamp());
        }
        let epoch = view.partition_leader_epoch();
        if last_epoch != Some(epoch) {
            out.epoch_starts.push((epoch, view.base_offset()));
            last_epoch = Some(epoch);
        }
        out.index.on_batch(
            base_offset,
            pos,
            view.base_offset(),
            view.max_timestamp(),
            view.size_bytes() as u64,
            limits,
            &mut out.offset_entries,
            &mut out.time_entries,
        );
        out.next_offset = view.next_offset();
        out.valid_bytes += view.size_bytes() as u64;
    }
    Ok(out)
}

/// The checks a stored batch must pass during recovery (the structure was already parsed).
fn check_stored_batch(
    view: &BatchView<'_>,
    expected_offset: i64,
    gaps: bool,
    segment_base_offset: i64,
    position: u64,
) -> Result<(), String> {
    view.verify_crc().map_err(|e| e.to_string())?;
    view.compression().map_err(|e| e.to_string())?;
    if view.last_offset_delta() < 0 {
        return Err(format!(
            "negative last offset delta {}",
            view.last_offset_delta()
        ));
    }
    let in_order = if gaps {
        view.base_offset() >= expected_offset
    } else {
        view.base_offset() == expected_offset
    };
    if !in_order {
        return Err(format!(
            "batch base offset {} where {expected_offset} was expected",
            view.base_offset()
        ));
    }
    if view.last_offset() - segment_base_offset > i64::from(i32::MAX) {
        return Err(format!(
            "last offset {} not addressable from segment base {segment_base_offset}",
            view.last_offset()
        ));
    }
    if position > i32::MAX as u64 {
        return Err(format!(
            "position {position} beyond a segment's addressable size"
        ));
    }
    Ok(())
}

/// Walks the batch headers from `position` (a batch boundary with base offset
/// `offset_at_position`, or with `gaps` at or after it) to `end` without checking CRCs, as a
/// clean open does for the tail after the last index entry. With `gaps` each batch may start
/// after the previous one ends (a cleaned segment). With `indexed`, `position` and
/// `offset_at_position` come from an offset index entry, and the batch there must start
/// exactly at the offset the entry names, gaps or not. Returns the next offset, or why the
/// walk failed.
pub(crate) fn walk_tail(
    file: &dyn StorageFile,
    position: u64,
    offset_at_position: i64,
    end: u64,
    gaps: bool,
    indexed: bool,
) -> io::Result<Result<i64, String>> {
    let mut reader = ChunkReader::new(file, end, READ_CHUNK_BYTES);
    let mut pos = position;
    let mut next_offset = offset_at_position;
    let mut exact = indexed;
    // Bounded: every iteration consumes a whole batch or returns.
    loop {
        match reader.batch_at(pos)? {
            BatchAt::End if exact => {
                return Ok(Err(format!(
                    "index entry for offset {next_offset} points at the end, position {pos}"
                )))
            }
            BatchAt::End => return Ok(Ok(next_offset)),
            BatchAt::Bad(e) => return Ok(Err(format!("at position {pos}: {e}"))),
            BatchAt::Batch(view) => {
                let in_order = if gaps && !exact {
                    view.base_offset() >= next_offset
                } else {
                    view.base_offset() == next_offset
                };
                exact = false;
                if !in_order || view.last_offset_delta() < 0 {
                    return Ok(Err(format!(
                        "at position {pos}: batch offsets {}..={} where {next_offset} was expected",
                        view.base_offset(),
                        view.last_offset()
                    )));
                }
                next_offset = view.next_offset();
                pos += view.size_bytes() as u64;
            }
        }
    }
}

/// Max timestamp of the batch at position 0, if one parses there.
pub(crate) fn first_batch_max_timestamp(
    file: &dyn StorageFile,
    end: u64,
) -> io::Result<Option<i64>> {
    let mut reader = ChunkReader::new(file, end, BATCH_HEADER_BYTES);
    Ok(match reader.batch_at(0)? {
        BatchAt::Batch(view) => Some(view.max_timestamp()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FsStorage, OpenMode, Storage};
    use runnel_model::batch::testing::simple_batch;

    #[test]
    fn given_base_offset_should_name_files_like_kafka() {
        assert_eq!(file_stem(0), "00000000000000000000");
        assert_eq!(file_stem(1234), "00000000000000001234");
        assert_eq!(
            parse_file_name("00000000000000001234.log"),
            Some((1234, SegmentFileKind::Log))
        );
        assert_eq!(
            parse_file_name("00000000000000000007.timeindex"),
            Some((7, SegmentFileKind::TimeIndex))
        );
        for bad in [
            "1234.log",
            "0000000000000000123x.log",
            "00000000000000001234.txt",
            "leader-epoch-checkpoint",
            "99999999999999999999.log",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    fn limits() -> IndexLimits {
        IndexLimits {
            index_interval_bytes: 100,
            offset_entries_max: 1000,
            time_entries_max: 1000,
        }
    }

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, Box<dyn StorageFile>) {
        let dir = tempfile::tempdir().unwrap();
        let file = FsStorage::new()
            .open(&dir.path().join("x.log"), OpenMode::CreateNew)
            .unwrap();
        file.write_all_at(bytes, 0).unwrap();
        (dir, file)
    }

    #[test]
    fn given_valid_batches_then_garbage_when_scanned_should_stop_at_garbage() {
        let mut bytes = simple_batch(10, 3);
        bytes.extend_from_slice(&simple_batch(13, 2));
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]);
        let (_d, file) = file_with(&bytes);
        let out = scan(&*file, 10, bytes.len() as u64, &limits(), false).unwrap();
        assert_eq!(out.valid_bytes, valid);
        assert_eq!(out.next_offset, 15);
        assert!(out.stopped.is_some());
        assert_eq!(out.epoch_starts, vec![(0, 10)]);
    }

    #[test]
    fn given_batches_when_walking_headers_should_read_the_producer_fields_and_stop_at_damage() {
        let mut bytes = crate::testing::producer_batch(7, 2, 40, 3, 1_234);
        runnel_model::batch::BatchHeaderMut::new(&mut bytes)
            .unwrap()
            .set_base_offset(10);
        let first_len = bytes.len() as u64;
        bytes.extend_from_slice(&simple_batch(13, 2));
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&simple_batch(15, 1)[..30]);
        let (_d, file) = file_with(&bytes);
        let mut reader = ChunkReader::new(&*file, bytes.len() as u64, 64);
        let HeaderAt::Header(h) = reader.header_at(0).unwrap() else {
            panic!("first header")
        };
        assert_eq!(
            (h.base_offset, h.last_offset(), h.size_bytes),
            (10, 12, first_len)
        );
        assert_eq!(
            h.producer,
            BatchProducer {
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: 40,
                last_offset_delta: 2,
                is_control: false,
                is_transactional: false,
                coordinator_epoch: -1,
                max_timestamp_ms: 1_234,
            }
        );
        let HeaderAt::Header(h) = reader.header_at(first_len).unwrap() else {
            panic!("second header")
        };
        assert_eq!((h.base_offset, h.producer.producer_id), (13, -1));
        assert!(matches!(reader.header_at(valid).unwrap(), HeaderAt::Bad(_)));
        let mut reader = ChunkReader::new(&*file, valid, 64);
        assert!(matches!(reader.header_at(valid).unwrap(), HeaderAt::End));
    }

    #[test]
    fn given_offset_gap_when_scanned_should_stop_before_it() {
        let mut bytes = simple_batch(0, 2);
        let valid = bytes.len() as u64;
        bytes.extend_from_slice(&simple_batch(5, 1));
        let (_d, file) = file_with(&bytes);
        let out = scan(&*file, 0, bytes.len() as u64, &limits(), false).unwrap();
        assert_eq!(out.valid_bytes, valid);
        assert_eq!(out.next_offset, 2);
        // A cleaned segment may have gaps between batches, never overlaps.
        let out = scan(&*file, 0, bytes.len() as u64, &limits(), true).unwrap();
        assert_eq!(out.valid_bytes, bytes.len() as u64);
        assert_eq!(out.next_offset, 6);
        let mut overlapping = simple_batch(0, 3);
        let first = overlapping.len() as u64;
        overlapping.extend_from_slice(&simple_batch(2, 1));
        let (_d2, file) = file_with(&overlapping);
        let out = scan(&*file, 0, overlapping.len() as u64, &limits(), true).unwrap();
        assert_eq!(out.valid_bytes, first);
    }

    #[test]
    fn given_tail_when_walked_should_find_next_offset_or_report_damage() {
        let mut bytes = simple_batch(0, 2);
        let second = bytes.len() as u64;
        bytes.extend_from_slice(&simple_batch(2, 4));
        let (_d, file) = file_with(&bytes);
        let len = bytes.len() as u64;
        assert_eq!(walk_tail(&*file, 0, 0, len, false, false).unwrap(), Ok(6));
        assert_eq!(
            walk_tail(&*file, second, 2, len, false, true).unwrap(),
            Ok(6)
        );
        assert!(walk_tail(&*file, second, 3, len, false, true)
            .unwrap()
            .is_err());
        assert!(walk_tail(&*file, second, 1, len, true, false)
            .unwrap()
            .is_ok());
        assert!(walk_tail(&*file, second, 3, len, true, false)
            .unwrap()
            .is_err());
        assert!(walk_tail(&*file, 1, 0, len, false, false).unwrap().is_err());
        assert!(walk_tail(&*file, 0, 0, len - 1, false, false)
            .unwrap()
            .is_err());
    }

    #[test]
    fn given_gaps_allowed_when_walking_from_an_index_entry_should_require_the_named_offset() {
        let mut bytes = simple_batch(0, 2);
        let second = bytes.len() as u64;
        bytes.extend_from_slice(&simple_batch(20, 4));
        let (_d, file) = file_with(&bytes);
        let len = bytes.len() as u64;
        // A cleaned segment may skip offsets between batches...
        assert_eq!(
            walk_tail(&*file, second, 2, len, true, false).unwrap(),
            Ok(24)
        );
        // ...but an index entry names the exact base offset of the batch it points at.
        assert_eq!(
            walk_tail(&*file, second, 20, len, true, true).unwrap(),
            Ok(24)
        );
        assert!(walk_tail(&*file, second, 3, len, true, true)
            .unwrap()
            .is_err());
        assert!(walk_tail(&*file, len, 24, len, true, true)
            .unwrap()
            .is_err());
    }
}
