//! Drives a `TransactionCoordinatorShard` the way a runtime would, without sockets: records
//! go to an in-memory log in their stored form, responses are checked to encode at their
//! request's version, and marker commands wait until the test says they are written.

#![allow(dead_code)]

use bytes::BytesMut;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_txn::{
    MarkerCommand, Output, ProducerIdBlock, RequestId, ShardRequest, StaticTopics, TopicInfo,
    TransactionCoordinatorShard, TransactionMetadata, TxnConfig, TxnRecord, TxnRequest,
    TxnResponse,
};

/// A fixed wall-clock start, so that timestamps in records are recognisable.
pub const T0: i64 = 1_700_000_000_000;
pub const COORDINATOR_EPOCH: i32 = 7;
pub const FIRST_PRODUCER_ID: i64 = 4000;

pub fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// `[("orders", [0, 1])]` as the request's topic list.
pub fn request_topics(partitions: &[(&str, &[i32])]) -> Vec<AddPartitionsToTxnTopic> {
    partitions
        .iter()
        .map(|(t, ps)| {
            AddPartitionsToTxnTopic::default()
                .with_name(topic_name(t))
                .with_partitions(ps.to_vec())
        })
        .collect()
}

pub fn batched(
    tid: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(&str, &[i32])],
    verify_only: bool,
) -> AddPartitionsToTxnTransaction {
    AddPartitionsToTxnTransaction::default()
        .with_transactional_id(txn_id(tid))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_verify_only(verify_only)
        .with_topics(request_topics(partitions))
}

pub fn topics() -> StaticTopics {
    let topic = |name: &str, id: u128, partitions: i32| TopicInfo {
        name: name.into(),
        topic_id: uuid::Uuid::from_u128(id),
        partitions,
    };
    StaticTopics(vec![topic("orders", 1, 4), topic("payments", 2, 2)])
}

fn encodes(response: &TxnResponse, version: i16) {
    let mut buf = BytesMut::new();
    let result = match response {
        TxnResponse::InitProducerId(r) => r.encode(&mut buf, version),
        TxnResponse::AddPartitionsToTxn(r) => r.encode(&mut buf, version),
        TxnResponse::AddOffsetsToTxn(r) => r.encode(&mut buf, version),
        TxnResponse::EndTxn(r) => r.encode(&mut buf, version),
        TxnResponse::ListTransactions(r) => r.encode(&mut buf, version),
        TxnResponse::DescribeTransactions(r) => r.encode(&mut buf, version),
    };
    assert!(
        result.is_ok(),
        "response does not encode at v{version}: {result:?}\n{response:?}"
    );
}

pub struct Harness {
    pub shard: TransactionCoordinatorShard,
    pub topics: StaticTopics,
    pub ids: ProducerIdBlock,
    pub now: i64,
    /// The partition as stored: (key, value) bytes, in order.
    pub log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Marker commands handed out and not yet reported written.
    pub markers: Vec<MarkerCommand>,
    /// Records of the last call, decoded back from their stored form.
    pub last_records: Vec<TxnRecord>,
    next_request: RequestId,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(TxnConfig::default())
    }
}

impl Harness {
    pub fn new(config: TxnConfig) -> Self {
        let mut h = Harness {
            shard: TransactionCoordinatorShard::new(3, COORDINATOR_EPOCH, config),
            topics: topics(),
            ids: ProducerIdBlock {
                next: FIRST_PRODUCER_ID,
                end: FIRST_PRODUCER_ID + 1000,
            },
            now: T0,
            log: Vec::new(),
            markers: Vec::new(),
            last_records: Vec::new(),
            next_request: 1,
        };
        let out = h.shard.loaded(T0);
        h.take_effects(out);
        h
    }

    /// Appends the records (through their bytes), keeps the markers; returns the responses.
    pub fn take_effects(&mut self, out: Output) -> Vec<(RequestId, TxnResponse)> {
        self.last_records.clear();
        for r in &out.records {
            let (k, v) = r.encode();
            let back = TxnRecord::decode(&k, v.as_deref()).expect("a record decodes");
            assert_eq!(&back, r, "a record survives its stored form");
            self.last_records.push(back);
            self.log.push((k, v));
        }
        self.markers.extend(out.markers);
        out.responses
    }

    pub fn call(&mut self, version: i16, body: TxnRequest) -> TxnResponse {
        let id = self.next_request;
        self.next_request += 1;
        let out = self.shard.handle(
            id,
            ShardRequest { version, body },
            &self.topics,
            &mut self.ids,
            self.now,
        );
        let mut responses = self.take_effects(out);
        assert_eq!(responses.len(), 1, "one answer per request");
        let (answered, response) = responses.pop().expect("an answer");
        assert_eq!(answered, id);
        encodes(&response, version);
        response
    }

