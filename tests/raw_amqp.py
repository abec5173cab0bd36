"""The raw-socket AMQP 0-9-1 client of the tests, for checks that must see exact bytes.

`RawAMQP` is a blocking client built on pamqp: it performs the handshake step by step (so tests
can stop anywhere, or send something wrong on purpose), sends methods, hand-made frames or
arbitrary bytes, and reads frames back, either decoded with `pamqp.frame.unmarshal`
(`read_frame`, `read_method`, `expect`) or as the untouched bytes (`read_raw_frame`, a
`RawFrame`), for content headers pamqp would not decode. Heartbeats are returned like any other
frame so heartbeat tests can count them. `raw_client(broker)` is a handshaken client with
channel 1 open. The field-table builders (`field`, `field_table`, `content_header_payload`)
write argument and property bytes pika cannot produce.

Typical use::

    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Queue.Declare(queue="x"))
        channel, frame = amqp.read_method()
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from pamqp import commands, constants, encode, frame, heartbeat
from pamqp.body import ContentBody
from pamqp.header import ContentHeader, ProtocolHeader

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"


DEFAULT_TIMEOUT = 5.0
HEADERS_FLAG = 0x2000


class ConnectionClosedByPeer(Exception):
    """The broker closed the TCP connection (EOF or reset)."""


def amqp_name(unique: str, prefix: str = "") -> str:
    """A queue/exchange name built from the `unique` fixture that pamqp accepts."""
    return prefix + re.sub(r"[^A-Za-z0-9_.:-]", "_", unique)


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = FRAME_END) -> bytes:
    """Build a frame by hand: type, channel, size, payload, end byte (which may be wrong)."""
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def method_payload(class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    """The payload of a method frame for any (class_id, method_id), even unknown ones."""
    return struct.pack(">HH", class_id, method_id) + arguments


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


def content_header_payload(body_size: int, property_flags: int, properties: bytes) -> bytes:
    """A basic content header payload: class 60, weight 0, size, flags, property bytes."""
    return struct.pack(">HHQH", 60, 0, body_size, property_flags) + properties


class RawFrame(NamedTuple):
    """A frame as read from the socket: type, channel and the untouched payload bytes."""

    kind: int
    channel: int
    payload: bytes

    def method(self):
        assert self.kind == constants.FRAME_METHOD, (
            f"expected a method frame, got type {self.kind}")
        return frame.unmarshal(self.encoded())[2]

    def encoded(self) -> bytes:
        return raw_frame(self.kind, self.channel, self.payload)


def publish_bytes(channel: int, exchange: str, routing_key: str, body: bytes = b"x",
                  mandatory: bool = False,
                  properties: commands.Basic.Properties | None = None) -> bytes:
    """basic.publish, content header and one body frame, as bytes to send in one write (with
    other frames after them, to see what a broker does with frames that arrive together)."""
    return (frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                 mandatory=mandatory), channel)
            + frame.marshal(ContentHeader(0, len(body), properties or commands.Basic.Properties()),
                            channel)
            + frame.marshal(ContentBody(body), channel))


def plain_response(user: str, password: str) -> str:
    """SASL PLAIN response: NUL user NUL password."""
    return f"\0{user}\0{password}"


def amqplain_response(user: str, password: str) -> str:
    """RabbitMQ's AMQPLAIN response: a field table without its 4-byte length prefix."""
    table = encode.field_table({"LOGIN": user, "PASSWORD": password})[4:]
    # pamqp wants a str for longstr fields; the table bytes here are plain ASCII.
    return table.decode("latin-1")


