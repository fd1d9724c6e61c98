"""`runnel serve --override key=value` changes the broker settings clients see."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import KafkaError

import ck_helpers as ck

pytestmark = pytest.mark.own_broker


def test_overrides_change_default_partitions_and_message_size_limit(make_broker, new_topic):
    b = make_broker("overrides", overrides={"num.partitions": "3", "message.max.bytes": "3000000"})
    # Auto-created topics get num.partitions partitions.
    t = ck.wait_for_topic(ck.producer(b.bootstrap), new_topic("auto"), 3)
    assert sorted(t.partitions) == [0, 1, 2]

    # A 2 MiB record now fits under message.max.bytes.
    topic = new_topic("big")
    ck.create_topic(b.bootstrap, topic, 1)
    dr = ck.Deliveries()
    p = ck.producer(b.bootstrap, on_delivery=dr, **{"message.max.bytes": 4_000_000, "batch.size": 4_000_000,
                                                    "compression.type": "none"})
    big = os.urandom(2 * 1024 * 1024)
    p.produce(topic, key=b"big", value=big)
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    res = ck.consume_all(b.bootstrap, topic, [0], expected=1, **{"fetch.max.bytes": 10_000_000,
                                                                 "max.partition.fetch.bytes": 10_000_000,
                                                                 "receive.message.max.bytes": 20_000_000})
    assert not res.errors and not res.timed_out, res.describe()
    assert [r.value for r in res.records] == [big]


def test_auto_create_disabled_by_override(make_broker, new_topic):
    b = make_broker("no-auto-create", overrides={"auto.create.topics.enable": "false"})
    topic = new_topic()
    md = ck.producer(b.bootstrap).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    assert t is not None and t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t
    assert topic not in ck.admin(b.bootstrap).list_topics(timeout=10).topics
