//! Model-based property test: random appends (random batch shapes and timestamps), reads at
//! random offsets (including mid-batch), timestamp lookups, flushes, clean reopens and crash
//! reopens, with small segments and indexes to force rolls, all checked against an in-memory
//! model of what was appended.

use std::path::Path;

use proptest::prelude::*;
use runnel_log::{LogConfig, LogError, PartitionLog, TimestampOffset, TimestampType};

use crate::common::*;

#[derive(Debug, Clone)]
enum Op {
    /// One record set: `(records, value_bytes, timestamp delta)` per batch.
    Append {
        batches: Vec<(usize, usize, i64)>,
        new_epoch: bool,
    },
    Read {
        offset_permille: u32,
        max_bytes: usize,
        min_one_batch: bool,
        upper_bound_permille: Option<u32>,
    },
    ReadOutOfRange,
    TimeLookup {
        delta_ms: i64,
    },
    Flush,
    CloseReopen,
    CrashReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (
            proptest::collection::vec((1usize..5, 0usize..40, -1_000i64..1_000), 1..4),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(batches, new_epoch)| Op::Append { batches, new_epoch }),
        5 => (
            0u32..=1000,
            prop_oneof![Just(0usize), 1usize..400, Just(usize::MAX)],
            any::<bool>(),
            proptest::option::of(0u32..=1000),
        )
            .prop_map(|(offset_permille, max_bytes, min_one_batch, upper_bound_permille)| {
                Op::Read {
                    offset_permille,
                    max_bytes,
                    min_one_batch,
                    upper_bound_permille,
                }
            }),
        1 => Just(Op::ReadOutOfRange),
        2 => (-1_200i64..1_200).prop_map(|delta_ms| Op::TimeLookup { delta_ms }),
        1 => Just(Op::Flush),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    (
        prop_oneof![Just(300u64), Just(700), Just(3_000)],
        prop_oneof![Just(0u64), Just(60), Just(400)],
        prop_oneof![Just(24u64), Just(120), Just(10 * 1024 * 1024)],
        prop_oneof![
            Just(TimestampType::CreateTime),
            Just(TimestampType::LogAppendTime)
        ],
        prop_oneof![Just(u64::MAX), Just(3)],
    )
        .prop_map(
            |(
                segment_bytes,
                index_interval_bytes,
                segment_index_bytes,
                timestamp_type,
                flush_messages,
            )| {
                LogConfig {
                    segment_bytes,
                    index_interval_bytes,
                    segment_index_bytes,
                    timestamp_type,
                    flush_messages,
                    ..LogConfig::default()
                }
            },
        )
}

#[derive(Debug)]
struct Stored {
    base_offset: i64,
    last_offset: i64,
    max_timestamp_ms: i64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<Stored>,
    epoch: i32,
    epochs: Vec<(i32, i64)>,
}

impl Model {
    fn log_end_offset(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.last_offset + 1)
    }

    fn read(&self, start: i64, max_bytes: usize, upper_bound: i64, min_one_batch: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(first) = self.batches.iter().position(|b| b.last_offset >= start) else {
            return out;
        };
        for b in &self.batches[first..] {
            if b.last_offset >= upper_bound {
                break;
            }
            if out.len() + b.bytes.len() > max_bytes && !(out.is_empty() && min_one_batch) {
                break;
            }
            out.extend_from_slice(&b.bytes);
        }
        out
    }

    fn offset_for_timestamp(&self, ts: i64) -> Option<TimestampOffset> {
        self.batches
            .iter()
            .find(|b| b.max_timestamp_ms >= ts)
            .map(|b| TimestampOffset {
                timestamp_ms: b.max_timestamp_ms,
                offset: b.base_offset,
            })
    }

    fn max_timestamp_offset(&self) -> Option<TimestampOffset> {
        let mut best: Option<TimestampOffset> = None;
        for b in &self.batches {
            let better = match best {
                None => true,
                Some(x) => b.max_timestamp_ms > x.timestamp_ms,
            };
            if better {
                best = Some(TimestampOffset {
                    timestamp_ms: b.max_timestamp_ms,
                    offset: b.base_offset,
                });
            }
        }
        best
    }
}

