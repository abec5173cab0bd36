"""Helpers of the lifecycle tests: named topology with clean-up, waiting on message counts,
dead-letter arguments, and a typed field-table decoder that reads the exact header bytes a
broker sends (field order and type letters included), which pika's decoded dicts hide."""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pika
import pika.exceptions
import pytest
from client_helpers import Declared, message_count, settle
from pamqp import commands, frame
from raw_amqp import RawAMQP, amqp_name

warren_only = pytest.mark.skipif(
    bool(os.environ.get("WARREN_TEST_AMQP_PORT")),
    reason="Warren extension (RabbitMQ 3.10 has it only on quorum queues)",
)


def dl_args(exchange: str = "", routing_key: str | None = None, **more: Any) -> dict:
    """Queue arguments for dead-lettering to `exchange` (with an optional routing key)."""
    args: dict[str, Any] = {"x-dead-letter-exchange": exchange}
    if routing_key is not None:
        args["x-dead-letter-routing-key"] = routing_key
    for key, value in more.items():
        args["x-" + key.replace("_", "-")] = value
    return args


class Topology(Declared):
    """Queue and exchange names derived from `unique`; everything declared is deleted at the
    end."""

    def __init__(self, broker, unique: str) -> None:
        super().__init__(broker, amqp_name(unique))

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def queue(self, channel, suffix: str, arguments: dict | None = None, **options) -> str:
        name = self.name(suffix)
        self.queues.append(name)
        channel.queue_declare(name, arguments=arguments, **options)
        return name

    def exchange(self, channel, suffix: str, kind: str = "direct", **options) -> str:
        name = self.name(suffix)
        self.exchanges.append(name)
        channel.exchange_declare(name, kind, **options)
        return name


# --------------------------------------------------------------------------------------------
# waiting
# --------------------------------------------------------------------------------------------


# Ready messages by passive declare (never consumes, never resets a TTL).
count = message_count
# Sleep while answering the broker (heartbeats, deliveries).
pump = settle


def wait_until(
    connection, condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.02
) -> float | None:
    """Poll `condition` every `step` s; the monotonic time it first held, or None."""
    end = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() >= end:
            return None
        pump(connection, step)


def wait_count(channel, queue: str, expected: int, timeout: float = 5.0) -> float:
    """Wait for `queue` to hold exactly `expected` ready messages; the time it did."""
    seen: list[int] = []

    def reached() -> bool:
        seen.append(count(channel, queue))
        return seen[-1] == expected

    when = wait_until(channel.connection, reached, timeout)
    assert when is not None, f"{queue}: expected {expected} messages, last count {seen[-1:]}"
    return when


def get_one(channel, queue: str, timeout: float = 3.0):
    """basic.get (auto-ack) until a message comes: (method, properties, body)."""
    result: list = []

    def got() -> bool:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            result.append((method, properties, body))
        return bool(result)

    assert wait_until(channel.connection, got, timeout, step=0.03), f"nothing in {queue}"
    return result[0]


