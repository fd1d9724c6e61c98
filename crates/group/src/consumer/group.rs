//! One KIP-848 consumer group: the state machine behind ConsumerGroupHeartbeat.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::{self, MemberSpec, KNOWN_ASSIGNORS, UNIFORM};
use super::reconcile::reconcile;
use super::records::{
    Assignment, ConsumerRecord, CurrentMemberAssignmentValue, GroupMetadataValue,
    MemberMetadataValue, MemberState, PartitionMetadataValue, TargetAssignmentMemberValue,
    TargetAssignmentMetadataValue, TopicMetadataValue,
};
use crate::shard::GroupConfig;
use crate::topics::TopicMetadata;

/// The epoch a member sends to leave the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The epoch a static member sends to leave temporarily, keeping its assignment until its
/// session times out.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// How often a group's regular expressions are matched against the topics again.
pub const REGEX_REFRESH_INTERVAL_MS: i64 = 10_000;
/// Bound on the compiled size of a subscription's regular expression.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Topics a regular expression never matches (Kafka's internal topics).
const INTERNAL_TOPICS: [&str; 3] = [
    "__consumer_offsets",
    "__transaction_state",
    "__share_group_state",
];

/// Where a request came from, as the request header and the connection tell.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub client_id: &'a str,
    pub client_host: &'a str,
}

/// A member, as the shard needs it for DescribeGroups, ListGroups and offset expiration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Partitions the member currently owns, by topic id, in order.
    pub assigned: Vec<(Uuid, Vec<i32>)>,
    /// Topic names subscribed, by name or through the member's regular expression.
    pub subscribed_topic_names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Member {
    metadata: MemberMetadataValue,
    current: CurrentMemberAssignmentValue,
    /// Not persisted: set by each heartbeat, and by the first tick after a replay.
    session_deadline_ms: Option<i64>,
    /// While the member has partitions to revoke: when, and at which epoch, it is fenced.
    rebalance_deadline: Option<(i64, i32)>,
}

#[derive(Debug, Clone)]
struct ResolvedRegex {
    topics: BTreeSet<String>,
    refreshed_at_ms: i64,
}

/// The group config values this module reads.
struct Settings {
    session_timeout_ms: i64,
    heartbeat_interval_ms: i32,
    max_size: usize,
    assignors: Vec<String>,
}

impl Settings {
    fn of(config: &GroupConfig) -> Settings {
        let mut assignors: Vec<String> = config
            .consumer_assignors
            .iter()
            .filter(|a| KNOWN_ASSIGNORS.contains(&a.as_str()))
            .cloned()
            .collect();
        if assignors.is_empty() {
            assignors = KNOWN_ASSIGNORS.iter().map(|a| a.to_string()).collect();
        }
        Settings {
            session_timeout_ms: i64::from(config.consumer_session_timeout_ms).max(1),
            heartbeat_interval_ms: config.consumer_heartbeat_interval_ms,
            max_size: usize::try_from(config.consumer_max_size.max(1)).unwrap_or(usize::MAX),
            assignors,
        }
    }
}

/// A failed heartbeat: the error and the message for the client.
struct Failure {
    error: ResponseError,
    message: String,
}

fn fail<T>(error: ResponseError, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        error,
        message: message.into(),
    })
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// A consumer group of the new protocol (KIP-848).
///
/// Every change of state is a [`ConsumerRecord`]: a request or a tick emits records and
/// applies each through [`replay`](Self::replay) as it goes, so replaying the emitted records
/// on a fresh group rebuilds the same state. Timers (session and rebalance deadlines) and the
/// resolution of regular expressions live in memory only: after a replay, every member gets a
/// fresh session on the first [`tick`](Self::tick) (so [`next_deadline_ms`](Self::next_deadline_ms)
/// answers 0 until then), and regular expressions are matched again on the next heartbeat.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    group_id: String,
    group_epoch: i32,
    assignment_epoch: i32,
    /// A group metadata tombstone was replayed and nothing since.
    deleted: bool,
    /// The subscribed topics that exist, by name.
    subscription_metadata: BTreeMap<String, TopicMetadataValue>,
    members: BTreeMap<String, Member>,
    /// Instance id → member id.
    static_members: BTreeMap<String, String>,
    /// Member id → target assignment.
    target: BTreeMap<String, Assignment>,
    /// Partition → the member holding it (assigned or pending revocation).
    owners: HashMap<(Uuid, i32), String>,
    /// Regular expression → matching topic names. Not persisted.
    regexes: BTreeMap<String, ResolvedRegex>,
    /// Topic name → how many members subscribe to it by name.
    name_counts: BTreeMap<String, usize>,
    /// Regular expression → how many members subscribe with it.
    regex_counts: BTreeMap<String, usize>,
    /// The assignor of the last target assignment computed here. Not persisted.
    last_assignor: Option<String>,
}

