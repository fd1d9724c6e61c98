//! Small files replaced atomically: write `NAME.tmp`, fsync it, rename over `NAME`, fsync the
//! directory. A crash leaves either the old or the new content, never a mix.

use std::path::{Path, PathBuf};

use crate::storage::{OpenMode, Storage};

/// Suffix of the temporary file of an atomic replace; leftovers are removed at open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Largest checkpoint file the log reads.
pub(crate) const CHECKPOINT_BYTES_MAX: u64 = 32 * 1024 * 1024;

/// A failed step of a checkpoint write: which step, on which file.
#[derive(Debug)]
pub(crate) struct StepError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn step<T>(op: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T, StepError> {
    r.map_err(|source| StepError {
        op,
        path: path.to_path_buf(),
        source,
    })
}

/// Atomically replaces `dir/name` with `contents`.
pub(crate) fn write_atomic(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), StepError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let file = step("create", &tmp, storage.open(&tmp, OpenMode::CreateOrOpen))?;
    step("truncate", &tmp, file.set_len(0))?;
    step("write", &tmp, file.write_all_at(contents, 0))?;
    step("fsync", &tmp, file.sync_data())?;
    drop(file);
    step("rename", &path, storage.rename(&tmp, &path))?;
    step("fsync directory", dir, storage.sync_dir(dir))?;
    Ok(())
}

/// The content of `path`, `None` if it does not exist. Errors if larger than
/// [`CHECKPOINT_BYTES_MAX`].
pub(crate) fn read_small(storage: &dyn Storage, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let file = match storage.open(path, OpenMode::ReadWrite) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len_bytes = file.len()?;
    if len_bytes > CHECKPOINT_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{len_bytes} bytes is larger than a checkpoint may be"),
        ));
    }
    let mut buf = vec![0u8; len_bytes as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(Some(buf))
}

/// The log start offset checkpoint: `0\n<offset>\n`.
pub(crate) fn encode_log_start_offset(offset: i64) -> Vec<u8> {
    format!("0\n{offset}\n").into_bytes()
}

pub(crate) fn decode_log_start_offset(bytes: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err("unknown version".into());
    }
    let offset: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("missing offset")?;
    if offset < 0 {
        return Err(format!("negative offset {offset}"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("trailing lines".into());
    }
    Ok(offset)
}

/// Most horizon ranges the cleaner checkpoint keeps; beyond it the two oldest are merged
/// (keeping the later horizon, so tombstones and markers are kept longer, never shorter).
pub(crate) const HORIZON_RANGES_MAX: usize = 1024;

/// The cleaner's persisted state (`cleaner-checkpoint`): how far the log has been cleaned and
/// when the tombstones and transaction markers of each cleaned range may be removed.
///
/// ```text
/// 1                         version
/// <first_dirty_offset>      offsets below it were cleaned at least once
/// <count>                   horizon ranges, at most HORIZON_RANGES_MAX
/// <end> <horizon> <tomb>    tombstones and markers below end (and at or above the previous
///                           range's end) may be removed once now >= horizon (ms); tomb is 1
///                           if the range holds tombstones (its horizon triggers a clean), 0
///                           if only markers (they go at the next clean triggered otherwise)
/// ```
///
/// A tombstone or marker below `first_dirty_offset` in no range is past its horizon: ranges are
/// only dropped once their horizon has passed. Version 0 (written before markers were
/// removed) has ranges of two fields, `<end> <horizon>`, recorded only when a clean kept a new
/// tombstone (so each holds tombstones); the markers below its first dirty offset have no
/// horizon yet ([`CleanerCheckpoint::markers_unranged`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// `None`: never cleaned (or the checkpoint was lost): the whole log is dirty.
    pub first_dirty_offset: Option<i64>,
    /// `(end_offset, horizon_ms, holds_tombstones)`, end offsets strictly increasing, all
    /// `<= first_dirty_offset`.
    pub horizons: Vec<(i64, i64, bool)>,
    /// Read from a version-0 checkpoint with a first dirty offset: the markers below it have
    /// no recorded horizon, so the next clean keeps them and sets one.
    pub markers_unranged: bool,
}

impl CleanerCheckpoint {
    /// The delete horizon of a tombstone at `offset` below the first dirty offset; `None` if it
    /// has passed (no range holds the offset).
    pub(crate) fn horizon_of(&self, offset: i64) -> Option<i64> {
        let i = self.horizons.partition_point(|&(end, _, _)| end <= offset);
        self.horizons.get(i).map(|&(_, h, _)| h)
    }

    /// The earliest horizon of any range, if any.
    pub(crate) fn earliest_horizon(&self) -> Option<i64> {
        self.horizons.iter().map(|&(_, h, _)| h).min()
    }

