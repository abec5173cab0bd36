"""Lazy access to basic properties kept as raw content-header bytes.

A message's properties travel as the publisher's bytes. Routing and features that need a property
read just that one by walking the length-prefixed fields; nothing is decoded when no one asks.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands as pamqp_commands
from pamqp import decode as pamqp_decode

from protocol.constants import PROPERTY_FLAGS, SYNTAX_ERROR
from protocol.errors import AMQPConnectionError
from protocol.fieldtable import TypedValue, decode_table

_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_u64 = struct.Struct("!Q")
_FIXED_SIZES = {"octet": 1, "timestamp": 8}
_FLAG_OF = {name: flag for name, flag, _ in PROPERTY_FLAGS}


def _field_spans(raw: bytes) -> dict[str, tuple[int, int, str]]:
    """name -> (start, end, type) of each present property value inside `raw`."""
    if len(raw) < 2:
        raise ValueError("property flags truncated")
    flags = _u16.unpack_from(raw)[0]
    offset = 2
    while _u16.unpack_from(raw, offset - 2)[0] & 1:  # continuation flag words (never used)
        offset += 2
    spans = {}
    for name, flag, kind in PROPERTY_FLAGS:
        if not flags & flag:
            continue
        if kind == "shortstr":
            end = offset + 1 + raw[offset]
        elif kind == "table":
            end = offset + 4 + _u32.unpack_from(raw, offset)[0]
        else:
            end = offset + _FIXED_SIZES[kind]
        if end > len(raw):
            raise ValueError(f"property {name} truncated")
        spans[name] = (offset, end, kind)
        offset = end
    return spans


def validate(raw: bytes) -> None:
    """Raise a SYNTAX_ERROR connection error if the property bytes do not parse."""
    try:
        spans = _field_spans(raw)
        if "headers" in spans:
            start, end, _ = spans["headers"]
            pamqp_decode.field_table(raw[start:end])
    except Exception as exc:
        raise AMQPConnectionError(SYNTAX_ERROR, "malformed content header properties") from exc


def delivery_mode(raw: bytes) -> int | None:
    """The delivery_mode property, found without decoding anything else (hot path)."""
    try:
        flags = (raw[0] << 8) | raw[1]
        if not flags & 0x1000:
            return None
        offset = 2
        if flags & 0x8000:
            offset += 1 + raw[offset]
        if flags & 0x4000:
            offset += 1 + raw[offset]
        if flags & 0x2000:
            offset += 4 + _u32.unpack_from(raw, offset)[0]
        return raw[offset]
    except (IndexError, struct.error):
        return None


def typed_headers(raw: bytes) -> dict[str, TypedValue]:
    """The headers property with field types kept; {} when absent."""
    if not has(raw, "headers"):
        return {}
    start, _, _ = _field_spans(raw)["headers"]
    return decode_table(raw, start)[0]


def has(raw: bytes, name: str) -> bool:
    return len(raw) >= 2 and bool(_u16.unpack_from(raw)[0] & _FLAG_OF[name])


def get(raw: bytes, name: str) -> Any:
    """One property's value, or None when absent."""
    if not has(raw, name):
        return None
    start, end, kind = _field_spans(raw)[name]
    if kind == "shortstr":
        return raw[start + 1 : end].decode("utf-8", "replace")
    if kind == "octet":
        return raw[start]
    if kind == "table":
        return pamqp_decode.field_table(raw[start:end])[1]
    return pamqp_decode.timestamp(raw[start:end])[1]


def timestamp(raw: bytes) -> int | None:
    """The timestamp property as sent (any unsigned 64-bit number), not converted to a date
    (pamqp's conversion fails past year 9999 and reads values past 2106 as milliseconds)."""
    if not has(raw, "timestamp"):
        return None
    return _u64.unpack_from(raw, _field_spans(raw)["timestamp"][0])[0]


def replace_shortstr(raw: bytes, name: str, value: str) -> bytes:
    """The same property bytes with one (present) shortstr property replaced."""
    start, end, _ = _field_spans(raw)[name]
    encoded = value.encode()
    return raw[:start] + bytes((len(encoded),)) + encoded + raw[end:]


def rebuild(raw: bytes, changes: dict[str, bytes | None]) -> bytes:
    """Property bytes with some properties replaced (by already encoded values: a shortstr with
    its length byte, a table with its length) or removed (None); the rest kept byte for byte."""
    spans = _field_spans(raw)
    flags = 0
    parts = []
    for name, flag, _ in PROPERTY_FLAGS:
        if name in changes:
            value = changes[name]
        elif name in spans:
            start, end, _ = spans[name]
            value = raw[start:end]
        else:
            value = None
        if value is not None:
            flags |= flag
            parts.append(value)
    return _u16.pack(flags) + b"".join(parts)


_HEADERS_FLAG = 0x2000


def headers_offset(raw: bytes) -> int | None:
    """Where the headers table (present or not) starts: after the two shortstrs before it.
    None for property bytes this quick walk does not handle (continuation flag words)."""
    if len(raw) < 2:
        return None
    flags = (raw[0] << 8) | raw[1]
    if flags & 1:
        return None
    offset = 2
    if flags & 0x8000:
        offset += 1 + raw[offset]
    if flags & 0x4000:
        offset += 1 + raw[offset]
    return offset


def set_headers(raw: bytes, offset: int, table: bytes) -> bytes:
    """The same property bytes with the headers table at `offset` (from `headers_offset`)
    replaced, or added, by `table` (encoded, with its 4-byte length); the rest byte for byte."""
    flags = (raw[0] << 8) | raw[1]
    end = offset + 4 + _u32.unpack_from(raw, offset)[0] if flags & _HEADERS_FLAG else offset
    return _u16.pack(flags | _HEADERS_FLAG) + raw[2:offset] + table + raw[end:]


def shortstr_value(value: str) -> bytes:
    encoded = value.encode()
    return bytes((len(encoded),)) + encoded


def remove_header(raw: bytes, key: str) -> bytes:
    """The same property bytes without one entry of the headers table; other entries keep
    their exact bytes."""
    start, end, _ = _field_spans(raw)["headers"]
    table = raw[start + 4 : end]
    wanted = key.encode()
    offset = 0
    while offset < len(table):
        entry_start = offset
        name_end = offset + 1 + table[offset]
        name = table[offset + 1 : name_end]
        consumed, _ = pamqp_decode.embedded_value(table[name_end:])
        offset = name_end + consumed
        if name == wanted:
            table = table[:entry_start] + table[offset:]
            break
    return raw[:start] + _u32.pack(len(table)) + table + raw[end:]


def decode_all(raw: bytes) -> pamqp_commands.Basic.Properties:
    """Every property, decoded by pamqp (for paths that need many of them)."""
    properties = pamqp_commands.Basic.Properties()
    flags = _u16.unpack_from(raw)[0]
    properties.unmarshal(flags, raw[2:])
    return properties
