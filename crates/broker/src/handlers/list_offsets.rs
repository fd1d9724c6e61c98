//! ListOffsets (key 2): earliest, latest, max timestamp, by timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use runnel_protocol::VersionRange;

use super::fetch::check_leader_epoch;
use crate::errors::KafkaError;
use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(1, 10);

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
const LATEST_TIERED_TIMESTAMP: i64 = -5;

/// Within the batch starting at `batch_offset`, the first record whose timestamp satisfies
/// `wanted` (Kafka answers record offsets, not batch offsets). Compressed batches are
/// decompressed here; this is a lookup path, not the produce or fetch path.
fn record_in_batch(
    partition: &crate::state::Partition,
    batch_offset: i64,
    high_watermark: i64,
    wanted: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, KafkaError> {
    let read = partition
        .log
        .read(batch_offset, 1, high_watermark, true)
        .map_err(|e| KafkaError::from(&e))?;
    let Some(Ok(view)) = runnel_model::batch::Batches::new(&read.bytes).next() else {
        return Ok(None);
    };
    let log_append_time = view.is_log_append_time().then(|| view.max_timestamp());
    let mut bytes = bytes::Bytes::copy_from_slice(view.as_bytes());
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
        KafkaError::with_message(
            ResponseError::KafkaStorageError,
            format!("stored batch does not decode: {e}"),
        )
    })?;
    Ok(set.records.iter().find_map(|r| {
        let ts = log_append_time.unwrap_or(r.timestamp);
        wanted(ts).then_some((ts, r.offset))
    }))
}

fn lookup(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64, i32), KafkaError> {
    let topic = broker
        .topic(topic)
        .ok_or(KafkaError::new(ResponseError::UnknownTopicOrPartition))?;
    let partition = topic
        .partition(index)
        .ok_or(KafkaError::new(ResponseError::UnknownTopicOrPartition))?;
    check_leader_epoch(current_leader_epoch, partition.leader_epoch)?;
    let epoch = partition.leader_epoch;
    // Under read_committed nothing past the last stable offset exists yet (KIP-98).
    let hw = if read_committed {
        partition.last_stable_offset()
    } else {
        partition.high_watermark()
    };
    let log = &partition.log;
    Ok(match timestamp {
        LATEST_TIMESTAMP => (-1, hw, epoch),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => (-1, log.log_start_offset(), epoch),
        LATEST_TIERED_TIMESTAMP => (-1, -1, -1),
        MAX_TIMESTAMP => match log.max_timestamp_offset() {
            Some(t) if t.offset < hw => {
                match record_in_batch(partition, t.offset, hw, |ts| ts == t.timestamp_ms)? {
                    Some((ts, offset)) => (ts, offset, epoch),
                    None => (t.timestamp_ms, t.offset, epoch),
                }
            }
            _ => (-1, -1, -1),
        },
        target if target >= 0 => match log
            .offset_for_timestamp(target)
            .map_err(|e| KafkaError::from(&e))?
        {
            Some(t) if t.offset < hw => {
                match record_in_batch(partition, t.offset, hw, |ts| ts >= target)? {
                    Some((ts, offset)) => (ts, offset, epoch),
                    None => (t.timestamp_ms, t.offset, epoch),
                }
            }
            _ => (-1, -1, -1),
        },
        other => {
            return Err(KafkaError::with_message(
                ResponseError::InvalidRequest,
                format!("unknown timestamp {other}"),
            ))
        }
    })
}

pub fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match lookup(
                        broker,
                        &name,
                        p.partition_index,
                        p.current_leader_epoch,
                        p.timestamp,
                        req.isolation_level == 1,
                    ) {
                        Ok((timestamp, offset, leader_epoch)) => base
                            .with_error_code(0)
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            // The field exists from v4 on.
                            .with_leader_epoch(if version >= 4 { leader_epoch } else { -1 }),
                        Err(e) => base
                            .with_error_code(e.code())
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
