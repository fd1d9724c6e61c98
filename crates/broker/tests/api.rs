//! End-to-end tests of the Kafka APIs through a real socket, with the generated codecs as
//! the client. (Real client libraries are exercised in tests/compat.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{create_topic, name, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use runnel_model::batch::testing::{build_batch, simple_batch};
use runnel_model::batch::Batches;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn produce_req(topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])])
}

async fn produce(c: &mut Client, topic: &str, partition: i32, records: Vec<u8>) -> (i16, i64) {
    let resp = c.send(&produce_req(topic, partition, records, -1), 9).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1024 * 1024)])])
}

fn offsets_of(records: &[u8]) -> Vec<(i64, i64)> {
    Batches::new(records)
        .map(|b| {
            let b = b.expect("whole batches");
            b.validate().expect("valid batch served");
            (b.base_offset(), b.last_offset())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_supported_ranges_and_answers_unknown_version_in_v0() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let resp = c.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(resp.error_code, 0);
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert_eq!(
        produce.min_version, 0,
        "librdkafka feature detection needs Produce from v0"
    );
    assert!(resp.api_keys.iter().any(|k| k.api_key == 1), "Fetch listed");
    // A version from the future: v0-format answer with UNSUPPORTED_VERSION and our ranges.
    let (cid, frame) = c.encode(&ApiVersionsRequest::default(), 3);
    let mut raw = frame.to_vec();
    raw[6..8].copy_from_slice(&99i16.to_be_bytes());
    c.write_raw(&raw).await;
    let resp = c.read_frame().await.expect("answered");
    let (got, body) = Client::decode_response::<ApiVersionsRequest>(resp, 0);
    assert_eq!(got, cid);
    assert_eq!(body.error_code, code(ResponseError::UnsupportedVersion));
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version >= 3));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let mut all = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (cid, frame) = c.encode(&MetadataRequest::default().with_topics(None), 12);
        ids.push(cid);
        all.extend_from_slice(&frame);
        let (cid, frame) = c.encode(&ApiVersionsRequest::default(), 3);
        ids.push(cid);
        all.extend_from_slice(&frame);
    }
    c.write_raw(&all).await;
    for (i, expected) in ids.iter().enumerate() {
        let frame = c.read_frame().await.expect("answered");
        let cid = if i % 2 == 0 {
            Client::decode_response::<MetadataRequest>(frame, 12).0
        } else {
            Client::decode_response::<ApiVersionsRequest>(frame, 3).0
        };
        assert_eq!(cid, *expected);
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let b = TestBroker::start_with(&[("socket.request.max.bytes", "1048576")]).await;
    let mut healthy = b.client().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("absurd size prefix", vec![0x7f, 0xff, 0xff, 0xff, 0, 0]),
        ("negative size prefix", vec![0xff, 0xff, 0xff, 0xfe]),
        ("frame shorter than a header", vec![0, 0, 0, 3, 0, 18, 0]),
        ("unknown api key", {
            let mut v = vec![0, 0, 0, 10];
            v.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
            v
        }),
        ("garbage body", {
            let mut v = vec![0, 0, 0, 16];
            v.extend_from_slice(&[
                0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ]);
            v
        }),
        ("absurd array count", {
            // Metadata v1: client id "" then a topics array claiming 2^30 entries.
            let body = [0u8, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x40, 0, 0, 0, 0, 1, b'a'];
            let mut v = (body.len() as i32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut c = b.client().await;
        c.write_raw(&bytes).await;
        assert!(
            c.is_closed_by_broker().await,
            "{what}: connection should be closed"
        );
        let resp = healthy.send(&ApiVersionsRequest::default(), 3).await;
        assert_eq!(resp.error_code, 0, "{what}: other connections keep working");
    }
    // Produce v2 is advertised (for librdkafka) but refused when sent, as Kafka 4 does.
    let mut c = b.client().await;
    let (_, frame) = c.encode(&ApiVersionsRequest::default(), 0);
    let mut raw = frame.to_vec();
    raw[4..6].copy_from_slice(&0i16.to_be_bytes());
    raw[6..8].copy_from_slice(&2i16.to_be_bytes());
    c.write_raw(&raw).await;
    assert!(c.is_closed_by_broker().await);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_fetch_returns_batches_as_stored_with_assigned_offsets() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    assert_eq!(create_topic(&mut c, "t1", 2).await.topics[0].error_code, 0);
    assert_eq!(produce(&mut c, "t1", 1, simple_batch(0, 3)).await, (0, 0));
    assert_eq!(produce(&mut c, "t1", 1, simple_batch(0, 2)).await, (0, 3));
    let resp = c.send(&fetch_req("t1", 1, 0, 0, 0), 12).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 5);
    assert_eq!(
        offsets_of(p.records.as_ref().unwrap()),
        vec![(0, 2), (3, 4)]
    );
    // An offset inside a batch returns the whole batch.
    let resp = c.send(&fetch_req("t1", 1, 4, 0, 0), 12).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(offsets_of(p.records.as_ref().unwrap()), vec![(3, 4)]);
    // At the end: empty. Past the end: OFFSET_OUT_OF_RANGE.
    let resp = c.send(&fetch_req("t1", 1, 5, 0, 0), 12).await;
    assert_eq!(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0)
    );
    let resp = c.send(&fetch_req("t1", 1, 6, 0, 0), 12).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        code(ResponseError::OffsetOutOfRange)
    );
    // Fetch v4 (oldest advertised) works too.
    let resp = c.send(&fetch_req("t1", 1, 0, 0, 0), 4).await;
    assert_eq!(
        offsets_of(resp.responses[0].partitions[0].records.as_ref().unwrap()).len(),
        2
    );
    b.stop().await;
}

