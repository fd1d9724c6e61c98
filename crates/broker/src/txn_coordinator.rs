//! The runtime of the transaction coordinator: one task per partition of
//! `__transaction_state` drives a [`TransactionCoordinatorShard`] (an I/O-free state
//! machine, `runnel-txn`). The task replays the partition at start, feeds the shard requests
//! and clock ticks, appends the records it emits, and only then sends the responses and
//! writes the transaction markers the output asks for. Once every partition of a transaction
//! has its marker, the task tells the shard, which completes the transaction.
//!
//! Markers for a partition of `__consumer_offsets` go through the group coordinator's task of
//! that partition (so that its transactional offsets are applied in log order); every other
//! partition gets its marker appended directly. A marker that cannot be written (a failed
//! disk, say) is retried every [`MARKER_RETRY_MS`] until it is, as Kafka's marker channel
//! retries: a transaction stays in its prepare state, and its partitions' last stable offset
//! does not pass it, until then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use runnel_log::LogError;
use runnel_model::control::Marker;
use runnel_txn::{
    MarkerCommand, Output, RequestId, ShardRequest, TransactionCoordinatorShard, TxnConfig,
    TxnRecord, TxnResponse, TxnResult, OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::coordinator::ImageTopics;
use crate::errors::KafkaError;
use crate::state::{now_ms, Broker, Partition, TopicSpec};

/// How long a marker that could not be written waits before the next attempt.
pub(crate) const MARKER_RETRY_MS: i64 = 1_000;

pub(crate) struct TxnCommand {
    request: ShardRequest,
    reply: oneshot::Sender<TxnResponse>,
}

/// The shards of the transaction coordinator, started when `__transaction_state` exists.
#[derive(Default)]
pub struct TxnCoordinators {
    shards: crate::internal_topic::ShardSet<TxnCommand>,
}

pub(crate) fn txn_config(broker: &Broker) -> TxnConfig {
    let c = &broker.config;
    TxnConfig {
        transaction_max_timeout_ms: c.transaction_max_timeout_ms,
        transactional_id_expiration_ms: i64::from(c.transactional_id_expiration_ms),
        abort_timed_out_transactions_interval_ms: i64::from(
            c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
        ),
        remove_expired_transactional_ids_interval_ms: i64::from(
            c.transaction_remove_expired_transaction_cleanup_interval_ms,
        ),
        offsets_partitions: c.offsets_topic_num_partitions,
        // Transaction version 1: clients use EndTxn/AddPartitionsToTxn up to v4 (v5, the
        // epoch bump per transaction of KIP-890 part 2, is not advertised), values are
        // written in the flexible TransactionLogValue v1.
        transaction_version: 1,
    }
}

impl Broker {
    /// Starts the transaction coordinator's shards, creating `__transaction_state` first if
    /// needed.
    pub(crate) async fn txn_coordinators(
        self: &Arc<Self>,
    ) -> Result<&Vec<mpsc::Sender<TxnCommand>>, KafkaError> {
        let spec = || TopicSpec {
            name: TRANSACTION_STATE_TOPIC.to_string(),
            num_partitions: self.config.transaction_state_log_num_partitions,
            replication_factor: self.config.transaction_state_log_replication_factor_for(1),
            assignments: vec![],
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                ("compression.type".into(), Some("uncompressed".into())),
                (
                    "segment.bytes".into(),
                    Some(self.config.transaction_state_log_segment_bytes.to_string()),
                ),
                (
                    "min.insync.replicas".into(),
                    Some(self.config.transaction_state_log_min_isr.min(1).to_string()),
                ),
            ],
        };
        self.txn_coordinators
            .shards
            .get_or_start(self, spec, |partition, rx| {
                // Only when the shards start, not on every request that finds them started.
                let config = txn_config(self);
                let broker = self.clone();
                tokio::spawn(async move { run_txn_shard(broker, partition, rx, config).await });
            })
            .await
    }

    /// The shard index of a transactional id.
    pub(crate) async fn txn_shard_of(
        self: &Arc<Self>,
        transactional_id: &str,
    ) -> Result<usize, KafkaError> {
        let shards = self.txn_coordinators().await?;
        Ok(
            runnel_txn::partition_for_transactional_id(transactional_id, shards.len() as i32)
                as usize,
        )
    }

    /// Sends a request to the shard owning `transactional_id` and waits for its answer.
    pub(crate) async fn txn_request(
        self: &Arc<Self>,
        transactional_id: &str,
        request: ShardRequest,
    ) -> Result<TxnResponse, KafkaError> {
        let index = self.txn_shard_of(transactional_id).await?;
        self.txn_shard_request(index, request).await
    }

    pub(crate) async fn txn_shard_request(
        self: &Arc<Self>,
        index: usize,
        request: ShardRequest,
    ) -> Result<TxnResponse, KafkaError> {
        let shards = self.txn_coordinators().await?;
        let (reply, rx) = oneshot::channel();
        shards[index]
            .send(TxnCommand { request, reply })
            .await
            .map_err(|_| KafkaError::new(ResponseError::CoordinatorNotAvailable))?;
        rx.await
            .map_err(|_| KafkaError::new(ResponseError::NotCoordinator))
    }
}

