//! Turns admin requests into metadata records: the part of the controller that would run on
//! a Raft leader. Deterministic and I/O-free: the caller supplies the image, the defaults,
//! the live node ids and the new topic id; the result is the records to append (or why not).
//!
//! Messages are Kafka's (KRaft `ReplicationControlManager`/`ControllerApis`) where Kafka has
//! one, so clients print what they would print against Kafka.

use std::collections::BTreeMap;

use thiserror::Error;
use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::{ConfigResource, MetadataRecord, NO_LEADER};
use crate::topic_config::{
    validate_topic_config_value, validate_topic_configs, validate_topic_overrides,
};

/// The most partitions one CreateTopics entry may create. Kafka caps a controller operation
/// at 10,000 records (`MAX_RECORDS_PER_USER_OP`) and answers POLICY_VIOLATION past it; Runnel
/// names the limit in an INVALID_PARTITIONS error instead.
pub const MAX_PARTITIONS_PER_CREATE: i32 = 10_000;

/// Kafka's metadata topic, which clients may not create.
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// Why a request was refused. Each variant is one Kafka error code
/// ([`ControllerError::kafka_error_code`]); the string is the message for the response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS (36).
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION (17): a bad name, or one colliding with an existing topic.
    #[error("{0}")]
    InvalidTopic(String),
    /// INVALID_PARTITIONS (37).
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR (38).
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_REPLICA_ASSIGNMENT (39).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// INVALID_CONFIG (40): the message names the config and the reason.
    #[error("{0}")]
    InvalidConfig(String),
    /// INVALID_REQUEST (42).
    #[error("{0}")]
    InvalidRequest(String),
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// UNKNOWN_TOPIC_ID (100).
    #[error("{0}")]
    UnknownTopicId(String),
    /// TOPIC_DELETION_DISABLED (73), for the broker to return when `delete.topic.enable=false`
    /// (DeleteTopics v3+; v0-2 expect INVALID_REQUEST "Topic deletion is disabled.").
    #[error("{0}")]
    TopicDeletionDisabled(String),
}

impl ControllerError {
    /// The Kafka protocol error code of this error.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ControllerError::UnknownTopicOrPartition(_) => 3,
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidReplicaAssignment(_) => 39,
            ControllerError::InvalidConfig(_) => 40,
            ControllerError::InvalidRequest(_) => 42,
            ControllerError::TopicDeletionDisabled(_) => 73,
            ControllerError::UnknownTopicId(_) => 100,
        }
    }

    /// The message for the response's `error_message`.
    pub fn message(&self) -> &str {
        match self {
            ControllerError::TopicAlreadyExists(m)
            | ControllerError::InvalidTopic(m)
            | ControllerError::InvalidPartitions(m)
            | ControllerError::InvalidReplicationFactor(m)
            | ControllerError::InvalidReplicaAssignment(m)
            | ControllerError::InvalidConfig(m)
            | ControllerError::InvalidRequest(m)
            | ControllerError::UnknownTopicOrPartition(m)
            | ControllerError::UnknownTopicId(m)
            | ControllerError::TopicDeletionDisabled(m) => m,
        }
    }

    /// TOPIC_DELETION_DISABLED with Kafka's message.
    pub fn topic_deletion_disabled() -> Self {
        ControllerError::TopicDeletionDisabled("Topic deletion is disabled.".into())
    }
}

/// The broker's `num.partitions` and `default.replication.factor`, used when a request
/// asks for the default (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A manual assignment of one partition's replicas (CreateTopics `assignments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment {
    pub partition_index: i32,
    pub broker_ids: Vec<i32>,
}

/// One topic of a CreateTopics request.
#[derive(Debug, Clone, Copy)]
pub struct CreateTopic<'a> {
    pub name: &'a str,
    /// -1 for the broker default.
    pub num_partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Manual assignments; when present, both counts above must be -1.
    pub assignments: &'a [ReplicaAssignment],
    /// Config overrides; a `None` value is refused as in Kafka.
    pub configs: &'a [(String, Option<String>)],
}

