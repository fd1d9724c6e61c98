//! Metadata (key 3): brokers, cluster id, controller, topics with their partitions.
//! Unknown topics named in the request are created when `allow_auto_topic_creation` (always
//! true before v4) and `auto.create.topics.enable` both say so.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use uuid::Uuid;

use super::sb;
use crate::errors::KafkaError;
use crate::state::{Broker, MetadataChangeError, TopicState};

pub const VERSIONS: VersionRange = VersionRange::new(0, 12);

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's internal topics.
pub(crate) fn is_internal_topic(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

pub(crate) fn describe_topic(broker: &Broker, topic: &TopicState) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(0)
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(vec![])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(sb(&topic.name))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_error(name: Option<&str>, topic_id: Uuid, error: KafkaError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(topic_id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub async fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let all_topics = match &req.topics {
        None => true,
        // In v0 an empty array meant "all topics".
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create =
        (version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics_enable;
    let mut topics = Vec::new();
    if all_topics {
        let image = broker.image();
        for t in image.topics() {
            if let Some(state) = broker.topic(t.name()) {
                topics.push(describe_topic(broker, &state));
            }
        }
    } else {
        for requested in req.topics.unwrap_or_default() {
            let name = requested.name.as_ref().map(|n| n.0.to_string());
            let Some(name) = name else {
                // Lookup by topic id (v10+).
                match broker.topic_by_id(requested.topic_id) {
                    Some(state) => topics.push(describe_topic(broker, &state)),
                    None => topics.push(topic_error(
                        None,
                        requested.topic_id,
                        ResponseError::UnknownTopicId.into(),
                    )),
                }
                continue;
            };
            if let Some(state) = broker.topic(&name) {
                topics.push(describe_topic(broker, &state));
                continue;
            }
            if let Err(reason) = runnel_model::validate_topic_name(&name) {
                topics.push(topic_error(
                    Some(&name),
                    Uuid::nil(),
                    KafkaError::with_message(ResponseError::InvalidTopicException, reason),
                ));
                continue;
            }
            if !allow_auto_create {
                topics.push(topic_error(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::UnknownTopicOrPartition.into(),
                ));
                continue;
            }
            match broker.auto_create_topic(&name).await {
                Ok(state) => topics.push(describe_topic(broker, &state)),
                Err(e) => {
                    let err = match &e {
                        MetadataChangeError::Controller(c) => KafkaError::from(c),
                        _ => KafkaError::with_message(
                            ResponseError::UnknownServerError,
                            e.to_string(),
                        ),
                    };
                    topics.push(topic_error(Some(&name), Uuid::nil(), err));
                }
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(sb(&broker.advertised_host))
            .with_port(i32::from(broker.advertised_port))
            .with_rack(broker.config.broker_rack.as_deref().map(sb))])
        .with_cluster_id(Some(sb(&broker.cluster_id)))
        .with_controller_id(BrokerId(broker.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
