//! Stopping a broker.

mod common;

use std::time::Duration;

use common::TestBroker;

/// A broker stopped right after it started stops: its tasks subscribe to the shutdown signal
/// when they first run, which can be after the stop was signalled (then `watch::Sender::send`
/// stored nothing, and an accept loop waited for ever: 1 stop in 8 hung).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_right_after_start_stops() {
    for round in 0..30 {
        let b = TestBroker::start().await;
        tokio::time::timeout(Duration::from_secs(20), b.stop())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the broker did not stop within 20 s"));
    }
}
