"""Persistent messages with publisher confirms, and recovery, on Warren next to RabbitMQ 3.10.

Part 1, throughput: 1 KB persistent messages published with confirms (at most 500 unconfirmed)
into a durable queue (`--queue-type quorum`: a quorum queue) while one consumer acks (prefetch
1000, ack every 100). Per broker and repetition, three runs, each with the consumer draining
the queue:

* throughput: `amqperf pub --persistent --confirm 500` sends N messages as fast as the window
  allows; reported are the publisher's and the consumer's msg/s and the broker's fsyncs per
  second (and messages per fsync);
* confirm latency under load: `confirmlat pub --window 500` (benchmarks/confirmlat.c) measures
  each message's publish -> basic.ack time while keeping the same window full;
* confirm latency at a fixed rate (default 2,000 msg/s, well below both brokers' capacity):
  `confirmlat pub --rate R`; also the consumer's end-to-end latency and fsyncs per second.

fsyncs are counted per broker process (every thread), with `perf stat` on the fsync and
fdatasync syscall tracepoints (no slowdown of the broker) or, without perf, `strace -f -c`
(which slows the broker down). Repetitions alternate between the brokers; tables show medians.

Part 2, recovery: a fresh broker gets M persistent messages (default 1,000,000 x 1 KB) into one
durable queue, with confirms; it is stopped with SIGTERM and restarted (--recovery-restarts
times); with --recovery-kill, as many times more it is killed with SIGKILL (a crash) and
restarted. Measured from the process start: until the AMQP port answers, and until queue.declare
passive reports all M messages; Warren's own "recovered ... in T s" figure; the broker's RSS then
(VmRSS of Warren's python process, of RabbitMQ's beam.smp). At the end the queue is drained by a
consumer, which must get all M. RabbitMQ's recovery always uses a private node started here
(restarting a shared node is not an option), so it needs rabbitmq-server installed.

Warren runs as `python -m broker` from the repository root with a temporary data directory.
RabbitMQ for part 1 is a node already listening (--rabbitmq-port) or a private one
(--start-rabbitmq); with neither, Warren is measured alone (in both parts).
Needs benchmarks/bin/amqperf and benchmarks/bin/confirmlat: run benchmarks/build_amqperf.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    AMQPERF,
    CONFIRMLAT,
    REPO_ROOT,
    BenchError,
    Broker,
    RabbitSpec,
    Results,
    WarrenSpec,
    amqperf,
    confirmlat,
    counting_fsyncs,
    existing_broker,
    fmt,
    fsync_tool,
    launch_rabbitmq,
    launch_warren,
    listening_pid,
    parse_amqperf,
    probe_amqp,
    queue_count,
    rabbit_spec,
    report_log,
    rss_kib,
    run_in_workdir,
    started_rabbitmq,
    started_warren,
    stop_process_group,
    tree_size,
)

QUEUE_PREFIX = "amqperf-persistent"
RECOVERED_RE = re.compile(r"recovered (\d+) messages in (\d+) durable queues in ([\d.]+) ?s")
WAL_RE = re.compile(
    r"write-ahead log: (\d+) fsyncs, (\d+) bytes written, (\d+) segments, (\d+) bytes on disk"
)


@dataclass
class Config:
    """What to run: sizes and counts of each kind of run, limits, the fsync counter."""

    count: int
    latency_count: int
    latency_rate: float
    rate_count: int
    warmup: int
    timeout: float
    workdir: Path
    fsync_tool: str | None
    size: int = 1024
    window: int = 500
    prefetch: int = 1000
    ack_every: int = 100
    queue_type: str = "classic"  # x-queue-type of part 1's queue (quorum: declared with pika)


@dataclass
class Run:
    """One publisher run with a consumer draining the queue."""

    publisher: dict[str, str]
    consumer: dict[str, str]
    secs: float  # from the publisher's start to the consumer's last message
    fsyncs: int | None

    @property
    def fsync_rate(self) -> float | None:
        return None if self.fsyncs is None else self.fsyncs / self.secs


@dataclass
class Sample:
    """The figures of one repetition against one broker."""

    publisher_rate: float
    consumer_rate: float
    fsync_rate: float | None
    msgs_per_fsync: float | None
    window_p50_ms: float
    window_p99_ms: float
    rate_p50_ms: float
    rate_p99_ms: float
    rate_e2e_p50_ms: float
    rate_e2e_p99_ms: float
    rate_fsync_rate: float | None
    fsyncs: int = 0  # counted in this repetition's runs (for the cross-check with Warren's log)


# --- part 1: throughput and confirm latency ----------------------------------------------------


def declare_queue(broker: Broker, queue_type: str = "classic") -> None:
    if queue_type != "classic":  # amqperf declares no arguments
        import pika  # (only for this: the rest of the script is standard library)

        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        try:
            connection.channel().queue_declare(broker.queue, durable=True,
                                               arguments={"x-queue-type": queue_type})
        finally:
            connection.close()
        return
    declare = amqperf(broker, "pub", "--declare", "--durable", "--count", "0")
    done = subprocess.run(declare, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise BenchError(f"queue.declare failed: {done.stderr.strip()}")


def delete_queues(broker: Broker) -> None:
    """Delete the queues this run declared (queue_seq 0 up to the current one)."""
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    try:
        channel = connection.channel()
        for seq in range(broker.queue_seq + 1):
            channel.queue_delete(f"{broker.queue_prefix}-{seq}" if seq else broker.queue_prefix)
    finally:
        connection.close()


def run_with_consumer(broker: Broker, cfg: Config, count: int, publisher: list[str]) -> Run:
    """Run `publisher` (which sends `count` messages) while an amqperf consumer drains them."""
    declare_queue(broker, cfg.queue_type)
    con_cmd = amqperf(
        broker, "con", "--count", str(count), "--prefetch", str(cfg.prefetch),
        "--ack-every", str(cfg.ack_every),
    )  # fmt: skip
    consumer = subprocess.Popen(con_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = listening_pid(broker.port) if cfg.fsync_tool else None
    try:
        time.sleep(0.3)  # let basic.consume land before publishing
        with counting_fsyncs(pid, cfg.fsync_tool, cfg.workdir) as fsyncs:
            started = time.monotonic()
            pub = subprocess.run(publisher, capture_output=True, text=True, timeout=cfg.timeout)
            if pub.returncode != 0:
                raise BenchError(f"publisher failed: {pub.stderr.strip()}")
            con_out, con_err = consumer.communicate(timeout=cfg.timeout)
            secs = time.monotonic() - started
        if consumer.returncode != 0:
            raise BenchError(f"consumer failed: {con_err.strip()}")
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"no result after {cfg.timeout:.0f}s (messages lost or stalled)") from exc
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    result = Run(parse_amqperf(pub.stdout), parse_amqperf(con_out), secs, fsyncs.calls)
    if int(result.publisher.get("nacks", 0)):
        raise BenchError(f"the broker nacked {result.publisher['nacks']} publishes")
    return result


def throughput_run(broker: Broker, cfg: Config, count: int) -> Run:
    publisher = amqperf(
        broker, "pub", "--count", str(count), "--size", str(cfg.size), "--persistent",
        "--confirm", str(cfg.window),
    )  # fmt: skip
    return run_with_consumer(broker, cfg, count, publisher)


def window_latency_run(broker: Broker, cfg: Config) -> Run:
    publisher = confirmlat(
        broker, "pub", "--count", str(cfg.latency_count), "--size", str(cfg.size),
        "--window", str(cfg.window),
    )  # fmt: skip
    return run_with_consumer(broker, cfg, cfg.latency_count, publisher)


def rate_latency_run(broker: Broker, cfg: Config) -> Run:
    publisher = confirmlat(
        broker, "pub", "--count", str(cfg.rate_count), "--size", str(cfg.size),
        "--window", "0", "--rate", str(cfg.latency_rate),
    )  # fmt: skip
    return run_with_consumer(broker, cfg, cfg.rate_count, publisher)


def measure(broker: Broker, cfg: Config) -> Sample:
    """A throughput run, a confirm-latency run with the window full, one at a fixed rate."""
    tput = throughput_run(broker, cfg, cfg.count)
    window = window_latency_run(broker, cfg)
    rate = rate_latency_run(broker, cfg)
    tput_fsyncs = tput.fsyncs
    return Sample(
        publisher_rate=float(tput.publisher["rate"]),
        consumer_rate=float(tput.consumer["rate"]),
        fsync_rate=tput.fsync_rate,
        msgs_per_fsync=cfg.count / tput_fsyncs if tput_fsyncs else None,
        window_p50_ms=float(window.publisher["p50_ms"]),
        window_p99_ms=float(window.publisher["p99_ms"]),
        rate_p50_ms=float(rate.publisher["p50_ms"]),
        rate_p99_ms=float(rate.publisher["p99_ms"]),
        rate_e2e_p50_ms=float(rate.consumer["p50_ms"]),
        rate_e2e_p99_ms=float(rate.consumer["p99_ms"]),
        rate_fsync_rate=rate.fsync_rate,
        fsyncs=sum(r.fsyncs or 0 for r in (tput, window, rate)),
    )


def measure_safely(broker: Broker, cfg: Config, results: Results) -> None:
    try:
        broker.check_alive()
        sample = measure(broker, cfg)
        broker.check_alive()
    except (BenchError, subprocess.SubprocessError) as exc:
        broker.queue_seq += 1
        results.errors.append(str(exc))
        print(f"  {broker.name}: FAILED: {exc}", flush=True)
        return
    results.samples.append(sample)
    print(
        f"  {broker.name}: publisher {sample.publisher_rate:,.0f} msg/s, consumer "
        f"{sample.consumer_rate:,.0f} msg/s, {fmt(sample.fsync_rate, ',.0f')} fsync/s; confirm "
        f"p50/p99 {sample.window_p50_ms:.1f}/{sample.window_p99_ms:.1f} ms (window), "
        f"{sample.rate_p50_ms:.2f}/{sample.rate_p99_ms:.2f} ms (at {cfg.latency_rate:,.0f} "
        "msg/s)",
        flush=True,
    )


def warm_up(broker: Broker, cfg: Config) -> None:
    if cfg.warmup <= 0:
        return
    try:
        throughput_run(broker, cfg, cfg.warmup)
    except (BenchError, subprocess.SubprocessError) as exc:
        broker.queue_seq += 1
        print(f"  {broker.name}: warm-up failed: {exc}", flush=True)


def print_throughput_tables(
    brokers: list[Broker], results: dict[str, Results], cfg: Config
) -> None:
    tool = cfg.fsync_tool or "no tool: not counted"
    print(
        f"\n{cfg.count:,} x {cfg.size}-byte persistent messages, confirms (window {cfg.window}), "
        f"durable queue, 1 consumer (prefetch {cfg.prefetch}, ack every {cfg.ack_every}); "
        f"fsyncs by {tool}; confirm latency with the window full ({cfg.latency_count:,} "
        "messages). Medians."
    )
    header = (
        f"{'broker':<10} {'server':<18} {'runs':>5} {'pub msg/s':>10} {'con msg/s':>10} "
        f"{'fsync/s':>8} {'msg/fsync':>9} {'conf p50':>9} {'conf p99':>9}"
    )
    print(header)
    print("-" * len(header))
    for broker in brokers:
        r = results[broker.name]
        runs = f"{len(r.samples)}/{len(r.samples) + len(r.errors)}"
        print(
            f"{broker.name:<10} {broker.product:<18.18} {runs:>5} "
            f"{fmt(r.median('publisher_rate'), ',.0f'):>10} "
            f"{fmt(r.median('consumer_rate'), ',.0f'):>10} "
            f"{fmt(r.median('fsync_rate'), ',.0f'):>8} "
            f"{fmt(r.median('msgs_per_fsync'), ',.0f'):>9} "
            f"{fmt(r.median('window_p50_ms'), '.1f'):>6} ms "
            f"{fmt(r.median('window_p99_ms'), '.1f'):>6} ms"
        )
    print(
        f"\nAt a fixed {cfg.latency_rate:,.0f} msg/s ({cfg.rate_count:,} messages): publish -> "
        "confirm and publish -> consumer (end to end) latency. Medians."
    )
    header = (
        f"{'broker':<10} {'conf p50':>9} {'conf p99':>9} {'e2e p50':>9} {'e2e p99':>9} "
        f"{'fsync/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for broker in brokers:
        r = results[broker.name]
        print(
            f"{broker.name:<10} {fmt(r.median('rate_p50_ms'), '.2f'):>6} ms "
            f"{fmt(r.median('rate_p99_ms'), '.2f'):>6} ms "
            f"{fmt(r.median('rate_e2e_p50_ms'), '.2f'):>6} ms "
            f"{fmt(r.median('rate_e2e_p99_ms'), '.2f'):>6} ms "
            f"{fmt(r.median('rate_fsync_rate'), ',.0f'):>8}"
        )
    warren, rabbit = results.get("Warren"), results.get("RabbitMQ")
    if warren and rabbit:
        w, r = warren.median("consumer_rate"), rabbit.median("consumer_rate")
        if w and r:
            print(f"\nWarren/RabbitMQ consumer throughput: {w / r:.2f}x")


def wal_figures(log_path: Path | None) -> tuple[int, ...] | None:
    """(fsyncs, bytes written, segments, bytes on disk) from Warren's shutdown log line."""
    if log_path is None or not log_path.exists():
        return None
    matches = WAL_RE.findall(log_path.read_text(errors="replace"))
    return tuple(int(x) for x in matches[-1]) if matches else None


