"""Durability across broker restarts: SIGKILL mid-stream, and clean SIGTERM shutdown.

Each test runs its own broker process on its own data dir; a "restart" starts a new process on
the same data dir and port, as an operator would.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict

import pytest
from confluent_kafka import TopicPartition

import ck_helpers as ck

pytestmark = pytest.mark.own_broker

N_KEYS = 30


def make_record(seq: int) -> tuple[bytes, bytes]:
    """Key and value for sequence number `seq`; the value carries seq and a digest of it, so any
    corrupted or misplaced byte is detectable."""
    digest = hashlib.sha256(b"runnel-%d" % seq).hexdigest().encode()
    return b"k%02d" % (seq % N_KEYS), b"%08d|%s|%s" % (seq, digest, digest[::-1])


def parse_seq(value: bytes | None) -> int | None:
    try:
        return int(value.split(b"|", 1)[0])
    except (AttributeError, ValueError):
        return None


def check_log_against_deliveries(records: list, dr: ck.Deliveries, n_sent: int) -> None:
    """The invariants that must hold after any restart:
    - every record in the log is one that was sent, byte for byte (no corruption);
    - offsets per partition are dense from 0;
    - every successful delivery report's (partition, offset) holds exactly that record;
    - per partition, acknowledged records appear in the order they were produced."""
    by_part: dict[int, list] = defaultdict(list)
    for r in records:
        seq = parse_seq(r.value)
        assert seq is not None and 0 <= seq < n_sent, f"unknown record at {r.partition}/{r.offset}: {r.value!r:.80}"
        assert (r.key, r.value) == make_record(seq), f"corrupt record at {r.partition}/{r.offset}: {r.value!r:.80}"
        by_part[r.partition].append(r)
    for part, rs in by_part.items():
        offs = [r.offset for r in rs]
        assert offs == list(range(len(rs))), f"partition {part}: offsets not dense from 0 (first gap near {next((i for i, o in enumerate(offs) if o != i), None)})"

    at = {(r.partition, r.offset): r for r in records}
    missing, wrong = [], []
    for part, off, key, value, _h in dr.ok:
        r = at.get((part, off))
        if r is None:
            missing.append((part, off, parse_seq(value)))
        elif (r.key, r.value) != (key, value):
            wrong.append((part, off, parse_seq(value), parse_seq(r.value)))
    assert not missing, f"{len(missing)} acknowledged records are gone, e.g. (partition, offset, seq) {missing[:5]}"
    assert not wrong, f"{len(wrong)} acknowledged offsets hold other records, e.g. (p, off, sent seq, found seq) {wrong[:5]}"

    acked_by_part: dict[int, list] = defaultdict(list)
    for part, off, _k, value, _h in dr.ok:
        acked_by_part[part].append((off, parse_seq(value)))
    for part, acks in acked_by_part.items():
        seqs = [s for _, s in sorted(acks)]
        assert seqs == sorted(seqs), f"partition {part}: acknowledged records out of produce order"


def stream_producer(bootstrap: str, dr: ck.Deliveries, errors: ck.ClientErrors):
    return ck.producer(bootstrap, errors, **{
        "acks": "all",
        "linger.ms": 2,
        # One request in flight per connection: retries cannot reorder records.
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": 60000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "on_delivery": dr,
    })


@pytest.mark.timeout(300)
def test_acked_records_survive_sigkill_mid_stream(make_broker, new_topic):
    b = make_broker("crash")
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 3)
    dr, errors = ck.Deliveries(), ck.ClientErrors()
    p = stream_producer(b.bootstrap, dr, errors)
    seq = 0

    def send(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            key, value = make_record(seq)
            ck.produce(p, topic, key=key, value=value)
            seq += 1
        p.poll(0)

    # Phase 1: stream until a few thousand records are acknowledged, then SIGKILL mid-stream.
    deadline = time.monotonic() + 30
    while len(dr.ok) < 3000 and time.monotonic() < deadline:
        if seq - dr.count < 5000:
            send(100)
        else:
            p.poll(0.01)
    assert dr.ok, f"no record acknowledged within 30s before the kill; failures: {dr.failure_summary()}"
    send(100)  # make sure requests are in flight at the moment of the kill
    b.kill()
    acked_before_kill = len(dr.ok)
    sent_before_kill = seq

    # Keep producing into the dead broker for a moment: these queue up and are retried.
    for _ in range(5):
        send(100)
        p.poll(0.1)

    # Restart on the same data dir and port; the producer reconnects by itself.
    b.restart()
    send(1000)
    ck.flush(p, 120)
    assert dr.count == seq, f"{seq - dr.count} records without a delivery report"
    assert len(dr.ok) >= acked_before_kill + 1000, (
        f"only {len(dr.ok)} acknowledged in all ({acked_before_kill} before the kill, {seq} sent); "
        f"failures: {dr.failure_summary()}"
    )

    res = ck.consume_all(b.bootstrap, topic, 3, deadline_s=90)
    assert not res.errors, f"consumer errors after crash recovery: {res.describe()}"
    assert not res.timed_out, res.describe()
    check_log_against_deliveries(res.records, dr, seq)
    print(f"sent {seq} ({sent_before_kill} before SIGKILL), acknowledged {len(dr.ok)} "
          f"({acked_before_kill} before SIGKILL), log holds {len(res.records)}")


@pytest.mark.timeout(240)
def test_repeated_sigkill_restart_cycles_keep_every_acked_record(make_broker, new_topic):
    b = make_broker("cycles")
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 2)
    dr, errors = ck.Deliveries(), ck.ClientErrors()
    seq = 0
    for cycle in range(3):
        p = stream_producer(b.bootstrap, dr, errors)
        for _ in range(500):
            key, value = make_record(seq)
            ck.produce(p, topic, key=key, value=value)
            seq += 1
        ck.flush(p, 60)
        assert not dr.failed, f"cycle {cycle}: {dr.failure_summary()}"
        b.restart(crash=True)
        res = ck.consume_all(b.bootstrap, topic, 2, expected=seq, deadline_s=60)
        assert not res.errors and not res.timed_out, f"cycle {cycle}: {res.describe()}"
        check_log_against_deliveries(res.records, dr, seq)
        assert len(res.records) == seq, f"cycle {cycle}: log holds {len(res.records)} of {seq} acknowledged records"


@pytest.mark.timeout(180)
def test_sigterm_exits_cleanly_and_restart_keeps_topics_and_records(make_broker, new_topic):
    b = make_broker("graceful")
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 4, config={"retention.ms": "86400000"})
    dr = ck.Deliveries()
    p = ck.producer(b.bootstrap, on_delivery=dr, **{"compression.type": "zstd"})
    for i in range(1000):
        key, value = make_record(i)
        ck.produce(p, topic, key=key, value=value)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    del p

    t0 = time.monotonic()
    code = b.stop()
    assert code == 0, f"broker exit status after SIGTERM: {code} ({b.status_line()})"
    assert time.monotonic() - t0 < 10, "broker took more than 10s to exit on SIGTERM"

    b.start()
    a = ck.admin(b.bootstrap)
    ck.wait_for_topic(a, topic, 4)
    res = ck.consume_all(b.bootstrap, topic, 4, expected=1000)
    assert not res.errors and not res.timed_out, res.describe()
    assert len(res.records) == 1000
    check_log_against_deliveries(res.records, dr, 1000)

    # Appends continue at the old high watermark of each partition.
    c = ck.consumer(b.bootstrap)
    try:
        hw = {part: c.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False)[1]
              for part in range(4)}
    finally:
        c.close()
    assert sum(hw.values()) == 1000
    dr2 = ck.Deliveries()
    p2 = ck.producer(b.bootstrap, on_delivery=dr2)
    for part in range(4):
        ck.produce(p2, topic, partition=part, value=b"after-restart")
    ck.flush(p2)
    assert not dr2.failed, dr2.failure_summary()
    assert sorted((d[0], d[1]) for d in dr2.ok) == sorted(hw.items())
