//! `runnel topic create|list|describe|alter-config|add-partitions|delete`.

use std::collections::BTreeMap;

use clap::Subcommand;
use rdkafka::admin::{
    AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic, OwnedResourceSpecifier,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;

use crate::client::{
    code_sentence, parse_pairs, topic_partitions, unknown_topic, wait, watermarks, CliError,
    CliResult, ConnArgs, Format,
};
use crate::output::{print, print_json, Table};

#[derive(clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: TopicCmd,
}

#[derive(Subcommand)]
enum TopicCmd {
    /// Create topics.
    Create {
        /// Names of the topics to create.
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(short = 'p', long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(short = 'r', long)]
        replication_factor: Option<i32>,
        /// A topic config, e.g. `-c retention.ms=3600000`. Repeatable.
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed when a topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics (names starting with `__`).
        #[arg(short = 'i', long)]
        internal: bool,
    },
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and configs.
    Describe {
        topic: String,
        /// Show every config, not only those set on the topic or the broker.
        #[arg(short = 'a', long)]
        all_configs: bool,
    },
    /// Set or delete topic configs (the other configs set on the topic are kept).
    AlterConfig {
        topic: String,
        /// A config to set, e.g. `--set retention.ms=60000`. Repeatable.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config to remove from the topic (back to the broker's default). Repeatable.
        #[arg(short = 'd', long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic.
    AddPartitions {
        topic: String,
        /// How many partitions to add.
        #[arg(
            short = 'n',
            long,
            required_unless_present = "total",
            conflicts_with = "total"
        )]
        num: Option<i32>,
        /// The partition count wanted in all.
        #[arg(long)]
        total: Option<i32>,
    },
    /// Delete topics and their data.
    Delete {
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
        /// Succeed when a topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

pub fn run(args: TopicArgs) -> CliResult<()> {
    let conn = &args.conn;
    match args.cmd {
        TopicCmd::Create {
            topics,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => create(
            conn,
            &topics,
            partitions.unwrap_or(-1),
            replication_factor.unwrap_or(-1),
            &configs,
            if_not_exists,
        ),
        TopicCmd::List { internal } => list(conn, internal),
        TopicCmd::Describe { topic, all_configs } => describe(conn, &topic, all_configs),
        TopicCmd::AlterConfig { topic, set, delete } => alter_config(conn, &topic, &set, &delete),
        TopicCmd::AddPartitions { topic, num, total } => add_partitions(conn, &topic, num, total),
        TopicCmd::Delete { topics, if_exists } => delete(conn, &topics, if_exists),
    }
}

fn create(
    conn: &ConnArgs,
    topics: &[String],
    partitions: i32,
    replication: i32,
    configs: &[String],
    if_not_exists: bool,
) -> CliResult<()> {
    if partitions == 0 || partitions < -1 {
        return Err(CliError::usage("--partitions must be at least 1"));
    }
    if replication == 0 || replication < -1 {
        return Err(CliError::usage("--replication-factor must be at least 1"));
    }
    let configs = parse_pairs("--config", configs)?;
    let admin = conn.admin()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(t, partitions, TopicReplication::Fixed(replication));
            for (k, v) in &configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let results = wait(admin.create_topics(&new, &conn.admin_options()))
        .map_err(|e| conn.unreachable_or(e, "cannot create topics"))?;
    let mut created = Vec::new();
    let mut existed = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) if if_not_exists => existed.push(t),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                errors.push(format!("topic '{t}' already exists (TOPIC_ALREADY_EXISTS)"))
            }
            Err((t, code)) => {
                errors.push(code_sentence(&format!("cannot create topic '{t}'"), code))
            }
        }
    }
    match conn.output {
        Format::Json => print_json(&json!({ "created": created, "existing": existed }))?,
        Format::Text => {
            let mut s = String::new();
            for t in &created {
                s.push_str(&format!("created topic '{t}'\n"));
            }
            for t in &existed {
                s.push_str(&format!("topic '{t}' already exists\n"));
            }
            print(&s)?;
        }
    }
    fail_with(errors)
}

/// All sentences but the last go to stderr; the last is the command's error.
fn fail_with(mut errors: Vec<String>) -> CliResult<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for e in errors {
        eprintln!("runnel: {e}");
    }
    Err(CliError::new(last))
}

fn list(conn: &ConnArgs, internal: bool) -> CliResult<()> {
    let consumer = conn.consumer(None, &[])?;
    let md = conn.metadata(consumer.client(), None)?;
    let mut topics: Vec<(String, usize, usize)> = md
        .topics()
        .iter()
        .filter(|t| internal || !t.name().starts_with("__"))
        .map(|t| {
            let rf = t
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(0);
            (t.name().to_string(), t.partitions().len(), rf)
        })
        .collect();
    topics.sort();
    match conn.output {
        Format::Json => print_json(&json!(topics
            .iter()
            .map(|(n, p, r)| json!({"name": n, "partitions": p, "replication_factor": r}))
            .collect::<Vec<_>>())),
        Format::Text => {
            let mut t = Table::new(&["TOPIC", "PARTITIONS", "REPLICAS"]);
            for (n, p, r) in &topics {
                t.row(vec![n.clone(), p.to_string(), r.to_string()]);
            }
            print(&t.render())
        }
    }
}

