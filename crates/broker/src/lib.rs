//! The Runnel broker: listeners, connections, request dispatch (one handler per API key),
//! and the shared state that ties the partition logs to the metadata image.
//!
//! This crate is the only one that owns sockets and the async runtime.

pub mod config;
mod connection;
mod coordinator;
mod errors;
mod fetch_session;
mod handlers;
pub mod huge_alloc;
pub mod server;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::BrokerConfig;
pub use state::Broker;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Listen(#[from] server::ListenError),
    #[error(transparent)]
    Startup(#[from] state::StartupError),
}

/// How often `flush.ms` deadlines are checked.
const FLUSH_CHECK_INTERVAL_MS: u64 = 1000;

/// A broker serving on its listeners.
pub struct RunningBroker {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningBroker {
    /// Binds the listener, opens the data directory (recovering it after a crash) and
    /// starts accepting connections.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
        let listener = config.listener();
        let listeners = server::bind(&listener.host, listener.port).await?;
        let local_addrs: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let advertised = config.advertised_listener();
        let advertised_host = if advertised.host.is_empty() {
            "localhost".to_string()
        } else {
            advertised.host.clone()
        };
        // Port 0 asks the OS for a port: advertise the one it gave.
        let advertised_port = match advertised.port {
            0 => local_addrs.first().map(|a| a.port()).unwrap_or(0),
            p => p,
        };
        let data_dir = config.log_dir.clone();
        let broker = tokio::task::block_in_place(|| {
            Broker::open(config, advertised_host.clone(), advertised_port)
        })?;
        // Groups stored in __consumer_offsets are loaded at start, not at the first request.
        if broker.topic(coordinator::OFFSETS_TOPIC).is_some() {
            broker
                .group_coordinators()
                .await
                .map_err(|e| state::StartupError::Metadata(format!("group coordinator: {e:?}")))?;
        }
        let mut tasks = Vec::new();
        for l in listeners {
            tasks.push(tokio::spawn(server::accept_loop(broker.clone(), l)));
        }
        let flusher = broker.clone();
        tasks.push(tokio::spawn(async move {
            let mut shutdown = flusher.shutdown_signal();
            let mut tick = tokio::time::interval(Duration::from_millis(FLUSH_CHECK_INTERVAL_MS));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let b = flusher.clone();
                        let _ = tokio::task::spawn_blocking(move || b.flush_due()).await;
                    }
                    _ = shutdown.changed() => return,
                }
            }
        }));
        info!(
            listeners = ?local_addrs,
            advertised = %format!("{advertised_host}:{advertised_port}"),
            data_dir = %data_dir.display(),
            node_id = broker.node_id,
            cluster_id = %broker.cluster_id,
            "runnel ready"
        );
        Ok(RunningBroker {
            broker,
            local_addrs,
            tasks,
        })
    }

    /// Addresses the listeners are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, closes connections, then flushes and closes every partition.
    pub async fn shutdown(self) {
        let broker = self.broker.clone();
        tokio::task::block_in_place(|| broker.shutdown());
        for t in self.tasks {
            let _ = t.await;
        }
        info!("runnel stopped");
    }
}
