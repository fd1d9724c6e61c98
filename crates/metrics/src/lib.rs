//! The broker's metrics: counters and histograms updated on hot paths, gauges read at scrape
//! time, and their rendering in the Prometheus text exposition format 0.0.4.
//!
//! No I/O: the admin HTTP listener (`runnel-admin-http`) serves [`Metrics::render`].
//!
//! # Cost on hot paths
//!
//! The instruments are those of the `prometheus` crate: a counter or a gauge is one
//! `Arc` around an atomic integer, and an update is one relaxed `fetch_add`. A histogram
//! observation is a linear search over its 16 bucket bounds, two relaxed `fetch_add`s and a
//! compare-and-swap loop on the `f64` sum. Label lookups (a hash map behind a lock in the
//! `prometheus` crate) happen once per label set: this crate caches the resulting handles.
//!
//! | call | cost |
//! | --- | --- |
//! | [`ApiMetrics::record`] (a cached handle) | 1 histogram observation, 1–2 counter increments; no lock, no allocation |
//! | [`Metrics::request`] | a read-locked hash-map lookup of the API name (SipHash of ~10 bytes), then as above |
//! | [`TopicMetrics::bytes_in`] / [`TopicMetrics::bytes_out`] (a cached handle) | 2 counter increments; no lock, no allocation |
//! | [`Metrics::bytes_in`] / [`Metrics::bytes_out`] | a read-locked hash-map lookup of the topic name, then as above |
//! | [`Metrics::connection_opened`] / [`Metrics::connection_closed`], [`ConnectionGuard`] | 1–2 atomic increments |
//! | [`Metrics::set_purgatory`], [`PurgatoryGuard`] | 1 atomic store or increment |
//!
//! The first use of an API name or a topic name takes a write lock and allocates its label
//! set; every later use is as above.
//!
//! # Scrape-time gauges
//!
//! Partition offsets, log sizes and consumer group lag are not updated as records flow:
//! the broker registers a [`GaugeSource`] (or a closure) with [`Metrics::register_source`],
//! and [`Metrics::render`] asks every source for its current values. Values are therefore
//! never stale, nothing is counted per record, and a deleted partition or group simply stops
//! being reported.
//!
//! # Exported metrics
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `runnel_requests_total` | counter | `api`, `version` |
//! | `runnel_request_errors_total` | counter | `api` |
//! | `runnel_request_duration_seconds` | histogram ([`REQUEST_DURATION_BUCKETS_SECONDS`]) | `api` |
//! | `runnel_topic_produced_bytes_total`, `runnel_topic_produced_records_total` | counter | `topic` |
//! | `runnel_topic_fetched_bytes_total`, `runnel_topic_fetched_records_total` | counter | `topic` |
//! | `runnel_connections_active` | gauge | |
//! | `runnel_connections_opened_total` | counter | |
//! | `runnel_fetch_disk_reads_total` (partition reads of a Fetch that had to wait for the disk, done off the worker thread) | counter | |
//! | `runnel_log_writeback_hints_dropped_total` | counter | |
//! | `runnel_purgatory_requests` | gauge | `kind` (`produce`, `fetch`) |
//! | `runnel_partition_log_start_offset`, `runnel_partition_log_end_offset`, `runnel_partition_high_watermark` | gauge | `topic`, `partition` |
//! | `runnel_partition_log_size_bytes` | gauge | `topic`, `partition` |
//! | `runnel_partition_log_failed` (1 if the log failed and is read-only until a restart) | gauge | `topic`, `partition` |
//! | `runnel_consumer_group_committed_offset`, `runnel_consumer_group_lag_records` | gauge | `group`, `topic`, `partition` |

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The content type of [`Metrics::render`]'s output (Prometheus text exposition 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the request latency histogram buckets, in seconds: 0.1 ms to 10 s (a
/// `+Inf` bucket follows implicitly; long-polling fetches that wait longer land there).
pub const REQUEST_DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Request versions `0..VERSION_SLOTS` have a lock-free cached counter per API; higher (or
/// negative) versions take the label-lookup path.
const VERSION_SLOTS: usize = 32;

/// The metrics registry of one broker. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_errors: IntCounterVec,
    request_duration: HistogramVec,
    apis: RwLock<HashMap<&'static str, ApiMetrics>>,
    produced_bytes: IntCounterVec,
    produced_records: IntCounterVec,
    fetched_bytes: IntCounterVec,
    fetched_records: IntCounterVec,
    topics: RwLock<HashMap<String, TopicMetrics>>,
    connections_active: IntGauge,
    connections_opened: IntCounter,
    fetch_disk_reads: IntCounter,
    purgatory: [IntGauge; 2],
    sources: Arc<ScrapeCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Metric and label names are constants of this crate: building them cannot fail unless
/// this file has a typo, which the unit tests catch.
fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions of runnel-metrics are valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(v.clone())));
            v
        };
        let requests = counter_vec(
            "runnel_requests_total",
            "Kafka requests handled, by API and request version.",
            &["api", "version"],
        );
        let request_errors = counter_vec(
            "runnel_request_errors_total",
            "Kafka requests whose response carried an error, by API.",
            &["api"],
        );
        let request_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "runnel_request_duration_seconds",
                "Time from a request's decoding to its response being ready, by API.",
            )
            .buckets(REQUEST_DURATION_BUCKETS_SECONDS.to_vec()),
            &["api"],
        ));
        must(registry.register(Box::new(request_duration.clone())));
        let produced_bytes = counter_vec(
            "runnel_topic_produced_bytes_total",
            "Bytes of record batches appended to a topic by produce requests.",
            &["topic"],
        );
        let produced_records = counter_vec(
            "runnel_topic_produced_records_total",
            "Records appended to a topic by produce requests.",
            &["topic"],
        );
        let fetched_bytes = counter_vec(
            "runnel_topic_fetched_bytes_total",
            "Bytes of record batches of a topic returned by fetch requests.",
            &["topic"],
        );
        let fetched_records = counter_vec(
            "runnel_topic_fetched_records_total",
            "Records of a topic returned by fetch requests.",
            &["topic"],
        );
        let connections_active = must(IntGauge::new(
            "runnel_connections_active",
            "Client connections currently open.",
        ));
        must(registry.register(Box::new(connections_active.clone())));
        let connections_opened = must(IntCounter::new(
            "runnel_connections_opened_total",
            "Client connections accepted since start.",
        ));
        must(registry.register(Box::new(connections_opened.clone())));
        let fetch_disk_reads = must(IntCounter::new(
            "runnel_fetch_disk_reads_total",
            "Partition reads of Fetch requests that had to wait for the disk (done off the worker thread).",
        ));
        must(registry.register(Box::new(fetch_disk_reads.clone())));
        let purgatory_vec = must(IntGaugeVec::new(
            Opts::new(
                "runnel_purgatory_requests",
                "Requests waiting in a purgatory (delayed produce, long-polling fetch).",
            ),
            &["kind"],
        ));
        must(registry.register(Box::new(purgatory_vec.clone())));
        let purgatory = [Purgatory::Produce, Purgatory::Fetch]
            .map(|kind| purgatory_vec.with_label_values(&[kind.label()]));
        let sources = Arc::new(ScrapeCollector::new());
        must(registry.register(Box::new(SharedCollector(sources.clone()))));
        Metrics {
            registry,
            requests,
            request_errors,
            request_duration,
            apis: RwLock::new(HashMap::new()),
            produced_bytes,
            produced_records,
            fetched_bytes,
            fetched_records,
            topics: RwLock::new(HashMap::new()),
            connections_active,
            connections_opened,
            fetch_disk_reads,
            purgatory,
            sources,
        }
    }

    // ------------------------------------------------------------------ requests

    /// The handle of one API (e.g. `"Produce"`), to keep and call [`ApiMetrics::record`] on
    /// without a name lookup. Cheap to clone (one `Arc`).
    pub fn api(&self, api: &'static str) -> ApiMetrics {
        if let Some(h) = read(&self.apis).get(api) {
            return h.clone();
        }
        write(&self.apis)
            .entry(api)
            .or_insert_with(|| ApiMetrics {
                inner: Arc::new(ApiInner {
                    name: api,
                    requests: self.requests.clone(),
                    versions: std::array::from_fn(|_| OnceLock::new()),
                    errors: self.request_errors.with_label_values(&[api]),
                    duration: self.request_duration.with_label_values(&[api]),
                }),
            })
            .clone()
    }

    /// Records one handled request: counts it (and its error), and observes its latency.
    /// See [`Metrics::api`] to skip the name lookup.
    pub fn request(&self, api: &'static str, version: i16, latency: Duration, error: bool) {
        if let Some(h) = read(&self.apis).get(api) {
            h.record(version, latency, error);
            return;
        }
        self.api(api).record(version, latency, error);
    }

    // ------------------------------------------------------------------ topics

    /// The handle of one topic's byte and record counters, to keep (e.g. in the broker's
    /// topic state) and update without a name lookup. Cheap to clone (one `Arc`).
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        if let Some(h) = read(&self.topics).get(topic) {
            return h.clone();
        }
        write(&self.topics)
            .entry(topic.to_string())
            .or_insert_with(|| TopicMetrics {
                inner: Arc::new(TopicInner {
                    produced_bytes: self.produced_bytes.with_label_values(&[topic]),
                    produced_records: self.produced_records.with_label_values(&[topic]),
                    fetched_bytes: self.fetched_bytes.with_label_values(&[topic]),
                    fetched_records: self.fetched_records.with_label_values(&[topic]),
                }),
            })
            .clone()
    }

    /// Counts bytes and records appended to `topic` by a produce request.
    /// See [`Metrics::topic`] to skip the name lookup.
    pub fn bytes_in(&self, topic: &str, bytes: u64, records: u64) {
        if let Some(h) = read(&self.topics).get(topic) {
            h.bytes_in(bytes, records);
            return;
        }
        self.topic(topic).bytes_in(bytes, records);
    }

    /// Counts bytes and records of `topic` returned by a fetch request.
    /// See [`Metrics::topic`] to skip the name lookup.
    pub fn bytes_out(&self, topic: &str, bytes: u64, records: u64) {
        if let Some(h) = read(&self.topics).get(topic) {
            h.bytes_out(bytes, records);
            return;
        }
        self.topic(topic).bytes_out(bytes, records);
    }

    /// Stops exporting a deleted topic's counters. Handles still held keep counting into
    /// detached counters that are no longer exported; a topic created again under the same
    /// name starts from zero (which Prometheus reads as a counter reset).
    pub fn remove_topic(&self, topic: &str) {
        write(&self.topics).remove(topic);
        for v in [
            &self.produced_bytes,
            &self.produced_records,
            &self.fetched_bytes,
            &self.fetched_records,
        ] {
            let _ = v.remove_label_values(&[topic]);
        }
    }

    // ------------------------------------------------------------------ connections

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_opened.inc();
        self.connections_active.inc();
    }

    /// A Fetch read a partition's data from the disk (not only from memory).
    pub fn fetch_disk_read(&self) {
        self.fetch_disk_reads.inc();
    }

    /// A client connection was closed (once per [`Metrics::connection_opened`]).
    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }

    /// Counts a connection as opened now and as closed when the guard is dropped, whichever
    /// way the connection's task ends.
    pub fn connection(&self) -> ConnectionGuard {
        self.connection_opened();
        ConnectionGuard {
            active: self.connections_active.clone(),
        }
    }

    // ------------------------------------------------------------------ purgatories

    /// Sets the number of requests waiting in a purgatory.
    pub fn set_purgatory(&self, kind: Purgatory, waiting: usize) {
        self.purgatory[kind as usize].set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Counts one request as waiting in a purgatory until the guard is dropped. Use either
    /// this or [`Metrics::set_purgatory`] for one kind, not both.
    pub fn enter_purgatory(&self, kind: Purgatory) -> PurgatoryGuard {
        let gauge = self.purgatory[kind as usize].clone();
        gauge.inc();
        PurgatoryGuard { gauge }
    }

    // ------------------------------------------------------------------ scrape time

    /// Adds a source of gauges that [`Metrics::render`] calls at every scrape. A closure
    /// `Fn(&mut dyn SampleSink) + Send + Sync` is a source.
    ///
    /// A source must not hold an `Arc` of an object that itself holds this `Arc<Metrics>`
    /// (that cycle would never be freed): capture a `Weak` and emit nothing once it is gone.
    pub fn register_source(&self, source: impl GaugeSource + 'static) {
        write(&self.sources.sources).push(Box::new(source));
    }

    /// Every metric, in the Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]),
    /// with the scrape-time gauges read now.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            // Only a malformed family fails; what was written is still well-formed lines.
            let _ = writeln!(
                out,
                "# encoding error: {}",
                e.to_string().replace('\n', " ")
            );
        }
        out
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------- handles

