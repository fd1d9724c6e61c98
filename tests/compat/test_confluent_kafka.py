"""confluent-kafka (librdkafka) against Runnel: admin, produce with every codec, fetch, limits."""

from __future__ import annotations

import os
import time
from collections import defaultdict

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import ConfigResource, ConfigSource, NewTopic

import ck_helpers as ck
from runnel_harness import wait_until

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

N_RECORDS = 20_000
N_KEYS = 1_000
# Broker default message.max.bytes (Kafka's default): the largest record batch it accepts.
BROKER_MESSAGE_MAX_BYTES = 1_048_588


def test_admin_creates_topic_with_6_partitions(bootstrap, new_topic):
    topic = new_topic()
    a = ck.admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)], operation_timeout=15)
    assert fs[topic].result(timeout=30) is None
    t = ck.wait_for_topic(a, topic, 6)
    assert sorted(t.partitions) == list(range(6))
    for p in t.partitions.values():
        assert p.leader == 1, f"partition {p.id}: leader {p.leader}, expected node 1"
        assert p.replicas == [1] and p.isrs == [1], f"partition {p.id}: replicas {p.replicas} isrs {p.isrs}"

    # Creating it again is refused with TOPIC_ALREADY_EXISTS (36).
    fs = a.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)], operation_timeout=15)
    with pytest.raises(Exception) as exc:
        fs[topic].result(timeout=30)
    err = exc.value.args[0]
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, f"second CreateTopics: {err!r}"


def test_list_topics_reports_broker_and_topic_metadata(bootstrap, broker, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 3)
    md = ck.admin(bootstrap).list_topics(timeout=10)
    assert set(md.brokers) == {1}, f"brokers: {md.brokers}"
    b = md.brokers[1]
    assert (b.host, b.port) == (broker.host, broker.port), f"advertised {b.host}:{b.port}, listening {broker.bootstrap}"
    assert md.controller_id == 1
    assert topic in md.topics
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    assert all(p.leader == 1 for p in t.partitions.values())


def test_metadata_request_auto_creates_unknown_topic_with_one_partition(bootstrap, new_topic):
    # A producer's Metadata request has allow_auto_topic_creation=true; the broker default
    # auto.create.topics.enable=true and num.partitions=1 then create the topic.
    topic = new_topic()
    p = ck.producer(bootstrap)
    t = ck.wait_for_topic(p, topic, 1)
    assert t.partitions[0].leader == 1


def test_invalid_topic_name_is_not_auto_created(bootstrap):
    p = ck.producer(bootstrap)
    bad = "bad/topic?name"
    md = p.list_topics(bad, timeout=10)
    t = md.topics.get(bad)
    assert t is not None and t.error is not None, f"metadata for {bad!r}: {t}"
    assert t.error.code() in (KafkaError.TOPIC_EXCEPTION, KafkaError.UNKNOWN_TOPIC_OR_PART), t.error
    assert bad not in ck.admin(bootstrap).list_topics(timeout=10).topics


