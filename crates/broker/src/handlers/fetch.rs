//! Fetch (key 1): stored batches are returned as they are, without re-encoding. A fetch
//! offset inside a batch returns that whole batch (the client skips the records before its
//! offset). Long polling: the answer goes out as soon as `min_bytes` are available, an
//! error is to be reported, or `max_wait_ms` has passed. Incremental fetch sessions
//! (KIP-227) are kept in [`crate::fetch_session`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use runnel_log::LogError;
use runnel_protocol::VersionRange;
use tokio::time::Instant;
use uuid::Uuid;

use super::sb;
use crate::errors::{is_unreported_storage_failure, KafkaError};
use crate::fetch_session::{FetchContext, FetchSpec, PartitionKey, PartitionSent};
use crate::state::{now_ms, Broker};

pub const VERSIONS: VersionRange = VersionRange::new(4, 16);

/// Upper bound on how long one fetch may wait, whatever the client asks.
const FETCH_WAIT_MS_MAX: i32 = 60_000;
const READ_COMMITTED: i8 = 1;

struct PartitionResult {
    key: PartitionKey,
    data: PartitionData,
    has_news: bool,
    /// What goes into the topic's bytes-out counter if this result is sent.
    sent: Option<(runnel_metrics::TopicMetrics, u64)>,
}

/// Checks the client's view of the leader epoch against ours (KIP-320).
pub(crate) fn check_leader_epoch(
    current_leader_epoch: i32,
    ours: i32,
) -> Result<(), ResponseError> {
    if current_leader_epoch < 0 || current_leader_epoch == ours {
        Ok(())
    } else if current_leader_epoch > ours {
        Err(ResponseError::UnknownLeaderEpoch)
    } else {
        Err(ResponseError::FencedLeaderEpoch)
    }
}

fn read_partition(
    broker: &Broker,
    key: &PartitionKey,
    spec: &FetchSpec,
    bytes_left: &mut i64,
    response_has_records: &mut bool,
    read_committed: bool,
) -> PartitionResult {
    let mut data = PartitionData::default()
        .with_partition_index(key.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()));
    let topic = if key.topic_id.is_nil() {
        broker.topic(&key.topic)
    } else {
        broker.topic_by_id(key.topic_id)
    };
    let fail = |mut data: PartitionData, err: KafkaError| {
        data.error_code = err.code();
        PartitionResult {
            key: key.clone(),
            data,
            has_news: true,
            sent: None,
        }
    };
    let Some(topic) = topic else {
        let code = if key.topic_id.is_nil() {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::UnknownTopicId
        };
        return fail(data, code.into());
    };
    let Some(partition) = topic.partition(key.partition) else {
        return fail(data, ResponseError::UnknownTopicOrPartition.into());
    };
    let high_watermark = partition.high_watermark();
    let last_stable_offset = partition.last_stable_offset();
    let log_start_offset = partition.log.log_start_offset();
    data.high_watermark = high_watermark;
    data.last_stable_offset = last_stable_offset;
    data.log_start_offset = log_start_offset;
    if read_committed {
        data.aborted_transactions = Some(vec![]);
    }
    // read_committed readers see only decided transactions (KIP-98).
    let upper_bound = if read_committed {
        last_stable_offset
    } else {
        high_watermark
    };
    if let Err(code) = check_leader_epoch(spec.current_leader_epoch, partition.leader_epoch) {
        return fail(data, code.into());
    }
    let limit = i64::from(spec.partition_max_bytes.max(0)).min((*bytes_left).max(0));
    if limit == 0 && *response_has_records {
        return PartitionResult {
            key: key.clone(),
            data,
            has_news: false,
            sent: None,
        };
    }
    // KIP-74: the first batch of the response is returned even if larger than the limits.
    let min_one_batch = !*response_has_records;
    // A read_committed answer's aborted transactions are read with its batches, consistent
    // with them (a clean may remove entries meanwhile).
    let read = || {
        if read_committed {
            partition
                .log
                .read_with_aborted(
                    spec.fetch_offset,
                    limit as usize,
                    upper_bound,
                    min_one_batch,
                )
                .map(|(read, aborted)| (read, Some(aborted)))
        } else {
            partition
                .log
                .read(
                    spec.fetch_offset,
                    limit as usize,
                    upper_bound,
                    min_one_batch,
                )
                .map(|read| (read, None))
        }
    };
    // From memory on this worker thread; what must come from the disk is read again where
    // blocking is allowed (`block_in_place` hands this thread's other tasks to another
    // worker), so that a consumer reading old data does not hold up the connections that
    // share its worker.
    let read = match runnel_log::storage::memory_only(read) {
        Err(e) if e.is_would_block() => {
            tracing::trace!(topic = %topic.name, partition = key.partition, "fetch reads from the disk");
            broker.metrics.fetch_disk_read();
            tokio::task::block_in_place(|| runnel_log::storage::may_block(read))
        }
        other => other,
    };
    match read {
        Ok((read, aborted)) => {
            let n = read.bytes.len();
            if let Some(aborted) = aborted.filter(|_| n > 0) {
                // The aborted transactions with data in what is returned: the client drops
                // their records.
                data.aborted_transactions = Some(
                    aborted
                        .into_iter()
                        .map(|t| {
                            AbortedTransaction::default()
                                .with_producer_id(t.producer_id.into())
                                .with_first_offset(t.first_offset)
                        })
                        .collect(),
                );
            }

            *bytes_left -= n as i64;
            if n > 0 {
                *response_has_records = true;
            }
            data.records = Some(read.bytes);
            PartitionResult {
                key: key.clone(),
                data,
                has_news: n > 0,
                sent: (n > 0).then(|| (topic.metrics.clone(), n as u64)),
            }
        }
        Err(e @ LogError::OffsetOutOfRange { .. }) => fail(data, KafkaError::from(&e)),
        Err(e) => {
            if is_unreported_storage_failure(&e) {
                tracing::error!(topic = %topic.name, partition = key.partition, error = %e, "fetch read failed");
            } else {
                tracing::debug!(topic = %topic.name, partition = key.partition, error = %e, "fetch refused");
            }
            fail(data, KafkaError::from(&e))
        }
    }
}

