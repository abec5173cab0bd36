"""Streams over AMQP 0-9-1 (issue 13): Warren next to RabbitMQ 3.10's streams, same clients.

Per broker: a stream is declared (x-queue-type: stream), then
1. `confirmlat pub --window 500 --transient` publishes N (default 1,000,000) 1 KB messages
   with confirms: the publisher's msg/s and confirm latency;
2. one `streamcon` (benchmarks/streamcon.c) reads the stream from `first` with prefetch 1000,
   acking every 100: its msg/s from its first delivery to its N-th;
3. four `streamcon`s at once from `first`: each one's msg/s and their sum.
Also Warren's RSS (VmRSS) after the publish and the size of its stream directory; with
--small M, Warren's RSS growth per message for M 16-byte messages in another stream (a
stream's memory is its index only, so this should be a fraction of a byte). The stream is
deleted at the end. RabbitMQ is a node already listening (--rabbitmq-port, e.g. the shared
reference on 5682); without it Warren is measured alone. Needs benchmarks/bin/confirmlat and
benchmarks/bin/streamcon: run benchmarks/build_amqperf.sh.

    python3 benchmarks/stream.py --count 1000000 [--rabbitmq-port 5682]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
from common import (
    BIN_DIR,
    Broker,
    existing_broker,
    listening_pid,
    parse_amqperf,
    rss_kib,
    started_warren,
    tree_size,
)


def client(*args: str, timeout: float) -> dict[str, str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {result.stderr.strip()}")
    return parse_amqperf(result.stdout)


def declare(broker: Broker, name: str, delete: bool = False) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    try:
        channel = connection.channel()
        if delete:
            channel.queue_delete(name)
        else:
            channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    finally:
        connection.close()


def readers(broker: Broker, name: str, count: int, how_many: int, timeout: float) -> list[float]:
    processes = [subprocess.Popen(
        [str(BIN_DIR / "streamcon"), "--port", str(broker.port), "--queue", name, "--count",
         str(count), "--prefetch", "1000", "--ack-every", "100", "--offset", "first"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(how_many)]
    rates = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise RuntimeError(f"streamcon failed: {err.strip()}")
        rates.append(float(parse_amqperf(out)["rate"]))
    return rates


def measure(broker: Broker, count: int, timeout: float, data_dir: Path | None) -> None:
    name = f"stream-bench-{uuid.uuid4().hex[:8]}"
    declare(broker, name)
    try:
        started = time.monotonic()
        published = client(BIN_DIR / "confirmlat", "pub", "--port", str(broker.port), "--queue",
                           name, "--count", str(count), "--size", "1024", "--window", "500",
                           "--transient", timeout=timeout)
        print(f"{broker.name}: publish {count} x 1 KB with confirms (window 500): "
              f"{float(published['rate']):,.0f} msg/s, confirm p50 {published['p50_ms']} ms, "
              f"p99 {published['p99_ms']} ms ({time.monotonic() - started:.1f} s)")
        pid = listening_pid(broker.port)
        if data_dir is not None and pid is not None:
            rss = rss_kib(pid) or 0
            size = tree_size(data_dir / "streams")
            print(f"{broker.name}: RSS {rss / 1024:.0f} MiB after the publish; stream on disk "
                  f"{size / 2**20:.0f} MiB")
        one = readers(broker, name, count, 1, timeout)
        print(f"{broker.name}: one reader from first, prefetch 1000: {one[0]:,.0f} msg/s")
        four = readers(broker, name, count, 4, timeout)
        print(f"{broker.name}: four readers at once from first: "
              f"{', '.join(f'{rate:,.0f}' for rate in four)} msg/s each, "
              f"{sum(four):,.0f} msg/s together")
    finally:
        declare(broker, name, delete=True)


def small_messages(broker: Broker, count: int, timeout: float, data_dir: Path) -> None:
    name = f"stream-small-{uuid.uuid4().hex[:8]}"
    declare(broker, name)
    pid = listening_pid(broker.port)
    try:
        before = (rss_kib(pid) or 0) if pid else 0
        started = time.monotonic()
        published = client(BIN_DIR / "confirmlat", "pub", "--port", str(broker.port), "--queue",
                           name, "--count", str(count), "--size", "16", "--window", "500",
                           "--transient", timeout=timeout)
        after = (rss_kib(pid) or 0) if pid else 0
        size = tree_size(data_dir / "streams")
        print(f"{broker.name}: {count} x 16 B in a stream ({float(published['rate']):,.0f} msg/s, "
              f"{time.monotonic() - started:.0f} s): RSS {before / 1024:.0f} -> "
              f"{after / 1024:.0f} MiB, {(after - before) * 1024 / count:.2f} B per message; "
              f"on disk {size / 2**20:.0f} MiB")
    finally:
        declare(broker, name, delete=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rabbitmq-port", type=int)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--warren-arg", action="append", default=[])
    parser.add_argument("--small", type=int, default=0, help="messages of the memory run")
    parser.add_argument("--skip-large", action="store_true", help="only the memory run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warren-stream-bench-") as workdir:
        with started_warren(Path(workdir), args.warren_arg) as warren:
            if warren is None:
                return 1
            if not args.skip_large:
                measure(warren, args.count, args.timeout, Path(workdir) / "warren-data")
            if args.small:
                small_messages(warren, args.small, args.timeout, Path(workdir) / "warren-data")
        if args.rabbitmq_port and not args.skip_large:
            rabbit = existing_broker("RabbitMQ", args.rabbitmq_port)
            if rabbit is None:
                print(f"no RabbitMQ answering on {args.rabbitmq_port}")
            else:
                measure(rabbit, args.count, args.timeout, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
