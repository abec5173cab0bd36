"""Helpers of the lifecycle tests on priorities, single active consumer, delayed messages and
policies (test_priority.py, test_single_active_consumer.py, test_consumer_priority.py,
test_delayed.py, test_policies.py): several pika connections pumped together, hand-made
argument tables over a raw socket, and the rabbitmqctl calls that set policies on a RabbitMQ
reference node.

The raw helpers use tests/raw_amqp.py (raw_client, short_str).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pika
from pamqp import commands
from raw_amqp import raw_client, short_str

REFERENCE = bool(os.environ.get("WARREN_TEST_AMQP_PORT"))
RABBITMQCTL_NODE = os.environ.get("WARREN_TEST_RABBITMQCTL_NODE", "rabbit-ref@localhost")


def pump(connections: Iterable[pika.BlockingConnection], seconds: float) -> None:
    """Process the I/O of every open connection for `seconds` (to show what does not happen,
    or to let in-flight frames arrive)."""
    connections = list(connections)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for connection in connections:
            if connection.is_open:
                connection.process_data_events(time_limit=0.01)


def pump_until(
    connections: Iterable[pika.BlockingConnection],
    condition: Callable[[], bool],
    timeout: float = 5.0,
) -> bool:
    """Process the I/O of every open connection until `condition()` holds or `timeout`."""
    connections = list(connections)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        for connection in connections:
            if connection.is_open:
                connection.process_data_events(time_limit=0.01)
    return True


@dataclass
class Received:
    """One delivery seen by a `Recorder`."""

    name: str
    body: bytes
    redelivered: bool
    delivery_tag: int
    properties: pika.BasicProperties
    exchange: str = ""
    routing_key: str = ""
    at: float = 0.0


@dataclass
class Recorder:
    """Collects the deliveries of several consumers in arrival order; `callback(name)` is a
    basic_consume callback that records under `name`."""

    deliveries: list[Received] = field(default_factory=list)

    def callback(self, name: str):
        def record(_channel, method, properties, body) -> None:
            self.deliveries.append(
                Received(name, body, method.redelivered, method.delivery_tag, properties,
                         method.exchange, method.routing_key, time.monotonic())
            )

        return record

    def of(self, name: str) -> list[bytes]:
        return [d.body for d in self.deliveries if d.name == name]

    def names(self) -> list[str]:
        return [d.name for d in self.deliveries]

    def pairs(self) -> list[tuple[str, bytes]]:
        return [(d.name, d.body) for d in self.deliveries]

    def clear(self) -> None:
        self.deliveries.clear()


def publish_bodies(channel, queue: str, bodies: Iterable[bytes | str], exchange: str = "",
                   properties: pika.BasicProperties | None = None) -> None:
    for body in bodies:
        data = body.encode() if isinstance(body, str) else body
        channel.basic_publish(exchange, queue, data, properties)


def get_all(channel, queue: str, auto_ack: bool = True) -> list[tuple]:
    """basic.get until empty: (method, properties, body) triples."""
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return found
        found.append((method, properties, body))


# --------------------------------------------------------------------------------------------
# raw frames with hand-made argument tables (field types pika cannot produce)
# --------------------------------------------------------------------------------------------


def raw_close(method) -> tuple[int, str, int, int] | None:
    """(code, text, class, method) if `method` is a channel/connection close, else None."""
    if isinstance(method, commands.Channel.Close | commands.Connection.Close):
        return method.reply_code, method.reply_text, method.class_id, method.method_id
    return None


def raw_queue_declare(broker, queue: str, arguments: bytes, auto_delete: bool = True):
    """queue.declare with `arguments` as exact field-table bytes; the broker's answer."""
    with raw_client(broker) as client:
        flags = 0b01000 if auto_delete else 0
        payload = (struct.pack(">HHH", 50, 10, 0) + short_str(queue) + bytes([flags])
                   + arguments)
        client.send_raw_frame(1, 1, payload)
        answer = client.read_raw_frame().method()
        if isinstance(answer, commands.Queue.DeclareOk):
            client.send_method(1, commands.Queue.Delete(queue=queue))
            client.read_raw_frame()
        return answer


def raw_basic_consume(broker, queue: str, arguments: bytes):
    """Declare `queue` (auto-delete), then basic.consume with `arguments` as exact field-table
    bytes; the broker's answer to the consume."""
    with raw_client(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        client.expect(commands.Queue.DeclareOk)
        payload = (struct.pack(">HHH", 60, 20, 0) + short_str(queue) + short_str("")
                   + bytes([0]) + arguments)
        client.send_raw_frame(1, 1, payload)
        answer = client.read_raw_frame().method()
        # clean up: the queue was never consumed from, so auto-delete never happens
        channel = 1
        if isinstance(answer, commands.Channel.Close):
            client.send_method(1, commands.Channel.CloseOk())
            channel = 2
            client.send_method(channel, commands.Channel.Open())
            client.expect(commands.Channel.OpenOk)
        if not isinstance(answer, commands.Connection.Close):
            client.send_method(channel, commands.Queue.Delete(queue=queue))
            while not isinstance(client.read_raw_frame().method(), commands.Queue.DeleteOk):
                pass
        return answer


# --------------------------------------------------------------------------------------------
# rabbitmqctl (reference node only)
# --------------------------------------------------------------------------------------------


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-n", RABBITMQCTL_NODE, *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"rabbitmqctl {args}: {done.stdout}{done.stderr}"
    return done.stdout


def reference_set_policies(policies: list[dict]) -> None:
    """Import `policies` (definitions-file entries) into the reference node, and wait until
    every one is listed."""
    rabbitmqctl("import_definitions", stdin=json.dumps({"policies": policies}))
    wanted = {(p["vhost"], p["name"]) for p in policies}
    deadline = time.monotonic() + 20
    while True:
        present = set()
        for vhost in {p["vhost"] for p in policies}:
            listed = json.loads(
                rabbitmqctl("list_policies", "-q", "-p", vhost, "--formatter", "json") or "[]"
            )
            present |= {(entry["vhost"], entry["name"]) for entry in listed}
        if wanted <= present:
            return
        assert time.monotonic() < deadline, f"policies not imported: {wanted - present}"
        time.sleep(0.2)


def reference_clear_policies(policies: list[dict]) -> None:
    terms = ", ".join(
        f'{{<<"{p["vhost"]}">>, <<"{p["name"]}">>}}' for p in policies
    )
    rabbitmqctl("eval", f'[rabbit_policy:delete(V, N, <<"tests">>) || {{V, N}} <- [{terms}]].')
