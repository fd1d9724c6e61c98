//! The topic configs Runnel knows: Kafka 4.1's full list, with Kafka's types, defaults,
//! valid values and broker synonyms; their validation; and the effective value of each for
//! DescribeConfigs (topic override, else a broker-level synonym, else the default).
//!
//! No I/O: broker-level values come in through [`BrokerConfigLayers`].

use std::collections::BTreeMap;

use crate::config_def::{invalid_value_message, parse_value, ConfigType, ConfigValue, Validator};
use crate::controller::ControllerError;
use crate::image::MetadataImage;

/// How a broker synonym's value converts to the topic config's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynonymUnit {
    /// Same unit, copied as is.
    Same,
    /// The broker value is in minutes; the topic value in milliseconds.
    MinutesToMillis,
    /// The broker value is in hours; the topic value in milliseconds.
    HoursToMillis,
}

/// A broker config that supplies a topic config's default (Kafka's
/// `ServerTopicConfigSynonyms`), in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSynonym {
    pub name: &'static str,
    pub unit: SynonymUnit,
}

/// One topic config: the row of Kafka's topic-config table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default, as Kafka prints it.
    pub default: &'static str,
    pub validator: Validator,
    /// Broker configs that set this config's default, first one wins; empty when none.
    pub broker_synonyms: &'static [BrokerSynonym],
    pub doc: &'static str,
}

const fn same(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        unit: SynonymUnit::Same,
    }
}

const fn hours(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        unit: SynonymUnit::HoursToMillis,
    }
}

const fn minutes(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        unit: SynonymUnit::MinutesToMillis,
    }
}

/// `Long.MAX_VALUE`, Kafka's "never" for several time and count limits.
pub const LONG_MAX: &str = "9223372036854775807";

/// Valid `cleanup.policy` elements.
pub const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
/// Valid `compression.type` values (Kafka's `BrokerCompressionType`).
pub const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
/// Valid `message.timestamp.type` values.
pub const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

use ConfigType as T;
use Validator as V;

