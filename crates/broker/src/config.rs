//! Broker configuration, with Kafka's property names and defaults.
//!
//! Sources, in increasing precedence: Kafka's defaults (Runnel's own where Kafka has none),
//! a Kafka-style `.properties` file, then `--override key=value` pairs (the CLI passes its
//! flags as overrides too). Every key is checked against [`BROKER_CONFIG_KEYS`]: an unknown
//! key or a malformed value is an error naming the key. Kafka's stock KRaft
//! `config/server.properties` loads unchanged.
//!
//! Pure: no I/O. The caller reads the file and hands its text to
//! [`BrokerConfig::from_sources`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use runnel_metadata::config_def::{
    invalid_value_message, parse_value, ConfigType, ConfigValue, Validator,
};
use runnel_metadata::controller::TopicDefaults;
use runnel_metadata::image::MetadataImage;
use runnel_metadata::topic_config::{
    topic_config_def, ConfigEntryView, ConfigSource, ConfigSynonym, CLEANUP_POLICIES,
    COMPRESSION_TYPES, LONG_MAX, TIMESTAMP_TYPES,
};
use thiserror::Error;

/// Why a configuration was refused. Every variant names the key at fault
/// ([`ConfigError::key`]) except syntax errors, which name the line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("properties line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("malformed override '{arg}': expected key=value")]
    MalformedOverride { arg: String },
    #[error("unknown broker config '{key}'{hint}")]
    UnknownKey { key: String, hint: String },
    /// Kafka's text: `Invalid value {value} for configuration {key}: {reason}`.
    #[error("{message}")]
    InvalidValue {
        key: String,
        value: String,
        message: String,
    },
    #[error("{key}: {reason}")]
    Unsupported { key: String, reason: String },
    #[error("{key}: {reason}")]
    Conflict { key: String, reason: String },
}

impl ConfigError {
    /// The config key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Syntax { .. } | ConfigError::MalformedOverride { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Unsupported { key, .. }
            | ConfigError::Conflict { key, .. } => Some(key),
        }
    }

    fn invalid(key: &str, value: &str, reason: &str) -> Self {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            message: invalid_value_message(key, value, reason),
        }
    }
}