fn source_name(s: &ConfigSource) -> &'static str {
    match s {
        ConfigSource::Unknown => "UNKNOWN",
        ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
        ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
        ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
        ConfigSource::Default => "DEFAULT_CONFIG",
    }
}

fn describe_configs(conn: &ConnArgs, topic: &str) -> CliResult<ConfigResource> {
    let admin = conn.admin()?;
    let res =
        wait(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &conn.admin_options()))
            .map_err(|e| {
                conn.unreachable_or(e, &format!("cannot describe configs of topic '{topic}'"))
            })?;
    match res.into_iter().next() {
        Some(Ok(r)) => Ok(r),
        Some(Err(RDKafkaErrorCode::UnknownTopicOrPartition)) => Err(unknown_topic(topic)),
        Some(Err(code)) => Err(CliError::new(code_sentence(
            &format!("cannot describe configs of topic '{topic}'"),
            code,
        ))),
        None => Err(CliError::new(format!(
            "cannot describe configs of topic '{topic}': empty answer"
        ))),
    }
}

fn describe(conn: &ConnArgs, topic: &str, all_configs: bool) -> CliResult<()> {
    let consumer = conn.consumer(None, &[])?;
    let md = conn.metadata(consumer.client(), Some(topic))?;
    let ids = topic_partitions(&md, topic)?;
    let mt = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| unknown_topic(topic))?;
    let tps: Vec<(String, i32)> = ids.iter().map(|p| (topic.to_string(), *p)).collect();
    let marks = watermarks(&consumer, &tps, conn.timeout)?;
    let mut parts: Vec<_> = mt.partitions().iter().collect();
    parts.sort_by_key(|p| p.id());
    let configs = describe_configs(conn, topic)?;
    let mut entries: Vec<_> = configs
        .entries
        .iter()
        .filter(|e| all_configs || !(e.is_default || matches!(e.source, ConfigSource::Default)))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    match conn.output {
        Format::Json => {
            let partitions: Vec<_> = parts
                .iter()
                .map(|p| {
                    let (start, end) = marks
                        .get(&(topic.to_string(), p.id()))
                        .copied()
                        .unwrap_or((0, 0));
                    json!({
                        "partition": p.id(),
                        "leader": p.leader(),
                        "replicas": p.replicas(),
                        "isr": p.isr(),
                        "log_start_offset": start,
                        "log_end_offset": end,
                    })
                })
                .collect();
            let configs: Vec<_> = entries
                .iter()
                .map(|e| {
                    json!({
                        "name": e.name,
                        "value": e.value,
                        "source": source_name(&e.source),
                        "default": e.is_default,
                        "read_only": e.is_read_only,
                        "sensitive": e.is_sensitive,
                    })
                })
                .collect();
            print_json(&json!({
                "name": topic,
                "partitions": partitions,
                "configs": configs,
            }))
        }
        Format::Text => {
            let mut out = String::new();
            let rf = parts.iter().map(|p| p.replicas().len()).max().unwrap_or(0);
            let mut t = Table::new(&["TOPIC", "PARTITIONS", "REPLICAS"]);
            t.row(vec![
                topic.to_string(),
                parts.len().to_string(),
                rf.to_string(),
            ]);
            out.push_str(&t.render());
            out.push('\n');
            let mut t = Table::new(&[
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG-START-OFFSET",
                "LOG-END-OFFSET",
            ]);
            let list = |v: &[i32]| {
                v.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for p in &parts {
                let (start, end) = marks
                    .get(&(topic.to_string(), p.id()))
                    .copied()
                    .unwrap_or((0, 0));
                t.row(vec![
                    p.id().to_string(),
                    p.leader().to_string(),
                    list(p.replicas()),
                    list(p.isr()),
                    start.to_string(),
                    end.to_string(),
                ]);
            }
            out.push_str(&t.render());
            out.push('\n');
            if entries.is_empty() {
                out.push_str("(every config has its default value; --all-configs lists them)\n");
            } else {
                let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
                for e in &entries {
                    let v = if e.is_sensitive {
                        "(sensitive)".to_string()
                    } else {
                        e.value.clone().unwrap_or_else(|| "-".into())
                    };
                    t.row(vec![e.name.clone(), v, source_name(&e.source).to_string()]);
                }
                out.push_str(&t.render());
            }
            print(&out)
        }
    }
}

