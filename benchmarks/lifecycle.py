"""Message lifecycle costs of Warren next to RabbitMQ 3.10: dead-lettering and TTL expiry.

Two measurements per broker and repetition, both with 16-byte transient messages published by
the C client `amqperf pub` (so the client is not the bottleneck):

* dead-letter throughput: a queue with x-message-ttl 0, x-dead-letter-exchange "" and
  x-dead-letter-routing-key naming a second queue, and no consumer, so every message published
  to it is dead-lettered at once. N messages (default 100,000) are published as fast as possible;
  timed from the publisher's start until queue.declare passive on the second queue reports all
  N: dead-letters per second, and the broker's CPU seconds over that time.
* TTL expiry: N messages published with confirms (window 1000) into a queue with x-message-ttl
  1000 and no consumer. Timed from the end of publishing (every message confirmed) until
  queue.declare passive reports 0 messages; "lag" is that time minus the TTL (the last message
  cannot expire earlier). The broker's CPU seconds over the same interval.

CPU time is utime + stime of the broker process (/proc/PID/stat, all threads): Warren's python
process, RabbitMQ's beam.smp, found as the process listening on the AMQP port. Queue counts are
polled every 20 ms over one pika connection (queue.declare passive).

Warren is started here (`python -m broker` from the repository root, free ports, temporary data
directory). RabbitMQ is a node already listening (--rabbitmq-port) or a private one started here
(--start-rabbitmq); with neither, Warren is measured alone. Repetitions alternate between the
brokers; tables show medians. Needs pika (in the venv) and benchmarks/bin/amqperf (run
benchmarks/build_amqperf.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
from common import (
    AMQPERF,
    BenchError,
    Broker,
    Results,
    cpu_seconds,
    existing_broker,
    fmt,
    listening_pid,
    parse_amqperf,
    report_log,
    run_in_workdir,
    started_rabbitmq,
    started_warren,
)
from pika.adapters.blocking_connection import BlockingChannel

DL_SOURCE = "lifecycle-dl-source"
DL_TARGET = "lifecycle-dl-target"
TTL_QUEUE = "lifecycle-ttl"
POLL_SECS = 0.02
STALL_SECS = 30.0  # a count unchanged this long means messages were lost or the broker stalled


@dataclass
class Config:
    """What to run: message count and size, the TTL of the expiry test, limits."""

    count: int
    ttl_ms: int
    warmup: int
    timeout: float
    size: int = 16
    confirm_window: int = 1000


@dataclass
class DeadLetterSample:
    """One dead-letter run: N messages through a TTL-0 queue into the dead-letter queue."""

    secs: float  # publisher start -> dead-letter queue holds N
    publisher_rate: float
    cpu_secs: float | None

    def rate(self, count: int) -> float:
        return count / self.secs


@dataclass
class ExpirySample:
    """One expiry run: N messages with a TTL, no consumer, until the queue is empty."""

    publish_secs: float
    left_after_publish: int  # messages still queued when the last one was confirmed
    expiry_secs: float  # end of publishing -> queue empty
    lag_secs: float  # expiry_secs - TTL
    cpu_secs: float | None

    @property
    def cpu_us_per_msg(self) -> float | None:
        """CPU per message expired in the measured phase (those left after publishing)."""
        if self.cpu_secs is None or not self.left_after_publish:
            return None
        return self.cpu_secs / self.left_after_publish * 1e6


# --- AMQP helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def amqp_channel(broker: Broker) -> Iterator[BlockingChannel]:
    """A pika channel on the broker (guest/guest, vhost /), closed at the end."""
    params = pika.ConnectionParameters("127.0.0.1", broker.port, heartbeat=0)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def recreate_queue(channel: BlockingChannel, name: str, arguments: dict | None = None) -> None:
    """Delete the queue if a previous run left it, then declare it (transient) afresh."""
    channel.queue_delete(name)
    channel.queue_declare(name, arguments=arguments or {})


def message_count(channel: BlockingChannel, name: str) -> int:
    return channel.queue_declare(name, passive=True).method.message_count


def wait_for_count(
    channel: BlockingChannel, name: str, done: Callable[[int], bool], timeout: float
) -> float:
    """Poll the queue's count until `done(count)`; return time.monotonic() at that moment.

    Fails if the count stays unchanged for STALL_SECS or `timeout` seconds pass."""
    started = time.monotonic()
    last_count, last_change = -1, started
    while True:
        count = message_count(channel, name)
        now = time.monotonic()
        if done(count):
            return now
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > STALL_SECS:
            raise BenchError(f"{name}: count stuck at {count:,} for {STALL_SECS:.0f}s")
        if now - started > timeout:
            raise BenchError(f"{name}: count still {count:,} after {timeout:.0f}s")
        time.sleep(POLL_SECS)


def publish(broker: Broker, queue: str, cfg: Config, count: int, *extra: str) -> dict[str, str]:
    """`amqperf pub` of `count` transient messages to the default exchange, key `queue`."""
    cmd = [
        str(AMQPERF), "pub", "--port", str(broker.port), "--queue", queue,
        "--count", str(count), "--size", str(cfg.size), *extra,
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"publisher gave no result within {cfg.timeout:.0f}s") from exc
    if done.returncode != 0:
        raise BenchError(f"publisher failed: {done.stderr.strip()}")
    return parse_amqperf(done.stdout)


# --- CPU time -----------------------------------------------------------------------------------


def cpu_delta(pid: int | None, before: float | None) -> float | None:
    after = cpu_seconds(pid)
    return None if before is None or after is None else after - before


def idle_cpu_share(broker: Broker, secs: float = 3.0) -> float | None:
    """The broker's CPU seconds per second while nothing is sent to it (its timers, GC...)."""
    pid = listening_pid(broker.port)
    before = cpu_seconds(pid)
    time.sleep(secs)
    used = cpu_delta(pid, before)
    return None if used is None else used / secs


