"""Cost of a Prometheus scrape with many queues: Warren's `/metrics` and `/metrics/per-object`
next to RabbitMQ 3.10's rabbitmq_prometheus.

Per broker: declare Q queues (default 10,000; non-durable, one pika channel, names
`metrics-bench-00000`...), publish M messages (default 500) round-robin over every Q/M-th queue,
wait until `/metrics/per-object` lists every queue (RabbitMQ fills it from statistics emitted
every 5 s), then GET `/metrics` and `/metrics/per-object` R times each (default 5, after one
unmeasured GET) and report the median and max wall time of a whole request (connect to last
byte, no gzip), the body size, its number of samples, the broker's RSS afterwards, the
slowest AMQP round trip on another connection during those GETs (how long a scrape stalls the
broker), and the broker process's CPU time per GET (utime + stime over R more GETs with no
other traffic: unlike wall time, hardly moved by other work on the machine).

Warren is started here (`python -m broker` from the repository root, free ports, temporary data
directory) and scraped on its management port. RabbitMQ is a node already running with the
rabbitmq_prometheus plugin (--rabbitmq-port AMQP port and --rabbitmq-metrics-port its prometheus
port; the queues are deleted afterwards) or a private node started here (--start-rabbitmq, with
`[rabbitmq_prometheus].` and `prometheus.tcp.port` on a free port). With neither, Warren alone.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
from common import (
    BenchError,
    Broker,
    WarrenSpec,
    free_port,
    launch_rabbitmq,
    launch_warren,
    listening_pid,
    rabbit_spec,
    report_log,
    rss_kib,
    run_in_workdir,
    stop_process_group,
    wait_for_amqp,
)
from lifecycle import cpu_delta, cpu_seconds

PREFIX = "metrics-bench"
PATHS = ("/metrics", "/metrics/per-object")


@dataclass
class Target:
    """A broker to scrape: AMQP via `broker`, metrics on http://127.0.0.1:metrics_port."""

    broker: Broker
    metrics_port: int


@dataclass
class Figures:
    path: str
    median_ms: float
    max_ms: float
    size: int
    samples: int
    amqp_max_ms: float  # slowest AMQP round trip on another connection while scraping
    cpu_ms: float | None  # broker CPU time per GET


# --- brokers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def started_warren(workdir: Path, extra_args: list[str]) -> Iterator[Target | None]:
    spec = WarrenSpec(workdir / "warren-data", workdir, list(extra_args))
    broker = launch_warren(spec)
    assert broker.process is not None
    try:
        try:
            broker.product = wait_for_amqp(broker.port, broker.process, timeout=30)
        except BenchError as exc:
            print(f"note: Warren did not start ({exc}); see {broker.log_path}")
            yield None
            return
        yield Target(broker, spec.management_port)
    finally:
        stop_process_group(broker.process, grace=10)
        report_log(broker)


@contextlib.contextmanager
def started_rabbitmq(workdir: Path) -> Iterator[Target | None]:
    """A private RabbitMQ node with rabbitmq_prometheus on a free port."""
    spec = rabbit_spec(workdir, "rabbitmq-prom")
    if spec is None:
        yield None
        return
    metrics_port = free_port()
    (spec.base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    (spec.base / "rabbitmq.conf").write_text(f"prometheus.tcp.port = {metrics_port}\n")
    broker = launch_rabbitmq(spec)
    assert broker.process is not None
    try:
        try:
            broker.product = wait_for_amqp(broker.port, broker.process, timeout=120)
            wait_for_http(metrics_port, timeout=60)
        except BenchError as exc:
            print(f"note: could not start RabbitMQ ({exc}); see {spec.base / 'log'}")
            yield None
            return
        yield Target(broker, metrics_port)
    finally:
        stop_process_group(broker.process, grace=30)


def wait_for_http(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            get(port, "/metrics")
            return
        time.sleep(0.5)
    raise BenchError(f"nothing serves /metrics on port {port} within {timeout:.0f}s")


# --- load and scrape ----------------------------------------------------------------------------


def queue_name(i: int) -> str:
    return f"{PREFIX}-{i:05d}"


def connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))


