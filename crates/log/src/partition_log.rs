//! [`PartitionLog`]: one partition's log in one directory.
//!
//! # Concurrency
//!
//! All state sits behind one mutex (`inner`), held only for short critical sections: copying
//! a snapshot (a segment's shared file handles, committed size and index entry counts), and
//! an append's planning and commit. No data I/O happens under it except a segment roll (with
//! its producer-state snapshot) and the rare leader epoch checkpoint.
//!
//! - Appends are serialized by `append_lock`. An append plans under `inner` (producer checks,
//!   offsets, roll, index entries), releases it, writes the record set (one `pwrite`) and the
//!   index entries past the committed lengths, then takes `inner` again to commit the new
//!   lengths, log end offset and producer state.
//! - Reads and lookups copy a snapshot under `inner` and read without it, never past the
//!   committed lengths of their snapshot, and a read returns nothing at or past the log end
//!   offset of its start. Committed bytes are never rewritten while the log is open, so a
//!   reader never sees a half-written batch.
//! - fsyncs are serialized by `flush_lock` and run without `inner`. A failed fsync is recorded
//!   (the log turns failed) before `flush_lock` is released, so no later fsync can report
//!   success: the kernel may drop dirty pages after a failed writeback, and a later
//!   "successful" fsync would be a lie. A failed log is read-only until reopened: it serves
//!   what earlier fsyncs made durable, below `flushed_offset`, and nothing after it.
//! - Operations that remove or replace closed segments (retention, DeleteRecords' segment
//!   deletion, cleaning) are serialized by `maintenance_lock`; moves of the log start offset
//!   (and writes of its checkpoint, also done by close) by `log_start_lock`. Appends never
//!   touch closed segments, so they run alongside; readers hold their segments' file handles,
//!   which stay valid when a segment is deleted or replaced.
//!
//! Lock order: `maintenance_lock`, `log_start_lock`, `append_lock`, `flush_lock`, `inner`.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/00000000000000000000.log        whole v2 batches, as produced (offsets 0..)
//! <dir>/00000000000000000000.index      sparse offset index
//! <dir>/00000000000000000000.timeindex  sparse time index
//! <dir>/00000000000000001234.log        next segment, base offset 1234 ...
//! <dir>/leader-epoch-checkpoint         leader epoch cache (Kafka's text format)
//! <dir>/log-start-offset-checkpoint     log start offset ("0\n<offset>\n")
//! <dir>/00000000000000001234.snapshot   producer state as of offset 1234 (at most 2 kept)
//! <dir>/cleaner-checkpoint              cleaner progress and tombstone horizons (crate::cleaner)
//! <dir>/clean-shutdown                  present only between close() and the next open()
//! <dir>/00000000000000000000.log.deleted        a deleted segment's file, removed after
//!                                               file.delete.delay.ms (or at open)
//! <dir>/00000000000000000000.log.cleaned        a cleaned segment being written (removed at open)
//! <dir>/00000000000000000000.log.swap           a cleaned segment committed to replace the
//!                                               segments it covers (swapped in at open)
//! ```
//!
//! # Idempotent producers
//!
//! Every batch with a producer id (not a control batch) is checked against the partition's
//! producer state ([`crate::producer_state`], Kafka's `ProducerStateManager`) under `inner`
//! before offsets are assigned: a stale epoch is [`LogError::InvalidProducerEpoch`], a gap (or
//! a non-zero first sequence after an epoch bump) is [`LogError::OutOfOrderSequence`] — a
//! producer without state may start anywhere, as in Kafka — and a retry of one of the
//! producer's last 5 batches is answered with the original offsets
//! ([`AppendInfo::duplicate`]) and not written. The new state is committed together with the
//! log end offset, so an append that fails leaves it unchanged.
//!
//! The state is snapshotted (`<offset>.snapshot`, written atomically) when a segment rolls and
//! at close. Open loads the latest readable snapshot at or below the recovered log end offset
//! and replays the batch headers after it, so the state always matches the recovered log,
//! after a clean shutdown or a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use runnel_model::batch::{BatchError, BatchHeaderMut, BatchView, Batches};
use runnel_model::control::{build_marker_batch, parse_marker, Marker};
use tracing::{debug, error, info, warn};

use crate::checkpoint::{self, CleanerCheckpoint, StepError};
use crate::config::{LogConfig, TimestampType};
use crate::epoch::LeaderEpochCache;
use crate::error::LogError;
use crate::index::{self, IndexFile, IndexLimits, IndexState, OffsetEntry, TimeEntry};
use crate::lifecycle::PendingDeletes;
use crate::producer_state::{
    snapshot_file_name, BatchProducer, Plan, ProducerSnapshotView, ProducerStates,
    SNAPSHOTS_RETAINED,
};
use crate::recovery::{
    complete_swaps, list_or_create, load_cleaner_checkpoint, load_epoch_checkpoint,
    load_log_start_checkpoint, load_producer_state, load_segments, remove_leftovers,
};
use crate::segment::{
    self, BatchAt, ChunkReader, HeaderAt, Segment, SegmentFiles, SegmentSnapshot,
    LOCATE_CHUNK_BYTES, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, READ_CHUNK_BYTES, TIME_INDEX_SUFFIX,
};
use crate::storage::{is_no_space, OpenMode, Storage, StorageFile};
use crate::txn_index::{AbortedTxn, AbortedTxns};

/// Marker written by [`PartitionLog::close`] and removed by [`PartitionLog::open`].
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The persisted leader epoch cache.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The persisted log start offset.
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// The cleaner's progress and tombstone horizons (see [`crate::cleaner`]).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";

/// Who writes an append (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer: idempotent batches have their sequences checked.
    Client,
    /// A coordinator of this broker: sequences are not checked.
    Coordinator,
}

/// What [`PartitionLog::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The append time stamped into the batches under LogAppendTime, -1 under CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// Largest batch max timestamp in the record set (-1 if none).
    pub max_timestamp_ms: i64,
    /// Base offset of the first batch carrying `max_timestamp_ms` (-1 if none).
    pub offset_of_max_timestamp: i64,
    /// Batches written (for a duplicate: batches recognised as duplicates).
    pub batch_count: u32,
    /// Bytes written (0 for a duplicate).
    pub size_bytes: u64,
    /// The record set repeats batches already in the log (an idempotent producer's retry):
    /// nothing was written, and `base_offset`/`last_offset` are those of the original batches,
    /// `max_timestamp_ms` the original's max timestamp (Kafka answers a duplicate so).
    pub duplicate: bool,
}

/// How many times [`PartitionLog::read_with_aborted`] reads before it gives up on a read that
/// cleans keep overtaking.
pub const READ_ATTEMPTS_MAX: usize = 3;

/// What [`PartitionLog::read`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, exactly as stored; empty if none qualified.
    pub bytes: Bytes,
    pub batch_count: u32,
    /// The offset after the last returned batch (the requested offset if none).
    pub next_offset: i64,
    pub log_start_offset: i64,
    /// Log end offset when the read started.
    pub log_end_offset: i64,
}

/// A KIP-890 verification of a producer's transaction in this partition
/// ([`PartitionLog::start_txn_verification`]), to present when appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationGuard {
    producer_id: i64,
    token: u64,
}

/// A timestamp and the offset it was found at (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp_ms: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// An fsync or an unrecoverable write failed: read-only until reopen. Nothing is written;
    /// reads serve only what an earlier fsync made durable (below `flushed_offset`): bytes
    /// whose fsync failed, or that were never synced, may not survive a restart, and a
    /// consumer must not see records that a restart takes back.
    Failed(String),
    /// An operation panicked while holding the lock: the state may be half-changed, so
    /// nothing is served until reopen.
    Poisoned(String),
    Closed,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) state: State,
    /// The current settings ([`PartitionLog::update_config`] replaces them).
    pub(crate) config: LogConfig,
    pub(crate) limits: IndexLimits,
    /// By base offset; never empty; the last one is the active segment. Contiguous: each
    /// segment's `next_offset` is the next one's `base_offset`.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) log_end_offset: i64,
    pub(crate) size_bytes: u64,
    /// Every offset below this is durable.
    pub(crate) flushed_offset: i64,
    /// `now_ms` of the oldest append not yet fsynced.
    pub(crate) oldest_unflushed_append_ms: Option<i64>,
    pub(crate) epochs: LeaderEpochCache,
    /// Idempotent producers' state as of `log_end_offset`.
    pub(crate) producers: ProducerStates,
    /// Offsets of the producer-state snapshot files in the directory.
    pub(crate) snapshots: BTreeSet<i64>,
    /// Files renamed to `*.deleted`, waiting for `file.delete.delay.ms`.
    pub(crate) pending_deletes: PendingDeletes,
    /// The cleaner's progress (first dirty offset) and tombstone horizons.
    pub(crate) cleaner: CleanerCheckpoint,
    /// Aborted transactions whose markers are in the log ([`crate::txn_index`]).
    pub(crate) aborted: AbortedTxns,
}

impl Inner {
    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }
}

/// One partition's log. `Send + Sync`; share it as `Arc<PartitionLog>`.
pub struct PartitionLog {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    pub(crate) inner: Mutex<Inner>,
    /// Serializes the operations that remove or replace closed segments (retention, segment
    /// deletion below the log start offset, cleaning) and excludes close and delete while one
    /// runs; taken first.
    pub(crate) maintenance_lock: Mutex<()>,
    /// Serializes moves of the log start offset and writes of its checkpoint; taken after
    /// `maintenance_lock`.
    pub(crate) log_start_lock: Mutex<()>,
    /// Serializes appends (and excludes close and delete while one runs); taken after
    /// `log_start_lock`.
    pub(crate) append_lock: Mutex<()>,
    /// Serializes fsyncs of the active segment; taken after `append_lock`, before `inner`.
    pub(crate) flush_lock: Mutex<()>,
    /// Set by close and delete: a running clean stops at its next check and leaves the log as
    /// it was (or completes a swap already committed).
    pub(crate) abort_maintenance: AtomicBool,
    /// Set once a writeback hint has failed and been logged (see [`Self::start_writeback`]).
    writeback_failure_logged: AtomicBool,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("state", &inner.state)
            .field("log_start_offset", &inner.log_start_offset)
            .field("log_end_offset", &inner.log_end_offset)
            .field("segments", &inner.segments.len())
            .finish()
    }
}

