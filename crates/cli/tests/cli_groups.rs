//! `runnel group ...` against a real broker: lag, offset resets, deletion, active groups.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, terminate, Broker};
use std::io::{BufRead, BufReader};
use std::process::Child;

/// Waits (bounded) until a background consumer has printed `n` records.
fn wait_printed(child: &mut Child, n: usize) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    for i in 0..n {
        rx.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("record {i} of {n} not printed in time"));
    }
}
use serde_json::Value;

fn produce(b: &Broker, topic: &str, partition: i32, n: usize) {
    let input: String = (0..n).map(|i| format!("r{i}\n")).collect();
    let out = b.run_stdin(&["produce", topic, "-p", &partition.to_string()], &input);
    assert_eq!(out.code, 0, "{out:?}");
}

/// (committed, log end, lag) of one partition.
type LagRow = (Option<i64>, i64, Option<i64>);

/// (topic, partition) → (committed, log end, lag) from `group describe -o json`.
fn lag_table(d: &Value) -> BTreeMap<(String, i64), LagRow> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (
                    p["topic"].as_str().unwrap().to_string(),
                    p["partition"].as_i64().unwrap(),
                ),
                (
                    p["committed_offset"].as_i64(),
                    p["log_end_offset"].as_i64().unwrap(),
                    p["lag"].as_i64(),
                ),
            )
        })
        .collect()
}

fn committed(b: &Broker, group: &str) -> BTreeMap<(String, i64), i64> {
    lag_table(&b.json(&["group", "describe", group]))
        .into_iter()
        .filter_map(|(k, (c, _, _))| c.map(|c| (k, c)))
        .collect()
}

fn key(t: &str, p: i64) -> (String, i64) {
    (t.to_string(), p)
}

#[test]
fn given_a_group_that_consumed_should_describe_lag_as_log_end_minus_committed() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    produce(&b, "t", 0, 6);
    produce(&b, "t", 1, 4);
    let out = b.ok(&["consume", "t", "-g", "g", "--from-beginning", "-n", "7"]);
    assert_eq!(out.lines().count(), 7);

    let d = b.json(&["group", "describe", "g"]);
    assert_eq!(d["group"], "g");
    assert_eq!(d["state"], "Empty");
    assert_eq!(d["type"], "classic");
    assert_eq!(d["members"], serde_json::json!([]));
    let table = lag_table(&d);
    let mut sum_committed = 0;
    let mut sum_lag = 0;
    for ((t, p), (c, end, lag)) in &table {
        let c = c.unwrap_or_else(|| panic!("{t}[{p}] has a committed offset: {d}"));
        let lag = lag.expect("a numeric lag");
        assert_eq!(lag, end - c, "{t}[{p}]");
        assert_eq!(*end, if *p == 0 { 6 } else { 4 });
        sum_committed += c;
        sum_lag += lag;
    }
    // Every record printed was committed, and only those.
    assert_eq!(sum_committed, 7);
    assert_eq!(sum_lag, 3);
    assert_eq!(d["total_lag"], 3);

    let text = b.ok(&["group", "describe", "g"]);
    assert!(
        text.contains("CURRENT-OFFSET") && text.contains("LAG"),
        "{text}"
    );

    let list = b.json(&["group", "list"]);
    let g = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "g")
        .expect("listed");
    assert_eq!(g["state"], "Empty");
    assert_eq!(g["members"], 0);

    let out = b.run(&["group", "describe", "nope"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "runnel: group 'nope' does not exist (GROUP_ID_NOT_FOUND)"
    );
}