@pytest.mark.timeout(240)
@pytest.mark.parametrize("codec", CODECS)
def test_keyed_records_round_trip_per_codec_with_per_key_order(bootstrap, new_topic, codec):
    topic = new_topic(codec)
    ck.create_topic(bootstrap, topic, 6)

    errors = ck.ClientErrors()
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, errors, **{"compression.type": codec, "linger.ms": 20, "on_delivery": dr})
    filler = ("lorem-ipsum-" * 6).encode()  # compressible payload
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for i in range(N_RECORDS):
        key = f"key-{i % N_KEYS:04d}".encode()
        seq = i // N_KEYS
        value = b"%s|%05d|%s|" % (key, seq, codec.encode()) + filler
        sent[key].append(value)
        ck.produce(p, topic, key=key, value=value)
        if i % 1000 == 0:
            p.poll(0)
    ck.flush(p, 90)
    assert not dr.failed, f"{len(dr.failed)} deliveries failed: {dr.failure_summary()}"
    assert len(dr.ok) == N_RECORDS
    assert not errors, f"producer client errors: {errors[:5]}"

    res = ck.consume_all(bootstrap, topic, 6, expected=N_RECORDS, deadline_s=90)
    assert not res.errors, res.describe()
    assert not res.timed_out, res.describe()
    recs = res.records
    assert len(recs) == N_RECORDS, f"read {len(recs)} of {N_RECORDS}: {res.describe()}"
    assert len({(r.partition, r.offset) for r in recs}) == N_RECORDS, "same offset delivered twice"

    # Each partition reads back dense offsets 0..n-1 and ends at its high watermark.
    by_part: dict[int, list] = defaultdict(list)
    for r in recs:
        by_part[r.partition].append(r)
    for part, rs in by_part.items():
        offs = [r.offset for r in rs]
        assert offs == list(range(len(rs))), f"partition {part}: offsets not 0..{len(rs) - 1} in order"
        assert res.eof_at[part] == len(rs), f"partition {part}: EOF at {res.eof_at[part]}, read {len(rs)}"
    assert len(by_part) == 6, f"1000 keys landed in only partitions {sorted(by_part)}"

    # Same key -> same partition; per key, values come back in the order they were produced.
    key_parts: dict[bytes, set] = defaultdict(set)
    got: dict[bytes, list[bytes]] = defaultdict(list)
    for r in sorted(recs, key=lambda r: (r.partition, r.offset)):
        key_parts[r.key].add(r.partition)
        got[r.key].append(r.value)
    split = {k: v for k, v in key_parts.items() if len(v) > 1}
    assert not split, f"{len(split)} keys in more than one partition, e.g. {list(split.items())[:3]}"
    assert set(got) == set(sent)
    bad = [k for k in sent if got[k] != sent[k]]
    assert not bad, f"{len(bad)} keys lost records or order, e.g. {bad[0]!r}: sent {sent[bad[0]][:3]}.. got {got[bad[0]][:3]}.."

    # The (partition, offset) in every delivery report holds exactly that record.
    at = {(r.partition, r.offset): (r.key, r.value) for r in recs}
    mismatched = [d for d in dr.ok if at.get((d[0], d[1])) != (d[2], d[3])]
    assert not mismatched, f"{len(mismatched)} delivery reports disagree with the log, e.g. {mismatched[0][:3]}"


def test_null_key_null_value_empty_value_and_900kb_value_round_trip(bootstrap, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    big = os.urandom(900 * 1024)
    cases = [
        ("null-key", None, b"value-with-null-key"),
        ("null-value", b"key-with-null-value", None),
        ("empty-value", b"key-with-empty-value", b""),
        ("empty-key", b"", b"value-with-empty-key"),
        ("both-null", None, None),
        ("900kb", b"big", big),
    ]
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, **{"message.max.bytes": 1_000_000, "on_delivery": dr})
    for name, key, value in cases:
        ck.produce(p, topic, key=key, value=value, headers=[("case", name.encode())])
        ck.flush(p)  # one record per request: the 900 kB one alone stays under the broker limit
    assert not dr.failed, dr.failure_summary()

    res = ck.consume_all(bootstrap, topic, [0], expected=len(cases), deadline_s=60,
                         **{"fetch.max.bytes": 5_000_000})
    assert not res.errors and not res.timed_out, res.describe()
    got = [(r.headers[0][1].decode(), r.key, r.value) for r in res.records]
    assert [g[0] for g in got] == [c[0] for c in cases]
    for (name, key, value), (_, gkey, gvalue) in zip(cases, got):
        assert gkey == key, f"{name}: key {gkey!r:.60} != sent {key!r:.60}"
        assert gvalue == value, f"{name}: value {gvalue!r:.60} (len {len(gvalue) if gvalue is not None else None}) != sent"