def cross_check_warren(broker: Broker | None, results: Results, tool: str | None) -> None:
    """Compare the fsyncs we counted with Warren's own count in its shutdown line."""
    if broker is None or broker.log_path is None:
        return
    wal = wal_figures(broker.log_path)
    if wal is None:
        print("\nnote: Warren's log has no 'write-ahead log: ...' line (did it stop cleanly?)")
        return
    counted = sum(s.fsyncs for s in results.samples)
    print(
        f"\nWarren's own count: {wal[0]:,} WAL fsyncs over its lifetime (warm-up and queue "
        f"declares included); {tool or 'no tool'} counted {counted:,} fsync/fdatasync calls "
        f"in the measured runs. Log size at shutdown: {wal[2]} segments, {wal[3]:,} bytes."
    )


def run_throughput(args: argparse.Namespace, cfg: Config) -> bool:
    """Part 1. Returns True if every run of every broker succeeded."""
    workdir = cfg.workdir / "throughput"
    workdir.mkdir()
    with contextlib.ExitStack() as stack:
        warren = stack.enter_context(started_warren(workdir, args.warren_arg))
        if args.rabbitmq_port:
            rabbit = existing_broker("RabbitMQ", args.rabbitmq_port)
        elif args.start_rabbitmq:
            rabbit = stack.enter_context(started_rabbitmq(workdir))
        else:
            rabbit = None
        brokers = [b for b in (warren, rabbit) if b is not None]
        if not brokers:
            return False
        results = {b.name: Results() for b in brokers}
        for b in brokers:
            b.queue_prefix = QUEUE_PREFIX if cfg.queue_type == "classic" else (
                f"{QUEUE_PREFIX}-{cfg.queue_type}")
            print(f"{b.name}: {b.product} on port {b.port}", flush=True)
            warm_up(b, cfg)
        for i in range(args.repeat):
            print(f"repetition {i + 1}/{args.repeat}", flush=True)
            for b in brokers:
                measure_safely(b, cfg, results[b.name])
        if cfg.queue_type != "classic" and rabbit is not None and args.rabbitmq_port:
            delete_queues(rabbit)  # a shared node: leave no quorum queue behind
    # The brokers we started are stopped now, so their logs are complete.
    print_throughput_tables(brokers, results, cfg)
    cross_check_warren(warren, results.get("Warren", Results()), cfg.fsync_tool)
    for b in brokers:
        report_log(b)
    return warren is not None and all(r.samples and not r.errors for r in results.values())