#[test]
fn given_reset_offsets_should_only_plan_unless_executed() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    b.ok(&["topic", "create", "u", "-p", "1"]);
    produce(&b, "t", 0, 10);
    produce(&b, "t", 1, 10);
    produce(&b, "u", 0, 5);
    b.ok(&["consume", "t", "-g", "g", "--from-beginning", "-n", "20"]);
    let all_end = committed(&b, "g");
    assert_eq!(
        all_end,
        BTreeMap::from([(key("t", 0), 10), (key("t", 1), 10)])
    );

    // Dry run (the default, and --dry-run): prints the plan, changes nothing.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec![
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
        ];
        args.extend(extra);
        let plan = b.json(&args);
        assert_eq!(plan["executed"], false);
        let news: Vec<i64> = plan["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["new_offset"].as_i64().unwrap())
            .collect();
        assert_eq!(news, [0, 0]);
        assert_eq!(committed(&b, "g"), all_end);
    }
    let out = b.run(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "t",
        "--to-earliest",
    ]);
    assert!(out.stderr.contains("dry run"), "{out:?}");
    assert!(out.stdout.contains("NEW-OFFSET"), "{out:?}");

    let exec = |args: &[&str]| {
        let mut a = vec!["group", "reset-offsets", "g"];
        a.extend(args);
        a.push("--execute");
        let r = b.json(&a);
        assert_eq!(r["executed"], true, "{r}");
        committed(&b, "g")
    };
    let c = exec(&["--topic", "t", "--to-earliest"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 0), (key("t", 1), 0)]));
    let c = exec(&["--topic", "t:1", "--to-offset", "4"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 0), (key("t", 1), 4)]));
    let c = exec(&["--all-topics", "--shift-by", "3"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 3), (key("t", 1), 7)]));
    let c = exec(&["--all-topics", "--shift-by", "-5"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 0), (key("t", 1), 2)]));
    let c = exec(&["--topic", "t:0", "--to-latest"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 10), (key("t", 1), 2)]));
    // --to-offset past the end is clamped to the log end.
    let c = exec(&["--topic", "t:1", "--to-offset", "1000"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 10), (key("t", 1), 10)]));
    // Every record is newer than an hour ago: to-datetime lands on the first offset.
    let c = exec(&["--topic", "t", "--to-datetime", "-1h"]);
    assert_eq!(c, BTreeMap::from([(key("t", 0), 0), (key("t", 1), 0)]));
    // ... and past every record it lands on the log end; a new topic joins the group's offsets.
    let c = exec(&[
        "--topic",
        "t",
        "--topic",
        "u",
        "--to-datetime",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!(
        c,
        BTreeMap::from([(key("t", 0), 10), (key("t", 1), 10), (key("u", 0), 5)])
    );
    // Lag follows the committed offsets.
    exec(&["--topic", "u", "--to-offset", "1"]);
    let d = b.json(&["group", "describe", "g"]);
    assert_eq!(lag_table(&d)[&key("u", 0)], (Some(1), 5, Some(4)));

    // Errors.
    let out = b.run(&["group", "reset-offsets", "g", "--topic", "t"]);
    assert_eq!(out.code, 2, "a target is required: {out:?}");
    let out = b.run(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "missing",
        "--to-latest",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("(UNKNOWN_TOPIC_OR_PARTITION)"),
        "{out:?}"
    );
    let out = b.run(&[
        "group",
        "reset-offsets",
        "fresh",
        "--topic",
        "t",
        "--shift-by",
        "1",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no committed offset"), "{out:?}");
}

#[test]
fn given_an_active_group_should_show_members_and_refuse_reset_and_delete() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    produce(&b, "t", 0, 3);
    let mut consumer = b.spawn_cli(&["consume", "t", "-g", "live", "--from-beginning"]);
    let d = eventually(
        "a stable group with one member",
        Duration::from_secs(20),
        || {
            let out = b.run(&["group", "describe", "live", "-o", "json"]);
            let d: Value = serde_json::from_str(&out.stdout).ok()?;
            (d["state"] == "Stable" && d["members"].as_array()?.len() == 1).then_some(d)
        },
    );
    let member = &d["members"][0];
    assert_eq!(member["client_id"], "runnel-cli");
    let mut assigned: Vec<i64> = member["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["topic"], "t");
            a["partition"].as_i64().unwrap()
        })
        .collect();
    assigned.sort_unstable();
    assert_eq!(assigned, [0, 1]);
    // Every assigned partition is listed with its owner.
    for p in d["partitions"].as_array().unwrap() {
        assert_eq!(p["member_id"], member["member_id"]);
    }

    let out = b.run(&[
        "group",
        "reset-offsets",
        "live",
        "--all-topics",
        "--to-earliest",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("group 'live' is active (Stable"),
        "{out:?}"
    );
    let out = b.run(&["group", "delete", "live"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(NON_EMPTY_GROUP)"), "{out:?}");
    let list = b.json(&["group", "list"]);
    assert_eq!(list[0]["group"], "live");
    assert_eq!(list[0]["state"], "Stable");
    assert_eq!(list[0]["members"], 1);

    // SIGTERM: the consumer commits what it printed, leaves, and exits 0.
    wait_printed(&mut consumer, 3);
    assert_eq!(terminate(&mut consumer, Duration::from_secs(20)), 0);
    let d = b.json(&["group", "describe", "live"]);
    assert_eq!(d["state"], "Empty");
    assert_eq!(lag_table(&d)[&key("t", 0)], (Some(3), 3, Some(0)));

    let out = b.json(&["group", "delete", "live"]);
    assert_eq!(out["deleted"], serde_json::json!(["live"]));
    let out = b.run(&["group", "delete", "live"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "runnel: group 'live' does not exist (GROUP_ID_NOT_FOUND)"
    );
    assert_eq!(b.json(&["group", "list"]), serde_json::json!([]));
}

/// A KIP-848 group (librdkafka with group.protocol=consumer), which DescribeGroups does not
/// describe: the CLI reads it with ConsumerGroupDescribe.
#[test]
fn given_a_kip848_group_should_describe_it_too() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    produce(&b, "t", 1, 2);
    let mut consumer = b.spawn_cli(&[
        "consume",
        "t",
        "-g",
        "modern",
        "--from-beginning",
        "-X",
        "group.protocol=consumer",
    ]);
    let d = eventually(
        "a KIP-848 group with its assignment",
        Duration::from_secs(20),
        || {
            let out = b.run(&["group", "describe", "modern", "-o", "json"]);
            let d: Value = serde_json::from_str(&out.stdout).ok()?;
            let m = d["members"].as_array()?;
            (m.len() == 1 && m[0]["assignments"].as_array()?.len() == 2).then_some(d)
        },
    );
    assert_eq!(d["type"], "consumer");
    assert_eq!(d["state"], "Stable");
    let list = b.json(&["group", "list"]);
    assert_eq!(list[0]["type"], "consumer");
    wait_printed(&mut consumer, 2);
    assert_eq!(terminate(&mut consumer, Duration::from_secs(20)), 0);
    let d = b.json(&["group", "describe", "modern"]);
    assert_eq!(lag_table(&d)[&key("t", 1)], (Some(2), 2, Some(0)));
}
