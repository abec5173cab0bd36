"""Helpers of the quorum and stream queue tests (issue 13): the marks for tests that run on one
broker only, named queues with clean-up, stream consumers that collect their deliveries, and
waiting on the management API's (lagging) queue figures."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import pytest
from client_helpers import Declared, close_quietly, connect, message_count, settle, wait_for
from management_api import STATS_TIMEOUT, Api, q
from raw_amqp import amqp_name

REFERENCE = bool(os.environ.get("WARREN_TEST_AMQP_PORT"))
# Warren-only behaviour (restarts, warren ctl, Warren's better answers): never against RabbitMQ.
WARREN_ONLY = pytest.mark.skipif(REFERENCE, reason="Warren only")
# RabbitMQ's own answer where Warren is asked to do better: documented, checked on RabbitMQ only.
RABBITMQ_ONLY = pytest.mark.skipif(not REFERENCE, reason="RabbitMQ's answer; Warren does better")

QUORUM = {"x-queue-type": "quorum"}
STREAM = {"x-queue-type": "stream"}


class Queues(Declared):
    """Queue and exchange names derived from `unique`; all are deleted at the end."""

    def __init__(self, broker, unique: str) -> None:
        name = amqp_name(unique)
        # short enough for RabbitMQ's reply texts (shortstr, 255 bytes) to name it in full
        super().__init__(broker, name if len(name) <= 64 else f"{name[:44]}-{name[-19:]}")

    def name(self, suffix: str = "q") -> str:
        name = f"{self.prefix}-{suffix}"
        self.queues.append(name)
        return name

    def quorum(self, channel, suffix: str = "q", **arguments: Any) -> str:
        name = self.name(suffix)
        channel.queue_declare(name, durable=True, arguments={**QUORUM, **dashed(arguments)})
        return name

    def stream(self, channel, suffix: str = "s", **arguments: Any) -> str:
        name = self.name(suffix)
        channel.queue_declare(name, durable=True, arguments={**STREAM, **dashed(arguments)})
        return name

    def classic(self, channel, suffix: str = "c", **options: Any) -> str:
        name = self.name(suffix)
        channel.queue_declare(name, **options)
        return name

    def exchange(self, channel, suffix: str, kind: str = "fanout") -> str:
        name = f"{self.prefix}-{suffix}"
        self.exchanges.append(name)
        channel.exchange_declare(name, kind)
        return name


def dashed(arguments: dict[str, Any]) -> dict[str, Any]:
    """Python keywords as queue arguments: max_length=2 → {"x-max-length": 2}."""
    return {"x-" + key.replace("_", "-"): value for key, value in arguments.items()}


def declare_error(broker, name: str, arguments: dict | None, **options: Any) -> tuple[int, str]:
    """Declare on a fresh connection; the broker must close the channel: (code, text)."""
    connection = connect(broker)
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_declare(name, arguments=arguments, **options)
        return closed.value.reply_code, closed.value.reply_text
    finally:
        close_quietly(connection)


def invalid_arg(arg: str, queue: str, term: str) -> tuple[int, str]:
    return 406, (f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{queue}' in vhost '/': "
                 f"{term}")


def unsupported_arg(arg: str, queue: str, module: str) -> tuple[int, str]:
    return 406, (f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{queue}' in vhost '/' "
                 f"of queue type {module}")


def invalid_property(prop: str, queue: str) -> tuple[int, str]:
    return 406, f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{queue}' in vhost '/'"


def queue_text(queue: str) -> str:
    """How RabbitMQ names a queue in its texts."""
    return f"queue '{queue}' in vhost '/'"


def wait_count(channel, queue: str, expected: int, timeout: float = 5.0) -> None:
    """Wait for a passive declare to report `expected` messages (a stream's count lags its
    appends a little in RabbitMQ)."""
    seen: list[int] = []

    def reached() -> bool:
        seen.append(message_count(channel, queue))
        return seen[-1] == expected

    assert wait_for(channel.connection, reached, timeout), f"{queue}: {seen[-1:]} != {expected}"


# --------------------------------------------------------------------------------------------
# consumers
# --------------------------------------------------------------------------------------------


class StreamReader:
    """A stream consumer on its own connection: basic.qos prefetch, optional x-stream-offset,
    acks every delivery when `ack` (streams give credit back on ack)."""

    def __init__(self, broker, queue: str, offset: Any = None, prefetch: int = 100,
                 ack: bool = True) -> None:
        self.connection = connect(broker)
        self.channel = self.connection.channel()
        self.channel.basic_qos(prefetch_count=prefetch)
        self.ack = ack
        self.deliveries: list[tuple[Any, pika.BasicProperties, bytes]] = []
        arguments = {} if offset is None else {"x-stream-offset": offset}
        self.tag = self.channel.basic_consume(queue, self.on_message, arguments=arguments)

    def on_message(self, channel, method, properties, body) -> None:
        self.deliveries.append((method, properties, body))
        if self.ack:
            channel.basic_ack(method.delivery_tag)

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, _, body in self.deliveries]

    @property
    def offsets(self) -> list[int]:
        return [properties.headers["x-stream-offset"] for _, properties, _ in self.deliveries]

    def wait(self, count: int, timeout: float = 5.0) -> list[bytes]:
        reached = wait_for(self.connection, lambda: len(self.deliveries) >= count, timeout)
        assert reached, f"expected {count} deliveries, got {self.bodies}"
        return self.bodies

    def idle(self, seconds: float = 0.5) -> list[bytes]:
        """Pump for `seconds` (to show that nothing more comes); the bodies so far."""
        settle(self.connection, seconds)
        return self.bodies

    def close(self) -> None:
        close_quietly(self.connection)


@contextlib.contextmanager
def stream_reader(broker, queue: str, offset: Any = None, **options: Any):
    reader = StreamReader(broker, queue, offset, **options)
    try:
        yield reader
    finally:
        reader.close()


def publish_each(channel, queue: str, bodies: list[bytes], **properties: Any) -> None:
    """Publish one by one on a confirm-mode channel (each confirmed before the next), so a
    stream holds one message per chunk and offsets are 0, 1, 2..."""
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**properties))


# --------------------------------------------------------------------------------------------
# management API
# --------------------------------------------------------------------------------------------


def api_queue(api: Api, queue: str, ready: Callable[[dict], bool], keys: tuple[str, ...] = (),
              timeout: float = STATS_TIMEOUT) -> dict:
    """GET /api/queues/%2F/{queue} until `ready(answer)` and every one of `keys` is there
    (RabbitMQ's statistics lag, and fill the object in parts)."""
    end = time.monotonic() + timeout
    while True:
        answer = api.ok_json(f"/api/queues/%2F/{q(queue)}")
        if (ready(answer) and all(key in answer for key in keys)) or time.monotonic() >= end:
            return answer
        time.sleep(0.25)
