//! The log's lifecycle besides appends and reads, with Kafka's semantics (`UnifiedLog` /
//! `LocalLog`): settings changed at run time, the `segment.ms` roll timer, retention by time,
//! by size and by the log start offset, DeleteRecords, and the delayed removal of deleted
//! segment files (`file.delete.delay.ms`).
//!
//! # Deleting segments
//!
//! Only closed segments are deleted, oldest first; the active segment never is (Kafka rolls
//! an expired active segment inside retention; here the broker's timer calls
//! [`PartitionLog::maybe_roll`], which rolls an active segment older than `segment.ms`, and
//! the next retention run deletes it). The steps, each durable before the next:
//!
//! 1. the new log start offset (the base offset of the first segment kept, or further if
//!    DeleteRecords moved it there) is written to `log-start-offset-checkpoint`;
//! 2. the segments leave the in-memory segment list (reads that already hold their files
//!    finish), producers whose last batch is below the new start are dropped, and
//!    producer-state snapshots below it are removed;
//! 3. each file is renamed to `<name>.deleted` and the directory fsynced;
//! 4. [`PartitionLog::delete_expired_files`] removes them once `file.delete.delay.ms` has
//!    passed. Open removes any `.deleted` file left by a crash.
//!
//! A crash after step 1 leaves segments below the log start offset on disk: they are invisible
//! (reads below the log start offset are `OffsetOutOfRange`) and the next retention run deletes
//! them.

use std::collections::VecDeque;
use std::path::PathBuf;

use tracing::{info, warn};

use crate::checkpoint;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::partition_log::{step_error, PartitionLog, LOG_START_OFFSET_CHECKPOINT_FILE};
use crate::producer_state::snapshot_file_name;
use crate::segment::{self, DELETED_SUFFIX, SEGMENT_SUFFIXES};

/// Most deleted files waiting for `file.delete.delay.ms`; beyond it the oldest are removed at
/// once (the delay protects readers of a file, which keep working on an open handle anyway).
pub const PENDING_DELETES_MAX: usize = 100_000;

/// Files renamed to `*.deleted`, waiting for their removal.
#[derive(Debug, Default)]
pub(crate) struct PendingDeletes {
    /// Oldest first: the path and when its delay started (`None`: at the next
    /// `delete_expired_files` call, for deletions made without a clock, as DeleteRecords).
    entries: VecDeque<(PathBuf, Option<i64>)>,
}

impl PendingDeletes {
    /// Queues `path`; returns the paths that overflow the bound, to remove now.
    pub(crate) fn push(&mut self, path: PathBuf, since_ms: Option<i64>) -> Vec<PathBuf> {
        self.entries.push_back((path, since_ms));
        let mut overflow = Vec::new();
        // Bounded by the excess over the bound (at most one per push).
        while self.entries.len() > PENDING_DELETES_MAX {
            if let Some((p, _)) = self.entries.pop_front() {
                overflow.push(p);
            }
        }
        overflow
    }

    /// Starts the delay of entries queued without a time, and takes those whose delay passed.
    fn take_expired(&mut self, now_ms: i64, delay_ms: i64) -> Vec<PathBuf> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for (path, since) in self.entries.drain(..) {
            let since = since.unwrap_or(now_ms);
            if now_ms.saturating_sub(since) >= delay_ms {
                expired.push(path);
            } else {
                kept.push_back((path, Some(since)));
            }
        }
        self.entries = kept;
        expired
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What [`PartitionLog::apply_retention`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted, in all.
    pub deleted_segments: usize,
    /// Bytes of their `.log` files.
    pub deleted_bytes: u64,
    /// Of which deleted because their largest timestamp is older than `retention_ms`.
    pub deleted_by_time: usize,
    /// Of which deleted to bring the log within `retention_bytes`.
    pub deleted_by_size: usize,
    /// Of which deleted because the log start offset (DeleteRecords) passed them.
    pub deleted_below_log_start: usize,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
    /// A clean of this log was running, so nothing was done: call again later (Kafka, too,
    /// never runs retention and cleaning of one log at the same time).
    pub busy: bool,
}

impl PartitionLog {
    /// Replaces the log's settings (topic configs changed at run time). Later appends use the
    /// new flush and timestamp settings, and later rolls the new segment and index sizes;
    /// nothing already written changes. An invalid config is `InvalidConfig` and changes
    /// nothing.
    pub fn update_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        let mut inner = self.lock();
        self.check_usable(&inner)?;
        if inner.config != config {
            info!(dir = %self.dir.display(), ?config, "log config updated");
        }
        inner.limits = config.index_limits();
        inner.config = config;
        Ok(())
    }

