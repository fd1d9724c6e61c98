//! Log compaction, with the semantics of Kafka's `LogCleaner` / `Cleaner` (KIP-58
//! `min.compaction.lag.ms`, KIP-354 `max.compaction.lag.ms`, `delete.retention.ms`).
//!
//! # What a clean does
//!
//! The log is split at the **first dirty offset** (how far earlier cleans got, kept in the
//! `cleaner-checkpoint` file) and the **first uncleanable offset**: the base of the active
//! segment, or of the first closed segment whose largest timestamp is newer than
//! `now − min.compaction.lag.ms`. Only closed segments below it are ever rewritten.
//!
//! 1. **Offset map.** The dirty section `[first dirty, first uncleanable)` is read and the
//!    latest offset of every key recorded, up to `dedupe_buffer_bytes` of map; if it fills up,
//!    the clean stops at a batch boundary, the **end offset**, and the rest waits for the next
//!    clean.
//! 2. **Groups.** Every closed segment from the first up to the end offset is rewritten, in
//!    groups of consecutive segments whose total size fits `segment_bytes` (and whose indexes
//!    fit `segment_index_bytes`): each group becomes one segment with the first one's base
//!    offset.
//! 3. **Filter.** A record is kept if its offset is at or past the end offset, or it has a key
//!    whose latest offset in the map is not later, and it is not an expired tombstone. Records
//!    without a key are dropped (Kafka counts them invalid and drops them). Offsets are kept as
//!    they were: a batch whose records all stay is copied byte for byte; a batch that loses
//!    some is decoded and re-encoded with `kafka-protocol` (same codec, producer id, epoch,
//!    transactional flag, leader epoch and timestamp type; the base offset becomes the first
//!    kept record's offset and the base sequence moves with it; the last offset delta keeps
//!    the batch's original last offset, as Kafka's `overrideLastOffset`, so the producer's
//!    last sequence is unchanged); a batch that loses all its records is dropped, except
//!    - the last batch of each producer the partition's producer state knows, kept as an empty
//!      batch header (Kafka's `RETAIN_EMPTY`), so the state can be rebuilt from the log, and
//!    - the last batch of each group, kept as an empty header without producer fields, so a
//!      cleaned segment always ends exactly where the segments it replaces ended (segments
//!      stay contiguous; recovery relies on it to complete an interrupted swap).
//!
//!    Control batches (transaction markers) are kept as they are until no data of their
//!    transaction is left and their delete horizon has passed; then they are removed (see
//!    *Transaction markers*). Records of aborted transactions ([`crate::txn_index`]) are
//!    removed and never enter the offset map, so an aborted value never supersedes a
//!    committed one. Nothing at or after the first unstable offset (an open transaction's
//!    first batch) is cleaned: the first uncleanable offset is at most the base of the
//!    segment that holds it.
//! 4. **Swap**, group by group from the oldest (see *Crash safety*), then the checkpoint.
//!
//! # Tombstones
//!
//! A tombstone (a record with a key and a null value) removes the earlier values of its key
//! and is kept for `delete.retention.ms` after the clean that first saw it (Kafka's delete
//! horizon, KIP-534): consumers that read the log slowly still see the delete. Kafka stores
//! that horizon in each rewritten batch (the delete-horizon attribute bit, the horizon in the
//! base timestamp field, record timestamps as deltas from it). `kafka-protocol`'s encoder
//! always takes the base timestamp from the records (deltas from the smallest), so it cannot
//! write such a batch, and this crate does not hand-write record codecs: instead the horizons
//! are kept in the cleaner checkpoint, per cleaned offset range (`(end_offset, horizon_ms,
//! holds_tombstones)`, one range per clean that kept a new tombstone or covered a new marker).
//! Only the horizon of a range that holds tombstones makes a clean due
//! ([`PartitionLog::needs_cleaning`]); the markers of a range without any go at the first
//! clean after their horizon that is due for another reason (later, never sooner). The rule is
//! Kafka's: a tombstone is kept by the clean that first covers it and by every clean before
//! its horizon, and removed by the first clean at or after it. If the checkpoint is lost, the
//! next clean treats the whole log as dirty and sets new horizons: tombstones and markers are
//! kept longer, never shorter.
//!
//! # Transaction markers
//!
//! Kafka's rule (`CleanedTransactionMetadata`, `checkBatchRetention`): a clean reads the
//! batches of its groups in offset order, all of them (those it empties or drops too), and
//! tracks what it has read of each producer's transactions (`TxnTracker`):
//!
//! - a transactional data batch of an aborted transaction (per the aborted-transaction index)
//!   records that data of that transaction was read; any other transactional batch records
//!   that its producer has an ongoing (committed) transaction;
//! - a COMMIT marker may be discarded iff its producer had no ongoing transaction (which the
//!   marker ends either way); an ABORT marker iff no data of its aborted transaction was read
//!   and — stricter than Kafka, in case the aborted index lacks the transaction (its bound
//!   dropped the entry) — its producer had no ongoing transaction either; an empty control
//!   batch may be discarded; any other control batch is kept;
//! - a discardable marker is removed only once its delete horizon has passed (below), and
//!   never if it is its producer's last record (the producer state retains no batch of the
//!   producer and the marker has its epoch: Kafka keeps it for fencing), nor at or past the
//!   end offset. A removed marker that ends its group leaves an empty header without producer
//!   fields, as any batch that ends a group. That fencing protection lasts only while the
//!   running state knows the producer: an open drops producers known only by markers (as
//!   Kafka's loading of producer state does), so after a restart such a marker is removed
//!   like any other discardable one, and a rebuild no longer learns the producer's epoch from
//!   it (the coordinator, which fenced it, still knows it).
//!
//! So a marker stays while a batch of its transaction is in the log. The last batch of a
//! producer, kept as an empty header with its producer fields and transactional bit, is read
//! by every clean and keeps the marker after it. Rebuilding the producer state from a cleaned
//! log opens and closes the same transactions as before (a removed marker closed nothing that
//! is still in the log), so the first unstable offset after a reopen is unchanged. Since a
//! batch the clean empties is still read by it, a marker goes at the earliest in the clean
//! after the one that removed the last of its transaction's data.
//!
//! **Horizons.** Kafka writes a marker's delete horizon (now + `delete.retention.ms`) into the
//! batch when it first finds the marker discardable. Runnel cannot write that attribute (see
//! *Tombstones*); a marker has the horizon of the checkpoint range that covers it instead: the
//! clean that first covers a marker (at or after the first dirty offset) keeps it and records a
//! range even if it kept no new tombstone, and a discardable marker is removed by the first
//! clean at or after that range's horizon. For an abort marker that keeps Kafka's guarantee:
//! aborted data lies before its marker, and the first clean that covers the marker removes all
//! of it that an earlier clean did not, so the marker survives at least `delete.retention.ms`
//! after the last of its transaction's data is gone. A consumer that fetched the aborted data
//! (and its aborted-transaction entry) before the clean drops the producer's transactional
//! batches until it reads the abort marker; it has that long to get there. (Kafka's horizon
//! starts one clean later, at the first clean that finds the marker discardable, so Kafka may
//! keep it one clean interval longer.) A commit marker's range may expire long before its data
//! is superseded, so it can go in the clean right after its data went, sooner than in Kafka;
//! no reader needs it (`read_committed` readers act on abort markers only) and the producer
//! state does not either (above).
//!
//! **Before replication.** A marker's horizon starts when a clean first covers it, not (as in
//! Kafka) when a clean first finds it discardable. For a commit marker that may be long
//! before its data is gone, so the marker can go in the clean right after its data did. That
//! is safe for consumers today (above), but not once followers copy this log: a follower that
//! lags, has copied the transaction's data but not yet its marker, and fetches after the
//! marker is gone, would keep the transaction open (its first unstable offset stuck, its
//! `read_committed` readers held back). Before followers or replication exist, a marker's
//! horizon must start when it first becomes discardable (Kafka's rule, which gives a lagging
//! follower `delete.retention.ms` to read it), e.g. a range recorded by the clean that first
//! finds a marker discardable.
//!
//! A checkpoint written before markers were removed (version 0) recorded ranges for tombstones
//! only, so the markers below its first dirty offset have no horizon: the first clean from it
//! keeps them and records a single range over everything it cleaned with a fresh horizon (or a
//! tombstone range's later one). They go `delete.retention.ms` after the upgrade at the
//! earliest; tombstones may be kept longer, never shorter.
//!
//! **Aborted-transaction index and producer-state snapshots.** Kafka rebuilds a cleaned
//! segment's index with the aborted transactions whose marker it keeps because their data was
//! read. Runnel's index is one file per partition and keeps the entry of every abort marker
//! still in the log; the entries of the markers a group removes are removed, and the file
//! rewritten, before that group's swap, because an entry that outlived its marker would make a
//! `read_committed` reader drop the producer's later, committed, batches. Until the swap (or
//! if it fails) such a marker is in the log without its entry, which is harmless: no data of
//! its transaction is left to filter. A reader that read batches before an earlier clean
//! removed the transaction's data may still hold that data: a `read_committed` read takes the
//! aborted transactions with its batches and reads again if entries left the index meanwhile
//! (here, or by DeleteRecords or retention moving the log start; [`PartitionLog::read_with_aborted`]). The producer-state snapshots taken at or before the
//! last removed marker are deleted before the swap too: one may hold a transaction open whose
//! data an earlier clean removed and whose marker is now gone. The latest snapshot, taken at
//! the roll of the active segment or at close, lies past every cleaned offset and stays.
//!
//! # Crash safety
//!
//! Each group is swapped in with these steps (`B` is the group's base offset):
//!
//! 1. write `B.log.cleaned`, `B.index.cleaned`, `B.timeindex.cleaned`, fsync them; if the
//!    group removes markers, rewrite the aborted-transaction index without their entries and
//!    delete the producer-state snapshots at or before the last of them (see *Transaction
//!    markers*);
//! 2. rename the two index files to `B.index.swap`, `B.timeindex.swap`; fsync the directory;
//! 3. rename `B.log.cleaned` to `B.log.swap`; fsync the directory — **the commit point**;
//! 4. rename every file of the replaced segments to `*.deleted`;
//! 5. rename the three `.swap` files to their final names; fsync the directory;
//! 6. replace the segments in memory (readers holding the old files finish on them).
//!
//! At open (`recovery::complete_swaps`) a `B.log.swap` means the group committed: the
//! segments in `[B, end of the swap segment)` are removed and the swap renamed, finishing steps
//! 4–5; `.cleaned` files and swap index files without a swap `.log` are removed (the old
//! segments are still whole); `.deleted` files are removed. Groups are swapped oldest first,
//! so after a crash a prefix of the groups is cleaned and the rest is as it was: every record
//! a cleaned group dropped was superseded by a later record that is still there (in a later
//! group, cleaned or not), so the latest value of every key is unchanged, offsets still only
//! grow, and nothing appears twice. The checkpoint is written after the last group; a crash
//! before it only makes the next clean redo work (and set later tombstone horizons).
//!
//! # Throttling
//!
//! Bytes read and written are metered as Kafka's `Throttler` does
//! (`log.cleaner.io.max.bytes.per.second`): every 300 ms of [`ThrottleClock`] time, if the rate
//! since the last check is above the limit, the cleaner sleeps long enough to bring it down.
//! The clock is injected ([`CleanerOptions::clock`]), so tests use [`ManualClock`] and never
//! sleep.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::{
    Compression as RecordCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions,
};
use runnel_model::batch::{BatchHeaderMut, BatchView, Batches, Compression, BATCH_HEADER_BYTES};
use runnel_model::control::parse_marker;
use tracing::{debug, info};

