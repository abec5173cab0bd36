"""The dead-lettered copy's properties from broker/deadletter.py's shortcuts (the cache of
rewrites, the splice of first deaths) byte for byte against its general way (decode, record the
death, sort, encode), in process and without a broker; the wire behaviour itself is checked
against RabbitMQ's in test_x_death.py and test_dead_lettering.py.
"""

from __future__ import annotations

import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands as spec

from broker import deadletter
from broker.message import Message
from protocol import properties
from protocol.fieldtable import decode_table, encode_table

NOW = 1_700_000_000.25

HEADER_VALUES = st.one_of(
    st.tuples(st.just("S"), st.binary(max_size=6)),
    st.tuples(st.just("I"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("t"), st.booleans()),
    st.tuples(st.just("d"), st.floats(allow_nan=False)),
    st.tuples(st.just("F"), st.dictionaries(st.sampled_from("abc"), st.tuples(
        st.just("l"), st.integers(0, 9)), max_size=2)),
)
HEADER_KEYS = st.one_of(st.sampled_from(["alpha", "zeta", "x-delay", "x-first-death-queue"]),
                        st.text(max_size=5))
CC = st.tuples(st.just("A"), st.lists(st.tuples(st.just("S"), st.sampled_from(
    [b"k1", b"k2"])), max_size=2).map(tuple))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A message as a client might publish it, sometimes dead-lettered once already."""
    headers = draw(st.dictionaries(HEADER_KEYS, HEADER_VALUES, max_size=5))
    if draw(st.booleans()):
        headers["CC"] = draw(CC)
    values = {"delivery_mode": draw(st.sampled_from([1, 2]))}
    if headers or draw(st.booleans()):
        values["headers"] = None  # replaced below by our own encoding (pamqp's types differ)
    if draw(st.booleans()):
        values["expiration"] = draw(st.sampled_from(["0", "60000"]))
    if draw(st.booleans()):
        values["content_type"] = "text/plain"
    raw = spec.Basic.Properties(**values).marshal()
    if "headers" in values:
        raw = properties.set_headers(raw, properties.headers_offset(raw), encode_table(headers))
    message = Message(draw(st.sampled_from(["", "amq.direct"])),
                      draw(st.sampled_from(["rk", "src"])), b"", raw, b"body")
    if draw(st.booleans()):  # died before: the copy of a first death
        rewrite = deadletter.rewritten(message, "earlier", "rejected", False)
        message = Message("dlx", "rk", b"", rewrite.props_raw, b"body")
    return message


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch):
    monkeypatch.setattr(deadletter, "time", types.SimpleNamespace(time=lambda: NOW))


def general_way(message: Message, queue: str, reason: str, drop_cc: bool):
    message._headers = None
    return deadletter._reencoded(message, queue, reason, drop_cc, int(NOW))


@settings(max_examples=400, deadline=None)
@given(messages(), st.sampled_from(["src", "earlier"]),
       st.sampled_from(["expired", "rejected", "maxlen"]), st.booleans())
def test_shortcuts_give_the_general_ways_bytes(message, queue, reason, drop_cc):
    deadletter._rewrites.clear()
    expected = general_way(message, queue, reason, drop_cc)
    first = deadletter.rewritten(message, queue, reason, drop_cc)
    again = deadletter.rewritten(message, queue, reason, drop_cc)  # from the cache
    assert first.props_raw == expected.props_raw
    assert again == first
    assert first.cycles == expected.cycles


def test_first_death_without_headers_is_spliced():
    raw = spec.Basic.Properties(delivery_mode=1, message_id="m").marshal()
    message = Message("", "src", b"", raw, b"body")
    spliced = deadletter._spliced(message, "src", "expired", int(NOW))
    assert spliced is not None
    assert spliced == general_way(message, "src", "expired", True)
    assert properties.get(spliced.props_raw, "message_id") == "m"


def test_first_death_with_sorted_headers_is_spliced_and_keeps_their_bytes():
    headers = {"b": ("I", 7), "zz": ("S", b"last"), "a": ("t", True)}
    raw = spec.Basic.Properties(delivery_mode=2, expiration="5").marshal()
    raw = properties.set_headers(raw, properties.headers_offset(raw), encode_table(headers))
    message = Message("amq.direct", "rk", b"", raw, b"body")
    spliced = deadletter._spliced(message, "src", "maxlen", int(NOW))
    assert spliced == general_way(message, "src", "maxlen", False)
    table = properties.typed_headers(spliced.props_raw)
    assert list(table) == ["a", "b", "x-death", "x-first-death-exchange",
                           "x-first-death-queue", "x-first-death-reason", "zz"]
    assert not properties.has(spliced.props_raw, "expiration")
    (entry,) = table["x-death"][1]
    assert entry[1]["original-expiration"] == ("S", b"5")


@pytest.mark.parametrize("headers", [
    {"CC": ("A", (("S", b"k"),))},  # its keys go into x-death
    {"x-death": ("A", ())},  # died before
    {"x-first-death-reason": ("S", b"client's")},
])
def test_messages_the_splice_leaves_to_the_general_way(headers):
    raw = spec.Basic.Properties(delivery_mode=1).marshal()
    raw = properties.set_headers(raw, properties.headers_offset(raw), encode_table(headers))
    message = Message("", "src", b"", raw, b"body")
    assert deadletter._spliced(message, "src", "expired", int(NOW)) is None


def test_cache_keeps_apart_what_changes_the_copy():
    raw = spec.Basic.Properties(delivery_mode=1).marshal()
    deadletter._rewrites.clear()
    base = Message("", "src", b"", raw, b"body")
    rewrites = {
        deadletter.rewritten(base, "src", "expired", False).props_raw,
        deadletter.rewritten(base, "other", "expired", False).props_raw,
        deadletter.rewritten(base, "src", "rejected", False).props_raw,
        deadletter.rewritten(Message("amq.direct", "src", b"", raw, b""), "src", "expired",
                             False).props_raw,
        deadletter.rewritten(Message("", "rk2", b"", raw, b""), "src", "expired",
                             False).props_raw,
    }
    assert len(rewrites) == 5
    for props_raw in rewrites:
        decode_table(props_raw, properties.headers_offset(props_raw))


def test_cycle_queues_stop_at_the_first_rejection():
    def death(queue: bytes, reason: bytes, tag: str = "S"):
        return ("F", {"queue": (tag, queue), "reason": ("S", reason)})

    deaths = (death(b"a", b"expired"), ("S", b"not a table"), death(b"b", b"maxlen"),
              death(b"c", b"expired", tag="x"), death(b"\xff", b"expired"),
              death(b"d", b"rejected"), death(b"e", b"expired"))
    assert deadletter.cycle_queues(deaths) == {"a", "b"}
    assert deadletter.cycle_queues((death(b"a", b"rejected"), death(b"b", b"expired"))) == set()
