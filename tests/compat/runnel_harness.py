"""Process harness for the compatibility suite: starts the real `runnel` binary.

Nothing here imitates the broker. `RunnelBroker` runs `runnel serve` as a child process on a
fresh data directory and a free loopback port, waits (deadline-bounded poll, no fixed sleeps)
until the port accepts TCP connections, and stops it with SIGTERM, then SIGKILL after a deadline.
The broker's stdout and stderr go to a log file so a failing test can show what the broker said.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Set to host:port to run the shared-broker tests against an already running broker (see conftest).
EXTERNAL_BOOTSTRAP = os.environ.get("RUNNEL_COMPAT_BOOTSTRAP")

# Seconds the broker gets to open its listener (debug build, log recovery on restart).
START_DEADLINE_S = float(os.environ.get("RUNNEL_COMPAT_START_DEADLINE", "60"))
# Seconds the broker gets to exit after SIGTERM before it is SIGKILLed.
STOP_DEADLINE_S = 15.0


class BrokerError(AssertionError):
    """The broker process did not behave (did not start, died, did not stop)."""


def runnel_binary() -> Path:
    """Path of the broker binary: $RUNNEL_BIN, else <target dir>/debug/runnel."""
    env = os.environ.get("RUNNEL_BIN")
    if env:
        return Path(env).resolve()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "runnel"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    # Also make sure nothing is accepting there (bind can succeed next to a listener on some stacks).
    return not port_accepts(host, port, timeout=0.2)


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RunnelBroker:
    """One `runnel serve` process (restartable on the same data dir and port)."""

    def __init__(
        self,
        workdir: Path,
        name: str = "broker",
        *,
        binary: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        overrides: dict[str, str] | None = None,
        no_args: bool = False,
        probe_hosts: tuple[str, ...] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if no_args:  # the binary's defaults
            host, port = "localhost", 9092
        self.name = name
        self.binary = Path(binary) if binary else runnel_binary()
        self.host = host
        self.port = port
        self._port_chosen_by_us = port is None
        self.overrides = dict(overrides or {})
        # no_args: run plain `runnel serve` in `workdir` (defaults: ./runnel-data, localhost:9092).
        self.no_args = no_args
        self.probe_hosts = probe_hosts or (host,)
        self.data_dir = self.workdir / ("runnel-data" if no_args else "data")
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.history: list[str] = []  # how each run ended, for failure reports

    # ------------------------------------------------------------------ addresses
    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "broker has no port yet"
        return format_hostport(self.host, self.port)

    def command(self) -> list[str]:
        if self.no_args:
            return [str(self.binary), "serve"]
        cmd = [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            format_hostport(self.host, self.port),
        ]
        for k, v in self.overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd

    # ------------------------------------------------------------------ lifecycle
    def start(self, deadline_s: float = START_DEADLINE_S) -> "RunnelBroker":
        if not self.binary.exists():
            raise BrokerError(
                f"broker binary {self.binary} not found: run `cargo build -p runnel-cli` "
                "(or scripts/test.sh), or point RUNNEL_BIN at a runnel binary"
            )
        if self.alive():
            raise BrokerError(f"{self.name}: already running (pid {self.proc.pid})")
        attempts = 3 if self._port_chosen_by_us else 1
        last_err: BrokerError | None = None
        for _ in range(attempts):
            if self.port is None or (last_err is not None and self._port_chosen_by_us):
                self.port = free_port(self.host)
            try:
                self._spawn_and_wait(deadline_s)
                return self
            except BrokerError as e:  # e.g. the free port was taken in between
                last_err = e
                if self.alive():
                    self._terminate()
        assert last_err is not None
        raise last_err

    def _spawn_and_wait(self, deadline_s: float) -> None:
        self.starts += 1
        cmd = self.command()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)} (cwd {self.workdir})\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + deadline_s
        pending = list(self.probe_hosts)
        while True:
            code = self.proc.poll()
            if code is not None:
                self.history.append(f"start #{self.starts}: exited with {code} before listening")
                raise BrokerError(
                    f"{self.name}: `{' '.join(cmd)}` exited with code {code} before it accepted "
                    f"connections.\n--- broker log (tail) ---\n{self.log_tail()}"
                )
            pending = [h for h in pending if not port_accepts(h, self.port, timeout=0.25)]
            if not pending:
                return
            if time.monotonic() > deadline:
                self.history.append(f"start #{self.starts}: not accepting on {pending} after {deadline_s}s")
                raise BrokerError(
                    f"{self.name}: not accepting connections on "
                    f"{[format_hostport(h, self.port) for h in pending]} within {deadline_s:.0f}s.\n"
                    f"--- broker log (tail) ---\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=STOP_DEADLINE_S)

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM, wait up to `deadline_s`, then SIGKILL. Returns the exit code (None if not running).

        Records in `history` whether the broker needed SIGKILL.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=deadline_s)
            self.history.append(f"start #{self.starts}: SIGTERM -> exit {code}")
            return code
        except subprocess.TimeoutExpired:
            code = self._terminate()
            self.history.append(
                f"start #{self.starts}: did not exit within {deadline_s}s of SIGTERM; SIGKILLed ({code})"
            )
            return code

    def kill(self) -> int:
        """SIGKILL the broker (crash simulation) and reap it."""
        assert self.alive(), f"{self.name}: kill() but broker is not running"
        code = self._terminate()
        self.history.append(f"start #{self.starts}: SIGKILLed by test")
        return code

    def restart(self, *, crash: bool = False) -> "RunnelBroker":
        """Stop (SIGTERM, or SIGKILL when crash=True) and start again on the same data dir and port."""
        if self.alive():
            if crash:
                self.kill()
            else:
                self.stop()
        saved = self._port_chosen_by_us
        self._port_chosen_by_us = False  # clients keep the same bootstrap address
        try:
            return self.start()
        finally:
            self._port_chosen_by_us = saved

    # ------------------------------------------------------------------ logs
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0, limit: int = 20000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return "(no broker log)"
        text = data.decode("utf-8", "replace")
        if len(text) > limit:
            text = f"... ({len(text) - limit} earlier characters cut)\n" + text[-limit:]
        return text

    def log_tail(self, limit: int = 6000) -> str:
        return self.log_text(limit=limit)

    def status_line(self) -> str:
        if self.proc is None:
            state = "never started"
        elif self.proc.poll() is None:
            state = f"running (pid {self.proc.pid})"
        else:
            state = f"exited with code {self.proc.returncode}"
        return f"{self.name} on {self.bootstrap if self.port else '?'}: {state}; history: {self.history}"


class ExternalBroker:
    """A broker someone else runs ($RUNNEL_COMPAT_BOOTSTRAP): only for checking the suite itself
    against a reference broker. Tests that must start, kill or restart a broker are skipped."""

    name = "external"

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        host, _, port = bootstrap.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)

    def alive(self) -> bool:
        return True

    def log_size(self) -> int:
        return 0

    def log_text(self, since: int = 0, limit: int = 0) -> str:
        return "(external broker: no log)"

    def status_line(self) -> str:
        return f"external broker at {self.bootstrap}"


def track_broker(item, broker) -> None:
    """Remember where `broker`'s log stood when test `item` started using it; a failure report then
    shows the log lines written during the test (conftest.pytest_runtest_makereport)."""
    tracked = item.__dict__.setdefault("_runnel_brokers", [])
    if all(b is not broker for b, _ in tracked):
        tracked.append((broker, broker.log_size()))


def wait_until(predicate, deadline_s: float, interval_s: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or the deadline passes (then AssertionError)."""
    deadline = time.monotonic() + deadline_s
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported below if the deadline passes
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}; last error: {last_exc!r}")
        time.sleep(interval_s)
