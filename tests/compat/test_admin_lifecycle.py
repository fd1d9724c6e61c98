"""Log lifecycle and run-time topic administration (issue 4), with real clients.

- retention by time and by size: old segments go, the log start offset (low watermark) moves,
  consumers positioned below it reset per `auto.offset.reset`;
- compaction: the latest value per key, tombstones kept for `delete.retention.ms` then removed,
  transaction markers removed once their transaction left no data (read_committed readers still
  read the latest committed values), and a SIGKILL in the middle of a clean leaves a log that
  reads back correctly;
- confluent-kafka's AdminClient and kafka-python's KafkaAdminClient: describe / alter /
  incrementally alter topic configs (visible at once and after a restart), CreatePartitions,
  DeleteRecords, ListOffsets by timestamp.

Each test runs its own broker (make_broker); those that wait for retention, `segment.ms` rolling
or the cleaner have them checked every 200 ms (lifecycle_helpers.FAST_LIFECYCLE). Kafka's
behaviour is the expectation.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, NewPartitions, OffsetSpec, ResourceType

import ck_helpers as ck
import lifecycle_helpers as lh
from lifecycle_helpers import FAST_LIFECYCLE, QUICK_BROKER, MiB
from runnel_harness import wait_until

pytestmark = pytest.mark.own_broker

SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                 AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)


def _produce_all(bootstrap: str, topic: str, items, **conf) -> ck.Deliveries:
    """Produce (key, value, timestamp_ms|None, partition) items in order, one request in flight
    (order kept without relying on idempotence); every record must be acknowledged."""
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr, **{"max.in.flight.requests.per.connection": 1, **conf})
    n = 0
    for key, value, ts, part in items:
        kw = {"key": key, "value": value}
        if ts is not None:
            kw["timestamp"] = ts
        if part is not None:
            kw["partition"] = part
        ck.produce(p, topic, **kw)
        n += 1
    ck.flush(p)
    assert not dr.failed, f"produce to {topic} failed: {dr.failure_summary()}"
    assert len(dr.ok) == n
    return dr


def _first_event(bootstrap: str, topic: str, offset: int, reset: str, deadline_s: float = 20):
    """Assign partition 0 at `offset` with auto.offset.reset=`reset`; return ("record", Rec) for
    the first record or ("eof", offset) for the first end-of-partition event, plus the consumer
    (still open, for reading on)."""
    c = ck.consumer(bootstrap, **{"auto.offset.reset": reset})
    c.assign([TopicPartition(topic, 0, offset)])
    deadline = time.monotonic() + deadline_s
    errors = []
    while time.monotonic() < deadline:
        for m in c.consume(num_messages=1, timeout=0.2):
            err = m.error()
            if err is None:
                return ("record", ck._rec(m)), c
            if err.code() == KafkaError._PARTITION_EOF:
                return ("eof", m.offset()), c
            errors.append(f"{err.name()}: {err.str()}")
    c.close()
    raise AssertionError(f"consumer at offset {offset} (auto.offset.reset={reset}) got neither a record nor "
                         f"end-of-partition within {deadline_s}s; errors: {errors[:5]}")


def _read_on(c, until_offset: int, deadline_s: float = 20) -> list:
    """Records from an assigned consumer until one at `until_offset - 1` arrived."""
    out = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for m in c.consume(num_messages=500, timeout=0.2):
            if m.error() is None:
                out.append(ck._rec(m))
        if out and out[-1].offset >= until_offset - 1:
            return out
    raise AssertionError(f"read only up to {out[-1].offset if out else None}, expected up to {until_offset - 1}")


# =============================================================================== retention
@pytest.mark.timeout(60)
def test_retention_ms_deletes_old_segments_and_consumers_reset(make_broker, new_topic):
    b = make_broker("retention-ms", overrides=FAST_LIFECYCLE)
    topic = new_topic()
    # segment.ms=500: the idle active segment rolls within ~0.7 s and becomes deletable.
    # retention.ms starts at 30 s so the "current" records below are safe while the consumer checks
    # run; it is lowered to 2 s at run time afterwards (the "wait" case).
    ck.create_topic(b.bootstrap, topic, 1, {"retention.ms": "30000", "segment.ms": "500",
                                            "file.delete.delay.ms": "100"})
    old_ts = lh.now_ms() - 3_600_000  # an hour old: past retention.ms as soon as its segment is closed
    n_old, n_new = 200, 50
    dr = _produce_all(b.bootstrap, topic, [(None, b"old-%d" % i, old_ts + i, 0) for i in range(n_old)])
    assert [d[1] for d in dr.ok] == list(range(n_old))

    with lh.Watermarks(b.bootstrap, topic) as wm:
        low, high = wm.wait(lambda lo, hi: lo == n_old, 15,
                            f"the low watermark to move from 0 to {n_old} (old-timestamp segment deleted)")
        assert high == n_old
        dr2 = _produce_all(b.bootstrap, topic, [(None, b"new-%d" % i, None, 0) for i in range(n_new)])
        assert [d[1] for d in dr2.ok] == list(range(n_old, n_old + n_new))
        assert wm.get() == (n_old, n_old + n_new), "records younger than retention.ms were deleted"

        # The deleted segment's files leave the disk after file.delete.delay.ms.
        wait_until(lambda: 0 not in lh.live_segments(b, topic) and not any(
            p.name.startswith("00000000000000000000.") for p in lh.partition_dir(b, topic).iterdir()),
            10, what="the files of segment 0 to be removed")

        # A consumer at the old offset 0: OFFSET_OUT_OF_RANGE -> auto.offset.reset.
        ev, c = _first_event(b.bootstrap, topic, 0, "earliest")
        try:
            assert ev[0] == "record", f"auto.offset.reset=earliest from offset 0: expected a record, got {ev}"
            assert (ev[1].offset, ev[1].value) == (n_old, b"new-0"), \
                f"earliest reset should land on the new low watermark {n_old}, got {ev[1]}"
            rest = [ev[1]] + _read_on(c, n_old + n_new)
            assert [(r.offset, r.value) for r in rest] == [(n_old + i, b"new-%d" % i) for i in range(n_new)]
        finally:
            c.close()

        ev, c = _first_event(b.bootstrap, topic, 0, "latest")
        try:
            assert ev == ("eof", n_old + n_new), \
                f"auto.offset.reset=latest from offset 0: expected end-of-partition at {n_old + n_new}, got {ev}"
            marker = _produce_all(b.bootstrap, topic, [(None, b"marker", None, 0)])
            assert marker.ok[0][1] == n_old + n_new
            got = _read_on(c, n_old + n_new + 1)
            assert [(r.offset, r.value) for r in got] == [(n_old + n_new, b"marker")]
        finally:
            c.close()

        # Lower retention.ms at run time to 2 s: the current records expire once 2 s old.
        lh.incremental_alter(ck.admin(b.bootstrap), ResourceType.TOPIC, topic, [("retention.ms", SET, "2000")])
        end = n_old + n_new + 1
        wm.wait(lambda lo, hi: lo == end and hi == end, 20,
                f"every record to expire under retention.ms=2000 (low watermark = high watermark = {end})")

    ev, c = _first_event(b.bootstrap, topic, 0, "earliest")
    c.close()
    assert ev == ("eof", end), f"an empty log (all expired): expected end-of-partition at {end}, got {ev}"


@pytest.mark.timeout(60)
def test_retention_bytes_keeps_partition_within_bound_plus_one_segment(make_broker, new_topic):
    b = make_broker("retention-bytes", overrides=FAST_LIFECYCLE)
    topic = new_topic()
    seg, bound = MiB, 2 * MiB  # Kafka 4's smallest segment.bytes
    ck.create_topic(b.bootstrap, topic, 1, {"segment.bytes": str(seg), "retention.bytes": str(bound),
                                            "file.delete.delay.ms": "100"})
    size, n = 10_000, 600  # ~6 MB of incompressible values
    values = [b"%06d|" % i + os.urandom(size - 7) for i in range(n)]
    _produce_all(b.bootstrap, topic, [(None, v, None, 0) for v in values],
                 **{"batch.size": 65536, "linger.ms": 2, "compression.type": "none",
                    "max.in.flight.requests.per.connection": 5})

    def within_bound():
        live = lh.live_segments(b, topic)
        return live if sum(live.values()) <= bound + seg and min(live) > 0 else None

    live = wait_until(within_bound, 20, what=f"the partition's segments to total at most {bound + seg} bytes")
    total = sum(live.values())
    low, high = lh.watermarks(b.bootstrap, topic)
    assert high == n
    assert low == min(live), f"low watermark {low} is not the base offset of the oldest segment {sorted(live)}"
    # Kafka deletes a segment only while the rest still holds retention.bytes: never below the bound.
    assert total >= bound, f"retention deleted too much: {total} bytes left of a {bound}-byte bound ({sorted(live.items())})"
    kept = high - low
    assert kept * size <= bound + seg, f"{kept} records of {size} bytes kept: more than bound + one segment"

    recs = lh.read_partition(b.bootstrap, topic, 0, **{"fetch.max.bytes": 4 * MiB,
                                                      "max.partition.fetch.bytes": 2 * MiB})
    assert [r.offset for r in recs] == list(range(low, n))
    assert [r.value for r in recs] == values[low:], "kept records differ from the ones produced"
    print(f"retention.bytes={bound}: {len(live)} segments, {total} bytes on disk, offsets [{low}, {high})")


# =============================================================================== compaction
N_KEYS, N_ROUNDS, N_TOMBSTONES = 20, 5, 5


def _compaction_items(pad: int = 0):
    """Five values for each of twenty keys (round by round), then tombstones for the first five."""
    items = []
    for rnd in range(N_ROUNDS):
        for k in range(N_KEYS):
            items.append((b"key-%02d" % k, b"key-%02d:v%d|" % (k, rnd) + b"x" * pad, None, 0))
    for k in range(N_TOMBSTONES):
        items.append((b"key-%02d" % k, None, None, 0))
    return items


def _expected_compacted(dr: ck.Deliveries, with_tombstones: bool) -> list:
    """(offset, key, value) of the last record of each key, in offset order."""
    last = {}
    for _part, off, key, value, _h in dr.ok:
        last[key] = (off, key, value)
    out = sorted(last.values())
    if not with_tombstones:
        out = [t for t in out if t[2] is not None]
    return out


def _triples(records) -> list:
    return [(r.offset, r.key, r.value) for r in records]


@pytest.mark.timeout(60)
def test_compacted_topic_keeps_latest_values_then_drops_tombstones(make_broker, new_topic):
    b = make_broker("compaction", overrides=FAST_LIFECYCLE)
    topic = new_topic()
    delete_retention_ms = 4000
    ck.create_topic(b.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(delete_retention_ms), "file.delete.delay.ms": "100"})
    items = _compaction_items()
    dr = _produce_all(b.bootstrap, topic, items)
    written_at = time.monotonic()
    with_tomb = _expected_compacted(dr, with_tombstones=True)
    without_tomb = _expected_compacted(dr, with_tombstones=False)
    assert len(with_tomb) == N_KEYS and len(without_tomb) == N_KEYS - N_TOMBSTONES

    # Cleaning: the segment rolls (segment.ms), then the cleaner keeps the last record per key.
    # (Should the roll split the writes, a first clean may cover only part of them: every state
    # read meanwhile must still hold the same latest value per key.)
    sent = {off: (key, value) for _p, off, key, value, _h in dr.ok}
    latest = {k: v for _o, k, v in with_tomb}
    state = {}

    def cleaned():
        recs = lh.read_partition(b.bootstrap, topic)
        state["recs"] = _triples(recs)
        bad = [t for t in state["recs"] if sent.get(t[0]) != t[1:]]
        if bad:
            state["problem"] = f"records that are not what was written at their offset: {bad[:5]}"
        elif lh.latest_per_key(recs) != latest:
            state["problem"] = f"latest value per key changed: read {state['recs']}"
        return "problem" in state or state["recs"] == with_tomb

    try:
        wait_until(cleaned, 20, interval_s=0.2, what="the compacted topic to be cleaned")
    except AssertionError as e:
        raise AssertionError(
            f"{e}\nafter cleaning: expected the {N_KEYS - N_TOMBSTONES} latest values and {N_TOMBSTONES} "
            f"tombstones {with_tomb}, read {state.get('recs')}") from None
    assert "problem" not in state, state["problem"]
    assert lh.watermarks(b.bootstrap, topic) == (0, len(items)), "cleaning must not move the log start or end"

    # Tombstones go once delete.retention.ms has passed since the clean that first saw them.
    # (Time must pass here: the clean's delete horizon is delete.retention.ms after it ran.)
    def tombstones_gone():
        state["recs"] = _triples(lh.read_partition(b.bootstrap, topic))
        return state["recs"] != with_tomb

    wait_until(tombstones_gone, delete_retention_ms / 1000 + 15, interval_s=0.3,
               what=f"the tombstones to be removed after delete.retention.ms={delete_retention_ms}")
    gone_at = time.monotonic()
    assert state["recs"] == without_tomb, f"after delete.retention.ms: expected {without_tomb}, read {state['recs']}"
    assert gone_at - written_at >= delete_retention_ms / 1000, (
        f"tombstones removed {gone_at - written_at:.1f}s after they were written, "
        f"before delete.retention.ms={delete_retention_ms}")


@pytest.mark.timeout(60)
def test_compacted_topic_written_in_transactions_drops_markers_and_reads_committed_values(make_broker, new_topic):
    """A compacted topic written by one transactional producer (confluent-kafka): three committed
    transactions, each overwriting the keys of the one before, and two aborted ones. As Kafka's
    cleaner does, Runnel's removes the aborted records and the superseded ones, then, once
    delete.retention.ms has passed, the transaction markers (control batches) whose transaction
    left no data: of the five, only the last commit's stays (counted in the segment files on
    disk). A plain producer keeps writing another key meanwhile, as a live changelog does: a
    marker's horizon alone does not make a clean due (only a tombstone's does), the dirty ratio
    does. Then the same producer commits a value for a key that only an aborted transaction had
    written: read_committed readers read exactly the latest committed value of every key, no
    aborted one. (Had the aborted-transaction index kept the entry of a removed abort marker,
    they would drop every later batch of the producer: the reader skips a producer's batches from
    an aborted transaction's first offset until it reads that transaction's abort marker.)"""
    b = make_broker("compaction-txn", overrides={**FAST_LIFECYCLE, "transaction.state.log.num.partitions": "2"})
    topic = new_topic()
    delete_retention_ms = 2000
    ck.create_topic(b.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": str(delete_retention_ms), "file.delete.delay.ms": "100"})
    dr = ck.Deliveries()
    p = ck.producer(b.bootstrap, on_delivery=dr, **{"transactional.id": f"txn-{topic}", "enable.idempotence": True})
    p.init_transactions(30)
    began = []  # when each transaction began

    def transaction(commit: bool, values: dict) -> list:
        """One transaction of `values` ({key: value}); the offsets of its records."""
        began.append(time.monotonic())
        first = len(dr.ok)
        p.begin_transaction()
        for key, value in values.items():
            ck.produce(p, topic, key=key, value=value, partition=0)
        ck.flush(p, 30)  # written before the end of the transaction, also when it is aborted
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        assert not dr.failed, f"transactional produce to {topic} failed: {dr.failure_summary()}"
        return [off for _p, off, _k, _v, _h in dr.ok[first:]]

    txns = [(True, {b"k0": b"k0:t1", b"k1": b"k1:t1"}),
            (False, {b"k0": b"k0:t2-aborted", b"k2": b"k2:t2-aborted"}),
            (True, {b"k0": b"k0:t3", b"k1": b"k1:t3"}),
            (False, {b"k3": b"k3:t4-aborted"}),
            (True, {b"k0": b"k0:t5", b"k1": b"k1:t5"})]
    # Each transaction's marker follows its last record.
    markers = [max(transaction(commit, values)) + 1 for commit, values in txns]
    aborted = {v for commit, values in txns if not commit for v in values.values()}
    seen = {}

    def markers_on_disk(done) -> bool:
        got = lh.control_batch_offsets(b, topic)
        if got is not None:
            seen["markers"] = got
        return got is not None and done(got)

    # Markers are written after EndTxn is answered: wait for the last one. (Should the transactions
    # have taken a while, a clean may already have removed some of the earlier ones.)
    wait_until(lambda: markers_on_disk(lambda got: markers[-1] in got), 15,
               what=f"the last transaction marker, at {markers[-1]}, on disk")
    assert set(seen["markers"]) <= set(markers), f"markers written at {markers}, on disk {seen['markers']}"
    # The segment rolls (segment.ms); a first clean removes the aborted and superseded records and
    # starts the markers' delete horizon; a clean past it removes the markers of t1 to t4. The last
    # marker stays: its transaction's records are the latest of their keys. (Time must pass here.)
    # Each poll writes one plain record of another key, so that cleans stay due by the dirty ratio.
    plain = ck.producer(b.bootstrap)
    filler = []

    def write_filler_then_check() -> bool:
        filler.append(b"filler:%d" % len(filler))
        ck.produce(plain, topic, key=b"filler", value=filler[-1], partition=0)
        ck.flush(plain, 30)
        return markers_on_disk(lambda got: got == markers[-1:])

    try:
        wait_until(write_filler_then_check, delete_retention_ms / 1000 + 20,
                   interval_s=0.2, what="the cleaner to remove the markers of the transactions that left no data")
    except AssertionError as e:
        raise AssertionError(f"{e}; markers written at {markers}, on disk {seen.get('markers')}") from None
    # t4's marker, the last removed, was written after t4 began; its horizon starts after that.
    gone_at = time.monotonic()
    assert gone_at - began[3] >= delete_retention_ms / 1000, (
        f"t4's marker removed {gone_at - began[3]:.1f}s after t4 began, "
        f"before delete.retention.ms={delete_retention_ms}")

    # The same producer commits again, to a key that only the aborted t2 had written.
    transaction(True, {b"k2": b"k2:t6"})
    want = {b"k0": b"k0:t5", b"k1": b"k1:t5", b"k2": b"k2:t6", b"filler": filler[-1]}
    committed = lh.read_partition(b.bootstrap, topic, **{"isolation.level": "read_committed"})
    got = _triples(committed)
    assert not [t for t in got if t[2] in aborted], f"read_committed read aborted values: {got}"
    assert lh.latest_per_key(committed) == want, \
        f"read_committed: expected the latest committed values {want}, read {got}"
    # read_uncommitted reads the same: the cleaner removed the aborted records.
    uncommitted = lh.read_partition(b.bootstrap, topic, **{"isolation.level": "read_uncommitted"})
    assert lh.latest_per_key(uncommitted) == want, f"read_uncommitted: expected {want}, read {_triples(uncommitted)}"


@pytest.mark.timeout(60)
def test_sigkill_during_cleaning_leaves_a_correct_log(make_broker, new_topic):
    """SIGKILL the broker twice while it cleans: the moment the clean creates its output file
    (`<base>.log.cleaned`, before the commit point), and the moment it renames it to
    `<base>.log.swap` (the commit point; the signal may land a little later, after the old
    segments were replaced: the test prints which files were there). inotify on the partition
    directory reports each file at once. After each restart the log reads back as written (the
    same records at the same offsets, the same latest value per key); the clean is then redone
    and completes. Values are padded to 2 KB so that a clean takes a little while."""
    b = make_broker("compaction-crash", overrides=FAST_LIFECYCLE)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 1, {
        "cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.01"})
    pdir = lh.partition_dir(b, topic)
    items = _compaction_items(pad=2000)
    with_tomb: list = []
    sent: dict = {}

    def check_reads_back(when: str) -> list:
        recs = lh.read_partition(b.bootstrap, topic)
        bad = [(r.offset, r.key, r.value[:16] if r.value else r.value) for r in recs
               if sent.get(r.offset) != (r.key, r.value)]
        assert not bad, f"{when}: records that are not what was written at their offset: {bad[:5]}"
        offs = [r.offset for r in recs]
        assert offs == sorted(set(offs)), f"{when}: offsets not strictly increasing"
        assert lh.latest_per_key(recs) == {k: v for _o, k, v in with_tomb}, f"{when}: latest value per key changed"
        assert {o for o, _k, _v in with_tomb} <= set(offs), f"{when}: a latest record is missing"
        return recs

    # 1. Write the data; kill when the clean creates its output file.
    with lh.DirWatch(pdir) as watch:
        dr = _produce_all(b.bootstrap, topic, items)
        sent.update({off: (key, value) for _p, off, key, value, _h in dr.ok})
        with_tomb.extend(_expected_compacted(dr, with_tombstones=True))
        name = watch.wait_for(lambda n: n.endswith(".log.cleaned"), 20, "the cleaner to create a *.log.cleaned file")
        b.kill()
    left = sorted(p.name for p in pdir.iterdir() if p.name.endswith((".cleaned", ".swap", ".deleted")))
    # Restart with the cleaner off, to read the log exactly as recovery left it.
    b.overrides["log.cleaner.enable"] = "false"
    b.restart()
    recs = check_reads_back("after a SIGKILL before the commit point")
    print(f"SIGKILL when {name} appeared; clean files then: {left}; {len(recs)} records read back after restart")

    # 2. Cleaner on again; kill at the commit point (the rename to *.log.swap) or just after it.
    b.stop()
    del b.overrides["log.cleaner.enable"]
    with lh.DirWatch(pdir) as watch:
        b.restart()
        name = watch.wait_for(lambda n: n.endswith(".log.swap"), 20, "the cleaner to rename its output to *.log.swap")
        b.kill()
    left = sorted(p.name for p in pdir.iterdir() if p.name.endswith((".cleaned", ".swap", ".deleted")))
    b.restart()
    recs = check_reads_back("after a SIGKILL at/after the commit point")
    print(f"SIGKILL when {name} appeared; clean files then: {left}; {len(recs)} records read back after restart")

    # The interrupted clean is redone: exactly the latest record of every key (tombstones are
    # kept: delete.retention.ms is the default, one day), and no clean's temporary file is left.
    state = {}

    def cleaned():
        try:
            state["recs"] = _triples(check_reads_back("after the restarts, while the clean is redone"))
        except AssertionError as e:  # stop waiting: reported below
            state["problem"] = str(e)
            return True
        return state["recs"] == with_tomb

    try:
        wait_until(cleaned, 20, interval_s=0.3, what="the clean to complete after the restarts")
    except AssertionError:
        got = [(o, k, v[:16] if v else v) for o, k, v in state.get("recs", [])]
        raise AssertionError(f"after the restarts and cleaning: expected offsets {[t[0] for t in with_tomb]}, "
                             f"read {len(got)} records {got[:30]}") from None
    assert "problem" not in state, state["problem"]
    leftovers = [p.name for p in pdir.iterdir() if p.name.endswith((".cleaned", ".swap"))]
    assert not leftovers, f"temporary clean files left behind: {leftovers}"


# =============================================================================== admin: confluent-kafka
def _ck_describe(a, topic):
    return {k: lh.entry_summary(e) for k, e in lh.describe_topic(a, topic).items()}


@pytest.mark.timeout(90)
def test_confluent_admin_configs_partitions_delete_records_and_offsets_for_times(make_broker, new_topic):
    b = make_broker("admin-confluent", overrides=QUICK_BROKER)
    a = ck.admin(b.bootstrap)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 1, {"retention.ms": "86400000", "segment.ms": "3600000"})

    cfg = _ck_describe(a, topic)
    assert cfg["retention.ms"] == ("86400000", "DYNAMIC_TOPIC_CONFIG", False)
    assert cfg["segment.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG", False)
    assert cfg["cleanup.policy"] == ("delete", "DEFAULT_CONFIG", True)
    assert cfg["max.message.bytes"] == ("1048588", "DEFAULT_CONFIG", True)

    # AlterConfigs replaces the topic's whole config: keys not given go back to their defaults.
    lh.alter(a, ResourceType.TOPIC, topic, {"retention.ms": "3600000", "max.message.bytes": "2000"})
    cfg = _ck_describe(a, topic)
    assert cfg["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG", False)
    assert cfg["max.message.bytes"] == ("2000", "DYNAMIC_TOPIC_CONFIG", False)
    assert cfg["segment.ms"] == ("604800000", "DEFAULT_CONFIG", True), "AlterConfigs must reset keys it omits"

    # ... and applies at once: a 5000-byte record is now over max.message.bytes.
    dr = ck.Deliveries()
    p = ck.producer(b.bootstrap, on_delivery=dr, **{"message.timeout.ms": 10000})
    p.produce(topic, partition=0, value=b"y" * 5000)
    ck.flush(p, 20)
    assert len(dr.failed) == 1 and dr.failed[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, \
        f"a 5000-byte record with max.message.bytes=2000: {dr.ok or dr.failure_summary()}"

    # IncrementalAlterConfigs: SET, DELETE (back to the default), APPEND/SUBTRACT on a list.
    lh.incremental_alter(a, ResourceType.TOPIC, topic, [
        ("segment.ms", SET, "7200000"), ("max.message.bytes", DELETE, None), ("cleanup.policy", APPEND, "compact")])
    cfg = _ck_describe(a, topic)
    assert cfg["segment.ms"] == ("7200000", "DYNAMIC_TOPIC_CONFIG", False)
    assert cfg["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG", False), "incremental alter touched another key"
    assert cfg["max.message.bytes"] == ("1048588", "DEFAULT_CONFIG", True)
    assert cfg["cleanup.policy"] == ("delete,compact", "DYNAMIC_TOPIC_CONFIG", False)
    lh.incremental_alter(a, ResourceType.TOPIC, topic, [("cleanup.policy", SUBTRACT, "compact")])
    assert _ck_describe(a, topic)["cleanup.policy"][0] == "delete"
    dr = _produce_all(b.bootstrap, topic, [(None, b"y" * 5000, None, 0)])  # fits again

    # An invalid value: INVALID_CONFIG naming the key; nothing changes.
    with pytest.raises(Exception) as ei:
        lh.incremental_alter(a, ResourceType.TOPIC, topic, [("segment.bytes", SET, "1000")])
    err = lh.kafka_error(ei.value)
    assert err.code() == KafkaError.INVALID_CONFIG and "segment.bytes" in err.str(), f"{err}"
    assert _ck_describe(a, topic)["segment.bytes"] == ("1073741824", "DEFAULT_CONFIG", True)

    # Broker-level defaults of topic configs (broker "1"; confluent-kafka refuses the cluster-wide
    # default resource "" on the client side: "Invalid ConfigResource").
    lh.incremental_alter(a, ResourceType.BROKER, "1", [("message.max.bytes", SET, "2000000"),
                                                      ("log.retention.bytes", SET, "123456789")])
    cfg = _ck_describe(a, topic)
    assert cfg["max.message.bytes"][:2] == ("2000000", "DYNAMIC_BROKER_CONFIG")
    assert cfg["retention.bytes"][:2] == ("123456789", "DYNAMIC_BROKER_CONFIG")
    bcfg = lh.describe(a, ResourceType.BROKER, "1")
    assert lh.entry_summary(bcfg["log.retention.bytes"])[:2] == ("123456789", "DYNAMIC_BROKER_CONFIG")
    before_restart = cfg

    # CreatePartitions: 1 -> 3; fewer is INVALID_PARTITIONS.
    fs = a.create_partitions([NewPartitions(topic, 3)], request_timeout=15)
    fs[topic].result(timeout=15)
    ck.wait_for_topic(a, topic, 3)
    with pytest.raises(Exception) as ei:
        a.create_partitions([NewPartitions(topic, 2)], request_timeout=15)[topic].result(timeout=15)
    assert lh.kafka_error(ei.value).code() == KafkaError.INVALID_PARTITIONS, f"{ei.value}"

    # Restart (SIGTERM): configs and partitions persist.
    b.restart()
    a = ck.admin(b.bootstrap)
    ck.wait_for_topic(a, topic, 3)
    assert _ck_describe(a, topic) == before_restart, "topic configs differ after a broker restart"
    assert lh.describe(a, ResourceType.BROKER, "1")["message.max.bytes"].value == "2000000"

    # DeleteRecords on partition 2 (a new one): 10 records, delete below 4, then all.
    dr = _produce_all(b.bootstrap, topic, [(None, b"d%d" % i, None, 2) for i in range(10)])
    assert [d[1] for d in dr.ok] == list(range(10))
    tp = TopicPartition(topic, 2, 4)
    res = a.delete_records([tp], request_timeout=15)
    deleted = next(iter(res.values())).result(timeout=15)
    assert deleted.low_watermark == 4, deleted
    assert lh.watermarks(b.bootstrap, topic, 2) == (4, 10)
    recs = lh.read_partition(b.bootstrap, topic, 2)
    assert [(r.offset, r.value) for r in recs] == [(i, b"d%d" % i) for i in range(4, 10)]
    with pytest.raises(Exception) as ei:
        next(iter(a.delete_records([TopicPartition(topic, 2, 11)], request_timeout=15).values())).result(timeout=15)
    assert lh.kafka_error(ei.value).code() == KafkaError.OFFSET_OUT_OF_RANGE, f"{ei.value}"
    res = a.delete_records([TopicPartition(topic, 2, OFFSET_END)], request_timeout=15)
    assert next(iter(res.values())).result(timeout=15).low_watermark == 10
    assert lh.watermarks(b.bootstrap, topic, 2) == (10, 10)

    # ListOffsets by timestamp on partition 1: two batches of five records with distinct timestamps.
    t0 = lh.now_ms() - 60_000
    stamps = [t0 + 10 * i for i in range(5)] + [t0 + 100 + 10 * i for i in range(5)]
    _produce_all(b.bootstrap, topic, [(None, b"t%d" % i, ts, 1) for i, ts in enumerate(stamps[:5])],
                 **{"linger.ms": 200})
    _produce_all(b.bootstrap, topic, [(None, b"t%d" % i, ts, 1) for i, ts in enumerate(stamps[5:], 5)],
                 **{"linger.ms": 200})
    lookups = {t0 - 1000: 0, t0: 0, t0 + 15: 2, t0 + 20: 2, t0 + 40: 4, t0 + 41: 5, t0 + 125: 8,
               t0 + 140: 9, t0 + 141: -1}
    c = ck.consumer(b.bootstrap)
    try:
        got = {ts: c.offsets_for_times([TopicPartition(topic, 1, ts)], timeout=10)[0] for ts in lookups}
    finally:
        c.close()
    assert {ts: r.offset for ts, r in got.items()} == lookups, "consumer.offsets_for_times"
    assert all(r.error is None for r in got.values()), got

    specs = {TopicPartition(topic, 1, 0): OffsetSpec.for_timestamp(t0 + 15)}
    r = next(iter(a.list_offsets(specs, request_timeout=15).values())).result(timeout=15)
    assert (r.offset, r.timestamp) == (2, t0 + 20)
    r = next(iter(a.list_offsets({TopicPartition(topic, 1, 0): OffsetSpec.max_timestamp()},
                                 request_timeout=15).values())).result(timeout=15)
    assert (r.offset, r.timestamp) == (9, t0 + 140)
    for spec, want in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10)):
        r = next(iter(a.list_offsets({TopicPartition(topic, 1, 0): spec}, request_timeout=15).values())).result(timeout=15)
        assert r.offset == want, (spec, r)


# =============================================================================== admin: kafka-python
def _kp_describe(a, rtype: str, name: str) -> dict:
    """kafka-python describe_configs (all keys): {key: (value, config_source)}."""
    from kafka.admin import ConfigResource as KConfigResource

    got = a.describe_configs([KConfigResource(rtype, name)], config_filter="all")
    return {k: (v["value"], v["config_source"]) for k, v in got[rtype.lower()][name].items()}


@pytest.mark.timeout(90)
def test_kafka_python_admin_configs_partitions_delete_records_and_offsets_for_times(make_broker, new_topic):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.admin import AlterConfigOp, ConfigResource as KConfigResource, OffsetSpec as KOffsetSpec
    from kafka.errors import InvalidPartitionsError, OffsetOutOfRangeError

    b = make_broker("admin-kafka-python", overrides=QUICK_BROKER)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 1, {"retention.ms": "86400000"})
    a = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    try:
        cfg = _kp_describe(a, "TOPIC", topic)
        assert cfg["retention.ms"] == ("86400000", "DYNAMIC_TOPIC_CONFIG")
        assert cfg["cleanup.policy"] == ("delete", "DEFAULT_CONFIG")
        syn = a.describe_configs([KConfigResource("TOPIC", topic, ["retention.ms"])], include_synonyms=True,
                                 config_filter="all")["topic"][topic]["retention.ms"]["synonyms"]
        assert [(s["name"], s["source"]) for s in syn][:1] == [("retention.ms", "DYNAMIC_TOPIC_CONFIG")], syn
        assert ("log.retention.hours", "DEFAULT_CONFIG") in [(s["name"], s["source"]) for s in syn], syn

        # AlterConfigs (non-incremental; kafka-python re-sends the other modified keys itself).
        res = a.alter_configs([KConfigResource("TOPIC", topic, {"segment.ms": "7200000"})], incremental=False)
        assert res == {"topic": {topic: "OK"}}, res
        cfg = _kp_describe(a, "TOPIC", topic)
        assert cfg["segment.ms"] == ("7200000", "DYNAMIC_TOPIC_CONFIG")
        assert cfg["retention.ms"] == ("86400000", "DYNAMIC_TOPIC_CONFIG")

        # IncrementalAlterConfigs: invalid value, then SET / DELETE / APPEND / SUBTRACT.
        res = a.alter_configs([KConfigResource("TOPIC", topic, {"segment.bytes": "1000"})], incremental=True)
        msg = res["topic"][topic]
        assert "InvalidConfigurationError" in msg and "segment.bytes" in msg, res
        res = a.alter_configs([KConfigResource("TOPIC", topic, {
            "max.message.bytes": (AlterConfigOp.SET, "500000"),
            "retention.ms": (AlterConfigOp.DELETE, None),
            "cleanup.policy": (AlterConfigOp.APPEND, "compact")})], incremental=True)
        assert res == {"topic": {topic: "OK"}}, res
        cfg = _kp_describe(a, "TOPIC", topic)
        assert cfg["max.message.bytes"] == ("500000", "DYNAMIC_TOPIC_CONFIG")
        assert cfg["retention.ms"] == ("604800000", "DEFAULT_CONFIG")
        assert cfg["cleanup.policy"] == ("delete,compact", "DYNAMIC_TOPIC_CONFIG")
        assert cfg["segment.bytes"] == ("1073741824", "DEFAULT_CONFIG")
        res = a.alter_configs([KConfigResource("TOPIC", topic, {
            "cleanup.policy": (AlterConfigOp.SUBTRACT, "compact")})], incremental=True)
        assert res == {"topic": {topic: "OK"}}, res
        assert _kp_describe(a, "TOPIC", topic)["cleanup.policy"] == ("delete", "DYNAMIC_TOPIC_CONFIG")

        # The broker's default for topics without their own retention.ms (broker resource "1").
        res = a.alter_configs([KConfigResource("BROKER", "1", {"log.retention.ms": "7200000"})], incremental=True)
        assert res == {"broker": {"1": "OK"}}, res
        assert _kp_describe(a, "TOPIC", topic)["retention.ms"] == ("7200000", "DYNAMIC_BROKER_CONFIG")

        # CreatePartitions 1 -> 3; 2 is not an increase.
        a.create_partitions({topic: 3})
        ck.wait_for_topic(ck.admin(b.bootstrap), topic, 3)
        with pytest.raises(InvalidPartitionsError):
            a.create_partitions({topic: 2})
        before = _kp_describe(a, "TOPIC", topic)
    finally:
        a.close()

    # Restart (SIGTERM): configs and partitions persist.
    b.restart()
    ck.wait_for_topic(ck.admin(b.bootstrap), topic, 3)
    a = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=15000)
    producer = KafkaProducer(bootstrap_servers=b.bootstrap, linger_ms=200)
    consumer = KafkaConsumer(bootstrap_servers=b.bootstrap, enable_auto_commit=False)
    try:
        assert _kp_describe(a, "TOPIC", topic) == before, "topic configs differ after a broker restart"
        assert _kp_describe(a, "BROKER", "1")["log.retention.ms"] == ("7200000", "DYNAMIC_BROKER_CONFIG")

        # DeleteRecords on partition 2.
        metas = [producer.send(topic, value=b"d%d" % i, partition=2) for i in range(10)]
        producer.flush(timeout=30)
        assert [m.get(timeout=30).offset for m in metas] == list(range(10))
        tp2 = KTP(topic, 2)
        res = a.delete_records({tp2: 4})
        assert res[tp2]["low_watermark"] == 4, res
        assert consumer.beginning_offsets([tp2])[tp2] == 4
        with pytest.raises(OffsetOutOfRangeError):
            a.delete_records({tp2: 11})
        assert consumer.beginning_offsets([tp2])[tp2] == 4
        recs = lh.read_partition(b.bootstrap, topic, 2)
        assert [(r.offset, r.value) for r in recs] == [(i, b"d%d" % i) for i in range(4, 10)]

        # ListOffsets by timestamp on partition 1: two batches (linger_ms=200) of five records each.
        t0 = lh.now_ms() - 60_000
        stamps = [t0 + 10 * i for i in range(5)] + [t0 + 100 + 10 * i for i in range(5)]
        offsets = []
        for batch in (stamps[:5], stamps[5:]):
            fs = [producer.send(topic, value=b"t%d" % ts, partition=1, timestamp_ms=ts) for ts in batch]
            producer.flush(timeout=30)
            offsets += [f.get(timeout=30).offset for f in fs]
        assert offsets == list(range(10))
        tp1 = KTP(topic, 1)
        lookups = {t0 - 1000: 0, t0: 0, t0 + 15: 2, t0 + 20: 2, t0 + 40: 4, t0 + 41: 5, t0 + 125: 8,
                   t0 + 140: 9, t0 + 141: None}
        got = {}
        for ts in lookups:
            r = consumer.offsets_for_times({tp1: ts})[tp1]
            got[ts] = None if r is None else r.offset
            if r is not None:
                assert r.timestamp == stamps[r.offset], (ts, r)
        assert got == lookups, "KafkaConsumer.offsets_for_times"

        specs = {tp1: KOffsetSpec.MAX_TIMESTAMP}
        r = a.list_partition_offsets(specs)[tp1]
        assert (r.offset, r.timestamp) == (9, t0 + 140), r
        assert a.list_partition_offsets({tp1: KOffsetSpec.EARLIEST})[tp1].offset == 0
        assert a.list_partition_offsets({tp1: KOffsetSpec.LATEST})[tp1].offset == 10
    finally:
        producer.close(timeout=10)
        consumer.close()
        a.close()
