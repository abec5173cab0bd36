"""Persistent 1 KB messages with publisher confirms (at most 500 unconfirmed) into a quorum
queue: a Warren 3-node cluster (etcd 3.4 as a subprocess, two followers, a confirm after the
leader's fsync and one follower's: cluster.min_in_sync 1) next to a single Warren node, on
this machine, and a 3-node RabbitMQ cluster (benchmarks/rabbit_cluster.py: three private
rabbitmq-server nodes joined into one cluster; its quorum queue has all three as members) when
rabbitmq-server is installed. `confirmlat pub --window 500` (benchmarks/confirmlat.c) publishes
N messages and reports msg/s and the publish -> basic.ack latency; repetitions alternate
between the brokers, each started for its turn only (an idle Erlang node still takes CPU);
the table shows medians. `--rabbitmq-port` adds a RabbitMQ node already running (a single
node, for reference); `--no-rabbitmq-cluster` leaves the RabbitMQ cluster out.

    python3 benchmarks/cluster.py [--count 20000] [--repeat 3] [--rabbitmq-port 5682]

Needs /usr/bin/etcd and benchmarks/bin/confirmlat (benchmarks/build_amqperf.sh). The cluster's
nodes are tests/cluster/cluster_nodes.py's (the same processes the cluster tests run)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pika
from common import CONFIRMLAT, REPO_ROOT, BenchError, parse_amqperf, started_warren

sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "tests" / "cluster")]
from cluster_nodes import run_cluster  # noqa: E402
from etcd_process import etcd_missing, run_etcd  # noqa: E402
from rabbit_cluster import started_rabbitmq_cluster  # noqa: E402

QUEUE = "bench-cluster"


def declare_quorum(port: int) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = connection.channel()
        channel.queue_delete(QUEUE)
        channel.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        connection.close()


def delete_queue(port: int) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        connection.channel().queue_delete(QUEUE)
    finally:
        connection.close()


def measure(port: int, count: int) -> dict[str, float]:
    declare_quorum(port)
    result = subprocess.run(
        [str(CONFIRMLAT), "pub", "--port", str(port), "--queue", QUEUE, "--count", str(count),
         "--size", "1024", "--window", "500"],
        capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise BenchError(f"confirmlat failed: {result.stderr or result.stdout}")
    figures = parse_amqperf(result.stdout)
    return {key: float(figures[key]) for key in ("rate", "p50_ms", "p99_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rabbitmq-port", type=int, default=None)
    parser.add_argument("--no-rabbitmq-cluster", action="store_true")
    args = parser.parse_args()
    missing = etcd_missing()
    if missing or not CONFIRMLAT.exists():
        print(f"cannot run: {missing or 'no benchmarks/bin/confirmlat'}")
        return 2
    samples: dict[str, list[dict[str, float]]] = {"Warren single node": [],
                                                  "Warren 3-node cluster": [],
                                                  "RabbitMQ single node": [],
                                                  "RabbitMQ 3-node cluster": []}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for repetition in range(args.repeat):
            (work / f"single-{repetition}").mkdir()
            with started_warren(work / f"single-{repetition}", []) as broker:
                if broker is not None:
                    samples["Warren single node"].append(measure(broker.port, args.count))
            with run_etcd(work / f"etcd-{repetition}") as etcd, \
                    run_cluster(work / f"cluster-{repetition}", etcd.endpoint) as cluster:
                leader = cluster.in_sync()
                samples["Warren 3-node cluster"].append(measure(leader.port, args.count))
            if not args.no_rabbitmq_cluster:
                (work / f"rabbit-{repetition}").mkdir()
                with started_rabbitmq_cluster(work / f"rabbit-{repetition}") as nodes:
                    if nodes:
                        samples["RabbitMQ 3-node cluster"].append(
                            measure(nodes[0].port, args.count))
            if args.rabbitmq_port:
                samples["RabbitMQ single node"].append(measure(args.rabbitmq_port, args.count))
                delete_queue(args.rabbitmq_port)
    print(f"\n{args.count} persistent 1 KB messages, confirms (window 500), quorum queue; "
          f"medians of {args.repeat}")
    print(f"{'broker':<24} {'msg/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, runs in samples.items():
        if runs:
            rate, p50, p99 = (statistics.median(run[key] for run in runs)
                              for key in ("rate", "p50_ms", "p99_ms"))
            print(f"{name:<24} {rate:>8.0f} {p50:>8.1f} {p99:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
