//! `runnel-log`: the partition log storage engine — segments, sparse offset and time indexes,
//! the leader epoch cache, and crash recovery — with Kafka's semantics (`LogSegment`,
//! `OffsetIndex`, `TimeIndex`, `UnifiedLog`).
//!
//! The entry point is [`PartitionLog`]: one partition in one directory, `Send + Sync`, shared
//! by the broker as `Arc<PartitionLog>`. See [`partition_log`] for the directory layout and the
//! concurrency design. Index files use Kafka's formats: `.index` entries are (relative offset
//! `u32`, position `u32`), `.timeindex` entries (max timestamp so far `i64`, relative offset
//! `u32`), big-endian, one entry per `index_interval_bytes` of batches.
//!
//! # Invariants
//!
//! - **The log touches files only through [`Storage`].** No `std::fs` outside
//!   [`storage::FsStorage`]; tests swap in [`testing::FaultyStorage`] to inject short writes,
//!   torn writes, failed fsyncs and a full disk.
//! - **Batches are stored as the producer sent them.** Only the base offset and the partition
//!   leader epoch (neither covered by the CRC) and, under LogAppendTime, the timestamp and its
//!   attribute (CRC recomputed) are rewritten. A record set is written with one write.
//! - **No holes between segments; gaps only where the cleaner made them.** Offsets are
//!   assigned contiguously from the log end offset, and every segment ends exactly where the
//!   next begins (a cleaned segment keeps an empty batch header at its end if it must). In the
//!   active segment each batch starts at the previous batch's next offset; in a closed segment
//!   that the cleaner rewrote, batches may start later (the offsets of removed records stay
//!   unused, as in Kafka), never earlier. Recovery enforces both on disk contents.
//! - **Readers never see a partial batch.** A read is bounded by the committed size of each
//!   segment, copied under the lock after the append's write completed; only whole batches are
//!   returned.
//! - **Durable only after flush/sync.** An append is in the page cache when it returns; it is
//!   durable once [`PartitionLog::flush`] (or the `flush_messages` / `flush_ms` policy, or a
//!   segment roll, or close) has fsynced it. A failed fsync is never ignored: the log turns
//!   failed, read-only until reopened: it accepts no writes and serves only what earlier
//!   fsyncs made durable.
//! - **Acknowledged data is never lost; a corrupt batch is never served.** After a crash the
//!   active segment is scanned batch by batch (structure, CRC-32C, contiguous offsets) and cut
//!   at the first torn or corrupt batch; index files are checked at every open and rebuilt
//!   from the `.log` when damaged. Rolled segments are fsynced at roll time, so only the active
//!   segment can hold torn bytes after a power loss. Every batch a read returns has its CRC
//!   verified, so a bit flipped later on disk is reported ([`LogError::Corrupt`]), not served.
//!   An append that returned an error is not acknowledged: after a crash it may be in the log
//!   whole, or not at all, never in part.
//! - **Bounded.** Every loop is bounded by a file length, an entry count or a segment count;
//!   buffers by a chunk size, the largest batch, `max_bytes` or `segment_index_bytes`. Bad
//!   disk contents lead to truncation or a [`LogError::Corrupt`], never to a panic; `assert!`s
//!   guard only in-memory invariants.
//!
//! - **Idempotent producers' batches are stored once.** Every non-control batch with a producer
//!   id is checked against the partition's producer state ([`producer_state`]) before offsets
//!   are assigned; a retry of one of the producer's last 5 batches is answered with the
//!   original offsets and not written; the state changes only with the log end offset. It is
//!   rebuilt at open from the latest snapshot at or below the recovered log end plus the batch
//!   headers after it, so it always matches the log that recovery kept.
//!
//! - **The log start offset is durable before it takes effect**, and before any file below it
//!   is removed ([`lifecycle`]): retention and DeleteRecords checkpoint it first.
//! - **A clean never loses or duplicates a latest value, even if it crashes** ([`cleaner`]):
//!   cleaned segments are written aside and swapped in group by group through `.cleaned` and
//!   `.swap` files whose renames have a single commit point; open completes or discards an
//!   interrupted swap.
//!
//! # Lifecycle
//!
//! [`lifecycle`]: run-time config changes ([`PartitionLog::update_config`]), the `segment.ms`
//! roll timer ([`PartitionLog::maybe_roll`]), retention by time, size and log start offset
//! ([`PartitionLog::apply_retention`]), DeleteRecords ([`PartitionLog::delete_records`]) and
//! `file.delete.delay.ms` ([`PartitionLog::delete_expired_files`]). [`cleaner`]: compaction
//! ([`PartitionLog::clean`], [`PartitionLog::needs_cleaning`],
//! [`PartitionLog::cleanable_ratio`]).
//!
//! # Not yet
//!
//! Follower appends and truncation. (Transactions are here: [`producer_state`] tracks open
//! transactions and the first unstable offset, [`txn_index`] the aborted ones, and the
//! [`cleaner`] removes aborted data and, once no data of their transaction is left and their
//! delete horizon has passed, transaction markers.)

mod checkpoint;
pub mod cleaner;
pub mod config;
mod epoch;
pub mod error;
mod index;
pub mod lifecycle;
pub mod partition_log;
pub mod producer_state;
mod recovery;
mod repair;
mod segment;
pub mod storage;
pub mod testing;
pub mod txn_index;

pub use cleaner::{CleanStats, CleanerOptions, ManualClock, SystemClock, ThrottleClock};
pub use config::{LogConfig, TimestampType};
pub use error::LogError;
pub use lifecycle::RetentionOutcome;
pub use partition_log::{
    AppendInfo, AppendOrigin, PartitionLog, ReadResult, TimestampOffset, VerificationGuard,
};
pub use producer_state::{
    ProducerDescription, ProducerSnapshotView, BATCHES_RETAINED_PER_PRODUCER,
    PRODUCERS_PER_PARTITION_MAX,
};
pub use storage::{FsStorage, OpenMode, Storage, StorageFile};
pub use txn_index::AbortedTxn;