def test_2mb_record_is_refused_with_message_too_large(bootstrap, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    dr = ck.Deliveries()
    # The client's own limit is raised so that the broker, not librdkafka, has to refuse it.
    p = ck.producer(bootstrap, **{
        "message.max.bytes": 4_000_000,
        "batch.size": 4_000_000,
        "compression.type": "none",
        "on_delivery": dr,
        "message.timeout.ms": 30000,
    })
    huge = os.urandom(2 * 1024 * 1024)
    p.produce(topic, key=b"huge", value=huge)  # must not raise: the client-side limit allows it
    ck.flush(p)
    assert dr.count == 1
    assert not dr.ok, "broker accepted a 2 MiB record batch with message.max.bytes=1048588"
    err = dr.failed[0][0]
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE == 10, f"expected MESSAGE_TOO_LARGE (10), got {err.name()}({err.code()}): {err.str()}"

    # The broker keeps serving the same client afterwards, and the refused record is not stored.
    p.produce(topic, key=b"small", value=b"after-refusal")
    ck.flush(p)
    assert len(dr.ok) == 1, dr.failure_summary()
    res = ck.consume_all(bootstrap, topic, [0], expected=1)
    assert not res.errors, res.describe()
    assert [(r.key, r.value) for r in res.records] == [(b"small", b"after-refusal")]


def test_headers_round_trip(bootstrap, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    headers_cases = [
        [("trace-id", b"abc123")],
        [("dup", b"1"), ("dup", b"2"), ("dup", b"3")],  # repeated keys keep their order
        [("empty", b""), ("null", None)],
        [("utf8-ключ", "значение ✓".encode()), ("binary", bytes(range(256)))],
        [],
    ]
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr)
    for i, hs in enumerate(headers_cases):
        ck.produce(p, topic, key=b"k%d" % i, value=b"v%d" % i, headers=hs or None)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    res = ck.consume_all(bootstrap, topic, [0], expected=len(headers_cases))
    assert not res.errors and not res.timed_out, res.describe()
    assert len(res.records) == len(headers_cases)
    for i, (hs, r) in enumerate(zip(headers_cases, res.records)):
        assert r.key == b"k%d" % i and r.value == b"v%d" % i
        assert list(r.headers or []) == hs, f"record {i}: headers {r.headers} != sent {hs}"


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_acks_level_is_stored(bootstrap, new_topic, acks):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 2)
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, acks=acks, on_delivery=dr)
    n = 500
    for i in range(n):
        ck.produce(p, topic, key=b"k%d" % (i % 7), value=b"acks-%s-%d" % (acks.encode(), i))
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    if acks != "0":
        assert all(d[1] >= 0 for d in dr.ok), "acks>=1 delivery reports must carry the assigned offset"
    res = ck.consume_all(bootstrap, topic, 2, expected=n)
    assert not res.errors, res.describe()
    assert sorted(r.value for r in res.records) == sorted(b"acks-%s-%d" % (acks.encode(), i) for i in range(n))


def test_watermarks_and_offsets_for_times(bootstrap, new_topic):
    """ListOffsets: earliest/latest, and by timestamp: the offset of the first record whose
    timestamp is >= the target, even when that record sits inside a batch."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr, **{"linger.ms": 200})
    base = int(time.time() * 1000) - 100_000
    # All ten records go out in one batch: the answer must be the record, not the batch, offset.
    for i in range(10):
        ck.produce(p, topic, value=b"ts-%d" % i, timestamp=base + i * 1000)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    c = ck.consumer(bootstrap)
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        assert (lo, hi) == (0, 10)
        found = c.offsets_for_times([TopicPartition(topic, 0, base + 4500)], timeout=10)
        assert found[0].error is None, found
        assert found[0].offset == 5, (
            f"offsets_for_times(ts of record 4 + 0.5 s) -> {found[0].offset}; expected 5, the first record "
            f"whose timestamp is >= the target (all 10 records are in one batch at offsets 0..9)")
        past = c.offsets_for_times([TopicPartition(topic, 0, base + 10 * 1000 + 1)], timeout=10)
        assert past[0].offset in (-1, 10), f"timestamp after the last record: {past}"  # Kafka: -1 (no such record)
    finally:
        c.close()
    res = ck.consume_all(bootstrap, topic, [0], expected=10)
    assert [r.timestamp[1] for r in res.records] == [base + i * 1000 for i in range(10)], "CreateTime kept"


def test_fetch_long_poll_returns_soon_after_data_arrives(bootstrap, new_topic):
    """A consumer parked at the end with a long fetch.wait.max.ms gets a new record promptly
    (the broker completes the waiting Fetch when data arrives, not at max wait)."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    p = ck.producer(bootstrap, **{"linger.ms": 0})
    ck.produce(p, topic, value=b"before")
    ck.flush(p)

    c = ck.consumer(bootstrap, **{"fetch.wait.max.ms": 10_000, "enable.partition.eof": False})
    got: list = []
    try:
        # Start right at the end (offset 1): the consumer's first Fetch waits in the broker.
        c.assign([TopicPartition(topic, 0, 1)])
        park_until = time.monotonic() + 1.5  # connect + issue the Fetch that then waits
        while time.monotonic() < park_until:
            msg = c.poll(0.1)
            assert msg is None or msg.error() is not None, f"unexpected record {msg.value()!r}"
            assert msg is None, f"consumer error while parked: {msg.error()}"
        sent_at = time.monotonic()
        ck.produce(p, topic, value=b"after")
        p.poll(0)
        deadline = sent_at + 20
        while not got and time.monotonic() < deadline:
            p.poll(0)
            msg = c.poll(0.05)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append((time.monotonic() - sent_at, msg.value()))
        ck.flush(p)
    finally:
        c.close()
    assert got, "record produced during a long-poll Fetch never arrived"
    latency, value = got[0]
    assert value == b"after"
    assert latency < 5.0, f"record arrived {latency:.1f}s after produce: the Fetch waited out fetch.wait.max.ms"


