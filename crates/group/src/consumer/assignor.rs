//! Server-side assignors of KIP-848: pure, deterministic functions from the members'
//! subscriptions (and the previous target assignment) to a new target assignment.
//!
//! - `uniform` spreads the partitions of the subscribed topics evenly over the members that
//!   subscribe to them. It is sticky: a partition stays with its previous owner unless balance
//!   requires moving it. With equal subscriptions every member ends with ⌊P/M⌋ or ⌈P/M⌉
//!   partitions; with different subscriptions it moves partitions from a member to one with at
//!   least two fewer that also subscribes to the topic, until no such move exists.
//! - `range` gives, for each topic, contiguous ranges of partitions to the members subscribed
//!   to it, ordered by instance id (else member id), the first `P % M` members taking one
//!   more: Kafka's `RangeAssignor` rule. Topics with the same partition count and the same
//!   subscribers are co-partitioned (member i gets the same partition numbers of each).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::records::Assignment;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";

/// The assignors this module implements.
pub const KNOWN_ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// One member, as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub member_id: String,
    pub instance_id: Option<String>,
    /// Topic ids the member subscribes to (topics that do not exist are left out).
    pub subscribed: BTreeSet<Uuid>,
    /// The member's previous target assignment, for stickiness.
    pub previous: Assignment,
}

/// Runs the assignor `name` (`uniform` or `range`); `None` for an unknown name. `topics`
/// gives each existing subscribed topic's partition count. The answer has an entry for every
/// member, possibly empty, and assigns each partition of a subscribed topic exactly once.
pub fn assign(
    name: &str,
    members: &[MemberSpec],
    topics: &BTreeMap<Uuid, i32>,
) -> Option<BTreeMap<String, Assignment>> {
    match name {
        UNIFORM => Some(uniform(members, topics)),
        RANGE => Some(range(members, topics)),
        _ => None,
    }
}

