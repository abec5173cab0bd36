"""Field tables: their wire format checked, decoded with their AMQP value types kept, and
encoded back, all without recursion (tables and arrays may nest thousands deep: RabbitMQ accepts
them, so the walks here keep their own stacks).

`well_formed` is the publish-time check: one pass over the bytes that builds nothing and accepts
exactly what RabbitMQ's parser accepts. Decoded tables keep value types for comparisons that
depend on them (RabbitMQ's headers exchange compares nested arrays and tables type and value
alike). Keys are decoded with `surrogateescape`, so keys that are not UTF-8 (RabbitMQ takes any
bytes) encode back to their original bytes. `L` is read as RabbitMQ reads it, a signed long,
and decoded as `l`, so a table Warren rewrites (dead-lettering) writes it back as `l` as RabbitMQ
does.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Callable, Iterator
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


# What `well_formed` accepts after each tag byte: a fixed number of bytes, or one of the
# codes below. RabbitMQ's parser knows these tags and no others (no 'U').
_LONG, _TABLE, _ARRAY, _FLOAT, _DOUBLE = -1, -2, -3, -4, -5
_STEPS: dict[int, int] = {
    **{ord(tag): size for tag, size in (
        ("b", 1), ("B", 1), ("s", 2), ("u", 2), ("I", 4), ("i", 4), ("l", 8), ("L", 8),
        ("T", 8), ("t", 1), ("D", 5), ("V", 0),
    )},
    ord("S"): _LONG, ord("x"): _LONG, ord("F"): _TABLE, ord("A"): _ARRAY,
    ord("f"): _FLOAT, ord("d"): _DOUBLE,
}  # fmt: skip


def well_formed(data: bytes, offset: int, end: int, is_table: bool = True) -> bool:
    """Whether data[offset:end] is the content of a table (or of an array) as RabbitMQ parses
    it: every key and value inside the bounds of the table or array holding it, known tags
    only, floats finite (Erlang's float match refuses NaN and infinities). Builds nothing."""
    stack: list[tuple[int, bool]] = []
    steps = _STEPS
    unpack = _u32.unpack_from
    try:
        while True:
            if offset >= end:
                if offset > end:
                    return False
                if not stack:
                    return True
                end, is_table = stack.pop()
                continue
            if is_table:
                offset += 1 + data[offset]
                if offset >= end:
                    return False  # a key without its value
            tag = data[offset]
            offset += 1
            if tag == 83:  # "S", the most common value in headers
                offset += 4 + unpack(data, offset)[0]
                continue
            step = steps.get(tag)
            if step is None:
                return False
            if step >= 0:
                offset += step
            elif step == _LONG:
                offset += 4 + unpack(data, offset)[0]
            elif step in (_TABLE, _ARRAY):
                inner_end = offset + 4 + unpack(data, offset)[0]
                if inner_end > end:
                    return False
                stack.append((end, is_table))
                offset, end, is_table = offset + 4, inner_end, step == _TABLE
            elif step == _DOUBLE:
                if data[offset] & 0x7F == 0x7F and data[offset + 1] & 0xF0 == 0xF0:
                    return False
                offset += 8
            else:  # _FLOAT
                if data[offset] & 0x7F == 0x7F and data[offset + 1] & 0x80:
                    return False
                offset += 4
    except (IndexError, struct.error):
        return False


def decode_table(data: bytes, offset: int = 0) -> tuple[dict[str, TypedValue], int]:
    """A table at `offset` (with its 4-byte length): (entries, offset after it)."""
    end = offset + 4 + _u32.unpack_from(data, offset)[0]
    if end > len(data):
        raise ValueError("field table length runs past the data")
    table, _ = _decode_container(data, offset + 4, end, {})
    return table, end


def decode_value(data: bytes, offset: int) -> tuple[TypedValue, int]:
    """The value at `offset` (its tag byte first): (value, offset after it)."""
    tag = chr(data[offset])
    if tag == "F" or tag == "A":
        end = offset + 5 + _u32.unpack_from(data, offset + 1)[0]
        if end > len(data):
            raise ValueError("field value length runs past the data")
        content, _ = _decode_container(data, offset + 5, end, {} if tag == "F" else [])
        return (tag, content if tag == "F" else tuple(content)), end
    return _decode_scalar(data, offset + 1, tag)


def _decode_container(
    data: bytes, offset: int, end: int, root: dict | list
) -> tuple[dict | list, int]:
    """The entries of a table (root a dict) or items of an array (root a list) in
    data[offset:end]; nested ones are walked with a stack, not by recursion."""
    # Each stack entry: the enclosing container, its end, and where the inner one goes in it.
    stack: list[tuple[dict | list, int, str | None, str]] = []
    container = root
    while True:
        if offset >= end:
            if offset != end:
                raise ValueError("field table length mismatch")
            if not stack:
                return root, end
            inner = container
            container, end, key, tag = stack.pop()
            value: TypedValue = (tag, inner if tag == "F" else tuple(inner))
            if key is None:
                container.append(value)  # type: ignore[union-attr]
            else:
                container[key] = value  # type: ignore[index]
            continue
        key = None
        if type(container) is dict:
            name_end = offset + 1 + data[offset]
            key = data[offset + 1 : name_end].decode("utf-8", "surrogateescape")
            offset = name_end
        tag = chr(data[offset])
        if tag == "F" or tag == "A":
            inner_end = offset + 5 + _u32.unpack_from(data, offset + 1)[0]
            if inner_end > end:
                raise ValueError("nested field table runs past its parent")
            stack.append((container, end, key, tag))
            container, offset, end = ({} if tag == "F" else []), offset + 5, inner_end
            continue
        value, offset = _decode_scalar(data, offset + 1, tag)
        if key is None:
            container.append(value)  # type: ignore[union-attr]
        else:
            container[key] = value  # type: ignore[index]


def _decode_scalar(data: bytes, offset: int, tag: str) -> tuple[TypedValue, int]:
    """A value other than a table or array, whose tag was read just before `offset`."""
    fixed = _FIXED.get(tag)
    if fixed is not None:
        value = fixed.unpack_from(data, offset)[0]
        if tag == "L":  # RabbitMQ reads 'L' as its (signed) long, written back as 'l'
            return ("l", value), offset + fixed.size
        return (tag, bool(value) if tag == "t" else value), offset + fixed.size
    if tag in "Sx":
        length = _u32.unpack_from(data, offset)[0]
        end = offset + 4 + length
        if end > len(data):
            raise ValueError("string runs past the data")
        return (tag, bytes(data[offset + 4 : end])), end
    if tag == "D":
        scale = data[offset]
        unscaled = struct.unpack_from("!i", data, offset + 1)[0]
        return (tag, decimal.Decimal(unscaled).scaleb(-scale)), offset + 5
    if tag == "V":
        return (tag, None), offset
    raise ValueError(f"unknown field type {tag!r}")


_END = object()


def encode_table(table: dict[str, TypedValue]) -> bytes:
    """A typed table back to bytes (with its 4-byte length): the inverse of decode_table."""
    out = bytearray(4)
    _encode_nested(out, [(iter(table.items()), True, 0)])
    return bytes(out)


def encode_value(value: TypedValue) -> bytes:
    tag, content = value
    if tag == "F" or tag == "A":
        out = bytearray(tag.encode() + bytes(4))
        items = iter(content.items()) if tag == "F" else iter(content)
        _encode_nested(out, [(items, tag == "F", 1)])
        return bytes(out)
    return _encode_scalar(tag, content)


def _encode_nested(out: bytearray, stack: list[tuple[Any, bool, int]]) -> None:
    """Append the rest of the open tables and arrays on `stack` — (iterator over the entries
    or items left, is a table, where its 4-byte length goes) — to `out`, innermost first;
    each length is filled in when its table or array is done."""
    while stack:
        items, is_table, length_at = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            out[length_at : length_at + 4] = _u32.pack(len(out) - length_at - 4)
            continue
        if is_table:
            name, item = item
            raw_name = name.encode("utf-8", "surrogateescape")
            out.append(len(raw_name))
            out += raw_name
        tag, content = item
        if tag == "F" or tag == "A":
            out += tag.encode()
            stack.append((
                iter(content.items()) if tag == "F" else iter(content), tag == "F", len(out)
            ))
            out += bytes(4)
        else:
            out += _encode_scalar(tag, content)


def _encode_scalar(tag: str, content: Any) -> bytes:
    if tag == PRE_ENCODED:
        return content
    fixed = _FIXED.get(tag)
    if fixed is not None:
        return tag.encode() + fixed.pack(content)
    if tag in "Sx":
        return tag.encode() + _u32.pack(len(content)) + content
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


def rebuild_nested(
    value: Any,
    children: Callable[[Any], tuple[bool, Iterator[Any]] | None],
    leaf: Callable[[Any], Any],
    finish: Callable[[Any, Any], Any] = lambda _source, built: built,
) -> Any:
    """A copy of a nested value built without recursion. `children(v)` says whether v is a
    table — (True, iterator of (key, child)) —, an array — (False, iterator of children) — or
    a leaf (None), which becomes `leaf(v)`; a table or array becomes `finish(v, built)` where
    built is the dict or list of its converted children."""
    opened = children(value)
    if opened is None:
        return leaf(value)
    # Each entry: the source value, is a table, its children left, what is built, its key.
    stack: list[tuple[Any, bool, Iterator[Any], Any, Any]] = [
        (value, opened[0], opened[1], {} if opened[0] else [], None)
    ]
    while True:
        source, is_table, items, built, key = stack[-1]
        item = next(items, _END)
        if item is _END:
            stack.pop()
            result = finish(source, built)
            if not stack:
                return result
            parent = stack[-1][3]
            if type(parent) is dict:
                parent[key] = result
            else:
                parent.append(result)
            continue
        child_key, child = item if is_table else (None, item)
        opened = children(child)
        if opened is None:
            if is_table:
                built[child_key] = leaf(child)
            else:
                built.append(leaf(child))
        else:
            stack.append((child, opened[0], opened[1], {} if opened[0] else [], child_key))


def _python_children(value: Any) -> tuple[bool, Iterator[Any]] | None:
    if isinstance(value, dict):
        return True, iter(value.items())
    if isinstance(value, list | tuple):
        return False, iter(value)
    return None


def typed_children(value: TypedValue) -> tuple[bool, Iterator[Any]] | None:
    tag = value[0]
    if tag == "F":
        return True, iter(value[1].items())
    if tag == "A":
        return False, iter(value[1])
    return None


def typed(value: Any) -> TypedValue:
    """The typed form of a decoded Python value, typed the way pika encodes it."""
    return rebuild_nested(value, _python_children, _typed_leaf, _typed_container)


def _typed_container(source: Any, built: dict | list) -> TypedValue:
    return ("F", built) if isinstance(source, dict) else ("A", tuple(built))


def _typed_leaf(value: Any) -> TypedValue:
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
    return rebuild_nested(value, typed_children, _python_leaf)


def _python_leaf(value: TypedValue) -> Any:
    tag, content = value
    number_type = _NUMBER_TYPES.get(tag)
    if number_type is not None:
        return number_type(content)
    if tag == "S":
        return content.decode(errors="replace")
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
