//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as Kafka's
//! group coordinator runs it: the states Empty, PreparingRebalance, CompletingRebalance and
//! Stable (a Dead group is simply removed from the shard), generations, pending member ids
//! (KIP-394), static membership (KIP-345), the initial rebalance delay, and session, join and
//! sync timeouts.
//!
//! Waiting requests are kept as [`Waiter`]s on their member and answered when the rebalance
//! moves on; every way a member or group goes away answers them. Timers are plain deadlines
//! on the group and its members; the shard fires them from `tick`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    GroupId, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::records::{GroupMetadataValue, GroupRecord, MemberMetadata};
use crate::shard::{GroupConfig, RequestContext};
use crate::{GroupResponse, Output, RequestId};

/// The protocol type of Kafka's consumers (`ConsumerProtocol.PROTOCOL_TYPE`).
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A request the shard holds until it can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub id: RequestId,
    pub version: i16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// The state's name as Kafka prints it (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference, names distinct.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub awaiting_join: Option<Waiter>,
    pub awaiting_sync: Option<Waiter>,
    /// Joined in the current rebalance and not yet given a generation: its join is bounded
    /// by the new-member join timeout rather than satisfied by waiting.
    pub is_new: bool,
    /// When the member's session expires without a heartbeat; `None` while the member's
    /// heartbeat is satisfied by a waiting JoinGroup or SyncGroup.
    pub heartbeat_deadline: Option<i64>,
}

impl ClassicMember {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// The join-phase timer of a group in PreparingRebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinTimer {
    /// `group.initial.rebalance.delay.ms` of a group that was Empty: extended while new
    /// members keep joining, by at most the rebalance timeout in all.
    InitialDelay {
        deadline: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    /// The rebalance timeout: members that have not rejoined by then are removed.
    Rebalance { deadline: i64 },
}

impl JoinTimer {
    fn deadline(&self) -> i64 {
        match *self {
            JoinTimer::InitialDelay { deadline, .. } | JoinTimer::Rebalance { deadline } => {
                deadline
            }
        }
    }
}

/// A timer of a classic group that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    Join,
    Sync,
    Heartbeat(String),
    PendingMember(String),
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    pub group_id: String,
    pub state: ClassicState,
    pub previous_state: ClassicState,
    pub current_state_timestamp: Option<i64>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// group.instance.id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED → when they expire.
    pub pending_members: BTreeMap<String, i64>,
    pub pending_sync: BTreeSet<String>,
    /// Protocol name → number of members supporting it.
    supported_protocols: HashMap<String, usize>,
    awaiting_join_count: usize,
    /// Topics the members subscribe to, when the group uses the consumer protocol and the
    /// subscriptions parse.
    pub subscribed_topics: Option<BTreeSet<String>>,
    new_member_added: bool,
    pub join_timer: Option<JoinTimer>,
    /// (deadline, generation) of the wait for every member's SyncGroup.
    pub sync_timer: Option<(i64, i32)>,
    /// `group.initial.rebalance.delay.ms`.
    initial_delay_ms: i32,
}

fn err_code(e: ResponseError) -> i16 {
    e.code()
}

/// A JoinGroup answer, shaped for the request's version.
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinAnswer {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinGroupResponseMember>,
    pub skip_assignment: bool,
}

impl JoinAnswer {
    pub fn error(e: ResponseError, member_id: &str) -> Self {
        JoinAnswer {
            error: e.code(),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }

    pub fn into_response(self, version: i16) -> JoinGroupResponse {
        let mut r = JoinGroupResponse::default();
        r.error_code = self.error;
        r.generation_id = self.generation_id;
        if version >= 7 {
            r.protocol_type = self.protocol_type.map(|s| sb(&s));
            r.protocol_name = self.protocol_name.filter(|s| !s.is_empty()).map(|s| sb(&s));
        } else {
            r.protocol_type = None;
            r.protocol_name = Some(sb(self.protocol_name.as_deref().unwrap_or("")));
        }
        r.leader = sb(&self.leader);
        r.member_id = sb(&self.member_id);
        r.skip_assignment = version >= 9 && self.skip_assignment;
        r.members = self
            .members
            .into_iter()
            .map(|mut m| {
                if version < 5 {
                    m.group_instance_id = None;
                }
                m
            })
            .collect();
        r
    }
}

pub(crate) fn sync_response(
    version: i16,
    error: i16,
    protocol_type: Option<&str>,
    protocol_name: Option<&str>,
    assignment: Bytes,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = error;
    if version >= 5 {
        r.protocol_type = protocol_type.map(sb);
        r.protocol_name = protocol_name.map(sb);
    }
    r.assignment = assignment;
    r
}

fn respond_join(out: &mut Output, w: Waiter, answer: JoinAnswer) {
    out.responses.push((
        w.id,
        GroupResponse::JoinGroup(answer.into_response(w.version)),
    ));
}

fn respond_sync(out: &mut Output, w: Waiter, resp: SyncGroupResponse) {
    out.responses.push((w.id, GroupResponse::SyncGroup(resp)));
}

fn sync_error(out: &mut Output, w: Waiter, e: ResponseError) {
    respond_sync(
        out,
        w,
        sync_response(w.version, e.code(), None, None, Bytes::new()),
    );
}

/// Reads the topics of a ConsumerProtocolSubscription with the version-0 layout that every
/// version starts with (as Kafka does): `int16` version, then an array of topic names.
pub(crate) fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = crate::records::wire::Reader::new(metadata);
    r.i16("version").ok()?;
    let n = r.i32("topics").ok()?;
    if n < 0 || n as usize > r.remaining() {
        return None;
    }
    let mut topics = Vec::with_capacity(n as usize);
    for _ in 0..n {
        topics.push(r.string("topic").ok()?);
    }
    Some(topics)
}

