//! `__consumer_offsets` records: Kafka's byte layouts of every key and value version, built
//! here by hand from Kafka's schemas, decode; what Runnel writes is byte-for-byte Kafka's
//! layout; every record round-trips.

use bytes::Bytes;
use proptest::prelude::*;
use runnel_group::records::{GroupMetadataValue, MemberMetadata, OffsetCommitValue};
use runnel_group::{GroupRecord, RecordError};
use uuid::Uuid;

/// A hand-written encoder of Kafka's primitive types (independent of the crate's).
#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// STRING / NULLABLE_STRING (None = -1).
    fn s(self, v: Option<&str>) -> Self {
        match v {
            Some(s) => self.i16(s.len() as i16).raw(s.as_bytes()),
            None => self.i16(-1),
        }
    }
    fn bytes(self, v: &[u8]) -> Self {
        self.i32(v.len() as i32).raw(v)
    }
    /// COMPACT_(NULLABLE_)STRING: varint length + 1 (lengths here are < 127).
    fn cs(self, v: Option<&str>) -> Self {
        match v {
            Some(s) => self.raw(&[s.len() as u8 + 1]).raw(s.as_bytes()),
            None => self.raw(&[0]),
        }
    }
    fn cbytes(self, v: &[u8]) -> Self {
        self.raw(&[v.len() as u8 + 1]).raw(v)
    }
}

fn offset_key(t: i16) -> Vec<u8> {
    B::default().i16(t).s(Some("grp")).s(Some("topic")).i32(3).0
}

#[test]
fn given_offset_commit_keys_of_type_0_and_1_should_decode_as_offset_commits() {
    for t in [0, 1] {
        let r = GroupRecord::decode(&offset_key(t), None).expect("decodes");
        assert_eq!(
            r,
            GroupRecord::OffsetCommit {
                group: "grp".into(),
                topic: "topic".into(),
                partition: 3,
                value: None
            }
        );
    }
}

#[test]
fn given_every_offset_commit_value_version_should_decode() {
    let id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
    let cases: Vec<(Vec<u8>, OffsetCommitValue)> = vec![
        (
            B::default().i16(0).i64(42).s(Some("m")).i64(1000).0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
                topic_id: None,
            },
        ),
        (
            B::default()
                .i16(1)
                .i64(42)
                .s(Some("m"))
                .i64(1000)
                .i64(5000)
                .0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp: 1000,
                expire_timestamp: Some(5000),
                topic_id: None,
            },
        ),
        (
            B::default().i16(2).i64(42).s(Some("")).i64(1000).0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: -1,
                metadata: "".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
                topic_id: None,
            },
        ),
        (
            B::default()
                .i16(3)
                .i64(42)
                .i32(9)
                .s(Some("meta"))
                .i64(1000)
                .0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: 9,
                metadata: "meta".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
                topic_id: None,
            },
        ),
        (
            // Flexible, no tagged fields.
            B::default()
                .i16(4)
                .i64(42)
                .i32(9)
                .cs(Some("meta"))
                .i64(1000)
                .raw(&[0])
                .0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: 9,
                metadata: "meta".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
                topic_id: None,
            },
        ),
        (
            // Flexible with tagged field 0 (topic id) and an unknown tag 5.
            B::default()
                .i16(4)
                .i64(42)
                .i32(9)
                .cs(Some("meta"))
                .i64(1000)
                .raw(&[2, 0, 16])
                .raw(id.as_bytes())
                .raw(&[5, 2, 0xaa, 0xbb])
                .0,
            OffsetCommitValue {
                offset: 42,
                leader_epoch: 9,
                metadata: "meta".into(),
                commit_timestamp: 1000,
                expire_timestamp: None,
                topic_id: Some(id),
            },
        ),
    ];
    for (bytes, expected) in cases {
        match GroupRecord::decode(&offset_key(1), Some(&bytes)) {
            Ok(GroupRecord::OffsetCommit { value: Some(v), .. }) => assert_eq!(v, expected),
            other => panic!("{other:?} for {bytes:?}"),
        }
    }
}

