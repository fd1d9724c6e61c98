//! [`TransactionCoordinatorShard`]: the transactional ids of one `__transaction_state`
//! partition, as an I/O-free state machine (Kafka's `TransactionCoordinator` and
//! `TransactionStateManager` for one partition).
//!
//! Every change is made by writing a record: the shard applies it to its memory and puts it
//! in the output at once, and the runtime appends the output's records before it sends the
//! output's responses and markers. Requests are handled one at a time, so no request ever
//! sees a state that is not on its way to the log; Kafka's "pending state" (a transition
//! waiting for its append) has no counterpart here.
//!
//! Error codes follow Kafka's, including its compatibility rewrites: PRODUCER_FENCED is
//! answered as INVALID_PRODUCER_EPOCH to InitProducerId below v4 and to AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn below v2, whose clients do not know the newer code.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_group::TopicMetadata;
use runnel_model::TopicPartition;

use crate::records::{RecordError, TxnRecord};
use crate::state::{
    group_by_topic, is_epoch_exhausted, TransactionMetadata, TxnResult, TxnState,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use crate::{
    MarkerCommand, Output, ProducerIdSource, RequestId, ShardRequest, TxnRequest, TxnResponse,
    OFFSETS_TOPIC,
};

/// The transaction coordinator's settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long an idle transactional id (no transaction
    /// open) is kept.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are looked for.
    pub abort_timed_out_transactions_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired
    /// transactional ids are looked for.
    pub remove_expired_transactional_ids_interval_ms: i64,
    /// `offsets.topic.num.partitions`: AddOffsetsToTxn adds the group's partition of
    /// `__consumer_offsets` to the transaction.
    pub offsets_partitions: i32,
    /// The cluster's finalized `transaction.version` feature level (0 to 2): from 1 on,
    /// values are written in the flexible version 1; at 2, aborts the coordinator starts
    /// (timeouts, fencing) bump the epoch as transaction version 2 does. Clients send
    /// EndTxn v5 (transaction version 2) only when ApiVersions shows the feature at 2;
    /// at 0 the tagged fields that version-2 transactions rely on are not stored.
    pub transaction_version: i16,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            abort_timed_out_transactions_interval_ms: 10_000,
            remove_expired_transactional_ids_interval_ms: 3_600_000,
            offsets_partitions: 50,
            transaction_version: 2,
        }
    }
}

/// What EndTxn does with the transaction it found.
enum EndDecision {
    /// Write the prepare state; `abort_nothing`: a version-2 abort with no transaction open,
    /// which has no partition to mark and starts its clock now.
    Prepare {
        abort_nothing: bool,
    },
    /// The transaction already ended this way (a retry): succeed without writing.
    AlreadyDone,
    Refuse(ResponseError),
}

pub struct TransactionCoordinatorShard {
    partition: i32,
    coordinator_epoch: i32,
    config: TxnConfig,
    txns: BTreeMap<String, TransactionMetadata>,
    next_abort_check_ms: Option<i64>,
    next_expiration_check_ms: Option<i64>,
    /// `loaded` has run (it runs by itself before the first request or tick otherwise).
    is_loaded: bool,
}

impl std::fmt::Debug for TransactionCoordinatorShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionCoordinatorShard")
            .field("partition", &self.partition)
            .field("coordinator_epoch", &self.coordinator_epoch)
            .field("transactional_ids", &self.txns.len())
            .finish()
    }
}

/// The next run of a periodic sweep.
fn later(now_ms: i64, interval_ms: i64) -> Option<i64> {
    Some(now_ms.saturating_add(interval_ms.max(1)))
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// PRODUCER_FENCED as old clients know it: INVALID_PRODUCER_EPOCH below `fenced_from`.
fn code_for(version: i16, fenced_from: i16, e: Option<ResponseError>) -> i16 {
    match e {
        None => 0,
        Some(ResponseError::ProducerFenced) if version < fenced_from => {
            ResponseError::InvalidProducerEpoch.code()
        }
        Some(e) => e.code(),
    }
}

/// The version from which each API knows PRODUCER_FENCED.
const INIT_PRODUCER_ID_FENCED_FROM: i16 = 4;
const ADD_PARTITIONS_FENCED_FROM: i16 = 2;
const ADD_OFFSETS_FENCED_FROM: i16 = 2;
const END_TXN_FENCED_FROM: i16 = 2;

fn init_producer_id_response(
    version: i16,
    e: Option<ResponseError>,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code_for(version, INIT_PRODUCER_ID_FENCED_FROM, e))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}

fn end_txn_response(
    version: i16,
    e: Option<ResponseError>,
    producer_id: i64,
    producer_epoch: i16,
) -> EndTxnResponse {
    EndTxnResponse::default()
        .with_error_code(code_for(version, END_TXN_FENCED_FROM, e))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}

