//! Transactional offset commits through a real socket (KIP-890 part 1 for the group
//! coordinator's transactional writes). Real clients' transactions are exercised in
//! tests/compat (test_transactions.py, test_exactly_once.py).

mod common;

use std::time::{Duration, Instant};

use common::{create_topic, name, Client, TestBroker};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

const TXN: &str = "kip890-offsets";
const GROUP: &str = "kip890-group";
const TOPIC: &str = "kip890-input";

fn txn_id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str(TXN))
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

async fn create_input_topic(c: &mut Client) {
    assert_eq!(create_topic(c, TOPIC, 1).await.topics[0].error_code, 0);
}

/// InitProducerId for the transactional id (retried while its coordinator loads).
async fn init_txn(c: &mut Client) -> (ProducerId, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id()))
        .with_transaction_timeout_ms(60_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.send(&req, 4).await;
        if r.error_code == 0 {
            return (r.producer_id, r.producer_epoch);
        }
        assert!(
            Instant::now() < deadline,
            "InitProducerId: {}",
            r.error_code
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_offsets(c: &mut Client, producer: (ProducerId, i16)) -> i16 {
    let req = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id())
        .with_producer_id(producer.0)
        .with_producer_epoch(producer.1)
        .with_group_id(group());
    c.send(&req, 3).await.error_code
}

/// TxnOffsetCommit v3 of `offset` for partition 0 of the input topic: the partition's code.
async fn commit_offset(c: &mut Client, producer: (ProducerId, i16), offset: i64) -> i16 {
    commit_offset_v(c, producer, offset, 3).await
}

async fn commit_offset_v(
    c: &mut Client,
    producer: (ProducerId, i16),
    offset: i64,
    version: i16,
) -> i16 {
    let r = c
        .send(&commit_request(producer, &[TOPIC], offset), version)
        .await;
    r.topics[0].partitions[0].error_code
}

/// TxnOffsetCommit of `offset` for partition 0 of each of `topics`, in the group.
fn commit_request(
    producer: (ProducerId, i16),
    topics: &[&str],
    offset: i64,
) -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id())
        .with_group_id(group())
        .with_producer_id(producer.0)
        .with_producer_epoch(producer.1)
        .with_generation_id(-1)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(name(t))
                        .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1)])
                })
                .collect(),
        )
}

async fn end_txn(c: &mut Client, producer: (ProducerId, i16), commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(txn_id())
        .with_producer_id(producer.0)
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    c.send(&req, 3).await.error_code
}

/// The group's committed offset of partition 0, once no transaction holds it back
/// (OffsetFetch v7 with require_stable, polled until stable).
async fn stable_offset(c: &mut Client) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(group())
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0])]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.send(&req, 7).await;
        let p = &r.topics[0].partitions[0];
        if r.error_code == 0 && p.error_code == 0 {
            return p.committed_offset;
        }
        assert!(
            Instant::now() < deadline,
            "OffsetFetch stayed unstable: {} / {}",
            r.error_code,
            p.error_code
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_txn_offset_commits_outside_the_producers_transaction_should_refuse_them_kip_890() {
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create_input_topic(&mut c).await;
    let producer = init_txn(&mut c).await;
    let invalid_txn_state = ResponseError::InvalidTxnState.code();

    // No AddOffsetsToTxn: the group's partition is not in any transaction of the producer.
    // Clients before TxnOffsetCommit v4 do not know TRANSACTION_ABORTABLE (Kafka's
    // AddPartitionsToTxnManager answers them INVALID_TXN_STATE).
    assert_eq!(commit_offset(&mut c, producer, 3).await, invalid_txn_state);
    assert_eq!(
        commit_offset_v(&mut c, producer, 3, 4).await,
        ResponseError::TransactionAbortable.code()
    );
    // A partition of an unknown topic keeps its own error beside the refused one.
    let mixed = commit_request(producer, &[TOPIC, "kip890-no-such-topic"], 3);
    let r = c.send(&mixed, 3).await;
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            invalid_txn_state,
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );

    // Inside the transaction: accepted, and visible once the transaction commits.
    assert_eq!(add_offsets(&mut c, producer).await, 0);
    assert_eq!(commit_offset(&mut c, producer, 5).await, 0);
    assert_eq!(
        commit_offset(&mut c, producer, 6).await,
        0,
        "a second commit in it"
    );
    assert_eq!(end_txn(&mut c, producer, true).await, 0);
    assert_eq!(stable_offset(&mut c).await, 6);

    // A late commit of the ended transaction: refused, and it opens nothing that would hold
    // the group's offsets back (the stable read answers at once with the committed offset).
    assert_eq!(commit_offset(&mut c, producer, 9).await, invalid_txn_state);
    assert_eq!(stable_offset(&mut c).await, 6);

    // The producer's next transaction works as usual.
    assert_eq!(add_offsets(&mut c, producer).await, 0);
    assert_eq!(commit_offset(&mut c, producer, 12).await, 0);
    assert_eq!(end_txn(&mut c, producer, true).await, 0);
    assert_eq!(stable_offset(&mut c).await, 12);
    broker.stop().await;
}

/// A one-record transactional batch of `producer` (sequence 0), CRC recomputed.
fn transactional_batch(producer: (ProducerId, i16)) -> Vec<u8> {
    let mut b = runnel_model::batch::testing::simple_batch(0, 1);
    let attributes = i16::from_be_bytes([b[21], b[22]]) | 0x10; // isTransactional
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    b[43..51].copy_from_slice(&producer.0 .0.to_be_bytes());
    b[51..53].copy_from_slice(&producer.1.to_be_bytes());
    b[53..57].copy_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_produce_outside_the_transaction_should_answer_the_error_its_version_knows_kip_890()
{
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let broker = TestBroker::start().await;
    let mut c = broker.client().await;
    create_input_topic(&mut c).await;
    let producer = init_txn(&mut c).await;
    let request = ProduceRequest::default()
        .with_transactional_id(Some(txn_id()))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(transactional_batch(producer).into()))])]);
    // No AddPartitionsToTxn: refused, nothing written. Produce v11 knows
    // TRANSACTION_ABORTABLE; earlier versions get INVALID_TXN_STATE (as Kafka answers them).
    for (version, expected) in [
        (9, ResponseError::InvalidTxnState),
        (10, ResponseError::InvalidTxnState),
        (11, ResponseError::TransactionAbortable),
    ] {
        let r = c.send(&request, version).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, expected.code(), "Produce v{version}");
    }
    let offsets = c
        .send(
            &ListOffsetsRequest::default().with_topics(vec![
                kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]),
            5,
        )
        .await;
    assert_eq!(offsets.topics[0].partitions[0].offset, 0, "nothing written");
    broker.stop().await;
}
