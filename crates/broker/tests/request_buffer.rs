//! A connection's read buffer grows with what the client sends, not with what its size prefix
//! claims. (Its own test binary: it measures the process's peak virtual memory, which other
//! tests running alongside would move.)

mod common;

use std::time::{Duration, Instant};

use common::TestBroker;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn vm_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmPeak")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_claim_the_largest_request_and_stall_reserve_no_memory_for_it() {
    const CONNECTIONS: usize = 50;
    const CLAIMED: i32 = 104_857_600; // socket.request.max.bytes, Kafka's default
    let b = TestBroker::start_with(&[("connections.max.idle.ms", "500")]).await;
    let before = vm_peak_kib();
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(b.addr).await.unwrap();
        let mut start = CLAIMED.to_be_bytes().to_vec();
        start.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]); // a Produce v9 header begins...
        c.write_all(&start).await.unwrap();
        conns.push(c); // ...and nothing more comes
    }
    // The broker read every size prefix: it closed each connection when it went idle.
    let until = Instant::now() + Duration::from_secs(30);
    while b.connections_active() > 0.0 {
        assert!(Instant::now() < until, "stalled connections not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grown_mib = (vm_peak_kib() - before) / 1024;
    // Reserving what each prefix claims would be 50 x 100 MiB = 5,000 MiB.
    assert!(
        grown_mib < 1024,
        "peak virtual memory grew by {grown_mib} MiB for {CONNECTIONS} stalled connections"
    );
    b.stop().await;
}
