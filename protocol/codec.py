"""Frame splitting and method encoding/decoding.

The hot path (basic.publish in, content header and body frames, basic.deliver out, basic.ack in)
is hand-written with `struct`; every other method goes through pamqp. Content-header property
bytes are never re-encoded: they are kept raw from the publisher and copied into the deliver.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands as pamqp_commands
from pamqp import encode as pamqp_encode
from pamqp.base import Frame as PamqpMethod

from protocol import fieldtable
from protocol.constants import (
    FRAME_BODY,
    FRAME_END,
    FRAME_END_BYTE,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_OVERHEAD,
    NOT_IMPLEMENTED,
)
from protocol.errors import AMQPConnectionError, erlang_binary, frame_error

_frame_header = struct.Struct("!BHI")
_method_id = struct.Struct("!I")
_class_method = struct.Struct("!HH")
_content_header = struct.Struct("!HHQ")
_ack = struct.Struct("!QB")
_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_deliver_head = struct.Struct("!BHIHH")
_header_frame_head = struct.Struct("!BHIHHQ")
_body_frame_head = struct.Struct("!BHI")
_tag_and_flag = struct.Struct("!QB")

_KNOWN_FRAME_TYPES = (FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT)
HEARTBEAT_FRAME = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END))

Frame = tuple[int, int, bytes]  # (frame type, channel number, payload)


class FrameReader:
    """Splits a byte stream into frames; keeps an incomplete tail for the next call.

    A frame larger than `frame_max` or without its end octet is a FRAME_ERROR, raised before the
    frame is buffered, so a peer can never make us hold more than one frame_max of input.
    """

    __slots__ = ("_pending", "frame_max")

    def __init__(self, frame_max: int) -> None:
        self._pending = b""
        self.frame_max = frame_max

    def feed(self, data: bytes) -> list[Frame]:
        if self._pending:
            data = self._pending + data
        frames: list[Frame] = []
        offset, size = 0, len(data)
        unpack = _frame_header.unpack_from
        frame_max = self.frame_max
        while size - offset >= 7:
            frame_type, channel, length = unpack(data, offset)
            # Like RabbitMQ, accept payloads up to frame_max (not frame_max - 8), but name
            # frame_max - 8 as the limit when refusing one.
            if length > frame_max:
                raise frame_error(
                    frame_type, b"",
                    f"{{frame_too_large,{length},{frame_max - FRAME_OVERHEAD}}}",
                )
            end = offset + 7 + length
            if end >= size:
                break
            payload = data[offset + 7 : end]
            if data[end] != FRAME_END:
                raise frame_error(frame_type, payload, f"{{invalid_frame_end_marker,{data[end]}}}")
            if frame_type not in _KNOWN_FRAME_TYPES or (
                frame_type == FRAME_METHOD and length < 4
            ) or (frame_type == FRAME_HEARTBEAT and length):
                raise frame_error(frame_type, payload, "unknown_frame")
            frames.append((frame_type, channel, payload))
            offset = end + 1
        self._pending = data[offset:] if offset < size else b""
        return frames

    @property
    def has_partial_frame(self) -> bool:
        return bool(self._pending)


# ---------------------------------------------------------------------------------------------
# Incoming methods


class Publish:
    """basic.publish, decoded by the fast path. `route_bytes` is exchange+key as shortstrs."""

    __slots__ = ("exchange", "routing_key", "mandatory", "immediate", "route_bytes")

    def __init__(
        self, exchange: str, routing_key: str, mandatory: bool, immediate: bool, route_bytes: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.mandatory = mandatory
        self.immediate = immediate
        self.route_bytes = route_bytes


class Ack:
    """basic.ack from a client, decoded by the fast path."""

    __slots__ = ("delivery_tag", "multiple")

    def __init__(self, delivery_tag: int, multiple: bool) -> None:
        self.delivery_tag = delivery_tag
        self.multiple = multiple


def method_index(payload: bytes) -> int:
    """The (class_id << 16 | method_id) of a method frame payload."""
    return _method_id.unpack_from(payload)[0]


def decode_publish(payload: bytes) -> Publish:
    try:
        offset = 6  # method id + reserved ticket
        exchange_len = payload[offset]
        exchange_end = offset + 1 + exchange_len
        key_len = payload[exchange_end]
        key_end = exchange_end + 1 + key_len
        bits = payload[key_end]
        # RabbitMQ checks no UTF-8 here (its only method without the check): any bytes pass,
        # kept as str by surrogateescape and sent on as they came (route_bytes).
        exchange = payload[offset + 1 : exchange_end].decode("utf-8", "surrogateescape")
        routing_key = payload[exchange_end + 1 : key_end].decode("utf-8", "surrogateescape")
    except IndexError as exc:
        raise AMQPConnectionError(
            FRAME_ERROR, f"cannot decode {erlang_binary(payload[4:])}", 60, 40
        ) from exc
    return Publish(exchange, routing_key, bool(bits & 1), bool(bits & 2), payload[offset:key_end])


def decode_ack(payload: bytes) -> Ack:
    try:
        tag, bits = _ack.unpack_from(payload, 4)
    except struct.error as exc:
        raise AMQPConnectionError(
            FRAME_ERROR, f"cannot decode {erlang_binary(payload[4:])}", 60, 80
        ) from exc
    return Ack(tag, bool(bits & 1))


def decode_method(index: int, payload: bytes) -> PamqpMethod:
    """Any method but the fast-path ones, into a pamqp method object (decoded here: pamqp's own
    unmarshal recurses into nested tables and takes any bytes as a table key)."""
    method_class = pamqp_commands.INDEX_MAPPING.get(index)
    if method_class is None:
        class_id, method_id = index >> 16, index & 0xFFFF
        raise AMQPConnectionError(
            NOT_IMPLEMENTED, f"unknown method class {class_id} method {method_id}", class_id,
            method_id,
        )
    method = method_class()
    try:
        if not _arguments_fit(method_class, payload):
            raise ValueError("arguments truncated")
        _unmarshal(method, payload)
    except UnicodeDecodeError:
        # As RabbitMQ checks every shortstr of a method but basic.publish's.
        raise AMQPConnectionError(FRAME_ERROR, "Malformed UTF-8 in shortstr") from None
    except Exception as exc:  # struct.error, ValueError, IndexError, ...
        raise AMQPConnectionError(
            FRAME_ERROR, f"cannot decode {erlang_binary(payload[4:])}", index >> 16,
            index & 0xFFFF,
        ) from exc
    return method


_NUMBERS = {
    "octet": struct.Struct("!B"), "short": struct.Struct("!H"), "long": struct.Struct("!I"),
    "longlong": struct.Struct("!Q"), "timestamp": struct.Struct("!Q"),
}


def _unmarshal(method: PamqpMethod, payload: bytes) -> None:
    """Set the method's arguments from `payload` (whose lengths `_arguments_fit` checked)."""
    offset, bit, bits = 4, 8, 0
    for name in method.__slots__:
        kind = method.amqp_type(name)
        if kind == "bit":
            if bit == 8:
                bits, bit, offset = payload[offset], 0, offset + 1
            value: Any = bool(bits & (1 << bit))
            bit += 1
        else:
            bit = 8
            if kind == "shortstr":
                end = offset + 1 + payload[offset]
                value = payload[offset + 1 : end].decode()
            elif kind == "longstr":
                end = offset + 4 + _u32.unpack_from(payload, offset)[0]
                value = payload[offset + 4 : end]
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    pass  # kept as bytes, as pamqp keeps them
            elif kind == "table":
                end = offset + 4 + _u32.unpack_from(payload, offset)[0]
                if not fieldtable.well_formed(payload, offset + 4, end):
                    raise ValueError("malformed field table")
                table = fieldtable.decode_table(payload, offset)[0]
                value = {key: fieldtable.to_python(item) for key, item in table.items()}
            else:
                number = _NUMBERS[kind]
                value, end = number.unpack_from(payload, offset)[0], offset + number.size
            offset = end
        setattr(method, name, value)