use crate::checkpoint::{self, CleanerCheckpoint, HORIZON_RANGES_MAX};
use crate::error::LogError;
use crate::index::{self, IndexFile, IndexLimits, IndexState, OffsetEntry, TimeEntry};
use crate::partition_log::{fail, step_error, Inner, PartitionLog, CLEANER_CHECKPOINT_FILE};
use crate::producer_state::{increment_sequence, snapshot_file_name};
use crate::segment::{
    self, BatchAt, ChunkReader, Segment, SegmentFiles, SegmentSnapshot, CLEANED_SUFFIX,
    DELETED_SUFFIX, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, SCAN_CHUNK_BYTES, SEGMENT_SUFFIXES,
    SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::storage::{OpenMode, StorageFile};
use crate::txn_index::AbortedTxns;

/// Bytes of cleaned output buffered before a write.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;
/// Memory counted per offset map entry besides its key (Kafka's map stores a 16-byte hash and
/// an 8-byte offset; ours stores the key itself, a box and a hash table slot).
const MAP_ENTRY_OVERHEAD_BYTES: u64 = 48;
/// How often the throttler checks the rate (Kafka's cleaner uses 300 ms).
const THROTTLE_CHECK_INTERVAL: Duration = Duration::from_millis(300);
/// Attribute bit of a LogAppendTime batch, and of a transactional one.
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// The clock the cleaner's throttle reads and sleeps on.
pub trait ThrottleClock: Send + Sync + Debug {
    /// A monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Waits `duration`.
    fn sleep(&self, duration: Duration);
}

/// The real clock: [`Instant`] and `std::thread::sleep`.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl ThrottleClock for SystemClock {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A test clock: every reading advances it by `tick`, a sleep advances it by the duration
/// (and is added to [`ManualClock::slept`]) without waiting.
#[derive(Debug)]
pub struct ManualClock {
    now_ns: AtomicU64,
    tick_ns: u64,
    slept_ns: AtomicU64,
}

impl ManualClock {
    pub fn new(tick: Duration) -> Self {
        ManualClock {
            now_ns: AtomicU64::new(0),
            tick_ns: tick.as_nanos().min(u128::from(u64::MAX)) as u64,
            slept_ns: AtomicU64::new(0),
        }
    }

    /// Total time "slept" so far.
    pub fn slept(&self) -> Duration {
        Duration::from_nanos(self.slept_ns.load(Ordering::SeqCst))
    }
}

impl ThrottleClock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.fetch_add(self.tick_ns, Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) {
        let ns = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.now_ns.fetch_add(ns, Ordering::SeqCst);
        self.slept_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

/// The cleaning settings of one log (Kafka's topic configs `delete.retention.ms`,
/// `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`, and the
/// broker's `log.cleaner.io.max.bytes.per.second` and `log.cleaner.dedupe.buffer.size`).
/// `Default` is Kafka's defaults with the real clock.
#[derive(Debug, Clone)]
pub struct CleanerOptions {
    /// How long a tombstone is kept after the clean that first saw it. Default 1 day.
    pub delete_retention_ms: i64,
    /// [`PartitionLog::needs_cleaning`] is true once dirty bytes / all cleanable bytes exceed
    /// this. Default 0.5.
    pub min_cleanable_dirty_ratio: f64,
    /// Records are not cleaned until their segment's largest timestamp is this old.
    /// Default 0.
    pub min_compaction_lag_ms: i64,
    /// A log whose oldest dirty record is this old must be cleaned whatever its dirty ratio.
    /// Default `i64::MAX` (never).
    pub max_compaction_lag_ms: i64,
    /// Bytes read and written per second by a clean, at most. Default `f64::MAX`.
    pub io_max_bytes_per_second: f64,
    /// Memory for the offset map of one clean. Default 128 MiB.
    pub dedupe_buffer_bytes: u64,
    /// The clock the throttle reads and sleeps on.
    pub clock: Arc<dyn ThrottleClock>,
}

impl Default for CleanerOptions {
    fn default() -> Self {
        CleanerOptions {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            io_max_bytes_per_second: f64::MAX,
            dedupe_buffer_bytes: 128 * 1024 * 1024,
            clock: Arc::new(SystemClock::new()),
        }
    }
}

impl CleanerOptions {
    fn validate(&self) -> Result<(), LogError> {
        let bad = |what: String| Err(LogError::InvalidConfig(what));
        if self.delete_retention_ms < 0 {
            return bad(format!(
                "delete_retention_ms {} must not be negative",
                self.delete_retention_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad(format!(
                "min_cleanable_dirty_ratio {} is outside [0, 1]",
                self.min_cleanable_dirty_ratio
            ));
        }
        if self.min_compaction_lag_ms < 0 {
            return bad(format!(
                "min_compaction_lag_ms {} must not be negative",
                self.min_compaction_lag_ms
            ));
        }
        if self.max_compaction_lag_ms < 1 {
            return bad(format!(
                "max_compaction_lag_ms {} must be at least 1",
                self.max_compaction_lag_ms
            ));
        }
        if self.io_max_bytes_per_second.is_nan() || self.io_max_bytes_per_second <= 0.0 {
            return bad(format!(
                "io_max_bytes_per_second {} must be positive",
                self.io_max_bytes_per_second
            ));
        }
        Ok(())
    }
}

/// What one [`PartitionLog::clean`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Whether any segment was rewritten.
    pub cleaned: bool,
    /// The dirty section cleaned: `[first_dirty_offset, end_offset)`; the next clean starts at
    /// `end_offset`.
    pub first_dirty_offset: i64,
    pub end_offset: i64,
    /// The first uncleanable offset at the time of the clean.
    pub first_uncleanable_offset: i64,
    /// Segments rewritten, and the segments that replaced them.
    pub segments_cleaned: usize,
    pub segments_written: usize,
    /// Keys in the offset map.
    pub keys_mapped: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    /// Records dropped because a later record has the same key.
    pub records_superseded: u64,
    /// Tombstones dropped because their delete horizon had passed.
    pub tombstones_removed: u64,
    /// Transaction markers (control batches) removed: no data of their transaction was left
    /// and their delete horizon had passed.
    pub markers_removed: u64,
    /// Records dropped because they have no key.
    pub records_without_key: u64,
    /// Batches dropped entirely, and batches kept as empty headers.
    pub batches_dropped: u64,
    pub empty_batches_kept: u64,
    /// Time the throttle slept.
    pub throttled: Duration,
}

/// Whether `batch` holds data of an aborted transaction, which a clean drops (Kafka's
/// `CleanedTransactionMetadata`).
fn batch_is_aborted(aborted: &AbortedTxns, batch: &BatchView<'_>) -> bool {
    batch.is_transactional()
        && !batch.is_control()
        && aborted.is_aborted(
            batch.producer_id(),
            batch.base_offset(),
            batch.last_offset(),
        )
}

/// Kafka's `CleanedTransactionMetadata`: what a clean has read of each producer's
/// transactions so far, in offset order, to decide which markers may go.
#[derive(Debug, Default)]
struct TxnTracker {
    /// Producers with a transactional batch read since their last marker (Kafka's
    /// `ongoingCommittedTxns`; here also a transaction the aborted index does not know).
    ongoing: HashSet<i64>,
    /// Aborted transactions, as `(producer id, abort marker offset)`, with a batch read.
    aborted_seen: HashSet<(i64, i64)>,
}

impl TxnTracker {
    /// A data batch read (Kafka's `onBatchRead`): whether it belongs to an aborted
    /// transaction (see [`batch_is_aborted`]).
    fn on_batch(&mut self, aborted: &AbortedTxns, batch: &BatchView<'_>) -> bool {
        if !batch.is_transactional() || batch.is_control() {
            return false;
        }
        let producer_id = batch.producer_id();
        match aborted.aborted_txn_of(producer_id, batch.base_offset(), batch.last_offset()) {
            Some(txn) => {
                self.aborted_seen.insert((producer_id, txn.last_offset));
                true
            }
            None => {
                self.ongoing.insert(producer_id);
                false
            }
        }
    }

    /// A control batch read (Kafka's `onControlBatchRead`): whether it may be discarded. A
    /// commit may go if no batch of its producer was read since the producer's last marker; an
    /// abort if no batch of its aborted transaction was read either (Kafka asks only the
    /// latter; a batch read as committed before an abort means the aborted index lacks the
    /// transaction, and the marker is what ends it when the state is rebuilt). An empty
    /// control batch may go; another control type or a malformed marker stays.
    fn on_marker(&mut self, batch: &BatchView<'_>) -> bool {
        if batch.records_count() == 0 {
            return true;
        }
        let producer_id = batch.producer_id();
        match parse_marker(batch) {
            Ok(Some(marker)) => {
                let data_read = self.ongoing.remove(&producer_id);
                let aborted_data_read = !marker.commit
                    && self
                        .aborted_seen
                        .remove(&(producer_id, batch.base_offset()));
                !data_read && !aborted_data_read
            }
            Ok(None) | Err(_) => false,
        }
    }
}

/// Kafka's `Throttler`.
struct Throttler<'a> {
    clock: &'a dyn ThrottleClock,
    bytes_per_second: f64,
    period_start_ns: u64,
    observed_bytes: u64,
    slept: Duration,
}

impl<'a> Throttler<'a> {
    fn new(clock: &'a dyn ThrottleClock, bytes_per_second: f64) -> Self {
        Throttler {
            clock,
            bytes_per_second,
            period_start_ns: clock.now_ns(),
            observed_bytes: 0,
            slept: Duration::ZERO,
        }
    }

    fn observe(&mut self, bytes: u64) {
        self.observed_bytes = self.observed_bytes.saturating_add(bytes);
        let now_ns = self.clock.now_ns();
        let elapsed_ns = now_ns.saturating_sub(self.period_start_ns);
        if elapsed_ns <= THROTTLE_CHECK_INTERVAL.as_nanos() as u64 || self.observed_bytes == 0 {
            return;
        }
        let elapsed_s = elapsed_ns as f64 / 1e9;
        let rate = self.observed_bytes as f64 / elapsed_s;
        if rate > self.bytes_per_second {
            let needed_s = self.observed_bytes as f64 / self.bytes_per_second - elapsed_s;
            if needed_s > 0.0 {
                let sleep = Duration::from_secs_f64(needed_s.min(3600.0));
                self.clock.sleep(sleep);
                self.slept += sleep;
            }
        }
        self.period_start_ns = self.clock.now_ns();
        self.observed_bytes = 0;
    }
}

/// One closed segment as the clean sees it.
struct Planned {
    snapshot: SegmentSnapshot,
    modified_ms: i64,
}

impl Planned {
    fn base_offset(&self) -> i64 {
        self.snapshot.base_offset
    }
}

/// What a clean works from, copied under the lock.
struct Plan {
    first_dirty: i64,
    first_uncleanable: i64,
    /// Closed segments below the first uncleanable offset, oldest first.
    segments: Vec<Planned>,
    producer_last_offsets: HashMap<i64, i64>,
    producer_epochs_without_batches: HashMap<i64, i16>,
    aborted: AbortedTxns,
    cleaner: CleanerCheckpoint,
    segment_bytes: u64,
    segment_index_bytes: u64,
    limits: IndexLimits,
    log_start_offset: i64,
}

/// The split of a log for cleaning, computed under the lock.
struct Cleanable {
    first_dirty: i64,
    first_uncleanable: i64,
    clean_bytes: u64,
    dirty_bytes: u64,
}

impl Cleanable {
    fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// Kafka's `LogCleanerManager.cleanableOffsets` and the byte counts of `cleanableRatio`.
fn cleanable(inner: &Inner, now_ms: i64, min_compaction_lag_ms: i64) -> Cleanable {
    let first_base = *inner.segments.keys().next().expect("a log has a segment");
    let active_base = inner.active().base_offset;
    let first_dirty = match inner.cleaner.first_dirty_offset {
        Some(o) if o >= inner.log_start_offset && o <= inner.log_end_offset => o,
        _ => inner.log_start_offset,
    }
    .max(first_base);
    let mut first_uncleanable = active_base;
    if let Some(first_unstable) = inner.producers.first_unstable_offset() {
        // Kafka's cleaner stops at the first unstable offset: whole segments below it only.
        let holding = inner
            .segments
            .range(..=first_unstable)
            .next_back()
            .map_or(first_base, |(&base, _)| base);
        first_uncleanable = first_uncleanable.min(holding);
    }
    if min_compaction_lag_ms > 0 {
        let horizon = now_ms.saturating_sub(min_compaction_lag_ms);
        let young = inner
            .segments
            .values()
            .filter(|s| s.base_offset < active_base && s.next_offset > first_dirty)
            .find(|s| s.largest_timestamp_ms() > horizon);
        if let Some(s) = young {
            first_uncleanable = first_uncleanable.min(s.base_offset);
        }
    }
    let overlaps = |s: &&Segment, from: i64, to: i64| s.base_offset < to && s.next_offset > from;
    let clean_bytes = inner
        .segments
        .values()
        .filter(|s| s.base_offset < first_dirty)
        .map(|s| s.size_bytes)
        .sum();
    let dirty_bytes = if first_dirty < first_uncleanable {
        inner
            .segments
            .values()
            .filter(|s| overlaps(s, first_dirty, first_uncleanable))
            .map(|s| s.size_bytes)
            .sum()
    } else {
        0
    };
    Cleanable {
        first_dirty,
        first_uncleanable,
        clean_bytes,
        dirty_bytes,
    }
}

/// Latest offset of each key of the dirty section.
struct OffsetMap {
    offsets: HashMap<Box<[u8]>, i64>,
    bytes: u64,
}

impl OffsetMap {
    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.offsets.get(key).copied()
    }
}

/// Per-clean context of the filter.
struct Filter<'p> {
    map: &'p OffsetMap,
    end_offset: i64,
    /// Tombstones and markers at or after it are seen for the first time: their horizon
    /// starts now.
    first_dirty: i64,
    cleaner: &'p CleanerCheckpoint,
    producer_last_offsets: &'p HashMap<i64, i64>,
    producer_epochs_without_batches: &'p HashMap<i64, i16>,
    aborted: &'p AbortedTxns,
    now_ms: i64,
    /// Tombstones and markers at or after `first_dirty` that were kept (the new horizon range
    /// is recorded only if there are any).
    new_tombstones_kept: u64,
    new_markers_kept: u64,
    txns: TxnTracker,
    /// The markers removed from the group being written.
    removed: RemovedMarkers,
}

/// What the swap of a group needs to know of the markers the group removes: the abort markers
/// that have an aborted-transaction entry (at most [`crate::txn_index::ABORTED_TXNS_MAX`],
/// the entries the index keeps, whatever the number of markers removed) and the last marker
/// removed (for the producer-state snapshots).
#[derive(Debug, Default)]
struct RemovedMarkers {
    /// Offsets of the removed abort markers with an index entry, ascending.
    indexed_aborts: Vec<i64>,
    /// Offset of the last marker removed.
    last: Option<i64>,
}

impl RemovedMarkers {
    /// Records the removal of the marker at `offset` (ascending over calls).
    fn record(&mut self, offset: i64, aborted: &AbortedTxns) {
        if aborted.has_marker(offset) {
            self.indexed_aborts.push(offset);
        }
        self.last = Some(offset);
    }
}

impl Filter<'_> {
    /// Whether the delete horizon of a tombstone or marker at `offset`, below the first dirty
    /// offset, has passed (no range holds the offset: its range was dropped once past).
    fn horizon_passed(&self, offset: i64) -> bool {
        self.cleaner
            .horizon_of(offset)
            .is_none_or(|horizon| self.now_ms >= horizon)
    }

    /// What the clean keeps of a control batch (see the module docs).
    fn marker<'b>(
        &mut self,
        view: &BatchView<'b>,
        group_end: i64,
        stats: &mut CleanStats,
    ) -> Output<'b> {
        let discardable = self.txns.on_marker(view);
        let offset = view.base_offset();
        if offset >= self.end_offset {
            return Output::Keep(view.as_bytes());
        }
        if offset >= self.first_dirty {
            self.new_markers_kept += 1;
            return Output::Keep(view.as_bytes());
        }
        // The producer's last record: it carries the producer's epoch (Kafka keeps it too).
        let producer_last = self
            .producer_epochs_without_batches
            .get(&view.producer_id())
            == Some(&view.producer_epoch());
        if !discardable
            || producer_last
            || self.cleaner.markers_unranged
            || !self.horizon_passed(offset)
        {
            return Output::Keep(view.as_bytes());
        }
        stats.markers_removed += 1;
        self.removed.record(offset, self.aborted);
        if view.next_offset() == group_end {
            stats.empty_batches_kept += 1;
            return Output::Rewritten(empty_batch(view, false));
        }
        Output::Drop
    }

    /// Whether the clean keeps `record`, of a batch that belongs to an aborted transaction if
    /// `batch_aborted`.
    fn retain(&mut self, record: &Record, batch_aborted: bool, stats: &mut CleanStats) -> bool {
        if record.offset >= self.end_offset {
            return true;
        }
        if batch_aborted {
            return false;
        }
        let Some(key) = &record.key else {
            stats.records_without_key += 1;
            return false;
        };
        if self
            .map
            .latest(key)
            .is_some_and(|latest| record.offset < latest)
        {
            stats.records_superseded += 1;
            return false;
        }
        if record.value.is_none() {
            if record.offset >= self.first_dirty {
                self.new_tombstones_kept += 1;
                return true;
            }
            if !self.horizon_passed(record.offset) {
                return true;
            }
            stats.tombstones_removed += 1;
            return false;
        }
        true
    }
}

