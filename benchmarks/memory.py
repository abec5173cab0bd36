#!/usr/bin/env python3
"""Memory per queued message: RSS growth of a broker holding a long queue nobody consumes.

For each kind of message (16-byte and 1 KB transient messages in a transient queue, 1 KB
persistent messages in a durable queue) and each broker, a fresh broker is started, the queue
declared, and N messages (default 1,000,000) published by `amqperf pub` with confirms (window
500); once the queue reports all N, 3 s have passed and the broker's RSS has settled (two
samples a second apart within 1%), the figure is
(RSS - RSS of the broker with the empty queue) / N. Then one consumer drains the queue (which
must give back all N) and the broker is stopped.

    benchmarks/build_amqperf.sh
    /work/venv/bin/python benchmarks/memory.py --start-rabbitmq          # the README figures
    /work/venv/bin/python benchmarks/memory.py --count 100000            # Warren alone, quick
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    AMQPERF,
    CONFIRMLAT,
    BenchError,
    Broker,
    fmt,
    listening_pid,
    parse_amqperf,
    queue_count,
    report_log,
    rss_kib,
    run_in_workdir,
    started_rabbitmq,
    started_warren,
    tree_size,
)

QUEUE = "memory-bench"
# Before the RSS is read: Warren pages a transient message out once it has waited 2 s
# (storage.page_out_after) behind the head of its queue.
SETTLE_PAUSE = 3.0
# By default Warren pages only above half its memory watermark, as RabbitMQ does; this script
# measures the paged form, which a broker reaches whenever memory is short.
ALWAYS_PAGE = "--memory-high-watermark-paging-ratio=0"


@dataclass(frozen=True)
class Case:
    label: str
    size: int
    persistent: bool  # persistent messages into a durable queue; else transient into transient


CASES = (
    Case("16 B transient", 16, False),
    Case("1 KB transient", 1024, False),
    Case("1 KB persistent", 1024, True),
)


@dataclass
class Figure:
    broker: str
    product: str
    case: Case
    count: int
    rss_empty_kib: int | None = None
    rss_full_kib: int | None = None
    fill_rate: float | None = None
    drain_rate: float | None = None
    disk_bytes: int | None = None  # Warren's data directory, full
    error: str | None = None

    @property
    def per_message(self) -> float | None:
        if self.rss_full_kib is None or self.rss_empty_kib is None:
            return None
        return (self.rss_full_kib - self.rss_empty_kib) * 1024 / self.count


def client(broker: Broker, mode: str, *args: str) -> list[str]:
    return [str(AMQPERF), mode, "--port", str(broker.port), "--queue", QUEUE, *args]


def run_client(command: list[str], timeout: float) -> dict[str, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command[:2])} failed: {done.stderr.strip()}")
    return parse_amqperf(done.stdout) if "=" in done.stdout else {}


def settled_rss(pid: int, timeout: float) -> int | None:
    """The RSS once two samples a second apart differ by under 1% (background paging and
    garbage collection done), or the last one after `timeout` seconds."""
    last = rss_kib(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = rss_kib(pid)
        if now is None or last is None or abs(now - last) <= last / 100:
            return now
        last = now
    return last


def measure(broker: Broker, case: Case, count: int, timeout: float,
            data_dir: Path | None) -> Figure:
    figure = Figure(broker.name, broker.product, case, count)
    pid = listening_pid(broker.port)
    if pid is None:
        raise BenchError(f"no process listens on {broker.port}")
    durable = ["--durable"] if case.persistent else []
    run_client(client(broker, "pub", "--declare", *durable, "--count", "0"), 30)
    figure.rss_empty_kib = settled_rss(pid, 10)
    persistent = ["--persistent"] if case.persistent else []
    started = time.monotonic()
    run_client(client(broker, "pub", "--count", str(count), "--size", str(case.size),
                      "--confirm", "500", *persistent), timeout)
    figure.fill_rate = count / (time.monotonic() - started)
    counted = queue_count(Broker(broker.name, broker.port, queue_prefix=QUEUE))
    if counted != count:
        raise BenchError(f"published {count:,} with confirms, the queue holds {counted}")
    time.sleep(SETTLE_PAUSE)
    figure.rss_full_kib = settled_rss(pid, 30)
    if data_dir is not None:
        figure.disk_bytes = tree_size(data_dir)
    drained = run_client(client(broker, "con", "--count", str(count), "--prefetch", "1000",
                                "--ack-every", "100"), timeout)
    figure.drain_rate = float(drained["rate"]) if "rate" in drained else None
    return figure


def run_case(args: argparse.Namespace, workdir: Path, case: Case, which: str) -> Figure | None:
    casedir = workdir / f"{which}-{case.size}-{'p' if case.persistent else 't'}"
    casedir.mkdir()
    with contextlib.ExitStack() as stack:
        if which == "Warren":
            broker = stack.enter_context(started_warren(casedir, [ALWAYS_PAGE, *args.warren_arg]))
            data_dir = casedir / "warren-data"
        else:
            broker = stack.enter_context(started_rabbitmq(casedir))
            data_dir = None
        if broker is None:
            return None
        print(f"{which}: {case.label} x {args.count:,} ...", flush=True)
        try:
            figure = measure(broker, case, args.count, args.timeout, data_dir)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            figure = Figure(broker.name, broker.product, case, args.count, error=str(exc))
            print(f"  failed: {exc}", flush=True)
        else:
            print(f"  {fmt(figure.per_message, ',.0f')} B/msg, RSS "
                  f"{fmt(kib_to_mib(figure.rss_empty_kib), ',.0f')} -> "
                  f"{fmt(kib_to_mib(figure.rss_full_kib), ',.0f')} MiB", flush=True)
    if which == "Warren":
        report_log(broker)
    return figure


def kib_to_mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def print_table(figures: list[Figure], count: int) -> None:
    print()
    print(f"{count:,} messages published with confirms into one queue, no consumer; "
          "RSS growth per message once settled.")
    header = (f"{'broker':<10} {'server':<18} {'messages':<16} {'empty MiB':>9} "
              f"{'full MiB':>9} {'B/msg':>7} {'fill msg/s':>11} {'drain msg/s':>12} "
              f"{'disk MiB':>9}")
    print(header)
    print("-" * len(header))
    for figure in figures:
        if figure.error:
            print(f"{figure.broker:<10} {figure.product:<18.18} {figure.case.label:<16} "
                  f"failed: {figure.error}")
            continue
        disk = None if figure.disk_bytes is None else figure.disk_bytes / 2**20
        print(f"{figure.broker:<10} {figure.product:<18.18} {figure.case.label:<16} "
              f"{fmt(kib_to_mib(figure.rss_empty_kib), ',.0f'):>9} "
              f"{fmt(kib_to_mib(figure.rss_full_kib), ',.0f'):>9} "
              f"{fmt(figure.per_message, ',.0f'):>7} {fmt(figure.fill_rate, ',.0f'):>11} "
              f"{fmt(figure.drain_rate, ',.0f'):>12} {fmt(disk, ',.0f'):>9}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1_000_000, help="messages per queue")
    p.add_argument("--case", action="append", choices=[case.label for case in CASES],
                   help="measure only this kind of message (repeatable)")
    p.add_argument("--start-rabbitmq", action="store_true",
                   help="measure a private RabbitMQ node too (started per case)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a step gives up")
    p.add_argument(
        "--warren-arg", action="append", default=[], metavar="ARG",
        help="extra argument for `python -m broker` (repeatable)",
    )  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> int:
    brokers = ["Warren", "RabbitMQ"] if args.start_rabbitmq else ["Warren"]
    figures = []
    for case in CASES:
        if args.case and case.label not in args.case:
            continue
        for which in brokers:
            figure = run_case(args, workdir, case, which)
            if figure is not None:
                figures.append(figure)
    print_table(figures, args.count)
    return 0 if figures and not any(figure.error for figure in figures) else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-memory-", run, (AMQPERF, CONFIRMLAT))


if __name__ == "__main__":
    sys.exit(main())
