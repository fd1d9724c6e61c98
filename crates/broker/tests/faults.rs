//! Storage faults seen through the protocol: a full disk makes Produce answer
//! KAFKA_STORAGE_ERROR without a crash, reads keep working and writes resume; short writes are
//! completed transparently; a failed fsync is never acknowledged as success: the partition
//! turns read-only (serving what is durable) until a restart, whose recovery serves everything
//! acknowledged.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{metric, name, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use runnel_broker::{BrokerConfig, RunningBroker, StartOptions};
use runnel_log::testing::{FaultyStorage, WriteFault};
use runnel_model::batch::testing::{build_batch, simple_batch, KeyValue};

const DEADLINE: Duration = Duration::from_secs(20);

/// A broker whose storage injects faults, on a data directory that outlives restarts, and a
/// client connected to it.
struct Faulty {
    dir: tempfile::TempDir,
    storage: Arc<FaultyStorage>,
    overrides: Vec<(String, String)>,
    running: RunningBroker,
    c: Client,
}

impl Faulty {
    async fn start(extra: &[(&str, &str)]) -> Faulty {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new(Arc::new(runnel_log::FsStorage::new()));
        let mut overrides = vec![
            ("log.dirs".to_string(), dir.path().display().to_string()),
            (
                "listeners".to_string(),
                "PLAINTEXT://127.0.0.1:0".to_string(),
            ),
        ];
        overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self::open(dir, storage, overrides).await
    }

    async fn open(
        dir: tempfile::TempDir,
        storage: Arc<FaultyStorage>,
        overrides: Vec<(String, String)>,
    ) -> Faulty {
        let config = BrokerConfig::from_sources(None, &overrides).unwrap();
        let running = RunningBroker::start_with(
            config,
            StartOptions {
                admin_listen: None,
                storage: Some(storage.clone()),
            },
        )
        .await
        .expect("starts");
        let c = Client::connect(running.local_addrs()[0]).await;
        Faulty {
            dir,
            storage,
            overrides,
            running,
            c,
        }
    }

    /// Shuts the broker down and starts it again on the same directory, the disk healed: the
    /// logs are reopened, and recovery reads what is really on disk.
    async fn restart(self) -> Faulty {
        drop(self.c);
        self.running.shutdown().await;
        self.storage.heal();
        Self::open(self.dir, self.storage, self.overrides).await
    }

    /// Produces one batch of `vals` to partition 0 of `topic`: the error code and base offset.
    async fn produce(&mut self, topic: &str, vals: &[&str]) -> (i16, i64) {
        let r = self.c.send(&produce(topic, values(vals)), 9).await;
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// `runnel_partition_log_failed` of partition 0 of `topic`, as scraped.
    fn failed_gauge(&self, topic: &str) -> Option<f64> {
        let series = format!("runnel_partition_log_failed{{partition=\"0\",topic=\"{topic}\"}}");
        metric(&self.running, &series)
    }

    /// Whether partition 0 of `topic` turned failed.
    fn failed(&self, topic: &str) -> bool {
        let topic = self.running.broker().topic(topic).expect("topic");
        topic
            .partition(0)
            .expect("partition")
            .log
            .failure()
            .is_some()
    }
}

fn produce(topic: &str, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])])
}

fn produce_code(r: &ProduceResponse) -> i16 {
    r.responses[0].partition_responses[0].error_code
}

/// A batch of one record per value, timestamped now.
fn values(values: &[&str]) -> Vec<u8> {
    let kvs: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    build_batch(0, now_ms, &kvs)
}

/// Fetches partition 0 of `topic` from `offset`: the error code, the high watermark and the
/// `(offset, value)` of every record served.
async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, i64, Vec<(i64, String)>) {
    let req = FetchRequest::default()
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let f = c.send(&req, 12).await;
    let p = &f.responses[0].partitions[0];
    let mut records = Vec::new();
    let mut bytes = p.records.clone().unwrap_or_default();
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).expect("served batches decode");
        for r in set.records {
            let value = r.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
            records.push((r.offset, value.unwrap_or_default()));
        }
    }
    (p.error_code, p.high_watermark, records)
}

