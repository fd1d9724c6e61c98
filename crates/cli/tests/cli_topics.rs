//! `runnel topic ...` and `runnel cluster info` against a real broker.

mod common;

use common::{advertised_api_keys, free_port, run_cli, Broker};
use serde_json::Value;

const API_ALTER_CONFIGS: i16 = 33;
const API_CREATE_PARTITIONS: i16 = 37;

fn topic_names(b: &Broker, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["topic", "list"];
    args.extend(extra);
    b.json(&args)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn given_topics_should_create_list_describe_and_delete_them() {
    let b = Broker::start();
    let out = b.ok(&[
        "topic",
        "create",
        "orders",
        "-p",
        "3",
        "-c",
        "retention.ms=60000",
    ]);
    assert_eq!(out.trim(), "created topic 'orders'");
    let created = b.json(&["topic", "create", "payments", "audit"]);
    assert_eq!(created["created"], serde_json::json!(["payments", "audit"]));

    assert_eq!(topic_names(&b, &[]), ["audit", "orders", "payments"]);
    let list = b.json(&["topic", "list"]);
    let orders = &list.as_array().unwrap()[1];
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["replication_factor"], 1);
    // The text table has a header and one row per topic.
    let table = b.ok(&["topic", "list"]);
    assert!(table.starts_with("TOPIC"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");

    b.run_stdin(&["produce", "orders", "-p", "1"], "a\nb\n");
    let d = b.json(&["topic", "describe", "orders"]);
    assert_eq!(d["name"], "orders");
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["partition"], i as i64);
        assert_eq!(p["leader"], 1);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["isr"], serde_json::json!([1]));
        assert_eq!(p["log_start_offset"], 0);
        assert_eq!(p["log_end_offset"], if i == 1 { 2 } else { 0 });
    }
    let configs = d["configs"].as_array().unwrap();
    let retention = configs
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .expect("retention.ms is listed as set on the topic");
    assert_eq!(retention["value"], "60000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");
    // --all-configs lists the defaults too.
    let all = b.json(&["topic", "describe", "orders", "--all-configs"]);
    assert!(all["configs"].as_array().unwrap().len() > configs.len());
    let text = b.ok(&["topic", "describe", "orders"]);
    assert!(
        text.contains("LOG-END-OFFSET") && text.contains("retention.ms"),
        "{text}"
    );

    let del = b.json(&["topic", "delete", "payments", "audit"]);
    assert_eq!(del["deleted"], serde_json::json!(["payments", "audit"]));
    assert_eq!(topic_names(&b, &[]), ["orders"]);
    // Internal topics only with --internal (once a group has used __consumer_offsets).
    assert!(!topic_names(&b, &[]).iter().any(|t| t.starts_with("__")));
}

