//! `runnel group list|describe|reset-offsets|delete`.
//!
//! Classic groups are read with librdkafka (ListGroups + DescribeGroups); KIP-848 consumer
//! groups, which DescribeGroups does not describe, with our own ConsumerGroupDescribe.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use clap::Subcommand;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

use crate::client::{
    code_sentence, error_code, kafka_error, list_offsets, topic_partitions, wait, watermarks,
    CliError, CliResult, ConnArgs, Format, Quiet,
};
use crate::output::{opt, print, print_json, Table};
use crate::{timefmt, wire};

#[derive(clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: GroupCmd,
}

#[derive(Subcommand)]
enum GroupCmd {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's members and assignments, and per partition the committed offset, the log
    /// end offset and the lag.
    Describe { group: String },
    /// Move a group's committed offsets. Prints the plan; changes nothing without --execute.
    /// The group must have no active members.
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(false)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
    #[command(group(clap::ArgGroup::new("scope").required(true).multiple(false)
        .args(["topics", "all_topics"])))]
    ResetOffsets {
        group: String,
        /// A topic, or TOPIC:P,P,... for some of its partitions. Repeatable.
        #[arg(short = 't', long = "topic", value_name = "TOPIC[:PARTITIONS]")]
        topics: Vec<String>,
        /// Every topic the group has committed offsets for.
        #[arg(long)]
        all_topics: bool,
        /// To the log start offset.
        #[arg(long)]
        to_earliest: bool,
        /// To the log end offset.
        #[arg(long)]
        to_latest: bool,
        /// To this offset (clamped to the log).
        #[arg(long, value_name = "N")]
        to_offset: Option<i64>,
        /// To the first offset at or after this time: RFC 3339, a local date and time
        /// (2024-05-01T10:00:00), epoch ms or -DURATION.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        to_datetime: Option<String>,
        /// Move the committed offset by N (negative: back), clamped to the log.
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        shift_by: Option<i64>,
        /// Apply the plan (default: a dry run that only prints it).
        #[arg(long, conflicts_with = "dry_run")]
        execute: bool,
        /// Only print the plan (the default).
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete groups that have no active members, with their committed offsets.
    Delete {
        #[arg(required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
}

pub fn run(args: GroupArgs) -> CliResult<()> {
    let conn = &args.conn;
    match args.cmd {
        GroupCmd::List => list(conn),
        GroupCmd::Describe { group } => describe(conn, &group),
        GroupCmd::ResetOffsets {
            group,
            topics,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            shift_by,
            execute,
            dry_run: _,
        } => {
            let target = if to_earliest {
                Target::Earliest
            } else if to_latest {
                Target::Latest
            } else if let Some(n) = to_offset {
                Target::Offset(n)
            } else if let Some(t) = to_datetime {
                Target::Time(
                    timefmt::parse_time_ms(&t, timefmt::now_ms()).map_err(CliError::usage)?,
                )
            } else if let Some(n) = shift_by {
                Target::Shift(n)
            } else {
                return Err(CliError::usage("give one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"));
            };
            reset_offsets(conn, &group, &topics, all_topics, target, execute)
        }
        GroupCmd::Delete { groups } => delete(conn, &groups),
    }
}

/// What a group looks like, whichever protocol it uses.
struct GroupView {
    state: String,
    /// `classic` or `consumer` (KIP-848).
    group_type: String,
    protocol_type: String,
    /// The assignor (classic: the protocol chosen; consumer: the server-side assignor).
    protocol: String,
    members: Vec<MemberView>,
}

struct MemberView {
    member_id: String,
    client_id: String,
    host: String,
    assignment: Vec<(String, i32)>,
}

fn is_dead(state: &str) -> bool {
    state.is_empty() || state.eq_ignore_ascii_case("dead")
}

/// The group as the broker sees it; `None` if it does not exist (no members, no offsets is
/// decided by the caller).
fn view(
    conn: &ConnArgs,
    consumer: &BaseConsumer<Quiet>,
    group: &str,
) -> CliResult<Option<GroupView>> {
    // librdkafka lists groups only once it has metadata, and otherwise waits for a broker
    // state change (up to a second): fetch it first.
    conn.metadata(consumer.client(), None)?;
    let list = consumer
        .client()
        .fetch_group_list(Some(group), conn.timeout)
        .map_err(|e| conn.unreachable_or(e, &format!("cannot describe group '{group}'")))?;
    let classic = list.groups().iter().find(|g| g.name() == group);
    if let Some(g) = classic {
        if !is_dead(g.state()) {
            let members = g
                .members()
                .iter()
                .map(|m| MemberView {
                    member_id: m.id().to_string(),
                    client_id: m.client_id().to_string(),
                    host: m.client_host().to_string(),
                    assignment: if g.protocol_type() == "consumer" {
                        m.assignment().map(parse_assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            return Ok(Some(GroupView {
                state: g.state().to_string(),
                group_type: "classic".into(),
                protocol_type: g.protocol_type().to_string(),
                protocol: g.protocol().to_string(),
                members,
            }));
        }
    }
    // Listed but "Dead" to DescribeGroups: a KIP-848 group (which DescribeGroups does not
    // describe), or a group that is gone. ConsumerGroupDescribe tells.
    if classic.is_some() {
        if let Ok(d) = wire::describe_consumer_group(&conn.brokers, group, conn.timeout) {
            if d.error_code == 0 {
                let members = d
                    .members
                    .iter()
                    .map(|m| MemberView {
                        member_id: m.member_id.to_string(),
                        client_id: m.client_id.to_string(),
                        host: m.client_host.to_string(),
                        assignment: m
                            .assignment
                            .topic_partitions
                            .iter()
                            .flat_map(|tp| {
                                let t = tp.topic_name.0.to_string();
                                tp.partitions.iter().map(move |p| (t.clone(), *p))
                            })
                            .collect(),
                    })
                    .collect();
                return Ok(Some(GroupView {
                    state: d.group_state.to_string(),
                    group_type: "consumer".into(),
                    protocol_type: "consumer".into(),
                    protocol: d.assignor_name.to_string(),
                    members,
                }));
            }
        }
    }
    Ok(None)
}

/// The topic-partitions of a classic consumer-protocol assignment.
fn parse_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .flat_map(|tp| {
                let t = tp.topic.0.to_string();
                tp.partitions.iter().map(move |p| (t.clone(), *p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Committed offsets of `group` for every partition of every (non-internal) topic, plus
/// `extra` partitions: only those with a committed offset are returned.
fn committed(
    conn: &ConnArgs,
    consumer: &BaseConsumer<Quiet>,
    group: &str,
    extra: &[(String, i32)],
) -> CliResult<BTreeMap<(String, i32), i64>> {
    let md = conn.metadata(consumer.client(), None)?;
    let mut tps: BTreeSet<(String, i32)> = extra.iter().cloned().collect();
    for t in md.topics() {
        if t.name().starts_with("__") || t.error().is_some() {
            continue;
        }
        for p in t.partitions() {
            tps.insert((t.name().to_string(), p.id()));
        }
    }
    fetch_committed(conn, consumer, group, &tps.into_iter().collect::<Vec<_>>())
}

fn fetch_committed(
    conn: &ConnArgs,
    consumer: &BaseConsumer<Quiet>,
    group: &str,
    tps: &[(String, i32)],
) -> CliResult<BTreeMap<(String, i32), i64>> {
    if tps.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p) in tps {
        tpl.add_partition(t, *p);
    }
    let res = consumer.committed_offsets(tpl, conn.timeout).map_err(|e| {
        kafka_error(
            &format!("cannot fetch committed offsets of group '{group}'"),
            &e,
        )
    })?;
    Ok(res
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

fn group_consumer(conn: &ConnArgs, group: &str) -> CliResult<BaseConsumer<Quiet>> {
    conn.consumer(Some(group), &[])
}

fn list(conn: &ConnArgs) -> CliResult<()> {
    let consumer = conn.consumer(None, &[])?;
    conn.metadata(consumer.client(), None)?;
    let list = consumer
        .client()
        .fetch_group_list(None, conn.timeout)
        .map_err(|e| conn.unreachable_or(e, "cannot list groups"))?;
    let mut rows: Vec<(String, String, String, String, usize)> = Vec::new();
    for g in list.groups() {
        let (state, gtype, ptype, members) = if is_dead(g.state()) {
            match wire::describe_consumer_group(&conn.brokers, g.name(), conn.timeout) {
                Ok(d) if d.error_code == 0 => (
                    d.group_state.to_string(),
                    "consumer".to_string(),
                    "consumer".to_string(),
                    d.members.len(),
                ),
                _ => continue,
            }
        } else {
            (
                g.state().to_string(),
                "classic".to_string(),
                g.protocol_type().to_string(),
                g.members().len(),
            )
        };
        rows.push((g.name().to_string(), state, gtype, ptype, members));
    }
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    match conn.output {
        Format::Json => print_json(&json!(rows
            .iter()
            .map(|(n, s, t, p, m)| json!({
                "group": n, "state": s, "type": t, "protocol_type": p, "members": m
            }))
            .collect::<Vec<_>>())),
        Format::Text => {
            let mut t = Table::new(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE", "MEMBERS"]);
            for (n, s, ty, p, m) in &rows {
                t.row(vec![
                    n.clone(),
                    s.clone(),
                    ty.clone(),
                    p.clone(),
                    m.to_string(),
                ]);
            }
            print(&t.render())
        }
    }
}

fn not_found(group: &str) -> CliError {
    CliError::new(format!(
        "group '{group}' does not exist (GROUP_ID_NOT_FOUND)"
    ))
}

fn describe(conn: &ConnArgs, group: &str) -> CliResult<()> {
    let consumer = group_consumer(conn, group)?;
    let view = view(conn, &consumer, group)?;
    let assigned: Vec<(String, i32)> = view
        .iter()
        .flat_map(|v| v.members.iter().flat_map(|m| m.assignment.iter().cloned()))
        .collect();
    let committed = committed(conn, &consumer, group, &assigned)?;
    let view = match view {
        Some(v) => v,
        None if committed.is_empty() => return Err(not_found(group)),
        // Offsets but no live group: Kafka calls such a group Empty.
        None => GroupView {
            state: "Empty".into(),
            group_type: "classic".into(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            members: Vec::new(),
        },
    };
    let mut owner: BTreeMap<(String, i32), &MemberView> = BTreeMap::new();
    for m in &view.members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), m);
        }
    }
    let tps: Vec<(String, i32)> = committed
        .keys()
        .chain(owner.keys())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ends = list_offsets(&consumer, &tps, Offset::End, conn.timeout)?;
    struct Row {
        topic: String,
        partition: i32,
        committed: Option<i64>,
        end: Option<i64>,
        lag: Option<i64>,
        member: Option<usize>,
    }
    let index: BTreeMap<&str, usize> = view
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let rows: Vec<Row> = tps
        .iter()
        .map(|tp| {
            let c = committed.get(tp).copied();
            let e = ends.get(tp).copied().flatten();
            Row {
                topic: tp.0.clone(),
                partition: tp.1,
                committed: c,
                end: e,
                // Lag is the log end offset minus the committed offset (never below 0).
                lag: c.zip(e).map(|(c, e)| (e - c).max(0)),
                member: owner
                    .get(tp)
                    .and_then(|m| index.get(m.member_id.as_str()).copied()),
            }
        })
        .collect();
    let total_lag: i64 = rows.iter().filter_map(|r| r.lag).sum();
    match conn.output {
        Format::Json => {
            let members: Vec<_> = view
                .members
                .iter()
                .map(|m| {
                    json!({
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "host": m.host,
                        "assignments": m.assignment.iter()
                            .map(|(t, p)| json!({"topic": t, "partition": p}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            let partitions: Vec<_> = rows
                .iter()
                .map(|r| {
                    let m = r.member.map(|i| &view.members[i]);
                    json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "committed_offset": r.committed,
                        "log_end_offset": r.end,
                        "lag": r.lag,
                        "member_id": m.map(|m| m.member_id.clone()),
                        "client_id": m.map(|m| m.client_id.clone()),
                        "host": m.map(|m| m.host.clone()),
                    })
                })
                .collect();
            print_json(&json!({
                "group": group,
                "state": view.state,
                "type": view.group_type,
                "protocol_type": view.protocol_type,
                "protocol": view.protocol,
                "members": members,
                "partitions": partitions,
                "total_lag": total_lag,
            }))
        }
        Format::Text => {
            let mut out = String::new();
            let mut t = Table::new(&["GROUP", "STATE", "TYPE", "ASSIGNOR", "MEMBERS", "TOTAL-LAG"]);
            t.row(vec![
                group.to_string(),
                view.state.clone(),
                view.group_type.clone(),
                if view.protocol.is_empty() {
                    "-".into()
                } else {
                    view.protocol.clone()
                },
                view.members.len().to_string(),
                total_lag.to_string(),
            ]);
            out.push_str(&t.render());
            out.push('\n');
            if rows.is_empty() {
                out.push_str("(no committed offsets and no assigned partitions)\n");
            } else {
                let mut t = Table::new(&[
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "MEMBER-ID",
                    "CLIENT-ID",
                    "HOST",
                ]);
                for r in &rows {
                    let m = r.member.map(|i| &view.members[i]);
                    t.row(vec![
                        r.topic.clone(),
                        r.partition.to_string(),
                        opt(r.committed),
                        opt(r.end),
                        opt(r.lag),
                        opt(m.map(|m| m.member_id.clone())),
                        opt(m.map(|m| m.client_id.clone())),
                        opt(m.map(|m| m.host.clone())),
                    ]);
                }
                out.push_str(&t.render());
            }
            if !view.members.is_empty() {
                out.push('\n');
                let mut t = Table::new(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
                for m in &view.members {
                    t.row(vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.host.clone(),
                        format_assignment(&m.assignment),
                    ]);
                }
                out.push_str(&t.render());
            }
            print(&out)
        }
    }
}

/// `orders[0,1] payments[2]`.
fn format_assignment(a: &[(String, i32)]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in a {
        by_topic.entry(t).or_default().push(*p);
    }
    if by_topic.is_empty() {
        return "-".into();
    }
    by_topic
        .iter_mut()
        .map(|(t, ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}[{}]", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
    Shift(i64),
}

fn reset_offsets(
    conn: &ConnArgs,
    group: &str,
    topics: &[String],
    all_topics: bool,
    target: Target,
    execute: bool,
) -> CliResult<()> {
    let consumer = group_consumer(conn, group)?;
    if let Some(v) = view(conn, &consumer, group)? {
        let inactive =
            v.members.is_empty() && (v.state.eq_ignore_ascii_case("empty") || is_dead(&v.state));
        if !inactive {
            return Err(CliError::new(format!(
                "group '{group}' is active ({}, {} member(s)): offsets can only be reset while \
                 it has no members; stop its consumers first",
                v.state,
                v.members.len()
            )));
        }
    }
    // The partitions to reset.
    let tps: Vec<(String, i32)> = if all_topics {
        let c = committed(conn, &consumer, group, &[])?;
        if c.is_empty() {
            return Err(CliError::new(format!(
                "group '{group}' has no committed offsets; name the topics with --topic"
            )));
        }
        c.into_keys().collect()
    } else {
        let md = conn.metadata(consumer.client(), None)?;
        let mut v = BTreeSet::new();
        for spec in topics {
            let (topic, parts) = match spec.split_once(':') {
                Some((t, ps)) => {
                    let ps: Result<Vec<i32>, _> =
                        ps.split(',').map(|p| p.trim().parse::<i32>()).collect();
                    let ps = ps.map_err(|_| {
                        CliError::usage(format!(
                            "--topic '{spec}': partitions must be numbers, e.g. orders:0,1"
                        ))
                    })?;
                    (t, Some(ps))
                }
                None => (spec.as_str(), None),
            };
            let all = topic_partitions(&md, topic)?;
            for p in parts.unwrap_or_else(|| all.clone()) {
                if !all.contains(&p) {
                    return Err(CliError::new(format!(
                        "topic '{topic}' has no partition {p} (UNKNOWN_TOPIC_OR_PARTITION)"
                    )));
                }
                v.insert((topic.to_string(), p));
            }
        }
        v.into_iter().collect()
    };
    let current = fetch_committed(conn, &consumer, group, &tps)?;
    let marks = watermarks(&consumer, &tps, conn.timeout)?;
    let at_time = match target {
        Target::Time(ms) => Some(list_offsets(
            &consumer,
            &tps,
            Offset::Offset(ms),
            conn.timeout,
        )?),
        _ => None,
    };
    let mut plan: Vec<((String, i32), Option<i64>, i64)> = Vec::new();
    for tp in &tps {
        let (start, end) = marks[tp];
        let cur = current.get(tp).copied();
        let new = match target {
            Target::Earliest => start,
            Target::Latest => end,
            Target::Offset(n) => n.clamp(start, end),
            Target::Time(_) => at_time
                .as_ref()
                .and_then(|m| m.get(tp).copied().flatten())
                .unwrap_or(end),
            Target::Shift(n) => match cur {
                Some(c) => c.saturating_add(n).clamp(start, end),
                None => {
                    return Err(CliError::new(format!(
                        "cannot shift the offset of {}[{}]: group '{group}' has no committed \
                         offset there",
                        tp.0, tp.1
                    )))
                }
            },
        };
        plan.push((tp.clone(), cur, new));
    }
    if execute {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), _, new) in &plan {
            tpl.add_partition_offset(t, *p, Offset::Offset(*new))
                .map_err(|e| kafka_error("cannot build the commit", &e))?;
        }
        consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
            let what = format!("cannot commit offsets of group '{group}'");
            match error_code(&e) {
                Some(
                    code @ (RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::RebalanceInProgress),
                ) => CliError::new(format!(
                    "{what}: the group became active; stop its consumers first ({})",
                    crate::client::code_name(code)
                )),
                _ => kafka_error(&what, &e),
            }
        })?;
    }
    match conn.output {
        Format::Json => print_json(&json!({
            "group": group,
            "executed": execute,
            "partitions": plan.iter().map(|((t, p), cur, new)| json!({
                "topic": t,
                "partition": p,
                "current_offset": cur,
                "new_offset": new,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            let mut t = Table::new(&[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "NEW-OFFSET",
            ]);
            for ((topic, p), cur, new) in &plan {
                t.row(vec![
                    group.to_string(),
                    topic.clone(),
                    p.to_string(),
                    opt(*cur),
                    new.to_string(),
                ]);
            }
            print(&t.render())?;
            if !execute {
                eprintln!("dry run: nothing was changed; add --execute to apply");
            }
            Ok(())
        }
    }
}

fn delete(conn: &ConnArgs, groups: &[String]) -> CliResult<()> {
    let admin = conn.admin()?;
    let names: Vec<&str> = groups.iter().map(|s| s.as_str()).collect();
    let results = wait(admin.delete_groups(&names, &conn.admin_options()))
        .map_err(|e| conn.unreachable_or(e, "cannot delete groups"))?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(g) => deleted.push(g),
            Err((g, RDKafkaErrorCode::GroupIdNotFound)) => errors.push(not_found(&g).message),
            Err((g, RDKafkaErrorCode::NonEmptyGroup)) => errors.push(format!(
                "group '{g}' has active members; stop its consumers first (NON_EMPTY_GROUP)"
            )),
            Err((g, code)) => {
                errors.push(code_sentence(&format!("cannot delete group '{g}'"), code))
            }
        }
    }
    match conn.output {
        Format::Json => print_json(&json!({ "deleted": deleted }))?,
        Format::Text => {
            let mut s = String::new();
            for g in &deleted {
                s.push_str(&format!("deleted group '{g}'\n"));
            }
            print(&s)?;
        }
    }
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    for e in errors {
        eprintln!("runnel: {e}");
    }
    Err(CliError::new(last))
}
