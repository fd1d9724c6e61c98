"""kafka-python (pure Python client) against Runnel."""

from __future__ import annotations

import json
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def _drain(consumer: KafkaConsumer, expected: int, deadline_s: float = 60) -> list:
    """poll() until `expected` records arrived or the deadline passed."""
    out: list = []
    deadline = time.monotonic() + deadline_s
    while len(out) < expected and time.monotonic() < deadline:
        for _tp, msgs in consumer.poll(timeout_ms=500).items():
            out.extend(msgs)
    return out


def test_readme_example_producer_then_earliest_consumer(bootstrap, capsys, caplog):
    """README "Using it" snippet, verbatim except for the bootstrap address ('localhost:9092').

    kafka-python >= 3.0 enables the idempotent producer by default (KIP-679), so this needs
    InitProducerId and idempotent Produce from the broker."""
    from kafka import KafkaProducer, KafkaConsumer
    import json

    producer = KafkaProducer(bootstrap_servers=[bootstrap],
                             value_serializer=lambda v: json.dumps(v).encode())
    producer.send('user-events', {'user_id': 42, 'action': 'purchase'})
    producer.flush()

    consumer = KafkaConsumer('user-events', bootstrap_servers=[bootstrap],
                             auto_offset_reset='earliest', consumer_timeout_ms=5000)
    for message in consumer:
        print(json.loads(message.value))
    # -- end of the snippet --
    producer.close(timeout=10)
    consumer.close()
    printed = capsys.readouterr().out.splitlines()
    producer_errors = [r.getMessage() for r in caplog.records
                       if r.name.startswith('kafka.producer') and r.levelname == 'ERROR']
    assert printed == ["{'user_id': 42, 'action': 'purchase'}"], (
        f"snippet printed {printed}; producer errors: {producer_errors[:3]}")


def test_readme_example_without_idempotence(bootstrap):
    """The same snippet with idempotence explicitly off: the plain Produce/Fetch path."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], value_serializer=lambda v: json.dumps(v).encode(),
                             enable_idempotence=False)
    producer.send('user-events-no-idempotence', {'user_id': 42, 'action': 'purchase'})
    producer.flush(timeout=30)
    producer.close(timeout=10)
    consumer = KafkaConsumer('user-events-no-idempotence', bootstrap_servers=[bootstrap],
                             auto_offset_reset='earliest', value_deserializer=lambda b: json.loads(b.decode()))
    try:
        records = _drain(consumer, 1)
    finally:
        consumer.close()
    assert [r.value for r in records] == [{'user_id': 42, 'action': 'purchase'}]


def test_round_trip_with_key_and_headers_via_assign(bootstrap, new_topic):
    topic = new_topic()
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks='all', linger_ms=5, enable_idempotence=False)
    sent = [
        (b'k0', b'v0', [('content-type', b'application/json'), ('trace', b'\x00\x01\xff')]),
        (b'k1', b'v1', [('dup', b'a'), ('dup', b'b')]),
        (None, b'no-key', []),
        (b'k3', b'', [('empty', b'')]),
    ]
    metas = [producer.send(topic, key=k, value=v, headers=h).get(timeout=30) for k, v, h in sent]
    producer.close(timeout=10)
    assert [m.offset for m in metas] == [0, 1, 2, 3]
    assert {m.partition for m in metas} == {0}

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], auto_offset_reset='earliest', enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = _drain(consumer, len(sent))
        end = consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()
    assert end == len(sent)
    got = [(r.key, r.value, list(r.headers)) for r in records]
    assert got == [(k, v, h) for k, v, h in sent]


def test_json_values_across_partitions_and_gzip(bootstrap, new_topic):
    """Auto-created topic (Metadata auto-create), gzip batches, offsets per partition."""
    topic = new_topic()
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap],
        value_serializer=lambda v: json.dumps(v).encode(),
        key_serializer=lambda k: k.encode(),
        compression_type='gzip',
        linger_ms=10,
        enable_idempotence=False,
    )
    futures = [producer.send(topic, key=f'user-{i % 5}', value={'i': i}) for i in range(200)]
    producer.flush(timeout=30)
    metas = [f.get(timeout=30) for f in futures]
    producer.close(timeout=10)
    assert all(m.offset >= 0 for m in metas)

    consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], auto_offset_reset='earliest',
                             value_deserializer=lambda b: json.loads(b.decode()))
    try:
        records = _drain(consumer, 200)
    finally:
        consumer.close()
    assert sorted(r.value['i'] for r in records) == list(range(200))
    per_key: dict = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key.setdefault(r.key, []).append(r.value['i'])
    for key, idx in per_key.items():
        assert idx == sorted(idx), f"{key}: order not kept"
