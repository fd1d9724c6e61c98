//! A broker that does next to nothing, to measure the load generator's own ceiling.
//!
//! W1 and W2 run the load generator (`runnel perf`, librdkafka) on the same two cores as the
//! broker. Whether a throughput target is out of reach because of the broker or because of the
//! client is only known if the client can be measured alone. [`NullBroker`] answers exactly the
//! requests `runnel perf produce|consume` sends, and nothing more:
//!
//! - **Produce** is read off the socket, decoded (the record bytes are not copied again, not
//!   checked, not kept) and acknowledged with the offsets a log would have given;
//! - **Fetch** is answered from one record batch built at the start, in W1's shape (1 KiB
//!   values, half random, `batch_bytes` of them), as if each partition held `batches` copies of
//!   it one after the other: only each copy's base offset (the 8 bytes the CRC does not cover)
//!   differs, and the answer is written with vectored writes straight from the one batch;
//! - ApiVersions, Metadata, CreateTopics (every topic exists), FindCoordinator (the consumer's
//!   group id makes librdkafka ask for one) and ListOffsets answer what the perf tools need.
//!
//! It is not a broker: no log, no validation, one topic whose partitions all have the same
//! data. Its CPU (the threads' own, `getrusage(RUSAGE_THREAD)`) is reported beside the
//! client's so that a reader sees what "next to nothing" cost. Used by `runnel bench` only.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic,
    create_topics_response::CreatableTopicResult,
    list_offsets_request::ListOffsetsTopic,
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, FetchRequest,
    FindCoordinatorResponse, ListOffsetsResponse, MetadataResponse, ProduceResponse, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_model::batch::testing::{build_batch, KeyValue};
use runnel_model::batch::validate_record_set;
use runnel_protocol::request::{decode_request, Decoded, DecodedRequest};
use runnel_protocol::response::{api_version_entries, encode_response};
use runnel_protocol::VersionRange;

use super::bare::thread_cpu_secs;

/// The null broker's node id.
const NODE_ID: i32 = 1;

/// Largest request frame read; a larger one closes the connection.
const FRAME_BYTES_MAX: usize = 256 << 20;

/// Connections served at once; more are closed as they arrive.
const CONNECTIONS_MAX: usize = 64;

/// Longest wait of a Fetch with nothing to answer (its `max_wait_ms`, bounded).
const FETCH_WAIT_MS_MAX: u64 = 500;

/// Batches of one partition in one Fetch answer, at most (besides the bytes the request allows).
const FETCH_BATCHES_MAX: usize = 64;

/// Kafka's error codes the null broker answers with.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// Byte positions in a v2 record batch (Kafka's `DefaultRecordBatch`).
const BATCH_LENGTH_AT: usize = 8;
const BATCH_LAST_OFFSET_DELTA_AT: usize = 23;
const BATCH_HEADER_BYTES: usize = 61;
/// The base offset and length fields, which the batch length does not count.
const BATCH_LOG_OVERHEAD_BYTES: usize = 12;

/// The versions answered. Fetch stops at v11, the last whose answer has no tagged fields, so
/// that its answer is written by [`fetch_answer`] without the generated encoder; librdkafka
/// picks the highest version both sides know.
const VERSIONS: [(ApiKey, VersionRange); 7] = [
    (ApiKey::Produce, VersionRange::new(3, 11)),
    (ApiKey::Fetch, VersionRange::new(4, 11)),
    (ApiKey::ListOffsets, VersionRange::new(1, 10)),
    (ApiKey::Metadata, VersionRange::new(1, 12)),
    (ApiKey::FindCoordinator, VersionRange::new(0, 3)),
    (ApiKey::ApiVersions, VersionRange::new(0, 4)),
    (ApiKey::CreateTopics, VersionRange::new(2, 7)),
];

/// What the null broker serves from: one topic, the same data in every partition.
#[derive(Debug, Clone)]
pub struct NullLog {
    topic: String,
    partitions: i32,
    /// Copies of the batch in each partition.
    batches: i64,
    /// The batch (base offset 0), in W1's shape.
    batch: Bytes,
    records_per_batch: i64,
}

