//! AlterConfigs (key 33): replaces every dynamic config of a resource with the given set
//! (configs not named are removed), as Kafka's legacy API does.

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use runnel_protocol::VersionRange;

use super::incremental_alter_configs::{config_resource, current_overrides};
use super::sb;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

pub async fn handle(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match config_resource(broker, r.resource_type, r.resource_name.as_str()) {
            Err(e) => Err(e),
            Ok(resource) => {
                let given: Vec<(String, Option<String>)> = r
                    .configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                    .collect();
                let mut changes = given.clone();
                for existing in current_overrides(broker, &resource) {
                    if !given.iter().any(|(k, _)| *k == existing) {
                        changes.push((existing, None));
                    }
                }
                broker
                    .alter_configs(resource, changes, req.validate_only)
                    .await
                    .map_err(|e| super::metadata_change_error(&e))
            }
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
    AlterConfigsResponse::default().with_responses(responses)
}