impl ConsumerGroup {
    pub fn new(group_id: String) -> Self {
        ConsumerGroup {
            group_id,
            group_epoch: 0,
            assignment_epoch: 0,
            deleted: false,
            subscription_metadata: BTreeMap::new(),
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            owners: HashMap::new(),
            regexes: BTreeMap::new(),
            name_counts: BTreeMap::new(),
            regex_counts: BTreeMap::new(),
            last_assignor: None,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether the group has any state at all (a heartbeat with a non-zero epoch to a group
    /// that does not exist gets GROUP_ID_NOT_FOUND, as from Kafka).
    fn exists(&self) -> bool {
        !self.deleted && (self.group_epoch > 0 || !self.members.is_empty())
    }

    /// Kafka's consumer group states: `Empty`, `Assigning` (the target assignment lags the
    /// group epoch), `Reconciling` (a member has not reached the target), `Stable`, `Dead`.
    pub fn state_name(&self) -> &'static str {
        if self.deleted {
            "Dead"
        } else if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch != self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.current.member_epoch != self.assignment_epoch
                || m.current.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// ConsumerGroupHeartbeat, without the request header's client id and host (members keep
    /// the ones they had; new members get empty ones).
    pub fn heartbeat(
        &mut self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicMetadata,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Vec<ConsumerRecord>, ConsumerGroupHeartbeatResponse) {
        self.heartbeat_with_client(version, req, None, topics, config, now_ms)
    }

    /// ConsumerGroupHeartbeat. Returns the records to append (already applied to this group)
    /// and the answer, to be sent once the records are durable.
    pub fn heartbeat_with_client(
        &mut self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
        client: Option<ClientInfo<'_>>,
        topics: &dyn TopicMetadata,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Vec<ConsumerRecord>, ConsumerGroupHeartbeatResponse) {
        let settings = Settings::of(config);
        let mut records = Vec::new();
        let result = self.try_heartbeat(
            version,
            req,
            client,
            topics,
            &settings,
            now_ms,
            &mut records,
        );
        let response = match result {
            Ok(response) => response,
            Err(failure) => {
                tracing::debug!(
                    group = %self.group_id,
                    member = %req.member_id.as_str(),
                    error = ?failure.error,
                    "consumer group heartbeat refused: {}",
                    failure.message
                );
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(failure.error.code())
                    .with_error_message(Some(sb(&failure.message)))
            }
        };
        (records, response)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_heartbeat(
        &mut self,
        version: i16,
        req: &ConsumerGroupHeartbeatRequest,
        client: Option<ClientInfo<'_>>,
        topics: &dyn TopicMetadata,
        settings: &Settings,
        now_ms: i64,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<ConsumerGroupHeartbeatResponse, Failure> {
        validate(version, req, settings)?;
        let epoch = req.member_epoch;
        let instance_id = req.instance_id.as_ref().map(|s| s.to_string());
        if epoch == LEAVE_GROUP_MEMBER_EPOCH || epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return self.leave(
                req.member_id.as_str(),
                instance_id.as_deref(),
                epoch,
                records,
            );
        }
        if epoch != 0 && !self.exists() {
            return fail(
                ResponseError::GroupIdNotFound,
                format!("Consumer group {} not found.", self.group_id),
            );
        }
        self.check_not_full(req.member_id.as_str(), instance_id.as_deref(), settings)?;

        let member_id = if req.member_id.is_empty() {
            generate_member_id()
        } else {
            req.member_id.to_string()
        };
        let owned: Option<Assignment> = req.topic_partitions.as_ref().map(|tps| {
            let mut a = Assignment::new();
            for tp in tps {
                a.entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            a.retain(|_, ps| !ps.is_empty());
            a
        });

        // The member as it was (None: a new member).
        let base = match instance_id.as_deref() {
            None => self.dynamic_member(&member_id, epoch, owned.as_ref())?,
            Some(iid) => self.static_member(&member_id, iid, epoch, owned.as_ref(), records)?,
        };
        if self.deleted {
            self.deleted = false;
        }

        // 1. The member's subscription and client information.
        let old_metadata = base.as_ref().map(|m| m.metadata.clone());
        let mut metadata = old_metadata.clone().unwrap_or_default();
        if let Some(iid) = &instance_id {
            metadata.instance_id = Some(iid.clone());
        }
        if let Some(rack) = &req.rack_id {
            metadata.rack_id = Some(rack.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            metadata.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            metadata.server_assignor = Some(a.to_string());
        }
        if let Some(names) = &req.subscribed_topic_names {
            let set: BTreeSet<String> = names.iter().map(|n| n.0.to_string()).collect();
            metadata.subscribed_topic_names = set.into_iter().collect();
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            metadata.subscribed_topic_regex = if regex.is_empty() {
                None
            } else {
                Some(regex.to_string())
            };
        }
        if let Some(c) = client {
            metadata.client_id = c.client_id.to_string();
            metadata.client_host = c.client_host.to_string();
        }
        let previous = old_metadata.unwrap_or_default();
        let mut bump = self.group_epoch == 0;
        if base.is_none() || metadata != previous {
            bump |= metadata.subscribed_topic_names != previous.subscribed_topic_names
                || metadata.subscribed_topic_regex != previous.subscribed_topic_regex;
            if base.is_none() {
                tracing::info!(group = %self.group_id, member = %member_id, "member joins the consumer group");
            }
            self.emit(
                records,
                ConsumerRecord::MemberMetadata {
                    group_id: self.group_id.clone(),
                    member_id: member_id.clone(),
                    value: Some(metadata),
                },
            );
        }

        // 2. What the group subscribes to; a change bumps the group epoch.
        bump |= self.refresh_regexes(topics, now_ms);
        let subscription = self.compute_subscription_metadata(topics);
        if subscription != self.subscription_metadata {
            bump = true;
            self.emit(records, self.partition_metadata_record(&subscription));
        }
        if bump {
            self.emit(records, self.group_epoch_record(self.group_epoch + 1));
            tracing::info!(group = %self.group_id, epoch = self.group_epoch, "bumped the group epoch");
        }

        // 3. A new target assignment when the group epoch moved past it.
        if self.group_epoch > self.assignment_epoch {
            self.update_target_assignment(settings, records);
        }

        // 4. Move the member towards its target.
        let before = self.members[&member_id].current.clone();
        let target = self.target.get(&member_id).cloned().unwrap_or_default();
        let next = {
            let owners = &self.owners;
            let me = member_id.as_str();
            let held_by_other = |topic: &Uuid, p: i32| {
                owners
                    .get(&(*topic, p))
                    .is_some_and(|owner| owner.as_str() != me)
            };
            reconcile(
                &before,
                self.assignment_epoch,
                &target,
                owned.as_ref(),
                &held_by_other,
            )
        };
        if next != before {
            let revoking = next.state == MemberState::UnrevokedPartitions;
            let next_epoch = next.member_epoch;
            self.emit(
                records,
                ConsumerRecord::CurrentMemberAssignment {
                    group_id: self.group_id.clone(),
                    member_id: member_id.clone(),
                    value: Some(next),
                },
            );
            let member = self.members.get_mut(&member_id).expect("member exists");
            member.rebalance_deadline = if revoking {
                let timeout = i64::from(member.metadata.rebalance_timeout_ms.max(0));
                Some((now_ms.saturating_add(timeout), next_epoch))
            } else {
                None
            };
        }

        let member = self.members.get_mut(&member_id).expect("member exists");
        member.session_deadline_ms = Some(now_ms.saturating_add(settings.session_timeout_ms));

        let full_request = epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.topic_partitions.is_some());
        let mut response = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(&member_id)))
            .with_member_epoch(member.current.member_epoch)
            .with_heartbeat_interval_ms(settings.heartbeat_interval_ms);
        let old_assigned = base.map(|m| m.current.assigned).unwrap_or_default();
        if full_request || old_assigned != member.current.assigned {
            response.assignment = Some(
                hb::Assignment::default().with_topic_partitions(
                    member
                        .current
                        .assigned
                        .iter()
                        .map(|(topic, ps)| {
                            hb::TopicPartitions::default()
                                .with_topic_id(*topic)
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                ),
            );
        }
        Ok(response)
    }

    /// GROUP_MAX_SIZE_REACHED for a member the group does not know yet when it is full. A
    /// static member taking over its instance id from a member that left temporarily is not
    /// a new member.
    fn check_not_full(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        settings: &Settings,
    ) -> Result<(), Failure> {
        if self.members.len() < settings.max_size {
            return Ok(());
        }
        if !member_id.is_empty() && self.members.contains_key(member_id) {
            return Ok(());
        }
        if let Some(owner) = instance_id.and_then(|iid| self.static_members.get(iid)) {
            if self.members[owner].current.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                return Ok(());
            }
        }
        fail(
            ResponseError::GroupMaxSizeReached,
            format!(
                "The consumer group has reached its maximum capacity of {} members.",
                settings.max_size
            ),
        )
    }

    fn dynamic_member(
        &self,
        member_id: &str,
        epoch: i32,
        owned: Option<&Assignment>,
    ) -> Result<Option<Member>, Failure> {
        match self.members.get(member_id) {
            None if epoch == 0 => Ok(None),
            None => fail(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {member_id} is not a member of group {}.",
                    self.group_id
                ),
            ),
            Some(member) => {
                // Epoch 0 is a member rejoining (after a lost answer or being fenced).
                if epoch != 0 {
                    check_member_epoch(member, epoch, owned)?;
                }
                Ok(Some(member.clone()))
            }
        }
    }

    fn static_member(
        &mut self,
        member_id: &str,
        instance_id: &str,
        epoch: i32,
        owned: Option<&Assignment>,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<Option<Member>, Failure> {
        let holder = self.static_members.get(instance_id).cloned();
        if epoch != 0 {
            let Some(holder) = holder else {
                return fail(
                    ResponseError::UnknownMemberId,
                    format!("Instance id {instance_id} is unknown."),
                );
            };
            if holder != member_id {
                return fail(
                    ResponseError::FencedInstanceId,
                    format!(
                        "Static member {member_id} with instance id {instance_id} was fenced by member {holder}."
                    ),
                );
            }
            let member = &self.members[&holder];
            check_member_epoch(member, epoch, owned)?;
            return Ok(Some(member.clone()));
        }

        // A join. A known member id is the same member coming back.
        let known = self
            .members
            .get(member_id)
            .map(|m| (m.metadata.instance_id.clone(), m.current.clone()));
        if let Some((known_instance, current)) = known {
            if known_instance.as_deref() != Some(instance_id) {
                return fail(
                    ResponseError::InvalidRequest,
                    format!(
                        "Member {member_id} cannot join with instance id {instance_id}: it has {}.",
                        known_instance.as_deref().unwrap_or("none")
                    ),
                );
            }
            if current.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                let current = CurrentMemberAssignmentValue {
                    member_epoch: 0,
                    previous_member_epoch: 0,
                    ..current
                };
                self.emit(
                    records,
                    ConsumerRecord::CurrentMemberAssignment {
                        group_id: self.group_id.clone(),
                        member_id: member_id.to_string(),
                        value: Some(current),
                    },
                );
            }
            return Ok(Some(self.members[member_id].clone()));
        }
        let Some(holder) = holder else {
            return Ok(None);
        };
        let old = self.members[&holder].clone();
        if old.current.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return fail(
                ResponseError::UnreleasedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} cannot join the group because the instance id is owned by {holder} member."
                ),
            );
        }
        // The instance comes back under a new member id: it takes over the old member's
        // subscription, target and current assignment, so nothing is rebalanced.
        tracing::info!(group = %self.group_id, instance = instance_id, old = %holder, new = member_id,
            "static member rejoins and replaces its previous member id");
        let target = self.target.get(&holder).cloned().unwrap_or_default();
        self.remove_member_records(&holder, records);
        self.emit(
            records,
            ConsumerRecord::MemberMetadata {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: Some(old.metadata.clone()),
            },
        );
        self.emit(
            records,
            ConsumerRecord::TargetAssignmentMember {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: Some(TargetAssignmentMemberValue { partitions: target }),
            },
        );
        self.emit(
            records,
            ConsumerRecord::CurrentMemberAssignment {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: Some(CurrentMemberAssignmentValue {
                    member_epoch: 0,
                    previous_member_epoch: 0,
                    ..old.current
                }),
            },
        );
        let member = self.members.get_mut(member_id).expect("just added");
        member.session_deadline_ms = old.session_deadline_ms;
        Ok(Some(member.clone()))
    }

