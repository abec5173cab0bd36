"""Shared helpers of the benchmark scripts: finding, starting and stopping brokers, probing AMQP,
running the C clients, reading a process's memory and counting its fsyncs.

Standard library only. The scripts import it as `common` (they run from this directory).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = REPO_ROOT / "benchmarks" / "bin"
AMQPERF = BIN_DIR / "amqperf"
CONFIRMLAT = BIN_DIR / "confirmlat"
RABBITMQ_SERVER_CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
QUEUE_PREFIX = "amqperf-bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A run that did not complete: the broker or the client failed or timed out."""


@dataclass
class Broker:
    """A broker under test: its label, AMQP port and, if we started it, its process and log."""

    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    product: str = ""
    queue_seq: int = 0  # bumped after a failed run so leftovers never pollute the next one
    queue_prefix: str = QUEUE_PREFIX

    @property
    def queue(self) -> str:
        return f"{self.queue_prefix}-{self.queue_seq}" if self.queue_seq else self.queue_prefix

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.process.returncode}")


@dataclass
class Results:
    """All samples of one broker (dataclasses of figures), plus the errors of failed runs."""

    samples: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, attribute: str) -> float | None:
        values = [getattr(s, attribute) for s in self.samples]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


# --- ports and AMQP probing ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe_amqp(port: int) -> str | None:
    """Return the server's "product version" if an AMQP 0-9-1 broker answers on port, else None.

    Sends the protocol header and reads the connection.start frame (frame type 1, channel 0).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(AMQP_HEADER)
            data = b""
            while len(data) < 7 or len(data) < 8 + struct.unpack_from(">I", data, 3)[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    if data[0] != 1:
        return None
    product, version = server_property(data, b"product"), server_property(data, b"version")
    information = server_property(data, b"information")
    if information.startswith("Warren "):  # Warren says RabbitMQ in `product`, for clients
        return information.split(". ", 1)[0]  # "Warren 0.1.0"
    return f"{product} {version}".strip() or "unknown AMQP broker"


def server_property(frame: bytes, key: bytes) -> str:
    """A long-string server property of connection.start, found by its key (good enough here)."""
    marker = bytes([len(key)]) + key + b"S"
    at = frame.find(marker)
    if at < 0:
        return ""
    start = at + len(marker) + 4
    (length,) = struct.unpack_from(">I", frame, start - 4)
    return frame[start : start + length].decode("utf-8", "replace")


def wait_for_amqp(port: int, process: subprocess.Popen[bytes] | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(f"broker exited early with code {process.returncode}")
        product = probe_amqp(port)
        if product:
            return product
        time.sleep(0.2)
    raise BenchError(f"no AMQP broker answered on port {port} within {timeout:.0f}s")


# --- processes: who listens, how much memory --------------------------------------------------


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (found through /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in inodes:
                        return int(entry.name)
    return None


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (from /proc/PID/status), or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def tree_size(path: Path) -> int:
    """Bytes in the regular files under path."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process, all threads (fields 14 and 15 of /proc/PID/stat)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS



# --- starting and stopping brokers --------------------------------------------------------------