_ARGUMENT_SIZES = {"octet": 1, "short": 2, "long": 4, "longlong": 8, "timestamp": 8}


def _arguments_fit(method_class: type[PamqpMethod], payload: bytes) -> bool:
    """Whether every argument lies inside `payload`, by the length prefixes. pamqp slices strings
    without checking their length, so a truncated trailing shortstr or longstr would pass it."""
    offset, size, bits = 4, len(payload), 0
    for name in method_class.__slots__:
        kind = method_class.amqp_type(name)
        if kind == "bit":
            if bits % 8 == 0:
                offset += 1
            bits += 1
            continue
        bits = 0
        if kind == "shortstr":
            if offset >= size:
                return False
            offset += 1 + payload[offset]
        elif kind in ("longstr", "table"):
            if offset + 4 > size:
                return False
            offset += 4 + _u32.unpack_from(payload, offset)[0]
        else:
            offset += _ARGUMENT_SIZES[kind]
    return offset <= size


def decode_content_header(payload: bytes) -> tuple[int, int, int, bytes]:
    """(class_id, weight, body_size, raw property bytes: flags and values, passed through
    untouched and checked later, as RabbitMQ does: even a header without its flag word is a
    frame, whose properties cannot be decoded)."""
    if len(payload) < 12:
        raise frame_error(FRAME_HEADER, payload, "unknown_frame")
    class_id, weight, body_size = _content_header.unpack_from(payload)
    return class_id, weight, body_size, payload[12:]


# ---------------------------------------------------------------------------------------------
# Outgoing frames