/// A fetch first reads from memory on its worker thread; bytes evicted from the page cache
/// are read again where blocking is allowed. Either way the consumer gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_segment_evicted_from_the_page_cache_a_fetch_should_still_serve_it() {
    // On the build's disk, not a tmpfs /tmp.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let b = TestBroker::start_in(dir, &[]).await;
    let mut c = b.client().await;
    assert_eq!(
        create_topic(&mut c, "cold", 1).await.topics[0].error_code,
        0
    );
    for i in 0..5 {
        assert_eq!(
            produce(&mut c, "cold", 0, simple_batch(0, 4)).await,
            (0, i * 4)
        );
    }
    let segment = b.dir.path().join("cold-0").join(format!("{:020}.log", 0));
    runnel_log::testing::evict_from_page_cache(&segment).expect("the segment file");
    let resp = c.send(&fetch_req("cold", 0, 0, 0, 0), 12).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(
        offsets_of(p.records.as_ref().unwrap()),
        vec![(0, 3), (4, 7), (8, 11), (12, 15), (16, 19)]
    );
    let disk_reads = common::metric(b.running.as_ref().unwrap(), "runnel_fetch_disk_reads_total");
    if runnel_log::testing::evicts_and_tells(b.dir.path()) {
        assert_eq!(
            disk_reads,
            Some(1.0),
            "the evicted segment was read off the worker"
        );
    } else {
        eprintln!(
            "note: this file system keeps pages or cannot tell; the disk-read path was not forced"
        );
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_rejects_corrupt_oversized_and_misaddressed_records() {
    let b = TestBroker::start_with(&[
        ("message.max.bytes", "2000"),
        ("auto.create.topics.enable", "false"),
    ])
    .await;
    let mut c = b.client().await;
    create_topic(&mut c, "t", 1).await;
    let mut corrupt = simple_batch(0, 2);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut c, "t", 0, corrupt).await.0,
        code(ResponseError::CorruptMessage)
    );
    let mut truncated = simple_batch(0, 2);
    truncated.truncate(truncated.len() - 3);
    assert_eq!(
        produce(&mut c, "t", 0, truncated).await.0,
        code(ResponseError::CorruptMessage)
    );
    // Kafka's ProduceRequest.validateRecords: one batch per partition (v3 and later).
    let mut two_batches = simple_batch(0, 1);
    two_batches.extend_from_slice(&simple_batch(0, 1));
    assert_eq!(
        produce(&mut c, "t", 0, two_batches).await.0,
        code(ResponseError::InvalidRecord)
    );
    let big = vec![7u8; 3000];
    let batch = build_batch(0, 0, &[(None, Some(&big))]);
    assert_eq!(
        produce(&mut c, "t", 0, batch).await.0,
        code(ResponseError::MessageTooLarge)
    );
    assert_eq!(
        produce(&mut c, "t", 5, simple_batch(0, 1)).await.0,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        produce(&mut c, "nope", 0, simple_batch(0, 1)).await.0,
        code(ResponseError::UnknownTopicOrPartition)
    );
    assert_eq!(
        produce(&mut c, "bad/name", 0, simple_batch(0, 1)).await.0,
        code(ResponseError::InvalidTopicException)
    );
    let resp = c.send(&produce_req("t", 0, simple_batch(0, 1), 2), 9).await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        code(ResponseError::InvalidRequiredAcks)
    );
    // Nothing of the above reached the log.
    let resp = c.send(&fetch_req("t", 0, 0, 0, 0), 12).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_but_is_stored() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "z", 1).await;
    let (_, frame) = c.encode(&produce_req("z", 0, simple_batch(0, 4), 0), 9);
    c.write_raw(&frame).await;
    // The next answer on the connection is for the fetch, not the produce.
    let resp = c.send(&fetch_req("z", 0, 0, 5000, 1), 12).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 4);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_valid_topics_and_rejects_invalid_names() {
    let b = TestBroker::start_with(&[("num.partitions", "3")]).await;
    let mut c = b.client().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("auto-1"))),
            MetadataRequestTopic::default().with_name(Some(name("bad name"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let resp = c.send(&req, 12).await;
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(resp.brokers[0].port as u16, b.addr.port());
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 3);
    assert!(!resp.topics[0].topic_id.is_nil());
    assert_eq!(
        resp.topics[1].error_code,
        code(ResponseError::InvalidTopicException)
    );
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("not-auto")))
        ]))
        .with_allow_auto_topic_creation(false);
    let resp = c.send(&req, 12).await;
    assert_eq!(
        resp.topics[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    // Every version we advertise decodes and lists the topic.
    for v in 0..=12 {
        // v0 has no null topics array: an empty one means all topics.
        let topics = if v == 0 { Some(vec![]) } else { None };
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(v < 4);
        let resp = c.send(&req, v).await;
        assert_eq!(resp.topics.len(), 1, "metadata v{v}");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_topics_follow_kafka_rules() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    // validate_only creates nothing.
    let req = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("v"))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
    assert_eq!(c.send(&req, 7).await.topics[0].error_code, 0);
    let meta = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(meta.topics.is_empty());
    let resp = create_topic(&mut c, "v", 2).await;
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].num_partitions, 2);
    assert!(resp.topics[0]
        .configs
        .as_ref()
        .is_some_and(|c| !c.is_empty()));
    assert_eq!(
        create_topic(&mut c, "v", 2).await.topics[0].error_code,
        code(ResponseError::TopicAlreadyExists)
    );
    assert_eq!(
        create_topic(&mut c, "w", 0).await.topics[0].error_code,
        code(ResponseError::InvalidPartitions)
    );
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("rf"))
        .with_num_partitions(1)
        .with_replication_factor(3)]);
    assert_eq!(
        c.send(&req, 7).await.topics[0].error_code,
        code(ResponseError::InvalidReplicationFactor)
    );
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("cfg"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("no.such.config"))
            .with_value(Some(StrBytes::from_static_str("1")))])]);
    assert_eq!(
        c.send(&req, 7).await.topics[0].error_code,
        code(ResponseError::InvalidConfig)
    );
    let req = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("dup"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(name("dup"))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let resp = c.send(&req, 7).await;
    assert!(resp
        .topics
        .iter()
        .all(|t| t.error_code == code(ResponseError::InvalidRequest)));
    // Delete by name, then by id.
    let x_id = create_topic(&mut c, "x", 1).await.topics[0].topic_id;
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("v")]);
    assert_eq!(c.send(&req, 5).await.responses[0].error_code, 0);
    let req = DeleteTopicsRequest::default()
        .with_topics(vec![DeleteTopicState::default().with_topic_id(x_id)]);
    let resp = c.send(&req, 6).await;
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        resp.responses[0].name.as_ref().map(|n| n.0.to_string()),
        Some("x".to_string())
    );
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("v")]);
    assert_eq!(
        c.send(&req, 5).await.responses[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let meta = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(meta.topics.is_empty(), "{:?}", meta.topics);
    // A topic re-created under a deleted name starts empty.
    create_topic(&mut c, "v", 1).await;
    produce(&mut c, "v", 0, simple_batch(0, 1)).await;
    let resp = c.send(&fetch_req("v", 0, 0, 0, 0), 12).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_answers_earliest_latest_by_timestamp_and_max_timestamp() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "lo", 1).await;
    for (i, ts) in [1000i64, 3000, 2000].iter().enumerate() {
        let v = format!("r{i}");
        produce(
            &mut c,
            "lo",
            0,
            build_batch(0, *ts, &[(None, Some(v.as_bytes()))]),
        )
        .await;
    }
    let ask = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("lo"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(ts)])])
    };
    let cases = [
        (-2i64, 0i64),
        (-1, 3),
        (1500, 1),
        (2500, 1),
        (3000, 1),
        (3001, -1),
        (-3, 1),
    ];
    for (ts, expected) in cases {
        let resp = c.send(&ask(ts), 7).await;
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "timestamp {ts}");
        assert_eq!(p.offset, expected, "timestamp {ts}");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_answers_when_data_arrives() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "lp", 1).await;
    let mut consumer = b.client().await;
    let (_, frame) = consumer.encode(&fetch_req("lp", 0, 0, 15_000, 1), 12);
    consumer.write_raw(&frame).await;
    let started = std::time::Instant::now();
    produce(&mut c, "lp", 0, simple_batch(0, 2)).await;
    let resp = consumer.read_frame().await.expect("answered");
    let (_, body) = Client::decode_response::<FetchRequest>(resp, 12);
    assert_eq!(
        offsets_of(body.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, 1)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "woken by the append, not the timeout"
    );
    // With no data, the answer comes after max_wait_ms.
    let resp = consumer.send(&fetch_req("lp", 0, 2, 200, 1), 12).await;
    assert_eq!(
        resp.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_session_sends_only_changed_partitions() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "s", 2).await;
    produce(&mut c, "s", 0, simple_batch(0, 1)).await;
    let part = |p: i32, off: i64| {
        FetchPartition::default()
            .with_partition(p)
            .with_fetch_offset(off)
            .with_current_leader_epoch(-1)
            .with_partition_max_bytes(1 << 20)
    };
    let full = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 24)
        .with_session_id(0)
        .with_session_epoch(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("s"))
            .with_partitions(vec![part(0, 0), part(1, 0)])]);
    let resp = c.send(&full, 12).await;
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.responses[0].partitions.len(), 2);
    let session = resp.session_id;
    // Next epoch: partition 0 moved to offset 1, nothing new anywhere: empty response.
    let inc = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 24)
        .with_session_id(session)
        .with_session_epoch(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("s"))
            .with_partitions(vec![part(0, 1)])]);
    let resp = c.send(&inc, 12).await;
    assert_eq!(resp.error_code, 0);
    assert!(resp.responses.is_empty(), "{:?}", resp.responses);
    // Data on partition 1 only: only it is named.
    produce(&mut c, "s", 1, simple_batch(0, 2)).await;
    let inc = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 24)
        .with_session_id(session)
        .with_session_epoch(2);
    let resp = c.send(&inc, 12).await;
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].partitions.len(), 1);
    assert_eq!(resp.responses[0].partitions[0].partition_index, 1);
    // Wrong epoch.
    let bad = FetchRequest::default()
        .with_session_id(session)
        .with_session_epoch(7);
    assert_eq!(
        c.send(&bad, 12).await.error_code,
        code(ResponseError::InvalidFetchSessionEpoch)
    );
    // Forget partition 1 (v12 names topics).
    let forget = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_session_id(session)
        .with_session_epoch(3)
        .with_forgotten_topics_data(vec![ForgottenTopic::default()
            .with_topic(name("s"))
            .with_partitions(vec![1])]);
    assert_eq!(c.send(&forget, 12).await.error_code, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_topic_id_with_v13_and_above() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let id = create_topic(&mut c, "ids", 1).await.topics[0].topic_id;
    produce(&mut c, "ids", 0, simple_batch(0, 2)).await;
    let req = |topic_id| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let resp = c.send(&req(id), 16).await;
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(
        offsets_of(resp.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, 1)]
    );
    let resp = c.send(&req(uuid::Uuid::new_v4()), 13).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_and_describe_cluster() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "e", 1).await;
    produce(&mut c, "e", 0, simple_batch(0, 3)).await;
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name("e"))
            .with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(0)
                    .with_leader_epoch(0),
                OffsetForLeaderPartition::default()
                    .with_partition(1)
                    .with_current_leader_epoch(0)
                    .with_leader_epoch(0),
            ])]);
    let resp = c.send(&req, 4).await;
    let p = &resp.topics[0].partitions;
    assert_eq!(
        (p[0].error_code, p[0].leader_epoch, p[0].end_offset),
        (0, 0, 3)
    );
    assert_eq!(
        p[1].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let resp = c.send(&DescribeClusterRequest::default(), 0).await;
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(resp.controller_id, BrokerId(1));
    assert!(!resp.cluster_id.is_empty());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_records_survive_a_restart() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    let id = create_topic(&mut c, "keep", 2).await.topics[0].topic_id;
    produce(&mut c, "keep", 1, simple_batch(0, 5)).await;
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    let meta = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert_eq!(meta.topics.len(), 1);
    assert_eq!(meta.topics[0].topic_id, id);
    let resp = c.send(&fetch_req("keep", 1, 0, 0, 0), 12).await;
    assert_eq!(
        offsets_of(resp.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![(0, 4)]
    );
    assert_eq!(produce(&mut c, "keep", 1, simple_batch(0, 1)).await, (0, 5));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_connections_max_idle_ms() {
    let b = TestBroker::start_with(&[("connections.max.idle.ms", "300")]).await;
    let mut c = b.client().await;
    c.send(&ApiVersionsRequest::default(), 3).await;
    assert!(c.is_closed_by_broker().await);
    b.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_leftover_directory_of_a_deleted_topic_when_name_is_reused_should_start_empty() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "g", 1).await;
    produce(&mut c, "g", 0, simple_batch(0, 3)).await;
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&b.dir.path().join("g-0"), saved.path());
    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("g")]);
    assert_eq!(c.send(&req, 5).await.responses[0].error_code, 0);
    // As if removing the old files had failed.
    copy_dir(saved.path(), &b.dir.path().join("g-0"));
    create_topic(&mut c, "g", 1).await;
    let resp = c.send(&fetch_req("g", 0, 0, 0, 0), 12).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    b.stop().await;
}

