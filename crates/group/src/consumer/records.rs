//! The records a KIP-848 consumer group keeps in `__consumer_offsets`, and their encoding.
//!
//! Keys and values use Kafka's own layouts (the `ConsumerGroup*Key`/`*Value` schemas of
//! Kafka's group coordinator), so a partition written by Runnel reads like one written by
//! Kafka and the other way round:
//!
//! | record | key version | key fields | value (version 0, flexible) |
//! | --- | --- | --- | --- |
//! | [`ConsumerRecord::GroupMetadata`] | 3 | group | epoch `int32` |
//! | [`ConsumerRecord::PartitionMetadata`] | 4 | group | topics `[]{id uuid, name string, partitions int32, racks []{..} (always empty)}` |
//! | [`ConsumerRecord::MemberMetadata`] | 5 | group, member | instance id `string?`, rack id `string?`, client id, client host, subscribed names `[]string`, regex `string?`, rebalance timeout `int32`, server assignor `string?` |
//! | [`ConsumerRecord::TargetAssignmentMetadata`] | 6 | group | assignment epoch `int32` |
//! | [`ConsumerRecord::TargetAssignmentMember`] | 7 | group, member | partitions `[]{topic id uuid, partitions []int32}` |
//! | [`ConsumerRecord::CurrentMemberAssignment`] | 8 | group, member | member epoch `int32`, previous epoch `int32`, state `int8`, assigned `[]{topic id, []int32}`, pending revocation `[]{topic id, []int32}` |
//!
//! A key is `int16` key version followed by its fields as classic (non-flexible) strings:
//! `int16` length then UTF-8 bytes. A value is `int16` value version (always 0) followed by
//! the fields in Kafka's flexible encoding: compact strings and arrays (unsigned varint of
//! length + 1, 0 meaning null), 16-byte UUIDs, and a tagged-field section after every struct
//! (written empty; unknown tags are skipped when read). A tombstone has no value. Every key
//! names its group (and member), so compaction keeps the latest record of each.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::records::RecordError;

/// Partitions by topic id, ordered, so that everything derived from it is deterministic.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

pub const GROUP_METADATA_KEY_VERSION: i16 = 3;
pub const PARTITION_METADATA_KEY_VERSION: i16 = 4;
pub const MEMBER_METADATA_KEY_VERSION: i16 = 5;
pub const TARGET_ASSIGNMENT_METADATA_KEY_VERSION: i16 = 6;
pub const TARGET_ASSIGNMENT_MEMBER_KEY_VERSION: i16 = 7;
pub const CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION: i16 = 8;

/// The only value version written and read.
const VALUE_VERSION: i16 = 0;