def shortstr(value: str) -> bytes:
    """A shortstr; a str that came in as bytes that are not UTF-8 (decoded with
    surrogateescape) goes out as those bytes."""
    raw = value.encode("utf-8", "surrogateescape")
    return bytes((len(raw),)) + raw


def unchecked(method_class: type[PamqpMethod], **fields: Any) -> PamqpMethod:
    """A pamqp method object built without pamqp's name validation (RabbitMQ allows any UTF-8
    name up to 255 bytes; pamqp only a narrow character set)."""
    method = method_class.__new__(method_class)
    for name in method_class.__slots__:
        setattr(method, name, fields.get(name))
    return method


def encode_method(channel: int, method: PamqpMethod) -> bytes:
    """A method frame for any pamqp method. Unlike pamqp's marshal it does not validate names
    against pamqp's (narrower than RabbitMQ's) character set."""
    parts = [_method_id.pack(method.index)]
    bits, bit_offset, in_bits = 0, 0, False
    for name in method.__slots__:
        data_type = method.amqp_type(name)
        value = getattr(method, name, 0)
        if data_type == "bit":
            if not in_bits or bit_offset == 8:
                if in_bits:
                    parts.append(bytes((bits,)))
                bits, bit_offset, in_bits = 0, 0, True
            if value:
                bits |= 1 << bit_offset
            bit_offset += 1
            continue
        if in_bits:
            parts.append(bytes((bits,)))
            in_bits = False
        if data_type == "shortstr":
            parts.append(shortstr(value))
        else:
            parts.append(pamqp_encode.by_type(value, data_type))
    if in_bits:
        parts.append(bytes((bits,)))
    payload = b"".join(parts)
    return _frame_header.pack(FRAME_METHOD, channel, len(payload)) + payload + FRAME_END_BYTE


def encode_content(channel: int, props_raw: bytes, body: bytes, frame_max: int) -> bytes:
    """Content header frame (with the raw property bytes) followed by body frames."""
    body_size = len(body)
    parts = [
        _header_frame_head.pack(FRAME_HEADER, channel, 12 + len(props_raw), 60, 0, body_size),
        props_raw,
        FRAME_END_BYTE,
    ]
    if body_size:
        chunk = frame_max - FRAME_OVERHEAD
        if body_size <= chunk:
            parts += (_body_frame_head.pack(FRAME_BODY, channel, body_size), body, FRAME_END_BYTE)
        else:
            view = memoryview(body)
            for start in range(0, body_size, chunk):
                piece = view[start : start + chunk]
                parts += (_body_frame_head.pack(FRAME_BODY, channel, len(piece)), piece,
                          FRAME_END_BYTE)
    return b"".join(parts)


def encode_deliver(
    channel: int,
    consumer_tag_bytes: bytes,
    delivery_tag: int,
    redelivered: bool,
    route_bytes: bytes,
    props_raw: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """basic.deliver + content. `consumer_tag_bytes` and `route_bytes` are encoded shortstrs."""
    method_tail = consumer_tag_bytes + _tag_and_flag.pack(delivery_tag, redelivered) + route_bytes
    return (
        _deliver_head.pack(FRAME_METHOD, channel, 4 + len(method_tail), 60, 60)
        + method_tail
        + FRAME_END_BYTE
        + encode_content(channel, props_raw, body, frame_max)
    )


def encode_get_ok(
    channel: int,
    delivery_tag: int,
    redelivered: bool,
    route_bytes: bytes,
    message_count: int,
    props_raw: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    method_tail = (
        _tag_and_flag.pack(delivery_tag, redelivered)
        + route_bytes
        + struct.pack("!I", message_count)
    )
    return (
        _deliver_head.pack(FRAME_METHOD, channel, 4 + len(method_tail), 60, 71)
        + method_tail
        + FRAME_END_BYTE
        + encode_content(channel, props_raw, body, frame_max)
    )


def encode_return(
    channel: int, reply_code: int, reply_text: str, route_bytes: bytes, props_raw: bytes,
    body: bytes, frame_max: int,
) -> bytes:
    method_tail = _u16.pack(reply_code) + shortstr(reply_text) + route_bytes
    return (
        _deliver_head.pack(FRAME_METHOD, channel, 4 + len(method_tail), 60, 50)
        + method_tail
        + FRAME_END_BYTE
        + encode_content(channel, props_raw, body, frame_max)
    )


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return _deliver_head.pack(FRAME_METHOD, channel, 13, 60, 80) + _tag_and_flag.pack(
        delivery_tag, multiple
    ) + FRAME_END_BYTE


def encode_nack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """basic.nack from the broker (publisher confirms): requeue bit is always 0."""
    return _deliver_head.pack(FRAME_METHOD, channel, 13, 60, 120) + _tag_and_flag.pack(
        delivery_tag, multiple
    ) + FRAME_END_BYTE
