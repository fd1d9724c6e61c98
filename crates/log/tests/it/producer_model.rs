//! Model-based property test of idempotent producers: random interleavings of several
//! producers sending in order, retrying (duplicates, and retries too old to be recognised),
//! leaving gaps, using stale and bumped epochs, sending multi-batch record sets (some with a
//! bad later batch), mixed with plain batches, a clock that advances past
//! `producer_id_expiration_ms` (lazy expiry at appends and explicit expiry), clean reopens and
//! crash reopens (also with the snapshots deleted or corrupted, and with the last batch torn
//! off by the crash).
//!
//! The model is the list of stored batches plus, per producer, whether the log has state for
//! it and since which of its batches (`since`). The state it implies is Kafka's: its epoch is
//! that of its last batch, the last 5 batches of that epoch since `since` are retained; a
//! producer with state must continue its sequence (or bump its epoch and start at 0), one
//! without state (never seen, or expired) may start at any sequence and epoch. The model
//! tracks when the log has state exactly: expiry at each append and at `expire_producers`;
//! snapshots at each roll (the state after the append's expiry, before its batches) and at
//! close, the last 2 kept; a reopen loads the latest snapshot at or below the log end (none if
//! they were deleted or corrupted) and replays the producers' batches after it, which brings
//! back expired producers that appended after it, seen at the reopen.
//!
//! The log must answer every append as the model says and hold each accepted (producer, epoch,
//! sequence) exactly once. To keep that checkable, the clients never reuse a sequence space:
//! they only retry (or use a stale epoch) while the log has their state, and a producer
//! without state goes on at or past its next sequence.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use proptest::prelude::*;
use runnel_log::testing::producer_batch;
use runnel_log::{AppendInfo, LogConfig, LogError, PartitionLog, BATCHES_RETAINED_PER_PRODUCER};
use runnel_model::batch::{BatchView, Batches};

use crate::common::*;

const PIDS: [i64; 3] = [11, 22, 33];
/// The short `producer_id_expiration_ms` of most cases; the others keep Kafka's day.
const EXPIRATION_MS: i64 = 10_000;

#[derive(Debug, Clone)]
enum Op {
    Send {
        p: usize,
        records: usize,
    },
    Retry {
        p: usize,
        back: usize,
    },
    Gap {
        p: usize,
        skip: i32,
    },
    Stale {
        p: usize,
    },
    Bump {
        p: usize,
        zero: bool,
    },
    Pair {
        p: usize,
        q: usize,
        bad_second: bool,
    },
    Plain {
        records: usize,
    },
    Tick {
        ms: i64,
    },
    Expire,
    CloseReopen,
    CrashReopen,
    CrashDropSnapshots,
    CrashCorruptSnapshots,
    CrashCutLastBatch,
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PIDS.len();
    prop_oneof![
        10 => (p.clone(), 1usize..4).prop_map(|(p, records)| Op::Send { p, records }),
        5 => (p.clone(), 0usize..8).prop_map(|(p, back)| Op::Retry { p, back }),
        3 => (p.clone(), 1i32..4).prop_map(|(p, skip)| Op::Gap { p, skip }),
        2 => p.clone().prop_map(|p| Op::Stale { p }),
        2 => (p.clone(), proptest::bool::weighted(0.7)).prop_map(|(p, zero)| Op::Bump { p, zero }),
        2 => (p.clone(), p.clone(), proptest::bool::weighted(0.3))
            .prop_map(|(p, q, bad_second)| Op::Pair { p, q, bad_second }),
        1 => (1usize..3).prop_map(|records| Op::Plain { records }),
        3 => prop_oneof![
            0..EXPIRATION_MS / 2,
            Just(EXPIRATION_MS - 1),
            Just(EXPIRATION_MS),
            EXPIRATION_MS..2 * EXPIRATION_MS,
        ]
        .prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Expire),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
        1 => Just(Op::CrashDropSnapshots),
        1 => Just(Op::CrashCorruptSnapshots),
        1 => Just(Op::CrashCutLastBatch),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    let segment_bytes = prop_oneof![Just(300u64), Just(700), Just(3_000), Just(1 << 20)];
    let expiration_ms = prop_oneof![3 => Just(EXPIRATION_MS), 1 => Just(24 * 60 * 60 * 1000)];
    (segment_bytes, expiration_ms).prop_map(|(segment_bytes, producer_id_expiration_ms)| {
        LogConfig {
            segment_bytes,
            index_interval_bytes: 100,
            producer_id_expiration_ms,
            ..LogConfig::default()
        }
    })
}

