//! Committed offsets of the shard's groups, as the OffsetCommit records build them.

use std::collections::{BTreeMap, HashMap};

use crate::records::OffsetCommitValue;

/// Offsets of one group, by (topic, partition), ordered so that answers are deterministic.
pub(crate) type GroupOffsets = BTreeMap<(String, i32), OffsetCommitValue>;

#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetStore {
    by_group: HashMap<String, GroupOffsets>,
}

impl OffsetStore {
    /// Applies one OffsetCommit record (`None` deletes).
    pub fn apply(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: Option<OffsetCommitValue>,
    ) {
        match value {
            Some(v) => {
                self.by_group
                    .entry(group.to_string())
                    .or_default()
                    .insert((topic.to_string(), partition), v);
            }
            None => {
                if let Some(offsets) = self.by_group.get_mut(group) {
                    offsets.remove(&(topic.to_string(), partition));
                    if offsets.is_empty() {
                        self.by_group.remove(group);
                    }
                }
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.by_group
            .get(group)
            .and_then(|o| o.get(&(topic.to_string(), partition)))
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

    pub fn count(&self) -> usize {
        self.by_group.values().map(BTreeMap::len).sum()
    }
}
