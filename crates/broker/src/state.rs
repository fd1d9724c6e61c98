//! The broker's shared state: configuration, the metadata image, and the partitions it
//! leads. Metadata changes go through one path: the controller turns a request into
//! records, the records are appended (durably) to the metadata log, applied to a copy of the
//! image, and the new image is swapped in; partition logs are then opened or deleted to
//! match it. Readers take an `Arc` snapshot of the image and never wait on a change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use runnel_log::{FsStorage, LogConfig, OpenMode, PartitionLog, Storage, TimestampType};
use runnel_metadata::controller::{
    self, ControllerError, CreateTopic, ReplicaAssignment, TopicDefaults, TopicRef,
};
use runnel_metadata::image::MetadataImage;
use runnel_metadata::records::{ConfigResource, MetadataRecord};
use runnel_metadata::store::{kafka_uuid_string, MetaProperties, MetadataLog};
use runnel_metadata::topic_config;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;

#[derive(Debug, Error)]
pub enum StartupError {
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: i32,
        source: runnel_log::LogError,
    },
    #[error("data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Errors of metadata changes requested by clients.
#[derive(Debug, Error)]
pub enum MetadataChangeError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("metadata log: {0}")]
    Store(String),
    #[error("partition log: {0}")]
    Log(#[from] runnel_log::LogError),
    /// The topic is in the metadata but its partition logs could not be opened here (a full
    /// or failing disk, no file descriptors left). Kafka: `KAFKA_STORAGE_ERROR`.
    #[error("topic {0}: its log could not be opened")]
    LogUnavailable(String),
}

/// Settings of a topic resolved from its overrides and the broker defaults, for the paths
/// that need them on every request.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `retention.ms` (-1: none).
    pub retention_ms: i64,
    /// `retention.bytes` (-1: none).
    pub retention_bytes: i64,
    /// `cleanup.policy` includes `delete`.
    pub delete_policy: bool,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub file_delete_delay_ms: i64,
    pub log: LogConfig,
}

/// A partition this broker leads.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub leader_epoch: i32,
    pub log: PartitionLog,
    /// Offset below which records are visible to consumers. A single node is its own ISR, so
    /// this follows the log end offset; with replication it will follow the ISR.
    high_watermark: AtomicI64,
}

impl Partition {
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }
    /// The last stable offset (KIP-98): below it every transaction is decided, so
    /// `read_committed` readers may see it. The high watermark, or the first offset of the
    /// oldest open transaction if that is smaller.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        match self.log.first_unstable_offset() {
            Some(first_unstable) => first_unstable.min(high_watermark),
            None => high_watermark,
        }
    }
    /// Called after an append completed: the single replica has everything.
    pub fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.fetch_max(offset, Ordering::AcqRel);
    }
}

/// A topic with its open partitions.
pub struct TopicState {
    pub name: String,
    pub topic_id: Uuid,
    pub metrics: runnel_metrics::TopicMetrics,
    pub settings: TopicSettings,
    pub partitions: Vec<Arc<Partition>>,
}