/// The layout of a record set: `(position, size_bytes)` and producer fields of each batch, and
/// the offsets it spans.
struct Layout {
    batches: Vec<(usize, usize)>,
    producers: Vec<BatchProducer>,
    offset_count: i64,
    /// Indexes (in `batches`) of the abort markers.
    abort_markers: Vec<usize>,
}

/// One batch after its header was rewritten.
struct Stamped {
    position: usize,
    size_bytes: usize,
    base_offset: i64,
    max_timestamp_ms: i64,
}

impl PartitionLog {
    /// Opens the log in `dir`, creating the directory and an empty first segment if absent,
    /// and recovers it (see the crate docs). Removes the clean-shutdown marker, so a crash from
    /// now on is detected at the next open.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        config.validate()?;
        let limits = config.index_limits();
        let dir = dir.to_path_buf();
        let mut listing = list_or_create(&*storage, &dir)?;
        // A clean interrupted after its commit point is completed; anything else it left, and
        // files waiting for `file.delete.delay.ms`, are removed.
        if complete_swaps(&*storage, &dir, &listing)? {
            listing = list_or_create(&*storage, &dir)?;
        }
        remove_leftovers(&*storage, &dir, &listing)?;
        let clean_shutdown = listing.clean_shutdown;

        let log_start_checkpoint = load_log_start_checkpoint(&*storage, &dir)?;
        let mut epochs = load_epoch_checkpoint(&*storage, &dir)?;
        let cleaner = load_cleaner_checkpoint(&*storage, &dir)?;

        let (mut segments, epoch_starts) =
            load_segments(&*storage, &dir, &listing, clean_shutdown, &limits, now_ms)?;
        if segments.is_empty() {
            let base_offset = log_start_checkpoint.unwrap_or(0);
            let files = create_segment_files(&*storage, &dir, base_offset)
                .map_err(|(op, path, e)| LogError::io(op, path, e))?;
            storage
                .sync_dir(&dir)
                .map_err(|e| LogError::io("fsync directory", &dir, e))?;
            segments.insert(base_offset, empty_segment(base_offset, files, now_ms));
        }

        let first_base_offset = *segments.keys().next().expect("at least one segment");
        let (log_end_offset, active_size_bytes, active_is_empty) = {
            let active = segments.values().next_back().expect("at least one segment");
            (
                active.next_offset,
                active.size_bytes,
                active.size_bytes == 0,
            )
        };
        if !active_is_empty {
            let active = segments
                .values_mut()
                .next_back()
                .expect("at least one segment");
            let first_ts =
                segment::first_batch_max_timestamp(&*active.files.log, active_size_bytes)
                    .map_err(|e| LogError::io("read", &active.files.log_path, e))?;
            active.roll_start_ms = Some(match first_ts {
                Some(ts) if ts >= 0 => ts.min(now_ms),
                _ => now_ms,
            });
        }
        let log_start_offset = log_start_checkpoint.map_or(first_base_offset, |c| {
            c.clamp(first_base_offset, log_end_offset)
        });

        let mut epochs_changed = epochs.truncate_from_end(log_end_offset);
        for (epoch, start_offset) in epoch_starts {
            epochs_changed |= epochs.observe(epoch, start_offset);
        }
        if epochs_changed {
            checkpoint::write_atomic(
                &*storage,
                &dir,
                LEADER_EPOCH_CHECKPOINT_FILE,
                &epochs.encode(),
            )
            .map_err(step_error)?;
        }
        let (producers, snapshots) = load_producer_state(
            &*storage,
            &dir,
            &listing.snapshots,
            &segments,
            log_start_offset,
            log_end_offset,
            now_ms,
        )?;
        let aborted = AbortedTxns::load(&*storage, &dir, log_start_offset, log_end_offset)
            .map_err(step_error)?;
        if clean_shutdown {
            storage
                .remove_file(&dir.join(CLEAN_SHUTDOWN_FILE))
                .map_err(|e| LogError::io("remove", dir.join(CLEAN_SHUTDOWN_FILE), e))?;
        }
        // Makes the marker's removal, any index file recovery created, and the removal of
        // snapshots of a truncated history durable.
        storage
            .sync_dir(&dir)
            .map_err(|e| LogError::io("fsync directory", &dir, e))?;

