"""Warren broker processes for the tests: `run_warren` starts `python -m broker` on free ports
with the users of tests/definitions.json, `BrokerProcess` is what a test talks to (Warren's or
an external broker's ports). The fixtures built on them are in tests/conftest.py; the storage
tests' restartable `WarrenNode` (tests/storage/warren_node.py) uses the same ports and command.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = REPO_ROOT / "tests" / "definitions.json"


# Ports for the brokers of the tests are taken below the kernel's ephemeral range (32768 and
# up), where no client socket is ever given one, and each pytest-xdist worker has a range of its
# own: a port found free is then not taken by another worker or a client before the broker binds it.
_PORTS_PER_WORKER = 2000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORT_BASE = 20000 + (_WORKER % 6) * _PORTS_PER_WORKER
_next_ports = itertools.cycle(range(_PORTS_PER_WORKER))
for _ in range(random.randrange(_PORTS_PER_WORKER)):
    next(_next_ports)


def free_port() -> int:
    """A port no one listens on, from this worker's own range."""
    for _ in range(_PORTS_PER_WORKER):
        port = _PORT_BASE + next(_next_ports)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORT_BASE}..{_PORT_BASE + _PORTS_PER_WORKER}")


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM a process a test started (by its PID, through `process`), SIGKILL it if it has
    not ended within `timeout` seconds, and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not 127.x (the broker listens on all)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
        address = s.getsockname()[0]
        if not address.startswith("127."):
            return address
    with contextlib.suppress(OSError):
        for address in socket.gethostbyname_ex(socket.gethostname())[2]:
            if not address.startswith("127."):
                return address
    return None


def wait_for_port(port: int, process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"broker exited early with code {process.returncode}")
        if port_is_open(port):
            return
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
        stop_process(process)