#[test]
fn given_offset_commits_should_be_written_as_kafka_value_v3_or_v1() {
    let r = GroupRecord::OffsetCommit {
        group: "grp".into(),
        topic: "topic".into(),
        partition: 3,
        value: Some(OffsetCommitValue {
            offset: 42,
            leader_epoch: 9,
            metadata: "meta".into(),
            commit_timestamp: 1000,
            expire_timestamp: None,
            topic_id: None,
        }),
    };
    let (k, v) = r.encode();
    assert_eq!(k, offset_key(1));
    assert_eq!(
        v.unwrap(),
        B::default()
            .i16(3)
            .i64(42)
            .i32(9)
            .s(Some("meta"))
            .i64(1000)
            .0
    );
    let r = GroupRecord::OffsetCommit {
        group: "grp".into(),
        topic: "topic".into(),
        partition: 3,
        value: Some(OffsetCommitValue {
            offset: 42,
            leader_epoch: 9,
            metadata: "meta".into(),
            commit_timestamp: 1000,
            expire_timestamp: Some(7000),
            topic_id: None,
        }),
    };
    assert_eq!(
        r.encode().1.unwrap(),
        B::default()
            .i16(1)
            .i64(42)
            .s(Some("meta"))
            .i64(1000)
            .i64(7000)
            .0
    );
}

fn member(version: i16) -> MemberMetadata {
    MemberMetadata {
        member_id: "m-1".into(),
        group_instance_id: (version >= 3).then(|| "inst".to_string()),
        client_id: "cli".into(),
        client_host: "/1.2.3.4".into(),
        rebalance_timeout: if version >= 1 { 30_000 } else { -1 },
        session_timeout: 10_000,
        subscription: Bytes::from_static(b"sub"),
        assignment: Bytes::from_static(b"asg"),
    }
}

fn group_value(version: i16) -> GroupMetadataValue {
    GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation: 5,
        protocol: Some("range".into()),
        leader: Some("m-1".into()),
        current_state_timestamp: if version >= 2 { 123_456 } else { -1 },
        members: vec![member(version)],
    }
}

/// GroupMetadataValue as Kafka lays it out, version by version.
fn group_value_bytes(version: i16) -> Vec<u8> {
    let flexible = version >= 4;
    let s = |b: B, v: Option<&str>| if flexible { b.cs(v) } else { b.s(v) };
    let mut b = B::default().i16(version);
    b = s(b, Some("consumer"));
    b = b.i32(5);
    b = s(b, Some("range"));
    b = s(b, Some("m-1"));
    if version >= 2 {
        b = b.i64(123_456);
    }
    b = if flexible { b.raw(&[2]) } else { b.i32(1) };
    b = s(b, Some("m-1"));
    if version >= 3 {
        b = s(b, Some("inst"));
    }
    b = s(b, Some("cli"));
    b = s(b, Some("/1.2.3.4"));
    if version >= 1 {
        b = b.i32(30_000);
    }
    b = b.i32(10_000);
    b = if flexible {
        b.cbytes(b"sub").cbytes(b"asg").raw(&[0])
    } else {
        b.bytes(b"sub").bytes(b"asg")
    };
    if flexible {
        b = b.raw(&[0]);
    }
    b.0
}

