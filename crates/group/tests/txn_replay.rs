//! Properties of transactional offset commits over random sequences of TxnOffsetCommit,
//! markers, plain commits, deletions, time and restarts:
//!
//! - what OffsetFetch answers (with and without `require_stable`) matches a small model of
//!   Kafka's rules (a commit marker applies a pending offset only if it is later in the log
//!   than the committed one; an abort drops it; a tombstone drops both);
//! - a shard rebuilt from the log (plain records, transactional batches and markers) is in
//!   the same state as the live one.

mod common;

use std::collections::BTreeMap;

use common::*;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::OffsetDeleteRequest;
use proptest::prelude::*;
use runnel_group::{GroupConfig, GroupRequest};

const GROUPS: u8 = 2;
const PARTITIONS: u8 = 3;
const PRODUCERS: u8 = 3;

#[derive(Debug, Clone)]
enum Op {
    Txn {
        pid: u8,
        group: u8,
        partition: u8,
        offset: u16,
    },
    Plain {
        group: u8,
        partition: u8,
        offset: u16,
    },
    Marker {
        pid: u8,
        commit: bool,
    },
    DeleteOffset {
        group: u8,
        partition: u8,
    },
    DeleteGroup {
        group: u8,
    },
    Advance {
        ms: u16,
    },
    Restart,
}

fn offsets_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..PRODUCERS, 0..GROUPS, 0..PARTITIONS, any::<u16>())
            .prop_map(|(pid, group, partition, offset)| Op::Txn { pid, group, partition, offset }),
        3 => (0..GROUPS, 0..PARTITIONS, any::<u16>())
            .prop_map(|(group, partition, offset)| Op::Plain { group, partition, offset }),
        4 => (0..PRODUCERS, any::<bool>()).prop_map(|(pid, commit)| Op::Marker { pid, commit }),
        1 => (0..GROUPS, 0..PARTITIONS)
            .prop_map(|(group, partition)| Op::DeleteOffset { group, partition }),
        1 => (0..GROUPS).prop_map(|group| Op::DeleteGroup { group }),
        1 => Just(Op::Restart),
    ]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => offsets_op(),
        2 => (0..40_000u16).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn group_name(g: u8) -> String {
    format!("group-{g}")
}

fn pid_of(p: u8) -> i64 {
    1_000 + i64::from(p)
}

/// (group, partition) → (offset, rank in the log).
type Offsets = BTreeMap<(u8, u8), (i64, u64)>;

/// Kafka's rules, written plainly: offsets and their rank in the log.
#[derive(Default, Debug)]
struct Model {
    seq: u64,
    committed: Offsets,
    pending: BTreeMap<u8, Offsets>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Txn {
                pid,
                group,
                partition,
                offset,
            } => {
                self.seq += 1;
                self.pending
                    .entry(pid)
                    .or_default()
                    .insert((group, partition), (i64::from(offset), self.seq));
            }
            Op::Plain {
                group,
                partition,
                offset,
            } => {
                self.seq += 1;
                self.committed
                    .insert((group, partition), (i64::from(offset), self.seq));
            }
            Op::Marker { pid, commit } => {
                let pending = self.pending.remove(&pid).unwrap_or_default();
                if commit {
                    for (key, (offset, seq)) in pending {
                        let later = match self.committed.get(&key) {
                            Some(c) => seq > c.1,
                            None => true,
                        };
                        if later {
                            self.committed.insert(key, (offset, seq));
                        }
                    }
                }
            }
            Op::DeleteOffset { group, partition } => self.delete(|k| k == (group, partition)),
            Op::DeleteGroup { group } => self.delete(|k| k.0 == group),
            Op::Advance { .. } | Op::Restart => {}
        }
    }

    fn delete(&mut self, matches: impl Fn((u8, u8)) -> bool) {
        self.committed.retain(|k, _| !matches(*k));
        for p in self.pending.values_mut() {
            p.retain(|k, _| !matches(*k));
        }
    }

    fn is_pending(&self, key: (u8, u8)) -> bool {
        self.pending.values().any(|p| p.contains_key(&key))
    }
}

