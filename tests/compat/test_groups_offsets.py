"""Issue 3, "Done when" 3: two groups read the same topic independently; a group's committed offsets
survive a broker restart (graceful SIGTERM and SIGKILL) and a consumer of the group resumes from
them: no committed record is delivered again, none after the committed offset is skipped.
"""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

import groups_helpers as gh


def _collector(into: dict, errors: list):
    def on_msg(i, m):
        if m.error() is not None:
            errors.append((i, m.error()))
        else:
            into.setdefault(i, []).append((m.partition(), m.offset(), m.value().decode()))
    return on_msg


@pytest.mark.own_broker
@pytest.mark.timeout(60)
def test_two_groups_read_the_same_topic_independently(make_broker, new_topic):
    b = make_broker(overrides=gh.FAST_GROUPS)
    topic = new_topic()
    gh.ck.create_topic(b.bootstrap, topic, 3)
    values = [f"v{i}" for i in range(30)]
    gh.produce_values(b.bootstrap, topic, values, partitions=3)

    ga, gb = gh.group_id("group-a"), gh.group_id("group-b")
    ca, cb = gh.group_consumer(b.bootstrap, ga), gh.group_consumer(b.bootstrap, gb)
    got: dict = {}
    errors: list = []
    try:
        ca.subscribe([topic])
        cb.subscribe([topic])
        # Each group has a single member, which therefore owns all three partitions and reads all.
        gh.poll_until([ca, cb], lambda: all(len(got.get(i, [])) >= len(values) for i in (0, 1)), 40,
                      what=f"both groups to read all {len(values)} records", on_msg=_collector(got, errors))
        assert not errors, errors
        for i, g in ((0, ga), (1, gb)):
            assert sorted(v for _, _, v in got[i]) == sorted(values), f"group {g} read {got[i]}"
            assert len(got[i]) == len(values), f"group {g} got duplicates: {got[i]}"
        assert gh.assignment_of(ca) == gh.assignment_of(cb) == {0, 1, 2}

        # Each group commits its own position: group A everything, group B only the first 2 per partition.
        ca.commit(asynchronous=False)
        cb.commit(offsets=[TopicPartition(topic, p, 2) for p in range(3)], asynchronous=False)
        assert gh.committed_offsets(ca, topic, 3) == {0: 10, 1: 10, 2: 10}
        assert gh.committed_offsets(cb, topic, 3) == {0: 2, 1: 2, 2: 2}
    finally:
        ca.close()
        cb.close()

    # A new member of group B resumes at offset 2 of each partition while group A has nothing left.
    more = [f"w{i}" for i in range(3)]
    gh.produce_values(b.bootstrap, topic, more, partitions=3)
    ca, cb = gh.group_consumer(b.bootstrap, ga), gh.group_consumer(b.bootstrap, gb)
    got, errors = {}, []
    try:
        ca.subscribe([topic])
        cb.subscribe([topic])
        want_b = 3 * 8 + len(more)
        gh.poll_until([ca, cb], lambda: len(got.get(0, [])) >= len(more) and len(got.get(1, [])) >= want_b, 40,
                      what="group A to read the 3 new records and group B everything from offset 2",
                      on_msg=_collector(got, errors))
        assert not errors, errors
        assert sorted(v for _, _, v in got[0]) == sorted(more), f"group A re-read committed records: {got[0]}"
        assert sorted((p, o) for p, o, _ in got[1]) == sorted((p, o) for p in range(3) for o in range(2, 11)), got[1]
    finally:
        ca.close()
        cb.close()


@pytest.mark.own_broker
@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_committed_offsets_survive_broker_restart(make_broker, new_topic, how):
    b = make_broker(overrides=gh.FAST_GROUPS)
    topic = new_topic()
    gh.ck.create_topic(b.bootstrap, topic, 2)
    first = [f"a{i}" for i in range(20)]  # 10 per partition: a0, a2, ... on p0; a1, a3, ... on p1
    gh.produce_values(b.bootstrap, topic, first, partitions=2)
    group = gh.group_id(f"restart-{how}")
    commit_at = {0: 4, 1: 7}

    c1 = gh.group_consumer(b.bootstrap, group)
    got: dict = {}
    errors: list = []
    c1.subscribe([topic])
    gh.poll_until([c1], lambda: len(got.get(0, [])) >= 20, 40, what="the first consumer to read all 20 records",
                  on_msg=_collector(got, errors))
    assert not errors, errors
    produced_at = {(p, o): v for p, o, v in got[0]}
    c1.commit(offsets=[TopicPartition(topic, p, o) for p, o in commit_at.items()], asynchronous=False)
    assert gh.committed_offsets(c1, topic, 2) == commit_at

    # The commit was acknowledged: it must be durable, however the broker stops.
    b.restart(crash=(how == "sigkill"))
    c1.close()

    more = [f"b{i}" for i in range(6)]  # 3 more per partition, offsets 10..12
    gh.produce_values(b.bootstrap, topic, more, partitions=2)

    c2 = gh.group_consumer(b.bootstrap, group)
    got, errors = {}, []
    try:
        assert gh.committed_offsets(c2, topic, 2) == commit_at, f"committed offsets after {how} restart"
        c2.subscribe([topic])
        want = {(p, o) for p, start in commit_at.items() for o in range(start, 13)}
        gh.poll_until([c2], lambda: len(got.get(0, [])) >= len(want), 40,
                      what=f"the group to resume from {commit_at} after the {how} restart",
                      on_msg=_collector(got, errors))
        assert not errors, errors
        read = [(p, o) for p, o, _ in got[0]]
        first_read = {p: min(o for q, o in read if q == p) for p in (0, 1)}
        assert first_read == commit_at, (f"after the {how} restart the group resumed at {first_read}, "
                                         f"committed {commit_at}")
        assert sorted(read) == sorted(want), f"re-delivered or skipped records: read {sorted(read)}"
        for p, o, v in got[0]:
            if o < 10:
                assert produced_at[(p, o)] == v, f"{p}/{o} now holds {v}, before the restart {produced_at[(p, o)]}"
        assert sorted(v for p, o, v in got[0] if o >= 10) == sorted(more)
    finally:
        c2.close()
