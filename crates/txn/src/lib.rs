//! The transaction coordinator as an I/O-free state machine.
//!
//! One [`TransactionCoordinatorShard`] owns the transactional ids that hash to one partition
//! of `__transaction_state` ([`partition_for_transactional_id`], Java's `String.hashCode` as
//! Kafka). It is built like the group coordinator's shards (`runnel-group`): the runtime
//! feeds it requests, clock ticks and marker completions, and each call returns an
//! [`Output`]:
//!
//! 1. `records` to append, in order, to the shard's `__transaction_state` partition
//!    ([`TxnRecord`], Kafka's exact `TransactionLogKey`/`TransactionLogValue` format);
//! 2. `responses` to send **only after** those records are durable;
//! 3. `markers` ([`MarkerCommand`]) to carry out after the records are durable: write a
//!    commit or abort control batch for the producer into every partition of a transaction,
//!    then report it with [`TransactionCoordinatorShard::markers_written`], which returns
//!    the `CompleteCommit`/`CompleteAbort` record.
//!
//! A transaction's life, as in Kafka (KIP-98):
//!
//! ```text
//! InitProducerId ──► Empty ──AddPartitionsToTxn/AddOffsetsToTxn──► Ongoing
//!    Ongoing ──EndTxn──► PrepareCommit | PrepareAbort   (EndTxn answered once durable)
//!    Prepare* ──markers written──► CompleteCommit | CompleteAbort
//!    Ongoing ──timeout, or InitProducerId of a new producer──► PrepareAbort (epoch bumped)
//!    Empty | Complete* ──idle past transactional.id.expiration.ms──► tombstone
//! ```
//!
//! Transaction version 2 (KIP-890: EndTxn v5+, AddPartitionsToTxn v5+) bumps the producer
//! epoch at every EndTxn, hands out a new producer id when the epoch is exhausted, and
//! accepts an abort with nothing to abort. The cluster's own `transaction.version`
//! ([`TxnConfig::transaction_version`]) picks the value version written and how
//! coordinator-initiated aborts bump the epoch.
//!
//! At start-up (or when the partition's leadership moves here) the runtime replays the
//! partition through [`TransactionCoordinatorShard::replay`], then calls
//! [`TransactionCoordinatorShard::loaded`], whose output holds the markers of every
//! transaction found in `PrepareCommit`/`PrepareAbort`. **If an append fails, the runtime
//! discards the shard** (its memory already holds what the records say) and rebuilds it by
//! replaying; requests of the failed output are answered with NOT_COORDINATOR
//! ([`error_response`] builds such answers for any request). The shard never holds a request:
//! every request is answered in the output of the call that handled it.
//!
//! Producer ids come from the runtime through [`ProducerIdSource`] (the broker hands them
//! out of blocks recorded in its metadata log); when none is available the request is
//! answered COORDINATOR_LOAD_IN_PROGRESS, as Kafka does while it waits for a new block.
//!
//! Nothing here touches sockets, files or clocks: time comes in as `now_ms`, so every test is
//! deterministic.

pub mod records;
pub mod shard;
pub mod state;

pub use records::{RecordError, TopicPartitions, TxnLogValue, TxnRecord};
pub use runnel_group::{StaticTopics, TopicInfo, TopicMetadata};
pub use runnel_model::TopicPartition;
pub use shard::{error_response, TransactionCoordinatorShard, TxnConfig};
pub use state::{TransactionMetadata, TxnResult, TxnState};

use kafka_protocol::messages::*;

/// The internal topic the coordinator's records live in.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// The topic AddOffsetsToTxn adds a partition of to the transaction.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Identifies a request the runtime is waiting to answer.
pub type RequestId = u64;

