//! `runnel bench`: the plumbing of the benchmark suite at tiny sizes. It asserts that the
//! reports are written with their keys, never anything about speed (benchmarks are not tests).

mod common;

use std::process::Command;

use serde_json::Value;

#[test]
fn given_tiny_sizes_should_write_both_reports_with_every_workload() {
    let out = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let doc = out.path().join("performance.md");
    std::fs::write(
        &doc,
        "# Performance\n\nkept\n\n<!-- bench-report:begin (written by `runnel bench --doc`) -->\nold\n<!-- bench-report:end -->\n",
    )
    .unwrap();
    let run = Command::new(common::BIN)
        .arg("bench")
        .arg("--out")
        .arg(out.path())
        .arg("--data-root")
        .arg(data.path())
        .arg("--doc")
        .arg(&doc)
        .args([
            "--w1-size",
            "1MiB",
            "--w5-size",
            "512KiB",
            "--large-size",
            "off",
            "--disk-size",
            "4MiB",
            "--loopback-size",
            "16MiB",
            "--bare-size",
            "8MiB",
            "--w3-duration",
            "100ms",
            "--w3-rate",
            "500",
            "--w4-partitions",
            "10",
            "--idle-partitions",
            "20",
            "--rest",
            "50ms",
            "--free-margin",
            "1MiB",
            "--note",
            "smoke test",
        ])
        .output()
        .expect("runnel bench runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let mut json = None;
    let mut md = None;
    for e in std::fs::read_dir(out.path()).unwrap().flatten() {
        let p = e.path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("json") => json = Some(p),
            Some("md") if p != doc => md = Some(p),
            _ => {}
        }
    }
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(json.expect("a JSON report")).unwrap())
            .unwrap();
    let md = std::fs::read_to_string(md.expect("a Markdown report")).unwrap();

    for key in [
        "cpu_model",
        "cpus",
        "memory_bytes",
        "load_average_at_start",
        "data_root_free_bytes_at_start",
    ] {
        assert!(
            !r["machine"][key].is_null(),
            "machine.{key}: {}",
            r["machine"]
        );
    }
    for key in ["disk_write", "loopback_tcp"] {
        assert!(
            r["baselines"][key]["mb_per_sec"].as_f64().is_some(),
            "{key}: {}",
            r["baselines"]
        );
    }
    for key in ["produce_bare_loop", "fetch_bare_loop"] {
        assert!(
            r["baselines"][key]["cpu_secs_per_gib"].as_f64().is_some(),
            "{key}: {}",
            r["baselines"]
        );
    }
    // The load generator alone against the null broker: everything it sent or read counted.
    for key in ["client_ceiling_produce", "client_ceiling_consume"] {
        let v = &r["baselines"][key];
        assert_eq!(v["status"], "ok", "{key}: {v}");
        for k in [
            "mb_per_sec",
            "client_cpu_secs_per_gib",
            "null_broker_cpu_secs_per_gib",
        ] {
            assert!(v[k].as_f64().is_some(), "{key}.{k}: {v}");
        }
    }
    assert!(md.contains("The load generator alone"), "{md}");
    let w = &r["workloads"];
    for key in ["w1_acks_1", "w1_acks_all", "w2_catch_up", "w4_partitions"] {
        let v = &w[key];
        assert_eq!(v["status"], "ok", "{key}: {v}");
        for k in [
            "mb_per_sec",
            "records_per_sec",
            "ratio_to_disk",
            "ratio_to_loopback",
            "client_cpu_secs",
        ] {
            assert!(v[k].as_f64().is_some(), "{key}.{k}: {v}");
        }
        assert!(
            v["broker"]["cpu_secs_per_gib"].as_f64().is_some(),
            "{key}: {v}"
        );
        assert!(
            v["broker"]["peak_rss_bytes"].as_u64().unwrap() > 0,
            "{key}: {v}"
        );
    }
    assert_eq!(w["w2_catch_up"]["records"], w["w1_acks_1"]["records"]);
    assert!(w["w4_partitions"]["ratio_to_w1"].as_f64().is_some());
    let runs = w["w3_latency"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["status"], "ok", "{run}");
        assert_eq!(run["records_received"], run["records_sent"], "{run}");
        for p in ["p50", "p99", "p99_9", "max"] {
            assert!(run["latency_ms"][p].as_f64().is_some(), "{run}");
        }
    }
    let idle = &w["w4_idle"];
    assert_eq!(idle["status"], "ok", "{idle}");
    assert!(idle["one_record_each"]["rss_bytes"].as_u64().unwrap() > 0);
    let w5 = &w["w5_restart"];
    assert_eq!(w5["status"], "ok", "{w5}");
    for k in ["after_sigkill", "after_clean_stop"] {
        assert!(w5[k]["serving_secs"].as_f64().is_some(), "{w5}");
        assert_eq!(w5[k]["offsets_preserved"], true, "{w5}");
    }
    assert_eq!(w["w1_large"]["status"], "skipped");
    assert!(r["targets"].as_array().unwrap().len() >= 10);

    for text in [
        "W1 produce, acks=1",
        "W2 catch-up",
        "W3 end-to-end",
        "W4 at rest",
        "W5 restart",
        "Targets",
        "Bare loops",
        "the bare loop of this run",
        "smoke test",
        "runnel perf produce",
    ] {
        assert!(md.contains(text), "{text} missing from:\n{md}");
    }
    let doc = std::fs::read_to_string(&doc).unwrap();
    assert!(
        doc.contains("kept") && !doc.contains("\nold\n") && doc.contains("W5 restart"),
        "{doc}"
    );
}