impl TopicState {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// What a created topic looks like, for CreateTopics responses.
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A topic to create.
pub struct TopicSpec {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: u16,
    storage: Arc<dyn Storage>,
    data_dir: PathBuf,
    image: RwLock<Arc<MetadataImage>>,
    metadata_log: tokio::sync::Mutex<MetadataLog>,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    /// Woken after every append, for long-polling fetches.
    pub data_arrived: Notify,
    pub fetch_sessions: Mutex<FetchSessionCache>,
    pub(crate) coordinators: crate::coordinator::GroupCoordinators,
    pub(crate) txn_coordinators: crate::txn_coordinator::TxnCoordinators,
    pub metrics: Arc<runnel_metrics::Metrics>,
    pub(crate) connection_limiter: Arc<crate::limits::ConnectionLimiter>,
    /// Per API key, the metrics handle (looked up once, not per request).
    pub(crate) api_metrics: Vec<Option<runnel_metrics::ApiMetrics>>,
    /// `queued.max.request.bytes`; `None`: no limit.
    pub(crate) request_memory: Option<Arc<crate::limits::RequestMemoryPool>>,
    /// `(next, end)` of the block of producer ids this broker hands out.
    producer_ids: Mutex<(i64, i64)>,
    shutdown_tx: watch::Sender<bool>,
}

/// Checks a broker config set at run time (IncrementalAlterConfigs on a BROKER resource):
/// the broker-level defaults of topic configs may change dynamically, as in Kafka, with the
/// same validation as at start-up.
fn validate_dynamic_broker_config(key: &str, value: Option<&str>) -> Result<(), ControllerError> {
    if topic_config::topic_config_for_broker_synonym(key).is_none() {
        return Err(ControllerError::InvalidConfig(format!(
            "Cannot update these configs dynamically: Set({key})"
        )));
    }
    if let Some(value) = value {
        BrokerConfig::from_sources(None, &[(key.to_string(), value.to_string())])
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))?;
    }
    Ok(())
}

/// The scrape-time gauges: partition offsets, sizes and failed state, and consumer group lag;
/// and the log's count of dropped writeback hints. Holds the
/// broker weakly (the broker holds the metrics).
pub(crate) fn gauge_source(
    broker: std::sync::Weak<Broker>,
) -> impl Fn(&mut dyn runnel_metrics::SampleSink) + Send + Sync + 'static {
    move |sink: &mut dyn runnel_metrics::SampleSink| {
        let Some(b) = broker.upgrade() else {
            return;
        };
        sink.writeback_hints_dropped(runnel_log::storage::writeback_hints_dropped());
        for t in b.topics_snapshot() {
            for p in &t.partitions {
                sink.partition(
                    &t.name,
                    p.index,
                    runnel_metrics::PartitionSample {
                        log_start_offset: p.log.log_start_offset(),
                        log_end_offset: p.log.log_end_offset(),
                        high_watermark: p.high_watermark(),
                        size_bytes: p.log.size_bytes(),
                        failed: p.log.has_failed(),
                    },
                );
            }
        }
        for ((group, topic, partition), committed) in b.coordinators.committed_offsets() {
            let Some(end) = b
                .topic(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.high_watermark()))
            else {
                continue;
            };
            sink.group_partition(
                &group,
                &topic,
                partition,
                runnel_metrics::GroupPartitionSample {
                    committed_offset: committed,
                    end_offset: end,
                },
            );
        }
    }
}