def test_delete_topics_removes_topic(bootstrap, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 2)
    a = ck.admin(bootstrap)
    fs = a.delete_topics([topic], operation_timeout=15)
    assert fs[topic].result(timeout=30) is None
    wait_until(lambda: topic not in a.list_topics(timeout=5).topics, 30, what=f"{topic} gone from metadata")


def test_describe_configs_returns_topic_configs_with_defaults(bootstrap, new_topic):
    """Every topic config comes back with value, source and default flag (tools read-modify-write)."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1, config={"retention.ms": "3600000"})
    a = ck.admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = a.describe_configs([res], request_timeout=30)[res].result(timeout=30)
    core = {"cleanup.policy", "compression.type", "max.message.bytes", "message.timestamp.type",
            "min.insync.replicas", "retention.bytes", "retention.ms", "segment.bytes", "segment.ms"}
    assert core <= set(configs), f"missing topic configs: {sorted(core - set(configs))}"
    r = configs["retention.ms"]
    assert (r.value, r.is_default, r.source) == ("3600000", False, ConfigSource.DYNAMIC_TOPIC_CONFIG.value), r
    assert configs["cleanup.policy"].value == "delete"
    m = configs["max.message.bytes"]
    assert (m.value, m.is_default) == (str(BROKER_MESSAGE_MAX_BYTES), True), m
    assert m.source == ConfigSource.DEFAULT_CONFIG.value, m


def test_describe_configs_for_the_broker(bootstrap):
    a = ck.admin(bootstrap)
    res = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = a.describe_configs([res], request_timeout=30)[res].result(timeout=30)
    values = {k: v.value for k, v in configs.items()}
    assert values.get("message.max.bytes") == str(BROKER_MESSAGE_MAX_BYTES)
    assert values.get("num.partitions") == "1"
    assert values.get("auto.create.topics.enable") == "true"


def test_describe_cluster_reports_single_node(bootstrap, broker):
    a = ck.admin(bootstrap)
    desc = a.describe_cluster(request_timeout=30).result(timeout=30)
    assert desc.cluster_id, "DescribeCluster returned no cluster id"
    assert [n.id for n in desc.nodes] == [1]
    assert (desc.nodes[0].host, desc.nodes[0].port) == (broker.host, broker.port)
    assert desc.controller is not None and desc.controller.id == 1


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_consumer_starting_inside_a_batch_gets_records_from_its_offset(bootstrap, new_topic, codec):
    """Fetch at an offset inside a stored batch returns that batch; the client drops the records
    before its offset. Nothing is skipped, and the last batch is not waited on forever."""
    topic = new_topic(codec)
    ck.create_topic(bootstrap, topic, 1)
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr, **{"linger.ms": 200, "compression.type": codec})
    for i in range(20):  # one batch
        ck.produce(p, topic, value=b"r%02d" % i)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    for start in (7, 19):
        c = ck.consumer(bootstrap)
        got = []
        try:
            c.assign([TopicPartition(topic, 0, start)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error() is not None:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    break
                got.append((m.offset(), m.value()))
        finally:
            c.close()
        assert got == [(i, b"r%02d" % i) for i in range(start, 20)], f"start {start}: {got[:3]}..."


def test_fetch_returns_a_first_batch_larger_than_fetch_max_bytes(bootstrap, new_topic):
    """KIP-74: a batch bigger than the fetch size limits still comes back whole, so the consumer
    makes progress."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr, **{"linger.ms": 200, "batch.size": 1_000_000})
    values = [bytes([65 + i]) * 20_000 for i in range(40)]  # ~800 kB, one uncompressed batch
    for v in values:
        ck.produce(p, topic, value=v)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    res = ck.consume_all(bootstrap, topic, [0], expected=40, deadline_s=60, **{
        "fetch.max.bytes": 1024,
        "max.partition.fetch.bytes": 1024,
        "message.max.bytes": 1000,
    })
    assert not res.errors and not res.timed_out, res.describe()
    assert [r.value for r in res.records] == values


def test_topic_max_message_bytes_override_is_enforced(bootstrap, new_topic):
    """A per-topic max.message.bytes below the batch size gets MESSAGE_TOO_LARGE on Produce."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1, config={"max.message.bytes": "10000"})
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr, **{"compression.type": "none", "linger.ms": 0})
    ck.produce(p, topic, key=b"big", value=os.urandom(20_000))
    ck.flush(p)
    ck.produce(p, topic, key=b"small", value=b"fits")
    ck.flush(p)
    assert len(dr.failed) == 1 and dr.failed[0][1] == b"big", dr.failure_summary()
    assert dr.failed[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, dr.failure_summary()
    assert [d[2] for d in dr.ok] == [b"small"]