/// Where a member stands in its reconciliation (Kafka's `MemberState`, with its codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// The member owns its assignment at its epoch.
    #[default]
    Stable,
    /// The member is at the target epoch but waits for partitions other members still own.
    UnreleasedPartitions,
    /// The member must first give up the partitions pending revocation.
    UnrevokedPartitions,
    /// A state code this version does not know.
    Unknown,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnreleasedPartitions => 1,
            MemberState::UnrevokedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    pub fn from_code(code: i8) -> Self {
        match code {
            0 => MemberState::Stable,
            1 => MemberState::UnreleasedPartitions,
            2 => MemberState::UnrevokedPartitions,
            _ => MemberState::Unknown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadataValue {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub num_partitions: i32,
}

/// The topics the group subscribes to, as they were when the group epoch was last bumped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionMetadataValue {
    /// Sorted by topic name.
    pub topics: Vec<TopicMetadataValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Sorted, without duplicates.
    pub subscribed_topic_names: Vec<String>,
    /// `None` when the member has no regular-expression subscription.
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

impl Default for MemberMetadataValue {
    fn default() -> Self {
        MemberMetadataValue {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            rebalance_timeout_ms: -1,
            server_assignor: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAssignmentMetadataValue {
    pub assignment_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetAssignmentMemberValue {
    pub partitions: Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentMemberAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
}

/// One record of a consumer group; `value: None` is the tombstone of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// The group epoch (key version 3).
    GroupMetadata {
        group_id: String,
        value: Option<GroupMetadataValue>,
    },
    /// The subscribed topics' ids and partition counts (key version 4).
    PartitionMetadata {
        group_id: String,
        value: Option<PartitionMetadataValue>,
    },
    /// A member's subscription and client information (key version 5).
    MemberMetadata {
        group_id: String,
        member_id: String,
        value: Option<MemberMetadataValue>,
    },
    /// The epoch of the target assignment (key version 6).
    TargetAssignmentMetadata {
        group_id: String,
        value: Option<TargetAssignmentMetadataValue>,
    },
    /// A member's target assignment (key version 7).
    TargetAssignmentMember {
        group_id: String,
        member_id: String,
        value: Option<TargetAssignmentMemberValue>,
    },
    /// A member's epochs, state, assigned and pending-revocation partitions (key version 8).
    CurrentMemberAssignment {
        group_id: String,
        member_id: String,
        value: Option<CurrentMemberAssignmentValue>,
    },
}

impl ConsumerRecord {
    /// The `__consumer_offsets` key version of this record.
    pub fn key_version(&self) -> i16 {
        match self {
            ConsumerRecord::GroupMetadata { .. } => GROUP_METADATA_KEY_VERSION,
            ConsumerRecord::PartitionMetadata { .. } => PARTITION_METADATA_KEY_VERSION,
            ConsumerRecord::MemberMetadata { .. } => MEMBER_METADATA_KEY_VERSION,
            ConsumerRecord::TargetAssignmentMetadata { .. } => {
                TARGET_ASSIGNMENT_METADATA_KEY_VERSION
            }
            ConsumerRecord::TargetAssignmentMember { .. } => TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
            ConsumerRecord::CurrentMemberAssignment { .. } => CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
        }
    }

    /// Whether `key_version` is one of the versions this module owns (3..=8).
    pub fn handles_key_version(key_version: i16) -> bool {
        (GROUP_METADATA_KEY_VERSION..=CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION).contains(&key_version)
    }

    pub fn group_id(&self) -> &str {
        match self {
            ConsumerRecord::GroupMetadata { group_id, .. }
            | ConsumerRecord::PartitionMetadata { group_id, .. }
            | ConsumerRecord::MemberMetadata { group_id, .. }
            | ConsumerRecord::TargetAssignmentMetadata { group_id, .. }
            | ConsumerRecord::TargetAssignmentMember { group_id, .. }
            | ConsumerRecord::CurrentMemberAssignment { group_id, .. } => group_id,
        }
    }

    /// The member the record is about, for the per-member records.
    pub fn member_id(&self) -> Option<&str> {
        match self {
            ConsumerRecord::MemberMetadata { member_id, .. }
            | ConsumerRecord::TargetAssignmentMember { member_id, .. }
            | ConsumerRecord::CurrentMemberAssignment { member_id, .. } => Some(member_id),
            _ => None,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        match self {
            ConsumerRecord::GroupMetadata { value, .. } => value.is_none(),
            ConsumerRecord::PartitionMetadata { value, .. } => value.is_none(),
            ConsumerRecord::MemberMetadata { value, .. } => value.is_none(),
            ConsumerRecord::TargetAssignmentMetadata { value, .. } => value.is_none(),
            ConsumerRecord::TargetAssignmentMember { value, .. } => value.is_none(),
            ConsumerRecord::CurrentMemberAssignment { value, .. } => value.is_none(),
        }
    }

    /// The record's key (key version first) and value (`None` for a tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut key = Vec::with_capacity(64);
        put_i16(&mut key, self.key_version());
        put_key_string(&mut key, self.group_id());
        if let Some(member_id) = self.member_id() {
            put_key_string(&mut key, member_id);
        }
        let value = match self {
            ConsumerRecord::GroupMetadata { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_i32(&mut w, v.epoch);
                put_no_tags(&mut w);
                w
            }),
            ConsumerRecord::PartitionMetadata { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_compact_len(&mut w, v.topics.len());
                for t in &v.topics {
                    put_uuid(&mut w, &t.topic_id);
                    put_compact_string(&mut w, &t.topic_name);
                    put_i32(&mut w, t.num_partitions);
                    put_compact_len(&mut w, 0); // per-partition racks: not tracked
                    put_no_tags(&mut w);
                }
                put_no_tags(&mut w);
                w
            }),
            ConsumerRecord::MemberMetadata { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_compact_nullable_string(&mut w, v.instance_id.as_deref());
                put_compact_nullable_string(&mut w, v.rack_id.as_deref());
                put_compact_string(&mut w, &v.client_id);
                put_compact_string(&mut w, &v.client_host);
                put_compact_len(&mut w, v.subscribed_topic_names.len());
                for name in &v.subscribed_topic_names {
                    put_compact_string(&mut w, name);
                }
                put_compact_nullable_string(&mut w, v.subscribed_topic_regex.as_deref());
                put_i32(&mut w, v.rebalance_timeout_ms);
                put_compact_nullable_string(&mut w, v.server_assignor.as_deref());
                put_no_tags(&mut w);
                w
            }),
            ConsumerRecord::TargetAssignmentMetadata { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_i32(&mut w, v.assignment_epoch);
                put_no_tags(&mut w);
                w
            }),
            ConsumerRecord::TargetAssignmentMember { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_assignment(&mut w, &v.partitions);
                put_no_tags(&mut w);
                w
            }),
            ConsumerRecord::CurrentMemberAssignment { value, .. } => value.as_ref().map(|v| {
                let mut w = value_writer();
                put_i32(&mut w, v.member_epoch);
                put_i32(&mut w, v.previous_member_epoch);
                w.push(v.state.code() as u8);
                put_assignment(&mut w, &v.assigned);
                put_assignment(&mut w, &v.pending_revocation);
                put_no_tags(&mut w);
                w
            }),
        };
        (key, value)
    }

    /// Decodes a record of key version 3..=8. `key` is the whole key as [`encode`](Self::encode)
    /// writes it (key version included); the key without its two version bytes is accepted
    /// too. `value` is `None` for a tombstone.
    pub fn decode(
        key_version: i16,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<ConsumerRecord, RecordError> {
        if !Self::handles_key_version(key_version) {
            return Err(malformed(format!(
                "key version {key_version} is not a consumer group record"
            )));
        }
        let with_member = matches!(
            key_version,
            MEMBER_METADATA_KEY_VERSION
                | TARGET_ASSIGNMENT_MEMBER_KEY_VERSION
                | CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION
        );
        let (group_id, member_id) = decode_key(key_version, key, with_member)?;
        let value = match value {
            None => None,
            Some(bytes) => {
                let mut r = Reader::new(bytes);
                let version = r.i16()?;
                if version != VALUE_VERSION {
                    return Err(malformed(format!(
                        "value version {version} of key version {key_version} is not supported"
                    )));
                }
                Some(r)
            }
        };
        let member = || member_id.clone().unwrap_or_default();
        let record = match key_version {
            GROUP_METADATA_KEY_VERSION => ConsumerRecord::GroupMetadata {
                group_id,
                value: value
                    .map(|mut r| {
                        let epoch = r.i32()?;
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(GroupMetadataValue { epoch })
                    })
                    .transpose()?,
            },
            PARTITION_METADATA_KEY_VERSION => ConsumerRecord::PartitionMetadata {
                group_id,
                value: value
                    .map(|mut r| {
                        let n = r.compact_len()?.unwrap_or(0);
                        let mut topics = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            let topic_id = r.uuid()?;
                            let topic_name = r.compact_string()?;
                            let num_partitions = r.i32()?;
                            let racks = r.compact_len()?.unwrap_or(0);
                            for _ in 0..racks {
                                r.i32()?;
                                let names = r.compact_len()?.unwrap_or(0);
                                for _ in 0..names {
                                    r.compact_string()?;
                                }
                                r.skip_tags()?;
                            }
                            r.skip_tags()?;
                            topics.push(TopicMetadataValue {
                                topic_id,
                                topic_name,
                                num_partitions,
                            });
                        }
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(PartitionMetadataValue { topics })
                    })
                    .transpose()?,
            },
            MEMBER_METADATA_KEY_VERSION => ConsumerRecord::MemberMetadata {
                group_id,
                member_id: member(),
                value: value
                    .map(|mut r| {
                        let instance_id = r.compact_nullable_string()?;
                        let rack_id = r.compact_nullable_string()?;
                        let client_id = r.compact_string()?;
                        let client_host = r.compact_string()?;
                        let n = r.compact_len()?.unwrap_or(0);
                        let mut subscribed_topic_names = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            subscribed_topic_names.push(r.compact_string()?);
                        }
                        let subscribed_topic_regex = r.compact_nullable_string()?;
                        let rebalance_timeout_ms = r.i32()?;
                        let server_assignor = r.compact_nullable_string()?;
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(MemberMetadataValue {
                            instance_id,
                            rack_id,
                            client_id,
                            client_host,
                            subscribed_topic_names,
                            subscribed_topic_regex,
                            rebalance_timeout_ms,
                            server_assignor,
                        })
                    })
                    .transpose()?,
            },
            TARGET_ASSIGNMENT_METADATA_KEY_VERSION => ConsumerRecord::TargetAssignmentMetadata {
                group_id,
                value: value
                    .map(|mut r| {
                        let assignment_epoch = r.i32()?;
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(TargetAssignmentMetadataValue { assignment_epoch })
                    })
                    .transpose()?,
            },
            TARGET_ASSIGNMENT_MEMBER_KEY_VERSION => ConsumerRecord::TargetAssignmentMember {
                group_id,
                member_id: member(),
                value: value
                    .map(|mut r| {
                        let partitions = r.assignment()?;
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(TargetAssignmentMemberValue { partitions })
                    })
                    .transpose()?,
            },
            _ => ConsumerRecord::CurrentMemberAssignment {
                group_id,
                member_id: member(),
                value: value
                    .map(|mut r| {
                        let member_epoch = r.i32()?;
                        let previous_member_epoch = r.i32()?;
                        let state = MemberState::from_code(r.i8()?);
                        let assigned = r.assignment()?;
                        let pending_revocation = r.assignment()?;
                        r.skip_tags()?;
                        r.finish()?;
                        Ok::<_, RecordError>(CurrentMemberAssignmentValue {
                            member_epoch,
                            previous_member_epoch,
                            state,
                            assigned,
                            pending_revocation,
                        })
                    })
                    .transpose()?,
            },
        };
        Ok(record)
    }
}