/// The cached instruments of one API. Cheap to clone.
#[derive(Clone)]
pub struct ApiMetrics {
    inner: Arc<ApiInner>,
}

struct ApiInner {
    name: &'static str,
    requests: IntCounterVec,
    versions: [OnceLock<IntCounter>; VERSION_SLOTS],
    errors: IntCounter,
    duration: Histogram,
}

impl ApiMetrics {
    /// Records one handled request of this API: no lock and no allocation once this
    /// version has been seen.
    pub fn record(&self, version: i16, latency: Duration, error: bool) {
        let i = &*self.inner;
        match usize::try_from(version)
            .ok()
            .and_then(|v| i.versions.get(v))
        {
            Some(slot) => slot
                .get_or_init(|| {
                    i.requests
                        .with_label_values(&[i.name, &version.to_string()])
                })
                .inc(),
            None => i
                .requests
                .with_label_values(&[i.name, &version.to_string()])
                .inc(),
        }
        if error {
            i.errors.inc();
        }
        i.duration.observe(latency.as_secs_f64());
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }
}

impl std::fmt::Debug for ApiMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ApiMetrics").field(&self.inner.name).finish()
    }
}

/// The cached byte and record counters of one topic. Cheap to clone.
#[derive(Clone)]
pub struct TopicMetrics {
    inner: Arc<TopicInner>,
}