# --- the two measurements -----------------------------------------------------------------------


def dead_letter_run(broker: Broker, cfg: Config, count: int) -> DeadLetterSample:
    """Publish `count` messages into the TTL-0 queue; time until all are dead-lettered."""
    pid = listening_pid(broker.port)
    with amqp_channel(broker) as channel:
        recreate_queue(channel, DL_TARGET)
        recreate_queue(channel, DL_SOURCE, {
            "x-message-ttl": 0,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": DL_TARGET,
        })  # fmt: skip
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        pub = publish(broker, DL_SOURCE, cfg, count)
        finished = wait_for_count(channel, DL_TARGET, lambda n: n >= count, cfg.timeout)
        cpu = cpu_delta(pid, cpu_before)
        landed = message_count(channel, DL_TARGET)
        if landed != count:
            raise BenchError(f"published {count:,}, the dead-letter queue holds {landed:,}")
        channel.queue_delete(DL_SOURCE)
        channel.queue_delete(DL_TARGET)
    return DeadLetterSample(finished - started, float(pub["rate"]), cpu)


def expiry_run(broker: Broker, cfg: Config, count: int) -> ExpirySample:
    """Publish `count` messages with confirms into the TTL queue; time until it is empty."""
    pid = listening_pid(broker.port)
    with amqp_channel(broker) as channel:
        recreate_queue(channel, TTL_QUEUE, {"x-message-ttl": cfg.ttl_ms})
        started = time.monotonic()
        publish(broker, TTL_QUEUE, cfg, count, "--confirm", str(cfg.confirm_window))
        published = time.monotonic()
        cpu_before = cpu_seconds(pid)
        left = message_count(channel, TTL_QUEUE)
        emptied = wait_for_count(channel, TTL_QUEUE, lambda n: n == 0, cfg.timeout)
        cpu = cpu_delta(pid, cpu_before)
        channel.queue_delete(TTL_QUEUE)
    expiry = emptied - published
    return ExpirySample(published - started, left, expiry, expiry - cfg.ttl_ms / 1000, cpu)


