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

/// The config of the generated (property) tests: segments of `segment_bytes` that also roll
/// after a second, a small index interval.
pub fn generated_log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        segment_ms: 1_000,
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

/// One decoded record: `(offset, key, value)`.
pub type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// A batch of `(key, value)` records (`None`: null) with the given codec and timestamp.
pub fn keyed(
    records: &[(Option<&str>, Option<&str>)],
    timestamp_ms: i64,
    compression: kafka_protocol::records::Compression,
) -> Vec<u8> {
    let kvs: Vec<runnel_model::batch::testing::KeyValue<'_>> = records
        .iter()
        .map(|(k, v)| (k.map(str::as_bytes), v.map(str::as_bytes)))
        .collect();
    runnel_log::testing::keyed_batch(&kvs, timestamp_ms, compression)
}

/// Appends one batch of keyed records (no compression), timestamped and appended at `now_ms`.
pub fn append_keyed(
    log: &PartitionLog,
    records: &[(Option<&str>, Option<&str>)],
    now_ms: i64,
) -> AppendInfo {
    let mut bytes = keyed(records, now_ms, kafka_protocol::records::Compression::None);
    log.append(&mut bytes, 0, now_ms).expect("append")
}

/// The records of whole batches, decoded by kafka-protocol. Checks every batch's CRC and that
/// batch offsets strictly increase.
pub fn decode_records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut next = i64::MIN;
    for b in Batches::new(bytes) {
        let b = b.expect("whole batch");
        b.verify_crc().expect("valid crc");
        assert!(
            b.base_offset() >= next,
            "batch at {} after {next}",
            b.base_offset()
        );
        next = b.next_offset();
        let mut buf = bytes::Bytes::copy_from_slice(b.as_bytes());
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).expect("decodes");
        for r in set.records {
            assert!(r.offset >= b.base_offset() && r.offset <= b.last_offset());
            out.push((
                r.offset,
                r.key.map(|k| k.to_vec()),
                r.value.map(|v| v.to_vec()),
            ));
        }
    }
    for w in out.windows(2) {
        assert!(w[0].0 < w[1].0, "record offsets strictly increase: {w:?}");
    }
    out
}

/// Every record from the log start, read in one go and again in small reads (which must
/// agree, gaps and all).
pub fn records_of(log: &PartitionLog) -> Vec<Rec> {
    let all = decode_records(&read_all(log));
    let mut pieces = Vec::new();
    let mut offset = log.log_start_offset();
    // Bounded: each read returns at least one batch (min_one_batch) or ends the loop.
    loop {
        let r = log.read(offset, 1, i64::MAX, true).expect("read");
        if r.batch_count == 0 {
            break;
        }
        pieces.extend(decode_records(&r.bytes));
        assert!(r.next_offset > offset);
        offset = r.next_offset;
    }
    assert_eq!(all, pieces, "one read and many small reads agree");
    all
}

/// `key -> (offset, value)` of the latest record of each key.
pub fn latest_by_key(
    records: &[Rec],
) -> std::collections::BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
    let mut map = std::collections::BTreeMap::new();
    for (offset, key, value) in records {
        if let Some(key) = key {
            map.insert(key.clone(), (*offset, value.clone()));
        }
    }
    map
}

/// Copies the files of directory `from` into the (new) directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