    /// The `segment.ms` timer (Kafka checks it on append; an idle partition needs a timer so
    /// its last segment can be deleted or compacted): rolls the active segment if it is not
    /// empty and older than `segment_ms` (from its first append, or its first batch's
    /// timestamp after a reopen). Returns whether it rolled.
    pub fn maybe_roll(&self, now_ms: i64) -> Result<bool, LogError> {
        let _append = self.append_guard();
        let mut guard = self.lock();
        let inner = &mut *guard;
        self.check_usable(inner)?;
        let active = inner.active();
        let due = active.size_bytes > 0
            && active
                .roll_start_ms
                .is_some_and(|t| now_ms.saturating_sub(t) > inner.config.segment_ms);
        if !due {
            return Ok(false);
        }
        self.roll(inner, now_ms)?;
        Ok(true)
    }

    /// Retention (Kafka's `deleteOldSegments`): deletes closed segments from the oldest while
    /// - the segment's largest timestamp is more than `retention_ms` before `now_ms`
    ///   (`retention_ms` negative: no time limit), or
    /// - the log would still hold at least `retention_bytes` without it (`retention_bytes`
    ///   negative: no size limit), so the log ends within the bound plus one segment, or
    /// - the next segment starts at or below the log start offset (DeleteRecords).
    ///
    /// Never the active segment. The log start offset moves to the first segment kept and is
    /// checkpointed before any file is touched; the deleted files are renamed to `*.deleted`
    /// (see [`PartitionLog::delete_expired_files`]). If a clean of this log is running,
    /// nothing is done and [`RetentionOutcome::busy`] is set.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Result<RetentionOutcome, LogError> {
        let Some(_maintenance) = self.try_maintenance_guard() else {
            return Ok(RetentionOutcome {
                log_start_offset: self.log_start_offset(),
                busy: true,
                ..RetentionOutcome::default()
            });
        };
        let (by_time, by_size, count) = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            let closed: Vec<_> = inner.segments.values().collect();
            let closed = &closed[..closed.len() - 1];
            // Kafka applies the three rules in turn, each from the oldest remaining segment;
            // each deletes a prefix, so together they delete the longest of the three.
            let by_time = if retention_ms >= 0 {
                closed
                    .iter()
                    .take_while(|s| now_ms.saturating_sub(s.largest_timestamp_ms()) > retention_ms)
                    .count()
            } else {
                0
            };
            let by_size = if retention_bytes >= 0 && inner.size_bytes >= retention_bytes as u64 {
                let mut excess = inner.size_bytes - retention_bytes as u64;
                closed
                    .iter()
                    .take_while(|s| {
                        if excess >= s.size_bytes {
                            excess -= s.size_bytes;
                            true
                        } else {
                            false
                        }
                    })
                    .count()
            } else {
                0
            };
            let below_start = count_below_log_start(&inner);
            (by_time, by_size, by_time.max(by_size).max(below_start))
        };
        let (deleted_segments, deleted_bytes) = self.delete_oldest_segments(count, Some(now_ms))?;
        let outcome = RetentionOutcome {
            deleted_segments,
            deleted_bytes,
            deleted_by_time: by_time.min(deleted_segments),
            deleted_by_size: by_size.max(by_time).min(deleted_segments)
                - by_time.min(deleted_segments),
            deleted_below_log_start: deleted_segments - by_size.max(by_time).min(deleted_segments),
            log_start_offset: self.log_start_offset(),
            busy: false,
        };
        if deleted_segments > 0 {
            info!(
                dir = %self.dir.display(),
                deleted_segments,
                deleted_bytes,
                by_time = outcome.deleted_by_time,
                by_size = outcome.deleted_by_size,
                below_log_start = outcome.deleted_below_log_start,
                log_start_offset = outcome.log_start_offset,
                "retention deleted segments"
            );
        }
        Ok(outcome)
    }

    /// DeleteRecords: moves the log start offset up to `before_offset` (`-1`: the high
    /// watermark, as Kafka), checkpointed before it takes effect, and deletes the segments
    /// entirely below it (unless a clean of this log is running: then the next
    /// [`PartitionLog::apply_retention`] does). Reads below the new start are
    /// `OffsetOutOfRange`; ListOffsets earliest answers the new start. An offset above the
    /// high watermark (or negative other than `-1`) is `OffsetOutOfRange`. Returns the log
    /// start offset afterwards (the low watermark of the response); an offset at or below the
    /// current start changes nothing.
    pub fn delete_records(&self, before_offset: i64, high_watermark: i64) -> Result<i64, LogError> {
        {
            let _log_start = self.log_start_guard();
            let (log_start_offset, log_end_offset) = {
                let inner = self.lock();
                self.check_usable(&inner)?;
                (inner.log_start_offset, inner.log_end_offset)
            };
            let high_watermark = high_watermark.min(log_end_offset);
            let target = if before_offset == -1 {
                high_watermark
            } else {
                before_offset
            };
            if target < 0 || target > high_watermark {
                return Err(LogError::OffsetOutOfRange {
                    offset: before_offset,
                    log_start_offset,
                    log_end_offset,
                });
            }
            if target <= log_start_offset {
                return Ok(log_start_offset);
            }
            self.advance_log_start(target)?;
            info!(dir = %self.dir.display(), log_start_offset = target, "log start offset moved by DeleteRecords");
        }
        if let Some(_maintenance) = self.try_maintenance_guard() {
            self.delete_segments_below_log_start(None)?;
        }
        Ok(self.log_start_offset())
    }

    /// Removes the files of deleted segments that have waited `delay_ms`
    /// (`file.delete.delay.ms`) since their deletion (or, for segments deleted by
    /// DeleteRecords, which has no clock, since the first call that saw them). Called by a
    /// broker timer. Returns how many files were removed.
    pub fn delete_expired_files(&self, now_ms: i64, delay_ms: i64) -> Result<usize, LogError> {
        let expired = self.lock().pending_deletes.take_expired(now_ms, delay_ms);
        self.remove_files(expired)
    }

    /// Files of deleted segments still waiting for their delay.
    pub fn pending_deleted_files(&self) -> usize {
        self.lock().pending_deletes.len()
    }

    /// Removes `paths` (already gone is fine). Failures are re-queued, and the first one is
    /// returned after trying them all.
    fn remove_files(&self, paths: Vec<PathBuf>) -> Result<usize, LogError> {
        let mut removed = 0;
        let mut first_error = None;
        for path in paths {
            match self.storage.remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not remove a deleted segment file");
                    if first_error.is_none() {
                        first_error = Some(LogError::io("remove", &path, e));
                    }
                    let _ = self.lock().pending_deletes.push(path, None);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Moves the log start offset to `new_start` (larger than the current one): checkpoint
    /// first, then the in-memory offset, the producers below it, and the snapshots below it.
    /// The caller holds `log_start_lock`.
    pub(crate) fn advance_log_start(&self, new_start: i64) -> Result<(), LogError> {
        checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            LOG_START_OFFSET_CHECKPOINT_FILE,
            &checkpoint::encode_log_start_offset(new_start),
        )
        .map_err(step_error)?;
        let stale_snapshots: Vec<i64> = {
            let mut inner = self.lock();
            inner.log_start_offset = inner.log_start_offset.max(new_start);
            let log_start_offset = inner.log_start_offset;
            inner.producers.remove_before(log_start_offset);
            if let Err(e) = inner
                .aborted
                .remove_before(&*self.storage, &self.dir, log_start_offset)
            {
                warn!(
                    dir = %self.dir.display(),
                    error = %e.source,
                    "could not rewrite the aborted-transaction index; it is rewritten later"
                );
            }
            let stale: Vec<i64> = inner.snapshots.range(..log_start_offset).copied().collect();
            for offset in &stale {
                inner.snapshots.remove(offset);
            }
            stale
        };
        // A snapshot below the start describes producers that are gone; the next open replays
        // from a later snapshot or from the log (and drops producers below the start anyway).
        for offset in stale_snapshots {
            let path = self.dir.join(snapshot_file_name(offset));
            match self.storage.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not remove a producer state snapshot below the log start offset");
                }
            }
        }
        Ok(())
    }

    /// Deletes the closed segments that lie entirely below the log start offset. The caller
    /// holds the maintenance lock.
    pub(crate) fn delete_segments_below_log_start(
        &self,
        now_ms: Option<i64>,
    ) -> Result<(usize, u64), LogError> {
        let count = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            count_below_log_start(&inner)
        };
        self.delete_oldest_segments(count, now_ms)
    }

    /// Deletes the `count` oldest segments (never the active one; see the module docs for the
    /// steps). Returns the segments and `.log` bytes deleted. The caller holds the maintenance
    /// lock, so the closed segments do not change meanwhile.
    pub(crate) fn delete_oldest_segments(
        &self,
        count: usize,
        now_ms: Option<i64>,
    ) -> Result<(usize, u64), LogError> {
        if count == 0 {
            return Ok((0, 0));
        }
        let _log_start = self.log_start_guard();
        let new_start = {
            let inner = self.lock();
            self.check_usable(&inner)?;
            let count = count.min(inner.segments.len() - 1);
            let Some((&first_kept, _)) = inner.segments.iter().nth(count) else {
                return Ok((0, 0));
            };
            first_kept.max(inner.log_start_offset)
        };
        if new_start > self.log_start_offset() {
            self.advance_log_start(new_start)?;
        }
        let removed: Vec<_> = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let count = count.min(inner.segments.len() - 1);
            let bases: Vec<i64> = inner.segments.keys().take(count).copied().collect();
            let mut removed = Vec::with_capacity(bases.len());
            for base in bases {
                let segment = inner.segments.remove(&base).expect("listed above");
                assert!(
                    segment.next_offset <= inner.log_start_offset,
                    "a deleted segment lies below the log start offset"
                );
                inner.size_bytes -= segment.size_bytes;
                removed.push((base, segment.size_bytes, segment.files));
            }
            removed
        };
        let deleted_bytes = removed.iter().map(|&(_, size, _)| size).sum();
        let mut renamed = Vec::new();
        let mut failure = None;
        for &(base, _, ref files) in &removed {
            // Readers may still hold this segment: its closed indexes must not be looked for
            // under names that are about to change (`IndexFile`).
            for index in [&files.offset_index, &files.time_index] {
                if let Err(e) = index.pin(&*self.storage) {
                    warn!(segment = %files.log_path.display(), error = %e, "could not open a deleted segment's index before renaming it");
                }
            }
            for suffix in SEGMENT_SUFFIXES {
                let from = segment::segment_path(&self.dir, base, suffix);
                let to = segment::temp_path(&self.dir, base, suffix, DELETED_SUFFIX);
                match self.storage.rename(&from, &to) {
                    Ok(()) => renamed.push(to),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        // The segment is gone from the log; a file left behind lies below the
                        // log start offset and is deleted by the next retention after a reopen.
                        warn!(path = %from.display(), error = %e, "could not rename a deleted segment file");
                        failure.get_or_insert(LogError::io("rename", &from, e));
                    }
                }
            }
        }
        if let Err(e) = self.storage.sync_dir(&self.dir) {
            failure.get_or_insert(LogError::io("fsync directory", &self.dir, e));
        }
        let mut overflow = Vec::new();
        {
            let mut inner = self.lock();
            for path in renamed {
                overflow.extend(inner.pending_deletes.push(path, now_ms));
            }
        }
        self.remove_files(overflow)?;
        match failure {
            Some(e) => Err(e),
            None => Ok((removed.len(), deleted_bytes)),
        }
    }
}

/// How many of the oldest closed segments lie entirely below the log start offset (the next
/// segment starts at or below it).
fn count_below_log_start(inner: &crate::partition_log::Inner) -> usize {
    let bases: Vec<i64> = inner.segments.keys().copied().collect();
    bases
        .windows(2)
        .take_while(|w| w[1] <= inner.log_start_offset)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_pending_deletes_should_start_the_delay_when_first_seen_and_release_after_it() {
        let mut pending = PendingDeletes::default();
        let _ = pending.push(PathBuf::from("a"), Some(1_000));
        let _ = pending.push(PathBuf::from("b"), None);
        assert_eq!(pending.take_expired(1_500, 1_000), Vec::<PathBuf>::new());
        assert_eq!(pending.take_expired(2_000, 1_000), vec![PathBuf::from("a")]);
        // "b" started its delay at 1_500.
        assert_eq!(pending.take_expired(2_499, 1_000), Vec::<PathBuf>::new());
        assert_eq!(pending.take_expired(2_500, 1_000), vec![PathBuf::from("b")]);
        assert_eq!(pending.len(), 0);
    }
}