/// One broker config key Runnel accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerConfigKey {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default (Runnel's where Kafka has none or Runnel differs); `None` = null.
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// `false`: accepted so Kafka's files load, but it has no effect in Runnel.
    pub runnel_uses: bool,
    /// Kafka can change it at runtime (so DescribeConfigs reports it as not read-only).
    pub dynamic: bool,
    pub doc: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn key(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    runnel_uses: bool,
    dynamic: bool,
    doc: &'static str,
) -> BrokerConfigKey {
    BrokerConfigKey {
        name,
        config_type,
        default,
        validator,
        runnel_uses,
        dynamic,
        doc,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long, Short, String as Str};
use Validator::{Any, AtLeast, Between, BetweenOr, DoubleBetween, ListOf, OneOf};

const USED: bool = true;
const IGNORED: bool = false;
const DYNAMIC: bool = true;
const STATIC: bool = false;

/// Kafka's default `listener.security.protocol.map`.
pub const DEFAULT_SECURITY_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";
/// Runnel's default `listeners` (Kafka's is `PLAINTEXT://:9092`).
pub const DEFAULT_LISTENERS: &str = "PLAINTEXT://localhost:9092";
/// Runnel's default `log.dir` (Kafka's is `/tmp/kafka-logs`).
pub const DEFAULT_LOG_DIR: &str = "./runnel-data";

/// Every broker config key Runnel accepts, sorted by name.
#[rustfmt::skip]
pub static BROKER_CONFIG_KEYS: &[BrokerConfigKey] = &[
    key("advertised.listeners", Str, None, Any, USED, DYNAMIC, "Listeners given to clients in Metadata responses, if different from listeners. Defaults to listeners (an empty host advertises as localhost)."),
    key("auto.create.topics.enable", Boolean, Some("true"), Any, USED, STATIC, "Create a topic when a client asks for metadata of one that does not exist."),
    key("auto.leader.rebalance.enable", Boolean, Some("true"), Any, IGNORED, STATIC, "Periodically move leadership back to preferred replicas."),
    key("background.threads", Int, Some("10"), AtLeast(1), IGNORED, DYNAMIC, "Threads for background tasks (ignored: Runnel uses its async runtime)."),
    key("broker.id", Int, Some("-1"), AtLeast(-1), USED, STATIC, "Old name of node.id; if both are set they must be equal."),
    key("broker.rack", Str, None, Any, USED, STATIC, "Rack of the broker, returned in Metadata responses."),
    key("compression.gzip.level", Int, Some("-1"), BetweenOr { min: 1, max: 9, or: -1 }, USED, DYNAMIC, "Default gzip level of topics with compression.type=gzip."),
    key("compression.lz4.level", Int, Some("9"), Between(1, 17), USED, DYNAMIC, "Default lz4 level of topics with compression.type=lz4."),
    key("compression.type", Str, Some("producer"), OneOf(COMPRESSION_TYPES), USED, DYNAMIC, "Default compression.type of topics."),
    key("compression.zstd.level", Int, Some("3"), Between(-131072, 22), USED, DYNAMIC, "Default zstd level of topics with compression.type=zstd."),
    key("connections.max.idle.ms", Long, Some("600000"), Any, USED, STATIC, "Close connections idle for longer than this."),
    key("controller.listener.names", Str, None, Any, USED, STATIC, "Listeners used by the KRaft controller; Runnel accepts them but does not serve them."),
    key("controller.quorum.bootstrap.servers", List, Some(""), Any, IGNORED, STATIC, "KRaft controller bootstrap servers (ignored: Runnel is a single combined node)."),
    key("controller.quorum.voters", List, Some(""), Any, IGNORED, STATIC, "KRaft voters (ignored: Runnel is a single combined node)."),
    key("default.replication.factor", Int, Some("1"), Between(1, 32767), USED, STATIC, "Replication factor of topics created without one."),
    key("delete.topic.enable", Boolean, Some("true"), Any, USED, STATIC, "Allow DeleteTopics."),
    key("fetch.max.bytes", Int, Some("57671680"), AtLeast(1024), USED, STATIC, "Most bytes returned by one Fetch request."),
    key("group.consumer.heartbeat.interval.ms", Int, Some("5000"), AtLeast(1), USED, STATIC, "Heartbeat interval of consumer-protocol (KIP-848) group members."),
    key("group.consumer.max.heartbeat.interval.ms", Int, Some("15000"), AtLeast(1), USED, STATIC, "Largest heartbeat interval a consumer-protocol group may use."),
    key("group.consumer.max.session.timeout.ms", Int, Some("60000"), AtLeast(1), USED, STATIC, "Largest session timeout of consumer-protocol group members."),
    key("group.consumer.min.heartbeat.interval.ms", Int, Some("5000"), AtLeast(1), USED, STATIC, "Smallest heartbeat interval a consumer-protocol group may use."),
    key("group.consumer.min.session.timeout.ms", Int, Some("45000"), AtLeast(1), USED, STATIC, "Smallest session timeout of consumer-protocol group members."),
    key("group.consumer.session.timeout.ms", Int, Some("45000"), AtLeast(1), USED, STATIC, "Session timeout of consumer-protocol group members."),
    key("group.initial.rebalance.delay.ms", Int, Some("3000"), AtLeast(0), USED, STATIC, "Time a new classic group waits for more members before its first rebalance."),
    key("group.max.session.timeout.ms", Int, Some("1800000"), Any, USED, STATIC, "Largest session timeout a classic group member may ask for."),
    key("group.max.size", Int, Some("2147483647"), AtLeast(1), USED, STATIC, "Most members of one classic group."),
    key("group.min.session.timeout.ms", Int, Some("6000"), Any, USED, STATIC, "Smallest session timeout a classic group member may ask for."),
    key("inter.broker.listener.name", Str, None, Any, IGNORED, STATIC, "Listener for traffic between brokers (checked, otherwise ignored: single node)."),
    key("listener.security.protocol.map", Str, Some(DEFAULT_SECURITY_PROTOCOL_MAP), Any, USED, DYNAMIC, "Security protocol of each listener name (only PLAINTEXT is supported yet)."),
    key("listeners", Str, Some(DEFAULT_LISTENERS), Any, USED, DYNAMIC, "Comma-separated NAME://host:port (or host:port) addresses to listen on; an empty host means all interfaces."),
    key("log.cleaner.backoff.ms", Long, Some("15000"), AtLeast(0), USED, DYNAMIC, "Sleep of the log cleaner when there is nothing to clean."),
    key("log.cleaner.dedupe.buffer.size", Long, Some("134217728"), AtLeast(0), USED, DYNAMIC, "Memory for the offset map of one clean."),
    key("log.cleaner.delete.retention.ms", Long, Some("86400000"), AtLeast(0), USED, DYNAMIC, "Default delete.retention.ms of topics."),
    key("log.cleaner.enable", Boolean, Some("true"), Any, USED, STATIC, "Run the log cleaner (needed for compacted topics)."),
    key("log.cleaner.io.max.bytes.per.second", Double, Some("1.7976931348623157E308"), Any, USED, DYNAMIC, "Bytes per second the log cleaner reads and writes, at most."),
    key("log.cleaner.max.compaction.lag.ms", Long, Some(LONG_MAX), AtLeast(1), USED, DYNAMIC, "Default max.compaction.lag.ms of topics."),
    key("log.cleaner.min.cleanable.ratio", Double, Some("0.5"), DoubleBetween(0.0, 1.0), USED, DYNAMIC, "Default min.cleanable.dirty.ratio of topics."),
    key("log.cleaner.min.compaction.lag.ms", Long, Some("0"), AtLeast(0), USED, DYNAMIC, "Default min.compaction.lag.ms of topics."),
    key("log.cleaner.threads", Int, Some("1"), AtLeast(0), IGNORED, DYNAMIC, "Log cleaner threads."),
    key("log.cleanup.policy", List, Some("delete"), ListOf(CLEANUP_POLICIES), USED, DYNAMIC, "Default cleanup.policy of topics."),
    key("log.dir", Str, Some(DEFAULT_LOG_DIR), Any, USED, STATIC, "Data directory, used when log.dirs is not set."),
    key("log.dirs", Str, None, Any, USED, STATIC, "Data directory (Runnel supports exactly one); overrides log.dir."),
    key("log.flush.interval.messages", Long, Some(LONG_MAX), AtLeast(1), USED, DYNAMIC, "Default flush.messages of topics."),
    key("log.flush.interval.ms", Long, None, Any, USED, DYNAMIC, "Default flush.ms of topics; when unset, log.flush.scheduler.interval.ms."),
    key("log.flush.offset.checkpoint.interval.ms", Int, Some("60000"), AtLeast(0), IGNORED, STATIC, "How often the recovery point is checkpointed."),
    key("log.flush.scheduler.interval.ms", Long, Some(LONG_MAX), Any, USED, STATIC, "How often logs are checked for a due flush; the fallback of log.flush.interval.ms."),
    key("log.flush.start.offset.checkpoint.interval.ms", Int, Some("60000"), AtLeast(0), IGNORED, STATIC, "How often the log start offset is checkpointed."),
    key("log.index.interval.bytes", Int, Some("4096"), AtLeast(0), USED, DYNAMIC, "Default index.interval.bytes of topics."),
    key("log.index.size.max.bytes", Int, Some("10485760"), AtLeast(4), USED, DYNAMIC, "Default segment.index.bytes of topics."),
    key("log.local.retention.bytes", Long, Some("-2"), AtLeast(-2), IGNORED, DYNAMIC, "Default local.retention.bytes of topics (tiered storage, unsupported)."),
    key("log.local.retention.ms", Long, Some("-2"), AtLeast(-2), IGNORED, DYNAMIC, "Default local.retention.ms of topics (tiered storage, unsupported)."),
    key("log.message.timestamp.after.max.ms", Long, Some("3600000"), AtLeast(0), USED, DYNAMIC, "Default message.timestamp.after.max.ms of topics."),
    key("log.message.timestamp.before.max.ms", Long, Some(LONG_MAX), AtLeast(0), USED, DYNAMIC, "Default message.timestamp.before.max.ms of topics."),
    key("log.message.timestamp.type", Str, Some("CreateTime"), OneOf(TIMESTAMP_TYPES), USED, DYNAMIC, "Default message.timestamp.type of topics."),
    key("log.preallocate", Boolean, Some("false"), Any, USED, DYNAMIC, "Default preallocate of topics."),
    key("log.retention.bytes", Long, Some("-1"), Any, USED, DYNAMIC, "Default retention.bytes of topics."),
    key("log.retention.check.interval.ms", Long, Some("300000"), AtLeast(1), USED, STATIC, "How often logs are checked for segments past retention."),
    key("log.retention.hours", Int, Some("168"), Any, USED, STATIC, "Default retention of topics in hours, after log.retention.ms and log.retention.minutes."),
    key("log.retention.minutes", Int, None, Any, USED, STATIC, "Default retention of topics in minutes, after log.retention.ms."),
    key("log.retention.ms", Long, None, Any, USED, DYNAMIC, "Default retention.ms of topics; -1 means no limit."),
    key("log.roll.hours", Int, Some("168"), AtLeast(1), USED, STATIC, "Default segment.ms of topics in hours, after log.roll.ms."),
    key("log.roll.jitter.hours", Int, Some("0"), AtLeast(0), USED, STATIC, "Default segment.jitter.ms of topics in hours, after log.roll.jitter.ms."),
    key("log.roll.jitter.ms", Long, None, Any, USED, DYNAMIC, "Default segment.jitter.ms of topics."),
    key("log.roll.ms", Long, None, Any, USED, DYNAMIC, "Default segment.ms of topics."),
    key("log.segment.bytes", Int, Some("1073741824"), AtLeast(1048576), USED, DYNAMIC, "Default segment.bytes of topics."),
    key("log.segment.delete.delay.ms", Long, Some("60000"), AtLeast(0), USED, DYNAMIC, "Default file.delete.delay.ms of topics."),
    key("max.connections", Int, Some("2147483647"), AtLeast(0), USED, DYNAMIC, "Most open client connections."),
    key("max.connections.per.ip", Int, Some("2147483647"), AtLeast(0), USED, DYNAMIC, "Most open connections from one IP address."),
    key("max.incremental.fetch.session.cache.slots", Int, Some("1000"), AtLeast(0), USED, STATIC, "Most incremental fetch sessions kept."),
    key("message.max.bytes", Int, Some("1048588"), AtLeast(0), USED, DYNAMIC, "Default max.message.bytes of topics: the largest record batch accepted."),
    key("min.insync.replicas", Int, Some("1"), AtLeast(1), USED, DYNAMIC, "Default min.insync.replicas of topics."),
    key("node.id", Int, Some("1"), AtLeast(0), USED, STATIC, "This node's id (Kafka requires it; Runnel defaults to 1)."),
    key("num.io.threads", Int, Some("8"), AtLeast(1), IGNORED, DYNAMIC, "Request handler threads (ignored: Runnel uses its async runtime)."),
    key("num.network.threads", Int, Some("3"), AtLeast(1), IGNORED, DYNAMIC, "Network threads (ignored: Runnel uses its async runtime)."),
    key("num.partitions", Int, Some("1"), AtLeast(1), USED, STATIC, "Partition count of topics created without one."),
    key("num.recovery.threads.per.data.dir", Int, Some("2"), AtLeast(1), IGNORED, DYNAMIC, "Threads per data directory for recovery at start-up."),
    key("num.replica.fetchers", Int, Some("1"), Any, IGNORED, DYNAMIC, "Replica fetcher threads (ignored: single node)."),
    key("offset.metadata.max.bytes", Int, Some("4096"), Any, USED, STATIC, "Largest metadata string of a committed offset."),
    key("offsets.commit.timeout.ms", Int, Some("5000"), AtLeast(1), USED, STATIC, "How long an offset commit waits for the offsets topic write."),
    key("offsets.load.buffer.size", Int, Some("5242880"), AtLeast(1), IGNORED, STATIC, "Read size when loading offsets into the cache."),
    key("offsets.retention.check.interval.ms", Long, Some("600000"), AtLeast(1), USED, STATIC, "How often expired offsets are looked for."),
    key("offsets.retention.minutes", Int, Some("10080"), AtLeast(1), USED, STATIC, "How long offsets of an empty group are kept."),
    key("offsets.topic.num.partitions", Int, Some("50"), AtLeast(1), USED, STATIC, "Partitions of __consumer_offsets."),
    key("offsets.topic.replication.factor", Short, Some("3"), AtLeast(1), USED, STATIC, "Replication factor of __consumer_offsets (Runnel caps it at the broker count)."),
    key("offsets.topic.segment.bytes", Int, Some("104857600"), AtLeast(1), USED, STATIC, "Segment size of __consumer_offsets."),
    key("process.roles", List, Some("broker,controller"), ListOf(&["broker", "controller"]), USED, STATIC, "Roles of this node; Runnel always runs both (Kafka requires the key)."),
    key("producer.id.expiration.ms", Int, Some("86400000"), AtLeast(1), USED, DYNAMIC, "How long producer state is kept after the producer's last write."),
    key("queued.max.request.bytes", Long, Some("-1"), Any, USED, STATIC, "Bytes of requests being read or handled, across connections, before connections stop reading; -1 (or 0) for no limit."),
    key("queued.max.requests", Int, Some("500"), AtLeast(1), IGNORED, STATIC, "Requests queued before the network stops reading (ignored: a connection has one request in progress at a time, and queued.max.request.bytes bounds what connections read ahead)."),
    key("replica.fetch.max.bytes", Int, Some("1048576"), AtLeast(0), USED, STATIC, "Bytes fetched per partition by replica fetchers."),
    key("replica.lag.time.max.ms", Long, Some("30000"), Any, IGNORED, STATIC, "Time after which a silent follower leaves the ISR (single node)."),
    key("share.coordinator.state.topic.min.isr", Short, Some("2"), AtLeast(1), IGNORED, STATIC, "min.insync.replicas of the share-group state topic (share groups unsupported)."),
    key("share.coordinator.state.topic.replication.factor", Short, Some("3"), AtLeast(1), IGNORED, STATIC, "Replication factor of the share-group state topic (share groups unsupported)."),
    key("socket.listen.backlog.size", Int, Some("50"), AtLeast(1), USED, STATIC, "Backlog of pending connections of the listening sockets."),
    key("socket.receive.buffer.bytes", Int, Some("102400"), Any, IGNORED, STATIC, "SO_RCVBUF of client sockets; -1 for the OS default (ignored: the kernel sizes the buffers, as with -1)."),
    key("socket.request.max.bytes", Int, Some("104857600"), AtLeast(1), USED, STATIC, "Largest request accepted."),
    key("socket.send.buffer.bytes", Int, Some("102400"), Any, IGNORED, STATIC, "SO_SNDBUF of client sockets; -1 for the OS default (ignored: the kernel sizes the buffers, as with -1)."),
    key("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, Some("10000"), AtLeast(1), USED, STATIC, "How often timed-out transactions are aborted."),
    key("transaction.max.timeout.ms", Int, Some("900000"), AtLeast(1), USED, STATIC, "Largest transaction timeout a producer may ask for."),
    key("transaction.remove.expired.transaction.cleanup.interval.ms", Int, Some("3600000"), AtLeast(1), USED, STATIC, "How often expired transactional ids are removed."),
    key("transaction.state.log.min.isr", Int, Some("2"), AtLeast(1), USED, STATIC, "min.insync.replicas of __transaction_state (Runnel caps it at the replication factor)."),
    key("transaction.state.log.num.partitions", Int, Some("50"), AtLeast(1), USED, STATIC, "Partitions of __transaction_state."),
    key("transaction.state.log.replication.factor", Short, Some("3"), AtLeast(1), USED, STATIC, "Replication factor of __transaction_state (Runnel caps it at the broker count)."),
    key("transaction.state.log.segment.bytes", Int, Some("104857600"), AtLeast(1), USED, STATIC, "Segment size of __transaction_state."),
    key("transactional.id.expiration.ms", Int, Some("604800000"), AtLeast(1), USED, STATIC, "How long an idle transactional id is kept."),
    key("unclean.leader.election.enable", Boolean, Some("false"), Any, USED, DYNAMIC, "Default unclean.leader.election.enable of topics."),
];

/// The definition of broker config `name`.
pub fn broker_config_key(name: &str) -> Option<&'static BrokerConfigKey> {
    BROKER_CONFIG_KEYS
        .binary_search_by(|k| k.name.cmp(name))
        .ok()
        .and_then(|i| BROKER_CONFIG_KEYS.get(i))
}

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// One listener or advertised listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Upper-case listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub listener_name: String,
    pub security_protocol: SecurityProtocol,
    /// Host without IPv6 brackets; empty means all interfaces.
    pub host: String,
    /// 0 asks the OS for a free port (tests); an advertised 0 means "the bound port".
    pub port: u16,
}