class RawAMQP:
    """A blocking AMQP connection over a plain socket, for byte-level tests."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        self.start: commands.Connection.Start | None = None
        self.tune: commands.Connection.Tune | None = None
        self.frame_max = 0
        sock.settimeout(timeout)

    # -- connection management -------------------------------------------------------------

    @classmethod
    def connect(cls, broker: Any, host: str | None = None, timeout: float = 5.0,
                source: str | None = None) -> RawAMQP:
        """Open a TCP connection to `broker` (an object with .host/.port), from the local
        address `source` if given."""
        sock = socket.create_connection((host or broker.host, broker.port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawAMQP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_method(self, channel: int, method: Any) -> None:
        self.send(frame.marshal(method, channel))

    def send_frame(self, channel: int, value: Any) -> None:
        """Send any pamqp frame object (method, ContentHeader, ContentBody, Heartbeat)."""
        self.send(frame.marshal(value, channel))

    def send_raw_frame(self, kind: int, channel: int, payload: bytes) -> None:
        """Send a frame made by hand from its type, channel and payload bytes."""
        self.send(raw_frame(kind, channel, payload))

    def publish_raw(self, channel: int, exchange: str, routing_key: str,
                    header_payload: bytes, body_frames: list[bytes]) -> None:
        """basic.publish followed by a hand-made content header and the given body frames."""
        data = frame.marshal(
            commands.Basic.Publish(exchange=exchange, routing_key=routing_key), channel)
        data += raw_frame(constants.FRAME_HEADER, channel, header_payload)
        for chunk in body_frames:
            data += raw_frame(constants.FRAME_BODY, channel, chunk)
        self.send(data)

    def send_heartbeat(self) -> None:
        self.send(heartbeat.Heartbeat.marshal())

    # -- receiving ---------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete frame from the broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no complete frame from the broker in time") from None
        except ConnectionResetError as error:
            raise ConnectionClosedByPeer("connection reset") from error
        if not chunk:
            raise ConnectionClosedByPeer("EOF")
        self.buffer += chunk

    def read_bytes(self, count: int, timeout: float | None = None) -> bytes:
        """Exactly `count` raw bytes (for the protocol header a broker answers with)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buffer) < count:
            self._fill(deadline)
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next frame as (channel, pamqp frame object); heartbeats included."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.buffer) >= 8 and self.buffer[:4] != b"AMQP":
                size = struct.unpack_from(">I", self.buffer, 3)[0]
                if len(self.buffer) >= size + 8:
                    consumed, channel, value = frame.unmarshal(self.buffer)
                    self.buffer = self.buffer[consumed:]
                    return channel, value
            self._fill(deadline)

    def read_raw_frame(self, timeout: float | None = None) -> RawFrame:
        """The next frame undecoded, as RawFrame(kind, channel, payload): for content headers
        whose properties pamqp might not decode, and for exact bytes."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buffer) < 7 or len(self.buffer) < 8 + struct.unpack_from(
                ">I", self.buffer, 3)[0]:
            self._fill(deadline)
        frame_type, channel, size = struct.unpack_from(">BHI", self.buffer)
        assert self.buffer[7 + size:8 + size] == FRAME_END, "bad frame end"
        payload, self.buffer = self.buffer[7:7 + size], self.buffer[8 + size:]
        return RawFrame(frame_type, channel, payload)

    def read_message(self, timeout: float | None = None) -> tuple[Any, RawFrame, list[RawFrame]]:
        """The next delivered message: (deliver or get-ok method, header frame, body frames),
        header and bodies undecoded."""
        method = self.read_raw_frame(timeout).method()
        header = self.read_raw_frame(timeout)
        assert header.kind == constants.FRAME_HEADER, (
            f"expected a content header, got frame type {header.kind}")
        (size,) = struct.unpack_from(">Q", header.payload, 4)
        bodies: list[RawFrame] = []
        while sum(len(b.payload) for b in bodies) < size:
            body = self.read_raw_frame(timeout)
            assert body.kind == constants.FRAME_BODY, f"expected a body frame, got {body.kind}"
            bodies.append(body)
        return method, header, bodies

    def read_method(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next non-heartbeat frame as (channel, frame)."""
        while True:
            channel, value = self.read_frame(timeout)
            if not isinstance(value, heartbeat.Heartbeat):
                return channel, value

    def expect(
        self, method_type: type, channel: int | None = None, timeout: float | None = None
    ) -> Any:
        """Read the next non-heartbeat frame and assert its type (and channel)."""
        got_channel, value = self.read_method(timeout)
        assert isinstance(value, method_type), (
            f"expected {method_type.__name__}, got {describe([(got_channel, value)])}")
        if channel is not None:
            assert got_channel == channel, f"{value.name} on channel {got_channel}, not {channel}"
        return value

    def wait_closed(self, timeout: float = 5.0) -> list[tuple[int, Any]]:
        """Read until the broker closes the socket; return the frames read meanwhile.

        Raises TimeoutError if the socket is still open after `timeout` seconds.
        """
        frames: list[tuple[int, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.read_frame(max(deadline - time.monotonic(), 0.001)))
            except ConnectionClosedByPeer:
                return frames
            except TimeoutError:
                raise TimeoutError(f"socket still open after {timeout} s; frames read: "
                                   f"{describe(frames)}") from None

    def is_closed(self, timeout: float = 0.5) -> bool:
        """True if the broker closed the socket within `timeout` (frames read are dropped)."""
        try:
            self.wait_closed(timeout)
        except TimeoutError:
            return False
        return True

    # -- handshake ---------------------------------------------------------------------------

    def send_protocol_header(self) -> None:
        self.send(ProtocolHeader().marshal())

    def start_ok(
        self,
        user: str = "guest",
        password: str = "guest",
        mechanism: str = "PLAIN",
        response: str | None = None,
    ) -> None:
        if response is None:
            if mechanism == "AMQPLAIN":
                response = amqplain_response(user, password)
            else:
                response = plain_response(user, password)
        self.send_method(
            0,
            commands.Connection.StartOk(
                client_properties={
                    "product": "warren-tests",
                    "capabilities": {
                        "authentication_failure_close": True,
                        "consumer_cancel_notify": True,
                    },
                },
                mechanism=mechanism,
                response=response,
                locale="en_US",
            ),
        )

    def handshake(
        self,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        heartbeat: int | None = 0,
        frame_max: int | None = None,
        channel_max: int | None = None,
        mechanism: str = "PLAIN",
        frame_max_at_most: int | None = None,
    ) -> Any:
        """Header, start-ok, tune-ok, open; return connection.open-ok.

        heartbeat/frame_max/channel_max None means "accept what the broker offered";
        frame_max_at_most takes the smaller of it and the offer. The frame_max sent is kept.
        """
        self.send_protocol_header()
        self.start = self.expect(commands.Connection.Start, channel=0)
        self.start_ok(user, password, mechanism)
        self.tune = self.expect(commands.Connection.Tune, channel=0)
        if frame_max is None:
            frame_max = self.tune.frame_max
            if frame_max_at_most:
                frame_max = min(frame_max, frame_max_at_most)
        self.frame_max = frame_max
        self.send_method(
            0,
            commands.Connection.TuneOk(
                channel_max=self.tune.channel_max if channel_max is None else channel_max,
                frame_max=frame_max,
                heartbeat=self.tune.heartbeat if heartbeat is None else heartbeat,
            ),
        )
        self.send_method(0, commands.Connection.Open(virtual_host=vhost))
        return self.read_method()[1]

    def open_channel(self, channel: int = 1) -> commands.Channel.OpenOk:
        self.send_method(channel, commands.Channel.Open())
        return self.expect(commands.Channel.OpenOk, channel=channel)

    def call(self, channel: int, method: Any, timeout: float | None = None) -> Any:
        """Send a method and return the next non-heartbeat frame received on any channel."""
        self.send_method(channel, method)
        return self.read_method(timeout)[1]

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes,
                frame_size: int | None = None) -> None:
        """basic.publish + content header + body frame(s) of at most `frame_size` bytes each."""
        self.send_method(channel, commands.Basic.Publish(exchange=exchange,
                                                          routing_key=routing_key))
        self.send_frame(channel, ContentHeader(0, len(body), commands.Basic.Properties()))
        size = frame_size or len(body) or 1
        for start in range(0, len(body), size):
            self.send_frame(channel, ContentBody(body[start:start + size]))

    def close_connection(self) -> None:
        """Client-initiated connection.close; expects close-ok and then EOF."""
        self.send_method(
            0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)
        )
        self.expect(commands.Connection.CloseOk, channel=0)

    def expect_connection_close(self, timeout: float | None = None) -> commands.Connection.Close:
        """Expect connection.close from the broker, answer close-ok, return the close."""
        close = self.expect(commands.Connection.Close, channel=0, timeout=timeout)
        try:
            self.send_method(0, commands.Connection.CloseOk())
        except OSError:
            pass
        return close

    def expect_channel_close(
        self, channel: int, timeout: float | None = None
    ) -> commands.Channel.Close:
        """Expect channel.close on `channel`, answer close-ok, return the close."""
        close = self.expect(commands.Channel.Close, channel=channel, timeout=timeout)
        self.send_method(channel, commands.Channel.CloseOk())
        return close


