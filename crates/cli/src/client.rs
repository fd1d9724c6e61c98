//! What every client subcommand shares: connection flags, the librdkafka clients built from
//! them, and errors as short sentences that name the broker's error code.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Connection flags of every client subcommand.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnArgs {
    /// Bootstrap broker(s), HOST:PORT, comma-separated.
    #[arg(
        short = 'b',
        long = "brokers",
        global = true,
        value_name = "HOST:PORT,...",
        default_value = "localhost:9092"
    )]
    pub brokers: String,
    /// How long to wait for the broker(s) on each request, e.g. 10s, 500ms.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A librdkafka client property, e.g. `-X client.id=ops`. Repeatable.
    #[arg(
        short = 'X',
        long = "property",
        global = true,
        value_name = "KEY=VALUE"
    )]
    pub properties: Vec<String>,
    /// Output: human-readable text (tables, plain values) or JSON.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables for people; plain values for `consume`.
    Text,
    /// One JSON document (JSON lines for `consume`).
    Json,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration such as 10s, 500ms or 2m ({e})"))
}

/// A failed command: the sentence printed after `runnel: ` and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: u8,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code: 1,
        }
    }

    /// A command line that parses but makes no sense (clap's own usage errors also exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            exit_code: 2,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(format!("I/O error: {e}"))
    }
}

/// Kafka's name of an error code, e.g. `TOPIC_ALREADY_EXISTS`; librdkafka's local errors (which
/// the broker did not send) by librdkafka's name, e.g. `_TIMED_OUT`, except those that stand for
/// a broker answer.
pub fn code_name(code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::UnsupportedFeature => return "UNSUPPORTED_VERSION".into(),
        RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownPartition => {
            return "UNKNOWN_TOPIC_OR_PARTITION".into()
        }
        RDKafkaErrorCode::InvalidTopic => return "INVALID_TOPIC_EXCEPTION".into(),
        RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::MessageTimedOut => {
            return "_TIMED_OUT".into()
        }
        RDKafkaErrorCode::BrokerTransportFailure => return "_TRANSPORT".into(),
        _ => {}
    }
    let name = upper_snake(&format!("{code:?}"));
    if (code as i32) < 0 {
        format!("_{name}")
    } else {
        name
    }
}

/// `what failed: the reason (CODE)`, with a plainer reason for the common codes.
pub fn code_sentence(what: &str, code: RDKafkaErrorCode) -> String {
    let reason = match code {
        RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion => {
            "the broker does not support this request".to_string()
        }
        RDKafkaErrorCode::OperationTimedOut
        | RDKafkaErrorCode::RequestTimedOut
        | RDKafkaErrorCode::MessageTimedOut => "no answer from the broker in time".to_string(),
        RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure => {
            "cannot reach the broker".to_string()
        }
        _ => {
            // rdkafka's Display is "TopicAlreadyExists (Broker: Topic already exists)".
            let full = code.to_string();
            let inner = match (full.find(" ("), full.rfind(')')) {
                (Some(a), Some(b)) if b > a + 2 => &full[a + 2..b],
                _ => full.as_str(),
            };
            let s = inner
                .strip_prefix("Broker: ")
                .or_else(|| inner.strip_prefix("Local: "))
                .unwrap_or(inner)
                .to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    };
    format!("{what}: {reason} ({})", code_name(code))
}

pub fn kafka_error(what: &str, e: &KafkaError) -> CliError {
    match error_code(e) {
        Some(code) => CliError::new(code_sentence(what, code)),
        None => CliError::new(format!("{what}: {e}")),
    }
}

/// The context of every client: librdkafka's logs and error callbacks go to `tracing` at
/// debug level (RUST_LOG=debug shows them), so a tool prints only its answer and one sentence
/// when it fails. It remembers whether all brokers were reported down.
#[derive(Default)]
pub struct Quiet {
    pub all_brokers_down: AtomicBool,
}

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.all_brokers_down.store(true, Ordering::Relaxed);
        }
        tracing::debug!(target: "librdkafka", %error, reason);
    }
}

impl ConsumerContext for Quiet {}