struct TopicInner {
    produced_bytes: IntCounter,
    produced_records: IntCounter,
    fetched_bytes: IntCounter,
    fetched_records: IntCounter,
}

impl TopicMetrics {
    /// Bytes and records appended by a produce request.
    pub fn bytes_in(&self, bytes: u64, records: u64) {
        self.inner.produced_bytes.inc_by(bytes);
        self.inner.produced_records.inc_by(records);
    }

    /// Bytes and records returned by a fetch request.
    pub fn bytes_out(&self, bytes: u64, records: u64) {
        self.inner.fetched_bytes.inc_by(bytes);
        self.inner.fetched_records.inc_by(records);
    }
}

impl std::fmt::Debug for TopicMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicMetrics").finish_non_exhaustive()
    }
}

/// Counts a connection as closed when dropped. See [`Metrics::connection`].
#[must_use = "the connection counts as closed when the guard is dropped"]
#[derive(Debug)]
pub struct ConnectionGuard {
    active: IntGauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// A purgatory: where produce requests wait for acknowledgements and fetches for data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purgatory {
    Produce = 0,
    Fetch = 1,
}

impl Purgatory {
    /// The value of the `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            Purgatory::Produce => "produce",
            Purgatory::Fetch => "fetch",
        }
    }
}

/// Counts a request as no longer waiting when dropped. See [`Metrics::enter_purgatory`].
#[must_use = "the request leaves the purgatory when the guard is dropped"]
#[derive(Debug)]
pub struct PurgatoryGuard {
    gauge: IntGauge,
}