/// One batch of `n` records with timestamps `base + i * 1000`, built by the client codec.
fn batch_with_timestamps(
    base: i64,
    n: i64,
    compression: kafka_protocol::records::Compression,
) -> Vec<u8> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // One batch: the encoder starts a new one where `offset - sequence` changes.
            sequence: i as i32,
            timestamp: base + i * 1000,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_answers_the_record_offset_inside_a_batch() {
    use kafka_protocol::records::Compression;
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    for (topic, compression) in [
        ("ts-plain", Compression::None),
        ("ts-zstd", Compression::Zstd),
    ] {
        create_topic(&mut c, topic, 1).await;
        let base = 1_700_000_000_000i64;
        assert_eq!(
            produce(
                &mut c,
                topic,
                0,
                batch_with_timestamps(base, 10, compression)
            )
            .await
            .0,
            0
        );
        let ask = |ts: i64| {
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(ts)])])
        };
        for (ts, expected_offset, expected_ts) in [
            (base, 0, base),
            (base + 4500, 5, base + 5000),
            (base + 9000, 9, base + 9000),
            (base + 9001, -1, -1),
            (-3, 9, base + 9000),
        ] {
            let resp = c.send(&ask(ts), 7).await;
            let p = &resp.topics[0].partitions[0];
            assert_eq!(
                (p.offset, p.timestamp),
                (expected_offset, expected_ts),
                "{topic} timestamp {ts}"
            );
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_retry_is_acknowledged_once_and_stored_once_across_restart() {
    use runnel_log::testing::producer_batch;
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "idem", 1).await;
    let init = c
        .send(
            &InitProducerIdRequest::default().with_transactional_id(None),
            4,
        )
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let second = c
        .send(
            &InitProducerIdRequest::default().with_transactional_id(None),
            4,
        )
        .await;
    assert_ne!(second.producer_id.0, pid, "producer ids are not reused");
    assert_eq!(
        produce(&mut c, "idem", 0, producer_batch(pid, 0, 0, 3, 1000)).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, "idem", 0, producer_batch(pid, 0, 3, 2, 1000)).await,
        (0, 3)
    );
    // The retry of the second batch: same offsets, nothing stored.
    assert_eq!(
        produce(&mut c, "idem", 0, producer_batch(pid, 0, 3, 2, 1000)).await,
        (0, 3)
    );
    // A gap is refused.
    let (code, _) = produce(&mut c, "idem", 0, producer_batch(pid, 0, 9, 1, 1000)).await;
    assert_eq!(code, code_of(ResponseError::OutOfOrderSequenceNumber));
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    assert_eq!(
        produce(&mut c, "idem", 0, producer_batch(pid, 0, 3, 2, 1000)).await,
        (0, 3)
    );
    let resp = c.send(&fetch_req("idem", 0, 0, 0, 0), 12).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 5);
    // After a restart, a new InitProducerId still hands out an id never used before.
    let third = c
        .send(
            &InitProducerIdRequest::default().with_transactional_id(None),
            4,
        )
        .await;
    assert!(third.producer_id.0 > second.producer_id.0);
    b.stop().await;
}