#[test]
fn given_bad_requests_should_fail_with_a_sentence_naming_the_error_code() {
    let b = Broker::start();
    b.ok(&["topic", "create", "t"]);

    let out = b.run(&["topic", "create", "t"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "runnel: topic 't' already exists (TOPIC_ALREADY_EXISTS)"
    );
    // --if-not-exists makes it a success.
    b.ok(&["topic", "create", "t", "--if-not-exists"]);

    for args in [
        vec!["topic", "describe", "missing"],
        vec!["topic", "delete", "missing"],
        vec!["consume", "missing", "-n", "1"],
    ] {
        let out = b.run(&args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("topic 'missing' does not exist (UNKNOWN_TOPIC_OR_PARTITION)"),
            "{args:?}: {out:?}"
        );
    }
    // Describing a missing topic did not create it.
    assert_eq!(topic_names(&b, &[]), ["t"]);
    b.ok(&["topic", "delete", "missing", "--if-exists"]);

    let out = b.run(&["topic", "create", "x", "-c", "no.such.config=1"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(INVALID_CONFIG)"), "{out:?}");
    let out = b.run(&["topic", "create", "bad name!"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("(INVALID_TOPIC_EXCEPTION)"), "{out:?}");

    // Usage errors exit 2.
    let out = b.run(&["topic", "create", "x", "-p", "0"]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = b.run(&["topic", "frobnicate"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn given_no_broker_should_say_it_cannot_reach_one() {
    let addr = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["topic", "list"],
        vec!["cluster", "info"],
        vec!["group", "list"],
    ] {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["-b".into(), addr.clone(), "--timeout".into(), "1s".into()]);
        let out = run_cli(&a, None);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("cannot reach a broker at {addr} within 1s")),
            "{args:?}: {out:?}"
        );
    }
}

/// AlterConfigs and CreatePartitions come to the broker with another issue. Until the broker
/// advertises them, the commands must fail with a sentence naming UNSUPPORTED_VERSION; once it
/// does, they must work. The test follows what the broker advertises, so it needs no change
/// when the broker gains them.
#[test]
fn given_alter_config_and_add_partitions_should_work_or_say_the_broker_lacks_them() {
    let b = Broker::start();
    b.ok(&[
        "topic",
        "create",
        "t",
        "-p",
        "2",
        "-c",
        "retention.ms=60000",
    ]);
    let apis = advertised_api_keys(&b.addr());

    let out = b.run(&[
        "topic",
        "alter-config",
        "t",
        "--set",
        "cleanup.policy=compact",
        "--delete",
        "retention.ms",
    ]);
    if apis.contains(&API_ALTER_CONFIGS) {
        assert_eq!(out.code, 0, "{out:?}");
        let d = b.json(&["topic", "describe", "t"]);
        let set: Vec<(String, String)> = d["configs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["source"] == "DYNAMIC_TOPIC_CONFIG")
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(set, [("cleanup.policy".to_string(), "compact".to_string())]);
    } else {
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(
            out.stderr.trim(),
            "runnel: cannot alter configs of topic 't': the broker does not support this \
             request (UNSUPPORTED_VERSION)"
        );
    }

    let out = b.run(&["topic", "add-partitions", "t", "--num", "2"]);
    let partitions = |b: &Broker| {
        b.json(&["topic", "describe", "t"])["partitions"]
            .as_array()
            .unwrap()
            .len()
    };
    if apis.contains(&API_CREATE_PARTITIONS) {
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout.trim(), "topic 't' now has 4 partitions (was 2)");
        assert_eq!(partitions(&b), 4);
        let j = b.json(&["topic", "add-partitions", "t", "--total", "5"]);
        assert_eq!(j["partitions"], 5);
        assert_eq!(partitions(&b), 5);
    } else {
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(
            out.stderr.trim(),
            "runnel: cannot add partitions to topic 't': the broker does not support this \
             request (UNSUPPORTED_VERSION)"
        );
        assert_eq!(partitions(&b), 2);
    }
    // Errors the CLI finds itself, whatever the broker supports.
    let out = b.run(&["topic", "add-partitions", "missing", "--num", "1"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("(UNKNOWN_TOPIC_OR_PARTITION)"),
        "{out:?}"
    );
    let out = b.run(&["topic", "alter-config", "t"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn given_cluster_info_should_show_id_controller_and_brokers() {
    let b = Broker::start();
    b.ok(&["topic", "create", "a", "-p", "2"]);
    b.ok(&["topic", "create", "b", "-p", "3"]);
    let info: Value = b.json(&["cluster", "info"]);
    let id = info["cluster_id"].as_str().expect("a cluster id");
    assert!(!id.is_empty());
    assert_eq!(info["controller_id"], 1);
    assert_eq!(info["topics"], 2);
    assert_eq!(info["partitions"], 5);
    let brokers = info["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["id"], 1);
    assert_eq!(brokers[0]["host"], "127.0.0.1");
    assert_eq!(brokers[0]["port"], b.port);
    assert_eq!(brokers[0]["controller"], true);
    let text = b.ok(&["cluster", "info"]);
    assert!(text.contains("CLUSTER-ID") && text.contains(id), "{text}");
}
