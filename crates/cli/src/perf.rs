//! `runnel perf produce|consume`: throughput and latency, like Kafka's perf-test tools.
//!
//! Latencies go into an HDR histogram (microseconds, 3 significant digits). produce: from
//! handing a record to the client to its acknowledgement. consume: end to end, from the
//! record's timestamp (its create time) to its arrival here; meaningful while a producer runs.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Subcommand;
use hdrhistogram::Histogram;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use serde_json::json;

use crate::client::{
    code_sentence, error_code, kafka_error, parse_duration, stop_flag, topic_partitions, wait,
    CliError, CliResult, ConnArgs, Format,
};
use crate::output::{print, print_json};
use crate::produce::ProducerTuning;

#[derive(clap::Args)]
pub struct PerfArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: PerfCmd,
}

#[derive(Subcommand)]
enum PerfCmd {
    /// Produce records as fast as allowed and report throughput and latency.
    #[command(group(clap::ArgGroup::new("amount").required(true).args(["num_records", "duration"])))]
    Produce {
        topic: String,
        /// How many records to send.
        #[arg(short = 'n', long, value_name = "N")]
        num_records: Option<u64>,
        /// For how long to send (e.g. 30s); with --num-records, whichever ends first.
        #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Bytes of value per record.
        #[arg(short = 's', long, default_value_t = 100, value_name = "BYTES")]
        record_size: usize,
        /// Target rate in records/s (-1: as fast as possible).
        #[arg(short = 't', long, default_value_t = -1, allow_hyphen_values = true, value_name = "RECORDS/S")]
        throughput: i64,
        /// Create the topic with this many partitions if it does not exist.
        #[arg(short = 'p', long, value_name = "N")]
        partitions: Option<i32>,
        #[command(flatten)]
        tuning: ProducerTuning,
    },
    /// Consume records as fast as possible and report throughput and end-to-end latency.
    #[command(group(clap::ArgGroup::new("amount").required(true).args(["num_records", "duration"])))]
    Consume {
        topic: String,
        /// How many records to read.
        #[arg(short = 'n', long, value_name = "N")]
        num_records: Option<u64>,
        /// For how long to read (e.g. 30s); with --num-records, whichever ends first.
        #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Read as a member of this group (committing offsets); default: read every partition
        /// from its start, committing nothing.
        #[arg(short = 'g', long)]
        group: Option<String>,
        /// Give up when no record arrives for this long.
        #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        idle_timeout: Duration,
    },
}

pub fn run(args: PerfArgs) -> CliResult<()> {
    let conn = &args.conn;
    match args.cmd {
        PerfCmd::Produce {
            topic,
            num_records,
            duration,
            record_size,
            throughput,
            partitions,
            tuning,
        } => produce(
            conn,
            &topic,
            num_records,
            duration,
            record_size,
            throughput,
            partitions,
            &tuning,
        ),
        PerfCmd::Consume {
            topic,
            num_records,
            duration,
            group,
            idle_timeout,
        } => consume(
            conn,
            &topic,
            num_records,
            duration,
            group.as_deref(),
            idle_timeout,
        ),
    }
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to about 50 days, 3 significant digits; larger values saturate.
    Histogram::new_with_bounds(1, 1 << 42, 3).expect("valid histogram parameters")
}

/// Measurements shared between the sending loop and librdkafka's delivery callbacks.
struct Stats {
    start: Instant,
    acked: AtomicU64,
    failed: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Stats {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason);
    }
}