# --- part 2: recovery ---------------------------------------------------------------------------


@dataclass
class Node:
    """A broker we can stop and start again on the same data."""

    name: str
    launch: Callable[[], Broker]
    data_path: Path
    start_timeout: float
    stop_grace: float


@dataclass
class Restart:
    """One timed start on a full data directory."""

    port_secs: float  # process start -> the AMQP port answers
    full_secs: float  # process start -> queue.declare passive reports every message
    reported_secs: float | None  # Warren's "recovered ... in T s"
    rss_kib: int | None


@dataclass
class Recovery:
    """Part 2's figures for one broker."""

    name: str
    messages: int
    size: int
    product: str = ""
    publish_rate: float | None = None
    rss_empty_kib: int | None = None
    disk_bytes: int | None = None
    stop_secs: float | None = None
    restarts: list[Restart] = field(default_factory=list)  # after SIGTERM
    crash_restarts: list[Restart] = field(default_factory=list)  # after SIGKILL
    drain_rate: float | None = None
    error: str | None = None


def start(node: Node) -> Broker:
    """Start the broker and wait until its AMQP port answers."""
    broker = node.launch()
    with stopped_on_error(node, broker):
        deadline = time.monotonic() + node.start_timeout
        while time.monotonic() < deadline:
            broker.check_alive()
            product = probe_amqp(broker.port)
            if product:
                broker.product = product
                broker.queue_prefix = QUEUE_PREFIX
                return broker
            time.sleep(0.1)
        raise BenchError(f"{node.name} did not answer within {node.start_timeout:.0f}s")


