//! The runtime of the group coordinator: one task per partition of `__consumer_offsets`
//! drives a [`GroupCoordinatorShard`] (an I/O-free state machine). The task replays the
//! partition's records at start, then feeds requests and clock ticks to the shard, appends
//! the records it emits to the partition, and only then sends the responses.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use runnel_group::shard::RequestContext;
use runnel_group::{
    GroupConfig, GroupCoordinatorShard, GroupRecord, GroupResponse, Output, RequestId,
    ShardRequest, TopicInfo, TopicMetadata,
};
use runnel_metadata::image::MetadataImage;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::errors::KafkaError;
use crate::state::{now_ms, Broker, Partition, TopicSpec};
use runnel_model::control::Marker;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub(crate) enum ShardCommand {
    Request {
        request: Box<ShardRequest>,
        ctx: RequestContext,
        reply: oneshot::Sender<GroupResponse>,
        /// A TxnOffsetCommit's KIP-890 verification of the producer's transaction in the
        /// shard's partition, for the transactional batch its offsets are written in.
        verification: Option<TxnVerification>,
    },
    /// Write a transaction marker into the shard's partition and end the producer's
    /// transactional offset commits accordingly (the transaction coordinator's marker for
    /// this partition of `__consumer_offsets`).
    Marker {
        marker: Marker,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A TxnOffsetCommit's KIP-890 verification, and the error code its partitions get if the
/// transactional batch is refused at the append anyway (the transaction ended in between):
/// INVALID_TXN_STATE or TRANSACTION_ABORTABLE, by the request's version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnVerification {
    pub(crate) guard: runnel_log::VerificationGuard,
    pub(crate) refused_code: i16,
}

/// The shards of the group coordinator, started when `__consumer_offsets` exists.
#[derive(Default)]
pub struct GroupCoordinators {
    shards: crate::internal_topic::ShardSet<ShardCommand>,
    /// Committed offsets as of the records appended or replayed, for lag metrics (read at
    /// scrape time; updated once per appended output, not per request).
    committed: std::sync::Mutex<std::collections::BTreeMap<(String, String, i32), i64>>,
}

impl GroupCoordinators {
    /// `((group, topic, partition), committed offset)` of every group.
    pub(crate) fn committed_offsets(&self) -> Vec<((String, String, i32), i64)> {
        self.committed
            .lock()
            .expect("committed offsets lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Transactional offsets that a commit marker made visible: (group, topic, partition,
    /// value).
    fn track_committed(
        &self,
        offsets: &[(
            String,
            String,
            i32,
            runnel_group::records::OffsetCommitValue,
        )],
    ) {
        let mut committed = self.committed.lock().expect("committed offsets lock");
        for (group, topic, partition, value) in offsets {
            committed.insert((group.clone(), topic.clone(), *partition), value.offset);
        }
    }

    fn track(&self, records: &[GroupRecord]) {
        let mut committed = self.committed.lock().expect("committed offsets lock");
        for r in records {
            match r {
                GroupRecord::OffsetCommit {
                    group,
                    topic,
                    partition,
                    value,
                } => {
                    let key = (group.clone(), topic.clone(), *partition);
                    match value {
                        Some(v) => {
                            committed.insert(key, v.offset);
                        }
                        None => {
                            committed.remove(&key);
                        }
                    }
                }
                GroupRecord::GroupMetadata { group, value: None } => {
                    committed.retain(|(g, _, _), _| g != group);
                }
                _ => {}
            }
        }
    }
}

/// Topic metadata for the shards, from a snapshot of the image.
pub(crate) struct ImageTopics(pub Arc<MetadataImage>);

impl TopicMetadata for ImageTopics {
    fn topic_by_name(&self, name: &str) -> Option<TopicInfo> {
        self.0.topic_by_name(name).map(|t| TopicInfo {
            name: t.name().to_string(),
            topic_id: t.topic_id(),
            partitions: t.partition_count() as i32,
        })
    }
    fn topic_by_id(&self, topic_id: &Uuid) -> Option<TopicInfo> {
        self.0.topic_by_id(topic_id).map(|t| TopicInfo {
            name: t.name().to_string(),
            topic_id: t.topic_id(),
            partitions: t.partition_count() as i32,
        })
    }
    fn topics(&self) -> Vec<TopicInfo> {
        self.0
            .topics()
            .map(|t| TopicInfo {
                name: t.name().to_string(),
                topic_id: t.topic_id(),
                partitions: t.partition_count() as i32,
            })
            .collect()
    }
}

pub(crate) fn group_config(broker: &Broker) -> GroupConfig {
    let c = &broker.config;
    GroupConfig {
        min_session_timeout_ms: c.group_min_session_timeout_ms,
        max_session_timeout_ms: c.group_max_session_timeout_ms,
        initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms,
        group_max_size: c.group_max_size,
        offsets_retention_ms: c.offsets_retention_ms(),
        offsets_retention_check_interval_ms: c.offsets_retention_check_interval_ms,
        offset_metadata_max_bytes: c.offset_metadata_max_bytes,
        consumer_session_timeout_ms: c.group_consumer_session_timeout_ms,
        consumer_min_session_timeout_ms: c.group_consumer_min_session_timeout_ms,
        consumer_max_session_timeout_ms: c.group_consumer_max_session_timeout_ms,
        consumer_heartbeat_interval_ms: c.group_consumer_heartbeat_interval_ms,
        consumer_min_heartbeat_interval_ms: c.group_consumer_min_heartbeat_interval_ms,
        consumer_max_heartbeat_interval_ms: c.group_consumer_max_heartbeat_interval_ms,
        ..GroupConfig::default()
    }
}

impl Broker {
    /// Starts the coordinator shards, creating `__consumer_offsets` first if needed.
    pub(crate) async fn group_coordinators(
        self: &Arc<Self>,
    ) -> Result<&Vec<mpsc::Sender<ShardCommand>>, KafkaError> {
        let spec = || TopicSpec {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: self.config.offsets_topic_num_partitions,
            replication_factor: self.config.offsets_topic_replication_factor_for(1),
            assignments: vec![],
            configs: vec![
                ("cleanup.policy".into(), Some("compact".into())),
                ("compression.type".into(), Some("producer".into())),
                (
                    "segment.bytes".into(),
                    Some(self.config.offsets_topic_segment_bytes.to_string()),
                ),
            ],
        };
        self.coordinators
            .shards
            .get_or_start(self, spec, |partition, rx| {
                // Only when the shards start, not on every request that finds them started.
                let config = group_config(self);
                let broker = self.clone();
                tokio::spawn(async move { run_shard(broker, partition, rx, config).await });
            })
            .await
    }

    /// Sends a request to the shard owning `group_id` and waits for its answer. An error
    /// means the coordinator could not answer (clients retry after NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE).
    pub(crate) async fn group_request(
        self: &Arc<Self>,
        group_id: &str,
        ctx: &RequestContext,
        request: ShardRequest,
    ) -> Result<GroupResponse, KafkaError> {
        let shards = self.group_coordinators().await?;
        let index = runnel_group::partition_for_group(group_id, shards.len() as i32) as usize;
        self.shard_request(index, ctx, request).await
    }

    pub(crate) async fn shard_request(
        self: &Arc<Self>,
        index: usize,
        ctx: &RequestContext,
        request: ShardRequest,
    ) -> Result<GroupResponse, KafkaError> {
        self.shard_request_verified(index, ctx, request, None).await
    }

    /// [`shard_request`](Self::shard_request) of a TxnOffsetCommit, with the KIP-890
    /// verification of the producer's transaction in the shard's partition (taken by the
    /// TxnOffsetCommit handler), which the transactional batch of its offsets presents.
    pub(crate) async fn shard_request_verified(
        self: &Arc<Self>,
        index: usize,
        ctx: &RequestContext,
        request: ShardRequest,
        verification: Option<TxnVerification>,
    ) -> Result<GroupResponse, KafkaError> {
        let shards = self.group_coordinators().await?;
        let (reply, rx) = oneshot::channel();
        let not_available = || KafkaError::new(ResponseError::CoordinatorNotAvailable);
        shards[index]
            .send(ShardCommand::Request {
                request: Box::new(request),
                ctx: ctx.clone(),
                reply,
                verification,
            })
            .await
            .map_err(|_| not_available())?;
        rx.await
            .map_err(|_| KafkaError::new(ResponseError::NotCoordinator))
    }

    /// Writes a transaction marker into partition `index` of `__consumer_offsets` through
    /// the group coordinator shard that owns it.
    pub(crate) async fn write_group_marker(
        self: &Arc<Self>,
        index: i32,
        marker: Marker,
    ) -> Result<(), String> {
        let shards = self
            .group_coordinators()
            .await
            .map_err(|e| format!("group coordinator not available (error {})", e.code()))?;
        let Some(shard) = usize::try_from(index).ok().and_then(|i| shards.get(i)) else {
            // The partition does not exist (any more): nothing to mark.
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        shard
            .send(ShardCommand::Marker { marker, reply })
            .await
            .map_err(|_| "the group coordinator is not running".to_string())?;
        rx.await
            .map_err(|_| "the group coordinator stopped".to_string())?
    }

    pub(crate) fn group_shard_count(&self) -> Option<usize> {
        self.coordinators.shards.get().map(|s| s.len())
    }
}

fn encode_records(records: &[GroupRecord], now_ms: i64) -> Result<BytesMut, String> {
    crate::internal_topic::encode_key_values(records.iter().map(GroupRecord::encode), None, now_ms)
}

/// Replays every record of the partition into a fresh shard.
fn load_shard(
    broker: &Broker,
    partition: &Partition,
    config: &GroupConfig,
) -> Result<GroupCoordinatorShard, String> {
    let mut committed: Vec<GroupRecord> = Vec::new();
    // Transactional offset commits count as committed (for lag metrics) once their commit
    // marker is read.
    let mut pending: HashMap<i64, Vec<GroupRecord>> = HashMap::new();
    let mut shard = GroupCoordinatorShard::new(partition.index, config.clone());
    let now = now_ms();
    let mut replayed = 0u64;
    crate::internal_topic::replay_partition(partition, |batch, records| {
        if batch.is_control() {
            if let Ok(Some(m)) = runnel_model::control::parse_marker(batch) {
                shard.replay_txn_marker(m.producer_id, m.commit);
                let records = pending.remove(&m.producer_id).unwrap_or_default();
                if m.commit {
                    committed.extend(records);
                }
            }
            return Ok(());
        }
        let txn_producer = batch.is_transactional().then(|| batch.producer_id());
        for record in records {
            let Some(key) = record.key.as_ref() else {
                continue;
            };
            match GroupRecord::decode(key, record.value.as_deref()) {
                Ok(r) => {
                    match txn_producer {
                        Some(pid) => shard.replay_transactional(pid, &r, now),
                        None => shard.replay(&r, now),
                    }
                    .map_err(|e| e.to_string())?;
                    match txn_producer {
                        Some(pid) => pending.entry(pid).or_default().push(r),
                        None => committed.push(r),
                    }
                    replayed += 1;
                }
                Err(e) => {
                    warn!(partition = partition.index, offset = record.offset, error = %e,
                    "skipping a record of {OFFSETS_TOPIC} that does not decode")
                }
            }
        }
        Ok(())
    })?;
    broker.coordinators.track(&committed);
    info!(
        partition = partition.index,
        records = replayed,
        "group coordinator loaded"
    );
    Ok(shard)
}

async fn run_shard(
    broker: Arc<Broker>,
    partition: Arc<Partition>,
    mut rx: mpsc::Receiver<ShardCommand>,
    config: GroupConfig,
) {
    let mut shutdown = broker.shutdown_signal();
    let load = |partition: &Partition| {
        tokio::task::block_in_place(|| load_shard(&broker, partition, &config))
    };
    let mut shard = match load(&partition) {
        Ok(s) => s,
        Err(e) => {
            error!(partition = partition.index, error = %e, "cannot load the group coordinator; its groups are unavailable");
            return;
        }
    };
    let mut pending: HashMap<RequestId, oneshot::Sender<GroupResponse>> = HashMap::new();
    let mut next_id: RequestId = 1;
    let out = shard.loaded(now_ms());
    if apply(&broker, &partition, out, &mut pending, None) == Applied::Failed {
        if let Ok(s) = load(&partition) {
            shard = s;
        }
    }
    loop {
        let deadline = shard.next_deadline_ms();
        let sleep = async {
            match deadline {
                Some(at) => {
                    let wait = (at - now_ms()).max(0) as u64;
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        // The verification of the request being handled, if it brought one.
        let mut verification = None;
        let out = tokio::select! {
            cmd = rx.recv() => {
                match cmd {
                    None => return,
                    Some(ShardCommand::Request { request, ctx, reply, verification: v }) => {
                        let id = next_id;
                        next_id += 1;
                        pending.insert(id, reply);
                        verification = v;
                        let topics = ImageTopics(broker.image());
                        shard.handle_with_context(id, *request, &ctx, &topics, now_ms())
                    }
                    Some(ShardCommand::Marker { marker, reply }) => {
                        let written =
                            crate::txn_coordinator::append_marker(&broker, &partition, &marker);
                        let out = match written {
                            Ok(()) => {
                                let offsets = shard.pending_txn_offsets(marker.producer_id);
                                let out = shard.complete_txn(marker.producer_id, marker.commit, now_ms());
                                if marker.commit {
                                    broker.coordinators.track_committed(&offsets);
                                }
                                out
                            }
                            Err(_) => Output::default(),
                        };
                        let _ = reply.send(written);
                        out
                    }
                }
            }
            _ = sleep => {
                let topics = ImageTopics(broker.image());
                shard.tick(&topics, now_ms())
            }
            _ = crate::state::stopped(&mut shutdown) => return,
        };
        let mut applied = apply(&broker, &partition, out, &mut pending, verification);
        if let Applied::TxnRefused { producer_id } = applied {
            // Nothing of the producer's is open in the log (else the batch would not have
            // opened a transaction), so its pending offsets in the shard are this request's
            // alone: aborting them brings the shard back to what the log holds.
            let out = shard.complete_txn(producer_id, false, now_ms());
            applied = apply(&broker, &partition, out, &mut pending, None);
        }
        if applied == Applied::Failed {
            // The shard may hold state the log does not: answer what it holds with
            // NOT_COORDINATOR (clients retry), then rebuild it from the log.
            for (id, response) in shard.unload().responses {
                if let Some(tx) = pending.remove(&id) {
                    let _ = tx.send(response);
                }
            }
            pending.clear();
            match load(&partition) {
                Ok(s) => shard = s,
                Err(e) => {
                    error!(partition = partition.index, error = %e, "cannot reload the group coordinator");
                    return;
                }
            }
        }
    }
}

/// What [`apply`] did with an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Records appended, responses sent.
    Done,
    /// An append failed: the responses were dropped (the waiting handlers see an error)
    /// and the shard may hold state the log does not.
    Failed,
    /// The transactional batch of `producer_id` was refused (KIP-890: its transaction ended
    /// after the verification) and not written; the other records were appended and the
    /// responses sent, the TxnOffsetCommit's with the refusal. The shard still holds the
    /// producer's refused offsets as pending.
    TxnRefused { producer_id: i64 },
}

/// Appends the output's records, then sends its responses. `verification` goes with the
/// output's transactional batch.
fn apply(
    broker: &Broker,
    partition: &Partition,
    mut out: Output,
    pending: &mut HashMap<RequestId, oneshot::Sender<GroupResponse>>,
    verification: Option<TxnVerification>,
) -> Applied {
    use runnel_log::AppendOrigin;
    let mut batches = Vec::with_capacity(2);
    if !out.records.is_empty() {
        batches.push((
            encode_records(&out.records, now_ms()),
            AppendOrigin::Client,
            None,
        ));
    }
    let mut refused = None;
    if let Some(txn) = &out.txn_records {
        // Transactional offset commits: a transactional batch of the producer, written by
        // the coordinator (no sequence numbers to check).
        let producer = crate::internal_topic::TxnProducer {
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
        };
        let batch = crate::internal_topic::encode_key_values(
            txn.records.iter().map(GroupRecord::encode),
            Some(producer),
            now_ms(),
        );
        batches.push((
            batch,
            AppendOrigin::Coordinator,
            verification.map(|v| (v, txn.producer_id)),
        ));
    }
    for (batch, origin, verification) in batches {
        let guard = verification.map(|(v, _)| v.guard);
        let appended = match batch {
            Err(e) => Err(e),
            Ok(b) => match crate::internal_topic::append(broker, partition, b, origin, guard) {
                Ok(()) => Ok(()),
                // KIP-890: the producer's transaction ended after its verification.
                Err(e @ runnel_log::LogError::InvalidTxnState { .. }) => match verification {
                    Some((v, producer_id)) => {
                        warn!(partition = partition.index, producer_id, error = %e,
                                "transactional offset commit refused: its transaction ended since it was verified");
                        refused = Some((v.refused_code, producer_id));
                        Ok(())
                    }
                    None => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            },
        };
        if let Err(e) = appended {
            error!(partition = partition.index, error = %e, "cannot append to {OFFSETS_TOPIC}");
            for (id, _) in out.responses {
                pending.remove(&id);
            }
            return Applied::Failed;
        }
    }
    broker.coordinators.track(&out.records);
    if let Some((code, _)) = refused {
        for (_, response) in &mut out.responses {
            if let GroupResponse::TxnOffsetCommit(r) = response {
                refuse_txn_offset_commit(r, code);
            }
        }
    }
    for (id, response) in out.responses {
        if let Some(tx) = pending.remove(&id) {
            let _ = tx.send(response);
        }
    }
    match refused {
        Some((_, producer_id)) => Applied::TxnRefused { producer_id },
        None => Applied::Done,
    }
}

/// Gives `code` to every partition of a TxnOffsetCommit answer that the shard had accepted
/// (those it refused keep their own error).
fn refuse_txn_offset_commit(r: &mut kafka_protocol::messages::TxnOffsetCommitResponse, code: i16) {
    for t in &mut r.topics {
        for p in &mut t.partitions {
            if p.error_code == 0 {
                p.error_code = code;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        GroupId, OffsetFetchRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::config::BrokerConfig;
    use runnel_group::GroupRequest;

    fn sb(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_string())
    }

    /// KIP-890 at the append: the handler verified the transaction, then its marker was
    /// written before the shard appended the offsets. The batch is refused, nothing is
    /// written, the request is answered with the verification's refusal code, and the shard
    /// holds nothing pending for the producer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn given_the_transaction_ended_after_verification_should_refuse_the_offsets_and_keep_nothing(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::from_sources(
            None,
            &[
                ("log.dirs".to_string(), dir.path().display().to_string()),
                ("offsets.topic.num.partitions".to_string(), "3".to_string()),
            ],
        )
        .unwrap();
        let metrics = Arc::new(runnel_metrics::Metrics::new());
        let broker = tokio::task::block_in_place(|| {
            Broker::open(config, "localhost".into(), 9092, metrics, None)
        })
        .unwrap();
        let input = TopicSpec {
            name: "input".into(),
            num_partitions: 1,
            replication_factor: 1,
            assignments: Vec::new(),
            configs: Vec::new(),
        };
        assert!(broker.create_topics(vec![input], false).await[0].is_ok());
        let shards = broker.group_coordinators().await.unwrap().len();
        let group = "g-ended";
        let index = runnel_group::partition_for_group(group, shards as i32);
        let offsets = broker.topic(OFFSETS_TOPIC).unwrap();
        let partition = offsets.partition(index).unwrap();
        let producer_id = 4242;
        let guard = partition.log.start_txn_verification(producer_id, now_ms());
        // The transaction ends before the commit reaches the shard.
        let marker = Marker {
            producer_id,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit: false,
        };
        broker.write_group_marker(index, marker).await.unwrap();
        let end_before = partition.log.log_end_offset();

        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(sb("tx")))
            .with_group_id(GroupId(sb(group)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(sb("input")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)
                    .with_committed_leader_epoch(-1)])]);
        let refused_code = ResponseError::InvalidTxnState.code();
        let ask = |version: i16, body: GroupRequest, verification: Option<TxnVerification>| {
            let broker = broker.clone();
            async move {
                let request = ShardRequest { version, body };
                let ctx = RequestContext::default();
                broker
                    .shard_request_verified(index as usize, &ctx, request, verification)
                    .await
                    .unwrap()
            }
        };
        let verification = TxnVerification {
            guard,
            refused_code,
        };
        let answer = ask(3, GroupRequest::TxnOffsetCommit(commit), Some(verification)).await;
        let GroupResponse::TxnOffsetCommit(r) = answer else {
            panic!("another response kind: {answer:?}");
        };
        assert_eq!(r.topics[0].partitions[0].error_code, refused_code);
        assert_eq!(
            partition.log.log_end_offset(),
            end_before,
            "nothing written"
        );
        assert!(partition.log.ongoing_transactions().is_empty());

        // Nothing pending: a stable read answers at once, with no offset.
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(sb("input")))
                .with_partition_indexes(vec![0])]));
        let answer = ask(7, GroupRequest::OffsetFetch(fetch), None).await;
        let GroupResponse::OffsetFetch(r) = answer else {
            panic!("another response kind: {answer:?}");
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!((r.error_code, p.error_code, p.committed_offset), (0, 0, -1));
        tokio::task::block_in_place(|| broker.shutdown());
    }
}
