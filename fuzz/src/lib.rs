//! Shared code of Runnel's fuzz targets and of the seed generator (`examples/seedgen.rs`):
//! the input formats the targets decode (so that seeds and targets agree), and a scratch
//! partition directory on tmpfs.
//!
//! Nothing here is part of the broker; see `fuzz/README.md`.

use std::path::{Path, PathBuf};

/// The broker's global allocator, `runnel_broker::huge_alloc`, compiled from the broker's own
/// source file (the same code, without the broker's dependency tree). The generated codecs
/// pre-allocate from wire counts; the broker serves such huge requests with uncommitted
/// address space, and so must the fuzzer, or libFuzzer reports them as out-of-memory.
#[path = "../../crates/broker/src/huge_alloc.rs"]
pub mod huge_alloc;
use std::sync::OnceLock;

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use runnel_log::{FsStorage, LogConfig, PartitionLog, Storage};
use runnel_model::batch::Batches;

// ------------------------------------------------------------------ request_decode

/// Every API key the codec knows, in ascending key order. `kafka-protocol` has no iterator
/// over its keys, so this probes every `i16` key that could be one.
pub fn all_api_keys() -> &'static [ApiKey] {
    static KEYS: OnceLock<Vec<ApiKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..=i16::MAX)
            .take(1024)
            .filter_map(|k| ApiKey::try_from(k).ok())
            .collect()
    })
}

/// The first input byte of `request_decode` that means "the rest is a raw frame", without
/// steering (reaches unknown keys and unsupported versions).
pub const RAW_FRAME: u8 = 0xff;

/// Turns a `request_decode` input into a request frame (without its size prefix).
///
/// Format: `[selector][version byte][rest...]`. Unless `selector == RAW_FRAME`, the frame is
/// `api_key (i16) | api_version (i16) | rest`, with `api_key = all_api_keys()[selector %
/// n]` and `api_version = min + version_byte % (max - min + 1)` from the codec's
/// `valid_versions()`: every key and version is reached by the first two bytes, and `rest`
/// starts with the correlation id. With `selector == RAW_FRAME` the frame is everything after
/// the selector.
pub fn steer_request(data: &[u8]) -> Vec<u8> {
    match data {
        [RAW_FRAME, rest @ ..] => rest.to_vec(),
        [selector, version, rest @ ..] => {
            let keys = all_api_keys();
            let key = keys[usize::from(*selector) % keys.len()];
            let range = key.valid_versions();
            let span = i32::from(range.max) - i32::from(range.min) + 1;
            let version = (i32::from(range.min) + i32::from(*version) % span) as i16;
            let mut frame = Vec::with_capacity(4 + rest.len());
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(rest);
            frame
        }
        _ => data.to_vec(),
    }
}

/// The inverse of [`steer_request`] for a frame of a known key and codec version: the input
/// that steers to exactly `frame`. Used by the seed generator.
pub fn unsteer_request(frame: &[u8]) -> Option<Vec<u8>> {
    let key = ApiKey::try_from(i16::from_be_bytes([*frame.first()?, *frame.get(1)?])).ok()?;
    let version = i16::from_be_bytes([*frame.get(2)?, *frame.get(3)?]);
    let selector = all_api_keys().iter().position(|k| *k == key)?;
    let range = key.valid_versions();
    if selector >= usize::from(RAW_FRAME) || !(range.min..=range.max).contains(&version) {
        return None;
    }
    let mut input = vec![selector as u8, (version - range.min) as u8];
    input.extend_from_slice(&frame[4..]);
    Some(input)
}

// ------------------------------------------------------------------ partition directories

/// A partition directory described by a fuzz input (`segment_recovery`, `index_files`).
///
/// Format (all integers big-endian):
///
/// ```text
/// flags0: u8   bit0 clean-shutdown marker      bit1 .index section follows
///              bit2 .timeindex section follows  bits3-4 index_interval_bytes (0, 1, 100, 4096)
///              bit5 log-start-offset-checkpoint section follows
///              bit6 leader-epoch-checkpoint section follows
///              bit7 a second segment follows the first
/// flags1: u8   bit0 producer snapshot section follows (u32 offset, then a section)
///              bit1 small segments (segment_bytes 1024: appends roll)
///              bit2 LogAppendTime
///              bit3 recompute the CRC of every whole v2 batch in the .log files before
///                   writing them (`fix_crcs`), so mutated headers still pass the CRC check
/// sections, each `len: u16` then `len` bytes (cut short at the end of the input), in this
/// order, each only if its flag is set:
///   .index, .timeindex, log-start-offset-checkpoint, leader-epoch-checkpoint,
///   snapshot (`offset: u32` first),
/// then, with a second segment: `base_offset: u64` (masked to i64), the first .log as a
/// section, and the rest is the second .log; else the rest is the first (only) .log.
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub clean_shutdown: bool,
    pub index: Option<Vec<u8>>,
    pub time_index: Option<Vec<u8>>,
    /// 0..=3: index_interval_bytes 0, 1, 100, 4096.
    pub interval: u8,
    pub log_start_checkpoint: Option<Vec<u8>>,
    pub epoch_checkpoint: Option<Vec<u8>>,
    pub snapshot: Option<(u32, Vec<u8>)>,
    pub small_segments: bool,
    pub log_append_time: bool,
    /// Recompute batch CRCs before writing the `.log` files (see [`fix_crcs`]).
    pub fix_crcs: bool,
    pub log: Vec<u8>,
    /// A second segment: its base offset and `.log` bytes (no index files: it is scanned).
    pub second: Option<(i64, Vec<u8>)>,
}

