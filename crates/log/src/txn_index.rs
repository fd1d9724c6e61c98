//! The aborted-transaction index of a partition: which producer's offsets belong to aborted
//! transactions, so that `read_committed` fetches can tell clients what to drop (Kafka's
//! `TransactionIndex` and `AbortedTxn`, KIP-98).
//!
//! Kafka keeps one `.txnindex` per segment. Runnel keeps one file per partition,
//! `aborted-transactions`, and the live entries in memory (sorted by the marker's offset):
//! aborts are rare, the entries small, and a partition-wide file needs no part in segment
//! swaps, recovery or deletion. Entries whose marker falls below the log start offset are
//! dropped (the file is rewritten atomically when enough of them are stale), and so are the
//! entries of the abort markers the cleaner removes ([`crate::cleaner`]: only once no data of
//! their transaction is left; the file is rewritten before the cleaned segment is swapped
//! in, so no entry outlives its marker, which would make a reader drop the producer's later,
//! committed, batches).
//!
//! # Write order and recovery
//!
//! The entry of an abort marker is appended and fsynced **before** the marker is written to
//! the log. So the file never lacks an entry for a marker in the log (but for one the cleaner
//! is removing, which has no data left to filter), and an entry whose marker never made it (a
//! crash, or a failed append) names an offset at or past the log end: open drops those, and an
//! append that fails after writing the entry removes it again.
//!
//! A rewrite (atomic: temporary file, rename, directory fsync) that fails leaves the file
//! holding the old or the new entries, unknown which; nothing is appended to it after that
//! (an append at a stale length would leave a hole that ends the file at the next load, and
//! the entries after it with it): the next change rewrites the whole file instead.
//!
//! # Format
//!
//! A sequence of 38-byte entries, big-endian:
//!
//! ```text
//! version             i16  0
//! producer_id         i64
//! first_offset        i64  first offset of the transaction in the partition
//! last_offset         i64  offset of the abort marker
//! last_stable_offset  i64  the partition's last stable offset after the abort
//! crc                 u32  CRC-32C of the 34 bytes before it
//! ```
//!
//! Reading stops at the first entry that is short or fails its CRC (a torn append).

use std::io;
use std::path::Path;

use crc32c::crc32c;

use crate::checkpoint;
use crate::storage::{OpenMode, Storage};

/// Name of the file in the partition directory.
pub const ABORTED_TXNS_FILE: &str = "aborted-transactions";
/// Bytes of one entry on disk.
pub(crate) const ENTRY_BYTES: usize = 38;
const ENTRY_VERSION: i16 = 0;
/// Most entries one partition keeps (about 12 MiB in memory); past it the oldest are
/// dropped with an error log, which only loses filtering of data that old.
pub const ABORTED_TXNS_MAX: usize = 256 * 1024;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
        let crc = crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(out.len() - start, ENTRY_BYTES);
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        if b.len() < ENTRY_BYTES {
            return None;
        }
        let crc = u32::from_be_bytes(b[34..38].try_into().expect("4 bytes"));
        if crc32c(&b[..34]) != crc {
            return None;
        }
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        let entry = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        let sane = entry.producer_id >= 0
            && entry.first_offset >= 0
            && entry.first_offset <= entry.last_offset;
        sane.then_some(entry)
    }
}

/// The partition's aborted transactions, in memory and in its file.
#[derive(Debug, Default, Clone)]
pub(crate) struct AbortedTxns {
    /// Sorted by `last_offset` (markers are appended in offset order).
    entries: Vec<AbortedTxn>,
    /// Length of the file's valid prefix: where the next entry is written.
    file_len: u64,
    /// Entries in the file that are no longer in `entries` (below the log start).
    stale_in_file: usize,
    /// A rewrite failed: the file may hold the old list, the new one, or (before a failed
    /// directory fsync made the rename durable) either after a crash, so `file_len` is not
    /// known. Nothing is appended at `file_len` then: the next change rewrites the whole file
    /// atomically (an append at a stale offset would leave a hole that ends the file at the
    /// next load, losing the entries after it).
    needs_rewrite: bool,
    /// How many times entries left the index ([`AbortedTxns::remove_markers`] with their
    /// markers, [`AbortedTxns::remove_before`] below a new log start, the bound): a reader
    /// that read batches before that may hold data of a forgotten entry's transaction.
    removals: u64,
}