def load(target: Target, queues: int, messages: int) -> float:
    """Declare the queues and publish the messages (with confirms); return the seconds taken."""
    start = time.perf_counter()
    with contextlib.closing(connect(target.broker.port)) as conn:
        channel = conn.channel()
        for i in range(queues):
            channel.queue_declare(queue_name(i))
        channel.confirm_delivery()
        step = max(1, queues // max(1, messages))
        for m in range(messages):
            channel.basic_publish("", queue_name((m * step) % queues), b"x" * 64)
    return time.perf_counter() - start


def delete_queues(target: Target, queues: int) -> None:
    with contextlib.closing(connect(target.broker.port)) as conn:
        channel = conn.channel()
        for i in range(queues):
            channel.queue_delete(queue_name(i))


def get(port: int, path: str) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def count_samples(body: bytes, prefix: bytes = b"", contains: bytes = b"") -> int:
    return sum(
        1 for line in body.splitlines() if line and not line.startswith(b"#")
        and line.startswith(prefix) and contains in line
    )  # fmt: skip


def wait_listed(target: Target, queues: int, timeout: float) -> None:
    """Wait until /metrics/per-object has a rabbitmq_queue_messages sample for every queue."""
    deadline = time.monotonic() + timeout
    listed = 0
    while time.monotonic() < deadline:
        body = get(target.metrics_port, "/metrics/per-object")
        listed = count_samples(body, b"rabbitmq_queue_messages{", f'queue="{PREFIX}-'.encode())
        if listed >= queues:
            return
        time.sleep(1)
    print(f"  note: only {listed}/{queues} queues listed in /metrics/per-object after {timeout}s")


class RoundTrips(threading.Thread):
    """AMQP round trips (a passive queue.declare) on a connection of its own, back to back,
    keeping the slowest: how long a scrape holds up the broker's other work."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.connection = connect(port)
        self.stop = threading.Event()
        self.slowest = 0.0

    def run(self) -> None:
        channel = self.connection.channel()
        while not self.stop.is_set():
            start = time.perf_counter()
            channel.queue_declare(queue_name(0), passive=True)
            self.slowest = max(self.slowest, time.perf_counter() - start)
        self.connection.close()


def scrape(target: Target, path: str, repeat: int, pid: int | None) -> Figures:
    body = get(target.metrics_port, path)  # unmeasured: warms caches, checks it answers
    round_trips = RoundTrips(target.broker.port)
    round_trips.start()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        body = get(target.metrics_port, path)
        times.append(time.perf_counter() - start)
    round_trips.stop.set()
    round_trips.join()
    before = cpu_seconds(pid)
    for _ in range(repeat):
        get(target.metrics_port, path)
    spent = cpu_delta(pid, before)
    return Figures(path, statistics.median(times) * 1000, max(times) * 1000, len(body),
                   count_samples(body), round_trips.slowest * 1000,
                   spent * 1000 / repeat if spent is not None else None)  # fmt: skip


def measure(target: Target, args: argparse.Namespace) -> tuple[list[Figures], float, int | None]:
    b = target.broker
    pid = listening_pid(b.port)
    print(f"{b.name}: {b.product}, AMQP {b.port}, metrics {target.metrics_port}, pid {pid}")
    seconds = load(target, args.queues, args.messages)
    print(f"  declared {args.queues} queues, published {args.messages} messages in {seconds:.1f}s")
    wait_listed(target, args.queues, args.settle)
    figures = [scrape(target, path, args.repeat, pid) for path in PATHS]
    rss = rss_kib(pid) if pid else None
    return figures, seconds, rss


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queues", type=int, default=10_000, help="queues to declare")
    p.add_argument("--messages", type=int, default=500, help="messages spread over the queues")
    p.add_argument("--repeat", type=int, default=5, help="timed GETs per endpoint (median shown)")
    p.add_argument("--settle", type=float, default=60, help="max seconds to wait for stats")
    rabbit = p.add_mutually_exclusive_group()
    rabbit.add_argument("--rabbitmq-port", type=int, help="AMQP port of a running RabbitMQ")
    rabbit.add_argument("--start-rabbitmq", action="store_true",
                        help="start a private RabbitMQ node with rabbitmq_prometheus")  # fmt: skip
    p.add_argument("--rabbitmq-metrics-port", type=int, default=15692,
                   help="prometheus port of the RabbitMQ given by --rabbitmq-port")  # fmt: skip
    p.add_argument("--warren-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for `python -m broker` (repeatable)")  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> int:
    results: list[tuple[str, str, list[Figures], float, int | None]] = []
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(started_warren(workdir, args.warren_arg))]
        if args.rabbitmq_port:
            targets.append(Target(Broker("RabbitMQ", args.rabbitmq_port),
                                  args.rabbitmq_metrics_port))  # fmt: skip
            try:
                targets[-1].broker.product = wait_for_amqp(args.rabbitmq_port, None, timeout=5)
            except BenchError as exc:
                print(f"note: RabbitMQ left out: {exc}")
                targets.pop()
        elif args.start_rabbitmq:
            targets.append(stack.enter_context(started_rabbitmq(workdir)))
        else:
            print("note: no RabbitMQ given (--rabbitmq-port P or --start-rabbitmq): Warren only")
        for target in targets:
            if target is None:
                continue
            try:
                figures, seconds, rss = measure(target, args)
                results.append((target.broker.name, target.broker.product, figures, seconds, rss))
            except (BenchError, OSError, pika.exceptions.AMQPError) as exc:
                print(f"  {target.broker.name}: failed: {exc!r}")
            finally:
                if target.broker.process is None:  # an existing node: leave it as it was
                    with contextlib.suppress(Exception):
                        delete_queues(target, args.queues)
    print(f"\n{args.queues:,} queues, {args.messages:,} messages, median of {args.repeat} GETs")
    header = (f"{'broker':<10} {'server':<18} {'endpoint':<20} {'median ms':>10} {'max ms':>8} "
              f"{'bytes':>12} {'samples':>8} {'RSS MiB':>8} {'AMQP max ms':>11} "
              f"{'CPU ms':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for name, product, figures, _, rss in results:
        for f in figures:
            rss_text = f"{rss / 1024:8.0f}" if rss else f"{'-':>8}"
            cpu_text = f"{f.cpu_ms:7.1f}" if f.cpu_ms is not None else f"{'-':>7}"
            print(f"{name:<10} {product:<18} {f.path:<20} {f.median_ms:10.1f} {f.max_ms:8.1f} "
                  f"{f.size:12,} {f.samples:8,} {rss_text} {f.amqp_max_ms:11.1f} "
                  f"{cpu_text}")  # fmt: skip
    return 0 if results and results[0][0] == "Warren" else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-metrics-", run, ())


if __name__ == "__main__":
    sys.exit(main())