    /// The earliest horizon of a range that holds tombstones, if any: the one that makes a
    /// clean due (a range of markers only waits for a clean due for another reason).
    pub(crate) fn earliest_tombstone_horizon(&self) -> Option<i64> {
        self.horizons
            .iter()
            .filter(|&&(_, _, tombstones)| tombstones)
            .map(|&(_, h, _)| h)
            .min()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "1\n{}\n{}\n",
            self.first_dirty_offset.unwrap_or(-1),
            self.horizons.len()
        );
        for (end, horizon, tombstones) in &self.horizons {
            s.push_str(&format!("{end} {horizon} {}\n", u8::from(*tombstones)));
        }
        s.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut lines = text.lines();
        let version = match lines.next().map(str::trim) {
            Some("0") => 0,
            Some("1") => 1,
            _ => return Err("unknown version".into()),
        };
        let first_dirty: i64 = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing first dirty offset")?;
        if first_dirty < -1 {
            return Err(format!("invalid first dirty offset {first_dirty}"));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("missing count")?;
        if count > HORIZON_RANGES_MAX {
            return Err(format!("{count} ranges, more than {HORIZON_RANGES_MAX}"));
        }
        let mut horizons = Vec::with_capacity(count);
        for _ in 0..count {
            let line = lines.next().ok_or("fewer ranges than the count")?;
            let mut fields = line.split_whitespace();
            let end: i64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or("bad range end")?;
            let horizon: i64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or("bad range horizon")?;
            let tombstones = match (version, fields.next()) {
                (0, None) => true,
                (1, Some("1")) => true,
                (1, Some("0")) => false,
                _ => return Err("bad range tombstone flag".into()),
            };
            if fields.next().is_some() {
                return Err("trailing fields".into());
            }
            if horizons.last().is_some_and(|&(e, _, _)| e >= end) || end > first_dirty {
                return Err(format!("range end {end} out of order"));
            }
            horizons.push((end, horizon, tombstones));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("trailing lines".into());
        }
        Ok(CleanerCheckpoint {
            first_dirty_offset: (first_dirty >= 0).then_some(first_dirty),
            horizons,
            markers_unranged: version == 0 && first_dirty >= 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;

    #[test]
    fn given_log_start_checkpoint_should_round_trip_and_reject_damage() {
        assert_eq!(
            decode_log_start_offset(&encode_log_start_offset(42)),
            Ok(42)
        );
        for bad in [&b""[..], b"1\n5\n", b"0\n", b"0\n-3\n", b"0\n5\n6\n"] {
            assert!(decode_log_start_offset(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_cleaner_checkpoint_should_round_trip_find_horizons_and_reject_damage() {
        let c = CleanerCheckpoint {
            first_dirty_offset: Some(100),
            horizons: vec![(10, 5_000, false), (60, 9_000, true)],
            markers_unranged: false,
        };
        assert_eq!(CleanerCheckpoint::decode(&c.encode()), Ok(c.clone()));
        assert_eq!(c.horizon_of(0), Some(5_000));
        assert_eq!(c.horizon_of(9), Some(5_000));
        assert_eq!(c.horizon_of(10), Some(9_000));
        assert_eq!(c.horizon_of(60), None);
        assert_eq!(c.earliest_horizon(), Some(5_000));
        assert_eq!(c.earliest_tombstone_horizon(), Some(9_000));
        let fresh = CleanerCheckpoint::default();
        assert_eq!(CleanerCheckpoint::decode(&fresh.encode()), Ok(fresh));
        for bad in [
            &b""[..],
            b"2\n5\n0\n",
            b"0\n5\n1\n",
            b"0\n5\n2\n3 1\n2 1\n",
            b"0\n5\n1\n9 1\n",
            b"0\n5\n0\nx\n",
            b"0\n5\n1\n3 1 1\n",
            b"1\n5\n1\n3 1\n",
            b"1\n5\n1\n3 1 2\n",
        ] {
            assert!(CleanerCheckpoint::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_version_0_cleaner_checkpoint_should_read_its_markers_as_unranged() {
        let old = CleanerCheckpoint::decode(b"0\n100\n1\n60 9000\n").unwrap();
        assert_eq!(old.first_dirty_offset, Some(100));
        assert_eq!(old.horizons, vec![(60, 9_000, true)], "a tombstone range");
        assert!(
            old.markers_unranged,
            "its cleans set no horizon for markers"
        );
        let never_cleaned = CleanerCheckpoint::decode(b"0\n-1\n0\n").unwrap();
        assert_eq!(never_cleaned, CleanerCheckpoint::default());
        let rewritten = CleanerCheckpoint {
            markers_unranged: false,
            ..old
        };
        assert!(rewritten.encode().starts_with(b"1\n"));
        assert_eq!(
            CleanerCheckpoint::decode(&rewritten.encode()),
            Ok(rewritten)
        );
    }

    #[test]
    fn given_atomic_write_should_replace_content_and_leave_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::new();
        write_atomic(&storage, dir.path(), "c", b"first").unwrap();
        write_atomic(&storage, dir.path(), "c", b"2nd").unwrap();
        assert_eq!(
            read_small(&storage, &dir.path().join("c")).unwrap(),
            Some(b"2nd".to_vec())
        );
        assert_eq!(
            read_small(&storage, &dir.path().join("absent")).unwrap(),
            None
        );
        assert_eq!(storage.list_dir(dir.path()).unwrap(), vec!["c"]);
    }
}
