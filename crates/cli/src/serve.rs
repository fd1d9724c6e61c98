//! `runnel serve`: run a broker until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use runnel_broker::{BrokerConfig, RunningBroker};
use tracing::{error, info};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory (Kafka's `log.dirs`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on for the Kafka API; also advertised unless --advertise is given.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address advertised to clients in Metadata responses.
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// A Kafka-style .properties file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A setting by its Kafka property name, e.g. `--override num.partitions=3`. Repeatable;
    /// wins over --config.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Serve the admin HTTP endpoints (`/metrics` in Prometheus format, `/health/live`,
    /// `/health/ready`) on this address. Off unless given.
    #[arg(long, value_name = "HOST:PORT")]
    admin_listen: Option<String>,
}

fn build_config(args: &ServeArgs) -> Result<BrokerConfig, String> {
    let file_text = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut overrides = Vec::new();
    for o in &args.overrides {
        let Some((k, v)) = o.split_once('=') else {
            return Err(format!("--override '{o}' is not of the form key=value"));
        };
        overrides.push((k.trim().to_string(), v.trim().to_string()));
    }
    if let Some(dir) = &args.data_dir {
        overrides.push(("log.dirs".into(), dir.display().to_string()));
    }
    if let Some(listen) = &args.listen {
        overrides.push(("listeners".into(), format!("PLAINTEXT://{listen}")));
        // Advertised as given, except a wildcard host, which clients cannot dial.
        let wildcard = listen.starts_with("0.0.0.0:")
            || listen.starts_with("[::]:")
            || listen.starts_with(':');
        if args.advertise.is_none() {
            let advertised = if wildcard {
                format!("localhost:{}", listen.rsplit(':').next().unwrap_or("9092"))
            } else {
                listen.clone()
            };
            overrides.push((
                "advertised.listeners".into(),
                format!("PLAINTEXT://{advertised}"),
            ));
        }
    }
    if let Some(adv) = &args.advertise {
        overrides.push(("advertised.listeners".into(), format!("PLAINTEXT://{adv}")));
    }
    BrokerConfig::from_sources(file_text.as_deref(), &overrides).map_err(|e| e.to_string())
}

/// SIGINT and SIGTERM handlers, installed before the broker announces it is ready so that a
/// signal sent right after the ready line is not fatal.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub async fn serve(args: ServeArgs) -> ExitCode {
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            error!("invalid configuration: {e}");
            eprintln!("runnel: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("runnel: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = runnel_broker::StartOptions {
        admin_listen: args.admin_listen.clone(),
        storage: None,
    };
    let running = match RunningBroker::start_with(config, options).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start");
            eprintln!("runnel: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    signals.wait().await;
    info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}
