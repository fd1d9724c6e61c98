"""Helpers for the log-lifecycle, admin and idempotence compat tests (test_admin_lifecycle.py,
test_idempotence.py).

- QUICK_BROKER: broker overrides for quick stops and restarts (a 1-partition __consumer_offsets).
- FAST_LIFECYCLE: QUICK_BROKER, and retention, `segment.ms` rolling and the log cleaner run every
  200 ms (instead of every 5 min / 15 s), for tests that wait for them.
- Watermarks / watermarks(): ListOffsets earliest/latest (low/high watermark) through librdkafka.
- live_segments(), partition_dir(): the partition's `.log` segment files on disk.
- control_batch_offsets(): where the partition's segment files hold control batches (transaction
  markers), read from the files with a minimal record-batch header parser.
- DirWatch: inotify on a partition directory, to SIGKILL the broker the moment a file appears.
- read_partition(): every record of a partition (assign from the beginning, read to the end).
- config helpers for confluent-kafka's AdminClient.

Every wait is deadline-bounded (runnel_harness.wait_until, or a deadline of its own).
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from pathlib import Path

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

import ck_helpers as ck
from runnel_harness import wait_until

# For every broker these tests start: __consumer_offsets with 1 partition instead of 50. The
# tests' librdkafka consumers (assign only, but with a group.id) make the broker create it, and a
# SIGTERM then closes each of its partitions in turn (~40 ms each here): 2 s per stop or restart.
QUICK_BROKER = {"offsets.topic.num.partitions": "1"}

# Retention, segment.ms rolls and the cleaner every 200 ms.
FAST_LIFECYCLE = {
    **QUICK_BROKER,
    "log.retention.check.interval.ms": "200",
    "log.cleaner.backoff.ms": "200",
}

MiB = 1024 * 1024


# ---------------------------------------------------------------- offsets
class Watermarks:
    """A consumer kept open for repeated ListOffsets (earliest, latest) of one partition."""

    def __init__(self, bootstrap: str, topic: str, partition: int = 0) -> None:
        self.tp = TopicPartition(topic, partition)
        self.c = ck.consumer(bootstrap)

    def get(self) -> tuple[int, int]:
        return self.c.get_watermark_offsets(self.tp, timeout=10, cached=False)

    def wait(self, pred, deadline_s: float, what: str) -> tuple[int, int]:
        seen: list = []

        def check():
            wm = self.get()
            seen[:] = [wm]
            return wm if pred(*wm) else None

        try:
            return wait_until(check, deadline_s, interval_s=0.1, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; last (low, high) watermarks: {seen}") from None

    def close(self) -> None:
        self.c.close()

    def __enter__(self) -> "Watermarks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    with Watermarks(bootstrap, topic, partition) as w:
        return w.get()


# ---------------------------------------------------------------- files on disk
def partition_dir(broker, topic: str, partition: int = 0) -> Path:
    return Path(broker.data_dir) / f"{topic}-{partition}"


def live_segments(broker, topic: str, partition: int = 0) -> dict[int, int]:
    """{base offset: size in bytes} of the partition's `.log` segment files (Kafka's file layout:
    `<20-digit base offset>.log`); files renamed `*.deleted` or in-progress `*.cleaned`/`*.swap`
    files are not counted."""
    out = {}
    d = partition_dir(broker, topic, partition)
    for p in d.iterdir():
        if p.name.endswith(".log") and p.name[:-4].isdigit():
            try:
                out[int(p.name[:-4])] = p.stat().st_size
            except FileNotFoundError:  # deleted meanwhile
                pass
    return out


# Kafka record batch v2 header, up to lastOffsetDelta: baseOffset, batchLength (of what follows it),
# partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta.
_BATCH_HEAD = struct.Struct(">qiibIhi")
_BATCH_LENGTH_END = 12  # baseOffset + batchLength: the bytes batchLength does not count
_ATTR_CONTROL = 0x20


def control_batch_offsets(broker, topic: str, partition: int = 0) -> list[int] | None:
    """Base offsets of the control batches (transaction markers) in the partition's live `.log`
    segments, walking each file batch by batch (a torn tail, as the active segment may have, ends
    the walk). None when the files changed while being read (a segment of the listing gone, or
    the segments no longer end where the next begins, as when a clean swapped some in): call
    again."""
    d = partition_dir(broker, topic, partition)
    markers: list[int] = []
    end = None  # next offset after the last batch read
    for base in sorted(live_segments(broker, topic, partition)):
        if end is not None and base != end:
            return None
        try:
            data = (d / f"{base:020d}.log").read_bytes()
        except FileNotFoundError:
            return None
        pos = 0
        while pos + _BATCH_HEAD.size <= len(data):
            offset, length, _epoch, magic, _crc, attributes, last_delta = _BATCH_HEAD.unpack_from(data, pos)
            if length < _BATCH_HEAD.size - _BATCH_LENGTH_END or pos + _BATCH_LENGTH_END + length > len(data):
                break
            assert magic == 2, f"{d}/{base:020d}.log at byte {pos}: record batch magic {magic}, expected 2"
            if attributes & _ATTR_CONTROL:
                markers.append(offset)
            end = offset + last_delta + 1
            pos += _BATCH_LENGTH_END + length
    return markers


class DirWatch:
    """Linux inotify on one directory: wait_for(pred) returns the first file name created in or
    renamed into it for which pred(name) holds. Lets a test SIGKILL the broker the moment a
    file appears (a poll loop would be late or burn a core); start it before the file can appear."""

    IN_MOVED_TO = 0x00000080
    IN_CREATE = 0x00000100
    _EVENT = struct.Struct("iIII")

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_CREATE | self.IN_MOVED_TO)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")
        self.events: list[str] = []  # every name seen, in order (for failure messages)

    def wait_for(self, pred, deadline_s: float, what: str) -> str:
        deadline = time.monotonic() + deadline_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {deadline_s}s waiting for {what}; files seen: {self.events}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            data = os.read(self.fd, 65536)
            pos = 0
            while pos + self._EVENT.size <= len(data):
                _wd, _mask, _cookie, length = self._EVENT.unpack_from(data, pos)
                pos += self._EVENT.size
                name = data[pos:pos + length].rstrip(b"\0").decode()
                pos += length
                self.events.append(name)
                if pred(name):
                    return name

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "DirWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- reading
def read_partition(bootstrap: str, topic: str, partition: int = 0, deadline_s: float = 30, **conf) -> list:
    """Every record of one partition, in offset order; fails on consumer errors or a timeout."""
    res = ck.consume_all(bootstrap, topic, [partition], deadline_s=deadline_s, **conf)
    assert not res.errors and not res.timed_out, f"reading {topic}/{partition}: {res.describe()}"
    return res.records


def latest_per_key(records) -> dict:
    """key -> value of the last record with that key (None for a tombstone)."""
    out = {}
    for r in records:
        out[r.key] = r.value
    return out


# ---------------------------------------------------------------- configs (confluent-kafka)
def describe(admin, rtype: ResourceType, name: str, timeout: float = 15) -> dict[str, ConfigEntry]:
    res = ConfigResource(rtype, name)
    return admin.describe_configs([res], request_timeout=timeout)[res].result(timeout=timeout)


def describe_topic(admin, topic: str) -> dict[str, ConfigEntry]:
    return describe(admin, ResourceType.TOPIC, topic)


def incremental_alter(admin, rtype: ResourceType, name: str, ops: list[tuple[str, AlterConfigOpType, str | None]],
                      timeout: float = 15) -> None:
    """IncrementalAlterConfigs of one resource: ops = [(key, op, value)]. Raises KafkaException."""
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, op, v in ops]
    res = ConfigResource(rtype, name, incremental_configs=entries)
    admin.incremental_alter_configs([res], request_timeout=timeout)[res].result(timeout=timeout)


def alter(admin, rtype: ResourceType, name: str, configs: dict[str, str], timeout: float = 15) -> None:
    """(Deprecated, non-incremental) AlterConfigs of one resource: replaces its whole config."""
    res = ConfigResource(rtype, name, set_config=configs)
    admin.alter_configs([res], request_timeout=timeout)[res].result(timeout=timeout)


def entry_summary(e: ConfigEntry) -> tuple:
    """(value, source name, is_default) of a described config, for readable assertions."""
    try:
        src = ConfigSource(e.source).name
    except ValueError:
        src = e.source
    return (e.value, src, e.is_default)


def kafka_error(exc: BaseException):
    assert isinstance(exc, KafkaException), f"expected KafkaException, got {exc!r}"
    return exc.args[0]


# ---------------------------------------------------------------- misc
def now_ms() -> int:
    return int(time.time() * 1000)