/// The one place that builds a [`RecordError`], so that a change of its variants touches
/// one line.
fn malformed(message: String) -> RecordError {
    RecordError::Malformed(message)
}

/// Parses a key, with or without its leading version: the form that uses every byte wins.
fn decode_key(
    key_version: i16,
    key: &[u8],
    with_member: bool,
) -> Result<(String, Option<String>), RecordError> {
    let parse = |bytes: &[u8]| -> Result<(String, Option<String>), RecordError> {
        let mut r = Reader::new(bytes);
        let group = r.key_string()?;
        let member = if with_member {
            Some(r.key_string()?)
        } else {
            None
        };
        r.finish()?;
        Ok((group, member))
    };
    if key.len() >= 2 && i16::from_be_bytes([key[0], key[1]]) == key_version {
        if let Ok(parsed) = parse(&key[2..]) {
            return Ok(parsed);
        }
    }
    parse(key)
}

fn value_writer() -> Vec<u8> {
    let mut w = Vec::with_capacity(64);
    put_i16(&mut w, VALUE_VERSION);
    w
}

fn put_i16(w: &mut Vec<u8>, v: i16) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(w: &mut Vec<u8>, v: i32) {
    w.extend_from_slice(&v.to_be_bytes());
}

fn put_uuid(w: &mut Vec<u8>, v: &Uuid) {
    w.extend_from_slice(v.as_bytes());
}