impl Endpoint {
    /// The address to bind: `0.0.0.0:port` for an empty host, `[v6]:port` for IPv6.
    pub fn bind_address(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        join_host_port(host, self.port)
    }

    /// `host:port` as clients dial it (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where a broker config value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerConfigSource {
    /// The properties file or an override (Kafka's `STATIC_BROKER_CONFIG`).
    Static,
    /// The default (Kafka's `DEFAULT_CONFIG`).
    Default,
}

/// One row of DescribeConfigs for this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfigEntry {
    pub name: &'static str,
    /// `None` when the config has no value (null default) or is sensitive.
    pub value: Option<String>,
    pub source: BrokerConfigSource,
    pub sensitive: bool,
    pub read_only: bool,
    pub config_type: ConfigType,
    pub runnel_uses: bool,
    pub documentation: &'static str,
}

/// The broker's static configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    // Identity.
    pub node_id: i32,
    pub broker_rack: Option<String>,
    // Storage.
    /// The single data directory (first of `log.dirs`, else `log.dir`).
    pub log_dir: PathBuf,
    // Network.
    /// Listeners Runnel serves (those not named in `controller.listener.names`).
    pub listeners: Vec<Endpoint>,
    /// Controller listeners: accepted so Kafka's files load, not served.
    pub controller_listeners: Vec<Endpoint>,
    /// What Metadata responses advertise, one per advertised client listener.
    pub advertised_listeners: Vec<Endpoint>,
    pub socket_request_max_bytes: i32,
    pub socket_send_buffer_bytes: i32,
    pub socket_receive_buffer_bytes: i32,
    pub socket_listen_backlog_size: i32,
    pub connections_max_idle_ms: i64,
    pub max_connections: i32,
    pub max_connections_per_ip: i32,
    pub queued_max_requests: i32,
    /// Bytes of requests read and not yet answered, across connections; `<= 0`: no limit.
    pub queued_max_request_bytes: i64,
    pub num_network_threads: i32,
    pub num_io_threads: i32,
    // Topic creation and deletion.
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    // Topic defaults (broker synonyms of topic configs).
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
    pub message_max_bytes: i32,
    pub log_segment_bytes: i32,
    /// `log.roll.ms`, else `log.roll.hours` in ms.
    pub log_roll_ms: i64,
    /// `log.roll.jitter.ms`, else `log.roll.jitter.hours` in ms.
    pub log_roll_jitter_ms: i64,
    /// `log.retention.ms`, else `.minutes`, else `.hours`, in ms; -1 = no limit.
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval_ms: i64,
    pub log_cleanup_policy: Vec<String>,
    pub log_cleaner_enable: bool,
    pub log_cleaner_backoff_ms: i64,
    pub log_cleaner_dedupe_buffer_size: i64,
    pub log_cleaner_io_max_bytes_per_second: f64,
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`, else `log.flush.scheduler.interval.ms`.
    pub log_flush_interval_ms: i64,
    pub log_flush_scheduler_interval_ms: i64,
    pub log_index_interval_bytes: i32,
    pub log_index_size_max_bytes: i32,
    pub log_segment_delete_delay_ms: i64,
    pub log_preallocate: bool,
    /// `CreateTime` or `LogAppendTime`.
    pub log_message_timestamp_type: String,
    pub log_message_timestamp_before_max_ms: i64,
    pub log_message_timestamp_after_max_ms: i64,
    pub compression_type: String,
    // Fetch.
    pub fetch_max_bytes: i32,
    pub replica_fetch_max_bytes: i32,
    pub max_incremental_fetch_session_cache_slots: i32,
    // Groups and offsets.
    pub group_initial_rebalance_delay_ms: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: i32,
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_min_session_timeout_ms: i32,
    pub group_consumer_max_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    pub group_consumer_min_heartbeat_interval_ms: i32,
    pub group_consumer_max_heartbeat_interval_ms: i32,
    pub offsets_topic_num_partitions: i32,
    /// As configured; see [`BrokerConfig::offsets_topic_replication_factor_for`].
    pub offsets_topic_replication_factor: i16,
    pub offsets_topic_segment_bytes: i32,
    pub offsets_retention_minutes: i32,
    pub offsets_retention_check_interval_ms: i64,
    pub offsets_commit_timeout_ms: i32,
    pub offset_metadata_max_bytes: i32,
    // Transactions and idempotence.
    pub transaction_state_log_num_partitions: i32,
    /// As configured; see [`BrokerConfig::transaction_state_log_replication_factor_for`].
    pub transaction_state_log_replication_factor: i16,
    pub transaction_state_log_min_isr: i32,
    pub transaction_state_log_segment_bytes: i32,
    pub transaction_max_timeout_ms: i32,
    pub transactional_id_expiration_ms: i32,
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i32,
    pub transaction_remove_expired_transaction_cleanup_interval_ms: i32,
    pub producer_id_expiration_ms: i32,
    /// Keys set by the file or overrides, with their values as Kafka prints them.
    explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    /// The configuration with nothing set. (Every default is valid, so this cannot fail;
    /// a broken default table is caught by the unit tests.)
    fn default() -> Self {
        match BrokerConfig::from_sources(None, &[]) {
            Ok(config) => config,
            Err(e) => unreachable!("the built-in defaults are invalid: {e}"),
        }
    }
}

/// Parses one `--override key=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(ConfigError::MalformedOverride {
            arg: arg.to_owned(),
        }),
    }
}

/// Reads the parsed, validated values with their defaults.
struct Resolver {
    values: BTreeMap<&'static str, ConfigValue>,
}

impl Resolver {
    fn value(&self, name: &'static str) -> Result<Option<ConfigValue>, ConfigError> {
        if let Some(v) = self.values.get(name) {
            return Ok(Some(v.clone()));
        }
        let Some(def) = broker_config_key(name) else {
            return Err(ConfigError::UnknownKey {
                key: name.to_owned(),
                hint: " (not in the key table)".into(),
            });
        };
        match def.default {
            None => Ok(None),
            Some(d) => parse_value(def.config_type, def.validator, d)
                .map(Some)
                .map_err(|reason| ConfigError::invalid(name, d, &reason)),
        }
    }

    fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn opt_i64(&self, name: &'static str) -> Result<Option<i64>, ConfigError> {
        Ok(self.value(name)?.and_then(|v| v.as_i64()))
    }

    fn i64(&self, name: &'static str) -> Result<i64, ConfigError> {
        self.opt_i64(name)?
            .ok_or_else(|| ConfigError::invalid(name, "null", "a value is required"))
    }

    fn f64(&self, name: &'static str) -> Result<f64, ConfigError> {
        self.value(name)?
            .and_then(|v| v.as_f64())
            .ok_or_else(|| ConfigError::invalid(name, "null", "a value is required"))
    }

    fn i32(&self, name: &'static str) -> Result<i32, ConfigError> {
        let n = self.i64(name)?;
        i32::try_from(n)
            .map_err(|_| ConfigError::invalid(name, &n.to_string(), "Not a number of type INT"))
    }

    fn i16(&self, name: &'static str) -> Result<i16, ConfigError> {
        let n = self.i64(name)?;
        i16::try_from(n)
            .map_err(|_| ConfigError::invalid(name, &n.to_string(), "Not a number of type SHORT"))
    }

    fn bool(&self, name: &'static str) -> Result<bool, ConfigError> {
        self.value(name)?
            .and_then(|v| v.as_bool())
            .ok_or_else(|| ConfigError::invalid(name, "null", "a value is required"))
    }

    fn opt_string(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self
            .value(name)?
            .and_then(|v| v.as_str().map(str::to_owned)))
    }

    fn string(&self, name: &'static str) -> Result<String, ConfigError> {
        self.opt_string(name)?
            .ok_or_else(|| ConfigError::invalid(name, "null", "a value is required"))
    }

    fn list(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .value(name)?
            .and_then(|v| v.as_list().map(<[String]>::to_vec))
            .unwrap_or_default())
    }
}

impl BrokerConfig {
    /// Builds the configuration from the text of a `.properties` file (if any) and
    /// `key=value` overrides (later ones win), on top of the defaults.
    pub fn from_sources(
        properties_file_text: Option<&str>,
        overrides: &[(String, String)],
    ) -> Result<BrokerConfig, ConfigError> {
        let mut raw: Vec<(String, String)> = match properties_file_text {
            Some(text) => parse_properties(text)?,
            None => Vec::new(),
        };
        raw.extend(
            overrides
                .iter()
                .map(|(k, v)| (k.trim().to_owned(), v.clone())),
        );
        let mut values: BTreeMap<&'static str, ConfigValue> = BTreeMap::new();
        let mut explicit = BTreeMap::new();
        for (name, value) in raw {
            let Some(def) = broker_config_key(&name) else {
                return Err(unknown_key(&name));
            };
            let parsed = parse_value(def.config_type, def.validator, &value)
                .map_err(|reason| ConfigError::invalid(def.name, &value, &reason))?;
            explicit.insert(def.name.to_owned(), parsed.render());
            values.insert(def.name, parsed);
        }
        let r = Resolver { values };
        let mut config = BrokerConfig::resolve(&r)?;
        config.explicit = explicit;
        Ok(config)
    }