fn numbered(from: i64, values: &[&str]) -> Vec<(i64, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (from + i as i64, v.to_string()))
        .collect()
}

/// Polls `f` until it is true, failing the test after [`DEADLINE`].
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn storage_error() -> i16 {
    ResponseError::KafkaStorageError.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_disk_produce_answers_storage_error_reads_keep_working_and_writes_resume() {
    let mut b = Faulty::start(&[]).await;
    let r = b.c.send(&produce("disk", simple_batch(0, 2)), 9).await;
    assert_eq!(produce_code(&r), 0);
    b.storage.fail_next_write(
        "disk-0/00000000000000000000.log",
        WriteFault::NoSpace { prefix_bytes: 10 },
    );
    let r = b.c.send(&produce("disk", simple_batch(0, 3)), 9).await;
    assert_eq!(produce_code(&r), storage_error());
    let (code, high_watermark, _) = fetch(&mut b.c, "disk", 0).await;
    assert_eq!(code, 0, "reads keep working");
    assert_eq!(high_watermark, 2, "nothing of the failed write is visible");
    // Space is back: the next write goes through, right after the acknowledged ones.
    let r = b.c.send(&produce("disk", simple_batch(0, 1)), 9).await;
    assert_eq!(produce_code(&r), 0);
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 2);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_short_writes_produce_is_acknowledged_and_the_records_read_back_also_after_a_restart()
{
    // Small index interval, so appends write index entries too.
    let mut b = Faulty::start(&[("log.index.interval.bytes", "64")]).await;
    let mut expected = Vec::new();
    let mut next = 0i64;
    for (i, suffix) in ["", ".log", ".log", ".index", ".log", ".timeindex", ".log"]
        .into_iter()
        .enumerate()
    {
        let vals: Vec<String> = (0..=i).map(|j| format!("short-{i}-{j}")).collect();
        let vals: Vec<&str> = vals.iter().map(String::as_str).collect();
        // The next write to such a file (the first time: to any file, the topic's creation
        // included) takes at most a few bytes and says so: a legal short write, which must be
        // completed.
        let path = if suffix.is_empty() {
            String::new()
        } else {
            format!("short-0/00000000000000000000{suffix}")
        };
        b.storage.fail_next_write(
            &path,
            WriteFault::Short {
                max_bytes: 1 + 5 * i,
            },
        );
        assert_eq!(b.produce("short", &vals).await, (0, next), "produce {i}");
        expected.extend(numbered(next, &vals));
        next += vals.len() as i64;
    }
    let injected = b.storage.injected_count();
    assert!(
        injected >= 5,
        "the short writes happened ({injected} injected)"
    );
    for restarted in [false, true] {
        if restarted {
            b = b.restart().await;
        }
        let (code, high_watermark, records) = fetch(&mut b.c, "short", 0).await;
        assert_eq!((code, high_watermark), (0, next), "restarted: {restarted}");
        assert_eq!(records, expected, "restarted: {restarted}");
    }
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_failed_fsync_the_produce_is_not_acknowledged_the_partition_turns_read_only_and_a_restart_serves_everything_acknowledged(
) {
    // Every produce needs an fsync before it is acknowledged.
    let mut b = Faulty::start(&[("log.flush.interval.messages", "1")]).await;
    assert_eq!(b.produce("sync", &["a", "b"]).await, (0, 0));
    assert_eq!(b.produce("sync", &["c"]).await, (0, 2));
    let acknowledged = numbered(0, &["a", "b", "c"]);
    assert_eq!(b.failed_gauge("sync"), Some(0.0));

    b.storage.fail_next_sync("sync-0/00000000000000000000.log");
    let (code, _) = b.produce("sync", &["d", "e", "f"]).await;
    assert_eq!(code, storage_error(), "a failed fsync is not acknowledged");
    assert_eq!(b.storage.injected_count(), 1);
    assert!(b.failed("sync"), "the partition turned failed");
    assert_eq!(b.failed_gauge("sync"), Some(1.0), "and the metric says so");
    // Never ignored: the disk works again, but no later write is acknowledged until a restart
    // (an fsync after a failed one may report success for pages the kernel dropped).
    assert_eq!(b.produce("sync", &["g"]).await.0, storage_error());
    // Read-only: what was acknowledged (and so made durable) is served, nothing after it.
    let (code, high_watermark, records) = fetch(&mut b.c, "sync", 0).await;
    assert_eq!((code, high_watermark), (0, 3));
    assert_eq!(records, acknowledged);
    let (code, _, records) = fetch(&mut b.c, "sync", 3).await;
    assert_eq!(code, storage_error());
    assert!(records.is_empty());

    let mut b = b.restart().await;
    assert_eq!(b.failed_gauge("sync"), Some(0.0));
    let (code, high_watermark, records) = fetch(&mut b.c, "sync", 0).await;
    assert_eq!(code, 0);
    // The unacknowledged produce may be there (whole) or not, as Kafka allows.
    assert!(
        high_watermark == 3 || high_watermark == 6,
        "{high_watermark}"
    );
    assert_eq!(records[..3], acknowledged[..]);
    assert_eq!(records.len() as i64, high_watermark);
    let written = b.produce("sync", &["h"]).await;
    assert_eq!(
        written,
        (0, high_watermark),
        "writes resume after the restart"
    );
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_failed_background_flush_the_partition_stops_acknowledging_serves_nothing_undurable_and_a_restart_serves_everything_acknowledged(
) {
    // Produces are acknowledged before any fsync; the flush timer fsyncs them (flush.ms 0).
    let mut b = Faulty::start(&[("log.flush.interval.ms", "0")]).await;
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("bg"))
            .with_num_partitions(1)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    assert_eq!(b.c.send(&create, 7).await.topics[0].error_code, 0);
    b.storage.fail_next_sync("bg-0/00000000000000000000.log");
    assert_eq!(b.produce("bg", &["a", "b"]).await, (0, 0));
    let acknowledged = numbered(0, &["a", "b"]);

    // The flush timer's fsync fails: its error is not dropped.
    let storage = b.storage.clone();
    wait_until("the background flush to hit the failing fsync", || {
        storage.injected_count() == 1
    })
    .await;
    wait_until("the partition to turn failed", || b.failed("bg")).await;
    let (code, _) = b.produce("bg", &["c"]).await;
    assert_eq!(code, storage_error(), "no write is acknowledged any more");
    // The acknowledged records never became durable: they are not served from a log whose
    // fsync failed (the kernel may have dropped them), so a consumer never sees records that
    // the restart takes back.
    let (code, _, records) = fetch(&mut b.c, "bg", 0).await;
    assert_eq!(code, storage_error());
    assert!(records.is_empty());

    let mut b = b.restart().await;
    let (code, high_watermark, records) = fetch(&mut b.c, "bg", 0).await;
    assert_eq!((code, high_watermark), (0, 2));
    assert_eq!(records, acknowledged);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_topic_whose_log_cannot_be_opened_create_and_produce_answer_storage_error_until_a_restart(
) {
    let mut b = Faulty::start(&[]).await;
    // The partition logs' disk fails (the metadata log, elsewhere, still works).
    b.storage.crash();
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name("unopenable"))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let r = b.c.send(&create, 7).await;
    assert_eq!(
        r.topics[0].error_code,
        storage_error(),
        "not success for a topic that cannot be served"
    );
    let (code, _) = b.produce("unopenable", &["x"]).await;
    assert_eq!(
        code,
        storage_error(),
        "Produce says why, not UNKNOWN_SERVER_ERROR"
    );
    // The topic is in the metadata; once the disk works again a restart opens it.
    let mut b = b.restart().await;
    let (code, base_offset) = b.produce("unopenable", &["x"]).await;
    assert_eq!((code, base_offset), (0, 0));
    b.running.shutdown().await;
}