/// Creates a topic: a `Topic` record, then its `Config` records, then one `Partition` record
/// per partition (Kafka's order). `node_ids` are the brokers that can host replicas.
pub fn create_topic(
    image: &MetadataImage,
    request: &CreateTopic<'_>,
    defaults: &TopicDefaults,
    node_ids: &[i32],
    topic_id: Uuid,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let name = request.name;
    if name == CLUSTER_METADATA_TOPIC {
        return Err(ControllerError::InvalidRequest(format!(
            "Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."
        )));
    }
    if image.topic_by_name(name).is_some() {
        return Err(ControllerError::TopicAlreadyExists(format!(
            "Topic '{name}' already exists."
        )));
    }
    runnel_model::validate_topic_name(name).map_err(|reason| {
        ControllerError::InvalidTopic(format!("Topic name is invalid: {reason}"))
    })?;
    if let Some(existing) = image.colliding_topics(name).first() {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{name}' collides with existing topic: {existing}"
        )));
    }
    validate_topic_configs(request.configs)?;
    if topic_id.is_nil() || image.topic_by_id(&topic_id).is_some() {
        return Err(ControllerError::InvalidRequest(format!(
            "Topic id {topic_id} is nil or already in use."
        )));
    }

    let mut nodes: Vec<i32> = node_ids.to_vec();
    nodes.sort_unstable();
    nodes.dedup();

    let partitions = if request.assignments.is_empty() {
        place_replicas(request, defaults, &nodes)?
    } else {
        manual_replicas(request, &nodes)?
    };

    let mut records = Vec::with_capacity(1 + request.configs.len() + partitions.len());
    records.push(MetadataRecord::Topic {
        name: name.to_owned(),
        topic_id,
    });
    // Last value wins for a repeated name, as in Kafka; order of first appearance is kept.
    let mut configs: Vec<(&str, &str)> = Vec::new();
    for (key, value) in request.configs {
        let Some(value) = value.as_deref() else {
            continue;
        };
        match configs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => configs.push((key, value)),
        }
    }
    records.extend(
        configs
            .into_iter()
            .map(|(key, value)| MetadataRecord::Config {
                resource: ConfigResource::topic(name),
                name: key.to_owned(),
                value: Some(value.to_owned()),
            }),
    );
    records.extend(partitions.into_iter().enumerate().map(|(index, replicas)| {
        MetadataRecord::Partition {
            topic_id,
            // `index` is below MAX_PARTITIONS_PER_CREATE, so it fits an i32.
            partition: i32::try_from(index).unwrap_or(i32::MAX),
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }));
    Ok(records)
}

/// Replicas of each partition by striping over the sorted node ids: partition `p` gets
/// `rf` consecutive nodes starting at `p mod n`, so leaders spread evenly.
fn place_replicas(
    request: &CreateTopic<'_>,
    defaults: &TopicDefaults,
    nodes: &[i32],
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let rf = request.replication_factor;
    if rf < -1 || rf == 0 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    let np = request.num_partitions;
    if np < -1 || np == 0 {
        return Err(ControllerError::InvalidPartitions(
            "Number of partitions was set to an invalid non-positive value.".into(),
        ));
    }
    let np = if np == -1 {
        defaults.num_partitions
    } else {
        np
    };
    let rf = if rf == -1 {
        defaults.replication_factor
    } else {
        rf
    };
    if np <= 0 {
        return Err(ControllerError::InvalidPartitions(format!(
            "The default number of partitions ({np}) is not positive."
        )));
    }
    if np > MAX_PARTITIONS_PER_CREATE {
        return Err(partition_limit_error(np));
    }
    if rf <= 0 {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): Invalid replication factor {rf}: \
             the replication factor must be positive."
        )));
    }
    if nodes.is_empty() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): All brokers are currently fenced."
        )));
    }
    let rf_usize = usize::try_from(rf).unwrap_or(usize::MAX);
    if rf_usize > nodes.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} \
             cannot be reached because only {} broker(s) are registered.",
            nodes.len()
        )));
    }
    let np_usize = usize::try_from(np).unwrap_or(0);
    Ok((0..np_usize)
        .map(|p| {
            (0..rf_usize)
                .map(|i| nodes[(p + i) % nodes.len()])
                .collect()
        })
        .collect())
}

fn partition_limit_error(requested: impl std::fmt::Display) -> ControllerError {
    ControllerError::InvalidPartitions(format!(
        "Number of partitions {requested} exceeds the limit of {MAX_PARTITIONS_PER_CREATE} \
         partitions per topic creation."
    ))
}

