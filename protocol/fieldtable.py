"""Field tables decoded with their AMQP value types kept, for comparisons that depend on them
(RabbitMQ's headers exchange compares nested arrays and tables type and value alike)."""

from __future__ import annotations

import datetime
import decimal
import struct
from typing import Any

TypedValue = tuple[str, Any]  # (AMQP type tag, value; arrays and tables hold TypedValues)
PRE_ENCODED = "="  # a pseudo-tag for a value already encoded (tag byte included), for encoding

_FIXED = {
    "t": struct.Struct("!B"), "b": struct.Struct("!b"), "B": struct.Struct("!B"),
    "s": struct.Struct("!h"), "U": struct.Struct("!h"), "u": struct.Struct("!H"),
    "I": struct.Struct("!i"), "i": struct.Struct("!I"), "l": struct.Struct("!q"),
    "L": struct.Struct("!q"), "f": struct.Struct("!f"), "d": struct.Struct("!d"),
    "T": struct.Struct("!Q"),
}
_u32 = struct.Struct("!I")
INTEGER_TAGS = frozenset("bBsUuIilL")
FLOAT_TAGS = frozenset("fd")


def decode_table(data: bytes, offset: int = 0) -> tuple[dict[str, TypedValue], int]:
    """A table at `offset` (with its 4-byte length): (entries, offset after it)."""
    end = offset + 4 + _u32.unpack_from(data, offset)[0]
    offset += 4
    table: dict[str, TypedValue] = {}
    while offset < end:
        name_length = data[offset]
        # Any bytes (RabbitMQ takes them): keys that are not UTF-8 encode back unchanged.
        name = data[offset + 1 : offset + 1 + name_length].decode("utf-8", "surrogateescape")
        value, offset = decode_value(data, offset + 1 + name_length)
        table[name] = value
    if offset != end:
        raise ValueError("field table length mismatch")
    return table, end


def decode_value(data: bytes, offset: int) -> tuple[TypedValue, int]:
    tag = chr(data[offset])
    offset += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        value = fixed.unpack_from(data, offset)[0]
        if tag == "L":  # RabbitMQ reads 'L' as its (signed) long, written back as 'l'
            return ("l", value), offset + fixed.size
        return (tag, bool(value) if tag == "t" else value), offset + fixed.size
    if tag in "Sx":
        length = _u32.unpack_from(data, offset)[0]
        return (tag, bytes(data[offset + 4 : offset + 4 + length])), offset + 4 + length
    if tag == "F":
        table, offset = decode_table(data, offset)
        return (tag, table), offset
    if tag == "A":
        end = offset + 4 + _u32.unpack_from(data, offset)[0]
        offset += 4
        items = []
        while offset < end:
            item, offset = decode_value(data, offset)
            items.append(item)
        return (tag, tuple(items)), end
    if tag == "D":
        scale = data[offset]
        unscaled = struct.unpack_from("!i", data, offset + 1)[0]
        return (tag, decimal.Decimal(unscaled).scaleb(-scale)), offset + 5
    if tag == "V":
        return (tag, None), offset
    raise ValueError(f"unknown field type {tag!r}")


def encode_table(table: dict[str, TypedValue]) -> bytes:
    """A typed table back to bytes (with its 4-byte length): the inverse of decode_table."""
    body = b"".join(
        bytes((len(raw_name),)) + raw_name + encode_value(value)
        for raw_name, value in (
            (name.encode("utf-8", "surrogateescape"), value) for name, value in table.items()
        )
    )
    return _u32.pack(len(body)) + body


def encode_value(value: TypedValue) -> bytes:
    tag, content = value
    if tag == PRE_ENCODED:
        return content
    fixed = _FIXED.get(tag)
    if fixed is not None:
        return tag.encode() + fixed.pack(content)
    if tag in "Sx":
        return tag.encode() + _u32.pack(len(content)) + content
    if tag == "F":
        return b"F" + encode_table(content)
    if tag == "A":
        items = b"".join(encode_value(item) for item in content)
        return b"A" + _u32.pack(len(items)) + items
    if tag == "D":
        sign, digits, exponent = content.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        scale = -exponent if exponent < 0 else 0
        if exponent > 0:
            unscaled *= 10**exponent
        return b"D" + bytes((scale,)) + struct.pack("!i", unscaled)
    if tag == "V":
        return b"V"
    raise ValueError(f"unknown field type {tag!r}")


def typed(value: Any) -> TypedValue:
    """The typed form of a decoded Python value, typed the way pika encodes it."""
    if value is None:
        return "V", None
    if isinstance(value, bool):
        return "t", value
    if isinstance(value, int):
        return ("I" if -(2**31) <= value < 2**31 else "l"), value
    if isinstance(value, float):
        return "d", value
    if isinstance(value, decimal.Decimal):
        return "D", value
    if isinstance(value, str):
        return "S", value.encode()
    if isinstance(value, bytes | bytearray):
        return "x", bytes(value)
    if isinstance(value, dict):
        return "F", {key: typed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return "A", tuple(typed(item) for item in value)
    if hasattr(value, "timestamp"):
        return "T", int(value.timestamp())
    return "S", str(value).encode()


# Python values that remember the AMQP integer/float type they were sent as, so reply texts can
# name it as RabbitMQ does ("of type 'long'", "expected integer, got float").
_NUMBER_TYPES: dict[str, type] = {}
for _tag, _name, _base in (
    ("b", "byte", int), ("B", "unsignedbyte", int), ("s", "short", int),
    ("U", "short", int), ("u", "unsignedshort", int), ("I", "signedint", int),
    ("i", "unsignedint", int), ("l", "long", int), ("L", "long", int), ("f", "float", float),
):
    _NUMBER_TYPES[_tag] = type(f"Amqp_{_name}", (_base,), {"amqp_type": _name})


def to_python(value: TypedValue) -> Any:
    """A typed value as a plain Python value (numbers of a type that names their AMQP type)."""
    tag, content = value
    number_type = _NUMBER_TYPES.get(tag)
    if number_type is not None:
        return number_type(content)
    if tag == "S":
        return content.decode(errors="replace")
    if tag == "F":
        return {key: to_python(item) for key, item in content.items()}
    if tag == "A":
        return [to_python(item) for item in content]
    if tag == "T":
        return datetime.datetime.fromtimestamp(content, tz=datetime.UTC)
    return content


def arguments_table(payload: bytes, shortstrs: int) -> dict[str, Any]:
    """The arguments table that ends a declare/consume method payload: after the method id,
    the reserved short, `shortstrs` short strings and one octet of bits."""
    offset = 6
    for _ in range(shortstrs):
        offset += 1 + payload[offset]
    table, _ = decode_table(payload, offset + 1)
    return {key: to_python(value) for key, value in table.items()}