/// The protocols of a JoinGroup request, names deduplicated (first wins) as Kafka's
/// collection keyed by name does.
pub(crate) fn request_protocols(p: &[JoinGroupRequestProtocol]) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = Vec::with_capacity(p.len());
    for proto in p {
        let name = proto.name.to_string();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, proto.metadata.clone()));
        }
    }
    out
}

/// Timers are at least 1 ms away, so that a zero or negative timeout from a client cannot
/// make a timer fire again and again at the same instant.
fn clamp_delay(ms: i64) -> i64 {
    ms.max(1)
}

impl ClassicGroup {
    pub fn new(group_id: &str, now_ms: Option<i64>, config: &GroupConfig) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: ClassicState::Empty,
            previous_state: ClassicState::Empty,
            current_state_timestamp: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            supported_protocols: HashMap::new(),
            awaiting_join_count: 0,
            subscribed_topics: None,
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            initial_delay_ms: config.initial_rebalance_delay_ms,
        }
    }

    /// Rebuilds a group from its GroupMetadata record, as Kafka loads it: Stable if it has
    /// members, else Empty. Each member supports only the group's protocol.
    pub fn from_record(group_id: &str, v: &GroupMetadataValue, config: &GroupConfig) -> Self {
        let state = if v.members.is_empty() {
            ClassicState::Empty
        } else {
            ClassicState::Stable
        };
        let mut g = ClassicGroup::new(
            group_id,
            (v.current_state_timestamp != -1).then_some(v.current_state_timestamp),
            config,
        );
        g.state = state;
        g.previous_state = state;
        g.generation_id = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.protocol_name = v.protocol.clone();
        g.leader_id = v.leader.clone();
        for m in &v.members {
            let member = ClassicMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: if m.rebalance_timeout == -1 {
                    m.session_timeout
                } else {
                    m.rebalance_timeout
                },
                session_timeout_ms: m.session_timeout,
                protocol_type: v.protocol_type.clone(),
                protocols: vec![(
                    v.protocol.clone().unwrap_or_default(),
                    m.subscription.clone(),
                )],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline: None,
            };
            g.insert_member(member);
        }
        if g.leader_id
            .as_ref()
            .is_some_and(|l| !g.members.contains_key(l))
        {
            g.leader_id = g.members.keys().next().cloned();
        }
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    // ---- basic state -------------------------------------------------------------------

    pub fn is_empty(&self) -> bool {
        self.state == ClassicState::Empty
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(t) => t.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    fn transition_to(&mut self, state: ClassicState, now_ms: i64) {
        self.previous_state = self.state;
        self.state = state;
        self.current_state_timestamp = Some(now_ms);
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty
        )
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count && self.pending_members.is_empty()
    }

    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn insert_member(&mut self, member: ClassicMember) {
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        for (name, _) in &member.protocols {
            *self.supported_protocols.entry(name.clone()).or_insert(0) += 1;
        }
        if member.awaiting_join.is_some() {
            self.awaiting_join_count += 1;
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member, answering whatever it was waiting on (UNKNOWN_MEMBER_ID: a member
    /// still alive rejoins).
    fn remove_member(&mut self, member_id: &str, out: &mut Output) {
        if let Some(m) = self.members.remove(member_id) {
            for (name, _) in &m.protocols {
                if let Some(c) = self.supported_protocols.get_mut(name) {
                    *c = c.saturating_sub(1);
                }
            }
            if let Some(w) = m.awaiting_join {
                self.awaiting_join_count -= 1;
                respond_join(
                    out,
                    w,
                    JoinAnswer::error(ResponseError::UnknownMemberId, ""),
                );
            }
            if let Some(w) = m.awaiting_sync {
                sync_error(out, w, ResponseError::UnknownMemberId);
            }
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    /// Sets (or clears) a member's waiting JoinGroup, keeping the count of waiting members.
    /// A JoinGroup it replaces is answered with REBALANCE_IN_PROGRESS so that its client
    /// (if still there) rejoins.
    fn set_awaiting_join(&mut self, member_id: &str, waiter: Option<Waiter>, out: &mut Output) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        let old = std::mem::replace(&mut m.awaiting_join, waiter);
        match (old, waiter) {
            (None, Some(_)) => self.awaiting_join_count += 1,
            (Some(_), None) => self.awaiting_join_count -= 1,
            _ => {}
        }
        if let (Some(old), Some(_)) = (old, waiter) {
            respond_join(
                out,
                old,
                JoinAnswer::error(ResponseError::RebalanceInProgress, member_id),
            );
        }
    }

    fn complete_join(&mut self, member_id: &str, answer: JoinAnswer, out: &mut Output) -> bool {
        let Some(m) = self.members.get_mut(member_id) else {
            return false;
        };
        match m.awaiting_join.take() {
            Some(w) => {
                self.awaiting_join_count -= 1;
                respond_join(out, w, answer);
                true
            }
            None => false,
        }
    }

    fn update_member(
        &mut self,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        waiter: Option<Waiter>,
        out: &mut Output,
    ) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        for (name, _) in &m.protocols {
            if let Some(c) = self.supported_protocols.get_mut(name) {
                *c = c.saturating_sub(1);
            }
        }
        for (name, _) in &protocols {
            *self.supported_protocols.entry(name.clone()).or_insert(0) += 1;
        }
        m.protocols = protocols;
        m.rebalance_timeout_ms = rebalance_timeout_ms;
        m.session_timeout_ms = session_timeout_ms;
        self.set_awaiting_join(member_id, waiter, out);
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.is_empty() {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(n, _)| {
                    self.supported_protocols.get(n).copied().unwrap_or(0) == self.members.len()
                })
        }
    }

    /// The protocol every member supports that most members prefer; ties go to the first
    /// member's (in member-id order) preference.
    fn select_protocol(&self) -> Option<String> {
        let n = self.members.len();
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.supported_protocols.get(*name).copied().unwrap_or(0) == n)
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()))
            {
                *votes.entry(name.as_str()).or_insert(0) += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let v = votes.get(c).copied().unwrap_or(0);
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((c, v));
            }
        }
        best.map(|(c, _)| c.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_ref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }

    fn generate_member_id(
        &self,
        client_id: &str,
        instance_id: Option<&str>,
        uuid: uuid::Uuid,
    ) -> String {
        format!("{}-{}", instance_id.unwrap_or(client_id), uuid)
    }

    /// UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID checks of a request naming a member.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(existing) if existing != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    fn reschedule_heartbeat(&mut self, member_id: &str, timeout_ms: i64, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline = Some(now_ms.saturating_add(clamp_delay(timeout_ms)));
        }
    }

    fn reschedule_session(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get(member_id) {
            let t = i64::from(m.session_timeout_ms);
            self.reschedule_heartbeat(member_id, t, now_ms);
        }
    }

    /// Schedules every member's session expiry, as Kafka does when a partition is loaded.
    pub fn on_loaded(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.reschedule_session(&id, now_ms);
        }
    }

    fn current_members_for_leader(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                let mut r = JoinGroupResponseMember::default();
                r.member_id = sb(&m.member_id);
                r.group_instance_id = m.group_instance_id.as_deref().map(sb);
                r.metadata = m.metadata(&protocol);
                r
            })
            .collect()
    }

    fn generation_answer(&self, member_id: &str, with_members: bool) -> JoinAnswer {
        JoinAnswer {
            error: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.current_members_for_leader()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    /// The GroupMetadata record of the group's current generation, members carrying
    /// `assignment` (a member missing from it gets an empty one).
    pub fn metadata_record(&self) -> GroupRecord {
        let protocol = self.protocol_name.clone();
        let members = self
            .members
            .values()
            .map(|m| MemberMetadata {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout: m.rebalance_timeout_ms,
                session_timeout: m.session_timeout_ms,
                subscription: m.metadata(protocol.as_deref().unwrap_or("")),
                assignment: m.assignment.clone(),
            })
            .collect();
        GroupRecord::GroupMetadata {
            group: self.group_id.clone(),
            value: Some(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation_id,
                protocol,
                leader: self.leader_id.clone(),
                current_state_timestamp: self.current_state_timestamp.unwrap_or(-1),
                members,
            }),
        }
    }

    /// The record Kafka writes when JoinGroup creates a group.
    pub fn empty_metadata_record(&self) -> GroupRecord {
        GroupRecord::GroupMetadata {
            group: self.group_id.clone(),
            value: Some(GroupMetadataValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp: self.current_state_timestamp.unwrap_or(-1),
                members: Vec::new(),
            }),
        }
    }

    // ---- JoinGroup ---------------------------------------------------------------------

    /// Whether a member may join (group.max.size): in PreparingRebalance the members
    /// already waiting are counted, else the members.
    fn accept_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            ClassicState::Empty => true,
            ClassicState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self.awaiting_join_count < max_size
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    /// A JoinGroup for this group (the shard has checked the group id and session
    /// timeout, and that the group may be joined).
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        ctx: &RequestContext,
        waiter: Waiter,
        req: &JoinGroupRequest,
        config: &GroupConfig,
        new_uuid: uuid::Uuid,
        now_ms: i64,
        out: &mut Output,
    ) {
        let member_id = req.member_id.to_string();
        let max_size = usize::try_from(config.group_max_size.max(1)).unwrap_or(usize::MAX);
        if !self.accept_joining_member(&member_id, max_size) {
            if self.members.contains_key(&member_id) {
                self.remove_member(&member_id, out);
            }
            self.pending_members.remove(&member_id);
            respond_join(
                out,
                waiter,
                JoinAnswer::error(ResponseError::GroupMaxSizeReached, ""),
            );
            return;
        }
        let protocols = request_protocols(&req.protocols);
        let protocol_type = req.protocol_type.to_string();
        if member_id.is_empty() {
            self.join_new_member(
                ctx,
                waiter,
                req,
                protocol_type,
                protocols,
                config,
                new_uuid,
                now_ms,
                out,
            );
        } else {
            self.join_existing_member(
                ctx,
                waiter,
                req,
                &member_id,
                protocol_type,
                protocols,
                config,
                now_ms,
                out,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join_new_member(
        &mut self,
        ctx: &RequestContext,
        waiter: Waiter,
        req: &JoinGroupRequest,
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
        config: &GroupConfig,
        new_uuid: uuid::Uuid,
        now_ms: i64,
        out: &mut Output,
    ) {
        if !self.supports_protocols(&protocol_type, &protocols) {
            respond_join(
                out,
                waiter,
                JoinAnswer::error(ResponseError::InconsistentGroupProtocol, ""),
            );
            return;
        }
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        let new_member_id =
            self.generate_member_id(&ctx.client_id, instance_id.as_deref(), new_uuid);
        if let Some(instance) = instance_id {
            match self.static_members.get(&instance).cloned() {
                Some(old_member_id) => self.replace_static_member_and_rejoin(
                    waiter,
                    req,
                    &instance,
                    &old_member_id,
                    &new_member_id,
                    protocols,
                    now_ms,
                    out,
                ),
                None => self.add_member_and_rebalance(
                    ctx,
                    waiter,
                    req,
                    &new_member_id,
                    protocol_type,
                    protocols,
                    config,
                    now_ms,
                    out,
                ),
            }
        } else if waiter.version >= 4 {
            // KIP-394: hand out the member id and ask the client to join again with it.
            self.add_pending_member(&new_member_id, req.session_timeout_ms, config, now_ms);
            respond_join(
                out,
                waiter,
                JoinAnswer::error(ResponseError::MemberIdRequired, &new_member_id),
            );
        } else {
            self.add_member_and_rebalance(
                ctx,
                waiter,
                req,
                &new_member_id,
                protocol_type,
                protocols,
                config,
                now_ms,
                out,
            );
        }
    }

    fn add_pending_member(
        &mut self,
        member_id: &str,
        session_timeout_ms: i32,
        config: &GroupConfig,
        now_ms: i64,
    ) {
        // Bound the member ids handed out and not yet used: the oldest gives way.
        while self.pending_members.len() >= config.max_pending_members_per_group.max(1) {
            let oldest = self
                .pending_members
                .iter()
                .min_by_key(|(id, deadline)| (**deadline, (*id).clone()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    self.pending_members.remove(&id);
                }
                None => break,
            }
        }
        self.pending_members.insert(
            member_id.to_string(),
            now_ms.saturating_add(clamp_delay(i64::from(session_timeout_ms))),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn join_existing_member(
        &mut self,
        ctx: &RequestContext,
        waiter: Waiter,
        req: &JoinGroupRequest,
        member_id: &str,
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
        config: &GroupConfig,
        now_ms: i64,
        out: &mut Output,
    ) {
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        if !self.supports_protocols(&protocol_type, &protocols) {
            respond_join(
                out,
                waiter,
                JoinAnswer::error(ResponseError::InconsistentGroupProtocol, member_id),
            );
            return;
        }
        if self.pending_members.contains_key(member_id) {
            if instance_id.is_some() {
                // Pending member ids are only handed to dynamic members.
                respond_join(
                    out,
                    waiter,
                    JoinAnswer::error(ResponseError::UnknownMemberId, member_id),
                );
                return;
            }
            self.add_member_and_rebalance(
                ctx,
                waiter,
                req,
                member_id,
                protocol_type,
                protocols,
                config,
                now_ms,
                out,
            );
            return;
        }
        if let Err(e) = self.validate_member(member_id, instance_id.as_deref()) {
            respond_join(out, waiter, JoinAnswer::error(e, member_id));
            return;
        }
        let member = &self.members[member_id];
        match self.state {
            ClassicState::PreparingRebalance => {
                self.update_member_and_rebalance(waiter, req, member_id, protocols, now_ms, out)
            }
            ClassicState::CompletingRebalance => {
                if member.matches(&protocols) {
                    // Same metadata: the member missed its JoinGroup answer; send it again.
                    let is_leader = self.is_leader(member_id);
                    respond_join(out, waiter, self.generation_answer(member_id, is_leader));
                } else {
                    self.update_member_and_rebalance(waiter, req, member_id, protocols, now_ms, out)
                }
            }
            ClassicState::Stable => {
                if self.is_leader(member_id) || !member.matches(&protocols) {
                    // The leader's rejoin forces a rebalance (e.g. for topic metadata
                    // changes); so does a change of metadata.
                    self.update_member_and_rebalance(waiter, req, member_id, protocols, now_ms, out)
                } else {
                    respond_join(out, waiter, self.generation_answer(member_id, false));
                }
            }
            ClassicState::Empty => respond_join(
                out,
                waiter,
                JoinAnswer::error(ResponseError::UnknownMemberId, member_id),
            ),
        }
    }

    fn update_member_and_rebalance(
        &mut self,
        waiter: Waiter,
        req: &JoinGroupRequest,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        now_ms: i64,
        out: &mut Output,
    ) {
        self.update_member(
            member_id,
            protocols,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(waiter),
            out,
        );
        self.maybe_prepare_rebalance_or_complete_join(now_ms, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member_and_rebalance(
        &mut self,
        ctx: &RequestContext,
        waiter: Waiter,
        req: &JoinGroupRequest,
        member_id: &str,
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
        config: &GroupConfig,
        now_ms: i64,
        out: &mut Output,
    ) {
        let member = ClassicMember {
            member_id: member_id.to_string(),
            group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: ctx.client_id.clone(),
            client_host: ctx.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type,
            protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline: None,
        };
        if self.state == ClassicState::PreparingRebalance
            && self.previous_state == ClassicState::Empty
        {
            self.new_member_added = true;
        }
        self.insert_member(member);
        // A new member cannot heartbeat before its JoinGroup is answered: bound the wait.
        self.reschedule_heartbeat(
            member_id,
            i64::from(config.new_member_join_timeout_ms),
            now_ms,
        );
        self.maybe_prepare_rebalance_or_complete_join(now_ms, out);
    }

    /// KIP-345: a known group.instance.id joins with a new member id. The new member takes
    /// the old one's place (and assignment); the old id is fenced.
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member_and_rejoin(
        &mut self,
        waiter: Waiter,
        req: &JoinGroupRequest,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
        protocols: Vec<(String, Bytes)>,
        now_ms: i64,
        out: &mut Output,
    ) {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old_member_id) else {
            return;
        };
        // Fence whatever the old member id was waiting on.
        if let Some(w) = member.awaiting_join.take() {
            self.awaiting_join_count -= 1;
            respond_join(
                out,
                w,
                JoinAnswer {
                    error: ResponseError::FencedInstanceId.code(),
                    generation_id: -1,
                    member_id: old_member_id.to_string(),
                    ..Default::default()
                },
            );
        }
        if let Some(w) = member.awaiting_sync.take() {
            sync_error(out, w, ResponseError::FencedInstanceId);
        }
        member.member_id = new_member_id.to_string();
        member.is_new = false;
        self.members.insert(new_member_id.to_string(), member);
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_member_id.to_string());
        self.reschedule_session(new_member_id, now_ms);

        self.update_member(
            new_member_id,
            protocols,
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(waiter),
            out,
        );

        match self.state {
            ClassicState::Stable => {
                let selected = self.select_protocol();
                if selected.is_some() && selected == self.protocol_name {
                    // Nothing changes for the group: persist the new member id and answer
                    // without a rebalance.
                    out.records.push(self.metadata_record());
                    let answer = if waiter.version >= 9 {
                        let is_leader = self.is_leader(new_member_id);
                        let mut a = self.generation_answer(new_member_id, is_leader);
                        a.skip_assignment = is_leader;
                        a
                    } else {
                        let mut a = self.generation_answer(new_member_id, false);
                        // The old leader id, so that a restarted leader does not compute an
                        // assignment of its own for a generation already assigned.
                        a.leader = current_leader;
                        a
                    };
                    self.complete_join(new_member_id, answer, out);
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(now_ms, out);
                }
            }
            ClassicState::CompletingRebalance => {
                // The leader may already have been given the old member id: rebalance.
                self.prepare_rebalance(now_ms, out);
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join_phase(now_ms, out),
            ClassicState::Empty => {}
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, now_ms: i64, out: &mut Output) {
        if self.can_rebalance() {
            self.prepare_rebalance(now_ms, out);
        } else {
            self.maybe_complete_join_phase(now_ms, out);
        }
    }

    pub fn prepare_rebalance(&mut self, now_ms: i64, out: &mut Output) {
        if self.state == ClassicState::CompletingRebalance {
            self.reset_and_propagate_assignment_with_error(
                ResponseError::RebalanceInProgress,
                now_ms,
                out,
            );
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == ClassicState::Empty;
        self.transition_to(ClassicState::PreparingRebalance, now_ms);
        if initial {
            let delay = i64::from(self.initial_delay_ms);
            let remaining = (self.rebalance_timeout_ms() - delay).max(0);
            self.join_timer = Some(JoinTimer::InitialDelay {
                deadline: now_ms.saturating_add(clamp_delay(delay)),
                delay_ms: delay,
                remaining_ms: remaining,
            });
        } else if self.has_all_members_joined() {
            self.complete_join_phase(now_ms, out);
        } else {
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline: now_ms.saturating_add(clamp_delay(self.rebalance_timeout_ms())),
            });
        }
    }

    fn maybe_complete_join_phase(&mut self, now_ms: i64, out: &mut Output) {
        if self.state == ClassicState::PreparingRebalance
            && self.previous_state != ClassicState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join_phase(now_ms, out);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are removed, the next
    /// generation starts and every waiting member gets its JoinGroup answer (the leader
    /// with every member's metadata).
    fn complete_join_phase(&mut self, now_ms: i64, out: &mut Output) {
        self.join_timer = None;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in not_rejoined {
            self.remove_member(&id, out);
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only static members that did not come back are left): wait
            // for them, or for their sessions to expire.
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline: now_ms.saturating_add(clamp_delay(self.rebalance_timeout_ms())),
            });
            return;
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(ClassicState::Empty, now_ms);
            self.pending_sync.clear();
            out.records.push(self.metadata_record());
            return;
        }
        self.protocol_name = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.transition_to(ClassicState::CompletingRebalance, now_ms);
        self.pending_sync.clear();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.is_leader(&id);
            let answer = self.generation_answer(&id, is_leader);
            self.complete_join(&id, answer, out);
            self.reschedule_session(&id, now_ms);
            if let Some(m) = self.members.get_mut(&id) {
                m.is_new = false;
            }
            self.pending_sync.insert(id);
        }
        self.sync_timer = Some((
            now_ms.saturating_add(clamp_delay(self.rebalance_timeout_ms())),
            self.generation_id,
        ));
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_waiting = self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_waiting {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn reset_and_propagate_assignment_with_error(
        &mut self,
        error: ResponseError,
        now_ms: i64,
        out: &mut Output,
    ) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(Some(error), now_ms, out);
    }

    /// Answers every waiting SyncGroup with the member's assignment (or the error).
    fn propagate_assignment(
        &mut self,
        error: Option<ResponseError>,
        now_ms: i64,
        out: &mut Output,
    ) {
        let (ptype, pname) = match error {
            None => (self.protocol_type.clone(), self.protocol_name.clone()),
            Some(_) => (None, None),
        };
        let code = error.map(err_code).unwrap_or(0);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let m = self.members.get_mut(&id).expect("member");
            if let Some(w) = m.awaiting_sync.take() {
                let resp = sync_response(
                    w.version,
                    code,
                    ptype.as_deref(),
                    pname.as_deref(),
                    m.assignment.clone(),
                );
                respond_sync(out, w, resp);
                self.reschedule_session(&id, now_ms);
            }
        }
    }

    // ---- SyncGroup ---------------------------------------------------------------------

    pub fn sync(&mut self, waiter: Waiter, req: &SyncGroupRequest, now_ms: i64, out: &mut Output) {
        let member_id = req.member_id.to_string();
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        if let Err(e) = self.validate_member(&member_id, instance_id.as_deref()) {
            return sync_error(out, waiter, e);
        }
        if req.generation_id != self.generation_id {
            return sync_error(out, waiter, ResponseError::IllegalGeneration);
        }
        let inconsistent = |req: Option<&StrBytes>, group: Option<&String>| match (req, group) {
            (Some(r), Some(g)) => r.as_str() != g.as_str(),
            _ => false,
        };
        if inconsistent(req.protocol_type.as_ref(), self.protocol_type.as_ref())
            || inconsistent(req.protocol_name.as_ref(), self.protocol_name.as_ref())
        {
            return sync_error(out, waiter, ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            ClassicState::PreparingRebalance => {
                sync_error(out, waiter, ResponseError::RebalanceInProgress)
            }
            ClassicState::CompletingRebalance => {
                let m = self.members.get_mut(&member_id).expect("validated");
                if let Some(old) = m.awaiting_sync.replace(waiter) {
                    sync_error(out, old, ResponseError::RebalanceInProgress);
                }
                self.remove_pending_sync_member(&member_id);
                if self.is_leader(&member_id) {
                    let mut given: HashMap<String, Bytes> = HashMap::new();
                    for a in &req.assignments {
                        given.insert(a.member_id.to_string(), a.assignment.clone());
                    }
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    // The assignment is persisted before any member sees it: the runtime
                    // appends the record before sending the responses of this output.
                    out.records.push(self.metadata_record());
                    self.propagate_assignment(None, now_ms, out);
                    self.transition_to(ClassicState::Stable, now_ms);
                }
            }
            ClassicState::Stable => {
                self.remove_pending_sync_member(&member_id);
                let m = &self.members[&member_id];
                let resp = sync_response(
                    waiter.version,
                    0,
                    self.protocol_type.as_deref(),
                    self.protocol_name.as_deref(),
                    m.assignment.clone(),
                );
                respond_sync(out, waiter, resp);
            }
            ClassicState::Empty => sync_error(out, waiter, ResponseError::UnknownMemberId),
        }
    }

    fn remove_pending_sync_member(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    // ---- Heartbeat ---------------------------------------------------------------------

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.validate_member(member_id, instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            ClassicState::Empty => Err(ResponseError::UnknownMemberId),
            ClassicState::PreparingRebalance => {
                self.reschedule_session(member_id, now_ms);
                Err(ResponseError::RebalanceInProgress)
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.reschedule_session(member_id, now_ms);
                Ok(())
            }
        }
    }

    // ---- LeaveGroup --------------------------------------------------------------------

    /// One member leaving (LeaveGroup v3+ names several). Returns the member's error.
    pub fn leave_member(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        out: &mut Output,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() {
            // Administrative removal of a static member by its instance id.
            match instance_id.and_then(|i| self.static_members.get(i).cloned()) {
                Some(id) => {
                    self.remove_member(&id, out);
                    Ok(())
                }
                None => Err(ResponseError::UnknownMemberId),
            }
        } else if self.pending_members.contains_key(member_id) {
            self.pending_members.remove(member_id);
            Ok(())
        } else {
            self.validate_member(member_id, instance_id)?;
            self.remove_member(member_id, out);
            Ok(())
        }
    }

    /// After members left: rebalance, or finish the join phase they were holding up.
    pub fn after_leave(&mut self, now_ms: i64, out: &mut Output) {
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(now_ms, out)
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join_phase(now_ms, out),
            ClassicState::Empty => {}
        }
    }

    // ---- OffsetCommit ------------------------------------------------------------------

    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.validate_commit(member_id, instance_id, generation_id, false)
    }

    /// TxnOffsetCommit's check (KIP-447): as OffsetCommit's, except that a commit without
    /// member and generation (TxnOffsetCommit v0–v2) is accepted in any state, and the group
    /// state is not enforced (no REBALANCE_IN_PROGRESS).
    pub fn validate_txn_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.validate_commit(member_id, instance_id, generation_id, true)
    }

    fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        if generation_id < 0 && self.is_empty() {
            // A commit outside group management: accepted while the group has no members.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !transactional && !self.is_empty() {
            return Err(ResponseError::UnknownMemberId);
        }
        if !transactional && self.state == ClassicState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// An offset commit keeps the committing member's session alive.
    pub fn on_offset_commit(&mut self, member_id: &str, now_ms: i64) {
        if matches!(
            self.state,
            ClassicState::Stable | ClassicState::PreparingRebalance
        ) {
            self.reschedule_session(member_id, now_ms);
        }
    }

    // ---- DescribeGroups ----------------------------------------------------------------

    pub fn describe(&self, version: i16) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(sb(&self.group_id));
        d.group_state = sb(self.state.name());
        d.protocol_type = sb(self.protocol_type.as_deref().unwrap_or(""));
        let stable_protocol = if self.state == ClassicState::Stable {
            self.protocol_name.clone()
        } else {
            None
        };
        d.protocol_data = sb(stable_protocol.as_deref().unwrap_or(""));
        d.members = self
            .members
            .values()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = sb(&m.member_id);
                dm.group_instance_id = if version >= 4 {
                    m.group_instance_id.as_deref().map(sb)
                } else {
                    None
                };
                dm.client_id = sb(&m.client_id);
                dm.client_host = sb(&m.client_host);
                dm.member_metadata = stable_protocol
                    .as_deref()
                    .map(|p| m.metadata(p))
                    .unwrap_or_default();
                dm.member_assignment = m.assignment.clone();
                dm
            })
            .collect();
        d
    }

    // ---- timers --------------------------------------------------------------------------

    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self.members.values().filter_map(|m| m.heartbeat_deadline);
        let pending = self.pending_members.values().copied();
        let join = self.join_timer.map(|t| t.deadline());
        let sync = self.sync_timer.map(|(d, _)| d);
        members.chain(pending).chain(join).chain(sync).min()
    }

    fn earliest_due(&self, now_ms: i64) -> Option<Due> {
        let mut best: Option<(i64, Due)> = None;
        let mut consider = |at: i64, due: Due| {
            if at <= now_ms && best.as_ref().is_none_or(|(b, _)| at < *b) {
                best = Some((at, due));
            }
        };
        for m in self.members.values() {
            if let Some(d) = m.heartbeat_deadline {
                consider(d, Due::Heartbeat(m.member_id.clone()));
            }
        }
        for (id, d) in &self.pending_members {
            consider(*d, Due::PendingMember(id.clone()));
        }
        if let Some(t) = self.join_timer {
            consider(t.deadline(), Due::Join);
        }
        if let Some((d, _)) = self.sync_timer {
            consider(d, Due::Sync);
        }
        best.map(|(_, d)| d)
    }

    /// Fires the group's timers that are due, earliest first.
    pub fn tick(&mut self, config: &GroupConfig, now_ms: i64, out: &mut Output) {
        // Each firing clears its timer or moves it past `now_ms`; the bound is a safety net.
        for _ in 0..(self.members.len() + self.pending_members.len() + 16) * 4 {
            let Some(due) = self.earliest_due(now_ms) else {
                return;
            };
            match due {
                Due::Heartbeat(id) => self.expire_member_heartbeat(&id, now_ms, out),
                Due::PendingMember(id) => {
                    self.pending_members.remove(&id);
                    if self.state == ClassicState::PreparingRebalance
                        && self.has_all_members_joined()
                    {
                        self.complete_join_phase(now_ms, out);
                    }
                }
                Due::Join => self.on_join_timer(config, now_ms, out),
                Due::Sync => self.on_sync_timer(now_ms, out),
            }
        }
    }

    fn expire_member_heartbeat(&mut self, member_id: &str, now_ms: i64, out: &mut Output) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if m.has_satisfied_heartbeat() {
            // Waiting on a JoinGroup or SyncGroup keeps the member alive; its session is
            // scheduled again once that request is answered.
            m.heartbeat_deadline = None;
            return;
        }
        self.remove_member(member_id, out);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(now_ms, out)
            }
            ClassicState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join_phase(now_ms, out)
            }
            _ => {}
        }
    }

    fn on_join_timer(&mut self, config: &GroupConfig, now_ms: i64, out: &mut Output) {
        let Some(timer) = self.join_timer.take() else {
            return;
        };
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        match timer {
            JoinTimer::InitialDelay {
                delay_ms,
                remaining_ms,
                ..
            } if self.new_member_added && remaining_ms != 0 => {
                // New members keep arriving: wait a little longer.
                self.new_member_added = false;
                let new_delay = i64::from(config.initial_rebalance_delay_ms).min(remaining_ms);
                let new_remaining = (remaining_ms - delay_ms).max(0);
                self.join_timer = Some(JoinTimer::InitialDelay {
                    deadline: now_ms.saturating_add(clamp_delay(new_delay)),
                    delay_ms: new_delay,
                    remaining_ms: new_remaining,
                });
            }
            _ => self.complete_join_phase(now_ms, out),
        }
    }

    fn on_sync_timer(&mut self, now_ms: i64, out: &mut Output) {
        let Some((_, generation)) = self.sync_timer.take() else {
            return;
        };
        if generation != self.generation_id
            || !matches!(
                self.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            )
            || self.pending_sync.is_empty()
        {
            return;
        }
        // Members that did not send SyncGroup within the rebalance timeout are removed.
        let missing: Vec<String> = self.pending_sync.iter().cloned().collect();
        for id in missing {
            self.remove_member(&id, out);
        }
        self.prepare_rebalance(now_ms, out);
    }

    // ---- shutdown ----------------------------------------------------------------------

    /// Answers every waiting request with `error` (the shard is being unloaded).
    pub fn abandon_waiters(&mut self, error: ResponseError, out: &mut Output) {
        for m in self.members.values_mut() {
            if let Some(w) = m.awaiting_join.take() {
                respond_join(out, w, JoinAnswer::error(error, &m.member_id));
            }
            if let Some(w) = m.awaiting_sync.take() {
                sync_error(out, w, error);
            }
        }
        self.awaiting_join_count = 0;
    }

    /// Number of requests the group holds.
    pub fn waiting_requests(&self) -> usize {
        self.members
            .values()
            .map(|m| {
                usize::from(m.awaiting_join.is_some()) + usize::from(m.awaiting_sync.is_some())
            })
            .sum()
    }
}