@contextlib.contextmanager
def stopped_on_error(node: Node, broker: Broker) -> Iterator[None]:
    """Stop a broker we just launched if the block fails, so that no process is left behind."""
    try:
        yield
    except BaseException:
        stop(node, broker)
        raise


def stop(node: Node, broker: Broker) -> float:
    """SIGTERM the broker and wait; return the seconds it took to exit."""
    assert broker.process is not None
    started = time.monotonic()
    stop_process_group(broker.process, grace=node.stop_grace)
    return time.monotonic() - started


def kill(broker: Broker) -> None:
    """SIGKILL the broker's process group (a crash) and wait for it."""
    assert broker.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(broker.process.pid, signal.SIGKILL)
    broker.process.wait()


def fill(broker: Broker, count: int, size: int, timeout: float) -> float:
    """Publish `count` persistent messages with confirms into the durable queue; return msg/s."""
    declare_queue(broker)
    publisher = amqperf(
        broker, "pub", "--count", str(count), "--size", str(size), "--persistent",
        "--confirm", "500",
    )  # fmt: skip
    done = subprocess.run(publisher, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"publisher failed: {done.stderr.strip()}")
    stored = queue_count(broker)
    if stored != count:
        raise BenchError(f"published {count:,} messages with confirms, the queue holds {stored}")
    return float(parse_amqperf(done.stdout)["rate"])