/// One AddPartitionsToTxn result: a code per partition, topics in the order given.
fn topic_results(
    topics: &[AddPartitionsToTxnTopic],
    mut code: impl FnMut(&str, i32) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(&t.name.0, *p))
                        })
                        .collect(),
                )
        })
        .collect()
}

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), *p))
        })
        .collect()
}

/// The answer to `request` when the coordinator cannot handle it (for instance
/// COORDINATOR_LOAD_IN_PROGRESS while the partition loads, NOT_COORDINATOR after a failed
/// append). AddPartitionsToTxn answers the error for every partition of every transaction
/// (v4+ answers per transaction, so that answers of several shards merge), and
/// DescribeTransactions for every transactional id.
pub fn error_response(request: &ShardRequest, error: ResponseError) -> TxnResponse {
    let v = request.version;
    let e = Some(error);
    match &request.body {
        TxnRequest::InitProducerId(_) => TxnResponse::InitProducerId(init_producer_id_response(
            v,
            e,
            NO_PRODUCER_ID,
            NO_PRODUCER_EPOCH,
        )),
        TxnRequest::AddPartitionsToTxn(req) => {
            let code = code_for(v, ADD_PARTITIONS_FENCED_FROM, e);
            let mut response = AddPartitionsToTxnResponse::default();
            if v < 4 {
                response.results_by_topic_v3_and_below =
                    topic_results(&req.v3_and_below_topics, |_, _| code);
            } else {
                response.results_by_transaction = req
                    .transactions
                    .iter()
                    .map(|t| {
                        AddPartitionsToTxnResult::default()
                            .with_transactional_id(t.transactional_id.clone())
                            .with_topic_results(topic_results(&t.topics, |_, _| code))
                    })
                    .collect();
            }
            TxnResponse::AddPartitionsToTxn(response)
        }
        TxnRequest::AddOffsetsToTxn(_) => TxnResponse::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(code_for(
                v,
                ADD_OFFSETS_FENCED_FROM,
                e,
            )),
        ),
        TxnRequest::EndTxn(_) => {
            TxnResponse::EndTxn(end_txn_response(v, e, NO_PRODUCER_ID, NO_PRODUCER_EPOCH))
        }
        TxnRequest::ListTransactions(_) => TxnResponse::ListTransactions(
            ListTransactionsResponse::default().with_error_code(error.code()),
        ),
        TxnRequest::DescribeTransactions(req) => TxnResponse::DescribeTransactions(
            DescribeTransactionsResponse::default().with_transaction_states(
                req.transactional_ids
                    .iter()
                    .map(|id| {
                        describe_transactions_response::TransactionState::default()
                            .with_error_code(error.code())
                            .with_transactional_id(id.clone())
                    })
                    .collect(),
            ),
        ),
    }
}

