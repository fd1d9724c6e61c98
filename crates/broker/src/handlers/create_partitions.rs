//! CreatePartitions (key 37): partitions are only ever added.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use super::sb;
use crate::errors::KafkaError;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 3);

pub async fn handle(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = if duplicates.contains(&name) {
            Err(KafkaError::with_message(
                ResponseError::InvalidRequest,
                "Duplicate topic in request.",
            ))
        } else {
            // Null (or empty) assignments: placed by the controller.
            let assignments = t.assignments.filter(|a| !a.is_empty()).map(|a| {
                a.into_iter()
                    .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect()
            });
            broker
                .create_partitions(&name, t.count, assignments, req.validate_only)
                .await
                .map_err(|e| super::metadata_change_error(&e))
        };
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => r.with_error_code(0),
            Err(e) => r
                .with_error_code(e.code())
                .with_error_message(e.message.as_deref().map(sb)),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
