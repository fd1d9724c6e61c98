//! Produce (key 0). Validation walks batch headers and CRCs only; the record set is stored
//! as sent, with offsets assigned by rewriting base offsets in place.
//!
//! Versions 0–2 are advertised because librdkafka's feature detection reads the advertised
//! minimum (KAFKA-18659) but, as in Kafka 4, they are refused when sent (the codec does not
//! decode them): the connection is closed with a log line.

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use runnel_log::{TimestampType, VerificationGuard};
use runnel_model::batch::{validate_record_set, Batches};
use runnel_protocol::VersionRange;
use tracing::{debug, error};

use super::{sb, Reply};
use crate::errors::{is_unreported_storage_failure, KafkaError};
use crate::state::{now_ms, Broker, TopicState};

pub const VERSIONS: VersionRange = VersionRange::new(0, 11);

fn error_response(index: i32, err: &KafkaError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(err.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(err.message.as_deref().map(sb))
}

/// Kafka's checks of what only a broker may write: control batches come from coordinators,
/// an idempotent batch needs a sequence, and transactional batches come from a request that
/// names its transactional id.
fn check_client_batches(records: &[u8], transactional: bool) -> Result<(), KafkaError> {
    for batch in Batches::new(records).flatten() {
        if batch.is_control() {
            return Err(KafkaError::with_message(
                ResponseError::InvalidRecord,
                "control batches cannot be produced by clients",
            ));
        }
        if batch.producer_id() >= 0 && batch.base_sequence() < 0 {
            return Err(KafkaError::with_message(
                ResponseError::InvalidRecord,
                "an idempotent batch needs a base sequence",
            ));
        }
        if batch.is_transactional() && !transactional {
            return Err(KafkaError::with_message(
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactional records need the request's transactional id",
            ));
        }
    }
    Ok(())
}

/// A compacted topic keeps the latest record per key, so a record without a key is refused
/// (INVALID_RECORD), as Kafka does. This is the one produce check that decodes records (and
/// decompresses them); it runs for compacted topics only.
fn check_keys_for_compaction(records: &[u8]) -> Result<(), KafkaError> {
    for batch in Batches::new(records).flatten() {
        let mut bytes = bytes::Bytes::copy_from_slice(batch.as_bytes());
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
            KafkaError::with_message(
                ResponseError::CorruptMessage,
                format!("batch does not decode: {e}"),
            )
        })?;
        if set.records.iter().any(|r| r.key.is_none()) {
            return Err(KafkaError::with_message(
                ResponseError::InvalidRecord,
                "Compacted topic cannot accept message without key.",
            ));
        }
    }
    Ok(())
}

async fn resolve_topic(broker: &Arc<Broker>, name: &str) -> Result<Arc<TopicState>, KafkaError> {
    if let Some(t) = broker.topic(name) {
        return Ok(t);
    }
    if let Err(reason) = runnel_model::validate_topic_name(name) {
        return Err(KafkaError::with_message(
            ResponseError::InvalidTopicException,
            reason,
        ));
    }
    if !broker.config.auto_create_topics_enable {
        return Err(ResponseError::UnknownTopicOrPartition.into());
    }
    broker
        .auto_create_topic(name)
        .await
        .map_err(|e| super::metadata_change_error(&e))
}

