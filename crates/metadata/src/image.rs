//! The in-memory image of the cluster metadata, built by applying records in order.
//!
//! Pure: no I/O, no clock, no randomness. Applying a record either changes the image or
//! leaves it untouched and returns an [`ApplyError`]; a record never half-applies.
//!
//! Cloning is cheap enough to do once per metadata change: topics sit behind `Arc`s, so a
//! clone copies one pointer per topic and a change copies only the topic it touches. The
//! broker publishes each new image as an `Arc<MetadataImage>` so readers never lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;
use uuid::Uuid;

use crate::records::{ConfigResource, MetadataRecord, NO_LEADER};

/// Why a record cannot be applied to the image.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    #[error("topic '{name}' already exists with topic id {existing}")]
    DuplicateTopicName { name: String, existing: Uuid },
    #[error("topic id {topic_id} is already used by topic '{existing_name}'")]
    DuplicateTopicId {
        topic_id: Uuid,
        existing_name: String,
    },
    #[error("the nil UUID is not a valid topic id (topic '{name}')")]
    NilTopicId { name: String },
    #[error("invalid topic name in record: {0}")]
    InvalidTopicName(String),
    #[error("no topic with id {0}")]
    UnknownTopicId(Uuid),
    #[error("no topic named '{0}'")]
    UnknownTopicName(String),
    #[error("invalid partition record for topic id {topic_id} partition {partition}: {reason}")]
    InvalidPartition {
        topic_id: Uuid,
        partition: i32,
        reason: String,
    },
    #[error("invalid config record: {0}")]
    InvalidConfig(String),
    #[error("producer ids would go backwards: {next_producer_id} < {current}")]
    ProducerIdsBackwards { next_producer_id: i64, current: i64 },
    #[error("invalid broker registration for node {node_id}: {reason}")]
    InvalidBroker { node_id: i32, reason: String },
}

/// One partition's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader's node id, or [`NO_LEADER`].
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    name: String,
    topic_id: Uuid,
    partitions: BTreeMap<i32, PartitionImage>,
}

impl TopicImage {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// Partitions in index order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionImage> {
        self.partitions.values()
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionImage> {
        self.partitions.get(&partition)
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// The replication factor of partition 0 (all partitions share it when created by the
    /// controller), or 0 for a topic without partitions.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .values()
            .next()
            .map_or(0, |p| p.replicas.len())
    }
}

/// A registered broker's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// The cluster metadata at one point of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    cluster_id: String,
    topics_by_id: BTreeMap<Uuid, Arc<TopicImage>>,
    topic_ids_by_name: BTreeMap<String, Uuid>,
    /// Names normalised by [`collision_key`] → the existing topic names with that key.
    names_by_collision_key: BTreeMap<String, Vec<String>>,
    topic_configs: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    /// Keyed by node id as a string, `""` for the cluster default.
    broker_configs: BTreeMap<String, Arc<BTreeMap<String, String>>>,
    brokers: BTreeMap<i32, BrokerImage>,
    /// The first producer id not yet handed out.
    next_producer_id: i64,
}

/// Kafka's normalisation for topic-name collisions (`Topic.unifyCollisionChars`): '.' and
/// '_' are the same character in metric names, so `a.b` and `a_b` collide.
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

impl MetadataImage {
    /// An empty image of the cluster `cluster_id` (read from `meta.properties`).
    pub fn new(cluster_id: impl Into<String>) -> Self {
        MetadataImage {
            cluster_id: cluster_id.into(),
            ..Default::default()
        }
    }

