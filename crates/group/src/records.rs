//! The records of `__consumer_offsets`, in Kafka's own formats, so that a data directory
//! written by Runnel is laid out like Kafka's and Kafka's records can be read back.
//!
//! A record's key starts with an `int16` *record type* (Kafka calls it the key version):
//!
//! | type | key | value |
//! | --- | --- | --- |
//! | 0, 1 | `OffsetCommitKey { group, topic, partition }` | `OffsetCommitValue` v0–v4 |
//! | 2 | `GroupMetadataKey { group }` | `GroupMetadataValue` v0–v4 |
//! | 3+ | KIP-848 consumer group records | decoded by [`crate::consumer`] |
//!
//! A value starts with an `int16` version followed by the fields of that version. Versions
//! 0–3 use Kafka's classic encoding (`int16`-length strings, `int32`-length bytes and arrays);
//! version 4 is "flexible" (unsigned-varint lengths plus tagged fields). A tombstone (value
//! `None`) deletes the key. Runnel writes `OffsetCommitValue` v3 (v1 when the commit carries an
//! explicit expiry, as Kafka does) and `GroupMetadataValue` v3, the versions every Kafka since
//! 2.3 reads.

use bytes::Bytes;
use thiserror::Error;
use uuid::Uuid;

use crate::consumer::ConsumerRecord;

/// Record type of the pre-0.10 offset commit key (same layout as type 1).
pub const LEGACY_OFFSET_COMMIT_KEY: i16 = 0;
/// Record type of `OffsetCommitKey`.
pub const OFFSET_COMMIT_KEY: i16 = 1;
/// Record type of `GroupMetadataKey`.
pub const GROUP_METADATA_KEY: i16 = 2;

/// The version of `OffsetCommitValue` written (v1 when an expire timestamp is set).
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// The version of `GroupMetadataValue` written.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("a string of {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("{0} is null where Kafka's schema does not allow it")]
    UnexpectedNull(&'static str),
    #[error("negative length {len} for {field}")]
    NegativeLength { field: &'static str, len: i64 },
    #[error("unknown record type {0}")]
    UnknownType(i16),
    #[error("unknown version {version} of the value of record type {record_type}")]
    UnknownVersion { record_type: i16, version: i16 },
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// One record of a group coordinator partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// A committed offset (`value: None` deletes it).
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetCommitValue>,
    },
    /// A classic group's metadata (`value: None` deletes the group).
    GroupMetadata {
        group: String,
        value: Option<GroupMetadataValue>,
    },
    /// A record of a KIP-848 consumer group.
    Consumer(ConsumerRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when unknown (and for values older than v3).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Only value v1 has it: an explicit expiry time (OffsetCommit v2–v4 `retention_time_ms`).
    pub expire_timestamp: Option<i64>,
    /// Only value v4 may have it (tagged field 0).
    pub topic_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (values older than v2).
    pub current_state_timestamp: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// -1 when unknown (value v0); Kafka then uses the session timeout.
    pub rebalance_timeout: i32,
    pub session_timeout: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

impl GroupRecord {
    /// The group the record belongs to.
    pub fn group_id(&self) -> String {
        match self {
            GroupRecord::OffsetCommit { group, .. } | GroupRecord::GroupMetadata { group, .. } => {
                group.clone()
            }
            GroupRecord::Consumer(r) => r.group_id().to_string(),
        }
    }

    /// The record as stored: key bytes and value bytes (`None` for a tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            GroupRecord::OffsetCommit {
                group,
                topic,
                partition,
                value,
            } => {
                let mut k = wire::Writer::new();
                k.i16(OFFSET_COMMIT_KEY);
                k.string(group);
                k.string(topic);
                k.i32(*partition);
                (k.into_vec(), value.as_ref().map(encode_offset_commit_value))
            }
            GroupRecord::GroupMetadata { group, value } => {
                let mut k = wire::Writer::new();
                k.i16(GROUP_METADATA_KEY);
                k.string(group);
                (
                    k.into_vec(),
                    value.as_ref().map(encode_group_metadata_value),
                )
            }
            GroupRecord::Consumer(r) => r.encode(),
        }
    }

    /// Decodes a stored record (`value: None` is a tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<GroupRecord, RecordError> {
        let mut r = wire::Reader::new(key);
        let record_type = r.i16("key type")?;
        match record_type {
            LEGACY_OFFSET_COMMIT_KEY | OFFSET_COMMIT_KEY => {
                let group = r.string("OffsetCommitKey.group")?;
                let topic = r.string("OffsetCommitKey.topic")?;
                let partition = r.i32("OffsetCommitKey.partition")?;
                let value = value.map(decode_offset_commit_value).transpose()?;
                Ok(GroupRecord::OffsetCommit {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            GROUP_METADATA_KEY => {
                let group = r.string("GroupMetadataKey.group")?;
                let value = value.map(decode_group_metadata_value).transpose()?;
                Ok(GroupRecord::GroupMetadata { group, value })
            }
            t if ConsumerRecord::handles_key_version(t) => Ok(GroupRecord::Consumer(
                ConsumerRecord::decode(t, key, value)?,
            )),
            t => Err(RecordError::UnknownType(t)),
        }
    }
}

pub fn encode_offset_commit_value(v: &OffsetCommitValue) -> Vec<u8> {
    let mut w = wire::Writer::new();
    match v.expire_timestamp {
        Some(expire) => {
            w.i16(1);
            w.i64(v.offset);
            w.string(&v.metadata);
            w.i64(v.commit_timestamp);
            w.i64(expire);
        }
        None => {
            w.i16(OFFSET_COMMIT_VALUE_VERSION);
            w.i64(v.offset);
            w.i32(v.leader_epoch);
            w.string(&v.metadata);
            w.i64(v.commit_timestamp);
        }
    }
    w.into_vec()
}

pub fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut r = wire::Reader::new(bytes);
    let version = r.i16("OffsetCommitValue version")?;
    let flexible = version >= 4;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            record_type: OFFSET_COMMIT_KEY,
            version,
        });
    }
    let offset = r.i64("OffsetCommitValue.offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("OffsetCommitValue.leaderEpoch")?
    } else {
        -1
    };
    let metadata = r.string_v(flexible, "OffsetCommitValue.metadata")?;
    let commit_timestamp = r.i64("OffsetCommitValue.commitTimestamp")?;
    let expire_timestamp = if version == 1 {
        Some(r.i64("OffsetCommitValue.expireTimestamp")?)
    } else {
        None
    };
    let mut topic_id = None;
    if flexible {
        r.tagged_fields("OffsetCommitValue", |tag, data| {
            if tag == 0 {
                let b: [u8; 16] = data
                    .try_into()
                    .map_err(|_| RecordError::Truncated("OffsetCommitValue.topicId"))?;
                topic_id = Some(Uuid::from_bytes(b));
            }
            Ok(())
        })?;
    }
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
        topic_id,
    })
}

