"""docker/compose.cluster.yaml run for real (opt-in: WARREN_DOCKER_TESTS=1, a Docker daemon and
Compose): etcd, three Warren nodes and Prometheus, all built from the local Debian base
(docker/compose.local.yaml builds Prometheus from Debian's package). The test does what the
README's "test a failover by hand" steps do: finds the leader with `warren ctl cluster_status`
through `docker exec` (no credentials: the local administration secret) and with /api/nodes on
a follower's port, checks that Prometheus scrapes all three nodes, kills the leader's container
while a pika publisher with the list of the three nodes publishes confirmed persistent messages,
sees another node lead and the publisher go on, starts the killed node again (it comes back as
a follower) and finds every confirmed message in the queue exactly once.

Environment: as test_image.py (WARREN_DOCKER_BASE_IMAGE, WARREN_DOCKER_KEEP_IMAGES), and
WARREN_DOCKER_COMPOSE, the Compose command line to use (default `docker compose` when the
plugin is there, else `docker-compose`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions
import pytest
from brokers import REPO_ROOT, free_port
from docker_kit import (
    BUILD_TIMEOUT,
    KEEP_IMAGES,
    compose_command,
    dangling_images,
    docker,
    run,
)

pytestmark = pytest.mark.docker

NODES = ("warren1", "warren2", "warren3")
USER, PASSWORD = "cluster-test", uuid.uuid4().hex
SETTLE_TIMEOUT = 120.0  # all healthy, a leader, followers listed
FAILOVER_TIMEOUT = 60.0  # a new leader after the old one's container is killed


@dataclass
class Stack:
    """One Compose project of docker/compose.cluster.yaml on free host ports."""

    command: list[str]
    project: str
    env: dict[str, str]
    amqp_ports: dict[str, int] = field(default_factory=dict)
    http_ports: dict[str, int] = field(default_factory=dict)
    prometheus_port: int = 0

    def compose(self, *args: str, timeout: float = 300.0, check: bool = True) -> str:
        files = ["-f", str(REPO_ROOT / "docker" / "compose.cluster.yaml"),
                 "-f", str(REPO_ROOT / "docker" / "compose.local.yaml")]
        return run([*self.command, "-p", self.project, *files, *args], timeout=timeout,
                   check=check, env=self.env)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).splitlines()[0]

    def ctl(self, service: str, *args: str) -> str:
        """`warren ctl` inside a node's container, with no credentials given."""
        return docker("exec", self.container(service), "warren", "ctl", *args, timeout=60)

    def roles(self, service: str) -> dict[str, str]:
        """name -> cluster_role from `warren ctl --json cluster_status` on `service`."""
        status = json.loads(self.ctl(service, "--json", "cluster_status"))
        return {node["name"]: node["cluster_role"] for node in status["nodes"]
                if node["running"]}

    def health(self, service: str) -> str | None:
        state = json.loads(docker("inspect", "--format", "{{json .State}}",
                                  self.container(service)))
        return state.get("Health", {}).get("Status")

    def api(self, service: str, path: str) -> object:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_ports[service]}{path}")
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture
def stack(base_image: str) -> Iterator[Stack]:
    command = compose_command()
    if command is None:
        pytest.skip("no Compose: neither `docker compose` nor `docker-compose` works here "
                    "(WARREN_DOCKER_COMPOSE names another)")
    project = f"warren-ctest-{uuid.uuid4().hex[:8]}"
    tag = project
    env = {"WARREN_BASE_IMAGE": base_image, "WARREN_ETCD_BASE_IMAGE": base_image,
           "WARREN_PROMETHEUS_BASE_IMAGE": base_image, "WARREN_IMAGE_TAG": tag,
           "WARREN_DEFAULT_USER": USER, "WARREN_DEFAULT_PASS": PASSWORD,
           "WARREN_CLUSTER_SECRET": uuid.uuid4().hex}
    stack = Stack(command, project, env)
    for number, node in enumerate(NODES, 1):
        stack.amqp_ports[node], stack.http_ports[node] = free_port(), free_port()
        env[f"WARREN{number}_AMQP_PORT"] = str(stack.amqp_ports[node])
        env[f"WARREN{number}_HTTP_PORT"] = str(stack.http_ports[node])
    stack.prometheus_port = free_port()
    env["WARREN_PROMETHEUS_PORT"] = str(stack.prometheus_port)
    dangling_before = dangling_images()
    try:
        stack.compose("build", timeout=BUILD_TIMEOUT)
        stack.compose("up", "-d")
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", check=False)
        (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
        (REPO_ROOT / "test-artifacts" / f"{project}.log").write_text(logs)
        stack.compose("down", "--volumes", "--remove-orphans", check=False)
        if not KEEP_IMAGES:
            for image in ("warren", "warren-etcd", "warren-prometheus"):
                docker("rmi", f"{image}:{tag}", check=False)
            # the classic builder leaves Warren's builder stage behind as a dangling image
            leftovers = dangling_images() - dangling_before
            if leftovers:
                docker("rmi", *leftovers, check=False)


def wait_for(what: str, check, timeout: float):  # noqa: ANN001, ANN201 - a predicate, its value
    """Poll `check()` until it returns something true; that value, or an AssertionError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, OSError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(1)
    raise AssertionError(f"{what} not within {timeout:.0f}s; last: {last!r}")


def settled(roles: dict[str, str], running: int, gone: str | None = None
            ) -> dict[str, str] | None:
    """`roles` when `running` nodes run, one of them leading, and `gone` is not among them."""
    if gone in roles or sorted(roles.values()) != sorted(["leader"] + ["follower"] * (running - 1)):
        return None
    return roles


class Publisher(threading.Thread):
    """Confirmed persistent messages numbered 0, 1, 2 ... through a connection to the list of
    the three nodes (pika tries them in turn), reconnecting when the connection is lost.
    A message whose confirm did not come is not sent again."""

    def __init__(self, ports: list[int], queue: str) -> None:
        super().__init__(daemon=True)
        self.hosts = [pika.ConnectionParameters(
            "127.0.0.1", port, credentials=pika.PlainCredentials(USER, PASSWORD),
            socket_timeout=5, blocked_connection_timeout=10) for port in ports]
        self.queue = queue
        self.confirmed: list[int] = []
        self.reconnects = 0
        self.stop = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            try:
                connection = pika.BlockingConnection(self.hosts)
            except pika.exceptions.AMQPError:
                self.reconnects += 1
                time.sleep(0.5)
                continue
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare(self.queue, durable=True)
                while not self.stop.is_set():
                    body = str(number).encode()
                    number += 1
                    channel.basic_publish("", self.queue, body,
                                          pika.BasicProperties(delivery_mode=2))
                    self.confirmed.append(number - 1)
                    time.sleep(0.02)
            except (pika.exceptions.AMQPError, OSError):
                self.reconnects += 1
            finally:
                if connection.is_open:
                    try:
                        connection.close()
                    except (pika.exceptions.AMQPError, OSError):
                        pass


def test_cluster_stack_fails_over(stack: Stack) -> None:
    wait_for("three healthy nodes",
             lambda: all(stack.health(node) == "healthy" for node in NODES), SETTLE_TIMEOUT)
    roles = wait_for("a leader and two followers",
                     lambda: settled(stack.roles(NODES[1]), 3), SETTLE_TIMEOUT)
    leader = next(name for name, role in roles.items() if role == "leader")
    survivors = [node for node in NODES if node != leader]
    # the same through the API on a follower's port, passed through to the leader
    nodes = stack.api(survivors[0], "/api/nodes")
    assert {node["name"]: node["cluster_role"] for node in nodes} == roles
    # Prometheus (built from Debian's package) scrapes all three nodes
    prometheus = f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query?query=up"

    def scraped() -> bool:
        with urllib.request.urlopen(prometheus, timeout=10) as response:
            result = json.loads(response.read())["data"]["result"]
        return sorted(r["metric"]["instance"] for r in result if r["value"][1] == "1") == [
            f"{node}:15672" for node in NODES]

    wait_for("Prometheus scraping warren1-3", scraped, SETTLE_TIMEOUT)

    queue = f"failover-{uuid.uuid4().hex[:8]}"
    publisher = Publisher([stack.amqp_ports[node] for node in NODES], queue)
    publisher.start()
    try:
        wait_for("confirmed messages", lambda: len(publisher.confirmed) >= 20, 60)
        stack.compose("kill", leader)
        killed_at = len(publisher.confirmed)
        new_roles = wait_for("a new leader", lambda: settled(
            stack.roles(survivors[0]), 2, leader), FAILOVER_TIMEOUT)
        new_leader = next(name for name, role in new_roles.items() if role == "leader")
        assert new_leader in survivors
        wait_for("publishes confirmed after the failover",
                 lambda: len(publisher.confirmed) >= killed_at + 50, FAILOVER_TIMEOUT)
    finally:
        publisher.stop.set()
        publisher.join(30)
    assert publisher.reconnects >= 1  # it was connected (through) the old leader

    stack.compose("start", leader)
    wait_for("the old leader back as a follower",
             lambda: stack.roles(new_leader).get(leader) == "follower", SETTLE_TIMEOUT)

    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", stack.amqp_ports[new_leader],
        credentials=pika.PlainCredentials(USER, PASSWORD)))
    channel = connection.channel()
    received: list[int] = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        received.append(int(body))
    channel.queue_delete(queue)
    connection.close()
    assert len(received) == len(set(received)), "a message is there twice"
    missing = set(publisher.confirmed) - set(received)
    assert not missing, f"{len(missing)} confirmed messages lost: {sorted(missing)[:20]}"
    # ctl beside the new leader (no credentials) sees the queue gone
    assert queue not in stack.ctl(new_leader, "list_queues").split()

