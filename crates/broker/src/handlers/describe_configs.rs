//! DescribeConfigs (key 32): every config of a topic or broker with its value, source,
//! default flag and (on request) synonyms and documentation.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use runnel_metadata::topic_config::{self, BrokerConfigLayers, ConfigEntryView, ConfigSource};
use runnel_protocol::VersionRange;

use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(1, 4);

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// The effective configs of a topic: of an existing one, or of one about to be created with
/// `overrides` (CreateTopics v5+ returns them).
pub(crate) fn topic_config_entries(
    broker: &Broker,
    topic: &str,
    overrides: &[(String, Option<String>)],
) -> Vec<ConfigEntryView> {
    let image = broker.image();
    let lookup = |key: &str| broker.config.lookup(key);
    let layers = BrokerConfigLayers::from_image(&image, broker.node_id, &lookup);
    let stored = image.topic_config(topic);
    let mut merged: BTreeMap<String, String> = stored.cloned().unwrap_or_default();
    for (k, v) in overrides {
        if let Some(v) = v {
            merged.insert(k.clone(), v.clone());
        }
    }
    topic_config::effective_topic_config(Some(&merged), &layers)
}

fn to_result(
    e: ConfigEntryView,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(sb(&e.name))
        .with_value(e.value.as_deref().map(sb))
        .with_read_only(e.read_only)
        .with_config_source(e.source.describe_configs_id())
        .with_is_sensitive(e.sensitive)
        .with_config_type(e.config_type.describe_configs_id())
        .with_documentation(include_documentation.then(|| sb(e.documentation)))
        .with_synonyms(if include_synonyms {
            e.synonyms
                .iter()
                .map(|s| {
                    DescribeConfigsSynonym::default()
                        .with_name(sb(&s.name))
                        .with_value(s.value.as_deref().map(sb))
                        .with_source(s.source.describe_configs_id())
                })
                .collect()
        } else {
            vec![]
        })
}

pub fn handle(
    broker: &Broker,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let name = r.resource_name.to_string();
            let entries: Result<Vec<ConfigEntryView>, (ResponseError, String)> =
                match r.resource_type {
                    RESOURCE_TOPIC => {
                        if broker.topic(&name).is_none() {
                            Err((
                                ResponseError::UnknownTopicOrPartition,
                                format!("topic {name} does not exist"),
                            ))
                        } else {
                            Ok(topic_config_entries(broker, &name, &[]))
                        }
                    }
                    RESOURCE_BROKER => {
                        if name == broker.node_id.to_string() {
                            Ok(broker.config.describe(&broker.image(), broker.node_id))
                        } else if name.is_empty() {
                            // The empty name describes the cluster-wide dynamic defaults only.
                            Ok(broker
                                .config
                                .describe(&broker.image(), broker.node_id)
                                .into_iter()
                                .filter(|e| e.source == ConfigSource::DynamicDefaultBroker)
                                .collect())
                        } else {
                            Err((
                                ResponseError::InvalidRequest,
                                format!("broker {name} is not this broker ({})", broker.node_id),
                            ))
                        }
                    }
                    other => Err((
                        ResponseError::InvalidRequest,
                        format!("resource type {other} is not supported"),
                    )),
                };
            match entries {
                Ok(entries) => {
                    // Null or empty: every config.
                    let wanted = r.configuration_keys.as_ref().filter(|k| !k.is_empty());
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| to_result(e, req.include_synonyms, req.include_documentation))
                        .collect();
                    base.with_error_code(0).with_configs(configs)
                }
                Err((code, message)) => base
                    .with_error_code(code.code())
                    .with_error_message(Some(sb(&message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
