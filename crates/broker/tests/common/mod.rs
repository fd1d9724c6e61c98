//! Test support: a real broker on a loopback port with a fresh data directory, and a raw
//! Kafka protocol client built on the generated codecs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use runnel_broker::{BrokerConfig, RunningBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Huge allocations requested by bogus array counts must not abort the test process.
#[global_allocator]
static ALLOC: runnel_broker::huge_alloc::NoReserveForHuge =
    runnel_broker::huge_alloc::NoReserveForHuge;

pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningBroker>,
    pub addr: SocketAddr,
    overrides: Vec<(String, String)>,
}

fn config(dir: &std::path::Path, port: u16, extra: &[(String, String)]) -> BrokerConfig {
    let mut overrides = vec![
        ("log.dirs".to_string(), dir.display().to_string()),
        (
            "listeners".to_string(),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        (
            "advertised.listeners".to_string(),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
    ];
    overrides.extend_from_slice(extra);
    BrokerConfig::from_sources(None, &overrides).expect("valid test config")
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[(&str, &str)]) -> TestBroker {
        Self::start_in(tempfile::tempdir().expect("tempdir"), overrides).await
    }

    /// A broker whose data directory is `dir`.
    pub async fn start_in(dir: tempfile::TempDir, overrides: &[(&str, &str)]) -> TestBroker {
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let running = RunningBroker::start(config(dir.path(), 0, &overrides))
            .await
            .expect("broker starts");
        let addr = running.local_addrs()[0];
        TestBroker {
            dir,
            running: Some(running),
            addr,
            overrides,
        }
    }

    /// Clean shutdown, then start again on the same data directory and port.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let running =
            RunningBroker::start(config(self.dir.path(), self.addr.port(), &self.overrides))
                .await
                .expect("broker restarts");
        self.running = Some(running);
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Open client connections (`runnel_connections_active` of the broker's metrics).
    pub fn connections_active(&self) -> f64 {
        let running = self.running.as_ref().expect("broker running");
        metric(running, "runnel_connections_active")
            .expect("runnel_connections_active in the metrics")
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub struct Client {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a request frame (with size prefix) without sending it.
    pub fn encode<R: Request>(&mut self, req: &R, version: i16) -> (i32, Bytes) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encode header");
        req.encode(&mut body, version).expect("encode request");
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        (self.correlation_id, frame.freeze())
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        match tokio::time::timeout(IO_TIMEOUT, self.stream.read_exact(&mut size))
            .await
            .expect("read in time")
        {
            Ok(_) => {}
            Err(_) => return None,
        }
        let size = i32::from_be_bytes(size) as usize;
        let mut buf = vec![0u8; size];
        tokio::time::timeout(IO_TIMEOUT, self.stream.read_exact(&mut buf))
            .await
            .expect("read in time")
            .ok()?;
        Some(Bytes::from(buf))
    }

    pub fn decode_response<R: Request>(frame: Bytes, version: i16) -> (i32, R::Response) {
        let mut buf = frame;
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .expect("response header");
        let body = R::Response::decode(&mut buf, version).expect("response body");
        assert!(
            !buf.has_remaining(),
            "response has {} trailing bytes",
            buf.remaining()
        );
        (header.correlation_id, body)
    }

    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let (cid, frame) = self.encode(req, version);
        self.write_raw(&frame).await;
        let resp = self.read_frame().await.expect("broker answered");
        let (got, body) = Self::decode_response::<R>(resp, version);
        assert_eq!(got, cid, "correlation id");
        body
    }

    /// True once the broker has closed the connection (reads EOF or reset).
    pub async fn is_closed_by_broker(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// The value of one series of the broker's metrics, named as rendered (labels in name order:
/// `runnel_partition_log_failed{partition="0",topic="t"}`).
pub fn metric(running: &RunningBroker, series: &str) -> Option<f64> {
    let text = running.broker().metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// CreateTopics v7 of `topic` with `partitions` partitions (replication factor 1).
pub async fn create_topic(
    c: &mut Client,
    topic: &str,
    partitions: i32,
) -> kafka_protocol::messages::CreateTopicsResponse {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    let req = kafka_protocol::messages::CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    c.send(&req, 7).await
}

pub fn name(s: &str) -> kafka_protocol::messages::TopicName {
    kafka_protocol::messages::TopicName(StrBytes::from_string(s.to_string()))
}
