"""Issue 3, "Done when" 1: the example the project started from works unchanged.

    from kafka import KafkaProducer, KafkaConsumer
    import json
    producer = KafkaProducer(bootstrap_servers=['localhost:9092'],
                             value_serializer=lambda v: json.dumps(v).encode())
    producer.send('user-events', {'user_id': 42, 'action': 'purchase'})
    consumer = KafkaConsumer('user-events', bootstrap_servers=['localhost:9092'],
                             group_id='analytics-service', auto_offset_reset='earliest')
    for msg in consumer:
        process_event(json.loads(msg.value))

Run against the shared broker (its bootstrap address, a unique topic name in place of
'user-events') and against `runnel serve` with no arguments on localhost:9092 (when that port is
free). The only additions are bounds: consumer_timeout_ms ends the `for` loop if nothing arrives,
and the loop stops after the event. Then the group's committed offset (kafka-python commits on
close, enable_auto_commit defaults to true) is checked.
"""

from __future__ import annotations

import pytest

import groups_helpers as gh
from runnel_harness import EXTERNAL_BOOTSTRAP, BrokerError, RunnelBroker, ipv6_loopback_available, port_is_free, track_broker

LOCAL_HOSTS = ("127.0.0.1", "::1") if ipv6_loopback_available() else ("127.0.0.1",)


def run_example(bootstrap_servers: list[str], topic: str) -> list[dict]:
    # ---- the example, unchanged except for the topic name and the loop bounds ----
    from kafka import KafkaProducer, KafkaConsumer
    import json

    producer = KafkaProducer(bootstrap_servers=bootstrap_servers,
                             value_serializer=lambda v: json.dumps(v).encode())
    producer.send(topic, {'user_id': 42, 'action': 'purchase'})
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers,
                             group_id='analytics-service', auto_offset_reset='earliest',
                             consumer_timeout_ms=30000)  # bound: the loop ends after 30 s without a record
    events = []

    def process_event(event):
        events.append(event)

    try:
        for msg in consumer:
            process_event(json.loads(msg.value))
            break  # bound: the example loops forever
    finally:
        consumer.close()  # commits the position (enable_auto_commit is on by default)
        producer.close(timeout=10)
    return events


def check_committed(bootstrap: str, topic: str) -> None:
    offsets = gh.admin_group_offsets(gh.admin(bootstrap), "analytics-service")
    tp = offsets.get((topic, 0))
    assert tp is not None and tp.offset == 1, (
        f"group analytics-service should have committed offset 1 for {topic}/0 on close; has "
        f"{ {k: v.offset for k, v in offsets.items()} }")


@pytest.mark.timeout(90)
def test_example_against_shared_broker(bootstrap, new_topic):
    topic = new_topic("user-events")
    events = run_example([bootstrap], topic)
    assert events == [{'user_id': 42, 'action': 'purchase'}]
    check_committed(bootstrap, topic)


@pytest.fixture(scope="module")
def default_serve(tmp_path_factory):
    """`runnel serve` with no arguments (./runnel-data, localhost:9092), if port 9092 is free."""
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("RUNNEL_COMPAT_BOOTSTRAP set: tests that run their own broker process are skipped")
    busy = [h for h in LOCAL_HOSTS if not port_is_free(9092, h)]
    if busy:
        pytest.skip(f"port 9092 is in use on {busy}: cannot run the example against the no-argument `runnel serve`")
    b = RunnelBroker(tmp_path_factory.mktemp("runnel-groups-default"), name="default-serve-groups",
                     no_args=True, probe_hosts=LOCAL_HOSTS)
    try:
        b.start()
    except BrokerError as e:
        if not b.alive() and not port_is_free(9092):
            pytest.skip(f"port 9092 was taken by another process while the broker started: {e}")
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


@pytest.mark.own_broker
@pytest.mark.timeout(90)
def test_example_verbatim_against_no_argument_serve(default_serve, request):
    """The example exactly as written: localhost:9092 and the topic 'user-events' (fresh data dir)."""
    track_broker(request.node, default_serve)
    assert default_serve.alive(), default_serve.status_line()
    events = run_example(['localhost:9092'], 'user-events')
    assert events == [{'user_id': 42, 'action': 'purchase'}]
    check_committed('localhost:9092', 'user-events')
