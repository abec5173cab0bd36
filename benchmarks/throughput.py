"""Throughput and latency of Warren next to RabbitMQ 3.10, measured with the same C client.

The benchmark of the issue: one publisher and one consumer on one transient queue, 16-byte
transient messages, the consumer with prefetch 1000 acking every 100 messages (multiple=true).

Two runs per broker and repetition:

* throughput: the publisher sends N messages as fast as it can while the consumer drains them;
  reported are the consumer's rate (the figure that matters) and the publisher's own rate.
* latency: the publisher sends at a fixed rate (default 5000 msg/s, well below both brokers'
  capacity), so the consumer's end-to-end p50/p99 measure the broker, not a growing backlog.

Warren is started here as a subprocess (`python -m broker` from the repository root, on free ports,
with a temporary data directory) unless --warren-port points at one already running. RabbitMQ is
either a node already listening (--rabbitmq-port) or one started here on free ports
(--start-rabbitmq). Without RabbitMQ the script says so and reports Warren alone.

Repetitions alternate between the brokers; the table shows the median of each figure.
Needs benchmarks/bin/amqperf: run benchmarks/build_amqperf.sh first. Standard library only.
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
    BenchError,
    Broker,
    Results,
    amqperf,
    existing_broker,
    fmt,
    parse_amqperf,
    report_log,
    run_in_workdir,
    started_rabbitmq,
    started_warren,
)


@dataclass
class Sample:
    """The figures of one repetition against one broker."""

    consumer_rate: float
    publisher_rate: float
    p50_ms: float
    p99_ms: float


@dataclass
class Config:
    """What to run: message counts, the fixed latency rate, limits."""

    count: int
    latency_rate: float
    latency_count: int
    warmup: int
    timeout: float
    size: int = 16
    prefetch: int = 1000
    ack_every: int = 100


# --- running amqperf ----------------------------------------------------------------------------


def run_pair(broker: Broker, cfg: Config, count: int, pub_args: list[str]) -> tuple[dict, dict]:
    """One publisher and one consumer for `count` messages; return both result dicts."""
    declare = amqperf(broker, "pub", "--declare", "--count", "0")
    subprocess.run(declare, check=True, capture_output=True, timeout=30)
    consumer = subprocess.Popen(
        amqperf(broker, "con", "--count", str(count), "--prefetch", str(cfg.prefetch),
                "--ack-every", str(cfg.ack_every)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)  # let basic.consume land before publishing
        publisher = subprocess.run(
            amqperf(broker, "pub", "--count", str(count), "--size", str(cfg.size), *pub_args),
            capture_output=True, text=True, timeout=cfg.timeout,
        )  # fmt: skip
        if publisher.returncode != 0:
            raise BenchError(f"publisher failed: {publisher.stderr.strip()}")
        con_out, con_err = consumer.communicate(timeout=cfg.timeout)
        if consumer.returncode != 0:
            raise BenchError(f"consumer failed: {con_err.strip()}")
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"no result after {cfg.timeout:.0f}s (messages lost or stalled)") from exc
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    return parse_amqperf(publisher.stdout), parse_amqperf(con_out)


def measure(broker: Broker, cfg: Config) -> Sample:
    """A throughput run then a fixed-rate latency run."""
    pub, con = run_pair(broker, cfg, cfg.count, [])
    rate = ["--rate", str(cfg.latency_rate)]
    _, lat = run_pair(broker, cfg, cfg.latency_count, rate)
    return Sample(
        consumer_rate=float(con["rate"]),
        publisher_rate=float(pub["rate"]),
        p50_ms=float(lat["p50_ms"]),
        p99_ms=float(lat["p99_ms"]),
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
        f"  {broker.name}: consumer {sample.consumer_rate:,.0f} msg/s, publisher "
        f"{sample.publisher_rate:,.0f} msg/s, latency p50 {sample.p50_ms:.2f} ms "
        f"p99 {sample.p99_ms:.2f} ms",
        flush=True,
    )


def warm_up(broker: Broker, cfg: Config) -> None:
    if cfg.warmup <= 0:
        return
    try:
        run_pair(broker, cfg, cfg.warmup, [])
    except (BenchError, subprocess.SubprocessError) as exc:
        broker.queue_seq += 1
        print(f"  {broker.name}: warm-up failed: {exc}", flush=True)


# --- report -------------------------------------------------------------------------------------


def print_table(brokers: list[Broker], results: dict[str, Results], cfg: Config) -> None:
    print()
    print(
        f"{cfg.count:,} x {cfg.size}-byte transient messages, 1 publisher / 1 consumer, "
        f"prefetch {cfg.prefetch}, ack every {cfg.ack_every}; latency at "
        f"{cfg.latency_rate:,.0f} msg/s. Medians of the successful repetitions."
    )
    header = (
        f"{'broker':<10} {'server':<22} {'runs':>5} {'msg/s':>10} {'pub msg/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for broker in brokers:
        r = results[broker.name]
        runs = f"{len(r.samples)}/{len(r.samples) + len(r.errors)}"
        print(
            f"{broker.name:<10} {broker.product:<22.22} {runs:>5} "
            f"{fmt(r.median('consumer_rate'), ',.0f'):>10} "
            f"{fmt(r.median('publisher_rate'), ',.0f'):>10} "
            f"{fmt(r.median('p50_ms'), '.2f'):>8} {fmt(r.median('p99_ms'), '.2f'):>8}"
        )
    warren, rabbit = results.get("Warren"), results.get("RabbitMQ")
    if warren and rabbit:
        w, r = warren.median("consumer_rate"), rabbit.median("consumer_rate")
        if w and r:
            print(f"\nWarren/RabbitMQ consumer throughput: {w / r:.2f}x")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200_000, help="messages per throughput run")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per broker (median shown)")
    p.add_argument("--latency-rate", type=float, default=5000, help="msg/s of the latency run")
    p.add_argument("--latency-count", type=int, default=25_000, help="messages per latency run")
    p.add_argument("--warmup", type=int, default=20_000, help="messages of a first, unmeasured run")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a run is given up")
    rabbit = p.add_mutually_exclusive_group()
    rabbit.add_argument("--rabbitmq-port", type=int, help="use the RabbitMQ listening on this port")
    rabbit.add_argument(
        "--start-rabbitmq", action="store_true", help="start a private RabbitMQ node on free ports"
    )
    p.add_argument("--warren-port", type=int, help="use a Warren already listening on this port")
    p.add_argument(
        "--warren-arg", action="append", default=[], metavar="ARG",
        help="extra argument for `python -m broker` (repeatable): --warren-arg=--log-level=info",
    )  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Start or find the brokers, measure them alternately, then report. Returns the exit code."""
    cfg = Config(args.count, args.latency_rate, args.latency_count, args.warmup, args.timeout)
    with contextlib.ExitStack() as stack:
        if args.warren_port:
            warren = existing_broker("Warren", args.warren_port)
        else:
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
        results = {b.name: Results() for b in brokers}
        for b in brokers:
            print(f"{b.name}: {b.product} on port {b.port}", flush=True)
            warm_up(b, cfg)
        for i in range(args.repeat):
            print(f"repetition {i + 1}/{args.repeat}", flush=True)
            for b in brokers:
                measure_safely(b, cfg, results[b.name])
    # The brokers we started are stopped now, so their logs are complete.
    print_table(brokers, results, cfg)
    for b in brokers:
        report_log(b)
    complete = all(r.samples and not r.errors for r in results.values())
    return 0 if complete and warren is not None else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-bench-", run, (AMQPERF,))


if __name__ == "__main__":
    sys.exit(main())