    /// The first producer id not yet handed out (0 on a new cluster).
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Applies a batch atomically: either every record applies, or the image is unchanged
    /// and the first failure is returned with its index in the batch.
    pub fn apply_all(&mut self, records: &[MetadataRecord]) -> Result<(), (usize, ApplyError)> {
        let mut next = self.clone();
        for (index, record) in records.iter().enumerate() {
            next.apply(record).map_err(|e| (index, e))?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one record. On error the image is unchanged.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::Topic { name, topic_id } => self.apply_topic(name, *topic_id),
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => self.apply_partition(
                *topic_id,
                PartitionImage {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                },
            ),
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => self.apply_config(resource, name, value.as_deref()),
            MetadataRecord::RemoveTopic { topic_id } => self.apply_remove_topic(*topic_id),
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                if *next_producer_id < self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBackwards {
                        next_producer_id: *next_producer_id,
                        current: self.next_producer_id,
                    });
                }
                self.next_producer_id = *next_producer_id;
                Ok(())
            }
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => self.apply_register_broker(*node_id, host, *port, rack.clone()),
        }
    }

    fn apply_topic(&mut self, name: &str, topic_id: Uuid) -> Result<(), ApplyError> {
        runnel_model::validate_topic_name(name).map_err(ApplyError::InvalidTopicName)?;
        if topic_id.is_nil() {
            return Err(ApplyError::NilTopicId { name: name.into() });
        }
        if let Some(existing) = self.topic_ids_by_name.get(name) {
            return Err(ApplyError::DuplicateTopicName {
                name: name.into(),
                existing: *existing,
            });
        }
        if let Some(existing) = self.topics_by_id.get(&topic_id) {
            return Err(ApplyError::DuplicateTopicId {
                topic_id,
                existing_name: existing.name.clone(),
            });
        }
        self.topic_ids_by_name.insert(name.to_owned(), topic_id);
        self.names_by_collision_key
            .entry(collision_key(name))
            .or_default()
            .push(name.to_owned());
        self.topics_by_id.insert(
            topic_id,
            Arc::new(TopicImage {
                name: name.to_owned(),
                topic_id,
                partitions: BTreeMap::new(),
            }),
        );
        Ok(())
    }

    fn apply_partition(&mut self, topic_id: Uuid, p: PartitionImage) -> Result<(), ApplyError> {
        let invalid = |reason: String| ApplyError::InvalidPartition {
            topic_id,
            partition: p.partition,
            reason,
        };
        let Some(topic) = self.topics_by_id.get_mut(&topic_id) else {
            return Err(ApplyError::UnknownTopicId(topic_id));
        };
        if p.partition < 0 {
            return Err(invalid("partition index is negative".into()));
        }
        if p.replicas.is_empty() {
            return Err(invalid("replica list is empty".into()));
        }
        let mut sorted = p.replicas.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!(
                "replica {} is listed more than once",
                w[0]
            )));
        }
        if let Some(bad) = sorted.iter().find(|id| **id < 0) {
            return Err(invalid(format!("replica id {bad} is negative")));
        }
        if let Some(stray) = p.isr.iter().find(|id| !p.replicas.contains(id)) {
            return Err(invalid(format!("ISR member {stray} is not a replica")));
        }
        let mut isr_sorted = p.isr.clone();
        isr_sorted.sort_unstable();
        if isr_sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(invalid("ISR lists a replica more than once".into()));
        }
        if p.leader != NO_LEADER && !p.isr.contains(&p.leader) {
            return Err(invalid(format!("leader {} is not in the ISR", p.leader)));
        }
        if p.leader_epoch < 0 || p.partition_epoch < 0 {
            return Err(invalid("epochs must not be negative".into()));
        }
        Arc::make_mut(topic).partitions.insert(p.partition, p);
        Ok(())
    }

    fn apply_config(
        &mut self,
        resource: &ConfigResource,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), ApplyError> {
        if name.is_empty() {
            return Err(ApplyError::InvalidConfig("config name is empty".into()));
        }
        let (map, key) = match resource {
            ConfigResource::Topic(topic) => {
                if !self.topic_ids_by_name.contains_key(topic) {
                    return Err(ApplyError::UnknownTopicName(topic.clone()));
                }
                (&mut self.topic_configs, topic.clone())
            }
            ConfigResource::Broker(node) if node.is_empty() => {
                (&mut self.broker_configs, String::new())
            }
            ConfigResource::Broker(node) => match node.parse::<i32>() {
                // Normalised ("01" and "1" are the same broker).
                Ok(id) if id >= 0 => (&mut self.broker_configs, id.to_string()),
                _ => {
                    return Err(ApplyError::InvalidConfig(format!(
                    "broker resource name '{node}' is neither a node id nor \"\" (cluster default)"
                )))
                }
            },
        };
        let key = &key;
        match value {
            Some(v) => {
                Arc::make_mut(map.entry(key.clone()).or_default()).insert(name.into(), v.into());
            }
            None => {
                if let Some(entries) = map.get_mut(key) {
                    Arc::make_mut(entries).remove(name);
                    if entries.is_empty() {
                        map.remove(key);
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_remove_topic(&mut self, topic_id: Uuid) -> Result<(), ApplyError> {
        let Some(topic) = self.topics_by_id.remove(&topic_id) else {
            return Err(ApplyError::UnknownTopicId(topic_id));
        };
        self.topic_ids_by_name.remove(&topic.name);
        let key = collision_key(&topic.name);
        if let Some(names) = self.names_by_collision_key.get_mut(&key) {
            names.retain(|n| n != &topic.name);
            if names.is_empty() {
                self.names_by_collision_key.remove(&key);
            }
        }
        // As in KRaft, removing a topic also removes its config overrides.
        self.topic_configs.remove(&topic.name);
        Ok(())
    }

    fn apply_register_broker(
        &mut self,
        node_id: i32,
        host: &str,
        port: i32,
        rack: Option<String>,
    ) -> Result<(), ApplyError> {
        let invalid = |reason: &str| ApplyError::InvalidBroker {
            node_id,
            reason: reason.into(),
        };
        if node_id < 0 {
            return Err(invalid("node id is negative"));
        }
        let port = u16::try_from(port).map_err(|_| invalid("port is outside 0..=65535"))?;
        if host.is_empty() {
            return Err(invalid("host is empty"));
        }
        self.brokers.insert(
            node_id,
            BrokerImage {
                node_id,
                host: host.into(),
                port,
                rack,
            },
        );
        Ok(())
    }

    // ----- lookups -----

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids_by_name
            .get(name)
            .and_then(|id| self.topics_by_id.get(id))
            .map(|t| t.as_ref())
    }

    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topics_by_id.get(topic_id).map(|t| t.as_ref())
    }

    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.topic_ids_by_name.get(name).copied()
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.topic_ids_by_name
            .values()
            .filter_map(|id| self.topics_by_id.get(id).map(|t| t.as_ref()))
    }

    pub fn topic_count(&self) -> usize {
        self.topics_by_id.len()
    }

    /// Existing topics whose names differ from `name` only by '.' versus '_'
    /// (`name` itself excluded), sorted.
    pub fn colliding_topics(&self, name: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .names_by_collision_key
            .get(&collision_key(name))
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|n| *n != name)
                    .collect()
            })
            .unwrap_or_default();
        names.sort_unstable();
        names
    }

    /// A topic's config overrides (absent when it has none or does not exist).
    pub fn topic_config(&self, topic: &str) -> Option<&BTreeMap<String, String>> {
        self.topic_configs.get(topic).map(|m| m.as_ref())
    }

    /// The dynamic configs of broker `node_id`.
    pub fn broker_config(&self, node_id: i32) -> Option<&BTreeMap<String, String>> {
        self.broker_configs
            .get(&node_id.to_string())
            .map(|m| m.as_ref())
    }

    /// The cluster-wide dynamic broker defaults (resource name `""`).
    pub fn cluster_default_broker_config(&self) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get("").map(|m| m.as_ref())
    }

    /// Registered brokers, by node id.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values()
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerImage> {
        self.brokers.get(&node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn topic(name: &str, n: u128) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: id(n),
        }
    }

    fn partition(n: u128, index: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: id(n),
            partition: index,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn config(resource: ConfigResource, name: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::Config {
            resource,
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn given_topic_and_partitions_when_applied_should_be_found_by_name_and_id() {
        let mut image = MetadataImage::new("cid");
        image
            .apply_all(&[
                topic("b", 2),
                partition(2, 1),
                partition(2, 0),
                topic("a", 1),
            ])
            .unwrap();
        assert_eq!(image.cluster_id(), "cid");
        let b = image.topic_by_name("b").unwrap();
        assert_eq!(b.topic_id(), id(2));
        assert_eq!(b.partition_count(), 2);
        assert_eq!(
            b.partitions().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(b.partition(1).unwrap().leader, 1);
        assert_eq!(b.replication_factor(), 1);
        assert_eq!(image.topic_by_id(&id(1)).unwrap().name(), "a");
        assert_eq!(image.topic_id("a"), Some(id(1)));
        let names: Vec<_> = image.topics().map(|t| t.name()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(image.topic_count(), 2);
    }

    #[test]
    fn given_inconsistent_records_when_applied_should_be_rejected_and_leave_image_unchanged() {
        let mut base = MetadataImage::new("cid");
        base.apply_all(&[topic("t", 1), partition(1, 0)]).unwrap();
        let bad_partition =
            |replicas: Vec<i32>, isr: Vec<i32>, leader: i32| MetadataRecord::Partition {
                topic_id: id(1),
                partition: 1,
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            };
        let cases: Vec<(&str, MetadataRecord)> = vec![
            ("duplicate name", topic("t", 9)),
            ("duplicate id", topic("u", 1)),
            ("nil id", topic("u", 0)),
            ("invalid name", topic("a b", 9)),
            ("partition for unknown topic id", partition(7, 0)),
            ("negative partition", partition(1, -1)),
            ("empty replicas", bad_partition(vec![], vec![], -1)),
            ("duplicate replica", bad_partition(vec![1, 1], vec![1], 1)),
            ("isr not replica", bad_partition(vec![1], vec![2], -1)),
            ("leader not in isr", bad_partition(vec![1, 2], vec![1], 2)),
            (
                "config for unknown topic",
                config(ConfigResource::topic("nope"), "k", Some("v")),
            ),
            (
                "config for bad broker name",
                config(ConfigResource::Broker("x".into()), "k", Some("v")),
            ),
            (
                "config with empty name",
                config(ConfigResource::topic("t"), "", Some("v")),
            ),
            (
                "remove unknown topic",
                MetadataRecord::RemoveTopic { topic_id: id(7) },
            ),
            (
                "broker with bad port",
                MetadataRecord::RegisterBroker {
                    node_id: 1,
                    host: "h".into(),
                    port: 70000,
                    rack: None,
                },
            ),
        ];
        for (what, record) in cases {
            let mut image = base.clone();
            assert!(image.apply(&record).is_err(), "{what} should be rejected");
            assert_eq!(image, base, "{what} should leave the image unchanged");
        }
    }

    #[test]
    fn given_a_batch_with_a_bad_record_when_applied_should_apply_nothing() {
        let mut image = MetadataImage::new("cid");
        let err = image
            .apply_all(&[topic("t", 1), partition(9, 0)])
            .unwrap_err();
        assert_eq!(err, (1, ApplyError::UnknownTopicId(id(9))));
        assert_eq!(image.topic_count(), 0);
    }

    #[test]
    fn given_configs_when_set_and_deleted_should_track_overrides() {
        let mut image = MetadataImage::new("cid");
        image
            .apply_all(&[
                topic("t", 1),
                config(ConfigResource::topic("t"), "retention.ms", Some("1")),
                config(ConfigResource::topic("t"), "segment.bytes", Some("2000000")),
                config(ConfigResource::topic("t"), "segment.bytes", None),
                config(
                    ConfigResource::cluster_default(),
                    "log.retention.ms",
                    Some("5"),
                ),
                config(ConfigResource::broker(1), "log.retention.ms", Some("6")),
            ])
            .unwrap();
        let overrides = image.topic_config("t").unwrap();
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides["retention.ms"], "1");
        assert_eq!(
            image.cluster_default_broker_config().unwrap()["log.retention.ms"],
            "5"
        );
        assert_eq!(image.broker_config(1).unwrap()["log.retention.ms"], "6");
        image
            .apply(&config(
                ConfigResource::Broker("01".into()),
                "log.segment.bytes",
                Some("7"),
            ))
            .unwrap();
        assert_eq!(
            image.broker_config(1).unwrap()["log.segment.bytes"],
            "7",
            "node id normalised"
        );
        assert!(image.broker_config(2).is_none());
        // Deleting an absent config is a no-op, as in Kafka.
        image
            .apply(&config(ConfigResource::topic("t"), "absent", None))
            .unwrap();
    }

    #[test]
    fn given_a_removed_topic_should_drop_partitions_configs_and_name() {
        let mut image = MetadataImage::new("cid");
        image
            .apply_all(&[
                topic("a.b", 1),
                partition(1, 0),
                config(ConfigResource::topic("a.b"), "retention.ms", Some("1")),
                MetadataRecord::RemoveTopic { topic_id: id(1) },
            ])
            .unwrap();
        assert!(image.topic_by_name("a.b").is_none());
        assert!(image.topic_by_id(&id(1)).is_none());
        assert!(image.topic_config("a.b").is_none());
        assert!(image.colliding_topics("a_b").is_empty());
        // The name can be reused with a new id.
        image.apply(&topic("a.b", 2)).unwrap();
    }

    #[test]
    fn given_topics_differing_by_dot_and_underscore_should_report_collisions() {
        let mut image = MetadataImage::new("cid");
        image.apply(&topic("a.b", 1)).unwrap();
        assert_eq!(image.colliding_topics("a_b"), ["a.b"]);
        assert!(image.colliding_topics("a.b").is_empty());
        assert!(image.colliding_topics("ab").is_empty());
    }

    #[test]
    fn given_a_partition_record_for_an_existing_partition_should_replace_it() {
        let mut image = MetadataImage::new("cid");
        image.apply_all(&[topic("t", 1), partition(1, 0)]).unwrap();
        image
            .apply(&MetadataRecord::Partition {
                topic_id: id(1),
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 3,
                partition_epoch: 4,
            })
            .unwrap();
        let p = image.topic_by_name("t").unwrap().partition(0).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (3, 4));
    }

    #[test]
    fn given_a_clone_when_original_changes_should_keep_old_snapshot() {
        let mut image = MetadataImage::new("cid");
        image.apply_all(&[topic("t", 1), partition(1, 0)]).unwrap();
        let snapshot = Arc::new(image.clone());
        image.apply(&partition(1, 1)).unwrap();
        assert_eq!(snapshot.topic_by_name("t").unwrap().partition_count(), 1);
        assert_eq!(image.topic_by_name("t").unwrap().partition_count(), 2);
    }

    #[test]
    fn given_a_broker_registration_should_be_listed() {
        let mut image = MetadataImage::new("cid");
        image
            .apply(&MetadataRecord::RegisterBroker {
                node_id: 1,
                host: "localhost".into(),
                port: 9092,
                rack: Some("r1".into()),
            })
            .unwrap();
        let b = image.broker(1).unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.rack.as_deref()),
            ("localhost", 9092, Some("r1"))
        );
        assert_eq!(image.brokers().count(), 1);
    }
}