/// Replays every record of the partition into a fresh shard.
fn load_txn_shard(
    partition: &Partition,
    config: &TxnConfig,
) -> Result<TransactionCoordinatorShard, String> {
    let mut shard =
        TransactionCoordinatorShard::new(partition.index, partition.leader_epoch, config.clone());
    let mut replayed = 0u64;
    crate::internal_topic::replay_partition(partition, |_batch, records| {
        for record in records {
            let Some(key) = record.key.as_ref() else {
                continue;
            };
            match TxnRecord::decode(key, record.value.as_deref()) {
                Ok(r) => {
                    shard.replay(&r).map_err(|e| e.to_string())?;
                    replayed += 1;
                }
                Err(e) => warn!(
                    partition = partition.index,
                    offset = record.offset,
                    error = %e,
                    "skipping a record of {TRANSACTION_STATE_TOPIC} that does not decode"
                ),
            }
        }
        Ok(())
    })?;
    info!(
        partition = partition.index,
        records = replayed,
        "transaction coordinator loaded"
    );
    Ok(shard)
}

/// A marker command some of whose partitions still need their marker.
struct PendingMarkers {
    command: MarkerCommand,
    /// Indexes into `command.partitions` not written yet.
    remaining: Vec<usize>,
    retry_at_ms: i64,
}

async fn run_txn_shard(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    mut rx: mpsc::Receiver<TxnCommand>,
    config: TxnConfig,
) {
    let mut shutdown = broker.shutdown_signal();
    let load =
        |partition: &Partition| tokio::task::block_in_place(|| load_txn_shard(partition, &config));
    let mut shard = match load(&partition) {
        Ok(s) => s,
        Err(e) => {
            error!(partition = partition.index, error = %e, "cannot load the transaction coordinator; its transactional ids are unavailable");
            return;
        }
    };
    let mut pending: HashMap<RequestId, oneshot::Sender<TxnResponse>> = HashMap::new();
    let mut markers: Vec<PendingMarkers> = Vec::new();
    let mut next_id: RequestId = 1;
    // One producer id fetched ahead (the metadata log hands them out asynchronously; the
    // shard asks synchronously).
    let mut spare_producer_id: Option<i64> = None;
    let mut out = shard.loaded(now_ms());
    loop {
        if !apply(
            &broker,
            &partition,
            &mut shard,
            out,
            &mut pending,
            &mut markers,
        )
        .await
        {
            // The shard may hold state the log does not: answer what is waiting with
            // NOT_COORDINATOR (clients retry), then rebuild it from the log.
            pending.clear();
            markers.clear();
            match load(&partition) {
                Ok(s) => shard = s,
                Err(e) => {
                    error!(partition = partition.index, error = %e, "cannot reload the transaction coordinator");
                    return;
                }
            }
            out = shard.loaded(now_ms());
            continue;
        }
        let retry_at = markers.iter().map(|m| m.retry_at_ms).min();
        let deadline = match (shard.next_deadline_ms(), retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        out = tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let id = next_id;
                next_id += 1;
                pending.insert(id, cmd.reply);
                // InitProducerId needs one; so does an EndTxn that exhausts an epoch.
                if spare_producer_id.is_none() {
                    match broker.allocate_producer_id().await {
                        Ok(pid) => spare_producer_id = Some(pid),
                        Err(e) => error!(error = %e, "cannot allocate a producer id"),
                    }
                }
                let topics = ImageTopics(broker.image());
                let mut source = || spare_producer_id.take();
                shard.handle(id, cmd.request, &topics, &mut source, now_ms())
            }
            _ = sleep => {
                let now = now_ms();
                let mut out = shard.tick(now);
                // Markers due for another attempt.
                let due: Vec<PendingMarkers> = {
                    let (due, later): (Vec<_>, Vec<_>) =
                        markers.drain(..).partition(|m| m.retry_at_ms <= now);
                    markers = later;
                    due
                };
                for m in due {
                    out.extend(write_markers(&broker, &mut shard, m, &mut markers).await);
                }
                out
            }
            _ = crate::state::stopped(&mut shutdown) => return,
        };
    }
}