    /// A heartbeat with epoch -1 (leave) or -2 (a static member leaving for a while).
    fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        epoch: i32,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<ConsumerGroupHeartbeatResponse, Failure> {
        if !self.exists() {
            return fail(
                ResponseError::GroupIdNotFound,
                format!("Consumer group {} not found.", self.group_id),
            );
        }
        let response = |epoch: i32| {
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(sb(member_id)))
                .with_member_epoch(epoch)
        };
        let Some(instance_id) = instance_id else {
            if !self.members.contains_key(member_id) {
                return fail(
                    ResponseError::UnknownMemberId,
                    format!(
                        "Member {member_id} is not a member of group {}.",
                        self.group_id
                    ),
                );
            }
            tracing::info!(group = %self.group_id, member = member_id, "member left the consumer group");
            self.fence(member_id, records);
            return Ok(response(epoch));
        };
        let Some(holder) = self.static_members.get(instance_id).cloned() else {
            return fail(
                ResponseError::UnknownMemberId,
                format!("Instance id {instance_id} is unknown."),
            );
        };
        if holder != member_id {
            return fail(
                ResponseError::FencedInstanceId,
                format!(
                    "Static member {member_id} with instance id {instance_id} was fenced by member {holder}."
                ),
            );
        }
        if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            tracing::info!(group = %self.group_id, member = member_id, instance = instance_id,
                "static member temporarily left the consumer group");
            let current = CurrentMemberAssignmentValue {
                member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
                pending_revocation: Assignment::new(),
                ..self.members[member_id].current.clone()
            };
            self.emit(
                records,
                ConsumerRecord::CurrentMemberAssignment {
                    group_id: self.group_id.clone(),
                    member_id: member_id.to_string(),
                    value: Some(current),
                },
            );
            if let Some(m) = self.members.get_mut(member_id) {
                m.rebalance_deadline = None;
            }
        } else {
            tracing::info!(group = %self.group_id, member = member_id, instance = instance_id,
                "static member left the consumer group");
            self.fence(member_id, records);
        }
        Ok(response(epoch))
    }

    /// Session and rebalance timeouts: fences the members whose time is up. The target
    /// assignment is recomputed by the next heartbeat of a remaining member (as in Kafka).
    pub fn tick(&mut self, config: &GroupConfig, now_ms: i64) -> Vec<ConsumerRecord> {
        let settings = Settings::of(config);
        let mut expired = Vec::new();
        for (id, m) in self.members.iter_mut() {
            let session = *m
                .session_deadline_ms
                .get_or_insert(now_ms.saturating_add(settings.session_timeout_ms));
            if m.rebalance_deadline.is_none() && m.current.state == MemberState::UnrevokedPartitions
            {
                let timeout = i64::from(m.metadata.rebalance_timeout_ms.max(0));
                m.rebalance_deadline =
                    Some((now_ms.saturating_add(timeout), m.current.member_epoch));
            }
            let rebalance_expired = m
                .rebalance_deadline
                .is_some_and(|(at, epoch)| at <= now_ms && epoch == m.current.member_epoch);
            if session <= now_ms {
                expired.push((id.clone(), "the member session expired"));
            } else if rebalance_expired {
                expired.push((
                    id.clone(),
                    "it failed to revoke its partitions within the rebalance timeout",
                ));
            }
        }
        let mut records = Vec::new();
        for (id, reason) in expired {
            tracing::info!(group = %self.group_id, member = %id, "member fenced from the consumer group because {reason}");
            self.fence(&id, &mut records);
        }
        records
    }

    /// The earliest time [`tick`](Self::tick) has something to do; 0 when members have no
    /// session deadline yet (just after a replay).
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        for m in self.members.values() {
            let Some(session) = m.session_deadline_ms else {
                return Some(0);
            };
            next = Some(next.map_or(session, |n| n.min(session)));
            if let Some((at, epoch)) = m.rebalance_deadline {
                if epoch == m.current.member_epoch {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        next
    }

    /// ConsumerGroupDescribe's entry for this group (`authorized_operations` left at
    /// `i32::MIN`, "not asked", for the caller to fill).
    pub fn describe(&self, topics: &dyn TopicMetadata) -> describe::DescribedGroup {
        let names: HashMap<Uuid, String> = self
            .subscription_metadata
            .values()
            .map(|t| (t.topic_id, t.topic_name.clone()))
            .collect();
        let to_described = |a: &Assignment| {
            describe::Assignment::default().with_topic_partitions(
                a.iter()
                    .filter_map(|(topic, ps)| {
                        let name = topics
                            .topic_by_id(topic)
                            .map(|t| t.name)
                            .or_else(|| names.get(topic).cloned())?;
                        Some(
                            describe::TopicPartitions::default()
                                .with_topic_id(*topic)
                                .with_topic_name(TopicName(sb(&name)))
                                .with_partitions(ps.iter().copied().collect()),
                        )
                    })
                    .collect(),
            )
        };
        let empty = Assignment::new();
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                describe::Member::default()
                    .with_member_id(sb(id))
                    .with_instance_id(m.metadata.instance_id.as_deref().map(sb))
                    .with_rack_id(m.metadata.rack_id.as_deref().map(sb))
                    .with_member_epoch(m.current.member_epoch)
                    .with_client_id(sb(&m.metadata.client_id))
                    .with_client_host(sb(&m.metadata.client_host))
                    .with_subscribed_topic_names(
                        m.metadata
                            .subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(sb(n)))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(
                        m.metadata.subscribed_topic_regex.as_deref().map(sb),
                    )
                    .with_assignment(to_described(&m.current.assigned))
                    .with_target_assignment(to_described(self.target.get(id).unwrap_or(&empty)))
                    .with_member_type(1)
            })
            .collect();
        describe::DescribedGroup::default()
            .with_group_id(GroupId(sb(&self.group_id)))
            .with_group_state(sb(self.state_name()))
            .with_group_epoch(self.group_epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(sb(&self.last_assignor.clone().unwrap_or_else(|| {
                self.preferred_assignor(&KNOWN_ASSIGNORS.map(String::from))
            })))
            .with_members(members)
            .with_authorized_operations(i32::MIN)
    }

    /// The member-epoch check of OffsetCommit v9+ (Kafka's rule): a commit without a member
    /// (epoch < 0) is accepted only while the group has no members; otherwise the member must
    /// exist (UNKNOWN_MEMBER_ID) and send its current epoch (STALE_MEMBER_EPOCH).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.current.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The member-epoch check of OffsetFetch v9+: no member id and a negative epoch (an admin
    /// client) is always accepted; otherwise as [`validate_offset_commit`](Self::validate_offset_commit).
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            if member_epoch < 0 {
                return Ok(());
            }
            return Err(ResponseError::UnknownMemberId);
        };
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.current.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Applies one record (from this group's own output, or read back at start-up).
    pub fn replay(&mut self, record: &ConsumerRecord) {
        match record {
            ConsumerRecord::GroupMetadata { value, .. } => match value {
                Some(v) => {
                    self.group_epoch = v.epoch;
                    self.deleted = false;
                }
                None => {
                    if !self.members.is_empty() {
                        tracing::warn!(group = %self.group_id, "group tombstone replayed while the group has members");
                    }
                    self.group_epoch = 0;
                    self.deleted = true;
                }
            },
            ConsumerRecord::PartitionMetadata { value, .. } => {
                self.subscription_metadata = value
                    .as_ref()
                    .map(|v| {
                        v.topics
                            .iter()
                            .map(|t| (t.topic_name.clone(), t.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            ConsumerRecord::MemberMetadata {
                member_id, value, ..
            } => match value {
                Some(v) => {
                    if let Some(old) = self.members.get(member_id).map(|m| m.metadata.clone()) {
                        self.count_subscription(&old, false);
                        if let Some(iid) = &old.instance_id {
                            if self.static_members.get(iid) == Some(member_id) {
                                self.static_members.remove(iid);
                            }
                        }
                    }
                    self.count_subscription(v, true);
                    self.members.entry(member_id.clone()).or_default().metadata = v.clone();
                    if let Some(iid) = &v.instance_id {
                        self.static_members.insert(iid.clone(), member_id.clone());
                    }
                }
                None => {
                    if let Some(old) = self.members.remove(member_id) {
                        self.count_subscription(&old.metadata, false);
                        self.release(member_id, &old.current);
                        if let Some(iid) = &old.metadata.instance_id {
                            if self.static_members.get(iid) == Some(member_id) {
                                self.static_members.remove(iid);
                            }
                        }
                    }
                }
            },
            ConsumerRecord::TargetAssignmentMetadata { value, .. } => {
                self.assignment_epoch = value.as_ref().map_or(-1, |v| v.assignment_epoch);
            }
            ConsumerRecord::TargetAssignmentMember {
                member_id, value, ..
            } => match value {
                Some(v) => {
                    self.target.insert(member_id.clone(), v.partitions.clone());
                }
                None => {
                    self.target.remove(member_id);
                }
            },
            ConsumerRecord::CurrentMemberAssignment {
                member_id, value, ..
            } => {
                let new = value.clone().unwrap_or(CurrentMemberAssignmentValue {
                    member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
                    previous_member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
                    state: MemberState::Stable,
                    assigned: Assignment::new(),
                    pending_revocation: Assignment::new(),
                });
                if value.is_none() && !self.members.contains_key(member_id) {
                    return;
                }
                let old = self
                    .members
                    .get(member_id)
                    .map(|m| m.current.clone())
                    .unwrap_or_default();
                self.release(member_id, &old);
                for (topic, ps) in new.assigned.iter().chain(new.pending_revocation.iter()) {
                    for p in ps {
                        if let Some(other) = self.owners.insert((*topic, *p), member_id.clone()) {
                            if other != *member_id {
                                tracing::warn!(group = %self.group_id, member = %member_id, other = %other,
                                    "partition {topic}/{p} held by two members");
                            }
                        }
                    }
                }
                let member = self.members.entry(member_id.clone()).or_default();
                if member.current.member_epoch != new.member_epoch
                    || new.state != MemberState::UnrevokedPartitions
                {
                    member.rebalance_deadline = None;
                }
                member.current = new;
            }
        }
    }

    /// Forgets the partitions `member_id` held per `current`.
    fn release(&mut self, member_id: &str, current: &CurrentMemberAssignmentValue) {
        for (topic, ps) in current
            .assigned
            .iter()
            .chain(current.pending_revocation.iter())
        {
            for p in ps {
                if self
                    .owners
                    .get(&(*topic, *p))
                    .is_some_and(|o| o == member_id)
                {
                    self.owners.remove(&(*topic, *p));
                }
            }
        }
    }

    /// Current members.
    pub fn members(&self) -> Vec<ConsumerMemberSummary> {
        self.members
            .iter()
            .map(|(id, m)| ConsumerMemberSummary {
                member_id: id.clone(),
                group_instance_id: m.metadata.instance_id.clone(),
                client_id: m.metadata.client_id.clone(),
                client_host: m.metadata.client_host.clone(),
                assigned: m
                    .current
                    .assigned
                    .iter()
                    .map(|(t, ps)| (*t, ps.iter().copied().collect()))
                    .collect(),
                subscribed_topic_names: self.member_topics(m).into_iter().collect(),
            })
            .collect()
    }

    /// Every topic a member subscribes to, by name or regular expression, sorted.
    pub fn subscribed_topics(&self) -> Vec<String> {
        self.subscribed_names().into_iter().collect()
    }

    /// Tombstones for everything the group stored (for DeleteGroups).
    pub fn delete_records(&self) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let ids: BTreeSet<&String> = self.members.keys().chain(self.target.keys()).collect();
        for id in ids {
            out.extend(self.member_tombstones(id));
        }
        let g = || self.group_id.clone();
        out.push(ConsumerRecord::TargetAssignmentMetadata {
            group_id: g(),
            value: None,
        });
        out.push(ConsumerRecord::PartitionMetadata {
            group_id: g(),
            value: None,
        });
        out.push(ConsumerRecord::GroupMetadata {
            group_id: g(),
            value: None,
        });
        out
    }

    fn member_tombstones(&self, member_id: &str) -> [ConsumerRecord; 3] {
        [
            ConsumerRecord::CurrentMemberAssignment {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: None,
            },
            ConsumerRecord::TargetAssignmentMember {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: None,
            },
            ConsumerRecord::MemberMetadata {
                group_id: self.group_id.clone(),
                member_id: member_id.to_string(),
                value: None,
            },
        ]
    }

    fn emit(&mut self, records: &mut Vec<ConsumerRecord>, record: ConsumerRecord) {
        self.replay(&record);
        records.push(record);
    }

    fn remove_member_records(&mut self, member_id: &str, records: &mut Vec<ConsumerRecord>) {
        for record in self.member_tombstones(member_id) {
            self.emit(records, record);
        }
    }

    /// Removes a member and bumps the group epoch (a leave, or a timeout).
    fn fence(&mut self, member_id: &str, records: &mut Vec<ConsumerRecord>) {
        if !self.members.contains_key(member_id) {
            return;
        }
        self.remove_member_records(member_id, records);
        // What the remaining members subscribe to, from what is known (no topic lookups).
        let remaining = self.subscribed_names();
        let subscription: BTreeMap<String, TopicMetadataValue> = self
            .subscription_metadata
            .iter()
            .filter(|(name, _)| remaining.contains(*name))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        if subscription != self.subscription_metadata {
            self.emit(records, self.partition_metadata_record(&subscription));
        }
        self.emit(records, self.group_epoch_record(self.group_epoch + 1));
    }

    fn group_epoch_record(&self, epoch: i32) -> ConsumerRecord {
        ConsumerRecord::GroupMetadata {
            group_id: self.group_id.clone(),
            value: Some(GroupMetadataValue { epoch }),
        }
    }

    fn partition_metadata_record(
        &self,
        topics: &BTreeMap<String, TopicMetadataValue>,
    ) -> ConsumerRecord {
        ConsumerRecord::PartitionMetadata {
            group_id: self.group_id.clone(),
            value: Some(PartitionMetadataValue {
                topics: topics.values().cloned().collect(),
            }),
        }
    }

    /// Topic names a member subscribes to, by name or through its regular expression.
    fn member_topics(&self, m: &Member) -> BTreeSet<String> {
        let mut names: BTreeSet<String> =
            m.metadata.subscribed_topic_names.iter().cloned().collect();
        if let Some(resolved) = m
            .metadata
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| self.regexes.get(r))
        {
            names.extend(resolved.topics.iter().cloned());
        }
        names
    }

    fn subscribed_names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.name_counts.keys().cloned().collect();
        for regex in self.regex_counts.keys() {
            if let Some(resolved) = self.regexes.get(regex) {
                names.extend(resolved.topics.iter().cloned());
            }
        }
        names
    }

    /// Keeps [`name_counts`](Self::name_counts) and [`regex_counts`](Self::regex_counts) in
    /// step with a member's subscription (`add`: the member subscribes, else it stops).
    fn count_subscription(&mut self, metadata: &MemberMetadataValue, add: bool) {
        fn update(counts: &mut BTreeMap<String, usize>, key: &str, add: bool) {
            if add {
                *counts.entry(key.to_string()).or_default() += 1;
            } else if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
        for name in &metadata.subscribed_topic_names {
            update(&mut self.name_counts, name, add);
        }
        if let Some(regex) = &metadata.subscribed_topic_regex {
            update(&mut self.regex_counts, regex, add);
        }
    }

    fn compute_subscription_metadata(
        &self,
        topics: &dyn TopicMetadata,
    ) -> BTreeMap<String, TopicMetadataValue> {
        self.subscribed_names()
            .into_iter()
            .filter_map(|name| {
                let info = topics.topic_by_name(&name)?;
                Some((
                    name,
                    TopicMetadataValue {
                        topic_id: info.topic_id,
                        topic_name: info.name,
                        num_partitions: info.partitions,
                    },
                ))
            })
            .collect()
    }

    /// Matches the members' regular expressions against the topics: new expressions at once,
    /// the others every [`REGEX_REFRESH_INTERVAL_MS`]. Returns whether a known expression now
    /// matches other topics (a reason to rebalance). Expressions no member uses are dropped.
    fn refresh_regexes(&mut self, topics: &dyn TopicMetadata, now_ms: i64) -> bool {
        let used: BTreeSet<String> = self.regex_counts.keys().cloned().collect();
        self.regexes.retain(|r, _| used.contains(r));
        let due: Vec<&String> = used
            .iter()
            .filter(|r| match self.regexes.get(*r) {
                None => true,
                Some(c) => now_ms.saturating_sub(c.refreshed_at_ms) >= REGEX_REFRESH_INTERVAL_MS,
            })
            .collect();
        if due.is_empty() {
            return false;
        }
        let all = topics.topics();
        let mut changed = false;
        for regex in due {
            let matched: BTreeSet<String> = match compile_full_match(regex) {
                Ok(re) => all
                    .iter()
                    .filter(|t| !INTERNAL_TOPICS.contains(&t.name.as_str()) && re.is_match(&t.name))
                    .map(|t| t.name.clone())
                    .collect(),
                Err(e) => {
                    tracing::warn!(group = %self.group_id, regex = %regex, "ignoring a regular expression: {e}");
                    BTreeSet::new()
                }
            };
            if let Some(old) = self.regexes.get(regex) {
                changed |= old.topics != matched;
            }
            self.regexes.insert(
                regex.clone(),
                ResolvedRegex {
                    topics: matched,
                    refreshed_at_ms: now_ms,
                },
            );
        }
        changed
    }

    /// The assignor the members ask for most (ties: the configured order), else the first
    /// configured one.
    fn preferred_assignor(&self, configured: &[String]) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.metadata.server_assignor.as_deref() {
                if configured.iter().any(|c| c == a) {
                    *counts.entry(a).or_default() += 1;
                }
            }
        }
        let best = configured
            .iter()
            .filter_map(|c| counts.get(c.as_str()).map(|n| (*n, c)))
            .fold(None::<(usize, &String)>, |best, (n, c)| match best {
                Some((bn, _)) if bn >= n => best,
                _ => Some((n, c)),
            });
        best.map(|(_, c)| c.clone())
            .or_else(|| configured.first().cloned())
            .unwrap_or_else(|| UNIFORM.to_string())
    }

    /// Computes the target assignment for the current group epoch and records the changes.
    fn update_target_assignment(&mut self, settings: &Settings, records: &mut Vec<ConsumerRecord>) {
        let name = self.preferred_assignor(&settings.assignors);
        let topic_ids: BTreeMap<&str, Uuid> = self
            .subscription_metadata
            .values()
            .map(|t| (t.topic_name.as_str(), t.topic_id))
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self
            .subscription_metadata
            .values()
            .map(|t| (t.topic_id, t.num_partitions))
            .collect();
        let specs: Vec<MemberSpec> = self
            .members
            .iter()
            .map(|(id, m)| MemberSpec {
                member_id: id.clone(),
                instance_id: m.metadata.instance_id.clone(),
                subscribed: self
                    .member_topics(m)
                    .iter()
                    .filter_map(|n| topic_ids.get(n.as_str()).copied())
                    .collect(),
                previous: self.target.get(id).cloned().unwrap_or_default(),
            })
            .collect();
        let new_target = assignor::assign(&name, &specs, &partitions)
            .unwrap_or_else(|| assignor::uniform(&specs, &partitions));
        self.last_assignor = Some(name.clone());
        tracing::info!(group = %self.group_id, epoch = self.group_epoch, assignor = %name,
            "computed a new target assignment");
        let stale: Vec<String> = self
            .target
            .keys()
            .filter(|id| !self.members.contains_key(*id))
            .cloned()
            .collect();
        for id in stale {
            self.emit(
                records,
                ConsumerRecord::TargetAssignmentMember {
                    group_id: self.group_id.clone(),
                    member_id: id,
                    value: None,
                },
            );
        }
        for (id, partitions) in new_target {
            if self.target.get(&id) != Some(&partitions) {
                self.emit(
                    records,
                    ConsumerRecord::TargetAssignmentMember {
                        group_id: self.group_id.clone(),
                        member_id: id,
                        value: Some(TargetAssignmentMemberValue { partitions }),
                    },
                );
            }
        }
        self.emit(
            records,
            ConsumerRecord::TargetAssignmentMetadata {
                group_id: self.group_id.clone(),
                value: Some(TargetAssignmentMetadataValue {
                    assignment_epoch: self.group_epoch,
                }),
            },
        );
    }

    /// The persistent part of the state, for comparing a group with its replay.
    #[cfg(test)]
    pub(crate) fn persistent_view(&self) -> String {
        let mut owners: Vec<_> = self.owners.iter().collect();
        owners.sort();
        let members: Vec<_> = self
            .members
            .iter()
            .map(|(id, m)| (id, &m.metadata, &m.current))
            .collect();
        format!(
            "epoch={} assignment_epoch={} deleted={} subscription={:?} members={:?} static={:?} target={:?} owners={:?}",
            self.group_epoch,
            self.assignment_epoch,
            self.deleted,
            self.subscription_metadata,
            members,
            self.static_members,
            self.target,
            owners
        )
    }

    #[cfg(test)]
    pub(crate) fn member_state(
        &self,
        member_id: &str,
    ) -> Option<(i32, MemberState, Assignment, Assignment)> {
        self.members.get(member_id).map(|m| {
            (
                m.current.member_epoch,
                m.current.state,
                m.current.assigned.clone(),
                m.current.pending_revocation.clone(),
            )
        })
    }

    #[cfg(test)]
    pub(crate) fn target_of(&self, member_id: &str) -> Assignment {
        self.target.get(member_id).cloned().unwrap_or_default()
    }
}

/// Kafka's request checks, in Kafka's order, with Kafka's messages.
fn validate(
    version: i16,
    req: &ConsumerGroupHeartbeatRequest,
    settings: &Settings,
) -> Result<(), Failure> {
    let invalid = |message: &str| fail(ResponseError::InvalidRequest, message);
    let epoch = req.member_epoch;
    if (version >= 1 || epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH)
        && is_blank(req.member_id.as_str())
    {
        return invalid("MemberId can't be empty.");
    }
    if is_blank(req.group_id.0.as_str()) {
        return invalid("GroupId can't be empty.");
    }
    // Both are written in record keys as classic strings, at most 32767 bytes.
    if req.group_id.0.len() > i16::MAX as usize || req.member_id.len() > i16::MAX as usize {
        return invalid("GroupId and MemberId must not be longer than 32767 bytes.");
    }
    if req
        .instance_id
        .as_ref()
        .is_some_and(|s| is_blank(s.as_str()))
    {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|s| is_blank(s.as_str())) {
        return invalid("RackId can't be empty.");
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if !matches!(&req.topic_partitions, Some(tps) if tps.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid(
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.",
            );
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if req.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        }
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if let Some(assignor) = &req.server_assignor {
        if !settings.assignors.iter().any(|a| a == assignor.as_str()) {
            return fail(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {} is not supported. Supported assignors: {}.",
                    assignor.as_str(),
                    settings.assignors.join(", ")
                ),
            );
        }
    }
    if let Some(regex) = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = compile_full_match(regex.as_str()) {
            return fail(
                ResponseError::InvalidRegularExpression,
                format!(
                    "SubscribedTopicRegex `{}` is not a valid regular expression: {e}.",
                    regex.as_str()
                ),
            );
        }
    }
    Ok(())
}