def measure_safely(broker: Broker, what: str, run: Callable[[], object], results: Results) -> None:
    """Run one measurement; keep its sample or, if it fails, its error."""
    try:
        broker.check_alive()
        sample = run()
        broker.check_alive()
    except (BenchError, subprocess.SubprocessError, pika.exceptions.AMQPError) as exc:
        message = f"{what}: {exc!r}" if not str(exc) else f"{what}: {exc}"
        results.errors.append(message)
        print(f"  {broker.name}: FAILED {message}", flush=True)
        return
    results.samples.append(sample)
    print(f"  {broker.name}: {what}: {describe(sample)}", flush=True)


def describe(sample: object) -> str:
    if isinstance(sample, DeadLetterSample):
        return (
            f"{sample.secs:.2f}s until all dead-lettered (publisher "
            f"{sample.publisher_rate:,.0f} msg/s), CPU {fmt(sample.cpu_secs, '.2f')}s"
        )
    assert isinstance(sample, ExpirySample)
    return (
        f"published in {sample.publish_secs:.2f}s ({sample.left_after_publish:,} left then), "
        f"empty {sample.expiry_secs:.2f}s later, CPU {fmt(sample.cpu_secs, '.2f')}s"
    )


# --- report -------------------------------------------------------------------------------------


def runs(results: Results) -> str:
    return f"{len(results.samples)}/{len(results.samples) + len(results.errors)}"


def print_dead_letter_table(
    brokers: list[Broker], results: dict[str, Results], cfg: Config
) -> None:
    print(
        f"\nDead-lettering: {cfg.count:,} x {cfg.size}-byte transient messages published into a "
        "queue with x-message-ttl 0 and a dead-letter queue, no consumer; timed from the "
        "publisher's start until the dead-letter queue holds all. Medians."
    )
    header = (
        f"{'broker':<10} {'server':<18} {'runs':>5} {'dl msg/s':>10} {'secs':>6} "
        f"{'pub msg/s':>10} {'CPU s':>6} {'CPU us/msg':>10}"
    )
    print(header)
    print("-" * len(header))
    for broker in brokers:
        r = results[broker.name]
        secs, cpu = r.median("secs"), r.median("cpu_secs")
        rate = None if secs is None else cfg.count / secs
        per_msg = None if cpu is None else cpu / cfg.count * 1e6
        print(
            f"{broker.name:<10} {broker.product:<18.18} {runs(r):>5} {fmt(rate, ',.0f'):>10} "
            f"{fmt(secs, '.2f'):>6} {fmt(r.median('publisher_rate'), ',.0f'):>10} "
            f"{fmt(cpu, '.2f'):>6} {fmt(per_msg, '.1f'):>10}"
        )
    ratio(results, "secs", "dead-letter throughput", invert=True)


def print_expiry_table(brokers: list[Broker], results: dict[str, Results], cfg: Config) -> None:
    print(
        f"\nTTL expiry: {cfg.count:,} x {cfg.size}-byte transient messages published with "
        f"confirms (window {cfg.confirm_window}) into a queue with x-message-ttl {cfg.ttl_ms}, no "
        "consumer; timed from the last confirm until the queue is empty; lag = that - TTL; "
        "left = messages queued at the last confirm (CPU us/msg is per message left). Medians."
    )
    header = (
        f"{'broker':<10} {'server':<18} {'runs':>5} {'pub s':>6} {'left':>8} {'empty s':>8} "
        f"{'lag s':>6} {'CPU s':>6} {'CPU us/msg':>10}"
    )
    print(header)
    print("-" * len(header))
    for broker in brokers:
        r = results[broker.name]
        cpu, per_msg = r.median("cpu_secs"), r.median("cpu_us_per_msg")
        print(
            f"{broker.name:<10} {broker.product:<18.18} {runs(r):>5} "
            f"{fmt(r.median('publish_secs'), '.2f'):>6} "
            f"{fmt(r.median('left_after_publish'), ',.0f'):>8} "
            f"{fmt(r.median('expiry_secs'), '.2f'):>8} {fmt(r.median('lag_secs'), '.2f'):>6} "
            f"{fmt(cpu, '.2f'):>6} {fmt(per_msg, '.1f'):>10}"
        )
    ratio(results, "cpu_us_per_msg", "expiry CPU time per message", invert=False)


