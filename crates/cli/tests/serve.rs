//! The `runnel serve` binary: configuration errors, readiness, clean shutdown.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_runnel");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn given_unknown_or_malformed_setting_should_refuse_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("no.such.setting=1", "no.such.setting"),
        ("num.partitions=many", "num.partitions"),
        ("message.max.bytes=-5", "message.max.bytes"),
    ];
    for (arg, key) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--override", arg])
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{arg}: should not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(key),
            "{arg}: stderr should name {key}: {stderr}"
        );
    }
}

#[test]
fn given_properties_file_should_apply_it_and_overrides_win() {
    let dir = tempfile::tempdir().unwrap();
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        "# a Kafka-style file\nnum.partitions=4\nbogus.key=1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&props)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus.key"));
}

/// Kills the child if the test fails before it exits, so that no broker outlives the test
/// (and holds on to cargo's stdout).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn given_sigterm_should_flush_close_and_exit_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("ready line before the deadline");
        let ready = line.contains("runnel ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    TcpStream::connect(("127.0.0.1", port)).expect("listening once ready");
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean exit: {status:?}");
    // The reader ends at EOF once the process has exited; then every line is in the channel.
    reader.join().expect("stderr reader");
    lines.extend(rx.try_iter());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("all partitions flushed and closed")),
        "{lines:#?}"
    );
    assert!(dir.path().join("meta.properties").exists());
}

#[test]
fn given_admin_listen_should_serve_health_and_metrics() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let _guard = KillOnDrop(child);
    let get = |path: &str| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Some(r) = get("/health/ready").filter(|r| r.starts_with("HTTP/1.1 200")) {
            break r;
        }
        assert!(Instant::now() < deadline, "ready before the deadline");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.starts_with("HTTP/1.1 200"));
    let metrics = get("/metrics").expect("metrics");
    assert!(metrics.contains("runnel_connections_active"), "{metrics}");
}
