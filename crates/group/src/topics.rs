//! The view of topic metadata a shard needs (KIP-848 assignment resolves subscriptions to
//! partitions; OffsetCommit may check topics exist). The broker implements it over its
//! metadata image.

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
}

pub trait TopicMetadata {
    fn topic_by_name(&self, name: &str) -> Option<TopicInfo>;
    fn topic_by_id(&self, topic_id: &Uuid) -> Option<TopicInfo>;
    /// Every topic, for regular-expression subscriptions.
    fn topics(&self) -> Vec<TopicInfo>;
}

/// A fixed set of topics, for tests and replay.
#[derive(Debug, Clone, Default)]
pub struct StaticTopics(pub Vec<TopicInfo>);

impl TopicMetadata for StaticTopics {
    fn topic_by_name(&self, name: &str) -> Option<TopicInfo> {
        self.0.iter().find(|t| t.name == name).cloned()
    }
    fn topic_by_id(&self, topic_id: &Uuid) -> Option<TopicInfo> {
        self.0.iter().find(|t| t.topic_id == *topic_id).cloned()
    }
    fn topics(&self) -> Vec<TopicInfo> {
        self.0.clone()
    }
}