pub fn encode_group_metadata_value(v: &GroupMetadataValue) -> Vec<u8> {
    let mut w = wire::Writer::new();
    w.i16(GROUP_METADATA_VALUE_VERSION);
    w.string(&v.protocol_type);
    w.i32(v.generation);
    w.nullable_string(v.protocol.as_deref());
    w.nullable_string(v.leader.as_deref());
    w.i64(v.current_state_timestamp);
    w.i32(v.members.len() as i32);
    for m in &v.members {
        w.string(&m.member_id);
        w.nullable_string(m.group_instance_id.as_deref());
        w.string(&m.client_id);
        w.string(&m.client_host);
        w.i32(m.rebalance_timeout);
        w.i32(m.session_timeout);
        w.bytes(&m.subscription);
        w.bytes(&m.assignment);
    }
    w.into_vec()
}

pub fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut r = wire::Reader::new(bytes);
    let version = r.i16("GroupMetadataValue version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownVersion {
            record_type: GROUP_METADATA_KEY,
            version,
        });
    }
    let flexible = version >= 4;
    let protocol_type = r.string_v(flexible, "GroupMetadataValue.protocolType")?;
    let generation = r.i32("GroupMetadataValue.generation")?;
    let protocol = r.nullable_string_v(flexible, "GroupMetadataValue.protocol")?;
    let leader = r.nullable_string_v(flexible, "GroupMetadataValue.leader")?;
    let current_state_timestamp = if version >= 2 {
        r.i64("GroupMetadataValue.currentStateTimestamp")?
    } else {
        -1
    };
    let count = r.array_len_v(flexible, "GroupMetadataValue.members")?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = r.string_v(flexible, "MemberMetadata.memberId")?;
        let group_instance_id = if version >= 3 {
            r.nullable_string_v(flexible, "MemberMetadata.groupInstanceId")?
        } else {
            None
        };
        let client_id = r.string_v(flexible, "MemberMetadata.clientId")?;
        let client_host = r.string_v(flexible, "MemberMetadata.clientHost")?;
        let rebalance_timeout = if version >= 1 {
            r.i32("MemberMetadata.rebalanceTimeout")?
        } else {
            -1
        };
        let session_timeout = r.i32("MemberMetadata.sessionTimeout")?;
        let subscription = r.bytes_v(flexible, "MemberMetadata.subscription")?;
        let assignment = r.bytes_v(flexible, "MemberMetadata.assignment")?;
        if flexible {
            r.tagged_fields("MemberMetadata", |_, _| Ok(()))?;
        }
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout,
            session_timeout,
            subscription: Bytes::from(subscription),
            assignment: Bytes::from(assignment),
        });
    }
    if flexible {
        r.tagged_fields("GroupMetadataValue", |_, _| Ok(()))?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

/// Kafka's primitive encodings, for the records of this crate (the KIP-848 module may use
/// them too). Classic: big-endian integers, `int16`-length strings (-1 = null), `int32`-length
/// bytes and arrays. Flexible: unsigned-varint length + 1 (0 = null), then tagged fields.
pub mod wire {
    use super::RecordError;

    pub struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        pub fn new(buf: &'a [u8]) -> Self {
            Reader { buf, pos: 0 }
        }

        pub fn remaining(&self) -> usize {
            self.buf.len() - self.pos
        }

        pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
            if self.remaining() < n {
                return Err(RecordError::Truncated(field));
            }
            let s = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }

        pub fn i8(&mut self, field: &'static str) -> Result<i8, RecordError> {
            Ok(self.take(1, field)?[0] as i8)
        }

        pub fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
            let b = self.take(2, field)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }

        pub fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
            let b = self.take(4, field)?;
            Ok(i32::from_be_bytes(b.try_into().expect("4 bytes")))
        }

        pub fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
            let b = self.take(8, field)?;
            Ok(i64::from_be_bytes(b.try_into().expect("8 bytes")))
        }

        pub fn uuid(&mut self, field: &'static str) -> Result<uuid::Uuid, RecordError> {
            let b = self.take(16, field)?;
            Ok(uuid::Uuid::from_bytes(b.try_into().expect("16 bytes")))
        }

        pub fn unsigned_varint(&mut self, field: &'static str) -> Result<u32, RecordError> {
            let mut value: u32 = 0;
            for i in 0..5 {
                let b = self.take(1, field)?[0];
                value |= u32::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(value);
                }
            }
            Err(RecordError::Malformed(format!(
                "varint of {field} is too long"
            )))
        }

        fn utf8(bytes: &[u8], field: &'static str) -> Result<String, RecordError> {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| RecordError::InvalidUtf8(field))
        }

        /// Classic nullable string: `int16` length, -1 = null.
        pub fn nullable_string(
            &mut self,
            field: &'static str,
        ) -> Result<Option<String>, RecordError> {
            let len = self.i16(field)?;
            if len < 0 {
                return Ok(None);
            }
            let b = self.take(len as usize, field)?;
            Self::utf8(b, field).map(Some)
        }

        pub fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
            self.nullable_string(field)?
                .ok_or(RecordError::UnexpectedNull(field))
        }

        /// Compact nullable string: unsigned varint length + 1, 0 = null.
        pub fn compact_nullable_string(
            &mut self,
            field: &'static str,
        ) -> Result<Option<String>, RecordError> {
            let n = self.unsigned_varint(field)?;
            if n == 0 {
                return Ok(None);
            }
            let b = self.take((n - 1) as usize, field)?;
            Self::utf8(b, field).map(Some)
        }

        pub fn compact_string(&mut self, field: &'static str) -> Result<String, RecordError> {
            self.compact_nullable_string(field)?
                .ok_or(RecordError::UnexpectedNull(field))
        }

        pub fn string_v(
            &mut self,
            flexible: bool,
            field: &'static str,
        ) -> Result<String, RecordError> {
            if flexible {
                self.compact_string(field)
            } else {
                self.string(field)
            }
        }

        pub fn nullable_string_v(
            &mut self,
            flexible: bool,
            field: &'static str,
        ) -> Result<Option<String>, RecordError> {
            if flexible {
                self.compact_nullable_string(field)
            } else {
                self.nullable_string(field)
            }
        }

        /// Bytes (not nullable): `int32` length, or compact.
        pub fn bytes_v(
            &mut self,
            flexible: bool,
            field: &'static str,
        ) -> Result<Vec<u8>, RecordError> {
            let len = if flexible {
                let n = self.unsigned_varint(field)?;
                if n == 0 {
                    return Err(RecordError::UnexpectedNull(field));
                }
                (n - 1) as usize
            } else {
                let n = self.i32(field)?;
                if n < 0 {
                    return Err(RecordError::UnexpectedNull(field));
                }
                n as usize
            };
            Ok(self.take(len, field)?.to_vec())
        }

        /// An array length (not nullable); checked against the bytes left so that a bogus
        /// count cannot make the caller reserve a huge vector.
        pub fn array_len_v(
            &mut self,
            flexible: bool,
            field: &'static str,
        ) -> Result<usize, RecordError> {
            let len = if flexible {
                let n = self.unsigned_varint(field)?;
                if n == 0 {
                    return Err(RecordError::UnexpectedNull(field));
                }
                i64::from(n) - 1
            } else {
                i64::from(self.i32(field)?)
            };
            if len < 0 {
                return Err(RecordError::NegativeLength { field, len });
            }
            if len as usize > self.remaining() {
                return Err(RecordError::Truncated(field));
            }
            Ok(len as usize)
        }

        /// Reads a tagged-field section, handing each field to `f`.
        pub fn tagged_fields(
            &mut self,
            field: &'static str,
            mut f: impl FnMut(u32, &[u8]) -> Result<(), RecordError>,
        ) -> Result<(), RecordError> {
            let count = self.unsigned_varint(field)?;
            for _ in 0..count {
                let tag = self.unsigned_varint(field)?;
                let size = self.unsigned_varint(field)? as usize;
                let data = self.take(size, field)?;
                f(tag, data)?;
            }
            Ok(())
        }
    }

    #[derive(Default)]
    pub struct Writer {
        buf: Vec<u8>,
    }

    impl Writer {
        pub fn new() -> Self {
            Writer { buf: Vec::new() }
        }

        pub fn into_vec(self) -> Vec<u8> {
            self.buf
        }

        pub fn i8(&mut self, v: i8) {
            self.buf.push(v as u8);
        }

        pub fn i16(&mut self, v: i16) {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }

        pub fn i32(&mut self, v: i32) {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }

        pub fn i64(&mut self, v: i64) {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }

        pub fn uuid(&mut self, v: &uuid::Uuid) {
            self.buf.extend_from_slice(v.as_bytes());
        }

        pub fn unsigned_varint(&mut self, mut v: u32) {
            while v >= 0x80 {
                self.buf.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            self.buf.push(v as u8);
        }

        /// Classic string. Kafka strings are at most `i16::MAX` bytes; longer ones are cut at
        /// a character boundary (callers bound their inputs well below that).
        pub fn string(&mut self, s: &str) {
            let s = truncate_utf8(s, i16::MAX as usize);
            self.i16(s.len() as i16);
            self.buf.extend_from_slice(s.as_bytes());
        }

        pub fn nullable_string(&mut self, s: Option<&str>) {
            match s {
                Some(s) => self.string(s),
                None => self.i16(-1),
            }
        }

        pub fn compact_string(&mut self, s: &str) {
            self.unsigned_varint(s.len() as u32 + 1);
            self.buf.extend_from_slice(s.as_bytes());
        }

        pub fn compact_nullable_string(&mut self, s: Option<&str>) {
            match s {
                Some(s) => self.compact_string(s),
                None => self.unsigned_varint(0),
            }
        }

        pub fn bytes(&mut self, b: &[u8]) {
            self.i32(b.len() as i32);
            self.buf.extend_from_slice(b);
        }

        pub fn compact_bytes(&mut self, b: &[u8]) {
            self.unsigned_varint(b.len() as u32 + 1);
            self.buf.extend_from_slice(b);
        }

        /// An empty tagged-field section.
        pub fn no_tagged_fields(&mut self) {
            self.unsigned_varint(0);
        }
    }

    fn truncate_utf8(s: &str, max: usize) -> &str {
        if s.len() <= max {
            return s;
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }
}