/// One stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

impl Stored {
    fn last_seq(&self) -> i32 {
        self.first_seq + (self.last_offset - self.base_offset) as i32
    }
}

/// That the log has state for a producer: built from its batches at `since` and after, last
/// appended (or replayed) at `last_seen_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    since: i64,
    last_seen_ms: i64,
}

/// The producer state the log has, derived from the stored batches.
#[derive(Debug)]
struct Derived {
    epoch: i16,
    /// The retained batches (last 5 of the current epoch since `since`), oldest first.
    retained: Vec<Stored>,
}

impl Derived {
    fn next_seq(&self) -> i32 {
        self.retained
            .last()
            .expect("a tracked producer has a batch")
            .last_seq()
            + 1
    }
}

#[derive(Debug)]
struct Model {
    stored: Vec<Stored>,
    now_ms: i64,
    expiration_ms: i64,
    /// The producers the log has state for.
    tracked: BTreeMap<i64, Tracked>,
    /// The snapshot files: offset -> the producers tracked as of that offset.
    snapshots: BTreeMap<i64, BTreeMap<i64, Tracked>>,
}

impl Model {
    fn new(expiration_ms: i64) -> Self {
        Model {
            stored: Vec::new(),
            now_ms: T0_MS,
            expiration_ms,
            tracked: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        }
    }

    fn log_end_offset(&self) -> i64 {
        self.stored.last().map_or(0, |b| b.last_offset + 1)
    }

    /// The log's state of `producer_id`, `None` if it has none.
    fn derived(&self, producer_id: i64) -> Option<Derived> {
        let since = self.tracked.get(&producer_id)?.since;
        let batches: Vec<&Stored> = self
            .stored
            .iter()
            .filter(|b| b.producer_id == producer_id && b.base_offset >= since)
            .collect();
        let epoch = batches.last().expect("tracked since a stored batch").epoch;
        let mut retained: Vec<Stored> = batches
            .iter()
            .rev()
            .filter(|b| b.epoch == epoch)
            .take(BATCHES_RETAINED_PER_PRODUCER)
            .map(|b| (*b).clone())
            .collect();
        retained.reverse();
        Some(Derived { epoch, retained })
    }

    fn history(&self, producer_id: i64) -> Vec<&Stored> {
        self.stored
            .iter()
            .filter(|b| b.producer_id == producer_id)
            .collect()
    }

    /// Where the client of `producer_id` is: the epoch of its last stored batch and the
    /// sequence after it (`(0, 0)` before its first). Epochs only grow in the log, so every
    /// sequence at or past this one is unused in that epoch.
    fn client(&self, producer_id: i64) -> (i16, i32) {
        self.history(producer_id)
            .last()
            .map_or((0, 0), |b| (b.epoch, b.last_seq() + 1))
    }

    /// True if the log has state for `producer_id` and keeps it at the next append now (which
    /// expires first).
    fn has_state_now(&self, producer_id: i64) -> bool {
        self.tracked
            .get(&producer_id)
            .is_some_and(|t| self.now_ms.saturating_sub(t.last_seen_ms) < self.expiration_ms)
    }

    /// The state the next append now is checked against.
    fn state_now(&self, producer_id: i64) -> Option<Derived> {
        self.derived(producer_id)
            .filter(|_| self.has_state_now(producer_id))
    }

    /// Expires idle producers, as the log does at each append and at `expire_producers`.
    fn expire(&mut self) -> usize {
        let (now_ms, expiration_ms) = (self.now_ms, self.expiration_ms);
        let before = self.tracked.len();
        self.tracked
            .retain(|_, t| now_ms.saturating_sub(t.last_seen_ms) < expiration_ms);
        before - self.tracked.len()
    }