        let size_bytes = segments.values().map(|s| s.size_bytes).sum();
        info!(
            dir = %dir.display(),
            segments = segments.len(),
            log_start_offset,
            log_end_offset,
            clean_shutdown,
            "opened partition log"
        );
        Ok(PartitionLog {
            storage,
            dir,
            inner: Mutex::new(Inner {
                state: State::Open,
                config,
                limits,
                segments,
                log_start_offset,
                log_end_offset,
                size_bytes,
                // Everything loaded is on disk: rolled segments were synced when rolled, and
                // scanned or closed segments were synced by recovery or close.
                flushed_offset: log_end_offset,
                oldest_unflushed_append_ms: None,
                epochs,
                producers,
                snapshots,
                pending_deletes: PendingDeletes::default(),
                cleaner,
                aborted,
            }),
            maintenance_lock: Mutex::new(()),
            log_start_lock: Mutex::new(()),
            append_lock: Mutex::new(()),
            flush_lock: Mutex::new(()),
            abort_maintenance: AtomicBool::new(false),
            writeback_failure_logged: AtomicBool::new(false),
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current settings (a copy: [`PartitionLog::update_config`] may replace them).
    pub fn config(&self) -> LogConfig {
        self.lock().config.clone()
    }

    /// Appends `records`: one or more whole batches already validated by
    /// `runnel_model::batch::validate_record_set`. Assigns offsets from the log end offset by
    /// rewriting each batch's base offset in place, stamps `partition_leader_epoch =
    /// leader_epoch`, under LogAppendTime sets the append time (`now_ms`), rolls the segment
    /// first if needed, writes the whole record set with one write, adds index entries, and
    /// fsyncs if `flush_messages` offsets are unflushed.
    ///
    /// Batches of idempotent and transactional producers (`producer_id >= 0`, not control
    /// batches) are first checked against the producer state, each against the state the
    /// earlier ones leave, all or nothing: [`LogError::InvalidProducerEpoch`] for an epoch
    /// older than the producer's, [`LogError::OutOfOrderSequence`] for a sequence that does not
    /// follow the producer's last one (or is not 0 for an unknown producer or a bumped epoch).
    /// If the first batch repeats one of the producer's last 5 batches, the record set is a
    /// retry: nothing is written and the original offsets are returned with
    /// [`AppendInfo::duplicate`] set.
    ///
    /// On a full disk the log is left as before (nothing visible, log end offset unchanged,
    /// producer state unchanged) and stays usable. Any other write failure, and any fsync
    /// failure, turns the log failed.
    pub fn append(
        &self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.append_from(records, leader_epoch, now_ms, AppendOrigin::Client, None)
    }

    /// [`append`](Self::append) with the writer named: a coordinator's own writes (group
    /// coordinator records, transactional offset commits, markers) carry no client sequence
    /// numbers, so their sequences are not checked (Kafka's `AppendOrigin.COORDINATOR`);
    /// producer epochs and transactions are tracked as for a client. A coordinator writing a
    /// producer's transactional batch (offsets committed in a transaction) passes the KIP-890
    /// `verification` it took, as [`append_shared`](Self::append_shared) does.
    pub fn append_from(
        &self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
        verification: Option<VerificationGuard>,
    ) -> Result<AppendInfo, LogError> {
        self.append_set(
            RecordSet::InPlace(records),
            leader_epoch,
            now_ms,
            origin,
            verification,
        )
    }

    /// [`append`](Self::append) of record bytes the caller cannot lend mutably (a request
    /// buffer shared with the request's other fields), without copying them: each batch's
    /// stamped head (base offset, length, leader epoch: the 16 bytes the CRC does not cover)
    /// is written, then the rest of the batch as it is. Record sets of small batches, and
    /// topics with `message.timestamp.type=LogAppendTime` (whose stamp changes CRC-covered
    /// bytes), are copied and stamped in place instead.
    ///
    /// A transactional produce that verified its transaction (KIP-890) passes its
    /// `verification`: if the append opens a transaction of the guard's producer, the
    /// verification must still stand (no marker for the producer since the guard was taken),
    /// else the append is refused with [`LogError::InvalidTxnState`] and nothing is written.
    pub fn append_shared(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        verification: Option<VerificationGuard>,
    ) -> Result<AppendInfo, LogError> {
        self.append_set(
            RecordSet::Shared(records),
            leader_epoch,
            now_ms,
            AppendOrigin::Client,
            verification,
        )
    }

    /// Starts (or joins) a KIP-890 verification of `producer_id`'s transaction here, before
    /// a transactional produce asks the coordinator whether this partition is in it. The
    /// next committed append of the producer's batches here (its first transactional batch,
    /// or a marker: the transaction ended) ends the verification; so does a minute.
    pub fn start_txn_verification(&self, producer_id: i64, now_ms: i64) -> VerificationGuard {
        let token = self
            .lock()
            .producers
            .start_verification(producer_id, now_ms);
        VerificationGuard { producer_id, token }
    }

    fn append_set(
        &self,
        records: RecordSet<'_>,
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
        verification: Option<VerificationGuard>,
    ) -> Result<AppendInfo, LogError> {
        let mut records = records;
        let mut layout = layout_of(records.bytes())?;
        // Holds the copy of a shared record set that is stamped in place.
        let mut owned: Vec<u8>;
        if let RecordSet::Shared(bytes) = records {
            if bytes.len() / layout.batches.len().max(1) < SHARED_WRITE_BATCH_BYTES_MIN {
                owned = bytes.to_vec();
                records = RecordSet::InPlace(&mut owned);
            }
        }
        let set_bytes = records.bytes().len() as u64;
        let append_guard = self.append_guard();
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.check_usable(inner)?;
        // The settings of this append (a concurrent update_config applies to the next one).
        let config = inner.config.clone();
        if set_bytes > config.segment_bytes {
            return Err(LogError::RecordSetTooLarge {
                size_bytes: set_bytes,
                segment_bytes: config.segment_bytes,
            });
        }
        if leader_epoch >= 0 {
            if let Some(latest_epoch) = inner.epochs.latest_epoch() {
                if leader_epoch < latest_epoch {
                    return Err(LogError::StaleLeaderEpoch {
                        epoch: leader_epoch,
                        latest_epoch,
                    });
                }
            }
        }
        let base_offset = inner.log_end_offset;
        let overflow = LogError::OffsetOverflow {
            base_offset,
            offset_count: layout.offset_count,
        };
        if layout.offset_count - 1 > i64::from(i32::MAX) {
            return Err(overflow);
        }
        let Some(last_offset) = base_offset.checked_add(layout.offset_count - 1) else {
            return Err(overflow);
        };
        if last_offset == i64::MAX {
            return Err(overflow);
        }

        inner
            .producers
            .expire(now_ms, config.producer_id_expiration_ms);
        if config.timestamp_type == TimestampType::LogAppendTime {
            // What the stamped batches will carry (and a reopen will read back).
            for p in &mut layout.producers {
                p.max_timestamp_ms = now_ms;
            }
        }
        let check_sequences = origin == AppendOrigin::Client;
        let staged = match inner
            .producers
            .plan(&layout.producers, base_offset, check_sequences)?
        {
            Plan::Append(staged) => {
                if let Some(guard) = verification {
                    inner
                        .producers
                        .check_verification(&staged, guard.producer_id, guard.token)?;
                }
                staged
            }
            Plan::Duplicate {
                first,
                last,
                batch_count,
            } => {
                debug!(
                    dir = %self.dir.display(),
                    base_offset = first.first_offset,
                    last_offset = last.last_offset,
                    "duplicate batch from an idempotent producer; not appended"
                );
                let (max_timestamp_ms, offset_of_max_timestamp) =
                    if last.max_timestamp_ms > first.max_timestamp_ms {
                        (last.max_timestamp_ms, last.first_offset)
                    } else {
                        (first.max_timestamp_ms, first.first_offset)
                    };
                return Ok(AppendInfo {
                    base_offset: first.first_offset,
                    last_offset: last.last_offset,
                    log_append_time_ms: match config.timestamp_type {
                        // The stored batch carries its append time as max timestamp.
                        TimestampType::LogAppendTime => first.max_timestamp_ms,
                        TimestampType::CreateTime => -1,
                    },
                    log_start_offset: inner.log_start_offset,
                    max_timestamp_ms,
                    offset_of_max_timestamp,
                    batch_count,
                    size_bytes: 0,
                    duplicate: true,
                });
            }
        };

        let batch_count = layout.batches.len() as u64;
        if should_roll(
            &config,
            &inner.limits,
            inner.active(),
            set_bytes,
            batch_count,
            last_offset,
            now_ms,
        ) {
            self.roll(inner, now_ms)?;
        }

        if let RecordSet::Shared(bytes) = records {
            if config.timestamp_type == TimestampType::LogAppendTime {
                owned = bytes.to_vec();
                records = RecordSet::InPlace(&mut owned);
            }
        }
        let (stamped, heads) = match &mut records {
            RecordSet::InPlace(bytes) => (
                stamp(bytes, &layout, base_offset, leader_epoch, &config, now_ms)?,
                Vec::new(),
            ),
            RecordSet::Shared(bytes) => stamp_heads(bytes, &layout, base_offset, leader_epoch)?,
        };

        if leader_epoch >= 0 && inner.epochs.latest_epoch() != Some(leader_epoch) {
            self.assign_epoch(inner, leader_epoch, base_offset)?;
        }

        // Plan the index entries on a copy of the index state; commit only after the writes.
        let limits = inner.limits;
        let active = inner.active_mut();
        let segment_base_offset = active.base_offset;
        let write_position = active.size_bytes;
        assert_eq!(
            active.next_offset, base_offset,
            "active segment ends at the log end"
        );
        let mut index_state = active.index;
        let (mut offset_entries, mut time_entries) = (Vec::new(), Vec::new());
        for s in &stamped {
            index_state.on_batch(
                segment_base_offset,
                write_position + s.position as u64,
                s.base_offset,
                s.max_timestamp_ms,
                s.size_bytes as u64,
                &limits,
                &mut offset_entries,
                &mut time_entries,
            );
        }
        let files = Arc::clone(&active.files);
        let committed_offset_entries = active.index.offset_entries;
        let committed_time_entries = active.index.time_entries;

        // Aborted transactions are indexed before their markers are written (see
        // `crate::txn_index`): a marker in the log always has its entry.
        let new_aborted: Vec<AbortedTxn> = staged
            .completed
            .iter()
            .filter(|c| {
                layout
                    .abort_markers
                    .iter()
                    .any(|&i| stamped[i].base_offset == c.last_offset)
            })
            .map(|c| AbortedTxn {
                producer_id: c.producer_id,
                first_offset: c.first_offset,
                last_offset: c.last_offset,
                last_stable_offset: staged
                    .first_unstable_offset
                    .unwrap_or(last_offset + 1)
                    .min(last_offset + 1),
            })
            .collect();
        // A closed index is opened before anything is written (`IndexFile`): if it cannot be
        // (no file handles left), the append is refused with nothing to undo.
        let open_index = |index: &IndexFile, needed: bool, extension: &str| {
            needed
                .then(|| index.handle(&*self.storage))
                .transpose()
                .map_err(|e| LogError::io("open", files.log_path.with_extension(extension), e))
        };
        let offset_index = open_index(&files.offset_index, !offset_entries.is_empty(), "index")?;
        let time_index = open_index(&files.time_index, !time_entries.is_empty(), "timeindex")?;
        if let Err(e) = inner
            .aborted
            .append(&*self.storage, &self.dir, &new_aborted)
        {
            if !is_no_space(&e.source) {
                fail(
                    &self.dir,
                    &mut inner.state,
                    format!("{} {}: {}", e.op, e.path.display(), e.source),
                );
            }
            return Err(step_error(e));
        }
        drop(guard);

        // The writes run without `inner`, so readers can take snapshots meanwhile. Nobody else
        // touches these bytes: they lie past the committed lengths, which readers never pass,
        // and only appends (serialized by `append_lock`) write there or roll the segment.
        let written = write_record_set(&*files.log, &records, &stamped, &heads, write_position)
            .map_err(|e| ("write", files.log_path.clone(), e))
            .and_then(|()| match &offset_index {
                Some(file) => {
                    index::append_entries(&**file, committed_offset_entries, &offset_entries)
                        .map_err(|e| ("write", files.log_path.with_extension("index"), e))
                }
                None => Ok(()),
            })
            .and_then(|()| match &time_index {
                Some(file) => index::append_entries(&**file, committed_time_entries, &time_entries)
                    .map_err(|e| ("write", files.log_path.with_extension("timeindex"), e)),
                None => Ok(()),
            });

        if written.is_ok() {
            self.start_writeback(&*files.log, write_position, set_bytes);
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Err((op, path, e)) = written {
            if !new_aborted.is_empty() {
                if let Err(undo) =
                    inner
                        .aborted
                        .undo_last(&*self.storage, &self.dir, new_aborted.len())
                {
                    fail(
                        &self.dir,
                        &mut inner.state,
                        format!("{} {}: {}", undo.op, undo.path.display(), undo.source),
                    );
                }
            }
            return Err(self.undo_failed_write(inner, op, path, e));
        }
        // A concurrent fsync may have failed the log meanwhile: then nothing more is
        // acknowledged.
        self.check_usable(inner)?;
        let active = inner.active_mut();
        assert_eq!(
            active.base_offset, segment_base_offset,
            "no roll during the write"
        );
        assert_eq!(
            active.size_bytes, write_position,
            "no other append during the write"
        );

        // Commit.
        active.size_bytes += set_bytes;
        active.next_offset = last_offset + 1;
        active.index = index_state;
        active.roll_start_ms.get_or_insert(now_ms);
        active.modified_ms = active.modified_ms.max(now_ms);
        inner.log_end_offset = last_offset + 1;
        inner.size_bytes += set_bytes;
        inner.oldest_unflushed_append_ms.get_or_insert(now_ms);
        inner.producers.commit(staged, now_ms);

        let (mut max_timestamp_ms, mut offset_of_max_timestamp) = (-1i64, -1i64);
        for s in &stamped {
            if s.max_timestamp_ms > max_timestamp_ms {
                max_timestamp_ms = s.max_timestamp_ms;
                offset_of_max_timestamp = s.base_offset;
            }
        }
        let info = AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: match config.timestamp_type {
                TimestampType::LogAppendTime => now_ms,
                TimestampType::CreateTime => -1,
            },
            log_start_offset: inner.log_start_offset,
            max_timestamp_ms,
            offset_of_max_timestamp,
            batch_count: stamped.len() as u32,
            size_bytes: set_bytes,
            duplicate: false,
        };
        let unflushed = (inner.log_end_offset - inner.flushed_offset) as u64;
        drop(guard);
        // The next append may write while this one waits for its fsync.
        drop(append_guard);
        if unflushed >= config.flush_messages {
            self.sync_active()?;
        }
        Ok(info)
    }

    /// Records that `leader_epoch` starts at the log end offset, as Kafka does when a replica
    /// becomes leader (`maybeAssignEpochStartOffset`), so that the first append of the epoch
    /// does not write (and fsync) the leader-epoch checkpoint on the produce path. Nothing
    /// happens if the epoch is already the latest, is older than it, or is negative.
    pub fn assign_epoch_start_offset(&self, leader_epoch: i32) -> Result<(), LogError> {
        let _append_guard = self.append_guard();
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.check_usable(inner)?;
        let newer = match inner.epochs.latest_epoch() {
            None => true,
            Some(latest) => leader_epoch > latest,
        };
        if leader_epoch < 0 || !newer {
            return Ok(());
        }
        let log_end_offset = inner.log_end_offset;
        self.assign_epoch(inner, leader_epoch, log_end_offset)
    }

    /// Adds `(leader_epoch, start_offset)` to the epoch cache and writes its checkpoint
    /// durably first. A full disk leaves the log usable; any other failure fails it.
    fn assign_epoch(
        &self,
        inner: &mut Inner,
        leader_epoch: i32,
        start_offset: i64,
    ) -> Result<(), LogError> {
        let mut epochs = inner.epochs.clone();
        epochs.assign(leader_epoch, start_offset);
        let written = checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            LEADER_EPOCH_CHECKPOINT_FILE,
            &epochs.encode(),
        );
        if let Err(e) = written {
            if !(e.op == "write" && is_no_space(&e.source)) {
                fail(
                    &self.dir,
                    &mut inner.state,
                    format!("{} {}: {}", e.op, e.path.display(), e.source),
                );
            }
            return Err(step_error(e));
        }
        inner.epochs = epochs;
        Ok(())
    }

    /// Whole batches starting with the one that contains `start_offset` (or, if the cleaner
    /// removed that offset, the first batch after it), across segments,
    /// stopping before `max_bytes` would be exceeded (but with `min_one_batch` the first batch
    /// is returned whatever its size, KIP-74), and only batches whose last offset is below
    /// `upper_bound` (the high watermark). `start_offset == log_end_offset` returns nothing;
    /// outside `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`. Every returned
    /// batch's CRC is verified; a mismatch is [`LogError::Corrupt`], never served.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let mut removals = 0;
        self.read_counting(
            start_offset,
            max_bytes,
            upper_bound,
            min_one_batch,
            &mut removals,
        )
    }

