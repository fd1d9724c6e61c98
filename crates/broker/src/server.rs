//! Listeners: accept connections and hand each to its own task.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

use crate::connection::serve_connection;
use crate::state::Broker;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot resolve listener host '{host}': {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener host '{host}' resolves to no address")]
    NoAddress { host: String },
}

/// Binds every address of `host:port`, each with a queue of `backlog` connections not yet
/// accepted (`socket.listen.backlog.size`). `localhost` binds both 127.0.0.1 and ::1 so
/// clients reach the broker whichever one they resolve it to; an empty host binds all
/// interfaces.
pub async fn bind(host: &str, port: u16, backlog: u32) -> Result<Vec<TcpListener>, ListenError> {
    let addrs: Vec<SocketAddr> = if host.is_empty() || host == "0.0.0.0" {
        vec![SocketAddr::from(([0, 0, 0, 0], port))]
    } else if host == "localhost" {
        vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]
    } else {
        let host_trimmed = host.trim_start_matches('[').trim_end_matches(']');
        let found = tokio::net::lookup_host((host_trimmed, port))
            .await
            .map_err(|source| ListenError::Resolve {
                host: host.to_string(),
                source,
            })?;
        let mut v: Vec<SocketAddr> = found.collect();
        v.sort();
        v.dedup();
        v
    };
    if addrs.is_empty() {
        return Err(ListenError::NoAddress {
            host: host.to_string(),
        });
    }
    let mut listeners = Vec::new();
    for addr in &addrs {
        match listen(*addr, backlog) {
            Ok(l) => listeners.push(l),
            // localhost on a machine without IPv6: the IPv4 listener is enough.
            Err(e) if host == "localhost" && addr.is_ipv6() && !listeners.is_empty() => {
                warn!(%addr, error = %e, "cannot listen on IPv6 loopback; continuing with IPv4 only");
            }
            Err(source) => {
                return Err(ListenError::Bind {
                    addr: *addr,
                    source,
                })
            }
        }
    }
    Ok(listeners)
}

/// A listening socket on `addr` with `SO_REUSEADDR` (as `TcpListener::bind` sets it) and an
/// accept queue of `backlog`.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// How often, at most, the listener logs that it is waiting at `max.connections`.
const LIMIT_WAIT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until the broker shuts down. As Kafka's acceptor (KIP-402), it accepts
/// first, then waits while `max.connections` are open (the accepted connection waits
/// unanswered, the next ones in the listen backlog) and takes the next free slot; a connection
/// beyond `max.connections.per.ip` is closed at once. A listener waiting to accept holds no
/// slot, so an idle listener (say `::1` beside `127.0.0.1`) takes nothing from the others.
pub async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    let mut shutdown = broker.shutdown_signal();
    let limiter = &broker.connection_limiter;
    let mut waits_unlogged = 0u64;
    let mut wait_logged_at: Option<std::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: keep serving the connections we have.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::state::stopped(&mut shutdown) => return log_stopped(&listener),
        };
        let slot = match limiter.try_slot() {
            Some(slot) => slot,
            None => {
                waits_unlogged += 1;
                if !matches!(wait_logged_at, Some(at) if at.elapsed() < LIMIT_WAIT_LOG_INTERVAL) {
                    info!(%peer, waits = waits_unlogged,
                        "max.connections reached: new connections wait until one closes");
                    waits_unlogged = 0;
                    wait_logged_at = Some(std::time::Instant::now());
                }
                tokio::select! {
                    slot = limiter.slot() => slot,
                    _ = crate::state::stopped(&mut shutdown) => return log_stopped(&listener),
                }
            }
        };
        let permit = match slot.admit(peer.ip()) {
            Ok(p) => p,
            Err(refused) => {
                // Dropping the stream closes it; the client retries with backoff.
                warn!(%peer, ?refused, "refusing connection: limit reached");
                continue;
            }
        };
        let b = broker.clone();
        tokio::spawn(async move {
            serve_connection(b, stream, peer).await;
            drop(permit);
        });
    }
}

/// The accept loop's last line, whether it was waiting to accept or for a free slot.
fn log_stopped(listener: &TcpListener) {
    info!(addr = ?listener.local_addr().ok(), "listener stopped");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Linux queues `backlog + 1` handshaken connections that nobody accepts and drops the
    /// SYNs of the rest (the client's first retry comes after 1 s, past the deadline here).
    #[tokio::test]
    async fn given_listen_backlog_when_nothing_accepts_should_queue_only_that_many_connections() {
        let count_connected = |backlog: u32| async move {
            let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), backlog).unwrap();
            let addr = listener.local_addr().unwrap();
            let mut held = Vec::new();
            for _ in 0..6 {
                let attempt = tokio::net::TcpStream::connect(addr);
                if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), attempt).await {
                    held.push(s);
                }
            }
            held.len()
        };
        let small = count_connected(1).await;
        assert!((1..=2).contains(&small), "backlog 1 queued {small}");
        assert_eq!(
            count_connected(50).await,
            6,
            "Kafka's default backlog takes them all"
        );
    }
}
