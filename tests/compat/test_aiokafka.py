"""aiokafka (asyncio client) against Runnel: producer + assign-only consumer, with headers."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def _round_trip(bootstrap: str, topic: str, compression: str | None) -> tuple[list, list]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        compression_type=compression,
        linger_ms=5,
        request_timeout_ms=30000,
    )
    await producer.start()
    sent = [
        (b"k%d" % i, b"value-%d" % i, [("seq", str(i).encode()), ("source", b"aiokafka")])
        for i in range(50)
    ]
    sent.append((None, b"keyless", [("empty", b"")]))
    try:
        futs = [await producer.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in sent]
        metas = await asyncio.wait_for(asyncio.gather(*futs), 30)
    finally:
        await producer.stop()
    assert [m.offset for m in metas] == list(range(len(sent)))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30000,
    )
    await consumer.start()
    got: list = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=500)
            for msgs in batches.values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return sent, got


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_aiokafka_round_trip_with_headers(bootstrap, new_topic, compression):
    topic = new_topic(compression or "none")
    sent, got = asyncio.run(_round_trip(bootstrap, topic, compression))
    assert len(got) == len(sent), f"read {len(got)} of {len(sent)} records"
    assert [(m.key, m.value, list(m.headers)) for m in got] == [(k, v, h) for k, v, h in sent]
    assert [m.offset for m in got] == list(range(len(sent)))
