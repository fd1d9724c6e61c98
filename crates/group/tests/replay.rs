//! Property: whatever clients do, replaying the records the shard emitted into a fresh shard
//! answers OffsetFetch and DescribeGroups (for settled groups) as the live shard does, and
//! every request held by the shard is eventually answered exactly once.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::OffsetDeleteRequest;
use proptest::prelude::*;
use runnel_group::{GroupConfig, GroupRequest, GroupResponse, RequestId};

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: u8,
        group: u8,
        topics: u8,
        instance: bool,
        version: u8,
    },
    Sync {
        client: u8,
        group: u8,
    },
    Heartbeat {
        client: u8,
        group: u8,
    },
    Leave {
        client: u8,
        group: u8,
    },
    Commit {
        client: u8,
        group: u8,
        partition: u8,
        offset: u16,
        simple: bool,
    },
    DeleteGroup {
        group: u8,
    },
    DeleteOffset {
        group: u8,
        partition: u8,
    },
    Advance {
        ms: u16,
    },
    /// A client joins again with its last settings (what a client does after
    /// MEMBER_ID_REQUIRED or REBALANCE_IN_PROGRESS).
    Rejoin {
        client: u8,
        group: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 0..3u8, 0..3u8, any::<bool>(), 3..=9u8)
            .prop_map(|(client, group, topics, instance, version)| Op::Join { client, group, topics, instance, version }),
        3 => (0..4u8, 0..3u8).prop_map(|(client, group)| Op::Sync { client, group }),
        2 => (0..4u8, 0..3u8).prop_map(|(client, group)| Op::Heartbeat { client, group }),
        1 => (0..4u8, 0..3u8).prop_map(|(client, group)| Op::Leave { client, group }),
        3 => (0..4u8, 0..3u8, 0..6u8, any::<u16>(), any::<bool>())
            .prop_map(|(client, group, partition, offset, simple)| Op::Commit { client, group, partition, offset, simple }),
        1 => (0..3u8).prop_map(|group| Op::DeleteGroup { group }),
        1 => (0..3u8, 0..6u8).prop_map(|(group, partition)| Op::DeleteOffset { group, partition }),
        3 => (0..15_000u16).prop_map(|ms| Op::Advance { ms }),
        2 => (0..4u8, 0..3u8).prop_map(|(client, group)| Op::Rejoin { client, group }),
    ]
}

/// What a client knows about its membership of one group.
#[derive(Debug, Default, Clone)]
struct Client {
    member_id: String,
    generation: i32,
    leader_of: Vec<String>,
    join: Option<RequestId>,
    sync: Option<RequestId>,
}

struct World {
    h: Harness,
    clients: BTreeMap<(u8, u8), Client>,
    /// Clients (bit per client) that follow the protocol on their own: sync after a join,
    /// rejoin when told a rebalance is in progress.
    well_behaved: u8,
    /// Last JoinGroup settings of each client, to rejoin with.
    joins: BTreeMap<(u8, u8), (Join, i16)>,
}

fn group_name(g: u8) -> String {
    format!("group-{g}")
}

const TOPIC_SETS: [&[&str]; 3] = [&["orders"], &["orders", "events"], &["audit"]];

impl World {
    /// Reads the answers clients were waiting for; well-behaved clients react.
    fn poll(&mut self) {
        for _ in 0..8 {
            let reactions = self.read_answers();
            if reactions.is_empty() {
                return;
            }
            for op in reactions {
                self.apply_one(&op);
            }
        }
    }

    fn read_answers(&mut self) -> Vec<Op> {
        let mut reactions = Vec::new();
        for (&(client, group), c) in self.clients.iter_mut() {
            let auto = self.well_behaved & (1 << client) != 0;
            if let Some(id) = c.join {
                if let Some(r) = self.h.take(id) {
                    c.join = None;
                    let GroupResponse::JoinGroup(r) = r else {
                        panic!()
                    };
                    match r.error_code {
                        0 => {
                            c.member_id = r.member_id.to_string();
                            c.generation = r.generation_id;
                            c.leader_of =
                                r.members.iter().map(|m| m.member_id.to_string()).collect();
                            if auto {
                                reactions.push(Op::Sync { client, group });
                            }
                        }
                        79 => {
                            c.member_id = r.member_id.to_string();
                            if auto {
                                reactions.push(Op::Rejoin { client, group });
                            }
                        }
                        25 | 82 => {
                            c.member_id.clear();
                            c.generation = -1;
                        }
                        27 if auto => reactions.push(Op::Rejoin { client, group }),
                        _ => {}
                    }
                }
            }
            if let Some(id) = c.sync {
                if let Some(r) = self.h.take(id) {
                    c.sync = None;
                    let GroupResponse::SyncGroup(r) = r else {
                        panic!()
                    };
                    if auto && r.error_code == 27 {
                        reactions.push(Op::Rejoin { client, group });
                    }
                }
            }
        }
        reactions
    }

    fn apply(&mut self, op: &Op) {
        self.apply_one(op);
        self.poll();
    }

