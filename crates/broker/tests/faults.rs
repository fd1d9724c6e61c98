//! Storage faults seen through the protocol: a full disk makes Produce answer
//! KAFKA_STORAGE_ERROR without a crash; reads keep working; writes resume.

mod common;

use bytes::Bytes;
use common::{name, Client};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use runnel_broker::{BrokerConfig, RunningBroker, StartOptions};
use runnel_model::batch::testing::simple_batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_disk_produce_answers_storage_error_reads_keep_working_and_writes_resume() {
    use runnel_log::testing::{FaultyStorage, WriteFault};
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new(std::sync::Arc::new(runnel_log::FsStorage::new()));
    let config = BrokerConfig::from_sources(
        None,
        &[
            ("log.dirs".into(), dir.path().display().to_string()),
            ("listeners".into(), "PLAINTEXT://127.0.0.1:0".into()),
        ],
    )
    .unwrap();
    let running = RunningBroker::start_with(
        config,
        StartOptions {
            admin_listen: None,
            storage: Some(storage.clone()),
        },
    )
    .await
    .expect("starts");
    let mut c = Client::connect(running.local_addrs()[0]).await;
    let produce = |n: usize| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("disk"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(simple_batch(0, n))))])])
    };
    let code = |r: &ProduceResponse| r.responses[0].partition_responses[0].error_code;
    assert_eq!(code(&c.send(&produce(2), 9).await), 0);
    storage.fail_next_write(
        "disk-0/00000000000000000000.log",
        WriteFault::NoSpace { prefix_bytes: 10 },
    );
    let r = c.send(&produce(3), 9).await;
    assert_eq!(
        code(&r),
        kafka_protocol::ResponseError::KafkaStorageError.code()
    );
    let fetch = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("disk"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let f = c.send(&fetch, 12).await;
    assert_eq!(
        f.responses[0].partitions[0].error_code, 0,
        "reads keep working"
    );
    assert_eq!(
        f.responses[0].partitions[0].high_watermark, 2,
        "nothing of the failed write is visible"
    );
    // Space is back: the next write goes through, right after the acknowledged ones.
    let r = c.send(&produce(1), 9).await;
    assert_eq!(code(&r), 0);
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 2);
    running.shutdown().await;
}
