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
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
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
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Produce at a fixed rate and consume in the same process: latency from each produce call
    /// to the consumer's receipt of the record.
    #[command(group(clap::ArgGroup::new("amount").required(true).args(["num_records", "duration"])))]
    E2e {
        topic: String,
        /// How many records to send.
        #[arg(short = 'n', long, value_name = "N")]
        num_records: Option<u64>,
        /// For how long to send (e.g. 30s); with --num-records, whichever ends first.
        #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Bytes of value per record (at least 8: the send instant is in the first 8).
        #[arg(short = 's', long, default_value_t = 1024, value_name = "BYTES")]
        record_size: usize,
        /// The fixed rate, records/s.
        #[arg(short = 't', long, value_name = "RECORDS/S")]
        throughput: u64,
        /// Create the topic with this many partitions if it does not exist.
        #[arg(short = 'p', long, value_name = "N")]
        partitions: Option<i32>,
        /// Give up waiting for the last records when none arrives for this long.
        #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        idle_timeout: Duration,
        #[command(flatten)]
        tuning: ProducerTuning,
        #[command(flatten)]
        load: LoadArgs,
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

/// How `perf produce` and `perf e2e` shape their load.
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// How long the client waits to fill a batch (librdkafka `linger.ms`); default: the
    /// client's (5 ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    linger: Option<Duration>,
    /// Largest record batch in bytes (librdkafka `batch.size`; `message.max.bytes` is raised
    /// to fit it); default: the client's (1,000,000).
    #[arg(long, value_name = "BYTES")]
    batch_size: Option<u32>,
    /// Record values: `letters`, the same pseudo-random letters in every record (as Kafka's
    /// tool), or `half-random`, a different value in every record, half of its bytes random
    /// and half zeros (compresses to about half).
    #[arg(long, value_enum, default_value_t = Payload::Letters)]
    payload: Payload,
    /// Send record i to partition i mod N (default: the client's partitioner, which spreads
    /// records without a key in sticky batches).
    #[arg(long)]
    round_robin: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    Letters,
    HalfRandom,
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Payload::Letters => "letters",
            Payload::HalfRandom => "half-random",
        }
    }
}

impl LoadArgs {
    fn properties(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(l) = self.linger {
            v.push(("linger.ms", format!("{}", l.as_secs_f64() * 1000.0)));
        }
        if let Some(b) = self.batch_size {
            v.push(("batch.size", b.to_string()));
            // A batch must fit in a request; librdkafka's default request bound is 1,000,000.
            v.push((
                "message.max.bytes",
                (u64::from(b) + 65_536).max(1_000_000).to_string(),
            ));
        }
        v
    }
}

/// The values records are cut from: with `half-random`, a pool in which every aligned block of
/// 256 bytes is random or zero in turn, cut at a different offset for each record.
struct Values {
    pool: Vec<u8>,
    size: usize,
    varying: bool,
}

impl Values {
    const POOL_WINDOWS: usize = 1 << 16;