    /// [`PartitionLog::read`], which also sets `removals` to the aborted-transaction index's
    /// removal count when it took its view of the segments (under the same lock).
    fn read_counting(
        &self,
        start_offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
        removals: &mut u64,
    ) -> Result<ReadResult, LogError> {
        let (first, log_start_offset, log_end_offset, readable_end) = {
            let inner = self.lock();
            *removals = inner.aborted.removals();
            let readable_end = self.readable_end(&inner)?;
            if start_offset < inner.log_start_offset || start_offset > inner.log_end_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset: start_offset,
                    log_start_offset: inner.log_start_offset,
                    log_end_offset: inner.log_end_offset,
                });
            }
            if start_offset >= readable_end && inner.state != State::Open {
                // Read-only, and nothing durable is left to serve: the error, not an empty
                // answer, tells the consumer why nothing comes.
                return Err(self.usable_error(&inner.state));
            }
            let result = ReadResult {
                bytes: Bytes::new(),
                batch_count: 0,
                next_offset: start_offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.log_end_offset,
            };
            if start_offset == inner.log_end_offset || upper_bound <= start_offset {
                return Ok(result);
            }
            let Some((_, segment)) = inner.segments.range(..=start_offset).next_back() else {
                // log_start_offset >= the first segment's base offset, so this cannot happen.
                return Err(self.corrupt(
                    &inner.active().files.log_path,
                    0,
                    format!("no segment holds offset {start_offset}"),
                ));
            };
            (
                segment.snapshot(),
                inner.log_start_offset,
                inner.log_end_offset,
                readable_end,
            )
        };
        // One consistent view: nothing appended after this point is returned, even from
        // segments snapshotted later (and of a failed log, nothing that is not durable).
        let upper_bound = upper_bound.min(readable_end);

        let mut out = BytesMut::new();
        let mut batch_count = 0u32;
        // The next offset wanted: batches ending before it are skipped. Offsets may have gaps
        // (a cleaned segment keeps only some batches), so a batch may start after it.
        let mut target = start_offset;
        let mut returned_next: Option<i64> = None;
        let mut snapshot = first;
        // Bounded: every iteration reads one segment and moves `target` to at least that
        // segment's end, which is past the previous `target`; the loop ends at the bound.
        'segments: loop {
            let (mut position, indexed_offset) = self.position_for(&snapshot, target)?;
            let mut check_offset = indexed_offset;
            // The next offset of the previous batch in this segment, for the order check.
            let mut previous_next: Option<i64> = None;
            let corrupt_at = |position: u64, reason: String| {
                self.corrupt(&snapshot.files.log_path, position, reason)
            };
            let out_of_order = |floor: i64, base: i64, last: i64| {
                format!(
                    "batch at offsets {base}..={last} where offset {floor} or later was expected"
                )
            };
            // Find the first batch to return, reading headers only (the index entry is at
            // most `index.interval.bytes` before it).
            let log = &*snapshot.files.log;
            let mut reader = ChunkReader::new(log, snapshot.size_bytes, LOCATE_CHUNK_BYTES);
            // Bounded: every iteration passes a whole batch or leaves the loop.
            let first_size_bytes = loop {
                let header = self.header_at_checked(
                    &mut reader,
                    &snapshot,
                    &mut position,
                    &mut check_offset,
                )?;
                let header = match header {
                    HeaderAt::End => break None,
                    HeaderAt::Bad(reason) => return Err(corrupt_at(position, reason)),
                    HeaderAt::Header(h) => h,
                };
                let floor = previous_next.unwrap_or(snapshot.base_offset);
                if header.base_offset < floor {
                    let reason = out_of_order(floor, header.base_offset, header.last_offset());
                    return Err(corrupt_at(position, reason));
                }
                if header.last_offset() >= target {
                    break Some(header.size_bytes);
                }
                previous_next = Some(header.last_offset() + 1);
                position += header.size_bytes;
            };
            if let Some(first_size_bytes) = first_size_bytes {
                // Read what may be returned straight into the answer, with one read: as much
                // as the limit leaves room for (KIP-74: at least the first batch if the
                // answer is still empty), then keep the whole batches that qualify.
                let room_bytes = max_bytes.saturating_sub(out.len()) as u64;
                let segment_left_bytes = snapshot.size_bytes - position;
                let mut want_bytes = room_bytes.min(segment_left_bytes);
                if out.is_empty() && min_one_batch {
                    // The header check bounded the batch by the segment's end.
                    want_bytes = want_bytes.max(first_size_bytes);
                }
                if want_bytes < first_size_bytes {
                    break 'segments;
                }
                let to_segment_end = want_bytes == segment_left_bytes;
                let start = out.len();
                if let Err(e) = log.read_exact_into(&mut out, want_bytes as usize, position) {
                    return Err(LogError::io("read", &snapshot.files.log_path, e));
                }
                let mut at = start;
                let mut stopped = false;
                // Bounded: every iteration keeps a whole batch or leaves the loop.
                while at < out.len() {
                    let view = match BatchView::parse(&out[at..]) {
                        Ok(view) => view,
                        // Cut by the limit: the batch is not returned.
                        Err(BatchError::Truncated { .. }) if !to_segment_end => {
                            stopped = true;
                            break;
                        }
                        Err(e) => return Err(corrupt_at(position, e.to_string())),
                    };
                    let floor = previous_next.unwrap_or(snapshot.base_offset);
                    if view.base_offset() < floor || view.last_offset_delta() < 0 {
                        let reason = out_of_order(floor, view.base_offset(), view.last_offset());
                        return Err(corrupt_at(position, reason));
                    }
                    previous_next = Some(view.next_offset());
                    // Never serve a corrupt batch: a bit flipped on disk after the recovery
                    // scan (or in a segment that was not scanned) is caught here. CRC-32C runs
                    // at several GB/s, cheap next to the copy. It is checked before the bound,
                    // so a damaged last offset delta cannot stop a read silently short of the
                    // log end (found by fuzzing: consumers then fetched nothing forever).
                    if let Err(e) = view.verify_crc() {
                        return Err(corrupt_at(position, e.to_string()));
                    }
                    // Nor can a damaged base offset (the CRC does not cover it) stop a read
                    // short: every batch of a segment ends before the segment's next offset
                    // (found by fuzzing: a trusted segment whose first batch claimed offset
                    // 2^32).
                    if view.last_offset() >= snapshot.next_offset {
                        let reason = format!(
                            "batch at offsets {}..={} past the segment's end, offset {}",
                            view.base_offset(),
                            view.last_offset(),
                            snapshot.next_offset
                        );
                        return Err(corrupt_at(position, reason));
                    }
                    if view.last_offset() >= upper_bound {
                        stopped = true;
                        break;
                    }
                    let size_bytes = view.size_bytes();
                    batch_count += 1;
                    returned_next = Some(view.next_offset());
                    target = view.next_offset();
                    position += size_bytes as u64;
                    at += size_bytes;
                }
                out.truncate(at);
                // The limit (or the bound) ended the read inside this segment.
                if stopped || !to_segment_end {
                    break 'segments;
                }
            }
            // The rest of the segment was read: its last batch must end at the offset recorded
            // for it.
            if previous_next.is_some_and(|next| next != snapshot.next_offset) {
                return Err(self.corrupt(
                    &snapshot.files.log_path,
                    position,
                    format!(
                        "segment read up to offset {previous_next:?}, but it ends at {}",
                        snapshot.next_offset
                    ),
                ));
            }
            target = target.max(snapshot.next_offset);
            // Everything below the bound has been seen (the segment that was active when the
            // read started ends at the log end offset of that moment).
            if target >= upper_bound {
                break;
            }
            // The segment holding `target` now: normally the next one, but a clean may have
            // replaced segments meanwhile by one that starts earlier.
            match self.snapshot_holding(target)? {
                Some(next) if next.next_offset > target => snapshot = next,
                _ => break,
            }
        }
        Ok(ReadResult {
            bytes: out.freeze(),
            batch_count,
            next_offset: returned_next.unwrap_or(start_offset),
            log_start_offset,
            log_end_offset,
        })
    }

    /// Whether the log failed ([`Self::failure`] without the reason).
    pub fn has_failed(&self) -> bool {
        matches!(self.lock().state, State::Failed(_) | State::Poisoned(_))
    }

    /// Why the log failed, if it did (a write or an fsync failed, or an operation panicked):
    /// until reopened it then accepts no writes and serves only what is durable (after a
    /// panic, nothing).
    pub fn failure(&self) -> Option<String> {
        match &self.lock().state {
            State::Failed(reason) | State::Poisoned(reason) => Some(reason.clone()),
            State::Open | State::Closed => None,
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().log_end_offset
    }

    /// Bytes of all segments' `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.lock().size_bytes
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.lock().segments.keys().copied().collect()
    }

    /// ListOffsets by timestamp: the first batch whose max timestamp is `>= timestamp_ms`,
    /// as (its max timestamp, its base offset — or the log start offset if later). Found with
    /// the time index, then a scan of at most an index interval. `None` if no batch qualifies.
    /// The special timestamps (-1 latest, -2 earliest, -3 max) are the caller's to handle.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let (snapshot, log_start_offset, readable_end) = {
            let inner = self.lock();
            let readable_end = self.readable_end(&inner)?;
            let found = inner.segments.values().find(|s| {
                s.size_bytes > 0
                    && s.next_offset > inner.log_start_offset
                    && s.index.max_timestamp_ms >= timestamp_ms
            });
            match found {
                None => return Ok(None),
                Some(s) => (s.snapshot(), inner.log_start_offset, readable_end),
            }
        };
        let files = &snapshot.files;
        let time_entry = files
            .time_index
            .lookup::<TimeEntry>(&*self.storage, snapshot.time_entries, timestamp_ms)
            .map_err(|e| LogError::io("read", files.log_path.with_extension("timeindex"), e))?;
        let target_offset =
            snapshot.base_offset + time_entry.map_or(0, |e| i64::from(e.relative_offset));
        let (mut position, mut check_offset) = self.position_for(&snapshot, target_offset)?;
        let mut reader = ChunkReader::new(&*files.log, snapshot.size_bytes, READ_CHUNK_BYTES);
        // Bounded: every iteration consumes a whole batch or returns.
        loop {
            let at =
                self.batch_at_checked(&mut reader, &snapshot, &mut position, &mut check_offset)?;
            let view = match at {
                BatchAt::End => {
                    return Err(self.corrupt(
                        &files.log_path,
                        position,
                        format!("no batch with timestamp >= {timestamp_ms} although the segment's maximum is larger"),
                    ))
                }
                BatchAt::Bad(e) => return Err(self.corrupt(&files.log_path, position, e.to_string())),
                BatchAt::Batch(view) => view,
            };
            if view.max_timestamp() >= timestamp_ms && view.last_offset() >= log_start_offset {
                if view.base_offset() >= readable_end {
                    // A failed log answers only with durable batches; an open one holds no
                    // batch at or past the log end of the lookup's start.
                    let inner = self.lock();
                    if inner.state != State::Open {
                        return Err(self.usable_error(&inner.state));
                    }
                    return Err(self.corrupt(
                        &files.log_path,
                        position,
                        format!(
                            "batch at offset {} past the log end, offset {readable_end}",
                            view.base_offset()
                        ),
                    ));
                }
                return Ok(Some(TimestampOffset {
                    timestamp_ms: view.max_timestamp(),
                    offset: view.base_offset().max(log_start_offset),
                }));
            }
            position += view.size_bytes() as u64;
        }
    }

    /// ListOffsets MAX_TIMESTAMP: the largest batch timestamp in the log and the base offset of
    /// the first batch carrying it. `None` if the log has no batch with a timestamp (`>= 0`).
    pub fn max_timestamp_offset(&self) -> Option<TimestampOffset> {
        let inner = self.lock();
        let mut best: Option<TimestampOffset> = None;
        for s in inner.segments.values() {
            if s.next_offset <= inner.log_start_offset || s.index.max_timestamp_ms < 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => s.index.max_timestamp_ms > b.timestamp_ms,
            };
            if better {
                best = Some(TimestampOffset {
                    timestamp_ms: s.index.max_timestamp_ms,
                    offset: s.index.offset_of_max_timestamp.max(inner.log_start_offset),
                });
            }
        }
        best
    }

    /// OffsetForLeaderEpoch: `(largest epoch <= epoch, the offset where the next epoch
    /// starts, or the log end offset if it is the latest)`; `(-1, -1)` if `epoch` is undefined
    /// or newer than every epoch. For an epoch older than every known one, Kafka's answer:
    /// `(epoch, start offset of the first known epoch)`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// Writes a transaction marker (a control batch) for `marker`'s producer: the transaction
    /// coordinator's `WriteTxnMarkers`. Checked like Kafka's `appendEndTxnMarker` (producer
    /// epoch, coordinator epoch); an abort is indexed for `read_committed` readers.
    pub fn append_marker(
        &self,
        marker: &Marker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let mut batch = build_marker_batch(marker, now_ms);
        self.append_from(
            &mut batch,
            leader_epoch,
            now_ms,
            AppendOrigin::Coordinator,
            None,
        )
    }

    /// The first offset of the oldest open transaction (Kafka's first unstable offset); the
    /// last stable offset is the smaller of it and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.lock().producers.first_unstable_offset()
    }

    /// Every producer this partition keeps state for (DescribeProducers).
    pub fn producers(&self) -> Vec<crate::producer_state::ProducerDescription> {
        self.lock().producers.describe()
    }

    /// Open transactions in this partition: `(first offset, producer id)`, oldest first.
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.lock().producers.ongoing_transactions().collect()
    }

    /// [`PartitionLog::read`] for a `read_committed` Fetch: the batches, and the aborted
    /// transactions with data in them (oldest first), consistent with each other. The
    /// batches are read without the lock, so entries may leave the aborted-transaction index
    /// meanwhile (a clean removing their markers once no data of their transactions is left,
    /// DeleteRecords or retention moving the log start past them); the bytes read may still
    /// hold such data (from the segments replaced or deleted), so the read is then done again
    /// (from below a new log start it answers OFFSET_OUT_OF_RANGE), at most [`READ_ATTEMPTS_MAX`] times, and then answers no batches
    /// (the consumer fetches again).
    pub fn read_with_aborted(
        &self,
        start_offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<(ReadResult, Vec<AbortedTxn>), LogError> {
        let mut last = None;
        for _ in 0..READ_ATTEMPTS_MAX {
            let mut removals = 0;
            let read = self.read_counting(
                start_offset,
                max_bytes,
                upper_bound,
                min_one_batch,
                &mut removals,
            )?;
            let inner = self.lock();
            if inner.aborted.removals() == removals {
                let aborted = if read.batch_count == 0 {
                    Vec::new()
                } else {
                    inner.aborted.collect(start_offset, read.next_offset)
                };
                return Ok((read, aborted));
            }
            last = Some(read);
        }
        let read = last.expect("at least one attempt");
        let nothing = ReadResult {
            bytes: Bytes::new(),
            batch_count: 0,
            next_offset: start_offset,
            ..read
        };
        Ok((nothing, Vec::new()))
    }

    /// The aborted transactions with data in `[fetch_offset, upper_bound)` (what a
    /// `read_committed` Fetch answers beside the batches), oldest first. A Fetch uses
    /// [`PartitionLog::read_with_aborted`], which reads them consistently with the batches.
    pub fn aborted_transactions(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        self.lock().aborted.collect(fetch_offset, upper_bound)
    }

    /// The idempotence state of `producer_id` in this partition, if it has any.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerSnapshotView> {
        self.lock().producers.view(producer_id)
    }

    /// Producers whose idempotence state this partition keeps (at most
    /// [`PRODUCERS_PER_PARTITION_MAX`](crate::producer_state::PRODUCERS_PER_PARTITION_MAX)).
    pub fn active_producers(&self) -> usize {
        self.lock().producers.len()
    }

    /// Drops the state of producers that have not appended for `producer_id_expiration_ms`
    /// before `now_ms` (Kafka's `producer.id.expiration.check.interval.ms` timer calls this;
    /// appends also do it). Returns how many were dropped.
    pub fn expire_producers(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        let expiration_ms = inner.config.producer_id_expiration_ms;
        inner.producers.expire(now_ms, expiration_ms)
    }

    /// The leader epoch cache: `(epoch, start_offset)` pairs, oldest first.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.lock()
            .epochs
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Makes every appended batch durable (fsyncs the active segment's `.log`; rolled segments
    /// were synced when rolled). The active segment's indexes are not synced: they are rebuilt
    /// from the `.log` whenever the log was not closed cleanly.
    pub fn flush(&self) -> Result<(), LogError> {
        self.sync_active()
    }

    /// `flush.ms`: flushes if the oldest unflushed append is at least `flush_ms` old. Called by
    /// a broker timer.
    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), LogError> {
        let due = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            inner
                .oldest_unflushed_append_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= inner.config.flush_ms)
        };
        if due {
            self.sync_active()?;
        }
        Ok(())
    }

    /// Flushes everything (segment and index files), writes the checkpoints, then the
    /// clean-shutdown marker, so the next open skips the recovery scan. The log accepts
    /// nothing afterwards. Closing twice is a no-op; closing a failed log is an error and
    /// writes no marker.
    pub fn close(&self) -> Result<(), LogError> {
        self.abort_maintenance.store(true, Ordering::SeqCst);
        let _maintenance = self.maintenance_guard();
        let _log_start = self.log_start_guard();
        let _append = self.append_guard();
        let _flush = self.flush_guard();
        let mut guard = self.lock();
        let inner = &mut *guard;
        match &inner.state {
            State::Closed => return Ok(()),
            State::Failed(_) | State::Poisoned(_) => return Err(self.usable_error(&inner.state)),
            State::Open => {}
        }
        match self.seal(inner) {
            Ok(()) => {
                inner.state = State::Closed;
                info!(dir = %self.dir.display(), log_end_offset = inner.log_end_offset, "closed partition log");
                Ok(())
            }
            Err(e) => {
                fail(&self.dir, &mut inner.state, format!("close failed: {e}"));
                Err(e)
            }
        }
    }

    /// Removes the whole partition directory (DeleteTopics). The log accepts nothing
    /// afterwards; readers that already hold file handles finish their reads.
    pub fn delete(&self) -> Result<(), LogError> {
        self.abort_maintenance.store(true, Ordering::SeqCst);
        let _maintenance = self.maintenance_guard();
        let _log_start = self.log_start_guard();
        let _append = self.append_guard();
        let _flush = self.flush_guard();
        let mut inner = self.lock();
        inner.state = State::Closed;
        match self.storage.remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("remove directory", &self.dir, e)),
        }
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.storage
                .sync_dir(parent)
                .map_err(|e| LogError::io("fsync directory", parent, e))?;
        }
        info!(dir = %self.dir.display(), "deleted partition log");
        Ok(())
    }

    // ----- internals -----

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A thread panicked (an invariant assertion) while holding the lock: the state
                // may be half-changed, so stop serving.
                let mut guard = poisoned.into_inner();
                if matches!(guard.state, State::Open | State::Failed(_)) {
                    let reason = "an operation panicked while holding the log lock";
                    error!(dir = %self.dir.display(), reason, "partition log poisoned; it serves nothing until reopened");
                    guard.state = State::Poisoned(reason.into());
                }
                guard
            }
        }
    }

    /// After an append wrote `len_bytes` at `position` of the active segment: starts the
    /// writeback of every [`WRITEBACK_CHUNK_BYTES`] chunk of the segment that the append
    /// completed. The segment's unsynced data thus stays under a chunk, and the kernel's
    /// periodic writeback (by default every 30 s, of everything dirty) never has hundreds of
    /// megabytes of it to write at once, during which ext4 holds up appends to the same file
    /// for up to a second (W3 in `docs/performance.md`). A hint: it makes nothing durable, and
    /// its failure fails nothing (a failed writeback fails the next fsync).
    fn start_writeback(&self, file: &dyn StorageFile, position: u64, len_bytes: u64) {
        let first_chunk = position / WRITEBACK_CHUNK_BYTES;
        let end_chunk = (position + len_bytes) / WRITEBACK_CHUNK_BYTES;
        if end_chunk == first_chunk {
            return;
        }
        let from = first_chunk * WRITEBACK_CHUNK_BYTES;
        let len = (end_chunk - first_chunk) * WRITEBACK_CHUNK_BYTES;
        debug_assert!(from + len <= position + len_bytes, "only written bytes");
        if let Err(e) = file.start_writeback(from, len) {
            if !self.writeback_failure_logged.swap(true, Ordering::Relaxed) {
                warn!(
                    dir = %self.dir.display(),
                    position = from,
                    len_bytes = len,
                    error = %e,
                    "cannot start the writeback of appended data; the next fsync reports whether \
                     it reached the disk (further failures of this log are not logged)"
                );
            }
        }
    }

    pub(crate) fn append_guard(&self) -> MutexGuard<'_, ()> {
        self.append_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn flush_guard(&self) -> MutexGuard<'_, ()> {
        self.flush_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn maintenance_guard(&self) -> MutexGuard<'_, ()> {
        self.maintenance_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The maintenance lock if no other maintenance operation holds it.
    pub(crate) fn try_maintenance_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.maintenance_lock.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(crate) fn log_start_guard(&self) -> MutexGuard<'_, ()> {
        self.log_start_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn usable_error(&self, state: &State) -> LogError {
        match state {
            State::Open => unreachable!("usable_error on an open log"),
            State::Failed(reason) | State::Poisoned(reason) => LogError::Failed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            },
            State::Closed => LogError::Closed {
                dir: self.dir.clone(),
            },
        }
    }

    pub(crate) fn check_usable(&self, inner: &Inner) -> Result<(), LogError> {
        match inner.state {
            State::Open => Ok(()),
            _ => Err(self.usable_error(&inner.state)),
        }
    }

    /// How far reads may go: the log end offset of an open log; of a failed (read-only) log,
    /// the flushed offset (see [`State::Failed`]).
    fn readable_end(&self, inner: &Inner) -> Result<i64, LogError> {
        match inner.state {
            State::Open => Ok(inner.log_end_offset),
            State::Failed(_) => Ok(inner.flushed_offset.min(inner.log_end_offset)),
            State::Poisoned(_) | State::Closed => Err(self.usable_error(&inner.state)),
        }
    }

    pub(crate) fn corrupt(&self, path: &Path, position: u64, reason: String) -> LogError {
        error!(path = %path.display(), position, %reason, "corrupt log data found while reading");
        LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        }
    }

    /// Seals the active segment (final time index entry, fsync of its three files) and starts
    /// a new one at the log end offset. A failure to seal turns the log failed; a failure to
    /// create the new files leaves the old segment active and the log usable.
    pub(crate) fn roll(&self, inner: &mut Inner, now_ms: i64) -> Result<(), LogError> {
        let new_base_offset = inner.log_end_offset;
        let sealed = {
            let active = inner
                .segments
                .values_mut()
                .next_back()
                .expect("a log always has an active segment");
            assert!(active.size_bytes > 0, "never roll an empty segment");
            assert_eq!(active.next_offset, new_base_offset);
            seal_segment(&*self.storage, active)
        };
        if let Err((op, path, e)) = sealed {
            fail(
                &self.dir,
                &mut inner.state,
                format!("{op} {}: {e}", path.display()),
            );
            return Err(LogError::io(op, path, e));
        }
        let files = match create_segment_files(&*self.storage, &self.dir, new_base_offset) {
            Ok(files) => files,
            Err((op, path, e)) => {
                for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    let _ = self.storage.remove_file(&segment::segment_path(
                        &self.dir,
                        new_base_offset,
                        suffix,
                    ));
                }
                return Err(LogError::io(op, path, e));
            }
        };
        if let Err(e) = self.storage.sync_dir(&self.dir) {
            fail(
                &self.dir,
                &mut inner.state,
                format!("fsync of directory failed: {e}"),
            );
            return Err(LogError::io("fsync directory", &self.dir, e));
        }
        inner.segments.insert(
            new_base_offset,
            empty_segment(new_base_offset, files, now_ms),
        );
        // Everything before the new segment was just synced.
        inner.flushed_offset = inner.flushed_offset.max(new_base_offset);
        if inner.flushed_offset >= inner.log_end_offset {
            inner.oldest_unflushed_append_ms = None;
        }
        // The state as of the new segment's base offset, as Kafka snapshots at a roll: an open
        // after a crash replays only from here.
        self.snapshot_producers(inner);
        debug!(dir = %self.dir.display(), base_offset = new_base_offset, "rolled a new segment");
        Ok(())
    }

    /// After a failed write of an append: cut the active segment's files back to their
    /// committed lengths, so no byte of the failed append stays. The log stays usable only if
    /// the disk was full and the undo worked; otherwise it turns failed.
    fn undo_failed_write(
        &self,
        inner: &mut Inner,
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    ) -> LogError {
        let active = inner.active();
        let files = &active.files;
        let undo = files
            .log
            .set_len(active.size_bytes)
            .and_then(|()| {
                files
                    .offset_index
                    .truncate(active.index.offset_entries, index::OFFSET_ENTRY_BYTES)
            })
            .and_then(|()| {
                files
                    .time_index
                    .truncate(active.index.time_entries, index::TIME_ENTRY_BYTES)
            });
        match undo {
            Ok(()) if is_no_space(&error) => {
                warn!(path = %path.display(), %error, "append failed on a full disk; nothing was appended");
            }
            Ok(()) => fail(
                &self.dir,
                &mut inner.state,
                format!("{op} {}: {error}", path.display()),
            ),
            Err(undo_error) => fail(
                &self.dir,
                &mut inner.state,
                format!(
                    "{op} {}: {error}; undoing it failed too: {undo_error}",
                    path.display()
                ),
            ),
        }
        LogError::io(op, path, error)
    }

    /// Writes the producer-state snapshot as of the log end offset (atomically: temporary file,
    /// fsync, rename, directory fsync) and deletes all but the newest [`SNAPSHOTS_RETAINED`]
    /// snapshots. Called with the log end offset at a batch boundary whose batches are durable
    /// (a roll or close just synced them). A failure is logged, not returned: a missing
    /// snapshot only makes the next open replay more of the log, and an old one left behind
    /// describes the same history.
    pub(crate) fn snapshot_producers(&self, inner: &mut Inner) {
        let offset = inner.log_end_offset;
        let bytes = inner.producers.encode_snapshot(offset);
        let name = snapshot_file_name(offset);
        if let Err(e) = checkpoint::write_atomic(&*self.storage, &self.dir, &name, &bytes) {
            warn!(
                dir = %self.dir.display(),
                snapshot_offset = offset,
                op = e.op,
                path = %e.path.display(),
                error = %e.source,
                "could not write a producer state snapshot; the next open replays more of the log"
            );
            return;
        }
        inner.snapshots.insert(offset);
        // Bounded by the number of snapshot files.
        while inner.snapshots.len() > SNAPSHOTS_RETAINED {
            let oldest = *inner
                .snapshots
                .first()
                .expect("more than SNAPSHOTS_RETAINED");
            let path = self.dir.join(snapshot_file_name(oldest));
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(
                        path = %path.display(),
                        error = %e,
                        "could not remove an old producer state snapshot"
                    );
                    break;
                }
            }
            inner.snapshots.remove(&oldest);
        }
    }

    /// fsyncs the active segment's `.log` without holding `inner` during the fsync.
    fn sync_active(&self) -> Result<(), LogError> {
        let _flush = self.flush_guard();
        let (files, log_end_offset) = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            if inner.flushed_offset >= inner.log_end_offset {
                return Ok(());
            }
            (Arc::clone(&inner.active().files), inner.log_end_offset)
        };
        let synced = files.log.sync_data();
        let mut inner = self.lock();
        if let Err(e) = synced {
            fail(
                &self.dir,
                &mut inner.state,
                format!("fsync {} failed: {e}", files.log_path.display()),
            );
            return Err(LogError::io("fsync", &files.log_path, e));
        }
        // A seal (roll) may have failed meanwhile: then nothing may be reported durable.
        self.check_usable(&inner)?;
        inner.flushed_offset = inner.flushed_offset.max(log_end_offset);
        if inner.flushed_offset >= inner.log_end_offset {
            inner.oldest_unflushed_append_ms = None;
        }
        Ok(())
    }

    /// Close's work: seal the active segment, write the checkpoints and the marker.
    fn seal(&self, inner: &mut Inner) -> Result<(), LogError> {
        let log_start_offset = inner.log_start_offset;
        let epochs = inner.epochs.encode();
        seal_segment(&*self.storage, inner.active_mut())
            .map_err(|(op, path, e)| LogError::io(op, path, e))?;
        inner.flushed_offset = inner.log_end_offset;
        inner.oldest_unflushed_append_ms = None;
        checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            LOG_START_OFFSET_CHECKPOINT_FILE,
            &checkpoint::encode_log_start_offset(log_start_offset),
        )
        .map_err(step_error)?;
        checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            LEADER_EPOCH_CHECKPOINT_FILE,
            &epochs,
        )
        .map_err(step_error)?;
        self.snapshot_producers(inner);
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = self
            .storage
            .open(&marker, OpenMode::CreateOrOpen)
            .map_err(|e| LogError::io("create", &marker, e))?;
        file.sync_data()
            .map_err(|e| LogError::io("fsync", &marker, e))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io("fsync directory", &self.dir, e))
    }

    /// The position to start scanning from for `target_offset` in a segment snapshot, and the
    /// offset the index entry that gave the position names, if one did. The caller checks that
    /// the batch there starts at that offset ([`index_entry_mismatch`]) and, if it does not,
    /// reads from the segment start and has the indexes rebuilt
    /// ([`PartitionLog::rebuild_indexes`]): index files trusted at open are checked only
    /// cheaply (see [`crate::repair`]).
    pub(crate) fn position_for(
        &self,
        snapshot: &SegmentSnapshot,
        target_offset: i64,
    ) -> Result<(u64, Option<i64>), LogError> {
        let relative = target_offset - snapshot.base_offset;
        // At or past the last entry (a consumer at the tail) the search would find the last
        // entry: take it from memory. The reader checks the batch it names either way.
        let entry = match snapshot.last_offset_entry {
            Some(last) if relative >= i64::from(last.relative_offset) => Some(last),
            _ => snapshot
                .files
                .offset_index
                .lookup::<OffsetEntry>(&*self.storage, snapshot.offset_entries, relative)
                .map_err(|e| {
                    LogError::io("read", snapshot.files.log_path.with_extension("index"), e)
                })?,
        };
        match entry {
            None => Ok((0, None)),
            Some(e) if u64::from(e.position) < snapshot.size_bytes => Ok((
                u64::from(e.position),
                Some(snapshot.base_offset + i64::from(e.relative_offset)),
            )),
            Some(e) => {
                self.rebuild_or_defer(
                    snapshot,
                    &format!(
                        "index entry {e:?} points beyond the segment's {} bytes",
                        snapshot.size_bytes
                    ),
                )?;
                Ok((0, None))
            }
        }
    }

    /// The batch at `*position` of the segment a reader reads. `*check_offset` is the offset the
    /// index entry that gave `*position` names (`position_for`), checked at the first batch and
    /// then cleared: if that batch is not the one the entry names, the segment's indexes are
    /// rebuilt and the batch at the segment start is returned instead (`*position` set to 0).
    fn batch_at_checked<'r>(
        &self,
        reader: &'r mut ChunkReader<'_>,
        snapshot: &SegmentSnapshot,
        position: &mut u64,
        check_offset: &mut Option<i64>,
    ) -> Result<BatchAt<'r>, LogError> {
        let read = |e| LogError::io("read", &snapshot.files.log_path, e);
        if let Some(named) = check_offset.take() {
            // The chunk read here serves the read below as well.
            let mismatch = index_entry_mismatch(
                (&reader.batch_at(*position).map_err(read)?).into(),
                named,
                *position,
            );
            if let Some(reason) = mismatch {
                self.rebuild_or_defer(snapshot, &reason)?;
                *position = 0;
            }
        }
        reader.batch_at(*position).map_err(read)
    }

    /// [`Self::batch_at_checked`] for a batch header only.
    fn header_at_checked(
        &self,
        reader: &mut ChunkReader<'_>,
        snapshot: &SegmentSnapshot,
        position: &mut u64,
        check_offset: &mut Option<i64>,
    ) -> Result<HeaderAt, LogError> {
        let read = |e| LogError::io("read", &snapshot.files.log_path, e);
        if let Some(named) = check_offset.take() {
            let found = reader.header_at(*position).map_err(read)?;
            let mismatch = index_entry_mismatch((&found).into(), named, *position);
            if let Some(reason) = mismatch {
                self.rebuild_or_defer(snapshot, &reason)?;
                *position = 0;
            }
        }
        reader.header_at(*position).map_err(read)
    }

    /// Rebuilds the segment's indexes ([`Self::rebuild_indexes`]); inside
    /// [`storage::memory_only`](crate::storage::memory_only) it answers would-block instead,
    /// so that the caller reads again where it may wait (a rebuild reads the whole segment
    /// and writes and syncs files).
    fn rebuild_or_defer(&self, snapshot: &SegmentSnapshot, reason: &str) -> Result<(), LogError> {
        if crate::storage::in_memory_only() {
            return Err(LogError::io(
                "read",
                &snapshot.files.log_path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the segment's indexes must be rebuilt, which may wait for the disk",
                ),
            ));
        }
        self.rebuild_indexes(snapshot, reason);
        Ok(())
    }

    /// Snapshot of the segment holding `offset` (the last one starting at or before it).
    fn snapshot_holding(&self, offset: i64) -> Result<Option<SegmentSnapshot>, LogError> {
        let inner = self.lock();
        self.readable_end(&inner)?;
        Ok(inner
            .segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| s.snapshot()))
    }
}

