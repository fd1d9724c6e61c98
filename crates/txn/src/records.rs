//! The records of `__transaction_state`, in Kafka's own format, so that Runnel's
//! transaction log is laid out like Kafka's and Kafka's records read back.
//!
//! **Key** (`TransactionLogKey`): `int16` record type 0, then version 0 of the key: the
//! transactional id as a classic string (`int16` length).
//!
//! **Value** (`TransactionLogValue`): `int16` version, then
//!
//! | field | type | versions |
//! | --- | --- | --- |
//! | `ProducerId` | int64 | 0+ |
//! | `PreviousProducerId` | int64, tag 0, default -1 | tagged 1+ |
//! | `NextProducerId` | int64, tag 1, default -1 | tagged 1+ |
//! | `ProducerEpoch` | int16 | 0+ |
//! | `TransactionTimeoutMs` | int32 | 0+ |
//! | `TransactionStatus` | int8 ([`TxnState::id`]) | 0+ |
//! | `TransactionPartitions` | nullable `[{Topic: string, PartitionIds: [int32]}]` | 0+ |
//! | `TransactionLastUpdateTimestampMs` | int64 | 0+ |
//! | `TransactionStartTimestampMs` | int64 | 0+ |
//! | `ClientTransactionVersion` | int16, tag 2, default 0 | tagged 1+ |
//!
//! Version 0 is classic (`int16` string lengths, `int32` array lengths, -1 = null); version
//! 1 is flexible (unsigned-varint lengths plus one, 0 = null, and a tagged-field section
//! after every struct). As Kafka's generated code, tagged fields are written only when they
//! differ from their default, in ascending tag order; unknown tags are skipped on read (for
//! instance the `NextProducerEpoch` tag 3 of Kafka's two-phase-commit work). Kafka writes
//! version 1 once the cluster's `transaction.version` is at least 1, version 0 before.
//!
//! A tombstone (no value) deletes an expired transactional id.

use runnel_group::records::wire::{Reader, Writer};
pub use runnel_group::RecordError;

use crate::state::{TxnState, NO_PRODUCER_ID};

/// The record type (key version) of `TransactionLogKey`.
pub const TRANSACTION_LOG_KEY: i16 = 0;
/// The highest `TransactionLogValue` version read and written.
pub const TRANSACTION_LOG_VALUE_MAX_VERSION: i16 = 1;

const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;

/// One record of a `__transaction_state` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub transactional_id: String,
    /// `None`: a tombstone, the transactional id expired.
    pub value: Option<TxnLogValue>,
}

/// `TransactionLogValue`, all versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    /// 0 or 1: the version it is (or will be) stored in.
    pub version: i16,
    pub producer_id: i64,
    /// Version 1 only (-1 otherwise).
    pub previous_producer_id: i64,
    /// Version 1 only (-1 otherwise).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TxnState,
    /// Null for `Empty`, as Kafka writes it.
    pub partitions: Option<Vec<TopicPartitions>>,
    pub last_update_timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    /// Version 1 only (0 otherwise).
    pub client_transaction_version: i16,
}

/// One entry of `TransactionPartitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<i32>,
}

impl TxnRecord {
    /// The record as stored: key bytes and value bytes (`None` for a tombstone).
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            encode_key(&self.transactional_id),
            self.value.as_ref().map(encode_value),
        )
    }

    /// Decodes a stored record (`value: None` is a tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, RecordError> {
        let transactional_id = decode_key(key)?;
        let value = value.map(decode_value).transpose()?;
        Ok(TxnRecord {
            transactional_id,
            value,
        })
    }
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.i16(TRANSACTION_LOG_KEY);
    w.string(transactional_id);
    w.into_vec()
}

pub fn decode_key(key: &[u8]) -> Result<String, RecordError> {
    let mut r = Reader::new(key);
    match r.i16("TransactionLogKey type")? {
        TRANSACTION_LOG_KEY => r.string("TransactionLogKey.transactionalId"),
        t => Err(RecordError::UnknownType(t)),
    }
}

