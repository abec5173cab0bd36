"""The Docker image, built and run for real (opt-in: WARREN_DOCKER_TESTS=1 and a Docker daemon).

The image is built from docker/Dockerfile on a base made locally by docker/build-base-image.sh
(debootstrap from the configured Debian mirror; no registry needed), or on WARREN_DOCKER_BASE_IMAGE
when set (e.g. python:3.12-slim where a registry is reachable). A container is started with a
named volume and published ports, waited on until Docker calls it healthy, used with pika
(durable queue, persistent messages, publisher confirms) and scraped; `docker stop` must end it
cleanly (320 to the client, exit 0, well within Docker's 10 s), and a new container on the same
volume must still hold the persistent message.

Environment:
  WARREN_DOCKER_BASE_IMAGE   base image to build on (default warren-base:bookworm, built with
                             docker/build-base-image.sh when missing: needs root and debootstrap)
  WARREN_DOCKER_NETWORK      `host` to run the container with host networking (Warren then
                             listens on free host ports given as flags) where bridge networking
                             does not work; default: bridge with published ports
  WARREN_DOCKER_KEEP_IMAGES  1 keeps the images this test built (the base and Warren's)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
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
from docker_kit import BUILD_TIMEOUT, KEEP_IMAGES, dangling_images, docker
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.docker

HEALTHY_TIMEOUT = 90.0  # the image checks every 10 s
STOP_LIMIT = 5.0  # seconds `docker stop` may take: "well within" Docker's 10 s
USER, PASSWORD = "warren-test", uuid.uuid4().hex


@pytest.fixture(scope="module")
def warren_image(base_image: str) -> Iterator[str]:
    """Warren's image, built from the working tree on the base image; removed afterwards."""
    tag = f"warren-test:{uuid.uuid4().hex[:12]}"
    dangling_before = dangling_images()
    docker("build", "--file", str(REPO_ROOT / "docker" / "Dockerfile"),
           "--build-arg", f"BASE_IMAGE={base_image}", "--tag", tag, str(REPO_ROOT),
           timeout=BUILD_TIMEOUT)
    try:
        yield tag
    finally:
        if not KEEP_IMAGES:
            docker("rmi", tag, check=False)
            # the classic builder leaves the builder stage behind as a dangling image
            leftovers = dangling_images() - dangling_before
            if leftovers:
                docker("rmi", *leftovers, check=False)


@dataclass
class Container:
    """A running Warren container and the host ports its AMQP and HTTP ports are reached on."""

    name: str
    amqp_port: int
    http_port: int

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.name], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        return result.stdout

    def state(self) -> dict:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.name))


@dataclass
class Runner:
    """Starts containers of one image on one named volume; removes them all at the end."""

    image: str
    volume: str
    names: list[str] = field(default_factory=list)

    def start(self, default_user: bool = True) -> Container:
        """A new container; `default_user` False starts it without WARREN_DEFAULT_*, as a
        later container on a volume that already has its users may be."""
        name = f"warren-test-{uuid.uuid4().hex[:12]}"
        args = ["run", "--detach", "--name", name,
                "--volume", f"{self.volume}:/var/lib/warren"]
        if default_user:
            args += ["--env", f"WARREN_DEFAULT_USER={USER}",
                     "--env", f"WARREN_DEFAULT_PASS={PASSWORD}"]
        host_network = os.environ.get("WARREN_DOCKER_NETWORK") == "host"
        if host_network:  # no port mapping: Warren itself listens on free host ports
            amqp_port, http_port = free_port(), free_port()
            args += ["--network", "host", "--env", f"WARREN_PORT={amqp_port}",
                     "--env", f"WARREN_MANAGEMENT_PORT={http_port}"]
        else:  # Docker picks free host ports on loopback
            args += ["--publish", "127.0.0.1::5672", "--publish", "127.0.0.1::15672"]
        self.names.append(name)
        docker(*args, self.image)
        if not host_network:
            amqp_port = int(docker("port", name, "5672/tcp").splitlines()[0].rsplit(":", 1)[1])
            http_port = int(docker("port", name, "15672/tcp").splitlines()[0].rsplit(":", 1)[1])
        return Container(name, amqp_port, http_port)

    def remove_all(self) -> None:
        for name in self.names:
            docker("rm", "--force", "--volumes", name, check=False)
        docker("volume", "rm", "--force", self.volume, check=False)


@pytest.fixture
def runner(warren_image: str) -> Iterator[Runner]:
    runner = Runner(warren_image, f"warren-test-{uuid.uuid4().hex[:12]}")
    try:
        yield runner
    finally:
        runner.remove_all()


