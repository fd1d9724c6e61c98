//! Shared by the CLI tests: a real `runnel serve` per test on a free port, and the CLI run as a
//! subprocess with a deadline.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_runnel");

/// The broker under test: this build's `runnel`, or another build given by
/// RUNNEL_CLI_TEST_BROKER (e.g. to check the CLI against an older broker).
pub fn broker_bin() -> String {
    std::env::var("RUNNEL_CLI_TEST_BROKER").unwrap_or_else(|_| BIN.to_string())
}

/// Longest any CLI command of a test may take before the test fails.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A broker process on a data directory; SIGKILLed on drop if still running.
pub struct Broker {
    pub data_dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// A broker on a fresh temporary data directory.
    pub fn start() -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = Broker::start_on(tmp.path());
        b._tmp = Some(tmp);
        b
    }

    pub fn start_on(dir: &Path) -> Broker {
        let mut b = Broker {
            data_dir: dir.to_path_buf(),
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            _tmp: None,
        };
        b.spawn();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits (bounded) until it says it is ready and its port answers.
    /// A port taken in the meantime by another process is retried with another one.
    fn spawn(&mut self) {
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(broker_bin());
            cmd.args(["serve", "--data-dir"])
                .arg(&self.data_dir)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                // Classic groups rebalance at once instead of waiting 3 s for more members.
                .args(["--override", "group.initial.rebalance.delay.ms=0"])
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("runnel serve starts");
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = mpsc::channel();
            let log = self.log.clone();
            // Drains stderr for the whole life of the broker (a full pipe would block it).
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("runnel ready") {
                        let _ = tx.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            let ready = loop {
                if rx.try_recv().is_ok() {
                    break true;
                }
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                assert!(
                    Instant::now() < deadline,
                    "broker not ready in time: {:#?}",
                    self.log.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            if !ready {
                let log = self.log.lock().unwrap().join("\n");
                assert!(log.contains("in use"), "broker did not start:\n{log}");
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "broker port never answered");
                std::thread::sleep(Duration::from_millis(10));
            }
            self.port = port;
            self.child = Some(child);
            return;
        }
        panic!("could not find a free port for the broker");
    }

    /// SIGTERM, and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        terminate(&mut child, Duration::from_secs(30));
    }

    /// Stops the broker and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `runnel ARGS -b ADDR`.
    pub fn run(&self, args: &[&str]) -> Out {
        run_cli(&self.with_brokers(args), None)
    }

    /// `runnel ARGS -b ADDR` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Out {
        run_cli(&self.with_brokers(args), Some(input))
    }

    /// Runs and requires success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "runnel {args:?} failed: {out:#?}");
        out.stdout
    }

    /// Runs with `-o json` and requires success, returning the parsed document.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Starts `runnel ARGS -b ADDR` in the background (e.g. a following consumer).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(BIN)
            .args(self.with_brokers(args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runnel runs")
    }

    fn with_brokers(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push("-b".into());
        v.push(self.addr());
        v
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The child gets SIGKILL if the test process dies without cleaning up (Linux).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// SIGTERM, then wait up to `limit` for the exit; returns the exit code.
pub fn terminate(child: &mut Child, limit: Duration) -> i32 {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit after SIGTERM", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the CLI to completion within COMMAND_DEADLINE.
pub fn run_cli(args: &[String], input: Option<&str>) -> Out {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runnel runs");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runnel {args:?} did not finish within {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Polls `f` until it returns Some, or fails the test at the deadline.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The API keys a broker advertises in ApiVersions (v0, hand-encoded: the tests check the
/// CLI, not our protocol layer).
pub fn advertised_api_keys(addr: &str) -> Vec<i16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let client_id = b"test";
    let mut body = Vec::new();
    body.extend(18i16.to_be_bytes()); // ApiVersions
    body.extend(0i16.to_be_bytes()); // v0
    body.extend(7i32.to_be_bytes()); // correlation id
    body.extend((client_id.len() as i16).to_be_bytes());
    body.extend(client_id);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    let i16_at = |i: usize| i16::from_be_bytes([resp[i], resp[i + 1]]);
    assert_eq!(i32::from_be_bytes(resp[0..4].try_into().unwrap()), 7);
    assert_eq!(i16_at(4), 0, "ApiVersions error code");
    let n = i32::from_be_bytes(resp[6..10].try_into().unwrap()) as usize;
    (0..n).map(|k| i16_at(10 + k * 6)).collect()
}

pub fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// One JSON document per line (`consume -o json`).
pub fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