/// What a reader found where an offset index entry points.
pub(crate) enum FoundAt {
    /// A batch starting at this offset.
    Starts(i64),
    /// No whole batch, for this reason.
    Bad(String),
    /// The segment's end.
    End,
}

impl From<&BatchAt<'_>> for FoundAt {
    fn from(at: &BatchAt<'_>) -> Self {
        match at {
            BatchAt::Batch(view) => FoundAt::Starts(view.base_offset()),
            BatchAt::Bad(e) => FoundAt::Bad(e.to_string()),
            BatchAt::End => FoundAt::End,
        }
    }
}

impl From<&HeaderAt> for FoundAt {
    fn from(at: &HeaderAt) -> Self {
        match at {
            HeaderAt::Header(h) => FoundAt::Starts(h.base_offset),
            HeaderAt::Bad(reason) => FoundAt::Bad(reason.clone()),
            HeaderAt::End => FoundAt::End,
        }
    }
}

/// Why the batch at `position`, where an offset index entry naming offset `named` points, is
/// not the batch the entry names; `None` if it is.
pub(crate) fn index_entry_mismatch(found: FoundAt, named: i64, position: u64) -> Option<String> {
    match found {
        FoundAt::Starts(base_offset) if base_offset == named => None,
        FoundAt::Starts(base_offset) => Some(format!(
            "index entry names offset {named}, the batch at position {position} starts at {base_offset}"
        )),
        FoundAt::Bad(e) => Some(format!(
            "index entry names offset {named}, no batch at position {position}: {e}"
        )),
        FoundAt::End => Some(format!(
            "index entry names offset {named} at position {position}, the segment's end"
        )),
    }
}