def print_idle(idle: dict[str, float | None]) -> None:
    shares = ", ".join(f"{name} {fmt(share, '.3f')}" for name, share in idle.items())
    print(f"Idle CPU (s per s, over 3 s after the warm-up, for scale): {shares}")


def ratio(results: dict[str, Results], attribute: str, label: str, invert: bool) -> None:
    warren, rabbit = results.get("Warren"), results.get("RabbitMQ")
    if not (warren and rabbit):
        return
    w, r = warren.median(attribute), rabbit.median(attribute)
    if w and r:
        print(f"Warren/RabbitMQ {label}: {(r / w if invert else w / r):.2f}x")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="messages per run")
    p.add_argument("--ttl", type=int, default=1000, help="x-message-ttl (ms) of the expiry run")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per broker (median shown)")
    p.add_argument("--warmup", type=int, default=10_000, help="messages of unmeasured first runs")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a run is given up")
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


def warm_up(broker: Broker, cfg: Config) -> None:
    if cfg.warmup <= 0:
        return
    try:
        dead_letter_run(broker, cfg, cfg.warmup)
        expiry_run(broker, cfg, cfg.warmup)
    except (BenchError, subprocess.SubprocessError, pika.exceptions.AMQPError) as exc:
        print(f"  {broker.name}: warm-up failed: {exc!r}", flush=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Start or find the brokers, measure them alternately, then report. Returns the exit code."""
    cfg = Config(args.count, args.ttl, args.warmup, args.timeout)
    with contextlib.ExitStack() as stack:
        warren = stack.enter_context(started_warren(workdir, args.warren_arg))
        if args.rabbitmq_port:
            rabbit = existing_broker("RabbitMQ", args.rabbitmq_port)
        elif args.start_rabbitmq:
            rabbit = stack.enter_context(started_rabbitmq(workdir))
        else:
            rabbit = None
            print("note: no RabbitMQ given (--rabbitmq-port P or --start-rabbitmq): Warren only")
        brokers = [b for b in (warren, rabbit) if b is not None]
        if not brokers:
            return 1
        dead_letter = {b.name: Results() for b in brokers}
        expiry = {b.name: Results() for b in brokers}
        idle: dict[str, float | None] = {}
        for b in brokers:
            print(f"{b.name}: {b.product} on port {b.port}, pid {listening_pid(b.port)}")
            warm_up(b, cfg)
            idle[b.name] = idle_cpu_share(b)
        for i in range(args.repeat):
            print(f"repetition {i + 1}/{args.repeat}", flush=True)
            for b in brokers:
                run_dl = lambda b=b: dead_letter_run(b, cfg, cfg.count)  # noqa: E731
                measure_safely(b, "dead-letter", run_dl, dead_letter[b.name])
                run_ttl = lambda b=b: expiry_run(b, cfg, cfg.count)  # noqa: E731
                measure_safely(b, "expiry", run_ttl, expiry[b.name])
    # The brokers we started are stopped now, so their logs are complete.
    print_dead_letter_table(brokers, dead_letter, cfg)
    print_expiry_table(brokers, expiry, cfg)
    print_idle(idle)
    for b in brokers:
        report_log(b)
    every = [*dead_letter.values(), *expiry.values()]
    complete = all(r.samples and not r.errors for r in every)
    return 0 if complete and warren is not None else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-lifecycle-", run, (AMQPERF,))


if __name__ == "__main__":
    sys.exit(main())