def timed_start(node: Node, expected: int, timeout: float) -> tuple[Broker, Restart]:
    """Start the broker and time it until the port answers and the queue holds `expected`."""
    started = time.monotonic()
    broker = node.launch()
    broker.queue_prefix = QUEUE_PREFIX
    with stopped_on_error(node, broker):
        port_secs = wait_for_port(node, broker, started, timeout)
        full_secs = wait_for_count(node, broker, expected, started, timeout)
        pid = listening_pid(broker.port)
        rss = rss_kib(pid) if pid else None
    return broker, Restart(port_secs, full_secs, reported_recovery(broker), rss)


def wait_for_port(node: Node, broker: Broker, started: float, timeout: float) -> float:
    """Poll the AMQP port every 20 ms; return the seconds from `started` until it answered."""
    while time.monotonic() - started < timeout:
        broker.check_alive()
        product = probe_amqp(broker.port)
        if product is not None:
            broker.product = product
            return time.monotonic() - started
        time.sleep(0.02)
    raise BenchError(f"{node.name} did not answer within {timeout:.0f}s")


def wait_for_count(
    node: Node, broker: Broker, expected: int, started: float, timeout: float
) -> float:
    """Poll queue.declare passive until it reports `expected` messages; return the seconds from
    `started`. Fails if the count stays short for 30 s (messages lost) or past `timeout`."""
    last_count, last_change = None, time.monotonic()
    while True:
        broker.check_alive()
        count = queue_count(broker)
        now = time.monotonic()
        if count == expected:
            return now - started
        if count != last_count:
            last_count, last_change = count, now
        elif count is not None and now - last_change > 30:
            raise BenchError(f"{node.name}: queue stuck at {count:,} of {expected:,} messages")
        if now - started > timeout:
            raise BenchError(
                f"{node.name}: queue holds {last_count} of {expected:,} messages "
                f"{timeout:.0f}s after start"
            )
        time.sleep(0.02)