/// Marks the log failed, read-only until reopened (once; the first reason is kept).
pub(crate) fn fail(dir: &Path, state: &mut State, reason: String) {
    if *state == State::Open {
        error!(dir = %dir.display(), %reason, "partition log failed; it accepts no writes and serves only what is durable until reopened");
        *state = State::Failed(reason);
    }
}

pub(crate) fn step_error(e: StepError) -> LogError {
    LogError::io(e.op, e.path, e.source)
}

pub(crate) type IoStep = (&'static str, PathBuf, std::io::Error);

/// Appends the final time index entry of a segment that stops being active, fsyncs its
/// three files and closes its indexes.
pub(crate) fn seal_segment(storage: &dyn Storage, segment: &mut Segment) -> Result<(), IoStep> {
    let files = Arc::clone(&segment.files);
    let index_path = files.log_path.with_extension("index");
    let time_path = files.log_path.with_extension("timeindex");
    let mut state = segment.index;
    if let Some(entry) = state.final_time_entry(segment.base_offset) {
        files
            .time_index
            .append(storage, segment.index.time_entries, &[entry])
            .map_err(|e| ("write", time_path.clone(), e))?;
        segment.index = state;
    }
    files
        .log
        .sync_data()
        .map_err(|e| ("fsync", files.log_path.clone(), e))?;
    files
        .offset_index
        .sync_data()
        .map_err(|e| ("fsync", index_path, e))?;
    files
        .time_index
        .sync_data()
        .map_err(|e| ("fsync", time_path, e))?;
    // Durable now: a sealed segment keeps only its `.log` open until a reader needs an index.
    files.offset_index.close();
    files.time_index.close();
    Ok(())
}

/// Walks the record set's batches (structure only: the caller validated CRCs).
fn layout_of(records: &[u8]) -> Result<Layout, LogError> {
    if records.is_empty() {
        return Err(LogError::InvalidRecords(BatchError::Empty));
    }
    let mut layout = Layout {
        batches: Vec::new(),
        producers: Vec::new(),
        offset_count: 0,
        abort_markers: Vec::new(),
    };
    let mut position = 0usize;
    for view in Batches::new(records) {
        let view = view.map_err(LogError::InvalidRecords)?;
        if view.last_offset_delta() < 0 {
            return Err(LogError::InvalidRecords(BatchError::InvalidRecordCount {
                records_count: view.records_count(),
                last_offset_delta: view.last_offset_delta(),
            }));
        }
        let marker = marker_of(&view)?;
        if marker.is_some_and(|m| !m.commit) {
            layout.abort_markers.push(layout.batches.len());
        }
        layout.batches.push((position, view.size_bytes()));
        layout.producers.push(BatchProducer {
            producer_id: view.producer_id(),
            producer_epoch: view.producer_epoch(),
            base_sequence: view.base_sequence(),
            last_offset_delta: view.last_offset_delta(),
            is_control: view.is_control(),
            is_transactional: view.is_transactional(),
            coordinator_epoch: marker.map_or(-1, |m| m.coordinator_epoch),
            max_timestamp_ms: view.max_timestamp(),
        });
        layout.offset_count += i64::from(view.last_offset_delta()) + 1;
        position += view.size_bytes();
    }
    assert_eq!(position, records.len(), "batches cover the record set");
    Ok(layout)
}

/// Bytes at the start of a batch that an append stamps without touching the CRC-covered
/// rest: base offset (8), batch length (4, unchanged), partition leader epoch (4).
const BATCH_HEAD_BYTES: usize = 16;

/// Appends start the writeback of the active segment in chunks of this size (see
/// [`PartitionLog::start_writeback`]).
const WRITEBACK_CHUNK_BYTES: u64 = 1 << 20;
/// A shared record set is written as it is (head by head) only if its batches are this
/// large on average; smaller ones are cheaper to copy than to write in two parts each.
const SHARED_WRITE_BATCH_BYTES_MIN: usize = 64 * 1024;

/// The record set of an append; see [`PartitionLog::append_shared`].
enum RecordSet<'a> {
    /// Stamped in place and written with one write.
    InPlace(&'a mut [u8]),
    /// Left as it is; each batch's stamped head is written separately.
    Shared(&'a [u8]),
}

impl RecordSet<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            RecordSet::InPlace(b) => b,
            RecordSet::Shared(b) => b,
        }
    }
}