/// The cleaned output of a batch.
enum Output<'b> {
    Keep(&'b [u8]),
    Rewritten(Vec<u8>),
    Drop,
}

/// A cleaned segment written and synced as `*.cleaned`, not yet swapped in.
struct Cleaned {
    base_offset: i64,
    files: Arc<SegmentFiles>,
    size_bytes: u64,
    next_offset: i64,
    index: IndexState,
    modified_ms: i64,
}

/// Buffered sequential writes of a cleaned `.log`.
struct OutFile<'f> {
    file: &'f dyn StorageFile,
    path: &'f Path,
    flushed: u64,
    buf: Vec<u8>,
}

impl OutFile<'_> {
    fn position(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }
    fn write(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.buf, self.flushed)
            .map_err(|e| LogError::io("write", self.path, e))?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl PartitionLog {
    /// Kafka's cleanable ratio: bytes of the dirty section (from the first dirty offset up to
    /// the first uncleanable offset, which `opts.min_compaction_lag_ms` may hold back) over
    /// the bytes of the clean and dirty sections. 0 for an empty log.
    pub fn cleanable_ratio(&self, now_ms: i64, opts: &CleanerOptions) -> f64 {
        let inner = self.lock();
        cleanable(&inner, now_ms, opts.min_compaction_lag_ms).ratio()
    }

    /// Whether the broker's cleaner should clean this log now (Kafka's
    /// `grabFilthiestCompactedLog` test): the cleanable ratio exceeds
    /// `min_cleanable_dirty_ratio`, or the oldest dirty segment's first batch is older than
    /// `max_compaction_lag_ms` (KIP-354), or tombstones kept by an earlier clean have reached
    /// their delete horizon.
    pub fn needs_cleaning(&self, now_ms: i64, opts: &CleanerOptions) -> Result<bool, LogError> {
        let (c, first_dirty_segment, horizon) = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            let c = cleanable(&inner, now_ms, opts.min_compaction_lag_ms);
            let first_dirty_segment = inner
                .segments
                .range(..=c.first_dirty)
                .next_back()
                .map(|(_, s)| s.snapshot())
                .filter(|s| s.base_offset < c.first_uncleanable);
            (
                c,
                first_dirty_segment,
                inner.cleaner.earliest_tombstone_horizon(),
            )
        };
        if c.dirty_bytes > 0 && c.ratio() > opts.min_cleanable_dirty_ratio {
            return Ok(true);
        }
        if horizon.is_some_and(|h| h <= now_ms) {
            return Ok(true);
        }
        if c.dirty_bytes > 0 && opts.max_compaction_lag_ms < i64::MAX {
            if let Some(s) = first_dirty_segment {
                let first_ts = segment::first_batch_max_timestamp(&*s.files.log, s.size_bytes)
                    .map_err(|e| LogError::io("read", &s.files.log_path, e))?;
                if first_ts.is_some_and(|ts| {
                    ts >= 0 && ts < now_ms.saturating_sub(opts.max_compaction_lag_ms)
                }) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Compacts the log (see the module docs): keeps the latest record of each key in the
    /// closed segments below the first uncleanable offset, drops expired tombstones, merges
    /// the rewritten segments up to `segment_bytes`, and swaps them in crash-safely. Runs
    /// whatever the dirty ratio (the broker decides with [`PartitionLog::needs_cleaning`]);
    /// does nothing if there is neither a dirty section nor an expired tombstone horizon.
    /// Retention of this log waits (reports busy) while it runs; close and delete make it
    /// stop early (`Closed`). A failure before a group's commit point leaves the log as it was
    /// and usable; a failure after it turns the log failed (the next open completes the swap).
    pub fn clean(&self, now_ms: i64, opts: &CleanerOptions) -> Result<CleanStats, LogError> {
        opts.validate()?;
        let _maintenance = self.maintenance_guard();
        self.check_abort()?;
        let plan = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            let c = cleanable(&inner, now_ms, opts.min_compaction_lag_ms);
            let active_base = inner.active().base_offset;
            Plan {
                first_dirty: c.first_dirty,
                first_uncleanable: c.first_uncleanable,
                segments: inner
                    .segments
                    .values()
                    .filter(|s| s.base_offset < active_base)
                    .map(|s| Planned {
                        snapshot: s.snapshot(),
                        modified_ms: s.modified_ms,
                    })
                    .collect(),
                producer_last_offsets: inner.producers.last_batch_offsets(),
                producer_epochs_without_batches: inner.producers.epochs_without_batches(),
                aborted: inner.aborted.clone(),
                cleaner: inner.cleaner.clone(),
                segment_bytes: inner.config.segment_bytes,
                segment_index_bytes: inner.config.segment_index_bytes,
                limits: inner.limits,
                log_start_offset: inner.log_start_offset,
            }
        };
        let mut stats = CleanStats {
            first_dirty_offset: plan.first_dirty,
            end_offset: plan.first_dirty,
            first_uncleanable_offset: plan.first_uncleanable,
            ..CleanStats::default()
        };
        let expired_horizon = plan.cleaner.earliest_horizon().is_some_and(|h| h <= now_ms);
        if plan.first_dirty >= plan.first_uncleanable && !expired_horizon {
            return Ok(stats);
        }
        let mut throttler = Throttler::new(&*opts.clock, opts.io_max_bytes_per_second);
        let (map, end_offset) = if plan.first_dirty < plan.first_uncleanable {
            self.build_offset_map(&plan, opts.dedupe_buffer_bytes, &mut throttler, &mut stats)?
        } else {
            (
                OffsetMap {
                    offsets: HashMap::new(),
                    bytes: 0,
                },
                plan.first_dirty,
            )
        };
        stats.end_offset = end_offset;
        stats.keys_mapped = map.offsets.len() as u64;

        let cleanable: Vec<&Planned> = plan
            .segments
            .iter()
            .filter(|s| s.base_offset() < end_offset)
            .collect();
        let groups = group_by_size(&cleanable, plan.segment_bytes, plan.segment_index_bytes);
        let mut filter = Filter {
            map: &map,
            end_offset,
            first_dirty: plan.first_dirty,
            cleaner: &plan.cleaner,
            producer_last_offsets: &plan.producer_last_offsets,
            producer_epochs_without_batches: &plan.producer_epochs_without_batches,
            aborted: &plan.aborted,
            now_ms,
            new_tombstones_kept: 0,
            new_markers_kept: 0,
            txns: TxnTracker::default(),
            removed: RemovedMarkers::default(),
        };
        for group in &groups {
            self.check_abort()?;
            let cleaned =
                self.clean_group(group, &plan.limits, &mut filter, &mut throttler, &mut stats)?;
            let removed = std::mem::take(&mut filter.removed);
            self.swap_in(group, cleaned, &removed, now_ms)?;
            stats.segments_cleaned += group.len();
            stats.segments_written += 1;
        }
        stats.cleaned = !groups.is_empty();

        // The checkpoint: the next clean starts at the end offset; ranges whose horizon passed
        // had all their tombstones (and their markers that may go) removed just now; a range
        // for the tombstones and markers seen first.
        let mut next = plan.cleaner.clone();
        next.first_dirty_offset = Some(end_offset);
        let log_start_offset = self.log_start_offset().max(plan.log_start_offset);
        next.horizons
            .retain(|&(end, horizon, _)| horizon > now_ms && end > log_start_offset);
        let new_horizon = now_ms.saturating_add(opts.delete_retention_ms);
        if plan.cleaner.markers_unranged {
            // A version-0 checkpoint: the markers below its first dirty offset get their
            // horizon now, with one range over everything cleaned (its tombstones keep their
            // horizon or get this later one).
            let latest = next.horizons.iter().map(|&(_, h, _)| h).max();
            let tombstones = latest.is_some() || filter.new_tombstones_kept > 0;
            next.horizons.clear();
            if end_offset > log_start_offset {
                next.horizons.push((
                    end_offset,
                    latest.map_or(new_horizon, |h| h.max(new_horizon)),
                    tombstones,
                ));
            }
            next.markers_unranged = false;
        } else if (filter.new_tombstones_kept > 0 || filter.new_markers_kept > 0)
            && end_offset > plan.first_dirty
        {
            next.horizons
                .push((end_offset, new_horizon, filter.new_tombstones_kept > 0));
        }
        // Bounded: each iteration merges two ranges.
        while next.horizons.len() > HORIZON_RANGES_MAX {
            let (_, h0, t0) = next.horizons.remove(0);
            next.horizons[0].1 = next.horizons[0].1.max(h0);
            next.horizons[0].2 |= t0;
        }
        checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            CLEANER_CHECKPOINT_FILE,
            &next.encode(),
        )
        .map_err(step_error)?;
        self.lock().cleaner = next;
        stats.throttled = throttler.slept;
        info!(
            dir = %self.dir.display(),
            first_dirty_offset = stats.first_dirty_offset,
            end_offset = stats.end_offset,
            segments_cleaned = stats.segments_cleaned,
            segments_written = stats.segments_written,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_superseded = stats.records_superseded,
            tombstones_removed = stats.tombstones_removed,
            markers_removed = stats.markers_removed,
            throttled_ms = stats.throttled.as_millis() as u64,
            "cleaned log"
        );
        // Segments the log start offset passed meanwhile (DeleteRecords while cleaning).
        self.delete_segments_below_log_start(Some(now_ms))?;
        Ok(stats)
    }

    fn check_abort(&self) -> Result<(), LogError> {
        if self.abort_maintenance.load(Ordering::SeqCst) {
            return Err(LogError::Closed {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Reads the dirty section and maps each key to its latest offset, until the map would
    /// exceed `budget_bytes` (at batch granularity; the first batch is always mapped). Returns
    /// the map and the end offset: every record below it was mapped.
    fn build_offset_map(
        &self,
        plan: &Plan,
        budget_bytes: u64,
        throttler: &mut Throttler<'_>,
        stats: &mut CleanStats,
    ) -> Result<(OffsetMap, i64), LogError> {
        let mut map = OffsetMap {
            offsets: HashMap::new(),
            bytes: 0,
        };
        let mut end_offset = plan.first_dirty;
        let dirty = plan.segments.iter().filter(|s| {
            s.snapshot.next_offset > plan.first_dirty && s.base_offset() < plan.first_uncleanable
        });
        for planned in dirty {
            let s = &planned.snapshot;
            let mut reader = ChunkReader::new(&*s.files.log, s.size_bytes, SCAN_CHUNK_BYTES);
            let mut position = 0u64;
            // Bounded: every iteration consumes a whole batch or leaves the loop.
            loop {
                let view = match reader
                    .batch_at(position)
                    .map_err(|e| LogError::io("read", &s.files.log_path, e))?
                {
                    BatchAt::End => break,
                    BatchAt::Bad(e) => {
                        return Err(self.corrupt(&s.files.log_path, position, e.to_string()))
                    }
                    BatchAt::Batch(view) => view,
                };
                let size = view.size_bytes() as u64;
                position += size;
                if view.last_offset() < plan.first_dirty {
                    continue;
                }
                self.check_abort()?;
                throttler.observe(size);
                stats.bytes_read += size;
                if view.is_control() || batch_is_aborted(&plan.aborted, &view) {
                    end_offset = view.next_offset();
                    continue;
                }
                let records = decode(&view)
                    .map_err(|reason| self.corrupt(&s.files.log_path, position - size, reason))?;
                let mut new_bytes = 0u64;
                for r in &records {
                    if let Some(key) = &r.key {
                        if r.offset >= plan.first_dirty && !map.offsets.contains_key(&key[..]) {
                            new_bytes += key.len() as u64 + MAP_ENTRY_OVERHEAD_BYTES;
                        }
                    }
                }
                if map.bytes + new_bytes > budget_bytes && !map.offsets.is_empty() {
                    debug!(
                        dir = %self.dir.display(),
                        end_offset,
                        keys = map.offsets.len(),
                        "offset map full; cleaning up to here"
                    );
                    return Ok((map, end_offset));
                }
                for r in records {
                    if let Some(key) = r.key {
                        if r.offset >= plan.first_dirty {
                            map.offsets.insert(Box::from(&key[..]), r.offset);
                        }
                    }
                }
                map.bytes += new_bytes;
                end_offset = view.next_offset();
            }
        }
        Ok((map, plan.first_uncleanable))
    }

    /// Writes the cleaned version of `group` as `*.cleaned` files, synced.
    fn clean_group(
        &self,
        group: &[&Planned],
        limits: &IndexLimits,
        filter: &mut Filter<'_>,
        throttler: &mut Throttler<'_>,
        stats: &mut CleanStats,
    ) -> Result<Cleaned, LogError> {
        let base_offset = group[0].base_offset();
        let group_end = group
            .last()
            .expect("groups are not empty")
            .snapshot
            .next_offset;
        let paths = [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX]
            .map(|suffix| segment::temp_path(&self.dir, base_offset, suffix, CLEANED_SUFFIX));
        let result = self.write_cleaned(group, &paths, limits, filter, throttler, stats);
        if result.is_err() {
            for path in &paths {
                let _ = self.storage.remove_file(path);
            }
        }
        let (files, size_bytes, next_offset, index_state) = result?;
        if next_offset != group_end {
            for path in &paths {
                let _ = self.storage.remove_file(path);
            }
            return Err(self.corrupt(
                &paths[0],
                size_bytes,
                format!(
                    "cleaned segment ends at offset {next_offset}, the segments it replaces at {group_end}"
                ),
            ));
        }
        Ok(Cleaned {
            base_offset,
            files,
            size_bytes,
            next_offset,
            index: index_state,
            modified_ms: group.iter().map(|s| s.modified_ms).max().unwrap_or(0),
        })
    }

    #[allow(clippy::type_complexity)]
    fn write_cleaned(
        &self,
        group: &[&Planned],
        paths: &[PathBuf; 3],
        limits: &IndexLimits,
        filter: &mut Filter<'_>,
        throttler: &mut Throttler<'_>,
        stats: &mut CleanStats,
    ) -> Result<(Arc<SegmentFiles>, u64, i64, IndexState), LogError> {
        let base_offset = group[0].base_offset();
        let group_end = group
            .last()
            .expect("groups are not empty")
            .snapshot
            .next_offset;
        let open = |path: &PathBuf| {
            self.storage
                .open(path, OpenMode::CreateOrOpen)
                .and_then(|f| f.set_len(0).map(|()| f))
                .map_err(|e| LogError::io("create", path, e))
        };
        let log = open(&paths[0])?;
        let offset_index = open(&paths[1])?;
        let time_index = open(&paths[2])?;
        let mut out = OutFile {
            file: &*log,
            path: &paths[0],
            flushed: 0,
            buf: Vec::new(),
        };
        let mut index_state = IndexState::EMPTY;
        let (mut offset_entries, mut time_entries): (Vec<OffsetEntry>, Vec<TimeEntry>) =
            (Vec::new(), Vec::new());
        let mut next_offset = base_offset;
        for planned in group {
            let s = &planned.snapshot;
            let mut reader = ChunkReader::new(&*s.files.log, s.size_bytes, SCAN_CHUNK_BYTES);
            let mut position = 0u64;
            // Bounded: every iteration consumes a whole batch or leaves the loop.
            loop {
                let view = match reader
                    .batch_at(position)
                    .map_err(|e| LogError::io("read", &s.files.log_path, e))?
                {
                    BatchAt::End => break,
                    BatchAt::Bad(e) => {
                        return Err(self.corrupt(&s.files.log_path, position, e.to_string()))
                    }
                    BatchAt::Batch(view) => view,
                };
                let at = position;
                position += view.size_bytes() as u64;
                self.check_abort()?;
                throttler.observe(view.size_bytes() as u64);
                stats.bytes_read += view.size_bytes() as u64;
                if let Err(e) = view.verify_crc() {
                    return Err(self.corrupt(&s.files.log_path, at, e.to_string()));
                }
                if view.base_offset() < next_offset {
                    return Err(self.corrupt(
                        &s.files.log_path,
                        at,
                        format!(
                            "batch at offset {} overlaps the previous one (ending at {next_offset})",
                            view.base_offset()
                        ),
                    ));
                }
                let output = clean_batch(&view, group_end, filter, stats)
                    .map_err(|reason| self.corrupt(&s.files.log_path, at, reason))?;
                let bytes = match &output {
                    Output::Keep(bytes) => *bytes,
                    Output::Rewritten(bytes) => bytes.as_slice(),
                    Output::Drop => {
                        stats.batches_dropped += 1;
                        continue;
                    }
                };
                let written = BatchView::parse(bytes).map_err(|e| {
                    self.corrupt(&s.files.log_path, at, format!("cleaned batch: {e}"))
                })?;
                let write_position = out.position();
                if write_position + bytes.len() as u64 > i32::MAX as u64 {
                    return Err(self.corrupt(
                        &paths[0],
                        write_position,
                        "cleaned segment would exceed the addressable size".into(),
                    ));
                }
                index_state.on_batch(
                    base_offset,
                    write_position,
                    written.base_offset(),
                    written.max_timestamp(),
                    bytes.len() as u64,
                    limits,
                    &mut offset_entries,
                    &mut time_entries,
                );
                next_offset = written.next_offset();
                out.write(bytes)?;
                throttler.observe(bytes.len() as u64);
                stats.bytes_written += bytes.len() as u64;
            }
        }
        out.flush()?;
        let size_bytes = out.flushed;
        // Sealed as a roll seals: the final maximum timestamp gets its time index entry.
        time_entries.extend(index_state.final_time_entry(base_offset));
        index::rewrite_file(&*offset_index, &offset_entries)
            .map_err(|e| LogError::io("write", &paths[1], e))?;
        index::rewrite_file(&*time_index, &time_entries)
            .map_err(|e| LogError::io("write", &paths[2], e))?;
        for (file, path) in [
            (&log, &paths[0]),
            (&offset_index, &paths[1]),
            (&time_index, &paths[2]),
        ] {
            file.sync_data()
                .map_err(|e| LogError::io("fsync", path, e))?;
        }
        let files = Arc::new(SegmentFiles {
            log,
            // Named by their final paths: these handles stay open (a cleaned segment is
            // never sealed), so the `.cleaned` names they were opened by never matter.
            offset_index: IndexFile::open(
                segment::segment_path(&self.dir, base_offset, OFFSET_INDEX_SUFFIX),
                offset_index,
            ),
            time_index: IndexFile::open(
                segment::segment_path(&self.dir, base_offset, TIME_INDEX_SUFFIX),
                time_index,
            ),
            log_path: segment::segment_path(&self.dir, base_offset, LOG_SUFFIX),
        });
        Ok((files, size_bytes, next_offset, index_state))
    }

    /// Before the swap that removes the markers `removed`: drops their aborted-transaction
    /// entries (an entry without its marker would make `read_committed`
    /// readers drop the producer's later, committed, batches) and the producer-state snapshots
    /// taken at or before the last of them (one may hold a transaction open whose data an
    /// earlier clean removed and whose marker is now gone; without it, the next open replays
    /// from an older snapshot or from the start). Both are durable before the commit point
    /// (the atomic rewrite fsyncs the directory, and so does step 2 of the module docs' *Crash
    /// safety*). Neither harms the log if the swap does not happen: there is nothing left for
    /// such an entry to filter, and a missing snapshot only means a longer replay.
    fn forget_removed_markers(
        &self,
        inner: &mut Inner,
        removed: &RemovedMarkers,
    ) -> Result<(), LogError> {
        let Some(last) = removed.last else {
            return Ok(());
        };
        inner
            .aborted
            .remove_markers(&*self.storage, &self.dir, &removed.indexed_aborts)
            .map_err(step_error)?;
        let stale: Vec<i64> = inner.snapshots.range(..=last).copied().collect();
        for offset in stale {
            let path = self.dir.join(snapshot_file_name(offset));
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", path, e)),
            }
            inner.snapshots.remove(&offset);
        }
        Ok(())
    }

    /// Swaps a cleaned segment in for `group` (steps 2–6 of the module docs), which removed the
    /// markers `removed`.
    fn swap_in(
        &self,
        group: &[&Planned],
        cleaned: Cleaned,
        removed: &RemovedMarkers,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let base = cleaned.base_offset;
        let cleaned_path = |suffix| segment::temp_path(&self.dir, base, suffix, CLEANED_SUFFIX);
        let swap_path = |suffix| segment::temp_path(&self.dir, base, suffix, SWAP_SUFFIX);
        let abandon = |e: LogError| {
            for suffix in SEGMENT_SUFFIXES {
                let _ = self.storage.remove_file(&cleaned_path(suffix));
                let _ = self.storage.remove_file(&swap_path(suffix));
            }
            e
        };
        // Before the commit point: the log must still be open and hold the group unchanged.
        {
            let mut inner = self.lock();
            if let Err(e) = self.check_usable(&inner) {
                return Err(abandon(e));
            }
            let unchanged = group.iter().all(|p| {
                inner.segments.get(&p.base_offset()).is_some_and(|s| {
                    Arc::ptr_eq(&s.files, &p.snapshot.files)
                        && s.size_bytes == p.snapshot.size_bytes
                })
            });
            if !unchanged {
                return Err(abandon(self.corrupt(
                    &cleaned.files.log_path,
                    0,
                    "the segments being cleaned changed during the clean".into(),
                )));
            }
            if let Err(e) = self.forget_removed_markers(&mut inner, removed) {
                return Err(abandon(e));
            }
        }
        if let Err(e) = self.check_abort() {
            return Err(abandon(e));
        }
        // Readers may still hold the segments being replaced; the cleaned segment takes the
        // first one's names, so their closed indexes must be opened before any rename
        // (`IndexFile`), or a later reader of the old segment would open the new index.
        for planned in group {
            let files = &planned.snapshot.files;
            for index in [&files.offset_index, &files.time_index] {
                if let Err(e) = index.pin(&*self.storage) {
                    return Err(abandon(LogError::io("open", &files.log_path, e)));
                }
            }
        }
        for suffix in [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            if let Err(e) = self
                .storage
                .rename(&cleaned_path(suffix), &swap_path(suffix))
            {
                return Err(abandon(LogError::io("rename", cleaned_path(suffix), e)));
            }
        }
        if let Err(e) = self.storage.sync_dir(&self.dir) {
            return Err(abandon(LogError::io("fsync directory", &self.dir, e)));
        }
        // The commit point: once `.log.swap` is durable, recovery completes the swap.
        let committed = self
            .storage
            .rename(&cleaned_path(LOG_SUFFIX), &swap_path(LOG_SUFFIX))
            .map_err(|e| LogError::io("rename", cleaned_path(LOG_SUFFIX), e))
            .and_then(|()| {
                self.storage
                    .sync_dir(&self.dir)
                    .map_err(|e| LogError::io("fsync directory", &self.dir, e))
            });
        let finished = committed.and_then(|()| {
            for planned in group {
                for suffix in SEGMENT_SUFFIXES {
                    let from = segment::segment_path(&self.dir, planned.base_offset(), suffix);
                    let to = segment::temp_path(
                        &self.dir,
                        planned.base_offset(),
                        suffix,
                        DELETED_SUFFIX,
                    );
                    match self.storage.rename(&from, &to) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(LogError::io("rename", from, e)),
                    }
                }
            }
            for suffix in SEGMENT_SUFFIXES {
                let to = segment::segment_path(&self.dir, base, suffix);
                self.storage
                    .rename(&swap_path(suffix), &to)
                    .map_err(|e| LogError::io("rename", swap_path(suffix), e))?;
            }
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| LogError::io("fsync directory", &self.dir, e))
        });
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Err(e) = finished {
            // The disk may hold the swap half done; the in-memory segments are still the old,
            // readable ones, but nothing more may be done before recovery finishes the swap.
            fail(
                &self.dir,
                &mut inner.state,
                format!("swapping in a cleaned segment failed: {e}"),
            );
            return Err(e);
        }
        let mut overflow = Vec::new();
        for planned in group {
            if let Some(old) = inner.segments.remove(&planned.base_offset()) {
                inner.size_bytes -= old.size_bytes;
            }
            for suffix in SEGMENT_SUFFIXES {
                overflow.extend(inner.pending_deletes.push(
                    segment::temp_path(&self.dir, planned.base_offset(), suffix, DELETED_SUFFIX),
                    Some(now_ms),
                ));
            }
        }
        inner.size_bytes += cleaned.size_bytes;
        inner.segments.insert(
            base,
            Segment {
                base_offset: base,
                files: cleaned.files,
                size_bytes: cleaned.size_bytes,
                next_offset: cleaned.next_offset,
                index: cleaned.index,
                roll_start_ms: None,
                modified_ms: cleaned.modified_ms,
            },
        );
        drop(guard);
        for path in overflow {
            let _ = self.storage.remove_file(&path);
        }
        Ok(())
    }
}

/// Kafka's `groupSegmentsBySize`: consecutive segments whose `.log` sizes sum to at most
/// `max_bytes`, whose index files together fit `max_index_bytes`, and whose offsets stay
/// addressable from the first one's base offset.
fn group_by_size<'p>(
    segments: &[&'p Planned],
    max_bytes: u64,
    max_index_bytes: u64,
) -> Vec<Vec<&'p Planned>> {
    let mut groups: Vec<Vec<&Planned>> = Vec::new();
    let mut rest = segments;
    // Bounded: every iteration takes at least one segment.
    while let Some((&first, tail)) = rest.split_first() {
        let mut group = vec![first];
        let mut log_bytes = first.snapshot.size_bytes;
        let mut offset_index_bytes = first.snapshot.offset_entries * 8;
        let mut time_index_bytes = (first.snapshot.time_entries + 1) * 12;
        rest = tail;
        while let Some((&next, tail)) = rest.split_first() {
            let s = &next.snapshot;
            let fits = log_bytes + s.size_bytes <= max_bytes
                && offset_index_bytes + s.offset_entries * 8 <= max_index_bytes
                && time_index_bytes + (s.time_entries + 1) * 12 <= max_index_bytes
                && s.next_offset - 1 - first.base_offset() <= i64::from(i32::MAX);
            if !fits {
                break;
            }
            group.push(next);
            log_bytes += s.size_bytes;
            offset_index_bytes += s.offset_entries * 8;
            time_index_bytes += (s.time_entries + 1) * 12;
            rest = tail;
        }
        groups.push(group);
    }
    groups
}

