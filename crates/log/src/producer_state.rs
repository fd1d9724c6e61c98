//! Idempotent-producer state of one partition, with Kafka's semantics (`ProducerStateManager`,
//! `ProducerAppendInfo.checkProducerEpoch` / `checkSequence`, `ProducerStateEntry`; KIP-98
//! idempotence, KIP-360 epoch bumps).
//!
//! For every producer id seen in the partition the state keeps its epoch and the metadata of
//! its last [`BATCHES_RETAINED_PER_PRODUCER`] batches (sequence range, offsets, max timestamp).
//! An append is checked against it batch by batch ([`ProducerStates::plan`]): a stale epoch is
//! fenced, a retried batch is recognised as a duplicate, a gap in the sequence is refused. The
//! result is staged and committed only once the record set is in the log.
//!
//! # Transactions
//!
//! A producer's transactional batches open a transaction in the partition at the first one's
//! offset (`current_txn_first_offset`); the transaction marker (a control batch the
//! coordinator has the broker write) closes it and is reported as a [`CompletedTxn`]. The
//! smallest first offset of the open transactions is the partition's first unstable offset,
//! which bounds the last stable offset (LSO) that `read_committed` readers may see. Markers
//! from an older coordinator epoch are fenced (Kafka's `appendEndTxnMarker`).
//!
//! The state is bounded: at most [`PRODUCERS_PER_PARTITION_MAX`] producers (the least
//! recently used one is evicted beyond it), and producers idle for `producer_id_expiration_ms`
//! are expired.
//!
//! # Snapshot format
//!
//! `<offset, 20 digits>.snapshot` holds the state as of `offset` (every batch below it
//! applied, none at or after it). Big-endian:
//!
//! ```text
//! magic       4   "RNPS"
//! version     u16 2 (1 is still read)
//! crc         u32 CRC-32C of everything after this field
//! offset      i64 the offset the state is taken at (equals the file name)
//! count       u32 number of producers, at most PRODUCERS_PER_PARTITION_MAX
//! count × producer, least recently used first:
//!   producer_id        i64
//!   epoch              i16
//!   last_timestamp_ms  i64   max timestamp of its last batch
//!   last_seen_ms       i64   broker time of its last append (expiration clock)
//!   (version 2 only:)
//!   coordinator_epoch  i32   of the producer's last transaction marker, -1 if none
//!   txn_first_offset   i64   first offset of its open transaction, -1 if none
//!   batch_count        u8    1..=5 (version 2: 0..=5)
//!   batch_count × batch, oldest first:
//!     first_seq i32, last_seq i32, first_offset i64, last_offset i64, max_timestamp_ms i64
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::LogError;
use crc32c::crc32c;

/// Most producers whose state a partition keeps; beyond it the least recently used is evicted.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 100_000;
/// Batches remembered per producer for duplicate detection (Kafka's `NUM_BATCHES_TO_RETAIN`;
/// producers keep at most 5 requests in flight per connection with idempotence).
pub const BATCHES_RETAINED_PER_PRODUCER: usize = 5;
/// Suffix of producer-state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshot files kept; older ones are deleted after a new one is written.
pub(crate) const SNAPSHOTS_RETAINED: usize = 2;

const SNAPSHOT_MAGIC: &[u8; 4] = b"RNPS";
const SNAPSHOT_VERSION: u16 = 2;
/// Bytes before the first producer: magic, version, crc, offset, count.
const SNAPSHOT_HEADER_BYTES: usize = 4 + 2 + 4 + 8 + 4;
/// Where the CRC-covered bytes start.
const SNAPSHOT_CRC_START: usize = 10;
const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 8 + 8 + 4 + 8 + 1;
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;
/// Largest snapshot the state can produce.
pub(crate) const SNAPSHOT_BYTES_MAX: usize = SNAPSHOT_HEADER_BYTES
    + PRODUCERS_PER_PARTITION_MAX
        * (SNAPSHOT_PRODUCER_BYTES + BATCHES_RETAINED_PER_PRODUCER * SNAPSHOT_BATCH_BYTES);
const _: () = assert!(SNAPSHOT_BYTES_MAX as u64 <= crate::checkpoint::CHECKPOINT_BYTES_MAX);

/// `00000000000000000042.snapshot` for offset 42.
pub(crate) fn snapshot_file_name(offset: i64) -> String {
    format!("{}{SNAPSHOT_SUFFIX}", crate::segment::file_stem(offset))
}

/// Parses `00000000000000000042.snapshot` into 42; `None` for any other name.
pub(crate) fn parse_snapshot_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What tooling and tests can see of one producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSnapshotView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Last sequence of the producer's last batch.
    pub last_sequence: i32,
    /// Last offset of the producer's last batch.
    pub last_offset: i64,
    /// Max timestamp of the producer's last batch.
    pub last_timestamp_ms: i64,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Last sequence of its last batch (-1 if it has none).
    pub last_sequence: i32,
    /// Max timestamp of its last batch (-1 if it has none).
    pub last_timestamp_ms: i64,
    /// Of the coordinator that wrote its last marker (-1 if none).
    pub coordinator_epoch: i32,
    /// First offset of its open transaction.
    pub current_txn_first_offset: Option<i64>,
}

/// The producer fields of one batch, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Non-negative (checked by the callers before the state sees it).
    pub last_offset_delta: i32,
    pub is_control: bool,
    pub is_transactional: bool,
    /// A transaction marker's coordinator epoch; -1 when unknown (replay reads headers only).
    pub coordinator_epoch: i32,
    pub max_timestamp_ms: i64,
}

