"""Exactly-once processing (issue 5) with real clients.

- A consume-transform-produce loop with librdkafka (confluent-kafka): read from an input topic,
  write a transformed record to an output topic and the consumed offsets with
  `send_offsets_to_transaction`, commit. The loop is killed (SIGKILL of its process) midway and
  started again: read_committed, the output holds every input exactly once.
- A Quix Streams application with `processing_guarantee="exactly-once"` and a stateful step (a
  running sum per key, its state kept in a changelog topic) produces correct final aggregates,
  also when it is stopped midway and restarted without its local state (restored from the
  changelog).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ck_helpers as ck
from lifecycle_helpers import QUICK_BROKER
from runnel_harness import wait_until

pytestmark = pytest.mark.own_broker

HERE = Path(__file__).resolve().parent
EOS_BROKER = {
    **QUICK_BROKER,
    "transaction.state.log.num.partitions": "2",
    "group.initial.rebalance.delay.ms": "0",
}
QUIX_PYTHON = Path(os.environ.get("RUNNEL_QUIX_PYTHON", HERE.parent.parent / ".venv-quix" / "bin" / "python"))


def _produce_inputs(bootstrap: str, topic: str, n: int, keys: int) -> None:
    p = ck.producer(bootstrap, **{"enable.idempotence": True})
    for i in range(n):
        ck.produce(p, topic, key=f"k{i % keys}".encode(), value=json.dumps({"n": i}).encode())
    ck.flush(p)


def _read_committed(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    result = ck.consume_all(bootstrap, topic, partitions, expected=expected, deadline_s=60,
                            **{"isolation.level": "read_committed"})
    assert not result.errors, result.describe()
    return result.records


# --------------------------------------------------------------- consume-transform-produce
CTP_WORKER = r'''
import json, sys
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, src, dst, group, txn_id = sys.argv[1:6]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "isolation.level": "read_committed",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5})
p.init_transactions(30)
c.subscribe([src])
while True:
    msgs = c.consume(num_messages=20, timeout=1.0)
    msgs = [m for m in msgs if m.error() is None]
    if not msgs:
        continue
    p.begin_transaction()
    for m in msgs:
        n = json.loads(m.value())["n"]
        p.produce(dst, key=m.key(), value=json.dumps({"n": n, "double": 2 * n}).encode())
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    p.commit_transaction(30)
    print(f"committed {len(msgs)}", flush=True)
'''


@pytest.mark.timeout(180)
def test_given_consume_transform_produce_loop_killed_midway_should_output_every_input_exactly_once(
    make_broker, new_topic, tmp_path
):
    b = make_broker(overrides=EOS_BROKER)
    src, dst = new_topic("in"), new_topic("out")
    ck.create_topic(b.bootstrap, src, 3)
    ck.create_topic(b.bootstrap, dst, 3)
    n = 600
    _produce_inputs(b.bootstrap, src, n, keys=12)
    script = tmp_path / "ctp_worker.py"
    script.write_text(CTP_WORKER)
    args = [sys.executable, str(script), b.bootstrap, src, dst, f"ctp-{src}", f"ctp-{src}"]

    log1 = open(tmp_path / "worker1.log", "w")
    worker = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log1, text=True)
    try:
        # Kill it once some transactions have committed, mid-stream.
        committed = 0
        deadline = time.monotonic() + 60
        while committed < 150 and time.monotonic() < deadline:
            line = worker.stdout.readline()
            if line.startswith("committed "):
                committed += int(line.split()[1])
        assert committed >= 150, f"the worker committed only {committed} records"
        assert committed < n, "the worker finished before it could be killed midway"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    # The same transactional.id again: it fences the dead instance's open transaction.
    log2 = open(tmp_path / "worker2.log", "w")
    worker = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log2)
    try:
        seen: list = []

        def all_there() -> bool:
            seen[:] = _read_committed(b.bootstrap, dst, 3, expected=n)
            return len(seen) >= n

        wait_until(all_there, 90, what=f"{n} records in the committed output")
        records = list(seen)
    finally:
        worker.kill()
        worker.wait(10)
    got = sorted(json.loads(r.value)["n"] for r in records)
    dups = len(got) - len(set(got))
    assert dups == 0, f"{dups} inputs appear more than once in the committed output"
    assert got == list(range(n)), f"{len(got)} of {n} inputs in the output"


# --------------------------------------------------------------- Quix Streams
def _run_quix(bootstrap: str, src: str, dst: str, group: str, state_dir: Path, count: int, log: Path) -> None:
    script = HERE / "quix" / "sum_by_key.py"
    with open(log, "a") as out:
        subprocess.run([str(QUIX_PYTHON), str(script), bootstrap, src, dst, group, str(state_dir),
                        str(count), "8"], stdout=out, stderr=out, timeout=120, check=True)


@pytest.mark.timeout(300)
def test_given_quix_streams_exactly_once_app_with_state_should_produce_correct_final_aggregates(
    make_broker, new_topic, tmp_path
):
    if not QUIX_PYTHON.exists():
        pytest.fail(f"Quix Streams' virtualenv is missing ({QUIX_PYTHON}); scripts/test.sh makes it")
    b = make_broker(overrides=EOS_BROKER)
    src, dst = new_topic("in"), new_topic("out")
    ck.create_topic(b.bootstrap, src, 2)
    n, keys = 400, 10
    _produce_inputs(b.bootstrap, src, n, keys)
    group = f"quix-{src}"
    log = tmp_path / "quix.log"
    # First run: part of the input, then a clean stop.
    _run_quix(b.bootstrap, src, dst, group, tmp_path / "state-1", 150, log)
    # Second run without the local state: Quix restores it from its changelog topic.
    _run_quix(b.bootstrap, src, dst, group, tmp_path / "state-2", n, log)
    partitions = len(ck.admin(b.bootstrap).list_topics(dst, timeout=10).topics[dst].partitions)
    records = _read_committed(b.bootstrap, dst, partitions, expected=n)
    outputs = [json.loads(r.value) for r in records]
    assert len(outputs) == n, f"{len(outputs)} outputs for {n} inputs (exactly once)"
    final = {}
    for o in outputs:
        if o["count"] > final.get(o["key"], {"count": 0})["count"]:
            final[o["key"]] = o
    expected = {f"k{k}": sum(i for i in range(n) if i % keys == k) for k in range(keys)}
    assert {k: v["sum"] for k, v in final.items()} == expected, log.read_text()[-3000:]
    assert {k: v["count"] for k, v in final.items()} == {k: n // keys for k in expected}
