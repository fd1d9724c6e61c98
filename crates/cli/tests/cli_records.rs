//! `runnel produce` and `runnel consume` against a real broker.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{eventually, json_lines, terminate, Broker};
use serde_json::{json, Value};

#[test]
fn given_lines_with_keys_and_headers_should_consume_them_plain_and_as_json() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "1"]);
    let out = b.run_stdin(
        &["produce", "t", "-k", ":", "-H", "source=test", "-H", "n=1"],
        "k1:v1\nk2:v:2\nno key here\n\nk1:last\n",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "produced 5 records to topic 't'");

    let plain = b.ok(&["consume", "t", "--from-beginning", "-n", "5"]);
    assert_eq!(plain, "v1\nv:2\nno key here\n\nlast\n");

    let recs = json_lines(&b.ok(&["consume", "t", "--from-beginning", "-n", "5", "-o", "json"]));
    assert_eq!(recs.len(), 5);
    let keys: Vec<&Value> = recs.iter().map(|r| &r["key"]).collect();
    assert_eq!(
        keys,
        [
            &json!("k1"),
            &json!("k2"),
            &Value::Null,
            &Value::Null,
            &json!("k1")
        ]
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["topic"], "t");
        assert_eq!(r["partition"], 0);
        assert_eq!(r["offset"], i as i64);
        assert!(r["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "{r}");
        assert_eq!(
            r["headers"],
            json!([{"key": "source", "value": "test"}, {"key": "n", "value": "1"}])
        );
    }
    assert_eq!(recs[1]["value"], "v:2");

    // --count stops early; --offset starts there (and is clamped to the log).
    assert_eq!(
        b.ok(&["consume", "t", "--from-beginning", "-n", "2"]),
        "v1\nv:2\n"
    );
    let from3 = json_lines(&b.ok(&["consume", "t", "--offset", "3", "-e", "-o", "json"]));
    assert_eq!(
        from3
            .iter()
            .map(|r| r["offset"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(b.ok(&["consume", "t", "--offset", "99", "-e"]), "");
    // --from-time: everything is after an hour ago, nothing after tomorrow.
    assert_eq!(
        b.ok(&["consume", "t", "--from-time", "-1h", "-e"])
            .lines()
            .count(),
        5
    );
    assert_eq!(
        b.ok(&["consume", "t", "--from-time", "2999-01-01", "-e"]),
        ""
    );
}

#[test]
fn given_a_file_partitions_and_every_compression_should_round_trip() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "f1\nf2\nf3\n").unwrap();
    let r = b.json(&["produce", "t", "--file", file.to_str().unwrap(), "-p", "2"]);
    assert_eq!(r["records"], 3);
    assert_eq!(r["partitions"], json!([{"partition": 2, "records": 3}]));
    let mut expected = vec!["f1".to_string(), "f2".into(), "f3".into()];
    for (codec, acks) in [
        ("none", "1"),
        ("gzip", "all"),
        ("snappy", "-1"),
        ("lz4", "1"),
        ("zstd", "0"),
    ] {
        let input = format!("{codec}-a\n{codec}-b\n");
        let out = b.run_stdin(
            &[
                "produce",
                "t",
                "-p",
                "0",
                "--compression",
                codec,
                "--acks",
                acks,
            ],
            &input,
        );
        assert_eq!(out.code, 0, "{codec}: {out:?}");
        expected.push(format!("{codec}-a"));
        expected.push(format!("{codec}-b"));
    }
    // Partition 0 holds the compressed batches in order; partition 2 the file.
    let p0 = b.ok(&["consume", "t", "-p", "0", "--from-beginning", "-e"]);
    assert_eq!(p0.lines().collect::<Vec<_>>(), expected[3..]);
    let p2 = b.ok(&["consume", "t", "-p", "2", "--from-beginning", "-e"]);
    assert_eq!(p2.lines().collect::<Vec<_>>(), expected[..3]);
    let all = b.ok(&["consume", "t", "--from-beginning", "-n", "13"]);
    let mut got: Vec<&str> = all.lines().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = expected.iter().map(|s| s.as_str()).collect();
    want.sort_unstable();
    assert_eq!(got, want);

    let out = b.run(&["consume", "t", "-p", "7", "-n", "1"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("no partition 7 (UNKNOWN_TOPIC_OR_PARTITION)"),
        "{out:?}"
    );
    let out = b.run_stdin(&["produce", "t", "--acks", "2"], "x\n");
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn given_follow_mode_should_print_new_records_until_sigterm() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    b.run_stdin(&["produce", "t"], "old\n");
    // Default start: the end of the log, so "old" is not printed.
    let mut child = b.spawn_cli(&["consume", "t", "-o", "json"]);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The consumer is positioned once it has fetched; keep producing until a record shows.
    let first = eventually("a followed record", Duration::from_secs(20), || {
        b.run_stdin(&["produce", "t"], "new\n");
        rx.recv_timeout(Duration::from_millis(300)).ok()
    });
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["value"], "new");
    assert_eq!(terminate(&mut child, Duration::from_secs(20)), 0);
}
