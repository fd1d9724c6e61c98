//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/` (each directory is
//! emptied first). Run once after changing an input format or the template:
//!
//! ```sh
//! cd fuzz && cargo run --release --example seedgen
//! ```
//!
//! Seeds are valid inputs made with the real encoders, so the fuzzer starts deep inside the
//! code instead of at its first length check:
//! - `request_decode`: every API key at its lowest, first flexible and highest codec version
//!   with a default body, richer bodies (topics, partitions, records, protocols, configs) of
//!   the APIs Runnel implements at every version they encode at, and a few raw frames;
//! - `batch_validate`: record sets of one and several batches, with keys, headers, producer
//!   ids, transactional and control bits, LogAppendTime, and compressed batches;
//! - `segment_recovery`: partition directories written by `PartitionLog` itself (clean and
//!   crashed, with and without index files and checkpoints, two segments, torn tails);
//! - `index_files`: the real index files of the `index_files` templates, and damaged ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use runnel_fuzz::{DirSpec, IndexSpec, IndexTemplate, NOW_MS, RAW_FRAME};
use runnel_log::{FsStorage, LogConfig, PartitionLog, Storage};
use runnel_model::batch::testing::{build_batch, simple_batch};

fn corpus_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn default_requests() -> Vec<RequestKind> {
    vec![
        RequestKind::Produce(ProduceRequest::default()),
        RequestKind::Fetch(FetchRequest::default()),
        RequestKind::ListOffsets(ListOffsetsRequest::default()),
        RequestKind::Metadata(MetadataRequest::default()),
        RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
        RequestKind::JoinGroup(JoinGroupRequest::default()),
        RequestKind::Heartbeat(HeartbeatRequest::default()),
        RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        RequestKind::SyncGroup(SyncGroupRequest::default()),
        RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        RequestKind::ListGroups(ListGroupsRequest::default()),
        RequestKind::SaslHandshake(SaslHandshakeRequest::default()),
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
        RequestKind::CreateTopics(CreateTopicsRequest::default()),
        RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        RequestKind::InitProducerId(InitProducerIdRequest::default()),
        RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default()),
        RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default()),
        RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default()),
        RequestKind::EndTxn(EndTxnRequest::default()),
        RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default()),
        RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default()),
        RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        RequestKind::CreateAcls(CreateAclsRequest::default()),
        RequestKind::DeleteAcls(DeleteAclsRequest::default()),
        RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        RequestKind::AlterReplicaLogDirs(AlterReplicaLogDirsRequest::default()),
        RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default()),
        RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        RequestKind::CreateDelegationToken(CreateDelegationTokenRequest::default()),
        RequestKind::RenewDelegationToken(RenewDelegationTokenRequest::default()),
        RequestKind::ExpireDelegationToken(ExpireDelegationTokenRequest::default()),
        RequestKind::DescribeDelegationToken(DescribeDelegationTokenRequest::default()),
        RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        RequestKind::ElectLeaders(ElectLeadersRequest::default()),
        RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default()),
        RequestKind::AlterPartitionReassignments(AlterPartitionReassignmentsRequest::default()),
        RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
        RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default()),
        RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default()),
        RequestKind::AlterUserScramCredentials(AlterUserScramCredentialsRequest::default()),
        RequestKind::Vote(VoteRequest::default()),
        RequestKind::BeginQuorumEpoch(BeginQuorumEpochRequest::default()),
        RequestKind::EndQuorumEpoch(EndQuorumEpochRequest::default()),
        RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
        RequestKind::AlterPartition(AlterPartitionRequest::default()),
        RequestKind::UpdateFeatures(UpdateFeaturesRequest::default()),
        RequestKind::Envelope(EnvelopeRequest::default()),
        RequestKind::FetchSnapshot(FetchSnapshotRequest::default()),
        RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        RequestKind::DescribeProducers(DescribeProducersRequest::default()),
        RequestKind::BrokerRegistration(BrokerRegistrationRequest::default()),
        RequestKind::BrokerHeartbeat(BrokerHeartbeatRequest::default()),
        RequestKind::UnregisterBroker(UnregisterBrokerRequest::default()),
        RequestKind::DescribeTransactions(DescribeTransactionsRequest::default()),
        RequestKind::ListTransactions(ListTransactionsRequest::default()),
        RequestKind::AllocateProducerIds(AllocateProducerIdsRequest::default()),
        RequestKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default()),
        RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default()),
        RequestKind::ControllerRegistration(ControllerRegistrationRequest::default()),
        RequestKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest::default()),
        RequestKind::PushTelemetry(PushTelemetryRequest::default()),
        RequestKind::AssignReplicasToDirs(AssignReplicasToDirsRequest::default()),
        RequestKind::ListConfigResources(ListConfigResourcesRequest::default()),
        RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default()),
        RequestKind::ShareGroupHeartbeat(ShareGroupHeartbeatRequest::default()),
        RequestKind::ShareGroupDescribe(ShareGroupDescribeRequest::default()),
        RequestKind::ShareFetch(ShareFetchRequest::default()),
        RequestKind::ShareAcknowledge(ShareAcknowledgeRequest::default()),
        RequestKind::AddRaftVoter(AddRaftVoterRequest::default()),
        RequestKind::RemoveRaftVoter(RemoveRaftVoterRequest::default()),
        RequestKind::UpdateRaftVoter(UpdateRaftVoterRequest::default()),
        RequestKind::InitializeShareGroupState(InitializeShareGroupStateRequest::default()),
        RequestKind::ReadShareGroupState(ReadShareGroupStateRequest::default()),
        RequestKind::WriteShareGroupState(WriteShareGroupStateRequest::default()),
        RequestKind::DeleteShareGroupState(DeleteShareGroupStateRequest::default()),
        RequestKind::ReadShareGroupStateSummary(ReadShareGroupStateSummaryRequest::default()),
        RequestKind::DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest::default()),
        RequestKind::AlterShareGroupOffsets(AlterShareGroupOffsetsRequest::default()),
        RequestKind::DeleteShareGroupOffsets(DeleteShareGroupOffsetsRequest::default()),
    ]
}

