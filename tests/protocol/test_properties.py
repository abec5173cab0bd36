"""Bytes-only tests of protocol/properties.py: lazy reads of raw basic-properties bytes.

The property bytes are made by pamqp's Basic.Properties.marshal() (what a pika or aio-pika
publisher sends), with every property set and with many subsets of them. pamqp refuses to marshal
a non-empty cluster_id, so that one is built by hand where a test needs it.
"""

from __future__ import annotations

import datetime
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from rabbitmq_oracle import oracle_accepts

from protocol import properties
from protocol.constants import PROPERTY_FLAGS
from protocol.errors import AMQPConnectionError
from protocol.fieldtable import to_python

# Warren's property names are the wire names; pamqp calls "type" message_type.
PAMQP_NAME = {name: name for name, _, _ in PROPERTY_FLAGS} | {"type": "message_type"}
SHORTSTRS = [
    name for name, _, kind in PROPERTY_FLAGS if kind == "shortstr" and name != "cluster_id"
]

ALL_VALUES = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {
        "x-retries": 3,
        "origin": "tests",
        "big": 2**40,
        "ratio": 0.5,
        "flag": False,
        "nested": {"ok": True, "list": [1, "two", {"three": 3}]},
        "x-death": [{"queue": "q", "reason": "rejected", "count": 1}],
    },
    "delivery_mode": 2,
    "priority": 9,
    "correlation_id": "corr-42",
    "reply_to": "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxNDQ5NjQ1NQAAAAAAAAAA",
    "expiration": "60000",
    "message_id": "8c3d5a4e-1f2b-4c8d-9e7a-0b1c2d3e4f50",
    "timestamp": datetime.datetime(2024, 5, 17, 12, 30, 15, tzinfo=datetime.UTC),
    "type": "order.created",
    "user_id": "guest",
    "app_id": "warren-tests",
}
NAMES = list(ALL_VALUES)

SUBSETS = [
    [],
    NAMES,
    ["delivery_mode"],
    ["headers"],
    ["reply_to"],
    ["app_id"],
    ["timestamp", "app_id"],
    ["content_type", "delivery_mode", "priority"],
    ["headers", "reply_to", "expiration"],
    ["correlation_id", "reply_to"],
    [name for name in NAMES if name != "headers"],
    [name for name in NAMES if name != "reply_to"],
    NAMES[::2],
    NAMES[1::2],
]


def pamqp_properties(values: dict) -> spec.Basic.Properties:
    return spec.Basic.Properties(**{PAMQP_NAME[name]: value for name, value in values.items()})


def decoded_all(values: dict) -> dict:
    """What decode_all gives for properties pamqp marshalled from `values`."""
    expected = {}
    for name, value in values.items():
        if isinstance(value, str):
            value = value.encode()
        elif isinstance(value, datetime.datetime):
            value = int(value.timestamp())
        expected[name] = value
    return expected


def plain_decode_all(raw: bytes) -> dict:
    """decode_all with the typed headers table as plain Python values."""
    decoded = properties.decode_all(raw)
    if "headers" in decoded:
        decoded["headers"] = to_python(("F", decoded["headers"]))
    return decoded


def raw_of(names: list[str]) -> tuple[bytes, dict]:
    values = {name: ALL_VALUES[name] for name in names}
    return pamqp_properties(values).marshal(), values


def check_reads(raw: bytes, values: dict) -> None:
    """get/has/decode_all on `raw` give exactly `values` (absent properties are None)."""
    properties.validate(raw)
    for name, _, _ in PROPERTY_FLAGS:
        assert properties.has(raw, name) is (name in values), name
        assert properties.get(raw, name) == values.get(name), name
    assert plain_decode_all(raw) == decoded_all(values)


@pytest.mark.parametrize("names", SUBSETS, ids=lambda names: "+".join(names) or "none")
def test_reads_match_what_pamqp_marshalled(names):
    raw, values = raw_of(names)
    check_reads(raw, values)


@pytest.mark.parametrize("name", NAMES)
def test_each_property_alone(name):
    raw, values = raw_of([name])
    check_reads(raw, values)


@settings(deadline=None)
@given(st.sets(st.sampled_from(NAMES)))
def test_any_subset(names):
    raw, values = raw_of(sorted(names))
    check_reads(raw, values)


def test_value_types():
    raw, _ = raw_of(NAMES)
    assert isinstance(properties.get(raw, "delivery_mode"), int)
    assert isinstance(properties.get(raw, "headers"), dict)
    stamp = properties.get(raw, "timestamp")
    assert isinstance(stamp, datetime.datetime)
    assert stamp.timestamp() == ALL_VALUES["timestamp"].timestamp()


