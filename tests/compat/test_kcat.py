"""kcat (librdkafka command-line client) against Runnel: -L, -P with headers, -C."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import ck_helpers as ck

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat not installed (scripts/test.sh installs it)")


def kcat(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run([KCAT, *args], input=input, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')[-3000:]}"
        f"\nstderr: {proc.stderr.decode(errors='replace')[-3000:]}"
    )
    return proc


def test_kcat_metadata_lists_broker_and_topics(bootstrap, broker, new_topic):
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 2)
    md = json.loads(kcat("-b", bootstrap, "-L", "-J").stdout)
    assert md["brokers"] == [{"id": 1, "name": f"{broker.host}:{broker.port}"}], md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, f"{topic} missing from kcat -L: {sorted(topics)}"
    parts = topics[topic]["partitions"]
    assert [p["partition"] for p in parts] == [0, 1]
    assert all(p["leader"] == 1 and "error" not in p for p in parts), parts

    text = kcat("-b", bootstrap, "-L", "-t", topic).stdout.decode()
    assert f"broker 1 at {broker.host}:{broker.port}" in text, text
    assert f'topic "{topic}" with 2 partitions' in text, text


def test_kcat_produce_lines_with_headers_and_consume_them(bootstrap, new_topic):
    topic = new_topic()
    lines = [("key1", "hello world"), ("key2", "second line"), ("key3", "ünïcode ✓")]
    payload = "".join(f"{k}\t{v}\n" for k, v in lines).encode()
    # Producer auto-creates the topic (1 partition by default).
    kcat("-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-H", "k=v", "-H", "source=kcat", input=payload)

    out = kcat(
        "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q",
        "-f", "%p|%o|%k|%s|%h\n",
    ).stdout.decode()
    got = [line.split("|") for line in out.splitlines() if line]
    assert got == [["0", str(i), k, v, "k=v,source=kcat"] for i, (k, v) in enumerate(lines)], out


def test_kcat_reads_records_from_other_clients(bootstrap, new_topic):
    """Records from confluent-kafka (lz4, headers) as kcat -C -J sees them."""
    topic = new_topic()
    ck.create_topic(bootstrap, topic, 1)
    p = ck.producer(bootstrap, **{"compression.type": "lz4"})
    for i in range(20):
        ck.produce(p, topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("i", str(i).encode())])
    ck.flush(p)
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q", "-J").stdout.decode()
    msgs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(m["offset"], m["key"], m["payload"], m["headers"]) for m in msgs] == [
        (i, f"k{i}", f"v{i}", ["i", str(i)]) for i in range(20)
    ]