/// A request for one shard, with the API version it arrived in (error codes and epoch rules
/// differ by version). Batched requests naming several transactional ids
/// (AddPartitionsToTxn v4+, DescribeTransactions) are split by the runtime into one request
/// per shard, holding only that shard's ids, and the answers merged; ListTransactions goes
/// to every shard and the answers are concatenated.
#[derive(Debug, Clone)]
pub struct ShardRequest {
    pub version: i16,
    pub body: TxnRequest,
}

#[derive(Debug, Clone)]
pub enum TxnRequest {
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    ListTransactions(ListTransactionsRequest),
    DescribeTransactions(DescribeTransactionsRequest),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TxnResponse {
    InitProducerId(InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnResponse),
    AddOffsetsToTxn(AddOffsetsToTxnResponse),
    EndTxn(EndTxnResponse),
    ListTransactions(ListTransactionsResponse),
    DescribeTransactions(DescribeTransactionsResponse),
}

/// Write transaction markers: a control batch (commit or abort) for `producer_id` at
/// `producer_epoch` into every partition, stamped with `coordinator_epoch` (as Kafka's
/// WriteTxnMarkers). Partitions whose topic no longer exists count as written. Once every
/// partition has its marker, call [`TransactionCoordinatorShard::markers_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerCommand {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
    /// Sorted by topic, then partition.
    pub partitions: Vec<TopicPartition>,
    /// The transaction version the transaction ended with (2: the epoch was bumped by EndTxn,
    /// so the markers carry an epoch one above the producer's batches).
    pub transaction_version: i16,
}

/// What the shard asks the runtime to do. See the crate documentation for the order.
#[derive(Debug, Default)]
pub struct Output {
    /// To append, in order, to the shard's `__transaction_state` partition, before any
    /// response or marker of this output goes out.
    pub records: Vec<TxnRecord>,
    /// Answers to send once the records are durable.
    pub responses: Vec<(RequestId, TxnResponse)>,
    /// Markers to write once the records are durable.
    pub markers: Vec<MarkerCommand>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.responses.is_empty() && self.markers.is_empty()
    }

    /// Appends another output's effects after this one's.
    pub fn extend(&mut self, other: Output) {
        self.records.extend(other.records);
        self.responses.extend(other.responses);
        self.markers.extend(other.markers);
    }
}

/// Where new producer ids come from. Each id must never have been handed out before.
pub trait ProducerIdSource {
    /// A fresh producer id, or `None` if none is available right now (the request is then
    /// answered COORDINATOR_LOAD_IN_PROGRESS and the client retries).
    fn next_producer_id(&mut self) -> Option<i64>;
}

impl<F: FnMut() -> Option<i64>> ProducerIdSource for F {
    fn next_producer_id(&mut self) -> Option<i64> {
        self()
    }
}

/// A block of producer ids `[next, end)`, as the broker reserves them in its metadata log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub next: i64,
    pub end: i64,
}

impl ProducerIdSource for ProducerIdBlock {
    fn next_producer_id(&mut self) -> Option<i64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// Kafka's `__transaction_state` partition for a transactional id:
/// `abs(transactionalId.hashCode) % partitions`, the same rule (and the same code) as a
/// group's `__consumer_offsets` partition.
pub fn partition_for_transactional_id(transactional_id: &str, partitions: i32) -> i32 {
    runnel_group::partition_for_group(transactional_id, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_transactional_id_when_hashed_should_follow_java_string_hashcode() {
        assert_eq!(partition_for_transactional_id("", 50), 0);
        assert_eq!(partition_for_transactional_id("a", 50), 97 % 50);
        // "my-txn".hashCode() = -1061187895 in Java; abs % 50 = 45.
        assert_eq!(partition_for_transactional_id("my-txn", 50), 45);
    }

    #[test]
    fn given_a_block_when_drained_should_hand_out_each_id_once() {
        let mut block = ProducerIdBlock { next: 5, end: 7 };
        assert_eq!(block.next_producer_id(), Some(5));
        assert_eq!(block.next_producer_id(), Some(6));
        assert_eq!(block.next_producer_id(), None);
    }
}
