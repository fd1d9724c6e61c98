"""Helpers for the consumer-group compat tests (test_groups_*.py).

- FAST_GROUPS: broker overrides for tests that need fast rebalances (pass to make_broker).
- group_id(): unique group ids.
- group_consumer(): a confluent-kafka classic-protocol group consumer with short session settings.
- Worker: a confluent-kafka group consumer in its own process (groups_worker.py), for tests that
  kill a member with SIGKILL; it reports assignments and records as JSON lines.
- poll_until(): poll several in-process confluent-kafka consumers until a condition holds
  (deadline-bounded; every wait in these tests goes through runnel_harness.wait_until or this).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

import ck_helpers as ck

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "groups_worker.py"

# Session timeout: the broker's default group.min.session.timeout.ms (6000), the smallest allowed.
SESSION_MS = 6000
HEARTBEAT_MS = 1000

# New classic groups rebalance at once (Kafka's default waits 3 s for more members).
FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0"}


def group_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def classic_conf(bootstrap: str, group: str, **conf) -> dict:
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 2000,
    }
    c.update(conf)
    return c


def group_consumer(bootstrap: str, group: str, errors: ck.ClientErrors | None = None, **conf) -> Consumer:
    c = classic_conf(bootstrap, group, **conf)
    if errors is not None:
        c["error_cb"] = errors
    return Consumer(c)


def produce_values(bootstrap: str, topic: str, values: list[str], partitions: int | None = None) -> ck.Deliveries:
    """Produce each value (as UTF-8), round-robin over `partitions` when given; all must be acked."""
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr)
    for i, v in enumerate(values):
        kw = {"value": v.encode()}
        if partitions:
            kw["partition"] = i % partitions
        ck.produce(p, topic, **kw)
    ck.flush(p)
    assert not dr.failed, f"produce failed: {dr.failure_summary()}"
    assert len(dr.ok) == len(values)
    return dr


def wait_for(predicate, deadline_s: float, what, interval_s: float = 0.1, workers=()):
    """Like runnel_harness.wait_until, but `what` may be a callable (rendered at the timeout, so the
    message shows the state at that moment) and a worker process that died fails the wait at once."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        dead = [w for w in workers if not w.alive()]
        late = time.monotonic() > deadline
        if dead or late:
            text = what() if callable(what) else what
            why = f"worker(s) {[w.name for w in dead]} exited" if dead else f"timed out after {deadline_s}s"
            raise AssertionError(f"{why} waiting for {text}")
        time.sleep(interval_s)


def poll_until(consumers, predicate, deadline_s: float, what: str, on_msg=None, timeout: float = 0.1):
    """Poll every consumer in turn (consume() serves rebalance callbacks) until predicate() holds.

    on_msg(index, message) receives every record (and error event) consumed meanwhile; `what` may be
    a callable, rendered at the timeout."""
    deadline = time.monotonic() + deadline_s
    while True:
        for i, c in enumerate(consumers):
            for m in c.consume(num_messages=500, timeout=timeout):
                if on_msg is not None:
                    on_msg(i, m)
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what() if callable(what) else what}")


def assignment_of(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def committed_offsets(c: Consumer, topic: str, partitions: int, timeout: float = 10) -> dict[int, int]:
    got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
    return {tp.partition: tp.offset for tp in got}


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def admin_group_offsets(a: AdminClient, group: str, timeout: float = 15) -> dict[tuple[str, int], TopicPartition]:
    """AdminClient.list_consumer_group_offsets for one group: {(topic, partition): TopicPartition}."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    fut = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)[group]
    res = fut.result(timeout=timeout)
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, f"list_consumer_group_offsets({group}) {tp.topic}/{tp.partition}: {tp.error}"
        out[(tp.topic, tp.partition)] = tp
    return out


def describe_group(a: AdminClient, group: str, timeout: float = 15):
    return a.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout=timeout)


def kafka_error_of(exc: BaseException):
    """The KafkaError inside a KafkaException (as raised by AdminClient futures)."""
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    return exc.args[0]


class Worker:
    """A confluent-kafka group consumer process (groups_worker.py) and the events it reported."""

    def __init__(self, name: str, conf: dict, topic: str, logdir: Path) -> None:
        self.name = name
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self.stderr_path = Path(logdir) / f"{name}.stderr"
        payload = dict(conf, __topic=topic)
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), json.dumps(payload)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(HERE),
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self._reader = threading.Thread(target=self._read, name=f"worker-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "garbage", "line": line.decode("utf-8", "replace")}
            with self._lock:
                self.events.append(ev)

    # ---------------------------------------------------------------- what it reported
    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def assignment(self) -> set[int]:
        """The last assignment() it reported."""
        for ev in reversed(self.snapshot()):
            if ev["ev"] == "asg":
                return set(ev["parts"])
        return set()

    def assignments(self, since: float = 0.0) -> list[set[int]]:
        return [set(ev["parts"]) for ev in self.snapshot() if ev["ev"] == "asg" and ev["t"] >= since]

    def records(self) -> list[tuple[int, int, str]]:
        out = []
        for ev in self.snapshot():
            if ev["ev"] == "recs":
                out.extend(tuple(i) for i in ev["items"])
        return out

    def values(self) -> set[str]:
        return {v for _, _, v in self.records()}

    def callbacks(self, kind: str, since: float = 0.0) -> list[dict]:
        return [ev for ev in self.snapshot() if ev["ev"] == kind and ev["t"] >= since]

    def errors(self) -> list[dict]:
        return [ev for ev in self.snapshot() if ev["ev"] in ("error", "cerr", "store_failed", "garbage")]

    def has(self, kind: str) -> bool:
        return any(ev["ev"] == kind for ev in self.snapshot())

    def stderr_tail(self, limit: int = 3000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        evs = [e for e in self.snapshot() if e["ev"] != "recs"]
        return (f"worker {self.name} (pid {self.proc.pid}, exit {self.proc.poll()}): "
                f"{len(self.records())} records, assignment {sorted(self.assignment())}, "
                f"events {evs[-30:]}, stderr tail: {self.stderr_tail()!r}")

    # ---------------------------------------------------------------- lifecycle
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash (no LeaveGroup, no final commit)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)
        self._reader.join(timeout=5)

    def terminate(self, deadline_s: float = 20) -> int:
        """SIGTERM: the worker closes its consumer (LeaveGroup for dynamic members) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._reader.join(timeout=5)
        self._stderr.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._reader.join(timeout=5)
        if not self._stderr.closed:
            self._stderr.close()


def describe_workers(workers) -> str:
    return "\n".join(w.describe() for w in workers)
