"""Bytes-only tests of protocol/fieldtable.py: the publish-time check (`well_formed`), the typed
decode and encode, and the conversions to and from Python values, at shallow depths
cross-checked against pamqp (what pika and aio-pika send and read), and nested thousands deep,
where each must work without recursion (shown by running them under a low recursion limit).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode
from rabbitmq_oracle import oracle_accepts_table

from protocol.fieldtable import (
    decode_table,
    decode_value,
    encode_table,
    encode_value,
    rebuild_nested,
    to_python,
    typed,
    typed_children,
    well_formed,
)

DEPTH = 3000


@contextlib.contextmanager
def recursion_limit(limit: int):
    """Anything recursive nests deeper than `limit` frames here and fails."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def tbl(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def deep_bytes(depth: int) -> bytes:
    """A table {"t": {"a": [[... {"a": [... 7]}]]}} alternating tables and arrays, `depth` deep."""
    value = b"I" + struct.pack(">i", 7)
    for level in range(depth):
        value = b"F" + tbl(b"\x01a" + value) if level % 2 else b"A" + tbl(value + b"V")
    return tbl(b"\x01t" + value)


# --------------------------------------------------------------------------------------------
# Deep values, without recursion


def test_deep_table_is_well_formed_decoded_and_encoded_back_without_recursion():
    data = deep_bytes(DEPTH)
    with recursion_limit(100):
        assert well_formed(data, 4, len(data))
        table, end = decode_table(data)
        assert end == len(data)
        assert encode_table(table) == data
        assert encode_value(("F", table)) == b"F" + data
        value, end = decode_value(b"F" + data, 0)
        assert end == len(data) + 1
        assert encode_value(value) == b"F" + data  # (== on such values would recurse)
        plain = to_python(("F", table))
        assert encode_value(typed(plain)) == b"F" + data
    value, depth = plain["t"], 0
    while not isinstance(value, int):
        value = value["a"] if isinstance(value, dict) else value[0]
        depth += 1
    assert (depth, value) == (DEPTH, 7)


def test_deep_damage_is_found_at_the_bottom():
    data = bytearray(deep_bytes(DEPTH))
    bottom = data.index(b"I\x00\x00\x00\x07")
    data[bottom] = ord("Z")
    with recursion_limit(100):
        assert not well_formed(bytes(data), 4, len(data))
        with pytest.raises(ValueError):
            decode_table(bytes(data))


def test_rebuild_nested_keeps_structure_and_order():
    value = {"b": [1, {"c": (2, 3)}], "a": {}}
    def children(v):
        return ((True, iter(v.items())) if isinstance(v, dict)
                    else (False, iter(v)) if isinstance(v, list | tuple) else None)
    assert rebuild_nested(value, children, lambda leaf: leaf * 10) == {
        "b": [10, {"c": [20, 30]}], "a": {}}
    assert list(rebuild_nested(value, children, lambda leaf: leaf)) == ["b", "a"]
    assert rebuild_nested(5, children, str) == "5"


def test_typed_children_tells_tables_and_arrays_from_leaves():
    assert typed_children(("I", 1)) is None
    is_table, items = typed_children(("F", {"k": ("V", None)}))
    assert is_table and list(items) == [("k", ("V", None))]
    is_table, items = typed_children(("A", (("t", True),)))
    assert not is_table and list(items) == [("t", True)]


# --------------------------------------------------------------------------------------------
# Against pamqp (shallow)

keys = st.text(min_size=0, max_size=8)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=12),
    st.decimals(allow_nan=False, allow_infinity=False, places=2,
                min_value=decimal.Decimal("-20000000"), max_value=decimal.Decimal("20000000")),
    st.datetimes(min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2100, 1, 1),
                 timezones=st.just(datetime.UTC)).map(lambda d: d.replace(microsecond=0)),
)
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
tables = st.dictionaries(keys, values, max_size=5)


@settings(deadline=None, max_examples=300)
@given(tables)
def test_what_pamqp_encodes_is_well_formed_and_reads_back_the_same(table):
    data = pamqp_encode.field_table(table)
    assert well_formed(data, 4, len(data))
    decoded, end = decode_table(data)
    assert end == len(data)
    assert encode_table(decoded) == data
    _, by_pamqp = pamqp_decode.field_table(data)
    assert to_python(("F", decoded)) == by_pamqp


@settings(deadline=None, max_examples=400)
@given(tables, st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_well_formed_agrees_with_rabbitmq_on_damaged_tables(table, where, byte, cut):
    """One byte changed or the bytes cut anywhere: the check accepts exactly what RabbitMQ's
    parser accepts, and what it accepts decodes (a boolean byte other than 0 or 1 then encodes
    back as 1, so the bytes may differ)."""
    data = pamqp_encode.field_table(table)
    where %= len(data)
    damaged = data[:where] if cut else data[:where] + bytes((byte,)) + data[where + 1:]
    content = damaged[4:]
    assert well_formed(tbl(content), 4, len(content) + 4) is oracle_accepts_table(content)
    if oracle_accepts_table(content):
        decoded, end = decode_table(tbl(content))
        assert end == len(content) + 4
        assert well_formed(encode_table(decoded), 4, len(encode_table(decoded)))


def test_keys_that_are_not_utf8_round_trip():
    data = tbl(b"\x02\xff\xfeI\x00\x00\x00\x01\x01aS" + tbl(b"\xff"))
    assert well_formed(data, 4, len(data))
    table, _ = decode_table(data)
    assert list(table) == ["\udcff\udcfe", "a"]
    assert encode_table(table) == data


def test_odd_keys_and_long_L_at_the_bottom_of_a_deep_table():
    """Keys that are not UTF-8 and RabbitMQ's reading of `L` (a signed long, written back as
    `l`) hold 3000 deep, without recursion."""
    def nested(long_tag: bytes) -> bytes:
        data = tbl(b"\x02\xff\xfe" + long_tag + struct.pack(">Q", 2**63)
                   + b"\x01k" + long_tag + struct.pack(">q", -1))
        for _ in range(DEPTH + 1):
            data = tbl(b"\x01tF" + data)
        return data

    data = nested(b"L")
    with recursion_limit(100):
        assert well_formed(data, 4, len(data))
        table, _ = decode_table(data)
        assert encode_table(table) == nested(b"l")
    for _ in range(DEPTH + 1):
        table = table["t"][1]
    assert table == {"\udcff\udcfe": ("l", -(2**63)), "k": ("l", -1)}


@pytest.mark.parametrize("value, expected", [
    (b"U\x00\x01", False), (b"f" + struct.pack(">f", float("nan")), False),
    (b"d" + struct.pack(">d", float("-inf")), False), (b"L" + bytes(8), True),
    (b"t\x07", True), (b"D\x02\x00\x00\x00\x01", True), (b"x" + tbl(b"\x00"), True),
])
def test_tags_as_rabbitmq_parses_them(value, expected):
    data = tbl(b"\x01k" + value)
    assert well_formed(data, 4, len(data)) is expected
    array = tbl(value)
    assert well_formed(array, 4, len(array), is_table=False) is expected
