"""SIGKILL under a mixed load, many times over one data directory, checked against an oracle.

One broker, one data directory. Each cycle runs, in background threads of this process:

- an idempotent confluent-kafka producer (acks=all) writing keyed records that carry a unique
  sequence number to a 16-partition topic, and updates of 40 keys to a compacted topic;
- a consumer group (a new group each cycle, so no join waits for the previous cycle's dead
  member) reading the 16-partition topic and committing its positions synchronously;
- an AdminClient creating new topics;

for a random 1-3 s, then SIGKILLs the broker, starts it again on the same data dir and port, and
waits (deadline-bounded) until it serves Metadata again. Only then are the load threads stopped
(their clients flush and close against the live broker), and the oracle is checked:

- every acknowledged record is at the offset its delivery report gave, with the same key and value;
- every record served is one that was sent, byte for byte (a corrupt batch would make librdkafka,
  with check.crcs, report an error); per partition, offsets are contiguous from the log start and
  sequence numbers strictly increase (the producers are idempotent and never overlap in time);
- what was served in an earlier cycle is still served, unchanged, as a prefix of the partition (so
  the log end offset never goes backwards);
- every acknowledged offset commit reads back (committed offset >= acknowledged offset);
- every acknowledged topic creation survived, with its partition count;
- in the compacted topic, the latest record of each key is the last acknowledged write of that
  key, or a write sent after it (in flight at the kill); no acknowledged write disappears unless
  a later record of its key exists; the cleaner ran (fewer records than acknowledged writes).

RUNNEL_KILL_CYCLES (default 20) sets the number of cycles, RUNNEL_KILL_SEED the random seed
(printed at the start, for reproducing a run), RUNNEL_KILL_RATE the records per second written to
the 16-partition topic (default 1500).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import traceback
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic, OffsetSpec

import ck_helpers as ck
import groups_helpers as gh
from lifecycle_helpers import FAST_LIFECYCLE

pytestmark = pytest.mark.own_broker

CYCLES = int(os.environ.get("RUNNEL_KILL_CYCLES", "20"))
SEED = int(os.environ.get("RUNNEL_KILL_SEED", str(random.randrange(1 << 32))))
MAIN_RATE = float(os.environ.get("RUNNEL_KILL_RATE", "1500"))

MAIN_PARTITIONS = 16
COMPACT_PARTITIONS = 2
COMPACT_KEYS = 40
# Seconds of load before each SIGKILL: uniform in this range.
LOAD_S = (1.0, 3.0)
# Seconds the restarted broker gets to serve Metadata again (debug build, log recovery).
READY_DEADLINE_S = 30.0
# Seconds a load thread gets to stop (flush, close) once the broker is back.
STOP_DEADLINE_S = 30.0

BROKER = {
    **FAST_LIFECYCLE,  # 1-partition __consumer_offsets; retention, rolls and cleaner every 200 ms
    **gh.FAST_GROUPS,  # a new group rebalances at once
}


def main_record(seq: int, cycle: int) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(b"runnel-kill-%d" % seq).hexdigest().encode()
    return b"k%04d" % (seq % 1009), b"%09d|%03d|%s" % (seq, cycle, digest)


def compact_record(seq: int, cycle: int) -> tuple[bytes, bytes]:
    return b"c%02d" % (seq % COMPACT_KEYS), b"%09d|%03d|" % (seq, cycle) + b"v" * 200


def seq_of(value: bytes | None) -> int | None:
    try:
        return int(value.split(b"|", 1)[0])
    except (AttributeError, ValueError):
        return None


# ------------------------------------------------------------------------------ the oracle
@dataclass
class Oracle:
    main_topic: str
    compact_topic: str
    sent_main: dict = field(default_factory=dict)  # seq -> cycle
    sent_compact: dict = field(default_factory=dict)  # seq -> cycle
    acked_main: dict = field(default_factory=dict)  # (partition, offset) -> seq
    acked_compact: dict = field(default_factory=dict)  # (partition, offset) -> seq
    commits: dict = field(default_factory=dict)  # (group, partition) -> highest acknowledged offset
    topics: dict = field(default_factory=dict)  # acknowledged creations: name -> partitions
    served: dict = field(default_factory=dict)  # partition -> seqs served at the last check, by offset
    compact_hw: dict = field(default_factory=dict)  # partition -> high watermark at the last check
    lock: threading.Lock = field(default_factory=threading.Lock)
    # figures for the report
    commit_acks: int = 0
    creations_tried: int = 0
    compacted_ever: bool = False


class LoadThread(threading.Thread):
    def __init__(self, name: str, stop: threading.Event, errors: list) -> None:
        super().__init__(name=name, daemon=True)
        self.stop_event = stop
        self.errors = errors

    def run(self) -> None:
        try:
            self.body()
        except BaseException:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.name}: {traceback.format_exc()}")

    def body(self) -> None:
        raise NotImplementedError


class ProducerLoad(LoadThread):
    """Writes main records at MAIN_RATE per second and a compacted update every 4th record."""

    def __init__(self, bootstrap, oracle: Oracle, cycle: int, seqs, stop, errors) -> None:
        super().__init__(f"producer-{cycle}", stop, errors)
        self.o, self.cycle, self.seqs = oracle, cycle, seqs
        self.dr_failed = 0
        self.fatal = None
        self.p = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "on_delivery": self.on_delivery,
            "error_cb": lambda err: None,  # transport errors while the broker is down are expected
        })

    def on_delivery(self, err, msg) -> None:
        if err is not None:
            self.dr_failed += 1
            return
        seq = seq_of(msg.value())
        with self.o.lock:
            if msg.topic() == self.o.main_topic:
                self.o.acked_main[(msg.partition(), msg.offset())] = seq
            else:
                self.o.acked_compact[(msg.partition(), msg.offset())] = seq

    def body(self) -> None:
        self.unless_fatal(self.produce_until_stopped)
        # The broker is back: let what is in flight be acknowledged, drop the rest.
        self.unless_fatal(self.p.flush, 10)
        self.p.purge()
        self.unless_fatal(self.p.flush, 5)
        self.p = None  # destroyed now, not when the thread object goes

    def unless_fatal(self, f, *args) -> None:
        """f(*args), unless the producer has failed fatally (then it is recorded, not raised): for an
        idempotent producer that means the broker lost or reordered what it had acknowledged
        (OUT_OF_ORDER_SEQUENCE_NUMBER...). The test reports it after the oracle, which says which
        records are affected."""
        if self.fatal is not None:
            return
        try:
            f(*args)
        except (KafkaException, SystemError) as e:
            # (confluent-kafka raises a fatal error met in a delivery callback as a SystemError
            # caused by the KafkaException.)
            k = e if isinstance(e, KafkaException) else e.__cause__
            if not isinstance(k, KafkaException) or not k.args[0].fatal():
                raise
            self.fatal = k.args[0]

    def produce_until_stopped(self) -> None:
        t0 = time.monotonic()
        written = 0
        while not self.stop_event.is_set():
            due = int((time.monotonic() - t0) * MAIN_RATE) + 1
            while written < due and len(self.p) < 20000:
                seq = next(self.seqs["main"])
                key, value = main_record(seq, self.cycle)
                with self.o.lock:
                    self.o.sent_main[seq] = self.cycle
                self.p.produce(self.o.main_topic, key=key, value=value)
                written += 1
                if written % 4 == 0:
                    cseq = next(self.seqs["compact"])
                    key, value = compact_record(cseq, self.cycle)
                    with self.o.lock:
                        self.o.sent_compact[cseq] = self.cycle
                    self.p.produce(self.o.compact_topic, key=key, value=value)
            self.p.poll(0.01)


class GroupLoad(LoadThread):
    """A group member of a new group: reads the main topic, commits synchronously every 0.2 s."""

    def __init__(self, bootstrap, oracle: Oracle, cycle: int, stop, errors) -> None:
        super().__init__(f"group-{cycle}", stop, errors)
        self.o = oracle
        self.group = f"kill-load-{cycle}-{uuid.uuid4().hex[:8]}"
        self.read = 0
        self.commit_failures = 0
        self.c = gh.group_consumer(bootstrap, self.group, ck.ClientErrors(), **{
            "check.crcs": True, "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200})

    def body(self) -> None:
        self.c.subscribe([self.o.main_topic])
        last_commit = time.monotonic()
        try:
            while not self.stop_event.is_set():
                for m in self.c.consume(num_messages=1000, timeout=0.05):
                    if m.error() is None:
                        self.read += 1
                if time.monotonic() - last_commit >= 0.2 and self.read:
                    last_commit = time.monotonic()
                    try:
                        done = self.c.commit(asynchronous=False)
                    except KafkaException:
                        self.commit_failures += 1  # broker down, rebalance, nothing to commit
                        continue
                    with self.o.lock:
                        for tp in done or []:
                            if tp.error is None and tp.offset >= 0:
                                k = (self.group, tp.partition)
                                self.o.commits[k] = max(self.o.commits.get(k, -1), tp.offset)
                                self.o.commit_acks += 1
        finally:
            self.c.close()


class AdminLoad(LoadThread):
    """Creates a new topic (1-4 partitions) every 0.3-1.5 s; records acknowledged creations."""

    def __init__(self, bootstrap, oracle: Oracle, cycle: int, rng: random.Random, stop, errors) -> None:
        super().__init__(f"admin-{cycle}", stop, errors)
        self.o, self.cycle, self.rng = oracle, cycle, rng
        self.a = ck.admin(bootstrap, **{"reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200})

    def body(self) -> None:
        n = 0
        pending = []
        while not self.stop_event.wait(self.rng.uniform(0.3, 1.5)):
            name = f"kill-created-{self.cycle}-{n}-{uuid.uuid4().hex[:6]}"
            parts = self.rng.randint(1, 4)
            n += 1
            fs = self.a.create_topics([NewTopic(name, num_partitions=parts, replication_factor=1)],
                                      operation_timeout=10, request_timeout=15)
            pending.append((name, parts, fs[name]))
            with self.o.lock:
                self.o.creations_tried += 1
        for name, parts, fut in pending:
            try:
                fut.result(timeout=20)
            except KafkaException:
                continue  # not acknowledged (the broker died meanwhile): may or may not exist
            with self.o.lock:
                self.o.topics[name] = parts
        self.a = None


# ------------------------------------------------------------------------------ checks
def wait_ready(a, topic: str, since: float) -> float:
    """Seconds since `since` until the broker answers Metadata with every partition of `topic` led."""
    ck.wait_for_topic(a, topic, MAIN_PARTITIONS, deadline_s=READY_DEADLINE_S)
    return time.monotonic() - since


def watermarks(a, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """partition -> (log start offset, high watermark), by ListOffsets (earliest, latest)."""
    out = {}
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        fs = a.list_offsets({TopicPartition(topic, p): spec for p in range(partitions)}, request_timeout=15)
        for tp, f in fs.items():
            out.setdefault(tp.partition, []).append(f.result(timeout=20).offset)
    return {p: tuple(v) for p, v in out.items()}


def read_all(bootstrap: str, topic: str, partitions: int, what: str) -> list:
    """Every record of `topic`, read from the log start to the end of each partition (EOF).

    Like ck.consume_all, with short consume() waits: consume() returns early only once it holds
    `num_messages`, and the end of a partition is known only after it returned."""
    errors = ck.ClientErrors()  # error_cb and consume() errors alike
    c = ck.consumer(bootstrap, errors)
    records, eof, deadline = [], set(), time.monotonic() + 60
    try:
        # Offset 0 rather than OFFSET_BEGINNING: librdkafka resolves BEGINNING with a ListOffsets it
        # first puts off ~0.5 s; the log start is 0 here (nothing is deleted), checked separately.
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while len(eof) < partitions:
            for m in c.consume(num_messages=10000, timeout=0.05):
                err = m.error()
                if err is None:
                    records.append(ck._rec(m))
                    eof.discard(m.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                else:
                    errors.append(err)
            assert not errors, f"{what}: errors reading {topic} (a corrupt batch?): {errors[:5]}"
            assert time.monotonic() < deadline, (
                f"{what}: reading {topic} timed out: {len(records)} records, EOF of {sorted(eof)}")
    finally:
        c.close()
    return records


def read_verified(o: Oracle, bootstrap: str, topic: str, partitions: int, acked: dict, sent: dict, make,
                  cycle: int) -> tuple[dict, dict[int, list]]:
    """A snapshot of `acked` ((partition, offset) -> seq), and every record of `topic` by partition;
    each record must be one that was sent (`sent`: seq -> cycle; `make(seq, cycle)`: its key and
    value), byte for byte."""
    with o.lock:
        acked, sent = dict(acked), dict(sent)
    by_part: dict[int, list] = defaultdict(list)
    for r in read_all(bootstrap, topic, partitions, f"cycle {cycle}"):
        seq = seq_of(r.value)
        assert seq in sent and (r.key, r.value) == make(seq, sent[seq]), (
            f"cycle {cycle}: the record at {topic} {r.partition}/{r.offset} was never sent or is corrupt: "
            f"{r.key!r} {r.value!r:.60}")
        by_part[r.partition].append(r)
    return acked, by_part


def check_main(o: Oracle, bootstrap: str, a, cycle: int) -> int:
    acked, by_part = read_verified(o, bootstrap, o.main_topic, MAIN_PARTITIONS, o.acked_main, o.sent_main,
                                   main_record, cycle)
    recs = [r for rs in by_part.values() for r in rs]
    wm = watermarks(a, o.main_topic, MAIN_PARTITIONS)
    for p in range(MAIN_PARTITIONS):
        rs = by_part.get(p, [])
        low, high = wm[p]
        offs = [r.offset for r in rs]
        assert offs == list(range(low, high)), (
            f"cycle {cycle}: partition {p}: offsets not contiguous from the log start {low} to the end "
            f"{high}: {len(offs)} records, first {offs[:3]}, last {offs[-3:]}")
        seqs = [seq_of(r.value) for r in rs]
        bad = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
        assert bad is None, (
            f"cycle {cycle}: partition {p}: sequence numbers not strictly increasing at offset "
            f"{offs[bad]}: ... {seqs[max(0, bad - 3):bad + 3]} (a duplicate or reordered record)")
        before = o.served.get(p, [])
        assert seqs[:len(before)] == before, (
            f"cycle {cycle}: partition {p}: records served before the kill changed or are gone "
            f"(log end offset was {len(before)}, is {len(seqs)}; first difference at offset "
            f"{next((i for i, (x, y) in enumerate(zip(before, seqs)) if x != y), len(seqs))})")
        o.served[p] = seqs
    at = {(r.partition, r.offset): seq_of(r.value) for r in recs}
    missing = [(p, off, s) for (p, off), s in acked.items() if at.get((p, off)) != s]
    assert not missing, (
        f"cycle {cycle}: {len(missing)} acknowledged records are not where they were acknowledged, e.g. "
        f"(partition, offset, seq) {sorted(missing)[:5]}; found there: {[at.get(m[:2]) for m in sorted(missing)[:5]]}")
    return len(recs)


def check_compacted(o: Oracle, bootstrap: str, a, cycle: int) -> int:
    acked, by_part = read_verified(o, bootstrap, o.compact_topic, COMPACT_PARTITIONS, o.acked_compact,
                                   o.sent_compact, compact_record, cycle)
    recs = [r for rs in by_part.values() for r in rs]
    latest: dict[bytes, tuple[int, int, int]] = {}  # key -> (partition, offset, seq)
    for r in recs:
        latest[r.key] = (r.partition, r.offset, seq_of(r.value))
    for p, rs in by_part.items():
        offs = [r.offset for r in rs]
        assert offs == sorted(set(offs)), f"cycle {cycle}: compacted partition {p}: offsets not increasing"
    wm = watermarks(a, o.compact_topic, COMPACT_PARTITIONS)
    for p in range(COMPACT_PARTITIONS):
        low, hw = wm[p]
        assert low == 0, f"cycle {cycle}: compacted partition {p}: the log start moved to {low}"
        assert hw >= o.compact_hw.get(p, 0), (
            f"cycle {cycle}: compacted partition {p}: log end offset went back from {o.compact_hw[p]} to {hw}")
        assert not by_part.get(p) or by_part[p][-1].offset < hw, f"cycle {cycle}: compacted partition {p}: record past the end"
        o.compact_hw[p] = hw
    # The last acknowledged write of each key, and every acknowledged write, against the log.
    last_acked: dict[bytes, tuple[int, int, int]] = {}
    present = {(r.partition, r.offset): seq_of(r.value) for r in recs}
    for (p, off), seq in acked.items():
        key = compact_record(seq, 0)[0]
        if key not in last_acked or off > last_acked[key][1]:
            last_acked[key] = (p, off, seq)
        if present.get((p, off)) != seq:
            lp, loff, _ = latest.get(key, (p, -1, None))
            assert present.get((p, off)) is None and loff > off, (
                f"cycle {cycle}: acknowledged compacted write {p}/{off} (seq {seq}) is gone without a later "
                f"record of its key (latest of {key!r}: {latest.get(key)})")
    for key, (p, off, seq) in last_acked.items():
        lp, loff, lseq = latest[key]
        assert (loff, lseq) == (off, seq) or (loff > off and lseq > seq), (
            f"cycle {cycle}: key {key!r}: latest record is {lp}/{loff} seq {lseq}, but the last acknowledged "
            f"write is {p}/{off} seq {seq}")
    if len(recs) < sum(o.compact_hw.values()):
        o.compacted_ever = True
    return len(recs)


def check_commits_and_topics(o: Oracle, a, cycle: int) -> None:
    with o.lock:
        commits = dict(o.commits)
        topics = dict(o.topics)
    groups = sorted({g for g, _ in commits})
    for g in groups:
        got = gh.admin_group_offsets(a, g)
        for (gg, p), off in commits.items():
            if gg != g:
                continue
            tp = got.get((o.main_topic, p))
            have = tp.offset if tp is not None else None
            assert have is not None and have >= off, (
                f"cycle {cycle}: group {g} partition {p}: acknowledged commit {off}, committed offset now {have}")
    md = a.list_topics(timeout=15)
    lost = {t: n for t, n in topics.items() if t not in md.topics or len(md.topics[t].partitions) != n}
    assert not lost, (
        f"cycle {cycle}: acknowledged topic creations lost or changed: "
        f"{ {t: (n, len(md.topics[t].partitions) if t in md.topics else None) for t, n in lost.items()} }")


# ------------------------------------------------------------------------------ the test
@pytest.mark.timeout(max(600, 30 * CYCLES))  # ~3 s a cycle; longer runs get longer
def test_sigkill_under_mixed_load_keeps_every_acknowledged_write(make_broker, new_topic):
    rng = random.Random(SEED)
    print(f"\nRUNNEL_KILL_SEED={SEED} RUNNEL_KILL_CYCLES={CYCLES} RUNNEL_KILL_RATE={MAIN_RATE:g}")
    b = make_broker("kill-load", overrides=BROKER)
    o = Oracle(new_topic("main"), new_topic("compact"))
    ck.create_topic(b.bootstrap, o.main_topic, MAIN_PARTITIONS, {"segment.ms": "2000"})
    ck.create_topic(b.bootstrap, o.compact_topic, COMPACT_PARTITIONS, {
        "cleanup.policy": "compact", "segment.ms": "300", "min.cleanable.dirty.ratio": "0.01",
        "file.delete.delay.ms": "100"})
    seqs = {"main": iter(range(1 << 40)), "compact": iter(range(1 << 40))}
    t_start = time.monotonic()
    ready_s: list[float] = []
    errors: list[str] = []
    logged = 0
    for cycle in range(CYCLES):
        stop = threading.Event()
        threads = [
            ProducerLoad(b.bootstrap, o, cycle, seqs, stop, errors),
            GroupLoad(b.bootstrap, o, cycle, stop, errors),
            AdminLoad(b.bootstrap, o, cycle, random.Random(rng.random()), stop, errors),
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(*LOAD_S))  # the random kill delay
        assert b.alive(), f"cycle {cycle}: the broker died by itself under load: {b.status_line()}"
        b.kill()
        t_kill = time.monotonic()
        b.restart()
        # A new client each cycle: librdkafka 2.16 re-bootstraps a client that saw every broker go
        # down, and an AdminClient kept across the kill then times out on group requests.
        checker = ck.admin(b.bootstrap)
        ready_s.append(wait_ready(checker, o.main_topic, t_kill))
        t_stop = time.monotonic()
        stop.set()
        for t in threads:
            t.join(STOP_DEADLINE_S)
            assert not t.is_alive(), f"cycle {cycle}: load thread {t.name} did not stop within {STOP_DEADLINE_S}s"
        assert not errors, f"cycle {cycle}: a load thread failed:\n" + "\n".join(errors)
        t_check = time.monotonic()
        n_main = check_main(o, b.bootstrap, checker, cycle)
        n_compact = check_compacted(o, b.bootstrap, checker, cycle)
        check_commits_and_topics(o, checker, cycle)
        assert threads[0].fatal is None, f"cycle {cycle}: the idempotent producer failed: {threads[0].fatal}"
        assert "panicked" not in b.log_text(since=logged, limit=10**9), f"cycle {cycle}: the broker panicked"
        logged = b.log_size()
        grp = threads[1]
        t_end = time.monotonic()
        print(f"cycle {cycle:3d}: t={t_end - t_start:6.1f}s, serving {ready_s[-1]:.2f}s after the kill, stopped in "
              f"{t_check - t_stop:.2f}s, checked in {t_end - t_check:.2f}s; main: "
              f"{len(o.acked_main)} acked / {len(o.sent_main)} sent, {n_main} in the log; compacted: "
              f"{len(o.acked_compact)} acked, {n_compact} in the log; group read {grp.read}, "
              f"{o.commit_acks} commits acked; {len(o.topics)}/{o.creations_tried} creations acked")
    assert o.acked_main, "no record was ever acknowledged"
    assert o.commits, "no offset commit was ever acknowledged"
    assert o.topics, "no topic creation was ever acknowledged"
    assert o.compacted_ever or CYCLES < 5, "the cleaner never removed a record from the compacted topic"
    print(f"{CYCLES} SIGKILL cycles in {time.monotonic() - t_start:.1f}s: {len(o.acked_main)} records acknowledged "
          f"and verified each cycle ({len(o.sent_main)} sent), {len(o.acked_compact)} compacted writes acknowledged, "
          f"{o.commit_acks} commits acknowledged over {len({g for g, _ in o.commits})} groups, {len(o.topics)} "
          f"topics created; broker serving Metadata again {max(ready_s):.2f}s after the kill at most, "
          f"{sum(ready_s) / len(ready_s):.2f}s on average")