def test_has_on_too_short_bytes():
    assert not properties.has(b"", "content_type")
    assert not properties.has(b"\x80", "content_type")


def test_cluster_id_read_from_bytes_pamqp_would_not_write():
    raw = b"\x02\x04" + b"\x05rk.q1" + b"\x05node1"  # reply_to and cluster_id
    properties.validate(raw)
    assert properties.get(raw, "reply_to") == "rk.q1"
    assert properties.get(raw, "cluster_id") == "node1"
    assert properties.get(raw, "app_id") is None
    replaced = properties.replace_shortstr(raw, "reply_to", "other")
    assert replaced == b"\x02\x04" + b"\x05other" + b"\x05node1"


def test_unicode_shortstr():
    raw = pamqp_properties({"content_type": "text/plain", "app_id": "приложение 🐇"}).marshal()
    assert properties.get(raw, "app_id") == "приложение 🐇"
    assert properties.get(raw, "content_type") == "text/plain"


# ---------------------------------------------------------------------------------------------
# replace_shortstr

NEW_VALUES = ["", "x", "amq.rabbitmq.reply-to.new", "ünïcode ✓", "r" * 255]


@pytest.mark.parametrize("names", [NAMES, ["reply_to"], ["reply_to", "headers", "app_id"]],
                         ids=["all", "alone", "some"])
@pytest.mark.parametrize("new_value", NEW_VALUES, ids=lambda value: f"len{len(value)}")
def test_replace_reply_to_keeps_every_other_property(names, new_value):
    raw, values = raw_of(names)
    replaced = properties.replace_shortstr(raw, "reply_to", new_value)
    properties.validate(replaced)
    assert properties.get(replaced, "reply_to") == new_value
    for name, _, _ in PROPERTY_FLAGS:
        if name != "reply_to":
            assert properties.get(replaced, name) == properties.get(raw, name), name
            assert properties.has(replaced, name) == properties.has(raw, name), name
    assert replaced[:2] == raw[:2]  # same flags
    assert plain_decode_all(replaced) == decoded_all({**values, "reply_to": new_value})
    if new_value:
        assert replaced == pamqp_properties({**values, "reply_to": new_value}).marshal()


@pytest.mark.parametrize("name", SHORTSTRS)
def test_replace_any_shortstr(name):
    raw, values = raw_of(NAMES)
    replaced = properties.replace_shortstr(raw, name, "replaced")
    assert replaced == pamqp_properties({**values, name: "replaced"}).marshal()
    check_reads(replaced, {**values, name: "replaced"})


def test_replace_shortstr_of_an_absent_property_raises():
    raw, _ = raw_of(["app_id"])
    with pytest.raises(KeyError):
        properties.replace_shortstr(raw, "reply_to", "x")


# ---------------------------------------------------------------------------------------------
# validate


def raises_541():
    """RabbitMQ's answer to property bytes it cannot decode (its channel process crashes)."""
    return pytest.raises(
        AMQPConnectionError,
        check=lambda exc: (exc.reply_code, exc.reply_text, exc.class_id, exc.method_id)
        == (541, "INTERNAL_ERROR", 0, 0),
    )


@pytest.mark.parametrize("names", SUBSETS, ids=lambda names: "+".join(names) or "none")
def test_validate_refuses_every_truncation(names):
    raw, _ = raw_of(names)
    properties.validate(raw)
    for cut in range(len(raw)):
        with raises_541():
            properties.validate(raw[:cut])