fn code_of(e: ResponseError) -> i16 {
    e.code()
}

fn incremental(
    resource_type: i8,
    resource: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from(resource.to_string()))
        .with_configs(
            ops.iter()
                .map(|(k, op, v)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from(k.to_string()))
                        .with_config_operation(*op)
                        .with_value(v.map(|v| StrBytes::from(v.to_string())))
                })
                .collect(),
        )])
}

async fn topic_config(c: &mut Client, topic: &str, key: &str) -> (Option<String>, i8) {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from(topic.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from(key.to_string())]))]);
    let resp = c.send(&req, 4).await;
    let e = &resp.results[0].configs[0];
    (e.value.as_ref().map(|v| v.to_string()), e.config_source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_and_broker_configs_change_at_run_time_and_survive_restart() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "cfg", 1).await;
    let big = vec![1u8; 3000];
    let big_batch = || build_batch(0, 0, &[(None, Some(&big))]);
    assert_eq!(produce(&mut c, "cfg", 0, big_batch()).await.0, 0);
    // SET on the topic applies to the next produce, without a restart.
    let r = c
        .send(
            &incremental(2, "cfg", &[("max.message.bytes", 0, Some("2000"))]),
            1,
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        produce(&mut c, "cfg", 0, big_batch()).await.0,
        code(ResponseError::MessageTooLarge)
    );
    assert_eq!(
        topic_config(&mut c, "cfg", "max.message.bytes").await,
        (Some("2000".into()), 1)
    );
    // Validation names the problem.
    for ops in [
        vec![("max.message.bytes", 0i8, Some("lots"))],
        vec![("no.such.config", 0, Some("1"))],
        vec![("retention.ms", 2, Some("5"))],
    ] {
        let r = c.send(&incremental(2, "cfg", &ops), 1).await;
        assert_eq!(
            r.responses[0].error_code,
            code(ResponseError::InvalidConfig),
            "{ops:?}"
        );
        assert!(r.responses[0].error_message.is_some());
    }
    // APPEND to a list config.
    let r = c
        .send(
            &incremental(2, "cfg", &[("cleanup.policy", 2, Some("compact"))]),
            1,
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        topic_config(&mut c, "cfg", "cleanup.policy").await.0,
        Some("delete,compact".into())
    );
    // A cluster-wide broker default reaches topics without an override.
    create_topic(&mut c, "cfg2", 1).await;
    let r = c
        .send(
            &incremental(4, "", &[("message.max.bytes", 0, Some("1500"))]),
            1,
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        produce(&mut c, "cfg2", 0, big_batch()).await.0,
        code(ResponseError::MessageTooLarge)
    );
    assert_eq!(
        topic_config(&mut c, "cfg2", "max.message.bytes").await,
        (Some("1500".into()), 3)
    );
    let r = c
        .send(&incremental(4, "1", &[("num.io.threads", 0, Some("4"))]), 1)
        .await;
    assert_eq!(
        r.responses[0].error_code,
        code(ResponseError::InvalidConfig)
    );
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    assert_eq!(
        topic_config(&mut c, "cfg", "max.message.bytes").await,
        (Some("2000".into()), 1)
    );
    assert_eq!(
        produce(&mut c, "cfg2", 0, big_batch()).await.0,
        code(ResponseError::MessageTooLarge)
    );
    // DELETE returns to the inherited value; the legacy AlterConfigs replaces the whole set.
    let r = c
        .send(&incremental(2, "cfg", &[("max.message.bytes", 1, None)]), 1)
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        topic_config(&mut c, "cfg", "max.message.bytes").await,
        (Some("1500".into()), 3)
    );
    {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        let req =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("60000")))])]);
        assert_eq!(c.send(&req, 2).await.responses[0].error_code, 0);
    }
    assert_eq!(
        topic_config(&mut c, "cfg", "retention.ms").await,
        (Some("60000".into()), 1)
    );
    assert_eq!(
        topic_config(&mut c, "cfg", "cleanup.policy").await,
        (Some("delete".into()), 5)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_only_grows_topics() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c, "grow", 2).await;
    let req = |count: i32, validate_only: bool| {
        CreatePartitionsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name("grow"))
                .with_count(count)])
    };
    assert_eq!(c.send(&req(4, true), 3).await.results[0].error_code, 0);
    let meta = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert_eq!(
        meta.topics[0].partitions.len(),
        2,
        "validate_only changes nothing"
    );
    assert_eq!(c.send(&req(4, false), 3).await.results[0].error_code, 0);
    let meta = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert_eq!(meta.topics[0].partitions.len(), 4);
    assert_eq!(produce(&mut c, "grow", 3, simple_batch(0, 1)).await, (0, 0));
    assert_eq!(
        c.send(&req(3, false), 3).await.results[0].error_code,
        code(ResponseError::InvalidPartitions)
    );
    let unknown =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("nope"))
            .with_count(3)]);
    assert_eq!(
        c.send(&unknown, 3).await.results[0].error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topic_refuses_records_without_a_key() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("compacted"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("cleanup.policy"))
            .with_value(Some(StrBytes::from_static_str("compact")))])]);
    assert_eq!(c.send(&req, 7).await.topics[0].error_code, 0);
    let keyless = build_batch(
        0,
        0,
        &[
            (Some(b"k".as_slice()), Some(b"v".as_slice())),
            (None, Some(b"v".as_slice())),
        ],
    );
    assert_eq!(
        produce(&mut c, "compacted", 0, keyless).await.0,
        code(ResponseError::InvalidRecord)
    );
    let keyed = build_batch(
        0,
        0,
        &[
            (Some(b"k".as_slice()), Some(b"v".as_slice())),
            (Some(b"k2".as_slice()), None),
        ],
    );
    assert_eq!(produce(&mut c, "compacted", 0, keyed).await, (0, 0));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_per_ip_are_closed_and_others_keep_working() {
    let b = TestBroker::start_with(&[("max.connections.per.ip", "2")]).await;
    let mut first = b.client().await;
    let mut second = b.client().await;
    first.send(&ApiVersionsRequest::default(), 3).await;
    second.send(&ApiVersionsRequest::default(), 3).await;
    let mut third = b.client().await;
    assert!(
        third.is_closed_by_broker().await,
        "the third connection is refused"
    );
    first.send(&ApiVersionsRequest::default(), 3).await;
    drop(second);
    // Once a connection has gone, a new one is admitted (deadline-bounded: the broker notices
    // the close asynchronously).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = b.client().await;
        let (_, frame) = c.encode(&ApiVersionsRequest::default(), 3);
        c.write_raw(&frame).await;
        if c.read_frame().await.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a connection is admitted again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_closes_kip_402() {
    let b = TestBroker::start_with(&[("max.connections", "2")]).await;
    let mut first = b.client().await;
    let mut second = b.client().await;
    first.send(&ApiVersionsRequest::default(), 3).await;
    second.send(&ApiVersionsRequest::default(), 3).await;
    // The third connects (the listen backlog takes it) but is not served while two are open.
    let mut third = b.client().await;
    let (cid, frame) = third.encode(&ApiVersionsRequest::default(), 3);
    third.write_raw(&frame).await;
    let mut size = [0u8; 4];
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::io::AsyncReadExt::read_exact(&mut third.stream, &mut size),
    )
    .await;
    assert!(
        early.is_err(),
        "not served while the limit is held: {early:?}"
    );
    second.send(&ApiVersionsRequest::default(), 3).await;
    // Once one closes, the waiting connection is accepted and answered, not closed.
    drop(first);
    let answer = third
        .read_frame()
        .await
        .expect("served once a connection closed");
    let (got, resp) = Client::decode_response::<ApiVersionsRequest>(answer, 3);
    assert_eq!((got, resp.error_code), (cid, 0));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_listener_holds_no_slot_of_max_connections() {
    // localhost: one listener on 127.0.0.1 and one on ::1; the clients use only the first.
    let b = TestBroker::start_with(&[
        ("listeners", "PLAINTEXT://localhost:0"),
        ("max.connections", "2"),
    ])
    .await;
    let addrs = b.running.as_ref().expect("running").local_addrs().to_vec();
    let v4 = *addrs
        .iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 listener");
    // Both served at once: a slot held by the idle ::1 listener would leave the second
    // unanswered.
    let mut first = Client::connect(v4).await;
    first.send(&ApiVersionsRequest::default(), 3).await;
    let mut second = Client::connect(v4).await;
    let r = second.send(&ApiVersionsRequest::default(), 3).await;
    assert_eq!(r.error_code, 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_batches_with_the_broker_time() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("lat"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("message.timestamp.type"))
            .with_value(Some(StrBytes::from_static_str("LogAppendTime")))])]);
    assert_eq!(c.send(&req, 7).await.topics[0].error_code, 0);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let resp = c
        .send(
            &produce_req(
                "lat",
                0,
                build_batch(0, 5, &[(None, Some(b"x".as_slice()))]),
                -1,
            ),
            9,
        )
        .await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(p.log_append_time_ms >= before, "{}", p.log_append_time_ms);
    let resp = c.send(&fetch_req("lat", 0, 0, 0, 0), 12).await;
    let records = resp.responses[0].partitions[0].records.clone().unwrap();
    let batch = Batches::new(&records).next().unwrap().unwrap();
    assert!(batch.is_log_append_time());
    assert_eq!(batch.max_timestamp(), p.log_append_time_ms);
    batch
        .validate()
        .expect("the CRC was recomputed after the rewrite");
    b.stop().await;
}
