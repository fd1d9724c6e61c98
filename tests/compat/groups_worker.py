"""A confluent-kafka group consumer as its own process (run by groups_helpers.Worker).

Usage: python groups_worker.py '<json>' where the JSON object is the librdkafka configuration plus
"__topic" (the topic to subscribe to). The process reports what happens as JSON lines on stdout:

  {"ev": "started"}
  {"ev": "assign" | "revoke" | "lost", "parts": [...]}     rebalance callbacks (incremental with
                                                            cooperative-sticky, full with eager)
  {"ev": "asg", "parts": [...]}                             consumer.assignment() whenever it changed
  {"ev": "recs", "items": [[partition, offset, value], ...]}
  {"ev": "error" | "cerr", "code": ..., "name": ..., "str": ...}
  {"ev": "closed"}

Offsets are stored (enable.auto.offset.store=false + store_offsets) only after a record has been
written to stdout and flushed, so auto-commit commits only records the test has seen: at-least-once.
SIGTERM closes the consumer cleanly (LeaveGroup, unless it is a static member); SIGKILL is a crash.
"""

from __future__ import annotations

import json
import signal
import sys
import time

from confluent_kafka import Consumer


def emit(**ev) -> None:
    ev["t"] = time.time()
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def main() -> int:
    conf = json.loads(sys.argv[1])
    topic = conf.pop("__topic")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def err_event(kind, e):
        emit(ev=kind, code=e.code(), name=e.name(), str=e.str())

    conf["error_cb"] = lambda e: err_event("cerr", e)
    c = Consumer(conf)

    def parts(ps):
        return sorted(p.partition for p in ps)

    c.subscribe(
        [topic],
        on_assign=lambda _c, ps: emit(ev="assign", parts=parts(ps)),
        on_revoke=lambda _c, ps: emit(ev="revoke", parts=parts(ps)),
        on_lost=lambda _c, ps: emit(ev="lost", parts=parts(ps)),
    )
    emit(ev="started")
    last = None
    while not stop:
        msgs = c.consume(num_messages=500, timeout=0.2)
        items, ok = [], []
        for m in msgs:
            e = m.error()
            if e is not None:
                err_event("error", e)
                continue
            v = m.value()
            items.append([m.partition(), m.offset(), v.decode() if v is not None else None])
            ok.append(m)
        if items:
            emit(ev="recs", items=items)  # flushed before the offsets are stored
            for m in ok:
                try:
                    c.store_offsets(m)
                except Exception as e:  # noqa: BLE001 - partition revoked meanwhile: not stored
                    emit(ev="store_failed", p=m.partition(), o=m.offset(), err=str(e))
        try:
            cur = parts(c.assignment())
        except Exception:  # noqa: BLE001
            cur = last
        if cur != last:
            emit(ev="asg", parts=cur)
            last = cur
    c.close()
    emit(ev="closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
