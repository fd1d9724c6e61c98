//! DeleteRecords (key 21): moves a partition's log start offset forward; whole segments
//! below it are deleted, and reads below it answer OFFSET_OUT_OF_RANGE.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use crate::errors::KafkaError;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 2);

fn delete(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Result<i64, KafkaError> {
    let topic = broker
        .topic(topic)
        .ok_or(KafkaError::new(ResponseError::UnknownTopicOrPartition))?;
    let p = topic
        .partition(partition)
        .ok_or(KafkaError::new(ResponseError::UnknownTopicOrPartition))?;
    tokio::task::block_in_place(|| p.log.delete_records(offset, p.high_watermark()))
        .map_err(|e| KafkaError::from(&e))
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match delete(broker, &name, p.partition_index, p.offset) {
                        Ok(low_watermark) => r.with_low_watermark(low_watermark).with_error_code(0),
                        Err(e) => r.with_low_watermark(-1).with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