    fn apply_one(&mut self, op: &Op) {
        match *op {
            Op::Rejoin { client, group } => {
                let Some((j, version)) = self.joins.get(&(client, group)).cloned() else {
                    return;
                };
                let c = self.clients.entry((client, group)).or_default().clone();
                if c.join.is_some() {
                    return;
                }
                let id = self.h.join(version, &j.member(&c.member_id));
                self.clients.get_mut(&(client, group)).unwrap().join = Some(id);
            }
            Op::Join {
                client,
                group,
                topics,
                instance,
                version,
            } => {
                let c = self.clients.entry((client, group)).or_default().clone();
                if c.join.is_some() {
                    return;
                }
                let mut j = Join::new(
                    &group_name(group),
                    &format!("client-{client}"),
                    TOPIC_SETS[topics as usize],
                )
                .member(&c.member_id);
                let version = i16::from(version);
                if instance && version >= 5 {
                    j = j.instance(&format!("instance-{client}"));
                }
                self.joins.insert((client, group), (j.clone(), version));
                let id = self.h.join(version, &j);
                self.clients.get_mut(&(client, group)).unwrap().join = Some(id);
            }
            Op::Sync { client, group } => {
                let Some(c) = self.clients.get(&(client, group)).cloned() else {
                    return;
                };
                if c.member_id.is_empty() || c.sync.is_some() || c.join.is_some() {
                    return;
                }
                let assignments: Vec<(String, Bytes)> = c
                    .leader_of
                    .iter()
                    .map(|m| (m.clone(), Bytes::from(format!("{m}@{}", c.generation))))
                    .collect();
                let refs: Vec<(&str, Bytes)> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.clone()))
                    .collect();
                let id = self
                    .h
                    .sync(3, &group_name(group), &c.member_id, c.generation, &refs);
                self.clients.get_mut(&(client, group)).unwrap().sync = Some(id);
            }
            Op::Heartbeat { client, group } => {
                let Some(c) = self.clients.get(&(client, group)).cloned() else {
                    return;
                };
                if !c.member_id.is_empty() {
                    let code = self
                        .h
                        .heartbeat(&group_name(group), &c.member_id, c.generation);
                    if code == 27 && self.well_behaved & (1 << client) != 0 {
                        self.apply_one(&Op::Rejoin { client, group });
                    }
                }
            }
            Op::Leave { client, group } => {
                let Some(c) = self.clients.get(&(client, group)).cloned() else {
                    return;
                };
                if !c.member_id.is_empty() {
                    self.h.leave(3, &group_name(group), &[(&c.member_id, None)]);
                    let c = self.clients.get_mut(&(client, group)).unwrap();
                    c.member_id.clear();
                }
            }
            Op::Commit {
                client,
                group,
                partition,
                offset,
                simple,
            } => {
                let c = self
                    .clients
                    .get(&(client, group))
                    .cloned()
                    .unwrap_or_default();
                let (member, generation) = if simple || c.member_id.is_empty() {
                    (String::new(), -1)
                } else {
                    (c.member_id.clone(), c.generation)
                };
                let meta = format!("m{offset}");
                self.h.commit(
                    8,
                    &group_name(group),
                    &member,
                    generation,
                    &[(
                        "orders",
                        i32::from(partition),
                        i64::from(offset),
                        Some(meta.as_str()),
                    )],
                );
            }
            Op::DeleteGroup { group } => {
                self.h.delete_groups(&[&group_name(group)]);
            }
            Op::DeleteOffset { group, partition } => {
                let req = OffsetDeleteRequest::default()
                    .with_group_id(gid(&group_name(group)))
                    .with_topics(vec![OffsetDeleteRequestTopic::default()
                        .with_name(tname("events"))
                        .with_partitions(vec![OffsetDeleteRequestPartition::default()
                            .with_partition_index(i32::from(partition))])]);
                self.h.call(0, GroupRequest::OffsetDelete(req));
            }
            Op::Advance { ms } => self.h.advance(i64::from(ms)),
        }
    }
}

/// Compares what a fresh shard rebuilt from the log answers with the live shard.
fn check_replay(h: &mut Harness) {
    let mut r = h.restarted();
    let groups: Vec<String> = (0..3).map(group_name).collect();
    for g in &groups {
        assert_eq!(r.fetch(g, None), h.fetch(g, None), "offsets of {g}");
    }
    let live = h.describe(5, &groups.iter().map(String::as_str).collect::<Vec<_>>());
    let back = r.describe(5, &groups.iter().map(String::as_str).collect::<Vec<_>>());
    for (l, b) in live.groups.iter().zip(&back.groups) {
        match l.group_state.as_str() {
            "Stable" | "Empty" | "Dead" => assert_eq!(l, b, "group {}", l.group_id.as_str()),
            // Mid-rebalance, Kafka's log holds the last generation: it loads as Stable.
            _ => assert!(
                matches!(b.group_state.as_str(), "Stable" | "Empty"),
                "{b:?}"
            ),
        }
    }
    let mut live_ids: Vec<String> = h.list(5, &[], &[]).into_iter().map(|g| g.0).collect();
    let mut back_ids: Vec<String> = r.list(5, &[], &[]).into_iter().map(|g| g.0).collect();
    live_ids.sort();
    back_ids.sort();
    assert_eq!(live_ids, back_ids);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn given_any_client_behaviour_replaying_the_log_should_rebuild_the_same_groups_and_offsets(
        ops in proptest::collection::vec(op(), 1..70),
        well_behaved in any::<u8>(),
    ) {
        let config = GroupConfig {
            offsets_retention_ms: 120_000,
            offsets_retention_check_interval_ms: 5_000,
            ..GroupConfig::default()
        };
        let mut w = World {
            h: Harness::with_config(config),
            clients: BTreeMap::new(),
            well_behaved,
            joins: BTreeMap::new(),
        };
        for op in &ops {
            w.apply(op);
        }
        check_replay(&mut w.h);
        // Time passes: every held request is answered, exactly once.
        for _ in 0..40 {
            w.h.advance(30_000);
            w.poll();
        }
        prop_assert!(w.h.waiting.is_empty(), "unanswered: {:?}", w.h.waiting);
        prop_assert!(w.h.answered.values().all(|n| *n == 1));
        prop_assert_eq!(w.h.shard.waiting_requests(), 0);
        check_replay(&mut w.h);
    }
}
