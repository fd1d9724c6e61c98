//! The metadata records: the only way cluster metadata changes.
//!
//! They mirror the KRaft records Kafka writes to `__cluster_metadata` (`TopicRecord`,
//! `PartitionRecord`, `ConfigRecord`, `RemoveTopicRecord`, `RegisterBrokerRecord`), reduced to
//! the fields Runnel uses. The JSON encoding is stable: each record is an object whose
//! `"type"` field names the variant in snake case, and topic ids are written as hyphenated
//! UUID strings. Changing a field name or tag is a format change of the metadata log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The thing a [`MetadataRecord::Config`] record configures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ConfigResource {
    /// A topic, by name (as in Kafka's `ConfigRecord` for resource type TOPIC).
    Topic(String),
    /// A broker: its node id as a decimal string, or `""` for the cluster-wide default
    /// (Kafka's `DYNAMIC_DEFAULT_BROKER_CONFIG`).
    Broker(String),
}

impl ConfigResource {
    /// The resource for the dynamic configs of one broker.
    pub fn broker(node_id: i32) -> Self {
        ConfigResource::Broker(node_id.to_string())
    }

    /// The resource for the cluster-wide dynamic broker defaults.
    pub fn cluster_default() -> Self {
        ConfigResource::Broker(String::new())
    }

    pub fn topic(name: impl Into<String>) -> Self {
        ConfigResource::Topic(name.into())
    }
}

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A topic was created (Kafka `TopicRecord`).
    Topic {
        name: String,
        #[serde(with = "uuid_string")]
        topic_id: Uuid,
    },
    /// A partition was created or its registration replaced (Kafka `PartitionRecord`).
    Partition {
        #[serde(with = "uuid_string")]
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        /// The leader's node id, or -1 when the partition has no leader.
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A dynamic config was set, or deleted when `value` is `None` (Kafka `ConfigRecord`).
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// A topic, its partitions and its config overrides were deleted (Kafka `RemoveTopicRecord`).
    RemoveTopic {
        #[serde(with = "uuid_string")]
        topic_id: Uuid,
    },
    /// A block of producer ids was handed out: every id below `next_producer_id` is taken
    /// (Kafka `ProducerIdsRecord`). Ids are never reused, across restarts too.
    ProducerIds {
        broker_id: i32,
        next_producer_id: i64,
    },
    /// A broker registered its endpoint (a reduced Kafka `RegisterBrokerRecord`).
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
    },
}

/// The leader value of a partition without a leader (Kafka's `LeaderConstants.NO_LEADER`).
pub const NO_LEADER: i32 = -1;

impl MetadataRecord {
    /// Encodes a batch of records as the JSON array stored in one metadata log frame.
    pub fn encode_batch(records: &[MetadataRecord]) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(records)
    }

    /// Decodes a frame payload written by [`MetadataRecord::encode_batch`].
    pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Serde adapter writing a [`Uuid`] as its hyphenated string, so the crate needs no extra
/// `uuid` features.
mod uuid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Uuid {
        Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
    }

    #[test]
    fn given_each_record_kind_when_encoded_should_use_stable_json_shape() {
        let cases = [
            (
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: id(),
                },
                r#"{"type":"topic","name":"t","topic_id":"01234567-89ab-cdef-0123-456789abcdef"}"#,
            ),
            (
                MetadataRecord::Partition {
                    topic_id: id(),
                    partition: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
                r#"{"type":"partition","topic_id":"01234567-89ab-cdef-0123-456789abcdef","partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}"#,
            ),
            (
                MetadataRecord::Config {
                    resource: ConfigResource::topic("t"),
                    name: "retention.ms".into(),
                    value: Some("1000".into()),
                },
                r#"{"type":"config","resource":{"type":"topic","name":"t"},"name":"retention.ms","value":"1000"}"#,
            ),
            (
                MetadataRecord::Config {
                    resource: ConfigResource::cluster_default(),
                    name: "log.retention.ms".into(),
                    value: None,
                },
                r#"{"type":"config","resource":{"type":"broker","name":""},"name":"log.retention.ms","value":null}"#,
            ),
            (
                MetadataRecord::RemoveTopic { topic_id: id() },
                r#"{"type":"remove_topic","topic_id":"01234567-89ab-cdef-0123-456789abcdef"}"#,
            ),
            (
                MetadataRecord::RegisterBroker {
                    node_id: 1,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                },
                r#"{"type":"register_broker","node_id":1,"host":"localhost","port":9092,"rack":null}"#,
            ),
        ];
        for (record, json) in cases {
            assert_eq!(serde_json::to_string(&record).unwrap(), json);
            let back: MetadataRecord = serde_json::from_str(json).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn given_a_batch_when_round_tripped_should_be_equal() {
        let batch = vec![
            MetadataRecord::Topic {
                name: "a".into(),
                topic_id: id(),
            },
            MetadataRecord::RemoveTopic { topic_id: id() },
        ];
        let bytes = MetadataRecord::encode_batch(&batch).unwrap();
        assert_eq!(MetadataRecord::decode_batch(&bytes).unwrap(), batch);
    }

    #[test]
    fn given_a_bad_uuid_when_decoded_should_fail() {
        let json = r#"{"type":"remove_topic","topic_id":"not-a-uuid"}"#;
        assert!(serde_json::from_str::<MetadataRecord>(json).is_err());
    }
}