/// What the clean keeps of one batch.
fn clean_batch<'b>(
    view: &BatchView<'b>,
    group_end: i64,
    filter: &mut Filter<'_>,
    stats: &mut CleanStats,
) -> Result<Output<'b>, String> {
    if view.is_control() {
        return Ok(filter.marker(view, group_end, stats));
    }
    let aborted = filter.txns.on_batch(filter.aborted, view);
    if view.base_offset() >= filter.end_offset {
        // Past the offset map: not cleaned yet.
        return Ok(Output::Keep(view.as_bytes()));
    }
    let records = decode(view)?;
    stats.records_read += records.len() as u64;
    let kept: Vec<&Record> = records
        .iter()
        .filter(|r| filter.retain(r, aborted, stats))
        .collect();
    stats.records_kept += kept.len() as u64;
    if !records.is_empty() && kept.len() == records.len() {
        return Ok(Output::Keep(view.as_bytes()));
    }
    if !kept.is_empty() {
        return reencode(view, &kept).map(Output::Rewritten);
    }
    let producer_last = view.producer_id() >= 0
        && filter.producer_last_offsets.get(&view.producer_id()) == Some(&view.last_offset());
    if producer_last || view.next_offset() == group_end {
        stats.empty_batches_kept += 1;
        return Ok(Output::Rewritten(empty_batch(view, producer_last)));
    }
    Ok(Output::Drop)
}