    /// InitProducerId: (error code, producer id, epoch).
    pub fn init_at(
        &mut self,
        version: i16,
        tid: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> (i16, i64, i16) {
        let (id, epoch) = expected.unwrap_or((-1, -1));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(tid)))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        match self.call(version, TxnRequest::InitProducerId(req)) {
            TxnResponse::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// InitProducerId v5, 60 s timeout, expecting success: (producer id, epoch).
    pub fn init(&mut self, tid: &str) -> (i64, i16) {
        let (code, id, epoch) = self.init_at(5, tid, 60_000, None);
        assert_eq!(code, 0, "InitProducerId of {tid}");
        (id, epoch)
    }

    /// AddPartitionsToTxn v0–v3: the code of every partition (they must agree unless the
    /// request fails for unknown partitions).
    pub fn add_at(
        &mut self,
        version: i16,
        tid: &str,
        producer: (i64, i16),
        partitions: &[(&str, &[i32])],
    ) -> Codes {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(tid))
            .with_v3_and_below_producer_id(ProducerId(producer.0))
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(request_topics(partitions));
        match self.call(version, TxnRequest::AddPartitionsToTxn(req)) {
            TxnResponse::AddPartitionsToTxn(r) => flatten(&r.results_by_topic_v3_and_below),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// AddPartitionsToTxn v3 for partitions that must all answer the same code.
    pub fn add(&mut self, tid: &str, producer: (i64, i16), partitions: &[(&str, &[i32])]) -> i16 {
        let codes = self.add_at(3, tid, producer, partitions);
        let first = codes.first().expect("a partition").2;
        assert!(codes.iter().all(|c| c.2 == first), "{codes:?}");
        first
    }

    pub fn add_offsets_at(
        &mut self,
        version: i16,
        tid: &str,
        producer: (i64, i16),
        group: &str,
    ) -> i16 {
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id(tid))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())));
        match self.call(version, TxnRequest::AddOffsetsToTxn(req)) {
            TxnResponse::AddOffsetsToTxn(r) => r.error_code,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// EndTxn: (error code, producer id, epoch) of the answer.
    pub fn end_at(
        &mut self,
        version: i16,
        tid: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> (i16, i64, i16) {
        let req = EndTxnRequest::default()
            .with_transactional_id(txn_id(tid))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(commit);
        match self.call(version, TxnRequest::EndTxn(req)) {
            TxnResponse::EndTxn(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// EndTxn v4 (transaction version 1): the error code.
    pub fn end(&mut self, tid: &str, producer: (i64, i16), commit: bool) -> i16 {
        self.end_at(4, tid, producer, commit).0
    }

    pub fn list(&mut self, version: i16, req: ListTransactionsRequest) -> ListTransactionsResponse {
        match self.call(version, TxnRequest::ListTransactions(req)) {
            TxnResponse::ListTransactions(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn describe(&mut self, ids: &[&str]) -> DescribeTransactionsResponse {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(ids.iter().map(|i| txn_id(i)).collect());
        match self.call(0, TxnRequest::DescribeTransactions(req)) {
            TxnResponse::DescribeTransactions(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Reports every pending marker command written, in order.
    pub fn write_markers(&mut self) {
        for m in std::mem::take(&mut self.markers) {
            let out = self.shard.markers_written(
                &m.transactional_id,
                m.producer_id,
                m.producer_epoch,
                m.result,
                self.now,
            );
            self.take_effects(out);
        }
    }

    /// Moves the clock to `t` and fires every sweep due on the way.
    pub fn advance_to(&mut self, t: i64) {
        while let Some(at) = self.shard.next_deadline_ms().filter(|at| *at <= t) {
            self.now = self.now.max(at);
            let out = self.shard.tick(self.now);
            self.take_effects(out);
        }
        self.now = t;
    }

    pub fn txn(&self, tid: &str) -> TransactionMetadata {
        self.shard
            .transaction(tid)
            .unwrap_or_else(|| panic!("{tid} is known"))
            .clone()
    }

    /// Writes `t` to the log as if requests had brought it there, and restarts the shard
    /// from the log (for states that take many requests to reach, like an exhausted epoch).
    pub fn seed(&mut self, t: TransactionMetadata) {
        let record = TxnRecord {
            transactional_id: t.transactional_id.clone(),
            value: Some(t.to_value(1)),
        };
        self.log.push(record.encode());
        self.shard = self.replayed();
        let out = self.shard.loaded(self.now);
        self.take_effects(out);
    }

    /// A new shard built from the log, as after a restart (not yet `loaded`).
    pub fn replayed(&self) -> TransactionCoordinatorShard {
        let mut shard =
            TransactionCoordinatorShard::new(3, COORDINATOR_EPOCH + 1, self.shard.config().clone());
        for (k, v) in &self.log {
            let record = TxnRecord::decode(k, v.as_deref()).expect("a stored record decodes");
            shard.replay(&record).expect("replay");
        }
        shard
    }
}

/// `(topic, partition, error code)` per partition of an AddPartitionsToTxn answer.
pub type Codes = Vec<(String, i32, i16)>;

/// The codes of an AddPartitionsToTxn result, in answer order.
pub fn flatten(results: &[add_partitions_to_txn_response::AddPartitionsToTxnTopicResult]) -> Codes {
    results
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

/// The durable part of a transactional id's state: what replay must rebuild (Kafka does
/// not store the last epoch either).
pub fn durable(t: &TransactionMetadata) -> TransactionMetadata {
    TransactionMetadata {
        last_producer_epoch: -1,
        ..t.clone()
    }
}