impl NullLog {
    /// A log of `batches` batches per partition, each of about `batch_bytes` of `record_bytes`
    /// values (half of each random bytes, as W1 writes).
    pub fn new(
        topic: &str,
        partitions: i32,
        batches: i64,
        batch_bytes: usize,
        record_bytes: usize,
    ) -> io::Result<NullLog> {
        let record_bytes = record_bytes.max(1);
        // Each record costs its value and about a dozen bytes of framing; librdkafka fills a
        // batch up to batch.size the same way.
        let per_batch = (batch_bytes / (record_bytes + 12)).max(1);
        let values = super::bare::batch_bytes(record_bytes * per_batch);
        let records: Vec<KeyValue<'_>> = values
            .chunks(record_bytes)
            .map(|value| (None, Some(value)))
            .collect();
        let buf = build_batch(0, crate::timefmt::now_ms(), &records);
        validate_record_set(&buf).map_err(|e| {
            io::Error::other(format!("the null broker's batch is not valid: {e:?}"))
        })?;
        Ok(NullLog {
            topic: topic.to_string(),
            partitions: partitions.max(1),
            batches: batches.max(1),
            batch: Bytes::from(buf),
            records_per_batch: per_batch as i64,
        })
    }

    /// Records in each partition.
    pub fn records_per_partition(&self) -> i64 {
        self.batches * self.records_per_batch
    }

    /// Records in the whole log (what a consumer reading all of it counts).
    pub fn records(&self) -> u64 {
        (self.records_per_partition() * self.partitions as i64) as u64
    }
}

/// What the null broker did, once stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NullFigures {
    /// CPU of its threads (user + system).
    pub cpu_secs: f64,
    pub requests: u64,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    figures: Mutex<NullFigures>,
    /// Next offset of each partition, as Produce acknowledges them.
    produced: Mutex<Vec<i64>>,
}

/// A running null broker on 127.0.0.1.
pub struct NullBroker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<Vec<Connection>>>,
}

/// A connection's thread, and a handle on its socket to end it with.
struct Connection {
    thread: JoinHandle<()>,
    socket: TcpStream,
}

