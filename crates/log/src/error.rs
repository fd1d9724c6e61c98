//! The log's error type. The broker maps it to Kafka error codes in one place; each variant
//! names the code it is meant to become.

use std::io;
use std::path::PathBuf;

use runnel_model::batch::BatchError;
use thiserror::Error;

/// Everything a [`PartitionLog`](crate::PartitionLog) operation can fail with.
#[derive(Debug, Error)]
pub enum LogError {
    /// A storage operation failed. If it was an fsync, or a write whose effects could not be
    /// undone, the log has also turned [`LogError::Failed`]. Kafka: `KAFKA_STORAGE_ERROR`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the log was doing (`"write"`, `"fsync"`, `"open"`, ...).
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A read or lookup asked for an offset outside `[log_start_offset, log_end_offset]`.
    /// Kafka: `OFFSET_OUT_OF_RANGE`.
    #[error(
        "offset {offset} is out of range: log start {log_start_offset}, log end {log_end_offset}"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Stored bytes that must be valid are not (found while serving a read; recovery truncates
    /// such bytes instead of reporting them). Kafka: `KAFKA_STORAGE_ERROR` (the data is ours).
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The record set handed to `append` is not a sequence of whole v2 batches.
    /// Kafka: `CORRUPT_MESSAGE`.
    #[error("invalid record set: {0}")]
    InvalidRecords(#[source] BatchError),
    /// The record set is larger than a segment may be. Kafka: `RECORD_LIST_TOO_LARGE`.
    #[error("record set of {size_bytes} bytes exceeds segment_bytes {segment_bytes}")]
    RecordSetTooLarge { size_bytes: u64, segment_bytes: u64 },
    /// The record set spans more offsets than a segment can address (2^31) or than an `i64`
    /// holds. Kafka: `RECORD_LIST_TOO_LARGE`.
    #[error("record set of {offset_count} offsets from offset {base_offset} cannot be addressed")]
    OffsetOverflow { base_offset: i64, offset_count: i64 },
    /// `append` was given a leader epoch older than the latest one in the log.
    /// Kafka: `FENCED_LEADER_EPOCH`.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest_epoch}")]
    StaleLeaderEpoch { epoch: i32, latest_epoch: i32 },
    /// A batch of an idempotent (or transactional) producer carries an epoch older than the
    /// producer's current epoch in this partition: a fenced "zombie" producer. Nothing of the
    /// record set was appended. Kafka: `INVALID_PRODUCER_EPOCH` (47).
    #[error(
        "producer {producer_id} epoch {epoch} is older than its current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// A batch of an idempotent (or transactional) producer does not continue the producer's
    /// sequence (a gap, a batch older than the retained ones, a first batch or a new epoch not
    /// starting at 0). Nothing of the record set was appended.
    /// Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error(
        "out of order sequence number for producer {producer_id} epoch {epoch}: \
         {sequence}, expected {expected_sequence}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        /// The batch's base sequence.
        sequence: i32,
        /// The sequence the producer's next batch must start with.
        expected_sequence: i32,
    },
    /// A non-transactional batch from a producer with an ongoing transaction in this
    /// partition. Nothing of the record set was appended. Kafka: `INVALID_TXN_STATE` (48).
    #[error("producer {producer_id} wrote a non-transactional batch inside its transaction")]
    InvalidTxnState { producer_id: i64 },
    /// A transaction marker from a coordinator epoch older than the one that wrote the
    /// producer's last marker. Kafka: `TRANSACTION_COORDINATOR_FENCED` (52).
    #[error(
        "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, \
         older than {current_coordinator_epoch}"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
    /// An earlier fsync or unrecoverable write failed; until it is reopened (recovery then
    /// re-reads what is really on disk) the log accepts no writes and serves only what earlier
    /// fsyncs made durable. Kafka: `KAFKA_STORAGE_ERROR`.
    #[error("log {dir} has failed and is read-only until reopened: {reason}")]
    Failed { dir: PathBuf, reason: String },
    /// The log was closed or deleted. Kafka: `NOT_LEADER_OR_FOLLOWER` (the partition is gone
    /// from this broker).
    #[error("log {dir} is closed")]
    Closed { dir: PathBuf },
    /// A [`LogConfig`](crate::LogConfig) value is out of range. Kafka: `INVALID_CONFIG`.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
}

impl LogError {
    /// A read inside [`crate::storage::memory_only`] that would have waited for the disk:
    /// not a failure; the caller reads again where it may block.
    pub fn is_would_block(&self) -> bool {
        matches!(self, LogError::Io { source, .. } if crate::storage::is_would_block(source))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
