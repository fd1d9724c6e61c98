//! `runnel bench`: the benchmark suite of docs/performance.md.
//!
//! Each workload runs against its own broker (`runnel serve`, this binary unless `--runnel`),
//! on a fresh data directory under `--data-root` and a free loopback port, driven by
//! `runnel perf` in a child process (the exact command line goes into the report). The broker's
//! CPU time comes from `/proc/<pid>/stat` (utime + stime) and its peak RSS from `VmHWM` (reset
//! through `clear_refs` before each workload), sampled `VmRSS` besides. In the same run the suite
//! measures the sequential write bandwidth of the data root's disk (fsync at the end) and the
//! loopback TCP bandwidth, and gives every throughput as a ratio to them. It also runs bare
//! loops ([`bare`]): what receiving, CRC-checking and writing the bytes costs with no broker
//! around it (through the page cache, and with `O_DIRECT`), and what reading, checking and
//! sending them back costs, so that the broker's CPU per GiB can be read against what that work
//! costs on the machine that day.
//!
//! Benchmarks assert nothing about time: the suite writes `<out>/<timestamp>.json` and `.md`
//! (and, with `--doc`, the report section of that file) and fails only if a workload could not
//! run. `scripts/bench.sh` builds the release binary and runs it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use serde_json::{json, Value};

use crate::client::{parse_duration, CliError, CliResult, ConnArgs, Format};
use crate::procstat;

mod bare;
mod null_broker;

use null_broker::{NullBroker, NullLog};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: u64 = 1024 * 1024;