impl NullBroker {
    pub fn start(log: NullLog) -> io::Result<NullBroker> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            produced: Mutex::new(vec![0; log.partitions as usize]),
            ..Shared::default()
        });
        let log = Arc::new(log);
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("null-broker".into())
            .spawn(move || accept_loop(listener, addr, log, s))?;
        Ok(NullBroker {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `host:port` for `-b`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting, closes the connections a client left open (normally none: the client
    /// has exited by then) and returns the figures once their threads have ended.
    pub fn stop(mut self) -> NullFigures {
        self.shutdown();
        *self
            .shared
            .figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop; it sees the flag before serving this connection.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            if let Ok(connections) = accept.join() {
                for c in connections {
                    // The thread's blocking read returns, and it ends as if the client had.
                    let _ = c.socket.shutdown(Shutdown::Both);
                    let _ = c.thread.join();
                }
            }
        }
    }
}

impl Drop for NullBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    log: Arc<NullLog>,
    shared: Arc<Shared>,
) -> Vec<Connection> {
    let mut connections: Vec<Connection> = Vec::new();
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        connections.retain(|c| !c.thread.is_finished());
        if connections.len() >= CONNECTIONS_MAX {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(socket) = stream.try_clone() else {
            continue;
        };
        let (log, s) = (log.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("null-broker-conn".into())
            .spawn(move || {
                let mut requests = 0;
                // A connection ends when the client closes it, or with a line on stderr when it
                // sends what the null broker does not answer.
                if let Err(e) = serve(stream, addr, &log, &s, &mut requests) {
                    if !client_gone(&e) {
                        eprintln!("runnel bench: the null broker closed a connection: {e}");
                    }
                }
                let cpu = thread_cpu_secs().unwrap_or(0.0);
                let mut f = s.figures.lock().unwrap_or_else(|e| e.into_inner());
                f.cpu_secs += cpu;
                f.requests += requests;
            });
        if let Ok(thread) = spawned {
            connections.push(Connection { thread, socket });
        }
    }
    let cpu = thread_cpu_secs().unwrap_or(0.0);
    shared
        .figures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .cpu_secs += cpu;
    connections
}

/// Whether `e` only says that the client closed its end.
fn client_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn serve(
    mut stream: TcpStream,
    addr: SocketAddr,
    log: &NullLog,
    shared: &Shared,
    requests: &mut u64,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    loop {
        let mut size = [0u8; 4];
        stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= FRAME_BYTES_MAX)
            .ok_or_else(|| io::Error::other(format!("request frame of {size} bytes")))?;
        let mut frame = Vec::with_capacity(size);
        (&mut stream).take(size as u64).read_to_end(&mut frame)?;
        if frame.len() < size {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        *requests += 1;
        let supported = |k: ApiKey| VERSIONS.iter().find(|(key, _)| *key == k).map(|(_, r)| *r);
        let request = match decode_request(Bytes::from(frame), supported) {
            Ok(Decoded::Request(r)) => r,
            Ok(Decoded::ApiVersionsUnsupported { correlation_id, .. }) => {
                out.clear();
                runnel_protocol::response::encode_api_versions_unsupported(
                    &mut out,
                    correlation_id,
                    &VERSIONS,
                )
                .map_err(io::Error::other)?;
                stream.write_all(&out)?;
                continue;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        if let RequestKind::Fetch(fetch) = &request.body {
            let answer = fetch_answer(
                log,
                fetch,
                request.api_version,
                request.header.correlation_id,
            );
            if answer.batches.is_empty() {
                // Nothing to send (every partition at its end): the request's wait, bounded.
                let wait_ms = u64::try_from(fetch.max_wait_ms).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX)));
            }
            write_all_vectored(&mut stream, answer.slices(&log.batch))?;
            continue;
        }
        let Some(body) = answer(log, shared, addr, &request) else {
            continue; // acks=0
        };
        out.clear();
        encode_response(
            &mut out,
            request.api_key,
            request.api_version,
            request.header.correlation_id,
            &body,
        )
        .map_err(io::Error::other)?;
        stream.write_all(&out)?;
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The answer to every request but Fetch; `None` for a Produce with acks=0.
fn answer(
    log: &NullLog,
    shared: &Shared,
    addr: SocketAddr,
    request: &DecodedRequest,
) -> Option<ResponseKind> {
    let host = || StrBytes::from_string(addr.ip().to_string());
    let port = i32::from(addr.port());
    Some(match &request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(
            ApiVersionsResponse::default().with_api_keys(api_version_entries(&VERSIONS)),
        ),
        RequestKind::Metadata(m) => {
            let names: Vec<TopicName> = match &m.topics {
                None => vec![topic_name(&log.topic)],
                Some(ts) => ts.iter().filter_map(|t| t.name.clone()).collect(),
            };
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(NODE_ID))
                        .with_host(host())
                        .with_port(port)])
                    .with_cluster_id(Some(StrBytes::from_static_str("null-broker")))
                    .with_controller_id(BrokerId(NODE_ID))
                    .with_topics(names.into_iter().map(|n| metadata_topic(log, n)).collect()),
            )
        }
        RequestKind::CreateTopics(c) => {
            let exists = |t: &CreatableTopic| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(TOPIC_ALREADY_EXISTS)
            };
            ResponseKind::CreateTopics(
                CreateTopicsResponse::default().with_topics(c.topics.iter().map(exists).collect()),
            )
        }
        RequestKind::FindCoordinator(_) => ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(NODE_ID))
                .with_host(host())
                .with_port(port),
        ),
        RequestKind::ListOffsets(l) => {
            let topic = |t: &ListOffsetsTopic| {
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| list_offset(log, &t.name, p.partition_index, p.timestamp))
                            .collect(),
                    )
            };
            ResponseKind::ListOffsets(
                ListOffsetsResponse::default().with_topics(l.topics.iter().map(topic).collect()),
            )
        }
        RequestKind::Produce(p) => {
            let mut produced = shared.produced.lock().unwrap_or_else(|e| e.into_inner());
            let topic = |t: &TopicProduceData| {
                let partitions = t
                    .partition_data
                    .iter()
                    .map(|d| acknowledge(log, &mut produced, &t.name, d))
                    .collect();
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(partitions)
            };
            let responses = p.topic_data.iter().map(topic).collect();
            if p.acks == 0 {
                return None;
            }
            ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
        }
        // Not in VERSIONS, so not decoded.
        _ => return None,
    })
}