impl ConnArgs {
    pub fn config(&self) -> CliResult<ClientConfig> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "runnel-cli")
            .set("allow.auto.create.topics", "false")
            .set(
                "socket.timeout.ms",
                millis(self.timeout).max(10).to_string(),
            );
        for p in &self.properties {
            let Some((k, v)) = p.split_once('=') else {
                return Err(CliError::usage(format!(
                    "-X '{p}' is not of the form key=value"
                )));
            };
            c.set(k.trim(), v.trim());
        }
        Ok(c)
    }

    pub fn timeout_ms(&self) -> i32 {
        millis(self.timeout).clamp(1, i32::MAX as u64) as i32
    }

    /// An admin client, once a broker has answered (so that an unreachable cluster is
    /// reported as such rather than as a timed-out operation).
    pub fn admin(&self) -> CliResult<AdminClient<Quiet>> {
        let admin: AdminClient<Quiet> = self
            .config()?
            .create_with_context(Quiet::default())
            .map_err(|e| CliError::new(format!("cannot create the Kafka client: {e}")))?;
        self.metadata(admin.inner(), None)?;
        Ok(admin)
    }

    /// A consumer that joins no group unless asked: for metadata, offsets and committed
    /// offsets of `group`.
    pub fn consumer(
        &self,
        group: Option<&str>,
        extra: &[(&str, &str)],
    ) -> CliResult<BaseConsumer<Quiet>> {
        let mut c = self.config()?;
        c.set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted");
        // librdkafka assigns partitions only with a group id; without a group we never
        // subscribe or commit, so this one only names the client.
        let anonymous = format!("runnel-cli-{}", std::process::id());
        c.set("group.id", group.unwrap_or(&anonymous));
        for (k, v) in extra {
            c.set(*k, *v);
        }
        // -X wins over our defaults.
        for p in &self.properties {
            if let Some((k, v)) = p.split_once('=') {
                c.set(k.trim(), v.trim());
            }
        }
        c.create_with_context(Quiet::default())
            .map_err(|e| CliError::new(format!("cannot create the Kafka consumer: {e}")))
    }

    pub fn producer<C: ProducerContext>(
        &self,
        context: C,
        extra: &[(&str, String)],
    ) -> CliResult<BaseProducer<C>> {
        let mut c = self.config()?;
        c.set("allow.auto.create.topics", "true");
        for (k, v) in extra {
            c.set(*k, v);
        }
        for p in &self.properties {
            if let Some((k, v)) = p.split_once('=') {
                c.set(k.trim(), v.trim());
            }
        }
        c.create_with_context(context)
            .map_err(|e| CliError::new(format!("cannot create the Kafka producer: {e}")))
    }

    pub fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Metadata of the cluster (all topics, or one), or a sentence saying the brokers cannot be
    /// reached.
    pub fn metadata<C: ClientContext>(
        &self,
        client: &rdkafka::client::Client<C>,
        topic: Option<&str>,
    ) -> CliResult<Metadata> {
        client
            .fetch_metadata(topic, self.timeout)
            .map_err(|e| self.unreachable_or(e, "cannot fetch metadata"))
    }

    /// A sentence for an error of a first request: most often the brokers are not there.
    pub fn unreachable_or(&self, e: KafkaError, what: &str) -> CliError {
        match error_code(&e) {
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve,
            ) => CliError::new(format!(
                "cannot reach a broker at {} within {} ({})",
                self.brokers,
                humantime::format_duration(self.timeout),
                code_name(error_code(&e).unwrap())
            )),
            _ => kafka_error(what, &e),
        }
    }
}

pub fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Waits for a future of the admin API (librdkafka answers on its own thread).
pub fn wait<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// The partitions of a topic from metadata, or UNKNOWN_TOPIC_OR_PARTITION.
pub fn topic_partitions(md: &Metadata, topic: &str) -> CliResult<Vec<i32>> {
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(unknown_topic(topic));
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Err(unknown_topic(topic));
        }
        return Err(CliError::new(code_sentence(
            &format!("topic '{topic}'"),
            code,
        )));
    }
    let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ps.sort_unstable();
    if ps.is_empty() {
        return Err(unknown_topic(topic));
    }
    Ok(ps)
}

pub fn unknown_topic(topic: &str) -> CliError {
    CliError::new(format!(
        "topic '{topic}' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
    ))
}

/// Log start and log end offsets of many partitions, two ListOffsets requests in all
/// (librdkafka's offsets-for-times with Kafka's special timestamps -2 and -1).
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> CliResult<BTreeMap<(String, i32), (i64, i64)>> {
    let start = list_offsets(consumer, partitions, Offset::Beginning, timeout)?;
    let end = list_offsets(consumer, partitions, Offset::End, timeout)?;
    Ok(partitions
        .iter()
        .map(|tp| {
            let s = start.get(tp).copied().flatten().unwrap_or(0);
            let e = end.get(tp).copied().flatten().unwrap_or(s);
            (tp.clone(), (s, e))
        })
        .collect())
}

/// ListOffsets: `spec` is Beginning (-2), End (-1) or Offset(timestamp ms). `None` where the
/// broker has no offset (a timestamp past the last record).
pub fn list_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[(String, i32)],
    spec: Offset,
    timeout: Duration,
) -> CliResult<BTreeMap<(String, i32), Option<i64>>> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition_offset(t, *p, spec)
            .map_err(|e| kafka_error("cannot list offsets", &e))?;
    }
    let res = consumer
        .offsets_for_times(tpl, timeout)
        .map_err(|e| kafka_error("cannot list offsets", &e))?;
    let mut out = BTreeMap::new();
    for el in res.elements() {
        if let Err(e) = el.error() {
            return Err(kafka_error(
                &format!("cannot list offsets of {}[{}]", el.topic(), el.partition()),
                &e,
            ));
        }
        let off = match el.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        };
        out.insert((el.topic().to_string(), el.partition()), off);
    }
    Ok(out)
}

/// Set by SIGINT or SIGTERM; follow-mode loops check it and finish cleanly.
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut i), Ok(mut t)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = i.recv() => {}
                    _ = t.recv() => {}
                }
                f.store(true, Ordering::SeqCst);
            });
        })
        .ok();
    flag
}

/// `k=v` pairs of repeatable flags.
pub fn parse_pairs(flag: &str, items: &[String]) -> CliResult<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(CliError::usage(format!(
                "{flag} '{s}' is not of the form key=value"
            ))),
        })
        .collect()
}

/// `TopicAlreadyExists` → `TOPIC_ALREADY_EXISTS`.
pub fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Kafka's name of an error code of a response decoded by our own protocol layer.
pub fn kafka_code_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => upper_snake(&format!("{e:?}")),
        None => format!("error code {code}"),
    }
}

/// The error code of any librdkafka error, admin operations included (which the rdkafka
/// crate's `rdkafka_error_code` leaves out).
pub fn error_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}