/// Marks of the section of `--doc` that the suite rewrites.
const DOC_BEGIN: &str = "<!-- bench-report:begin (written by `runnel bench --doc`) -->";
const DOC_END: &str = "<!-- bench-report:end -->";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// Produce throughput, acks=1 and acks=all.
    W1,
    /// Catch-up read of what W1 (acks=1) wrote.
    W2,
    /// End-to-end latency at fixed rates.
    W3,
    /// Produce throughput to many partitions, round-robin.
    W4,
    /// Broker memory with many idle partitions.
    W4Idle,
    /// Time to serve again after a clean stop and after SIGKILL.
    W5,
    /// W1 (acks=1) with more bytes than the machine has memory.
    W1Large,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Small sizes (the whole suite in a few minutes); explicit sizes still win.
    #[arg(long)]
    quick: bool,
    /// Where the reports go: <out>/<timestamp>.json and .md, broker logs and profiles in
    /// <out>/<timestamp>/.
    #[arg(long, default_value = "bench/results", value_name = "DIR")]
    out: PathBuf,
    /// Where the brokers' data directories (and the disk-bandwidth file) go; default: the
    /// system's temporary directory.
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// The `runnel` binary for the brokers and the load generator (default: this one).
    #[arg(long, value_name = "PATH")]
    runnel: Option<PathBuf>,
    /// Run only these workloads (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Bytes of values per W1 run (e.g. 4GiB; quick: 256MiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    w1_size: Option<u64>,
    /// Bytes of values of W4's 1,000-partition run (default: as W1).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    w4_size: Option<u64>,
    /// Bytes in the log before W5's restarts (10GiB; quick: 512MiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    w5_size: Option<u64>,
    /// Bytes of the larger-than-memory W1 run: `auto` (memory x 1.25, if the disk has room;
    /// quick: off), `off`, or a size.
    #[arg(long, value_name = "auto|off|SIZE")]
    large_size: Option<String>,
    /// Bytes written to measure the disk (default: as W1, at least 1GiB; quick: 1GiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    disk_size: Option<u64>,
    /// Bytes sent over loopback TCP to measure it (default 8GiB; quick: 2GiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    loopback_size: Option<u64>,
    /// Bytes moved by each bare loop, produce and fetch (default 2GiB; quick: 512MiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    bare_size: Option<u64>,
    /// Bytes of value per record.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    record_size: usize,
    /// Partitions of the W1/W2/W3/W5 topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Producer linger of W1, W4 and W5's fill.
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    linger: Duration,
    /// Producer batch size of W1, W4 and W5's fill.
    #[arg(long, default_value_t = 1_048_576, value_name = "BYTES")]
    batch_size: u32,
    /// W3's first fixed rate, records/s (the second is half of W1's acks=1 rate).
    #[arg(long, default_value_t = 20_000)]
    w3_rate: u64,
    /// How long W3 sends at each rate (default 60s; quick: 5s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    w3_duration: Option<Duration>,
    /// W3's producer linger (low, as a latency-sensitive producer would set it).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, value_name = "DURATION")]
    w3_linger: Duration,
    /// W3's producer acks (1 or all).
    #[arg(long, default_value = "all")]
    w3_acks: String,
    /// Partitions of W4's round-robin run.
    #[arg(long, default_value_t = 1000)]
    w4_partitions: i32,
    /// Partitions whose memory at rest W4 measures.
    #[arg(long, default_value_t = 10_000)]
    idle_partitions: i32,
    /// How long the broker rests before its memory is read.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    rest: Duration,
    /// Free space to leave on the data root's disk: a workload that would leave less is skipped.
    #[arg(long, default_value = "5GiB", value_parser = parse_size, value_name = "SIZE")]
    free_margin: u64,
    /// Profile the broker with Linux `perf` (if installed) during an extra W1 (acks=1) + W2
    /// run, not during the measured ones.
    #[arg(long)]
    profile: bool,
    /// Bytes of the profiled W1 run (default 1GiB).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    profile_size: Option<u64>,
    /// Rewrite the report section of this Markdown file (between its bench-report marks).
    #[arg(long, value_name = "FILE")]
    doc: Option<PathBuf>,
    /// What was built, for the report (scripts/bench.sh passes the commit and tree state).
    #[arg(long, value_name = "TEXT")]
    source: Option<String>,
    /// A note printed at the top of the report.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// A size such as `4GiB`, `256MiB`, `1.5GB`, `1048576` (binary units K/M/G[iB], decimal KB/MB/GB).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 256MiB or 4GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => GIB,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => {
            return Err(format!(
                "'{s}': unknown unit (use KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    Ok((n * mult) as u64)
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= MIB as f64 {
        format!("{:.1} MiB", b / MIB as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Effective settings: the flags, with the defaults of the mode filled in.
struct Plan {
    runnel: PathBuf,
    data_root: PathBuf,
    run_dir: PathBuf,
    record_size: usize,
    partitions: i32,
    linger: Duration,
    batch_size: u32,
    w1_size: u64,
    w4_size: u64,
    w5_size: u64,
    large: Option<u64>,
    large_note: Option<String>,
    disk_size: u64,
    loopback_size: u64,
    bare_size: u64,
    w3_rate: u64,
    w3_duration: Duration,
    w3_linger: Duration,
    w3_acks: String,
    w4_partitions: i32,
    idle_partitions: i32,
    rest: Duration,
    free_margin: u64,
    profile: bool,
    profile_size: u64,
    only: Vec<Workload>,
}

impl Plan {
    fn wants(&self, w: Workload) -> bool {
        self.only.is_empty() || self.only.contains(&w)
    }

    fn config_json(&self) -> Value {
        json!({
            "record_size": self.record_size,
            "partitions": self.partitions,
            "linger_ms": self.linger.as_secs_f64() * 1000.0,
            "batch_size": self.batch_size,
            "w1_bytes": self.w1_size,
            "w4_bytes": self.w4_size,
            "w5_bytes": self.w5_size,
            "large_bytes": self.large,
            "disk_bytes": self.disk_size,
            "loopback_bytes": self.loopback_size,
            "bare_bytes": self.bare_size,
            "w3_rate": self.w3_rate,
            "w3_secs": self.w3_duration.as_secs_f64(),
            "w3_linger_ms": self.w3_linger.as_secs_f64() * 1000.0,
            "w3_acks": self.w3_acks,
            "w4_partitions": self.w4_partitions,
            "idle_partitions": self.idle_partitions,
            "rest_secs": self.rest.as_secs_f64(),
            "free_margin_bytes": self.free_margin,
            "profile": self.profile,
            "data_root": self.data_root.display().to_string(),
        })
    }
}

pub fn run(args: BenchArgs) -> CliResult<()> {
    let runnel = match &args.runnel {
        Some(p) => p.clone(),
        None => std::env::current_exe()?,
    };
    let data_root = args.data_root.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&data_root)?;
    std::fs::create_dir_all(&args.out)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let run_dir = args.out.join(&stamp);
    std::fs::create_dir_all(&run_dir)?;
    let mem_total = meminfo_bytes("MemTotal").unwrap_or(0);
    let q = args.quick;
    let w1_size = args.w1_size.unwrap_or(if q { 256 * MIB } else { 4 << 30 });
    let (large, large_note) = match args.large_size.as_deref() {
        Some("off") => (None, Some("off (--large-size off)".to_string())),
        None if q => (None, Some("off in --quick mode".to_string())),
        None | Some("auto") => {
            let want = (mem_total as f64 * 1.25) as u64;
            let free = free_bytes(&data_root).unwrap_or(0);
            if want == 0 {
                (None, Some("cannot read the machine's memory size".into()))
            } else if free < want + args.free_margin {
                (
                    None,
                    Some(format!(
                        "needs {} (memory x 1.25) plus a margin of {}, but the disk has {} free",
                        human_bytes(want),
                        human_bytes(args.free_margin),
                        human_bytes(free)
                    )),
                )
            } else {
                (Some(want), None)
            }
        }
        Some(s) => (Some(parse_size(s).map_err(CliError::usage)?), None),
    };
    let plan = Plan {
        runnel,
        data_root,
        run_dir,
        record_size: args.record_size.max(8),
        partitions: args.partitions,
        linger: args.linger,
        batch_size: args.batch_size,
        w1_size,
        w4_size: args.w4_size.unwrap_or(w1_size),
        w5_size: args.w5_size.unwrap_or(if q { 512 * MIB } else { 10 << 30 }),
        large,
        large_note,
        disk_size: args
            .disk_size
            .unwrap_or(if q { 1 << 30 } else { w1_size.max(1 << 30) }),
        loopback_size: args
            .loopback_size
            .unwrap_or(if q { 2 << 30 } else { 8 << 30 }),
        bare_size: args
            .bare_size
            .unwrap_or(if q { 512 * MIB } else { 2 << 30 }),
        w3_rate: args.w3_rate,
        w3_duration: args.w3_duration.unwrap_or(if q {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(60)
        }),
        w3_linger: args.w3_linger,
        w3_acks: args.w3_acks.clone(),
        w4_partitions: args.w4_partitions,
        idle_partitions: args.idle_partitions,
        rest: args.rest,
        free_margin: args.free_margin,
        profile: args.profile,
        profile_size: args.profile_size.unwrap_or(1 << 30),
        only: args.only.clone(),
    };
    let mut suite = Suite {
        plan,
        commands: Vec::new(),
        failures: 0,
    };
    let started = chrono::Utc::now();
    let load_start = loadavg();
    let free_start = free_bytes(&suite.plan.data_root);
    let mode = if q { "quick" } else { "full" };
    eprintln!(
        "runnel bench ({mode}): data in {}, reports in {}",
        suite.plan.data_root.display(),
        args.out.display()
    );

    let mut results = serde_json::Map::new();
    let baselines = suite.baselines();
    let disk_mbps = baselines["disk_write"]["mb_per_sec"].as_f64();
    let loop_mbps = baselines["loopback_tcp"]["mb_per_sec"].as_f64();
    let ratios = Ratios {
        disk: disk_mbps,
        loopback: loop_mbps,
    };

    let mut w1_rate: Option<f64> = None;
    let mut w1_mbps: Option<f64> = None;
    if suite.plan.wants(Workload::W1) || suite.plan.wants(Workload::W2) {
        let (w1, w2) = suite.w1_w2("1", true, &ratios);
        w1_rate = w1["records_per_sec"].as_f64();
        w1_mbps = w1["mb_per_sec"].as_f64();
        results.insert("w1_acks_1".into(), w1);
        if suite.plan.wants(Workload::W2) {
            results.insert("w2_catch_up".into(), w2.unwrap_or(Value::Null));
        }
    }
    if suite.plan.wants(Workload::W1) {
        let (w1, _) = suite.w1_w2("all", false, &ratios);
        results.insert("w1_acks_all".into(), w1);
    }
    if suite.plan.wants(Workload::W3) {
        results.insert("w3_latency".into(), suite.w3(w1_rate));
    }
    if suite.plan.wants(Workload::W4) {
        results.insert("w4_partitions".into(), suite.w4(&ratios, w1_mbps));
    }
    if suite.plan.wants(Workload::W4Idle) {
        results.insert("w4_idle".into(), suite.w4_idle());
    }
    if suite.plan.wants(Workload::W5) {
        results.insert("w5_restart".into(), suite.w5(&ratios));
    }
    if suite.plan.wants(Workload::W1Large) {
        results.insert("w1_large".into(), suite.w1_large(&ratios));
    }
    let profile = if suite.plan.profile {
        Some(suite.profile())
    } else {
        None
    };

    let report = json!({
        "schema": "runnel-bench/1",
        "started_at": started.to_rfc3339(),
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "mode": mode,
        "note": args.note,
        "source": args.source,
        "binary": suite.plan.runnel.display().to_string(),
        "machine": machine_json(&suite.plan.data_root, load_start, free_start),
        "config": suite.plan.config_json(),
        "baselines": baselines,
        "workloads": Value::Object(results),
        "profile": profile,
        "commands": suite.commands,
    });
    let mut report = report;
    report["targets"] = targets(&report);
    let md = markdown(&report);
    let json_path = args.out.join(format!("{stamp}.json"));
    let md_path = args.out.join(format!("{stamp}.md"));
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )?;
    std::fs::write(&md_path, &md)?;
    if let Some(doc) = &args.doc {
        update_doc(doc, &md)?;
    }
    eprintln!(
        "runnel bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    print!("{md}");
    if suite.failures > 0 {
        return Err(CliError::new(format!(
            "{} workload(s) failed; see the report",
            suite.failures
        )));
    }
    Ok(())
}

struct Ratios {
    disk: Option<f64>,
    loopback: Option<f64>,
}

impl Ratios {
    fn add(&self, v: &mut Value) {
        if let Some(m) = v["mb_per_sec"].as_f64() {
            v["ratio_to_disk"] = json!(self.disk.map(|d| r3(m / d)));
            v["ratio_to_loopback"] = json!(self.loopback.map(|l| r3(m / l)));
        }
    }
}

struct Suite {
    plan: Plan,
    /// Every command run, for the report: `[workload, command line]`.
    commands: Vec<(String, String)>,
    failures: u32,
}

fn failed(what: &str, e: &str) -> Value {
    eprintln!("runnel bench: {what} failed: {e}");
    json!({"status": "failed", "error": e})
}

/// A bare loop's figures as the report's JSON holds them.
fn bare_measured(f: bare::Bare, method: &str) -> Value {
    json!({
        "status": "ok",
        "bytes": f.bytes,
        "secs": r3(f.secs),
        "mb_per_sec": r3(mb_per_sec(f.bytes, f.secs)),
        "cpu_secs": r3(f.cpu_secs),
        "cpu_secs_per_gib": r3(f.cpu_secs_per_gib()),
        "method": method,
    })
}

fn skipped(reason: String) -> Value {
    eprintln!("runnel bench: skipped: {reason}");
    json!({"status": "skipped", "reason": reason})
}

impl Suite {
    fn fail(&mut self, what: &str, e: &str) -> Value {
        self.failures += 1;
        failed(what, e)
    }

    /// Skips (with the reason) unless the data root's disk has room for `bytes` of log plus the
    /// margin.
    fn room_for(&self, bytes: u64) -> Result<(), String> {
        let free = free_bytes(&self.plan.data_root).unwrap_or(0);
        // Segments, indexes and the batches' own overhead: 10% over the values.
        let need = bytes + bytes / 10 + self.plan.free_margin;
        if free < need {
            return Err(format!(
                "needs {} on the data root's disk ({} of values + 10% + a margin of {}), {} free",
                human_bytes(need),
                human_bytes(bytes),
                human_bytes(self.plan.free_margin),
                human_bytes(free)
            ));
        }
        Ok(())
    }

    fn broker(&self, name: &str) -> Result<BrokerProc, String> {
        let dir = self
            .plan
            .data_root
            .join(format!("runnel-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        BrokerProc::start(
            &self.plan.runnel,
            &dir,
            &self.plan.run_dir.join(format!("broker-{name}.log")),
        )
    }

    /// Runs `runnel perf ARGS -b ADDR -o json` and parses its report.
    fn perf(&mut self, workload: &str, addr: &str, args: &[String]) -> Result<Value, String> {
        let mut full: Vec<String> = vec!["perf".into()];
        full.extend(args.iter().cloned());
        full.extend(["-b".into(), addr.into(), "-o".into(), "json".into()]);
        full.extend(["--timeout".into(), "60s".into()]);
        self.run_tool(workload, &full)
    }

    fn run_tool(&mut self, workload: &str, args: &[String]) -> Result<Value, String> {
        self.commands
            .push((workload.to_string(), format!("runnel {}", args.join(" "))));
        eprintln!("runnel bench [{workload}]: runnel {}", args.join(" "));
        let out = Command::new(&self.plan.runnel)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.plan.runnel.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`runnel {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "`runnel {}` printed no JSON report ({e}): {text}",
                args.join(" ")
            )
        })
    }

    fn produce_args(&self, topic: &str, bytes: u64, partitions: i32, acks: &str) -> Vec<String> {
        let records = (bytes / self.plan.record_size as u64).max(1);
        vec![
            "produce".into(),
            topic.into(),
            "-n".into(),
            records.to_string(),
            "-s".into(),
            self.plan.record_size.to_string(),
            "-p".into(),
            partitions.to_string(),
            "--acks".into(),
            acks.into(),
            "--linger".into(),
            format!("{}ms", self.plan.linger.as_millis()),
            "--batch-size".into(),
            self.plan.batch_size.to_string(),
            "--payload".into(),
            "half-random".into(),
            "--round-robin".into(),
        ]
    }

    /// Creates `topic` before a measured run, so that the run does not count the creation of
    /// its partitions (their files, the metadata record and its fsync); the seconds it took.
    fn create_topic(
        &mut self,
        workload: &str,
        addr: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<f64, String> {
        let t = Instant::now();
        let args: Vec<String> = [
            "topic",
            "create",
            topic,
            "-p",
            &partitions.to_string(),
            "-b",
            addr,
            "--timeout",
            "300s",
            "-o",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.run_tool(workload, &args)?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// Creates the topic, then produces `bytes` of values to it, measured.
    #[allow(clippy::too_many_arguments)]
    fn produce_measured(
        &mut self,
        workload: &str,
        b: &BrokerProc,
        topic: &str,
        bytes: u64,
        partitions: i32,
        acks: &str,
        ratios: &Ratios,
    ) -> Result<Value, String> {
        let create = self.create_topic(workload, &b.addr, topic, partitions)?;
        let args = self.produce_args(topic, bytes, partitions, acks);
        let mut v = self.measured(workload, b, &args, ratios)?;
        v["partitions"] = json!(partitions);
        v["acks"] = json!(acks);
        v["topic_create_secs"] = json!(r3(create));
        Ok(v)
    }

    /// A `runnel perf produce|consume` run measured on the broker: the client's figures, the
    /// broker's CPU and memory, the ratios to the baselines.
    fn measured(
        &mut self,
        workload: &str,
        b: &BrokerProc,
        args: &[String],
        ratios: &Ratios,
    ) -> Result<Value, String> {
        let probe = Probe::start(b.pid);
        let r = self.perf(workload, &b.addr, args)?;
        let broker = probe.finish();
        let bytes = r["bytes"].as_u64().unwrap_or(0);
        let secs = r["elapsed_secs"].as_f64().unwrap_or(0.0);
        let mut v = json!({
            "status": "ok",
            "records": r["records"],
            "bytes": bytes,
            "secs": secs,
            "mb_per_sec": r3(mb_per_sec(bytes, secs)),
            "records_per_sec": r["records_per_sec"],
            "client_cpu_secs": r["cpu_secs"],
        });
        for extra in ["latency_ms", "first_record_ms"] {
            if !r[extra].is_null() {
                v[extra] = r[extra].clone();
            }
        }
        broker.add_to(&mut v, bytes, r["cpu_secs"].as_f64());
        ratios.add(&mut v);
        Ok(v)
    }

    /// Sequential disk write (fsync at the end) and loopback TCP, one stream each.
    fn baselines(&mut self) -> Value {
        eprintln!(
            "runnel bench [baselines]: writing {} to {} and sending {} over loopback TCP",
            human_bytes(self.plan.disk_size),
            self.plan.data_root.display(),
            human_bytes(self.plan.loopback_size)
        );
        let measured = |bytes: u64, secs: f64, method: &str| {
            json!({
                "status": "ok",
                "bytes": bytes,
                "secs": r3(secs),
                "mb_per_sec": r3(mb_per_sec(bytes, secs)),
                "method": method,
            })
        };
        let disk_bytes = self.plan.disk_size;
        let disk = match self.room_for(disk_bytes) {
            Err(reason) => skipped(reason),
            Ok(()) => match disk_write(&self.plan.data_root, disk_bytes) {
                Ok(secs) => measured(disk_bytes, secs, "1 MiB write(2)s to a new file on the data root's file system, then fsync; the time includes the fsync"),
                Err(e) => self.fail("disk bandwidth", &e.to_string()),
            },
        };
        let lo = match loopback(self.plan.loopback_size) {
            Ok(secs) => measured(
                self.plan.loopback_size,
                secs,
                "one TCP connection on 127.0.0.1, 1 MiB write(2)s and read(2)s, a thread each",
            ),
            Err(e) => self.fail("loopback bandwidth", &e.to_string()),
        };
        let mut baselines = serde_json::Map::new();
        baselines.insert("disk_write".into(), disk);
        baselines.insert("loopback_tcp".into(), lo);
        for (key, loop_) in self.bare_loops() {
            baselines.insert(key.into(), loop_);
        }
        for (key, run) in self.client_ceiling() {
            baselines.insert(key.into(), run);
        }
        Value::Object(baselines)
    }

    /// The load generator alone: W1's producer and W2's consumer, in W1's shape and size,
    /// against a broker that does next to nothing ([`null_broker`]). What the client reaches
    /// there bounds what any broker on the same cores could let it reach.
    fn client_ceiling(&mut self) -> Vec<(&'static str, Value)> {
        if !(self.plan.wants(Workload::W1) || self.plan.wants(Workload::W2)) {
            return Vec::new();
        }
        let (size, parts) = (self.plan.w1_size, self.plan.partitions.max(1));
        let batch = self.plan.batch_size.max(4096) as usize;
        let batches = size.div_ceil(parts as u64 * batch as u64).max(1) as i64;
        let log = match NullLog::new("w1", parts, batches, batch, self.plan.record_size) {
            Ok(log) => log,
            Err(e) => {
                let f = self.fail("client ceiling", &e.to_string());
                return vec![
                    ("client_ceiling_produce", f.clone()),
                    ("client_ceiling_consume", f),
                ];
            }
        };
        let produce = self.produce_args("w1", size, parts, "1");
        let consume = consume_args("w1", log.records());
        vec![
            (
                "client_ceiling_produce",
                self.against_null_broker("client ceiling, W1's producer", &log, &produce),
            ),
            (
                "client_ceiling_consume",
                self.against_null_broker("client ceiling, W2's consumer", &log, &consume),
            ),
        ]
    }

    /// One `runnel perf` run against a fresh [`NullBroker`] serving `log`.
    fn against_null_broker(&mut self, what: &str, log: &NullLog, args: &[String]) -> Value {
        let broker = match NullBroker::start(log.clone()) {
            Ok(b) => b,
            Err(e) => return self.fail(what, &format!("cannot start the null broker: {e}")),
        };
        let busy0 = machine_busy_secs();
        let t = Instant::now();
        let r = self.perf(what, &broker.addr(), args);
        let wall = t.elapsed().as_secs_f64();
        let busy = machine_busy_secs().zip(busy0).map(|(a, b)| a - b);
        let nothing = broker.stop();
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.fail(what, &e),
        };
        let bytes = r["bytes"].as_u64().unwrap_or(0);
        let secs = r["elapsed_secs"].as_f64().unwrap_or(0.0);
        let gib = bytes as f64 / GIB;
        let per_gib = |cpu: Option<f64>| cpu.filter(|_| gib > 0.0).map(|c| r3(c / gib));
        json!({
            "status": "ok",
            "bytes": bytes,
            "secs": r3(secs),
            "mb_per_sec": r3(mb_per_sec(bytes, secs)),
            "client_cpu_secs_per_gib": per_gib(r["cpu_secs"].as_f64()),
            "null_broker_cpu_secs_per_gib": per_gib(Some(nothing.cpu_secs)),
            "null_broker_requests": nothing.requests,
            "cores_busy": busy.filter(|_| wall > 0.0).map(|b| r3(b / wall)),
            "method": "runnel perf against the null broker (bench::null_broker): requests decoded \
                       and answered, record bytes neither checked nor kept; Fetch answered from one \
                       batch of W1's shape with vectored writes",
        })
    }

    /// The bare loops ([`bare`]) under their keys in the report's baselines: produce, the
    /// fetch loops, and the two O_DIRECT produce loops, in W1's shape (a batch of `batch_size` per partition
    /// per request), in a scratch directory of the data root.
    fn bare_loops(&mut self) -> Vec<(&'static str, Value)> {
        let mut loops = self.bare_loops_through_the_page_cache();
        loops.extend(self.bare_loops_direct());
        loops
    }

    /// Where the bare loops write their files: a scratch directory of the data root.
    fn bare_dir(&self) -> PathBuf {
        self.plan
            .data_root
            .join(format!("runnel-bench-bare-{}", std::process::id()))
    }

    fn bare_shape(&self) -> io::Result<bare::Shape> {
        bare::Shape::new(
            self.plan.partitions.max(1) as usize,
            self.plan.batch_size as usize,
        )
    }

    /// The produce loop without the page cache ([`bare::produce_direct`]), copying each batch
    /// into an aligned buffer and, as its floor, receiving into one.
    fn bare_loops_direct(&mut self) -> Vec<(&'static str, Value)> {
        let bytes = self.plan.bare_size;
        let keys = [
            (
                "produce_direct_bare_loop",
                bare::DirectInput::CopyFromRequest,
            ),
            (
                "produce_direct_floor_bare_loop",
                bare::DirectInput::ReceiveAligned,
            ),
        ];
        let shape = match self.bare_shape() {
            Ok(shape) => shape,
            // The page-cache loops have already counted this failure.
            Err(e) => {
                let reason = format!("the bare loops' shape: {e}");
                return keys
                    .iter()
                    .map(|(k, _)| (*k, skipped(reason.clone())))
                    .collect();
            }
        };
        let dir = self.bare_dir();
        let mut loops = Vec::new();
        for (key, input) in keys {
            if let Err(reason) = self.room_for(shape.bytes_moved(bytes)) {
                loops.push((key, skipped(reason)));
                continue;
            }
            eprintln!(
                "runnel bench [baselines]: O_DIRECT produce loop ({input:?}), {}",
                human_bytes(bytes)
            );
            let measured = std::fs::create_dir_all(&dir)
                .and_then(|()| bare::produce_direct(&dir, bytes, shape, input));
            let method = match input {
                bare::DirectInput::CopyFromRequest => "one thread receives requests over loopback TCP, checks each batch's CRC-32C and copies it into a 4 KiB-aligned buffer of a bounded pool; four writer threads pwrite the buffers to each partition's file opened with O_DIRECT; CPU of those five threads",
                bare::DirectInput::ReceiveAligned => "as the O_DIRECT produce loop, but each batch is received straight into an aligned buffer (no copy): the floor of writing without the page cache",
            };
            loops.push((
                key,
                match measured {
                    Ok(f) => bare_measured(f, method),
                    // Not the suite's failure: the data root's file system has no direct
                    // I/O, or --batch-size is not in whole blocks.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
                        ) =>
                    {
                        skipped(e.to_string())
                    }
                    Err(e) => self.fail(key, &e.to_string()),
                },
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
        loops
    }

    /// The produce bare loop through the page cache, then the fetch loops reading back what it
    /// wrote: with `pread` (as the broker), from a mapping, and from a mapping pinned by
    /// `mlock`.
    fn bare_loops_through_the_page_cache(&mut self) -> Vec<(&'static str, Value)> {
        const FETCHES: [(&str, bare::FetchFrom, &str); 3] = [
            ("fetch_bare_loop", bare::FetchFrom::Read, "one thread preads a batch per partition from the page cache into each answer, checks each CRC-32C and sends the answer over loopback TCP; CPU of that thread"),
            ("fetch_mapped_bare_loop", bare::FetchFrom::Mapping, "as the fetch loop, but each batch is checked in a read-only shared mapping of its file and sent from there (no copy into user memory; not safe for a broker: a page evicted between the check and the send would go out unverified)"),
            ("fetch_pinned_bare_loop", bare::FetchFrom::PinnedMapping, "as the mapped fetch loop, with each batch's pages locked in memory (mlock) from before the check until after the send"),
        ];
        let bytes = self.plan.bare_size;
        let all = |v: Value| {
            std::iter::once(("produce_bare_loop", v.clone()))
                .chain(FETCHES.iter().map(|(key, _, _)| (*key, v.clone())))
                .collect::<Vec<_>>()
        };
        let shape = match self.bare_shape() {
            Ok(shape) => shape,
            Err(e) => return all(self.fail("bare loops", &e.to_string())),
        };
        if let Err(reason) = self.room_for(shape.bytes_moved(bytes)) {
            return all(skipped(reason));
        }
        eprintln!(
            "runnel bench [baselines]: bare loops, {} each way ({} batches of {} per request)",
            human_bytes(bytes),
            shape.partitions(),
            human_bytes(shape.batch_bytes() as u64)
        );
        let dir = self.bare_dir();
        let produced =
            std::fs::create_dir_all(&dir).and_then(|()| bare::produce(&dir, bytes, shape));
        let produce = match produced {
            Ok(f) => bare_measured(f, "one thread receives requests over loopback TCP, checks each batch's CRC-32C and pwrites it at the end of its partition's file; a second thread starts the writeback of each batch (sync_file_range); CPU of those two threads"),
            Err(e) => self.fail("produce bare loop", &e.to_string()),
        };
        let mut loops = vec![("produce_bare_loop", produce.clone())];
        for (key, from, method) in FETCHES {
            let fetch = if produce["status"] != "ok" {
                skipped("the produce loop did not run".into())
            } else {
                match bare::fetch(&dir, bytes, shape, from) {
                    Ok(f) => bare_measured(f, method),
                    // Not the suite's failure: this process may not lock memory.
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => skipped(e.to_string()),
                    Err(e) => self.fail(key, &e.to_string()),
                }
            };
            loops.push((key, fetch));
        }
        let _ = std::fs::remove_dir_all(&dir);
        loops
    }

    /// W1 at `acks`, and W2 (catch-up read of all of it) on the same broker when `with_w2`.
    fn w1_w2(&mut self, acks: &str, with_w2: bool, ratios: &Ratios) -> (Value, Option<Value>) {
        let name = format!("w1-acks-{acks}");
        if let Err(reason) = self.room_for(self.plan.w1_size) {
            return (skipped(reason.clone()), with_w2.then(|| skipped(reason)));
        }
        let b = match self.broker(&name) {
            Ok(b) => b,
            Err(e) => {
                let f = self.fail(&name, &e);
                return (f.clone(), with_w2.then_some(f));
            }
        };
        let (size, parts) = (self.plan.w1_size, self.plan.partitions);
        let w1 = self.produce_measured(
            &format!("W1 acks={acks}"),
            &b,
            "w1",
            size,
            parts,
            acks,
            ratios,
        );
        let w1 = match w1 {
            Ok(v) => v,
            Err(e) => {
                let f = self.fail(&name, &e);
                b.stop_and_remove();
                return (f.clone(), with_w2.then_some(f));
            }
        };
        let w2 = with_w2.then(|| {
            let records = w1["records"].as_u64().unwrap_or(0);
            let args = consume_args("w1", records);
            // A consumer with a group.id (librdkafka's always has one) asks for its coordinator,
            // and the first FindCoordinator creates __consumer_offsets (50 partitions): a
            // one-time cost, paid here before the measured run.
            let warm: Vec<String> = ["consume", "w1", "-n", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if let Err(e) = self.perf("W2 warm-up", &b.addr, &warm) {
                return self.fail("W2", &e);
            }
            match self.measured("W2", &b, &args, ratios) {
                Ok(mut v) => {
                    v["note"] = json!("read right after W1 wrote it: from the page cache");
                    v
                }
                Err(e) => self.fail("W2", &e),
            }
        });
        let stop = b.stop_and_remove();
        let mut w1 = w1;
        if w1["status"] == "ok" {
            w1["broker_stop_secs"] = json!(r3(stop));
        }
        (w1, w2)
    }

    fn e2e_args(&self, topic: &str, rate: u64) -> Vec<String> {
        let n = ((rate as f64) * self.plan.w3_duration.as_secs_f64()).max(1.0) as u64;
        vec![
            "e2e".into(),
            topic.into(),
            "-t".into(),
            rate.to_string(),
            "-n".into(),
            n.to_string(),
            "-s".into(),
            self.plan.record_size.to_string(),
            "-p".into(),
            self.plan.partitions.to_string(),
            "--acks".into(),
            self.plan.w3_acks.clone(),
            "--linger".into(),
            format!("{}ms", self.plan.w3_linger.as_millis()),
            "--payload".into(),
            "half-random".into(),
            "--round-robin".into(),
        ]
    }

    /// W3: latency from produce call to consumer receipt at fixed rates.
    fn w3(&mut self, w1_rate: Option<f64>) -> Value {
        let mut runs = Vec::new();
        let mut rates = vec![(
            format!("{} records/s", self.plan.w3_rate),
            Some(self.plan.w3_rate),
        )];
        rates.push((
            "50% of W1 (acks=1)".to_string(),
            w1_rate.map(|r| ((r * 0.5) as u64).max(1)),
        ));
        for (i, (label, rate)) in rates.into_iter().enumerate() {
            let Some(rate) = rate else {
                runs.push(json!({"label": label, "status": "skipped", "reason": "W1 (acks=1) did not run"}));
                continue;
            };
            let bytes = (rate as f64 * self.plan.w3_duration.as_secs_f64()) as u64
                * self.plan.record_size as u64;
            if let Err(reason) = self.room_for(bytes) {
                let mut s = skipped(reason);
                s["label"] = json!(label);
                runs.push(s);
                continue;
            }
            let name = format!("w3-{i}");
            let b = match self.broker(&name) {
                Ok(b) => b,
                Err(e) => {
                    runs.push(self.fail(&name, &e));
                    continue;
                }
            };
            if let Err(e) =
                self.create_topic(&format!("W3 {label}"), &b.addr, "w3", self.plan.partitions)
            {
                runs.push(self.fail(&name, &e));
                b.stop_and_remove();
                continue;
            }
            let probe = Probe::start(b.pid);
            let args = self.e2e_args("w3", rate);
            let v = match self.perf(&format!("W3 {label}"), &b.addr, &args) {
                Ok(r) => {
                    let broker = probe.finish();
                    let bytes = r["bytes"].as_u64().unwrap_or(0);
                    let mut v = json!({
                        "status": "ok",
                        "label": label,
                        "target_rate": rate,
                        "achieved_rate": r["achieved_rate"],
                        "max_behind_schedule_ms": r["max_behind_schedule_ms"],
                        "records_sent": r["records_sent"],
                        "records_received": r["records_received"],
                        "bytes": bytes,
                        "secs": r["send_secs"],
                        "latency_ms": r["end_to_end_latency_ms"],
                        "slow_seconds": slow_seconds(&r["end_to_end_by_second"]),
                        "client_cpu_secs": r["cpu_secs"],
                    });
                    broker.add_to(&mut v, bytes, r["cpu_secs"].as_f64());
                    v
                }
                Err(e) => {
                    let mut f = self.fail(&name, &e);
                    f["label"] = json!(label);
                    f
                }
            };
            let stop = b.stop_and_remove();
            let mut v = v;
            if v["status"] == "ok" {
                v["broker_stop_secs"] = json!(r3(stop));
            }
            runs.push(v);
        }
        json!({
            "acks": self.plan.w3_acks,
            "linger_ms": self.plan.w3_linger.as_secs_f64() * 1000.0,
            "runs": runs,
        })
    }

    /// W4: W1 (acks=1) to many partitions, record i to partition i mod N.
    fn w4(&mut self, ratios: &Ratios, w1_mbps: Option<f64>) -> Value {
        if let Err(reason) = self.room_for(self.plan.w4_size) {
            return skipped(reason);
        }
        let b = match self.broker("w4") {
            Ok(b) => b,
            Err(e) => return self.fail("W4", &e),
        };
        let (size, parts) = (self.plan.w4_size, self.plan.w4_partitions);
        let v = match self.produce_measured("W4", &b, "w4", size, parts, "1", ratios) {
            Ok(mut v) => {
                v["ratio_to_w1"] = json!(match (v["mb_per_sec"].as_f64(), w1_mbps) {
                    (Some(m), Some(w)) if w > 0.0 => Some(r3(m / w)),
                    _ => None,
                });
                v
            }
            Err(e) => self.fail("W4", &e),
        };
        let stop = b.stop_and_remove();
        let mut v = v;
        if v["status"] == "ok" {
            v["broker_stop_secs"] = json!(r3(stop));
        }
        v
    }

    /// W4 at rest: broker memory with many partitions, empty and then with one record each.
    fn w4_idle(&mut self) -> Value {
        let wanted = self.plan.idle_partitions;
        let b = match self.broker("w4-idle") {
            Ok(b) => b,
            Err(e) => return self.fail("W4 idle", &e),
        };
        let rss_fresh = procstat::status_bytes(b.pid, "VmRSS");
        let limit = open_files_limit(b.pid);
        // How many files a partition keeps open, measured on a small topic; with the broker's
        // open-files limit, how many partitions it can hold.
        let probe_parts = 10;
        let fds_before = open_files(b.pid);
        if let Err(e) = self.create_topic("W4 idle", &b.addr, "fds", probe_parts) {
            b.stop_and_remove();
            return self.fail("W4 idle", &e);
        }
        let fds_after = open_files(b.pid);
        let per_partition = match (fds_before, fds_after) {
            (Some(a), Some(z)) if z > a => Some((z - a) as f64 / probe_parts as f64),
            _ => None,
        };
        let fit = match (limit, per_partition, fds_after) {
            (Some(l), Some(p), Some(open)) => {
                // Room for connections and the metadata log: 10% of the limit.
                Some((((l as f64 * 0.9) - open as f64) / p).max(0.0) as i32)
            }
            _ => None,
        };
        let n = match fit {
            Some(f) if f < wanted => (f / 1000 * 1000).max(f.min(100)),
            _ => wanted,
        };
        let reduced = (n < wanted).then(|| {
            format!(
                "{n} partitions instead of {wanted}: a partition keeps {:.1} files open and the \
                 broker's open-files limit is {} (this machine does not allow raising it)",
                per_partition.unwrap_or(0.0),
                limit.unwrap_or(0)
            )
        });
        if let Some(r) = &reduced {
            eprintln!("runnel bench [W4 idle]: {r}");
        }
        let create_secs = match self.create_topic("W4 idle", &b.addr, "idle", n) {
            Ok(secs) => secs,
            Err(e) => {
                b.stop_and_remove();
                return self.fail("W4 idle", &e);
            }
        };
        std::thread::sleep(self.plan.rest);
        let empty = rest_memory(b.pid);
        let t = Instant::now();
        // One record to each partition (the topic exists: -p finds it there).
        let args = self.produce_args("idle", n as u64 * self.plan.record_size as u64, n, "1");
        if let Err(e) = self.perf("W4 idle", &b.addr, &args) {
            b.stop_and_remove();
            return self.fail("W4 idle", &e);
        }
        let fill_secs = t.elapsed().as_secs_f64();
        std::thread::sleep(self.plan.rest);
        let one_each = rest_memory(b.pid);
        let cpu = procstat::cpu_secs(b.pid);
        b.stop_and_remove();
        // Memory per partition, and what it comes to at the number asked for.
        let per_part_rss = match (one_each["rss_bytes"].as_u64(), rss_fresh) {
            (Some(r), Some(f)) if n > 0 => Some((r.saturating_sub(f)) as f64 / n as f64),
            _ => None,
        };
        json!({
            "status": "ok",
            "partitions": n,
            "partitions_asked": wanted,
            "reduced": reduced,
            "broker_open_files_limit": limit,
            "open_files_per_partition": per_partition,
            "rss_fresh_broker_bytes": rss_fresh,
            "create_secs": r3(create_secs),
            "empty": empty,
            "fill_one_record_each_secs": r3(fill_secs),
            "one_record_each": one_each,
            "rss_per_partition_bytes": per_part_rss.map(|x| x.round()),
            "rss_extrapolated_to_asked_bytes": (n < wanted)
                .then(|| per_part_rss.zip(rss_fresh).map(|(p, f)| (f as f64 + p * wanted as f64).round()))
                .flatten(),
            "broker_cpu_secs_total": cpu.map(r3),
        })
    }

    /// W5: fill, SIGKILL, time to serve; then SIGTERM, time to stop, time to serve.
    fn w5(&mut self, ratios: &Ratios) -> Value {
        if let Err(reason) = self.room_for(self.plan.w5_size) {
            return skipped(reason);
        }
        let b = match self.broker("w5") {
            Ok(b) => b,
            Err(e) => return self.fail("W5", &e),
        };
        let dir = b.data_dir.clone();
        let (size, parts) = (self.plan.w5_size, self.plan.partitions);
        let fill = match self.produce_measured("W5 fill", &b, "w5", size, parts, "1", ratios) {
            Ok(v) => v,
            Err(e) => {
                b.stop_and_remove();
                return self.fail("W5", &e);
            }
        };
        let parts = self.plan.partitions;
        let before = match end_offsets(&b.addr, "w5", parts, Duration::from_secs(30)) {
            Ok(o) => o,
            Err(e) => {
                b.stop_and_remove();
                return self.fail("W5", &e);
            }
        };
        let log_bytes = dir_bytes(&dir);
        let mut b = b;
        b.signal(libc::SIGKILL);
        let _ = b.child.wait();
        let log = self.plan.run_dir.join("broker-w5-after-kill.log");
        let (after_kill, b2) = match restart(&self.plan.runnel, &dir, &log, parts, &before) {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return self.fail("W5 after SIGKILL", &e);
            }
        };
        let t = Instant::now();
        let mut b2 = b2;
        b2.signal(libc::SIGTERM);
        let stop_status = b2.wait_exit(Duration::from_secs(600));
        let stop_secs = t.elapsed().as_secs_f64();
        let log = self.plan.run_dir.join("broker-w5-after-stop.log");
        let after_stop = match restart(&self.plan.runnel, &dir, &log, parts, &before) {
            Ok((v, b3)) => {
                b3.stop_and_remove();
                v
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return self.fail("W5 after a clean stop", &e);
            }
        };
        json!({
            "status": "ok",
            "log_bytes_on_disk": log_bytes,
            "fill": fill,
            "after_sigkill": after_kill,
            "clean_stop_secs": r3(stop_secs),
            "clean_stop_exit": stop_status,
            "after_clean_stop": after_stop,
            "note": "the log was written just before: its files are in the page cache",
        })
    }

    fn w1_large(&mut self, ratios: &Ratios) -> Value {
        let Some(size) = self.plan.large else {
            return skipped(self.plan.large_note.clone().unwrap_or_else(|| "off".into()));
        };
        if let Err(reason) = self.room_for(size) {
            return skipped(reason);
        }
        let b = match self.broker("w1-large") {
            Ok(b) => b,
            Err(e) => return self.fail("W1 large", &e),
        };
        let parts = self.plan.partitions;
        let v = match self.produce_measured(
            "W1 larger than memory",
            &b,
            "large",
            size,
            parts,
            "1",
            ratios,
        ) {
            Ok(mut v) => {
                v["memory_bytes"] = json!(meminfo_bytes("MemTotal"));
                v
            }
            Err(e) => self.fail("W1 large", &e),
        };
        let stop = b.stop_and_remove();
        let mut v = v;
        if v["status"] == "ok" {
            v["broker_stop_secs"] = json!(r3(stop));
        }
        v
    }

    /// An extra W1 (acks=1) then W2 on one broker under `perf record` (DWARF call graphs), with
    /// flat and inclusive reports of each phase; and the broker's CPU by thread.
    fn profile(&mut self) -> Value {
        let Some(perf) = which("perf") else {
            return skipped("Linux `perf` is not installed (apt-get install linux-perf)".into());
        };
        let size = self.plan.profile_size;
        if let Err(reason) = self.room_for(size) {
            return skipped(reason);
        }
        let b = match self.broker("profile") {
            Ok(b) => b,
            Err(e) => return self.fail("profile", &e),
        };
        if let Err(e) = self.create_topic("profile", &b.addr, "w1", self.plan.partitions) {
            return self.fail("profile", &e);
        }
        // As in W2: the consumer's first FindCoordinator creates __consumer_offsets; not profiled.
        let warm: Vec<String> = ["consume", "w1", "-d", "1s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let _ = self.perf("profile warm-up", &b.addr, &warm);
        let mut phases = serde_json::Map::new();
        let records = size / self.plan.record_size as u64;
        let produce = self.produce_args("w1", size, self.plan.partitions, "1");
        let consume: Vec<String> = ["consume", "w1", "-n", &records.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (phase, args) in [("w1_acks_1", produce), ("w2_catch_up", consume)] {
            let data = self.plan.run_dir.join(format!("{phase}.perf.data"));
            let rec = Command::new(&perf)
                .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-p"])
                .arg(b.pid.to_string())
                .arg("-o")
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut rec = match rec {
                Ok(c) => c,
                Err(e) => {
                    phases.insert(phase.into(), failed("perf record", &e.to_string()));
                    continue;
                }
            };
            std::thread::sleep(Duration::from_millis(500));
            let threads_before = procstat::thread_ticks(b.pid);
            let cpu0 = procstat::cpu_secs(b.pid).unwrap_or(0.0);
            let t = Instant::now();
            let r = self.perf(&format!("profile {phase}"), &b.addr, &args);
            let secs = t.elapsed().as_secs_f64();
            let cpu = procstat::cpu_secs(b.pid).unwrap_or(0.0) - cpu0;
            let threads =
                procstat::thread_cpu_delta(&threads_before, &procstat::thread_ticks(b.pid));
            // SAFETY: kill(2) on the pid of our own child.
            unsafe {
                libc::kill(rec.id() as i32, libc::SIGINT);
            }
            let _ = rec.wait();
            let mut v = json!({
                "status": if r.is_ok() { "ok" } else { "failed" },
                "error": r.as_ref().err(),
                "secs": r3(secs),
                "mb_per_sec": r.as_ref().ok().and_then(|r| r["mb_per_sec"].as_f64()).map(|m| r3(m * 1.048576)),
                "broker_cpu_secs": r3(cpu),
                "broker_threads_cpu_secs": threads_json(&threads),
                "perf_data": data.display().to_string(),
            });
            let report = |extra: &[&str]| -> String {
                let mut cmd = Command::new(&perf);
                cmd.args(["report", "--stdio", "-i"]).arg(&data).args(extra);
                match cmd.stderr(Stdio::null()).output() {
                    Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
                    Err(e) => format!("perf report failed: {e}"),
                }
            };
            let flat = report(&[
                "--no-children",
                "--sort",
                "dso,symbol",
                "-g",
                "none",
                "--percent-limit",
                "0.7",
            ]);
            let incl = report(&[
                "--children",
                "--sort",
                "symbol",
                "-g",
                "none",
                "--percent-limit",
                "4",
            ]);
            let by_thread = report(&["--no-children", "--sort", "comm", "-g", "none"]);
            let _ = std::fs::write(self.plan.run_dir.join(format!("{phase}.flat.txt")), &flat);
            let _ = std::fs::write(
                self.plan.run_dir.join(format!("{phase}.inclusive.txt")),
                &incl,
            );
            v["self_top"] = json!(table_lines(&flat, 30));
            v["inclusive_top"] = json!(table_lines(&incl, 40));
            v["by_thread"] = json!(table_lines(&by_thread, 10));
            phases.insert(phase.into(), v);
        }
        b.stop_and_remove();
        json!({
            "status": "ok",
            "bytes": size,
            "command": "perf record -F 999 --call-graph dwarf,16384 -p <broker pid>; perf report --stdio --no-children --sort dso,symbol -g none (self) and --children --sort symbol (inclusive)",
            "phases": Value::Object(phases),
        })
    }
}

/// The sample lines of a `perf report --stdio` table (no comments, no blank lines).
fn table_lines(text: &str, n: usize) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('%'))
        .map(|l| {
            // Drop the padding and the empty trailing columns perf prints.
            let mut t = l.trim_end();
            while let Some(x) = t.strip_suffix('-') {
                t = x.trim_end();
            }
            let mut out = String::new();
            for (i, w) in t.split("   ").filter(|w| !w.trim().is_empty()).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(if i == 0 { w.trim_end() } else { w.trim() });
            }
            out
        })
        .take(n)
        .collect()
}

fn threads_json(t: &[(String, f64)]) -> Value {
    Value::Array(
        t.iter()
            .filter(|(_, s)| *s > 0.0)
            .map(|(n, s)| json!([n, r3(*s)]))
            .collect(),
    )
}

/// What the broker spent during one workload.
struct BrokerFigures {
    cpu_secs: f64,
    peak_rss: Option<u64>,
    peak_rss_reset: bool,
    max_sampled_rss: u64,
    machine_busy_secs: Option<f64>,
    wall_secs: f64,
    threads: Vec<(String, f64)>,
}

impl BrokerFigures {
    fn add_to(&self, v: &mut Value, bytes: u64, client_cpu: Option<f64>) {
        let gib = bytes as f64 / GIB;
        v["broker"] = json!({
            "cpu_secs": r3(self.cpu_secs),
            "cpu_secs_per_gib": (gib > 0.0).then(|| r3(self.cpu_secs / gib)),
            "peak_rss_bytes": self.peak_rss,
            "peak_rss_is_since": if self.peak_rss_reset { "start of workload (clear_refs)" } else { "start of broker" },
            "max_sampled_rss_bytes": self.max_sampled_rss,
            "threads_cpu_secs": threads_json(&self.threads),
        });
        v["client_cpu_secs_per_gib"] = json!(client_cpu.filter(|_| gib > 0.0).map(|c| r3(c / gib)));
        // The whole machine's busy CPU time over the same wall time: what neither the broker nor
        // the load generator used was someone else's (noise).
        v["machine"] = json!({
            "wall_secs": r3(self.wall_secs),
            "busy_cpu_secs": self.machine_busy_secs.map(r3),
            "other_cpu_secs": self.machine_busy_secs.map(|m| r3((m - self.cpu_secs - client_cpu.unwrap_or(0.0)).max(0.0))),
        });
    }
}

/// Samples a broker's RSS while a workload runs; CPU from the stat files at both ends.
struct Probe {
    pid: u32,
    cpu0: f64,
    busy0: Option<f64>,
    threads0: BTreeMap<u32, (String, u64)>,
    start: Instant,
    reset: bool,
    stop: Arc<AtomicBool>,
    max_rss: Arc<AtomicU64>,
    sampler: std::thread::JoinHandle<()>,
}

impl Probe {
    fn start(pid: u32) -> Probe {
        let reset = procstat::reset_peak_rss(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let max_rss = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max_rss.clone());
        let sampler = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = procstat::status_bytes(pid, "VmRSS") {
                    m.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Probe {
            pid,
            cpu0: procstat::cpu_secs(pid).unwrap_or(0.0),
            busy0: machine_busy_secs(),
            threads0: procstat::thread_ticks(pid),
            start: Instant::now(),
            reset,
            stop,
            max_rss,
            sampler,
        }
    }

    fn finish(self) -> BrokerFigures {
        let cpu = procstat::cpu_secs(self.pid).unwrap_or(0.0) - self.cpu0;
        let busy = match (machine_busy_secs(), self.busy0) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let threads = procstat::thread_cpu_delta(&self.threads0, &procstat::thread_ticks(self.pid));
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.join();
        BrokerFigures {
            cpu_secs: cpu,
            peak_rss: procstat::status_bytes(self.pid, "VmHWM"),
            peak_rss_reset: self.reset,
            max_sampled_rss: self.max_rss.load(Ordering::Relaxed),
            machine_busy_secs: busy,
            wall_secs: self.start.elapsed().as_secs_f64(),
            threads,
        }
    }
}

/// Busy CPU seconds of the whole machine so far (all of `/proc/stat`'s `cpu` line but idle and
/// iowait).
fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum();
    Some(busy as f64 / procstat::clock_ticks_per_sec())
}

fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .ok()
}

/// A broker's memory after it has rested.
fn rest_memory(pid: u32) -> Value {
    let fds = open_files(pid);
    json!({
        "rss_bytes": procstat::status_bytes(pid, "VmRSS"),
        "peak_rss_bytes": procstat::status_bytes(pid, "VmHWM"),
        "open_files": fds,
        "threads": procstat::thread_ticks(pid).len(),
    })
}

/// A `runnel serve` child on a fresh port; SIGKILLed on drop if still running.
struct BrokerProc {
    child: Child,
    pid: u32,
    addr: String,
    data_dir: PathBuf,
    /// From spawn to the TCP port accepting a connection.
    port_open: Duration,
    /// From spawn to the "runnel ready" log line.
    ready: Duration,
}

impl BrokerProc {
    fn start(runnel: &Path, data_dir: &Path, log: &Path) -> Result<BrokerProc, String> {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| format!("no free port: {e}"))?;
            match Self::spawn(runnel, data_dir, log, port, Duration::from_secs(900)) {
                Ok(b) => return Ok(b),
                Err((e, retry)) => {
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// Err((message, whether another port may help)).
    fn spawn(
        runnel: &Path,
        data_dir: &Path,
        log: &Path,
        port: u16,
        limit: Duration,
    ) -> Result<BrokerProc, (String, bool)> {
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(runnel);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &addr])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| (format!("cannot start {}: {e}", runnel.display()), false))?;
        let stderr = child.stderr.take().expect("piped");
        let mut file = File::create(log)
            .map_err(|e| (format!("cannot create {}: {e}", log.display()), false))?;
        let (tx, rx) = mpsc::channel::<Instant>();
        // Copies the log for the life of the broker (a full pipe would block it).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("runnel ready") {
                    let _ = tx.send(Instant::now());
                }
                let _ = writeln!(file, "{line}");
            }
        });
        let mut port_open: Option<Duration> = None;
        let ready = loop {
            if let Ok(at) = rx.try_recv() {
                break at - t0;
            }
            if port_open.is_none()
                && TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(50))
                    .is_ok()
            {
                port_open = Some(t0.elapsed());
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let in_use = text.contains("in use");
                return Err((
                    format!(
                        "the broker exited ({status}) before it was ready: {}",
                        text.trim()
                    ),
                    in_use,
                ));
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err((format!("the broker was not ready after {limit:?}"), false));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let port_open = match port_open {
            Some(p) => p,
            None => {
                while TcpStream::connect(&addr).is_err() {
                    if t0.elapsed() > limit {
                        let _ = child.kill();
                        return Err(("the broker's port never answered".into(), false));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                t0.elapsed()
            }
        };
        eprintln!(
            "runnel bench: broker {} ready after {:.2} s on {addr}",
            child.id(),
            ready.as_secs_f64()
        );
        Ok(BrokerProc {
            pid: child.id(),
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            port_open,
            ready,
        })
    }

    fn signal(&mut self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe {
            libc::kill(self.pid as i32, sig);
        }
    }

    /// Waits for the exit, SIGKILL after `limit`; the exit status as text.
    fn wait_exit(&mut self, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return s.to_string(),
                Ok(None) if t.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return format!("killed after {limit:?}");
                }
            }
        }
    }

    /// SIGTERM, wait, remove the data directory.
    /// SIGTERM, wait for the exit, remove the data directory; the seconds from the signal to
    /// the exit (a clean shutdown flushes every partition).
    fn stop_and_remove(mut self) -> f64 {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(600));
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&self.data_dir);
        eprintln!("runnel bench: broker stopped in {secs:.2} s, data removed");
        secs
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The broker dies with the suite (PR_SET_PDEATHSIG).
/// Also lifts its open-files limit as high as allowed (`fs.nr_open` for root, else the hard
/// limit), as a Kafka deployment would: every partition keeps three files open.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let nr_open: libc::rlim_t = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: prctl, getrlimit and setrlimit are async-signal-safe system calls; nothing else
    // runs between fork and exec here.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let mut lim = libc::rlimit {
                rlim_cur: nr_open,
                rlim_max: nr_open,
            };
            if (nr_open == 0 || libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0)
                && libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0
            {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
}

/// The soft open-files limit of `pid` (`/proc/<pid>/limits`).
fn open_files_limit(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn conn_to(addr: &str, timeout: Duration) -> ConnArgs {
    ConnArgs {
        brokers: addr.to_string(),
        timeout,
        properties: vec![
            // Retry a refused connection at once rather than after librdkafka's back-off.
            "reconnect.backoff.ms=5".into(),
            "reconnect.backoff.max.ms=50".into(),
        ],
        output: Format::Json,
    }
}

/// The log end offset of each partition of `topic`; retries until `limit` (a broker that is
/// still loading may time requests out).
fn end_offsets(addr: &str, topic: &str, parts: i32, limit: Duration) -> Result<Vec<i64>, String> {
    let t = Instant::now();
    let per_request = limit.min(Duration::from_secs(30));
    let conn = conn_to(addr, per_request);
    let c = conn.consumer(None, &[]).map_err(|e| e.message)?;
    let mut out = Vec::with_capacity(parts as usize);
    for p in 0..parts {
        loop {
            match c.fetch_watermarks(topic, p, per_request) {
                Ok((_, high)) => {
                    out.push(high);
                    break;
                }
                Err(e) if t.elapsed() >= limit => {
                    return Err(format!("ListOffsets of {topic}-{p}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    Ok(out)
}

/// Starts a broker on `dir` and measures the time until it serves: its port accepts, it logs
/// that it is ready, and it answers ListOffsets for every partition with the offsets of before.
fn restart(
    runnel: &Path,
    dir: &Path,
    log: &Path,
    parts: i32,
    expected: &[i64],
) -> Result<(Value, BrokerProc), String> {
    let t0 = Instant::now();
    let b = BrokerProc::start(runnel, dir, log)?;
    let offsets = end_offsets(&b.addr, "w5", parts, Duration::from_secs(600))?;
    let serving = t0.elapsed();
    Ok((
        json!({
            "port_open_secs": r3(b.port_open.as_secs_f64()),
            "ready_line_secs": r3(b.ready.as_secs_f64()),
            "serving_secs": r3(serving.as_secs_f64()),
            "offsets_preserved": offsets == expected,
            "end_offsets": offsets,
            "definition": "from spawning `runnel serve` to ListOffsets answered for every partition",
        }),
        b,
    ))
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Writes `bytes` bytes to `w`, `buf` (or the start of it) at a time.
fn write_bytes(w: &mut impl Write, buf: &[u8], bytes: u64) -> std::io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Seconds to write `bytes` to a new file in `dir` (1 MiB writes) and fsync it.
fn disk_write(dir: &Path, bytes: u64) -> std::io::Result<f64> {
    let path = dir.join(format!("runnel-bench-disk-{}.tmp", std::process::id()));
    let mut buf = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let result = (|| {
        let mut f = File::create(&path)?;
        let t = Instant::now();
        write_bytes(&mut f, &buf, bytes)?;
        f.sync_all()?;
        Ok(t.elapsed().as_secs_f64())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Accepts one connection and reads it to its end: the bytes read.
fn drain_connection(listener: TcpListener) -> std::io::Result<u64> {
    let (mut s, _) = listener.accept()?;
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Seconds to send `bytes` over one loopback TCP connection until the reader has them all.
fn loopback(bytes: u64) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // Connected before the reading thread starts, so that a failed connect leaves no thread
    // waiting in accept.
    let mut s = TcpStream::connect(addr)?;
    let reader = std::thread::spawn(move || drain_connection(listener));
    let buf = vec![0x5Au8; MIB as usize];
    let t = Instant::now();
    write_bytes(&mut s, &buf, bytes)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let got = reader
        .join()
        .map_err(|_| std::io::Error::other("reader panicked"))??;
    let secs = t.elapsed().as_secs_f64();
    if got != bytes {
        return Err(std::io::Error::other(format!(
            "sent {bytes}, received {got}"
        )));
    }
    Ok(secs)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed statvfs for the call to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn meminfo_bytes(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}

fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| [v[0], v[1], v[2]])
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The mount that holds `dir`: (device, file system type, mount point).
fn mount_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let text = std::fs::read_to_string("/proc/mounts").ok()?;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[0].to_string(), f[2].to_string(), f[1].to_string()))
        })
        .max_by_key(|(_, _, m)| m.len())
}

fn machine_json(data_root: &Path, load_start: Option<[f64; 3]>, free_start: Option<u64>) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| {
        l.strip_prefix("model name")
            .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    let mount = mount_of(data_root);
    json!({
        "cpu_model": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_bytes": meminfo_bytes("MemTotal"),
        "kernel": kernel,
        "data_root": data_root.display().to_string(),
        "data_root_device": mount.as_ref().map(|m| m.0.clone()),
        "data_root_fs": mount.as_ref().map(|m| m.1.clone()),
        "data_root_free_bytes_at_start": free_start,
        "load_average_at_start": load_start,
        "load_average_at_end": loadavg(),
    })
}

// ---------------------------------------------------------------- targets and the report

/// The issue's targets next to what this run measured.
fn targets(r: &Value) -> Value {
    let w = &r["workloads"];
    let cfg = &r["config"];
    let w1_bytes = cfg["w1_bytes"].as_u64().unwrap_or(0);
    let small = w1_bytes < (4u64 << 30);
    let size_note = |ok: bool| {
        if ok {
            Value::Null
        } else {
            json!(format!(
                "run at {}, the target is for 4 GiB",
                human_bytes(w1_bytes)
            ))
        }
    };
    let bare = &r["baselines"];
    let notes_value = |notes: Vec<String>| {
        if notes.is_empty() {
            Value::Null
        } else {
            json!(notes.join("; "))
        }
    };
    // The broker's CPU per GiB beside the bare loop of the same run (bench::bare), and the
    // bare loops that leave the page cache out (`others`: report key and label).
    let bare_note = |size_ok: bool, broker: &Value, loop_key: &str, others: &[(&str, &str)]| {
        let mut notes = Vec::new();
        if let Value::String(n) = size_note(size_ok) {
            notes.push(n);
        }
        if let Some(l) = bare[loop_key]["cpu_secs_per_gib"].as_f64() {
            // A loop too short for the clock's resolution measures 0: no ratio then (nor
            // without the broker's figure).
            let ratio = match broker.as_f64() {
                Some(b) if l > 0.0 => format!(" (broker ÷ bare loop {:.2})", b / l),
                _ => String::new(),
            };
            notes.push(format!(
                "the bare loop of this run: {l:.2} core-s/GiB{ratio}"
            ));
        }
        for (key, label) in others {
            if let Some(l) = bare[*key]["cpu_secs_per_gib"].as_f64() {
                notes.push(format!("{label}: {l:.2} core-s/GiB"));
            }
        }
        notes_value(notes)
    };
    // How busy the machine's cores were during a throughput run, and who used them: with the
    // load generator on the same cores, a broker that cost nothing would still leave the
    // client's and the kernel's share.
    let cpus = r["machine"]["cpus"].as_u64().unwrap_or(0);
    let cores_note = |size_ok: bool, v: &Value, ceiling_key: &str| {
        let mut notes = Vec::new();
        if let Value::String(n) = size_note(size_ok) {
            notes.push(n);
        }
        let m = &v["machine"];
        let gib = v["bytes"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64;
        if let (Some(busy), Some(wall), Some(client), Some(broker), Some(other)) = (
            m["busy_cpu_secs"].as_f64(),
            m["wall_secs"].as_f64(),
            v["client_cpu_secs_per_gib"].as_f64(),
            v["broker"]["cpu_secs_per_gib"].as_f64(),
            m["other_cpu_secs"].as_f64(),
        ) {
            if wall > 0.0 && gib > 0.0 {
                notes.push(format!(
                    "{:.2} of {cpus} cores busy; per GiB: client {client:.2}, broker {broker:.2}, \
                     other {:.2} core-s",
                    busy / wall,
                    other / gib
                ));
            }
        }
        // The same client against a broker that does next to nothing (bench::null_broker).
        let c = &bare[ceiling_key];
        if let (Some(mbps), Some(client)) = (
            c["mb_per_sec"].as_f64(),
            c["client_cpu_secs_per_gib"].as_f64(),
        ) {
            notes.push(format!(
                "the load generator alone (null broker): {mbps:.0} MB/s at {client:.2} client \
                 core-s/GiB"
            ));
        }
        notes_value(notes)
    };
    let mut t = Vec::new();
    let mut add = |id: &str,
                   what: &str,
                   measured: Option<f64>,
                   unit: &str,
                   min: Option<f64>,
                   max: Option<f64>,
                   note: Value| {
        let met = measured.map(|m| min.is_none_or(|b| b <= m) && max.is_none_or(|b| b >= m));
        t.push(json!({
            "id": id,
            "target": what,
            "measured": measured.map(r3),
            "unit": unit,
            "met": met,
            "note": note,
        }));
    };
    add(
        "w1_mbps",
        "W1 acks=1 >= 700 MB/s",
        w["w1_acks_1"]["mb_per_sec"].as_f64(),
        "MB/s",
        Some(700.0),
        None,
        cores_note(!small, &w["w1_acks_1"], "client_ceiling_produce"),
    );
    add(
        "w1_cpu",
        "W1 acks=1 <= 0.5 broker core-s/GiB",
        w["w1_acks_1"]["broker"]["cpu_secs_per_gib"].as_f64(),
        "core-s/GiB",
        None,
        Some(0.5),
        bare_note(
            !small,
            &w["w1_acks_1"]["broker"]["cpu_secs_per_gib"],
            "produce_bare_loop",
            &[
                (
                    "produce_direct_bare_loop",
                    "without the page cache (O_DIRECT)",
                ),
                ("produce_direct_floor_bare_loop", "O_DIRECT's floor"),
            ],
        ),
    );
    add(
        "w1_large",
        "W1 larger than memory >= 90% of disk bandwidth",
        w["w1_large"]["ratio_to_disk"].as_f64(),
        "ratio",
        Some(0.9),
        None,
        json!(w["w1_large"]["reason"]),
    );
    add(
        "w2_mbps",
        "W2 >= 1.5 GB/s (1500 MB/s)",
        w["w2_catch_up"]["mb_per_sec"].as_f64(),
        "MB/s",
        Some(1500.0),
        None,
        cores_note(!small, &w["w2_catch_up"], "client_ceiling_consume"),
    );
    add(
        "w2_cpu",
        "W2 <= 0.3 broker core-s/GiB",
        w["w2_catch_up"]["broker"]["cpu_secs_per_gib"].as_f64(),
        "core-s/GiB",
        None,
        Some(0.3),
        bare_note(
            !small,
            &w["w2_catch_up"]["broker"]["cpu_secs_per_gib"],
            "fetch_bare_loop",
            &[
                (
                    "fetch_pinned_bare_loop",
                    "from a pinned mapping (no copy to user memory)",
                ),
                (
                    "fetch_mapped_bare_loop",
                    "from a mapping, unpinned (unsafe)",
                ),
            ],
        ),
    );
    let w3 = w["w3_latency"]["runs"]
        .get(0)
        .cloned()
        .unwrap_or(Value::Null);
    add(
        "w3_p99",
        "W3 at 20,000/s: p99 <= 5 ms",
        w3["latency_ms"]["p99"].as_f64(),
        "ms",
        None,
        Some(5.0),
        Value::Null,
    );
    add(
        "w3_p999",
        "W3 at 20,000/s: p99.9 <= 20 ms",
        w3["latency_ms"]["p99_9"].as_f64(),
        "ms",
        None,
        Some(20.0),
        Value::Null,
    );
    add(
        "w4_ratio",
        "W4 1,000 partitions >= 70% of W1",
        w["w4_partitions"]["ratio_to_w1"].as_f64(),
        "ratio",
        Some(0.7),
        None,
        size_note(!small),
    );
    add(
        "w4_idle",
        "10,000 idle partitions < 200 MB RSS",
        w["w4_idle"]["rss_extrapolated_to_asked_bytes"]
            .as_f64()
            .or(w["w4_idle"]["one_record_each"]["rss_bytes"].as_f64())
            .map(|b| b / 1e6),
        "MB",
        None,
        Some(200.0),
        match w["w4_idle"]["reduced"].as_str() {
            Some(_) => json!(format!(
                "EXTRAPOLATED from {} partitions (the open-files limit): RSS after one record in each partition and a rest",
                w["w4_idle"]["partitions"]
            )),
            None => json!("RSS after one record in each partition and a rest"),
        },
    );
    let w5_note = |b: &Value| -> Value {
        match b["log_bytes_on_disk"].as_u64() {
            Some(n) if n < (10u64 << 30) => json!(format!(
                "{} in the log, the target is for 10 GiB",
                human_bytes(n)
            )),
            _ => json!(b["reason"]),
        }
    };
    add(
        "w5_clean",
        "W5 serving within 1 s after a clean stop",
        w["w5_restart"]["after_clean_stop"]["serving_secs"].as_f64(),
        "s",
        None,
        Some(1.0),
        w5_note(&w["w5_restart"]),
    );
    add(
        "w5_kill",
        "W5 serving within 10 s after SIGKILL (10 GiB)",
        w["w5_restart"]["after_sigkill"]["serving_secs"].as_f64(),
        "s",
        None,
        Some(10.0),
        w5_note(&w["w5_restart"]),
    );
    Value::Array(t)
}

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    }
}

fn bytes_cell(v: &Value) -> String {
    v.as_u64().map(human_bytes).unwrap_or_else(|| "–".into())
}

fn mb_cell(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.0} MB", b as f64 / 1e6))
        .unwrap_or_else(|| "–".into())
}

/// From `perf e2e`'s `end_to_end_by_second`: the seconds (since the run's start) in which a
/// record took more than 20 ms, each with its slowest record's milliseconds.
fn slow_seconds(by_second: &Value) -> Value {
    by_second
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["max_ms"].as_f64().is_some_and(|m| m > 20.0))
        .map(|s| json!({"second": s["second"], "max_ms": s["max_ms"]}))
        .collect()
}

/// "none", or the slow seconds as `s32 (546 ms)`, the first eight of them.
fn slow_seconds_cell(slow: &Value) -> String {
    let Some(seconds) = slow.as_array() else {
        return "–".into();
    };
    if seconds.is_empty() {
        return "none".into();
    }
    let mut cell = seconds
        .iter()
        .take(8)
        .map(|s| format!("s{} ({} ms)", s["second"], f(&s["max_ms"], 0)))
        .collect::<Vec<_>>()
        .join(", ");
    if seconds.len() > 8 {
        cell += &format!(" and {} more", seconds.len() - 8);
    }
    cell
}

fn status_cell(v: &Value) -> Option<String> {
    match v["status"].as_str() {
        Some("ok") => None,
        Some("skipped") => Some(format!("skipped: {}", v["reason"].as_str().unwrap_or(""))),
        Some("failed") => Some(format!("FAILED: {}", v["error"].as_str().unwrap_or(""))),
        _ => Some("not run".into()),
    }
}

/// Table rows (bytes, seconds, MB/s, and with `cpu` core-s/GiB) of the baselines `rows` names.
fn baseline_rows(b: &Value, rows: &[(&str, &str)], cpu: bool) -> String {
    let mut s = String::new();
    for (name, key) in rows {
        let v = &b[*key];
        let cpu_cell = |text: String| {
            if cpu {
                format!(" {text} |")
            } else {
                String::new()
            }
        };
        match status_cell(v) {
            None => {
                s += &format!(
                    "| {name} | {} | {} | {} |{}\n",
                    bytes_cell(&v["bytes"]),
                    f(&v["secs"], 2),
                    f(&v["mb_per_sec"], 0),
                    cpu_cell(f(&v["cpu_secs_per_gib"], 2))
                )
            }
            Some(st) => s += &format!("| {name} | {st} | | |{}\n", cpu_cell(String::new())),
        }
    }
    s
}

/// `runnel perf consume` arguments of W2: `records` from the beginning of `topic`.
fn consume_args(topic: &str, records: u64) -> Vec<String> {
    [
        "consume",
        topic,
        "-n",
        &records.to_string(),
        "--idle-timeout",
        "30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The table of the load generator's runs against the null broker, if the run made them.
fn ceiling_rows(b: &Value) -> String {
    let rows = [
        ("W1's producer (acks=1)", "client_ceiling_produce"),
        ("W2's consumer", "client_ceiling_consume"),
    ];
    if rows.iter().all(|(_, k)| b[*k].is_null()) {
        return String::new();
    }
    let mut s = "\nThe load generator alone, in the same run: W1's producer and W2's consumer, in W1's \
                 shape and size, against a broker that does next to nothing (`bench::null_broker`: \
                 requests decoded and answered, records neither checked nor kept, Fetch answered \
                 from one batch with vectored writes). What the client reaches here bounds what it \
                 can reach against any broker on the same cores:\n\n\
                 | run | values | seconds | MB/s | client core-s/GiB | null broker core-s/GiB | cores busy |\n\
                 | --- | --- | --- | --- | --- | --- | --- |\n"
        .to_string();
    for (name, key) in rows {
        let v = &b[key];
        match status_cell(v) {
            None => {
                s += &format!(
                    "| {name} | {} | {} | {} | {} | {} | {} |\n",
                    bytes_cell(&v["bytes"]),
                    f(&v["secs"], 2),
                    f(&v["mb_per_sec"], 0),
                    f(&v["client_cpu_secs_per_gib"], 2),
                    f(&v["null_broker_cpu_secs_per_gib"], 2),
                    f(&v["cores_busy"], 2),
                )
            }
            Some(st) => s += &format!("| {name} | {st} | | | | | |\n"),
        }
    }
    s
}

fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let w = &r["workloads"];
    let b = &r["baselines"];
    let la = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(|x| f(x, 2)).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|| "–".into())
    };
    s += &format!(
        "### Report {} ({} mode)\n\n",
        r["started_at"].as_str().unwrap_or(""),
        r["mode"].as_str().unwrap_or("")
    );
    if let Some(n) = r["note"].as_str() {
        s += &format!("> {n}\n\n");
    }
    s += "Machine and run:\n\n| | |\n| --- | --- |\n";
    s += &format!(
        "| CPU | {} × {} |\n| memory | {} |\n| kernel | {} |\n| data root | `{}` on {} ({}), {} free at start |\n| load average (1, 5, 15 min) | at start {}; at end {} |\n| source | {} |\n| run | {} → {} |\n\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        bytes_cell(&m["memory_bytes"]),
        m["kernel"].as_str().unwrap_or("?"),
        m["data_root"].as_str().unwrap_or("?"),
        m["data_root_device"].as_str().unwrap_or("?"),
        m["data_root_fs"].as_str().unwrap_or("?"),
        bytes_cell(&m["data_root_free_bytes_at_start"]),
        la(&m["load_average_at_start"]),
        la(&m["load_average_at_end"]),
        r["source"].as_str().unwrap_or("not given"),
        r["started_at"].as_str().unwrap_or(""),
        r["finished_at"].as_str().unwrap_or(""),
    );
    s += "Baselines, measured in the same run (MB = 10⁶ bytes):\n\n| | bytes | seconds | MB/s |\n| --- | --- | --- | --- |\n";
    s += &baseline_rows(
        b,
        &[
            ("sequential disk write, fsync at the end", "disk_write"),
            ("loopback TCP, one connection", "loopback_tcp"),
        ],
        false,
    );
    s += "\nBare loops, in the same run: the work a validating broker cannot leave out, with nothing \
          around it (`bench::bare`; CPU of the threads doing the broker's part):\n\n\
          | bare loop | bytes | seconds | MB/s | core-s/GiB |\n| --- | --- | --- | --- | --- |\n";
    s += &baseline_rows(
        b,
        &[
            (
                "produce: loopback receive, CRC-32C, pwrite through the page cache, writeback hint",
                "produce_bare_loop",
            ),
            (
                "produce with O_DIRECT: loopback receive, CRC-32C, copy into aligned buffers, 4 writers",
                "produce_direct_bare_loop",
            ),
            (
                "produce with O_DIRECT, floor: received straight into aligned buffers (no copy)",
                "produce_direct_floor_bare_loop",
            ),
            (
                "fetch: pread from the page cache, CRC-32C, loopback send",
                "fetch_bare_loop",
            ),
            (
                "fetch from a mapping: CRC-32C in the page cache, send from it (unsafe for a broker)",
                "fetch_mapped_bare_loop",
            ),
            (
                "fetch from a mapping pinned with mlock from the check to the send",
                "fetch_pinned_bare_loop",
            ),
        ],
        true,
    );
    s += &ceiling_rows(b);
    s += "\nThroughput (values only, MB = 10⁶ bytes; CPU in core-seconds per GiB of values moved; \
          peak RSS = VmHWM since the workload's start; other CPU = the machine's busy time \
          not used by the broker or the load generator):\n\n\
          | workload | values | MB/s | records/s | ÷ disk | ÷ loopback | broker core-s/GiB | broker peak RSS | client core-s/GiB | other CPU s | broker stop s |\n\
          | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
    let rows = [
        ("W1 produce, acks=1, 8 partitions", &w["w1_acks_1"]),
        ("W1 produce, acks=all, 8 partitions", &w["w1_acks_all"]),
        ("W1 produce, larger than memory", &w["w1_large"]),
        ("W2 catch-up read of W1 (acks=1)", &w["w2_catch_up"]),
        (
            "W4 produce, 1,000 partitions round-robin",
            &w["w4_partitions"],
        ),
        ("W5 fill (acks=1)", &w["w5_restart"]["fill"]),
    ];
    for (name, v) in rows {
        if v.is_null() {
            continue;
        }
        match status_cell(v) {
            None => {
                s += &format!(
                    "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    bytes_cell(&v["bytes"]),
                    f(&v["mb_per_sec"], 0),
                    f(&v["records_per_sec"], 0),
                    f(&v["ratio_to_disk"], 2),
                    f(&v["ratio_to_loopback"], 3),
                    f(&v["broker"]["cpu_secs_per_gib"], 2),
                    mb_cell(&v["broker"]["peak_rss_bytes"]),
                    f(&v["client_cpu_secs_per_gib"], 2),
                    f(&v["machine"]["other_cpu_secs"], 1),
                    f(&v["broker_stop_secs"], 2),
                )
            }
            Some(st) => s += &format!("| {name} | {st} | | | | | | | | | |\n"),
        }
    }
    if let Some(x) = w["w4_partitions"]["ratio_to_w1"].as_f64() {
        s += &format!("\nW4 ÷ W1 (acks=1): {x:.2}.\n");
    }
    let w3 = &w["w3_latency"];
    if !w3.is_null() {
        s += &format!(
            "\nW3 end-to-end latency, from the produce call to the consumer's receipt, in one process \
             (acks={}, linger {} ms, {} partitions, 1 KiB records; ms):\n\n\
             | rate | achieved records/s | records | p50 | p99 | p99.9 | max | seconds with a record over 20 ms | broker core-s/GiB | broker peak RSS |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            w3["acks"].as_str().unwrap_or("?"),
            f(&w3["linger_ms"], 0),
            r["config"]["partitions"]
        );
        for run in w3["runs"].as_array().into_iter().flatten() {
            let label = run["label"].as_str().unwrap_or("?");
            match status_cell(run) {
                None => {
                    s += &format!(
                        "| {label} ({}/s) | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        run["target_rate"],
                        f(&run["achieved_rate"], 0),
                        run["records_received"],
                        f(&run["latency_ms"]["p50"], 2),
                        f(&run["latency_ms"]["p99"], 2),
                        f(&run["latency_ms"]["p99_9"], 2),
                        f(&run["latency_ms"]["max"], 2),
                        slow_seconds_cell(&run["slow_seconds"]),
                        f(&run["broker"]["cpu_secs_per_gib"], 2),
                        mb_cell(&run["broker"]["peak_rss_bytes"]),
                    )
                }
                Some(st) => s += &format!("| {label} | {st} | | | | | | | | |\n"),
            }
        }
    }
    let idle = &w["w4_idle"];
    if !idle.is_null() {
        s += "\nW4 at rest: broker memory with many partitions, after a rest of the configured time:\n\n";
        match status_cell(idle) {
            None => {
                s += &format!(
                    "| partitions | broker RSS fresh | create topic | RSS, empty | RSS, one record each | peak RSS | open files | limit |\n\
                     | --- | --- | --- | --- | --- | --- | --- | --- |\n\
                     | {} | {} | {} s | {} | {} | {} | {} | {} |\n",
                    idle["partitions"],
                    mb_cell(&idle["rss_fresh_broker_bytes"]),
                    f(&idle["create_secs"], 2),
                    mb_cell(&idle["empty"]["rss_bytes"]),
                    mb_cell(&idle["one_record_each"]["rss_bytes"]),
                    mb_cell(&idle["one_record_each"]["peak_rss_bytes"]),
                    idle["one_record_each"]["open_files"],
                    idle["broker_open_files_limit"],
                );
                if let Some(r) = idle["reduced"].as_str() {
                    s += &format!(
                        "\nRun with {r}. Per partition: {} of RSS; at {} partitions that would be \
                         {} (extrapolated, not measured).\n",
                        bytes_cell(&json!(idle["rss_per_partition_bytes"]
                            .as_f64()
                            .map(|x| x as u64))),
                        idle["partitions_asked"],
                        mb_cell(&json!(idle["rss_extrapolated_to_asked_bytes"]
                            .as_f64()
                            .map(|x| x as u64))),
                    );
                }
            }
            Some(st) => s += &format!("{st}\n"),
        }
    }
    let w5 = &w["w5_restart"];
    if !w5.is_null() {
        s += "\nW5 restart: seconds from spawning `runnel serve` on the data directory to each step; \
              serving = ListOffsets answered for every partition:\n\n";
        match status_cell(w5) {
            None => {
                s += &format!(
                    "Log on disk: {}; clean stop (SIGTERM to exit) took {} s.\n\n\
                     | after | port open | ready line | serving | offsets preserved |\n| --- | --- | --- | --- | --- |\n",
                    bytes_cell(&w5["log_bytes_on_disk"]),
                    f(&w5["clean_stop_secs"], 2)
                );
                for (name, key) in [
                    ("SIGKILL", "after_sigkill"),
                    ("clean stop", "after_clean_stop"),
                ] {
                    let v = &w5[key];
                    s += &format!(
                        "| {name} | {} | {} | {} | {} |\n",
                        f(&v["port_open_secs"], 3),
                        f(&v["ready_line_secs"], 3),
                        f(&v["serving_secs"], 3),
                        v["offsets_preserved"]
                    );
                }
            }
            Some(st) => s += &format!("{st}\n"),
        }
    }
    s += "\nTargets of the issue (2 cores shared by broker and load generator, loopback):\n\n\
          | target | measured | met | note |\n| --- | --- | --- | --- |\n";
    for t in r["targets"].as_array().into_iter().flatten() {
        let met = match t["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        s += &format!(
            "| {} | {} {} | {met} | {} |\n",
            t["target"].as_str().unwrap_or(""),
            f(&t["measured"], 2),
            t["unit"].as_str().unwrap_or(""),
            t["note"].as_str().unwrap_or("")
        );
    }
    let threads = &w["w1_acks_1"]["broker"]["threads_cpu_secs"];
    if let Some(a) = threads.as_array().filter(|a| !a.is_empty()) {
        s += "\nBroker CPU by thread during W1 (acks=1), seconds (from /proc/<pid>/task/*/stat):\n\n| thread | CPU s |\n| --- | --- |\n";
        for t in a.iter().take(12) {
            s += &format!("| {} | {} |\n", t[0].as_str().unwrap_or("?"), f(&t[1], 2));
        }
    }
    let p = &r["profile"];
    if !p.is_null() {
        s += "\nProfile of the broker (an extra W1 acks=1 + W2 run under `perf record`, not the measured ones):\n\n";
        match status_cell(p) {
            None => {
                for (phase, v) in p["phases"].as_object().into_iter().flatten() {
                    s += &format!(
                        "{phase}: {} MB/s under the profiler, broker {} CPU s. Top self time (dso, symbol):\n\n```\n",
                        f(&v["mb_per_sec"], 0),
                        f(&v["broker_cpu_secs"], 2)
                    );
                    for l in v["self_top"].as_array().into_iter().flatten().take(20) {
                        s += &format!("{}\n", l.as_str().unwrap_or(""));
                    }
                    s += "```\n\n";
                }
            }
            Some(st) => s += &format!("{st}\n"),
        }
    }
    s += "\nCommands run (the broker: `runnel serve --data-dir <fresh dir> --listen 127.0.0.1:<free port>`):\n\n```\n";
    let mut seen = std::collections::BTreeSet::new();
    for c in r["commands"].as_array().into_iter().flatten() {
        let line = format!(
            "[{}] {}",
            c[0].as_str().unwrap_or(""),
            c[1].as_str().unwrap_or("")
        );
        // Ports differ from run to run; show them once per shape.
        let shape = line
            .split_whitespace()
            .map(|w| {
                if w.starts_with("127.0.0.1:") {
                    "127.0.0.1:<port>"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if seen.insert(shape.clone()) {
            s += &format!("{shape}\n");
        }
    }
    s += "```\n";
    s
}

/// Replaces the report section of `doc` (between its marks) with `md`, or appends one.
fn update_doc(doc: &Path, md: &str) -> CliResult<()> {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let section = format!("{DOC_BEGIN}\n{md}{DOC_END}");
    let new = match (text.find(DOC_BEGIN), text.find(DOC_END)) {
        (Some(a), Some(z)) if z > a => {
            format!("{}{}{}", &text[..a], section, &text[z + DOC_END.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(doc, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn w3_slow_seconds_are_those_with_a_record_over_20_ms() {
        let by_second = json!([
            {"second": 0, "records": 10, "max_ms": 3.5},
            {"second": 1, "records": 10, "max_ms": 20.0},
            {"second": 2, "records": 10, "max_ms": 546.9},
        ]);
        let slow = slow_seconds(&by_second);
        assert_eq!(slow, json!([{"second": 2, "max_ms": 546.9}]));
        assert_eq!(slow_seconds_cell(&slow), "s2 (547 ms)");
        assert_eq!(slow_seconds_cell(&json!([])), "none");
        assert_eq!(slow_seconds_cell(&Value::Null), "–");
        let many: Vec<Value> = (0..10)
            .map(|i| json!({"second": i, "max_ms": 30.0}))
            .collect();
        assert!(slow_seconds_cell(&json!(many)).ends_with("s7 (30 ms) and 2 more"));
    }

    #[test]
    fn the_doc_section_is_replaced_between_its_marks() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("p.md");
        std::fs::write(
            &doc,
            format!("# Perf\n\nbefore\n\n{DOC_BEGIN}\nold\n{DOC_END}\n\nafter\n"),
        )
        .unwrap();
        update_doc(&doc, "new report\n").unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        assert!(t.contains("before") && t.contains("after") && t.contains("new report"));
        assert!(!t.contains("old"));
        update_doc(&doc, "newer\n").unwrap();
        let t = std::fs::read_to_string(&doc).unwrap();
        assert_eq!(t.matches(DOC_BEGIN).count(), 1);
        assert!(t.contains("newer") && !t.contains("new report"));
    }

    #[test]
    fn the_throughput_and_cpu_targets_say_who_used_the_cores_what_the_client_reaches_alone_and_what_the_bare_loops_cost(
    ) {
        let loop_ = |cpu: f64| json!({"status": "ok", "cpu_secs_per_gib": cpu});
        let r = json!({
            "config": {"w1_bytes": 4u64 << 30},
            "machine": {"cpus": 2},
            "baselines": {
                "produce_bare_loop": loop_(1.4),
                "fetch_bare_loop": loop_(0.5),
                "fetch_pinned_bare_loop": loop_(0.45),
                "fetch_mapped_bare_loop": {"status": "skipped", "reason": "not measured"},
                "produce_direct_bare_loop": loop_(0.77),
                "produce_direct_floor_bare_loop": loop_(0.6),
                "client_ceiling_produce": {
                    "status": "ok", "mb_per_sec": 1317.475, "client_cpu_secs_per_gib": 1.1,
                },
                "client_ceiling_consume": {"status": "failed", "error": "no"},
            },
            "workloads": {
                "w1_acks_1": {
                    "bytes": 4u64 << 30,
                    "mb_per_sec": 582.4,
                    "client_cpu_secs_per_gib": 2.07,
                    "broker": {"cpu_secs_per_gib": 0.86},
                    "machine": {"busy_cpu_secs": 13.2, "wall_secs": 7.5, "other_cpu_secs": 1.4},
                },
            },
        });
        let t = targets(&r);
        let note = |id: &str| {
            let row = t
                .as_array()
                .unwrap()
                .iter()
                .find(|row| row["id"] == id)
                .unwrap();
            row["note"].clone()
        };
        assert_eq!(
            note("w1_mbps"),
            json!(
                "1.76 of 2 cores busy; per GiB: client 2.07, broker 0.86, other 0.35 core-s; \
                 the load generator alone (null broker): 1317 MB/s at 1.10 client core-s/GiB"
            )
        );
        assert_eq!(
            note("w1_cpu"),
            json!(
                "the bare loop of this run: 1.40 core-s/GiB (broker ÷ bare loop 0.61); \
                 without the page cache (O_DIRECT): 0.77 core-s/GiB; O_DIRECT's floor: 0.60 core-s/GiB"
            )
        );
        // No W2 in this run: nothing to say of its cores.
        assert_eq!(note("w2_mbps"), Value::Null);
        // Loops a run skipped (or an older report's JSON) are left out of the note.
        assert_eq!(
            note("w2_cpu"),
            json!("the bare loop of this run: 0.50 core-s/GiB; from a pinned mapping (no copy to user memory): 0.45 core-s/GiB")
        );
    }

    #[test]
    fn the_baselines_measure_something() {
        let dir = tempfile::tempdir().unwrap();
        assert!(disk_write(dir.path(), 4 << 20).unwrap() > 0.0);
        assert!(loopback(16 << 20).unwrap() > 0.0);
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }
}
