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
mod internal_topic;
mod limits;
pub mod server;
mod state;
mod txn_coordinator;

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
/// How often idle producer ids are expired (Kafka's
/// `producer.id.expiration.check.interval.ms` default).
const PRODUCER_EXPIRATION_CHECK_INTERVAL_MS: u64 = 600_000;

/// What a broker is started with besides its Kafka configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// `host:port` of the admin HTTP listener (`/metrics`, `/health/live`,
    /// `/health/ready`); `None` leaves it off.
    pub admin_listen: Option<String>,
    /// The storage partition logs reach the disk through; `None` is the real file system.
    /// Tests pass a fault-injecting one.
    pub storage: Option<Arc<dyn runnel_log::Storage>>,
}

/// A broker serving on its listeners.
pub struct RunningBroker {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    ready: Arc<runnel_admin_http::ReadyFlag>,
    admin_stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningBroker {
    /// Binds the listener, opens the data directory (recovering it after a crash) and
    /// starts accepting connections.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
        Self::start_with(config, StartOptions::default()).await
    }

    /// Like [`RunningBroker::start`], with the admin HTTP listener when asked for. The admin
    /// listener answers `/health/live` while the data directory is still being loaded, and
    /// `/health/ready` only once the broker serves.
    pub async fn start_with(
        config: BrokerConfig,
        options: StartOptions,
    ) -> Result<RunningBroker, StartError> {
        let metrics = Arc::new(runnel_metrics::Metrics::new());
        let ready = Arc::new(runnel_admin_http::ReadyFlag::new());
        let (admin_stop_tx, admin_stop_rx) = tokio::sync::watch::channel(false);
        let mut admin_addr = None;
        let mut tasks = Vec::new();
        if let Some(addr) = &options.admin_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| server::ListenError::Bind {
                    addr: addr
                        .parse()
                        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
                    source,
                })?;
            admin_addr = l.local_addr().ok();
            let mut stop = admin_stop_rx.clone();
            let (m, r) = (metrics.clone(), ready.clone());
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = runnel_admin_http::serve(l, m, r, shutdown).await {
                    tracing::warn!(error = %e, "admin listener stopped");
                }
            }));
        }
        info!(
            node_id = config.node_id,
            log_dirs = %config.log_dir.display(),
            listeners = %config.listeners.iter().map(|l| l.host_port()).collect::<Vec<_>>().join(","),
            advertised_listeners = %config.advertised_listeners.iter().map(|l| l.host_port()).collect::<Vec<_>>().join(","),
            num_partitions = config.num_partitions,
            auto_create_topics_enable = config.auto_create_topics_enable,
            message_max_bytes = config.message_max_bytes,
            log_segment_bytes = config.log_segment_bytes,
            log_retention_ms = config.log_retention_ms,
            log_flush_interval_messages = config.log_flush_interval_messages,
            socket_request_max_bytes = config.socket_request_max_bytes,
            "configuration"
        );
        let listener = config.listener();
        let backlog = u32::try_from(config.socket_listen_backlog_size.max(1)).unwrap_or(1);
        let listeners = server::bind(&listener.host, listener.port, backlog).await?;
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
            Broker::open(
                config,
                advertised_host.clone(),
                advertised_port,
                metrics.clone(),
                options.storage.clone(),
            )
        })?;
        metrics.register_source(state::gauge_source(Arc::downgrade(&broker)));
        // Groups stored in __consumer_offsets are loaded at start, not at the first request.
        if broker.topic(coordinator::OFFSETS_TOPIC).is_some() {
            broker
                .group_coordinators()
                .await
                .map_err(|e| state::StartupError::Metadata(format!("group coordinator: {e:?}")))?;
        }
        for l in listeners {
            tasks.push(tokio::spawn(server::accept_loop(broker.clone(), l)));
        }
        let flusher = broker.clone();
        tasks.push(tokio::spawn(async move {
            let mut shutdown = flusher.shutdown_signal();
            let mut tick = tokio::time::interval(Duration::from_millis(FLUSH_CHECK_INTERVAL_MS));
            let mut expiry =
                tokio::time::interval(Duration::from_millis(PRODUCER_EXPIRATION_CHECK_INTERVAL_MS));
            let mut retention = tokio::time::interval(Duration::from_millis(
                flusher.config.log_retention_check_interval_ms.max(1) as u64,
            ));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let b = flusher.clone();
                        let _ = tokio::task::spawn_blocking(move || b.flush_due()).await;
                    }
                    _ = expiry.tick() => {
                        let b = flusher.clone();
                        let _ = tokio::task::spawn_blocking(move || b.expire_producers()).await;
                    }
                    _ = retention.tick() => {
                        let b = flusher.clone();
                        let _ = tokio::task::spawn_blocking(move || b.retention_pass()).await;
                    }
                    _ = crate::state::stopped(&mut shutdown) => return,
                }
            }
        }));
        ready.set(true);
        // The cleaner has its own task: a long (throttled) clean delays nothing else.
        if broker.config.log_cleaner_enable {
            let cleaner = broker.clone();
            tasks.push(tokio::spawn(async move {
                let mut shutdown = cleaner.shutdown_signal();
                let mut tick = tokio::time::interval(Duration::from_millis(
                    cleaner.config.log_cleaner_backoff_ms.max(1) as u64,
                ));
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            let b = cleaner.clone();
                            let _ = tokio::task::spawn_blocking(move || b.cleaner_pass()).await;
                        }
                        _ = crate::state::stopped(&mut shutdown) => return,
                    }
                }
            }));
        }
        info!(
            listeners = ?local_addrs,
            admin = ?admin_addr,
            advertised = %format!("{advertised_host}:{advertised_port}"),
            data_dir = %data_dir.display(),
            node_id = broker.node_id,
            cluster_id = %broker.cluster_id,
            "runnel ready"
        );
        Ok(RunningBroker {
            broker,
            local_addrs,
            admin_addr,
            ready,
            admin_stop: admin_stop_tx,
            tasks,
        })
    }

    /// Addresses the listeners are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Address of the admin HTTP listener, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, closes connections, then flushes and closes every partition.
    pub async fn shutdown(self) {
        self.ready.set(false);
        let _ = self.admin_stop.send(true);
        let broker = self.broker.clone();
        tokio::task::block_in_place(|| broker.shutdown());
        for t in self.tasks {
            let _ = t.await;
        }
        info!("runnel stopped");
    }
}
