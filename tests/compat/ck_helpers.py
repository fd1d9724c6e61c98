"""confluent-kafka (librdkafka) helpers shared by the compat tests.

Consumers never join a group: Runnel has no group coordinator yet, so they `assign()` partitions
explicitly and read from OFFSET_BEGINNING. librdkafka insists on a group.id for a Consumer even
then; it is set but nothing is committed (enable.auto.commit=false, no commit calls).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_harness import wait_until

# Consumer errors that say nothing about the data path. librdkafka reports the end of a partition
# as an "error" event; it is used below to know when a partition is read to its end.
_EOF = KafkaError._PARTITION_EOF


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple | None
    timestamp: tuple


def _rec(m) -> Rec:
    h = m.headers()
    return Rec(m.topic(), m.partition(), m.offset(), m.key(), m.value(), tuple(h) if h is not None else None,
               m.timestamp())


@dataclass
class Deliveries:
    """on_delivery callback target: every delivery report, in the order librdkafka gave them."""

    ok: list = field(default_factory=list)  # (partition, offset, key, value, headers)
    failed: list = field(default_factory=list)  # (KafkaError, key, value)

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.failed.append((err, msg.key(), msg.value()))
        else:
            h = msg.headers()
            self.ok.append((msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(h) if h else None))

    @property
    def count(self) -> int:
        return len(self.ok) + len(self.failed)

    def failure_summary(self, limit: int = 5) -> str:
        codes: dict[str, int] = {}
        for err, _, _ in self.failed:
            codes[f"{err.name()}({err.code()}): {err.str()}"] = codes.get(f"{err.name()}({err.code()}): {err.str()}", 0) + 1
        return "; ".join(f"{n}x {c}" for c, n in list(codes.items())[:limit]) or "none"


class ClientErrors(list):
    """error_cb target: client-level errors (connection refused, all brokers down, ...)."""

    def __call__(self, err) -> None:
        self.append(err)


def producer(bootstrap: str, errors: ClientErrors | None = None, **conf) -> Producer:
    c = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,  # Runnel has no InitProducerId yet
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    if errors is not None:
        c["error_cb"] = errors
    c.update(conf)
    return Producer(c)


def produce(p: Producer, topic: str, deadline_s: float = 30, **kw) -> None:
    """Producer.produce, waiting (bounded) while the local queue is full."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            p.produce(topic, **kw)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise
            p.poll(0.05)


def flush(p: Producer, deadline_s: float = 60) -> None:
    left = p.flush(deadline_s)
    assert left == 0, f"{left} messages still undelivered after flush({deadline_s})"


def consumer(bootstrap: str, errors: ClientErrors | None = None, **conf) -> Consumer:
    c = {
        "bootstrap.servers": bootstrap,
        "group.id": "runnel-compat-assign-only",  # required by librdkafka; never joined or committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "check.crcs": True,
        # Reaching the end of a partition is only known once an empty Fetch returns; keep its
        # long-poll wait short so tests that read "to the end" do not idle (default 500 ms).
        "fetch.wait.max.ms": 100,
    }
    if errors is not None:
        c["error_cb"] = errors
    c.update(conf)
    return Consumer(c)


def admin(bootstrap: str, **conf) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **conf})


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None) -> None:
    a = admin(bootstrap)
    fs = a.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=15,
        request_timeout=30,
    )
    fs[topic].result(timeout=30)
    wait_for_topic(a, topic, partitions)


def wait_for_topic(client, topic: str, partitions: int, deadline_s: float = 30):
    """Wait until Metadata shows `topic` with `partitions` partitions, each with a leader."""

    def ready():
        md = client.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return None
        if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, deadline_s, what=f"metadata for topic {topic} with {partitions} partitions")


@dataclass
class ConsumeResult:
    records: list[Rec]
    errors: list  # non-EOF KafkaError events from consume()
    client_errors: list  # error_cb
    eof_at: dict  # partition -> offset where EOF was last reported
    timed_out: bool

    def describe(self) -> str:
        errs = [f"{e.name()}({e.code()}): {e.str()}" for e in self.errors[:5]]
        cerrs = [f"{e.name()}({e.code()}): {e.str()}" for e in self.client_errors[:5]]
        return (f"{len(self.records)} records, eof_at={self.eof_at}, timed_out={self.timed_out}, "
                f"consume errors={errs}, client errors={cerrs}")


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: list[int] | int,
    expected: int | None = None,
    deadline_s: float = 60,
    **conf,
) -> ConsumeResult:
    """Assign every partition from OFFSET_BEGINNING and read until every partition has reported
    end-of-partition and (when given) at least `expected` records arrived, or the deadline passes."""
    if isinstance(partitions, int):
        partitions = list(range(partitions))
    cerrs = ClientErrors()
    c = consumer(bootstrap, cerrs, **conf)
    records: list[Rec] = []
    errors: list = []
    eof_at: dict[int, int] = {}
    timed_out = False
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + deadline_s
        while True:
            for m in c.consume(num_messages=5000, timeout=0.5):
                err = m.error()
                if err is None:
                    records.append(_rec(m))
                    eof_at.pop(m.partition(), None)
                elif err.code() == _EOF:
                    eof_at[m.partition()] = m.offset()
                else:
                    errors.append(err)
            done = len(eof_at) == len(partitions) and (expected is None or len(records) >= expected)
            if done:
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
    finally:
        c.close()
    return ConsumeResult(records, errors, list(cerrs), eof_at, timed_out)