def reported_recovery(broker: Broker) -> float | None:
    """Warren's own recovery time, from its "recovered N messages ... in T s" log line."""
    if broker.name != "Warren" or broker.log_path is None:
        return None
    match = RECOVERED_RE.search(broker.log_path.read_text(errors="replace"))
    return float(match.group(3)) if match else None


def drain(broker: Broker, count: int, timeout: float) -> float:
    """Consume and ack every message; check the queue is empty after; return msg/s."""
    consumer = amqperf(broker, "con", "--count", str(count), "--prefetch", "1000",
                       "--ack-every", "100")  # fmt: skip
    done = subprocess.run(consumer, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchError(f"consumer failed: {done.stderr.strip()}")
    left = queue_count(broker)
    if left != 0:
        raise BenchError(f"drained {count:,} messages but the queue still reports {left}")
    return float(parse_amqperf(done.stdout)["rate"])


def measure_recovery(node: Node, rec: Recovery, restarts: int, timeout: float,
                     crashes: bool) -> None:
    """Fill a fresh broker, then stop and time `restarts` starts (and as many after a kill,
    with `crashes`); drain at the end."""
    broker = start(node)
    try:
        rec.product = broker.product
        pid = listening_pid(broker.port)
        rec.rss_empty_kib = rss_kib(pid) if pid else None
        print(f"  {node.name}: publishing {rec.messages:,} x {rec.size} B ...", flush=True)
        rec.publish_rate = fill(broker, rec.messages, rec.size, timeout)
        for crash in [False, True] if crashes else [False]:
            for i in range(restarts):
                if crash:
                    kill(broker)
                else:
                    stop_secs = stop(node, broker)
                    if i == 0:
                        rec.stop_secs = stop_secs
                        rec.disk_bytes = tree_size(node.data_path)
                broker, restart = timed_start(node, rec.messages, timeout)
                (rec.crash_restarts if crash else rec.restarts).append(restart)
                print(
                    f"  {node.name}: restart {i + 1}/{restarts} after "
                    f"{'SIGKILL' if crash else 'SIGTERM'}: port after {restart.port_secs:.2f}s,"
                    f" all {rec.messages:,} messages after {restart.full_secs:.2f}s, RSS "
                    f"{fmt(kib_to_mib(restart.rss_kib), ',.0f')} MiB",
                    flush=True,
                )
        rec.drain_rate = drain(broker, rec.messages, timeout)
    finally:
        stop(node, broker)


def kib_to_mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def recovery_nodes(args: argparse.Namespace, workdir: Path) -> list[Node]:
    spec = WarrenSpec(workdir / "warren-data", workdir, list(args.warren_arg))
    nodes = [Node("Warren", lambda: launch_warren(spec), spec.data_dir, 60, 120)]
    if args.rabbitmq_port or args.start_rabbitmq:
        rspec: RabbitSpec | None = rabbit_spec(workdir, "rabbitmq-recovery")
        if rspec is not None:
            launch = lambda: launch_rabbitmq(rspec)  # noqa: E731
            nodes.append(Node("RabbitMQ", launch, rspec.base / "mnesia", 300, 300))
    return nodes


def print_recovery_table(recoveries: list[Recovery], restarts: int) -> None:
    first = recoveries[0]
    print(
        f"\nRecovery of {first.messages:,} x {first.size}-byte persistent messages in one "
        f"durable queue after SIGTERM (and SIGKILL: 'kill -9' rows); medians of {restarts} "
        f"restarts; times from process start."
    )
    header = (
        f"{'broker':<17} {'disk MiB':>8} {'fill msg/s':>10} {'stop s':>7} {'port s':>7} "
        f"{'all s':>7} {'own s':>6} {'RSS MiB':>8} {'empty MiB':>9} {'B/msg':>6} "
        f"{'drain msg/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for rec in recoveries:
        for label, timed in ((rec.name, rec.restarts), (f"{rec.name} kill -9", rec.crash_restarts)):
            if timed or label == rec.name:
                print_recovery_row(rec, label, Results(timed))
        if rec.error:
            print(f"  {rec.name}: FAILED: {rec.error}")
    print(
        "disk: data directory after the first stop; fill: publish rate with confirms, no "
        "consumer; stop: SIGTERM to exit; port: until AMQP answers; all: until queue.declare "
        "passive counts every message; own: Warren's logged recovery time; B/msg: (RSS - RSS of "
        "the empty broker) / messages; drain: one consumer emptying the queue after recovery."
    )


def print_recovery_row(rec: Recovery, label: str, restarts: Results) -> None:
    rss = restarts.median("rss_kib")
    per_msg = None
    if rss is not None and rec.rss_empty_kib is not None:
        per_msg = (rss - rec.rss_empty_kib) * 1024 / rec.messages
    disk = None if rec.disk_bytes is None else rec.disk_bytes / 2**20
    print(
        f"{label:<17} {fmt(disk, ',.0f'):>8} {fmt(rec.publish_rate, ',.0f'):>10} "
        f"{fmt(rec.stop_secs, '.2f'):>7} {fmt(restarts.median('port_secs'), '.2f'):>7} "
        f"{fmt(restarts.median('full_secs'), '.2f'):>7} "
        f"{fmt(restarts.median('reported_secs'), '.2f'):>6} "
        f"{fmt(kib_to_mib(rss), ',.0f'):>8} {fmt(kib_to_mib(rec.rss_empty_kib), ',.0f'):>9} "
        f"{fmt(per_msg, ',.0f'):>6} {fmt(rec.drain_rate, ',.0f'):>11}"
    )


def run_recovery(args: argparse.Namespace, workdir: Path) -> bool:
    """Part 2. Returns True if every broker recovered every message."""
    workdir = workdir / "recovery"
    workdir.mkdir()
    nodes = recovery_nodes(args, workdir)
    recoveries = []
    for node in nodes:
        rec = Recovery(node.name, args.recovery_count, args.recovery_size)
        print(f"recovery: {node.name}", flush=True)
        try:
            measure_recovery(node, rec, args.recovery_restarts, args.recovery_timeout,
                             args.recovery_kill)
        except (BenchError, subprocess.SubprocessError) as exc:
            rec.error = str(exc)
            print(f"  {node.name}: FAILED: {exc}", flush=True)
        recoveries.append(rec)
    print_recovery_table(recoveries, args.recovery_restarts)
    for log in sorted(workdir.glob("warren*.log"), key=lambda path: path.stat().st_mtime):
        report_log(Broker("Warren", 0), log_path=log)
    wal = wal_figures(workdir / "warren.log")
    if wal:
        print(
            f"Warren's log after filling: {wal[0]:,} fsyncs, {wal[1]:,} bytes written, "
            f"{wal[2]} segments, {wal[3]:,} bytes on disk"
        )
    return all(rec.error is None for rec in recoveries)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200_000, help="messages per throughput run")
    p.add_argument("--size", type=int, default=1024, help="message size in bytes (part 1)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per broker (median shown)")
    p.add_argument("--queue-type", default="classic", choices=("classic", "quorum"),
                   help="x-queue-type of the throughput part's queue (default classic)")
    p.add_argument(
        "--latency-count",
        type=int,
        default=50_000,
        help="messages of the confirm-latency run with the window full",
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=2000,
        help="msg/s of the fixed-rate confirm-latency run",
    )
    p.add_argument(
        "--rate-count",
        type=int,
        default=20_000,
        help="messages of the fixed-rate confirm-latency run",
    )
    p.add_argument("--warmup", type=int, default=20_000, help="messages of a first, unmeasured run")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a run is given up")
    p.add_argument(
        "--fsync-tool",
        choices=["auto", "perf", "strace", "none"],
        default="auto",
        help="how to count fsyncs (auto: perf if it works, else strace)",
    )
    p.add_argument(
        "--recovery-count",
        type=int,
        default=1_000_000,
        help="messages on disk for the recovery test",
    )
    p.add_argument(
        "--recovery-size",
        type=int,
        default=1024,
        help="message size in bytes for the recovery test",
    )
    p.add_argument("--recovery-restarts", type=int, default=3, help="timed restarts (median)")
    p.add_argument(
        "--recovery-kill",
        action="store_true",
        help="also time as many restarts after SIGKILL (a crash)",
    )
    p.add_argument(
        "--recovery-timeout",
        type=float,
        default=1800,
        help="seconds allowed to fill, to restart and to drain",
    )
    part = p.add_mutually_exclusive_group()
    part.add_argument("--skip-throughput", action="store_true", help="run the recovery part only")
    part.add_argument("--skip-recovery", action="store_true", help="run the throughput part only")
    rabbit = p.add_mutually_exclusive_group()
    rabbit.add_argument("--rabbitmq-port", type=int, help="use the RabbitMQ listening on this port")
    rabbit.add_argument(
        "--start-rabbitmq", action="store_true", help="start a private RabbitMQ node on free ports"
    )
    p.add_argument(
        "--warren-arg", action="append", default=[], metavar="ARG",
        help="extra argument for `python -m broker` (repeatable): --warren-arg=--log-level=info",
    )  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def print_load(when: str) -> None:
    """The machine's load: other work on it skews the figures (see the README)."""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"{when}: {os.cpu_count()} CPUs, load average {load}", flush=True)


