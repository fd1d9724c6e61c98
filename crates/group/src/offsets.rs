//! Committed offsets of the shard's groups, and the transactional offsets still waiting for
//! their transaction marker, as the OffsetCommit records build them.
//!
//! Kafka's rules (KIP-98/KIP-447, `OffsetMetadataManager`): an OffsetCommit record from a
//! transactional batch is *pending* under the batch's producer id until a marker for that
//! producer is written to the partition. A commit marker moves the producer's pending offsets
//! into the committed ones, except where a commit later in the log is already committed (a
//! plain OffsetCommit written after the transactional one wins); an abort marker drops them. A
//! tombstone removes the committed offset and every pending one of the same partition.
//!
//! "Later in the log" is decided by [`OffsetStore`]'s own sequence: every record applied gets
//! the next number. The shard applies records in the order the runtime appends them (and
//! replay applies them in log order), so the numbers order records as their log offsets do,
//! also after compaction has removed some of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::records::OffsetCommitValue;

/// A committed (or pending) offset and its position in the shard's order of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredOffset {
    pub value: OffsetCommitValue,
    /// The record's rank among the records applied (log order).
    pub seq: u64,
}

/// Offsets of one group, by (topic, partition), ordered so that answers are deterministic.
pub(crate) type GroupOffsets = BTreeMap<(String, i32), StoredOffset>;

#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetStore {
    by_group: HashMap<String, GroupOffsets>,
    /// Offsets of transactions not yet ended: producer id → group → offsets.
    pending: BTreeMap<i64, BTreeMap<String, GroupOffsets>>,
    /// Producers with an open transaction holding offsets of a group (Kafka's
    /// `openTransactionsByGroup`): kept until the producer's marker, even when a tombstone
    /// has removed the offsets themselves.
    open_by_group: HashMap<String, BTreeSet<i64>>,
    next_seq: u64,
}

impl OffsetStore {
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Applies one non-transactional OffsetCommit record (`None` deletes, also the pending
    /// offsets of the partition).
    pub fn apply(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetCommitValue>,
    ) {
        let seq = self.next_seq();
        match value {
            Some(value) => {
                self.by_group
                    .entry(group.to_string())
                    .or_default()
                    .insert((topic.to_string(), partition), StoredOffset { value, seq });
            }
            None => self.remove(group, topic, partition),
        }
    }

    /// Applies one OffsetCommit record of a transactional batch of `producer_id`: the offset
    /// is pending until the producer's marker. A tombstone acts as a plain one.
    pub fn apply_txn(
        &mut self,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetCommitValue>,
    ) {
        let Some(value) = value else {
            return self.apply(group, topic, partition, None);
        };
        let seq = self.next_seq();
        self.pending
            .entry(producer_id)
            .or_default()
            .entry(group.to_string())
            .or_default()
            .insert((topic.to_string(), partition), StoredOffset { value, seq });
        self.open_by_group
            .entry(group.to_string())
            .or_default()
            .insert(producer_id);
    }

    fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        let key = (topic.to_string(), partition);
        if let Some(offsets) = self.by_group.get_mut(group) {
            offsets.remove(&key);
            if offsets.is_empty() {
                self.by_group.remove(group);
            }
        }
        for producer_id in self.open_by_group.get(group).into_iter().flatten() {
            if let Some(groups) = self.pending.get_mut(producer_id) {
                if let Some(offsets) = groups.get_mut(group) {
                    offsets.remove(&key);
                    if offsets.is_empty() {
                        groups.remove(group);
                    }
                }
            }
        }
    }

    /// Ends `producer_id`'s transaction: on commit its pending offsets become committed where
    /// no later commit of the partition is; on abort they are dropped. Returns the groups
    /// that got committed offsets.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) -> Vec<String> {
        self.open_by_group.retain(|_, producers| {
            producers.remove(&producer_id);
            !producers.is_empty()
        });
        let Some(groups) = self.pending.remove(&producer_id) else {
            return Vec::new();
        };
        if !commit {
            return Vec::new();
        }
        let mut touched = Vec::new();
        for (group, offsets) in groups {
            let committed = self.by_group.entry(group.clone()).or_default();
            let mut any = false;
            for (key, pending) in offsets {
                let newer = match committed.get(&key) {
                    Some(c) => pending.seq > c.seq,
                    None => true,
                };
                if newer {
                    committed.insert(key, pending);
                    any = true;
                }
            }
            if committed.is_empty() {
                self.by_group.remove(&group);
            }
            if any {
                touched.push(group);
            }
        }
        touched
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.by_group
            .get(group)
            .and_then(|o| o.get(&(topic.to_string(), partition)))
            .map(|s| &s.value)
    }

    pub fn group(&self, group: &str) -> Option<&GroupOffsets> {
        self.by_group.get(group)
    }

    /// The keys of a group's offsets.
    pub fn keys(&self, group: &str) -> Vec<(String, i32)> {
        self.by_group
            .get(group)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether an open transaction holds an offset of the partition.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.open_by_group
            .get(group)
            .into_iter()
            .flatten()
            .any(|pid| {
                self.pending
                    .get(pid)
                    .and_then(|groups| groups.get(group))
                    .is_some_and(|offsets| offsets.contains_key(&key))
            })
    }

    /// Whether a transaction that committed offsets of the group has not ended yet.
    pub fn has_open_txns(&self, group: &str) -> bool {
        self.open_by_group.contains_key(group)
    }

    /// The partitions of a group with a pending offset and no committed one.
    pub fn pending_only_keys(&self, group: &str) -> Vec<(String, i32)> {
        let mut keys = BTreeSet::new();
        for pid in self.open_by_group.get(group).into_iter().flatten() {
            if let Some(offsets) = self.pending.get(pid).and_then(|g| g.get(group)) {
                keys.extend(offsets.keys().cloned());
            }
        }
        let committed = self.by_group.get(group);
        keys.into_iter()
            .filter(|k| !committed.is_some_and(|c| c.contains_key(k)))
            .collect()
    }

    /// `producer_id`'s pending offsets: (group, topic, partition, value), sorted.
    pub fn pending_of(&self, producer_id: i64) -> Vec<(String, String, i32, OffsetCommitValue)> {
        self.pending
            .get(&producer_id)
            .into_iter()
            .flatten()
            .flat_map(|(group, offsets)| {
                offsets.iter().map(move |((topic, partition), s)| {
                    (group.clone(), topic.clone(), *partition, s.value.clone())
                })
            })
            .collect()
    }

    /// Producers whose transaction holds offsets (or held offsets a tombstone removed) in
    /// this partition and has not ended.
    pub fn open_producers(&self) -> Vec<i64> {
        let mut ids: BTreeSet<i64> = self.pending.keys().copied().collect();
        ids.extend(self.open_by_group.values().flatten().copied());
        ids.into_iter().collect()
    }

    pub fn count(&self) -> usize {
        self.by_group.values().map(BTreeMap::len).sum()
    }
}