/// The `uniform` assignor (see the module documentation).
pub fn uniform(
    members: &[MemberSpec],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    // Members in a fixed order: by member id.
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by(|&a, &b| members[a].member_id.cmp(&members[b].member_id));
    let members: Vec<&MemberSpec> = order.iter().map(|&i| &members[i]).collect();

    // Subscribers of each topic, in member order.
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for topic in &m.subscribed {
            if topics.contains_key(topic) {
                subscribers.entry(*topic).or_default().push(i);
            }
        }
    }

    let mut owned: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); members.len()];
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();

    // 1. Stickiness: keep what each member had and may still have.
    for (i, m) in members.iter().enumerate() {
        for (topic, partitions) in &m.previous {
            let Some(&count) = topics.get(topic) else {
                continue;
            };
            if !m.subscribed.contains(topic) {
                continue;
            }
            for &p in partitions {
                if p >= 0 && p < count && taken.insert((*topic, p)) {
                    owned[i].insert((*topic, p));
                }
            }
        }
    }

    // 2. Every partition nobody kept goes to its least loaded subscriber. Topics with fewer
    //    subscribers go first, so flexible members are left for the rest.
    let mut topic_order: Vec<(&Uuid, &Vec<usize>)> = subscribers.iter().collect();
    topic_order.sort_by_key(|(topic, subs)| (subs.len(), **topic));
    for (topic, subs) in topic_order {
        let count = topics[topic];
        for p in 0..count {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let best = *subs
                .iter()
                .min_by_key(|&&i| (owned[i].len(), i))
                .expect("a subscribed topic has a subscriber");
            owned[best].insert((*topic, p));
            taken.insert((*topic, p));
        }
    }

    // 3. Balance: move a partition from a member to a subscriber of its topic with at least
    //    two fewer partitions, until no such move exists. Each move lowers the sum of squared
    //    counts, so this ends.
    loop {
        let mut moved = false;
        let mut by_load: Vec<usize> = (0..members.len()).collect();
        by_load.sort_by_key(|&i| (std::cmp::Reverse(owned[i].len()), i));
        for from in by_load {
            let candidates: Vec<(Uuid, i32)> = owned[from].iter().rev().copied().collect();
            for (topic, p) in candidates {
                let Some(subs) = subscribers.get(&topic) else {
                    continue;
                };
                let Some(&to) = subs
                    .iter()
                    .filter(|&&i| i != from)
                    .min_by_key(|&&i| (owned[i].len(), i))
                else {
                    continue;
                };
                if owned[to].len() + 1 < owned[from].len() {
                    owned[from].remove(&(topic, p));
                    owned[to].insert((topic, p));
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }

    members
        .iter()
        .zip(owned)
        .map(|(m, parts)| (m.member_id.clone(), to_assignment(parts)))
        .collect()
}

/// The `range` assignor (see the module documentation).
pub fn range(members: &[MemberSpec], topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect();
    // Members ordered by instance id when they have one (stable across restarts of a static
    // member), else by member id.
    let mut order: Vec<&MemberSpec> = members.iter().collect();
    order.sort_by(|a, b| {
        let ka = a.instance_id.as_deref().unwrap_or(&a.member_id);
        let kb = b.instance_id.as_deref().unwrap_or(&b.member_id);
        ka.cmp(kb).then_with(|| a.member_id.cmp(&b.member_id))
    });
    for (topic, &count) in topics {
        let subs: Vec<&MemberSpec> = order
            .iter()
            .copied()
            .filter(|m| m.subscribed.contains(topic))
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        let n = subs.len() as i32;
        let per = count / n;
        let extra = count % n;
        for (i, m) in subs.iter().enumerate() {
            let i = i as i32;
            let start = i * per + i.min(extra);
            let len = per + i32::from(i < extra);
            if len == 0 {
                continue;
            }
            out.get_mut(&m.member_id)
                .expect("every member has an entry")
                .insert(*topic, (start..start + len).collect());
        }
    }
    out
}

fn to_assignment(parts: BTreeSet<(Uuid, i32)>) -> Assignment {
    let mut out = Assignment::new();
    for (topic, p) in parts {
        out.entry(topic).or_default().insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn member(id: &str, topics: &[u8]) -> MemberSpec {
        MemberSpec {
            member_id: id.to_string(),
            instance_id: None,
            subscribed: topics.iter().map(|t| tid(*t)).collect(),
            previous: Assignment::new(),
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(|p| p.len()).sum()
    }

    /// Every partition of a topic someone subscribes to is assigned exactly once, and only to
    /// a subscriber.
    fn check_complete(
        members: &[MemberSpec],
        topics: &BTreeMap<Uuid, i32>,
        result: &BTreeMap<String, Assignment>,
    ) {
        assert_eq!(result.len(), members.len());
        let mut seen: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for m in members {
            for (topic, parts) in &result[&m.member_id] {
                assert!(
                    m.subscribed.contains(topic),
                    "{} got unsubscribed topic",
                    m.member_id
                );
                for p in parts {
                    assert!(*p >= 0 && *p < topics[topic]);
                    assert!(
                        seen.insert((*topic, *p)),
                        "partition {topic}/{p} assigned twice"
                    );
                }
            }
        }
        for (topic, n) in topics {
            if members.iter().any(|m| m.subscribed.contains(topic)) {
                for p in 0..*n {
                    assert!(
                        seen.contains(&(*topic, p)),
                        "partition {topic}/{p} unassigned"
                    );
                }
            }
        }
    }

    #[test]
    fn given_equal_subscriptions_when_uniform_should_balance_within_one() {
        let members: Vec<_> = ["a", "b", "c"].iter().map(|m| member(m, &[1, 2])).collect();
        let topics = BTreeMap::from([(tid(1), 7), (tid(2), 4)]);
        let result = uniform(&members, &topics);
        check_complete(&members, &topics, &result);
        let counts: Vec<usize> = result.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 11);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
    }

    #[test]
    fn given_a_new_member_when_uniform_should_move_only_what_balance_needs() {
        let topics = BTreeMap::from([(tid(1), 6)]);
        let mut a = member("a", &[1]);
        a.previous = Assignment::from([(tid(1), (0..6).collect())]);
        let b = member("b", &[1]);
        let result = uniform(&[a.clone(), b.clone()], &topics);
        check_complete(&[a, b], &topics, &result);
        // a keeps the first three, b gets the last three
        assert_eq!(result["a"][&tid(1)], (0..3).collect());
        assert_eq!(result["b"][&tid(1)], (3..6).collect());
    }

    #[test]
    fn given_a_balanced_previous_assignment_when_uniform_should_keep_it() {
        let topics = BTreeMap::from([(tid(1), 5), (tid(2), 3)]);
        let mut members: Vec<_> = ["x", "y", "z"].iter().map(|m| member(m, &[1, 2])).collect();
        let first = uniform(&members, &topics);
        // Give the members a scrambled but balanced previous assignment: it must stick.
        members[0].previous = first["z"].clone();
        members[1].previous = first["x"].clone();
        members[2].previous = first["y"].clone();
        let second = uniform(&members, &topics);
        assert_eq!(second["x"], first["z"]);
        assert_eq!(second["y"], first["x"]);
        assert_eq!(second["z"], first["y"]);
    }

    #[test]
    fn given_different_subscriptions_when_uniform_should_give_each_topic_to_its_subscribers() {
        let members = vec![member("a", &[1]), member("b", &[1, 2])];
        let topics = BTreeMap::from([(tid(1), 4), (tid(2), 4)]);
        let result = uniform(&members, &topics);
        check_complete(&members, &topics, &result);
        assert_eq!(count(&result["a"]), 4);
        assert_eq!(count(&result["b"]), 4);
        assert!(!result["b"].contains_key(&tid(1)));
    }

    #[test]
    fn given_the_same_input_when_assigning_should_give_the_same_answer() {
        let members: Vec<_> = ["m3", "m1", "m2"]
            .iter()
            .map(|m| member(m, &[1, 2, 3]))
            .collect();
        let mut reversed = members.clone();
        reversed.reverse();
        let topics = BTreeMap::from([(tid(1), 5), (tid(2), 2), (tid(3), 9)]);
        assert_eq!(uniform(&members, &topics), uniform(&reversed, &topics));
        assert_eq!(range(&members, &topics), range(&reversed, &topics));
    }

    #[test]
    fn given_two_topics_when_range_should_give_contiguous_co_partitioned_ranges() {
        let members = vec![
            member("b", &[1, 2]),
            member("a", &[1, 2]),
            member("c", &[1, 2]),
        ];
        let topics = BTreeMap::from([(tid(1), 7), (tid(2), 7)]);
        let result = range(&members, &topics);
        check_complete(&members, &topics, &result);
        assert_eq!(result["a"][&tid(1)], (0..3).collect());
        assert_eq!(result["b"][&tid(1)], (3..5).collect());
        assert_eq!(result["c"][&tid(1)], (5..7).collect());
        for m in ["a", "b", "c"] {
            assert_eq!(result[m][&tid(1)], result[m][&tid(2)]);
        }
    }

    #[test]
    fn given_static_members_when_range_should_order_by_instance_id() {
        let mut x = member("zzz", &[1]);
        x.instance_id = Some("i-1".into());
        let mut y = member("aaa", &[1]);
        y.instance_id = Some("i-2".into());
        let topics = BTreeMap::from([(tid(1), 2)]);
        let result = range(&[x, y], &topics);
        assert_eq!(result["zzz"][&tid(1)], BTreeSet::from([0]));
        assert_eq!(result["aaa"][&tid(1)], BTreeSet::from([1]));
    }

    #[test]
    fn given_more_members_than_partitions_when_assigning_should_leave_some_empty() {
        let members: Vec<_> = ["a", "b", "c"].iter().map(|m| member(m, &[1])).collect();
        let topics = BTreeMap::from([(tid(1), 2)]);
        for result in [uniform(&members, &topics), range(&members, &topics)] {
            check_complete(&members, &topics, &result);
            assert_eq!(result.values().filter(|a| a.is_empty()).count(), 1);
        }
    }

    #[test]
    fn given_an_unknown_name_when_assigning_should_answer_none() {
        assert!(assign("sticky", &[], &BTreeMap::new()).is_none());
        assert!(assign(UNIFORM, &[], &BTreeMap::new()).is_some());
    }

    fn arb_case() -> impl Strategy<Value = (Vec<MemberSpec>, BTreeMap<Uuid, i32>)> {
        let topics = proptest::collection::btree_map(0u8..6, 1i32..20, 1..5);
        topics.prop_flat_map(|topics| {
            let ids: Vec<u8> = topics.keys().copied().collect();
            let topics: BTreeMap<Uuid, i32> =
                topics.into_iter().map(|(t, n)| (tid(t), n)).collect();
            let member = (
                proptest::sample::subsequence(ids.clone(), 0..=ids.len()),
                proptest::collection::vec((0usize..ids.len(), 0i32..25), 0..10),
            );
            (
                proptest::collection::vec(member, 1..8),
                Just(topics),
                Just(ids),
            )
                .prop_map(|(ms, topics, ids)| {
                    let members = ms
                        .into_iter()
                        .enumerate()
                        .map(|(i, (subs, prev))| MemberSpec {
                            member_id: format!("member-{i}"),
                            instance_id: None,
                            subscribed: subs.iter().map(|t| tid(*t)).collect(),
                            previous: prev.into_iter().fold(Assignment::new(), |mut a, (t, p)| {
                                a.entry(tid(ids[t])).or_default().insert(p);
                                a
                            }),
                        })
                        .collect();
                    (members, topics)
                })
        })
    }

    proptest! {
        // A fixed seed: the same cases on every run; failures are reported, not persisted.
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(848),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn given_any_subscriptions_when_uniform_should_assign_every_partition_once(
            (members, topics) in arb_case()
        ) {
            let result = uniform(&members, &topics);
            check_complete(&members, &topics, &result);
            prop_assert_eq!(&result, &uniform(&members, &topics));
        }

        #[test]
        fn given_any_subscriptions_when_range_should_assign_every_partition_once(
            (members, topics) in arb_case()
        ) {
            let result = range(&members, &topics);
            check_complete(&members, &topics, &result);
        }

        #[test]
        fn given_equal_subscriptions_when_uniform_should_be_balanced_and_sticky(
            (members, topics) in arb_case()
        ) {
            let all: BTreeSet<Uuid> = topics.keys().copied().collect();
            let members: Vec<MemberSpec> = members
                .into_iter()
                .map(|m| MemberSpec { subscribed: all.clone(), ..m })
                .collect();
            let result = uniform(&members, &topics);
            check_complete(&members, &topics, &result);
            let counts: Vec<usize> = result.values().map(count).collect();
            prop_assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
            // Feeding the answer back as the previous assignment changes nothing.
            let again: Vec<MemberSpec> = members
                .iter()
                .map(|m| MemberSpec { previous: result[&m.member_id].clone(), ..m.clone() })
                .collect();
            prop_assert_eq!(uniform(&again, &topics), result);
        }
    }
}
