//! What the coordinators' runtimes share about their internal topics (`__consumer_offsets`,
//! `__transaction_state`): encoding their key/value records into a batch, and reading a
//! partition back, batch by batch, to replay it into a coordinator shard.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_model::batch::{BatchView, Batches};

use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::errors::KafkaError;
use crate::state::{now_ms, Broker, Partition, TopicSpec, TopicState};

/// Bytes read per step when replaying a partition.
const REPLAY_READ_BYTES: usize = 1024 * 1024;

/// The producer fields of a transactional batch a coordinator writes for a producer
/// (transactional offset commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// One uncompressed batch of `(key, value)` records stamped `now_ms`; transactional for
/// `txn` if given (without sequence numbers: a coordinator's writes are not sequenced).
pub(crate) fn encode_key_values(
    records: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    txn: Option<TxnProducer>,
    now_ms: i64,
) -> Result<BytesMut, String> {
    let (producer_id, producer_epoch) = txn.map_or((-1, -1), |t| (t.producer_id, t.producer_epoch));
    let records: Vec<Record> = records
        .into_iter()
        .map(|(key, value)| Record {
            transactional: txn.is_some(),
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms,
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Reads the partition from its log start to its high watermark and calls `on_batch` with
/// each batch and its decoded records (none for a control batch, whose meaning the caller
/// reads from the view with `runnel_model::control::parse_marker`). Returns the number of
/// batches read. Bounded by the partition's size: every step advances past a batch.
pub(crate) fn replay_partition(
    partition: &Partition,
    mut on_batch: impl FnMut(&BatchView<'_>, Vec<Record>) -> Result<(), String>,
) -> Result<u64, String> {
    let end = partition.high_watermark();
    let mut offset = partition.log.log_start_offset();
    let mut batches = 0u64;
    while offset < end {
        let read = partition
            .log
            .read(offset, REPLAY_READ_BYTES, end, true)
            .map_err(|e| e.to_string())?;
        if read.bytes.is_empty() {
            break;
        }
        let mut next = offset;
        for batch in Batches::new(&read.bytes) {
            let batch = batch.map_err(|e| e.to_string())?;
            next = batch.next_offset();
            batches += 1;
            if batch.is_control() {
                on_batch(&batch, Vec::new())?;
                continue;
            }
            let mut bytes = Bytes::copy_from_slice(batch.as_bytes());
            let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| e.to_string())?;
            let records = set
                .records
                .into_iter()
                .filter(|r| r.offset >= offset)
                .collect();
            on_batch(&batch, records)?;
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(batches)
}

/// Appends a coordinator's batch to its partition (blocking the task, not the runtime), then
/// advances the high watermark and wakes long-polling fetches. A producer's transactional
/// batch carries the KIP-890 `verification` taken before its transaction was checked.
pub(crate) fn append(
    broker: &Broker,
    partition: &Partition,
    mut batch: BytesMut,
    origin: runnel_log::AppendOrigin,
    verification: Option<runnel_log::VerificationGuard>,
) -> Result<(), runnel_log::LogError> {
    let now = now_ms();
    let info = tokio::task::block_in_place(|| {
        partition.log.append_from(
            &mut batch,
            partition.leader_epoch,
            now,
            origin,
            verification,
        )
    })?;
    partition.advance_high_watermark(info.last_offset + 1);
    broker.data_arrived.notify_waiters();
    Ok(())
}

/// The internal topic `spec` names, created (compacted, with `spec`'s settings) if it does not
/// exist yet. COORDINATOR_NOT_AVAILABLE if it cannot be created or opened (clients retry).
pub(crate) async fn ensure(
    broker: &Broker,
    spec: TopicSpec,
) -> Result<Arc<TopicState>, KafkaError> {
    let name = spec.name.clone();
    if let Some(t) = broker.topic(&name) {
        return Ok(t);
    }
    if let Some(Err(e)) = broker.create_topics(vec![spec], false).await.pop() {
        tracing::error!(topic = %name, error = %e, "cannot create an internal topic");
    }
    broker.topic(&name).ok_or_else(|| {
        KafkaError::with_message(
            ResponseError::CoordinatorNotAvailable,
            format!("{name} cannot be created"),
        )
    })
}

/// Requests a coordinator shard may have queued before its sender waits.
const SHARD_QUEUE_DEPTH: usize = 1024;

/// The coordinator shards over an internal topic's partitions (one task per partition),
/// started on first use: the topic is created if needed, then a task is spawned per
/// partition with the receiving end of its queue.
pub(crate) struct ShardSet<C> {
    shards: std::sync::OnceLock<Vec<tokio::sync::mpsc::Sender<C>>>,
    starting: tokio::sync::Mutex<()>,
}

impl<C> Default for ShardSet<C> {
    fn default() -> Self {
        ShardSet {
            shards: std::sync::OnceLock::new(),
            starting: tokio::sync::Mutex::new(()),
        }
    }
}

impl<C> ShardSet<C> {
    /// The shards' queues, if started.
    pub(crate) fn get(&self) -> Option<&Vec<tokio::sync::mpsc::Sender<C>>> {
        self.shards.get()
    }

    /// The shards' queues, starting them first (once) if needed.
    pub(crate) async fn get_or_start(
        &self,
        broker: &Arc<Broker>,
        spec: impl FnOnce() -> TopicSpec,
        spawn: impl Fn(Arc<Partition>, tokio::sync::mpsc::Receiver<C>),
    ) -> Result<&Vec<tokio::sync::mpsc::Sender<C>>, KafkaError> {
        if let Some(shards) = self.shards.get() {
            return Ok(shards);
        }
        let _guard = self.starting.lock().await;
        if let Some(shards) = self.shards.get() {
            return Ok(shards);
        }
        let topic = ensure(broker, spec()).await?;
        let mut senders = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let (tx, rx) = tokio::sync::mpsc::channel(SHARD_QUEUE_DEPTH);
            senders.push(tx);
            spawn(p.clone(), rx);
        }
        let _ = self.shards.set(senders);
        Ok(self.shards.get().expect("just set"))
    }
}