def stop_process_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group we created for a broker, then SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        print(f"note: process {process.pid} ignored SIGTERM for {grace:.0f}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class WarrenSpec:
    """How to (re)start one Warren: the same ports and data directory every time."""

    data_dir: Path
    log_dir: Path
    extra_args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    launches: int = 0


def launch_warren(spec: WarrenSpec) -> Broker:
    """Start `python -m broker` from the repository root; do not wait for it to listen.

    The first launch logs to warren.log, later ones to warren-2.log, warren-3.log, ...
    """
    spec.launches += 1
    suffix = "" if spec.launches == 1 else f"-{spec.launches}"
    log_path = spec.log_dir / f"warren{suffix}.log"
    args = [
        sys.executable, "-m", "broker",
        "--port", str(spec.port),
        "--management-port", str(spec.management_port),
        "--data-dir", str(spec.data_dir),
        *spec.extra_args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Broker("Warren", spec.port, process, log_path)


@contextlib.contextmanager
def started_warren(workdir: Path, extra_args: list[str]) -> Iterator[Broker | None]:
    """Run `python -m broker` from the repository root on free ports; yield None if it fails."""
    broker = launch_warren(WarrenSpec(workdir / "warren-data", workdir, list(extra_args)))
    assert broker.process is not None and broker.log_path is not None
    try:
        try:
            broker.product = wait_for_amqp(broker.port, broker.process, timeout=30)
        except BenchError as exc:
            tail = broker.log_path.read_text(errors="replace")[-2000:]
            print(f"note: Warren did not start ({exc}). Its output:\n{tail}")
            yield None
            return
        yield broker
    finally:
        stop_process_group(broker.process, grace=10)


def rabbitmq_server_binary() -> str | None:
    for candidate in RABBITMQ_SERVER_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


@dataclass
class RabbitSpec:
    """How to (re)start one private RabbitMQ node: the same name, ports and files every time."""

    server: str
    base: Path
    nodename: str
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    launches: int = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # the Erlang cookie goes here
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
        }


def rabbit_spec(workdir: Path, label: str = "rabbitmq") -> RabbitSpec | None:
    """A private node (no plugins) under workdir/label; None if rabbitmq-server is missing."""
    server = rabbitmq_server_binary()
    if server is None:
        print("note: rabbitmq-server not found (apt-get install -y rabbitmq-server)")
        return None
    base = workdir / label
    base.mkdir()
    (base / "enabled_plugins").write_text("[].\n")
    return RabbitSpec(server, base, f"{label}-{os.getpid()}@localhost")


def launch_rabbitmq(spec: RabbitSpec) -> Broker:
    """Start the node's rabbitmq-server in its own process group; do not wait for it."""
    spec.launches += 1
    suffix = "" if spec.launches == 1 else f"-{spec.launches}"
    log_path = spec.base / f"startup{suffix}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [spec.server], env=spec.env(), cwd=spec.base, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Broker("RabbitMQ", spec.port, process, log_path)


@contextlib.contextmanager
def started_rabbitmq(workdir: Path) -> Iterator[Broker | None]:
    """Start a private RabbitMQ node (no plugins) on free ports; yield None if that fails."""
    spec = rabbit_spec(workdir)
    if spec is None:
        yield None
        return
    broker = launch_rabbitmq(spec)
    assert broker.process is not None
    try:
        try:
            broker.product = wait_for_amqp(broker.port, broker.process, timeout=120)
        except BenchError as exc:
            print(f"note: could not start RabbitMQ ({exc}); see {spec.base / 'log'}")
            yield None
            return
        yield broker
    finally:
        stop_process_group(broker.process, grace=30)


def existing_broker(name: str, port: int) -> Broker | None:
    product = probe_amqp(port)
    if product is None:
        print(f"note: no AMQP broker answers on 127.0.0.1:{port}; {name} is left out")
        return None
    return Broker(name, port, product=product)


# --- running the C clients ----------------------------------------------------------------------


def parse_amqperf(output: str) -> dict[str, str]:
    """amqperf and confirmlat print one line of key=value pairs; return them as a dict."""
    lines = [line for line in output.splitlines() if "=" in line]
    if not lines:
        raise BenchError(f"unexpected client output: {output!r}")
    return dict(pair.split("=", 1) for pair in lines[-1].split())


def amqperf(broker: Broker, mode: str, *args: str) -> list[str]:
    return [str(AMQPERF), mode, "--port", str(broker.port), "--queue", broker.queue, *args]


def confirmlat(broker: Broker, mode: str, *args: str) -> list[str]:
    return [str(CONFIRMLAT), mode, "--port", str(broker.port), "--queue", broker.queue, *args]


def queue_count(broker: Broker) -> int | None:
    """Messages in the broker's queue (queue.declare passive), or None if it cannot say yet."""
    try:
        out = subprocess.run(
            confirmlat(broker, "count"), capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    return int(parse_amqperf(out.stdout)["messages"])


# --- counting a process's fsyncs ----------------------------------------------------------------


FSYNC_SYSCALLS = ("fsync", "fdatasync")


def fsync_tool(preference: str) -> str | None:
    """The tool to count fsyncs with: "perf" (kernel tracepoints, no slowdown of the traced
    process) if it works here, else "strace" (ptrace: slows the process down), else None."""
    candidates = ["perf", "strace"] if preference == "auto" else [preference]
    for tool in candidates:
        if tool == "perf" and shutil.which("perf"):
            probe = subprocess.run(
                ["perf", "stat", "-e", "syscalls:sys_enter_fsync", "--", "true"],
                capture_output=True,
            )  # fmt: skip
            if probe.returncode == 0:
                return "perf"
        if tool == "strace" and shutil.which("strace"):
            return "strace"
    return None


@dataclass
class FsyncCount:
    """fsync + fdatasync calls of one process while a `counting_fsyncs` block ran."""

    calls: int | None = None


@contextlib.contextmanager
def counting_fsyncs(pid: int | None, tool: str | None, workdir: Path) -> Iterator[FsyncCount]:
    """Count the fsync and fdatasync calls of every thread of `pid` during the block.

    With perf: `perf stat -e syscalls:sys_enter_fsync,...  -p PID`; with strace:
    `strace -f -c -e trace=fsync,fdatasync -p PID`. Either is stopped with SIGINT at the end.
    The count stays None if there is no tool or no pid.
    """
    result = FsyncCount()
    if pid is None or tool is None:
        yield result
        return
    out = workdir / f"fsyncs-{pid}-{time.monotonic_ns()}.txt"
    if tool == "perf":
        events = ",".join(f"syscalls:sys_enter_{name}" for name in FSYNC_SYSCALLS)
        cmd = ["perf", "stat", "-x", ",", "-e", events, "-p", str(pid), "-o", str(out)]
    else:
        trace = "trace=" + ",".join(FSYNC_SYSCALLS)
        cmd = ["strace", "-f", "-c", "-e", trace, "-p", str(pid), "-o", str(out)]
    tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach to every thread
    try:
        yield result
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
        text = out.read_text(errors="replace") if out.exists() else ""
        result.calls = parse_perf_stat(text) if tool == "perf" else parse_strace_summary(text)


def parse_perf_stat(text: str) -> int | None:
    """Sum the counts of `perf stat -x ,` output lines (value,unit,event,...)."""
    total, seen = 0, False
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[2].startswith("syscalls:") and fields[0].isdigit():
            total += int(fields[0])
            seen = True
    return total if seen else None


def parse_strace_summary(text: str) -> int | None:
    """Sum the calls column of `strace -c` for the fsync syscalls (0 if none was made)."""
    if "% time" not in text:
        return None
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in FSYNC_SYSCALLS and fields[3].isdigit():
            total += int(fields[3])
    return total


# --- report -------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report_log(broker: Broker, lines: int = 20, log_path: Path | None = None) -> None:
    """Point at the broker's log and show its warnings, errors and tracebacks, if any."""
    log_path = log_path or broker.log_path
    if log_path is None or not log_path.exists():
        return
    text = log_path.read_text(errors="replace").splitlines()
    keywords = ("Traceback", "ERROR", "CRITICAL", "WARNING", "Error")
    notable = [line for line in text if any(k in line for k in keywords)]
    print(
        f"\n{broker.name} log {log_path.name}: {len(text)} lines, {len(notable)} with warnings "
        "or errors"
    )
    for line in notable[:lines]:
        print(f"  | {line}")


def run_in_workdir(
    args: argparse.Namespace, prefix: str, run: Callable[[argparse.Namespace, Path], int],
    binaries: tuple[Path, ...] = (),
) -> int:
    """Every benchmark's main: check the load generators are built, run in a temporary
    directory, keep it (brokers' logs and data) when asked or when the run failed."""
    for binary in binaries:
        if not binary.exists():
            print(f"{binary} is missing: run benchmarks/build_amqperf.sh first", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    status = 1
    try:
        status = run(args, workdir)
        return status
    finally:
        if args.keep_logs or status != 0:
            print(f"\nlogs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