def tbl(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# Each was sent to RabbitMQ 3.10.8 in a content header (tests/broker/RABBITMQ_HOSTILE.md).
REFUSED = {
    "empty": b"",
    "half a flag word": b"\x00",
    "content_type flagged, no value": b"\x80\x00",
    "shortstr longer than what follows": b"\x80\x00\x0aabc",
    "headers table longer than what follows": b"\x20\x00" + struct.pack(">I", 100) + b"\x01aSx",
    "unknown field type Z": b"\x20\x00" + tbl(b"\x01aZ"),
    "field type U (not RabbitMQ's)": b"\x20\x00" + tbl(b"\x01aU\x00\x01"),
    "continuation word (bit 0 set, 2 more bytes)": b"\x00\x01\x00\x00",
    "bytes after the last property": b"\x00\x00xx",
    "delivery_mode flagged, no octet": b"\x10\x00",
    "timestamp of 7 bytes": b"\x00\x40" + bytes(7),
    "nested table past its parent":
        b"\x20\x00" + tbl(b"\x01aF" + struct.pack(">I", 10) + b"\x01bV"),
    "key longer than the table": b"\x20\x00" + tbl(b"\x05ab"),
    "key without a value": b"\x20\x00" + tbl(b"\x01a"),
    "array with unknown type": b"\x20\x00" + tbl(b"\x01aA" + tbl(b"Z")),
    "float NaN": b"\x20\x00" + tbl(b"\x01af" + struct.pack(">f", math.nan)),
    "float -infinity": b"\x20\x00" + tbl(b"\x01af" + struct.pack(">f", -math.inf)),
    "double infinity": b"\x20\x00" + tbl(b"\x01ad" + struct.pack(">d", math.inf)),
    "NaN double in an array":
        b"\x20\x00" + tbl(b"\x01aA" + tbl(b"d" + struct.pack(">d", math.nan))),
    "decimal cut short": b"\x20\x00" + tbl(b"\x01aD\x02\x00\x00"),
    "longstr past its table": b"\x20\x00" + tbl(b"\x01aS" + struct.pack(">I", 5) + b"ab") + b"xyz",
}
ACCEPTED = {
    "undefined flag bit 1": b"\x00\x02",
    "undefined bits 0 and 1 with a content_type": b"\x80\x03\x02ab",
    "bit 0 alone (no continuation word follows)": b"\x00\x01",
    "field type L": b"\x20\x00" + tbl(b"\x01aL" + b"\xff" * 8),
    "boolean of 2": b"\x20\x00" + tbl(b"\x01at\x02"),
    "content_type not UTF-8": b"\x80\x00\x02\xff\xfe",
    "header key not UTF-8": b"\x20\x00" + tbl(b"\x02\xff\xfeI\x00\x00\x00\x01"),
    "longstr not UTF-8": b"\x20\x00" + tbl(b"\x01aS" + struct.pack(">I", 2) + b"\xff\xfe"),
    "empty key": b"\x20\x00" + tbl(b"\x00V"),
    "largest finite double":
        b"\x20\x00" + tbl(b"\x01ad" + struct.pack(">d", 1.7976931348623157e308)),
    "every tag RabbitMQ knows": b"\x20\x00" + tbl(
        b"\x01bb\xff\x01BB\xff\x01ss\xff\xff\x01uu\xff\xff\x01II\x00\x00\x00\x01"
        b"\x01ii\xff\xff\xff\xff\x01ll" + bytes(8) + b"\x01LL" + bytes(8) + b"\x01TT" + bytes(8)
        + b"\x01tt\x01\x01DD\x02\x00\x00\x01\x00\x01ff" + struct.pack(">f", 1.5)
        + b"\x01dd" + struct.pack(">d", -2.5) + b"\x01SS" + tbl(b"str") + b"\x01xx" + tbl(b"\x00")
        + b"\x01VV\x01FF" + tbl(b"\x01kV") + b"\x01AA" + tbl(b"V" + b"I" + bytes(4))
    ),
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_validate_refuses_what_rabbitmq_cannot_decode(raw):
    assert not properties.well_formed(raw)
    with raises_541():
        properties.validate(raw)


@pytest.mark.parametrize("raw", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_validate_accepts_what_rabbitmq_accepts(raw):
    assert properties.well_formed(raw)
    properties.validate(raw)
    properties.decode_all(raw)  # and every property reads back


@pytest.mark.parametrize("raw", [*REFUSED.values(), *ACCEPTED.values()])
def test_oracle_agrees_with_rabbitmq_on_the_probed_bytes(raw):
    assert oracle_accepts(raw) is (raw in ACCEPTED.values())


@settings(deadline=None, max_examples=400)
@given(st.sampled_from([*ACCEPTED.values(), raw_of(NAMES)[0], raw_of(["headers"])[0]]),
       st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_validate_agrees_with_the_oracle_on_damaged_bytes(raw, where, byte, cut):
    """One byte changed (or the bytes cut) anywhere: accepted exactly when RabbitMQ's parser
    would accept, and then every property reads back."""
    where %= len(raw)
    damaged = raw[:where] if cut else raw[:where] + bytes((byte,)) + raw[where + 1 :]
    assert properties.well_formed(damaged) is oracle_accepts(damaged)
    if properties.well_formed(damaged):
        properties.decode_all(damaged)
        properties.typed_headers(damaged)


def test_validate_agrees_with_pamqp_on_what_pika_sends():
    """Whatever pamqp marshals (what pika and aio-pika send) passes, and pamqp decodes it the
    way Warren reads it."""
    for names in SUBSETS:
        raw, values = raw_of(names)
        assert properties.well_formed(raw)
        decoded = spec.Basic.Properties()
        decoded.unmarshal(struct.unpack(">H", raw[:2])[0], raw[2:])
        assert decoded == pamqp_properties(values)