/// Every topic config of Kafka 4.1, sorted by name.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        config_type: T::List,
        default: "delete",
        validator: V::ListOf(CLEANUP_POLICIES),
        broker_synonyms: &[same("log.cleanup.policy")],
        doc: "Retention policy for old segments: 'delete' drops them past the retention limits, 'compact' keeps the latest record per key; both may be listed.",
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        config_type: T::Int,
        default: "-1",
        validator: V::BetweenOr { min: 1, max: 9, or: -1 },
        broker_synonyms: &[same("compression.gzip.level")],
        doc: "Compression level used when compression.type is gzip.",
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        config_type: T::Int,
        default: "9",
        validator: V::Between(1, 17),
        broker_synonyms: &[same("compression.lz4.level")],
        doc: "Compression level used when compression.type is lz4.",
    },
    TopicConfigDef {
        name: "compression.type",
        config_type: T::String,
        default: "producer",
        validator: V::OneOf(COMPRESSION_TYPES),
        broker_synonyms: &[same("compression.type")],
        doc: "Final compression codec of the topic's batches; 'producer' keeps the producer's codec, 'uncompressed' stores them uncompressed.",
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        config_type: T::Int,
        default: "3",
        validator: V::Between(-131072, 22),
        broker_synonyms: &[same("compression.zstd.level")],
        doc: "Compression level used when compression.type is zstd.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        config_type: T::Long,
        default: "86400000",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.cleaner.delete.retention.ms")],
        doc: "How long delete tombstones are kept in compacted topics.",
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        config_type: T::Long,
        default: "60000",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.segment.delete.delay.ms")],
        doc: "Time to wait before deleting a segment's files from the file system.",
    },
    TopicConfigDef {
        name: "flush.messages",
        config_type: T::Long,
        default: LONG_MAX,
        validator: V::AtLeast(1),
        broker_synonyms: &[same("log.flush.interval.messages")],
        doc: "Force an fsync after this many messages.",
    },
    TopicConfigDef {
        name: "flush.ms",
        config_type: T::Long,
        default: LONG_MAX,
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.flush.interval.ms"), same("log.flush.scheduler.interval.ms")],
        doc: "Force an fsync when data has been unflushed for this long.",
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        config_type: T::List,
        default: "",
        validator: V::ThrottledReplicas,
        broker_synonyms: &[],
        doc: "Replicas throttled on the follower side: [partitionId]:[brokerId],... or '*'.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        config_type: T::Int,
        default: "4096",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.index.interval.bytes")],
        doc: "Bytes of log between two offset-index entries.",
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        config_type: T::List,
        default: "",
        validator: V::ThrottledReplicas,
        broker_synonyms: &[],
        doc: "Replicas throttled on the leader side: [partitionId]:[brokerId],... or '*'.",
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        config_type: T::Long,
        default: "-2",
        validator: V::AtLeast(-2),
        broker_synonyms: &[same("log.local.retention.bytes")],
        doc: "Local size limit per partition under tiered storage; -2 means use retention.bytes.",
    },
    TopicConfigDef {
        name: "local.retention.ms",
        config_type: T::Long,
        default: "-2",
        validator: V::AtLeast(-2),
        broker_synonyms: &[same("log.local.retention.ms")],
        doc: "Local time limit under tiered storage; -2 means use retention.ms.",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        config_type: T::Long,
        default: LONG_MAX,
        validator: V::AtLeast(1),
        broker_synonyms: &[same("log.cleaner.max.compaction.lag.ms")],
        doc: "Longest time a record stays ineligible for compaction.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        config_type: T::Int,
        default: "1048588",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("message.max.bytes")],
        doc: "Largest record batch accepted, after compression.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: T::Long,
        default: "3600000",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.message.timestamp.after.max.ms")],
        doc: "How far a CreateTime timestamp may be ahead of the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: T::Long,
        default: LONG_MAX,
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.message.timestamp.before.max.ms")],
        doc: "How far a CreateTime timestamp may be behind the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        config_type: T::String,
        default: "CreateTime",
        validator: V::OneOf(TIMESTAMP_TYPES),
        broker_synonyms: &[same("log.message.timestamp.type")],
        doc: "Whether record timestamps are the producer's (CreateTime) or the broker's append time (LogAppendTime).",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: T::Double,
        default: "0.5",
        validator: V::DoubleBetween(0.0, 1.0),
        broker_synonyms: &[same("log.cleaner.min.cleanable.ratio")],
        doc: "Share of uncompacted log above which the cleaner compacts.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        config_type: T::Long,
        default: "0",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.cleaner.min.compaction.lag.ms")],
        doc: "Shortest time a record stays uncompacted.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        config_type: T::Int,
        default: "1",
        validator: V::AtLeast(1),
        broker_synonyms: &[same("min.insync.replicas")],
        doc: "In-sync replicas required for an acks=all write to succeed.",
    },
    TopicConfigDef {
        name: "preallocate",
        config_type: T::Boolean,
        default: "false",
        validator: V::Any,
        broker_synonyms: &[same("log.preallocate")],
        doc: "Preallocate segment files on disk when they are created.",
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        config_type: T::Boolean,
        default: "false",
        validator: V::Any,
        broker_synonyms: &[],
        doc: "Stop copying segments to tiered storage (tiered data becomes read-only).",
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        config_type: T::Boolean,
        default: "false",
        validator: V::Any,
        broker_synonyms: &[],
        doc: "Delete tiered data when tiered storage is disabled for the topic.",
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        config_type: T::Boolean,
        default: "false",
        validator: V::Any,
        broker_synonyms: &[],
        doc: "Enable tiered storage for the topic (not supported by Runnel).",
    },
    TopicConfigDef {
        name: "retention.bytes",
        config_type: T::Long,
        default: "-1",
        validator: V::Any,
        broker_synonyms: &[same("log.retention.bytes")],
        doc: "Size a partition may grow to before old segments are deleted; -1 means no limit.",
    },
    TopicConfigDef {
        name: "retention.ms",
        config_type: T::Long,
        default: "604800000",
        validator: V::AtLeast(-1),
        broker_synonyms: &[
            same("log.retention.ms"),
            minutes("log.retention.minutes"),
            hours("log.retention.hours"),
        ],
        doc: "Age after which old segments are deleted; -1 means no limit.",
    },
    TopicConfigDef {
        name: "segment.bytes",
        config_type: T::Int,
        default: "1073741824",
        validator: V::AtLeast(1048576),
        broker_synonyms: &[same("log.segment.bytes")],
        doc: "Size at which a segment is rolled.",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        config_type: T::Int,
        default: "10485760",
        validator: V::AtLeast(4),
        broker_synonyms: &[same("log.index.size.max.bytes")],
        doc: "Maximum size of a segment's offset index.",
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        config_type: T::Long,
        default: "0",
        validator: V::AtLeast(0),
        broker_synonyms: &[same("log.roll.jitter.ms"), hours("log.roll.jitter.hours")],
        doc: "Largest random jitter subtracted from the segment roll time.",
    },
    TopicConfigDef {
        name: "segment.ms",
        config_type: T::Long,
        default: "604800000",
        validator: V::AtLeast(1),
        broker_synonyms: &[same("log.roll.ms"), hours("log.roll.hours")],
        doc: "Age at which a segment is rolled even if not full.",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        config_type: T::Boolean,
        default: "false",
        validator: V::Any,
        broker_synonyms: &[same("unclean.leader.election.enable")],
        doc: "Allow an out-of-sync replica to become leader as a last resort, losing data.",
    },
];