fn check(log: &PartitionLog, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), model.log_end_offset());
    prop_assert_eq!(log.log_start_offset(), 0);
    let all: Vec<u8> = model.batches.iter().flat_map(|b| b.bytes.clone()).collect();
    prop_assert_eq!(log.size_bytes(), all.len() as u64);
    prop_assert_eq!(read_all(log), all);
    prop_assert_eq!(log.max_timestamp_offset(), model.max_timestamp_offset());
    prop_assert_eq!(log.leader_epochs(), model.epochs.clone());
    Ok(())
}

fn run(dir: &Path, config: LogConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut log = open(fs(), dir, config.clone());
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        let now_ms = T0_MS + step as i64 * 10;
        match op {
            Op::Append { batches, new_epoch } => {
                if new_epoch || model.epochs.is_empty() {
                    model.epoch += 1;
                }
                let mut set = Vec::new();
                for &(records, value_bytes, delta_ms) in &batches {
                    set.extend_from_slice(&batch_with(records, value_bytes, T0_MS + delta_ms));
                }
                let leo = model.log_end_offset();
                match log.append(&mut set, model.epoch, now_ms) {
                    Ok(info) => {
                        prop_assert_eq!(info.base_offset, leo);
                        let count: usize = batches.iter().map(|b| b.0).sum();
                        prop_assert_eq!(info.last_offset, leo + count as i64 - 1);
                        if model.epochs.last().map(|e| e.0) != Some(model.epoch) {
                            model.epochs.push((model.epoch, leo));
                        }
                        let mut position = 0;
                        for (base, last) in offsets_of(&set) {
                            let view =
                                runnel_model::batch::BatchView::parse(&set[position..]).unwrap();
                            prop_assert_eq!(view.partition_leader_epoch(), model.epoch);
                            if config.timestamp_type == TimestampType::LogAppendTime {
                                prop_assert_eq!(view.max_timestamp(), now_ms);
                            }
                            model.batches.push(Stored {
                                base_offset: base,
                                last_offset: last,
                                max_timestamp_ms: view.max_timestamp(),
                                bytes: view.as_bytes().to_vec(),
                            });
                            position += view.size_bytes();
                        }
                    }
                    Err(LogError::RecordSetTooLarge { size_bytes, .. }) => {
                        // Nothing appended; the new epoch is recorded by the next append.
                        prop_assert!(size_bytes > config.segment_bytes);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("append: {e}"))),
                }
            }
            Op::Read {
                offset_permille,
                max_bytes,
                min_one_batch,
                upper_bound_permille,
            } => {
                let leo = model.log_end_offset();
                let start = (leo + 1) * i64::from(offset_permille) / 1001;
                let upper_bound =
                    upper_bound_permille.map_or(leo, |p| (leo + 1) * i64::from(p) / 1000);
                let r = log
                    .read(start, max_bytes, upper_bound, min_one_batch)
                    .map_err(|e| TestCaseError::fail(format!("read {start}: {e}")))?;
                let expected = model.read(start, max_bytes, upper_bound, min_one_batch);
                prop_assert_eq!(r.bytes.to_vec(), expected.clone(), "read at {}", start);
                let batches = offsets_of(&r.bytes);
                if let Some(&(base, last)) = batches.first() {
                    prop_assert!(base <= start && start <= last);
                    prop_assert_eq!(r.next_offset, batches.last().unwrap().1 + 1);
                } else {
                    prop_assert_eq!(r.next_offset, start);
                }
            }
            Op::ReadOutOfRange => {
                let leo = model.log_end_offset();
                let oor = matches!(
                    log.read(leo + 1, 100, i64::MAX, true),
                    Err(LogError::OffsetOutOfRange { .. })
                );
                prop_assert!(oor);
            }
            Op::TimeLookup { delta_ms } => {
                let ts = T0_MS + delta_ms;
                prop_assert_eq!(
                    log.offset_for_timestamp(ts).unwrap(),
                    model.offset_for_timestamp(ts),
                    "timestamp {}",
                    ts
                );
            }
            Op::Flush => log.flush().unwrap(),
            Op::CloseReopen => {
                log.close().unwrap();
                log = open(fs(), dir, config.clone());
                check(&log, &model)?;
            }
            Op::CrashReopen => {
                drop(log);
                log = open(fs(), dir, config.clone());
                check(&log, &model)?;
            }
        }
    }
    check(&log, &model)?;
    // Everything written is still there after a final crash.
    drop(log);
    check(&open(fs(), dir, config), &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn given_random_operations_the_log_should_match_the_in_memory_model(
        config in config(),
        ops in proptest::collection::vec(op(), 1..50),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        run(tmp.path(), config, ops)?;
    }
}