fn put_uvarint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

fn put_compact_len(w: &mut Vec<u8>, len: usize) {
    put_uvarint(w, len as u64 + 1);
}

fn put_compact_string(w: &mut Vec<u8>, s: &str) {
    put_compact_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

fn put_compact_nullable_string(w: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_compact_string(w, s),
        None => put_uvarint(w, 0),
    }
}

fn put_no_tags(w: &mut Vec<u8>) {
    put_uvarint(w, 0);
}

/// A classic string of a key: `int16` length, then the bytes (Java's limit is 32767 bytes;
/// longer ids are cut at a character boundary rather than written with a wrong length).
fn put_key_string(w: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_i16(w, end as i16);
    w.extend_from_slice(&s.as_bytes()[..end]);
}

fn put_assignment(w: &mut Vec<u8>, assignment: &Assignment) {
    put_compact_len(w, assignment.len());
    for (topic_id, partitions) in assignment {
        put_uuid(w, topic_id);
        put_compact_len(w, partitions.len());
        for p in partitions {
            put_i32(w, *p);
        }
        put_no_tags(w);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() - self.pos < n {
            return Err(malformed(format!(
                "record truncated: {n} bytes wanted at offset {} of {}",
                self.pos,
                self.bytes.len()
            )));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn finish(&self) -> Result<(), RecordError> {
        if self.pos != self.bytes.len() {
            return Err(malformed(format!(
                "{} unexpected trailing bytes in record",
                self.bytes.len() - self.pos
            )));
        }
        Ok(())
    }

    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(self.take(1)?[0] as i8)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uuid(&mut self) -> Result<Uuid, RecordError> {
        let b = self.take(16)?;
        let mut raw = [0u8; 16];
        raw.copy_from_slice(b);
        Ok(Uuid::from_bytes(raw))
    }

    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("unsigned varint longer than 5 bytes".into()))
    }

    /// A compact length: `None` for null.
    fn compact_len(&mut self) -> Result<Option<usize>, RecordError> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Ok(None);
        }
        let len = (raw - 1) as usize;
        // Each element takes at least one byte: a bigger count is corrupt, and must not be
        // used to size an allocation.
        if len > self.bytes.len() - self.pos {
            return Err(malformed(format!(
                "length {len} exceeds the {} bytes left",
                self.bytes.len() - self.pos
            )));
        }
        Ok(Some(len))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, RecordError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("string is not UTF-8".into()))
    }

    fn compact_nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        match self.compact_len()? {
            None => Ok(None),
            Some(len) => {
                let b = self.take(len)?;
                Ok(Some(self.utf8(b)?))
            }
        }
    }

    fn compact_string(&mut self) -> Result<String, RecordError> {
        self.compact_nullable_string()?
            .ok_or_else(|| malformed("null where a string is required".into()))
    }

    fn key_string(&mut self) -> Result<String, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Err(malformed("null string in a key".into()));
        }
        let b = self.take(len as usize)?;
        self.utf8(b)
    }

    fn skip_tags(&mut self) -> Result<(), RecordError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?; // tag
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }

    fn assignment(&mut self) -> Result<Assignment, RecordError> {
        let mut out = Assignment::new();
        let topics = self.compact_len()?.unwrap_or(0);
        for _ in 0..topics {
            let topic_id = self.uuid()?;
            let n = self.compact_len()?.unwrap_or(0);
            let partitions = out.entry(topic_id).or_default();
            for _ in 0..n {
                partitions.insert(self.i32()?);
            }
            // Kafka 4.2+ may add per-partition assignment epochs as a tagged field.
            self.skip_tags()?;
            if partitions.is_empty() {
                out.remove(&topic_id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn assignment(entries: &[(u8, &[i32])]) -> Assignment {
        entries
            .iter()
            .map(|(t, ps)| (tid(*t), ps.iter().copied().collect()))
            .collect()
    }

    fn samples() -> Vec<ConsumerRecord> {
        let g = "analytics-service".to_string();
        let m = "b3JlZ29uLXRyYWls-member".to_string();
        vec![
            ConsumerRecord::GroupMetadata {
                group_id: g.clone(),
                value: Some(GroupMetadataValue { epoch: 7 }),
            },
            ConsumerRecord::GroupMetadata {
                group_id: g.clone(),
                value: None,
            },
            ConsumerRecord::PartitionMetadata {
                group_id: g.clone(),
                value: Some(PartitionMetadataValue {
                    topics: vec![
                        TopicMetadataValue {
                            topic_id: tid(1),
                            topic_name: "orders".into(),
                            num_partitions: 12,
                        },
                        TopicMetadataValue {
                            topic_id: tid(2),
                            topic_name: "ünïcode".into(),
                            num_partitions: 1,
                        },
                    ],
                }),
            },
            ConsumerRecord::PartitionMetadata {
                group_id: g.clone(),
                value: None,
            },
            ConsumerRecord::MemberMetadata {
                group_id: g.clone(),
                member_id: m.clone(),
                value: Some(MemberMetadataValue {
                    instance_id: Some("instance-1".into()),
                    rack_id: None,
                    client_id: "rdkafka".into(),
                    client_host: "/127.0.0.1".into(),
                    subscribed_topic_names: vec!["a".into(), "b".into()],
                    subscribed_topic_regex: Some("(^orders-.*)".into()),
                    rebalance_timeout_ms: 300_000,
                    server_assignor: Some("range".into()),
                }),
            },
            ConsumerRecord::MemberMetadata {
                group_id: g.clone(),
                member_id: m.clone(),
                value: None,
            },
            ConsumerRecord::TargetAssignmentMetadata {
                group_id: g.clone(),
                value: Some(TargetAssignmentMetadataValue {
                    assignment_epoch: 3,
                }),
            },
            ConsumerRecord::TargetAssignmentMember {
                group_id: g.clone(),
                member_id: m.clone(),
                value: Some(TargetAssignmentMemberValue {
                    partitions: assignment(&[(1, &[0, 2, 4]), (2, &[0])]),
                }),
            },
            ConsumerRecord::TargetAssignmentMember {
                group_id: g.clone(),
                member_id: m.clone(),
                value: None,
            },
            ConsumerRecord::CurrentMemberAssignment {
                group_id: g.clone(),
                member_id: m.clone(),
                value: Some(CurrentMemberAssignmentValue {
                    member_epoch: 5,
                    previous_member_epoch: 4,
                    state: MemberState::UnrevokedPartitions,
                    assigned: assignment(&[(1, &[0])]),
                    pending_revocation: assignment(&[(1, &[1, 3])]),
                }),
            },
            ConsumerRecord::CurrentMemberAssignment {
                group_id: g,
                member_id: m,
                value: None,
            },
        ]
    }

    #[test]
    fn given_every_record_kind_when_encoded_and_decoded_should_round_trip() {
        for record in samples() {
            let (key, value) = record.encode();
            let version = i16::from_be_bytes([key[0], key[1]]);
            assert_eq!(version, record.key_version());
            assert_eq!(value.is_none(), record.is_tombstone());
            let decoded = ConsumerRecord::decode(version, &key, value.as_deref()).unwrap();
            assert_eq!(decoded, record);
            // The key without its version decodes the same.
            let decoded = ConsumerRecord::decode(version, &key[2..], value.as_deref()).unwrap();
            assert_eq!(decoded, record);
        }
    }

    #[test]
    fn given_group_metadata_when_encoded_should_match_kafka_layout() {
        let record = ConsumerRecord::GroupMetadata {
            group_id: "g".into(),
            value: Some(GroupMetadataValue { epoch: 2 }),
        };
        let (key, value) = record.encode();
        assert_eq!(key, vec![0, 3, 0, 1, b'g']);
        // value version 0, epoch 2, no tagged fields
        assert_eq!(value.unwrap(), vec![0, 0, 0, 0, 0, 2, 0]);
    }

    #[test]
    fn given_member_records_when_encoded_should_have_keys_unique_per_member() {
        let key = |member: &str| {
            ConsumerRecord::CurrentMemberAssignment {
                group_id: "g".into(),
                member_id: member.into(),
                value: None,
            }
            .encode()
            .0
        };
        assert_ne!(key("a"), key("b"));
        assert_eq!(key("a"), key("a"));
    }

    #[test]
    fn given_a_value_with_unknown_tagged_fields_when_decoded_should_skip_them() {
        let record = ConsumerRecord::TargetAssignmentMetadata {
            group_id: "g".into(),
            value: Some(TargetAssignmentMetadataValue {
                assignment_epoch: 9,
            }),
        };
        let (key, _) = record.encode();
        // epoch 9, then one tagged field (tag 0, 8 bytes: Kafka 4.3's AssignmentTimestamp)
        let value = [0, 0, 0, 0, 0, 9, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42];
        let decoded = ConsumerRecord::decode(6, &key, Some(&value)).unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn given_truncated_or_bogus_values_when_decoded_should_fail_without_panicking() {
        for record in samples() {
            let (key, value) = record.encode();
            let Some(value) = value else { continue };
            for cut in 0..value.len() {
                assert!(
                    ConsumerRecord::decode(record.key_version(), &key, Some(&value[..cut]))
                        .is_err(),
                    "{record:?} cut at {cut}"
                );
            }
        }
        // an array claiming four billion elements
        let key = ConsumerRecord::TargetAssignmentMember {
            group_id: "g".into(),
            member_id: "m".into(),
            value: None,
        }
        .encode()
        .0;
        let value = [0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(ConsumerRecord::decode(7, &key, Some(&value)).is_err());
        assert!(ConsumerRecord::decode(2, &key, None).is_err());
    }

    proptest! {
        // A fixed seed: the same cases on every run; failures are reported, not persisted.
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(848),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn given_arbitrary_current_assignments_when_round_tripped_should_be_equal(
            epoch in any::<i32>(),
            previous in any::<i32>(),
            state in 0i8..3,
            assigned in proptest::collection::btree_map(any::<u8>(), proptest::collection::btree_set(0i32..10_000, 1..20), 0..5),
            member in "[a-zA-Z0-9_-]{0,40}",
        ) {
            let assigned: Assignment = assigned.into_iter().map(|(t, ps)| (tid(t), ps)).collect();
            let record = ConsumerRecord::CurrentMemberAssignment {
                group_id: "group".into(),
                member_id: member,
                value: Some(CurrentMemberAssignmentValue {
                    member_epoch: epoch,
                    previous_member_epoch: previous,
                    state: MemberState::from_code(state),
                    assigned: assigned.clone(),
                    pending_revocation: assigned,
                }),
            };
            let (key, value) = record.encode();
            let decoded = ConsumerRecord::decode(8, &key, value.as_deref()).unwrap();
            prop_assert_eq!(decoded, record);
        }

        #[test]
        fn given_random_bytes_when_decoded_should_not_panic(
            version in 3i16..=8,
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
        ) {
            let _ = ConsumerRecord::decode(version, &key, value.as_deref());
        }
    }
}