    /// Records a snapshot of `tracked` at `offset`; the log keeps the last 2.
    fn snapshot(&mut self, offset: i64, tracked: BTreeMap<i64, Tracked>) {
        self.snapshots.insert(offset, tracked);
        while self.snapshots.len() > 2 {
            self.snapshots.pop_first();
        }
    }

    /// Records an accepted batch of `records` records, appended now.
    fn push(&mut self, producer_id: i64, epoch: i16, first_seq: i32, records: usize) {
        let base_offset = self.log_end_offset();
        self.stored.push(Stored {
            producer_id,
            epoch,
            first_seq,
            base_offset,
            last_offset: base_offset + records as i64 - 1,
        });
        if producer_id >= 0 {
            let now_ms = self.now_ms;
            let t = self.tracked.entry(producer_id).or_insert(Tracked {
                since: base_offset,
                last_seen_ms: now_ms,
            });
            t.last_seen_ms = now_ms;
        }
    }

    /// The state after a reopen at `now_ms`: snapshots past the log end are gone, the latest
    /// one left is loaded, and the producers' batches after it are replayed (seen now).
    fn reopen(&mut self) {
        let log_end_offset = self.log_end_offset();
        self.snapshots.retain(|&offset, _| offset <= log_end_offset);
        let (from, mut tracked) = self
            .snapshots
            .last_key_value()
            .map_or((0, BTreeMap::new()), |(&o, t)| (o, t.clone()));
        for b in self.stored.iter().filter(|b| b.base_offset >= from) {
            if b.producer_id < 0 {
                continue;
            }
            let t = tracked.entry(b.producer_id).or_insert(Tracked {
                since: b.base_offset,
                last_seen_ms: self.now_ms,
            });
            t.last_seen_ms = self.now_ms;
        }
        self.tracked = tracked;
    }
}

fn stored_in(log: &PartitionLog) -> Vec<Stored> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .expect("read all")
        .bytes;
    Batches::new(&bytes)
        .map(|b| {
            let b: BatchView<'_> = b.expect("whole batch");
            Stored {
                producer_id: b.producer_id(),
                epoch: b.producer_epoch(),
                first_seq: b.base_sequence(),
                base_offset: b.base_offset(),
                last_offset: b.last_offset(),
            }
        })
        .collect()
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.log_end_offset());
    let stored = stored_in(log);
    prop_assert_eq!(&stored, &model.stored);
    // Each accepted (producer, epoch, sequence) is in the log exactly once.
    let mut seen = HashSet::new();
    for b in stored.iter().filter(|b| b.producer_id >= 0) {
        for seq in b.first_seq..=b.last_seq() {
            prop_assert!(
                seen.insert((b.producer_id, b.epoch, seq)),
                "({}, {}, {}) stored twice",
                b.producer_id,
                b.epoch,
                seq
            );
        }
    }
    for pid in PIDS {
        let view = log.producer_state(pid);
        match model.derived(pid) {
            None => prop_assert_eq!(view, None, "producer {} has no state", pid),
            Some(d) => {
                let view = view.ok_or_else(|| TestCaseError::fail(format!("{pid} unknown")))?;
                let last = d.retained.last().unwrap();
                prop_assert_eq!(
                    (view.producer_epoch, view.last_sequence, view.last_offset),
                    (d.epoch, last.last_seq(), last.last_offset),
                    "producer {}",
                    pid
                );
            }
        }
    }
    prop_assert_eq!(log.active_producers(), model.tracked.len());
    Ok(())
}

fn expect_accepted(
    r: Result<AppendInfo, LogError>,
    base_offset: i64,
    records: usize,
) -> Result<(), TestCaseError> {
    let info = r.map_err(|e| TestCaseError::fail(format!("expected accepted, got {e}")))?;
    prop_assert!(!info.duplicate);
    prop_assert_eq!(
        (info.base_offset, info.last_offset),
        (base_offset, base_offset + records as i64 - 1)
    );
    Ok(())
}

fn expect_out_of_order(r: Result<AppendInfo, LogError>) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(r, Err(LogError::OutOfOrderSequence { .. })),
        "expected OutOfOrderSequence, got {:?}",
        r
    );
    Ok(())
}