/// Whether `(topic, partition)` is one of the null log's.
fn known(log: &NullLog, topic: &TopicName, partition: i32) -> bool {
    topic.0.as_str() == log.topic && (0..log.partitions).contains(&partition)
}

fn metadata_topic(log: &NullLog, name: TopicName) -> MetadataResponseTopic {
    if name.0.as_str() != log.topic {
        return MetadataResponseTopic::default()
            .with_name(Some(name))
            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION);
    }
    let partition = |p: i32| {
        MetadataResponsePartition::default()
            .with_partition_index(p)
            .with_leader_id(BrokerId(NODE_ID))
            .with_replica_nodes(vec![BrokerId(NODE_ID)])
            .with_isr_nodes(vec![BrokerId(NODE_ID)])
    };
    MetadataResponseTopic::default()
        .with_name(Some(name))
        .with_partitions((0..log.partitions).map(partition).collect())
}

/// ListOffsets: -1 (latest) is the end, anything else the start.
fn list_offset(
    log: &NullLog,
    topic: &TopicName,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let r = ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_timestamp(-1);
    if !known(log, topic, partition) {
        return r
            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
            .with_offset(-1);
    }
    r.with_offset(if timestamp == -1 {
        log.records_per_partition()
    } else {
        0
    })
}

/// Produce: the offset the partition's first new record gets, and the partition's next.
fn acknowledge(
    log: &NullLog,
    produced: &mut [i64],
    topic: &TopicName,
    data: &PartitionProduceData,
) -> PartitionProduceResponse {
    let r = PartitionProduceResponse::default()
        .with_index(data.index)
        .with_log_append_time_ms(-1);
    let next = usize::try_from(data.index)
        .ok()
        .filter(|_| known(log, topic, data.index))
        .and_then(|i| produced.get_mut(i));
    match next {
        Some(next) => {
            let base = *next;
            *next += data.records.as_deref().map_or(0, count_records);
            r.with_base_offset(base)
        }
        None => r
            .with_error_code(UNKNOWN_TOPIC_OR_PARTITION)
            .with_base_offset(-1),
    }
}