fn apply(h: &mut Harness, op: &Op) {
    match *op {
        Op::Txn {
            pid,
            group,
            partition,
            offset,
        } => {
            let r = h.txn_commit(
                pid_of(pid),
                &group_name(group),
                &[("orders", i32::from(partition), i64::from(offset), None)],
            );
            assert_eq!(Harness::txn_codes(&r), vec![0]);
        }
        Op::Plain {
            group,
            partition,
            offset,
        } => {
            let r = h.commit(
                8,
                &group_name(group),
                "",
                -1,
                &[("orders", i32::from(partition), i64::from(offset), None)],
            );
            assert_eq!(Harness::commit_codes(&r), vec![0]);
        }
        Op::Marker { pid, commit } => h.marker(pid_of(pid), commit),
        Op::DeleteOffset { group, partition } => {
            let req = OffsetDeleteRequest::default()
                .with_group_id(gid(&group_name(group)))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(tname("orders"))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()
                        .with_partition_index(i32::from(partition))])]);
            h.call(0, GroupRequest::OffsetDelete(req));
        }
        Op::DeleteGroup { group } => {
            h.delete_groups(&[&group_name(group)]);
        }
        Op::Advance { ms } => h.advance(i64::from(ms)),
        Op::Restart => unreachable!("restarts replace the harness"),
    }
}

/// Everything observable about offsets: per group, all committed offsets, the stable view
/// of every partition, and the group list; per producer, its pending offsets.
type Snapshot = (
    Vec<Vec<(String, i32, i64, String, i16)>>,
    Vec<Vec<(String, i32, i64, String, i16)>>,
    Vec<(String, String, String, String)>,
    Vec<String>,
    Vec<i64>,
);

fn snapshot(h: &mut Harness) -> Snapshot {
    let parts: Vec<i32> = (0..i32::from(PARTITIONS)).collect();
    let mut all = Vec::new();
    let mut stable = Vec::new();
    for g in 0..GROUPS {
        all.push(h.fetch(&group_name(g), None));
        stable.push(h.fetch_stable(&group_name(g), Some(&[("orders", &parts)])));
    }
    let groups = h.list(5, &[], &[]);
    let pending = (0..PRODUCERS)
        .map(|p| format!("{:?}", h.shard.pending_txn_offsets(pid_of(p))))
        .collect();
    (all, stable, groups, pending, h.shard.open_txn_producers())
}

fn check_model(h: &mut Harness, model: &Model) {
    let parts: Vec<i32> = (0..i32::from(PARTITIONS)).collect();
    for g in 0..GROUPS {
        let plain = h.fetch(&group_name(g), Some(&[("orders", &parts)]));
        let stable = h.fetch_stable(&group_name(g), Some(&[("orders", &parts)]));
        for p in 0..PARTITIONS {
            let committed = model.committed.get(&(g, p)).map_or(-1, |c| c.0);
            let i = usize::from(p);
            assert_eq!(plain[i].2, committed, "committed offset of {g}/{p}");
            assert_eq!(plain[i].4, 0);
            if model.is_pending((g, p)) {
                assert_eq!((stable[i].2, stable[i].4), (-1, 88), "unstable {g}/{p}");
            } else {
                assert_eq!((stable[i].2, stable[i].4), (committed, 0), "stable {g}/{p}");
            }
        }
    }
}

/// A shard rebuilt from `h`'s log, checked to be in the same state.
fn restarted_alike(h: &mut Harness) -> Result<Harness, TestCaseError> {
    let mut r = h.restarted();
    prop_assert_eq!(snapshot(&mut r), snapshot(h));
    Ok(r)
}

fn config() -> GroupConfig {
    GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn given_random_txn_and_plain_commits_and_markers_should_answer_as_kafkas_rules(
        ops in prop::collection::vec(offsets_op(), 1..60)
    ) {
        let mut h = Harness::with_config(config());
        let mut model = Model::default();
        for op in &ops {
            if matches!(op, Op::Restart) {
                h = restarted_alike(&mut h)?;
                continue;
            }
            apply(&mut h, op);
            model.apply(op);
            check_model(&mut h, &model);
        }
    }

    #[test]
    fn given_random_sequences_with_expiry_when_restarted_should_rebuild_the_same_state(
        ops in prop::collection::vec(any_op(), 1..80)
    ) {
        let mut h = Harness::with_config(config());
        for op in &ops {
            if matches!(op, Op::Restart) {
                h = restarted_alike(&mut h)?;
                continue;
            }
            apply(&mut h, op);
        }
        restarted_alike(&mut h)?;
    }
}