    fn resolve(r: &Resolver) -> Result<BrokerConfig, ConfigError> {
        let node_id = resolve_node_id(r)?;
        let log_dir = resolve_log_dir(r)?;
        let roles: BTreeSet<String> = r.list("process.roles")?.into_iter().collect();
        if roles != BTreeSet::from(["broker".to_owned(), "controller".to_owned()]) {
            return Err(ConfigError::Unsupported {
                key: "process.roles".into(),
                reason: format!(
                    "Runnel runs as a combined broker and controller; set process.roles=broker,controller (got '{}')",
                    roles.into_iter().collect::<Vec<_>>().join(",")
                ),
            });
        }
        let (listeners, controller_listeners, advertised_listeners) = resolve_listeners(r)?;

        let hours = 3_600_000i64;
        let log_roll_ms = match r.opt_i64("log.roll.ms")? {
            Some(ms) => ms,
            None => r.i64("log.roll.hours")?.saturating_mul(hours),
        };
        let log_roll_jitter_ms = match r.opt_i64("log.roll.jitter.ms")? {
            Some(ms) => ms,
            None => r.i64("log.roll.jitter.hours")?.saturating_mul(hours),
        };
        let log_retention_ms = match (
            r.opt_i64("log.retention.ms")?,
            r.opt_i64("log.retention.minutes")?,
        ) {
            (Some(ms), _) => ms,
            (None, Some(minutes)) => minutes.saturating_mul(60_000),
            (None, None) => r.i64("log.retention.hours")?.saturating_mul(hours),
        };
        let log_retention_ms = if log_retention_ms < 0 {
            -1
        } else {
            log_retention_ms
        };
        let log_flush_scheduler_interval_ms = r.i64("log.flush.scheduler.interval.ms")?;
        let log_flush_interval_ms = r
            .opt_i64("log.flush.interval.ms")?
            .unwrap_or(log_flush_scheduler_interval_ms);

        let config = BrokerConfig {
            node_id,
            broker_rack: r.opt_string("broker.rack")?,
            log_dir,
            listeners,
            controller_listeners,
            advertised_listeners,
            socket_request_max_bytes: r.i32("socket.request.max.bytes")?,
            socket_send_buffer_bytes: r.i32("socket.send.buffer.bytes")?,
            socket_receive_buffer_bytes: r.i32("socket.receive.buffer.bytes")?,
            socket_listen_backlog_size: r.i32("socket.listen.backlog.size")?,
            connections_max_idle_ms: r.i64("connections.max.idle.ms")?,
            max_connections: r.i32("max.connections")?,
            max_connections_per_ip: r.i32("max.connections.per.ip")?,
            queued_max_requests: r.i32("queued.max.requests")?,
            queued_max_request_bytes: r.i64("queued.max.request.bytes")?,
            num_network_threads: r.i32("num.network.threads")?,
            num_io_threads: r.i32("num.io.threads")?,
            num_partitions: r.i32("num.partitions")?,
            default_replication_factor: r.i16("default.replication.factor")?,
            auto_create_topics_enable: r.bool("auto.create.topics.enable")?,
            delete_topic_enable: r.bool("delete.topic.enable")?,
            min_insync_replicas: r.i32("min.insync.replicas")?,
            unclean_leader_election_enable: r.bool("unclean.leader.election.enable")?,
            message_max_bytes: r.i32("message.max.bytes")?,
            log_segment_bytes: r.i32("log.segment.bytes")?,
            log_roll_ms,
            log_roll_jitter_ms,
            log_retention_ms,
            log_retention_bytes: r.i64("log.retention.bytes")?,
            log_retention_check_interval_ms: r.i64("log.retention.check.interval.ms")?,
            log_cleanup_policy: r.list("log.cleanup.policy")?,
            log_cleaner_enable: r.bool("log.cleaner.enable")?,
            log_cleaner_backoff_ms: r.i64("log.cleaner.backoff.ms")?,
            log_cleaner_dedupe_buffer_size: r.i64("log.cleaner.dedupe.buffer.size")?,
            log_cleaner_io_max_bytes_per_second: r.f64("log.cleaner.io.max.bytes.per.second")?,
            log_flush_interval_messages: r.i64("log.flush.interval.messages")?,
            log_flush_interval_ms,
            log_flush_scheduler_interval_ms,
            log_index_interval_bytes: r.i32("log.index.interval.bytes")?,
            log_index_size_max_bytes: r.i32("log.index.size.max.bytes")?,
            log_segment_delete_delay_ms: r.i64("log.segment.delete.delay.ms")?,
            log_preallocate: r.bool("log.preallocate")?,
            log_message_timestamp_type: r.string("log.message.timestamp.type")?,
            log_message_timestamp_before_max_ms: r.i64("log.message.timestamp.before.max.ms")?,
            log_message_timestamp_after_max_ms: r.i64("log.message.timestamp.after.max.ms")?,
            compression_type: r.string("compression.type")?,
            fetch_max_bytes: r.i32("fetch.max.bytes")?,
            replica_fetch_max_bytes: r.i32("replica.fetch.max.bytes")?,
            max_incremental_fetch_session_cache_slots: r
                .i32("max.incremental.fetch.session.cache.slots")?,
            group_initial_rebalance_delay_ms: r.i32("group.initial.rebalance.delay.ms")?,
            group_min_session_timeout_ms: r.i32("group.min.session.timeout.ms")?,
            group_max_session_timeout_ms: r.i32("group.max.session.timeout.ms")?,
            group_max_size: r.i32("group.max.size")?,
            group_consumer_session_timeout_ms: r.i32("group.consumer.session.timeout.ms")?,
            group_consumer_min_session_timeout_ms: r
                .i32("group.consumer.min.session.timeout.ms")?,
            group_consumer_max_session_timeout_ms: r
                .i32("group.consumer.max.session.timeout.ms")?,
            group_consumer_heartbeat_interval_ms: r.i32("group.consumer.heartbeat.interval.ms")?,
            group_consumer_min_heartbeat_interval_ms: r
                .i32("group.consumer.min.heartbeat.interval.ms")?,
            group_consumer_max_heartbeat_interval_ms: r
                .i32("group.consumer.max.heartbeat.interval.ms")?,
            offsets_topic_num_partitions: r.i32("offsets.topic.num.partitions")?,
            offsets_topic_replication_factor: r.i16("offsets.topic.replication.factor")?,
            offsets_topic_segment_bytes: r.i32("offsets.topic.segment.bytes")?,
            offsets_retention_minutes: r.i32("offsets.retention.minutes")?,
            offsets_retention_check_interval_ms: r.i64("offsets.retention.check.interval.ms")?,
            offsets_commit_timeout_ms: r.i32("offsets.commit.timeout.ms")?,
            offset_metadata_max_bytes: r.i32("offset.metadata.max.bytes")?,
            transaction_state_log_num_partitions: r.i32("transaction.state.log.num.partitions")?,
            transaction_state_log_replication_factor: r
                .i16("transaction.state.log.replication.factor")?,
            transaction_state_log_min_isr: r.i32("transaction.state.log.min.isr")?,
            transaction_state_log_segment_bytes: r.i32("transaction.state.log.segment.bytes")?,
            transaction_max_timeout_ms: r.i32("transaction.max.timeout.ms")?,
            transactional_id_expiration_ms: r.i32("transactional.id.expiration.ms")?,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: r
                .i32("transaction.abort.timed.out.transaction.cleanup.interval.ms")?,
            transaction_remove_expired_transaction_cleanup_interval_ms: r
                .i32("transaction.remove.expired.transaction.cleanup.interval.ms")?,
            producer_id_expiration_ms: r.i32("producer.id.expiration.ms")?,
            explicit: BTreeMap::new(),
        };
        config.check_relations()?;
        Ok(config)
    }

