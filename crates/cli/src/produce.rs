//! `runnel produce TOPIC`: one record per line of stdin or --file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};
use rdkafka::Message;
use serde_json::json;

use crate::client::{
    code_sentence, error_code, millis, parse_pairs, CliError, CliResult, ConnArgs, Format,
};
use crate::output::{print, print_json};

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic to produce to (created on first use if the broker allows it).
    topic: String,
    /// Read records from this file instead of stdin.
    #[arg(short = 'f', long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without SEP has no key).
    #[arg(short = 'k', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, e.g. `-H source=cli`. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    #[command(flatten)]
    tuning: ProducerTuning,
    /// Send every record to this partition (default: by key hash, or spread when no key).
    #[arg(short = 'p', long)]
    partition: Option<i32>,
}

/// Flags shared by `produce` and `perf produce`.
#[derive(clap::Args, Clone, Debug)]
pub struct ProducerTuning {
    /// Compression of record batches.
    #[arg(short = 'z', long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Acknowledgements to wait for: 0 (none), 1 (the leader) or all (-1: every in-sync replica).
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn parse_acks(s: &str) -> Result<String, String> {
    match s.trim() {
        "0" => Ok("0".into()),
        "1" => Ok("1".into()),
        "all" | "-1" => Ok("all".into()),
        _ => Err(format!("'{s}' is not 0, 1, all or -1")),
    }
}

impl ProducerTuning {
    /// librdkafka properties. acks=0 cannot be idempotent; otherwise keep librdkafka's default.
    pub fn properties(&self, timeout: Duration) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("compression.codec", self.compression.name().to_string()),
            ("acks", self.acks.clone()),
            // A record not acknowledged within this is reported as failed.
            ("message.timeout.ms", millis(timeout).max(1000).to_string()),
        ];
        if self.acks != "all" {
            v.push(("enable.idempotence", "false".into()));
        }
        v
    }
}

/// Counts acknowledged records per partition and keeps the first failure.
#[derive(Default)]
struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    per_partition: Mutex<BTreeMap<i32, u64>>,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                *self
                    .per_partition
                    .lock()
                    .unwrap()
                    .entry(m.partition())
                    .or_default() += 1;
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    *first = Some(e.clone());
                }
            }
        }
    }
}

pub fn run(args: ProduceArgs) -> CliResult<()> {
    let conn = &args.conn;
    let headers = parse_pairs("--header", &args.headers)?;
    let sep = args.key_separator.as_deref().map(str::as_bytes);
    if sep == Some(b"") {
        return Err(CliError::usage("--key-separator must not be empty"));
    }
    let input: Box<dyn Read> = match &args.file {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let producer = conn.producer(Deliveries::default(), &args.tuning.properties(conn.timeout))?;
    // Fails early, with a clear sentence, when no broker answers.
    conn.metadata(producer.client(), None)?;

    let topic = args.topic.as_str();
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let mut sent: u64 = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match sep {
            Some(sep) => match find(&line, sep) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => (None, &line[..]),
            },
            None => (None, &line[..]),
        };
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in &headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = BaseRecord::to(topic).payload(value).headers(hs);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(produce_error(topic, &e)),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        if producer.context().failed.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    // Every record has either been acknowledged or failed by message.timeout.ms.
    let flush_wait = conn.timeout + Duration::from_secs(5);
    let flushed = producer.flush(flush_wait);
    let ctx = producer.context();
    if let Some(e) = ctx.first_error.lock().unwrap().take() {
        return Err(produce_error(topic, &e));
    }
    if let Err(e) = flushed {
        return Err(produce_error(topic, &e));
    }
    let acked = ctx.acked.load(Ordering::Relaxed);
    debug_assert_eq!(acked, sent);
    let per_partition = ctx.per_partition.lock().unwrap().clone();
    match conn.output {
        Format::Json => print_json(&json!({
            "topic": topic,
            "records": acked,
            "partitions": per_partition
                .iter()
                .map(|(p, n)| json!({"partition": p, "records": n}))
                .collect::<Vec<_>>(),
        })),
        Format::Text => print(&format!(
            "produced {acked} record{} to topic '{topic}'\n",
            if acked == 1 { "" } else { "s" }
        )),
    }
}

fn produce_error(topic: &str, e: &KafkaError) -> CliError {
    let what = format!("cannot produce to topic '{topic}'");
    match error_code(e) {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            CliError::new(format!(
                "{what}: it does not exist and the broker did not create it \
                 (UNKNOWN_TOPIC_OR_PARTITION)"
            ))
        }
        Some(RDKafkaErrorCode::UnknownPartition) => CliError::new(format!(
            "{what}: no such partition (UNKNOWN_TOPIC_OR_PARTITION)"
        )),
        Some(code) => CliError::new(code_sentence(&what, code)),
        None => CliError::new(format!("{what}: {e}")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