    fn new(kind: Payload, size: usize) -> Values {
        match kind {
            Payload::Letters => Values {
                pool: payload(size),
                size,
                varying: false,
            },
            Payload::HalfRandom => {
                let mut x: u64 = 0x2545_F491_4F6C_DD1D;
                let pool = (0..Self::POOL_WINDOWS + size)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if (i / 256) % 2 == 0 {
                            (x >> 24) as u8
                        } else {
                            0
                        }
                    })
                    .collect();
                Values {
                    pool,
                    size,
                    varying: true,
                }
            }
        }
    }

    /// The value of record `i`.
    fn get(&self, i: u64) -> &[u8] {
        if !self.varying {
            return &self.pool[..self.size];
        }
        // 8191 is odd, so consecutive records start at different offsets across the pool.
        let off = (i.wrapping_mul(8191) % Self::POOL_WINDOWS as u64) as usize;
        &self.pool[off..off + self.size]
    }
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
            load,
        } => produce(
            conn,
            &topic,
            num_records,
            duration,
            record_size,
            throughput,
            partitions,
            &tuning,
            &load,
        ),
        PerfCmd::E2e {
            topic,
            num_records,
            duration,
            record_size,
            throughput,
            partitions,
            idle_timeout,
            tuning,
            load,
        } => e2e(
            conn,
            &E2eSpec {
                topic: &topic,
                num_records,
                duration,
                record_size,
                rate: throughput,
                partitions,
                idle_timeout,
            },
            &tuning,
            &load,
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
    /// Produce latencies (one lock per delivery for both).
    latency: Mutex<Latencies>,
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
                let mut latency = self.latency.lock().unwrap();
                latency.histogram_us.saturating_record(lat);
                latency.by_second.record(sent_us as u64, lat);
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

/// Latencies of the records a run has measured: all of them, and by the second they were sent
/// in.
struct Latencies {
    histogram_us: Histogram<u64>,
    by_second: BySecond,
}

/// Latencies of the records sent in one second of a run.
#[derive(Clone, Copy, Default)]
struct SecondStats {
    records: u64,
    over_5ms: u64,
    over_20ms: u64,
    max_us: u64,
}

/// Latency by the second (since the run's start) each record was sent in: shows *when* a run's
/// tail happened, to set it beside the broker's and the kernel's activity at that time.
#[derive(Default)]
struct BySecond {
    seconds: Vec<SecondStats>,
}

impl BySecond {
    /// A day of seconds; later records count in the last one.
    const SECONDS_MAX: usize = 86_400;

    fn record(&mut self, sent_us: u64, latency_us: u64) {
        let i = ((sent_us / 1_000_000) as usize).min(Self::SECONDS_MAX - 1);
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, SecondStats::default());
        }
        let s = &mut self.seconds[i];
        s.records += 1;
        s.over_5ms += u64::from(latency_us > 5_000);
        s.over_20ms += u64::from(latency_us > 20_000);
        s.max_us = s.max_us.max(latency_us);
    }

    fn json(&self) -> serde_json::Value {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "second": i,
                    "records": s.records,
                    "over_5ms": s.over_5ms,
                    "over_20ms": s.over_20ms,
                    "max_ms": ms(s.max_us),
                })
            })
            .collect()
    }

    /// One line per second whose slowest record took more than 20 ms.
    fn slow_text(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.seconds.iter().enumerate() {
            if s.max_us > 20_000 {
                out.push_str(&format!(
                    "  second {i}: {} records, {} over 5 ms, {} over 20 ms, max {:.1} ms\n",
                    s.records,
                    s.over_5ms,
                    s.over_20ms,
                    ms(s.max_us)
                ));
            }
        }
        out
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

/// With `--partitions`, creates the topic with that many partitions unless it exists.
fn create_topic(conn: &ConnArgs, topic: &str, partitions: Option<i32>) -> CliResult<()> {
    let Some(p) = partitions else {
        return Ok(());
    };
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
        Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(()),
        Some(Err((_, code))) => Err(CliError::new(code_sentence(
            &format!("cannot create topic '{topic}'"),
            code,
        ))),
    }
}

