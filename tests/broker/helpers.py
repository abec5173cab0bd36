"""Helpers for the routing and messaging tests: pika connections, waiting, raw AMQP frames.

Everything here talks to the `broker` fixture of tests/conftest.py (anything with `.host` and
`.port`), so the same tests run against Warren and against a RabbitMQ 3.10 reference node.

Waiting never uses fixed long sleeps: `wait_for` pumps pika's I/O loop in short slices until a
condition holds or a deadline passes.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions
from pamqp import commands, frame

DEFAULT_TIMEOUT = 5.0
FRAME_END = 0xCE


TEST_DEADLINE = 60.0


class DeadlineExceeded(Exception):
    """A test ran past its deadline (a broker that never answers would block pika forever)."""


@contextlib.contextmanager
def deadline(seconds: float = TEST_DEADLINE) -> Iterator[None]:
    """Interrupt the block with DeadlineExceeded after `seconds` (SIGALRM, main thread)."""

    def expire(_signum, _frame):
        raise DeadlineExceeded(f"test still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------------
# pika (blocking) helpers
# --------------------------------------------------------------------------------------------


def parameters(broker, **overrides) -> pika.ConnectionParameters:
    """Connection parameters for guest on the default vhost of `broker`."""
    options = {
        "host": broker.host,
        "port": broker.port,
        "credentials": pika.PlainCredentials("guest", "guest"),
        "connection_attempts": 1,
        "socket_timeout": DEFAULT_TIMEOUT,
        "blocked_connection_timeout": 30,
    }
    options.update(overrides)
    return pika.ConnectionParameters(**options)


def connect(broker, **overrides) -> pika.BlockingConnection:
    """A new pika BlockingConnection to `broker`."""
    return pika.BlockingConnection(parameters(broker, **overrides))


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a connection that may already have been closed by the broker."""
    with contextlib.suppress(Exception):
        if connection.is_open:
            connection.close()


@contextlib.contextmanager
def opened(broker, **overrides) -> Iterator[pika.BlockingConnection]:
    """A connection for the duration of a `with` block."""
    connection = connect(broker, **overrides)
    try:
        yield connection
    finally:
        close_quietly(connection)


def wait_for(
    connection: pika.BlockingConnection,
    condition: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT,
) -> bool:
    """Pump the connection's I/O until `condition()` is true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        connection.process_data_events(time_limit=min(0.05, remaining))
    return True


def settle(connection: pika.BlockingConnection, seconds: float = 0.2) -> None:
    """Let in-flight frames arrive; used only to show that something does *not* happen."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        connection.process_data_events(time_limit=remaining)


@dataclass
class Delivery:
    """One message received by a consumer or basic.get."""

    method: object
    properties: pika.BasicProperties
    body: bytes


@dataclass
class Collector:
    """A basic_consume callback that records deliveries; `wait(n)` pumps until n have come."""

    connection: pika.BlockingConnection
    deliveries: list[Delivery] = field(default_factory=list)

    def __call__(self, _channel, method, properties, body) -> None:
        self.deliveries.append(Delivery(method, properties, body))

    @property
    def bodies(self) -> list[bytes]:
        return [d.body for d in self.deliveries]

    def wait(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Delivery]:
        reached = wait_for(self.connection, lambda: len(self.deliveries) >= count, timeout)
        assert reached, f"expected {count} deliveries, got {len(self.deliveries)}"
        return self.deliveries


def consume(channel, queue: str, **kwargs) -> tuple[str, Collector]:
    """Start a consumer that collects its deliveries; returns (consumer_tag, collector)."""
    collector = Collector(channel.connection)
    tag = channel.basic_consume(queue, collector, **kwargs)
    return tag, collector


def get_bodies(channel, queue: str, auto_ack: bool = True) -> list[bytes]:
    """basic.get until get-empty; return the bodies in order."""
    bodies = []
    while True:
        method, _properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return bodies
        bodies.append(body)


def message_count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def reply_text(text: str) -> str:
    """A reply text as RabbitMQ sends it: a shortstr, so over 255 bytes it keeps the first 252
    bytes and appends '...'."""
    data = text.encode()
    if len(data) <= 255:
        return text
    return (data[:252] + b"...").decode(errors="replace")


def channel_error(action: Callable[[], object]) -> tuple[int, str]:
    """Run `action`, which must make the broker close the channel; return (code, text)."""
    try:
        action()
    except pika.exceptions.ChannelClosedByBroker as error:
        return error.reply_code, error.reply_text
    raise AssertionError("the broker did not close the channel")


def connection_error(action: Callable[[], object]) -> tuple[int, str]:
    """Run `action`, which must make the broker close the connection; return (code, text)."""
    try:
        action()
    except pika.exceptions.ConnectionClosedByBroker as error:
        return error.reply_code, error.reply_text
    raise AssertionError("the broker did not close the connection")


def channel_error_after(
    channel, action: Callable[[], object], timeout: float = DEFAULT_TIMEOUT
) -> tuple[int, str]:
    """For asynchronous methods (publish, ack...): run `action`, then pump until the broker
    closes the channel; return the broker's (code, text)."""
    try:
        action()
        wait_for(channel.connection, lambda: channel.is_closed, timeout)
    except pika.exceptions.ChannelClosedByBroker as error:
        return error.reply_code, error.reply_text
    # BlockingChannel keeps the reason of a close it learnt about while pumping.
    reason = getattr(channel, "_closing_reason", None)
    if isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        return reason.reply_code, reason.reply_text
    raise AssertionError("the broker did not close the channel")