pub fn encode_value(v: &TxnLogValue) -> Vec<u8> {
    let flexible = v.version >= 1;
    let mut w = Writer::new();
    w.i16(v.version);
    w.i64(v.producer_id);
    w.i16(v.producer_epoch);
    w.i32(v.transaction_timeout_ms);
    w.i8(v.state.id());
    match &v.partitions {
        None if flexible => w.unsigned_varint(0),
        None => w.i32(-1),
        Some(topics) => {
            array_len(&mut w, flexible, topics.len());
            for t in topics {
                if flexible {
                    w.compact_string(&t.topic);
                } else {
                    w.string(&t.topic);
                }
                array_len(&mut w, flexible, t.partitions.len());
                for p in &t.partitions {
                    w.i32(*p);
                }
                if flexible {
                    w.no_tagged_fields();
                }
            }
        }
    }
    w.i64(v.last_update_timestamp_ms);
    w.i64(v.start_timestamp_ms);
    if flexible {
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if v.previous_producer_id != NO_PRODUCER_ID {
            tags.push((
                TAG_PREVIOUS_PRODUCER_ID,
                v.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if v.next_producer_id != NO_PRODUCER_ID {
            tags.push((
                TAG_NEXT_PRODUCER_ID,
                v.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if v.client_transaction_version != 0 {
            tags.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                v.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        w.unsigned_varint(tags.len() as u32);
        for (tag, data) in tags {
            w.unsigned_varint(tag);
            w.unsigned_varint(data.len() as u32);
            for b in data {
                w.i8(b as i8);
            }
        }
    }
    w.into_vec()
}

fn array_len(w: &mut Writer, flexible: bool, len: usize) {
    if flexible {
        w.unsigned_varint(len as u32 + 1);
    } else {
        w.i32(len as i32);
    }
}

/// A nullable array length: `None` for null; checked against the bytes left (each element
/// takes at least `min_element_bytes`), so a bogus count cannot reserve a huge vector.
fn nullable_array_len(
    r: &mut Reader<'_>,
    flexible: bool,
    min_element_bytes: usize,
    field: &'static str,
) -> Result<Option<usize>, RecordError> {
    let len = if flexible {
        match r.unsigned_varint(field)? {
            0 => return Ok(None),
            n => i64::from(n) - 1,
        }
    } else {
        match r.i32(field)? {
            -1 => return Ok(None),
            n => i64::from(n),
        }
    };
    if len < 0 {
        return Err(RecordError::NegativeLength { field, len });
    }
    let len = len as usize;
    if len.saturating_mul(min_element_bytes.max(1)) > r.remaining() {
        return Err(RecordError::Truncated(field));
    }
    Ok(Some(len))
}

fn tag_i64(data: &[u8], field: &'static str) -> Result<i64, RecordError> {
    let b: [u8; 8] = data.try_into().map_err(|_| RecordError::Truncated(field))?;
    Ok(i64::from_be_bytes(b))
}

pub fn decode_value(bytes: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut r = Reader::new(bytes);
    let version = r.i16("TransactionLogValue version")?;
    if !(0..=TRANSACTION_LOG_VALUE_MAX_VERSION).contains(&version) {
        return Err(RecordError::UnknownVersion {
            record_type: TRANSACTION_LOG_KEY,
            version,
        });
    }
    let flexible = version >= 1;
    let producer_id = r.i64("TransactionLogValue.producerId")?;
    let producer_epoch = r.i16("TransactionLogValue.producerEpoch")?;
    let transaction_timeout_ms = r.i32("TransactionLogValue.transactionTimeoutMs")?;
    let status = r.i8("TransactionLogValue.transactionStatus")?;
    let state = TxnState::from_id(status)
        .ok_or_else(|| RecordError::Malformed(format!("unknown transaction status {status}")))?;
    // A topic entry takes at least 2 (flexible: 3) bytes, a partition id 4.
    let partitions = match nullable_array_len(
        &mut r,
        flexible,
        2,
        "TransactionLogValue.transactionPartitions",
    )? {
        None => None,
        Some(count) => {
            let mut topics = Vec::with_capacity(count);
            for _ in 0..count {
                let topic = r.string_v(flexible, "PartitionsSchema.topic")?;
                let n = nullable_array_len(&mut r, flexible, 4, "PartitionsSchema.partitionIds")?
                    .ok_or(RecordError::UnexpectedNull("PartitionsSchema.partitionIds"))?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.i32("PartitionsSchema.partitionIds")?);
                }
                if flexible {
                    r.tagged_fields("PartitionsSchema", |_, _| Ok(()))?;
                }
                topics.push(TopicPartitions {
                    topic,
                    partitions: ids,
                });
            }
            Some(topics)
        }
    };
    let last_update_timestamp_ms = r.i64("TransactionLogValue.transactionLastUpdateTimestampMs")?;
    let start_timestamp_ms = r.i64("TransactionLogValue.transactionStartTimestampMs")?;
    let mut previous_producer_id = NO_PRODUCER_ID;
    let mut next_producer_id = NO_PRODUCER_ID;
    let mut client_transaction_version = 0;
    if flexible {
        r.tagged_fields("TransactionLogValue", |tag, data| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => {
                    previous_producer_id = tag_i64(data, "TransactionLogValue.previousProducerId")?
                }
                TAG_NEXT_PRODUCER_ID => {
                    next_producer_id = tag_i64(data, "TransactionLogValue.nextProducerId")?
                }
                TAG_CLIENT_TRANSACTION_VERSION => {
                    let b: [u8; 2] = data.try_into().map_err(|_| {
                        RecordError::Truncated("TransactionLogValue.clientTransactionVersion")
                    })?;
                    client_transaction_version = i16::from_be_bytes(b);
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(TxnLogValue {
        version,
        producer_id,
        previous_producer_id,
        next_producer_id,
        producer_epoch,
        transaction_timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value(version: i16) -> TxnLogValue {
        TxnLogValue {
            version,
            producer_id: 1000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            transaction_timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: Some(vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![0, 2],
            }]),
            last_update_timestamp_ms: 20,
            start_timestamp_ms: 10,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn given_a_key_when_encoded_should_be_type_0_and_a_classic_string() {
        assert_eq!(encode_key("tx"), vec![0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&encode_key("tx")).unwrap(), "tx");
        assert_eq!(decode_key(&[0, 1, 0, 0]), Err(RecordError::UnknownType(1)));
    }

    #[test]
    fn given_a_v0_value_when_encoded_should_match_kafkas_bytes() {
        let bytes = encode_value(&value(0));
        let mut expected = vec![0, 0]; // version
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1); // Ongoing
        expected.extend_from_slice(&1i32.to_be_bytes()); // one topic
        expected.extend_from_slice(&[0, 1, b't']);
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&20i64.to_be_bytes());
        expected.extend_from_slice(&10i64.to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn given_a_v1_value_with_defaults_when_encoded_should_write_no_tagged_field() {
        let bytes = encode_value(&value(1));
        let mut expected = vec![0, 1];
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(1);
        expected.push(2); // compact array of one topic
        expected.extend_from_slice(&[2, b't']); // compact string
        expected.push(3); // two partition ids
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.push(0); // the topic entry's tagged fields
        expected.extend_from_slice(&20i64.to_be_bytes());
        expected.extend_from_slice(&10i64.to_be_bytes());
        expected.push(0); // no tagged field
        assert_eq!(bytes, expected);
    }

    #[test]
    fn given_a_v1_value_with_tags_when_encoded_should_write_them_in_tag_order() {
        let mut v = value(1);
        v.state = TxnState::Empty;
        v.partitions = None;
        v.previous_producer_id = 7;
        v.client_transaction_version = 2;
        let bytes = encode_value(&v);
        let mut expected = vec![0, 1];
        expected.extend_from_slice(&1000i64.to_be_bytes());
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(0); // Empty
        expected.push(0); // null partitions
        expected.extend_from_slice(&20i64.to_be_bytes());
        expected.extend_from_slice(&10i64.to_be_bytes());
        expected.extend_from_slice(&[2, 0, 8]); // two tags; tag 0, 8 bytes
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&[2, 2]); // tag 2, 2 bytes
        expected.extend_from_slice(&2i16.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(decode_value(&bytes).unwrap(), v);
    }

    #[test]
    fn given_an_unknown_tag_when_decoded_should_skip_it() {
        let mut bytes = encode_value(&value(1));
        bytes.pop();
        bytes.extend_from_slice(&[1, 3, 2, 0, 5]); // tag 3, two bytes
        assert_eq!(decode_value(&bytes).unwrap(), value(1));
    }

    #[test]
    fn given_bad_values_when_decoded_should_fail_without_panicking() {
        assert!(matches!(
            decode_value(&[0, 2]),
            Err(RecordError::UnknownVersion { version: 2, .. })
        ));
        let mut bytes = encode_value(&value(0));
        bytes[2 + 8 + 2 + 4] = 9; // status 9
        assert!(matches!(
            decode_value(&bytes),
            Err(RecordError::Malformed(_))
        ));
        let bytes = encode_value(&value(0));
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err());
        }
        // A huge topic count with nothing behind it.
        let mut bytes = encode_value(&value(0))[..2 + 8 + 2 + 4 + 1].to_vec();
        bytes.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_value(&bytes),
            Err(RecordError::Truncated(_))
        ));
    }

    fn arb_state() -> impl Strategy<Value = TxnState> {
        proptest::sample::select(TxnState::ALL.to_vec())
    }

    prop_compose! {
        fn arb_value()(
            flexible in any::<bool>(),
            producer_id in any::<i64>(),
            previous_producer_id in any::<i64>(),
            next_producer_id in any::<i64>(),
            producer_epoch in any::<i16>(),
            transaction_timeout_ms in any::<i32>(),
            state in arb_state(),
            partitions in proptest::option::of(proptest::collection::vec(
                ("[a-z0-9._-]{0,20}", proptest::collection::vec(any::<i32>(), 0..5)), 0..5)),
            last_update_timestamp_ms in any::<i64>(),
            start_timestamp_ms in any::<i64>(),
            client_transaction_version in any::<i16>(),
        ) -> TxnLogValue {
            TxnLogValue {
                version: i16::from(flexible),
                producer_id,
                previous_producer_id: if flexible { previous_producer_id } else { -1 },
                next_producer_id: if flexible { next_producer_id } else { -1 },
                producer_epoch,
                transaction_timeout_ms,
                state,
                partitions: partitions.map(|ts| ts.into_iter().map(|(topic, partitions)| {
                    TopicPartitions { topic, partitions }
                }).collect()),
                last_update_timestamp_ms,
                start_timestamp_ms,
                client_transaction_version: if flexible { client_transaction_version } else { 0 },
            }
        }
    }

    proptest! {
        #[test]
        fn given_any_record_when_encoded_and_decoded_should_round_trip(
            id in "\\PC{0,40}",
            value in proptest::option::of(arb_value()),
        ) {
            let record = TxnRecord { transactional_id: id, value };
            let (k, v) = record.encode();
            prop_assert_eq!(TxnRecord::decode(&k, v.as_deref()).unwrap(), record);
        }

        #[test]
        fn given_arbitrary_bytes_when_decoded_should_not_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let _ = decode_value(&bytes);
            let _ = decode_key(&bytes);
        }
    }
}
