//! `runnel`: the broker and its tools, in one binary.
//!
//! `runnel serve` runs a broker; every other subcommand is a Kafka client (librdkafka, through
//! the rdkafka crate) that works against any Kafka-compatible broker given by `-b/--brokers`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod client;
mod cluster;
mod consume;
mod group;
mod output;
mod perf;
mod procstat;
mod produce;
mod serve;
mod timefmt;
mod topic;
mod wire;

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "Runnel: an event streaming platform that speaks the Kafka protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. With no arguments: data in ./runnel-data, Kafka API on localhost:9092.
    Serve(serve::ServeArgs),
    /// Create, list, describe, reconfigure, grow and delete topics.
    Topic(topic::TopicArgs),
    /// Produce records to a topic: one per line from stdin or --file.
    Produce(produce::ProduceArgs),
    /// Consume records from a topic and print them, one per line.
    Consume(consume::ConsumeArgs),
    /// List, describe (with lag), reset the offsets of, and delete consumer groups.
    Group(group::GroupArgs),
    /// Show the cluster: its id, controller and brokers.
    Cluster(cluster::ClusterArgs),
    /// Measure produce and consume throughput and latency.
    Perf(perf::PerfArgs),
    /// Run the benchmark suite: brokers on fresh data directories driven by `runnel perf`, with
    /// the machine's disk and loopback bandwidth; writes a Markdown and a JSON report.
    Bench(Box<bench::BenchArgs>),
}

/// See `runnel_broker::huge_alloc`: a bogus array count in a request must not abort the broker.
#[global_allocator]
static ALLOC: runnel_broker::huge_alloc::NoReserveForHuge =
    runnel_broker::huge_alloc::NoReserveForHuge;

fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = cli.command {
        runnel_broker::huge_alloc::tune_system_allocator();
        init_logging("info");
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("runnel: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let code = runtime.block_on(serve::serve(args));
        // Everything was flushed and closed by now; do not wait without end for a blocking
        // task (a throttled clean, a stuck disk) to notice.
        runtime.shutdown_timeout(std::time::Duration::from_secs(10));
        return code;
    }
    // The tools print their results and short error sentences; logs only when asked (RUST_LOG).
    init_logging("warn");
    let result = match cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Topic(args) => topic::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Group(args) => group::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Perf(args) => perf::run(args),
        Command::Bench(args) => bench::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: {}", e.message);
            ExitCode::from(e.exit_code)
        }
    }
}