fn alter_config(conn: &ConnArgs, topic: &str, set: &[String], delete: &[String]) -> CliResult<()> {
    if set.is_empty() && delete.is_empty() {
        return Err(CliError::usage(
            "nothing to change: give --set KEY=VALUE and/or --delete KEY",
        ));
    }
    let set = parse_pairs("--set", set)?;
    // AlterConfigs replaces the topic's whole config set, so start from the configs set on the
    // topic now (as kafka-configs.sh did before KIP-339), then apply the changes.
    let current = describe_configs(conn, topic)?;
    let mut wanted: BTreeMap<String, String> = current
        .entries
        .iter()
        .filter(|e| matches!(e.source, ConfigSource::DynamicTopic) && !e.is_default)
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    for k in delete {
        wanted.remove(k.trim());
    }
    for (k, v) in &set {
        wanted.insert(k.clone(), v.clone());
    }
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in &wanted {
        change = change.set(k, v);
    }
    let admin = conn.admin()?;
    let what = format!("cannot alter configs of topic '{topic}'");
    let res = wait(admin.alter_configs(&[change], &conn.admin_options()))
        .map_err(|e| conn.unreachable_or(e, &what))?;
    match res.into_iter().next() {
        Some(Ok(_)) => {}
        Some(Err((
            OwnedResourceSpecifier::Topic(_),
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ))) => return Err(unknown_topic(topic)),
        Some(Err((_, code))) => return Err(CliError::new(code_sentence(&what, code))),
        None => return Err(CliError::new(format!("{what}: empty answer"))),
    }
    let set_map: BTreeMap<_, _> = set.iter().cloned().collect();
    match conn.output {
        Format::Json => print_json(&json!({
            "topic": topic,
            "set": set_map,
            "deleted": delete,
        })),
        Format::Text => {
            let mut s = String::new();
            for (k, v) in &set {
                s.push_str(&format!("set {k}={v} on topic '{topic}'\n"));
            }
            for k in delete {
                s.push_str(&format!("deleted {k} from topic '{topic}'\n"));
            }
            print(&s)
        }
    }
}

fn add_partitions(
    conn: &ConnArgs,
    topic: &str,
    num: Option<i32>,
    total: Option<i32>,
) -> CliResult<()> {
    let consumer = conn.consumer(None, &[])?;
    let md = conn.metadata(consumer.client(), Some(topic))?;
    let current = topic_partitions(&md, topic)?.len() as i32;
    let new_total = match (num, total) {
        (Some(n), _) if n < 1 => return Err(CliError::usage("--num must be at least 1")),
        (Some(n), _) => current + n,
        (None, Some(t)) if t <= current => {
            return Err(CliError::new(format!(
            "topic '{topic}' has {current} partitions; --total must be more (INVALID_PARTITIONS)"
        )))
        }
        (None, Some(t)) => t,
        (None, None) => return Err(CliError::usage("give --num N or --total N")),
    };
    let admin = conn.admin()?;
    let what = format!("cannot add partitions to topic '{topic}'");
    let res = wait(admin.create_partitions(
        &[NewPartitions::new(topic, new_total as usize)],
        &conn.admin_options(),
    ))
    .map_err(|e| conn.unreachable_or(e, &what))?;
    match res.into_iter().next() {
        Some(Ok(_)) => {}
        Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition))) => {
            return Err(unknown_topic(topic))
        }
        Some(Err((_, code))) => return Err(CliError::new(code_sentence(&what, code))),
        None => return Err(CliError::new(format!("{what}: empty answer"))),
    }
    match conn.output {
        Format::Json => print_json(&json!({
            "topic": topic,
            "previous_partitions": current,
            "partitions": new_total,
        })),
        Format::Text => print(&format!(
            "topic '{topic}' now has {new_total} partitions (was {current})\n"
        )),
    }
}

fn delete(conn: &ConnArgs, topics: &[String], if_exists: bool) -> CliResult<()> {
    let admin = conn.admin()?;
    let names: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    let results = wait(admin.delete_topics(&names, &conn.admin_options()))
        .map_err(|e| conn.unreachable_or(e, "cannot delete topics"))?;
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(t) => deleted.push(t),
            Err((t, RDKafkaErrorCode::UnknownTopicOrPartition)) if if_exists => missing.push(t),
            Err((t, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                errors.push(unknown_topic(&t).message)
            }
            Err((t, code)) => {
                errors.push(code_sentence(&format!("cannot delete topic '{t}'"), code))
            }
        }
    }
    match conn.output {
        Format::Json => print_json(&json!({ "deleted": deleted, "missing": missing }))?,
        Format::Text => {
            let mut s = String::new();
            for t in &deleted {
                s.push_str(&format!("deleted topic '{t}'\n"));
            }
            for t in &missing {
                s.push_str(&format!("topic '{t}' does not exist\n"));
            }
            print(&s)?;
        }
    }
    fail_with(errors)
}