/// Records in a request's record batches (their last offset deltas), without checking them.
fn count_records(mut records: &[u8]) -> i64 {
    let mut n = 0;
    while records.len() >= BATCH_HEADER_BYTES {
        let len = i32::from_be_bytes(
            records[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let delta = i32::from_be_bytes(
            records[BATCH_LAST_OFFSET_DELTA_AT..BATCH_LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        n += i64::from(delta.max(0)) + 1;
        let Some(total) = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(BATCH_LOG_OVERHEAD_BYTES))
        else {
            break;
        };
        records = &records[total.min(records.len())..];
    }
    n
}

/// A Fetch answer: encoded fields in `inline`, and at each position in `inline` listed in
/// `batches` the batch from its 9th byte on (its first 8, the base offset, end `inline` there).
struct FetchAnswer {
    inline: Vec<u8>,
    batches: Vec<usize>,
}

impl FetchAnswer {
    fn slices<'a>(&'a self, batch: &'a [u8]) -> Vec<IoSlice<'a>> {
        let mut v = Vec::with_capacity(self.batches.len() * 2 + 1);
        let mut from = 0;
        for &at in &self.batches {
            v.push(IoSlice::new(&self.inline[from..at]));
            v.push(IoSlice::new(&batch[8..]));
            from = at;
        }
        v.push(IoSlice::new(&self.inline[from..]));
        v
    }
}

/// Encodes a Fetch answer at `version` (4 to 11: no tagged fields) by hand, Kafka's
/// `FetchResponse` field by field.
fn fetch_answer(
    log: &NullLog,
    fetch: &FetchRequest,
    version: i16,
    correlation_id: i32,
) -> FetchAnswer {
    let mut inline: Vec<u8> = Vec::with_capacity(256);
    let mut batches = Vec::new();
    let rest = log.batch.len() - 8;
    let end = log.records_per_partition();
    let mut budget = i64::from(fetch.max_bytes.max(0));
    inline.put_i32(0); // size, set at the end
    inline.put_i32(correlation_id);
    inline.put_i32(0); // throttle_time_ms
    if version >= 7 {
        inline.put_i16(0); // error_code
        inline.put_i32(0); // session_id: no session
    }
    inline.put_i32(fetch.topics.len() as i32);
    for t in &fetch.topics {
        let name = t.topic.0.as_bytes();
        inline.put_i16(name.len() as i16);
        inline.put_slice(name);
        inline.put_i32(t.partitions.len() as i32);
        for p in &t.partitions {
            let known = known(log, &t.topic, p.partition);
            let in_range = (0..=end).contains(&p.fetch_offset);
            let error = match (known, in_range) {
                (false, _) => UNKNOWN_TOPIC_OR_PARTITION,
                (true, false) => OFFSET_OUT_OF_RANGE,
                (true, true) => 0,
            };
            inline.put_i32(p.partition);
            inline.put_i16(error);
            inline.put_i64(if known { end } else { -1 }); // high_watermark
            inline.put_i64(if known { end } else { -1 }); // last_stable_offset
            if version >= 5 {
                inline.put_i64(if known { 0 } else { -1 }); // log_start_offset
            }
            inline.put_i32(0); // aborted_transactions: none
            if version >= 11 {
                inline.put_i32(-1); // preferred_read_replica
            }
            let start = if error == 0 {
                p.fetch_offset / log.records_per_batch
            } else {
                log.batches
            };
            let mut first = start;
            let mut allowed = i64::from(p.partition_max_bytes.max(0)).min(budget);
            let mut n = 0usize;
            while first < log.batches && n < FETCH_BATCHES_MAX {
                // At least one batch per answer, whatever the limits (as Kafka does).
                let fits = (log.batch.len() as i64) <= allowed;
                if !(fits || (batches.is_empty() && n == 0)) {
                    break;
                }
                n += 1;
                allowed -= log.batch.len() as i64;
                budget -= log.batch.len() as i64;
                first += 1;
            }
            inline.put_i32((n * log.batch.len()) as i32);
            let mut base = start * log.records_per_batch;
            for _ in 0..n {
                inline.put_i64(base);
                batches.push(inline.len());
                base += log.records_per_batch;
            }
        }
    }
    let size = inline.len() - 4 + batches.len() * rest;
    inline[..4].copy_from_slice(&(size as i32).to_be_bytes());
    FetchAnswer { inline, batches }
}

fn write_all_vectored(stream: &mut TcpStream, mut slices: Vec<IoSlice<'_>>) -> io::Result<()> {
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = stream.write_vectored(rest)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::{ClientConfig, Message};
    use std::time::Instant;

    fn config(addr: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", addr)
            .set("socket.timeout.ms", "10000");
        if let Ok(d) = std::env::var("NULL_BROKER_DEBUG") {
            c.set("debug", d);
        }
        c
    }

    #[test]
    fn given_a_null_broker_librdkafka_reads_every_record_of_every_partition_in_order() {
        let log = NullLog::new("t", 3, 5, 64 * 1024, 1024).unwrap();
        let per_partition = log.records_per_partition();
        let broker = NullBroker::start(log.clone()).unwrap();
        let consumer: BaseConsumer = config(&broker.addr())
            .set("group.id", "null-broker-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("t", p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut next = [0i64; 3];
        let deadline = Instant::now() + Duration::from_secs(60);
        while next.iter().any(|n| *n < per_partition) {
            assert!(
                Instant::now() < deadline,
                "stopped at {next:?} of {per_partition}"
            );
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap();
            let p = m.partition() as usize;
            assert_eq!(m.offset(), next[p], "partition {p}");
            assert_eq!(m.payload().map(<[u8]>::len), Some(1024));
            next[p] += 1;
        }
        drop(consumer);
        let figures = broker.stop();
        assert!(figures.requests > 0);
    }

    #[test]
    fn given_a_null_broker_librdkafka_has_its_records_acknowledged_at_consecutive_offsets() {
        let log = NullLog::new("t", 2, 1, 64 * 1024, 1024).unwrap();
        let broker = NullBroker::start(log).unwrap();
        let producer: BaseProducer = config(&broker.addr())
            .set("acks", "1")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let value = vec![b'v'; 1024];
        for i in 0..1000 {
            producer
                .send(
                    BaseRecord::<(), _>::to("t")
                        .partition(i % 2)
                        .payload(&value),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        let produced = broker.shared.produced.lock().unwrap().clone();
        assert_eq!(produced, vec![500, 500]);
        drop(producer);
        broker.stop();
    }

    #[test]
    fn given_a_client_that_stays_connected_when_stopped_should_close_it_and_return() {
        let broker = NullBroker::start(NullLog::new("t", 1, 1, 64 * 1024, 1024).unwrap()).unwrap();
        let mut held = TcpStream::connect(broker.addr()).unwrap();
        // A whole request is served first, so the connection's thread is surely running:
        // ApiVersions v0 (key 18, version 0, correlation id 7, null client id, empty body).
        let frame = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
        held.write_all(&frame).unwrap();
        let mut size = [0u8; 4];
        held.read_exact(&mut size).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(broker.stop());
        });
        let figures = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("stop returned while a client held its connection");
        assert_eq!(figures.requests, 1);
        let mut rest = Vec::new();
        held.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = held.read_to_end(&mut rest);
        drop(held);
    }

    /// The hand-encoded answer, decoded by the generated codec at `version`: per partition,
    /// (error code, high watermark, base offsets of the batches).
    fn decoded_fetch(
        log: &NullLog,
        version: i16,
        max_bytes: i32,
        partitions: &[(i32, i64, i32)],
    ) -> Vec<(i16, i64, Vec<i64>)> {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        use kafka_protocol::messages::FetchResponse;
        use kafka_protocol::protocol::Decodable;
        use kafka_protocol::records::RecordBatchDecoder;
        let request = FetchRequest::default()
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&(p, offset, max)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(max)
                        })
                        .collect(),
                )]);
        let answer = fetch_answer(log, &request, version, 7);
        let wire: Vec<u8> = answer
            .slices(&log.batch)
            .iter()
            .flat_map(|s| s.to_vec())
            .collect();
        let size = i32::from_be_bytes(wire[..4].try_into().unwrap()) as usize;
        assert_eq!(size, wire.len() - 4, "v{version}: size prefix");
        assert_eq!(i32::from_be_bytes(wire[4..8].try_into().unwrap()), 7);
        let mut body = Bytes::from(wire[8..].to_vec());
        let r = FetchResponse::decode(&mut body, version).unwrap();
        assert!(body.is_empty(), "v{version}: bytes left after the answer");
        r.responses[0]
            .partitions
            .iter()
            .map(|p| {
                let mut records = p.records.clone().unwrap_or_default();
                let bases = RecordBatchDecoder::decode_all(&mut records)
                    .unwrap()
                    .iter()
                    .map(|b| b.records[0].offset)
                    .collect();
                (p.error_code, p.high_watermark, bases)
            })
            .collect()
    }

    #[test]
    fn fetch_answers_decode_at_every_version_with_whole_batches_at_their_offsets() {
        let log = NullLog::new("t", 2, 4, 16 * 1024, 1024).unwrap();
        let (n, size) = (log.records_per_batch, log.batch.len() as i32);
        let end = log.records_per_partition();
        for version in 4..=11 {
            let got = decoded_fetch(
                &log,
                version,
                1 << 20,
                &[
                    // From the middle of the second batch, room for two.
                    (0, n + 1, 2 * size),
                    // Room for less than a batch, and the answer already has one: none.
                    (1, 0, size - 1),
                    // A partition the topic does not have.
                    (2, 0, size),
                ],
            );
            assert_eq!(
                got,
                vec![
                    (0, end, vec![n, 2 * n]),
                    (0, end, vec![]),
                    (UNKNOWN_TOPIC_OR_PARTITION, -1, vec![]),
                ],
                "v{version}"
            );
            let got = decoded_fetch(&log, version, 1, &[(1, 0, 1), (0, end + 1, size)]);
            assert_eq!(
                got,
                vec![(0, end, vec![0]), (OFFSET_OUT_OF_RANGE, end, vec![])],
                "v{version}: the first batch goes whatever the limits"
            );
        }
    }

    #[test]
    fn count_records_adds_the_last_offset_deltas_of_the_batches() {
        let log = NullLog::new("t", 1, 1, 16 * 1024, 100).unwrap();
        let two = [&log.batch[..], &log.batch[..]].concat();
        assert_eq!(count_records(&log.batch), log.records_per_batch);
        assert_eq!(count_records(&two), 2 * log.records_per_batch);
        assert_eq!(count_records(&two[..10]), 0);
    }
}