def connection_error_after(
    connection: pika.BlockingConnection,
    action: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, str]:
    """Run `action`, then pump until the broker closes the connection; return (code, text)."""
    try:
        action()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
    except pika.exceptions.ConnectionClosedByBroker as error:
        return error.reply_code, error.reply_text
    raise AssertionError("the broker did not close the connection")


# --------------------------------------------------------------------------------------------
# raw AMQP over a socket (pamqp for methods, bytes kept as sent/received for content)
# --------------------------------------------------------------------------------------------


@dataclass
class RawFrame:
    """A frame as read from the socket: type, channel and the untouched payload bytes."""

    kind: int
    channel: int
    payload: bytes

    def method(self):
        assert self.kind == 1, f"expected a method frame, got type {self.kind}"
        return frame.unmarshal(self.encoded())[2]

    def encoded(self) -> bytes:
        return (
            struct.pack(">BHI", self.kind, self.channel, len(self.payload))
            + self.payload
            + bytes([FRAME_END])
        )


def safe_name(name: str) -> str:
    """A name pamqp accepts (its queue-name regex): parametrized test ids contain brackets."""
    return re.sub(r"[^a-zA-Z0-9_.:@#,/+ -]", "-", name)


def short_str(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">B", len(data)) + data


def field(name: str, kind: str, value: bytes) -> bytes:
    """One field-table entry with its exact wire bytes: name, type octet, encoded value."""
    return short_str(name) + kind.encode() + value


def field_table(*fields: bytes) -> bytes:
    """A field table (long length prefix) from `field(...)` entries, in the given order."""
    data = b"".join(fields)
    return struct.pack(">I", len(data)) + data


HEADERS_FLAG = 0x2000


def content_header_payload(body_size: int, property_flags: int, properties: bytes) -> bytes:
    """A basic content header payload: class 60, weight 0, size, flags, property bytes."""
    return struct.pack(">HHQH", 60, 0, body_size, property_flags) + properties


class RawClient:
    """A minimal AMQP client over a plain socket, for checks that need exact bytes."""

    def __init__(self, broker, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = socket.create_connection((broker.host, broker.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.frame_max = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sending
    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method) -> None:
        self.send_bytes(frame.marshal(method, channel))

    def send_frame(self, kind: int, channel: int, payload: bytes) -> None:
        self.send_bytes(RawFrame(kind, channel, payload).encoded())

    def publish_raw(
        self,
        channel: int,
        exchange: str,
        routing_key: str,
        header_payload: bytes,
        body_frames: list[bytes],
    ) -> None:
        """basic.publish followed by a hand-made content header and the given body frames."""
        data = frame.marshal(
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key), channel
        )
        data += RawFrame(2, channel, header_payload).encoded()
        for chunk in body_frames:
            data += RawFrame(3, channel, chunk).encoded()
        self.send_bytes(data)

    # -- receiving
    def read_frame(self, timeout: float = DEFAULT_TIMEOUT) -> RawFrame:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 7:
                kind, channel, size = struct.unpack_from(">BHI", self.buffer)
                if len(self.buffer) >= 8 + size:
                    payload = bytes(self.buffer[7 : 7 + size])
                    assert self.buffer[7 + size] == FRAME_END, "bad frame end"
                    del self.buffer[: 8 + size]
                    if kind == 8:  # heartbeat
                        continue
                    return RawFrame(kind, channel, payload)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("socket closed by the broker")
            self.buffer += chunk

    def expect_method(self, kind: type, timeout: float = DEFAULT_TIMEOUT):
        received = self.read_frame(timeout).method()
        assert isinstance(received, kind), f"expected {kind.__name__}, got {received!r}"
        return received

    # -- handshake
    def handshake(self, vhost: str = "/", frame_max: int = 0) -> None:
        """Protocol header, start/tune/open as guest; channel 1 opened."""
        self.send_bytes(b"AMQP\x00\x00\x09\x01")
        self.expect_method(commands.Connection.Start)
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "product": "warren-raw-test",
                    "capabilities": {
                        "consumer_cancel_notify": True,
                        "basic.nack": True,
                        "publisher_confirms": True,
                    },
                },
                mechanism="PLAIN",
                response="\x00guest\x00guest",
                locale="en_US",
            ),
        )
        tune = self.expect_method(commands.Connection.Tune)
        self.frame_max = min(tune.frame_max, frame_max) if frame_max else tune.frame_max
        self.send_method(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        self.expect_method(commands.Connection.OpenOk)
        self.send_method(1, commands.Channel.Open())
        self.expect_method(commands.Channel.OpenOk)

    def read_message(
        self, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[object, RawFrame, list[RawFrame]]:
        """The next delivered message: (deliver or get-ok method, header frame, body frames)."""
        method = self.read_frame(timeout).method()
        header_frame = self.read_frame(timeout)
        assert header_frame.kind == 2, (
            f"expected a content header, got frame type {header_frame.kind}"
        )
        (size,) = struct.unpack_from(">Q", header_frame.payload, 4)
        bodies: list[RawFrame] = []
        while sum(len(b.payload) for b in bodies) < size:
            body_frame = self.read_frame(timeout)
            assert body_frame.kind == 3, f"expected a body frame, got type {body_frame.kind}"
            bodies.append(body_frame)
        return method, header_frame, bodies


@contextlib.contextmanager
def raw_client(broker, **handshake_options) -> Iterator[RawClient]:
    client = RawClient(broker)
    try:
        client.handshake(**handshake_options)
        yield client
    finally:
        client.close()