fn kafka_batch(compression: Compression, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: NOW_MS + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-").repeat(3))),
            headers: [(s("h"), Some(Bytes::from_static(b"v")))]
                .into_iter()
                .collect(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    out.freeze()
}

/// Bodies with content, for the APIs Runnel implements (and a few more).
fn rich_requests() -> Vec<RequestKind> {
    let topic = TopicName(s("orders"));
    let topic_id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let records = Bytes::from(simple_batch(0, 3));
    let mut out = Vec::new();
    for by_id in [false, true] {
        let mut tpd = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.clone())),
            produce_request::PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(kafka_batch(Compression::None, 2))),
        ]);
        let mut ft = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20),
        ]);
        if by_id {
            tpd = tpd.with_topic_id(topic_id);
            ft = ft.with_topic_id(topic_id);
        } else {
            tpd = tpd.with_name(topic.clone());
            ft = ft.with_topic(topic.clone());
        }
        out.push(RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![tpd]),
        ));
        out.push(RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(50 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![ft]),
        ));
    }
    out.push(RequestKind::Metadata(
        MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
        ])),
    ));
    out.push(RequestKind::Metadata(
        MetadataRequest::default().with_topics(None),
    ));
    out.push(RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic.clone())
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]),
    ));
    out.push(RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic.clone())
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("compact"))),
                ])]),
    ));
    out.push(RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x01\x00\x00\x00\x01\x00\x06orders",
            ))]),
    ));
    out.push(RequestKind::SyncGroup(
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_generation_id(1)
            .with_member_id(s("m-1"))
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(s("m-1"))
                    .with_assignment(Bytes::from_static(b"\x00\x01\x00\x00\x00\x01")),
            ]),
    ));
    out.push(RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_generation_id_or_member_epoch(1)
            .with_member_id(s("m-1"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic.clone())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(100)
                            .with_committed_metadata(Some(s("meta"))),
                    ]),
            ]),
    ));
    out.push(RequestKind::OffsetFetch(
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic.clone())
                    .with_partition_indexes(vec![0, 1]),
            ])),
    ));
    out.push(RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key(s("group-1"))
            .with_coordinator_keys(vec![s("group-1")]),
    ));
    out.push(RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(s("librdkafka"))
            .with_client_software_version(s("2.3.0")),
    ));
    out.push(RequestKind::DescribeConfigs(
        DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("orders"))
                .with_configuration_keys(Some(vec![s("retention.ms")])),
        ]),
    ));
    out.push(RequestKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("group-1")))
            .with_member_id(s("m-1"))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))])),
    ));
    out.push(RequestKind::DeleteTopics(
        DeleteTopicsRequest::default()
            .with_topic_names(vec![topic.clone()])
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic.clone()))
            ]),
    ));
    out
}