impl AbortedTxns {
    /// Reads the file (missing: no entries), keeping the entries whose marker lies in
    /// `[log_start_offset, log_end_offset)`. Rewrites the file if it held anything else.
    pub(crate) fn load(
        storage: &dyn Storage,
        dir: &Path,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> Result<AbortedTxns, checkpoint::StepError> {
        let path = dir.join(ABORTED_TXNS_FILE);
        let bytes = match checkpoint::read_small(storage, &path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(AbortedTxns::default()),
            Err(source) => {
                return Err(checkpoint::StepError {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        let mut all = Vec::new();
        for chunk in bytes.chunks(ENTRY_BYTES) {
            match AbortedTxn::decode(chunk) {
                Some(e)
                    if all
                        .last()
                        .is_none_or(|l: &AbortedTxn| l.last_offset < e.last_offset) =>
                {
                    all.push(e)
                }
                _ => break,
            }
        }
        let valid_bytes = (all.len() * ENTRY_BYTES) as u64;
        let read = all.len();
        all.retain(|e| e.last_offset >= log_start_offset && e.last_offset < log_end_offset);
        let mut txns = AbortedTxns {
            entries: all,
            file_len: valid_bytes,
            stale_in_file: 0,
            needs_rewrite: false,
            removals: 0,
        };
        if txns.entries.len() != read || valid_bytes != bytes.len() as u64 {
            txns.rewrite(storage, dir)?;
        }
        Ok(txns)
    }

    /// Appends `new` (markers in offset order, all after the current entries) to the file and
    /// fsyncs it; after a failed rewrite, rewrites the whole file atomically instead. On error
    /// the file may hold a torn tail that the next load ignores; the in-memory entries are
    /// unchanged.
    pub(crate) fn append(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        new: &[AbortedTxn],
    ) -> Result<(), checkpoint::StepError> {
        if new.is_empty() {
            return Ok(());
        }
        for (i, e) in new.iter().enumerate() {
            let previous = if i == 0 {
                self.entries.last()
            } else {
                new.get(i - 1)
            };
            assert!(
                previous.is_none_or(|p| p.last_offset < e.last_offset),
                "aborted transactions are appended in marker order"
            );
        }
        if self.needs_rewrite {
            let old_len = self.entries.len();
            self.entries.extend_from_slice(new);
            if let Err(e) = self.rewrite(storage, dir) {
                self.entries.truncate(old_len);
                return Err(e);
            }
            self.drop_excess(dir);
            return Ok(());
        }
        let path = dir.join(ABORTED_TXNS_FILE);
        let step = |op: &'static str, r: io::Result<()>| {
            r.map_err(|source| checkpoint::StepError {
                op,
                path: path.clone(),
                source,
            })
        };
        let mut bytes = Vec::with_capacity(new.len() * ENTRY_BYTES);
        for e in new {
            e.encode(&mut bytes);
        }
        let file = storage
            .open(&path, OpenMode::CreateOrOpen)
            .map_err(|source| checkpoint::StepError {
                op: "open",
                path: path.clone(),
                source,
            })?;
        let created = self.file_len == 0;
        step("write", file.write_all_at(&bytes, self.file_len))?;
        step("fsync", file.sync_data())?;
        if created {
            step("fsync directory", storage.sync_dir(dir))?;
        }
        self.file_len += bytes.len() as u64;
        self.entries.extend_from_slice(new);
        self.drop_excess(dir);
        Ok(())
    }

    /// Drops the oldest entries beyond [`ABORTED_TXNS_MAX`] (they stay in the file until the
    /// next rewrite).
    fn drop_excess(&mut self, dir: &Path) {
        if self.entries.len() > ABORTED_TXNS_MAX {
            let excess = self.entries.len() - ABORTED_TXNS_MAX;
            tracing::error!(
                dir = %dir.display(),
                dropped = excess,
                "more aborted transactions than a partition keeps; dropping the oldest"
            );
            self.entries.drain(..excess);
            self.stale_in_file += excess;
            self.removals += 1;
        }
    }

    /// Removes the last `count` entries from memory and rewrites the file without them (an
    /// append whose entries were written but whose markers were not).
    pub(crate) fn undo_last(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        count: usize,
    ) -> Result<(), checkpoint::StepError> {
        let keep = self.entries.len().saturating_sub(count);
        self.entries.truncate(keep);
        self.rewrite(storage, dir)
    }

    /// Forgets the entries whose marker is below `log_start_offset`; rewrites the file once
    /// more than half of it is stale.
    pub(crate) fn remove_before(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        log_start_offset: i64,
    ) -> Result<(), checkpoint::StepError> {
        let gone = self
            .entries
            .partition_point(|e| e.last_offset < log_start_offset);
        if gone == 0 {
            return Ok(());
        }
        self.entries.drain(..gone);
        self.stale_in_file += gone;
        self.removals += 1;
        if self.needs_rewrite || self.stale_in_file > self.entries.len() {
            self.rewrite(storage, dir)?;
        }
        Ok(())
    }

    /// The aborted transactions that may have data in `[fetch_offset, upper_bound)`: marker at
    /// or after `fetch_offset`, first offset below `upper_bound`. Oldest first.
    pub(crate) fn collect(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let from = self
            .entries
            .partition_point(|e| e.last_offset < fetch_offset);
        self.entries[from..]
            .iter()
            .filter(|e| e.first_offset < upper_bound)
            .copied()
            .collect()
    }

    /// Whether an entry's abort marker is at `offset`.
    pub(crate) fn has_marker(&self, offset: i64) -> bool {
        self.entries
            .binary_search_by_key(&offset, |e| e.last_offset)
            .is_ok()
    }

    /// Whether the batch of `producer_id` covering `[base_offset, last_offset]` belongs to an
    /// aborted transaction.
    pub(crate) fn is_aborted(&self, producer_id: i64, base_offset: i64, last_offset: i64) -> bool {
        self.aborted_txn_of(producer_id, base_offset, last_offset)
            .is_some()
    }

    /// The aborted transaction the batch of `producer_id` covering `[base_offset,
    /// last_offset]` belongs to, if any.
    pub(crate) fn aborted_txn_of(
        &self,
        producer_id: i64,
        base_offset: i64,
        last_offset: i64,
    ) -> Option<&AbortedTxn> {
        let from = self
            .entries
            .partition_point(|e| e.last_offset < last_offset);
        self.entries[from..].iter().find(|e| {
            e.producer_id == producer_id
                && e.first_offset <= base_offset
                && last_offset < e.last_offset
        })
    }

    /// Removes the entries whose marker is at one of `marker_offsets` (ascending) and rewrites
    /// the file without them (the cleaner removes those markers). Returns how many were
    /// removed; on error the in-memory entries are unchanged, the file holds either the old or
    /// the new entries, and the next change rewrites it.
    pub(crate) fn remove_markers(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        marker_offsets: &[i64],
    ) -> Result<usize, checkpoint::StepError> {
        if marker_offsets.is_empty() {
            // A group that removed only commit markers (or aborts the index no longer knows).
            return Ok(0);
        }
        let kept: Vec<AbortedTxn> = self
            .entries
            .iter()
            .filter(|e| marker_offsets.binary_search(&e.last_offset).is_err())
            .copied()
            .collect();
        let removed = self.entries.len() - kept.len();
        if removed == 0 {
            return Ok(0);
        }
        let old = std::mem::replace(&mut self.entries, kept);
        if let Err(e) = self.rewrite(storage, dir) {
            self.entries = old;
            return Err(e);
        }
        self.removals += 1;
        Ok(removed)
    }

    /// Changes each time entries leave the index (see the field).
    pub(crate) fn removals(&self) -> u64 {
        self.removals
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Replaces the file with the in-memory entries. On error the file's content is unknown
    /// (the old or the new entries) until a later rewrite succeeds: see `needs_rewrite`.
    fn rewrite(&mut self, storage: &dyn Storage, dir: &Path) -> Result<(), checkpoint::StepError> {
        let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for e in &self.entries {
            e.encode(&mut bytes);
        }
        if let Err(e) = checkpoint::write_atomic(storage, dir, ABORTED_TXNS_FILE, &bytes) {
            self.needs_rewrite = true;
            return Err(e);
        }
        self.file_len = bytes.len() as u64;
        self.stale_in_file = 0;
        self.needs_rewrite = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;
    use std::sync::Arc;

    fn txn(producer_id: i64, first_offset: i64, last_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset: last_offset + 1,
        }
    }

    #[test]
    fn given_appended_entries_when_loaded_should_read_back_those_below_log_end() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let mut txns = AbortedTxns::default();
        txns.append(&storage, dir.path(), &[txn(1, 0, 5), txn(2, 3, 9)])
            .unwrap();
        txns.append(&storage, dir.path(), &[txn(1, 10, 12)])
            .unwrap();
        let back = AbortedTxns::load(&storage, dir.path(), 0, 13).unwrap();
        assert_eq!(back.entries, txns.entries);
        // A marker that never reached the log (at or past the log end) is dropped.
        let back = AbortedTxns::load(&storage, dir.path(), 0, 12).unwrap();
        assert_eq!(back.entries, vec![txn(1, 0, 5), txn(2, 3, 9)]);
        let again = AbortedTxns::load(&storage, dir.path(), 0, 100).unwrap();
        assert_eq!(again.entries, back.entries, "the load rewrote the file");
    }

    #[test]
    fn given_torn_tail_when_loaded_should_keep_whole_entries() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let mut txns = AbortedTxns::default();
        txns.append(&storage, dir.path(), &[txn(1, 0, 5), txn(2, 6, 9)])
            .unwrap();
        let path = dir.path().join(ABORTED_TXNS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(ENTRY_BYTES + 20);
        std::fs::write(&path, &bytes).unwrap();
        let back = AbortedTxns::load(&storage, dir.path(), 0, 100).unwrap();
        assert_eq!(back.entries, vec![txn(1, 0, 5)]);
        bytes[3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let back = AbortedTxns::load(&storage, dir.path(), 0, 100).unwrap();
        assert!(
            back.entries.is_empty(),
            "a damaged first entry ends the file"
        );
    }

    #[test]
    fn given_fetch_range_should_collect_overlapping_aborted_transactions() {
        let txns = AbortedTxns {
            entries: vec![txn(1, 0, 5), txn(2, 3, 9), txn(3, 20, 30), txn(4, 8, 40)],
            ..AbortedTxns::default()
        };
        assert_eq!(txns.collect(6, 10), vec![txn(2, 3, 9), txn(4, 8, 40)]);
        assert_eq!(txns.collect(0, 4), vec![txn(1, 0, 5), txn(2, 3, 9)]);
        assert!(txns.collect(41, 50).is_empty());
        assert!(txns.is_aborted(4, 10, 12));
        assert!(!txns.is_aborted(4, 41, 41));
        assert!(!txns.is_aborted(3, 10, 12));
        assert_eq!(txns.aborted_txn_of(4, 10, 12), Some(&txn(4, 8, 40)));
    }

    /// Three aborted transactions, markers at 5, 9 and 12, appended to the file in `dir`.
    fn three_aborted(storage: &dyn Storage, dir: &Path) -> AbortedTxns {
        let mut txns = AbortedTxns::default();
        txns.append(storage, dir, &[txn(1, 0, 5), txn(2, 6, 9), txn(3, 10, 12)])
            .unwrap();
        txns
    }

    #[test]
    fn given_removed_markers_should_drop_their_entries_from_memory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let mut txns = three_aborted(&storage, dir.path());
        assert_eq!(
            txns.remove_markers(&storage, dir.path(), &[4, 7]).unwrap(),
            0
        );
        assert_eq!(
            txns.remove_markers(&storage, dir.path(), &[5, 7, 12])
                .unwrap(),
            2,
            "7 is no abort marker (a commit)"
        );
        assert_eq!(txns.entries, vec![txn(2, 6, 9)]);
        let back = AbortedTxns::load(&storage, dir.path(), 0, 100).unwrap();
        assert_eq!(back.entries, vec![txn(2, 6, 9)]);
        txns.append(&storage, dir.path(), &[txn(1, 13, 14)])
            .unwrap();
        let back = AbortedTxns::load(&storage, dir.path(), 0, 100).unwrap();
        assert_eq!(back.entries, vec![txn(2, 6, 9), txn(1, 13, 14)]);
    }

    /// Three entries (markers at 5, 9, 12); `change` rewrites the file, whose rename lands and
    /// whose directory fsync fails; then `appended` is appended. Returns the entries in memory
    /// and those a load (from `log_start`) reads back.
    fn failed_rewrite_then_append(
        change: impl FnOnce(&mut AbortedTxns, &dyn Storage, &Path) -> bool,
        appended: AbortedTxn,
        log_start: i64,
    ) -> (Vec<AbortedTxn>, Vec<AbortedTxn>) {
        let dir = tempfile::tempdir().unwrap();
        let faulty = crate::testing::FaultyStorage::new(Arc::new(FsStorage));
        let storage: &dyn Storage = &*faulty;
        let mut txns = three_aborted(storage, dir.path());
        faulty.fail_next_sync(dir.path().file_name().unwrap().to_str().unwrap());
        assert!(change(&mut txns, storage, dir.path()), "the rewrite failed");
        txns.append(storage, dir.path(), &[appended]).unwrap();
        let back = AbortedTxns::load(&FsStorage, dir.path(), log_start, 100).unwrap();
        (txns.entries, back.entries)
    }

    #[test]
    fn given_failed_directory_fsync_after_removing_markers_when_an_entry_is_appended_should_load_every_entry(
    ) {
        let (memory, loaded) = failed_rewrite_then_append(
            |txns, storage, dir| txns.remove_markers(storage, dir, &[5, 9]).is_err(),
            txn(4, 20, 25),
            0,
        );
        assert_eq!(
            memory.len(),
            4,
            "the failed removal changed nothing in memory"
        );
        assert_eq!(loaded, memory, "no hole in the file");
    }

    #[test]
    fn given_failed_rewrite_after_forgetting_entries_when_an_entry_is_appended_should_load_every_entry(
    ) {
        let (_, loaded) = failed_rewrite_then_append(
            |txns, storage, dir| txns.remove_before(storage, dir, 10).is_err(),
            txn(4, 20, 25),
            10,
        );
        assert_eq!(loaded, vec![txn(3, 10, 12), txn(4, 20, 25)]);
    }

    #[test]
    fn given_failed_rewrite_when_undoing_an_append_should_rewrite_at_the_next_append() {
        let (_, loaded) = failed_rewrite_then_append(
            |txns, storage, dir| txns.undo_last(storage, dir, 2).is_err(),
            txn(4, 6, 7),
            0,
        );
        assert_eq!(loaded, vec![txn(1, 0, 5), txn(4, 6, 7)]);
    }

    #[test]
    fn given_log_start_past_entries_should_forget_and_eventually_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage;
        let mut txns = three_aborted(&storage, dir.path());
        txns.remove_before(&storage, dir.path(), 10).unwrap();
        assert_eq!(txns.len(), 1);
        let back = AbortedTxns::load(&storage, dir.path(), 10, 100).unwrap();
        assert_eq!(back.entries, vec![txn(3, 10, 12)]);
    }
}
