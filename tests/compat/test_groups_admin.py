"""Issue 3, "Done when" 5: confluent-kafka's AdminClient lists and describes groups, lists their
committed offsets (the commit metadata string round-trips), deletes an empty group and refuses to
delete a non-empty one with Kafka's NON_EMPTY_GROUP; consumer lag (high watermark minus committed
offset) computes correctly.
"""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException, TopicPartition

import groups_helpers as gh
from runnel_harness import wait_until

pytestmark = [pytest.mark.own_broker, pytest.mark.timeout(90)]


def _listing(a, **filters) -> dict:
    res = a.list_consumer_groups(request_timeout=10, **filters).result(timeout=15)
    assert not res.errors, f"list_consumer_groups errors: {res.errors}"
    return {g.group_id: g for g in res.valid}


def test_admin_client_groups_offsets_lag_and_delete(make_broker, new_topic):
    b = make_broker(overrides=gh.FAST_GROUPS)
    topic = new_topic()
    gh.ck.create_topic(b.bootstrap, topic, 2)
    gh.produce_values(b.bootstrap, topic, [f"v{i}" for i in range(10)], partitions=2)  # 5 per partition
    empty_g, active_g = gh.group_id("admin-empty"), gh.group_id("admin-active")
    a = gh.admin(b.bootstrap)

    # A group that consumed, committed (with metadata) and is now empty.
    c1 = gh.group_consumer(b.bootstrap, empty_g)
    try:
        c1.subscribe([topic])
        n = []
        gh.poll_until([c1], lambda: len(n) >= 10, 40, what="the first group to read 10 records",
                      on_msg=lambda i, m: n.append(m) if m.error() is None else None)
        c1.commit(offsets=[TopicPartition(topic, 0, 3, metadata="m1"), TopicPartition(topic, 1, 5, metadata="m2")],
                  asynchronous=False)
        back = {tp.partition: (tp.offset, tp.metadata) for tp in c1.committed(
            [TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)}
        assert back == {0: (3, "m1"), 1: (5, "m2")}, f"OffsetFetch through the consumer: {back}"
    finally:
        c1.close()

    # A group with a live member.
    c2 = gh.group_consumer(b.bootstrap, active_g, **{"client.id": "runnel-admin-probe"})
    try:
        c2.subscribe([topic])
        gh.poll_until([c2], lambda: gh.assignment_of(c2) == {0, 1}, 40, what="the active member to own both partitions")

        # ---- ListGroups: both groups, with their state and type.
        groups = wait_until(lambda: (lambda g: g if {empty_g, active_g} <= set(g) else None)(_listing(a)), 20,
                            what="list_consumer_groups to show both groups")
        assert groups[empty_g].state == ConsumerGroupState.EMPTY, groups[empty_g]
        assert groups[active_g].state == ConsumerGroupState.STABLE, groups[active_g]
        for g in (empty_g, active_g):
            assert groups[g].is_simple_consumer_group is False, groups[g]
            assert groups[g].type == ConsumerGroupType.CLASSIC, groups[g]
        stable = _listing(a, states={ConsumerGroupState.STABLE})
        assert active_g in stable and empty_g not in stable, f"states={{STABLE}} filter: {sorted(stable)}"
        empty = _listing(a, states={ConsumerGroupState.EMPTY})
        assert empty_g in empty and active_g not in empty, f"states={{EMPTY}} filter: {sorted(empty)}"
        classic = _listing(a, types={ConsumerGroupType.CLASSIC})
        assert {empty_g, active_g} <= set(classic), f"types={{CLASSIC}} filter: {sorted(classic)}"
        new_proto = _listing(a, types={ConsumerGroupType.CONSUMER})
        assert not {empty_g, active_g} & set(new_proto), f"types={{CONSUMER}} filter: {sorted(new_proto)}"

        # ---- DescribeGroups: members and their assignments.
        d = gh.describe_group(a, active_g)
        assert d.state == ConsumerGroupState.STABLE and not d.is_simple_consumer_group, d
        assert d.partition_assignor == "range", f"partition_assignor {d.partition_assignor!r}"
        assert len(d.members) == 1, d.members
        m = d.members[0]
        assert m.client_id == "runnel-admin-probe" and m.member_id, (m.member_id, m.client_id, m.host)
        assert m.host, f"member host is empty: {m.host!r}"
        assigned = {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        assert assigned == {(topic, 0), (topic, 1)}, assigned
        d_empty = gh.describe_group(a, empty_g)
        assert d_empty.state == ConsumerGroupState.EMPTY and d_empty.members == [], d_empty

        # ---- OffsetFetch through the AdminClient: offsets and metadata.
        offs = gh.admin_group_offsets(a, empty_g)
        got = {k: (tp.offset, tp.metadata) for k, tp in offs.items()}
        assert got == {(topic, 0): (3, "m1"), (topic, 1): (5, "m2")}, got

        # ---- Lag = high watermark - committed offset, also after more records arrive.
        def lag() -> dict[int, int]:
            committed = gh.admin_group_offsets(a, empty_g)
            out = {}
            for p in (0, 1):
                low, high = c2.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                assert low == 0, f"low watermark of {topic}/{p}: {low}"
                out[p] = high - committed[(topic, p)].offset
            return out

        assert lag() == {0: 2, 1: 0}
        gh.produce_values(b.bootstrap, topic, [f"w{i}" for i in range(4)], partitions=2)  # 2 more per partition
        assert lag() == {0: 4, 1: 2}

        # ---- DeleteGroups: a non-empty group is refused with NON_EMPTY_GROUP ...
        with pytest.raises(KafkaException) as ei:
            a.delete_consumer_groups([active_g], request_timeout=10)[active_g].result(timeout=15)
        err = gh.kafka_error_of(ei.value)
        assert err.code() == KafkaError.NON_EMPTY_GROUP, f"deleting a group with a member: {err}"
        assert active_g in _listing(a), "the refused delete removed the group anyway"
        assert gh.assignment_of(c2) == {0, 1}

        # ... an empty one is deleted, with its offsets.
        assert a.delete_consumer_groups([empty_g], request_timeout=10)[empty_g].result(timeout=15) is None
        assert empty_g not in _listing(a)
        left = gh.admin_group_offsets(a, empty_g)
        assert all(tp.offset < 0 for tp in left.values()), f"offsets of the deleted group: {left}"
    finally:
        c2.close()

    # Once its last member left, the other group is empty and can be deleted too.
    wait_until(lambda: _listing(a).get(active_g) and _listing(a)[active_g].state == ConsumerGroupState.EMPTY, 20,
               what=f"{active_g} to be Empty after its member closed")
    assert a.delete_consumer_groups([active_g], request_timeout=10)[active_g].result(timeout=15) is None
    assert active_g not in _listing(a)