impl Drop for PurgatoryGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

// ---------------------------------------------------------------------- scrape-time gauges

/// The state of one partition at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionSample {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// Bytes of the partition's segments on disk.
    pub size_bytes: u64,
    /// The partition's log failed (a write or fsync error, or an internal error): it takes
    /// no writes, and serves at most what is durable, until the broker restarts.
    pub failed: bool,
}

/// A consumer group's position on one partition at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupPartitionSample {
    pub committed_offset: i64,
    /// The offset the lag is measured to (the partition's high watermark, or its log end
    /// offset: what the broker's `group describe` reports as the end).
    pub end_offset: i64,
}

impl GroupPartitionSample {
    /// `end_offset - committed_offset`, never negative.
    pub fn lag(&self) -> i64 {
        self.end_offset.saturating_sub(self.committed_offset).max(0)
    }
}

/// Where a [`GaugeSource`] writes the values it reads at scrape time.
pub trait SampleSink {
    fn partition(&mut self, topic: &str, partition: i32, sample: PartitionSample);
    fn group_partition(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        sample: GroupPartitionSample,
    );
    /// The log's count of writeback hints dropped since the process started (a counter the
    /// log keeps; reported as it is).
    fn writeback_hints_dropped(&mut self, total: u64);
}

/// Something that reports gauges when metrics are scraped (the broker's partitions and
/// groups). Called from [`Metrics::render`], on the scraping thread: read current state,
/// do not block on I/O.
pub trait GaugeSource: Send + Sync {
    fn collect(&self, sink: &mut dyn SampleSink);
}

impl<F> GaugeSource for F
where
    F: Fn(&mut dyn SampleSink) + Send + Sync,
{
    fn collect(&self, sink: &mut dyn SampleSink) {
        self(sink)
    }
}

