"""The fixtures of the whole suite: broker processes, pika connections and channels, the
management API client, and a per-test deadline. Folder conftests add only what is their own.

Set WARREN_TEST_AMQP_PORT to run the same tests against another broker already listening on
localhost (for example RabbitMQ 3.10, to check that a test encodes RabbitMQ's behaviour), and
WARREN_TEST_HTTP_PORT for its management plugin. That broker must have the users, vhosts and
permissions of tests/definitions.json loaded.

The helpers the fixtures are built on are modules of this folder, importable by name from any
test: brokers.py (processes), client_helpers.py (pika, waiting, deadline), raw_amqp.py (the
raw-socket client), management_api.py (the HTTP API client).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from brokers import BrokerProcess, free_port, run_warren
from client_helpers import deadline, opened
from management_api import Api

TESTS = Path(__file__).resolve().parent
# Folders whose tests fail after client_helpers.TEST_DEADLINE seconds instead of hanging on a
# broker that never answers (the others start and stop brokers of their own, which may be slow).
DEADLINE_FOLDERS = ("broker", "clients", "lifecycle", "queue_types")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("WARREN_SLOW_TESTS") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: set WARREN_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def free_tcp_port() -> int:
    """A port nothing listens on, for a listener a test configures itself."""
    return free_port()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the whole run; tests use unique names so they do not disturb each other."""
    external = os.environ.get("WARREN_TEST_AMQP_PORT")
    if external:
        http = os.environ.get("WARREN_TEST_HTTP_PORT")
        yield BrokerProcess(port=int(external), management_port=int(http) if http else None)
        return
    with run_warren(tmp_path_factory.mktemp("broker")) as running:
        yield running
        running.assert_alive()


@pytest.fixture
def warren_factory(tmp_path: Path):
    """Start a dedicated Warren with its own environment, for tests that need one."""
    if os.environ.get("WARREN_TEST_AMQP_PORT"):
        pytest.skip("needs a Warren of its own")
    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def start(env: dict[str, str] | None = None, extra_args: list[str] | None = None,
              launcher: list[str] | None = None):
        directory = tmp_path / f"warren{next(counter)}"
        directory.mkdir()
        return stack.enter_context(run_warren(directory, env, extra_args, launcher))

    with stack:
        yield start


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name prefix unique to this test, for queues and exchanges."""
    return f"{request.node.name[:60]}-{time.monotonic_ns()}"


@pytest.fixture(autouse=True)
def _deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test of DEADLINE_FOLDERS that hangs fails after TEST_DEADLINE seconds."""
    folder = Path(request.node.path).relative_to(TESTS).parts[0]
    if folder not in DEADLINE_FOLDERS:
        yield
        return
    with deadline():
        yield


@pytest.fixture
def connection(broker: BrokerProcess):
    """A pika BlockingConnection to the session's broker as guest, closed after the test."""
    with opened(broker) as conn:
        yield conn


@pytest.fixture
def channel(connection):
    return connection.channel()


@pytest.fixture
def confirming_channel(connection):
    """A channel in confirm mode: basic_publish returns once the broker has routed and
    enqueued the message, so counts read right after a publish are meaningful."""
    opened_channel = connection.channel()
    opened_channel.confirm_delivery()
    return opened_channel


@pytest.fixture(scope="module")
def api(broker: BrokerProcess) -> Api:
    """The management HTTP API of the session's broker, as guest."""
    if broker.management_port is None:
        pytest.skip("the broker under test has no management port (set WARREN_TEST_HTTP_PORT)")
    return Api(broker.host, broker.management_port)
