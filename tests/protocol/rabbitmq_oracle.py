"""A transcription of how RabbitMQ 3.10 reads property bytes and field tables
(rabbit_framing_amqp_0_9_1:decode_properties and rabbit_binary_parser:parse_table), kept
simple and recursive (fine at test depths), as the oracle the one-pass checks are compared
with. Each function raises ValueError where RabbitMQ's binary match fails."""

from __future__ import annotations

import math
import struct

from protocol.constants import PROPERTY_FLAGS

_SIZES = {"b": 1, "B": 1, "s": 2, "u": 2, "I": 4, "i": 4, "l": 8, "L": 8, "T": 8, "t": 1,
          "D": 5, "V": 0}


def _need(data: bytes, offset: int, size: int) -> bytes:
    if offset + size > len(data):
        raise ValueError("short")
    return data[offset : offset + size]


def _value(data: bytes, offset: int) -> int:
    tag = chr(_need(data, offset, 1)[0])
    offset += 1
    if tag in _SIZES:
        _need(data, offset, _SIZES[tag])
        return offset + _SIZES[tag]
    if tag in "fd":
        size = 4 if tag == "f" else 8
        number = struct.unpack(">f" if tag == "f" else ">d", _need(data, offset, size))[0]
        if not math.isfinite(number):
            raise ValueError("Erlang matches finite floats only")
        return offset + size
    if tag in "SxFA":
        length = struct.unpack(">I", _need(data, offset, 4))[0]
        inner = _need(data, offset + 4, length)
        if tag == "F":
            parse_table(inner)
        elif tag == "A":
            parse_array(inner)
        return offset + 4 + length
    raise ValueError("unknown tag")


def parse_table(data: bytes) -> None:
    position = 0
    while position < len(data):
        key_length = _need(data, position, 1)[0]
        _need(data, position + 1, key_length)
        position = _value(data, position + 1 + key_length)


def parse_array(data: bytes) -> None:
    position = 0
    while position < len(data):
        position = _value(data, position)


def parse_properties(raw: bytes) -> None:
    flags = struct.unpack(">H", _need(raw, 0, 2))[0]
    offset = 2
    for _, flag, kind in PROPERTY_FLAGS:
        if not flags & flag:
            continue
        if kind == "shortstr":
            offset += 1 + _need(raw, offset, 1)[0]
            if offset > len(raw):
                raise ValueError("short")
        elif kind == "table":
            length = struct.unpack(">I", _need(raw, offset, 4))[0]
            parse_table(_need(raw, offset + 4, length))
            offset += 4 + length
        else:
            size = 1 if kind == "octet" else 8
            _need(raw, offset, size)
            offset += size
    if offset != len(raw):
        raise ValueError("bytes left over")


def _accepts(parse, data: bytes) -> bool:
    try:
        parse(data)
    except ValueError:
        return False
    return True


def oracle_accepts(raw: bytes) -> bool:
    """Whether RabbitMQ decodes these property bytes."""
    return _accepts(parse_properties, raw)


def oracle_accepts_table(content: bytes) -> bool:
    """Whether RabbitMQ parses these bytes as a table's content (without its length)."""
    return _accepts(parse_table, content)
