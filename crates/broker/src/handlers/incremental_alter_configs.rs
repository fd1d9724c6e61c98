//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on the dynamic configs
//! of a topic or of the brokers; validated, recorded in the metadata log, applied at once.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;
use runnel_metadata::records::ConfigResource;
use runnel_protocol::VersionRange;

use super::describe_configs::topic_config_entries;
use super::sb;
use crate::errors::KafkaError;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 1);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The config resource a request names, checked against this broker.
pub(crate) fn config_resource(
    broker: &Broker,
    resource_type: i8,
    name: &str,
) -> Result<ConfigResource, KafkaError> {
    match resource_type {
        RESOURCE_TOPIC => {
            if broker.topic(name).is_none() {
                return Err(KafkaError::with_message(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist."),
                ));
            }
            Ok(ConfigResource::Topic(name.to_string()))
        }
        RESOURCE_BROKER => {
            if name.is_empty() || name == broker.node_id.to_string() {
                Ok(ConfigResource::Broker(name.to_string()))
            } else {
                Err(KafkaError::with_message(
                    ResponseError::InvalidRequest,
                    format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        broker.node_id
                    ),
                ))
            }
        }
        other => Err(KafkaError::with_message(
            ResponseError::InvalidRequest,
            format!("Resource type {other} is not supported."),
        )),
    }
}

/// Names of the dynamic configs currently set on a resource.
pub(crate) fn current_overrides(broker: &Broker, resource: &ConfigResource) -> Vec<String> {
    let image = broker.image();
    let map = match resource {
        ConfigResource::Topic(name) => image.topic_config(name).cloned(),
        ConfigResource::Broker(name) if name.is_empty() => {
            image.cluster_default_broker_config().cloned()
        }
        ConfigResource::Broker(_) => image.broker_config(broker.node_id).cloned(),
    };
    map.map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// The current value of a list config, for APPEND and SUBTRACT.
fn current_list(broker: &Broker, resource: &ConfigResource, key: &str) -> Vec<String> {
    let value = match resource {
        ConfigResource::Topic(name) => topic_config_entries(broker, name, &[])
            .into_iter()
            .find(|e| e.name == key)
            .and_then(|e| e.value),
        ConfigResource::Broker(_) => broker.config.lookup(key).map(|(v, _)| v),
    };
    value
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn changes_for(
    broker: &Broker,
    resource: &ConfigResource,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<(String, Option<String>)>, KafkaError> {
    let mut changes = Vec::with_capacity(configs.len());
    for c in configs {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        let change = match c.config_operation {
            OP_SET => (key, value),
            OP_DELETE => (key, None),
            OP_APPEND | OP_SUBTRACT => {
                let is_list =
                    runnel_metadata::topic_config::topic_config_def(&key).is_some_and(|d| {
                        d.config_type == runnel_metadata::config_def::ConfigType::List
                    });
                if !is_list {
                    return Err(KafkaError::with_message(
                        ResponseError::InvalidConfig,
                        format!("Config value append is not allowed for config key: {key}"),
                    ));
                }
                let mut list = current_list(broker, resource, &key);
                let items: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if c.config_operation == OP_APPEND {
                    for i in items {
                        if !list.contains(&i) {
                            list.push(i);
                        }
                    }
                } else {
                    list.retain(|x| !items.contains(x));
                }
                (key, Some(list.join(",")))
            }
            other => {
                return Err(KafkaError::with_message(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ))
            }
        };
        changes.push(change);
    }
    Ok(changes)
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match config_resource(broker, r.resource_type, r.resource_name.as_str()) {
            Err(e) => Err(e),
            Ok(resource) => match changes_for(broker, &resource, &r.configs) {
                Err(e) => Err(e),
                Ok(changes) => broker
                    .alter_configs(resource, changes, req.validate_only)
                    .await
                    .map_err(|e| super::metadata_change_error(&e)),
            },
        };
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => base.with_error_code(0),
            Err(e) => base
                .with_error_code(e.code())
                .with_error_message(e.message.as_deref().map(sb)),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
