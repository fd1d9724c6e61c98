//! The admin listener on a real socket (127.0.0.1:0), spoken to with raw HTTP/1.1 over a
//! `TcpStream`: every wait is bounded by a deadline, none is a fixed sleep.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use runnel_admin_http::{serve, serve_with_limits, Health, Limits, ReadyFlag};
use runnel_metrics::{GroupPartitionSample, Metrics, PartitionSample, SampleSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Bound of any single wait in these tests.
const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(metrics: Arc<Metrics>, health: Arc<dyn Health>, limits: Option<Limits>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match limits {
            None => tokio::spawn(serve(listener, metrics, health, shutdown)),
            Some(l) => tokio::spawn(serve_with_limits(listener, metrics, health, shutdown, l)),
        };
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        timeout(DEADLINE, self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve result");
    }
}

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is on a new connection and reads the response until the server
/// closes the connection (requests say `Connection: close`).
async fn raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    timeout(DEADLINE, s.read_to_end(&mut bytes))
        .await
        .expect("response in time")
        .expect("read response");
    parse_response(&bytes)
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

fn parse_response(bytes: &[u8]) -> HttpResponse {
    let text = std::str::from_utf8(bytes).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("end of head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut r = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    r.body = if r.header("transfer-encoding") == Some("chunked") {
        dechunk(body)
    } else {
        let len: usize = r
            .header("content-length")
            .expect("content-length")
            .parse()
            .unwrap();
        assert_eq!(body.len(), len, "body length");
        body.to_string()
    };
    r
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
}

/// Polls `f` until it returns `Some`, or fails at the deadline.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

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
        PrometheusValue::Histogram(h) => h.count.unwrap() as f64,
        other => panic!("{family}: {other:?}"),
    })
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "{r:?}"
    );
    parse_prometheus(&r.body)
        .unwrap_or_else(|e| panic!("/metrics is not valid exposition: {e}\n{}", r.body))
}

