"""CPU per message of building a dead-lettered copy's properties, in process (no broker, no I/O).

lifecycle.py's messages all carry the same property bytes, so after the first one Warren's cache
of rewrites answers. This script times the other cases too: for each kind of message, N messages
(default 20,000) go through `broker.deadletter.rewritten` (what the broker runs: cache, then the
splice of first deaths, then the general way) and through the general way alone (decode, record
the death, sort, encode). Best of --repeat runs, µs per message.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pamqp import commands as spec  # noqa: E402

from broker import deadletter  # noqa: E402
from broker.message import Message  # noqa: E402
from protocol import properties  # noqa: E402
from protocol.fieldtable import TypedValue, encode_table  # noqa: E402


def with_headers(headers: dict[str, TypedValue], **values: object) -> bytes:
    raw = spec.Basic.Properties(delivery_mode=1, headers={} if headers else None,
                                **values).marshal()
    if not headers:
        return raw
    return properties.set_headers(raw, properties.headers_offset(raw), encode_table(headers))


def kinds(count: int) -> dict[str, list[bytes]]:
    """Property bytes of `count` messages of each kind."""
    def unique(i: int) -> TypedValue:
        return "S", b"order-%d" % i

    return {
        "no headers, all alike (lifecycle.py)": [with_headers({})] * count,
        "no headers, unique message_id": [with_headers({}, message_id=f"m-{i}")
                                          for i in range(count)],
        "3 headers in key order, one unique": [
            with_headers({"id": unique(i), "n": ("I", i), "src": ("S", b"app")})
            for i in range(count)],
        "3 headers out of order, one unique": [
            with_headers({"src": ("S", b"app"), "n": ("I", i), "id": unique(i)})
            for i in range(count)],
        "died before (x-death present)": [
            deadletter.rewritten(Message("", "q", b"", with_headers({"id": unique(i)}), b""),
                                 "earlier", "rejected", True).props_raw
            for i in range(count)],
    }


def timed(run: Callable[[], object], count: int, repeat: int) -> float:
    return min(timeit.repeat(run, number=1, repeat=repeat)) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per kind")
    parser.add_argument("--repeat", type=int, default=5, help="runs per kind (best shown)")
    args = parser.parse_args(argv)
    print(f"{'message kind':<40} {'broker path us':>15} {'general way us':>15}")
    for kind, raws in kinds(args.count).items():
        messages = [Message("", "src", b"", raw, b"x" * 16) for raw in raws]

        def broker_path(messages: list[Message] = messages) -> None:
            deadletter._rewrites.clear()
            for message in messages:
                message._headers = None  # as a message fresh from a client has them
                deadletter.rewritten(message, "src", "expired", True)

        def general_way(messages: list[Message] = messages) -> None:
            for message in messages:
                message._headers = None
                deadletter._reencoded(message, "src", "expired", True, 1_700_000_000)

        fast = timed(broker_path, args.count, args.repeat)
        slow = timed(general_way, args.count, args.repeat)
        print(f"{kind:<40} {fast:>15.2f} {slow:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
