"""Throughput and latency of Warren next to RabbitMQ 3.10, measured with the same C client.

16-byte transient messages on transient queues, consumers with prefetch 1000 acking every 100
messages (multiple=true), in three workloads (--workloads, all by default):

* `1to1`: one publisher and one consumer on one queue. Two runs per broker and repetition:
  throughput (the publisher sends N messages as fast as it can while the consumer drains
  them: the consumer's rate, the figure that matters, and the publisher's own rate), and
  latency (a fixed rate, default 5000 msg/s, well below both brokers' capacity, so the
  consumer's end-to-end p50/p99 measure the broker, not a growing backlog);
* `fanout`: one publisher to a fanout exchange bound to four queues, one consumer each (N
  messages published, 4 N delivered); the exchange is declared for the run (on a shared
  RabbitMQ, publishing to amq.fanout would reach other people's queues) and deleted after;
* `pairs`: four publisher/consumer pairs, each on a queue of its own (4 N messages).

For each throughput run the deliveries per second (the consumers' rates added up) and the
broker's CPU time per message delivered (utime + stime of its process over the run, from
/proc, divided by the deliveries; the process is the one listening on the broker's port:
Python for Warren, beam.smp for RabbitMQ), which a loaded machine disturbs less than rates.

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
from frame_cpu import Client, longstr, method, shortstr

FANOUT_EXCHANGE = "amqperf-bench-fanout"


@dataclass(frozen=True)
class Workload:
    """Queues with a consumer each, fed by one publisher per queue or, `fanout`, by one
    publisher to an exchange bound to them all."""

    label: str
    queues: int
    fanout: bool = False


WORKLOADS = {
    "1to1": Workload("1 -> 1", 1),
    "fanout": Workload("fan-out 1 -> 4", 4, fanout=True),
    "pairs": Workload("4 pairs", 4),
}


@dataclass
class Sample:
    """The figures of one repetition of one workload against one broker (rates added up over
    the consumers and publishers; latency for 1to1 only)."""

    consumer_rate: float
    publisher_rate: float
    cpu_us: float | None
    p50_ms: float | None = None
    p99_ms: float | None = None


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


def queue_names(broker: Broker, workload: Workload) -> list[str]:
    if workload.queues == 1:
        return [broker.queue]
    return [f"{broker.queue}-{index}" for index in range(workload.queues)]


def prepare(broker: Broker, workload: Workload) -> list[str]:
    """Declare the workload's queues (and bind them to the fanout exchange): before any
    consumer or publisher starts, so that nothing published is routed nowhere."""
    names = queue_names(broker, workload)
    client = Client(broker.port)
    try:
        client.handshake()
        if workload.fanout:
            client.sock.sendall(method(1, 40, 10, b"\0\0" + shortstr(FANOUT_EXCHANGE.encode())
                                       + shortstr(b"fanout") + b"\0" + longstr(b"")))
            client.expect(40, 11)
        for name in names:
            client.sock.sendall(method(1, 50, 10, b"\0\0" + shortstr(name.encode()) + b"\0"
                                       + longstr(b"")))
            client.expect(50, 11)
            if workload.fanout:
                client.sock.sendall(method(1, 50, 20, b"\0\0" + shortstr(name.encode())
                                           + shortstr(FANOUT_EXCHANGE.encode())
                                           + shortstr(b"") + b"\0" + longstr(b"")))
                client.expect(50, 21)
    finally:
        client.sock.close()
    return names


def clean_up(broker: Broker, workload: Workload) -> None:
    """Delete the fan-out's queues and exchange (they would take copies of later runs)."""
    if not workload.fanout:
        return
    client = Client(broker.port)
    try:
        client.handshake()
        for name in queue_names(broker, workload):
            client.sock.sendall(method(1, 50, 40, b"\0\0" + shortstr(name.encode()) + b"\0"))
            client.expect(50, 41)
        client.sock.sendall(method(1, 40, 20, b"\0\0" + shortstr(FANOUT_EXCHANGE.encode())
                                   + b"\0"))
        client.expect(40, 21)
    finally:
        client.sock.close()


