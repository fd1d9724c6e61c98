"""Transactions (issue 5) with real clients: librdkafka (confluent-kafka) transactional producers.

- A transaction aborts one batch of records and another commits: read_committed readers see only
  the committed ones, read_uncommitted readers see both, and that still holds after a restart
  (SIGTERM and SIGKILL).
- A second producer with the same transactional.id fences the first, whose commit then fails.
- A transaction left open past its timeout is aborted by the broker.

DescribeTransactions, ListTransactions and DescribeProducers (which confluent-kafka's AdminClient
does not offer) are covered by the broker's Rust protocol tests.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException, TopicPartition

import ck_helpers as ck
from lifecycle_helpers import QUICK_BROKER
from runnel_harness import wait_until

pytestmark = pytest.mark.own_broker

# Small internal topics and a quick timeout sweep, so the tests are fast.
TXN_BROKER = {
    **QUICK_BROKER,
    "transaction.state.log.num.partitions": "2",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500",
}


def _txn_producer(bootstrap: str, txn_id: str, **conf):
    return ck.producer(
        bootstrap,
        **{"transactional.id": txn_id, "enable.idempotence": True, "transaction.timeout.ms": 60000, **conf},
    )


def _read(bootstrap: str, topic: str, partitions: int, isolation: str) -> list[bytes]:
    result = ck.consume_all(bootstrap, topic, partitions, deadline_s=30, **{"isolation.level": isolation})
    assert not result.timed_out, result.describe()
    assert not result.errors, result.describe()
    return sorted(r.value for r in result.records)


def _committed_and_aborted(bootstrap: str, topic: str, txn_id: str) -> tuple[list[bytes], list[bytes]]:
    p = _txn_producer(bootstrap, txn_id)
    p.init_transactions(30)
    aborted = [f"aborted-{i}".encode() for i in range(50)]
    committed = [f"committed-{i}".encode() for i in range(50)]
    p.begin_transaction()
    for i, v in enumerate(aborted):
        ck.produce(p, topic, value=v, partition=i % 3)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i, v in enumerate(committed):
        ck.produce(p, topic, value=v, partition=i % 3)
    p.commit_transaction(30)
    return sorted(committed), sorted(aborted)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("restart", ["sigterm", "sigkill"])
def test_given_aborted_and_committed_transactions_read_committed_sees_only_committed_also_after_restart(
    make_broker, new_topic, restart
):
    b = make_broker(overrides=TXN_BROKER)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 3)
    committed, aborted = _committed_and_aborted(b.bootstrap, topic, f"txn-{topic}")

    def check():
        assert _read(b.bootstrap, topic, 3, "read_committed") == committed
        assert _read(b.bootstrap, topic, 3, "read_uncommitted") == sorted(committed + aborted)

    check()
    b.restart(crash=restart == "sigkill")
    check()


@pytest.mark.timeout(120)
def test_given_second_producer_with_same_transactional_id_should_fence_the_first(make_broker, new_topic):
    b = make_broker(overrides=TXN_BROKER)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 1)
    txn_id = f"fence-{topic}"
    first = _txn_producer(b.bootstrap, txn_id)
    first.init_transactions(30)
    first.begin_transaction()
    ck.produce(first, topic, value=b"zombie")
    first.flush(30)

    second = _txn_producer(b.bootstrap, txn_id)
    second.init_transactions(30)  # fences the first and aborts its transaction
    second.begin_transaction()
    ck.produce(second, topic, value=b"winner")
    second.commit_transaction(30)

    with pytest.raises(KafkaException) as raised:
        ck.produce(first, topic, value=b"zombie-2")
        first.commit_transaction(30)
    err = raised.value.args[0]
    assert err.fatal() or "fenced" in err.str().lower(), err
    assert _read(b.bootstrap, topic, 1, "read_committed") == [b"winner"]


@pytest.mark.timeout(120)
def test_given_transaction_left_open_past_its_timeout_should_be_aborted_by_the_broker(make_broker, new_topic):
    b = make_broker(overrides=TXN_BROKER)
    topic = new_topic()
    ck.create_topic(b.bootstrap, topic, 1)
    p = _txn_producer(b.bootstrap, f"timeout-{topic}", **{"transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
    p.init_transactions(30)
    p.begin_transaction()
    ck.produce(p, topic, value=b"left-open")
    p.flush(30)

    # The open transaction holds read_committed readers back (the last stable offset stays at
    # its first record) until the broker aborts it.
    c = ck.consumer(b.bootstrap, **{"isolation.level": "read_committed"})
    try:
        def lso_passed():
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5, cached=False)
            return high >= 2  # the record and the abort marker
        wait_until(lso_passed, 30, what="the broker to abort the timed-out transaction")
    finally:
        c.close()
    assert _read(b.bootstrap, topic, 1, "read_committed") == []
    assert _read(b.bootstrap, topic, 1, "read_uncommitted") == [b"left-open"]
    # The producer learns that its transaction is gone.
    with pytest.raises(KafkaException):
        p.commit_transaction(30)