fn manual_replicas(
    request: &CreateTopic<'_>,
    nodes: &[i32],
) -> Result<Vec<Vec<i32>>, ControllerError> {
    if request.replication_factor != -1 {
        return Err(ControllerError::InvalidRequest(
            "A manual partition assignment was specified, but replication factor was not set to -1."
                .into(),
        ));
    }
    if request.num_partitions != -1 {
        return Err(ControllerError::InvalidRequest(
            "A manual partition assignment was specified, but numPartitions was not set to -1."
                .into(),
        ));
    }
    let max = usize::try_from(MAX_PARTITIONS_PER_CREATE).unwrap_or(usize::MAX);
    if request.assignments.len() > max {
        return Err(partition_limit_error(request.assignments.len()));
    }
    let invalid = |m: String| ControllerError::InvalidReplicaAssignment(m);
    let mut by_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut replication_factor: Option<usize> = None;
    for assignment in request.assignments {
        if by_index.contains_key(&assignment.partition_index) {
            return Err(invalid(format!(
                "Found multiple manual partition assignments for partition {}",
                assignment.partition_index
            )));
        }
        if assignment.broker_ids.is_empty() {
            return Err(invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            ));
        }
        let mut sorted = assignment.broker_ids.clone();
        sorted.sort_unstable();
        let mut previous: Option<i32> = None;
        for id in &sorted {
            if nodes.binary_search(id).is_err() {
                return Err(invalid(format!(
                    "The manual partition assignment includes broker {id}, but no such broker is registered."
                )));
            }
            if previous == Some(*id) {
                return Err(invalid(format!(
                    "The manual partition assignment includes the broker {id} more than once."
                )));
            }
            previous = Some(*id);
        }
        if let Some(rf) = replication_factor {
            if sorted.len() != rf {
                return Err(invalid(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but \
                     this is not consistent with previous partitions, which have {rf} replica(s).",
                    sorted.len()
                )));
            }
        }
        replication_factor = Some(sorted.len());
        by_index.insert(assignment.partition_index, assignment.broker_ids.clone());
    }
    let contiguous = by_index
        .keys()
        .zip(0..)
        .all(|(index, expected): (&i32, i32)| *index == expected);
    if !contiguous {
        return Err(invalid(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(by_index.into_values().collect())
}

/// A topic named in a DeleteTopics request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRef<'a> {
    Name(&'a str),
    Id(Uuid),
}

/// Deletes a topic: one `RemoveTopic` record (which also drops its partitions and overrides).
/// The broker checks `delete.topic.enable` before calling this.
pub fn delete_topic(
    image: &MetadataImage,
    topic: TopicRef<'_>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic_id = match topic {
        TopicRef::Name(name) => image.topic_id(name).ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition(
                "This server does not host this topic-partition.".into(),
            )
        })?,
        TopicRef::Id(id) if id.is_nil() => {
            return Err(ControllerError::InvalidRequest(format!(
                "Attempt to find topic with invalid topicId {id}"
            )))
        }
        TopicRef::Id(id) => {
            if image.topic_by_id(&id).is_none() {
                return Err(ControllerError::UnknownTopicId(
                    "This server does not host this topic ID.".into(),
                ));
            }
            id
        }
    };
    Ok(vec![MetadataRecord::RemoveTopic { topic_id }])
}

/// Changes a topic's overrides (IncrementalAlterConfigs SET/DELETE): `Some(value)` sets,
/// `None` deletes. Validates each name and value and the resulting set as a whole.
pub fn alter_topic_configs(
    image: &MetadataImage,
    topic: &str,
    changes: &[(String, Option<String>)],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    if image.topic_by_name(topic).is_none() {
        return Err(ControllerError::UnknownTopicOrPartition(
            "This server does not host this topic-partition.".into(),
        ));
    }
    let mut resulting: BTreeMap<String, String> =
        image.topic_config(topic).cloned().unwrap_or_default();
    for (name, value) in changes {
        match value {
            Some(v) => {
                validate_topic_config_value(name, v)?;
                resulting.insert(name.clone(), v.clone());
            }
            None => {
                if crate::topic_config::topic_config_def(name).is_none() {
                    return Err(ControllerError::InvalidConfig(format!(
                        "Unknown topic config name: {name}"
                    )));
                }
                resulting.remove(name);
            }
        }
    }
    validate_topic_overrides(&resulting)?;
    Ok(changes
        .iter()
        .map(|(name, value)| MetadataRecord::Config {
            resource: ConfigResource::topic(topic),
            name: name.clone(),
            value: value.clone(),
        })
        .collect())
}