const INTERVALS: [u64; 4] = [0, 1, 100, 4096];

impl DirSpec {
    pub fn index_interval_bytes(&self) -> u64 {
        INTERVALS[usize::from(self.interval & 3)]
    }

    pub fn parse(data: &[u8]) -> DirSpec {
        let mut r = Reader(data);
        let f0 = r.u8();
        let f1 = r.u8();
        let mut spec = DirSpec {
            clean_shutdown: f0 & 1 != 0,
            interval: (f0 >> 3) & 3,
            small_segments: f1 & 2 != 0,
            log_append_time: f1 & 4 != 0,
            fix_crcs: f1 & 8 != 0,
            ..DirSpec::default()
        };
        if f0 & 2 != 0 {
            spec.index = Some(r.section());
        }
        if f0 & 4 != 0 {
            spec.time_index = Some(r.section());
        }
        if f0 & 0x20 != 0 {
            spec.log_start_checkpoint = Some(r.section());
        }
        if f0 & 0x40 != 0 {
            spec.epoch_checkpoint = Some(r.section());
        }
        if f1 & 1 != 0 {
            let offset = r.u32();
            spec.snapshot = Some((offset, r.section()));
        }
        if f0 & 0x80 != 0 {
            let base = (r.u64() & i64::MAX as u64) as i64;
            spec.log = r.section();
            spec.second = Some((base, r.rest()));
        } else {
            spec.log = r.rest();
        }
        spec
    }

    /// The input that [`DirSpec::parse`] reads back as `self` (sections longer than 65535
    /// bytes are not representable and are cut).
    pub fn encode(&self) -> Vec<u8> {
        let mut f0 = (self.interval & 3) << 3;
        let mut f1 = 0u8;
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, bytes: &[u8]| {
            let n = bytes.len().min(u16::MAX as usize);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&bytes[..n]);
        };
        if self.clean_shutdown {
            f0 |= 1;
        }
        if let Some(b) = &self.index {
            f0 |= 2;
            put(&mut out, b);
        }
        if let Some(b) = &self.time_index {
            f0 |= 4;
            put(&mut out, b);
        }
        if let Some(b) = &self.log_start_checkpoint {
            f0 |= 0x20;
            put(&mut out, b);
        }
        if let Some(b) = &self.epoch_checkpoint {
            f0 |= 0x40;
            put(&mut out, b);
        }
        if let Some((offset, b)) = &self.snapshot {
            f1 |= 1;
            out.extend_from_slice(&offset.to_be_bytes());
            put(&mut out, b);
        }
        if self.small_segments {
            f1 |= 2;
        }
        if self.log_append_time {
            f1 |= 4;
        }
        if self.fix_crcs {
            f1 |= 8;
        }
        if let Some((base, second)) = &self.second {
            f0 |= 0x80;
            out.extend_from_slice(&(*base as u64).to_be_bytes());
            put(&mut out, &self.log);
            out.extend_from_slice(second);
        } else {
            out.extend_from_slice(&self.log);
        }
        let mut input = vec![f0, f1];
        input.extend_from_slice(&out);
        input
    }

    /// Writes the files into `dir` (which must exist and be empty).
    pub fn write_to(&self, dir: &Path) {
        let w = |name: String, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes).expect("write scratch file");
        };
        let log_bytes = |b: &[u8]| {
            let mut b = b.to_vec();
            if self.fix_crcs {
                fix_crcs(&mut b);
            }
            b
        };
        w(stem(0) + ".log", &log_bytes(&self.log));
        if let Some(b) = &self.index {
            w(stem(0) + ".index", b);
        }
        if let Some(b) = &self.time_index {
            w(stem(0) + ".timeindex", b);
        }
        if let Some(b) = &self.log_start_checkpoint {
            w("log-start-offset-checkpoint".into(), b);
        }
        if let Some(b) = &self.epoch_checkpoint {
            w("leader-epoch-checkpoint".into(), b);
        }
        if let Some((offset, b)) = &self.snapshot {
            w(stem(i64::from(*offset)) + ".snapshot", b);
        }
        if let Some((base, b)) = &self.second {
            w(stem(*base) + ".log", &log_bytes(b));
        }
        if self.clean_shutdown {
            w("clean-shutdown".into(), b"");
        }
    }
}

