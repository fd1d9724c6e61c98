//! Power loss, simulated by [`PowerLossStorage`]: what README.md promises for each flush
//! policy. With `flush.messages=1` every acknowledged record survives; with the default policy
//! (fsync only at rolls, `flush()` and close) the log after a power loss is a prefix of what
//! was acknowledged, holding at least everything flushed. Neither ever serves a corrupt batch
//! or a hole, and the log takes appends afterwards. Each seed drives both the workload and
//! which un-synced writes and directory operations the power loss keeps.

use std::path::Path;
use std::sync::Arc;

use runnel_log::testing::{producer_batch, PowerLossStorage};
use runnel_log::{LogConfig, OpenMode, PartitionLog, Storage, StorageFile};
use runnel_model::batch::{BatchView, Batches};

use crate::common::{batch_with, fs, small_config, T0_MS};

const SEEDS: u64 = 200;
const PRODUCER_ID: i64 = 7;

/// A small deterministic generator for the workload (the power loss has its own, inside
/// `PowerLossStorage`).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One acknowledged append.
struct Acked {
    last_offset: i64,
    /// The batch as stored (the log rewrote its base offset in place).
    bytes: Vec<u8>,
    /// `(base_sequence, last_sequence)` of a producer batch.
    sequences: Option<(i32, i32)>,
}

/// What one seed did and what survived.
struct Run {
    appends: usize,
    survived: usize,
    /// Everything below this offset was fsynced (explicit flush or roll) before the power loss.
    durable_end: i64,
    survived_end: i64,
}

fn config(flush_messages: u64) -> LogConfig {
    LogConfig {
        flush_messages,
        ..small_config()
    }
}

fn append_producer(log: &PartitionLog, sequence: i32, records: usize) -> Result<Acked, String> {
    let bytes = producer_batch(PRODUCER_ID, 0, sequence, records, T0_MS);
    let sequences = Some((sequence, sequence + records as i32 - 1));
    append_acked(log, bytes, sequences)
}

fn append_plain(log: &PartitionLog, records: usize, value_bytes: usize) -> Result<Acked, String> {
    append_acked(log, batch_with(records, value_bytes, T0_MS), None)
}

fn append_acked(
    log: &PartitionLog,
    mut bytes: Vec<u8>,
    sequences: Option<(i32, i32)>,
) -> Result<Acked, String> {
    let info = log
        .append(&mut bytes, 0, T0_MS)
        .map_err(|e| format!("append of sequences {sequences:?}: {e}"))?;
    Ok(Acked {
        last_offset: info.last_offset,
        bytes,
        sequences,
    })
}

/// Reads the whole log; checks that it is a sequence of whole, valid batches equal to the
/// first ones of `acked`, contiguous from offset 0. Returns how many there are.
fn check_prefix(log: &PartitionLog, acked: &[Acked], context: &str) -> usize {
    assert_eq!(log.log_start_offset(), 0, "{context}: log start offset");
    let read = log
        .read(0, usize::MAX, i64::MAX, true)
        .unwrap_or_else(|e| panic!("{context}: reading the whole log failed: {e}"));
    let mut count = 0usize;
    for (i, b) in Batches::new(&read.bytes).enumerate() {
        let b: BatchView<'_> = b.unwrap_or_else(|e| panic!("{context}: batch {i} is cut: {e}"));
        b.validate()
            .unwrap_or_else(|e| panic!("{context}: batch {i} is invalid: {e}"));
        b.verify_crc()
            .unwrap_or_else(|e| panic!("{context}: batch {i} is corrupt: {e}"));
        let expected = acked.get(i).unwrap_or_else(|| {
            panic!(
                "{context}: batch {i} at offset {} was never acknowledged",
                b.base_offset()
            )
        });
        assert!(
            b.as_bytes() == expected.bytes.as_slice(),
            "{context}: batch {i} (offset {}) differs from the acknowledged one (offset {})",
            b.base_offset(),
            expected.last_offset
        );
        count += 1;
    }
    let end = count.checked_sub(1).map_or(0, |i| acked[i].last_offset + 1);
    assert_eq!(read.next_offset, end, "{context}: read end");
    assert_eq!(log.log_end_offset(), end, "{context}: log end offset");
    count
}