impl ProducerContext for Stats {
    /// Microseconds since `start` when the record was handed to the client.
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                let now_us = self.start.elapsed().as_micros() as u64;
                let lat = now_us.saturating_sub(sent_us as u64).max(1);
                self.latency_us.lock().unwrap().saturating_record(lat);
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

/// A live progress line on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", line());
            let _ = e.flush();
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "avg": round3(h.mean() / 1000.0),
        "p50": ms(h.value_at_quantile(0.50)),
        "p95": ms(h.value_at_quantile(0.95)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99_9": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no latency measured".into();
    }
    format!(
        "latency ms: avg {:.2}, p50 {:.2}, p95 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        h.mean() / 1000.0,
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    )
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

const MB: f64 = 1024.0 * 1024.0;

/// A payload of pseudo-random upper-case letters (as Kafka's tool), the same for every record.
fn payload(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn produce(
    conn: &ConnArgs,
    topic: &str,
    num_records: Option<u64>,
    duration: Option<Duration>,
    record_size: usize,
    throughput: i64,
    partitions: Option<i32>,
    tuning: &ProducerTuning,
) -> CliResult<()> {
    if throughput == 0 || throughput < -1 {
        return Err(CliError::usage(
            "--throughput must be a positive rate, or -1 for no limit",
        ));
    }
    if let Some(p) = partitions {
        if p < 1 {
            return Err(CliError::usage("--partitions must be at least 1"));
        }
        let admin = conn.admin()?;
        let res = wait(admin.create_topics(
            &[NewTopic::new(topic, p, TopicReplication::Fixed(-1))],
            &conn.admin_options(),
        ))
        .map_err(|e| conn.unreachable_or(e, &format!("cannot create topic '{topic}'")))?;
        match res.into_iter().next() {
            Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
            Some(Err((_, code))) => {
                return Err(CliError::new(code_sentence(
                    &format!("cannot create topic '{topic}'"),
                    code,
                )))
            }
        }
    }
    let stats = Stats {
        start: Instant::now(),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency_us: Mutex::new(new_histogram()),
        first_error: Mutex::new(None),
    };
    let mut props = tuning.properties(conn.timeout.max(Duration::from_secs(30)));
    props.push(("queue.buffering.max.messages", "1000000".into()));
    let producer = conn.producer(stats, &props)?;
    conn.metadata(producer.client(), None)?;
    let value = payload(record_size);
    let stop = stop_flag();
    let mut progress = Progress::new();
    let ctx = producer.context().clone();
    let start = ctx.start;
    let mut sent: u64 = 0;
    loop {
        if num_records.is_some_and(|n| sent >= n)
            || duration.is_some_and(|d| start.elapsed() >= d)
            || stop.load(Ordering::Relaxed)
            || ctx.failed.load(Ordering::Relaxed) > 0
        {
            break;
        }
        if throughput > 0 {
            // Never ahead of the target rate: wait (serving callbacks) until this record is due.
            let due = Duration::from_secs_f64(sent as f64 / throughput as f64);
            let elapsed = start.elapsed();
            if due > elapsed {
                producer.poll((due - elapsed).min(Duration::from_millis(10)));
                continue;
            }
        }
        let sent_us = start.elapsed().as_micros() as usize;
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, sent_us).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(kafka_error(
                        &format!("cannot produce to topic '{topic}'"),
                        &e,
                    ))
                }
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
        progress.tick(|| {
            let secs = start.elapsed().as_secs_f64();
            let acked = ctx.acked.load(Ordering::Relaxed);
            format!(
                "{sent} records sent, {acked} acknowledged, {:.1} records/s ({:.2} MB/s)",
                acked as f64 / secs,
                acked as f64 * record_size as f64 / MB / secs,
            )
        });
    }
    let flushed =
        producer.flush(conn.timeout.max(Duration::from_secs(30)) + Duration::from_secs(5));
    progress.clear();
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let acked = ctx.acked.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let hist = ctx.latency_us.lock().unwrap().clone();
    let bytes = acked * record_size as u64;
    let rps = acked as f64 / elapsed;
    let mbps = bytes as f64 / MB / elapsed;
    match conn.output {
        Format::Json => print_json(&json!({
            "topic": topic,
            "records": acked,
            "failed": failed,
            "record_size": record_size,
            "bytes": bytes,
            "elapsed_secs": round3(elapsed),
            "records_per_sec": round3(rps),
            "mb_per_sec": round3(mbps),
            "latency_ms": latency_json(&hist),
        }))?,
        Format::Text => print(&format!(
            "{acked} records sent, {rps:.1} records/s ({mbps:.2} MB/s) in {elapsed:.2} s\n{}\n",
            latency_text(&hist)
        ))?,
    }
    if let Some(e) = ctx.first_error.lock().unwrap().take() {
        return Err(kafka_error(
            &format!("{failed} record(s) to topic '{topic}' failed"),
            &e,
        ));
    }
    if let Err(e) = flushed {
        return Err(kafka_error(
            &format!("not every record to topic '{topic}' was acknowledged"),
            &e,
        ));
    }
    Ok(())
}