/// Grows a topic to `new_total` partitions (CreatePartitions). Partitions are only ever
/// added; the new ones get `assignments` (one replica list per new partition) or are placed
/// on `node_ids`. Kafka's messages and codes: INVALID_PARTITIONS when the count does not grow
/// or is too large, INVALID_REPLICA_ASSIGNMENT for a wrong assignment.
pub fn create_partitions(
    image: &MetadataImage,
    topic: &str,
    new_total: i32,
    assignments: Option<&[Vec<i32>]>,
    node_ids: &[i32],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let Some(existing) = image.topic_by_name(topic) else {
        return Err(ControllerError::UnknownTopicOrPartition(
            "This server does not host this topic-partition.".into(),
        ));
    };
    let current = existing.partition_count() as i32;
    if new_total < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {topic} currently has {current} partition(s); {new_total} would not be an increase."
        )));
    }
    if new_total == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    let added = new_total - current;
    if added > MAX_PARTITIONS_PER_CREATE {
        return Err(ControllerError::InvalidPartitions(format!(
            "Adding {added} partitions exceeds the limit of {MAX_PARTITIONS_PER_CREATE} per request."
        )));
    }
    let replication_factor = existing.replication_factor().max(1);
    let mut nodes: Vec<i32> = node_ids.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.len() < replication_factor {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
            nodes.len()
        )));
    }
    if let Some(a) = assignments {
        if a.len() != added as usize {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                a.len()
            )));
        }
    }
    let mut records = Vec::with_capacity(added as usize);
    for i in 0..added {
        let index = current + i;
        let replicas: Vec<i32> = match assignments {
            Some(a) => {
                let r = &a[i as usize];
                let mut unique = r.clone();
                unique.sort_unstable();
                unique.dedup();
                if r.is_empty() || unique.len() != r.len() {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "The manual partition assignment includes an empty or duplicate replica list for partition {index}."
                    )));
                }
                if let Some(unknown) = r.iter().find(|b| !nodes.contains(b)) {
                    return Err(ControllerError::InvalidReplicaAssignment(format!(
                        "The manual partition assignment includes broker {unknown}, but no such broker is registered."
                    )));
                }
                r.clone()
            }
            None => (0..replication_factor)
                .map(|k| nodes[(index as usize + k) % nodes.len()])
                .collect(),
        };
        records.push(MetadataRecord::Partition {
            topic_id: existing.topic_id(),
            partition: index,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod create_partitions_tests {
    use super::*;

    fn image_with(topic: &str, partitions: i32) -> MetadataImage {
        let mut image = MetadataImage::new("c");
        let request = CreateTopic {
            name: topic,
            num_partitions: partitions,
            replication_factor: 1,
            assignments: &[],
            configs: &[],
        };
        let defaults = TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        };
        let records = create_topic(&image, &request, &defaults, &[1], Uuid::from_u128(7)).unwrap();
        for r in &records {
            image.apply(r).unwrap();
        }
        image
    }

    #[test]
    fn given_topic_when_grown_should_add_only_the_new_partitions() {
        let mut image = image_with("t", 2);
        let records = create_partitions(&image, "t", 5, None, &[1]).unwrap();
        assert_eq!(records.len(), 3);
        for r in &records {
            image.apply(r).unwrap();
        }
        assert_eq!(image.topic_by_name("t").unwrap().partition_count(), 5);
    }

    #[test]
    fn kafka_rules_for_create_partitions() {
        let image = image_with("t", 2);
        // (topic, new total, assignments, expected Kafka error code)
        type Case<'a> = (&'a str, i32, Option<Vec<Vec<i32>>>, i16);
        let cases: Vec<Case> = vec![
            ("t", 2, None, 37),
            ("t", 1, None, 37),
            ("nope", 3, None, 3),
            ("t", 4, Some(vec![vec![1]]), 39),
            ("t", 3, Some(vec![vec![9]]), 39),
            ("t", 3, Some(vec![vec![1, 1]]), 39),
            ("t", 2 + MAX_PARTITIONS_PER_CREATE + 1, None, 37),
        ];
        for (topic, total, assignments, code) in cases {
            let err =
                create_partitions(&image, topic, total, assignments.as_deref(), &[1]).unwrap_err();
            assert_eq!(err.kafka_error_code(), code, "{topic} {total}: {err}");
        }
        assert!(create_partitions(&image, "t", 3, Some(&[vec![1]]), &[1]).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: TopicDefaults = TopicDefaults {
        num_partitions: 1,
        replication_factor: 1,
    };

    fn tid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn image_with(names: &[&str]) -> MetadataImage {
        let mut image = MetadataImage::new("c");
        for (i, name) in names.iter().enumerate() {
            let id = tid(1000 + i as u128);
            image
                .apply_all(&[
                    MetadataRecord::Topic {
                        name: (*name).into(),
                        topic_id: id,
                    },
                    MetadataRecord::Partition {
                        topic_id: id,
                        partition: 0,
                        replicas: vec![1],
                        isr: vec![1],
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                    },
                ])
                .unwrap();
        }
        image
    }

    fn create<'a>(name: &'a str, np: i32, rf: i16) -> CreateTopic<'a> {
        CreateTopic {
            name,
            num_partitions: np,
            replication_factor: rf,
            assignments: &[],
            configs: &[],
        }
    }

    #[test]
    fn given_a_valid_request_should_emit_topic_configs_then_partitions_and_apply_cleanly() {
        let configs = vec![
            ("retention.ms".to_string(), Some("1000".to_string())),
            ("cleanup.policy".to_string(), Some("compact".to_string())),
            ("retention.ms".to_string(), Some("2000".to_string())),
        ];
        let request = CreateTopic {
            configs: &configs,
            ..create("orders", 3, -1)
        };
        let mut image = MetadataImage::new("c");
        let records = create_topic(&image, &request, &DEFAULTS, &[1], tid(7)).unwrap();
        assert_eq!(records.len(), 1 + 2 + 3);
        assert!(matches!(&records[0], MetadataRecord::Topic { name, .. } if name == "orders"));
        assert!(
            matches!(&records[1], MetadataRecord::Config { name, value: Some(v), .. } if name == "retention.ms" && v == "2000")
        );
        assert!(
            matches!(&records[2], MetadataRecord::Config { name, .. } if name == "cleanup.policy")
        );
        image.apply_all(&records).unwrap();
        let topic = image.topic_by_name("orders").unwrap();
        assert_eq!(topic.partition_count(), 3);
        let p = topic.partition(2).unwrap();
        assert_eq!(
            (p.leader, p.replicas.as_slice(), p.isr.as_slice()),
            (1, &[1][..], &[1][..])
        );
        assert_eq!(
            image.topic_config("orders").unwrap()["retention.ms"],
            "2000"
        );
    }

    #[test]
    fn given_defaults_and_several_nodes_should_stripe_replicas() {
        let image = MetadataImage::new("c");
        let defaults = TopicDefaults {
            num_partitions: 3,
            replication_factor: 2,
        };
        let records =
            create_topic(&image, &create("t", -1, -1), &defaults, &[3, 1, 2], tid(7)).unwrap();
        let replicas: Vec<Vec<i32>> = records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::Partition { replicas, .. } => Some(replicas.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
    }

    #[test]
    fn given_manual_assignments_should_use_them() {
        let image = MetadataImage::new("c");
        let assignments = vec![
            ReplicaAssignment {
                partition_index: 1,
                broker_ids: vec![1],
            },
            ReplicaAssignment {
                partition_index: 0,
                broker_ids: vec![1],
            },
        ];
        let request = CreateTopic {
            assignments: &assignments,
            ..create("t", -1, -1)
        };
        let records = create_topic(&image, &request, &DEFAULTS, &[1], tid(7)).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn given_bad_create_requests_should_fail_with_kafka_errors() {
        let image = image_with(&["existing", "a.b"]);
        let assign = |pairs: &[(i32, &[i32])]| -> Vec<ReplicaAssignment> {
            pairs
                .iter()
                .map(|(p, ids)| ReplicaAssignment {
                    partition_index: *p,
                    broker_ids: ids.to_vec(),
                })
                .collect()
        };
        let null_config = vec![("retention.ms".to_string(), None)];
        let bad_config = vec![("retention.ms".to_string(), Some("soon".to_string()))];
        let unknown_config = vec![("bogus".to_string(), Some("1".to_string()))];
        let a_empty = assign(&[(0, &[])]);
        let a_unknown = assign(&[(0, &[9])]);
        let a_dup = assign(&[(0, &[1, 1])]);
        let a_twice = assign(&[(0, &[1]), (0, &[1])]);
        let a_gap = assign(&[(0, &[1]), (2, &[1])]);
        let a_ok = assign(&[(0, &[1])]);
        let long_name = "x".repeat(250);

        type Case<'a> = (&'a str, CreateTopic<'a>, ControllerError);
        let cases: Vec<Case<'_>> = vec![
            ("exists", create("existing", 1, 1), ControllerError::TopicAlreadyExists("Topic 'existing' already exists.".into())),
            ("metadata topic", create("__cluster_metadata", 1, 1), ControllerError::InvalidRequest("Creation of internal topic __cluster_metadata is prohibited.".into())),
            ("empty name", create("", 1, 1), ControllerError::InvalidTopic("Topic name is invalid: topic name is empty".into())),
            ("dot name", create(".", 1, 1), ControllerError::InvalidTopic("Topic name is invalid: topic name cannot be '.'".into())),
            ("long name", create(&long_name, 1, 1), ControllerError::InvalidTopic("Topic name is invalid: topic name is 250 characters long, the limit is 249".into())),
            ("bad char", create("a/b", 1, 1), ControllerError::InvalidTopic("Topic name is invalid: topic name 'a/b' contains '/'; legal characters are ASCII alphanumerics, '.', '_' and '-'".into())),
            ("collision", create("a_b", 1, 1), ControllerError::InvalidTopic("Topic 'a_b' collides with existing topic: a.b".into())),
            ("zero partitions", create("t", 0, 1), ControllerError::InvalidPartitions("Number of partitions was set to an invalid non-positive value.".into())),
            ("negative partitions", create("t", -2, 1), ControllerError::InvalidPartitions("Number of partitions was set to an invalid non-positive value.".into())),
            ("too many partitions", create("t", 10_001, 1), ControllerError::InvalidPartitions("Number of partitions 10001 exceeds the limit of 10000 partitions per topic creation.".into())),
            ("zero rf", create("t", 1, 0), ControllerError::InvalidReplicationFactor("Replication factor must be larger than 0, or -1 to use the default value.".into())),
            ("negative rf", create("t", 1, -3), ControllerError::InvalidReplicationFactor("Replication factor must be larger than 0, or -1 to use the default value.".into())),
            ("rf above brokers", create("t", 1, 3), ControllerError::InvalidReplicationFactor("Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered.".into())),
            ("null config", CreateTopic { configs: &null_config, ..create("t", 1, 1) }, ControllerError::InvalidConfig("Null value not supported for topic configs: retention.ms".into())),
            ("bad config", CreateTopic { configs: &bad_config, ..create("t", 1, 1) }, ControllerError::InvalidConfig("Invalid value soon for configuration retention.ms: Not a number of type LONG".into())),
            ("unknown config", CreateTopic { configs: &unknown_config, ..create("t", 1, 1) }, ControllerError::InvalidConfig("Unknown topic config name: bogus".into())),
            ("assignment with rf", CreateTopic { assignments: &a_ok, ..create("t", -1, 1) }, ControllerError::InvalidRequest("A manual partition assignment was specified, but replication factor was not set to -1.".into())),
            ("assignment with count", CreateTopic { assignments: &a_ok, ..create("t", 1, -1) }, ControllerError::InvalidRequest("A manual partition assignment was specified, but numPartitions was not set to -1.".into())),
            ("empty assignment", CreateTopic { assignments: &a_empty, ..create("t", -1, -1) }, ControllerError::InvalidReplicaAssignment("The manual partition assignment includes an empty replica list.".into())),
            ("unknown broker", CreateTopic { assignments: &a_unknown, ..create("t", -1, -1) }, ControllerError::InvalidReplicaAssignment("The manual partition assignment includes broker 9, but no such broker is registered.".into())),
            ("duplicate broker", CreateTopic { assignments: &a_dup, ..create("t", -1, -1) }, ControllerError::InvalidReplicaAssignment("The manual partition assignment includes the broker 1 more than once.".into())),
            ("partition twice", CreateTopic { assignments: &a_twice, ..create("t", -1, -1) }, ControllerError::InvalidReplicaAssignment("Found multiple manual partition assignments for partition 0".into())),
            ("gap", CreateTopic { assignments: &a_gap, ..create("t", -1, -1) }, ControllerError::InvalidReplicaAssignment("partitions should be a consecutive 0-based integer sequence".into())),
        ];
        for (what, request, expected) in cases {
            let got = create_topic(&image, &request, &DEFAULTS, &[1], tid(7));
            assert_eq!(got, Err(expected), "{what}");
        }
    }

    #[test]
    fn given_error_variants_should_map_to_kafka_codes() {
        let cases = [
            (ControllerError::UnknownTopicOrPartition(String::new()), 3),
            (ControllerError::InvalidTopic(String::new()), 17),
            (ControllerError::TopicAlreadyExists(String::new()), 36),
            (ControllerError::InvalidPartitions(String::new()), 37),
            (ControllerError::InvalidReplicationFactor(String::new()), 38),
            (ControllerError::InvalidReplicaAssignment(String::new()), 39),
            (ControllerError::InvalidConfig(String::new()), 40),
            (ControllerError::InvalidRequest(String::new()), 42),
            (ControllerError::topic_deletion_disabled(), 73),
            (ControllerError::UnknownTopicId(String::new()), 100),
        ];
        for (error, code) in cases {
            assert_eq!(error.kafka_error_code(), code, "{error:?}");
        }
        assert_eq!(
            ControllerError::topic_deletion_disabled().message(),
            "Topic deletion is disabled."
        );
    }

    #[test]
    fn given_delete_requests_should_remove_or_fail() {
        let mut image = image_with(&["t"]);
        let id = image.topic_id("t").unwrap();
        assert_eq!(
            delete_topic(&image, TopicRef::Name("t")),
            Ok(vec![MetadataRecord::RemoveTopic { topic_id: id }])
        );
        assert_eq!(
            delete_topic(&image, TopicRef::Id(id)),
            Ok(vec![MetadataRecord::RemoveTopic { topic_id: id }])
        );
        let cases = [
            (TopicRef::Name("nope"), 3),
            (TopicRef::Id(tid(5)), 100),
            (TopicRef::Id(Uuid::nil()), 42),
        ];
        for (topic, code) in cases {
            assert_eq!(
                delete_topic(&image, topic).unwrap_err().kafka_error_code(),
                code,
                "{topic:?}"
            );
        }
        let records = delete_topic(&image, TopicRef::Name("t")).unwrap();
        image.apply_all(&records).unwrap();
        assert!(image.topic_by_name("t").is_none());
    }

    #[test]
    fn given_alter_configs_should_validate_the_resulting_set() {
        let mut image = image_with(&["t"]);
        let set = |k: &str, v: Option<&str>| (k.to_string(), v.map(str::to_string));
        let records =
            alter_topic_configs(&image, "t", &[set("min.compaction.lag.ms", Some("10"))]).unwrap();
        image.apply_all(&records).unwrap();
        assert_eq!(
            alter_topic_configs(&image, "t", &[set("max.compaction.lag.ms", Some("5"))]),
            Err(ControllerError::InvalidConfig(
                "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)".into()
            ))
        );
        let records =
            alter_topic_configs(&image, "t", &[set("min.compaction.lag.ms", None)]).unwrap();
        image.apply_all(&records).unwrap();
        assert!(image.topic_config("t").is_none());
        assert_eq!(
            alter_topic_configs(&image, "t", &[set("bogus", None)])
                .unwrap_err()
                .kafka_error_code(),
            40
        );
        assert_eq!(
            alter_topic_configs(&image, "nope", &[])
                .unwrap_err()
                .kafka_error_code(),
            3
        );
    }
}