/// Appends a seeded workload, cuts the power, reopens and checks the prefix property, the
/// producer state and that the log takes appends again.
fn run(seed: u64, flush_messages: u64) -> Run {
    run_with(seed, flush_messages, false)
}

/// [`run`], closing the log cleanly before the power loss if `close_first`.
fn run_with(seed: u64, flush_messages: u64, close_first: bool) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let storage = PowerLossStorage::new(fs());
    let as_storage: Arc<dyn Storage> = storage.clone();
    let config = config(flush_messages);
    let mut rng = Rng::new(seed);

    let log = PartitionLog::open(Arc::clone(&as_storage), &path, config.clone(), T0_MS)
        .expect("open log");
    let appends = 1 + rng.below(40) as usize;
    let mut acked: Vec<Acked> = Vec::new();
    let mut next_sequence = 0i32;
    let mut flushed_end = 0i64;
    for _ in 0..appends {
        let records = 1 + rng.below(4) as usize;
        let a = if rng.below(2) == 0 {
            let a = append_producer(&log, next_sequence, records).expect("append");
            next_sequence += records as i32;
            a
        } else {
            append_plain(&log, records, 8 + rng.below(120) as usize).expect("append")
        };
        acked.push(a);
        if rng.below(8) == 0 {
            log.flush().expect("flush");
            flushed_end = log.log_end_offset();
        }
    }
    let rolled_end = *log.segment_base_offsets().last().unwrap();
    let mut durable_end = flushed_end.max(rolled_end);
    if close_first {
        log.close().expect("close");
        durable_end = log.log_end_offset();
    }
    drop(log);

    storage.power_loss(seed).expect("power loss");

    let context = format!("seed {seed}, flush_messages {flush_messages}");
    let log = PartitionLog::open(Arc::clone(&as_storage), &path, config.clone(), T0_MS)
        .unwrap_or_else(|e| panic!("{context}: reopening after the power loss failed: {e}"));
    let survived = check_prefix(&log, &acked, &context);
    let survived_end = log.log_end_offset();
    assert!(
        survived_end >= durable_end,
        "{context}: offsets below {durable_end} were fsynced but only {survived_end} survived"
    );

    // The producer state is that of the surviving prefix.
    let last_producer = acked[..survived]
        .iter()
        .filter_map(|a| a.sequences.map(|(_, last)| (last, a.last_offset)))
        .next_back();
    let state = log
        .producer_state(PRODUCER_ID)
        .map(|s| (s.last_sequence, s.last_offset));
    assert_eq!(state, last_producer, "{context}: producer state");

    // The log takes appends again, the producer continuing where the survivors end.
    let next_sequence = last_producer.map_or(0, |(last, _)| last + 1);
    let mut after: Vec<Acked> = acked.drain(..survived).collect();
    after.push(
        append_producer(&log, next_sequence, 2)
            .unwrap_or_else(|e| panic!("{context}: after the power loss: {e}")),
    );
    after.push(
        append_plain(&log, 3, 16)
            .unwrap_or_else(|e| panic!("{context}: after the power loss: {e}")),
    );
    assert_eq!(
        check_prefix(&log, &after, &context),
        after.len(),
        "{context}: appends after the power loss"
    );
    log.close().expect("close");

    Run {
        appends,
        survived,
        durable_end,
        survived_end,
    }
}

fn report(policy: &str, runs: &[Run]) {
    let appends: usize = runs.iter().map(|r| r.appends).sum();
    let survived: usize = runs.iter().map(|r| r.survived).sum();
    let lost_acked = runs.iter().filter(|r| r.survived < r.appends).count();
    let beyond_durable = runs
        .iter()
        .filter(|r| r.survived_end > r.durable_end)
        .count();
    eprintln!(
        "{policy}: {} seeds, {appends} acknowledged appends, {survived} survived \
         ({:.1} of {:.1} per seed); {lost_acked} seeds lost acknowledged appends; \
         {beyond_durable} kept appends past the last explicit flush or roll",
        runs.len(),
        survived as f64 / runs.len() as f64,
        appends as f64 / runs.len() as f64,
    );
}

