"""CPU per message of the publish-time check of content-header properties, in process.

Every message's property bytes are checked once (`protocol.properties.well_formed`) before
anything is queued; a connection caches property bytes of up to 256 bytes it has seen, so
identical properties (most publishers') are checked once per connection, and only new ones
(a unique message_id, a timestamp, per-message headers) pay the check on each message. This
prints that cost for kinds of property bytes pika sends, best of --repeat runs.

    python3 benchmarks/properties_check.py
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pamqp import commands  # noqa: E402

from protocol import properties  # noqa: E402
from protocol.fieldtable import decode_table  # noqa: E402


def _deep(depth: int) -> dict:
    value: dict = {"a": 7}
    for _ in range(depth):
        value = {"a": value}
    return value


def kinds() -> list[tuple[str, bytes]]:
    stamp = datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)
    marshal = lambda **fields: commands.Basic.Properties(**fields).marshal()  # noqa: E731
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # pamqp encodes recursively
    try:
        deep = marshal(headers={"deep": _deep(3000)})
    finally:
        sys.setrecursionlimit(limit)
    return [
        ("no properties", b"\x00\x00"),
        ("delivery_mode 2", marshal(delivery_mode=2)),
        ("pika: content_type, mode, message_id, timestamp",
         marshal(content_type="application/json", delivery_mode=2,
                 message_id="8c3d5a4e-1f2b-4c8d-9e7a-0b1c2d3e4f50", timestamp=stamp)),
        ("Celery-like: 10 headers, 2 nested",
         marshal(content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                 correlation_id="c0ffee", reply_to="reply", priority=0,
                 headers={"lang": "py", "task": "proj.tasks.add", "id": "c0ffee",
                          "retries": 0, "eta": None, "expires": None, "group": None,
                          "timelimit": [None, None], "argsrepr": "(2, 2)",
                          "origin": {"host": "worker-1", "pid": 4242}})),
        ("headers 3000 deep", deep),
    ]


def per_message_us(function, raw: bytes, count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(count):
            function(raw)
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'property bytes':50} {'bytes':>6} {'check us':>9} {'decode us':>10}")
    for name, raw in kinds():
        assert properties.well_formed(raw), name
        count = max(args.count // max(len(raw) // 64, 1), 20)
        check = per_message_us(properties.well_formed, raw, count, args.repeat)
        offset = properties.headers_offset(raw)
        if properties.has(raw, "headers") and offset is not None:
            decode = per_message_us(lambda data, at=offset: decode_table(data, at), raw, count,
                                    args.repeat)
            shown = f"{decode:10.2f}"
        else:
            shown = f"{'-':>10}"
        print(f"{name:50} {len(raw):6} {check:9.2f} {shown}")


if __name__ == "__main__":
    main()