def queue_exists(connection, queue: str) -> bool:
    """Passive declare on a throw-away channel (note: this counts as a use for x-expires)."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error
        assert error.reply_text == f"NOT_FOUND - no queue '{queue}' in vhost '/'"
        return False
    with contextlib.suppress(Exception):
        channel.close()
    return True


# --------------------------------------------------------------------------------------------
# typed field tables from the exact bytes on the wire
# --------------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(">" + fmt, self.data, self.offset)
        self.offset += struct.calcsize(">" + fmt)
        return values[0] if len(values) == 1 else values

    def raw(self, size: int) -> bytes:
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def shortstr(self) -> str:
        return self.raw(self.take("B")).decode()

    def longstr(self) -> bytes:
        return self.raw(self.take("I"))

    def value(self) -> tuple[str, Any]:
        kind = chr(self.take("B"))
        simple = {"t": "?", "b": "b", "B": "B", "s": "h", "u": "H", "I": "i", "i": "I",
                  "l": "q", "L": "Q", "f": "f", "d": "d"}
        if kind in simple:
            return kind, self.take(simple[kind])
        if kind == "D":
            scale, digits = self.take("Bi")
            return kind, Decimal(digits).scaleb(-scale)
        if kind == "S":
            data = self.longstr()
            try:
                return kind, data.decode()
            except UnicodeDecodeError:
                return kind, data
        if kind == "x":
            return kind, self.longstr()
        if kind == "T":
            return kind, self.take("Q")
        if kind == "F":
            return kind, self.table()
        if kind == "A":
            end = self.take("I") + self.offset
            items = []
            while self.offset < end:
                items.append(self.value())
            return kind, items
        if kind == "V":
            return kind, None
        raise AssertionError(f"unknown field type {kind!r}")

    def table(self) -> list[tuple[str, str, Any]]:
        end = self.take("I") + self.offset
        fields = []
        while self.offset < end:
            name = self.shortstr()
            kind, value = self.value()
            fields.append((name, kind, value))
        return fields


def decode_table(data: bytes) -> list[tuple[str, str, Any]]:
    """A field table (with its 4-byte length) as [(name, type letter, value)], in wire order.
    Nested tables are lists of the same triples, arrays lists of (type letter, value)."""
    return _Reader(data).table()


PROPERTY_FLAGS = {
    "content_type": 0x8000, "content_encoding": 0x4000, "headers": 0x2000,
    "delivery_mode": 0x1000, "priority": 0x0800, "correlation_id": 0x0400,
    "reply_to": 0x0200, "expiration": 0x0100, "message_id": 0x0080, "timestamp": 0x0040,
    "type": 0x0020, "user_id": 0x0010, "app_id": 0x0008, "cluster_id": 0x0004,
}


class RawMessage:
    """A message fetched over a raw socket: the get-ok, property flags, typed headers, body."""

    def __init__(self, get_ok, header_payload: bytes, body: bytes) -> None:
        self.get_ok = get_ok
        reader = _Reader(header_payload, 12)
        self.flags = reader.take("H")
        for skipped in ("content_type", "content_encoding"):
            if self.flags & PROPERTY_FLAGS[skipped]:
                reader.shortstr()
        self.headers = reader.table() if self.flags & PROPERTY_FLAGS["headers"] else None
        self.body = body

    def has(self, prop: str) -> bool:
        return bool(self.flags & PROPERTY_FLAGS[prop])

    def header(self, name: str) -> tuple[str, Any]:
        for key, kind, value in self.headers or []:
            if key == name:
                return kind, value
        raise KeyError(name)


def raw_get(broker, queue: str, timeout: float = 3.0) -> RawMessage:
    """basic.get (no-ack) over a raw socket until a message comes; its exact header bytes."""
    end = time.monotonic() + timeout
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        while True:
            amqp.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
            kind, _, payload = amqp.read_raw_frame()
            assert kind == 1, f"expected a method frame, got type {kind}"
            class_method = struct.unpack_from(">HH", payload)
            if class_method == (60, 71):  # get-ok
                get_ok = frame.unmarshal(struct.pack(">BHI", 1, 1, len(payload)) + payload
                                         + b"\xce")[2]
                kind, _, header = amqp.read_raw_frame()
                assert kind == 2, f"expected a content header, got frame type {kind}"
                size = struct.unpack_from(">Q", header, 4)[0]
                body = b""
                while len(body) < size:
                    kind, _, chunk = amqp.read_raw_frame()
                    assert kind == 3
                    body += chunk
                return RawMessage(get_ok, header, body)
            assert class_method == (60, 72), f"unexpected method {class_method}"
            if time.monotonic() >= end:
                raise AssertionError(f"nothing in {queue} within {timeout}s")
            time.sleep(0.03)


def unix_now() -> int:
    return int(time.time())