/// The frame of `body` at `version`, with a request header; `None` if the body does not
/// encode at that version.
fn frame(body: &RequestKind, key: ApiKey, version: i16, correlation_id: i32) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("seed")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

fn key_of(body: &RequestKind) -> ApiKey {
    // The key is the first two bytes of any encoded frame: encode a header-less probe.
    for k in runnel_fuzz::all_api_keys() {
        let name = format!("{k:?}");
        let variant = format!("{body:?}");
        if variant.starts_with(&format!("{name}(")) {
            return *k;
        }
    }
    panic!("no key for {body:?}")
}

fn request_seeds() {
    let dir = corpus_dir("request_decode");
    let mut n = 0;
    let mut write = |name: String, input: Vec<u8>| {
        std::fs::write(dir.join(name), input).unwrap();
        n += 1;
    };
    for body in default_requests() {
        let key = key_of(&body);
        let r = key.valid_versions();
        let mut versions = vec![r.min, r.max];
        // The first flexible version (header v2), where the encoding changes.
        if let Some(v) = (r.min..=r.max).find(|&v| key.request_header_version(v) >= 2) {
            versions.push(v);
        }
        versions.sort();
        versions.dedup();
        for v in versions {
            if let Some(f) = frame(&body, key, v, 7) {
                let input = runnel_fuzz::unsteer_request(&f).unwrap();
                write(format!("{key:?}-v{v}-default"), input);
            }
        }
    }
    for (i, body) in rich_requests().into_iter().enumerate() {
        let key = key_of(&body);
        let r = key.valid_versions();
        for v in r.min..=r.max {
            if let Some(f) = frame(&body, key, v, 1000 + i as i32) {
                let input = runnel_fuzz::unsteer_request(&f).unwrap();
                write(format!("{key:?}-v{v}-rich{i}"), input);
            }
        }
    }
    // Raw frames: an unknown key, ApiVersions at a version from the future (KIP-511),
    // a truncated header.
    let mut raw = |name: &str, frame: &[u8]| {
        let mut input = vec![RAW_FRAME];
        input.extend_from_slice(frame);
        write(format!("raw-{name}"), input);
    };
    raw("unknown-key", &[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
    raw(
        "api-versions-v99",
        &[0, 18, 0, 99, 0, 0, 0, 5, 0, 4, b's', b'e', b'e', b'd', 0],
    );
    raw("short", &[0, 3, 0]);
    println!("request_decode: {n} seeds");
}

fn batch_seeds() {
    let dir = corpus_dir("batch_validate");
    let mut n = 0;
    let mut write = |name: &str, input: &[u8]| {
        std::fs::write(dir.join(name), input).unwrap();
        n += 1;
    };
    write("one-record", &simple_batch(0, 1));
    write("three-records", &simple_batch(0, 3));
    let kv = build_batch(
        0,
        NOW_MS,
        &[
            (Some(b"k1"), Some(b"v1")),
            (None, None),
            (Some(b""), Some(b"value")),
        ],
    );
    write("keys-and-nulls", &kv);
    let mut two = simple_batch(0, 2);
    two.extend_from_slice(&simple_batch(2, 3));
    write("two-batches", &two);
    let mut idem = runnel_log::testing::producer_batch(7, 1, 0, 3, NOW_MS);
    write("idempotent", &idem);
    runnel_log::testing::set_attribute_bits(
        &mut idem,
        runnel_log::testing::ATTR_TRANSACTIONAL,
        true,
    );
    write("transactional", &idem);
    let mut control = runnel_log::testing::producer_batch(7, 1, 3, 1, NOW_MS);
    runnel_log::testing::set_attribute_bits(&mut control, runnel_log::testing::ATTR_CONTROL, true);
    write("control", &control);
    let mut lat = simple_batch(0, 2);
    runnel_model::batch::BatchHeaderMut::new(&mut lat)
        .unwrap()
        .set_log_append_time(NOW_MS);
    write("log-append-time", &lat);
    for (name, c) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
        ("kafka-none", Compression::None),
    ] {
        write(name, &kafka_batch(c, 4));
    }
    let mut torn = simple_batch(0, 2);
    torn.truncate(torn.len() - 3);
    write("torn", &torn);
    println!("batch_validate: {n} seeds");
}

/// Builds a log in a temporary directory with `batches` (each appended at `epoch`), closes it
/// cleanly, and returns its files by name.
fn build_log(config: LogConfig, batches: &[(Vec<u8>, i32)]) -> Vec<(String, Vec<u8>)> {
    let tmp = std::env::temp_dir().join(format!("runnel-seedgen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new());
    let log = PartitionLog::open(storage, &tmp, config, NOW_MS).unwrap();
    for (b, epoch) in batches {
        let mut b = b.clone();
        log.append(&mut b, *epoch, NOW_MS).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let mut files = Vec::new();
    for e in std::fs::read_dir(&tmp).unwrap() {
        let e = e.unwrap();
        files.push((
            e.file_name().into_string().unwrap(),
            std::fs::read(e.path()).unwrap(),
        ));
    }
    std::fs::remove_dir_all(&tmp).unwrap();
    files.sort();
    files
}

fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.clone())
}

fn segment_seeds() {
    let dir = corpus_dir("segment_recovery");
    let mut n = 0;
    let mut write = |name: &str, spec: &DirSpec| {
        std::fs::write(dir.join(name), spec.encode()).unwrap();
        n += 1;
    };
    let z = runnel_fuzz::stem(0);
    let batches: Vec<(Vec<u8>, i32)> = vec![
        (simple_batch(0, 3), 0),
        (
            runnel_log::testing::producer_batch(7, 0, 0, 2, NOW_MS + 5),
            0,
        ),
        (simple_batch(0, 1), 1),
        (
            runnel_log::testing::producer_batch(7, 0, 2, 4, NOW_MS - 100),
            1,
        ),
        (simple_batch(0, 2), 3),
    ];
    // interval 1: every batch after the first is indexed.
    let config = LogConfig {
        index_interval_bytes: 1,
        ..LogConfig::default()
    };
    let files = build_log(config, &batches);
    let snapshot = files
        .iter()
        .find(|(n, _)| n.ends_with(".snapshot"))
        .map(|(n, b)| (n[..20].parse::<u32>().unwrap(), b.clone()));
    let full = DirSpec {
        clean_shutdown: true,
        index: file(&files, &format!("{z}.index")),
        time_index: file(&files, &format!("{z}.timeindex")),
        interval: 1,
        log_start_checkpoint: file(&files, "log-start-offset-checkpoint"),
        epoch_checkpoint: file(&files, "leader-epoch-checkpoint"),
        snapshot,
        small_segments: false,
        log_append_time: false,
        fix_crcs: false,
        log: file(&files, &format!("{z}.log")).unwrap(),
        second: None,
    };
    write("clean-full", &full);
    write(
        "crashed-full",
        &DirSpec {
            clean_shutdown: false,
            ..full.clone()
        },
    );
    write(
        "crashed-log-only",
        &DirSpec {
            clean_shutdown: false,
            index: None,
            time_index: None,
            log_start_checkpoint: None,
            epoch_checkpoint: None,
            snapshot: None,
            ..full.clone()
        },
    );
    let mut torn = full.log.clone();
    torn.truncate(torn.len() - 10);
    write(
        "crashed-torn-tail",
        &DirSpec {
            clean_shutdown: false,
            log: torn.clone(),
            ..full.clone()
        },
    );
    write(
        "clean-torn-tail",
        &DirSpec {
            log: torn,
            ..full.clone()
        },
    );
    let mut flipped = full.log.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    write(
        "crashed-bit-flip",
        &DirSpec {
            clean_shutdown: false,
            log: flipped.clone(),
            ..full.clone()
        },
    );
    write(
        "clean-bit-flip",
        &DirSpec {
            log: flipped,
            ..full.clone()
        },
    );
    write(
        "small-segments-log-append-time",
        &DirSpec {
            small_segments: true,
            log_append_time: true,
            interval: 0,
            ..full.clone()
        },
    );
    write(
        "log-start-checkpoint",
        &DirSpec {
            log_start_checkpoint: Some(b"0\n4\n".to_vec()),
            ..full.clone()
        },
    );
    write("empty", &DirSpec::default());
    write(
        "crashed-fix-crcs",
        &DirSpec {
            clean_shutdown: false,
            fix_crcs: true,
            ..full.clone()
        },
    );

    // Two segments, written with segments small enough to roll once.
    let total: usize = batches.iter().map(|(b, _)| b.len()).sum();
    let config = LogConfig {
        index_interval_bytes: 1,
        segment_bytes: (total * 2 / 3) as u64,
        ..LogConfig::default()
    };
    let files = build_log(config, &batches);
    let logs: Vec<&(String, Vec<u8>)> = files.iter().filter(|(n, _)| n.ends_with(".log")).collect();
    assert_eq!(logs.len(), 2, "{files:?}");
    let second_base: i64 = logs[1].0[..20].parse().unwrap();
    let two = DirSpec {
        clean_shutdown: true,
        index: file(&files, &format!("{z}.index")),
        time_index: file(&files, &format!("{z}.timeindex")),
        interval: 1,
        log_start_checkpoint: None,
        epoch_checkpoint: file(&files, "leader-epoch-checkpoint"),
        snapshot: None,
        small_segments: true,
        log_append_time: false,
        fix_crcs: true,
        log: logs[0].1.clone(),
        second: Some((second_base, logs[1].1.clone())),
    };
    write("two-segments-clean", &two);
    write(
        "two-segments-crashed",
        &DirSpec {
            clean_shutdown: false,
            ..two.clone()
        },
    );
    write(
        "two-segments-gap",
        &DirSpec {
            second: Some((second_base + 1, logs[1].1.clone())),
            ..two.clone()
        },
    );
    println!("segment_recovery: {n} seeds");
}

fn index_seeds() {
    let dir = corpus_dir("index_files");
    let mut n = 0;
    let mut write = |name: &str, spec: &IndexSpec| {
        std::fs::write(dir.join(name), spec.encode()).unwrap();
        n += 1;
    };
    for two_segments in [false, true] {
        let tmp = std::env::temp_dir().join(format!("runnel-seedgen-ix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let t = IndexTemplate::build(two_segments, &tmp);
        std::fs::remove_dir_all(&tmp).unwrap();
        let index = t.first_segment_file("index").unwrap().to_vec();
        let time_index = t.first_segment_file("timeindex").unwrap().to_vec();
        assert!(!index.is_empty() && !time_index.is_empty());
        let tag = if two_segments { "two" } else { "one" };
        let real = IndexSpec {
            clean_shutdown: true,
            two_segments,
            index: Some(index.clone()),
            time_index: Some(time_index.clone()),
        };
        write(&format!("{tag}-clean-real"), &real);
        write(
            &format!("{tag}-crashed-real"),
            &IndexSpec {
                clean_shutdown: false,
                ..real.clone()
            },
        );
        write(
            &format!("{tag}-missing"),
            &IndexSpec {
                index: None,
                time_index: None,
                ..real.clone()
            },
        );
        let mut torn = index.clone();
        torn.truncate(index.len() - 3);
        write(
            &format!("{tag}-torn-index"),
            &IndexSpec {
                index: Some(torn),
                ..real.clone()
            },
        );
        let mut swapped = index.clone();
        if swapped.len() >= 16 {
            let (a, b) = swapped.split_at_mut(8);
            a.swap_with_slice(&mut b[..8]);
        }
        write(
            &format!("{tag}-swapped-index"),
            &IndexSpec {
                index: Some(swapped),
                ..real.clone()
            },
        );
        let mut shifted = time_index.clone();
        shifted[7] = shifted[7].wrapping_add(1);
        write(
            &format!("{tag}-shifted-timeindex"),
            &IndexSpec {
                time_index: Some(shifted),
                ..real.clone()
            },
        );
    }
    println!("index_files: {n} seeds");
}

fn main() {
    request_seeds();
    batch_seeds();
    segment_seeds();
    index_seeds();
}
