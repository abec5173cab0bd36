"""An independent check that a content header's properties decode, used on every message the
fuzzed brokers keep in a queue.

It follows RabbitMQ 3.10's parser (rabbit_binary_parser, rabbit_framing_amqp_0_9_1): flag bits
15..2 announce the basic properties in spec order, the two low bits are ignored, nothing may
follow the last property, field tables and arrays hold only the type tags RabbitMQ knows, and
short strings may hold any bytes (RabbitMQ passes non-UTF-8 through). Tables are walked with an
explicit stack, so thousands of nesting levels are checked like any other.
"""

from __future__ import annotations

import struct

# Flag bit -> field type, for basic properties in spec order (bit 15 first).
PROPERTY_TYPES = (
    (15, "shortstr"),  # content-type
    (14, "shortstr"),  # content-encoding
    (13, "table"),  # headers
    (12, "octet"),  # delivery-mode
    (11, "octet"),  # priority
    (10, "shortstr"),  # correlation-id
    (9, "shortstr"),  # reply-to
    (8, "shortstr"),  # expiration
    (7, "shortstr"),  # message-id
    (6, "longlong"),  # timestamp
    (5, "shortstr"),  # type
    (4, "shortstr"),  # user-id
    (3, "shortstr"),  # app-id
    (2, "shortstr"),  # reserved (cluster-id)
)
FIXED_VALUE_SIZES = {"b": 1, "B": 1, "t": 1, "s": 2, "u": 2, "I": 4, "i": 4, "f": 4, "D": 5,
                     "l": 8, "T": 8, "d": 8, "V": 0}
SIZED_VALUES = {"S", "x", "F", "A"}


class Undecodable(ValueError):
    """The properties do not decode; the message says where."""


def check_content_header(payload: bytes) -> None:
    """Raise Undecodable unless `payload` (a content-header frame's payload) decodes."""
    if len(payload) < 14:
        raise Undecodable(f"content header of {len(payload)} bytes")
    flags = struct.unpack_from(">H", payload, 12)[0]
    offset = 14
    for bit, kind in PROPERTY_TYPES:
        if not flags & (1 << bit):
            continue
        if kind == "shortstr":
            offset = _skip(payload, offset, 1 + _byte(payload, offset), f"property bit {bit}")
        elif kind == "octet":
            offset = _skip(payload, offset, 1, f"property bit {bit}")
        elif kind == "longlong":
            offset = _skip(payload, offset, 8, f"property bit {bit}")
        else:
            size = _long(payload, offset)
            end = _skip(payload, offset, 4 + size, "headers table")
            check_table(payload, offset + 4, end)
            offset = end
    if offset != len(payload):
        raise Undecodable(f"{len(payload) - offset} bytes after the last property")


def check_table(data: bytes, start: int, end: int) -> None:
    """Walk a field table (or nested tables and arrays) in data[start:end]."""
    stack = [(end, False)]
    offset = start
    while stack:
        limit, is_array = stack[-1]
        if offset == limit:
            stack.pop()
            continue
        if not is_array:
            offset = _skip(data, offset, 1 + _byte(data, offset, limit), "table key", limit)
        tag = chr(_byte(data, offset, limit))
        offset += 1
        if tag in FIXED_VALUE_SIZES:
            offset = _skip(data, offset, FIXED_VALUE_SIZES[tag], f"value {tag!r}", limit)
        elif tag in SIZED_VALUES:
            size = _long(data, offset, limit)
            value_end = _skip(data, offset, 4 + size, f"value {tag!r}", limit)
            offset += 4
            if tag in "FA":
                stack.append((value_end, tag == "A"))
            else:
                offset = value_end
        else:
            raise Undecodable(f"unknown field type {tag!r} at {offset - 1}")


def _byte(data: bytes, offset: int, limit: int | None = None) -> int:
    if offset >= (len(data) if limit is None else limit):
        raise Undecodable(f"truncated at {offset}")
    return data[offset]


def _long(data: bytes, offset: int, limit: int | None = None) -> int:
    if offset + 4 > (len(data) if limit is None else limit):
        raise Undecodable(f"truncated length at {offset}")
    return struct.unpack_from(">I", data, offset)[0]


def _skip(data: bytes, offset: int, size: int, what: str, limit: int | None = None) -> int:
    end = offset + size
    if end > (len(data) if limit is None else limit):
        raise Undecodable(f"{what} at {offset} runs past the end")
    return end