    /// Cross-key rules (Kafka's `GroupCoordinatorConfig` requirements and sanity checks).
    fn check_relations(&self) -> Result<(), ConfigError> {
        let rules: [(bool, &str, String); 5] = [
            (
                self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms,
                "group.max.session.timeout.ms",
                format!(
                    "must be greater than or equal to group.min.session.timeout.ms ({} < {})",
                    self.group_max_session_timeout_ms, self.group_min_session_timeout_ms
                ),
            ),
            (
                self.group_consumer_max_session_timeout_ms
                    >= self.group_consumer_min_session_timeout_ms,
                "group.consumer.max.session.timeout.ms",
                "must be greater than or equal to group.consumer.min.session.timeout.ms".into(),
            ),
            (
                (self.group_consumer_min_session_timeout_ms
                    ..=self.group_consumer_max_session_timeout_ms)
                    .contains(&self.group_consumer_session_timeout_ms),
                "group.consumer.session.timeout.ms",
                "must be between group.consumer.min.session.timeout.ms and group.consumer.max.session.timeout.ms".into(),
            ),
            (
                (self.group_consumer_min_heartbeat_interval_ms
                    ..=self.group_consumer_max_heartbeat_interval_ms)
                    .contains(&self.group_consumer_heartbeat_interval_ms),
                "group.consumer.heartbeat.interval.ms",
                "must be between group.consumer.min.heartbeat.interval.ms and group.consumer.max.heartbeat.interval.ms".into(),
            ),
            (
                self.group_consumer_heartbeat_interval_ms < self.group_consumer_session_timeout_ms,
                "group.consumer.heartbeat.interval.ms",
                "must be less than group.consumer.session.timeout.ms".into(),
            ),
        ];
        match rules.into_iter().find(|(ok, _, _)| !ok) {
            Some((_, key, reason)) => Err(ConfigError::Conflict {
                key: key.into(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The listener to serve: the first client listener.
    pub fn listener(&self) -> Endpoint {
        self.listeners
            .first()
            .cloned()
            .unwrap_or_else(default_endpoint)
    }

    /// What Metadata responses advertise for [`BrokerConfig::listener`]: the advertised
    /// listener of the same name, else the first advertised one. An empty host or port 0
    /// can only come from a listener the caller emptied; advertise the bound address then.
    pub fn advertised_listener(&self) -> Endpoint {
        let listener = self.listener();
        self.advertised_listeners
            .iter()
            .find(|a| a.listener_name == listener.listener_name)
            .or_else(|| self.advertised_listeners.first())
            .cloned()
            .unwrap_or(listener)
    }

    /// DescribeConfigs for this broker: every key, its value from the highest layer that
    /// sets it (dynamic per-broker config in `image`, dynamic cluster default, static,
    /// default) and its synonyms in Kafka's order.
    pub fn describe(&self, image: &MetadataImage, node_id: i32) -> Vec<ConfigEntryView> {
        let per_broker = image.broker_config(node_id);
        let cluster_default = image.cluster_default_broker_config();
        BROKER_CONFIG_KEYS
            .iter()
            .map(|k| {
                let group = broker_synonym_group(k);
                let names = match group.iter().position(|n| *n == k.name) {
                    Some(i) => &group[i..],
                    None => group,
                };
                let mut synonyms = Vec::new();
                let mut push = |name: &str, value: Option<String>, source| {
                    synonyms.push(ConfigSynonym {
                        name: name.to_owned(),
                        value,
                        source,
                    })
                };
                for n in names {
                    if let Some(v) = per_broker.and_then(|m| m.get(*n)) {
                        push(n, Some(v.clone()), ConfigSource::DynamicBroker);
                    }
                }
                for n in names {
                    if let Some(v) = cluster_default.and_then(|m| m.get(*n)) {
                        push(n, Some(v.clone()), ConfigSource::DynamicDefaultBroker);
                    }
                }
                for n in names {
                    if let Some(v) = self.explicit.get(*n) {
                        push(n, Some(v.clone()), ConfigSource::StaticBroker);
                    }
                }
                for n in names {
                    if let Some(d) = broker_config_key(n).and_then(|key| key.default) {
                        push(n, Some(d.to_owned()), ConfigSource::Default);
                    }
                }
                let own = synonyms.iter().find(|s| s.name == k.name);
                let (value, source) = match own {
                    Some(s) => (s.value.clone(), s.source),
                    None => (None, ConfigSource::Default),
                };
                let sensitive = k.config_type.is_sensitive();
                if sensitive {
                    for s in &mut synonyms {
                        s.value = None;
                    }
                }
                ConfigEntryView {
                    name: k.name.to_owned(),
                    value: if sensitive { None } else { value },
                    source,
                    is_default: source == ConfigSource::Default,
                    read_only: !k.dynamic,
                    sensitive,
                    config_type: k.config_type,
                    documentation: k.doc,
                    synonyms,
                }
            })
            .collect()
    }

    /// The defaults the controller applies to CreateTopics entries that ask for them.
    pub fn topic_defaults(&self) -> TopicDefaults {
        TopicDefaults {
            num_partitions: self.num_partitions,
            replication_factor: self.default_replication_factor,
        }
    }

    /// `offsets.topic.replication.factor` capped at the broker count (Kafka instead fails
    /// to create `__consumer_offsets` until enough brokers exist; Runnel is single-node).
    pub fn offsets_topic_replication_factor_for(&self, broker_count: usize) -> i16 {
        cap_at(self.offsets_topic_replication_factor, broker_count)
    }

    /// `transaction.state.log.replication.factor` capped at the broker count.
    pub fn transaction_state_log_replication_factor_for(&self, broker_count: usize) -> i16 {
        cap_at(self.transaction_state_log_replication_factor, broker_count)
    }

    /// `transaction.state.log.min.isr` capped at the (capped) replication factor.
    pub fn transaction_state_log_min_isr_for(&self, broker_count: usize) -> i32 {
        self.transaction_state_log_min_isr.min(i32::from(
            self.transaction_state_log_replication_factor_for(broker_count),
        ))
    }

    /// `offsets.retention.minutes` in milliseconds.
    pub fn offsets_retention_ms(&self) -> i64 {
        i64::from(self.offsets_retention_minutes).saturating_mul(60_000)
    }

    /// A config's value and whether it was set explicitly: `Some((value, true))` if set in
    /// the file or an override, `Some((default, false))` if it has a default, `None` for an
    /// unknown key or a null default. Usable as the static lookup of
    /// `runnel_metadata::topic_config`.
    pub fn lookup(&self, key: &str) -> Option<(String, bool)> {
        if let Some(v) = self.explicit.get(key) {
            return Some((v.clone(), true));
        }
        broker_config_key(key)?
            .default
            .map(|d| (d.to_owned(), false))
    }

    /// Every known key with its value and source, sorted by name, for DescribeConfigs.
    pub fn entries(&self) -> Vec<BrokerConfigEntry> {
        BROKER_CONFIG_KEYS
            .iter()
            .map(|k| {
                let (value, source) = match self.explicit.get(k.name) {
                    Some(v) => (Some(v.clone()), BrokerConfigSource::Static),
                    None => (k.default.map(str::to_owned), BrokerConfigSource::Default),
                };
                let sensitive = k.config_type.is_sensitive();
                BrokerConfigEntry {
                    name: k.name,
                    value: if sensitive { None } else { value },
                    source,
                    sensitive,
                    read_only: !k.dynamic,
                    config_type: k.config_type,
                    runnel_uses: k.runnel_uses,
                    documentation: k.doc,
                }
            })
            .collect()
    }
}

fn default_endpoint() -> Endpoint {
    Endpoint {
        listener_name: "PLAINTEXT".into(),
        security_protocol: SecurityProtocol::Plaintext,
        host: "localhost".into(),
        port: 9092,
    }
}

/// Broker configs that are one setting in several units (Kafka's
/// `DynamicBrokerConfig.brokerConfigSynonyms`), highest precedence first; a key outside
/// these groups is its own group.
fn broker_synonym_group(key: &'static BrokerConfigKey) -> &'static [&'static str] {
    const GROUPS: &[&[&str]] = &[
        &["log.roll.ms", "log.roll.hours"],
        &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
    ];
    GROUPS
        .iter()
        .find(|g| g.contains(&key.name))
        .copied()
        .unwrap_or(std::slice::from_ref(&key.name))
}

fn cap_at(factor: i16, broker_count: usize) -> i16 {
    let brokers = i16::try_from(broker_count.max(1)).unwrap_or(i16::MAX);
    factor.min(brokers)
}

fn unknown_key(name: &str) -> ConfigError {
    let hint = if let Some(def) = topic_config_def(name) {
        match def.broker_synonyms.first() {
            Some(s) => format!(
                "; '{name}' is a topic config, its broker-wide default is '{}'",
                s.name
            ),
            None => format!("; '{name}' is a topic config with no broker-wide default"),
        }
    } else if name.starts_with("ssl.")
        || name.starts_with("sasl.")
        || name.starts_with("listener.name.")
    {
        "; TLS and SASL are not supported yet".into()
    } else if name.starts_with("zookeeper.") {
        "; Runnel has no ZooKeeper mode (it is KRaft-style)".into()
    } else {
        String::new()
    };
    ConfigError::UnknownKey {
        key: name.to_owned(),
        hint,
    }
}

fn resolve_node_id(r: &Resolver) -> Result<i32, ConfigError> {
    let node_id = r.i32("node.id")?;
    let broker_id = r.i32("broker.id")?;
    match (r.is_set("node.id"), r.is_set("broker.id")) {
        (true, true) if node_id != broker_id => Err(ConfigError::Conflict {
            key: "node.id".into(),
            reason: format!(
                "You must set `node.id` to the same value as `broker.id` (node.id={node_id}, broker.id={broker_id})."
            ),
        }),
        (false, true) if broker_id >= 0 => Ok(broker_id),
        (false, true) => Err(ConfigError::Unsupported {
            key: "broker.id".into(),
            reason: "broker.id generation (-1) is not supported; set node.id".into(),
        }),
        _ => Ok(node_id),
    }
}

fn resolve_log_dir(r: &Resolver) -> Result<PathBuf, ConfigError> {
    let (key, value) = match r.opt_string("log.dirs")? {
        Some(v) => ("log.dirs", v),
        None => ("log.dir", r.string("log.dir")?),
    };
    let dirs: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    match dirs.as_slice() {
        [] => Err(ConfigError::invalid(key, &value, "no directory given")),
        [one] => Ok(PathBuf::from(one)),
        several => Err(ConfigError::Unsupported {
            key: key.into(),
            reason: format!(
                "Runnel supports one data directory, got {}: {}",
                several.len(),
                several.join(", ")
            ),
        }),
    }
}

type Listeners = (Vec<Endpoint>, Vec<Endpoint>, Vec<Endpoint>);

fn resolve_listeners(r: &Resolver) -> Result<Listeners, ConfigError> {
    let map_key = "listener.security.protocol.map";
    let map_text = r.string(map_key)?;
    let mut protocols: BTreeMap<String, SecurityProtocol> = BTreeMap::new();
    for entry in map_text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry
            .split_once(':')
            .and_then(|(name, proto)| Some((name.trim(), SecurityProtocol::parse(proto)?)));
        match parsed {
            Some((name, proto)) if !name.is_empty() => {
                protocols.insert(name.to_ascii_uppercase(), proto);
            }
            _ => {
                return Err(ConfigError::invalid(
                    map_key,
                    &map_text,
                    &format!("'{entry}' is not NAME:PROTOCOL with PROTOCOL one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
                ))
            }
        }
    }
    let controller_names: Vec<String> = r
        .opt_string("controller.listener.names")?
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    // Kafka (KRaft): with the default map, controller listeners are PLAINTEXT.
    if !r.is_set(map_key) {
        for name in &controller_names {
            protocols
                .entry(name.clone())
                .or_insert(SecurityProtocol::Plaintext);
        }
    }

    let listeners_text = r.string("listeners")?;
    let all = parse_endpoints("listeners", &listeners_text, &protocols)?;
    check_distinct("listeners", &listeners_text, &all, true)?;
    let (controller, client): (Vec<Endpoint>, Vec<Endpoint>) = all
        .into_iter()
        .partition(|e| controller_names.contains(&e.listener_name));
    if let Some(missing) = controller_names
        .iter()
        .find(|n| !controller.iter().any(|e| &e.listener_name == *n))
    {
        return Err(ConfigError::Conflict {
            key: "controller.listener.names".into(),
            reason: format!(
                "controller.listener.names must only contain values appearing in the 'listeners' configuration when running the KRaft controller role (missing {missing})"
            ),
        });
    }
    if client.is_empty() {
        return Err(ConfigError::Conflict {
            key: "listeners".into(),
            reason: "There must be at least one broker advertised listener. Perhaps all listeners appear in controller.listener.names?".into(),
        });
    }
    for e in client.iter().chain(&controller) {
        if e.security_protocol != SecurityProtocol::Plaintext {
            return Err(ConfigError::Unsupported {
                key: "listeners".into(),
                reason: format!(
                    "listener {} uses {}: only PLAINTEXT listeners are supported yet",
                    e.listener_name,
                    e.security_protocol.name()
                ),
            });
        }
    }

    let advertised_key = "advertised.listeners";
    let advertised = match r.opt_string(advertised_key)? {
        Some(text) => {
            let parsed = parse_endpoints(advertised_key, &text, &protocols)?;
            check_distinct(advertised_key, &text, &parsed, false)?;
            let client_advertised: Vec<Endpoint> = parsed
                .into_iter()
                .filter(|e| !controller_names.contains(&e.listener_name))
                .collect();
            if let Some(stray) = client_advertised
                .iter()
                .find(|a| !client.iter().any(|l| l.listener_name == a.listener_name))
            {
                return Err(ConfigError::Conflict {
                    key: advertised_key.into(),
                    reason: format!(
                        "advertised.listeners listener names must be equal to or a subset of the ones defined in listeners. Found {}. The valid options based on the current configuration are {}",
                        stray.listener_name,
                        client.iter().map(|l| l.listener_name.as_str()).collect::<Vec<_>>().join(",")
                    ),
                });
            }
            if client_advertised.is_empty() {
                return Err(ConfigError::Conflict {
                    key: advertised_key.into(),
                    reason: "There must be at least one broker advertised listener.".into(),
                });
            }
            client_advertised
        }
        None => client
            .iter()
            .map(|l| Endpoint {
                host: if l.host.is_empty() {
                    "localhost".into()
                } else {
                    l.host.clone()
                },
                ..l.clone()
            })
            .collect(),
    };
    if advertised
        .iter()
        .any(|e| e.host == "0.0.0.0" || e.host == "::")
    {
        return Err(ConfigError::Conflict {
            key: advertised_key.into(),
            reason: "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0. Use a routable IP address.".into(),
        });
    }
    if let Some(name) = r.opt_string("inter.broker.listener.name")? {
        let name = name.to_ascii_uppercase();
        if !advertised.iter().any(|e| e.listener_name == name) {
            return Err(ConfigError::Conflict {
                key: "inter.broker.listener.name".into(),
                reason: format!(
                    "inter.broker.listener.name must be a listener name defined in advertised.listeners. The valid options based on currently configured listeners are {}",
                    advertised.iter().map(|e| e.listener_name.as_str()).collect::<Vec<_>>().join(",")
                ),
            });
        }
    }
    Ok((client, controller, advertised))
}

fn check_distinct(
    key: &str,
    text: &str,
    endpoints: &[Endpoint],
    ports_too: bool,
) -> Result<(), ConfigError> {
    for (i, e) in endpoints.iter().enumerate() {
        for other in &endpoints[..i] {
            if other.listener_name == e.listener_name {
                return Err(ConfigError::invalid(
                    key,
                    text,
                    &format!("Each listener must have a different name, listeners: {text}"),
                ));
            }
            if ports_too && e.port != 0 && other.port == e.port {
                return Err(ConfigError::invalid(
                    key,
                    text,
                    &format!("Each listener must have a different port, listeners: {text}"),
                ));
            }
        }
    }
    Ok(())
}

fn parse_endpoints(
    key: &str,
    text: &str,
    protocols: &BTreeMap<String, SecurityProtocol>,
) -> Result<Vec<Endpoint>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_endpoint(s, protocols).map_err(|reason| {
                ConfigError::invalid(
                    key,
                    text,
                    &format!("Unable to parse {s} to a broker endpoint: {reason}"),
                )
            })
        })
        .collect()
}

/// Parses `NAME://host:port`, `NAME://[v6]:port`, `NAME://:port` or plain `host:port`
/// (as `PLAINTEXT`).
pub fn parse_endpoint(
    s: &str,
    protocols: &BTreeMap<String, SecurityProtocol>,
) -> Result<Endpoint, String> {
    let (name, address) = match s.split_once("://") {
        Some((name, address)) => (name.trim().to_ascii_uppercase(), address),
        None => ("PLAINTEXT".to_owned(), s),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(format!("bad listener name '{name}'"));
    }
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after an IPv6 address")?;
        let port = after.strip_prefix(':').ok_or("missing ':port'")?;
        (host, port)
    } else {
        address.rsplit_once(':').ok_or("missing ':port'")?
    };
    if !host
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'%' | b'.' | b'_' | b':'))
    {
        return Err(format!("bad host '{host}'"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port '{port}' is not in 0..65535"))?;
    let security_protocol = protocols
        .get(&name)
        .copied()
        .ok_or_else(|| format!("No security protocol defined for listener {name}"))?;
    Ok(Endpoint {
        listener_name: name,
        security_protocol,
        host: host.to_owned(),
        port,
    })
}

/// Parses Java `.properties` text (the subset Kafka's files use, which is all of it that
/// matters): `#`/`!` comment lines, `key=value`, `key: value` and `key value`, leading
/// whitespace, backslash line continuation, and the escapes `\t \n \r \f \uXXXX` and
/// `\<char>`. Values are trimmed (Kafka trims every value it parses). Later keys win.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = split_natural_lines(text);
    let mut i = 0;
    while i < lines.len() {
        let start_line = i + 1;
        let first = lines[i].trim_start_matches([' ', '\t', '\x0c']);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut current = first;
        loop {
            let trailing = current.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&current[..current.len() - 1]);
                match lines.get(i) {
                    Some(next) => {
                        current = next.trim_start_matches([' ', '\t', '\x0c']);
                        i += 1;
                    }
                    None => break,
                }
            } else {
                logical.push_str(current);
                break;
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(key).map_err(|reason| ConfigError::Syntax {
            line: start_line,
            reason,
        })?;
        let value = unescape(value).map_err(|reason| ConfigError::Syntax {
            line: start_line,
            reason,
        })?;
        out.push((key, value.trim().to_owned()));
    }
    Ok(out)
}

fn split_natural_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(pos) => {
                lines.push(&rest[..pos]);
                let skip = if rest[pos..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[pos + skip..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    lines
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace (Java's rules).
fn split_key_value(line: &str) -> (&str, &str) {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\x0c');
    let mut escaped = false;
    let mut key_end = line.len();
    let mut separator_is_ws = false;
    for (pos, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' {
            key_end = pos;
            break;
        } else if is_ws(c) {
            key_end = pos;
            separator_is_ws = true;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = &line[key_end..];
    if separator_is_ws {
        rest = rest.trim_start_matches(is_ws);
        if let Some(after) = rest.strip_prefix(['=', ':']) {
            rest = after;
        }
    } else if !rest.is_empty() {
        rest = &rest[1..];
    }
    (key, rest.trim_start_matches(is_ws))
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            if pending_high.take().is_some() {
                return Err("unpaired UTF-16 surrogate in \\u escape".into());
            }
            out.push(c);
            continue;
        }
        let Some(escaped) = chars.next() else {
            out.push('\\');
            break;
        };
        let decoded = match escaped {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\x0c',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or("Malformed \\uxxxx encoding.")?;
                match (pending_high.take(), unit) {
                    (None, 0xD800..=0xDBFF) => {
                        pending_high = Some(unit);
                        continue;
                    }
                    (Some(high), 0xDC00..=0xDFFF) => {
                        let code = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00);
                        char::from_u32(code).ok_or("invalid \\u escape")?
                    }
                    (Some(_), _) | (None, 0xDC00..=0xDFFF) => {
                        return Err("unpaired UTF-16 surrogate in \\u escape".into())
                    }
                    (None, code) => char::from_u32(code).ok_or("invalid \\u escape")?,
                }
            }
            other => other,
        };
        if pending_high.take().is_some() {
            return Err("unpaired UTF-16 surrogate in \\u escape".into());
        }
        out.push(decoded);
    }
    if pending_high.is_some() {
        return Err("unpaired UTF-16 surrogate in \\u escape".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let overrides: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_sources(None, &overrides)
    }

    #[test]
    fn given_the_key_table_should_be_sorted_with_valid_defaults() {
        for pair in BROKER_CONFIG_KEYS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for k in BROKER_CONFIG_KEYS {
            if let Some(d) = k.default {
                let parsed = parse_value(k.config_type, k.validator, d)
                    .unwrap_or_else(|e| panic!("default of {}: {e}", k.name));
                assert_eq!(parsed.render(), d, "{} default printed canonically", k.name);
            }
        }
    }

    #[test]
    fn given_every_topic_config_synonym_should_be_a_known_broker_key() {
        for def in runnel_metadata::topic_config::TOPIC_CONFIGS {
            for s in def.broker_synonyms {
                assert!(
                    broker_config_key(s.name).is_some(),
                    "{} (for {})",
                    s.name,
                    def.name
                );
            }
        }
    }

    #[test]
    fn given_nothing_set_should_use_kafka_defaults() {
        let c = BrokerConfig::default();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.log_dir, PathBuf::from("./runnel-data"));
        assert_eq!(c.listeners.len(), 1);
        let l = &c.listeners[0];
        assert_eq!(
            (l.listener_name.as_str(), l.host.as_str(), l.port),
            ("PLAINTEXT", "localhost", 9092)
        );
        assert_eq!(c.advertised_listeners, c.listeners);
        assert!(c.controller_listeners.is_empty());
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.default_replication_factor, 1);
        assert!(c.auto_create_topics_enable && c.delete_topic_enable);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.log_segment_bytes, 1_073_741_824);
        assert_eq!(c.log_roll_ms, 168 * 3_600_000);
        assert_eq!(c.log_roll_jitter_ms, 0);
        assert_eq!(c.log_retention_ms, 604_800_000);
        assert_eq!(c.log_retention_bytes, -1);
        assert_eq!(c.log_retention_check_interval_ms, 300_000);
        assert_eq!(c.log_flush_interval_messages, i64::MAX);
        assert_eq!(c.log_flush_interval_ms, i64::MAX);
        assert_eq!(c.log_flush_scheduler_interval_ms, i64::MAX);
        assert_eq!(c.log_index_interval_bytes, 4096);
        assert_eq!(c.log_index_size_max_bytes, 10_485_760);
        assert_eq!(c.log_message_timestamp_type, "CreateTime");
        assert_eq!(c.log_message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(c.log_message_timestamp_before_max_ms, i64::MAX);
        assert_eq!(c.log_cleanup_policy, vec!["delete".to_string()]);
        assert_eq!(c.compression_type, "producer");
        assert_eq!(c.min_insync_replicas, 1);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert_eq!(c.queued_max_requests, 500);
        assert_eq!(c.queued_max_request_bytes, -1);
        assert_eq!((c.num_network_threads, c.num_io_threads), (3, 8));
        assert_eq!(c.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(
            (
                c.group_min_session_timeout_ms,
                c.group_max_session_timeout_ms
            ),
            (6000, 1_800_000)
        );
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.offsets_topic_replication_factor_for(1), 1);
        assert_eq!(c.offsets_retention_minutes, 10080);
        assert_eq!(c.offsets_retention_ms(), 604_800_000);
        assert_eq!(c.transaction_max_timeout_ms, 900_000);
        assert_eq!(c.transactional_id_expiration_ms, 604_800_000);
        assert_eq!(c.transaction_state_log_min_isr_for(1), 1);
        assert_eq!(c.fetch_max_bytes, 57_671_680);
        assert_eq!(c.replica_fetch_max_bytes, 1_048_576);
        assert_eq!(c.broker_rack, None);
        assert_eq!(
            c.topic_defaults(),
            TopicDefaults {
                num_partitions: 1,
                replication_factor: 1
            }
        );
    }

    #[test]
    fn given_file_and_overrides_should_apply_in_increasing_precedence() {
        let file = "num.partitions=3\nlog.retention.hours=24\nbroker.rack=r1\n";
        let overrides = vec![("num.partitions".to_string(), "5".to_string())];
        let c = BrokerConfig::from_sources(Some(file), &overrides).unwrap();
        assert_eq!(c.num_partitions, 5, "override beats file");
        assert_eq!(c.log_retention_ms, 24 * 3_600_000, "file beats default");
        assert_eq!(c.broker_rack.as_deref(), Some("r1"));
        assert_eq!(c.lookup("num.partitions"), Some(("5".into(), true)));
        assert_eq!(c.lookup("log.retention.hours"), Some(("24".into(), true)));
        assert_eq!(
            c.lookup("log.segment.bytes"),
            Some(("1073741824".into(), false))
        );
        assert_eq!(c.lookup("log.retention.ms"), None, "null default");
        assert_eq!(c.lookup("no.such.key"), None);
    }

    #[test]
    fn given_time_synonyms_should_prefer_the_finest_unit() {
        let c = with(&[("log.retention.hours", "1"), ("log.retention.minutes", "2")]).unwrap();
        assert_eq!(c.log_retention_ms, 120_000);
        let c = with(&[("log.retention.minutes", "2"), ("log.retention.ms", "5")]).unwrap();
        assert_eq!(c.log_retention_ms, 5);
        let c = with(&[("log.retention.ms", "-7")]).unwrap();
        assert_eq!(c.log_retention_ms, -1, "negative means unlimited");
        let c = with(&[("log.roll.hours", "2")]).unwrap();
        assert_eq!(c.log_roll_ms, 7_200_000);
        let c = with(&[("log.roll.hours", "2"), ("log.roll.ms", "10")]).unwrap();
        assert_eq!(c.log_roll_ms, 10);
        let c = with(&[("log.flush.scheduler.interval.ms", "1000")]).unwrap();
        assert_eq!(c.log_flush_interval_ms, 1000);
        let c = with(&[
            ("log.flush.scheduler.interval.ms", "1000"),
            ("log.flush.interval.ms", "10"),
        ])
        .unwrap();
        assert_eq!(c.log_flush_interval_ms, 10);
    }

    #[test]
    fn given_bad_keys_or_values_should_fail_naming_the_key() {
        /// (overrides, key the error must name, text it must contain)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (
                &[("no.such.key", "1")],
                "no.such.key",
                "unknown broker config 'no.such.key'",
            ),
            (
                &[("retention.ms", "1")],
                "retention.ms",
                "its broker-wide default is 'log.retention.ms'",
            ),
            (
                &[("ssl.keystore.location", "x")],
                "ssl.keystore.location",
                "TLS and SASL are not supported yet",
            ),
            (
                &[("num.partitions", "many")],
                "num.partitions",
                "Invalid value many for configuration num.partitions: Not a number of type INT",
            ),
            (
                &[("num.partitions", "0")],
                "num.partitions",
                "Value must be at least 1",
            ),
            (&[("node.id", "-1")], "node.id", "Value must be at least 0"),
            (
                &[("log.segment.bytes", "1024")],
                "log.segment.bytes",
                "Value must be at least 1048576",
            ),
            (
                &[("auto.create.topics.enable", "yes")],
                "auto.create.topics.enable",
                "Expected value to be either true or false",
            ),
            (
                &[("log.cleanup.policy", "archive")],
                "log.cleanup.policy",
                "String must be one of: compact, delete",
            ),
            (
                &[("compression.type", "brotli")],
                "compression.type",
                "String must be one of",
            ),
            (
                &[("log.message.timestamp.type", "Now")],
                "log.message.timestamp.type",
                "String must be one of: CreateTime, LogAppendTime",
            ),
            (
                &[("offsets.topic.replication.factor", "40000")],
                "offsets.topic.replication.factor",
                "Not a number of type SHORT",
            ),
            (
                &[("log.dirs", "/a,/b")],
                "log.dirs",
                "Runnel supports one data directory, got 2",
            ),
            (&[("log.dirs", " , ")], "log.dirs", "no directory given"),
            (
                &[("node.id", "1"), ("broker.id", "2")],
                "node.id",
                "You must set `node.id` to the same value as `broker.id`",
            ),
            (
                &[("process.roles", "broker")],
                "process.roles",
                "combined broker and controller",
            ),
            (
                &[("process.roles", "broker,observer")],
                "process.roles",
                "String must be one of: broker, controller",
            ),
            (
                &[("listeners", "SSL://:9093")],
                "listeners",
                "only PLAINTEXT listeners are supported yet",
            ),
            (
                &[("listeners", "SASL_PLAINTEXT://:9093")],
                "listeners",
                "only PLAINTEXT listeners are supported yet",
            ),
            (
                &[("listeners", "FOO://:9093")],
                "listeners",
                "No security protocol defined for listener FOO",
            ),
            (
                &[("listeners", "PLAINTEXT://host")],
                "listeners",
                "Unable to parse PLAINTEXT://host to a broker endpoint",
            ),
            (
                &[("listeners", "PLAINTEXT://host:99999")],
                "listeners",
                "port '99999'",
            ),
            (
                &[("listeners", "PLAINTEXT://:9092,PLAINTEXT://:9093")],
                "listeners",
                "Each listener must have a different name",
            ),
            (
                &[
                    ("listeners", "PLAINTEXT://:9092,INTERNAL://:9092"),
                    (
                        "listener.security.protocol.map",
                        "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
                    ),
                ],
                "listeners",
                "Each listener must have a different port",
            ),
            (
                &[("listener.security.protocol.map", "PLAINTEXT")],
                "listener.security.protocol.map",
                "is not NAME:PROTOCOL",
            ),
            (
                &[("advertised.listeners", "PLAINTEXT://0.0.0.0:9092")],
                "advertised.listeners",
                "nonroutable meta-address 0.0.0.0",
            ),
            (
                &[("listeners", "PLAINTEXT://0.0.0.0:9092")],
                "advertised.listeners",
                "nonroutable meta-address 0.0.0.0",
            ),
            (
                &[
                    ("advertised.listeners", "OTHER://h:1"),
                    (
                        "listener.security.protocol.map",
                        "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
                    ),
                ],
                "advertised.listeners",
                "must be equal to or a subset of the ones defined in listeners",
            ),
            (
                &[
                    ("listeners", "CONTROLLER://:9093"),
                    ("controller.listener.names", "CONTROLLER"),
                ],
                "listeners",
                "There must be at least one broker advertised listener",
            ),
            (
                &[("controller.listener.names", "CONTROLLER")],
                "controller.listener.names",
                "must only contain values appearing in the 'listeners'",
            ),
            (
                &[("inter.broker.listener.name", "INTERNAL")],
                "inter.broker.listener.name",
                "must be a listener name defined in advertised.listeners",
            ),
            (
                &[
                    ("group.min.session.timeout.ms", "10"),
                    ("group.max.session.timeout.ms", "5"),
                ],
                "group.max.session.timeout.ms",
                "must be greater than or equal to group.min.session.timeout.ms",
            ),
            (
                &[("group.consumer.heartbeat.interval.ms", "50000")],
                "group.consumer.heartbeat.interval.ms",
                "must be between",
            ),
        ];
        for (pairs, key, text) in cases {
            let err = with(pairs).unwrap_err();
            assert_eq!(err.key(), Some(*key), "{pairs:?}: {err}");
            let message = err.to_string();
            assert!(
                message.contains(key),
                "{pairs:?}: message should name {key}: {message}"
            );
            assert!(
                message.contains(text),
                "{pairs:?}: expected '{text}' in: {message}"
            );
        }
    }