fn record_compression(view: &BatchView<'_>) -> Result<RecordCompression, String> {
    Ok(match view.compression().map_err(|e| e.to_string())? {
        Compression::None => RecordCompression::None,
        Compression::Gzip => RecordCompression::Gzip,
        Compression::Snappy => RecordCompression::Snappy,
        Compression::Lz4 => RecordCompression::Lz4,
        Compression::Zstd => RecordCompression::Zstd,
    })
}

/// The records of one batch, decoded (and decompressed) by `kafka-protocol`.
fn decode(view: &BatchView<'_>) -> Result<Vec<Record>, String> {
    let mut bytes = Bytes::copy_from_slice(view.as_bytes());
    RecordBatchDecoder::decode(&mut bytes)
        .map(|set| set.records)
        .map_err(|e| {
            format!(
                "batch at offset {} does not decode: {e}",
                view.base_offset()
            )
        })
}

/// Re-encodes the `kept` records of `view` (see the module docs for what is kept of the
/// batch).
fn reencode(view: &BatchView<'_>, kept: &[&Record]) -> Result<Vec<u8>, String> {
    let compression = record_compression(view)?;
    let base_offset = kept[0].offset;
    let base_sequence = if view.base_sequence() < 0 {
        -1
    } else {
        increment_sequence(
            view.base_sequence(),
            (base_offset - view.base_offset()) as i32,
        )
    };
    // The encoder derives the base sequence from the first record and groups records whose
    // offset - sequence agree, so each record gets its sequence from the new base.
    let records: Vec<Record> = kept
        .iter()
        .map(|r| Record {
            sequence: base_sequence.wrapping_add((r.offset - base_offset) as i32),
            delete_horizon: false,
            ..(*r).clone()
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| {
        format!(
            "re-encoding the batch at offset {} failed: {e}",
            view.base_offset()
        )
    })?;
    let mut out = out.to_vec();
    let parsed: Vec<_> = Batches::new(&out).collect();
    if parsed.len() != 1 || parsed[0].as_ref().map(|b| b.size_bytes()) != Ok(out.len()) {
        return Err(format!(
            "re-encoding the batch at offset {} did not give one batch",
            view.base_offset()
        ));
    }
    // Kafka keeps the batch's last offset (and with it the producer's last sequence).
    let last_offset_delta = (view.last_offset() - base_offset) as i32;
    out[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    if view.is_log_append_time() {
        BatchHeaderMut::new(&mut out)
            .map_err(|e| e.to_string())?
            .set_log_append_time(view.max_timestamp());
    }
    Ok(out)
}

/// A batch header without records covering `view`'s offsets (Kafka's `writeEmptyHeader`),
/// keeping the producer fields if `keep_producer`.
fn empty_batch(view: &BatchView<'_>, keep_producer: bool) -> Vec<u8> {
    let mut attributes = 0i16;
    if view.is_log_append_time() {
        attributes |= ATTR_LOG_APPEND_TIME;
    }
    if keep_producer && view.is_transactional() {
        attributes |= ATTR_TRANSACTIONAL;
    }
    let (producer_id, producer_epoch, base_sequence) = if keep_producer {
        (
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
        )
    } else {
        (-1i64, -1i16, -1i32)
    };
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES);
    b.extend_from_slice(&view.base_offset().to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_BYTES - 12) as i32).to_be_bytes());
    b.extend_from_slice(&view.partition_leader_epoch().to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&view.last_offset_delta().to_be_bytes());
    b.extend_from_slice(&view.max_timestamp().to_be_bytes());
    b.extend_from_slice(&view.max_timestamp().to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(b.len(), BATCH_HEADER_BYTES);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{keyed_batch, set_producer};
    use runnel_model::batch::testing::KeyValue;

    /// A transactional batch of one keyed record of `producer_id` at `offset`.
    fn txn_batch_at(producer_id: i64, offset: i64) -> Vec<u8> {
        let kvs: Vec<KeyValue<'_>> = vec![(Some(b"k"), Some(b"v"))];
        let mut batch = keyed_batch(&kvs, 5_000, RecordCompression::None);
        BatchHeaderMut::new(&mut batch)
            .unwrap()
            .set_base_offset(offset);
        set_producer(&mut batch, producer_id, 0, 0);
        crate::testing::set_attribute_bits(&mut batch, crate::testing::ATTR_TRANSACTIONAL, true);
        batch
    }

    fn marker_at(producer_id: i64, offset: i64, commit: bool) -> Vec<u8> {
        let marker = runnel_model::control::Marker {
            producer_id,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit,
        };
        let mut batch = runnel_model::control::build_marker_batch(&marker, 5_000);
        BatchHeaderMut::new(&mut batch)
            .unwrap()
            .set_base_offset(offset);
        batch
    }

    #[test]
    fn given_batches_read_in_offset_order_should_discard_only_markers_whose_transaction_left_no_data(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut aborted = AbortedTxns::default();
        let abort = |producer_id, first_offset, last_offset| crate::txn_index::AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: last_offset + 1,
        };
        // Producer 2's transaction [3, 5] and producer 4's [20, 21] were aborted.
        aborted
            .append(
                &crate::storage::FsStorage,
                dir.path(),
                &[abort(2, 3, 5), abort(4, 20, 21)],
            )
            .unwrap();
        let mut txns = TxnTracker::default();
        let mut read = |bytes: &[u8]| {
            let view = BatchView::parse(bytes).unwrap();
            if view.is_control() {
                Some(txns.on_marker(&view))
            } else {
                txns.on_batch(&aborted, &view);
                None
            }
        };
        // A commit after a batch of its producer stays; the next one, without a batch, may go.
        assert_eq!(read(&txn_batch_at(1, 0)), None);
        assert_eq!(read(&marker_at(1, 1, true)), Some(false));
        assert_eq!(read(&marker_at(1, 2, true)), Some(true));
        // An abort whose data is read stays (the data goes in this clean), and its producer's
        // aborted batch does not count as an ongoing committed transaction.
        assert_eq!(read(&txn_batch_at(2, 3)), None);
        assert_eq!(read(&txn_batch_at(2, 4)), None);
        assert_eq!(read(&marker_at(2, 5, false)), Some(false));
        // The same abort with its data gone may go.
        assert_eq!(read(&marker_at(4, 21, false)), Some(true));
        // An abort the index does not know, after a batch of its producer, stays: it is what
        // ends that transaction when the state is rebuilt.
        assert_eq!(read(&txn_batch_at(3, 30)), None);
        assert_eq!(read(&marker_at(3, 31, false)), Some(false));
        assert_eq!(read(&marker_at(3, 32, true)), Some(true), "ended above");
        // A control batch emptied by a Kafka cleaner may go.
        let marker = marker_at(5, 40, true);
        let view = BatchView::parse(&marker).unwrap();
        assert_eq!(read(&empty_control(&view)), Some(true));
    }

    #[test]
    fn given_many_removed_markers_when_a_group_is_filtered_should_collect_only_indexed_aborts_and_the_last(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut aborted = AbortedTxns::default();
        // Producer 2's aborted transaction at [0, 1]: its data is gone, its marker at 1 left.
        let entry = crate::txn_index::AbortedTxn {
            producer_id: 2,
            first_offset: 0,
            last_offset: 1,
            last_stable_offset: 2,
        };
        aborted
            .append(&crate::storage::FsStorage, dir.path(), &[entry])
            .unwrap();
        let map = OffsetMap {
            offsets: HashMap::new(),
            bytes: 0,
        };
        let cleaner = CleanerCheckpoint {
            first_dirty_offset: Some(100_000),
            ..CleanerCheckpoint::default()
        };
        let no_producers = HashMap::new();
        let mut filter = Filter {
            map: &map,
            end_offset: 100_000,
            first_dirty: 100_000,
            cleaner: &cleaner,
            producer_last_offsets: &no_producers,
            producer_epochs_without_batches: &HashMap::new(),
            aborted: &aborted,
            now_ms: 0,
            new_tombstones_kept: 0,
            new_markers_kept: 0,
            txns: TxnTracker::default(),
            removed: RemovedMarkers::default(),
        };
        let mut stats = CleanStats::default();
        let mut remove = |marker: Vec<u8>| {
            let view = BatchView::parse(&marker).unwrap();
            assert!(matches!(
                filter.marker(&view, i64::MAX, &mut stats),
                Output::Drop
            ));
        };
        remove(marker_at(2, 1, false));
        // Thousands of commit markers without data (and an abort the index does not know).
        for offset in 2..5_000 {
            remove(marker_at(1, offset, true));
        }
        remove(marker_at(3, 5_000, false));
        assert_eq!(stats.markers_removed, 5_000);
        assert_eq!(filter.removed.indexed_aborts, vec![1]);
        assert_eq!(filter.removed.last, Some(5_000));
    }

    /// `view` as Kafka's cleaner may leave a control batch: a header without records.
    fn empty_control(view: &BatchView<'_>) -> Vec<u8> {
        let mut empty = empty_batch(view, true);
        crate::testing::set_attribute_bits(&mut empty, crate::testing::ATTR_CONTROL, true);
        empty
    }

    #[test]
    fn given_throttle_when_faster_than_the_limit_should_sleep_to_the_limit() {
        let clock = ManualClock::new(Duration::from_millis(1));
        let mut throttler = Throttler::new(&clock, 1_000.0);
        for _ in 0..400 {
            throttler.observe(100);
        }
        // 40_000 bytes at 1_000 bytes/s take about 40 s; the throttle checks every 300 ms of
        // clock time (one tick per reading), so the first 30_000 bytes were slowed to the
        // limit and the last ones wait for the next check.
        let slept = clock.slept().as_secs_f64();
        assert!((29.0..=40.0).contains(&slept), "{slept}");
        assert_eq!(throttler.slept, clock.slept());
        let unlimited = ManualClock::new(Duration::from_millis(1));
        let mut throttler = Throttler::new(&unlimited, f64::MAX);
        for _ in 0..400 {
            throttler.observe(1 << 20);
        }
        assert_eq!(unlimited.slept(), Duration::ZERO);
    }

    #[test]
    fn given_partly_kept_batch_when_reencoded_should_keep_offsets_codec_producer_and_last_offset() {
        for compression in [
            RecordCompression::None,
            RecordCompression::Gzip,
            RecordCompression::Snappy,
            RecordCompression::Lz4,
            RecordCompression::Zstd,
        ] {
            let kvs: Vec<KeyValue<'_>> = vec![
                (Some(b"a"), Some(b"1")),
                (Some(b"b"), Some(b"2")),
                (Some(b"c"), None),
                (Some(b"d"), Some(b"4")),
            ];
            let mut batch = keyed_batch(&kvs, 5_000, compression);
            runnel_model::batch::BatchHeaderMut::new(&mut batch)
                .unwrap()
                .set_base_offset(100);
            set_producer(&mut batch, 7, 2, 40);
            let view = BatchView::parse(&batch).unwrap();
            let records = decode(&view).unwrap();
            let kept: Vec<&Record> = vec![&records[1], &records[2]];
            let out = reencode(&view, &kept).unwrap();
            let out_view = BatchView::parse(&out).unwrap();
            out_view.verify_crc().unwrap();
            assert_eq!(out_view.base_offset(), 101);
            assert_eq!(out_view.last_offset(), 103, "the original last offset");
            assert_eq!(out_view.base_sequence(), 41);
            assert_eq!((out_view.producer_id(), out_view.producer_epoch()), (7, 2));
            assert_eq!(record_compression(&out_view).unwrap(), compression);
            let back = decode(&out_view).unwrap();
            let got: Vec<_> = back
                .iter()
                .map(|r| (r.offset, r.key.clone(), r.value.clone(), r.timestamp))
                .collect();
            assert_eq!(
                got,
                vec![
                    (
                        101,
                        Some(Bytes::from_static(b"b")),
                        Some(Bytes::from_static(b"2")),
                        5_000
                    ),
                    (102, Some(Bytes::from_static(b"c")), None, 5_000),
                ]
            );
        }
    }

    #[test]
    fn given_log_append_time_batch_when_reencoded_should_keep_the_append_time() {
        let kvs: Vec<KeyValue<'_>> = vec![(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2"))];
        let mut batch = keyed_batch(&kvs, 5_000, RecordCompression::None);
        runnel_model::batch::BatchHeaderMut::new(&mut batch)
            .unwrap()
            .set_log_append_time(9_000);
        let view = BatchView::parse(&batch).unwrap();
        let records = decode(&view).unwrap();
        let out = reencode(&view, &[&records[1]]).unwrap();
        let out_view = BatchView::parse(&out).unwrap();
        out_view.verify_crc().unwrap();
        assert!(out_view.is_log_append_time());
        assert_eq!(out_view.max_timestamp(), 9_000);
        assert_eq!((out_view.base_offset(), out_view.last_offset()), (1, 1));
    }

    #[test]
    fn given_dropped_batch_when_kept_empty_should_cover_its_offsets_with_or_without_producer() {
        let kvs: Vec<KeyValue<'_>> = vec![(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"2"))];
        let mut batch = keyed_batch(&kvs, 5_000, RecordCompression::Gzip);
        runnel_model::batch::BatchHeaderMut::new(&mut batch)
            .unwrap()
            .set_base_offset(10);
        set_producer(&mut batch, 3, 1, 8);
        crate::testing::set_attribute_bits(&mut batch, crate::testing::ATTR_TRANSACTIONAL, true);
        let view = BatchView::parse(&batch).unwrap();
        for keep in [true, false] {
            let empty = empty_batch(&view, keep);
            let e = BatchView::parse(&empty).unwrap();
            e.verify_crc().unwrap();
            assert_eq!(
                (e.base_offset(), e.last_offset(), e.records_count()),
                (10, 11, 0)
            );
            assert_eq!(e.max_timestamp(), 5_000);
            assert_eq!(e.compression().unwrap(), Compression::None);
            if keep {
                assert_eq!(
                    (e.producer_id(), e.producer_epoch(), e.base_sequence()),
                    (3, 1, 8)
                );
                assert!(e.is_transactional());
            } else {
                assert_eq!(
                    (e.producer_id(), e.producer_epoch(), e.base_sequence()),
                    (-1, -1, -1)
                );
                assert!(!e.is_transactional());
            }
            assert!(decode(&e).unwrap().is_empty());
        }
    }
}