/// Compiles a subscription's regular expression (RE2 syntax, as Kafka's RE2/J) to match
/// whole topic names, as Java's `Matcher.matches`.
fn compile_full_match(regex: &str) -> Result<regex::Regex, String> {
    let build = |pattern: &str| {
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
    };
    // Compiling it alone first guarantees the wrapped form means the same thing.
    build(regex).map_err(|e| e.to_string())?;
    build(&format!("^(?:{regex})$")).map_err(|e| e.to_string())
}

fn check_member_epoch(
    member: &Member,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), Failure> {
    let current = member.current.member_epoch;
    if received > current {
        return fail(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({current}). The member must abandon all its partitions and rejoin."
            ),
        );
    }
    if received < current {
        // The previous epoch is accepted with a subset of the assignment: the answer that
        // carried the new epoch may have been lost.
        let subset = owned.is_some_and(|owned| {
            owned.iter().all(|(topic, ps)| {
                member
                    .current
                    .assigned
                    .get(topic)
                    .is_some_and(|a| ps.is_subset(a))
            })
        });
        if received != member.current.previous_member_epoch || !subset {
            return fail(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({current}). The member must abandon all its partitions and rejoin."
                ),
            );
        }
    }
    Ok(())
}

/// A member id for v0 clients that do not bring one: 16 random bytes in URL-safe base64
/// without padding, as Kafka's `Uuid.toString`.
fn generate_member_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