#[tokio::test]
async fn given_a_running_server_when_metrics_are_scraped_should_parse_and_counters_should_move() {
    let metrics = Arc::new(Metrics::new());
    let end_offset = Arc::new(AtomicU64::new(3));
    {
        let end_offset = end_offset.clone();
        metrics.register_source(move |sink: &mut dyn SampleSink| {
            let leo = end_offset.load(Ordering::SeqCst) as i64;
            sink.partition(
                "orders",
                0,
                PartitionSample {
                    log_start_offset: 0,
                    log_end_offset: leo,
                    high_watermark: leo,
                    size_bytes: 100 * leo as u64,
                    failed: false,
                },
            );
            sink.group_partition(
                "billing",
                "orders",
                0,
                GroupPartitionSample {
                    committed_offset: 1,
                    end_offset: leo,
                },
            );
        });
    }
    let server = Server::start(metrics.clone(), Arc::new(|| true), None).await;
    let orders = metrics.topic("orders");
    metrics.request("Produce", 9, Duration::from_millis(2), false);
    orders.bytes_in(300, 3);

    let e = scrape(server.addr).await;
    let p = &[("topic", "orders"), ("partition", "0")][..];
    assert_eq!(
        value(&e, "runnel_requests_total", &[("api", "Produce")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &e,
            "runnel_topic_produced_records_total",
            &[("topic", "orders")]
        ),
        Some(3.0)
    );
    assert_eq!(value(&e, "runnel_partition_log_end_offset", p), Some(3.0));
    assert_eq!(
        value(
            &e,
            "runnel_consumer_group_lag_records",
            &[("group", "billing")]
        ),
        Some(2.0)
    );

    // Records produced and consumed: the next scrape sees the counters and gauges move.
    metrics.request("Produce", 9, Duration::from_millis(2), false);
    metrics.request("Fetch", 12, Duration::from_millis(2), false);
    orders.bytes_in(200, 2);
    orders.bytes_out(500, 5);
    end_offset.store(5, Ordering::SeqCst);

    let e = scrape(server.addr).await;
    assert_eq!(
        value(&e, "runnel_requests_total", &[("api", "Produce")]),
        Some(2.0)
    );
    assert_eq!(
        value(&e, "runnel_request_duration_seconds", &[("api", "Fetch")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &e,
            "runnel_topic_produced_records_total",
            &[("topic", "orders")]
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &e,
            "runnel_topic_fetched_records_total",
            &[("topic", "orders")]
        ),
        Some(5.0)
    );
    assert_eq!(value(&e, "runnel_partition_log_end_offset", p), Some(5.0));
    assert_eq!(value(&e, "runnel_partition_log_size_bytes", p), Some(500.0));
    assert_eq!(
        value(
            &e,
            "runnel_consumer_group_lag_records",
            &[("group", "billing")]
        ),
        Some(4.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn given_a_loading_broker_when_ready_is_polled_should_answer_503_then_200() {
    let ready = Arc::new(ReadyFlag::new());
    let server = Server::start(Arc::new(Metrics::new()), ready.clone(), None).await;

    let r = get(server.addr, "/health/ready").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        !r.body.is_empty() && r.body.len() < 100,
        "short body: {r:?}"
    );
    let r = get(server.addr, "/health/live").await;
    assert_eq!(r.status, 200, "live while loading: {r:?}");

    // The "broker" finishes loading on another task.
    let (loaded, on_loaded) = oneshot::channel::<()>();
    let loader = {
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = on_loaded.await;
            ready.set(true);
        })
    };
    loaded.send(()).unwrap();
    let r = eventually("readiness", || async {
        let r = get(server.addr, "/health/ready").await;
        (r.status != 503).then_some(r)
    })
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(server.addr, "/health/live").await.status, 200);
    loader.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn given_an_unknown_path_or_method_when_requested_should_answer_404_or_405() {
    let server = Server::start(Arc::new(Metrics::new()), Arc::new(|| true), None).await;
    assert_eq!(get(server.addr, "/").await.status, 404);
    assert_eq!(get(server.addr, "/metrics/extra").await.status, 404);
    assert_eq!(get(server.addr, "/health").await.status, 404);
    let r = raw(
        server.addr,
        b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(r.status, 405, "{r:?}");
    server.stop().await;
}

#[tokio::test]
async fn given_a_body_over_the_limit_when_sent_should_answer_413_without_reading_it() {
    let server = Server::start(Arc::new(Metrics::new()), Arc::new(|| true), None).await;
    let limit = Limits::default().max_body_bytes;
    // Only the head is sent: the answer must not wait for the announced body.
    let r = raw(
        server.addr,
        format!(
            "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            limit + 1
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
    server.stop().await;
}

#[tokio::test]
async fn given_a_client_that_sends_no_request_when_the_header_timeout_passes_should_be_disconnected(
) {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = Server::start(Arc::new(Metrics::new()), Arc::new(|| true), Some(limits)).await;
    for partial in [&b""[..], b"GET /metrics HTTP/1.1\r\nHost: loc"] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(partial).await.unwrap();
        let mut rest = Vec::new();
        // Closed by the server without an answer (hyper drops a connection whose request
        // head does not arrive in time): read_to_end returns.
        let read = timeout(DEADLINE, s.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "connection still open after the header timeout"
        );
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    server.stop().await;
}

#[tokio::test]
async fn given_a_stuck_scrape_when_the_request_timeout_passes_should_answer_503_and_not_pile_up() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let metrics = Arc::new(Metrics::new());
    // A source that blocks until the test opens the gate.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new(AtomicUsize::new(0));
    {
        let (gate, entered) = (gate.clone(), entered.clone());
        metrics.register_source(move |_: &mut dyn SampleSink| {
            entered.fetch_add(1, Ordering::SeqCst);
            let (open, cv) = &*gate;
            let guard = open.lock().unwrap();
            let _ = cv
                .wait_timeout_while(guard, DEADLINE, |open| !*open)
                .unwrap();
        });
    }
    let server = Server::start(metrics, Arc::new(|| true), Some(limits)).await;

    let r = get(server.addr, "/metrics").await;
    assert_eq!(r.status, 503, "{r:?}");
    let r = get(server.addr, "/metrics").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        entered.load(Ordering::SeqCst) <= 1,
        "a second render started while the first is stuck"
    );
    // Other routes do not wait on the scrape.
    assert_eq!(get(server.addr, "/health/live").await.status, 200);

    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    let r = eventually("a scrape after the source is unstuck", || async {
        let r = get(server.addr, "/metrics").await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert!(parse_prometheus(&r.body).is_ok());
    server.stop().await;
}

#[tokio::test]
async fn given_the_connection_limit_reached_when_another_client_connects_should_close_it() {
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server = Server::start(Arc::new(Metrics::new()), Arc::new(|| true), Some(limits)).await;

    // Holds the only slot: a keep-alive connection that has been answered once.
    let mut held = TcpStream::connect(server.addr).await.unwrap();
    held.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = timeout(DEADLINE, held.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    let _ = refused
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut rest = Vec::new();
    let read = timeout(DEADLINE, refused.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(read.is_err() || rest.is_empty(), "served over the limit");

    // Once the slot is free, new connections are served again.
    drop(held);
    let r = eventually("a free connection slot", || async {
        let mut s = TcpStream::connect(server.addr).await.ok()?;
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut bytes = Vec::new();
        timeout(DEADLINE, s.read_to_end(&mut bytes))
            .await
            .ok()?
            .ok()?;
        (!bytes.is_empty()).then(|| parse_response(&bytes))
    })
    .await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn given_an_idle_keep_alive_connection_when_shutdown_is_signalled_should_return_promptly() {
    let server = Server::start(Arc::new(Metrics::new()), Arc::new(|| true), None).await;
    let addr = server.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    timeout(DEADLINE, idle.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();

    // Well within the default close grace (5 s) and header timeout (10 s).
    timeout(Duration::from_secs(3), server.stop())
        .await
        .expect("shutdown does not wait for idle connections");
    let mut rest = Vec::new();
    let read = timeout(DEADLINE, idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "idle connection closed at shutdown");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}
