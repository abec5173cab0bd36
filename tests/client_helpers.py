"""Helpers of the tests that use client libraries: a per-test deadline, pika connections,
waiting, consumers that collect deliveries, and reading the broker's channel/connection closes.
The raw-socket client is tests/raw_amqp.py; the fixtures are in tests/conftest.py.

Everything here talks to the `broker` fixture of tests/conftest.py (anything with `.host` and
`.port`), so the same tests run against Warren and against a RabbitMQ 3.10 reference node.

Waiting never uses fixed long sleeps: `wait_for` pumps pika's I/O loop in short slices until a
condition holds or a deadline passes.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pika
import pika.exceptions

DEFAULT_TIMEOUT = 5.0
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


class Declared:
    """The queues and exchanges a test declared under `prefix`; all are deleted at the end, on a
    fresh connection (a test may leave its own channel or connection closed)."""

    def __init__(self, broker, prefix: str) -> None:
        self.broker = broker
        self.prefix = prefix
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def cleanup(self) -> None:
        if not (self.queues or self.exchanges):
            return
        connection = connect(self.broker)
        try:
            channel = connection.channel()
            for queue in self.queues:
                channel.queue_delete(queue)
            for exchange in self.exchanges:
                channel.exchange_delete(exchange)
        finally:
            close_quietly(connection)


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
