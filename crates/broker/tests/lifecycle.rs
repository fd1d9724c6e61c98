//! Log lifecycle through the protocol: retention by time and size, DeleteRecords, compaction.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{name, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use runnel_model::batch::testing::build_batch;

const DEADLINE: Duration = Duration::from_secs(30);

async fn create(c: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from(k.to_string()))
                        .with_value(Some(StrBytes::from(v.to_string())))
                })
                .collect(),
        )]);
    let r = c.send(&req, 7).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

async fn produce(c: &mut Client, topic: &str, records: Vec<u8>) -> i64 {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let r = c.send(&req, 9).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

async fn earliest(c: &mut Client, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-2)])]);
    c.send(&req, 7).await.topics[0].partitions[0].offset
}

/// Every (offset, key, value) from `offset`, as a consumer sees it.
async fn read_all(
    c: &mut Client,
    topic: &str,
    from: i64,
) -> Result<Vec<(i64, Option<Bytes>, Option<Bytes>)>, i16> {
    let mut out = Vec::new();
    let mut offset = from;
    for _ in 0..1000 {
        let req = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)])]);
        let r = c.send(&req, 12).await;
        let p = &r.responses[0].partitions[0];
        if p.error_code != 0 {
            return Err(p.error_code);
        }
        let bytes = p.records.clone().unwrap_or_default();
        if bytes.is_empty() {
            return Ok(out);
        }
        for view in runnel_model::batch::Batches::new(&bytes) {
            let view = view.expect("whole batches");
            // Compacted batches keep their offset range with fewer records: only the CRC applies.
            view.verify_crc().expect("a served batch verifies");
            let mut one = Bytes::copy_from_slice(view.as_bytes());
            for r in RecordBatchDecoder::decode(&mut one)
                .expect("decodes")
                .records
            {
                if r.offset >= offset {
                    out.push((r.offset, r.key.clone(), r.value.clone()));
                }
            }
            // As clients do: continue after the batch's last offset (compaction leaves gaps).
            offset = offset.max(view.next_offset());
        }
    }
    panic!("read did not finish");
}

