"""Fixtures for the Kafka-compatibility suite.

- `broker`: the session's shared `runnel serve` (fresh temp data dir, free 127.0.0.1 port).
  If it died during an earlier test it is restarted on the same data dir, and the failure
  report says so.
- `bootstrap`: its "host:port".
- `make_broker`: factory for a test's own broker process (crash/restart tests); stopped at teardown.
- `new_topic`: unique, valid topic names per test.

When a test fails, the broker log lines written while it ran are attached to its report
("runnel broker log" section), with the broker's process state.

RUNNEL_COMPAT_BOOTSTRAP=host:port runs the shared-broker tests against a broker that is already
running (for checking a test's expectations against a reference broker); the tests that start,
kill or restart their own broker are then skipped. Without it, the real binary is always used.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from runnel_harness import (
    EXTERNAL_BOOTSTRAP,
    BrokerError,
    ExternalBroker,
    RunnelBroker,
    track_broker as _track,
)


KNOWN_GAPS_FILE = Path(__file__).with_name("known_gaps.txt")


def load_known_gaps() -> dict[str, str]:
    gaps: dict[str, str] = {}
    for line in KNOWN_GAPS_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("|")
        gaps[test_id.strip()] = reason.strip() or "known broker gap"
    return gaps


def pytest_collection_modifyitems(config, items):
    """Tests listed in known_gaps.txt become strict expected failures (see that file)."""
    if os.environ.get("RUNNEL_COMPAT_IGNORE_KNOWN_GAPS") == "1":
        return
    gaps = load_known_gaps()
    for item in items:
        reason = gaps.get(item.nodeid) or gaps.get(item.nodeid.split("[", 1)[0])
        if reason:
            item.add_marker(pytest.mark.xfail(
                reason=f"known gap (tests/compat/known_gaps.txt): {reason}", strict=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for broker, mark in item.__dict__.get("_runnel_brokers", []):
        try:
            text = broker.log_text(since=mark)
            status = broker.status_line()
        except Exception as e:  # noqa: BLE001 - never hide the real failure
            text, status = f"(could not read broker log: {e!r})", "?"
        rep.sections.append(
            (f"runnel broker log ({broker.name}) during this test [{rep.when}]", f"{status}\n{text}")
        )


@pytest.fixture(scope="session")
def _session_broker(tmp_path_factory):
    if EXTERNAL_BOOTSTRAP:
        yield ExternalBroker(EXTERNAL_BOOTSTRAP)
        return
    b = RunnelBroker(tmp_path_factory.mktemp("runnel-session"), name="session-broker")
    try:
        b.start()
    except BrokerError as e:
        pytest.fail(str(e), pytrace=False)
    yield b
    code = b.stop()
    if code not in (0, None):
        # Reported on the terminal; the SIGTERM behaviour itself is asserted in test_lifecycle.py.
        print(f"\n[runnel compat] session broker exit status after SIGTERM: {code}; {b.status_line()}")


@pytest.fixture
def broker(_session_broker, request):
    """The shared broker, restarted on the same data dir if an earlier test left it dead."""
    b = _session_broker
    _track(request.node, b)
    if not b.alive():
        note = f"shared broker was not running at test start ({b.status_line()}); restarting it"
        print(note)
        try:
            b.restart()
        except BrokerError as e:
            pytest.fail(f"{note}: {e}", pytrace=False)
    return b


@pytest.fixture
def bootstrap(broker) -> str:
    return broker.bootstrap


@pytest.fixture
def make_broker(tmp_path, request):
    """Factory for a test's own broker: make_broker(name="crash", overrides={...}, no_args=False, ...).

    Returns a started RunnelBroker. All are stopped (SIGTERM, then SIGKILL) at teardown."""
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("RUNNEL_COMPAT_BOOTSTRAP set: tests that run their own broker process are skipped")
    made: list[RunnelBroker] = []

    def factory(name: str = "own-broker", start: bool = True, **kwargs) -> RunnelBroker:
        b = RunnelBroker(tmp_path / name, name=name, **kwargs)
        made.append(b)
        _track(request.node, b)
        if start:
            try:
                b.start()
            except BrokerError as e:
                pytest.fail(str(e), pytrace=False)
        return b

    yield factory
    for b in made:
        b.stop()


@pytest.fixture
def new_topic(request):
    """new_topic(suffix="") -> unique valid topic name derived from the test's name."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:120]
    counter = iter(range(1_000_000))

    def make(suffix: str = "") -> str:
        parts = [base, suffix, f"{next(counter)}", uuid.uuid4().hex[:8]]
        return "-".join(p for p in parts if p)

    return make

