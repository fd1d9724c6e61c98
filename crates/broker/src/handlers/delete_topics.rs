//! DeleteTopics (key 20), by name (all versions) or by topic id (v6+).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;
use uuid::Uuid;

use super::sb;
use crate::errors::KafkaError;
use crate::state::{Broker, MetadataChangeError};

pub const VERSIONS: VersionRange = VersionRange::new(1, 6);

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, topic_id) in targets {
        let base = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(sb(n))))
            .with_topic_id(topic_id);
        let err = if !broker.config.delete_topic_enable {
            Some(KafkaError::new(ResponseError::TopicDeletionDisabled))
        } else if name.is_some() && !topic_id.is_nil() {
            Some(KafkaError::with_message(
                ResponseError::InvalidRequest,
                "name and topic id must not both be given",
            ))
        } else if name.is_none() && topic_id.is_nil() {
            Some(KafkaError::with_message(
                ResponseError::InvalidRequest,
                "neither name nor topic id given",
            ))
        } else {
            let id = (!topic_id.is_nil()).then_some(topic_id);
            match broker.delete_topic(name.as_deref(), id).await {
                Ok((deleted_name, deleted_id)) => {
                    responses.push(
                        base.with_name(Some(TopicName(sb(&deleted_name))))
                            .with_topic_id(deleted_id)
                            .with_error_code(0),
                    );
                    None
                }
                Err(MetadataChangeError::Controller(c)) => Some(KafkaError::from(&c)),
                Err(e) => Some(KafkaError::with_message(
                    ResponseError::KafkaStorageError,
                    e.to_string(),
                )),
            }
        };
        if let Some(err) = err {
            responses.push(
                DeletableTopicResult::default()
                    .with_name(name.as_deref().map(|n| TopicName(sb(n))))
                    .with_topic_id(topic_id)
                    .with_error_code(err.code())
                    .with_error_message(err.message.as_deref().map(sb)),
            );
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
