//! Per-partition log configuration, with Kafka's names and defaults.

use crate::error::LogError;
use crate::index::{IndexLimits, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};

/// Which timestamp a batch carries (Kafka's `message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's append time (the `now_ms` given to `append`).
    LogAppendTime,
}

/// Topic-level log settings (Kafka's `segment.bytes`, `segment.ms`, `index.interval.bytes`,
/// `segment.index.bytes`, `flush.messages`, `flush.ms`, `message.timestamp.type`), and the
/// broker's `producer.id.expiration.ms`. They can change while the log is open
/// ([`PartitionLog::update_config`](crate::PartitionLog::update_config)); later appends and
/// rolls use the new values.
///
/// Retention (`retention.ms`, `retention.bytes`, `file.delete.delay.ms`) and cleaning
/// (`delete.retention.ms`, `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`,
/// `max.compaction.lag.ms`, the cleaner's I/O limit) are not here: they are arguments of the
/// calls that apply them (`apply_retention`, `delete_expired_files`, `clean` with
/// [`CleanerOptions`](crate::CleanerOptions)), so the broker's timers pass the values current
/// at each run. For compacted topics the broker should pass `segment_ms` = min(`segment.ms`,
/// `max.compaction.lag.ms`), as Kafka's `LogConfig.maxSegmentMs` does, so an idle active
/// segment is rolled (by `maybe_roll`) in time to be compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll a new segment before the active one would exceed this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// Roll a new segment once the active one is older than this (from its first append).
    /// Default 7 days.
    pub segment_ms: i64,
    /// Bytes of batches between two sparse index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// Maximum size of each index file; a full index rolls the segment. Default 10 MiB.
    pub segment_index_bytes: u64,
    /// fsync after this many unflushed offsets. Default `u64::MAX` (never by count).
    pub flush_messages: u64,
    /// fsync when the oldest unflushed append is this old (checked by `maybe_flush`).
    /// Default `i64::MAX` (never by time).
    pub flush_ms: i64,
    /// Default `CreateTime`.
    pub timestamp_type: TimestampType,
    /// A producer's idempotence state is dropped once it has not appended for this long
    /// (Kafka's broker setting `producer.id.expiration.ms`). Default 1 day.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            timestamp_type: TimestampType::CreateTime,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Smallest accepted `segment_bytes` (Kafka's minimum for `segment.bytes` is 14).
pub const SEGMENT_BYTES_MIN: u64 = 14;
/// Largest accepted `segment_bytes`: file positions are stored as 32-bit index entries.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let bad = |what: String| Err(LogError::InvalidConfig(what));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} is outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.segment_ms < 1 {
            return bad(format!("segment_ms {} must be at least 1", self.segment_ms));
        }
        if self.segment_index_bytes < TIME_ENTRY_BYTES as u64
            || self.segment_index_bytes > i32::MAX as u64
        {
            return bad(format!(
                "segment_index_bytes {} is outside [{TIME_ENTRY_BYTES}, {}]",
                self.segment_index_bytes,
                i32::MAX
            ));
        }
        if self.flush_messages < 1 {
            return bad("flush_messages must be at least 1".into());
        }
        if self.producer_id_expiration_ms < 1 {
            return bad(format!(
                "producer_id_expiration_ms {} must be at least 1",
                self.producer_id_expiration_ms
            ));
        }
        if self.flush_ms < 0 {
            return bad(format!("flush_ms {} must not be negative", self.flush_ms));
        }
        Ok(())
    }

    pub(crate) fn index_limits(&self) -> IndexLimits {
        IndexLimits {
            index_interval_bytes: self.index_interval_bytes,
            offset_entries_max: self.offset_index_entries_max(),
            time_entries_max: self.time_index_entries_max(),
        }
    }

    pub(crate) fn offset_index_entries_max(&self) -> u64 {
        self.segment_index_bytes / OFFSET_ENTRY_BYTES as u64
    }

    pub(crate) fn time_index_entries_max(&self) -> u64 {
        self.segment_index_bytes / TIME_ENTRY_BYTES as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_kafka_defaults_should_validate() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn given_out_of_range_values_should_reject() {
        let cases = [
            LogConfig {
                segment_bytes: 1,
                ..LogConfig::default()
            },
            LogConfig {
                segment_bytes: u64::MAX,
                ..LogConfig::default()
            },
            LogConfig {
                segment_index_bytes: 4,
                ..LogConfig::default()
            },
            LogConfig {
                flush_messages: 0,
                ..LogConfig::default()
            },
            LogConfig {
                segment_ms: 0,
                ..LogConfig::default()
            },
            LogConfig {
                producer_id_expiration_ms: 0,
                ..LogConfig::default()
            },
        ];
        for config in cases {
            assert!(
                matches!(config.validate(), Err(LogError::InvalidConfig(_))),
                "{config:?}"
            );
        }
    }
}