impl BatchProducer {
    /// Sequence-checked and tracked: has a producer id and is not a control batch.
    pub(crate) fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && !self.is_control
    }

    /// A transaction marker: a control batch of a producer.
    pub(crate) fn is_marker(&self) -> bool {
        self.producer_id >= 0 && self.is_control
    }

    /// Kafka's `lastSequence`: the base sequence plus the last offset delta, wrapping past
    /// `i32::MAX` to 0.
    pub(crate) fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + increment`, wrapping past `i32::MAX` to 0 (Kafka's `incrementSequence`).
pub(crate) fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    debug_assert!(increment >= 0);
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// True if `next` directly follows `last` (wrapping from `i32::MAX` to 0).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// One retained batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
}

/// The last (at most) [`BATCHES_RETAINED_PER_PRODUCER`] batches, oldest first, inline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Retained {
    items: [BatchMetadata; BATCHES_RETAINED_PER_PRODUCER],
    len: usize,
}

impl Retained {
    const EMPTY: Retained = Retained {
        items: [BatchMetadata {
            first_seq: 0,
            last_seq: 0,
            first_offset: 0,
            last_offset: 0,
            max_timestamp_ms: 0,
        }; BATCHES_RETAINED_PER_PRODUCER],
        len: 0,
    };

    fn push(&mut self, batch: BatchMetadata) {
        if self.len == BATCHES_RETAINED_PER_PRODUCER {
            self.items.copy_within(1.., 0);
            self.items[BATCHES_RETAINED_PER_PRODUCER - 1] = batch;
        } else {
            self.items[self.len] = batch;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[BatchMetadata] {
        &self.items[..self.len]
    }

    fn last(&self) -> Option<&BatchMetadata> {
        self.as_slice().last()
    }
}

/// One producer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    epoch: i16,
    batches: Retained,
    last_timestamp_ms: i64,
    /// Epoch of the coordinator that wrote the producer's last marker (-1: none yet).
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition.
    current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: Retained::EMPTY,
            last_timestamp_ms: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }

    /// Kafka's `maybeUpdateProducerEpoch`: a new epoch forgets the old epoch's batches.
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches = Retained::EMPTY;
        }
    }

    /// Kafka's `addBatch`: a new epoch forgets the old epoch's batches.
    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata) {
        self.set_epoch(epoch);
        self.batches.push(batch);
        self.last_timestamp_ms = batch.max_timestamp_ms;
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .as_slice()
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// The outcome of checking one batch.
enum Verdict {
    Accept,
    Duplicate(BatchMetadata),
}

/// Kafka's checks of a client's data batch against the producer's current state (`None`: no
/// state). As in Kafka's non-transactional path, a producer without state (new, or expired
/// after `producer.id.expiration.ms`, or evicted) may start at any sequence: a live producer
/// that was idle longer than the expiration keeps working.
fn check(
    current: Option<&ProducerEntry>,
    producer_id: i64,
    batch: &BatchProducer,
) -> Result<Verdict, LogError> {
    let epoch = batch.producer_epoch;
    let first_seq = batch.base_sequence;
    let out_of_order = |expected_sequence| LogError::OutOfOrderSequence {
        producer_id,
        epoch,
        sequence: first_seq,
        expected_sequence,
    };
    let Some(entry) = current else {
        return Ok(Verdict::Accept);
    };
    if epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch: entry.epoch,
        });
    }
    if epoch > entry.epoch {
        // KIP-360: a bumped epoch restarts the sequence at 0.
        return if first_seq == 0 {
            Ok(Verdict::Accept)
        } else {
            Err(out_of_order(0))
        };
    }
    if let Some(original) = entry.find_duplicate(epoch, first_seq, batch.last_sequence()) {
        return Ok(Verdict::Duplicate(original));
    }
    match entry.batches.last() {
        Some(last) if in_sequence(last.last_seq, first_seq) => Ok(Verdict::Accept),
        Some(last) => Err(out_of_order(increment_sequence(last.last_seq, 1))),
        None if first_seq == 0 => Ok(Verdict::Accept),
        None => Err(out_of_order(0)),
    }
}

/// Kafka's `appendEndTxnMarker`: checks a marker against the producer's state and returns
/// the entry it leaves and the transaction it closes (none if the producer had no open
/// transaction here). `marker_offset` is the marker batch's offset.
fn close_transaction(
    current: Option<&ProducerEntry>,
    batch: &BatchProducer,
    marker_offset: i64,
) -> Result<(ProducerEntry, Option<CompletedTxn>), LogError> {
    let producer_id = batch.producer_id;
    if let Some(entry) = current {
        if batch.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                epoch: batch.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if batch.coordinator_epoch >= 0 && batch.coordinator_epoch < entry.coordinator_epoch {
            return Err(LogError::TransactionCoordinatorFenced {
                producer_id,
                coordinator_epoch: batch.coordinator_epoch,
                current_coordinator_epoch: entry.coordinator_epoch,
            });
        }
    }
    let mut entry = current
        .cloned()
        .unwrap_or_else(|| ProducerEntry::new(batch.producer_epoch));
    entry.set_epoch(batch.producer_epoch);
    if batch.coordinator_epoch >= 0 {
        entry.coordinator_epoch = batch.coordinator_epoch;
    }
    let completed = entry
        .current_txn_first_offset
        .take()
        .map(|first_offset| CompletedTxn {
            producer_id,
            first_offset,
            last_offset: marker_offset,
        });
    Ok((entry, completed))
}

/// What [`ProducerStates::plan`] decided for a record set.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Append it; commit the staged entries once it is in the log (nothing staged if the
    /// record set has no idempotent batch).
    Append(Staged),
    /// Every batch was already appended: write nothing, answer with the originals' offsets.
    Duplicate {
        first: BatchMetadata,
        last: BatchMetadata,
        batch_count: u32,
    },
}

/// A transaction a marker closed in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch here.
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
}

/// The entries an append will leave, in the order the batches touched them.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    entries: Vec<(i64, ProducerEntry)>,
    /// Transactions the record set's markers close, in offset order. Only transactions that
    /// wrote data here: a marker for a producer without an open transaction closes nothing.
    pub completed: Vec<CompletedTxn>,
    /// The partition's first unstable offset once the append is committed.
    pub first_unstable_offset: Option<i64>,
}

#[derive(Debug)]
struct Slot {
    entry: ProducerEntry,
    /// Broker time of the last append (or of the open that replayed it): the expiration clock.
    last_seen_ms: i64,
    /// Position in the recency order (larger is more recent).
    touch: u64,
}

/// All producers of a partition. Changed only under the log's lock.
#[derive(Debug)]
pub(crate) struct ProducerStates {
    slots: HashMap<i64, Slot>,
    /// `(last_seen_ms, touch, producer_id)` of every slot: the front is the least recently
    /// used, which is also the first to expire.
    recency: BTreeSet<(i64, u64, i64)>,
    next_touch: u64,
    max_producers: usize,
    /// `first offset -> producer id` of every open transaction (mirrors the entries).
    ongoing: BTreeMap<i64, i64>,
    /// KIP-890 verifications in progress: `producer id -> (token, started_ms)`. Created when
    /// a transactional produce starts checking with the coordinator; removed by the next
    /// committed append of the producer's batches here (its first transactional batch, or a
    /// marker), or after [`VERIFICATION_AGE_MAX_MS`] (a check that failed leaves one). In
    /// memory only.
    verifications: HashMap<i64, (u64, i64)>,
    next_verification: u64,
}

/// Verifications kept at most; beyond, the oldest is forgotten (an append presenting it is
/// refused with INVALID_TXN_STATE).
pub const VERIFICATIONS_MAX: usize = 10_000;

/// A verification older than this is forgotten: a produce request asks the coordinator and
/// appends within its timeout (`request.timeout.ms`, 30 s by default).
pub const VERIFICATION_AGE_MAX_MS: i64 = 60_000;

impl Default for ProducerStates {
    fn default() -> Self {
        ProducerStates::with_max(PRODUCERS_PER_PARTITION_MAX)
    }
}

impl ProducerStates {
    pub(crate) fn with_max(max_producers: usize) -> Self {
        assert!(max_producers > 0);
        ProducerStates {
            slots: HashMap::new(),
            recency: BTreeSet::new(),
            next_touch: 0,
            max_producers,
            ongoing: BTreeMap::new(),
            verifications: HashMap::new(),
            next_verification: 0,
        }
    }

    /// Starts (or joins) a KIP-890 verification for `producer_id`: the token an append that
    /// opens a transaction must present ([`Self::check_verification`]). Concurrent requests of
    /// one producer share it, so the first to append does not invalidate the others.
    pub(crate) fn start_verification(&mut self, producer_id: i64, now_ms: i64) -> u64 {
        if let Some(&(token, _)) = self.verifications.get(&producer_id) {
            return token;
        }
        if self.verifications.len() >= VERIFICATIONS_MAX {
            // Rare (every verification ends within a minute): a scan is cheap enough.
            let oldest = self
                .verifications
                .iter()
                .min_by_key(|(_, &(token, _))| token)
                .map(|(&p, _)| p);
            if let Some(p) = oldest {
                self.verifications.remove(&p);
            }
        }
        self.next_verification += 1;
        self.verifications
            .insert(producer_id, (self.next_verification, now_ms));
        self.next_verification
    }

    /// KIP-890: every transaction that `staged` opens must be the guard's producer's, and its
    /// verification must still be the one with `token`. A marker (the transaction ended, say
    /// aborted by a timeout) between the coordinator's answer and this append has removed it:
    /// the append would open a transaction that nothing closes, and is refused (as is one that
    /// would open another producer's transaction, unverified).
    pub(crate) fn check_verification(
        &self,
        staged: &Staged,
        producer_id: i64,
        token: u64,
    ) -> Result<(), LogError> {
        for (p, entry) in &staged.entries {
            let open_before = matches!(
                self.slots.get(p),
                Some(s) if s.entry.current_txn_first_offset.is_some()
            );
            let opens = entry.current_txn_first_offset.is_some() && !open_before;
            let verified =
                *p == producer_id && self.verifications.get(p).map(|&(t, _)| t) == Some(token);
            if opens && !verified {
                return Err(LogError::InvalidTxnState { producer_id: *p });
            }
        }
        Ok(())
    }

    /// Every producer, by producer id.
    pub(crate) fn describe(&self) -> Vec<ProducerDescription> {
        let mut all: Vec<ProducerDescription> = self
            .slots
            .iter()
            .map(|(&producer_id, slot)| {
                let last = slot.entry.batches.last();
                ProducerDescription {
                    producer_id,
                    producer_epoch: slot.entry.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_seq),
                    last_timestamp_ms: last.map_or(-1, |_| slot.entry.last_timestamp_ms),
                    coordinator_epoch: slot.entry.coordinator_epoch,
                    current_txn_first_offset: slot.entry.current_txn_first_offset,
                }
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// The first offset of the oldest open transaction (Kafka's first unstable offset).
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions: `(first offset, producer id)`, oldest first.
    pub(crate) fn ongoing_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&o, &p)| (o, p))
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn view(&self, producer_id: i64) -> Option<ProducerSnapshotView> {
        let slot = self.slots.get(&producer_id)?;
        let last = slot.entry.batches.last()?;
        Some(ProducerSnapshotView {
            producer_id,
            producer_epoch: slot.entry.epoch,
            last_sequence: last.last_seq,
            last_offset: last.last_offset,
            last_timestamp_ms: slot.entry.last_timestamp_ms,
        })
    }

    /// Checks a record set whose batches get offsets from `base_offset` on, each batch against
    /// the state as the earlier ones leave it. All or nothing: an error leaves the state as it
    /// was (nothing is changed before [`ProducerStates::commit`]). A record set whose first
    /// batch is a duplicate is a duplicate request; then every batch must be a duplicate.
    pub(crate) fn plan(
        &self,
        batches: &[BatchProducer],
        base_offset: i64,
        check_sequences: bool,
    ) -> Result<Plan, LogError> {
        let mut staged = Staged::default();
        let mut staged_at: HashMap<i64, usize> = HashMap::new();
        let mut duplicate: Option<(BatchMetadata, BatchMetadata, u32)> = None;
        let mut next_offset = base_offset;
        for (i, batch) in batches.iter().enumerate() {
            let first_offset = next_offset;
            let last_offset = first_offset + i64::from(batch.last_offset_delta);
            next_offset = last_offset + 1;
            let producer_id = batch.producer_id;
            if batch.is_marker() {
                if duplicate.is_some() {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id,
                        epoch: batch.producer_epoch,
                        sequence: batch.base_sequence,
                        expected_sequence: 0,
                    });
                }
                let current = match staged_at.get(&producer_id) {
                    Some(&at) => Some(&staged.entries[at].1),
                    None => self.slots.get(&producer_id).map(|s| &s.entry),
                };
                let (entry, completed) = close_transaction(current, batch, first_offset)?;
                staged.completed.extend(completed);
                match staged_at.get(&producer_id) {
                    Some(&at) => staged.entries[at].1 = entry,
                    None => {
                        staged_at.insert(producer_id, staged.entries.len());
                        staged.entries.push((producer_id, entry));
                    }
                }
                continue;
            }
            let idempotent = batch.is_idempotent();
            if !idempotent && duplicate.is_none() {
                continue;
            }
            let current = match staged_at.get(&producer_id) {
                Some(&at) => Some(&staged.entries[at].1),
                None => self.slots.get(&producer_id).map(|s| &s.entry),
            };
            let verdict = if idempotent {
                if check_sequences {
                    check(current, producer_id, batch)?
                } else {
                    if let Some(entry) = current {
                        if batch.producer_epoch < entry.epoch {
                            return Err(LogError::InvalidProducerEpoch {
                                producer_id,
                                epoch: batch.producer_epoch,
                                current_epoch: entry.epoch,
                            });
                        }
                    }
                    Verdict::Accept
                }
            } else {
                Verdict::Accept
            };
            match (verdict, &mut duplicate) {
                (Verdict::Duplicate(original), None) if i == 0 => {
                    duplicate = Some((original, original, 1));
                }
                (Verdict::Duplicate(original), Some((_, last, count))) => {
                    *last = original;
                    *count += 1;
                }
                (Verdict::Accept, None) => {
                    let metadata = BatchMetadata {
                        first_seq: batch.base_sequence,
                        last_seq: batch.last_sequence(),
                        first_offset,
                        last_offset,
                        max_timestamp_ms: batch.max_timestamp_ms,
                    };
                    let mut entry = current
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(batch.producer_epoch));
                    if batch.is_transactional {
                        entry.current_txn_first_offset.get_or_insert(first_offset);
                    } else if entry.current_txn_first_offset.is_some() {
                        return Err(LogError::InvalidTxnState { producer_id });
                    }
                    entry.add_batch(batch.producer_epoch, metadata);
                    match staged_at.get(&producer_id) {
                        Some(&at) => staged.entries[at].1 = entry,
                        None => {
                            staged_at.insert(producer_id, staged.entries.len());
                            staged.entries.push((producer_id, entry));
                        }
                    }
                }
                // A retried batch after new ones, or a new batch after retried ones: a client
                // sends one batch per partition, so this mix is refused rather than half
                // written or half dropped.
                (_, _) => {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id,
                        epoch: batch.producer_epoch,
                        sequence: batch.base_sequence,
                        expected_sequence: current
                            .and_then(|e| e.batches.last())
                            .map_or(0, |b| increment_sequence(b.last_seq, 1)),
                    });
                }
            }
        }
        if duplicate.is_none() {
            staged.first_unstable_offset = self.first_unstable_offset_after(&staged);
        }
        Ok(match duplicate {
            Some((first, last, batch_count)) => Plan::Duplicate {
                first,
                last,
                batch_count,
            },
            None => Plan::Append(staged),
        })
    }

    /// The first unstable offset once `staged` is committed.
    fn first_unstable_offset_after(&self, staged: &Staged) -> Option<i64> {
        let touched: HashMap<i64, Option<i64>> = staged
            .entries
            .iter()
            .map(|(producer_id, entry)| (*producer_id, entry.current_txn_first_offset))
            .collect();
        let untouched = self
            .ongoing
            .iter()
            .find(|(_, producer_id)| !touched.contains_key(producer_id))
            .map(|(&offset, _)| offset);
        touched.values().flatten().copied().chain(untouched).min()
    }

    /// Makes a planned append's entries current, as seen at `now_ms`, then evicts down to the
    /// bound.
    pub(crate) fn commit(&mut self, staged: Staged, now_ms: i64) {
        for (producer_id, entry) in staged.entries {
            // This append used the producer's verification, or ended its transaction.
            self.verifications.remove(&producer_id);
            self.put(producer_id, entry, now_ms);
        }
        self.evict_to_bound();
    }

    /// Applies a batch read back from the log (at open), without checks, as Kafka loads
    /// producer state from the log. `seen_ms` starts the entry's expiration clock.
    pub(crate) fn replay(
        &mut self,
        batch: &BatchProducer,
        first_offset: i64,
        seen_ms: i64,
    ) -> Option<CompletedTxn> {
        if batch.is_marker() {
            let current = self.slots.get(&batch.producer_id).map(|s| &s.entry);
            // Replay does not check: what is in the log was accepted when it was written.
            let (entry, completed) = match close_transaction(current, batch, first_offset) {
                Ok(closed) => closed,
                Err(_) => {
                    let mut entry = current
                        .cloned()
                        .unwrap_or_else(|| ProducerEntry::new(batch.producer_epoch));
                    entry.set_epoch(batch.producer_epoch);
                    let marker_offset = first_offset;
                    let completed = entry
                        .current_txn_first_offset
                        .take()
                        .map(|txn_first_offset| CompletedTxn {
                            producer_id: batch.producer_id,
                            first_offset: txn_first_offset,
                            last_offset: marker_offset,
                        });
                    (entry, completed)
                }
            };
            self.put(batch.producer_id, entry, seen_ms);
            self.evict_to_bound();
            return completed;
        }
        if !batch.is_idempotent() {
            return None;
        }
        let metadata = BatchMetadata {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            first_offset,
            last_offset: first_offset + i64::from(batch.last_offset_delta),
            max_timestamp_ms: batch.max_timestamp_ms,
        };
        let mut entry = self
            .slots
            .get(&batch.producer_id)
            .map(|s| s.entry.clone())
            .unwrap_or_else(|| ProducerEntry::new(batch.producer_epoch));
        if batch.is_transactional {
            entry.current_txn_first_offset.get_or_insert(first_offset);
        }
        entry.add_batch(batch.producer_epoch, metadata);
        self.put(batch.producer_id, entry, seen_ms);
        self.evict_to_bound();
        None
    }

    /// Removes the producers whose last batch ends below `log_start_offset` (Kafka drops them
    /// when the log start offset passes them: their batches are gone). Returns how many.
    pub(crate) fn remove_before(&mut self, log_start_offset: i64) -> usize {
        let gone: Vec<i64> = self
            .slots
            .iter()
            .filter(|(_, slot)| {
                slot.entry.current_txn_first_offset.is_none()
                    && !matches!(slot.entry.batches.last(), Some(b) if b.last_offset >= log_start_offset)
            })
            .map(|(&producer_id, _)| producer_id)
            .collect();
        for &producer_id in &gone {
            self.remove(producer_id);
        }
        gone.len()
    }

    /// The last offset of each producer's last batch: the cleaner keeps those batches (as
    /// Kafka does), so the state can be rebuilt from a cleaned log.
    pub(crate) fn last_batch_offsets(&self) -> HashMap<i64, i64> {
        self.slots
            .iter()
            .filter_map(|(&producer_id, slot)| {
                slot.entry
                    .batches
                    .last()
                    .map(|b| (producer_id, b.last_offset))
            })
            .collect()
    }

    /// The epoch of each producer that has no batch retained (its last record in the log is a
    /// marker, for example of an epoch bump): the cleaner keeps that producer's markers of that
    /// epoch (Kafka's `lastRecordsOfActiveProducers` without a last data offset), so the epoch
    /// survives a rebuild of the state from the log.
    pub(crate) fn epochs_without_batches(&self) -> HashMap<i64, i16> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.entry.batches.last().is_none())
            .map(|(&producer_id, slot)| (producer_id, slot.entry.epoch))
            .collect()
    }

    /// Removes producers last seen `expiration_ms` or longer before `now_ms`. Returns how many.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        // A producer with an open transaction is kept (Kafka's `isProducerExpired`): the
        // coordinator will close it. Bounded by the number of producers.
        let expired: Vec<i64> = self
            .recency
            .iter()
            .take_while(|&&(last_seen_ms, _, _)| {
                now_ms.saturating_sub(last_seen_ms) >= expiration_ms
            })
            .map(|&(_, _, producer_id)| producer_id)
            .filter(|producer_id| {
                self.slots[producer_id]
                    .entry
                    .current_txn_first_offset
                    .is_none()
            })
            .collect();
        for &producer_id in &expired {
            self.remove(producer_id);
        }
        self.verifications.retain(|_, &mut (_, started_ms)| {
            now_ms.saturating_sub(started_ms) < VERIFICATION_AGE_MAX_MS
        });
        expired.len()
    }

    fn put(&mut self, producer_id: i64, entry: ProducerEntry, seen_ms: i64) {
        self.remove(producer_id);
        if let Some(first_offset) = entry.current_txn_first_offset {
            let previous = self.ongoing.insert(first_offset, producer_id);
            debug_assert!(previous.is_none(), "two transactions start at one offset");
        }
        let touch = self.next_touch;
        self.next_touch += 1;
        self.recency.insert((seen_ms, touch, producer_id));
        self.slots.insert(
            producer_id,
            Slot {
                entry,
                last_seen_ms: seen_ms,
                touch,
            },
        );
    }

    fn remove(&mut self, producer_id: i64) {
        if let Some(old) = self.slots.remove(&producer_id) {
            let removed = self
                .recency
                .remove(&(old.last_seen_ms, old.touch, producer_id));
            assert!(removed, "every slot is in the recency order");
            if let Some(first_offset) = old.entry.current_txn_first_offset {
                self.ongoing.remove(&first_offset);
            }
        }
    }

    fn evict_to_bound(&mut self) {
        // Bounded: each iteration removes one producer.
        while self.slots.len() > self.max_producers {
            // The least recently used producer without an open transaction; only if every
            // producer has one, the least recently used of all (its transaction is then no
            // longer tracked here: the bound wins).
            let producer_id = self
                .recency
                .iter()
                .map(|&(_, _, producer_id)| producer_id)
                .find(|p| self.slots[p].entry.current_txn_first_offset.is_none())
                .or_else(|| self.recency.first().map(|&(_, _, producer_id)| producer_id))
                .expect("more slots than the bound");
            self.remove(producer_id);
        }
        debug_assert_eq!(self.slots.len(), self.recency.len());
    }

    /// The snapshot of the state as of `offset` (see the module docs).
    pub(crate) fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER_BYTES
                + self.slots.len() * (SNAPSHOT_PRODUCER_BYTES + 2 * SNAPSHOT_BATCH_BYTES),
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.slots.len() as u32).to_be_bytes());
        for &(last_seen_ms, _, producer_id) in &self.recency {
            let entry = &self.slots[&producer_id].entry;
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            out.extend_from_slice(&last_seen_ms.to_be_bytes());
            out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            let batches = entry.batches.as_slice();
            out.push(batches.len() as u8);
            for b in batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp_ms.to_be_bytes());
            }
        }
        let crc = crc32c(&out[SNAPSHOT_CRC_START..]);
        out[6..10].copy_from_slice(&crc.to_be_bytes());
        debug_assert!(out.len() <= SNAPSHOT_BYTES_MAX);
        out
    }

    /// Reads a snapshot that must be the one taken at `offset`. Any damage or inconsistency is
    /// reported as a reason, never a panic.
    pub(crate) fn decode_snapshot(
        bytes: &[u8],
        offset: i64,
        max_producers: usize,
    ) -> Result<ProducerStates, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err("not a producer state snapshot (bad magic)".into());
        }
        let version = r.u16()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(format!("unknown snapshot version {version}"));
        }
        let stored_crc = r.u32()?;
        let computed = crc32c(&bytes[SNAPSHOT_CRC_START..]);
        if stored_crc != computed {
            return Err(format!(
                "crc mismatch: stored {stored_crc:#010x}, computed {computed:#010x}"
            ));
        }
        let snapshot_offset = r.i64()?;
        if snapshot_offset != offset {
            return Err(format!(
                "snapshot is of offset {snapshot_offset}, its name says {offset}"
            ));
        }
        let count = r.u32()? as usize;
        if count > max_producers {
            return Err(format!(
                "{count} producers, more than the bound {max_producers}"
            ));
        }
        let mut states = ProducerStates::with_max(max_producers);
        let mut previous_seen_ms = i64::MIN;
        for _ in 0..count {
            let producer_id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp_ms = r.i64()?;
            let last_seen_ms = r.i64()?;
            let (coordinator_epoch, txn_first_offset) = if version >= 2 {
                (r.i32()?, r.i64()?)
            } else {
                (-1, -1)
            };
            let batch_count = usize::from(r.u8()?);
            if producer_id < 0 {
                return Err(format!("negative producer id {producer_id}"));
            }
            if txn_first_offset < -1 || txn_first_offset >= offset {
                return Err(format!(
                    "producer {producer_id}: transaction first offset {txn_first_offset} \
                     not below {offset}"
                ));
            }
            let min_batches = if version >= 2 { 0 } else { 1 };
            if !(min_batches..=BATCHES_RETAINED_PER_PRODUCER).contains(&batch_count) {
                return Err(format!("producer {producer_id} has {batch_count} batches"));
            }
            if last_seen_ms < previous_seen_ms {
                return Err(format!("producer {producer_id} out of recency order"));
            }
            previous_seen_ms = last_seen_ms;
            let mut entry = ProducerEntry::new(epoch);
            entry.coordinator_epoch = coordinator_epoch;
            entry.current_txn_first_offset = (txn_first_offset >= 0).then_some(txn_first_offset);
            if let Some(first_offset) = entry.current_txn_first_offset {
                if states.ongoing.contains_key(&first_offset) {
                    return Err(format!("two transactions start at offset {first_offset}"));
                }
            }
            let mut previous_last_offset = -1i64;
            for _ in 0..batch_count {
                let batch = BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp_ms: r.i64()?,
                };
                if batch.first_offset <= previous_last_offset
                    || batch.last_offset < batch.first_offset
                    || batch.last_offset >= offset
                {
                    return Err(format!(
                        "producer {producer_id}: batch offsets {}..={} out of order \
                         or not below {offset}",
                        batch.first_offset, batch.last_offset
                    ));
                }
                previous_last_offset = batch.last_offset;
                entry.batches.push(batch);
            }
            entry.last_timestamp_ms = last_timestamp_ms;
            if states.slots.contains_key(&producer_id) {
                return Err(format!("producer {producer_id} appears twice"));
            }
            states.put(producer_id, entry, last_seen_ms);
        }
        if r.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.at));
        }
        Ok(states)
    }
}

/// Bounds-checked big-endian reads of a snapshot.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchProducer {
        BatchProducer {
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            last_offset_delta: records - 1,
            is_control: false,
            is_transactional: false,
            coordinator_epoch: -1,
            max_timestamp_ms: 1_000,
        }
    }

    fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchProducer {
        BatchProducer {
            is_transactional: true,
            ..batch(producer_id, epoch, base_sequence, records)
        }
    }

    fn marker(producer_id: i64, epoch: i16, coordinator_epoch: i32) -> BatchProducer {
        BatchProducer {
            producer_id,
            producer_epoch: epoch,
            base_sequence: -1,
            last_offset_delta: 0,
            is_control: true,
            is_transactional: true,
            coordinator_epoch,
            max_timestamp_ms: 1_000,
        }
    }

    /// Plans and commits; returns the completed transactions.
    fn apply(
        states: &mut ProducerStates,
        batches: &[BatchProducer],
        base_offset: i64,
    ) -> Vec<CompletedTxn> {
        match states.plan(batches, base_offset, true).expect("accepted") {
            Plan::Append(staged) => {
                let completed = staged.completed.clone();
                let fuo = staged.first_unstable_offset;
                states.commit(staged, 0);
                assert_eq!(
                    states.first_unstable_offset(),
                    fuo,
                    "predicted first unstable offset"
                );
                completed
            }
            Plan::Duplicate { .. } => panic!("unexpected duplicate"),
        }
    }

    #[test]
    fn given_transactional_batches_when_marker_written_should_track_and_close_transaction() {
        let mut states = ProducerStates::default();
        assert!(apply(&mut states, &[txn_batch(7, 0, 0, 3)], 10).is_empty());
        assert!(apply(&mut states, &[txn_batch(8, 0, 0, 1)], 13).is_empty());
        assert!(apply(&mut states, &[txn_batch(7, 0, 3, 2)], 14).is_empty());
        assert_eq!(states.first_unstable_offset(), Some(10));
        let done = apply(&mut states, &[marker(7, 0, 0)], 16);
        assert_eq!(
            done,
            vec![CompletedTxn {
                producer_id: 7,
                first_offset: 10,
                last_offset: 16
            }]
        );
        assert_eq!(states.first_unstable_offset(), Some(13));
        let done = apply(&mut states, &[marker(8, 0, 0)], 17);
        assert_eq!(done.len(), 1);
        assert_eq!(states.first_unstable_offset(), None);
        // The next transaction continues the sequence.
        apply(&mut states, &[txn_batch(7, 0, 5, 1)], 18);
        assert_eq!(states.first_unstable_offset(), Some(18));
    }

    #[test]
    fn given_open_transaction_when_non_transactional_batch_should_answer_invalid_txn_state() {
        let mut states = ProducerStates::default();
        apply(&mut states, &[txn_batch(7, 0, 0, 1)], 0);
        let err = states.plan(&[batch(7, 0, 1, 1)], 1, true).unwrap_err();
        assert!(
            matches!(err, LogError::InvalidTxnState { producer_id: 7 }),
            "{err:?}"
        );
    }

    #[test]
    fn given_marker_from_older_coordinator_epoch_should_fence_it() {
        let mut states = ProducerStates::default();
        apply(&mut states, &[txn_batch(7, 0, 0, 1)], 0);
        apply(&mut states, &[marker(7, 0, 5)], 1);
        apply(&mut states, &[txn_batch(7, 0, 1, 1)], 2);
        let err = states.plan(&[marker(7, 0, 4)], 3, true).unwrap_err();
        assert!(
            matches!(err, LogError::TransactionCoordinatorFenced { .. }),
            "{err:?}"
        );
        let err = states.plan(&[marker(7, 0, 5)], 3, true).map(|_| ());
        assert!(err.is_ok());
    }

    #[test]
    fn given_marker_with_older_producer_epoch_should_refuse_and_bumped_epoch_should_reset() {
        let mut states = ProducerStates::default();
        apply(&mut states, &[txn_batch(7, 2, 0, 1)], 0);
        assert!(matches!(
            states.plan(&[marker(7, 1, 0)], 1, true).unwrap_err(),
            LogError::InvalidProducerEpoch { .. }
        ));
        // An abort with a bumped epoch (a fenced producer's transaction) closes it.
        let done = apply(&mut states, &[marker(7, 3, 0)], 1);
        assert_eq!(done.len(), 1);
        assert!(matches!(
            states.plan(&[txn_batch(7, 2, 1, 1)], 2, true).unwrap_err(),
            LogError::InvalidProducerEpoch { .. }
        ));
        apply(&mut states, &[txn_batch(7, 3, 0, 1)], 2);
    }

    #[test]
    fn given_marker_without_open_transaction_should_close_nothing() {
        let mut states = ProducerStates::default();
        assert!(apply(&mut states, &[marker(9, 0, 0)], 0).is_empty());
        assert_eq!(states.first_unstable_offset(), None);
    }

    #[test]
    fn given_open_transaction_should_survive_expiry_and_snapshot() {
        let mut states = ProducerStates::default();
        apply(&mut states, &[txn_batch(7, 0, 0, 2)], 5);
        apply(&mut states, &[batch(8, 0, 0, 1)], 7);
        apply(&mut states, &[marker(9, 4, 3)], 8);
        assert_eq!(
            states.expire(1_000_000, 10),
            2,
            "only the producers without a transaction"
        );
        assert_eq!(states.first_unstable_offset(), Some(5));
        let bytes = states.encode_snapshot(9);
        let back = ProducerStates::decode_snapshot(&bytes, 9, 10).unwrap();
        assert_eq!(back.first_unstable_offset(), Some(5));
        assert_eq!(back.view(7), states.view(7));
        let mut back = back;
        let done = apply(&mut back, &[marker(7, 0, 0)], 9);
        assert_eq!(
            done,
            vec![CompletedTxn {
                producer_id: 7,
                first_offset: 5,
                last_offset: 9
            }]
        );
    }

    #[test]
    fn given_replayed_batches_should_rebuild_transactions_like_appends() {
        let mut states = ProducerStates::default();
        assert_eq!(states.replay(&txn_batch(7, 0, 0, 2), 0, 0), None);
        assert_eq!(states.first_unstable_offset(), Some(0));
        let done = states.replay(&marker(7, 0, -1), 2, 0);
        assert_eq!(
            done,
            Some(CompletedTxn {
                producer_id: 7,
                first_offset: 0,
                last_offset: 2
            })
        );
        assert_eq!(states.first_unstable_offset(), None);
    }

    fn append(states: &mut ProducerStates, batches: &[BatchProducer], base_offset: i64) -> Plan {
        let plan = states.plan(batches, base_offset, true).expect("accepted");
        match plan {
            Plan::Append(staged) => {
                states.commit(staged, 0);
                Plan::Append(Staged::default())
            }
            dup => dup,
        }
    }

    #[test]
    fn given_sequence_near_max_should_wrap_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, 1));
        assert!(in_sequence(-1, 0));
    }

    #[test]
    fn given_producer_at_max_sequence_when_next_batch_starts_at_zero_should_accept() {
        let mut states = ProducerStates::default();
        let mut entry = ProducerEntry::new(0);
        entry.add_batch(
            0,
            BatchMetadata {
                first_seq: i32::MAX - 2,
                last_seq: i32::MAX,
                first_offset: 0,
                last_offset: 2,
                max_timestamp_ms: 0,
            },
        );
        states.put(7, entry, 0);
        assert!(matches!(
            states.plan(&[batch(7, 0, 1, 1)], 3, true),
            Err(LogError::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        // A batch spanning the wrap: MAX-2..=MAX already stored, then 0..=1.
        append(&mut states, &[batch(7, 0, 0, 2)], 3);
        assert_eq!(states.view(7).unwrap().last_sequence, 1);
        assert!(matches!(
            states.plan(&[batch(7, 0, i32::MAX - 2, 3)], 5, true),
            Ok(Plan::Duplicate { .. })
        ));
    }

    #[test]
    fn given_more_than_five_batches_should_remember_only_the_last_five() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, &[batch(1, 0, i, 1)], i64::from(i));
        }
        for i in 2..7 {
            assert!(
                matches!(
                    states.plan(&[batch(1, 0, i, 1)], 7, true),
                    Ok(Plan::Duplicate { first, .. }) if first.first_offset == i64::from(i)
                ),
                "{i}"
            );
        }
        for i in 0..2 {
            assert!(matches!(
                states.plan(&[batch(1, 0, i, 1)], 7, true),
                Err(LogError::OutOfOrderSequence { .. })
            ));
        }
    }

    #[test]
    fn given_bound_when_more_producers_should_evict_least_recently_used() {
        let mut states = ProducerStates::with_max(3);
        for pid in 0..3 {
            append(&mut states, &[batch(pid, 0, 0, 1)], pid);
        }
        // Producer 0 is used again, so producer 1 is the least recently used.
        append(&mut states, &[batch(0, 0, 1, 1)], 3);
        append(&mut states, &[batch(9, 0, 0, 1)], 4);
        assert_eq!(states.len(), 3);
        assert!(states.view(1).is_none());
        assert!(states.view(0).is_some() && states.view(2).is_some() && states.view(9).is_some());
    }

    #[test]
    fn given_idle_producers_when_expired_should_remove_only_those() {
        let mut states = ProducerStates::default();
        let plan = states.plan(&[batch(1, 0, 0, 1)], 0, true).unwrap();
        let Plan::Append(staged) = plan else { panic!() };
        states.commit(staged, 1_000);
        let plan = states.plan(&[batch(2, 0, 0, 1)], 1, true).unwrap();
        let Plan::Append(staged) = plan else { panic!() };
        states.commit(staged, 5_000);
        assert_eq!(states.expire(10_999, 10_000), 0);
        assert_eq!(states.expire(11_000, 10_000), 1);
        assert!(states.view(1).is_none() && states.view(2).is_some());
    }

    #[test]
    fn given_state_should_round_trip_through_a_snapshot_and_reject_damage() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, &[batch(1, 3, 2 * i, 2)], i64::from(i) * 2);
        }
        append(&mut states, &[batch(2, 0, 0, 1)], 14);
        let bytes = states.encode_snapshot(15);
        let back =
            ProducerStates::decode_snapshot(&bytes, 15, PRODUCERS_PER_PARTITION_MAX).unwrap();
        assert_eq!(back.len(), 2);
        for pid in [1, 2] {
            assert_eq!(back.slots[&pid].entry, states.slots[&pid].entry);
        }
        assert_eq!(back.encode_snapshot(15), bytes);
        assert!(ProducerStates::decode_snapshot(&bytes, 16, PRODUCERS_PER_PARTITION_MAX).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                ProducerStates::decode_snapshot(&bad, 15, PRODUCERS_PER_PARTITION_MAX).is_err(),
                "flipped byte {i}"
            );
        }
        for len in 0..bytes.len() {
            assert!(ProducerStates::decode_snapshot(&bytes[..len], 15, 10).is_err());
        }
    }

    #[test]
    fn given_log_start_past_a_producer_should_remove_only_that_producer() {
        let mut states = ProducerStates::default();
        append(&mut states, &[batch(1, 0, 0, 3)], 0);
        append(&mut states, &[batch(2, 0, 0, 2)], 3);
        assert_eq!(states.last_batch_offsets(), HashMap::from([(1, 2), (2, 4)]));
        assert_eq!(states.remove_before(3), 1);
        assert!(states.view(1).is_none() && states.view(2).is_some());
        assert_eq!(states.remove_before(4), 0);
        assert!(states.epochs_without_batches().is_empty());
        // A producer known only by a marker (of a bumped epoch, say) has no batch.
        apply(&mut states, &[marker(3, 2, 0)], 5);
        assert_eq!(states.epochs_without_batches(), HashMap::from([(3, 2)]));
    }

    #[test]
    fn given_more_verifications_than_the_bound_should_forget_the_oldest() {
        let mut states = ProducerStates::default();
        for producer_id in 0..=VERIFICATIONS_MAX as i64 {
            states.start_verification(producer_id, 0);
        }
        assert!(states.verifications.len() <= VERIFICATIONS_MAX);
        assert!(
            !states.verifications.contains_key(&0),
            "the oldest forgotten"
        );
        assert!(states
            .verifications
            .contains_key(&(VERIFICATIONS_MAX as i64)));
    }

    #[test]
    fn given_snapshot_names_should_parse_only_twenty_digits() {
        assert_eq!(snapshot_file_name(42), "00000000000000000042.snapshot");
        assert_eq!(
            parse_snapshot_file_name("00000000000000000042.snapshot"),
            Some(42)
        );
        assert_eq!(parse_snapshot_file_name("42.snapshot"), None);
        assert_eq!(parse_snapshot_file_name("00000000000000000042.log"), None);
        assert_eq!(
            parse_snapshot_file_name("00000000000000000042.snapshot.tmp"),
            None
        );
    }
}
