"""Bytes-only tests of protocol/properties.py: lazy reads of raw basic-properties bytes.

The property bytes are made by pamqp's Basic.Properties.marshal() (what a pika or aio-pika
publisher sends), with every property set and with many subsets of them. pamqp refuses to marshal
a non-empty cluster_id, so that one is built by hand where a test needs it.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec

from protocol import properties
from protocol.constants import PROPERTY_FLAGS, SYNTAX_ERROR
from protocol.errors import AMQPConnectionError

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


def raw_of(names: list[str]) -> tuple[bytes, dict]:
    values = {name: ALL_VALUES[name] for name in names}
    return pamqp_properties(values).marshal(), values


def check_reads(raw: bytes, values: dict) -> None:
    """get/has/decode_all on `raw` give exactly `values` (absent properties are None)."""
    properties.validate(raw)
    for name, _, _ in PROPERTY_FLAGS:
        assert properties.has(raw, name) is (name in values), name
        assert properties.get(raw, name) == values.get(name), name
    assert properties.decode_all(raw) == pamqp_properties(values)


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
    assert properties.decode_all(replaced) == pamqp_properties({**values, "reply_to": new_value})
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


def raises_502():
    return pytest.raises(AMQPConnectionError, check=lambda exc: exc.reply_code == SYNTAX_ERROR)


@pytest.mark.parametrize("names", SUBSETS, ids=lambda names: "+".join(names) or "none")
def test_validate_refuses_every_truncation(names):
    raw, _ = raw_of(names)
    properties.validate(raw)
    for cut in range(len(raw)):
        with raises_502():
            properties.validate(raw[:cut])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80",
        b"\x80\x00",  # content_type flagged, no value
        b"\x80\x00\x05abc",  # shortstr longer than what follows
        b"\x20\x00\x00\x00\x00\x10",  # headers table longer than what follows
        b"\x20\x00\x00\x00\x00\x03\x01aZ",  # headers: unknown field type 'Z'
        b"\x20\x00\x00\x00\x00\x05\x01a\x53\x00\x00",  # headers: truncated longstr inside
        b"\x00\x40\x00\x00\x00\x00",  # timestamp cut short
        b"\x00\x01",  # a continuation flag word that is not there
    ],
)
def test_validate_refuses_malformed_bytes(raw):
    with raises_502() as caught:
        properties.validate(raw)
    assert caught.value.reply_text.startswith("SYNTAX_ERROR - ")