/// Producer ids handed out per metadata record (Kafka's block size).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Resolves once the broker is shutting down, including when it already was when called
/// (a receiver's `changed()` would miss that: a task started just before a SIGTERM hung).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await.map(|_| ());
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Broker {
    /// Opens the data directory: metadata log replay, then every partition in the image.
    pub fn open(
        config: BrokerConfig,
        advertised_host: String,
        advertised_port: u16,
        metrics: Arc<runnel_metrics::Metrics>,
        storage: Option<Arc<dyn Storage>>,
    ) -> Result<Arc<Broker>, StartupError> {
        let data_dir = config.log_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartupError::DataDir {
            dir: data_dir.clone(),
            source,
        })?;
        let meta = MetaProperties::load_or_create(&data_dir, config.node_id)
            .map_err(|e| StartupError::Metadata(e.to_string()))?;
        let (metadata_log, image) =
            MetadataLog::open(&data_dir).map_err(|e| StartupError::Metadata(e.to_string()))?;
        let storage: Arc<dyn Storage> = storage.unwrap_or_else(|| Arc::new(FsStorage::new()));
        let broker = Broker {
            node_id: config.node_id,
            cluster_id: meta.cluster_id.clone(),
            advertised_host,
            advertised_port,
            storage,
            data_dir,
            image: RwLock::new(Arc::new(image)),
            metadata_log: tokio::sync::Mutex::new(metadata_log),
            topics: RwLock::new(HashMap::new()),
            data_arrived: Notify::new(),
            fetch_sessions: Mutex::new(FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots as usize,
            )),
            coordinators: Default::default(),
            txn_coordinators: Default::default(),
            connection_limiter: crate::limits::ConnectionLimiter::new(
                config.max_connections,
                config.max_connections_per_ip,
            ),
            api_metrics: crate::handlers::SUPPORTED.iter().fold(
                vec![None; 128],
                |mut v, (key, _)| {
                    let name: &'static str = Box::leak(format!("{key:?}").into_boxed_str());
                    if let Some(slot) = v.get_mut(*key as usize) {
                        *slot = Some(metrics.api(name));
                    }
                    v
                },
            ),
            request_memory: crate::limits::RequestMemoryPool::new(config.queued_max_request_bytes),
            metrics,
            producer_ids: Mutex::new((0, 0)),
            shutdown_tx: watch::channel(false).0,
            config,
        };
        let image = broker.image();
        let mut topics = HashMap::new();
        for topic in image.topics() {
            let state =
                broker
                    .open_topic(&image, topic.name())
                    .map_err(|(partition, source)| StartupError::Log {
                        topic: topic.name().to_string(),
                        partition,
                        source,
                    })?;
            topics.insert(topic.name().to_string(), state);
        }
        broker.remove_orphan_partition_dirs(&topics);
        info!(topics = topics.len(), "partitions opened");
        *broker.topics.write().expect("topics lock") =
            topics.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        Ok(Arc::new(broker))
    }

    /// Partition directories of topics that no longer exist (a crash between a deletion's
    /// metadata record and the removal of its files) are removed at start-up.
    fn remove_orphan_partition_dirs(&self, topics: &HashMap<String, TopicState>) {
        let Ok(entries) = self.storage.list_dir(&self.data_dir) else {
            return;
        };
        for entry in entries {
            let Some(name) = entry.to_str() else {
                continue;
            };
            let path = self.data_dir.join(name);
            let Some((topic, partition)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(partition) = partition.parse::<i32>() else {
                continue;
            };
            if topic.starts_with("__cluster_metadata") {
                continue;
            }
            let known = topics
                .get(topic)
                .is_some_and(|t| t.partition(partition).is_some());
            if !known {
                warn!(dir = %path.display(), "removing directory of a partition that is not in the metadata");
                if let Err(e) = self.storage.remove_dir_all(&path) {
                    warn!(dir = %path.display(), error = %e, "cannot remove orphan partition directory");
                }
            }
        }
    }

    /// Makes sure a partition directory belongs to the topic with this id, as Kafka's
    /// `partition.metadata` file does: a directory left by a deleted topic of the same name
    /// is removed rather than served as the new topic's data.
    fn claim_partition_dir(&self, dir: &std::path::Path, topic_id: Uuid) -> std::io::Result<()> {
        const PARTITION_METADATA_BYTES_MAX: usize = 4096;
        let path = dir.join("partition.metadata");
        let expected = format!("version: 0\ntopic_id: {}\n", kafka_uuid_string(&topic_id));
        match self.storage.open(&path, OpenMode::ReadWrite) {
            Ok(file) => {
                let len = (file.len()? as usize).min(PARTITION_METADATA_BYTES_MAX);
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, 0)?;
                if buf == expected.as_bytes() {
                    return Ok(());
                }
                warn!(dir = %dir.display(), found = %String::from_utf8_lossy(&buf).trim(), expected_topic_id = %kafka_uuid_string(&topic_id),
                    "partition directory belongs to another topic id; removing it");
                drop(file);
                self.storage.remove_dir_all(dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.storage.create_dir_all(dir)?;
        let file = self.storage.open(&path, OpenMode::CreateOrOpen)?;
        file.set_len(0)?;
        file.write_all_at(expected.as_bytes(), 0)?;
        file.sync_data()?;
        self.storage.sync_dir(dir)
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Resolves a topic's settings from its overrides and the broker's configuration.
    pub fn topic_settings(&self, image: &MetadataImage, topic: &str) -> TopicSettings {
        let lookup = |key: &str| self.config.lookup(key);
        let layers = topic_config::BrokerConfigLayers::from_image(image, self.node_id, &lookup);
        let entries = topic_config::effective_topic_config(image.topic_config(topic), &layers);
        let value = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        let int = |name: &str, default: i64| -> i64 {
            value(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let defaults = LogConfig::default();
        let timestamp_type = match value("message.timestamp.type").as_deref() {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };
        let compact_policy =
            value("cleanup.policy").is_some_and(|p| p.split(',').any(|p| p.trim() == "compact"));
        let log = LogConfig {
            segment_bytes: int("segment.bytes", defaults.segment_bytes as i64).max(1) as u64,
            // A compacted topic rolls by max.compaction.lag.ms too, as Kafka's maxSegmentMs,
            // so idle records become cleanable in time.
            segment_ms: if compact_policy {
                int("segment.ms", defaults.segment_ms).min(int("max.compaction.lag.ms", i64::MAX))
            } else {
                int("segment.ms", defaults.segment_ms)
            },
            index_interval_bytes: int("index.interval.bytes", defaults.index_interval_bytes as i64)
                .max(0) as u64,
            segment_index_bytes: int("segment.index.bytes", defaults.segment_index_bytes as i64)
                .max(8) as u64,
            flush_messages: int("flush.messages", i64::MAX).max(1) as u64,
            flush_ms: int("flush.ms", i64::MAX),
            producer_id_expiration_ms: i64::from(self.config.producer_id_expiration_ms),
            timestamp_type,
        };
        let policy = value("cleanup.policy").unwrap_or_else(|| "delete".into());
        TopicSettings {
            max_message_bytes: int("max.message.bytes", 1_048_588).max(0) as usize,
            timestamp_type,
            compacted: policy.split(',').any(|p| p.trim() == "compact"),
            delete_policy: policy.split(',').any(|p| p.trim() == "delete"),
            retention_ms: int("retention.ms", 604_800_000),
            retention_bytes: int("retention.bytes", -1),
            delete_retention_ms: int("delete.retention.ms", 86_400_000),
            min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.5),
            min_compaction_lag_ms: int("min.compaction.lag.ms", 0),
            max_compaction_lag_ms: int("max.compaction.lag.ms", i64::MAX),
            file_delete_delay_ms: int("file.delete.delay.ms", 60_000),
            log,
        }
    }

    fn open_partition(
        &self,
        name: &str,
        topic_id: Uuid,
        p: &runnel_metadata::image::PartitionImage,
        settings: &TopicSettings,
    ) -> Result<Partition, (i32, runnel_log::LogError)> {
        let index = p.partition;
        let dir = self.partition_dir(name, index);
        self.claim_partition_dir(&dir, topic_id).map_err(|source| {
            let err = runnel_log::LogError::Io {
                op: "claim partition directory",
                path: dir.clone(),
                source,
            };
            (index, err)
        })?;
        let log = PartitionLog::open(self.storage.clone(), &dir, settings.log.clone(), now_ms())
            .map_err(|e| (index, e))?;
        // This broker leads the partition from here on: its epoch starts at the log end (so
        // the first produce does not write the epoch checkpoint).
        log.assign_epoch_start_offset(p.leader_epoch)
            .map_err(|e| (index, e))?;
        let leo = log.log_end_offset();
        Ok(Partition {
            topic: name.to_string(),
            index,
            leader_epoch: p.leader_epoch,
            log,
            high_watermark: AtomicI64::new(leo),
        })
    }

    fn open_topic(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<TopicState, (i32, runnel_log::LogError)> {
        let topic = image.topic_by_name(name).expect("topic is in the image");
        let settings = self.topic_settings(image, name);
        let mut partitions = Vec::with_capacity(topic.partition_count());
        for p in topic.partitions() {
            partitions.push(Arc::new(self.open_partition(
                name,
                topic.topic_id(),
                p,
                &settings,
            )?));
        }
        Ok(TopicState {
            name: name.to_string(),
            topic_id: topic.topic_id(),
            metrics: self.metrics.topic(name),
            settings,
            partitions,
        })
    }

    /// A snapshot of the metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().expect("image lock").clone()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<Arc<TopicState>> {
        let name = self.image().topic_by_id(&topic_id)?.name().to_string();
        self.topic(&name)
    }

    /// Creates topics (or only validates them). Each spec gets its own result; earlier specs
    /// of the same call are visible to later ones.
    pub async fn create_topics(
        &self,
        specs: Vec<TopicSpec>,
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, MetadataChangeError>> {
        let mut log = self.metadata_log.lock().await;
        let mut image = (*self.image()).clone();
        let defaults = TopicDefaults {
            num_partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
        };
        let mut results = Vec::with_capacity(specs.len());
        let mut created_names = Vec::new();
        for spec in specs {
            let assignments: Vec<ReplicaAssignment> = spec
                .assignments
                .iter()
                .map(|(partition_index, broker_ids)| ReplicaAssignment {
                    partition_index: *partition_index,
                    broker_ids: broker_ids.clone(),
                })
                .collect();
            let request = CreateTopic {
                name: &spec.name,
                num_partitions: spec.num_partitions,
                replication_factor: spec.replication_factor,
                assignments: &assignments,
                configs: &spec.configs,
            };
            let records = controller::create_topic(
                &image,
                &request,
                &defaults,
                &[self.node_id],
                Uuid::new_v4(),
            );
            let records = match records {
                Ok(r) => r,
                Err(e) => {
                    results.push(Err(e.into()));
                    continue;
                }
            };
            if validate_only {
                let t = created_summary(&records);
                results.push(Ok(t));
                continue;
            }
            if let Err(e) = log.append(&records) {
                results.push(Err(MetadataChangeError::Store(e.to_string())));
                continue;
            }
            for r in &records {
                image.apply(r).expect(
                    "records made by the controller apply to the image they were made from",
                );
            }
            created_names.push((spec.name.clone(), results.len()));
            results.push(Ok(created_summary(&records)));
        }
        if created_names.is_empty() {
            return results;
        }
        let image = Arc::new(image);
        *self.image.write().expect("image lock") = image.clone();
        for (name, result_index) in created_names {
            match self.open_topic(&image, &name) {
                Ok(state) => {
                    info!(topic = %name, partitions = state.partitions.len(), "topic created");
                    self.topics
                        .write()
                        .expect("topics lock")
                        .insert(name, Arc::new(state));
                }
                Err((partition, e)) => {
                    // The topic exists in the metadata, but this broker cannot serve it: say
                    // so rather than answer success (the partitions are retried at the next
                    // start, as Kafka retries a failed log directory).
                    tracing::error!(topic = %name, partition, error = %e, "cannot open the log of a created topic");
                    results[result_index] = Err(MetadataChangeError::Log(e));
                }
            }
        }
        drop(log);
        results
    }

    /// Creates a topic with the broker defaults (auto-creation on Metadata and Produce).
    /// Returns the topic whether this call or a concurrent one created it.
    pub async fn auto_create_topic(
        &self,
        name: &str,
    ) -> Result<Arc<TopicState>, MetadataChangeError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        let spec = TopicSpec {
            name: name.to_string(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        };
        let result = self.create_topics(vec![spec], false).await.pop();
        match result {
            Some(Ok(_))
            | Some(Err(MetadataChangeError::Log(_)))
            | Some(Err(MetadataChangeError::Controller(ControllerError::TopicAlreadyExists(_)))) => {
                self.topic(name)
                    .ok_or_else(|| MetadataChangeError::LogUnavailable(name.to_string()))
            }
            Some(Err(e)) => Err(e),
            None => Err(MetadataChangeError::Store("no result".into())),
        }
    }

    /// Deletes a topic by name or id; returns its name and id.
    pub async fn delete_topic(
        &self,
        name: Option<&str>,
        topic_id: Option<Uuid>,
    ) -> Result<(String, Uuid), MetadataChangeError> {
        let mut log = self.metadata_log.lock().await;
        let mut image = (*self.image()).clone();
        let target = match (name, topic_id) {
            (Some(n), _) => TopicRef::Name(n),
            (None, Some(id)) => TopicRef::Id(id),
            (None, None) => {
                return Err(ControllerError::InvalidRequest(
                    "neither name nor topic id given".into(),
                )
                .into())
            }
        };
        let topic = match target {
            TopicRef::Name(n) => image.topic_by_name(n),
            TopicRef::Id(id) => image.topic_by_id(&id),
        };
        let (name, id) = match topic {
            Some(t) => (t.name().to_string(), t.topic_id()),
            None => (String::new(), Uuid::nil()),
        };
        let records = controller::delete_topic(&image, target)?;
        log.append(&records)
            .map_err(|e| MetadataChangeError::Store(e.to_string()))?;
        for r in &records {
            image
                .apply(r)
                .expect("records made by the controller apply to the image they were made from");
        }
        *self.image.write().expect("image lock") = Arc::new(image);
        let removed = self.topics.write().expect("topics lock").remove(&name);
        self.metrics.remove_topic(&name);
        if let Some(topic) = removed {
            for p in &topic.partitions {
                if let Err(e) = p.log.delete() {
                    warn!(topic = %name, partition = p.index, error = %e, "cannot remove partition files; they are removed at the next start");
                }
            }
        }
        info!(topic = %name, "topic deleted");
        drop(log);
        Ok((name, id))
    }

    /// Grows a topic to `total` partitions and opens the new partitions.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), MetadataChangeError> {
        let log = self.metadata_log.lock().await;
        let image = self.image();
        let records = controller::create_partitions(
            &image,
            topic,
            total,
            assignments.as_deref(),
            &[self.node_id],
        )?;
        if validate_only {
            return Ok(());
        }
        self.commit_and_refresh(log, &records, Some(topic)).await
    }

    /// Changes dynamic configs of a topic or of the brokers (cluster default or this node):
    /// `Some(value)` sets, `None` removes. The new values take effect without a restart.
    pub async fn alter_configs(
        &self,
        resource: ConfigResource,
        changes: Vec<(String, Option<String>)>,
        validate_only: bool,
    ) -> Result<(), MetadataChangeError> {
        let log = self.metadata_log.lock().await;
        let image = self.image();
        let (records, topic) = match &resource {
            ConfigResource::Topic(name) => (
                controller::alter_topic_configs(&image, name, &changes)?,
                Some(name.clone()),
            ),
            ConfigResource::Broker(name) => {
                for (key, value) in &changes {
                    validate_dynamic_broker_config(key, value.as_deref())?;
                }
                let records = changes
                    .iter()
                    .map(|(key, value)| MetadataRecord::Config {
                        resource: ConfigResource::Broker(name.clone()),
                        name: key.clone(),
                        value: value.clone(),
                    })
                    .collect();
                (records, None)
            }
        };
        if validate_only || records.is_empty() {
            return Ok(());
        }
        self.commit_and_refresh(log, &records, topic.as_deref())
            .await
    }

    /// Appends records durably, applies them, and brings the open topics in line with the new
    /// image: `Some(topic)` refreshes that topic, `None` every topic (broker-wide changes).
    async fn commit_and_refresh(
        &self,
        mut log: tokio::sync::MutexGuard<'_, MetadataLog>,
        records: &[MetadataRecord],
        topic: Option<&str>,
    ) -> Result<(), MetadataChangeError> {
        let mut image = (*self.image()).clone();
        log.append(records)
            .map_err(|e| MetadataChangeError::Store(e.to_string()))?;
        for r in records {
            image
                .apply(r)
                .expect("records made by the controller apply to the image they were made from");
        }
        let image = Arc::new(image);
        *self.image.write().expect("image lock") = image.clone();
        let names: Vec<String> = match topic {
            Some(t) => vec![t.to_string()],
            None => image.topics().map(|t| t.name().to_string()).collect(),
        };
        for name in names {
            if let Err((partition, e)) = self.refresh_topic(&image, &name) {
                tracing::error!(topic = %name, partition, error = %e, "cannot open a partition after a metadata change");
            }
        }
        drop(log);
        Ok(())
    }

    /// Rebuilds a topic's state from the image: new settings, partitions kept open, new
    /// partitions opened.
    fn refresh_topic(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<(), (i32, runnel_log::LogError)> {
        let Some(topic) = image.topic_by_name(name) else {
            return Ok(());
        };
        let old = self.topic(name);
        let settings = self.topic_settings(image, name);
        let mut partitions = Vec::with_capacity(topic.partition_count());
        for p in topic.partitions() {
            let existing = old.as_ref().and_then(|t| t.partition(p.partition)).cloned();
            let partition = match existing {
                Some(existing) => {
                    // Changed topic configs reach the open log without a restart.
                    if existing.log.config() != settings.log {
                        if let Err(e) = existing.log.update_config(settings.log.clone()) {
                            warn!(topic = %name, partition = existing.index, error = %e, "cannot apply the new log config");
                        }
                    }
                    existing
                }
                None => Arc::new(self.open_partition(name, topic.topic_id(), p, &settings)?),
            };
            partitions.push(partition);
        }
        let state = TopicState {
            name: name.to_string(),
            topic_id: topic.topic_id(),
            metrics: self.metrics.topic(name),
            settings,
            partitions,
        };
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), Arc::new(state));
        Ok(())
    }

    /// A producer id never handed out before. Blocks of [`PRODUCER_ID_BLOCK_SIZE`] are
    /// recorded in the metadata log before any id of them is used.
    pub async fn allocate_producer_id(&self) -> Result<i64, MetadataChangeError> {
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let mut log = self.metadata_log.lock().await;
        // Another request may have fetched a block while this one waited for the lock.
        if let Some(id) = self.take_producer_id() {
            return Ok(id);
        }
        let mut image = (*self.image()).clone();
        let start = image.next_producer_id();
        let end = start + PRODUCER_ID_BLOCK_SIZE;
        let records = [MetadataRecord::ProducerIds {
            broker_id: self.node_id,
            next_producer_id: end,
        }];
        log.append(&records)
            .map_err(|e| MetadataChangeError::Store(e.to_string()))?;
        image
            .apply(&records[0])
            .expect("producer ids only move forward under the metadata lock");
        *self.image.write().expect("image lock") = Arc::new(image);
        *self.producer_ids.lock().expect("producer ids lock") = (start + 1, end);
        drop(log);
        Ok(start)
    }

    fn take_producer_id(&self) -> Option<i64> {
        let mut ids = self.producer_ids.lock().expect("producer ids lock");
        (ids.0 < ids.1).then(|| {
            ids.0 += 1;
            ids.0 - 1
        })
    }

    /// A receiver whose value turns `true` when the broker shuts down; wait on it with
    /// [`stopped`].
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Every open topic.
    pub fn topics_snapshot(&self) -> Vec<Arc<TopicState>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    /// The retention pass (every `log.retention.check.interval.ms`): rolls segments older
    /// than `segment.ms`, deletes segments past `retention.ms` / `retention.bytes` or below
    /// the log start offset, and removes deleted files after `file.delete.delay.ms`.
    pub fn retention_pass(&self) {
        let now = now_ms();
        for t in self.topics_snapshot() {
            // A failed log (read-only until a restart) reported its failure once already.
            for p in t.partitions.iter().filter(|p| p.log.failure().is_none()) {
                let result = p.log.maybe_roll(now).and_then(|_| {
                    if t.settings.delete_policy {
                        let outcome = p.log.apply_retention(
                            now,
                            t.settings.retention_ms,
                            t.settings.retention_bytes,
                        )?;
                        if outcome.deleted_segments > 0 {
                            info!(topic = %t.name, partition = p.index, segments = outcome.deleted_segments,
                                bytes = outcome.deleted_bytes, log_start_offset = p.log.log_start_offset(),
                                "retention deleted segments");
                        }
                    }
                    p.log.delete_expired_files(now, t.settings.file_delete_delay_ms)
                });
                if let Err(e) = result {
                    tracing::error!(topic = %t.name, partition = p.index, error = %e, "retention failed");
                }
            }
        }
    }

    /// The cleaner pass (every `log.cleaner.backoff.ms`): compacts the partitions of
    /// compacted topics whose dirty ratio or compaction lag calls for it.
    pub fn cleaner_pass(&self) {
        let now = now_ms();
        for t in self.topics_snapshot() {
            if !t.settings.compacted {
                continue;
            }
            let opts = runnel_log::CleanerOptions {
                delete_retention_ms: t.settings.delete_retention_ms,
                min_cleanable_dirty_ratio: t.settings.min_cleanable_dirty_ratio,
                min_compaction_lag_ms: t.settings.min_compaction_lag_ms,
                max_compaction_lag_ms: t.settings.max_compaction_lag_ms,
                io_max_bytes_per_second: self.config.log_cleaner_io_max_bytes_per_second,
                dedupe_buffer_bytes: self.config.log_cleaner_dedupe_buffer_size.max(1) as u64,
                ..runnel_log::CleanerOptions::default()
            };
            for p in t.partitions.iter().filter(|p| p.log.failure().is_none()) {
                let result = p.log.needs_cleaning(now, &opts).and_then(|needed| {
                    if needed {
                        let stats = p.log.clean(now, &opts)?;
                        info!(topic = %t.name, partition = p.index, ?stats, "cleaned");
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    tracing::error!(topic = %t.name, partition = p.index, error = %e, "cleaning failed");
                }
            }
        }
    }

    /// Forgets idempotent producers idle longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&self) {
        let now = now_ms();
        let topics = self.topics_snapshot();
        for t in topics {
            for p in &t.partitions {
                p.log.expire_producers(now);
            }
        }
    }

    /// Flushes the partitions whose `flush.ms` is due. A failed fsync turns the partition's log
    /// failed (read-only until a restart: Produce answers KAFKA_STORAGE_ERROR from then on); the
    /// log reports that once, so failed logs are skipped here rather than reported every tick.
    pub fn flush_due(&self) {
        let now = now_ms();
        let topics = self.topics_snapshot();
        for t in topics {
            for p in t.partitions.iter().filter(|p| p.log.failure().is_none()) {
                if let Err(e) = p.log.maybe_flush(now) {
                    tracing::error!(topic = %t.name, partition = p.index, error = %e, "flush failed");
                }
            }
        }
    }

    /// Stops listeners and connections, then flushes and closes every partition.
    pub fn shutdown(&self) {
        // send_replace, not send: send does not store the value when no task has subscribed
        // yet (tasks subscribe when first polled), and those tasks then never saw the stop.
        self.shutdown_tx.send_replace(true);
        let topics = self.topics_snapshot();
        for t in topics {
            for p in &t.partitions {
                if let Err(e) = p.log.close() {
                    tracing::error!(topic = %t.name, partition = p.index, error = %e, "closing partition failed");
                }
            }
        }
        info!("all partitions flushed and closed");
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
}

fn created_summary(records: &[MetadataRecord]) -> CreatedTopic {
    let mut topic_id = Uuid::nil();
    let mut num_partitions = 0;
    let mut replication_factor = 0;
    for r in records {
        match r {
            MetadataRecord::Topic { topic_id: id, .. } => topic_id = *id,
            MetadataRecord::Partition { replicas, .. } => {
                num_partitions += 1;
                replication_factor = replicas.len() as i16;
            }
            _ => {}
        }
    }
    CreatedTopic {
        topic_id,
        num_partitions,
        replication_factor,
    }
}
