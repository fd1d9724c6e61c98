//! The admin HTTP listener of a real broker: /metrics parses as Prometheus exposition and its
//! counters move with produce and fetch; readiness once serving.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{name, Client};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use runnel_broker::{BrokerConfig, RunningBroker, StartOptions};
use runnel_model::batch::testing::simple_batch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn value(e: &Exposition, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let f = e.families.get(family)?;
    let s = f.iter_samples().find(|s| {
        let set = s.get_labelset().unwrap();
        labels
            .iter()
            .all(|(k, v)| set.get_label_value(k) == Some(*v))
    })?;
    Some(match &s.value {
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Gauge(n) => n.as_f64(),
        PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
        _ => return None,
    })
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    parse_prometheus(&body)
        .unwrap_or_else(|e| panic!("/metrics is not valid exposition: {e}\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_produce_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
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
            admin_listen: Some("127.0.0.1:0".into()),
            storage: None,
        },
    )
    .await
    .expect("starts");
    let admin = running.admin_addr().expect("admin listener");
    assert_eq!(get(admin, "/health/live").await.0, 200);
    assert_eq!(get(admin, "/health/ready").await.0, 200);
    let mut c = Client::connect(running.local_addrs()[0]).await;
    let before = scrape(admin).await;
    let produced = value(
        &before,
        "runnel_topic_produced_bytes_total",
        &[("topic", "m")],
    )
    .unwrap_or(0.0);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("m"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(simple_batch(0, 3))))])]);
    assert_eq!(
        c.send(&req, 9).await.responses[0].partition_responses[0].error_code,
        0
    );
    let fetch = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("m"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    c.send(&fetch, 12).await;
    let after = scrape(admin).await;
    assert!(
        value(
            &after,
            "runnel_topic_produced_bytes_total",
            &[("topic", "m")]
        )
        .unwrap()
            > produced
    );
    assert_eq!(
        value(
            &after,
            "runnel_topic_produced_records_total",
            &[("topic", "m")]
        ),
        Some(3.0)
    );
    assert!(
        value(
            &after,
            "runnel_topic_fetched_bytes_total",
            &[("topic", "m")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(
            &after,
            "runnel_partition_high_watermark",
            &[("topic", "m"), ("partition", "0")]
        ),
        Some(3.0)
    );
    assert!(value(&after, "runnel_requests_total", &[("api", "Produce")]).unwrap() >= 1.0);
    assert!(value(&after, "runnel_connections_active", &[]).unwrap() >= 1.0);
    running.shutdown().await;
}
