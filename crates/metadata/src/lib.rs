//! Cluster metadata as a log of records applied to an in-memory image.
//!
//! - [`records`]: the record types (topics, partitions, configs, broker registrations) and
//!   their stable JSON encoding.
//! - [`image`]: [`MetadataImage`], built by applying records in order; lookups by topic name
//!   and id, partitions, config overrides. Pure: no I/O.
//! - [`controller`]: turns CreateTopics/DeleteTopics/alter-config requests into records or a
//!   [`ControllerError`] carrying Kafka's error code and message. Pure and deterministic: no
//!   I/O, no clock, no randomness (the caller passes the new topic id).
//! - [`topic_config`]: Kafka's topic-config table (types, defaults, valid values, broker
//!   synonyms), validation, and the effective values DescribeConfigs reports.
//! - [`config_def`]: Kafka-style parsing, checking and printing of typed config values,
//!   shared with the broker's static config.
//! - [`store`]: **the only I/O in this crate** — the append-only, fsync'd metadata log under
//!   `{data_dir}/__cluster_metadata-0/` and `meta.properties`.
//!
//! The broker keeps the current image in an `Arc<MetadataImage>` and swaps in a new one
//! after each committed change, so readers never lock.

pub mod config_def;
pub mod controller;
pub mod image;
pub mod records;
pub mod store;
pub mod topic_config;

pub use controller::{
    alter_topic_configs, create_topic, delete_topic, ControllerError, CreateTopic,
    ReplicaAssignment, TopicDefaults, TopicRef,
};
pub use image::{ApplyError, BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use records::{ConfigResource, MetadataRecord, NO_LEADER};
pub use store::{MetaProperties, MetadataLog, StoreError};
pub use topic_config::{
    describe_topic_config, effective_topic_config, validate_topic_configs, BrokerConfigLayers,
    ConfigEntryView, ConfigSource, ConfigSynonym,
};