/// The definition of topic config `name`, if Kafka has one.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .binary_search_by(|def| def.name.cmp(name))
        .ok()
        .and_then(|i| TOPIC_CONFIGS.get(i))
}

/// The topic config whose first broker synonym is `broker_name` (e.g. `log.retention.ms` →
/// `retention.ms`), for hints in error messages.
pub fn topic_config_for_broker_synonym(broker_name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .find(|def| def.broker_synonyms.iter().any(|s| s.name == broker_name))
}

/// Parses and checks one topic config value; returns it as Kafka would print it.
pub fn validate_topic_config_value(name: &str, value: &str) -> Result<String, ControllerError> {
    let def = topic_config_def(name).ok_or_else(|| {
        ControllerError::InvalidConfig(format!("Unknown topic config name: {name}"))
    })?;
    let parsed = parse_value(def.config_type, def.validator, value).map_err(|reason| {
        ControllerError::InvalidConfig(invalid_value_message(name, value, &reason))
    })?;
    if name == "remote.storage.enable" && parsed.as_bool() == Some(true) {
        return Err(ControllerError::InvalidConfig(
            "Tiered Storage functionality is disabled in the broker. \
             Topic cannot be configured with remote log storage."
                .into(),
        ));
    }
    Ok(parsed.render())
}

/// Validates the configs of a CreateTopics request: no null values (Kafka: "Null value not
/// supported for topic configs"), only known names, valid values, and
/// `min.compaction.lag.ms <= max.compaction.lag.ms`.
pub fn validate_topic_configs(configs: &[(String, Option<String>)]) -> Result<(), ControllerError> {
    let nulls: Vec<&str> = configs
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(ControllerError::InvalidConfig(format!(
            "Null value not supported for topic configs: {}",
            nulls.join(",")
        )));
    }
    let set: BTreeMap<String, String> = configs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect();
    validate_topic_overrides(&set)
}

/// Validates a complete set of topic overrides (e.g. existing overrides with an alteration
/// applied): every name known, every value valid, and the cross-config rules.
pub fn validate_topic_overrides(
    overrides: &BTreeMap<String, String>,
) -> Result<(), ControllerError> {
    for (name, value) in overrides {
        validate_topic_config_value(name, value)?;
    }
    let long = |name: &str| -> Option<i64> {
        let def = topic_config_def(name)?;
        let raw = overrides.get(name).map_or(def.default, String::as_str);
        parse_value(def.config_type, def.validator, raw)
            .ok()?
            .as_i64()
    };
    if let (Some(min), Some(max)) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms")) {
        if min > max {
            return Err(ControllerError::InvalidConfig(format!(
                "conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"
            )));
        }
    }
    Ok(())
}

