"""Broker CPU time per message on the frame hot path: basic.publish + content header + body in,
basic.deliver out and basic.ack in, measured on the broker process (utime + stime), which a
loaded machine disturbs far less than wall-clock rates.

A raw-socket client (standard library only) declares a queue, sends N messages (16-byte body,
content_type and delivery_mode 1) in batches of 500 as fast as the socket takes them, waits
until the queue holds them all, then consumes them with prefetch 1000 and acks each one
(multiple=false, sent 100 at a time). Printed: CPU seconds per 100,000 messages of the broker
for each phase, and the publish phase's wall-clock rate.

--trace switches the firehose of / on before measuring, with nothing bound to amq.rabbitmq.trace
(no copy is made then); --trace-key KEY also binds a queue to it with KEY (one that matches no
copy, say `none`: each copy is made and routed, none kept).

--tree runs Warren from another checkout, to compare two commits on the same machine:

    git archive <commit> | tar -x -C /tmp/before
    python3 benchmarks/frame_cpu.py --tree /tmp/before --tree . --repeat 5
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (
    AMQP_HEADER,
    REPO_ROOT,
    BenchError,
    cpu_seconds,
    free_port,
    stop_process_group,
    wait_for_amqp,
)


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


def method(channel: int, class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + arguments)


def shortstr(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


class Client:
    """Just enough AMQP: a handshake as guest on /, frames read raw."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def read(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 7:
                size = struct.unpack_from(">I", self.buffer, 3)[0]
                if len(self.buffer) >= size + 8:
                    frame_type, payload = self.buffer[0], bytes(self.buffer[7:7 + size])
                    del self.buffer[:size + 8]
                    return frame_type, payload
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise BenchError("the broker closed the connection")
            self.buffer += chunk

    def expect(self, class_id: int, method_id: int) -> bytes:
        while True:
            frame_type, payload = self.read()
            if frame_type == 1:
                got = struct.unpack_from(">HH", payload)
                if got != (class_id, method_id):
                    raise BenchError(f"expected {(class_id, method_id)}, got {payload[:60]!r}")
                return payload

    def handshake(self) -> None:
        self.sock.sendall(AMQP_HEADER)
        self.expect(10, 10)
        self.sock.sendall(method(0, 10, 11, longstr(b"") + shortstr(b"PLAIN")
                                 + longstr(b"\0guest\0guest") + shortstr(b"en_US")))
        self.expect(10, 30)
        self.sock.sendall(method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
                          + method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\0"))
        self.expect(10, 41)
        self.sock.sendall(method(1, 20, 10, shortstr(b"")))
        self.expect(20, 11)

    def queue_count(self, queue: bytes) -> int:
        self.sock.sendall(method(1, 50, 10, b"\0\0" + shortstr(queue) + b"\x01" + longstr(b"")))
        payload = self.expect(50, 11)
        return struct.unpack_from(">I", payload, 5 + payload[4])[0]


def measure(port: int, pid: int, count: int,
            trace_key: str | None = None) -> tuple[float, float, float]:
    """(publish CPU s/100k, deliver+ack CPU s/100k, publish msg/s) for one run."""
    client = Client(port)
    client.handshake()
    if trace_key is not None:  # an exclusive queue bound to the trace exchange with it
        client.sock.sendall(method(1, 50, 10, b"\0\0" + shortstr(b"frame-cpu-traces")
                                   + b"\x04" + longstr(b"")))
        client.expect(50, 11)
        client.sock.sendall(method(1, 50, 20, b"\0\0" + shortstr(b"frame-cpu-traces")
                                   + shortstr(b"amq.rabbitmq.trace")
                                   + shortstr(trace_key.encode()) + b"\0" + longstr(b"")))
        client.expect(50, 21)
    queue = f"frame-cpu-{time.monotonic_ns()}".encode()
    client.sock.sendall(method(1, 50, 10, b"\0\0" + shortstr(queue) + b"\x08" + longstr(b"")))
    client.expect(50, 11)
    message = (method(1, 60, 40, b"\0\0" + shortstr(b"") + shortstr(queue) + b"\0")
               + frame(2, 1, struct.pack(">HHQ", 60, 0, 16) + b"\x90\x00"
                       + shortstr(b"text/plain") + b"\x01")
               + frame(3, 1, b"x" * 16))
    batch = message * 500
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    for _ in range(count // 500):
        client.sock.sendall(batch)
    while client.queue_count(queue) < count:
        time.sleep(0.05)
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    client.sock.sendall(method(1, 60, 10, struct.pack(">IHB", 0, 1000, 0)))
    client.expect(60, 11)
    client.sock.sendall(method(1, 60, 20, b"\0\0" + shortstr(queue) + shortstr(b"c") + b"\0"
                               + longstr(b"")))
    client.expect(60, 21)
    received, tags = 0, []
    while received < count:
        frame_type, payload = client.read()
        if frame_type == 1 and payload[:4] == b"\x00\x3c\x00\x3c":  # basic.deliver
            tags.append(struct.unpack_from(">Q", payload, 5 + payload[4])[0])
            received += 1
            if len(tags) == 100 or received == count:
                client.sock.sendall(b"".join(
                    method(1, 60, 80, struct.pack(">QB", tag, 0)) for tag in tags))
                tags = []
    client.sock.sendall(method(1, 60, 10, struct.pack(">IHB", 0, 1000, 0)))
    client.expect(60, 11)  # every ack before it is handled
    cpu2 = cpu_seconds(pid)
    client.sock.close()
    per = 100_000 / count
    return (cpu1 - cpu0) * per, (cpu2 - cpu1) * per, count / (wall1 - wall0)


def trace_on(management_port: int) -> None:
    """PUT /api/vhosts/%2F {"tracing": true}, once the management port answers."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{management_port}/api/vhosts/%2F", data=b'{"tracing": true}',
        method="PUT", headers={"content-type": "application/json", "authorization":
                               "Basic " + base64.b64encode(b"guest:guest").decode()})
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def run_tree(tree: Path, count: int, workdir: Path, trace: bool = False,
             trace_key: str | None = None) -> tuple[float, float, float]:
    port, management_port = free_port(), free_port()
    data_dir = Path(tempfile.mkdtemp(dir=workdir))
    with open(data_dir / "warren.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker", "--port", str(port), "--management-port",
             str(management_port), "--data-dir", str(data_dir / "data"), "--log-level",
             "warning"],
            cwd=tree, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_amqp(port, process, timeout=30)
        if trace or trace_key is not None:
            trace_on(management_port)
        return measure(port, process.pid, count, trace_key)
    finally:
        stop_process_group(process, grace=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path,
                        help="a checkout to run Warren from (repeatable; default: this one)")
    parser.add_argument("--count", type=int, default=300_000, help="messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tree, alternating")
    parser.add_argument("--trace", action="store_true",
                        help="switch the firehose of / on (nothing bound to its exchange)")
    parser.add_argument("--trace-key", help="--trace, with a queue bound to the trace "
                        "exchange with this key (one that matches nothing: copies made, none kept)")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [REPO_ROOT]]
    results: dict[Path, list[tuple[float, float, float]]] = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeat):
            for tree in trees:
                results[tree].append(run_tree(tree, args.count, Path(workdir), args.trace,
                                             args.trace_key))
    print(f"{'tree':40} {'runs':>4} {'publish cpu-s/100k':>19} {'deliver+ack cpu-s/100k':>23} "
          f"{'publish msg/s':>14}")
    for tree, runs in results.items():
        publish, deliver, rate = (statistics.median(column) for column in zip(*runs, strict=True))
        print(f"{str(tree)[-40:]:40} {len(runs):>4} {publish:>19.2f} {deliver:>23.2f} "
              f"{rate:>14,.0f}")


if __name__ == "__main__":
    main()
