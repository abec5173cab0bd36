"""Warren cluster nodes for the tests: each a `python -m broker` subprocess with its own free
ports and data dir, joined to the test's etcd; killed (SIGKILL), paused (SIGSTOP/SIGCONT),
stopped (SIGTERM) and restarted by its PID, never by name. `Cluster` finds the leader through
each node's /metrics (warren_cluster_role) and waits for elections; `confirmed_publish`
publishes one confirmed message through any node, retrying while there is no leader."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
from brokers import DEFINITIONS, REPO_ROOT, free_port, port_is_open, stop_process

SECRET = "test-cluster-secret"
LEASE_TTL = 3  # seconds: failovers in the tests take about this long
_ROLE = re.compile(r'warren_cluster_role\{cluster="[^"]*",role="(\w+)"\} 1(?:\.0)?(?!\d)')
_EPOCH = re.compile(r"warren_cluster_epoch (\d+)")


@dataclass
class ClusterNode:
    name: str
    directory: Path
    etcd: str
    cluster: str
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    replication_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    def start(self, wait: bool = True) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "broker", "--bind", "127.0.0.1",
                "--management-bind", "127.0.0.1", "--port", str(self.port),
                "--management-port", str(self.management_port),
                "--data-dir", str(self.data_dir), "--load-definitions", str(DEFINITIONS),
                "--cluster-etcd", self.etcd, "--cluster-name", self.cluster,
                "--node-name", self.name, "--advertise-host", "127.0.0.1",
                "--replication-port", str(self.replication_port),
                "--cluster-secret", SECRET, "--lease-ttl", str(LEASE_TTL), *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO_ROOT, env=dict(os.environ),
                                            stdout=log, stderr=log)
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_open(self.management_port):
            self.assert_alive()
            assert time.monotonic() < deadline, f"{self.name} did not listen:\n{self.log()}"
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def assert_alive(self) -> None:
        assert self.alive(), f"{self.name} died:\n{self.log()}"

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGCONT)  # a paused node could not stop
            stop_process(self.process)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-4000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.management_port}/metrics",
                                    timeout=2) as reply:
            return reply.read().decode()

    def role(self) -> str | None:
        """leader / follower / candidate / promoting, from its /metrics; None if it does not
        answer (dead, paused, restarting)."""
        try:
            found = _ROLE.search(self.metrics())
        except OSError:
            return None
        return found.group(1) if found else None

    def epoch(self) -> int:
        found = _EPOCH.search(self.metrics())
        return int(found.group(1)) if found else 0


@dataclass
class Cluster:
    nodes: list[ClusterNode]

    def leader(self, timeout: float = 20.0, excluding: ClusterNode | None = None) -> ClusterNode:
        """The one node that says it leads, once the others follow it."""
        deadline = time.monotonic() + timeout
        while True:
            roles = {node.name: node.role() for node in self.nodes
                     if node.alive() and node is not excluding}
            leaders = [node for node in self.nodes if roles.get(node.name) == "leader"]
            followers = [name for name, role in roles.items() if role == "follower"]
            if len(leaders) == 1 and len(followers) == len(roles) - 1:
                return leaders[0]
            assert time.monotonic() < deadline, f"no single leader: {roles}\n" + "\n".join(
                f"--- {node.name}\n{node.log()}" for node in self.nodes)
            time.sleep(0.1)

    def in_sync(self, timeout: float = 20.0) -> ClusterNode:
        """The leader, once every other live node is in its in-sync set (only those may take
        over from it)."""
        leader = self.leader(timeout)
        deadline = time.monotonic() + timeout
        wanted = {node.name for node in self.followers(leader) if node.alive()}
        while True:
            metrics = leader.metrics()
            synced = {name for name in wanted
                      if f'warren_cluster_replication_in_sync{{follower="{name}"}} 1' in metrics}
            if synced == wanted:
                return leader
            assert time.monotonic() < deadline, f"not in sync: {wanted - synced}\n{metrics}"
            time.sleep(0.1)

    def followers(self, leader: ClusterNode) -> list[ClusterNode]:
        return [node for node in self.nodes if node is not leader]

    def left_alone(self, node: ClusterNode, timeout: float = 20.0) -> None:
        """Kill every other node and wait until `node`, the only one left, leads."""
        for other in self.followers(node):
            other.kill()
        deadline = time.monotonic() + timeout
        while node.role() != "leader":
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.1)


@contextlib.contextmanager
def run_cluster(directory: Path, etcd: str, size: int = 3,
                extra_args: list[str] | None = None,
                node_args: Callable[[ClusterNode], list[str]] | None = None
                ) -> Iterator[Cluster]:
    """`size` nodes, each started with `extra_args` and what `node_args(node)` gives it."""
    cluster_name = directory.name.replace("[", "-").replace("]", "")[-40:]
    nodes = [ClusterNode(f"node{index}", directory / f"node{index}", etcd, cluster_name,
                         extra_args=list(extra_args or [])) for index in range(size)]
    for node in nodes:
        node.extra_args += node_args(node) if node_args is not None else []
    try:
        for node in nodes:
            node.start(wait=False)
        for node in nodes:
            node.wait_listening()
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.stop()


def confirmed_publish(port: int, queue: str, body: bytes, attempts: int = 40) -> None:
    """Publish one persistent message with confirms, reconnecting while the cluster has no
    leader; raises if it is not confirmed within the attempts."""
    for attempt in range(attempts):
        try:
            connection = pika.BlockingConnection(pika.ConnectionParameters(
                "127.0.0.1", port, socket_timeout=2, blocked_connection_timeout=5))
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare(queue, durable=True)
                channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
                return
            finally:
                if connection.is_open:
                    connection.close()
        except pika.exceptions.AMQPError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)
