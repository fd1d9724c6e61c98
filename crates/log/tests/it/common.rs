//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_log::{AppendInfo, FsStorage, LogConfig, PartitionLog, Storage};
use runnel_model::batch::testing::build_batch;
use runnel_model::batch::{validate_record_set, BatchView, Batches};

pub const T0_MS: i64 = 1_700_000_000_000;

/// `(key, value)` of one record, as `build_batch` takes it.
type Record<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

pub fn fs() -> Arc<dyn Storage> {
    Arc::new(FsStorage::new())
}

/// Small segments and a small index interval, so a few appends roll and index.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

pub fn open(storage: Arc<dyn Storage>, dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(storage, dir, config, T0_MS).expect("open log")
}

/// A valid batch of `count` records of `value_bytes` bytes each, timestamped `timestamp_ms`,
/// with a base offset the log will overwrite.
pub fn batch_with(count: usize, value_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| vec![b'a' + (i % 26) as u8; value_bytes])
        .collect();
    let records: Vec<Record<'_>> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    let bytes = build_batch(999_999, timestamp_ms, &records);
    validate_record_set(&bytes).expect("test batch is valid");
    bytes
}

pub fn batch(count: usize) -> Vec<u8> {
    batch_with(count, 8, T0_MS)
}

/// Appends one batch of `count` records at epoch 0; returns the info and the stored bytes.
pub fn append(log: &PartitionLog, count: usize) -> (AppendInfo, Vec<u8>) {
    let mut bytes = batch(count);
    let info = log.append(&mut bytes, 0, T0_MS).expect("append");
    (info, bytes)
}

/// `(base_offset, last_offset)` of each batch in `bytes`, checking that they are whole,
/// valid batches.
pub fn offsets_of(bytes: &[u8]) -> Vec<(i64, i64)> {
    Batches::new(bytes)
        .map(|b| {
            let b: BatchView<'_> = b.expect("whole batch");
            b.validate().expect("valid batch");
            (b.base_offset(), b.last_offset())
        })
        .collect()
}

/// Everything from the log start, as one byte string.
pub fn read_all(log: &PartitionLog) -> Vec<u8> {
    let r = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .expect("read all");
    r.bytes.to_vec()
}

pub fn seg_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
