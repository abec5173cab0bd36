"""The broker's CPU time per message on the transient hot path, in one process: a Node and two
Transports on fake sockets (no syscalls, no other process competing for the core), so that two
commits can be told apart by a few percent on a machine other work keeps busy.

The workload is throughput.py's, minus the sockets: 16-byte transient messages (content_type
and delivery_mode 1) published to the default exchange into one queue, one consumer with
prefetch 1000 acking every 100 messages with `multiple`. The client's bytes are built once;
each round feeds 100 publishes to the publisher's connection in one read, then one basic.ack
(multiple) to the consumer's, then lets the event loop run a turn (the transports' flushes).
Two shapes (`--mode`):

- `direct`: the queue is empty when each message arrives, so it goes straight to the
  consumer;
- `backlog`: `--backlog` messages (default 5,000) are published before the consumer starts
  and kept ahead of it, so every message waits in the queue and is dispatched from it when an
  ack opens the consumer's window (what a publisher that outruns its consumer causes).

Printed: CPU µs per message (time.process_time over the measured rounds, divided by the
messages), the median of `--repeat` runs, each in a fresh process. `--tree` runs another
checkout, to compare commits:

    git archive <commit> | tar -x -C /tmp/before
    python3 benchmarks/inprocess.py --tree /tmp/before --tree . --repeat 5

The garbage collector is tuned as `python -m broker` tunes it (broker/__main__.py's tune_gc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from frame_cpu import frame, longstr, method, shortstr  # (benchmarks/ is on sys.path)

ROUND = 100  # messages per round: one read of publishes, one basic.ack multiple


HANDSHAKE = (
    b"AMQP\x00\x00\x09\x01"
    + method(0, 10, 11, longstr(b"") + shortstr(b"PLAIN") + longstr(b"\0guest\0guest")
              + shortstr(b"en_US"))
    + method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
    + method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\0")
    + method(1, 20, 10, shortstr(b""))
)


class FakeSocket:
    """What a Transport needs of asyncio's transport; output is counted, not kept."""

    def __init__(self) -> None:
        self.written = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 5672), "peername": ("127.0.0.1", 40000)}.get(
            name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def run(count: int, mode: str, backlog: int) -> float:
    """CPU µs per message of `count` messages (after a warm-up of as many), on a node of its
    own in a temporary directory."""
    from broker.config import parse_args
    from broker.node import Node

    data_dir = tempfile.mkdtemp(prefix="warren-inprocess-")
    node = Node(parse_args(["--data-dir", data_dir, "--log-level", "error"]))
    await node.start()
    try:
        return await _measure(node, count, mode, backlog)
    finally:
        await node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _measure(node: Any, count: int, mode: str, backlog: int) -> float:
    from broker.__main__ import tune_gc
    from broker.transport import Transport

    publisher, consumer = Transport(node), Transport(node)
    publisher.connection_made(FakeSocket())
    consumer.connection_made(FakeSocket())
    publisher.data_received(HANDSHAKE)
    consumer.data_received(HANDSHAKE)
    queue = b"inprocess-bench"
    publisher.data_received(method(1, 50, 10, b"\0\0" + shortstr(queue) + b"\x00"
                                    + longstr(b"")))
    await _turn()
    message = (method(1, 60, 40, b"\0\0" + shortstr(b"") + shortstr(queue) + b"\0")
               + frame(2, 1, struct.pack(">HHQ", 60, 0, 16) + b"\x90\x00"
                        + shortstr(b"text/plain") + b"\x01")
               + frame(3, 1, b"x" * 16))
    batch = message * ROUND
    ahead = backlog if mode == "backlog" else 0
    for _ in range(ahead // ROUND):
        publisher.data_received(batch)
    await _turn()
    consumer.data_received(method(1, 60, 10, struct.pack(">IHB", 0, 1000, 0))
                           + method(1, 60, 20, b"\0\0" + shortstr(queue) + shortstr(b"c")
                                     + b"\0" + longstr(b"")))
    await _turn()
    acks = [method(1, 60, 80, struct.pack(">QB", tag, 1))
            for tag in range(ROUND, 2 * count + ahead + 1000 + ROUND, ROUND)]
    publish, ack, settle = publisher.data_received, consumer.data_received, _turn
    tune_gc()
    started = 0.0
    for index in range(2 * count // ROUND):
        if index == count // ROUND:  # the first half warms up
            started = time.process_time()
        publish(batch)
        ack(acks[index])
        await settle()
    used = time.process_time() - started
    vhost = node.vhosts["/"]
    acked = vhost.queues[queue.decode()].messages_acked
    if acked != 2 * count:
        raise SystemExit(f"expected {2 * count} acks, the queue counted {acked}")
    return used * 1e6 / count


def inner(args: argparse.Namespace) -> None:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(f"{runner(run(args.count, args.mode, args.backlog)):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout to run Warren from (repeatable; default: this one)")
    parser.add_argument("--count", type=int, default=200_000, help="messages measured per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree, alternating")
    parser.add_argument("--mode", choices=("direct", "backlog", "both"), default="both")
    parser.add_argument("--backlog", type=int, default=5000,
                        help="messages kept ahead of the consumer (--mode backlog)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
        return
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    modes = ("direct", "backlog") if args.mode == "both" else (args.mode,)
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for mode in modes:
            for tree in trees:
                output = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--inner", "--mode", mode,
                     "--count", str(args.count), "--backlog", str(args.backlog)],
                    cwd=tree, env={**os.environ, "PYTHONPATH": str(tree.resolve())},
                    capture_output=True, text=True, check=False)
                if output.returncode:
                    raise SystemExit(f"{tree}: {output.stderr.strip()[-2000:]}")
                value = float(output.stdout.strip().splitlines()[-1])
                results.setdefault((str(tree), mode), []).append(value)
                print(f"  {mode:8} {tree}: {value:.3f} µs CPU/msg", flush=True)
    print(f"medians of {args.repeat} ({args.count:,} x 16 B per run, CPU µs per message):")
    for (tree, mode), values in results.items():
        print(f"  {mode:8} {statistics.median(values):7.3f}  "
              f"({' '.join(f'{v:.2f}' for v in values)})  {tree}")


if __name__ == "__main__":
    main()
