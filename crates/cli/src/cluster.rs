//! `runnel cluster info`.

use clap::Subcommand;
use rdkafka::consumer::Consumer;
use serde_json::json;

use crate::client::{CliResult, ConnArgs, Format};
use crate::output::{print, print_json, Table};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// The cluster id, the controller, the brokers, and topic and partition counts.
    Info,
}

pub fn run(args: ClusterArgs) -> CliResult<()> {
    let conn = &args.conn;
    match args.cmd {
        ClusterCmd::Info => info(conn),
    }
}

fn info(conn: &ConnArgs) -> CliResult<()> {
    let consumer = conn.consumer(None, &[])?;
    let client = consumer.client();
    let md = conn.metadata(client, None)?;
    let cluster_id = client.fetch_cluster_id(conn.timeout);
    // librdkafka knows the controller from Metadata; the rdkafka crate has no wrapper for it.
    // SAFETY: a valid client handle, and the call only reads librdkafka's metadata cache.
    let controller =
        unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), conn.timeout_ms()) };
    let controller = (controller >= 0).then_some(controller);
    let mut brokers: Vec<_> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    brokers.sort();
    let user_topics: Vec<_> = md
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .collect();
    let partitions: usize = user_topics.iter().map(|t| t.partitions().len()).sum();
    match conn.output {
        Format::Json => print_json(&json!({
            "cluster_id": cluster_id,
            "controller_id": controller,
            "brokers": brokers.iter().map(|(id, host, port)| json!({
                "id": id, "host": host, "port": port,
                "controller": Some(*id) == controller,
            })).collect::<Vec<_>>(),
            "topics": user_topics.len(),
            "partitions": partitions,
        })),
        Format::Text => {
            let mut out = String::new();
            let mut t = Table::new(&[
                "CLUSTER-ID",
                "CONTROLLER",
                "BROKERS",
                "TOPICS",
                "PARTITIONS",
            ]);
            t.row(vec![
                cluster_id.clone().unwrap_or_else(|| "-".into()),
                controller
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                brokers.len().to_string(),
                user_topics.len().to_string(),
                partitions.to_string(),
            ]);
            out.push_str(&t.render());
            out.push('\n');
            let mut t = Table::new(&["BROKER-ID", "HOST", "PORT", "CONTROLLER"]);
            for (id, host, port) in &brokers {
                t.row(vec![
                    id.to_string(),
                    host.clone(),
                    port.to_string(),
                    if Some(*id) == controller { "yes" } else { "" }.to_string(),
                ]);
            }
            out.push_str(&t.render());
            print(&out)
        }
    }
}
