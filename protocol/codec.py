"""Frame splitting and method encoding/decoding.

The hot path (basic.publish in, content header and body frames, basic.deliver out, basic.ack in)
is hand-written with `struct`; every other method goes through pamqp. Content-header property
bytes are never re-encoded: they are kept raw from the publisher and copied into the deliver.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from pamqp import commands as pamqp_commands
from pamqp import encode as pamqp_encode
from pamqp.base import Frame as PamqpMethod

from protocol import fieldtable
from protocol.constants import (
    BASIC_ACK,
    BASIC_DELIVER,
    BASIC_GET_OK,
    BASIC_NACK,
    BASIC_PUBLISH,
    BASIC_RETURN,
    CLASS_BASIC,
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
from protocol.errors import (
    AMQPConnectionError,
    MalformedUtf8,
    UndecodableMethod,
    UnknownMethod,
    erlang_bytes,
    frame_error,
)

_frame_header = struct.Struct("!BHI")
_method_id = struct.Struct("!I")
_content_header = struct.Struct("!HHQ")
_ack = struct.Struct("!QB")
_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_method_head = struct.Struct("!BHII")  # frame type, channel, size, packed class and method
_header_frame_head = struct.Struct("!BHIHHQ")
_body_frame_head = struct.Struct("!BHI")
_tag_and_flag = struct.Struct("!QB")
pack_tag_and_flag = _tag_and_flag.pack  # (delivery tag, redelivered or multiple flag)

# The shortest payload of each frame type (a heartbeat's is empty, and only that).
_MIN_PAYLOAD = {FRAME_METHOD: 4, FRAME_HEADER: 12, FRAME_BODY: 0}
HEARTBEAT_FRAME = bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END))

# (frame type, channel number, payload); a PUBLISH_CONTENT frame's payload is a PublishContent
Frame = tuple[int, int, Any]
# basic.publish's method payload, the content header's property bytes, and the whole body of
# each of the publishes with these two that came one after the other (one or more)
PublishContent = tuple[bytes, bytes, list[bytes]]


READ_ERROR = -1  # the frame type of the last "frame" FrameReader returns when one is broken
# The frame type FrameReader gives a basic.publish whose content header and single body frame
# followed it in the same read, all three well-formed (see FrameReader), and the same publish
# repeated right after it: one event for their frames, so that the hot path takes a run of
# messages in one step. `content_frames` gives the frames back to whoever must see them one by
# one.
PUBLISH_CONTENT = -2
_PUBLISH_INDEX = _method_id.pack(BASIC_PUBLISH)


class Repeat(NamedTuple):
    """What FrameReader keeps of the last whole publish, to know it again."""

    exact: bytes  # its bytes up to its body (method frame, header frame, body frame's head)
    body_size: int
    channel: int
    method_payload: bytes
    props_raw: bytes
    head: bytes  # its bytes before the header's body size (method frame, header's head,
    tail: bytes  # class and weight), and after it (property bytes, the header's end octet)


_NO_REPEAT = Repeat(b"", 0, 0, b"", b"", b"", b"")
_body_size = struct.Struct("!Q").unpack_from


class FrameReader:
    """Splits a byte stream into frames; keeps an incomplete tail for the next call.

    A frame larger than `frame_max` or without its end octet is a FRAME_ERROR, found before the
    frame is buffered, so a peer can never make us hold more than one frame_max of input. As
    RabbitMQ reads one frame at a time, the frames before the broken one are handled first: the
    error comes after them, as a (READ_ERROR, 0, b"") frame, and is kept in `error`; nothing
    more is read. A frame over frame_max that follows others in the same read is not judged
    until they are handled (`stalled`; call feed(b"") then), since they may raise frame_max
    (connection.tune-ok). What a frame's type and payload make of it is checked later
    (`check_frame`), where RabbitMQ checks it: not at all on a channel other than 0 before the
    connection is open.

    A basic.publish followed in the same read by its content header (of class basic, weight 0)
    and a body frame holding the whole body, all on its channel, within frame_max and ended
    well, comes out as one (PUBLISH_CONTENT, channel, PublishContent) frame: nothing in those
    three frames can be an error of the reader's or of the content's order, so taking them
    together changes nothing but the cost. Anything else comes out frame by frame. A publisher
    repeats its method and properties: bytes equal to the last whole publish's up to its body
    (`_repeat`) are such a publish, judged already, found by one comparison; with another body
    size, bytes equal to its bytes around the body size are, but for the body frame, judged
    then. Right after the same publish, its body joins that frame's (a run of publishes, in
    their order).
    """

    __slots__ = ("_pending", "_frame_max", "error", "stalled", "_repeat")

    def __init__(self, frame_max: int) -> None:
        self._pending = b""
        self._frame_max = frame_max
        self.error: AMQPConnectionError | None = None
        self.stalled = False
        self._repeat: Repeat = _NO_REPEAT

    @property
    def frame_max(self) -> int:
        return self._frame_max

    @frame_max.setter
    def frame_max(self, frame_max: int) -> None:
        self._frame_max = frame_max
        self._repeat = _NO_REPEAT  # (judged under the former frame_max)

    def feed(self, data: bytes) -> list[Frame]:
        if self.error is not None:
            return []
        self.stalled = False
        if self._pending:
            data = self._pending + data
        frames: list[Frame] = []
        offset, size = 0, len(data)
        unpack = _frame_header.unpack_from
        frame_max = self._frame_max
        exact, body_size, publish_channel, method_payload, props_raw, _, _ = self._repeat
        exact_size = len(exact)
        run: list[bytes] | None = None  # the bodies of the last frame, if it is a whole publish
        while size - offset >= 7:
            # The hot path: the last whole publish again, found by one comparison of its bytes
            # up to its body (its body size too); with another body size, by two
            # (`_repeated_with_another_size`).
            body = None
            if exact_size and data.startswith(exact, offset):
                body_start = offset + exact_size
                body_end = body_start + body_size
                if not body_size:
                    body, offset = b"", body_start
                elif body_end < size and data[body_end] == FRAME_END:
                    body, offset = data[body_start:body_end], body_end + 1
            elif exact_size:
                found = self._repeated_with_another_size(data, offset)
                if found is not None:
                    body, offset = found
            if body is not None:
                if run is not None:
                    run.append(body)
                else:
                    run = [body]
                    frames.append((PUBLISH_CONTENT, publish_channel,
                                   (method_payload, props_raw, run)))
                continue
            run = None
            frame_type, channel, length = unpack(data, offset)
            # Like RabbitMQ, accept payloads up to frame_max (not frame_max - 8), but name
            # frame_max - 8 as the limit when refusing one.
            if length > frame_max:
                if frames:
                    self.stalled = True
                    break
                return self._broken(frames, frame_error(
                    frame_type, b"", ("frame_too_large", length, frame_max - FRAME_OVERHEAD)))
            end = offset + 7 + length
            if end >= size:
                break
            if data[end] != FRAME_END:
                return self._broken(frames, frame_error(
                    frame_type, data[offset + 7 : end], ("invalid_frame_end_marker", data[end])))
            # (A method frame shorter than the index cannot match: its end octet, checked
            # above, would be among the four.)
            if frame_type == FRAME_METHOD and data.startswith(_PUBLISH_INDEX, offset + 7):
                next_offset = self._whole_publish(data, offset, end, channel, frames)
                if next_offset:
                    offset = next_offset
                    exact, body_size, publish_channel, method_payload, props_raw, _, _ = (
                        self._repeat)
                    exact_size = len(exact)
                    run = frames[-1][2][2]
                    continue
            frames.append((frame_type, channel, data[offset + 7 : end]))
            offset = end + 1
        self._pending = data[offset:] if offset < size else b""
        return frames

    def _whole_publish(self, data: bytes, offset: int, end: int, channel: int,
                       frames: list[Frame]) -> int:
        """A basic.publish frame (from `offset` to its end octet at `end`): if its content
        header and whole body follow in `data`, well-formed, append the three as one
        PUBLISH_CONTENT frame, keep them as the publish a publisher repeats (`_repeat`), and
        return where the next frame starts; else 0."""
        size = len(data)
        if size - end <= 20:
            return 0
        (header_type, header_channel, header_length, class_id, weight,
         body_size) = _header_frame_head.unpack_from(data, end + 1)
        header_end = end + 8 + header_length
        if not (header_type == FRAME_HEADER and header_channel == channel
                and 12 <= header_length <= self._frame_max and header_end < size
                and data[header_end] == FRAME_END and class_id == CLASS_BASIC and not weight):
            return 0
        found = self._body_at(data, header_end + 1, channel, body_size)
        if found is None:
            return 0
        body, next_offset = found
        method_payload, props_raw = data[offset + 7 : end], data[end + 20 : header_end]
        frames.append((PUBLISH_CONTENT, channel, (method_payload, props_raw, [body])))
        self._repeat = Repeat(data[offset : header_end + (8 if body_size else 1)], body_size,
                              channel, method_payload, props_raw, data[offset : end + 12],
                              data[end + 20 : header_end + 1])
        return next_offset

    def _repeated_with_another_size(self, data: bytes, offset: int) -> tuple[bytes, int] | None:
        """The last whole publish again at `offset` but for its body size: its bytes before
        and after the header's body size are the same, and a well-formed body frame of that
        size follows. (its body, where the next frame starts), or None."""
        repeat = self._repeat
        head, tail = repeat.head, repeat.tail
        size_at = offset + len(head)
        if not data.startswith(head, offset) or len(data) - size_at < 8 or not data.startswith(
                tail, size_at + 8):
            return None
        return self._body_at(data, size_at + 8 + len(tail), repeat.channel,
                             _body_size(data, size_at)[0])

    def _body_at(self, data: bytes, start: int, channel: int, body_size: int
                 ) -> tuple[bytes, int] | None:
        """The body of a content whose header ends just before `start`: none if `body_size`
        is 0, else the one body frame at `start` on `channel` holding all of it, within
        frame_max and ended well. (its body, where the next frame starts), or None."""
        if not body_size:
            return b"", start
        if len(data) - start <= 7:
            return None
        body_type, body_channel, body_length = _frame_header.unpack_from(data, start)
        body_end = start + 7 + body_length
        if (body_type == FRAME_BODY and body_channel == channel and body_length == body_size
                and body_length <= self._frame_max and body_end < len(data)
                and data[body_end] == FRAME_END):
            return data[start + 7 : body_end], body_end + 1
        return None

    def _broken(self, frames: list[Frame], error: AMQPConnectionError) -> list[Frame]:
        if self.error is None:
            self.error = error
            frames.append((READ_ERROR, 0, b""))
        self._pending = b""
        return frames

    @property
    def has_partial_frame(self) -> bool:
        return bool(self._pending)


def content_frames(channel: int, content: PublishContent) -> list[Frame]:
    """The frames a PUBLISH_CONTENT frame stands for, as they came."""
    method_payload, props_raw, bodies = content
    frames: list[Frame] = []
    for body in bodies:
        frames += [(FRAME_METHOD, channel, method_payload), (FRAME_HEADER, channel, (
            _content_header.pack(CLASS_BASIC, 0, len(body)) + props_raw))]
        if body:
            frames.append((FRAME_BODY, channel, body))
    return frames


def check_frame(frame_type: int, payload: bytes) -> None:
    """501 unknown_frame for a frame that is none of the four kinds (RabbitMQ's analyze_frame):
    an unknown type, a method frame too short for its ids, a content header too short for its
    class, weight and body size, a heartbeat with a payload. Open channels make the same checks
    inline (Channel.handle_frame)."""
    if frame_type == FRAME_HEARTBEAT:
        if payload:
            raise frame_error(frame_type, payload, "unknown_frame")
        return
    minimum = _MIN_PAYLOAD.get(frame_type)
    if minimum is None or len(payload) < minimum:
        raise frame_error(frame_type, payload, "unknown_frame")


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


# method_index without the Python call, for the channel's frame loop: (payload) -> (index,)
unpack_method_index = _method_id.unpack_from


def undecodable(index: int, payload: bytes) -> UndecodableMethod:
    """501 for method arguments that do not fill the frame exactly, worded like RabbitMQ's."""
    return UndecodableMethod(
        FRAME_ERROR, f"cannot decode {erlang_bytes(payload[4:])}", index >> 16, index & 0xFFFF
    )


def decode_publish(payload: bytes) -> Publish:
    offset = 6  # method id + reserved ticket
    try:
        exchange_end = offset + 1 + payload[offset]
        key_end = exchange_end + 1 + payload[exchange_end]
    except IndexError:
        raise undecodable(BASIC_PUBLISH, payload) from None
    if len(payload) != key_end + 1:  # the bits octet ends the arguments, as in RabbitMQ's match
        raise undecodable(BASIC_PUBLISH, payload)
    bits = payload[key_end]
    # RabbitMQ checks no UTF-8 here (its only method without the check): any bytes pass,
    # kept as str by surrogateescape and sent on as they came (route_bytes).
    exchange = payload[offset + 1 : exchange_end].decode("utf-8", "surrogateescape")
    routing_key = payload[exchange_end + 1 : key_end].decode("utf-8", "surrogateescape")
    return Publish(exchange, routing_key, bool(bits & 1), bool(bits & 2), payload[offset:key_end])


def decode_ack(payload: bytes) -> Ack:
    if len(payload) != 13:  # method id, delivery tag, bits: nothing more, nothing less
        raise undecodable(BASIC_ACK, payload)
    tag, bits = _ack.unpack_from(payload, 4)
    return Ack(tag, bool(bits & 1))


# Erlang's <<_/utf8>> match, which RabbitMQ's shortstr check uses: well-formed sequences of up to
# four bytes without overlong forms, where UTF-16 surrogates (ED A0-BF ..) and code points up to
# 0x1FFFFF (F4 90 .. to F7 ..) pass, unlike in Python's strict decoder.
_ERLANG_UTF8 = re.compile(
    rb"(?:[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xef][\x80-\xbf]{2}|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf7][\x80-\xbf]{3})*"
)


def checked_shortstr(raw: bytes) -> str:
    """A shortstr's text as RabbitMQ checks it (MalformedUtf8 if Erlang would refuse it). What
    Erlang takes and Python's decoder does not is kept by surrogateescape, so it goes out again
    as the same bytes."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        if _ERLANG_UTF8.fullmatch(raw) is None:
            raise MalformedUtf8() from None
        return raw.decode("utf-8", "surrogateescape")


# Methods whose shortstrs RabbitMQ does not check (its generated decoder skips the content
# methods): any bytes pass, kept by surrogateescape.
_UNCHECKED_SHORTSTRS = frozenset(method.index for method in (
    pamqp_commands.Basic.Publish, pamqp_commands.Basic.Return, pamqp_commands.Basic.Deliver,
    pamqp_commands.Basic.GetOk,
))


class AccessRequest(PamqpMethod):
    """access.request (class 30), deprecated by AMQP 0-9-1 and absent from pamqp; RabbitMQ
    still answers it with access.request-ok (ticket 1)."""

    __slots__ = ("realm", "exclusive", "passive", "active", "write", "read")
    frame_id, index, name, synchronous = 10, 0x001E000A, "Access.Request", True
    _realm, _exclusive, _passive, _active, _write, _read = ("shortstr",) + ("bit",) * 5


class AccessRequestOk(PamqpMethod):
    __slots__ = ("ticket",)
    frame_id, index, name = 11, 0x001E000B, "Access.RequestOk"
    _ticket = "short"


_METHODS = {**pamqp_commands.INDEX_MAPPING, AccessRequest.index: AccessRequest,
            AccessRequestOk.index: AccessRequestOk}


def decode_method(index: int, payload: bytes) -> PamqpMethod:
    """Any method but the fast-path ones, into a pamqp method object (decoded here: pamqp's own
    unmarshal recurses into nested tables and takes any bytes as a table key), checked as
    RabbitMQ's generated decoder checks it: the arguments fill the frame exactly
    (UndecodableMethod), then field by field, short strings are UTF-8 as Erlang reads it
    (MalformedUtf8, class and method 0 as RabbitMQ sends it on a channel) and tables parse."""
    method_class = _METHODS.get(index)
    if method_class is None:
        class_id, method_id = index >> 16, index & 0xFFFF
        raise UnknownMethod(
            NOT_IMPLEMENTED, f"unknown method class {class_id} method {method_id}", class_id,
            method_id,
        )
    if not _arguments_fit(method_class, payload):
        raise undecodable(index, payload)
    method = method_class()
    try:
        _unmarshal(method, payload, index not in _UNCHECKED_SHORTSTRS)
    except MalformedUtf8:
        raise
    except Exception as exc:  # struct.error, ValueError, IndexError, ...
        raise undecodable(index, payload) from exc
    return method


_NUMBERS = {
    "octet": struct.Struct("!B"), "short": struct.Struct("!H"), "long": struct.Struct("!I"),
    "longlong": struct.Struct("!Q"), "timestamp": struct.Struct("!Q"),
}


def _unmarshal(method: PamqpMethod, payload: bytes, check_utf8: bool) -> None:
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
                raw = payload[offset + 1 : end]
                value = (checked_shortstr(raw) if check_utf8
                         else raw.decode("utf-8", "surrogateescape"))
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
    """Whether the arguments fill `payload` exactly, by their sizes and length prefixes: none
    runs past it and nothing follows the last (RabbitMQ's binary match)."""
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
    return offset == size


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


def _content_shape(channel: int, props_raw: bytes, body_size: int, frame_max: int
                   ) -> tuple[bytes, tuple[bytes, ...]]:
    """The bytes of a content's frames but its body: the content header frame followed by the
    head of the first body frame (`lead`), and what follows each body chunk (`after`): the end
    octet, then the next body frame's head, except after the last."""
    lead = _header_frame_head.pack(FRAME_HEADER, channel, 12 + len(props_raw), CLASS_BASIC, 0,
                                   body_size) + props_raw + FRAME_END_BYTE
    if not body_size:
        return lead, ()
    chunk = frame_max - FRAME_OVERHEAD
    sizes = [min(chunk, body_size - start) for start in range(0, body_size, chunk)]
    heads = [_body_frame_head.pack(FRAME_BODY, channel, size) for size in sizes]
    after = tuple(FRAME_END_BYTE + head for head in heads[1:]) + (FRAME_END_BYTE,)
    return lead + heads[0], after


def _with_body(parts: list[bytes | memoryview], body: bytes, after: tuple[bytes, ...],
               frame_max: int) -> list[bytes | memoryview]:
    """`parts` followed by the body's chunks, each followed by its `after` bytes (slices of
    a memoryview: the body is not copied here)."""
    if len(after) == 1:
        parts += (body, FRAME_END_BYTE)
    elif after:
        view, chunk = memoryview(body), frame_max - FRAME_OVERHEAD
        for index, between in enumerate(after):
            parts += (view[index * chunk : (index + 1) * chunk], between)
    return parts


def encode_content(channel: int, props_raw: bytes, body: bytes, frame_max: int) -> bytes:
    """Content header frame (with the raw property bytes) followed by body frames."""
    lead, after = _content_shape(channel, props_raw, len(body), frame_max)
    return b"".join(_with_body([lead], body, after, frame_max))


class DeliverShape:
    """The bytes of a basic.deliver and its content frames but the delivery tag, the
    redelivered flag and the body: what is the same for every delivery of one consumer with
    the same exchange, routing key, property bytes and body size."""

    __slots__ = ("head", "tail", "after", "single", "frame_max", "size", "consumer_tag_bytes",
                 "route_bytes", "props_raw", "body_size")

    def __init__(self, channel: int, consumer_tag_bytes: bytes, route_bytes: bytes,
                 props_raw: bytes, body_size: int, frame_max: int) -> None:
        self.consumer_tag_bytes = consumer_tag_bytes  # what it was made for (DeliverEncoder)
        self.route_bytes = route_bytes
        self.props_raw = props_raw
        self.body_size = body_size
        method_size = 4 + len(consumer_tag_bytes) + _tag_and_flag.size + len(route_bytes)
        self.head = _method_head.pack(FRAME_METHOD, channel, method_size, BASIC_DELIVER
                                      ) + consumer_tag_bytes
        lead, self.after = _content_shape(channel, props_raw, body_size, frame_max)
        self.single = len(self.after) == 1  # one body frame: parts are a flat 5-tuple
        self.tail = route_bytes + FRAME_END_BYTE + lead
        self.frame_max = frame_max
        self.size = (len(self.head) + _tag_and_flag.size + len(self.tail) + body_size
                     + sum(map(len, self.after)))  # bytes of the whole delivery

    def parts(self, delivery_tag: int, redelivered: bool, body: bytes
              ) -> Sequence[bytes | memoryview]:
        """The delivery as byte strings to write one after the other."""
        if self.single:  # (the common case, one body frame: one tuple)
            return (self.head, _tag_and_flag.pack(delivery_tag, redelivered), self.tail, body,
                    FRAME_END_BYTE)
        parts: list[bytes | memoryview] = [
            self.head, _tag_and_flag.pack(delivery_tag, redelivered), self.tail]
        return _with_body(parts, body, self.after, self.frame_max)


class DeliverEncoder:
    """basic.deliver + content for one channel, as byte strings for the transport to join
    once with the rest of a loop turn's output (so the body is copied once on its way out).
    Consumers see the same exchange, routing key, properties and body size again and again:
    each such `DeliverShape` is made once and kept, up to `limit` of them (then all are
    forgotten at once, as the connection's publish caches are)."""

    __slots__ = ("channel", "limit", "_shapes", "last")

    def __init__(self, channel: int, limit: int = 1024) -> None:
        self.channel = channel
        self.limit = limit
        self._shapes: dict[tuple[bytes, bytes, bytes, int, int], DeliverShape] = {}
        self.last: DeliverShape | None = None  # the one returned last

    def shape(self, consumer_tag_bytes: bytes, route_bytes: bytes, props_raw: bytes,
              body_size: int, frame_max: int) -> DeliverShape:
        last = self.last
        # The same as last time, by identity: the publishing side shares the route and
        # property bytes of a publisher's repeated messages (no key built, nothing hashed).
        if (last is not None and last.route_bytes is route_bytes
                and last.props_raw is props_raw and last.body_size == body_size
                and last.consumer_tag_bytes is consumer_tag_bytes
                and last.frame_max == frame_max):
            return last
        key = (consumer_tag_bytes, route_bytes, props_raw, body_size, frame_max)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= self.limit:
                self._shapes.clear()
            shape = self._shapes[key] = DeliverShape(self.channel, *key)
        self.last = shape
        return shape


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
    shape = DeliverShape(channel, consumer_tag_bytes, route_bytes, props_raw, len(body),
                         frame_max)
    return b"".join(shape.parts(delivery_tag, redelivered, body))


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
        _method_head.pack(FRAME_METHOD, channel, 4 + len(method_tail), BASIC_GET_OK)
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
        _method_head.pack(FRAME_METHOD, channel, 4 + len(method_tail), BASIC_RETURN)
        + method_tail
        + FRAME_END_BYTE
        + encode_content(channel, props_raw, body, frame_max)
    )


def encode_ack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    return _method_head.pack(FRAME_METHOD, channel, 13, BASIC_ACK) + _tag_and_flag.pack(
        delivery_tag, multiple
    ) + FRAME_END_BYTE


def encode_nack(channel: int, delivery_tag: int, multiple: bool) -> bytes:
    """basic.nack from the broker (publisher confirms): requeue bit is always 0."""
    return _method_head.pack(FRAME_METHOD, channel, 13, BASIC_NACK) + _tag_and_flag.pack(
        delivery_tag, multiple
    ) + FRAME_END_BYTE
