"""`runnel serve` with no arguments: ./runnel-data, Kafka API on localhost:9092, IPv4 and IPv6.

Runs only when port 9092 is free on this machine (skipped otherwise, never killing anything).
"""

from __future__ import annotations

import socket
import struct

import pytest

import ck_helpers as ck
from runnel_harness import (
    EXTERNAL_BOOTSTRAP,
    BrokerError,
    RunnelBroker,
    ipv6_loopback_available,
    port_is_free,
    track_broker,
)

HAS_V6 = ipv6_loopback_available()
# librdkafka's own resolution of "localhost" may pick ::1 where /etc/hosts lists it.
LOCAL_HOSTS = ("127.0.0.1", "::1") if HAS_V6 else ("127.0.0.1",)


@pytest.fixture(scope="module")
def default_broker(tmp_path_factory):
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("RUNNEL_COMPAT_BOOTSTRAP set: tests that run their own broker process are skipped")
    busy = [h for h in LOCAL_HOSTS if not port_is_free(9092, h)]
    if busy:
        pytest.skip(f"port 9092 is in use on {busy}: cannot check the no-argument defaults")
    b = RunnelBroker(tmp_path_factory.mktemp("runnel-default-cwd"), name="default-broker",
                     no_args=True, probe_hosts=LOCAL_HOSTS)
    try:
        b.start()
    except BrokerError as e:
        if not b.alive() and not port_is_free(9092):
            pytest.skip(f"port 9092 was taken by another process while the broker started: {e}")
        pytest.fail(str(e), pytrace=False)
    yield b
    b.stop()


@pytest.fixture
def dbroker(default_broker, request):
    track_broker(request.node, default_broker)
    assert default_broker.alive(), default_broker.status_line()
    return default_broker


def _api_versions_v0(host: str, port: int) -> tuple[int, int]:
    """Raw ApiVersions v0 request; returns (error_code, number of api ranges)."""
    client_id = b"runnel-compat"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4:
            chunk = s.recv(4 - len(buf))
            assert chunk, "connection closed before the response size"
            buf += chunk
        (size,) = struct.unpack(">i", buf)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            assert chunk, "connection closed mid-response"
            data += chunk
    corr, err, n = struct.unpack(">ihi", data[:10])
    assert corr == 7
    return err, n


def test_no_args_uses_runnel_data_in_cwd(dbroker):
    assert dbroker.data_dir.is_dir(), f"no ./runnel-data in {dbroker.workdir}: {list(dbroker.workdir.iterdir())}"


@pytest.mark.parametrize("host", LOCAL_HOSTS)
def test_no_args_listens_on_loopback_port_9092(dbroker, host):
    err, n = _api_versions_v0(host, 9092)
    assert err == 0 and n > 0, f"ApiVersions v0 over {host}: error {err}, {n} api ranges"


@pytest.mark.parametrize("bootstrap", ["localhost:9092", "127.0.0.1:9092", "[::1]:9092"])
def test_no_args_round_trip_with_librdkafka(dbroker, new_topic, bootstrap):
    if bootstrap.startswith("[") and not HAS_V6:
        pytest.skip("no IPv6 loopback on this machine")
    topic = new_topic()
    dr = ck.Deliveries()
    p = ck.producer(bootstrap, on_delivery=dr)
    ck.produce(p, topic, key=b"k", value=b"via " + bootstrap.encode())
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    md = p.list_topics(timeout=10)
    assert set(md.brokers) == {1}
    res = ck.consume_all(bootstrap, topic, [0], expected=1)
    assert not res.errors and not res.timed_out, res.describe()
    assert [r.value for r in res.records] == [b"via " + bootstrap.encode()]


@pytest.mark.skipif(not HAS_V6, reason="no IPv6 loopback on this machine")
def test_no_args_serves_ipv6_only_client(dbroker, new_topic):
    """A client that may use IPv6 only (broker.address.family=v6) still produces and reads back:
    the advertised host 'localhost' must be reachable over ::1 where localhost resolves to it."""
    v6_names = {ai[4][0] for ai in socket.getaddrinfo("localhost", 9092, socket.AF_UNSPEC, socket.SOCK_STREAM)}
    if "::1" not in v6_names:
        pytest.skip(f"'localhost' resolves only to {sorted(v6_names)} here (no ::1 entry in /etc/hosts)")
    topic = new_topic()
    dr = ck.Deliveries()
    p = ck.producer("localhost:9092", on_delivery=dr, **{"broker.address.family": "v6"})
    ck.produce(p, topic, value=b"v6")
    ck.flush(p)
    assert not dr.failed, dr.failure_summary()
    res = ck.consume_all("localhost:9092", topic, [0], expected=1, **{"broker.address.family": "v6"})
    assert [r.value for r in res.records] == [b"v6"], res.describe()
