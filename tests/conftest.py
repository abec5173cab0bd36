"""Shared fixtures: a real Warren broker in a subprocess, reached over real sockets.

Set WARREN_TEST_AMQP_PORT to run the same tests against another broker already listening on
localhost (for example RabbitMQ 3.10, to check that a test encodes RabbitMQ's behaviour), and
WARREN_TEST_HTTP_PORT for its management plugin. That broker must have the users, vhosts and
permissions of tests/definitions.json loaded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = REPO_ROOT / "tests" / "definitions.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("WARREN_SLOW_TESTS") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: set WARREN_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_tcp_port() -> int:
    """A port nothing listens on, for a listener a test configures itself."""
    return free_port()


def wait_for_port(port: int, process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not listen on port {port} within {timeout}s")


@dataclass
class BrokerProcess:
    """A broker the tests talk to: its AMQP port and, for Warren, its process and log file."""

    port: int
    host: str = "127.0.0.1"
    management_port: int | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    data_dir: Path | None = None

    @property
    def is_warren(self) -> bool:
        return self.process is not None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def assert_alive(self) -> None:
        if self.process is not None:
            assert self.process.poll() is None, f"broker died:\n{self.log_text()[-4000:]}"


@contextlib.contextmanager
def run_warren(
    tmp_dir: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None,
    launcher: list[str] | None = None,
) -> Iterator[BrokerProcess]:
    """Start `python -m broker` (or `launcher` + the broker's arguments) on free ports; stop it
    (SIGTERM) when the block ends."""
    port, management_port = free_port(), free_port()
    data_dir = tmp_dir / "data"
    log_path = tmp_dir / "broker.log"
    args = [
        *(launcher or [sys.executable, "-m", "broker"]),
        "--port", str(port),
        "--management-port", str(management_port),
        "--data-dir", str(data_dir),
        "--load-definitions", str(DEFINITIONS),
        "--log-level", "info",
        *(extra_args or []),
    ]
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log)
    broker = BrokerProcess(port=port, management_port=management_port, process=process,
                           log_path=log_path, data_dir=data_dir)
    try:
        wait_for_port(port, process)
        yield broker
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