fn read_all(
    broker: &Broker,
    partitions: &[(PartitionKey, FetchSpec)],
    max_bytes: i32,
    read_committed: bool,
) -> (Vec<PartitionResult>, usize, bool) {
    let mut bytes_left = i64::from(max_bytes.max(0));
    let mut has_records = false;
    let mut results = Vec::with_capacity(partitions.len());
    let mut total = 0usize;
    let mut any_error = false;
    for (key, spec) in partitions {
        let r = read_partition(
            broker,
            key,
            spec,
            &mut bytes_left,
            &mut has_records,
            read_committed,
        );
        total += r.data.records.as_ref().map_or(0, |b| b.len());
        any_error |= r.data.error_code != 0;
        results.push(r);
    }
    (results, total, any_error)
}

pub async fn handle(broker: &Arc<Broker>, req: FetchRequest, version: i16) -> FetchResponse {
    let use_ids = version >= 13;
    let key_of = |name: &TopicName, topic_id: Uuid, partition: i32| PartitionKey {
        topic_id: if use_ids { topic_id } else { Uuid::nil() },
        topic: if use_ids {
            String::new()
        } else {
            name.0.to_string()
        },
        partition,
    };
    let requested: Vec<(PartitionKey, FetchSpec)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    key_of(&t.topic, t.topic_id, p.partition),
                    FetchSpec {
                        fetch_offset: p.fetch_offset,
                        partition_max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                    },
                )
            })
        })
        .collect();
    let forgotten: Vec<PartitionKey> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| key_of(&t.topic, t.topic_id, *p))
        })
        .collect();
    let context = broker
        .fetch_sessions
        .lock()
        .expect("fetch sessions lock")
        .new_context(
            req.session_id,
            req.session_epoch,
            requested,
            forgotten,
            now_ms(),
        );
    let (session_id, partitions, incremental) = match context {
        FetchContext::Error(code) => {
            return FetchResponse::default()
                .with_error_code(code.code())
                .with_session_id(0);
        }
        FetchContext::Full {
            session_id,
            partitions,
        } => (session_id, partitions, false),
        FetchContext::Incremental {
            session_id,
            partitions,
        } => (session_id, partitions, true),
    };
    let read_committed = req.isolation_level == READ_COMMITTED;
    let max_bytes = if version >= 3 {
        req.max_bytes
    } else {
        i32::MAX
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + wait;
    let mut shutdown = broker.shutdown_signal();
    let results = loop {
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (results, total_bytes, any_error) =
            read_all(broker, &partitions, max_bytes, read_committed);
        if total_bytes >= min_bytes
            || any_error
            || partitions.is_empty()
            || Instant::now() >= deadline
        {
            break results;
        }
        let _waiting = broker
            .metrics
            .enter_purgatory(runnel_metrics::Purgatory::Fetch);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = crate::state::stopped(&mut shutdown) => break results,
        }
    };
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    {
        let mut sessions = broker.fetch_sessions.lock().expect("fetch sessions lock");
        for r in results {
            if let Some((metrics, bytes)) = &r.sent {
                metrics.bytes_out(*bytes, 0);
            }
            let sent = PartitionSent {
                high_watermark: r.data.high_watermark,
                last_stable_offset: r.data.last_stable_offset,
                log_start_offset: r.data.log_start_offset,
            };
            if incremental {
                if !sessions.should_send(session_id, &r.key, sent, r.has_news) {
                    continue;
                }
            } else if session_id != 0 {
                sessions.remember_sent(session_id, &r.key, sent);
            }
            let same_topic = responses.last().is_some_and(|t| {
                if use_ids {
                    t.topic_id == r.key.topic_id
                } else {
                    t.topic.0.as_str() == r.key.topic
                }
            });
            if !same_topic {
                responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(sb(&r.key.topic)))
                        .with_topic_id(r.key.topic_id),
                );
            }
            responses
                .last_mut()
                .expect("a topic entry was just pushed")
                .partitions
                .push(r.data);
        }
    }
    FetchResponse::default()
        .with_error_code(0)
        .with_session_id(session_id)
        .with_responses(responses)
}