/// Where an effective config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigSource {
    /// A topic override (`TOPIC_CONFIG`).
    TopicOverride,
    /// A dynamic config of this broker (`DYNAMIC_BROKER_CONFIG`).
    DynamicBroker,
    /// A cluster-wide dynamic broker default (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    DynamicDefaultBroker,
    /// The broker's configuration file or command line (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Kafka's default (`DEFAULT_CONFIG`).
    Default,
}

impl ConfigSource {
    /// The `config_source` id of DescribeConfigs responses.
    pub fn describe_configs_id(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One synonym of a described config, as DescribeConfigs lists them with `include_synonyms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// One entry of a DescribeConfigs result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntryView {
    pub name: String,
    /// `None` for sensitive configs.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub is_default: bool,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
    /// In Kafka's order: the topic override, then broker synonyms from dynamic per-broker,
    /// dynamic cluster default, static and default configs.
    pub synonyms: Vec<ConfigSynonym>,
}

/// The static broker config lookup: `Some((value, explicitly_set))` for a known broker
/// config with a value (set in the file/overrides, or its default), `None` otherwise.
pub type StaticConfigLookup<'a> = &'a dyn Fn(&str) -> Option<(String, bool)>;

/// The broker-level layers a topic config falls back to, highest precedence first.
pub struct BrokerConfigLayers<'a> {
    /// Dynamic configs of this broker (`Config` records for `Broker("<node id>")`).
    pub per_broker: Option<&'a BTreeMap<String, String>>,
    /// Cluster-wide dynamic defaults (`Config` records for `Broker("")`).
    pub cluster_default: Option<&'a BTreeMap<String, String>>,
    /// The broker's static configuration.
    pub static_config: StaticConfigLookup<'a>,
}

impl<'a> BrokerConfigLayers<'a> {
    /// The layers for broker `node_id` of `image`.
    pub fn from_image(
        image: &'a MetadataImage,
        node_id: i32,
        static_config: StaticConfigLookup<'a>,
    ) -> Self {
        BrokerConfigLayers {
            per_broker: image.broker_config(node_id),
            cluster_default: image.cluster_default_broker_config(),
            static_config,
        }
    }

    /// A broker config's merged value: dynamic per-broker, else dynamic default, else static.
    fn lookup(&self, name: &str) -> Option<(String, ConfigSource)> {
        if let Some(v) = self.per_broker.and_then(|m| m.get(name)) {
            return Some((v.clone(), ConfigSource::DynamicBroker));
        }
        if let Some(v) = self.cluster_default.and_then(|m| m.get(name)) {
            return Some((v.clone(), ConfigSource::DynamicDefaultBroker));
        }
        (self.static_config)(name).map(|(v, explicit)| {
            let source = if explicit {
                ConfigSource::StaticBroker
            } else {
                ConfigSource::Default
            };
            (v, source)
        })
    }

    /// Every layer's value of each synonym, in Kafka's listing order.
    fn synonyms(&self, names: &[BrokerSynonym]) -> Vec<ConfigSynonym> {
        let mut out = Vec::new();
        let mut push = |name: &str, value: &str, source| {
            out.push(ConfigSynonym {
                name: name.to_owned(),
                value: Some(value.to_owned()),
                source,
            })
        };
        for s in names {
            if let Some(v) = self.per_broker.and_then(|m| m.get(s.name)) {
                push(s.name, v, ConfigSource::DynamicBroker);
            }
        }
        for s in names {
            if let Some(v) = self.cluster_default.and_then(|m| m.get(s.name)) {
                push(s.name, v, ConfigSource::DynamicDefaultBroker);
            }
        }
        let statics: Vec<(&BrokerSynonym, String, bool)> = names
            .iter()
            .filter_map(|s| (self.static_config)(s.name).map(|(v, explicit)| (s, v, explicit)))
            .collect();
        for (s, v, explicit) in &statics {
            if *explicit {
                push(s.name, v, ConfigSource::StaticBroker);
            }
        }
        for (s, v, explicit) in &statics {
            if !*explicit {
                push(s.name, v, ConfigSource::Default);
            }
        }
        out
    }
}

/// Converts a broker synonym's value to the topic config's value, or `None` when it does not
/// parse (then the next synonym is tried).
fn convert_synonym(def: &TopicConfigDef, synonym: &BrokerSynonym, raw: &str) -> Option<String> {
    let millis = |factor: i64| -> Option<String> {
        let n: i64 = raw.trim().parse().ok()?;
        Some(n.saturating_mul(factor).to_string())
    };
    let converted = match synonym.unit {
        SynonymUnit::Same => raw.to_owned(),
        SynonymUnit::MinutesToMillis => millis(60_000)?,
        SynonymUnit::HoursToMillis => millis(3_600_000)?,
    };
    let mut value = parse_value(def.config_type, Validator::Any, &converted).ok()?;
    // Kafka's `logRetentionTimeMillis`: any negative broker retention means "no limit".
    if def.name == "retention.ms" {
        if let ConfigValue::Long(n) = value {
            if n < 0 {
                value = ConfigValue::Long(-1);
            }
        }
    }
    Some(value.render())
}

/// The effective value of every topic config, sorted by name, for DescribeConfigs.
///
/// `overrides` are the topic's overrides (from [`MetadataImage::topic_config`]). The value of
/// a config without an override is its first broker synonym that has a value in any layer
/// (so `log.retention.ms` beats `log.retention.hours` whichever layer each is set in, as in
/// Kafka), converted to the topic unit; else Kafka's topic default.
pub fn effective_topic_config(
    overrides: Option<&BTreeMap<String, String>>,
    broker: &BrokerConfigLayers<'_>,
) -> Vec<ConfigEntryView> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| effective_entry(def, overrides.and_then(|o| o.get(def.name)), broker))
        .collect()
}

/// [`effective_topic_config`] for topic `topic` of `image` as seen by broker `node_id`;
/// `None` when the topic does not exist.
pub fn describe_topic_config(
    image: &MetadataImage,
    topic: &str,
    node_id: i32,
    static_config: StaticConfigLookup<'_>,
) -> Option<Vec<ConfigEntryView>> {
    image.topic_by_name(topic)?;
    let layers = BrokerConfigLayers::from_image(image, node_id, static_config);
    Some(effective_topic_config(image.topic_config(topic), &layers))
}

fn effective_entry(
    def: &TopicConfigDef,
    override_value: Option<&String>,
    broker: &BrokerConfigLayers<'_>,
) -> ConfigEntryView {
    let sensitive = def.config_type.is_sensitive();
    let canonical = |raw: &str| {
        parse_value(def.config_type, Validator::Any, raw)
            .map(|v| v.render())
            .unwrap_or_else(|_| raw.to_owned())
    };
    let mut synonyms = Vec::new();
    let mut effective: Option<(String, ConfigSource)> = None;
    if let Some(raw) = override_value {
        let value = canonical(raw);
        synonyms.push(ConfigSynonym {
            name: def.name.to_owned(),
            value: Some(value.clone()),
            source: ConfigSource::TopicOverride,
        });
        effective = Some((value, ConfigSource::TopicOverride));
    }
    synonyms.extend(broker.synonyms(def.broker_synonyms));
    if effective.is_none() {
        effective = def.broker_synonyms.iter().find_map(|s| {
            let (raw, source) = broker.lookup(s.name)?;
            convert_synonym(def, s, &raw).map(|v| (v, source))
        });
    }
    let (value, source) =
        effective.unwrap_or_else(|| (def.default.to_owned(), ConfigSource::Default));
    if sensitive {
        for s in &mut synonyms {
            s.value = None;
        }
    }
    ConfigEntryView {
        name: def.name.to_owned(),
        value: if sensitive { None } else { Some(value) },
        source,
        is_default: source == ConfigSource::Default,
        read_only: false,
        sensitive,
        config_type: def.config_type,
        documentation: def.doc,
        synonyms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn given_the_table_should_be_sorted_unique_and_have_valid_defaults() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for def in TOPIC_CONFIGS {
            let parsed = parse_value(def.config_type, def.validator, def.default)
                .unwrap_or_else(|e| panic!("default of {}: {e}", def.name));
            assert_eq!(
                parsed.render(),
                def.default,
                "{} default is printed canonically",
                def.name
            );
            assert!(topic_config_def(def.name).is_some());
        }
        assert_eq!(TOPIC_CONFIGS.len(), 33, "Kafka 4.1 lists 33 topic configs");
    }

    #[test]
    fn given_valid_configs_when_validated_should_pass() {
        let ok = [
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete, compact"),
            ("cleanup.policy", ""),
            ("compression.type", "zstd"),
            ("compression.gzip.level", "-1"),
            ("compression.zstd.level", "-131072"),
            ("message.timestamp.type", "LogAppendTime"),
            ("retention.ms", "-1"),
            ("retention.bytes", "-5"),
            ("segment.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "1"),
            ("preallocate", "TRUE"),
            ("max.message.bytes", " 2000000 "),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1,1:2"),
            ("remote.storage.enable", "false"),
        ];
        for (k, v) in ok {
            assert_eq!(validate_topic_configs(&cfg(&[(k, v)])), Ok(()), "{k}={v}");
        }
    }

    #[test]
    fn given_invalid_configs_when_validated_should_name_key_and_reason() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("no.such.config", "1")], "Unknown topic config name: no.such.config"),
            (&[("log.retention.ms", "1")], "Unknown topic config name: log.retention.ms"),
            (&[("retention.ms", "abc")], "Invalid value abc for configuration retention.ms: Not a number of type LONG"),
            (&[("retention.ms", "-2")], "Invalid value -2 for configuration retention.ms: Value must be at least -1"),
            (&[("segment.bytes", "1000")], "Invalid value 1000 for configuration segment.bytes: Value must be at least 1048576"),
            (&[("segment.bytes", "4294967296")], "Invalid value 4294967296 for configuration segment.bytes: Not a number of type INT"),
            (&[("cleanup.policy", "delete,archive")], "Invalid value delete,archive for configuration cleanup.policy: String must be one of: compact, delete"),
            (&[("compression.type", "brotli")], "Invalid value brotli for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"),
            (&[("message.timestamp.type", "createtime")], "Invalid value createtime for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"),
            (&[("compression.gzip.level", "0")], "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
            (&[("compression.lz4.level", "18")], "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17"),
            (&[("min.cleanable.dirty.ratio", "1.5")], "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1.0"),
            (&[("preallocate", "yes")], "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
            (&[("min.insync.replicas", "0")], "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"),
            (
                &[("min.compaction.lag.ms", "10"), ("max.compaction.lag.ms", "5")],
                "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)",
            ),
            (
                &[("remote.storage.enable", "true")],
                "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.",
            ),
        ];
        for (configs, message) in cases {
            assert_eq!(
                validate_topic_configs(&cfg(configs)),
                Err(ControllerError::InvalidConfig(message.to_string())),
                "{configs:?}"
            );
        }
    }

    #[test]
    fn given_null_values_when_validated_should_list_them_all() {
        let configs = vec![
            ("retention.ms".to_string(), None),
            ("segment.ms".to_string(), Some("1".to_string())),
            ("bogus".to_string(), None),
        ];
        assert_eq!(
            validate_topic_configs(&configs),
            Err(ControllerError::InvalidConfig(
                "Null value not supported for topic configs: retention.ms,bogus".into()
            ))
        );
    }

    fn no_static(_: &str) -> Option<(String, bool)> {
        None
    }

    fn entry<'e>(entries: &'e [ConfigEntryView], name: &str) -> &'e ConfigEntryView {
        entries.iter().find(|e| e.name == name).unwrap()
    }

    #[test]
    fn given_no_overrides_and_no_broker_values_should_report_kafka_defaults() {
        let layers = BrokerConfigLayers {
            per_broker: None,
            cluster_default: None,
            static_config: &no_static,
        };
        let entries = effective_topic_config(None, &layers);
        assert_eq!(entries.len(), TOPIC_CONFIGS.len());
        let retention = entry(&entries, "retention.ms");
        assert_eq!(retention.value.as_deref(), Some("604800000"));
        assert_eq!(retention.source, ConfigSource::Default);
        assert!(retention.is_default);
        assert!(retention.synonyms.is_empty());
        assert!(!retention.read_only && !retention.sensitive);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }

    #[test]
    fn given_layers_when_described_should_pick_highest_precedence_and_list_synonyms() {
        // Static: log.retention.hours=24 set in the file; log.segment.bytes only defaulted.
        let static_config = |name: &str| match name {
            "log.retention.hours" => Some(("24".to_string(), true)),
            "log.segment.bytes" => Some(("1073741824".to_string(), false)),
            "log.roll.hours" => Some(("168".to_string(), false)),
            "log.cleaner.min.cleanable.ratio" => Some(("0.5".to_string(), false)),
            _ => None,
        };
        let cluster_default: BTreeMap<String, String> =
            [("log.segment.bytes".to_string(), "2097152".to_string())].into();
        let per_broker: BTreeMap<String, String> =
            [("log.roll.ms".to_string(), "1000".to_string())].into();
        let overrides: BTreeMap<String, String> =
            [("min.cleanable.dirty.ratio".to_string(), "1".to_string())].into();
        let layers = BrokerConfigLayers {
            per_broker: Some(&per_broker),
            cluster_default: Some(&cluster_default),
            static_config: &static_config,
        };
        let entries = effective_topic_config(Some(&overrides), &layers);

        let retention = entry(&entries, "retention.ms");
        assert_eq!(
            retention.value.as_deref(),
            Some("86400000"),
            "24 hours in ms"
        );
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        assert!(!retention.is_default);
        assert_eq!(
            retention.synonyms,
            vec![ConfigSynonym {
                name: "log.retention.hours".into(),
                value: Some("24".into()),
                source: ConfigSource::StaticBroker
            }]
        );

        let segment = entry(&entries, "segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("2097152"));
        assert_eq!(segment.source, ConfigSource::DynamicDefaultBroker);
        let sources: Vec<_> = segment.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            [ConfigSource::DynamicDefaultBroker, ConfigSource::Default]
        );

        let roll = entry(&entries, "segment.ms");
        assert_eq!(roll.value.as_deref(), Some("1000"));
        assert_eq!(roll.source, ConfigSource::DynamicBroker);
        let names: Vec<_> = roll.synonyms.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["log.roll.ms", "log.roll.hours"]);

        let ratio = entry(&entries, "min.cleanable.dirty.ratio");
        assert_eq!(ratio.value.as_deref(), Some("1.0"), "printed like Java");
        assert_eq!(ratio.source, ConfigSource::TopicOverride);
        assert_eq!(ratio.synonyms[0].source, ConfigSource::TopicOverride);
        assert_eq!(ratio.synonyms[1].name, "log.cleaner.min.cleanable.ratio");
    }

    #[test]
    fn given_negative_broker_retention_should_mean_unlimited() {
        let static_config =
            |name: &str| (name == "log.retention.minutes").then(|| ("-5".to_string(), true));
        let layers = BrokerConfigLayers {
            per_broker: None,
            cluster_default: None,
            static_config: &static_config,
        };
        let entries = effective_topic_config(None, &layers);
        assert_eq!(entry(&entries, "retention.ms").value.as_deref(), Some("-1"));
    }

    #[test]
    fn given_flush_ms_unset_should_fall_back_to_scheduler_interval() {
        let static_config = |name: &str| {
            (name == "log.flush.scheduler.interval.ms").then(|| ("5000".to_string(), true))
        };
        let layers = BrokerConfigLayers {
            per_broker: None,
            cluster_default: None,
            static_config: &static_config,
        };
        let entries = effective_topic_config(None, &layers);
        assert_eq!(entry(&entries, "flush.ms").value.as_deref(), Some("5000"));
    }

    #[test]
    fn given_an_image_when_describing_an_unknown_topic_should_return_none() {
        let image = MetadataImage::new("c");
        assert!(describe_topic_config(&image, "nope", 1, &no_static).is_none());
    }
}