    #[test]
    fn given_listener_forms_should_parse_like_kafka() {
        let protocols: BTreeMap<String, SecurityProtocol> = [
            ("PLAINTEXT".to_string(), SecurityProtocol::Plaintext),
            ("CONTROLLER".to_string(), SecurityProtocol::Plaintext),
        ]
        .into();
        let cases = [
            (
                "PLAINTEXT://localhost:9092",
                "PLAINTEXT",
                "localhost",
                9092,
                "localhost:9092",
            ),
            (
                "plaintext://host.example:1",
                "PLAINTEXT",
                "host.example",
                1,
                "host.example:1",
            ),
            ("PLAINTEXT://:9092", "PLAINTEXT", "", 9092, "0.0.0.0:9092"),
            (
                "PLAINTEXT://[::1]:9092",
                "PLAINTEXT",
                "::1",
                9092,
                "[::1]:9092",
            ),
            ("[::1]:9092", "PLAINTEXT", "::1", 9092, "[::1]:9092"),
            (
                "PLAINTEXT://::1:9092",
                "PLAINTEXT",
                "::1",
                9092,
                "[::1]:9092",
            ),
            ("127.0.0.1:0", "PLAINTEXT", "127.0.0.1", 0, "127.0.0.1:0"),
            ("CONTROLLER://:9093", "CONTROLLER", "", 9093, "0.0.0.0:9093"),
        ];
        for (text, name, host, port, bind) in cases {
            let e = parse_endpoint(text, &protocols).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(
                (e.listener_name.as_str(), e.host.as_str(), e.port),
                (name, host, port),
                "{text}"
            );
            assert_eq!(e.bind_address(), bind, "{text}");
        }
        for bad in [
            "",
            "PLAINTEXT://",
            "PLAINTEXT://h",
            "PLAINTEXT://h:x",
            "PLAINTEXT://[::1:9092",
            "://h:1",
            "PLAINTEXT://h/x:1",
            "PLAINTEXT://h:-1",
        ] {
            assert!(parse_endpoint(bad, &protocols).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_kafkas_stock_kraft_server_properties_should_load() {
        let file = "\
# Licensed to the Apache Software Foundation (ASF)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";
        let c = BrokerConfig::from_sources(Some(file), &[]).unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/tmp/kraft-combined-logs"));
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].bind_address(), "0.0.0.0:9092");
        assert_eq!(c.controller_listeners[0].listener_name, "CONTROLLER");
        assert_eq!(c.advertised_listeners.len(), 1);
        assert_eq!(c.advertised_listeners[0].host_port(), "localhost:9092");
        assert_eq!(c.offsets_topic_replication_factor, 1);
    }

    #[test]
    fn given_controller_listener_without_explicit_map_should_default_to_plaintext() {
        let c = with(&[
            ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
        ])
        .unwrap();
        assert_eq!(
            c.controller_listeners[0].security_protocol,
            SecurityProtocol::Plaintext
        );
        assert_eq!(
            c.advertised_listeners[0].host_port(),
            "localhost:9092",
            "empty host advertised as localhost"
        );
    }

    #[test]
    fn given_plain_host_port_listener_should_be_plaintext() {
        let c = with(&[("listeners", "[::1]:19092")]).unwrap();
        assert_eq!(c.listeners[0].listener_name, "PLAINTEXT");
        assert_eq!(c.listeners[0].bind_address(), "[::1]:19092");
        assert_eq!(c.advertised_listeners[0].host_port(), "[::1]:19092");
    }

    #[test]
    fn given_broker_id_only_should_use_it_as_node_id() {
        assert_eq!(with(&[("broker.id", "7")]).unwrap().node_id, 7);
        assert_eq!(
            with(&[("broker.id", "7"), ("node.id", "7")])
                .unwrap()
                .node_id,
            7
        );
        assert_eq!(
            with(&[("broker.id", "-1")]).unwrap_err().key(),
            Some("broker.id")
        );
    }

    #[test]
    fn given_log_dir_and_log_dirs_should_prefer_log_dirs() {
        assert_eq!(
            with(&[("log.dir", "/x")]).unwrap().log_dir,
            PathBuf::from("/x")
        );
        assert_eq!(
            with(&[("log.dir", "/x"), ("log.dirs", "/y")])
                .unwrap()
                .log_dir,
            PathBuf::from("/y")
        );
    }

    #[test]
    fn given_properties_edge_cases_should_parse_like_java() {
        let text = "# comment\n\
                    ! bang comment\n\
                    \n\
                    \x20\x20 a=1\n\
                    b : 2 \n\
                    c 3\n\
                    d=\n\
                    e\n\
                    f = x\\\n\
                    \x20\x20\x20\x20y\n\
                    g=tab\\there\n\
                    h\\:k=v\n\
                    i=\\u0041\\u00e9\n\
                    j=back\\\\\n\
                    k==v\r\n\
                    l=one\rm=two\n\
                    # comment ending in backslash \\\n\
                    n=after\n\
                    o=\\uD83D\\uDE00\n\
                    a=last";
        let parsed = parse_properties(text).unwrap();
        let map: BTreeMap<String, String> = parsed.into_iter().collect();
        let expect = [
            ("a", "last"),
            ("b", "2"),
            ("c", "3"),
            ("d", ""),
            ("e", ""),
            ("f", "xy"),
            ("g", "tab\there"),
            ("h:k", "v"),
            ("i", "Aé"),
            ("j", "back\\"),
            ("k", "=v"),
            ("l", "one"),
            ("m", "two"),
            ("n", "after"),
            ("o", "😀"),
        ];
        for (k, v) in expect {
            assert_eq!(map.get(k).map(String::as_str), Some(v), "key {k}");
        }
        assert_eq!(map.len(), expect.len());
    }

    #[test]
    fn given_malformed_escapes_should_fail_with_the_line_number() {
        for (text, line) in [("a=1\nb=\\u12", 2), ("x=\\uZZZZ", 1), ("y=\\uD83D", 1)] {
            match parse_properties(text) {
                Err(ConfigError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn given_a_continuation_at_end_of_file_should_not_panic() {
        let map: BTreeMap<String, String> =
            parse_properties("a=b\\").unwrap().into_iter().collect();
        assert_eq!(map["a"], "b");
    }

    #[test]
    fn given_overrides_arguments_should_split_at_the_first_equals() {
        assert_eq!(
            parse_override("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("=x").is_err());
    }

    #[test]
    fn given_entries_should_list_every_key_with_source_and_read_only() {
        let c = with(&[("num.partitions", "4"), ("log.segment.bytes", " 2097152 ")]).unwrap();
        let entries = c.entries();
        assert_eq!(entries.len(), BROKER_CONFIG_KEYS.len());
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        let np = get("num.partitions");
        assert_eq!(
            (np.value.as_deref(), np.source, np.read_only),
            (Some("4"), BrokerConfigSource::Static, true)
        );
        let seg = get("log.segment.bytes");
        assert_eq!(
            (seg.value.as_deref(), seg.read_only),
            (Some("2097152"), false),
            "trimmed; dynamic in Kafka"
        );
        let ret = get("log.retention.ms");
        assert_eq!(
            (ret.value.as_deref(), ret.source),
            (None, BrokerConfigSource::Default)
        );
        assert!(!get("num.io.threads").runnel_uses);
    }

    #[test]
    fn given_dynamic_configs_in_the_image_when_described_should_layer_them_over_static() {
        use runnel_metadata::records::{ConfigResource, MetadataRecord};
        let c = with(&[("log.retention.hours", "24")]).unwrap();
        let mut image = MetadataImage::new("cluster");
        let set = |resource: ConfigResource, name: &str, value: &str| MetadataRecord::Config {
            resource,
            name: name.into(),
            value: Some(value.into()),
        };
        image
            .apply_all(&[
                set(ConfigResource::cluster_default(), "log.retention.ms", "100"),
                set(ConfigResource::broker(1), "message.max.bytes", "2000000"),
                set(ConfigResource::broker(2), "message.max.bytes", "3"),
            ])
            .unwrap();
        let entries = c.describe(&image, 1);
        assert_eq!(entries.len(), BROKER_CONFIG_KEYS.len());
        let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();

        let ms = get("log.retention.ms");
        assert_eq!(
            (ms.value.as_deref(), ms.source),
            (Some("100"), ConfigSource::DynamicDefaultBroker)
        );
        let layers: Vec<(&str, ConfigSource)> = ms
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.source))
            .collect();
        assert_eq!(
            layers,
            [
                ("log.retention.ms", ConfigSource::DynamicDefaultBroker),
                ("log.retention.hours", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
        let hours = get("log.retention.hours");
        assert_eq!(
            (hours.value.as_deref(), hours.source, hours.read_only),
            (Some("24"), ConfigSource::StaticBroker, true)
        );
        let max = get("message.max.bytes");
        assert_eq!(
            (max.value.as_deref(), max.source, max.read_only),
            (Some("2000000"), ConfigSource::DynamicBroker, false)
        );
        let minutes = get("log.retention.minutes");
        assert_eq!((minutes.value.as_deref(), minutes.is_default), (None, true));
    }

    #[test]
    fn given_listeners_should_pick_the_served_and_advertised_one() {
        let c = with(&[
            ("listeners", "PLAINTEXT://:0,CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("advertised.listeners", "PLAINTEXT://broker.example:19092"),
        ])
        .unwrap();
        assert_eq!((c.listener().host.as_str(), c.listener().port), ("", 0));
        assert_eq!(c.advertised_listener().host_port(), "broker.example:19092");
        let mut emptied = c.clone();
        emptied.listeners.clear();
        emptied.advertised_listeners.clear();
        assert_eq!(
            emptied.listener().host_port(),
            "localhost:9092",
            "no panic on emptied lists"
        );
    }

    #[test]
    fn given_the_lookup_should_feed_topic_config_descriptions() {
        let c = with(&[("log.retention.hours", "1")]).unwrap();
        let lookup = |k: &str| c.lookup(k);
        let layers = runnel_metadata::topic_config::BrokerConfigLayers {
            per_broker: None,
            cluster_default: None,
            static_config: &lookup,
        };
        let entries = runnel_metadata::topic_config::effective_topic_config(None, &layers);
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("3600000"));
        assert_eq!(
            retention.source,
            runnel_metadata::topic_config::ConfigSource::StaticBroker
        );
    }
}