impl TransactionCoordinatorShard {
    /// A shard for `partition` of `__transaction_state`, led at `coordinator_epoch` (the
    /// partition's leader epoch: markers carry it, so that partition leaders can ignore
    /// markers of a deposed coordinator).
    pub fn new(partition: i32, coordinator_epoch: i32, config: TxnConfig) -> Self {
        TransactionCoordinatorShard {
            partition,
            coordinator_epoch,
            config,
            txns: BTreeMap::new(),
            next_abort_check_ms: None,
            next_expiration_check_ms: None,
            is_loaded: false,
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// The metadata of one transactional id.
    pub fn transaction(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.txns.get(transactional_id)
    }

    /// Every transactional id the shard holds, in id order.
    pub fn transactions(&self) -> impl Iterator<Item = &TransactionMetadata> {
        self.txns.values()
    }

    /// The `TransactionLogValue` version this shard writes.
    fn value_version(&self) -> i16 {
        i16::from(self.config.transaction_version >= 1)
    }

    // ---- replay and load -------------------------------------------------------------

    /// Rebuilds state from one stored record, in log order, before `loaded`. A tombstone
    /// (or a `Dead` value, which Kafka never leaves in the log) forgets the id.
    pub fn replay(&mut self, record: &TxnRecord) -> Result<(), RecordError> {
        match &record.value {
            Some(v) if v.state != TxnState::Dead => {
                self.txns.insert(
                    record.transactional_id.clone(),
                    TransactionMetadata::from_value(&record.transactional_id, v),
                );
            }
            _ => {
                self.txns.remove(&record.transactional_id);
            }
        }
        Ok(())
    }

    /// Called once after replay: schedules the timeout and expiration sweeps, and resumes
    /// every transaction found in `PrepareCommit`/`PrepareAbort` (its markers are in the
    /// output; one with no partition completes at once).
    pub fn loaded(&mut self, now_ms: i64) -> Output {
        self.is_loaded = true;
        self.next_abort_check_ms =
            later(now_ms, self.config.abort_timed_out_transactions_interval_ms);
        self.next_expiration_check_ms = later(
            now_ms,
            self.config.remove_expired_transactional_ids_interval_ms,
        );
        let mut out = Output::default();
        let preparing: Vec<TransactionMetadata> = self
            .txns
            .values()
            .filter(|t| t.state.is_prepare())
            .cloned()
            .collect();
        for txn in preparing {
            self.begin_completion(txn, now_ms, &mut out);
        }
        out
    }

    fn ensure_loaded(&mut self, now_ms: i64) -> Output {
        if self.is_loaded {
            Output::default()
        } else {
            self.loaded(now_ms)
        }
    }

    /// The markers of every transaction waiting for them (for a runtime that lost track,
    /// e.g. after it restarted its marker writer).
    pub fn pending_markers(&self) -> Vec<MarkerCommand> {
        self.txns
            .values()
            .filter(|t| t.state.is_prepare() && !t.partitions.is_empty())
            .map(|t| self.marker_command(t))
            .collect()
    }

    // ---- transitions -----------------------------------------------------------------

    /// Makes `next` the state of its transactional id and puts its record in the output.
    /// As in Kafka, every transition records the producer id it moved from.
    fn write(&mut self, mut next: TransactionMetadata, out: &mut Output) {
        if let Some(cur) = self.txns.get(&next.transactional_id) {
            debug_assert!(
                cur.state.can_transition_to(next.state),
                "{} -> {}",
                cur.state.name(),
                next.state.name()
            );
            next.previous_producer_id = cur.producer_id;
        } else {
            next.previous_producer_id = next.producer_id;
        }
        out.records.push(TxnRecord {
            transactional_id: next.transactional_id.clone(),
            value: Some(next.to_value(self.value_version())),
        });
        self.txns.insert(next.transactional_id.clone(), next);
    }

    fn marker_command(&self, txn: &TransactionMetadata) -> MarkerCommand {
        MarkerCommand {
            transactional_id: txn.transactional_id.clone(),
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            result: if txn.state == TxnState::PrepareCommit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            },
            partitions: txn.partitions.iter().cloned().collect(),
            transaction_version: txn.client_transaction_version,
        }
    }

    /// After a `Prepare*` record: markers to write, or (no partition) the completion.
    fn begin_completion(&mut self, txn: TransactionMetadata, now_ms: i64, out: &mut Output) {
        if txn.partitions.is_empty() {
            self.complete(txn, now_ms, out);
        } else {
            out.markers.push(self.marker_command(&txn));
        }
    }

    /// `PrepareCommit`/`PrepareAbort` → `CompleteCommit`/`CompleteAbort`. A version-2
    /// transaction that exhausted its epoch switches to its next producer id, at epoch 0.
    fn complete(&mut self, cur: TransactionMetadata, now_ms: i64, out: &mut Output) {
        let mut next = cur.clone();
        next.state = if cur.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        if cur.client_transaction_version >= 2 && cur.next_producer_id != NO_PRODUCER_ID {
            next.producer_id = cur.next_producer_id;
            next.producer_epoch = 0;
        }
        next.next_producer_id = NO_PRODUCER_ID;
        next.partitions.clear();
        next.last_update_timestamp_ms = now_ms;
        self.write(next, out);
    }

    /// Aborts an open transaction the producer did not end: a timeout, or a new producer
    /// with the same transactional id. Kafka's `prepareFenceProducerEpoch` then an abort
    /// "not from the client" at the cluster's transaction version: the epoch goes up by
    /// one (and by one more at transaction version 2), so the old producer is fenced at
    /// the coordinator and, through the markers, at every partition.
    fn fence_and_abort(&mut self, cur: TransactionMetadata, now_ms: i64, out: &mut Output) {
        let fenced = cur.producer_epoch.saturating_add(1);
        let mut next = cur;
        if self.config.transaction_version >= 2 {
            next.producer_epoch = fenced.saturating_add(1);
            next.last_producer_epoch = fenced;
        } else {
            next.producer_epoch = fenced;
            next.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        next.state = TxnState::PrepareAbort;
        next.next_producer_id = NO_PRODUCER_ID;
        next.last_update_timestamp_ms = now_ms;
        // Kafka's version-1 path records the abort as transaction version 0.
        next.client_transaction_version = if self.config.transaction_version >= 2 {
            2
        } else {
            0
        };
        self.write(next.clone(), out);
        self.begin_completion(next, now_ms, out);
    }

    /// The runtime wrote every marker of the transaction that `MarkerCommand` named: the
    /// shard records its completion. A report that no longer matches the transaction (it
    /// completed already, or the id moved on) is ignored.
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        now_ms: i64,
    ) -> Output {
        let mut out = Output::default();
        let Some(cur) = self.txns.get(transactional_id) else {
            return out;
        };
        if cur.state != result.prepare_state()
            || cur.producer_id != producer_id
            || cur.producer_epoch != producer_epoch
        {
            return out;
        }
        let cur = cur.clone();
        self.complete(cur, now_ms, &mut out);
        out
    }

    // ---- timers ----------------------------------------------------------------------

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        match (self.next_abort_check_ms, self.next_expiration_check_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the periodic sweeps that are due: aborts transactions open longer than their
    /// timeout (`start + timeout < now`, as Kafka), and writes tombstones for transactional
    /// ids idle (`Empty`, `CompleteCommit`, `CompleteAbort`) for
    /// `transactional.id.expiration.ms`.
    pub fn tick(&mut self, now_ms: i64) -> Output {
        let mut out = self.ensure_loaded(now_ms);
        if self.next_abort_check_ms.is_some_and(|at| at <= now_ms) {
            self.abort_timed_out_transactions(now_ms, &mut out);
            self.next_abort_check_ms =
                later(now_ms, self.config.abort_timed_out_transactions_interval_ms);
        }
        if self.next_expiration_check_ms.is_some_and(|at| at <= now_ms) {
            self.expire_transactional_ids(now_ms, &mut out);
            self.next_expiration_check_ms = later(
                now_ms,
                self.config.remove_expired_transactional_ids_interval_ms,
            );
        }
        out
    }

    fn abort_timed_out_transactions(&mut self, now_ms: i64, out: &mut Output) {
        let timed_out: Vec<TransactionMetadata> = self
            .txns
            .values()
            .filter(|t| {
                matches!(t.state, TxnState::Ongoing | TxnState::PrepareEpochFence)
                    && t.start_timestamp_ms.saturating_add(i64::from(t.timeout_ms)) < now_ms
            })
            .cloned()
            .collect();
        for txn in timed_out {
            self.fence_and_abort(txn, now_ms, out);
        }
    }

    fn expire_transactional_ids(&mut self, now_ms: i64, out: &mut Output) {
        let horizon = now_ms.saturating_sub(self.config.transactional_id_expiration_ms);
        let expired: Vec<String> = self
            .txns
            .values()
            .filter(|t| t.state.is_expiration_allowed() && t.last_update_timestamp_ms <= horizon)
            .map(|t| t.transactional_id.clone())
            .collect();
        for id in expired {
            self.txns.remove(&id);
            out.records.push(TxnRecord {
                transactional_id: id,
                value: None,
            });
        }
    }

    // ---- requests --------------------------------------------------------------------

    /// Handles one request; its response is in the output. `topics` answers whether the
    /// partitions AddPartitionsToTxn names exist; `producer_ids` is asked for a producer id
    /// when one is needed (a new transactional id, an exhausted epoch).
    pub fn handle(
        &mut self,
        id: RequestId,
        request: ShardRequest,
        topics: &dyn TopicMetadata,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
    ) -> Output {
        let mut out = self.ensure_loaded(now_ms);
        let version = request.version;
        let response =
            match request.body {
                TxnRequest::InitProducerId(req) => TxnResponse::InitProducerId(
                    self.init_producer_id(version, &req, producer_ids, now_ms, &mut out),
                ),
                TxnRequest::AddPartitionsToTxn(req) => TxnResponse::AddPartitionsToTxn(
                    self.add_partitions_to_txn(version, &req, topics, now_ms, &mut out),
                ),
                TxnRequest::AddOffsetsToTxn(req) => TxnResponse::AddOffsetsToTxn(
                    self.add_offsets_to_txn(version, &req, topics, now_ms, &mut out),
                ),
                TxnRequest::EndTxn(req) => {
                    TxnResponse::EndTxn(self.end_txn(version, &req, producer_ids, now_ms, &mut out))
                }
                TxnRequest::ListTransactions(req) => {
                    TxnResponse::ListTransactions(self.list_transactions(version, &req, now_ms))
                }
                TxnRequest::DescribeTransactions(req) => {
                    TxnResponse::DescribeTransactions(self.describe_transactions(&req))
                }
            };
        out.responses.push((id, response));
        out
    }

    // ---- InitProducerId --------------------------------------------------------------

    fn init_producer_id(
        &mut self,
        version: i16,
        req: &InitProducerIdRequest,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
        out: &mut Output,
    ) -> InitProducerIdResponse {
        let fail = |e: ResponseError| {
            init_producer_id_response(version, Some(e), NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        };
        let expected = match (req.producer_id.0, req.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return fail(ResponseError::InvalidRequest)
            }
            (id, epoch) => Some((id, epoch)),
        };
        let Some(transactional_id) = req.transactional_id.as_ref() else {
            // An idempotent producer: a fresh id, epoch 0, nothing to remember.
            return match producer_ids.next_producer_id() {
                Some(id) => init_producer_id_response(version, None, id, 0),
                None => fail(ResponseError::CoordinatorLoadInProgress),
            };
        };
        let tid = transactional_id.0.as_str();
        if tid.is_empty() {
            return fail(ResponseError::InvalidRequest);
        }
        let timeout = req.transaction_timeout_ms;
        if timeout <= 0 || timeout > self.config.transaction_max_timeout_ms {
            return fail(ResponseError::InvalidTransactionTimeout);
        }
        let cur = match self.txns.get(tid) {
            Some(t) => t.clone(),
            None => match producer_ids.next_producer_id() {
                Some(id) => TransactionMetadata::new(tid, id, timeout, now_ms),
                None => return fail(ResponseError::CoordinatorLoadInProgress),
            },
        };
        if let Some((id, epoch)) = expected {
            // KIP-360: a producer that names its id and epoch is fenced unless the id is
            // new (epoch -1), is its own, or is the one just rotated away from an exhausted
            // epoch (a retry whose answer was lost).
            let valid = cur.producer_epoch == NO_PRODUCER_EPOCH
                || id == cur.producer_id
                || (id == cur.previous_producer_id && is_epoch_exhausted(epoch));
            if !valid {
                return fail(ResponseError::ProducerFenced);
            }
        }
        match cur.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::Dead => {
                fail(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing | TxnState::PrepareEpochFence => {
                // Abort the open transaction first; the client retries and then gets its
                // epoch (bumped a second time, or a new producer id if that exhausts it).
                self.fence_and_abort(cur, now_ms, out);
                fail(ResponseError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = cur.clone();
                if cur.is_epoch_exhausted()
                    && expected.is_none_or(|(_, epoch)| epoch == cur.producer_epoch)
                {
                    let Some(id) = producer_ids.next_producer_id() else {
                        return fail(ResponseError::CoordinatorLoadInProgress);
                    };
                    next.producer_id = id;
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() {
                        cur.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    let (epoch, last) = match expected {
                        None => (cur.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some((_, e))
                            if !cur.is_epoch_exhausted()
                                && (cur.producer_epoch == NO_PRODUCER_EPOCH
                                    || e == cur.producer_epoch) =>
                        {
                            (cur.producer_epoch + 1, cur.producer_epoch)
                        }
                        // The retry of a bump whose answer was lost: the same epoch again.
                        Some((_, e)) if e == cur.last_producer_epoch => {
                            (cur.producer_epoch, cur.last_producer_epoch)
                        }
                        Some(_) => return fail(ResponseError::ProducerFenced),
                    };
                    next.producer_epoch = epoch;
                    next.last_producer_epoch = last;
                }
                next.state = TxnState::Empty;
                next.timeout_ms = timeout;
                next.partitions.clear();
                next.next_producer_id = NO_PRODUCER_ID;
                next.start_timestamp_ms = -1;
                next.last_update_timestamp_ms = now_ms;
                let (id, epoch) = (next.producer_id, next.producer_epoch);
                self.write(next, out);
                init_producer_id_response(version, None, id, epoch)
            }
        }
    }

    // ---- AddPartitionsToTxn / AddOffsetsToTxn ----------------------------------------

    fn add_partitions_to_txn(
        &mut self,
        version: i16,
        req: &AddPartitionsToTxnRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> AddPartitionsToTxnResponse {
        // Version 5 comes from brokers adding partitions for transaction-version-2 producers.
        let txn_version = if version >= 5 { 2 } else { 0 };
        let mut response = AddPartitionsToTxnResponse::default();
        if version < 4 {
            response.results_by_topic_v3_and_below = self.add_partitions_for_one(
                version,
                &req.v3_and_below_transactional_id.0,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &req.v3_and_below_topics,
                false,
                txn_version,
                topics,
                now_ms,
                out,
            );
        } else {
            response.results_by_transaction = req
                .transactions
                .iter()
                .map(|t| {
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(t.transactional_id.clone())
                        .with_topic_results(self.add_partitions_for_one(
                            version,
                            &t.transactional_id.0,
                            t.producer_id.0,
                            t.producer_epoch,
                            &t.topics,
                            t.verify_only,
                            txn_version,
                            topics,
                            now_ms,
                            out,
                        ))
                })
                .collect();
        }
        response
    }

    /// One transaction of an AddPartitionsToTxn request: unknown partitions fail the
    /// whole transaction (UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED for
    /// the others); otherwise one code for every partition, or per partition when only
    /// verifying.
    #[allow(clippy::too_many_arguments)]
    fn add_partitions_for_one(
        &mut self,
        version: i16,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        request_topics: &[AddPartitionsToTxnTopic],
        verify_only: bool,
        txn_version: i16,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> Vec<AddPartitionsToTxnTopicResult> {
        let exists = |topic: &str, partition: i32| {
            topics
                .topic_by_name(topic)
                .is_some_and(|t| (0..t.partitions).contains(&partition))
        };
        let all_exist = request_topics
            .iter()
            .all(|t| t.partitions.iter().all(|p| exists(&t.name.0, *p)));
        if !all_exist {
            return topic_results(request_topics, |topic, partition| {
                if exists(topic, partition) {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            });
        }
        let partitions = partitions_of(request_topics);
        if verify_only {
            let verified = self.verify_partitions(transactional_id, producer_id, producer_epoch);
            return topic_results(request_topics, |topic, partition| match &verified {
                Err(e) => code_for(version, ADD_PARTITIONS_FENCED_FROM, Some(*e)),
                Ok(txn_partitions) => {
                    if txn_partitions.contains(&TopicPartition::new(topic, partition)) {
                        0
                    } else {
                        ResponseError::TransactionAbortable.code()
                    }
                }
            });
        }
        let e = self.add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
            txn_version,
            now_ms,
            out,
        );
        let code = code_for(version, ADD_PARTITIONS_FENCED_FROM, e);
        topic_results(request_topics, |_, _| code)
    }

    /// Kafka's `handleVerifyPartitionsInTransaction`: the transaction's partitions, if the
    /// producer may produce to it.
    fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&BTreeSet<TopicPartition>, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let txn = self
            .txns
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if txn.producer_epoch != producer_epoch {
            Err(ResponseError::ProducerFenced)
        } else if txn.state.is_prepare() {
            Err(ResponseError::ConcurrentTransactions)
        } else {
            Ok(&txn.partitions)
        }
    }

    /// Kafka's `handleAddPartitionsToTransaction`: the transaction becomes (or stays)
    /// `Ongoing` with the partitions added.
    #[allow(clippy::too_many_arguments)]
    fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: BTreeSet<TopicPartition>,
        txn_version: i16,
        now_ms: i64,
        out: &mut Output,
    ) -> Option<ResponseError> {
        if transactional_id.is_empty() {
            return Some(ResponseError::InvalidRequest);
        }
        let Some(cur) = self.txns.get(transactional_id) else {
            return Some(ResponseError::InvalidProducerIdMapping);
        };
        if cur.state.is_prepare()
            && cur.next_producer_id != NO_PRODUCER_ID
            && producer_id == cur.next_producer_id
        {
            // The producer already took up the id its transaction rotates to; the
            // transaction still completes under the old one.
            return Some(ResponseError::ConcurrentTransactions);
        }
        if cur.producer_id != producer_id {
            return Some(ResponseError::InvalidProducerIdMapping);
        }
        if cur.producer_epoch != producer_epoch {
            return Some(ResponseError::ProducerFenced);
        }
        match cur.state {
            TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::PrepareEpochFence
            | TxnState::Dead => Some(ResponseError::ConcurrentTransactions),
            TxnState::Ongoing if partitions.is_subset(&cur.partitions) => None,
            TxnState::Ongoing
            | TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {
                let mut next = cur.clone();
                if next.state != TxnState::Ongoing {
                    next.start_timestamp_ms = now_ms;
                }
                next.state = TxnState::Ongoing;
                next.partitions.extend(partitions);
                next.last_update_timestamp_ms = now_ms;
                next.client_transaction_version = txn_version;
                self.write(next, out);
                None
            }
        }
    }

    fn add_offsets_to_txn(
        &mut self,
        version: i16,
        req: &AddOffsetsToTxnRequest,
        topics: &dyn TopicMetadata,
        now_ms: i64,
        out: &mut Output,
    ) -> AddOffsetsToTxnResponse {
        // The group's partition among those `__consumer_offsets` has (as the group
        // coordinator counts them); the configured count only until the topic exists.
        let offsets_partitions = topics
            .topic_by_name(OFFSETS_TOPIC)
            .map(|t| t.partitions)
            .filter(|&n| n > 0)
            .unwrap_or(self.config.offsets_partitions.max(1));
        let partition = runnel_group::partition_for_group(&req.group_id.0, offsets_partitions);
        let e = self.add_partitions(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            BTreeSet::from([TopicPartition::new(OFFSETS_TOPIC, partition)]),
            0,
            now_ms,
            out,
        );
        AddOffsetsToTxnResponse::default().with_error_code(code_for(
            version,
            ADD_OFFSETS_FENCED_FROM,
            e,
        ))
    }

    // ---- EndTxn ----------------------------------------------------------------------

    fn end_txn(
        &mut self,
        version: i16,
        req: &EndTxnRequest,
        producer_ids: &mut dyn ProducerIdSource,
        now_ms: i64,
        out: &mut Output,
    ) -> EndTxnResponse {
        // EndTxn v5 is sent by transaction-version-2 clients only.
        let v2 = version >= 5;
        let fail = |e: ResponseError| {
            end_txn_response(version, Some(e), NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        };
        let tid = req.transactional_id.0.as_str();
        if tid.is_empty() {
            return fail(ResponseError::InvalidRequest);
        }
        let Some(cur) = self.txns.get(tid).cloned() else {
            return fail(ResponseError::InvalidProducerIdMapping);
        };
        let result = TxnResult::from_committed(req.committed);
        let (producer_id, producer_epoch) = (req.producer_id.0, req.producer_epoch);
        let decision = if v2 {
            end_decision_v2(&cur, producer_id, producer_epoch, result)
        } else {
            end_decision_v1(&cur, producer_id, producer_epoch, result)
        };
        match decision {
            EndDecision::Refuse(e) => fail(e),
            // Version 1 answers without an id; version 2 with the one to use next.
            EndDecision::AlreadyDone if v2 => {
                end_txn_response(version, None, cur.producer_id, cur.producer_epoch)
            }
            EndDecision::AlreadyDone => {
                end_txn_response(version, None, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
            }
            EndDecision::Prepare { abort_nothing } => {
                let mut next = cur.clone();
                if v2 {
                    if cur.is_epoch_exhausted() {
                        let Some(id) = producer_ids.next_producer_id() else {
                            return fail(ResponseError::CoordinatorLoadInProgress);
                        };
                        next.next_producer_id = id;
                    }
                    next.producer_epoch = cur.producer_epoch.saturating_add(1);
                    next.last_producer_epoch = cur.producer_epoch;
                }
                if abort_nothing {
                    next.partitions.clear();
                    next.start_timestamp_ms = now_ms;
                }
                next.state = result.prepare_state();
                next.last_update_timestamp_ms = now_ms;
                next.client_transaction_version = if v2 { 2 } else { 0 };
                // Version 2 answers with the id and epoch the producer continues with:
                // those after completion (the next producer id at epoch 0 on overflow).
                let answer = if !v2 {
                    (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                } else if next.next_producer_id != NO_PRODUCER_ID {
                    (next.next_producer_id, 0)
                } else {
                    (next.producer_id, next.producer_epoch)
                };
                self.write(next.clone(), out);
                self.begin_completion(next, now_ms, out);
                end_txn_response(version, None, answer.0, answer.1)
            }
        }
    }

    // ---- ListTransactions / DescribeTransactions -------------------------------------

    fn list_transactions(
        &self,
        version: i16,
        req: &ListTransactionsRequest,
        now_ms: i64,
    ) -> ListTransactionsResponse {
        let mut response = ListTransactionsResponse::default();
        let mut states = BTreeSet::new();
        for name in &req.state_filters {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => response.unknown_state_filters.push(name.clone()),
            }
        }
        let pattern = match req.transactional_id_pattern.as_deref() {
            Some(p) if version >= 2 && !p.is_empty() => {
                match regex::Regex::new(&format!("^(?:{p})$")) {
                    Ok(r) => Some(r),
                    Err(_) => {
                        return response
                            .with_error_code(ResponseError::InvalidRegularExpression.code())
                    }
                }
            }
            _ => None,
        };
        let producer_ids: BTreeSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
        let duration = if version >= 1 {
            req.duration_filter
        } else {
            -1
        };
        response.transaction_states = self
            .txns
            .values()
            .filter(|t| {
                t.state != TxnState::Dead
                    && (producer_ids.is_empty() || producer_ids.contains(&t.producer_id))
                    && (req.state_filters.is_empty() || states.contains(&t.state))
                    && (duration < 0 || now_ms.saturating_sub(t.start_timestamp_ms) > duration)
                    && pattern
                        .as_ref()
                        .is_none_or(|r| r.is_match(&t.transactional_id))
            })
            .map(|t| {
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(sb(&t.transactional_id)))
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_transaction_state(sb(t.state.name()))
            })
            .collect();
        response
    }

    fn describe_transactions(
        &self,
        req: &DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let states = req
            .transactional_ids
            .iter()
            .map(|id| {
                let state = describe_transactions_response::TransactionState::default()
                    .with_transactional_id(id.clone());
                if id.0.is_empty() {
                    return state.with_error_code(ResponseError::InvalidRequest.code());
                }
                match self.txns.get(id.0.as_str()) {
                    Some(t) if t.state != TxnState::Dead => state
                        .with_producer_id(ProducerId(t.producer_id))
                        .with_producer_epoch(t.producer_epoch)
                        .with_transaction_state(sb(t.state.name()))
                        .with_transaction_timeout_ms(t.timeout_ms)
                        .with_transaction_start_time_ms(t.start_timestamp_ms)
                        .with_topics(
                            group_by_topic(&t.partitions)
                                .into_iter()
                                .map(|tp| {
                                    TopicData::default()
                                        .with_topic(TopicName(sb(&tp.topic)))
                                        .with_partitions(tp.partitions)
                                })
                                .collect(),
                        ),
                    _ => state.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                }
            })
            .collect();
        DescribeTransactionsResponse::default().with_transaction_states(states)
    }
}

/// EndTxn from a transaction-version-0/1 client: the epoch must match exactly; a retry of
/// a completed commit or abort succeeds without writing.
fn end_decision_v1(
    cur: &TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
    result: TxnResult,
) -> EndDecision {
    use EndDecision::*;
    if cur.producer_id != producer_id {
        return Refuse(ResponseError::InvalidProducerIdMapping);
    }
    if cur.producer_epoch != producer_epoch {
        return Refuse(ResponseError::ProducerFenced);
    }
    let same =
        |state: TxnState| state == result.complete_state() || state == result.prepare_state();
    match cur.state {
        TxnState::Ongoing => Prepare {
            abort_nothing: false,
        },
        TxnState::CompleteCommit | TxnState::CompleteAbort if same(cur.state) => AlreadyDone,
        TxnState::PrepareCommit | TxnState::PrepareAbort if same(cur.state) => {
            Refuse(ResponseError::ConcurrentTransactions)
        }
        TxnState::PrepareEpochFence => Refuse(ResponseError::ConcurrentTransactions),
        _ => Refuse(ResponseError::InvalidTxnState),
    }
}

/// EndTxn from a transaction-version-2 client (KIP-890), Kafka's table:
///
/// | state \ request | abort, retry | abort, current | commit, retry | commit, current |
/// | --- | --- | --- | --- | --- |
/// | Empty | PRODUCER_FENCED | bump | PRODUCER_FENCED | INVALID_TXN_STATE |
/// | CompleteAbort | ok | bump | INVALID_TXN_STATE | INVALID_TXN_STATE |
/// | CompleteCommit | INVALID_TXN_STATE | bump | ok | INVALID_TXN_STATE |
///
/// where "retry" is the epoch before the last bump (or, after an overflow, the old
/// producer id at the last epoch) and "bump" an abort with nothing to abort.
fn end_decision_v2(
    cur: &TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
    result: TxnResult,
) -> EndDecision {
    use EndDecision::*;
    if cur.state.is_prepare()
        && cur.next_producer_id != NO_PRODUCER_ID
        && producer_id == cur.next_producer_id
    {
        return Refuse(ResponseError::ConcurrentTransactions);
    }
    let retry_on_overflow = cur.previous_producer_id == producer_id
        && producer_epoch == i16::MAX - 1
        && cur.producer_epoch == 0;
    let retry_on_bump = i32::from(cur.producer_epoch) == i32::from(producer_epoch) + 1;
    if cur.producer_id != producer_id && !retry_on_overflow {
        return Refuse(ResponseError::InvalidProducerIdMapping);
    }
    let valid_epoch = match cur.state {
        TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => {
            producer_epoch == cur.producer_epoch
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            retry_on_bump || retry_on_overflow || producer_epoch == cur.producer_epoch
        }
    };
    if !valid_epoch {
        return Refuse(ResponseError::ProducerFenced);
    }
    let retry = retry_on_bump || retry_on_overflow;
    let abort_nothing = Prepare {
        abort_nothing: true,
    };
    match (cur.state, result) {
        (TxnState::Ongoing, _) => Prepare {
            abort_nothing: false,
        },
        (TxnState::CompleteCommit, TxnResult::Commit) if retry => AlreadyDone,
        (TxnState::CompleteAbort, TxnResult::Abort) if retry => AlreadyDone,
        (TxnState::CompleteCommit, TxnResult::Abort) if retry => {
            Refuse(ResponseError::InvalidTxnState)
        }
        (
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort,
            TxnResult::Abort,
        ) => abort_nothing,
        (TxnState::PrepareCommit, TxnResult::Commit)
        | (TxnState::PrepareAbort, TxnResult::Abort)
        | (TxnState::PrepareEpochFence, _) => Refuse(ResponseError::ConcurrentTransactions),
        _ => Refuse(ResponseError::InvalidTxnState),
    }
}
