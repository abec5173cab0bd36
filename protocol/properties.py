"""Lazy access to basic properties kept as raw content-header bytes.

A message's properties travel as the publisher's bytes. Routing and features that need a property
read just that one by walking the length-prefixed fields; nothing is decoded when no one asks.
`well_formed` checks the bytes once, at publish, the way RabbitMQ's decoder reads them, so that
nothing is stored that a later step could not read back.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from protocol.constants import INTERNAL_ERROR, PROPERTY_FLAGS
from protocol.errors import AMQPConnectionError
from protocol.fieldtable import TypedValue, decode_table, decode_value, to_python
from protocol.fieldtable import well_formed as table_well_formed

_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_u64 = struct.Struct("!Q")
_FIXED_SIZES = {"octet": 1, "timestamp": 8}
_FLAG_OF = {name: flag for name, flag, _ in PROPERTY_FLAGS}
# The flag bits the quick walks below test.
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS, _DELIVERY_MODE = (
    _FLAG_OF[name] for name in ("content_type", "content_encoding", "headers", "delivery_mode")
)


def _field_spans(raw: bytes) -> dict[str, tuple[int, int, str]]:
    """name -> (start, end, type) of each present property value inside `raw`."""
    if len(raw) < 2:
        raise ValueError("property flags truncated")
    flags = _u16.unpack_from(raw)[0]
    offset = 2
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


# The properties in wire order as (flag, size): a fixed size, or 0 for a shortstr (a length
# byte first) and -1 for a table (a 4-byte length first).
_LAYOUT = tuple(
    (flag, {**_FIXED_SIZES, "shortstr": 0, "table": -1}[kind])
    for _, flag, kind in PROPERTY_FLAGS
)


def well_formed(raw: bytes) -> bool:
    """Whether the property bytes read back as RabbitMQ reads them: one 16-bit flag word
    (its two lowest bits, undefined, are ignored — RabbitMQ knows no continuation words), each
    flagged value inside the bytes, a headers table that `fieldtable.well_formed` accepts,
    and no byte left over. One pass; nothing is built."""
    size = len(raw)
    if size < 2:
        return False
    flags = (raw[0] << 8) | raw[1]
    offset = 2
    try:
        for flag, width in _LAYOUT:
            if not flags & flag:
                continue
            if width > 0:
                offset += width
            elif width == 0:
                offset += 1 + raw[offset]
            else:
                start = offset + 4
                offset = start + _u32.unpack_from(raw, offset)[0]
                if offset > size or not table_well_formed(raw, start, offset):
                    return False
    except (IndexError, struct.error):
        return False
    return offset == size


def validate(raw: bytes) -> None:
    """Refuse property bytes RabbitMQ cannot decode as it does: its channel crashes and the
    connection is closed with a bare 541 INTERNAL_ERROR (class and method 0)."""
    if not well_formed(raw):
        raise AMQPConnectionError(INTERNAL_ERROR, "")


def delivery_mode(raw: bytes) -> int | None:
    """The delivery_mode property, found without decoding anything else (hot path)."""
    try:
        flags = (raw[0] << 8) | raw[1]
        if not flags & _DELIVERY_MODE:
            return None
        offset = 2
        if flags & _CONTENT_TYPE:
            offset += 1 + raw[offset]
        if flags & _CONTENT_ENCODING:
            offset += 1 + raw[offset]
        if flags & _HEADERS:
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
        return to_python(("F", decode_table(raw, start)[0]))
    seconds = _u64.unpack_from(raw, start)[0]
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


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


def headers_offset(raw: bytes) -> int | None:
    """Where the headers table (present or not) starts: after the two shortstrs before it.
    None for property bytes this quick walk does not handle (continuation flag words)."""
    if len(raw) < 2:
        return None
    flags = (raw[0] << 8) | raw[1]
    if flags & 1:
        return None
    offset = 2
    if flags & _CONTENT_TYPE:
        offset += 1 + raw[offset]
    if flags & _CONTENT_ENCODING:
        offset += 1 + raw[offset]
    return offset


def set_headers(raw: bytes, offset: int, table: bytes) -> bytes:
    """The same property bytes with the headers table at `offset` (from `headers_offset`)
    replaced, or added, by `table` (encoded, with its 4-byte length); the rest byte for byte."""
    flags = (raw[0] << 8) | raw[1]
    end = offset + 4 + _u32.unpack_from(raw, offset)[0] if flags & _HEADERS else offset
    return _u16.pack(flags | _HEADERS) + raw[2:offset] + table + raw[end:]


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
        offset = decode_value(table, name_end)[1]
        if name == wanted:
            table = table[:entry_start] + table[offset:]
            break
    return raw[:start] + _u32.pack(len(table)) + table + raw[end:]


def decode_all(raw: bytes) -> dict[str, Any]:
    """Every present property by name: shortstrs as bytes, octets and the timestamp as ints,
    the headers as a typed table (for paths that show them all, such as the management API)."""
    shown: dict[str, Any] = {}
    for name, (start, end, kind) in _field_spans(raw).items():
        if kind == "shortstr":
            shown[name] = raw[start + 1 : end]
        elif kind == "octet":
            shown[name] = raw[start]
        elif kind == "table":
            shown[name] = decode_table(raw, start)[0]
        else:
            shown[name] = _u64.unpack_from(raw, start)[0]
    return shown