fn snapshot_offsets(dir: &Path) -> BTreeSet<i64> {
    names_in(dir)
        .into_iter()
        .filter_map(|n| n.strip_suffix(".snapshot")?.parse().ok())
        .collect()
}

fn snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    snapshot_offsets(dir)
        .into_iter()
        .map(|o| dir.join(format!("{o:020}.snapshot")))
        .collect()
}

/// Appends `set` now, as the model does: expiry first, then (if the append rolls) the
/// snapshot of the state at the new segment's base offset.
fn append(log: &PartitionLog, model: &mut Model, set: &mut [u8]) -> Result<AppendInfo, LogError> {
    let segments_before: BTreeSet<i64> = log.segment_base_offsets().into_iter().collect();
    let log_end_offset = model.log_end_offset();
    model.expire();
    let tracked = model.tracked.clone();
    let r = log.append(set, 0, model.now_ms);
    if !segments_before.contains(&log_end_offset)
        && log.segment_base_offsets().contains(&log_end_offset)
    {
        model.snapshot(log_end_offset, tracked);
    }
    r
}

fn send(
    log: &PartitionLog,
    model: &mut Model,
    producer_id: i64,
    epoch: i16,
    seq: i32,
    records: usize,
) -> Result<AppendInfo, LogError> {
    let mut b = producer_batch(producer_id, epoch, seq, records, T0_MS);
    append(log, model, &mut b)
}

/// Reopens the log at the model's time; checks the model knows every snapshot file.
fn reopen(
    dir: &Path,
    config: &LogConfig,
    model: &mut Model,
) -> Result<PartitionLog, TestCaseError> {
    let log = PartitionLog::open(fs(), dir, config.clone(), model.now_ms).expect("open log");
    model.reopen();
    prop_assert_eq!(
        snapshot_offsets(dir),
        model.snapshots.keys().copied().collect::<BTreeSet<_>>(),
        "snapshot files"
    );
    Ok(log)
}