fn consume(
    conn: &ConnArgs,
    topic: &str,
    num_records: Option<u64>,
    duration: Option<Duration>,
    group: Option<&str>,
    idle_timeout: Duration,
) -> CliResult<()> {
    let consumer = match group {
        Some(g) => conn.consumer(
            Some(g),
            &[
                ("auto.offset.reset", "earliest"),
                ("enable.auto.commit", "true"),
            ],
        )?,
        None => conn.consumer(None, &[("auto.offset.reset", "earliest")])?,
    };
    let md = conn.metadata(consumer.client(), Some(topic))?;
    let parts = topic_partitions(&md, topic)?;
    match group {
        Some(g) => consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_error(&format!("cannot join group '{g}'"), &e))?,
        None => {
            let mut tpl = TopicPartitionList::new();
            for p in &parts {
                tpl.add_partition_offset(topic, *p, Offset::Beginning)
                    .map_err(|e| kafka_error("cannot assign partitions", &e))?;
            }
            consumer
                .assign(&tpl)
                .map_err(|e| kafka_error("cannot assign partitions", &e))?;
        }
    }
    let stop = stop_flag();
    let mut progress = Progress::new();
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last_record = Instant::now();
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut timed_out = false;
    loop {
        if num_records.is_some_and(|n| records >= n)
            || duration.is_some_and(|d| start.elapsed() >= d)
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
        if last_record.elapsed() >= idle_timeout {
            timed_out = true;
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let now_ms = crate::timefmt::now_ms();
                first.get_or_insert_with(Instant::now);
                last_record = Instant::now();
                records += 1;
                bytes += m.payload_len() as u64 + m.key().map_or(0, |k| k.len() as u64);
                if let Some(ts) = m.timestamp().to_millis() {
                    hist.saturating_record(((now_ms - ts).max(0) as u64 * 1000).max(1));
                }
            }
            Some(Err(e)) => match error_code(&e) {
                Some(
                    code @ (RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::UnsupportedVersion),
                ) => {
                    return Err(CliError::new(code_sentence(
                        &format!("cannot consume topic '{topic}'"),
                        code,
                    )))
                }
                _ => tracing::debug!(error = %e, "consumer error"),
            },
        }
        progress.tick(|| {
            let secs = start.elapsed().as_secs_f64();
            format!(
                "{records} records, {:.1} records/s ({:.2} MB/s)",
                records as f64 / secs,
                bytes as f64 / MB / secs
            )
        });
    }
    progress.clear();
    if group.is_some() {
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let rps = records as f64 / elapsed;
    let mbps = bytes as f64 / MB / elapsed;
    let first_ms = first.map(|f| (f - start).as_secs_f64() * 1000.0);
    match conn.output {
        Format::Json => print_json(&json!({
            "topic": topic,
            "records": records,
            "bytes": bytes,
            "elapsed_secs": round3(elapsed),
            "records_per_sec": round3(rps),
            "mb_per_sec": round3(mbps),
            "first_record_ms": first_ms.map(round3),
            "end_to_end_latency_ms": latency_json(&hist),
        }))?,
        Format::Text => print(&format!(
            "{records} records consumed, {:.2} MB, {rps:.1} records/s ({mbps:.2} MB/s) in {elapsed:.2} s\n\
             first record after {}\nend-to-end {}\n",
            bytes as f64 / MB,
            first_ms.map(|m| format!("{m:.1} ms")).unwrap_or_else(|| "-".into()),
            latency_text(&hist)
        ))?,
    }
    if timed_out {
        if let Some(n) = num_records {
            return Err(CliError::new(format!(
                "consumed only {records} of {n} records: none arrived for {}",
                humantime::format_duration(idle_timeout)
            )));
        }
    }
    Ok(())
}
