"""A private RabbitMQ cluster of N nodes on this machine, for benchmarks that compare Warren's
cluster with RabbitMQ's: N rabbitmq-server processes (no plugins) on free ports, sharing one
Erlang cookie, nodes 2..N joined to node 1 with `rabbitmqctl join_cluster`. Each node is stopped
by the PID of the process group it was started in."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

from common import (
    BenchError,
    Broker,
    launch_rabbitmq,
    rabbit_spec,
    stop_process_group,
    wait_for_amqp,
)

CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def _ctl(spec, *args: str) -> None:
    result = subprocess.run([CTL, "-n", spec.nodename, *args], env=spec.env(),
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BenchError(f"rabbitmqctl {' '.join(args)} on {spec.nodename}: "
                         f"{result.stderr.strip() or result.stdout.strip()}")


@contextlib.contextmanager
def started_rabbitmq_cluster(workdir: Path, size: int = 3) -> Iterator[list[Broker] | None]:
    """Yield the cluster's nodes (node 1 first) once all are running and joined; None if
    rabbitmq-server is missing or a node fails to start."""
    cookie = secrets.token_hex(16).upper()
    specs = []
    for number in range(1, size + 1):
        spec = rabbit_spec(workdir, f"rabbit-c{number}")
        if spec is None:
            yield None
            return
        cookie_file = spec.base / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)
        specs.append(spec)
    brokers = [launch_rabbitmq(spec) for spec in specs]
    try:
        try:
            for broker in brokers:
                broker.product = wait_for_amqp(broker.port, broker.process, timeout=180)
            for spec in specs[1:]:
                _ctl(spec, "stop_app")
                _ctl(spec, "join_cluster", specs[0].nodename)
                _ctl(spec, "start_app")
            for broker in brokers:
                wait_for_amqp(broker.port, broker.process, timeout=120)
        except BenchError as exc:
            print(f"note: could not start the RabbitMQ cluster ({exc}); see {workdir}")
            yield None
            return
        yield brokers
    finally:
        for broker in reversed(brokers):
            assert broker.process is not None
            stop_process_group(broker.process, grace=30)