/// The partitions of `topic` as the client sees them (waiting, bounded, until it has as many as
/// `expected`, which a topic just created may not show at once).
fn partition_count<C: ClientContext>(
    conn: &ConnArgs,
    client: &rdkafka::client::Client<C>,
    topic: &str,
    expected: Option<i32>,
) -> CliResult<i32> {
    let deadline = Instant::now() + conn.timeout;
    loop {
        let md = conn.metadata(client, Some(topic))?;
        let n = topic_partitions(&md, topic)?.len() as i32;
        if expected.is_none_or(|e| n >= e) || Instant::now() >= deadline {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The producer of `perf produce` and `perf e2e`, once the cluster has answered; its context
/// counts acknowledgements and their latency from now.
fn perf_producer(
    conn: &ConnArgs,
    tuning: &ProducerTuning,
    load: &LoadArgs,
) -> CliResult<BaseProducer<Stats>> {
    let stats = Stats {
        start: Instant::now(),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency: Mutex::new(Latencies {
            histogram_us: new_histogram(),
            by_second: BySecond::default(),
        }),
        first_error: Mutex::new(None),
    };
    let mut props = tuning.properties(conn.timeout.max(Duration::from_secs(30)));
    props.push(("queue.buffering.max.messages", "1000000".into()));
    props.extend(load.properties());
    let producer = conn.producer(stats, &props)?;
    conn.metadata(producer.client(), None)?;
    Ok(producer)
}

/// `perf produce` serves delivery reports every this many records (and whenever the client's
/// queue is full or a rate limit makes it wait), not after each record: every `poll` reads the
/// clock several times and locks the client's queue. A report waits for at most this many
/// sends (about 0.15 ms at W1's rate), which the produce latencies it reports include.
const POLL_EVERY_RECORDS: u64 = 64;

/// Queues one record with `try_send`, serving callbacks for `backoff` at a time while the
/// client's queue is full (each wait lets deliveries free room, so the loop ends once the
/// broker acknowledges or the messages time out).
fn send<C: ProducerContext>(
    producer: &BaseProducer<C>,
    topic: &str,
    backoff: Duration,
    mut try_send: impl FnMut() -> Result<(), KafkaError>,
) -> CliResult<()> {
    loop {
        match try_send() {
            Ok(()) => return Ok(()),
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                producer.poll(backoff)
            }
            Err(e) => {
                return Err(kafka_error(
                    &format!("cannot produce to topic '{topic}'"),
                    &e,
                ))
            }
        }
    }
}

/// A topic handle that hands values to librdkafka without copying them (`rd_kafka_produce`
/// with no message flags: the client keeps a pointer to the value until the record's delivery
/// report). `BaseProducer::send` always asks for a copy: a message allocated with its 1 KiB
/// value inline, freed after its delivery report (in a 29.4 GiB W1 that `free` alone was 10.8%
/// of the machine's samples). Without the copy the tool's CPU per GiB halved, and the broker
/// shares those cores (docs/performance.md).
///
/// Safety contract of [`RawTopic::send`]: every value must stay valid and unchanged until the
/// producer has been flushed or dropped; `produce` keeps them in a pool created before the
/// producer (so dropped after it) and never changed.
struct RawTopic {
    handle: *mut rdkafka::bindings::rd_kafka_topic_t,
}

/// librdkafka's `RD_KAFKA_PARTITION_UA` (a C macro, not in the bindings): let the
/// partitioner choose.
const PARTITION_UNASSIGNED: i32 = -1;

impl RawTopic {
    fn new<C: ProducerContext>(producer: &BaseProducer<C>, topic: &str) -> CliResult<RawTopic> {
        let name = std::ffi::CString::new(topic)
            .map_err(|_| CliError::usage("topic names cannot contain NUL"))?;
        // SAFETY: the client pointer is valid while `producer` lives; the topic handle is
        // destroyed (Drop) before the producer, which `produce` declares first.
        let handle = unsafe {
            rdkafka::bindings::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if handle.is_null() {
            return Err(CliError::new(format!(
                "cannot produce to topic '{topic}': no topic handle"
            )));
        }
        Ok(RawTopic { handle })
    }

    /// Queues `value` for `partition` (`None`: the partitioner chooses) with `opaque` as the
    /// delivery opaque (`Stats`' is a `usize`, the send time). See the type's safety contract.
    fn send(&self, partition: Option<i32>, value: &[u8], opaque: usize) -> Result<(), KafkaError> {
        // SAFETY: the handle is valid; flags 0 means neither copy nor free, and the caller
        // keeps `value` alive until delivery (the contract above); `opaque` is an integer
        // carried as a pointer, as rdkafka's own `IntoOpaque for usize` does.
        let rc = unsafe {
            rdkafka::bindings::rd_kafka_produce(
                self.handle,
                partition.unwrap_or(PARTITION_UNASSIGNED),
                0,
                value.as_ptr() as *mut std::ffi::c_void,
                value.len(),
                std::ptr::null(),
                0,
                opaque as *mut std::ffi::c_void,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: reads this thread's last librdkafka error, set by the call above.
            let code = unsafe { rdkafka::bindings::rd_kafka_last_error() };
            Err(KafkaError::MessageProduction(code.into()))
        }
    }
}

impl Drop for RawTopic {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_topic_new`, destroyed once.
        unsafe { rdkafka::bindings::rd_kafka_topic_destroy(self.handle) };
    }
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
    load: &LoadArgs,
) -> CliResult<()> {
    if throughput == 0 || throughput < -1 {
        return Err(CliError::usage(
            "--throughput must be a positive rate, or -1 for no limit",
        ));
    }
    create_topic(conn, topic, partitions)?;
    // Declared before the producer, so dropped after it: librdkafka points into it until
    // each record is delivered (`RawTopic`).
    let values = Values::new(load.payload, record_size);
    let producer = perf_producer(conn, tuning, load)?;
    let raw_topic = RawTopic::new(&producer, topic)?;
    let round_robin = if load.round_robin {
        Some(partition_count(conn, producer.client(), topic, partitions)?)
    } else {
        None
    };
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
        let partition = round_robin.map(|n| (sent % n as u64) as i32);
        send(&producer, topic, Duration::from_millis(5), || {
            raw_topic.send(partition, values.get(sent), sent_us)
        })?;
        sent += 1;
        if sent.is_multiple_of(POLL_EVERY_RECORDS) {
            producer.poll(Duration::ZERO);
        }
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
    let hist = ctx.latency.lock().unwrap().histogram_us.clone();
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
            "payload": load.payload.name(),
            "round_robin_partitions": round_robin,
            "cpu_secs": round3(crate::procstat::own_cpu_secs()),
        }))?,
        Format::Text => print(&format!(
            "{acked} records sent, {rps:.1} records/s ({mbps:.2} MB/s) in {elapsed:.2} s\n{}\n",
            latency_text(&hist)
        ))?,
    }
    delivery_outcome(&ctx, failed, flushed, topic)
}

/// An error if a record failed or the final flush did not see every acknowledgement.
fn delivery_outcome(
    ctx: &Stats,
    failed: u64,
    flushed: Result<(), KafkaError>,
    topic: &str,
) -> CliResult<()> {
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
    // The clock is read once per record (after each poll): at W2's rates the reads of
    // `Instant::now`, `elapsed` and the wall clock took a tenth of this loop's CPU. The wall
    // clock a record's latency needs is the start's plus the monotonic time since.
    let start_ms = crate::timefmt::now_ms();
    let start = Instant::now();
    let mut now = start;
    let mut first: Option<Instant> = None;
    let mut last_record = start;
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut timed_out = false;
    loop {
        if num_records.is_some_and(|n| records >= n)
            || duration.is_some_and(|d| now - start >= d)
            || stop.load(Ordering::Relaxed)
        {
            break;
        }
        if now - last_record >= idle_timeout {
            timed_out = true;
            break;
        }
        let polled = consumer.poll(Duration::from_millis(100));
        now = Instant::now();
        match polled {
            None => {}
            Some(Ok(m)) => {
                let now_ms = start_ms + (now - start).as_millis() as i64;
                first.get_or_insert(now);
                last_record = now;
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
            "cpu_secs": round3(crate::procstat::own_cpu_secs()),
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

struct E2eSpec<'a> {
    topic: &'a str,
    num_records: Option<u64>,
    duration: Option<Duration>,
    record_size: usize,
    rate: u64,
    partitions: Option<i32>,
    idle_timeout: Duration,
}

/// What the consumer thread of `perf e2e` measured.
struct E2eReceived {
    records: u64,
    latency_us: Histogram<u64>,
    by_second: BySecond,
}

/// A producer at a fixed rate and a consumer reading every partition from its end at the
/// start, in one process: each value begins with the microseconds since `start` of its produce
/// call, and the consumer records its receipt minus that.
fn e2e(
    conn: &ConnArgs,
    spec: &E2eSpec<'_>,
    tuning: &ProducerTuning,
    load: &LoadArgs,
) -> CliResult<()> {
    let topic = spec.topic;
    if spec.rate == 0 {
        return Err(CliError::usage("--throughput must be a positive rate"));
    }
    if spec.record_size < 8 {
        return Err(CliError::usage("--record-size must be at least 8 bytes"));
    }
    create_topic(conn, topic, spec.partitions)?;
    let consumer = conn.consumer(None, &[("auto.offset.reset", "earliest")])?;
    let n_parts = partition_count(conn, consumer.client(), topic, spec.partitions)?;
    // Read from each partition's current end, so that every record read is one sent here.
    let mut tpl = TopicPartitionList::new();
    for p in 0..n_parts {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, conn.timeout)
            .map_err(|e| conn.unreachable_or(e, "cannot read the log end offsets"))?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))
            .map_err(|e| kafka_error("cannot assign partitions", &e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_error("cannot assign partitions", &e))?;

    let producer = perf_producer(conn, tuning, load)?;
    let ctx = producer.context().clone();
    let start = ctx.start;
    let stop = stop_flag();
    // Set by the producer once it has sent its last record: how many it sent.
    let total_sent = std::sync::Arc::new(AtomicU64::new(u64::MAX));
    let idle_timeout = spec.idle_timeout;

    let received = std::thread::scope(|s| -> CliResult<E2eReceived> {
        let total = total_sent.clone();
        let stop_c = stop.clone();
        let reader = s.spawn(move || {
            let mut hist = new_histogram();
            let mut by_second = BySecond::default();
            let mut records: u64 = 0;
            let mut last = Instant::now();
            loop {
                if records >= total.load(Ordering::Acquire) || stop_c.load(Ordering::Relaxed) {
                    break;
                }
                // Only once every record is sent does the idle time count.
                if total.load(Ordering::Acquire) != u64::MAX && last.elapsed() >= idle_timeout {
                    break;
                }
                match consumer.poll(Duration::from_millis(50)) {
                    None => {}
                    Some(Ok(m)) => {
                        let now_us = start.elapsed().as_micros() as u64;
                        last = Instant::now();
                        records += 1;
                        if let Some(v) = m.payload().and_then(|p| p.get(..8)) {
                            let sent_us = u64::from_le_bytes(v.try_into().expect("8 bytes"));
                            let lat = now_us.saturating_sub(sent_us).max(1);
                            hist.saturating_record(lat);
                            by_second.record(sent_us, lat);
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "consumer error"),
                }
            }
            E2eReceived {
                records,
                latency_us: hist,
                by_second,
            }
        });

        let values = Values::new(load.payload, spec.record_size);
        let mut buf = values.get(0).to_vec();
        let mut sent: u64 = 0;
        let mut max_behind = Duration::ZERO;
        let send_start = Instant::now();
        let result = (|| -> CliResult<()> {
            loop {
                let elapsed = send_start.elapsed();
                if spec.num_records.is_some_and(|n| sent >= n)
                    || spec.duration.is_some_and(|d| elapsed >= d)
                    || stop.load(Ordering::Relaxed)
                    || ctx.failed.load(Ordering::Relaxed) > 0
                {
                    return Ok(());
                }
                // Send every record that is due now (small bursts), then sleep to the next one.
                let due = Duration::from_secs_f64(sent as f64 / spec.rate as f64);
                if due > elapsed {
                    std::thread::sleep((due - elapsed).min(Duration::from_millis(1)));
                    producer.poll(Duration::ZERO);
                    continue;
                }
                max_behind = max_behind.max(elapsed - due);
                buf.copy_from_slice(values.get(sent));
                let sent_us = start.elapsed().as_micros() as u64;
                buf[..8].copy_from_slice(&sent_us.to_le_bytes());
                let mut record: BaseRecord<'_, [u8], [u8], usize> =
                    BaseRecord::with_opaque_to(topic, sent_us as usize).payload(&buf[..]);
                if load.round_robin {
                    record = record.partition((sent % n_parts as u64) as i32);
                }
                // `BaseProducer::send` hands the record back when it refuses it.
                let mut pending = Some(record);
                send(&producer, topic, Duration::from_millis(1), || {
                    let record = pending.take().expect("put back after each refusal");
                    producer.send(record).map_err(|(e, r)| {
                        pending = Some(r);
                        e
                    })
                })?;
                sent += 1;
                producer.poll(Duration::ZERO);
            }
        })();
        let send_secs = send_start.elapsed().as_secs_f64().max(1e-9);
        let flushed =
            producer.flush(conn.timeout.max(Duration::from_secs(30)) + Duration::from_secs(5));
        total_sent.store(sent, Ordering::Release);
        let got = reader.join().expect("the consumer thread does not panic");
        result?;
        let acked = ctx.acked.load(Ordering::Relaxed);
        let failed = ctx.failed.load(Ordering::Relaxed);
        let hist = &got.latency_us;
        let achieved = sent as f64 / send_secs;
        match conn.output {
            Format::Json => print_json(&json!({
                "topic": topic,
                "records_sent": sent,
                "records_acked": acked,
                "records_received": got.records,
                "failed": failed,
                "record_size": spec.record_size,
                "bytes": got.records * spec.record_size as u64,
                "target_rate": spec.rate,
                "achieved_rate": round3(achieved),
                "send_secs": round3(send_secs),
                "max_behind_schedule_ms": round3(max_behind.as_secs_f64() * 1000.0),
                "partitions": n_parts,
                "payload": load.payload.name(),
                "end_to_end_latency_ms": latency_json(hist),
                "produce_latency_ms": latency_json(&ctx.latency.lock().unwrap().histogram_us),
                "end_to_end_by_second": got.by_second.json(),
                "produce_by_second": ctx.latency.lock().unwrap().by_second.json(),
                "cpu_secs": round3(crate::procstat::own_cpu_secs()),
            }))?,
            Format::Text => print(&format!(
                "{sent} records sent at {achieved:.1} records/s (target {}), {} received\n\
                 end-to-end {}\n{}",
                spec.rate,
                got.records,
                latency_text(hist),
                got.by_second.slow_text()
            ))?,
        }
        delivery_outcome(&ctx, failed, flushed, topic)?;
        Ok(got)
    })?;
    if received.records < total_sent.load(Ordering::Relaxed) {
        return Err(CliError::new(format!(
            "received only {} of {} records: none arrived for {}",
            received.records,
            total_sent.load(Ordering::Relaxed),
            humantime::format_duration(idle_timeout)
        )));
    }
    Ok(())
}