/// The names, help texts and label names of the scrape-time gauges.
const PARTITION_GAUGES: [(&str, &str); 5] = [
    (
        "runnel_partition_log_start_offset",
        "First offset of a partition's log.",
    ),
    (
        "runnel_partition_log_end_offset",
        "Offset the next record appended to a partition will get.",
    ),
    (
        "runnel_partition_high_watermark",
        "Offset below which a partition's records are visible to consumers.",
    ),
    (
        "runnel_partition_log_size_bytes",
        "Bytes of a partition's log segments on disk.",
    ),
    (
        "runnel_partition_log_failed",
        "1 if a partition's log failed (a write or fsync error, or an internal error): it takes no writes, and serves at most what is durable, until the broker restarts; else 0.",
    ),
];
const PARTITION_LABELS: &[&str] = &["topic", "partition"];
const GROUP_GAUGES: [(&str, &str); 2] = [
    (
        "runnel_consumer_group_committed_offset",
        "Offset a consumer group committed on a partition.",
    ),
    (
        "runnel_consumer_group_lag_records",
        "Records of a partition a consumer group has not committed past (end offset minus committed offset).",
    ),
];
const GROUP_LABELS: &[&str] = &["group", "topic", "partition"];

fn partition_vecs() -> [IntGaugeVec; 5] {
    PARTITION_GAUGES.map(|(n, h)| must(IntGaugeVec::new(Opts::new(n, h), PARTITION_LABELS)))
}

fn writeback_counter() -> IntCounter {
    must(IntCounter::new(
        "runnel_log_writeback_hints_dropped_total",
        "Writeback hints of appended data dropped because the writeback thread was behind (the kernel writes those pages back on its own schedule).",
    ))
}

fn group_vecs() -> [IntGaugeVec; 2] {
    GROUP_GAUGES.map(|(n, h)| must(IntGaugeVec::new(Opts::new(n, h), GROUP_LABELS)))
}

/// The registry's collector for the scrape-time gauges (and the log's counter): it builds fresh
/// gauge vectors at every scrape, so partitions and groups that no longer exist are not
/// reported.
struct ScrapeCollector {
    /// Templates that only provide the descriptors (`Collector::desc`).
    templates: ([IntGaugeVec; 5], [IntGaugeVec; 2], IntCounter),
    sources: RwLock<Vec<Box<dyn GaugeSource>>>,
}

impl ScrapeCollector {
    fn new() -> ScrapeCollector {
        ScrapeCollector {
            templates: (partition_vecs(), group_vecs(), writeback_counter()),
            sources: RwLock::new(Vec::new()),
        }
    }
}

struct VecSink {
    partitions: [IntGaugeVec; 5],
    groups: [IntGaugeVec; 2],
    writeback_hints_dropped: IntCounter,
}

impl SampleSink for VecSink {
    fn partition(&mut self, topic: &str, partition: i32, s: PartitionSample) {
        let p = partition.to_string();
        let values = [
            s.log_start_offset,
            s.log_end_offset,
            s.high_watermark,
            i64::try_from(s.size_bytes).unwrap_or(i64::MAX),
            i64::from(s.failed),
        ];
        for (vec, value) in self.partitions.iter().zip(values) {
            vec.with_label_values(&[topic, &p]).set(value);
        }
    }

    fn group_partition(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        s: GroupPartitionSample,
    ) {
        let p = partition.to_string();
        let values = [s.committed_offset, s.lag()];
        for (vec, value) in self.groups.iter().zip(values) {
            vec.with_label_values(&[group, topic, &p]).set(value);
        }
    }

    fn writeback_hints_dropped(&mut self, total: u64) {
        self.writeback_hints_dropped.inc_by(total);
    }
}

impl Collector for ScrapeCollector {
    fn desc(&self) -> Vec<&Desc> {
        let (p, g, w) = &self.templates;
        p.iter()
            .chain(g.iter())
            .flat_map(|v| v.desc())
            .chain(w.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut sink = VecSink {
            partitions: partition_vecs(),
            groups: group_vecs(),
            writeback_hints_dropped: writeback_counter(),
        };
        for source in read(&self.sources).iter() {
            source.collect(&mut sink);
        }
        sink.partitions
            .iter()
            .chain(sink.groups.iter())
            .flat_map(|v| v.collect())
            .chain(sink.writeback_hints_dropped.collect())
            .collect()
    }
}

/// Registers the shared collector (the registry takes collectors by value).
struct SharedCollector(Arc<ScrapeCollector>);

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

#[cfg(test)]
mod tests;
