//! Every version of every API that ApiVersions advertises decodes, is handled, and encodes
//! (advertise only what works).

mod common;

use bytes::Bytes;
use common::{name, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_model::batch::testing::simple_batch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_of_every_api_is_answered() {
    let b = TestBroker::start_with(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let mut c = b.client().await;
    let versions = c.send(&ApiVersionsRequest::default(), 3).await;
    let topic_id = {
        let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name("vt"))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
        c.send(&req, 7).await.topics[0].topic_id
    };
    let mut checked = 0;
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).expect("known key");
        for v in api.min_version..=api.max_version {
            match key {
                ApiKey::Produce if v >= 3 => {
                    let req = ProduceRequest::default()
                        .with_acks(-1)
                        .with_timeout_ms(1000)
                        .with_topic_data(vec![TopicProduceData::default()
                            .with_name(name("vt"))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(simple_batch(0, 1))))])]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.responses[0].partition_responses[0].error_code, 0,
                        "Produce v{v}"
                    );
                }
                // Advertised for librdkafka's feature detection, refused when sent (tested in api.rs).
                ApiKey::Produce => continue,
                ApiKey::Fetch => {
                    let topic = if v >= 13 {
                        FetchTopic::default().with_topic_id(topic_id)
                    } else {
                        FetchTopic::default().with_topic(name("vt"))
                    };
                    let req = FetchRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_max_bytes(1 << 20)
                        .with_session_epoch(-1)
                        .with_topics(vec![topic.with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_partition_max_bytes(1 << 20)])]);
                    let r = c.send(&req, v).await;
                    let p = &r.responses[0].partitions[0];
                    assert_eq!(p.error_code, 0, "Fetch v{v}");
                    assert!(
                        p.records.as_ref().is_some_and(|r| !r.is_empty()),
                        "Fetch v{v}"
                    );
                }
                ApiKey::ListOffsets => {
                    let req = ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![ListOffsetsTopic::default()
                            .with_name(name("vt"))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(-1)])]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
                }
                ApiKey::Metadata => {
                    let req = MetadataRequest::default()
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default().with_name(Some(name("vt")))
                        ]))
                        .with_allow_auto_topic_creation(true);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
                }
                ApiKey::ApiVersions => {
                    let r = c.send(&ApiVersionsRequest::default(), v).await;
                    assert_eq!(r.error_code, 0, "ApiVersions v{v}");
                }
                ApiKey::CreateTopics => {
                    let req =
                        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                            .with_name(name(&format!("ct{v}")))
                            .with_num_partitions(1)
                            .with_replication_factor(1)]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
                }
                ApiKey::DeleteTopics => {
                    let topic = format!("ct{}", 2 + (v - 1) % 6);
                    let req = if v >= 6 {
                        DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default(
                        )
                        .with_name(Some(name(&topic)))])
                    } else {
                        DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
                    };
                    let r = c.send(&req, v).await;
                    assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} ({topic})");
                }
                ApiKey::OffsetForLeaderEpoch => {
                    let req = OffsetForLeaderEpochRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_topics(vec![OffsetForLeaderTopic::default()
                            .with_topic(name("vt"))
                            .with_partitions(vec![OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0)])]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.topics[0].partitions[0].error_code, 0,
                        "OffsetForLeaderEpoch v{v}"
                    );
                }
                ApiKey::DescribeConfigs => {
                    let req = DescribeConfigsRequest::default().with_resources(vec![
                        DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("vt")),
                        DescribeConfigsResource::default()
                            .with_resource_type(4)
                            .with_resource_name(StrBytes::from_static_str("1")),
                    ]);
                    let r = c.send(&req, v).await;
                    for res in &r.results {
                        assert_eq!(
                            res.error_code, 0,
                            "DescribeConfigs v{v}: {:?}",
                            res.error_message
                        );
                        assert!(!res.configs.is_empty(), "DescribeConfigs v{v}");
                    }
                }
                ApiKey::DescribeCluster => {
                    let r = c.send(&DescribeClusterRequest::default(), v).await;
                    assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
                }
                ApiKey::InitProducerId => {
                    let r = c
                        .send(
                            &InitProducerIdRequest::default()
                                .with_transactional_id(None)
                                .with_transaction_timeout_ms(60000),
                            v,
                        )
                        .await;
                    assert_eq!(r.error_code, 0, "InitProducerId v{v}");
                    assert!(r.producer_id.0 >= 0);
                }
                ApiKey::FindCoordinator => {
                    let req = if v >= 4 {
                        FindCoordinatorRequest::default()
                            .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
                    } else {
                        FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
                    };
                    let r = c.send(&req, v).await;
                    let code = if v >= 4 {
                        r.coordinators[0].error_code
                    } else {
                        r.error_code
                    };
                    assert_eq!(code, 0, "FindCoordinator v{v}");
                }
                ApiKey::JoinGroup => {
                    let mut req = JoinGroupRequest::default()
                        .with_group_id(GroupId(StrBytes::from(format!("join{v}"))))
                        .with_session_timeout_ms(10000)
                        .with_protocol_type(StrBytes::from_static_str("consumer"))
                        .with_protocols(vec![
                            join_group_request::JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_static_str("range"))
                                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0")),
                        ]);
                    if v >= 1 {
                        req.rebalance_timeout_ms = 10000;
                    }
                    let r = c.send(&req, v).await;
                    let expected = if v >= 4 { 79 } else { 0 };
                    assert_eq!(r.error_code, expected, "JoinGroup v{v}");
                }
                ApiKey::SyncGroup => {
                    let req = SyncGroupRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("nosuchgroup")))
                        .with_generation_id(1)
                        .with_member_id(StrBytes::from_static_str("m"));
                    let r = c.send(&req, v).await;
                    assert_ne!(r.error_code, 0, "SyncGroup v{v}");
                }
                ApiKey::Heartbeat => {
                    let req = HeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("nosuchgroup")))
                        .with_generation_id(1)
                        .with_member_id(StrBytes::from_static_str("m"));
                    let r = c.send(&req, v).await;
                    assert_ne!(r.error_code, 0, "Heartbeat v{v}");
                }
                ApiKey::LeaveGroup => {
                    let req = if v >= 3 {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(StrBytes::from_static_str("nosuchgroup")))
                            .with_members(vec![leave_group_request::MemberIdentity::default()
                                .with_member_id(StrBytes::from_static_str("m"))])
                    } else {
                        LeaveGroupRequest::default()
                            .with_group_id(GroupId(StrBytes::from_static_str("nosuchgroup")))
                            .with_member_id(StrBytes::from_static_str("m"))
                    };
                    c.send(&req, v).await;
                }
                ApiKey::OffsetCommit => {
                    let req = OffsetCommitRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![
                            offset_commit_request::OffsetCommitRequestTopic::default()
                                .with_name(name("vt"))
                                .with_partitions(vec![
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(i64::from(v))
                                        .with_committed_metadata(Some(StrBytes::from_static_str(
                                            "meta",
                                        ))),
                                ]),
                        ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
                }
                ApiKey::OffsetFetch => {
                    let r = if v >= 8 {
                        let req = OffsetFetchRequest::default().with_groups(vec![
                            offset_fetch_request::OffsetFetchRequestGroup::default()
                                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                                .with_topics(None),
                        ]);
                        let r = c.send(&req, v).await;
                        r.groups[0].topics[0].partitions[0].committed_offset
                    } else {
                        let req = OffsetFetchRequest::default()
                            .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                            .with_topics(Some(vec![
                                offset_fetch_request::OffsetFetchRequestTopic::default()
                                    .with_name(name("vt"))
                                    .with_partition_indexes(vec![0]),
                            ]));
                        let r = c.send(&req, v).await;
                        r.topics[0].partitions[0].committed_offset
                    };
                    assert!(r >= 2, "OffsetFetch v{v}: {r}");
                }
                ApiKey::OffsetDelete => {
                    let req = OffsetDeleteRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str("nosuchgroup")));
                    c.send(&req, v).await;
                }
                ApiKey::ListGroups => {
                    let r = c.send(&ListGroupsRequest::default(), v).await;
                    assert_eq!(r.error_code, 0, "ListGroups v{v}");
                    assert!(
                        r.groups.iter().any(|g| g.group_id.0.as_str() == "simple"),
                        "ListGroups v{v}"
                    );
                }
                ApiKey::DescribeGroups => {
                    let req = DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(StrBytes::from_static_str("simple"))]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.groups.len(), 1, "DescribeGroups v{v}");
                }
                ApiKey::DeleteGroups => {
                    let req = DeleteGroupsRequest::default()
                        .with_groups_names(vec![GroupId(StrBytes::from(format!("join{v}")))]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.results.len(), 1, "DeleteGroups v{v}");
                }
                ApiKey::ConsumerGroupHeartbeat => {
                    let mut req = ConsumerGroupHeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from(format!("kip848-{v}"))))
                        .with_member_epoch(0)
                        .with_rebalance_timeout_ms(10000)
                        .with_subscribed_topic_names(Some(vec![name("vt")]))
                        .with_topic_partitions(Some(vec![]));
                    if v >= 1 {
                        req.member_id = StrBytes::from(uuid::Uuid::new_v4().to_string());
                    }
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.error_code, 0,
                        "ConsumerGroupHeartbeat v{v}: {:?}",
                        r.error_message
                    );
                }
                ApiKey::ConsumerGroupDescribe => {
                    let req = ConsumerGroupDescribeRequest::default()
                        .with_group_ids(vec![GroupId(StrBytes::from_static_str("kip848-0"))]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.groups.len(), 1, "ConsumerGroupDescribe v{v}");
                }
                ApiKey::CreatePartitions => {
                    let req = CreatePartitionsRequest::default().with_topics(vec![
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(name("vt"))
                            .with_count(2 + i32::from(v))
                            .with_assignments(None),
                    ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
                }
                ApiKey::DeleteRecords => {
                    let req = DeleteRecordsRequest::default().with_topics(vec![
                        delete_records_request::DeleteRecordsTopic::default()
                            .with_name(name("vt"))
                            .with_partitions(vec![
                                delete_records_request::DeleteRecordsPartition::default()
                                    .with_partition_index(0)
                                    .with_offset(0),
                            ]),
                    ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.topics[0].partitions[0].error_code, 0,
                        "DeleteRecords v{v}"
                    );
                }
                ApiKey::AlterConfigs => {
                    let req = AlterConfigsRequest::default().with_resources(vec![
                        alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("vt"))
                            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_value(Some(StrBytes::from_static_str("100000")))]),
                    ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
                }
                ApiKey::IncrementalAlterConfigs => {
                    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                        incremental_alter_configs_request::AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("vt"))
                            .with_configs(vec![
                                incremental_alter_configs_request::AlterableConfig::default()
                                    .with_name(StrBytes::from_static_str("segment.ms"))
                                    .with_config_operation(0)
                                    .with_value(Some(StrBytes::from_static_str("100000"))),
                            ]),
                    ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
                }
                ApiKey::AddPartitionsToTxn => {
                    let (pid, epoch) = init_txn(&mut c, &format!("apt-{v}")).await;
                    let topics = vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name("vt"))
                            .with_partitions(vec![0]),
                    ];
                    let req = if v >= 4 {
                        AddPartitionsToTxnRequest::default().with_transactions(vec![
                            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                                .with_transactional_id(txn_id(&format!("apt-{v}")))
                                .with_producer_id(pid)
                                .with_producer_epoch(epoch)
                                .with_topics(topics),
                        ])
                    } else {
                        AddPartitionsToTxnRequest::default()
                            .with_v3_and_below_transactional_id(txn_id(&format!("apt-{v}")))
                            .with_v3_and_below_producer_id(pid)
                            .with_v3_and_below_producer_epoch(epoch)
                            .with_v3_and_below_topics(topics)
                    };
                    let r = c.send(&req, v).await;
                    let codes: Vec<i16> = if v >= 4 {
                        r.results_by_transaction[0].topic_results[0]
                            .results_by_partition
                            .iter()
                            .map(|p| p.partition_error_code)
                            .collect()
                    } else {
                        r.results_by_topic_v3_and_below[0]
                            .results_by_partition
                            .iter()
                            .map(|p| p.partition_error_code)
                            .collect()
                    };
                    assert_eq!(
                        (r.error_code, codes),
                        (0, vec![0]),
                        "AddPartitionsToTxn v{v}"
                    );
                }
                ApiKey::AddOffsetsToTxn => {
                    let (pid, epoch) = init_txn(&mut c, &format!("aot-{v}")).await;
                    let req = AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn_id(&format!("aot-{v}")))
                        .with_producer_id(pid)
                        .with_producer_epoch(epoch)
                        .with_group_id(GroupId(StrBytes::from_static_str("g-txn")));
                    let r = c.send(&req, v).await;
                    assert_eq!(r.error_code, 0, "AddOffsetsToTxn v{v}");
                }
                ApiKey::EndTxn => {
                    let id = format!("end-{v}");
                    let (pid, epoch) = init_txn(&mut c, &id).await;
                    let add = AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn_id(&id))
                        .with_producer_id(pid)
                        .with_producer_epoch(epoch)
                        .with_group_id(GroupId(StrBytes::from_static_str("g-txn")));
                    assert_eq!(c.send(&add, 3).await.error_code, 0);
                    let req = EndTxnRequest::default()
                        .with_transactional_id(txn_id(&id))
                        .with_producer_id(pid)
                        .with_producer_epoch(epoch)
                        .with_committed(true);
                    let r = c.send(&req, v).await;
                    assert_eq!(r.error_code, 0, "EndTxn v{v}");
                }
                ApiKey::TxnOffsetCommit => {
                    let id = format!("toc-{v}");
                    let (pid, epoch) = init_txn(&mut c, &id).await;
                    let group = GroupId(StrBytes::from(format!("g-toc-{v}")));
                    let add = AddOffsetsToTxnRequest::default()
                        .with_transactional_id(txn_id(&id))
                        .with_producer_id(pid)
                        .with_producer_epoch(epoch)
                        .with_group_id(group.clone());
                    assert_eq!(c.send(&add, 3).await.error_code, 0);
                    let req = TxnOffsetCommitRequest::default()
                        .with_transactional_id(txn_id(&id))
                        .with_group_id(group)
                        .with_producer_id(pid)
                        .with_producer_epoch(epoch)
                        .with_generation_id(-1)
                        .with_topics(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                                .with_name(name("vt"))
                                .with_partitions(vec![
                                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(1)
                                        .with_committed_leader_epoch(-1),
                                ]),
                        ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.topics[0].partitions[0].error_code, 0,
                        "TxnOffsetCommit v{v}"
                    );
                }
                ApiKey::DescribeTransactions => {
                    init_txn(&mut c, "dt").await;
                    let req = DescribeTransactionsRequest::default()
                        .with_transactional_ids(vec![txn_id("dt")]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.transaction_states[0].error_code, 0,
                        "DescribeTransactions v{v}"
                    );
                    assert_eq!(r.transaction_states[0].transaction_state.as_str(), "Empty");
                }
                ApiKey::ListTransactions => {
                    init_txn(&mut c, "lt").await;
                    let r = c.send(&ListTransactionsRequest::default(), v).await;
                    assert_eq!(r.error_code, 0, "ListTransactions v{v}");
                    assert!(r
                        .transaction_states
                        .iter()
                        .any(|t| t.transactional_id.as_str() == "lt"));
                }
                ApiKey::DescribeProducers => {
                    let req = DescribeProducersRequest::default().with_topics(vec![
                        describe_producers_request::TopicRequest::default()
                            .with_name(name("vt"))
                            .with_partition_indexes(vec![0]),
                    ]);
                    let r = c.send(&req, v).await;
                    assert_eq!(
                        r.topics[0].partitions[0].error_code, 0,
                        "DescribeProducers v{v}"
                    );
                }
                other => panic!("{other:?} is advertised but this test does not cover it"),
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "checked {checked} versions");
    b.stop().await;
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from(id.to_string()))
}

/// InitProducerId for a transactional id: its producer id and epoch.
async fn init_txn(c: &mut common::Client, id: &str) -> (ProducerId, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(60_000);
    // The coordinator may still be loading right after FindCoordinator created it.
    for _ in 0..100 {
        let r = c.send(&req, 4).await;
        if r.error_code == 0 {
            return (r.producer_id, r.producer_epoch);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("InitProducerId for {id} kept failing");
}