/// Recomputes the CRC-32C of every whole magic-2 batch found by walking `bytes` batch by
/// batch (by `batch_length`), stopping at the first that is not whole. Lets the fuzzer reach
/// the code behind the CRC check with headers it mutated.
pub fn fix_crcs(bytes: &mut [u8]) {
    let mut pos = 0usize;
    while let Some(header) = bytes.get(pos..pos + 17) {
        let batch_length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if batch_length < 49 {
            break;
        }
        let end = pos + 12 + batch_length as usize;
        if end > bytes.len() {
            break;
        }
        if header[16] == 2 {
            let crc = crc32c::crc32c(&bytes[pos + 21..end]);
            bytes[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        }
        pos = end;
    }
}

/// Kafka's segment file stem: the base offset in 20 zero-padded digits.
pub fn stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let t = self.take(4);
        b[..t.len()].copy_from_slice(t);
        u32::from_be_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let t = self.take(8);
        b[..t.len()].copy_from_slice(t);
        u64::from_be_bytes(b)
    }
    fn section(&mut self) -> Vec<u8> {
        let t = self.take(2);
        let n = match t {
            [a, b] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        };
        self.take(n).to_vec()
    }
    fn rest(&mut self) -> Vec<u8> {
        self.take(usize::MAX).to_vec()
    }
}

/// A per-process scratch directory, on tmpfs when there is one (`/dev/shm`): recovery fsyncs
/// every file it touches, which costs nothing on tmpfs. `RUNNEL_FUZZ_TMP` overrides the
/// parent. Emptied (re-created) by [`Scratch::fresh`] before every input.
pub struct Scratch {
    root: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let parent = std::env::var_os("RUNNEL_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            });
        // Directories left by fuzzer processes that are gone (libFuzzer exits without
        // running destructors).
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("runnel-fuzz-")) else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = parent.join(format!("runnel-fuzz-{}", std::process::id()));
        Scratch { root }
    }

    /// An empty partition directory (the previous input's is removed).
    pub fn fresh(&self) -> PathBuf {
        let _ = std::fs::remove_dir_all(&self.root);
        let dir = self.root.join("topic-0");
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        dir
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_spec_round_trips() {
        let spec = DirSpec {
            clean_shutdown: true,
            index: Some(vec![1, 2, 3]),
            time_index: Some(vec![]),
            interval: 2,
            log_start_checkpoint: Some(b"0\n5\n".to_vec()),
            epoch_checkpoint: None,
            snapshot: Some((7, vec![9; 10])),
            small_segments: true,
            log_append_time: false,
            fix_crcs: true,
            log: vec![5; 100],
            second: Some((42, vec![6; 50])),
        };
        assert_eq!(DirSpec::parse(&spec.encode()), spec);
    }
}

// ------------------------------------------------------------------ index_files

/// The index files of an `index_files` input.
///
/// Format: `flags: u8` (bit0 clean-shutdown marker, bit1 `.index` present, bit2 `.timeindex`
/// present, bit3 the template has two segments — the files replaced are the first segment's,
/// which is then not the active one), `len: u16` and the `.index` bytes, then the rest is the
/// `.timeindex`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub clean_shutdown: bool,
    pub two_segments: bool,
    pub index: Option<Vec<u8>>,
    pub time_index: Option<Vec<u8>>,
}

impl IndexSpec {
    pub fn parse(data: &[u8]) -> IndexSpec {
        let mut r = Reader(data);
        let flags = r.u8();
        let index = r.section();
        let time_index = r.rest();
        IndexSpec {
            clean_shutdown: flags & 1 != 0,
            two_segments: flags & 8 != 0,
            index: (flags & 2 != 0).then_some(index),
            time_index: (flags & 4 != 0).then_some(time_index),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.clean_shutdown {
            flags |= 1;
        }
        if self.index.is_some() {
            flags |= 2;
        }
        if self.time_index.is_some() {
            flags |= 4;
        }
        if self.two_segments {
            flags |= 8;
        }
        let index = self.index.as_deref().unwrap_or_default();
        let n = index.len().min(u16::MAX as usize);
        let mut out = vec![flags];
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&index[..n]);
        out.extend_from_slice(self.time_index.as_deref().unwrap_or_default());
        out
    }
}

/// One stored batch of an [`IndexTemplate`]: its offsets and exact bytes.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub bytes: Vec<u8>,
}