@contextmanager
def raw_client(broker: Any, vhost: str = "/", frame_max: int | None = None) -> Iterator[RawAMQP]:
    """A client that has done the handshake as guest (frame_max: at most this, if given) and
    opened channel 1; closed when the block ends."""
    with RawAMQP.connect(broker) as client:
        client.handshake(vhost=vhost, frame_max_at_most=frame_max)
        client.open_channel(1)
        yield client


def describe(frames: list[tuple[int, Any]]) -> str:
    """Readable list of (channel, frame) pairs for assertion messages."""
    parts = []
    for channel, value in frames:
        if hasattr(value, "reply_code"):
            parts.append(f"{value.name}{close_summary(value)} on channel {channel}")
        else:
            parts.append(f"{getattr(value, 'name', type(value).__name__)} on channel {channel}")
    return "[" + ", ".join(parts) + "]"


def close_summary(close: Any) -> tuple[int, str, int, int]:
    """(reply_code, reply_text, class_id, method_id) of a connection/channel close."""
    return close.reply_code, close.reply_text, close.class_id, close.method_id


def assert_broker_works(broker: Any) -> None:
    """A fresh connection can do a full handshake, open a channel and close cleanly."""
    with RawAMQP.connect(broker) as amqp:
        assert isinstance(amqp.handshake(), commands.Connection.OpenOk)
        amqp.open_channel(1)
        amqp.close_connection()
    broker.assert_alive()


FRAME_METHOD = constants.FRAME_METHOD
FRAME_HEADER = constants.FRAME_HEADER
FRAME_BODY = constants.FRAME_BODY
FRAME_HEARTBEAT = constants.FRAME_HEARTBEAT
