//! Reads that never wait for the disk (`storage::memory_only`): what a fetch on an async
//! worker thread tries first.

use bytes::BytesMut;
use runnel_log::storage::{is_would_block, memory_only};
use runnel_log::testing::{evict_from_page_cache, evicts_and_tells};
use runnel_log::{FsStorage, LogConfig, OpenMode, Storage};

use crate::common::*;

fn scratch() -> tempfile::TempDir {
    // Under the target directory: on the build's disk, not a tmpfs /tmp.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn given_evicted_bytes_a_memory_only_read_should_answer_would_block_and_a_plain_read_the_bytes() {
    let dir = scratch();
    let path = dir.path().join("f");
    let storage = FsStorage::new();
    let file = storage.open(&path, OpenMode::CreateNew).unwrap();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    file.write_all_at(&data, 0).unwrap();
    evict_from_page_cache(&path).unwrap();
    let strong = evicts_and_tells(dir.path());

    let mut buf = vec![0u8; 64 << 10];
    match memory_only(|| file.read_at(&mut buf, 4096)) {
        Err(e) => assert!(is_would_block(&e), "{e}"),
        Ok(n) => {
            assert!(!strong, "read {n} bytes that should have been evicted");
            assert_eq!(&buf[..n], &data[4096..4096 + n]);
        }
    }
    let mut out = BytesMut::from(&b"kept"[..]);
    match memory_only(|| file.read_exact_into(&mut out, 256 << 10, 512 << 10)) {
        Err(e) => {
            assert!(is_would_block(&e), "{e}");
            assert_eq!(
                &out[..],
                b"kept",
                "a failed read leaves the buffer as it was"
            );
        }
        Ok(()) => assert!(!strong, "read bytes that should have been evicted"),
    }

    // may_block lifts the mode: the fallback of a refused read waits for the disk.
    let mut lifted = vec![0u8; 8192];
    memory_only(|| runnel_log::storage::may_block(|| file.read_exact_at(&mut lifted, 0))).unwrap();
    assert_eq!(lifted, data[..8192]);
    evict_from_page_cache(&path).unwrap();

    // Outside the mode the same reads wait for the disk and return the bytes; then they are
    // in memory, and the mode reads them too.
    let mut all = vec![0u8; data.len()];
    file.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(all, data);
    let mut again = vec![0u8; data.len()];
    let read = memory_only(|| file.read_exact_at(&mut again, 0));
    if strong {
        read.unwrap();
        assert_eq!(again, data);
    }
    // The mode ends with the call.
    let mut later = BytesMut::new();
    evict_from_page_cache(&path).unwrap();
    file.read_exact_into(&mut later, 4096, 0).unwrap();
    assert_eq!(&later[..], &data[..4096]);
}

#[test]
fn given_a_panic_inside_memory_only_the_mode_should_end_with_it() {
    let dir = scratch();
    let path = dir.path().join("f");
    let file = FsStorage::new().open(&path, OpenMode::CreateNew).unwrap();
    file.write_all_at(&[7u8; 8192], 0).unwrap();
    let caught = std::panic::catch_unwind(|| memory_only(|| panic!("inside")));
    assert!(caught.is_err());
    evict_from_page_cache(&path).unwrap();
    let mut buf = [0u8; 8192];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [7u8; 8192]);
}

#[test]
fn given_an_evicted_segment_a_memory_only_log_read_should_be_would_block_not_a_failure() {
    let dir = scratch();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    };
    let log = open(fs(), dir.path(), config);
    for _ in 0..64 {
        let mut b = batch_with(8, 512, T0_MS);
        log.append(&mut b, 0, T0_MS).unwrap();
    }
    log.flush().unwrap();
    let everything = read_all(&log);
    evict_from_page_cache(&seg_path(dir.path(), 0, ".log")).unwrap();
    let strong = evicts_and_tells(dir.path());

    match memory_only(|| log.read(0, usize::MAX, i64::MAX, true)) {
        Err(e) => assert!(e.is_would_block(), "{e}"),
        Ok(r) => assert!(!strong, "read {} evicted bytes", r.bytes.len()),
    }
    // Not a failure: the log serves the same bytes when allowed to wait, and takes writes.
    assert!(!log.has_failed());
    assert_eq!(read_all(&log), everything);
    append(&log, 1);
}