/// The valid log next to which `index_files` puts arbitrary index files: 24 small batches
/// (timestamps mostly rising, some going back) appended by `PartitionLog` itself with an index
/// interval of 100 bytes, so that the real index files have entries, then closed cleanly.
#[derive(Debug, Clone)]
pub struct IndexTemplate {
    pub segment_bytes: u64,
    /// Name and content of every file of the closed log, clean-shutdown marker excluded.
    pub files: Vec<(String, Vec<u8>)>,
    /// Base offsets of the segments (one, or two).
    pub segments: Vec<i64>,
    pub batches: Vec<StoredBatch>,
    pub end: i64,
}

/// `now_ms` the fuzz targets give the log.
pub const NOW_MS: i64 = 1_700_000_000_000;

impl IndexTemplate {
    pub fn config(&self) -> LogConfig {
        LogConfig {
            index_interval_bytes: 100,
            segment_bytes: self.segment_bytes,
            ..LogConfig::default()
        }
    }

    /// Builds the template log in `dir` (empty) and reads its files back.
    pub fn build(two_segments: bool, dir: &Path) -> IndexTemplate {
        let batches: Vec<Vec<u8>> = (0..24)
            .map(|i: i64| {
                let values: Vec<Vec<u8>> = (0..1 + i % 4)
                    .map(|r| vec![b'a' + (r as u8); (i as usize * 7) % 40])
                    .collect();
                let kvs: Vec<runnel_model::batch::testing::KeyValue<'_>> =
                    values.iter().map(|v| (None, Some(v.as_slice()))).collect();
                let ts = NOW_MS + i * 10 - if i % 5 == 3 { 35 } else { 0 };
                runnel_model::batch::testing::build_batch(0, ts, &kvs)
            })
            .collect();
        let total: usize = batches.iter().map(Vec::len).sum();
        // Two thirds: the first segment rolls once, the rest (a third and a batch) fits the
        // second.
        let segment_bytes = if two_segments {
            (total * 2 / 3) as u64
        } else {
            1 << 30
        };
        let mut t = IndexTemplate {
            segment_bytes,
            files: Vec::new(),
            segments: Vec::new(),
            batches: Vec::new(),
            end: 0,
        };
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
        let log = PartitionLog::open(storage, dir, t.config(), NOW_MS).expect("open template");
        for mut b in batches {
            log.append(&mut b, 0, NOW_MS).expect("append to template");
        }
        t.end = log.log_end_offset();
        t.segments = log.segment_base_offsets();
        assert_eq!(t.segments.len(), if two_segments { 2 } else { 1 });
        log.close().expect("close template");
        drop(log);
        for entry in std::fs::read_dir(dir).expect("list template") {
            let entry = entry.expect("list template");
            let name = entry.file_name().into_string().expect("UTF-8 name");
            if name != "clean-shutdown" {
                t.files
                    .push((name, std::fs::read(entry.path()).expect("read template")));
            }
        }
        t.files.sort();
        for &base in &t.segments {
            let name = format!("{}.log", stem(base));
            let (_, bytes) = t
                .files
                .iter()
                .find(|(n, _)| *n == name)
                .expect("segment file");
            for v in Batches::new(bytes) {
                let v = v.expect("template batch");
                t.batches.push(StoredBatch {
                    base_offset: v.base_offset(),
                    next_offset: v.next_offset(),
                    max_timestamp: v.max_timestamp(),
                    bytes: v.as_bytes().to_vec(),
                });
            }
        }
        assert_eq!(t.batches.last().map(|b| b.next_offset), Some(t.end));
        t
    }

    /// Every stored batch, in offset order, as one byte string.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.batches
            .iter()
            .flat_map(|b| b.bytes.iter().copied())
            .collect()
    }

    /// A file of the first segment (`"index"`, `"timeindex"`, `"log"`).
    pub fn first_segment_file(&self, ext: &str) -> Option<&[u8]> {
        let name = format!("{}.{ext}", stem(self.segments[0]));
        self.files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.as_slice())
    }
}

// ------------------------------------------------------------------ known findings

/// Whether the known finding `name` is relaxed for this run: `RUNNEL_FUZZ_RELAX` holds a
/// comma-separated list of names (or `all`). By default nothing is relaxed, so a known finding
/// that is not fixed yet fails the run; long runs relax the known ones to explore past them.
/// The names and what each relaxes are listed in `fuzz/README.md`.
pub fn relaxed(name: &str) -> bool {
    static RELAX: OnceLock<Vec<String>> = OnceLock::new();
    RELAX
        .get_or_init(|| {
            std::env::var("RUNNEL_FUZZ_RELAX")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|r| r == name || r == "all")
}
