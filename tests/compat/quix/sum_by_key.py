"""A Quix Streams application with exactly-once processing and a stateful step.

Reads JSON records {"n": <int>} keyed by a string from the input topic, keeps a running sum per
key in Quix's RocksDB state (backed by its changelog topic), and writes {"key": k, "sum": s,
"count": c} for every input record to the output topic. Runs until it has processed `count`
records in this run or `timeout` seconds of idleness pass.

usage: python sum_by_key.py BOOTSTRAP INPUT OUTPUT GROUP STATE_DIR COUNT TIMEOUT_S
"""

import sys

from quixstreams import Application


def main() -> None:
    bootstrap, input_topic, output_topic, group, state_dir, count, timeout = sys.argv[1:8]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        commit_interval=0.5,
        loglevel="WARNING",
    )
    source = app.topic(input_topic, value_deserializer="json", key_deserializer="str")
    sink = app.topic(output_topic, value_serializer="json", key_serializer="str")
    sdf = app.dataframe(source)

    def add(value: dict, key: str, _timestamp, _headers, state) -> dict:
        total = state.get("sum", 0) + value["n"]
        seen = state.get("count", 0) + 1
        state.set("sum", total)
        state.set("count", seen)
        return {"key": key, "sum": total, "count": seen}

    sdf = sdf.apply(add, stateful=True, metadata=True)
    sdf.to_topic(sink)
    app.run(count=int(count), timeout=float(timeout), collect=False)


if __name__ == "__main__":
    main()
