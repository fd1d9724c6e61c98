//! Limits of a connection that a client can push against: a client that never takes its
//! responses (`connections.max.idle.ms` applies to writes too) and the memory of requests being
//! read (`queued.max.request.bytes`).

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestBroker, IO_TIMEOUT};
use kafka_protocol::messages::ApiVersionsRequest;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

async fn wait_for(what: &str, deadline: Duration, mut pred: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !pred() {
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An ApiVersions v0 request frame: request header v1, empty body.
fn api_versions_v0(correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_responses_is_closed_after_connections_max_idle_ms() {
    let b = TestBroker::start_with(&[("connections.max.idle.ms", "500")]).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(b.addr).await.unwrap();
    let (_reader, mut writer) = stream.into_split();
    // Pipelined requests whose answers (~10 MB) are more than the socket buffers hold: the
    // broker's writes stall, and it stops reading. The client never reads.
    let requests: Vec<u8> = (0..30_000).flat_map(api_versions_v0).collect();
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(&requests).await;
        writer // kept open
    });
    wait_for("the connection to be open", IO_TIMEOUT, || {
        b.connections_active() == 1.0
    })
    .await;
    // Closed by the broker (the write deadline), not kept for ever.
    wait_for(
        "the broker to close the connection of a client that reads nothing",
        Duration::from_secs(20),
        || b.connections_active() == 0.0,
    )
    .await;
    sender.abort();
    // Others are served as before.
    let mut c = b.client().await;
    c.send(&ApiVersionsRequest::default(), 3).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_max_request_bytes_stops_reading_requests_until_memory_is_given_back() {
    const MAX: i64 = 1_048_576;
    let b = TestBroker::start_with(&[
        ("socket.request.max.bytes", "1048576"),
        ("queued.max.request.bytes", "2097152"),
    ])
    .await;
    let broker = b.running.as_ref().unwrap().broker().clone();
    assert_eq!(broker.queued_request_bytes(), Some(0));
    // Two clients each start a request of the largest size and stall: the pool is used up.
    let mut stalled = Vec::new();
    for n in 1..=2 {
        let mut c = b.client().await;
        let mut start = (MAX as i32).to_be_bytes().to_vec();
        start.extend_from_slice(&[0u8; 100]);
        c.write_raw(&start).await;
        wait_for("the stalled request to take its memory", IO_TIMEOUT, || {
            broker.queued_request_bytes() == Some(n * (MAX + 4))
        })
        .await;
        stalled.push(c);
    }
    // Two more requests: one sent in two parts (the broker reads its size prefix, then waits
    // for memory before buffering the rest), one sent whole (the broker waits for memory before
    // handling it). Neither is answered...
    let mut split = b.client().await;
    let (split_cid, frame) = split.encode(&ApiVersionsRequest::default(), 3);
    split.write_raw(&frame[..5]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    split.write_raw(&frame[5..]).await;
    let mut whole = b.client().await;
    let (whole_cid, frame) = whole.encode(&ApiVersionsRequest::default(), 3);
    whole.write_raw(&frame).await;
    for c in [&mut split, &mut whole] {
        let early = tokio::time::timeout(Duration::from_millis(500), c.read_frame()).await;
        assert!(
            early.is_err(),
            "answered while queued.max.request.bytes is used up"
        );
    }
    // ...until a stalled request goes away and gives its memory back.
    drop(stalled.remove(0));
    for (c, cid) in [(&mut split, split_cid), (&mut whole, whole_cid)] {
        let resp = c.read_frame().await.expect("answered once memory is back");
        let (got, _) = Client::decode_response::<ApiVersionsRequest>(resp, 3);
        assert_eq!(got, cid);
    }
    wait_for(
        "the answered requests to give their memory back",
        IO_TIMEOUT,
        || broker.queued_request_bytes() == Some(MAX + 4),
    )
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_max_request_bytes_is_unlimited_by_default() {
    let b = TestBroker::start().await;
    assert_eq!(
        b.running.as_ref().unwrap().broker().queued_request_bytes(),
        None
    );
    b.stop().await;
}