/// Appends the output's records, sends its responses, then writes its markers (and applies
/// the outputs their completion produces, bounded by the number of markers). Returns false if
/// an append failed (the shard must then be rebuilt).
async fn apply(
    broker: &Arc<Broker>,
    partition: &Partition,
    shard: &mut TransactionCoordinatorShard,
    out: Output,
    pending: &mut HashMap<RequestId, oneshot::Sender<TxnResponse>>,
    markers: &mut Vec<PendingMarkers>,
) -> bool {
    let mut queue = vec![out];
    // Each completed marker command yields at most one more output, without markers.
    while let Some(out) = queue.pop() {
        if !out.records.is_empty() {
            let appended = crate::internal_topic::encode_key_values(
                out.records.iter().map(TxnRecord::encode),
                None,
                now_ms(),
            )
            .and_then(|batch| {
                crate::internal_topic::append(
                    broker,
                    partition,
                    batch,
                    runnel_log::AppendOrigin::Client,
                    None,
                )
                .map_err(|e| e.to_string())
            });
            if let Err(e) = appended {
                error!(partition = partition.index, error = %e, "cannot append to {TRANSACTION_STATE_TOPIC}");
                for (id, _) in out.responses {
                    pending.remove(&id);
                }
                return false;
            }
        }
        for (id, response) in out.responses {
            if let Some(tx) = pending.remove(&id) {
                let _ = tx.send(response);
            }
        }
        for command in out.markers {
            let remaining = (0..command.partitions.len()).collect();
            let m = PendingMarkers {
                command,
                remaining,
                retry_at_ms: 0,
            };
            let next = write_markers(broker, shard, m, markers).await;
            if !next.is_empty() {
                queue.push(next);
            }
        }
    }
    true
}

/// Writes what is left of one marker command. When every partition has its marker, reports
/// it to the shard and returns the shard's output; otherwise queues the rest for a retry.
async fn write_markers(
    broker: &Arc<Broker>,
    shard: &mut TransactionCoordinatorShard,
    mut m: PendingMarkers,
    retry: &mut Vec<PendingMarkers>,
) -> Output {
    let c = &m.command;
    let marker = Marker {
        producer_id: c.producer_id,
        producer_epoch: c.producer_epoch,
        coordinator_epoch: c.coordinator_epoch,
        commit: c.result == TxnResult::Commit,
    };
    let mut failed = Vec::new();
    for &i in &m.remaining {
        let tp = &c.partitions[i];
        let written = if tp.topic == OFFSETS_TOPIC {
            broker.write_group_marker(tp.partition, marker).await
        } else {
            write_marker(broker, &tp.topic, tp.partition, &marker)
        };
        if let Err(e) = written {
            warn!(
                transactional_id = %c.transactional_id,
                topic = %tp.topic,
                partition = tp.partition,
                error = %e,
                "cannot write a transaction marker; retrying"
            );
            failed.push(i);
        }
    }
    if failed.is_empty() {
        let c = m.command;
        return shard.markers_written(
            &c.transactional_id,
            c.producer_id,
            c.producer_epoch,
            c.result,
            now_ms(),
        );
    }
    m.remaining = failed;
    m.retry_at_ms = now_ms() + MARKER_RETRY_MS;
    retry.push(m);
    Output::default()
}

/// Appends `marker` to one partition. A partition that no longer exists counts as written,
/// as does one that refuses the marker as fenced (a newer producer epoch or coordinator
/// already wrote there: this marker is moot, as Kafka treats these answers).
pub(crate) fn write_marker(
    broker: &Broker,
    topic: &str,
    index: i32,
    marker: &Marker,
) -> Result<(), String> {
    let Some(topic) = broker.topic(topic) else {
        return Ok(());
    };
    let Some(partition) = topic.partition(index) else {
        return Ok(());
    };
    append_marker(broker, partition, marker)
}

/// Appends `marker` to `partition`, advances its high watermark and wakes fetches.
pub(crate) fn append_marker(
    broker: &Broker,
    partition: &Partition,
    marker: &Marker,
) -> Result<(), String> {
    let appended = tokio::task::block_in_place(|| {
        partition
            .log
            .append_marker(marker, partition.leader_epoch, now_ms())
    });
    match appended {
        Ok(info) => {
            partition.advance_high_watermark(info.last_offset + 1);
            broker.data_arrived.notify_waiters();
            Ok(())
        }
        Err(
            e @ (LogError::InvalidProducerEpoch { .. }
            | LogError::TransactionCoordinatorFenced { .. }),
        ) => {
            warn!(topic = %partition.topic, partition = partition.index, error = %e, "transaction marker refused as fenced; skipping it");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