fn append_partition(
    broker: &Broker,
    version: i16,
    topic: &TopicState,
    index: i32,
    records: Option<bytes::Bytes>,
    transactional: bool,
    verification: Option<VerificationGuard>,
) -> PartitionProduceResponse {
    let Some(partition) = topic.partition(index) else {
        return error_response(index, &ResponseError::UnknownTopicOrPartition.into());
    };
    let Some(records) = records else {
        return error_response(
            index,
            &KafkaError::with_message(ResponseError::CorruptMessage, "no records"),
        );
    };
    let summary = match validate_record_set(&records) {
        Ok(s) => s,
        Err(e) => {
            debug!(topic = %topic.name, partition = index, error = %e, "rejecting produced records");
            return error_response(index, &KafkaError::from(&e));
        }
    };
    // Kafka's ProduceRequest.validateRecords (v3 and later).
    if version >= 3 && summary.batch_count != 1 {
        return error_response(
            index,
            &KafkaError::with_message(
                ResponseError::InvalidRecord,
                format!(
                    "Produce requests with version {version} are only allowed to contain exactly one record batch per partition"
                ),
            ),
        );
    }
    if summary.max_batch_bytes > topic.settings.max_message_bytes {
        return error_response(
            index,
            &KafkaError::with_message(
                ResponseError::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes ({})",
                    summary.max_batch_bytes, topic.settings.max_message_bytes
                ),
            ),
        );
    }
    if let Err(e) = check_client_batches(&records, transactional) {
        return error_response(index, &e);
    }
    if topic.settings.compacted {
        if let Err(e) = check_keys_for_compaction(&records) {
            return error_response(index, &e);
        }
    }
    // The request buffer is shared with the other fields decoded from it: the log writes
    // the batches from it as they are, with their stamped heads written separately.
    match partition
        .log
        .append_shared(&records[..], partition.leader_epoch, now_ms(), verification)
    {
        Ok(info) => {
            // A retried batch of an idempotent producer is acknowledged with its original
            // offsets; nothing new was written.
            if !info.duplicate {
                partition.advance_high_watermark(info.last_offset + 1);
                broker.data_arrived.notify_waiters();
                topic
                    .metrics
                    .bytes_in(summary.total_bytes as u64, summary.offset_count as u64);
            }
            let log_append_time_ms = match topic.settings.timestamp_type {
                TimestampType::LogAppendTime => info.log_append_time_ms,
                TimestampType::CreateTime => -1,
            };
            let mut r = PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(0)
                .with_base_offset(info.base_offset)
                .with_log_append_time_ms(log_append_time_ms)
                .with_log_start_offset(info.log_start_offset);
            if version >= 10 {
                r.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(broker.node_id))
                    .with_leader_epoch(partition.leader_epoch);
            }
            r
        }
        Err(e) => {
            let err = KafkaError::from(&e);
            if is_unreported_storage_failure(&e) {
                error!(topic = %topic.name, partition = index, error = %e, "append failed");
            } else {
                debug!(topic = %topic.name, partition = index, error = %e, "append refused");
            }
            error_response(index, &err)
        }
    }
}

/// The producer of the first transactional batch of a record set: `(producer id, epoch)`.
fn transactional_producer(records: Option<&bytes::Bytes>) -> Option<(i64, i16)> {
    Batches::new(records?)
        .flatten()
        .find(|b| b.is_transactional() && !b.is_control())
        .map(|b| (b.producer_id(), b.producer_epoch()))
}

pub async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16) -> Reply {
    let acks = req.acks;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.to_string());
    let valid_acks = matches!(acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let partitions = if !valid_acks {
            let err = KafkaError::with_message(
                ResponseError::InvalidRequiredAcks,
                format!("acks must be -1, 0 or 1, not {acks}"),
            );
            topic_data
                .partition_data
                .iter()
                .map(|p| error_response(p.index, &err))
                .collect()
        } else {
            match resolve_topic(broker, &name).await {
                Ok(topic) => {
                    let mut out = Vec::with_capacity(topic_data.partition_data.len());
                    for p in topic_data.partition_data {
                        // Only a request naming a transactional id may carry transactional
                        // batches (checked in append_partition): others skip this walk.
                        let producer = transactional_id
                            .as_ref()
                            .and_then(|_| transactional_producer(p.records.as_ref()));
                        let mut verification = None;
                        if let (Some(id), Some(producer)) = (&transactional_id, producer) {
                            // Taken before asking: a marker written meanwhile (the
                            // transaction ended) voids it, and the append is refused.
                            verification = topic
                                .partition(p.index)
                                .map(|part| part.log.start_txn_verification(producer.0, now_ms()));
                            if let Err(e) = super::txn_routing::verify_transaction(
                                broker,
                                id,
                                &topic,
                                p.index,
                                producer,
                                version >= 11,
                            )
                            .await
                            {
                                out.push(error_response(p.index, &e));
                                continue;
                            }
                        }
                        out.push(append_partition(
                            broker,
                            version,
                            &topic,
                            p.index,
                            p.records,
                            transactional_id.is_some(),
                            verification,
                        ));
                    }
                    out
                }
                Err(err) => topic_data
                    .partition_data
                    .iter()
                    .map(|p| error_response(p.index, &err))
                    .collect(),
            }
        };
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return Reply::NoResponse;
    }
    ProduceResponse::default().with_responses(responses).into()
}
