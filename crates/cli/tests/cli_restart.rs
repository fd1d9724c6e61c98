//! `topic`, `produce`, `consume` and `group describe` across a broker restart (SIGTERM, then a
//! new process on the same data directory).

mod common;

use common::Broker;
use serde_json::{json, Value};

fn partitions_view(d: &Value) -> Vec<(i64, Option<i64>, i64, Option<i64>)> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["committed_offset"].as_i64(),
                p["log_end_offset"].as_i64().unwrap(),
                p["lag"].as_i64(),
            )
        })
        .collect()
}

/// Records of different partitions interleave in any order.
fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

#[test]
fn given_a_restart_should_keep_topics_records_and_group_offsets() {
    let mut b = Broker::start();
    b.ok(&[
        "topic",
        "create",
        "events",
        "-p",
        "2",
        "-c",
        "retention.ms=86400000",
    ]);
    b.ok(&["topic", "create", "other"]);
    let input: String = (0..6).map(|i| format!("k{i}=v{i}\n")).collect();
    let out = b.run_stdin(
        &["produce", "events", "-p", "0", "-k", "=", "-H", "h=1"],
        &input,
    );
    assert_eq!(out.code, 0, "{out:?}");
    b.run_stdin(&["produce", "events", "-p", "1"], "x\ny\n");
    b.ok(&[
        "consume",
        "events",
        "-g",
        "g",
        "--from-beginning",
        "-n",
        "8",
    ]);
    b.ok(&[
        "group",
        "reset-offsets",
        "g",
        "--topic",
        "events:0",
        "--to-offset",
        "2",
        "--execute",
    ]);

    let topics_before = b.json(&["topic", "list"]);
    let describe_before = b.json(&["topic", "describe", "events"]);
    let records_before = b.ok(&["consume", "events", "--from-beginning", "-e", "-o", "json"]);
    let group_before = b.json(&["group", "describe", "g"]);
    assert_eq!(
        partitions_view(&group_before),
        [(0, Some(2), 6, Some(4)), (1, Some(2), 2, Some(0))]
    );

    b.restart();

    assert_eq!(b.json(&["topic", "list"]), topics_before);
    assert_eq!(b.json(&["topic", "describe", "events"]), describe_before);
    assert_eq!(
        sorted_lines(&b.ok(&["consume", "events", "--from-beginning", "-e", "-o", "json"])),
        sorted_lines(&records_before)
    );
    let first: Value = records_before
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["partition"] == 0 && r["offset"] == 0)
        .unwrap();
    assert_eq!(first["key"], "k0");
    assert_eq!(first["headers"], json!([{"key": "h", "value": "1"}]));
    let group_after = b.json(&["group", "describe", "g"]);
    assert_eq!(
        partitions_view(&group_after),
        partitions_view(&group_before)
    );
    assert_eq!(group_after["state"], "Empty");

    // The group resumes from its committed offsets, and new records append after the old.
    b.run_stdin(&["produce", "events", "-p", "1"], "z\n");
    let resumed = b.ok(&["consume", "events", "-g", "g", "-n", "5"]);
    let mut got: Vec<&str> = resumed.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["v2", "v3", "v4", "v5", "z"]);
    let d = b.json(&["group", "describe", "g"]);
    assert_eq!(
        partitions_view(&d),
        [(0, Some(6), 6, Some(0)), (1, Some(3), 3, Some(0))]
    );
    b.ok(&["topic", "delete", "other"]);

    b.restart();
    let names: Vec<Value> = b
        .json(&["topic", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("events")]);
    assert_eq!(
        partitions_view(&b.json(&["group", "describe", "g"])),
        partitions_view(&d)
    );
}