/// Writes the stamped record set at `position`: in place, one write; shared, each batch's
/// head from `heads` and then the rest of the batch from the record set.
fn write_record_set(
    file: &dyn StorageFile,
    records: &RecordSet<'_>,
    stamped: &[Stamped],
    heads: &[[u8; BATCH_HEAD_BYTES]],
    position: u64,
) -> std::io::Result<()> {
    match records {
        RecordSet::InPlace(bytes) => file.write_all_at(bytes, position),
        RecordSet::Shared(bytes) => {
            assert_eq!(stamped.len(), heads.len(), "one head per batch");
            for (s, head) in stamped.iter().zip(heads) {
                let at = position + s.position as u64;
                file.write_all_at(head, at)?;
                let rest = &bytes[s.position + BATCH_HEAD_BYTES..s.position + s.size_bytes];
                file.write_all_at(rest, at + BATCH_HEAD_BYTES as u64)?;
            }
            Ok(())
        }
    }
}

/// [`stamp`] for a record set left as it is (CreateTime only): the stamped heads.
fn stamp_heads(
    records: &[u8],
    layout: &Layout,
    base_offset: i64,
    leader_epoch: i32,
) -> Result<(Vec<Stamped>, Vec<[u8; BATCH_HEAD_BYTES]>), LogError> {
    let mut stamped = Vec::with_capacity(layout.batches.len());
    let mut heads = Vec::with_capacity(layout.batches.len());
    let mut next_offset = base_offset;
    for &(position, size_bytes) in &layout.batches {
        let bytes = &records[position..position + size_bytes];
        let view = BatchView::parse(bytes).map_err(LogError::InvalidRecords)?;
        assert_eq!(view.size_bytes(), size_bytes, "the layout's batch size");
        let mut head = [0u8; BATCH_HEAD_BYTES];
        head.copy_from_slice(&bytes[..BATCH_HEAD_BYTES]);
        // Kafka's v2 batch layout: base offset at 0, partition leader epoch at 12.
        head[..8].copy_from_slice(&next_offset.to_be_bytes());
        head[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
        assert_eq!(
            i64::from_be_bytes(head[..8].try_into().expect("8 bytes")),
            next_offset,
            "stamped base offset reads back"
        );
        assert_eq!(head[8..12], bytes[8..12], "stamping keeps the batch length");
        assert_eq!(
            i32::from_be_bytes(head[12..16].try_into().expect("4 bytes")),
            leader_epoch
        );
        stamped.push(Stamped {
            position,
            size_bytes,
            base_offset: next_offset,
            max_timestamp_ms: view.max_timestamp(),
        });
        heads.push(head);
        next_offset += i64::from(view.last_offset_delta()) + 1;
    }
    assert_eq!(
        next_offset,
        base_offset + layout.offset_count,
        "offsets assigned without holes"
    );
    Ok((stamped, heads))
}

/// Rewrites each batch's header in place: the stamped head ([`stamp_heads`]), and under
/// LogAppendTime the timestamp (recomputing the CRC). Reads each header back to check it.
fn stamp(
    records: &mut [u8],
    layout: &Layout,
    base_offset: i64,
    leader_epoch: i32,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Vec<Stamped>, LogError> {
    let (mut stamped, heads) = stamp_heads(records, layout, base_offset, leader_epoch)?;
    for (s, head) in stamped.iter_mut().zip(&heads) {
        let bytes = &mut records[s.position..s.position + s.size_bytes];
        bytes[..BATCH_HEAD_BYTES].copy_from_slice(head);
        if config.timestamp_type == TimestampType::LogAppendTime {
            BatchHeaderMut::new(bytes)
                .map_err(LogError::InvalidRecords)?
                .set_log_append_time(now_ms);
        }
        let view = BatchView::parse(bytes).map_err(LogError::InvalidRecords)?;
        assert_eq!(
            view.base_offset(),
            s.base_offset,
            "stamped base offset reads back"
        );
        assert_eq!(
            view.size_bytes(),
            s.size_bytes,
            "stamping keeps the batch size"
        );
        assert_eq!(view.partition_leader_epoch(), leader_epoch);
        s.max_timestamp_ms = view.max_timestamp();
    }
    Ok(stamped)
}

pub(crate) fn empty_segment(base_offset: i64, files: Arc<SegmentFiles>, now_ms: i64) -> Segment {
    Segment {
        base_offset,
        files,
        size_bytes: 0,
        next_offset: base_offset,
        index: IndexState::EMPTY,
        roll_start_ms: None,
        modified_ms: now_ms,
    }
}

/// Kafka's roll conditions, checked before an append of `set_bytes` bytes in `batch_count`
/// batches ending at `last_offset`. An empty segment is never rolled.
pub(crate) fn should_roll(
    config: &LogConfig,
    limits: &IndexLimits,
    active: &Segment,
    set_bytes: u64,
    batch_count: u64,
    last_offset: i64,
    now_ms: i64,
) -> bool {
    if active.size_bytes == 0 {
        return false;
    }
    let full_bytes = active.size_bytes + set_bytes > config.segment_bytes;
    let too_old = active
        .roll_start_ms
        .is_some_and(|t| now_ms.saturating_sub(t) > config.segment_ms);
    // The time index keeps room for the final entry written when the segment is sealed.
    let index_full = active.index.offset_entries + batch_count > limits.offset_entries_max
        || active.index.time_entries + batch_count + 1 > limits.time_entries_max;
    let offset_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
    full_bytes || too_old || index_full || offset_overflow
}

pub(crate) fn create_segment_files(
    storage: &dyn Storage,
    dir: &Path,
    base_offset: i64,
) -> Result<Arc<SegmentFiles>, IoStep> {
    let log_path = segment::segment_path(dir, base_offset, LOG_SUFFIX);
    let index_path = segment::segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX);
    let time_path = segment::segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
    let log = storage
        .open(&log_path, OpenMode::CreateNew)
        .map_err(|e| ("create", log_path.clone(), e))?;
    // The index files are created empty and left closed until they get an entry
    // (`IndexFile`). A leftover file of that name (from a crash between a creation and its
    // directory's fsync) is emptied durably here, since no seal will fsync a closed index.
    for path in [&index_path, &time_path] {
        storage
            .open(path, OpenMode::CreateOrOpen)
            .and_then(|f| {
                if f.len()? > 0 {
                    f.set_len(0)?;
                    f.sync_data()?;
                }
                Ok(())
            })
            .map_err(|e| ("create", path.clone(), e))?;
    }
    Ok(Arc::new(SegmentFiles {
        log,
        offset_index: IndexFile::closed(index_path),
        time_index: IndexFile::closed(time_path),
        log_path,
    }))
}

/// The transaction marker a batch is (`None` for any other batch). A control batch that is
/// not well formed is refused: only the broker writes control batches.
fn marker_of(view: &BatchView<'_>) -> Result<Option<Marker>, LogError> {
    if !view.is_control() || view.producer_id() < 0 {
        return Ok(None);
    }
    parse_marker(view).map_err(LogError::InvalidRecords)
}
