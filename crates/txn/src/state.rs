//! A transactional id's state: Kafka's `TransactionState` (with its ids, names and valid
//! transitions) and the metadata the coordinator keeps per transactional id.

use std::collections::BTreeSet;

use runnel_model::TopicPartition;

use crate::records::{TopicPartitions, TxnLogValue};

/// "No producer id" (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// "No producer epoch" (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Whether a producer epoch leaves no room for another bump: Kafka keeps `i16::MAX` for the
/// coordinator, so that it can always fence a producer by bumping its epoch once more.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// Kafka's transaction states, with the ids stored in `TransactionLogValue.TransactionStatus`
/// and the names DescribeTransactions and ListTransactions show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// No transaction is open (after InitProducerId, or never started).
    Empty,
    /// Partitions have been added; the transaction is open.
    Ongoing,
    /// EndTxn(commit) is durable; commit markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing producer: abort markers are being written.
    PrepareAbort,
    /// Commit markers are written everywhere.
    CompleteCommit,
    /// Abort markers are written everywhere.
    CompleteAbort,
    /// The transactional id is being expired (Kafka never writes this state).
    Dead,
    /// An ongoing transaction is being fenced by an epoch bump (Kafka never writes it either:
    /// the fence is written as `PrepareAbort` with the bumped epoch).
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The `int8` stored in `TransactionLogValue.TransactionStatus`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states this one may be entered from (Kafka's `validPreviousStates`, including the
    /// transaction-version-2 aborts from `Empty`, `CompleteCommit` and `CompleteAbort`).
    pub fn valid_previous_states(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    pub fn can_transition_to(self, next: TxnState) -> bool {
        next.valid_previous_states().contains(&self)
    }

    /// Whether an idle transactional id in this state may be expired.
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }

    /// `PrepareCommit` or `PrepareAbort`: markers are being written.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// What a transaction ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

impl TxnResult {
    pub fn from_committed(committed: bool) -> TxnResult {
        if committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        }
    }

    /// The state that writes this result's markers.
    pub fn prepare_state(self) -> TxnState {
        match self {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        }
    }

    /// The state once its markers are written.
    pub fn complete_state(self) -> TxnState {
        match self {
            TxnResult::Commit => TxnState::CompleteCommit,
            TxnResult::Abort => TxnState::CompleteAbort,
        }
    }
}

/// What the coordinator knows of one transactional id: Kafka's `TransactionMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last transition (Kafka sets it on every transition; it
    /// differs from `producer_id` right after a producer id rotation).
    pub previous_producer_id: i64,
    /// Set between a transaction-version-2 EndTxn that exhausted the epoch and the
    /// completion that switches to it.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, to recognise a retried InitProducerId (KIP-360) or
    /// EndTxn. Not stored in the log (as in Kafka): after a reload it is -1.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the first partition was added (-1 when no transaction is open).
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
    /// Kafka's `transaction.version` the last transition was made with (0 to 2; 2 bumps the
    /// epoch at every EndTxn).
    pub client_transaction_version: i16,
}

impl TransactionMetadata {
    /// The metadata of a transactional id seen for the first time, before its first
    /// InitProducerId transition.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            client_transaction_version: 0,
        }
    }

    /// The metadata a stored value describes (`last_producer_epoch` is not stored).
    pub fn from_value(transactional_id: &str, v: &TxnLogValue) -> Self {
        let mut partitions = BTreeSet::new();
        if v.state != TxnState::Empty {
            for t in v.partitions.iter().flatten() {
                for p in &t.partitions {
                    partitions.insert(TopicPartition::new(t.topic.clone(), *p));
                }
            }
        }
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions,
            start_timestamp_ms: v.start_timestamp_ms,
            last_update_timestamp_ms: v.last_update_timestamp_ms,
            client_transaction_version: v.client_transaction_version,
        }
    }

    /// The value to store, in `TransactionLogValue` version `version` (0 drops the tagged
    /// fields). As Kafka, `Empty` stores no partition list (null).
    pub fn to_value(&self, version: i16) -> TxnLogValue {
        let partitions = (self.state != TxnState::Empty).then(|| group_by_topic(&self.partitions));
        let flexible = version >= 1;
        TxnLogValue {
            version,
            producer_id: self.producer_id,
            previous_producer_id: if flexible {
                self.previous_producer_id
            } else {
                NO_PRODUCER_ID
            },
            next_producer_id: if flexible {
                self.next_producer_id
            } else {
                NO_PRODUCER_ID
            },
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.timeout_ms,
            state: self.state,
            partitions,
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
            client_transaction_version: if flexible {
                self.client_transaction_version
            } else {
                0
            },
        }
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }
}

/// Partitions grouped by topic, topics and partitions in ascending order.
pub fn group_by_topic<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    let sorted: BTreeSet<&TopicPartition> = partitions.into_iter().collect();
    for tp in sorted {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_state_ids_when_mapped_both_ways_should_match_kafka() {
        let names: Vec<(&str, i8)> = TxnState::ALL.iter().map(|s| (s.name(), s.id())).collect();
        assert_eq!(
            names,
            vec![
                ("Empty", 0),
                ("Ongoing", 1),
                ("PrepareCommit", 2),
                ("PrepareAbort", 3),
                ("CompleteCommit", 4),
                ("CompleteAbort", 5),
                ("Dead", 6),
                ("PrepareEpochFence", 7)
            ]
        );
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_id(s.id()), Some(s));
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::from_name("ongoing"), None);
    }

    #[test]
    fn given_kafka_transitions_when_checked_should_allow_only_those() {
        use TxnState::*;
        assert!(Empty.can_transition_to(Ongoing));
        assert!(Ongoing.can_transition_to(PrepareCommit));
        assert!(Ongoing.can_transition_to(PrepareEpochFence));
        assert!(PrepareEpochFence.can_transition_to(PrepareAbort));
        assert!(PrepareCommit.can_transition_to(CompleteCommit));
        assert!(CompleteAbort.can_transition_to(Dead));
        assert!(!Empty.can_transition_to(PrepareCommit));
        assert!(!PrepareCommit.can_transition_to(CompleteAbort));
        assert!(!PrepareAbort.can_transition_to(Ongoing));
        assert!(!Ongoing.can_transition_to(Dead));
        assert!(!CompleteCommit.can_transition_to(CompleteCommit));
    }

    #[test]
    fn given_partitions_when_grouped_should_sort_topics_and_partitions() {
        let set = [
            TopicPartition::new("b", 2),
            TopicPartition::new("a", 1),
            TopicPartition::new("b", 0),
        ];
        let grouped = group_by_topic(&set);
        assert_eq!(
            grouped,
            vec![
                TopicPartitions {
                    topic: "a".into(),
                    partitions: vec![1]
                },
                TopicPartitions {
                    topic: "b".into(),
                    partitions: vec![0, 2]
                },
            ]
        );
    }
}