#[test]
fn given_every_group_metadata_value_version_should_decode() {
    let key = B::default().i16(2).s(Some("grp")).0;
    for version in 0..=4 {
        let bytes = group_value_bytes(version);
        match GroupRecord::decode(&key, Some(&bytes)) {
            Ok(GroupRecord::GroupMetadata {
                group,
                value: Some(v),
            }) => {
                assert_eq!(group, "grp");
                assert_eq!(v, group_value(version), "v{version}");
            }
            other => panic!("v{version}: {other:?}"),
        }
    }
    // An empty group as Kafka writes it when JoinGroup creates it: no protocol, no leader.
    let empty = B::default()
        .i16(3)
        .s(Some(""))
        .i32(0)
        .s(None)
        .s(None)
        .i64(77)
        .i32(0)
        .0;
    match GroupRecord::decode(&key, Some(&empty)) {
        Ok(GroupRecord::GroupMetadata { value: Some(v), .. }) => {
            assert_eq!(v.protocol, None);
            assert_eq!(v.leader, None);
            assert!(v.members.is_empty());
            assert_eq!(v.current_state_timestamp, 77);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn given_group_metadata_should_be_written_as_kafka_value_v3() {
    let r = GroupRecord::GroupMetadata {
        group: "grp".into(),
        value: Some(group_value(3)),
    };
    let (k, v) = r.encode();
    assert_eq!(k, B::default().i16(2).s(Some("grp")).0);
    assert_eq!(v.unwrap(), group_value_bytes(3));
    let tomb = GroupRecord::GroupMetadata {
        group: "grp".into(),
        value: None,
    };
    assert_eq!(tomb.encode().1, None);
}

#[test]
fn given_bad_records_should_report_errors_instead_of_panicking() {
    let key = offset_key(1);
    assert!(matches!(
        GroupRecord::decode(&key, Some(&B::default().i16(9).i64(1).0)),
        Err(RecordError::UnknownVersion { version: 9, .. })
    ));
    assert!(matches!(
        GroupRecord::decode(&key, Some(&B::default().i16(3).i64(1).0)),
        Err(RecordError::Truncated(_))
    ));
    assert!(matches!(
        GroupRecord::decode(&[0], None),
        Err(RecordError::Truncated(_))
    ));
    assert!(matches!(
        GroupRecord::decode(&B::default().i16(-1).0, None),
        Err(RecordError::UnknownType(-1))
    ));
    // Kafka's share and streams group records are not ours.
    assert!(matches!(
        GroupRecord::decode(&B::default().i16(10).s(Some("g")).0, None),
        Err(RecordError::UnknownType(10))
    ));
    // A member count far beyond the bytes present.
    let bogus = B::default()
        .i16(3)
        .s(Some("consumer"))
        .i32(1)
        .s(None)
        .s(None)
        .i64(0)
        .i32(i32::MAX)
        .0;
    assert!(GroupRecord::decode(&B::default().i16(2).s(Some("g")).0, Some(&bogus)).is_err());
    // Not UTF-8.
    let bad = B::default()
        .i16(1)
        .i16(2)
        .raw(&[0xff, 0xfe])
        .s(Some("t"))
        .i32(0)
        .0;
    assert!(matches!(
        GroupRecord::decode(&bad, None),
        Err(RecordError::InvalidUtf8(_))
    ));
}

fn arb_string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._é😀-]{0,24}"
}

proptest! {
    #[test]
    fn given_any_offset_commit_should_round_trip(
        group in arb_string(), topic in arb_string(), partition in any::<i32>(),
        offset in any::<i64>(), epoch in any::<i32>(), metadata in arb_string(),
        ts in any::<i64>(), expire in proptest::option::of(any::<i64>()), tomb in any::<bool>(),
    ) {
        let value = (!tomb).then(|| OffsetCommitValue {
            offset,
            // v1 (an explicit expiry) has no leader epoch.
            leader_epoch: if expire.is_some() { -1 } else { epoch },
            metadata,
            commit_timestamp: ts,
            expire_timestamp: expire,
            topic_id: None,
        });
        let r = GroupRecord::OffsetCommit { group, topic, partition, value };
        let (k, v) = r.encode();
        prop_assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), r);
    }

    #[test]
    fn given_any_group_metadata_should_round_trip(
        group in arb_string(), ptype in arb_string(), generation in any::<i32>(),
        protocol in proptest::option::of(arb_string()), leader in proptest::option::of(arb_string()),
        ts in any::<i64>(),
        members in proptest::collection::vec(
            (arb_string(), proptest::option::of(arb_string()), arb_string(), arb_string(),
             any::<i32>(), any::<i32>(), proptest::collection::vec(any::<u8>(), 0..40),
             proptest::collection::vec(any::<u8>(), 0..40)),
            0..5),
    ) {
        let value = GroupMetadataValue {
            protocol_type: ptype,
            generation,
            protocol,
            leader,
            current_state_timestamp: ts,
            members: members
                .into_iter()
                .map(|(m, i, c, h, rt, st, sub, asg)| MemberMetadata {
                    member_id: m,
                    group_instance_id: i,
                    client_id: c,
                    client_host: h,
                    rebalance_timeout: rt,
                    session_timeout: st,
                    subscription: Bytes::from(sub),
                    assignment: Bytes::from(asg),
                })
                .collect(),
        };
        let r = GroupRecord::GroupMetadata { group, value: Some(value) };
        let (k, v) = r.encode();
        prop_assert_eq!(GroupRecord::decode(&k, v.as_deref()).unwrap(), r);
    }

    #[test]
    fn given_arbitrary_bytes_decoding_should_not_panic(
        key in proptest::collection::vec(any::<u8>(), 0..40),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80)),
    ) {
        let _ = GroupRecord::decode(&key, value.as_deref());
    }
}