async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn old_batch(i: usize) -> Vec<u8> {
    let v = format!("value-{i:04}-{}", "x".repeat(200));
    build_batch(0, 1_000, &[(None, Some(v.as_bytes()))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_deletes_old_segments_and_moves_the_log_start() {
    let b = TestBroker::start_with(&[("log.retention.check.interval.ms", "100")]).await;
    let mut c = b.client().await;
    // segment.bytes is at least 1 MiB (Kafka 4): segments roll on segment.ms instead.
    create(
        &mut c,
        "rt",
        &[("retention.ms", "2000"), ("segment.ms", "100")],
    )
    .await;
    for i in 0..20 {
        produce(&mut c, "rt", old_batch(i)).await;
        if i % 5 == 4 {
            // Let segment.ms pass so that the next records start a new segment.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // The records carry timestamps from 1970: every closed segment is past retention.
    let start = poll("the log start to move", async || {
        let s = earliest(&mut c, "rt").await;
        (s > 0).then_some(s)
    })
    .await;
    assert!(start <= 20);
    assert_eq!(
        read_all(&mut c, "rt", 0).await.unwrap_err(),
        ResponseError::OffsetOutOfRange.code()
    );
    // Retention keeps running (segment.ms rolls the idle segment, which then expires too), so
    // the start may move again between two requests: read from wherever it is now.
    let left = poll("a read from the current log start", async || {
        let now_start = earliest(&mut c, "rt").await;
        read_all(&mut c, "rt", now_start)
            .await
            .ok()
            .map(|r| (now_start, r))
    })
    .await;
    assert!(left.1.iter().all(|r| r.0 >= left.0));
    // New records continue at the old end.
    assert_eq!(produce(&mut c, "rt", old_batch(99)).await, 20);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_keeps_the_log_within_its_bound_plus_one_segment() {
    let b = TestBroker::start_with(&[("log.retention.check.interval.ms", "100")]).await;
    let mut c = b.client().await;
    const MIB: usize = 1 << 20;
    create(
        &mut c,
        "rs",
        &[
            ("retention.bytes", &(2 * MIB).to_string()),
            ("segment.bytes", &MIB.to_string()),
        ],
    )
    .await;
    for i in 0..40 {
        let v = format!("v{i}-{}", "y".repeat(100_000));
        produce(
            &mut c,
            "rs",
            build_batch(0, i64::MAX / 2, &[(None, Some(v.as_bytes()))]),
        )
        .await;
    }
    let start = poll("size retention", async || {
        let s = earliest(&mut c, "rs").await;
        (s > 0).then_some(s)
    })
    .await;
    let left = read_all(&mut c, "rs", start).await.unwrap();
    let bytes: usize = left
        .iter()
        .map(|r| r.2.as_ref().map_or(0, |v| v.len()) + 70)
        .sum();
    assert!(
        bytes <= 3 * MIB,
        "{bytes} bytes left, bound 2 MiB plus one 1 MiB segment"
    );
    assert!(
        bytes >= 2 * MIB - 200_000,
        "{bytes} bytes left: no more deleted than needed"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_and_reads_below_it_are_out_of_range() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    create(&mut c, "dr", &[]).await;
    for i in 0..6 {
        produce(&mut c, "dr", old_batch(i)).await;
    }
    let req = |offset: i64| {
        DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("dr"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(offset)])])
    };
    let r = c.send(&req(4), 2).await;
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark
        ),
        (0, 4)
    );
    assert_eq!(earliest(&mut c, "dr").await, 4);
    assert_eq!(
        read_all(&mut c, "dr", 2).await.unwrap_err(),
        ResponseError::OffsetOutOfRange.code()
    );
    assert_eq!(read_all(&mut c, "dr", 4).await.unwrap().len(), 2);
    let r = c.send(&req(99), 2).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    assert_eq!(
        earliest(&mut c, "dr").await,
        4,
        "the log start survives a restart"
    );
    let r = c.send(&req(-1), 2).await;
    assert_eq!(
        r.topics[0].partitions[0].low_watermark, 6,
        "-1 means the high watermark"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_the_latest_value_per_key_and_drops_tombstones_after_delete_retention() {
    let b = TestBroker::start_with(&[
        ("log.retention.check.interval.ms", "100"),
        ("log.cleaner.backoff.ms", "100"),
    ])
    .await;
    let mut c = b.client().await;
    create(
        &mut c,
        "cmp",
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "1500"),
        ],
    )
    .await;
    for round in 0..5 {
        // Several segments: segment.ms rolls between rounds.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for key in 0..20 {
            let k = format!("key-{key:02}");
            let v = format!("value-{key:02}-{round}");
            produce(
                &mut c,
                "cmp",
                build_batch(0, 0, &[(Some(k.as_bytes()), Some(v.as_bytes()))]),
            )
            .await;
        }
    }
    for key in 0..5 {
        let k = format!("key-{key:02}");
        produce(
            &mut c,
            "cmp",
            build_batch(0, 0, &[(Some(k.as_bytes()), None)]),
        )
        .await;
    }
    // A record after the tombstones: segment.ms rolls the segment holding them, so it can be
    // cleaned (the active segment never is).
    let expected: BTreeMap<String, Option<String>> = (0..20)
        .map(|key| {
            let k = format!("key-{key:02}");
            let v = (key >= 5).then(|| format!("value-{key:02}-4"));
            (k, v)
        })
        .collect();
    let as_map =
        |records: &[(i64, Option<Bytes>, Option<Bytes>)]| -> BTreeMap<String, Option<String>> {
            records
                .iter()
                .map(|(_, k, v)| {
                    (
                        String::from_utf8_lossy(k.as_ref().unwrap()).to_string(),
                        v.as_ref().map(|v| String::from_utf8_lossy(v).to_string()),
                    )
                })
                .collect()
        };
    let cleaned = poll("the first clean", async || {
        let start = earliest(&mut c, "cmp").await;
        let records = read_all(&mut c, "cmp", start).await.ok()?;
        (records.len() == 20).then_some(records)
    })
    .await;
    assert_eq!(
        as_map(&cleaned),
        expected,
        "15 latest values and 5 tombstones"
    );
    assert!(
        cleaned.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets stay in order"
    );
    let after = poll("tombstones to go after delete.retention.ms", async || {
        let start = earliest(&mut c, "cmp").await;
        let records = read_all(&mut c, "cmp", start).await.ok()?;
        (records.len() == 15).then_some(records)
    })
    .await;
    assert!(after.iter().all(|r| r.2.is_some()), "no tombstone left");
    let expected_values: BTreeMap<String, Option<String>> =
        expected.into_iter().filter(|(_, v)| v.is_some()).collect();
    assert_eq!(as_map(&after), expected_values);
    b.stop().await;
}
