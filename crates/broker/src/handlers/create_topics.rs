//! CreateTopics (key 19), including `validate_only` and per-topic configs.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use super::describe_configs::topic_config_entries;
use super::sb;
use crate::state::{Broker, TopicSpec};

pub const VERSIONS: VersionRange = VersionRange::new(2, 7);

pub async fn handle(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    // Kafka answers every occurrence of a name given twice with INVALID_REQUEST.
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results: Vec<Option<CreatableTopicResult>> = Vec::with_capacity(req.topics.len());
    let mut specs = Vec::new();
    let mut spec_slots = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        if duplicates.contains(&name) {
            results.push(Some(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(&format!(
                        "Create topics request from client contains a duplicate topic: {name}"
                    ))))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            ));
            continue;
        }
        spec_slots.push(results.len());
        results.push(None);
        specs.push(TopicSpec {
            name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        });
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let configs: Vec<Vec<(String, Option<String>)>> =
        specs.iter().map(|s| s.configs.clone()).collect();
    let outcomes = broker.create_topics(specs, req.validate_only).await;
    for (((slot, name), outcome), topic_configs) in
        spec_slots.into_iter().zip(names).zip(outcomes).zip(configs)
    {
        let base = CreatableTopicResult::default().with_name(req.topics[slot].name.clone());
        results[slot] = Some(match outcome {
            Ok(created) => {
                let mut r = base
                    .with_error_code(0)
                    .with_topic_id(created.topic_id)
                    .with_num_partitions(created.num_partitions)
                    .with_replication_factor(created.replication_factor);
                if version >= 5 {
                    let entries = topic_config_entries(broker, &name, &topic_configs);
                    r.configs = Some(
                        entries
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(&e.name))
                                    .with_value(if e.sensitive {
                                        None
                                    } else {
                                        e.value.as_deref().map(sb)
                                    })
                                    .with_read_only(e.read_only)
                                    .with_config_source(e.source.describe_configs_id())
                                    .with_is_sensitive(e.sensitive)
                            })
                            .collect(),
                    );
                }
                r
            }
            Err(e) => {
                let err = super::metadata_change_error(&e);
                base.with_error_code(err.code())
                    .with_error_message(err.message.as_deref().map(sb))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results.into_iter().flatten().collect())
}
