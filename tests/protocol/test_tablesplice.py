"""Bytes-only tests of protocol/tablesplice.py, and of the headers splice in properties.py.

`insert_sorted` is a shortcut: whenever it answers, its bytes must be exactly those of the general
way — decode the table, add the entries, sort by key, encode — and it must answer for tables that
encoding writes back unchanged. Hypothesis builds raw tables byte by byte, so they include what a
client may send and the general way would change: booleans other than 0/1, float NaN payloads,
decimals, duplicate and out-of-order keys (nested too), keys that are not UTF-8, bad lengths.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pamqp import commands as spec

from protocol import properties, tablesplice
from protocol.constants import PROPERTY_FLAGS
from protocol.fieldtable import decode_table, encode_table, encode_value

_u32 = struct.Struct("!I")
FIRST_DEATH_KEYS = ["x-death", "x-first-death-exchange", "x-first-death-queue",
                    "x-first-death-reason"]
KEYS = [b"", b"a", b"b", b"CC", b"alpha", b"x-death", b"x-first-death-queue", b"zeta",
        "é".encode(), "日本".encode(), b"\xff", b"x-delay"]


def general(raw_table: bytes, additions: dict) -> bytes:
    """The general way: decode, add, sort, encode."""
    decoded, _ = decode_table(raw_table)
    return encode_table(dict(sorted({**decoded, **additions}.items())))


def entries_of(additions: dict) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(tablesplice.encoded_entry(key, encode_value(value))
                 for key, value in sorted(additions.items()))


def table_bytes(entries: list[bytes]) -> bytes:
    body = b"".join(entries)
    return _u32.pack(len(body)) + body


# -- raw values and tables, byte by byte --------------------------------------------------------

FIXED_SIZES = {"b": 1, "B": 1, "s": 2, "U": 2, "u": 2, "I": 4, "i": 4, "l": 8, "L": 8, "T": 8,
               "f": 4, "d": 8, "t": 1}


def fixed_value(tag: str) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=FIXED_SIZES[tag], max_size=FIXED_SIZES[tag]).map(
        lambda raw: tag.encode() + raw
    )


def long_string(tag: bytes) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=12).map(lambda raw: tag + _u32.pack(len(raw)) + raw)


NAN_PAYLOADS = st.sampled_from([
    b"f\x7f\xc0\x00\x00", b"f\x7f\x80\x00\x01", b"f\xff\xc0\x00\x01",  # quiet, signalling NaNs
    b"d\x7f\xf8\x00\x00\x00\x00\x00\x00", b"d\x7f\xf0\x00\x00\x00\x00\x00\x01",
])
SCALARS = st.one_of(
    *(fixed_value(tag) for tag in FIXED_SIZES),
    st.sampled_from([b"t\x00", b"t\x01", b"t\x02", b"V"]),
    long_string(b"S"), long_string(b"x"),
    st.binary(min_size=5, max_size=5).map(lambda raw: b"D" + raw),
    NAN_PAYLOADS,
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=3).map(str.encode))


def entry(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(KEY, values).map(lambda kv: bytes((len(kv[0]),)) + kv[0] + kv[1])


def nested(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    tables = st.lists(entry(values), max_size=3).map(lambda items: b"F" + table_bytes(items))
    arrays = st.lists(values, max_size=3).map(
        lambda items: b"A" + _u32.pack(len(b"".join(items))) + b"".join(items)
    )
    return st.one_of(tables, arrays)


VALUES = st.recursive(SCALARS, nested, max_leaves=6)
RAW_TABLES = st.lists(entry(VALUES), max_size=6).map(table_bytes)
ADDITIONS = st.dictionaries(
    st.sampled_from(FIRST_DEATH_KEYS + ["b", "m", "zz"]),
    st.sampled_from([("S", b"expired"), ("l", 1), ("T", 1700000000),
                     ("A", (("F", {"count": ("l", 1), "queue": ("S", b"q")}),))]),
    max_size=4,
)


def canonical_tables() -> st.SearchStrategy[dict]:
    """Typed tables as encoding writes them (unique keys, canonical values), in any order."""
    scalar = st.one_of(
        st.tuples(st.just("S"), st.binary(max_size=8)),
        st.tuples(st.just("l"), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just("I"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("t"), st.booleans()),
        st.tuples(st.just("d"), st.floats(allow_nan=False)),
        st.tuples(st.just("T"), st.integers(0, 2**40)),
        st.tuples(st.just("V"), st.none()),
    )
    value = st.recursive(scalar, lambda inner: st.one_of(
        st.tuples(st.just("A"), st.lists(inner, max_size=3).map(tuple)),
        st.tuples(st.just("F"), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    ), max_leaves=5)
    return st.dictionaries(st.text(max_size=6), value, max_size=6)


# -- insert_sorted -------------------------------------------------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RAW_TABLES, ADDITIONS)
def test_any_answer_is_the_general_ways_bytes(raw_table, additions):
    spliced = tablesplice.insert_sorted(raw_table, 0, entries_of(additions))
    try:
        expected = general(raw_table, additions)
    except Exception:  # the general way fails on it: the shortcut must not answer
        assert spliced is None
        return
    if spliced is not None:
        assert spliced == expected


@settings(max_examples=300, deadline=None)
@given(canonical_tables(), ADDITIONS)
def test_canonical_tables_take_the_splice(table, additions):
    assume(not set(table) & set(additions))
    raw_table = encode_table(table)
    spliced = tablesplice.insert_sorted(raw_table, 0, entries_of(additions))
    assert spliced == general(raw_table, additions)


@settings(max_examples=200, deadline=None)
@given(canonical_tables(), st.binary(max_size=6), st.binary(max_size=3))
def test_offset_inside_larger_bytes(table, before, after):
    raw = before + encode_table(table) + after
    additions = {"x-death": ("S", b"d")}
    assume("x-death" not in table)
    spliced = tablesplice.insert_sorted(raw, len(before), entries_of(additions))
    assert spliced == general(encode_table(table), additions)


def test_sorts_keys_as_rabbitmq_writes_them():
    raw = encode_table({"zeta": ("S", b"z"), "alpha": ("I", 1), "CC": ("A", ())})
    spliced = tablesplice.insert_sorted(raw, 0, entries_of({"x-death": ("l", 1)}))
    assert list(decode_table(spliced)[0]) == ["CC", "alpha", "x-death", "zeta"]


@pytest.mark.parametrize("raw_entries", [
    [b"\x01at\x02"],  # a boolean that encodes back as 1
    [b"\x01aS\x00\x00\x00\x00", b"\x01aI\x00\x00\x00\x01"],  # a duplicate key
    [b"\x01\xffV"],  # a key that is not UTF-8
    [b"\x01aF" + table_bytes([b"\x01bV", b"\x01bV"])],  # a nested duplicate
    [b"\x01aQ"],  # an unknown type
], ids=["bool-2", "duplicate", "not-utf8", "nested-duplicate", "unknown-type"])
def test_tables_the_general_way_changes_are_refused(raw_entries):
    assert tablesplice.insert_sorted(table_bytes(raw_entries), 0, ()) is None


def test_existing_and_refused_keys():
    raw = encode_table({"CC": ("A", ()), "x-death": ("V", None)})
    assert tablesplice.insert_sorted(raw, 0, entries_of({"x-death": ("l", 1)})) is None
    assert tablesplice.insert_sorted(raw, 0, entries_of({"b": ("l", 1)}), (b"CC",)) is None
    assert tablesplice.insert_sorted(raw, 0, entries_of({"b": ("l", 1)})) is not None


@pytest.mark.parametrize("raw", [
    b"\x00\x00\x00\x09\x01aS\x00\x00\x00\x05",  # a string longer than the table
    b"\x00\x00\x00\x02\x01aV",  # an entry running past the table
    b"\x00\x00\x01\x00",  # a length past the end
    b"\x00\x00",
])
def test_malformed_tables_are_refused(raw):
    assert tablesplice.insert_sorted(raw, 0, ()) is None


# -- headers_offset / set_headers ----------------------------------------------------------------

PAMQP_NAME = {name: name for name, _, _ in PROPERTY_FLAGS} | {"type": "message_type"}
SOME_VALUES = {
    "content_type": "text/plain", "content_encoding": "gzip", "headers": {"a": 1, "b": "two"},
    "delivery_mode": 2, "priority": 3, "correlation_id": "c-1", "expiration": "60000",
    "message_id": "m-1", "app_id": "app", "user_id": "guest",
}


@settings(deadline=None)
@given(st.sets(st.sampled_from(list(SOME_VALUES))), canonical_tables())
def test_set_headers_is_rebuild(names, table):
    values = {PAMQP_NAME[name]: SOME_VALUES[name] for name in sorted(names)}
    raw = spec.Basic.Properties(**values).marshal()
    encoded = encode_table(table)
    offset = properties.headers_offset(raw)
    assert properties.set_headers(raw, offset, encoded) == properties.rebuild(
        raw, {"headers": encoded}
    )


def test_headers_offset_gives_up_on_continuation_flags():
    assert properties.headers_offset(b"\x00\x01\x00\x00") is None
    assert properties.headers_offset(b"") is None