def warren_revision() -> str:
    """The commit Warren runs from, with "+changes" if its sources differ from it."""
    git = ["git", "-C", str(REPO_ROOT)]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--", "broker", "storage", "protocol"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return head + ("+changes" if changed.strip() else "") if head else "unknown"
    return "unknown"


def run(args: argparse.Namespace, workdir: Path) -> int:
    print_load("start")
    print(f"Warren sources: commit {warren_revision()}")
    if not (args.rabbitmq_port or args.start_rabbitmq):
        print("note: no RabbitMQ given (--rabbitmq-port P or --start-rabbitmq): Warren only")
    tool = None if args.fsync_tool == "none" else fsync_tool(args.fsync_tool)
    if tool is None and args.fsync_tool != "none":
        print("note: neither perf nor strace works here: fsyncs are not counted")
    cfg = Config(
        args.count, args.latency_count, args.latency_rate, args.rate_count, args.warmup,
        args.timeout, workdir, tool, size=args.size, queue_type=args.queue_type,
    )  # fmt: skip
    ok = True
    if not args.skip_throughput:
        ok = run_throughput(args, cfg) and ok
    if not args.skip_recovery:
        print_load("\nbefore the recovery part")
        ok = run_recovery(args, workdir) and ok
    print_load("\nend")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-persistent-", run, (AMQPERF, CONFIRMLAT))


if __name__ == "__main__":
    sys.exit(main())