fn run(dir: &Path, config: LogConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::new(config.producer_id_expiration_ms);
    let mut log = PartitionLog::open(fs(), dir, config.clone(), model.now_ms).expect("open log");
    for op in ops {
        let leo = model.log_end_offset();
        match op {
            Op::Send { p, records } => {
                // In order; for a producer without state (new or expired), Kafka's rule lets
                // it go on where it is too.
                let pid = PIDS[p];
                let (epoch, seq) = model.client(pid);
                expect_accepted(
                    send(&log, &mut model, pid, epoch, seq, records),
                    leo,
                    records,
                )?;
                model.push(pid, epoch, seq, records);
            }
            Op::Retry { p, back } => {
                let pid = PIDS[p];
                let history = model.history(pid);
                if back >= history.len() {
                    continue;
                }
                let original = history[history.len() - 1 - back].clone();
                // Without state the retry would be a new batch (Kafka's trade-off once a
                // producer expired); clients do not retry for that long.
                let Some(derived) = model.state_now(pid) else {
                    continue;
                };
                let records = (original.last_offset - original.base_offset + 1) as usize;
                let r = send(
                    &log,
                    &mut model,
                    pid,
                    original.epoch,
                    original.first_seq,
                    records,
                );
                if original.epoch < derived.epoch {
                    prop_assert!(
                        matches!(r, Err(LogError::InvalidProducerEpoch { .. })),
                        "{:?}",
                        r
                    );
                } else if derived.retained.contains(&original) {
                    let info = r.map_err(|e| TestCaseError::fail(format!("retry: {e}")))?;
                    prop_assert!(info.duplicate);
                    prop_assert_eq!(
                        (info.base_offset, info.last_offset),
                        (original.base_offset, original.last_offset)
                    );
                } else {
                    expect_out_of_order(r)?;
                }
            }
            Op::Gap { p, skip } => {
                // Refused with state; Kafka's rule accepts it without.
                let pid = PIDS[p];
                let (epoch, seq) = model.client(pid);
                let has_state = model.has_state_now(pid);
                let r = send(&log, &mut model, pid, epoch, seq + skip, 1);
                if has_state {
                    expect_out_of_order(r)?;
                } else {
                    expect_accepted(r, leo, 1)?;
                    model.push(pid, epoch, seq + skip, 1);
                }
            }
            Op::Stale { p } => {
                let pid = PIDS[p];
                let Some(d) = model.state_now(pid).filter(|d| d.epoch > 0) else {
                    continue;
                };
                let r = send(&log, &mut model, pid, d.epoch - 1, d.next_seq(), 1);
                prop_assert!(
                    matches!(r, Err(LogError::InvalidProducerEpoch { .. })),
                    "{:?}",
                    r
                );
            }
            Op::Bump { p, zero } => {
                // A bumped epoch restarts at 0 with state; anything goes without.
                let pid = PIDS[p];
                let epoch = model.client(pid).0 + 1;
                let seq = if zero { 0 } else { 1 };
                let has_state = model.has_state_now(pid);
                let r = send(&log, &mut model, pid, epoch, seq, 2);
                if zero || !has_state {
                    expect_accepted(r, leo, 2)?;
                    model.push(pid, epoch, seq, 2);
                } else {
                    expect_out_of_order(r)?;
                }
            }
            Op::Pair { p, q, bad_second } => {
                let (pid, qid) = (PIDS[p], PIDS[q]);
                let (pe, ps) = model.client(pid);
                let mut set = producer_batch(pid, pe, ps, 2, T0_MS);
                let (qe, qs) = if pid == qid {
                    (pe, ps + 2)
                } else {
                    model.client(qid)
                };
                let qs = if bad_second { qs + 1 } else { qs };
                set.extend_from_slice(&producer_batch(qid, qe, qs, 1, T0_MS));
                // The second batch's gap counts if its producer has state, or gets it from
                // the first batch.
                let refused = bad_second && (pid == qid || model.has_state_now(qid));
                let r = append(&log, &mut model, &mut set);
                if refused {
                    expect_out_of_order(r)?;
                } else {
                    expect_accepted(r, leo, 3)?;
                    model.push(pid, pe, ps, 2);
                    model.push(qid, qe, qs, 1);
                }
            }
            Op::Plain { records } => {
                let mut b = batch(records);
                let info = append(&log, &mut model, &mut b).unwrap();
                prop_assert_eq!(info.base_offset, leo);
                model.push(-1, -1, -1, records);
            }
            Op::Tick { ms } => model.now_ms += ms,
            Op::Expire => {
                let expired = model.expire();
                prop_assert_eq!(log.expire_producers(model.now_ms), expired);
            }
            Op::CloseReopen => {
                log.close().unwrap();
                model.snapshot(leo, model.tracked.clone());
                drop(log);
                log = reopen(dir, &config, &mut model)?;
            }
            Op::CrashReopen => {
                drop(log);
                log = reopen(dir, &config, &mut model)?;
            }
            Op::CrashDropSnapshots => {
                drop(log);
                for path in snapshot_files(dir) {
                    std::fs::remove_file(path).unwrap();
                }
                model.snapshots.clear();
                log = reopen(dir, &config, &mut model)?;
            }
            Op::CrashCorruptSnapshots => {
                drop(log);
                for path in snapshot_files(dir) {
                    let mut bytes = std::fs::read(&path).unwrap();
                    let at = bytes.len() / 2;
                    bytes[at] ^= 0x04;
                    std::fs::write(&path, bytes).unwrap();
                }
                // Damaged snapshots are removed at the open and the state rebuilt from the log.
                model.snapshots.clear();
                log = reopen(dir, &config, &mut model)?;
            }
            Op::CrashCutLastBatch => {
                let Some(last) = model.stored.last().cloned() else {
                    continue;
                };
                let segment = log
                    .segment_base_offsets()
                    .into_iter()
                    .filter(|&base| base <= last.base_offset)
                    .max()
                    .unwrap();
                drop(log);
                let path = seg_path(dir, segment, ".log");
                let len = file_len(&path);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(len - 1)
                    .unwrap();
                model.stored.pop();
                log = reopen(dir, &config, &mut model)?;
            }
        }
        check(&log, &model)?;
    }
    // Everything, and the state, survives a final crash.
    drop(log);
    let log = reopen(dir, &config, &mut model)?;
    check(&log, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn given_random_producer_operations_the_log_should_store_each_accepted_sequence_once(
        config in config(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        run(tmp.path(), config, ops)?;
    }
}