def run_clients(broker: Broker, cfg: Config, workload: Workload, count: int,
                pub_args: list[str]) -> tuple[list[dict], list[dict]]:
    """The workload's consumers and publishers for `count` messages per publisher; return
    their result dicts."""
    names = prepare(broker, workload)
    con_args = ["--count", str(count), "--prefetch", str(cfg.prefetch), "--ack-every",
                str(cfg.ack_every)]
    consumers = [subprocess.Popen(amqperf(broker, "con", *con_args, "--queue", name),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in names]
    pub_args = ["--count", str(count), "--size", str(cfg.size), *pub_args]
    targets = ([["--exchange", FANOUT_EXCHANGE]] if workload.fanout
               else [["--queue", name] for name in names])
    publishers: list[subprocess.Popen[str]] = []
    try:
        time.sleep(0.3)  # let basic.consume land before publishing
        publishers = [subprocess.Popen(amqperf(broker, "pub", *pub_args, *target),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
                      for target in targets]
        results = []
        for name, process in (*(("publisher", p) for p in publishers),
                              *(("consumer", c) for c in consumers)):
            out, err = process.communicate(timeout=cfg.timeout)
            if process.returncode != 0:
                raise BenchError(f"{name} failed: {err.strip()}")
            results.append(parse_amqperf(out))
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"no result after {cfg.timeout:.0f}s (messages lost or stalled)") from exc
    finally:
        for process in (*publishers, *consumers):
            if process.poll() is None:
                process.kill()
                process.wait()
    return results[:len(publishers)], results[len(publishers):]


def run_pair(broker: Broker, cfg: Config, count: int, pub_args: list[str]) -> tuple[dict, dict]:
    """One publisher and one consumer for `count` messages; return both result dicts."""
    pubs, cons = run_clients(broker, cfg, WORKLOADS["1to1"], count, pub_args)
    return pubs[0], cons[0]


def broker_pid(broker: Broker) -> int | None:
    """The process whose CPU time counts: the one listening on the broker's port."""
    return listening_pid(broker.port)


def measure(broker: Broker, cfg: Config, workload: Workload) -> Sample:
    """A throughput run (with the broker's CPU time), then for 1to1 a fixed-rate latency run."""
    pid = broker_pid(broker)
    before = cpu_seconds(pid)
    pubs, cons = run_clients(broker, cfg, workload, cfg.count, [])
    after = cpu_seconds(pid)
    delivered = cfg.count * len(cons)
    sample = Sample(
        consumer_rate=sum(float(con["rate"]) for con in cons),
        publisher_rate=sum(float(pub["rate"]) for pub in pubs),
        cpu_us=None if before is None or after is None else (after - before) * 1e6 / delivered,
    )
    if workload == WORKLOADS["1to1"]:
        _, lat = run_pair(broker, cfg, cfg.latency_count, ["--rate", str(cfg.latency_rate)])
        sample.p50_ms, sample.p99_ms = float(lat["p50_ms"]), float(lat["p99_ms"])
    return sample


def measure_safely(broker: Broker, cfg: Config, workload: Workload, results: Results) -> None:
    try:
        broker.check_alive()
        sample = measure(broker, cfg, workload)
        broker.check_alive()
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        broker.queue_seq += 1
        results.errors.append(str(exc))
        print(f"  {broker.name} {workload.label}: FAILED: {exc}", flush=True)
        return
    finally:
        with contextlib.suppress(BenchError, OSError):
            clean_up(broker, workload)
    results.samples.append(sample)
    latency = (f", latency p50 {sample.p50_ms:.2f} ms p99 {sample.p99_ms:.2f} ms"
               if sample.p50_ms is not None else "")
    print(f"  {broker.name} {workload.label}: consumers {sample.consumer_rate:,.0f} msg/s, "
          f"publishers {sample.publisher_rate:,.0f} msg/s, CPU {fmt(sample.cpu_us, '.2f')} "
          f"us/msg{latency}", flush=True)


def warm_up(broker: Broker, cfg: Config) -> None:
    if cfg.warmup <= 0:
        return
    try:
        run_pair(broker, cfg, cfg.warmup, [])
    except (BenchError, subprocess.SubprocessError) as exc:
        broker.queue_seq += 1
        print(f"  {broker.name}: warm-up failed: {exc}", flush=True)


# --- report -------------------------------------------------------------------------------------


def print_table(brokers: list[Broker], workloads: list[Workload],
                results: dict[tuple[str, Workload], Results], cfg: Config) -> None:
    print()
    print(
        f"{cfg.count:,} x {cfg.size}-byte transient messages per publisher, prefetch "
        f"{cfg.prefetch}, ack every {cfg.ack_every}; latency (1 -> 1) at "
        f"{cfg.latency_rate:,.0f} msg/s. msg/s: deliveries per second, all consumers; CPU: "
        "the broker's, per delivery. Medians of the successful repetitions."
    )
    header = (
        f"{'workload':<15} {'broker':<10} {'server':<20} {'runs':>5} {'msg/s':>10} "
        f"{'pub msg/s':>10} {'CPU us/msg':>10} {'p50 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for workload in workloads:
        for broker in brokers:
            r = results[broker.name, workload]
            runs = f"{len(r.samples)}/{len(r.samples) + len(r.errors)}"
            print(
                f"{workload.label:<15} {broker.name:<10} {broker.product:<20.20} {runs:>5} "
                f"{fmt(r.median('consumer_rate'), ',.0f'):>10} "
                f"{fmt(r.median('publisher_rate'), ',.0f'):>10} "
                f"{fmt(r.median('cpu_us'), '.2f'):>10} "
                f"{fmt(r.median('p50_ms'), '.2f'):>8} {fmt(r.median('p99_ms'), '.2f'):>8}"
            )
    for workload in workloads:
        warren, rabbit = results.get(("Warren", workload)), results.get(("RabbitMQ", workload))
        if warren and rabbit:
            w, r = warren.median("consumer_rate"), rabbit.median("consumer_rate")
            wc, rc = warren.median("cpu_us"), rabbit.median("cpu_us")
            if w and r:
                cpu = f", CPU per message {wc / rc:.2f}x" if wc and rc else ""
                print(f"Warren/RabbitMQ {workload.label}: deliveries per second {w / r:.2f}x"
                      f"{cpu}")


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=200_000,
                   help="messages per publisher in a throughput run")
    p.add_argument("--workloads", default="1to1,fanout,pairs",
                   help="comma-separated, of: " + ", ".join(WORKLOADS))
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
    try:
        workloads = [WORKLOADS[name] for name in args.workloads.split(",")]
    except KeyError as exc:
        print(f"unknown workload {exc}; known: {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
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
        results = {(b.name, w): Results() for b in brokers for w in workloads}
        for b in brokers:
            print(f"{b.name}: {b.product} on port {b.port}, pid {broker_pid(b)}", flush=True)
            warm_up(b, cfg)
        for i in range(args.repeat):
            print(f"repetition {i + 1}/{args.repeat}", flush=True)
            for w in workloads:
                for b in brokers:
                    measure_safely(b, cfg, w, results[b.name, w])
    # The brokers we started are stopped now, so their logs are complete.
    print_table(brokers, workloads, results, cfg)
    for b in brokers:
        report_log(b)
    complete = all(r.samples and not r.errors for r in results.values())
    return 0 if complete and warren is not None else 1


def main(argv: list[str] | None = None) -> int:
    return run_in_workdir(parse_args(argv), "warren-bench-", run, (AMQPERF,))


if __name__ == "__main__":
    sys.exit(main())