def wait_healthy(container: Container) -> None:
    """Until Docker's health status (the image's HEALTHCHECK) is `healthy`."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    while time.monotonic() < deadline:
        state = container.state()
        if not state["Running"]:
            raise AssertionError(f"container exited {state['ExitCode']}:\n{container.logs()}")
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"not healthy within {HEALTHY_TIMEOUT}s: {container.state()}\n"
                         f"{container.logs()}")


def connect(container: Container) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", container.amqp_port, credentials=pika.PlainCredentials(USER, PASSWORD),
        connection_attempts=5, retry_delay=0.5))


def http_get(container: Container, path: str, auth: bool = False) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{container.http_port}{path}")
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels in a scrape."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} not in the scrape")


class ClosureWatcher(threading.Thread):
    """An AMQP connection kept serviced in its own thread, recording how the broker closes it."""

    def __init__(self, container: Container) -> None:
        super().__init__(daemon=True)
        self.connection = connect(container)
        self.closed_by: pika.exceptions.AMQPConnectionError | None = None

    def run(self) -> None:
        try:
            while True:
                self.connection.process_data_events(time_limit=0.1)
        except pika.exceptions.AMQPConnectionError as error:
            self.closed_by = error


def test_image_round_trip_clean_stop_and_durable_restart(runner: Runner) -> None:
    queue = f"docker-test-{uuid.uuid4().hex[:8]}"
    first = runner.start()
    wait_healthy(first)

    # runs as a non-root user; PID 1 is tini, which forwards signals to the broker
    assert docker("exec", first.name, "id", "-u") != "0"
    cmdline = docker("exec", first.name, "cat", "/proc/1/cmdline").split("\0")
    assert cmdline[:3] == ["tini", "--", "/opt/warren/bin/warren"], cmdline

    # pika round trip: durable queue, persistent messages confirmed, one fetched back
    connection = connect(first)
    channel = connection.channel()
    channel.confirm_delivery()  # basic_publish raises if the broker nacks
    channel.queue_declare(queue, durable=True)
    persistent = pika.BasicProperties(delivery_mode=2)
    channel.basic_publish("", queue, b"round trip", persistent, mandatory=True)
    method, _, body = channel.basic_get(queue, auto_ack=False)
    assert method is not None and body == b"round trip"
    channel.basic_ack(method.delivery_tag)
    channel.basic_publish("", queue, b"survives a restart", persistent, mandatory=True)
    connection.close()

    # /metrics (no auth) and the health check (basic auth, a non-loopback user) from outside
    status, metrics = http_get(first, "/metrics")
    assert status == 200
    assert metric_value(metrics, "rabbitmq_queue_messages_ready") >= 1
    assert metric_value(metrics, "rabbitmq_global_messages_confirmed_total",
                        protocol="amqp091") == 2
    _, per_object = http_get(first, "/metrics/per-object")
    assert metric_value(per_object, "rabbitmq_queue_messages_ready", vhost="/", queue=queue) == 1
    status, health = http_get(first, "/api/health/checks/alarms", auth=True)
    assert (status, json.loads(health)) == (200, {"status": "ok"})

    # docker stop: SIGTERM to PID 1, 320 to the connected client, exit 0, well within 10 s
    watcher = ClosureWatcher(first)
    watcher.start()
    started = time.monotonic()
    docker("stop", "--time", "10", first.name, timeout=30)
    took = time.monotonic() - started
    watcher.join(timeout=5)
    state = first.state()
    logs = first.logs()
    assert state["ExitCode"] == 0 and not state["OOMKilled"], (state, logs)
    assert took < STOP_LIMIT, f"docker stop took {took:.1f}s\n{logs}"
    assert "shutting down" in logs, logs
    assert logs.rindex("stopped") > logs.index("shutting down"), logs
    closed_by = watcher.closed_by
    assert isinstance(closed_by, pika.exceptions.ConnectionClosedByBroker), closed_by
    assert closed_by.reply_code == 320

    # a new container on the same volume, started without WARREN_DEFAULT_*: the health check
    # and `docker exec … warren ctl` work through the local administration secret (0600,
    # owned by the broker's user) with no password given; the confirmed persistent message
    # is still there, the acknowledged one is not
    docker("rm", first.name)
    second = runner.start(default_user=False)
    wait_healthy(second)
    assert docker("exec", second.name, "stat", "-c", "%a %U",
                  "/var/lib/warren/local-admin.secret") == "600 warren"
    users = docker("exec", second.name, "warren", "ctl", "list_users").splitlines()
    assert USER in [line.split("\t")[0] for line in users[1:]], users
    assert "guest" not in [line.split("\t")[0] for line in users[1:]], users
    connection = connect(second)
    channel = connection.channel()
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"survives a restart" and properties.delivery_mode == 2
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)
    channel.queue_delete(queue)
    connection.close()


def test_stop_during_start_up(runner: Runner) -> None:
    """A SIGTERM before Warren's own handler exists (imports, recovery) still ends PID 1 at once
    (exit 143, as for a process that is not PID 1) instead of waiting for Docker's SIGKILL."""
    container = runner.start()
    started = time.monotonic()
    docker("stop", "--time", "10", container.name, timeout=30)
    took = time.monotonic() - started
    state = container.state()
    assert state["ExitCode"] in (0, 143), (state, container.logs())
    assert took < STOP_LIMIT, f"docker stop took {took:.1f}s\n{container.logs()}"