#[test]
fn given_flush_messages_1_when_power_is_lost_should_keep_every_acknowledged_record() {
    let runs: Vec<Run> = (0..SEEDS).map(|seed| run(seed, 1)).collect();
    for (seed, r) in runs.iter().enumerate() {
        assert_eq!(
            r.survived, r.appends,
            "seed {seed}: acknowledged appends lost with flush_messages=1"
        );
    }
    report("flush_messages=1", &runs);
}

#[test]
fn given_default_flush_policy_when_power_is_lost_should_keep_a_prefix_holding_all_flushed() {
    let runs: Vec<Run> = (0..SEEDS)
        .map(|seed| run(seed, LogConfig::default().flush_messages))
        .collect();
    report("default policy", &runs);
    // The simulation bites: without fsyncs, acknowledged appends are lost for some seeds.
    assert!(
        runs.iter().any(|r| r.survived < r.appends),
        "no seed lost an un-synced append: the power loss is not simulated"
    );
}

#[test]
fn given_clean_close_when_power_is_lost_should_keep_every_acknowledged_record() {
    for seed in 0..SEEDS / 4 {
        let r = run_with(seed, LogConfig::default().flush_messages, true);
        assert_eq!(
            r.survived, r.appends,
            "seed {seed}: lost after a clean close"
        );
    }
}

/// Creates `path` holding `content`, fsynced (its directory entry is not).
fn create_synced(storage: &dyn Storage, path: &Path, content: &[u8]) -> Box<dyn StorageFile> {
    let file = storage.open(path, OpenMode::CreateNew).unwrap();
    file.write_all_at(content, 0).unwrap();
    file.sync_data().unwrap();
    file
}

#[test]
fn given_unsynced_writes_and_entries_when_power_is_lost_should_keep_only_prefixes() {
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let dir = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new(fs());
        let synced = dir.path().join("synced");
        let fresh = dir.path().join("fresh");
        let f = create_synced(&*storage, &synced, b"durable");
        storage.sync_dir(dir.path()).unwrap();
        f.write_all_at(b"-one", 7).unwrap();
        f.write_all_at(b"-two", 11).unwrap();
        create_synced(&*storage, &fresh, b"fresh");

        storage.power_loss(seed).unwrap();
        assert!(
            f.write_all_at(b"x", 0).is_err(),
            "a handle from before the power loss is dead"
        );
        let content = std::fs::read(&synced).unwrap();
        let full = b"durable-one-two";
        assert!(
            content.len() >= 7 && full.starts_with(&content),
            "seed {seed}: {content:?} is not durable content plus a prefix of the writes"
        );
        let fresh_exists = Path::new(&fresh).exists();
        if fresh_exists {
            assert_eq!(std::fs::read(&fresh).unwrap(), b"fresh");
        }
        outcomes.insert((content.len(), fresh_exists));
    }
    // Every cut, from nothing to everything, and the unsynced entry both kept and lost.
    let lengths: std::collections::BTreeSet<usize> = outcomes.iter().map(|o| o.0).collect();
    assert!(
        lengths.contains(&7) && lengths.contains(&15),
        "{outcomes:?}"
    );
    assert!(outcomes.iter().any(|o| o.1) && outcomes.iter().any(|o| !o.1));
}

#[test]
fn given_rename_without_sync_dir_when_power_is_lost_should_be_whole_or_reverted() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..32 {
        let dir = tempfile::tempdir().unwrap();
        let storage = PowerLossStorage::new(fs());
        let (tmp, target) = (dir.path().join("cp.tmp"), dir.path().join("cp"));
        create_synced(&*storage, &target, b"old");
        create_synced(&*storage, &tmp, b"new");
        storage.sync_dir(dir.path()).unwrap();
        storage.rename(&tmp, &target).unwrap();

        storage.power_loss(seed).unwrap();
        let state = (std::fs::read(&target).unwrap(), std::fs::read(&tmp).ok());
        assert!(
            state == (b"old".to_vec(), Some(b"new".to_vec())) || state == (b"new".to_vec(), None),
            "seed {seed}: {state:?}"
        );
        seen.insert(state);
    }
    assert_eq!(seen.len(), 2, "both outcomes happen: {seen:?}");
}
