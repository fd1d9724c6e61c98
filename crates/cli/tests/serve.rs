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
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
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
