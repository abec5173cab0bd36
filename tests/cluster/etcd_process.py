"""A throwaway etcd for the cluster tests: `run_etcd` starts /usr/bin/etcd (Debian's
etcd-server, 3.4) on free ports with a temporary data dir, as a subprocess stopped by its PID;
`EtcdProcess` can kill and start it again on the same ports and data dir (etcd down/up)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from brokers import free_port, port_is_open

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def etcd_missing() -> str | None:
    """Why the cluster tests cannot run here, or None."""
    if not Path(ETCD).exists():
        return "etcd is not installed (Debian: apt-get install etcd-server)"
    return None


@dataclass
class EtcdProcess:
    directory: Path
    client_port: int
    peer_port: int
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [ETCD, "--name", "warren-test", "--data-dir", str(self.directory / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"warren-test={peer}"]
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "etcd.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("etcd did not start:\n" + self.log_text()[-2000:])
            time.sleep(0.05)

    def healthy(self) -> bool:
        """etcd answers /health once it has a raft leader (the port opens before)."""
        if not port_is_open(self.client_port):
            return False
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as reply:
                return json.loads(reply.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """SIGKILL, by PID: etcd down at once, as when its machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def run_etcd(directory: Path) -> Iterator[EtcdProcess]:
    etcd = EtcdProcess(directory, free_port(), free_port())
    etcd.start()
    try:
        yield etcd
    finally:
        etcd.stop()
