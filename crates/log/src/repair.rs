//! Rebuilding a segment's index files while the log is open.
//!
//! At open, the index files of a segment that recovery trusts (closed cleanly, or rolled) get
//! only cheap checks ([`crate::recovery`]): shape, order, bounds, and the batches from the last
//! offset index entry to the end of the `.log`. Checking that every entry points at the batch
//! it names would read the whole `.log` (there is an entry every `index.interval.bytes`),
//! which is what a clean shutdown spares. So every reader checks the entry it follows: the
//! batch at the entry's position must start at the offset the entry names
//! ([`crate::partition_log::index_entry_mismatch`]). When it does not, the reader reads the
//! segment from its start instead (correct, only slower) and has the segment's indexes rebuilt
//! from its `.log` ([`PartitionLog::rebuild_indexes`]), as Kafka rebuilds a corrupt index. A
//! damaged index never makes a read of intact data fail.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::checkpoint;
use crate::index::{self, IndexFile, TimeEntry};
use crate::partition_log::{fail, PartitionLog, State};
use crate::segment::{self, SegmentFiles, SegmentSnapshot};
use crate::storage::{is_no_space, OpenMode};

impl PartitionLog {
    /// Rebuilds the offset and time index of the segment `damaged` (a reader's snapshot) from
    /// its `.log`, because a reader found an entry that does not point at the batch it names
    /// (`reason`). Best effort: the reader has already fallen back to reading the segment from
    /// its start. Does nothing if the segment was replaced or removed meanwhile (rebuilt by
    /// another reader, cleaned, deleted), if a clean or retention holds the maintenance lock
    /// (a later read tries again), or if the `.log` does not verify to its end (damaged data
    /// is for recovery at the next open to cut, not for the index to hide).
    ///
    /// The new index files are written aside and renamed over the old ones
    /// ([`checkpoint::write_atomic`]); readers that hold the old handles keep reading the old
    /// files. A failure to write them on a full disk leaves the old ones in use; any other
    /// failure turns the log failed (as every failed write or fsync of the log does).
    pub(crate) fn rebuild_indexes(&self, damaged: &SegmentSnapshot, reason: &str) {
        warn!(
            segment = %damaged.files.log_path.display(),
            %reason,
            "offset index entry does not point at the batch it names; reading the segment from \
             its start and rebuilding its indexes"
        );
        // Closed segments change only under the maintenance lock, the active one only under the
        // append lock: with both held, the segment stays as it is during the rebuild.
        let Some(_maintenance) = self.try_maintenance_guard() else {
            info!(
                segment = %damaged.files.log_path.display(),
                "log maintenance is running; the index is rebuilt at a later read"
            );
            return;
        };
        let _append = self.append_guard();
        let (current, sealed, limits) = {
            let inner = self.lock();
            if inner.state != State::Open {
                return;
            }
            let Some(current) = inner
                .segments
                .get(&damaged.base_offset)
                .filter(|s| Arc::ptr_eq(&s.files, &damaged.files))
                .map(|s| s.snapshot())
            else {
                return;
            };
            let sealed = inner.active().base_offset != current.base_offset;
            (current, sealed, inner.limits)
        };
        let base_offset = current.base_offset;
        let log_path = &current.files.log_path;
        let outcome = match segment::scan(
            &*current.files.log,
            base_offset,
            current.size_bytes,
            &limits,
            sealed,
        ) {
            Ok(outcome) => outcome,
            Err(e) if crate::storage::is_would_block(&e) => {
                // Not a failure: a memory-only read; the next read outside the mode rebuilds.
                return;
            }
            Err(e) => {
                error!(segment = %log_path.display(), error = %e, "could not read the segment to rebuild its indexes");
                return;
            }
        };
        if outcome.valid_bytes < current.size_bytes || outcome.next_offset != current.next_offset {
            // The `.log` itself is damaged, not (only) the index. An index of the valid prefix
            // would be worse than the old one: the next open walks the tail from the last
            // entry, and from inside the damage it would cut the segment there, appends made
            // since included (found by fuzzing). Reads keep checking the entries they follow,
            // and a read reaching the damage answers Corrupt.
            error!(
                segment = %log_path.display(),
                position = outcome.valid_bytes,
                reason = outcome.stopped.as_deref().unwrap_or("offsets end early"),
                "segment data is damaged; its indexes are not rebuilt"
            );
            return;
        }
        let mut index_state = outcome.index;
        let mut time_entries: Vec<TimeEntry> = outcome.time_entries;
        if sealed {
            // As a roll sealed it: the final maximum timestamp gets its entry.
            time_entries.extend(index_state.final_time_entry(base_offset));
        }
        let stem = segment::file_stem(base_offset);
        let written = checkpoint::write_atomic(
            &*self.storage,
            &self.dir,
            &format!("{stem}{}", segment::OFFSET_INDEX_SUFFIX),
            &index::encode_entries(&outcome.offset_entries),
        )
        .and_then(|()| {
            checkpoint::write_atomic(
                &*self.storage,
                &self.dir,
                &format!("{stem}{}", segment::TIME_INDEX_SUFFIX),
                &index::encode_entries(&time_entries),
            )
        });
        let files = written
            .map_err(|e| {
                let reason = format!("{} {}: {}", e.op, e.path.display(), e.source);
                (e.op == "write" && is_no_space(&e.source), reason)
            })
            .and_then(|()| {
                // The rebuilt files are on disk now; appends and close must not keep writing to
                // the old handles, so failing to open them fails the log.
                self.open_segment_files(base_offset)
                    .map_err(|reason| (false, reason))
            });
        let mut guard = self.lock();
        let inner = &mut *guard;
        let files = match files {
            Ok(files) => files,
            Err((true, reason)) => {
                warn!(segment = %log_path.display(), %reason, "no space to rebuild the segment's indexes; reads keep falling back to a scan");
                return;
            }
            Err((false, reason)) => {
                fail(
                    &self.dir,
                    &mut inner.state,
                    format!("rebuilding indexes: {reason}"),
                );
                return;
            }
        };
        if inner.state != State::Open {
            return;
        }
        let Some(segment) = inner.segments.get_mut(&base_offset) else {
            return;
        };
        assert!(
            Arc::ptr_eq(&segment.files, &current.files) && segment.size_bytes == current.size_bytes,
            "a segment does not change while the maintenance and append locks are held"
        );
        assert_eq!(
            index_state.offset_entries,
            outcome.offset_entries.len() as u64
        );
        assert_eq!(index_state.time_entries, time_entries.len() as u64);
        segment.files = Arc::new(files);
        segment.index = index_state;
        info!(
            segment = %log_path.display(),
            offset_entries = index_state.offset_entries,
            time_entries = index_state.time_entries,
            "rebuilt the segment's indexes"
        );
    }

    /// Opens the three files of the segment at `base_offset`, which must exist.
    fn open_segment_files(&self, base_offset: i64) -> Result<SegmentFiles, String> {
        let open = |suffix: &str| {
            let path = segment::segment_path(&self.dir, base_offset, suffix);
            self.storage
                .open(&path, OpenMode::ReadWrite)
                .map_err(|e| format!("open {}: {e}", path.display()))
        };
        let path = |suffix: &str| segment::segment_path(&self.dir, base_offset, suffix);
        Ok(SegmentFiles {
            log: open(segment::LOG_SUFFIX)?,
            offset_index: IndexFile::open(
                path(segment::OFFSET_INDEX_SUFFIX),
                open(segment::OFFSET_INDEX_SUFFIX)?,
            ),
            time_index: IndexFile::open(
                path(segment::TIME_INDEX_SUFFIX),
                open(segment::TIME_INDEX_SUFFIX)?,
            ),
            log_path: segment::segment_path(&self.dir, base_offset, segment::LOG_SUFFIX),
        })
    }
}
