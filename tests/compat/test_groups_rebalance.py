"""Issue 3, "Done when" 2: three confluent-kafka consumer processes in one group share twelve
partitions; one is killed with SIGKILL, its partitions move to the others after the session timeout
and nothing produced is left unread; with cooperative-sticky the survivors keep their partitions.

Each consumer is its own process (groups_worker.py) so that SIGKILL is a real crash: no LeaveGroup,
no final commit. Offsets are auto-committed only for records the worker has already reported, so the
union of what the three reported must hold every record produced (at-least-once).
"""

from __future__ import annotations

import time

import pytest

import groups_helpers as gh

pytestmark = pytest.mark.own_broker

PARTITIONS = 12


def _stable_split(workers, partitions: int) -> bool:
    """Every worker has a non-empty assignment, they are disjoint and together cover all partitions."""
    asg = [w.assignment() for w in workers]
    if any(not a for a in asg):
        return False
    union = set().union(*asg)
    return union == set(range(partitions)) and sum(len(a) for a in asg) == partitions


@pytest.mark.timeout(100)
@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
def test_three_processes_share_twelve_partitions_and_survive_sigkill(make_broker, new_topic, tmp_path, strategy):
    b = make_broker(overrides=gh.FAST_GROUPS)
    topic = new_topic()
    gh.ck.create_topic(b.bootstrap, topic, PARTITIONS)
    # Some records exist before the group forms (read from the start: auto.offset.reset=earliest) ...
    early = [f"early-{i}" for i in range(48)]
    gh.produce_values(b.bootstrap, topic, early, partitions=PARTITIONS)

    group = gh.group_id("three-procs")
    conf = gh.classic_conf(
        b.bootstrap, group,
        **{
            "partition.assignment.strategy": strategy,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "enable.auto.offset.store": False,
        },
    )
    workers = [gh.Worker(f"member{i}", conf, topic, tmp_path) for i in range(3)]
    state = lambda: gh.describe_workers(workers)  # noqa: E731
    try:
        # 1. The group forms: each process gets a non-empty, disjoint share of the twelve partitions.
        gh.wait_for(lambda: _stable_split(workers, PARTITIONS), 45, workers=workers,
                    what=lambda: "three members with disjoint non-empty assignments covering 12 partitions\n" + state())
        for w in workers:
            assert not w.errors(), w.describe()
        # ... and more are produced to every partition once it has: each member reads its share.
        before = [f"before-{i}" for i in range(120)]
        gh.produce_values(b.bootstrap, topic, before, partitions=PARTITIONS)
        gh.wait_for(lambda: all(any(v.startswith("before-") for v in w.values()) for w in workers), 30,
                    workers=workers, what=lambda: "each member to read records of its partitions\n" + state())
        victim, survivors = workers[0], workers[1:]
        kept = {w.name: w.assignment() for w in survivors}
        orphaned = victim.assignment()

        # 2. SIGKILL one member; produce more while the group is missing it.
        t_kill = time.time()
        victim.kill()
        after = [f"after-{i}" for i in range(120)]
        gh.produce_values(b.bootstrap, topic, after, partitions=PARTITIONS)

        # 3. After the session timeout the survivors own all twelve partitions between them.
        gh.wait_for(lambda: _stable_split(survivors, PARTITIONS), gh.SESSION_MS / 1000 + 30, workers=survivors,
                    what=lambda: f"the survivors to take over the killed member's partitions {sorted(orphaned)}\n"
                                 + state())
        took_over = time.time() - t_kill
        # Kafka keeps a silent member until its session expires (a crash sends no LeaveGroup, and a
        # closed connection is not a leave); its last heartbeat was at most a heartbeat interval or so
        # before the kill, so the takeover cannot come much earlier than the session timeout.
        assert took_over >= gh.SESSION_MS / 2000, (
            f"the killed member's partitions moved {took_over:.1f}s after SIGKILL, before its session "
            f"({gh.SESSION_MS} ms) could have expired\n" + state())

        # 4. Nothing produced is left unread (the union of all members, the killed one included).
        everything = set(early) | set(before) | set(after)

        def missing():
            return everything - set().union(*(w.values() for w in workers))

        gh.wait_for(lambda: not missing(), 30, workers=survivors,
                    what=lambda: f"every record to be consumed by the group (missing {len(missing())}: "
                                 f"{sorted(missing())[:20]})\n" + state())
        for w in survivors:
            unexpected = [e for e in w.errors() if e.get("ev") != "store_failed"]
            assert not unexpected, w.describe()

        # 5. cooperative-sticky: the survivors keep what they had; their assignment only grows.
        if strategy == "cooperative-sticky":
            for w in survivors:
                history = [kept[w.name]] + w.assignments(since=t_kill)
                for prev, nxt in zip(history, history[1:]):
                    assert prev <= nxt, (f"{w.name}: assignment shrank from {sorted(prev)} to {sorted(nxt)} "
                                         f"after the kill (cooperative-sticky must keep owned partitions)\n"
                                         + w.describe())
                revoked = w.callbacks("revoke", since=t_kill) + w.callbacks("lost", since=t_kill)
                assert not revoked, f"{w.name}: partitions revoked after the kill: {revoked}\n{w.describe()}"
        print(f"[{strategy}] survivors owned all partitions {took_over:.1f}s after SIGKILL "
              f"(session.timeout.ms={gh.SESSION_MS})")
    finally:
        for w in workers:
            if w.alive():
                w.terminate()
            w.cleanup()
