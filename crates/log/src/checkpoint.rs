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
