"""Exchanges: declaration rules, RabbitMQ 3.10's error texts, and routing by every exchange type.

Routing checks publish and then basic.get on the same channel: the broker must have routed a
message before it answers a later synchronous method on the channel that published it.
"""

from __future__ import annotations

import decimal
import struct

import pika
import pytest
from client_helpers import channel_error, channel_error_after, connection_error, get_bodies
from pamqp import commands
from raw_amqp import (
    HEADERS_FLAG,
    RawAMQP,
    amqp_name,
    close_summary,
    content_header_payload,
    field,
    field_table,
    raw_client,
)


def not_found(name: str) -> tuple[int, str]:
    return 404, f"NOT_FOUND - no exchange '{name}' in vhost '/'"


def inequivalent(arg: str, name: str, received: str, current: str) -> tuple[int, str]:
    return 406, (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for exchange '{name}' in vhost '/': "
        f"received {received} but current is {current}"
    )


DEFAULT_EXCHANGE_REFUSED = (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


def declare_queue_bound(channel, queue: str, exchange: str, routing_key: str = "", arguments=None):
    """An exclusive queue (gone with the connection) bound to `exchange`."""
    channel.queue_declare(queue, exclusive=True)
    channel.queue_bind(queue, exchange, routing_key=routing_key, arguments=arguments)


# --------------------------------------------------------------------------------------------
# built-in exchanges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ],
)
def test_builtin_exchange_exists_durable_with_its_type(channel, name, kind):
    assert channel.exchange_declare(name, passive=True).method.NAME == "Exchange.DeclareOk"
    # Redeclaring with the same type and durable=True is an equivalent declaration: allowed.
    channel.exchange_declare(name, kind, durable=True)
    # Any other type is inequivalent.
    other = "fanout" if kind != "fanout" else "direct"
    assert channel_error(lambda: channel.exchange_declare(name, other, durable=True)) == (
        inequivalent("type", name, f"'{other}'", f"'{kind}'")
    )


def test_builtin_exchange_redeclared_non_durable_is_inequivalent(channel):
    assert channel_error(lambda: channel.exchange_declare("amq.direct", "direct")) == (
        inequivalent("durable", "amq.direct", "'false'", "'true'")
    )


def test_default_exchange_routes_by_queue_name(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    channel.basic_publish("", unique, b"hello")
    channel.basic_publish("", unique + "-nothing", b"lost")
    assert get_bodies(channel, unique) == [b"hello"]


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda ch, q: ch.exchange_declare("", "direct"), id="declare"),
        pytest.param(lambda ch, q: ch.exchange_declare("", passive=True), id="declare-passive"),
        pytest.param(lambda ch, q: ch.exchange_delete(""), id="delete"),
        pytest.param(lambda ch, q: ch.queue_bind(q, "", routing_key="x"), id="queue-bind"),
        pytest.param(lambda ch, q: ch.queue_unbind(q, "", routing_key="x"), id="queue-unbind"),
        pytest.param(lambda ch, q: ch.exchange_bind("", "amq.direct"), id="e2e-destination"),
        pytest.param(lambda ch, q: ch.exchange_bind("amq.direct", ""), id="e2e-source"),
    ],
)
def test_operations_on_default_exchange_are_refused(channel, unique, operation):
    channel.queue_declare(unique, exclusive=True)
    assert channel_error(lambda: operation(channel, unique)) == DEFAULT_EXCHANGE_REFUSED


def test_deleting_a_system_exchange_is_refused(channel):
    assert channel_error(lambda: channel.exchange_delete("amq.direct")) == (
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    )


# --------------------------------------------------------------------------------------------
# declare / delete
# --------------------------------------------------------------------------------------------


def test_passive_declare_of_missing_exchange_is_404(channel, unique):
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_passive_declare_ignores_type_and_flags(channel, unique):
    channel.exchange_declare(unique, "direct", auto_delete=True)
    try:
        ok = channel.exchange_declare(unique, "fanout", durable=True, passive=True)
        assert ok.method.NAME == "Exchange.DeclareOk"
    finally:
        channel.exchange_delete(unique)


def test_declare_is_idempotent_and_delete_removes(channel, unique):
    channel.exchange_declare(unique, "topic", durable=True, arguments={"x-custom": "v"})
    channel.exchange_declare(unique, "topic", durable=True, arguments={"x-custom": "v"})
    channel.exchange_delete(unique)
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_delete_of_missing_exchange_succeeds(channel, unique):
    assert channel.exchange_delete(unique).method.NAME == "Exchange.DeleteOk"


@pytest.mark.parametrize(
    ("first", "second", "arg", "received", "current"),
    [
        ({"exchange_type": "direct"}, {"exchange_type": "fanout"}, "type", "'fanout'", "'direct'"),
        ({"exchange_type": "topic"}, {"exchange_type": "headers"}, "type", "'headers'", "'topic'"),
        ({}, {"durable": True}, "durable", "'true'", "'false'"),
        ({"durable": True}, {}, "durable", "'false'", "'true'"),
        ({}, {"auto_delete": True}, "auto_delete", "'true'", "'false'"),
        ({}, {"internal": True}, "internal", "'true'", "'false'"),
        (
            {},
            {"arguments": {"alternate-exchange": "ae"}},
            "alternate-exchange",
            "the value 'ae' of type 'longstr'",
            "none",
        ),
        (
            {"arguments": {"alternate-exchange": "ae"}},
            {"arguments": {"alternate-exchange": "other"}},
            "alternate-exchange",
            "'other'",
            "'ae'",
        ),
    ],
    ids=[
        "type",
        "type-2",
        "durable",
        "not-durable",
        "auto-delete",
        "internal",
        "ae-new",
        "ae-diff",
    ],
)
def test_inequivalent_redeclare_is_406(connection, unique, first, second, arg, received, current):
    channel = connection.channel()
    first = {"exchange_type": "direct", **first}
    second = {"exchange_type": "direct", **second}
    channel.exchange_declare(unique, **first)
    try:
        assert channel_error(lambda: channel.exchange_declare(unique, **second)) == (
            inequivalent(arg, unique, received, current)
        )
    finally:
        connection.channel().exchange_delete(unique)


def test_unknown_custom_arguments_are_not_compared(channel, unique):
    channel.exchange_declare(unique, "direct", arguments={"x-foo": "a"})
    ok = channel.exchange_declare(unique, "direct", arguments={"x-foo": "b"})
    assert ok.method.NAME == "Exchange.DeclareOk"
    channel.exchange_delete(unique)


def test_amq_prefix_is_reserved(channel, unique):
    name = f"amq.{unique}"
    assert channel_error(lambda: channel.exchange_declare(name, "direct")) == (
        403,
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'",
    )


def test_passive_declare_with_amq_prefix_is_404(channel, unique):
    name = f"amq.{unique}"
    assert channel_error(lambda: channel.exchange_declare(name, passive=True)) == not_found(name)


def test_unknown_exchange_type_closes_the_connection(connection, unique):
    """RabbitMQ answers 'unknown exchange type' for a name that is not an Erlang atom it knows
    (any made-up name); names that happen to be atoms (e.g. 'foo') get 'invalid exchange type'."""
    channel = connection.channel()
    assert connection_error(lambda: channel.exchange_declare(unique, "x-no-such-type")) == (
        503,
        "COMMAND_INVALID - unknown exchange type 'x-no-such-type'",
    )


def test_delete_if_unused_refuses_an_exchange_with_bindings(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "direct")
    declare_queue_bound(channel, unique, unique, "k")
    assert channel_error(lambda: channel.exchange_delete(unique, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - exchange '{unique}' in vhost '/' in use",
    )
    channel = connection.channel()
    channel.queue_unbind(unique, unique, routing_key="k")
    channel.exchange_delete(unique, if_unused=True)
    channel.queue_delete(unique)
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_delete_if_unused_only_counts_bindings_where_it_is_the_source(channel, unique):
    channel.exchange_declare(unique, "fanout")
    channel.exchange_bind(unique, "amq.fanout")  # unique is only a destination
    channel.exchange_delete(unique, if_unused=True)
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_deleting_an_exchange_removes_its_bindings(channel, unique):
    channel.exchange_declare(unique, "fanout")
    declare_queue_bound(channel, unique, unique)
    channel.exchange_delete(unique)
    channel.exchange_declare(unique, "fanout")
    channel.basic_publish(unique, "", b"after re-declare")
    assert get_bodies(channel, unique) == []
    channel.exchange_delete(unique)
    channel.queue_delete(unique)


# --------------------------------------------------------------------------------------------
# auto-delete and internal
# --------------------------------------------------------------------------------------------


def test_auto_delete_exchange_goes_when_its_last_binding_goes(channel, unique):
    channel.exchange_declare(unique, "direct", auto_delete=True)
    # Never bound: it stays.
    channel.exchange_declare(unique, passive=True)
    declare_queue_bound(channel, f"{unique}-1", unique, "a")
    declare_queue_bound(channel, f"{unique}-2", unique, "b")
    channel.queue_unbind(f"{unique}-1", unique, routing_key="a")
    channel.exchange_declare(unique, passive=True)  # one binding left
    channel.queue_unbind(f"{unique}-2", unique, routing_key="b")
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_auto_delete_exchange_goes_when_its_bound_queue_is_deleted(connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "fanout", auto_delete=True)
    declare_queue_bound(channel, unique, unique)
    channel.queue_delete(unique)
    assert channel_error(lambda: channel.exchange_declare(unique, passive=True)) == not_found(
        unique
    )


def test_auto_delete_exchange_goes_when_last_e2e_binding_goes(channel, unique):
    source = f"{unique}-src"
    channel.exchange_declare(source, "fanout", auto_delete=True)
    channel.exchange_declare(unique, "fanout")
    channel.exchange_bind(unique, source)
    channel.exchange_unbind(unique, source)
    assert channel_error(lambda: channel.exchange_declare(source, passive=True)) == not_found(
        source
    )
    connection_channel = channel.connection.channel()
    connection_channel.exchange_delete(unique)


def test_publishing_to_an_internal_exchange_is_refused(channel, unique):
    channel.exchange_declare(unique, "fanout", internal=True)
    try:
        assert channel_error_after(channel, lambda: channel.basic_publish(unique, "", b"x")) == (
            403,
            f"ACCESS_REFUSED - cannot publish to internal exchange '{unique}' in vhost '/'",
        )
    finally:
        channel.connection.channel().exchange_delete(unique)


def test_internal_exchange_routes_what_another_exchange_forwards(channel, unique):
    internal = f"{unique}-internal"
    channel.exchange_declare(unique, "fanout")
    channel.exchange_declare(internal, "fanout", internal=True)
    channel.exchange_bind(internal, unique)
    declare_queue_bound(channel, unique, internal)
    channel.basic_publish(unique, "k", b"through")
    assert get_bodies(channel, unique) == [b"through"]
    for name in (unique, internal):
        channel.exchange_delete(name)
    channel.queue_delete(unique)


def test_publish_to_missing_exchange_closes_channel_404(channel, unique):
    assert channel_error_after(channel, lambda: channel.basic_publish(unique, "k", b"x")) == (
        not_found(unique)
    )


# --------------------------------------------------------------------------------------------
# exchange-to-exchange bindings and alternate exchanges
# --------------------------------------------------------------------------------------------


def test_exchange_to_exchange_bind_and_unbind(channel, unique):
    source, destination = f"{unique}-src", f"{unique}-dst"
    channel.exchange_declare(source, "direct")
    channel.exchange_declare(destination, "fanout")
    declare_queue_bound(channel, unique, destination)
    channel.exchange_bind(destination, source, routing_key="yes")
    channel.basic_publish(source, "yes", b"1")
    channel.basic_publish(source, "no", b"2")
    assert get_bodies(channel, unique) == [b"1"]
    channel.exchange_unbind(destination, source, routing_key="yes")
    channel.basic_publish(source, "yes", b"3")
    assert get_bodies(channel, unique) == []
    for name in (source, destination):
        channel.exchange_delete(name)
    channel.queue_delete(unique)


def test_e2e_bind_to_missing_exchange_is_404(connection, unique):
    channel = connection.channel()
    missing = f"{unique}-missing"
    assert channel_error(lambda: channel.exchange_bind("amq.direct", missing)) == not_found(missing)
    channel = connection.channel()
    assert channel_error(lambda: channel.exchange_bind(missing, "amq.direct")) == not_found(missing)


def test_e2e_unbind_of_missing_binding_succeeds(channel, unique):
    reply = channel.exchange_unbind(f"{unique}-a", f"{unique}-b", routing_key="k")
    assert reply.method.NAME == "Exchange.UnbindOk"


def test_e2e_cycle_and_diamond_deliver_once(channel, unique):
    a, b, c = (f"{unique}-{n}" for n in "abc")
    for name in (a, b, c):
        channel.exchange_declare(name, "fanout")
    # a -> b -> a is a cycle; a -> c and b -> c make two paths to the queue.
    channel.exchange_bind(b, a)
    channel.exchange_bind(a, b)
    channel.exchange_bind(c, a)
    channel.exchange_bind(c, b)
    declare_queue_bound(channel, unique, c)
    declare_queue_bound(channel, unique, a)
    channel.basic_publish(a, "", b"once")
    assert get_bodies(channel, unique) == [b"once"]
    for name in (a, b, c):
        channel.exchange_delete(name)
    channel.queue_delete(unique)


def test_alternate_exchange_receives_unroutable_messages(channel, unique):
    alternate = f"{unique}-ae"
    channel.exchange_declare(alternate, "fanout")
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": alternate})
    declare_queue_bound(channel, f"{unique}-routed", unique, "k")
    declare_queue_bound(channel, f"{unique}-other", alternate)
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.confirm_delivery()
    channel.basic_publish(unique, "k", b"routed", mandatory=True)
    channel.basic_publish(unique, "nothing-bound", b"unroutable", mandatory=True)
    assert get_bodies(channel, f"{unique}-routed") == [b"routed"]
    assert get_bodies(channel, f"{unique}-other") == [b"unroutable"]
    assert returned == []
    for name in (unique, alternate):
        channel.exchange_delete(name)
    for name in (f"{unique}-routed", f"{unique}-other"):
        channel.queue_delete(name)


def test_missing_alternate_exchange_leaves_message_unroutable(channel, unique):
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": f"{unique}-none"})
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish(unique, "k", b"x", mandatory=True)
    channel.exchange_delete(unique)


def test_alternate_exchange_chain(channel, unique):
    first, second = f"{unique}-ae1", f"{unique}-ae2"
    channel.exchange_declare(second, "fanout")
    channel.exchange_declare(first, "direct", arguments={"alternate-exchange": second})
    channel.exchange_declare(unique, "direct", arguments={"alternate-exchange": first})
    declare_queue_bound(channel, unique, second)
    channel.basic_publish(unique, "k", b"twice unroutable")
    assert get_bodies(channel, unique) == [b"twice unroutable"]
    for name in (unique, first, second):
        channel.exchange_delete(name)
    channel.queue_delete(unique)


# --------------------------------------------------------------------------------------------
# routing: direct and fanout
# --------------------------------------------------------------------------------------------


def test_direct_routes_on_exact_key(channel, unique):
    channel.exchange_declare(unique, "direct")
    declare_queue_bound(channel, f"{unique}-a", unique, "a")
    declare_queue_bound(channel, f"{unique}-b", unique, "b")
    channel.queue_bind(f"{unique}-b", unique, routing_key="")
    for key in ("a", "b", "", "A", "a.b", "ab"):
        channel.basic_publish(unique, key, key.encode() or b"<empty>")
    assert get_bodies(channel, f"{unique}-a") == [b"a"]
    assert get_bodies(channel, f"{unique}-b") == [b"b", b"<empty>"]
    channel.exchange_delete(unique)


def test_direct_delivers_to_every_queue_bound_with_the_key(channel, unique):
    channel.exchange_declare(unique, "direct", auto_delete=True)
    queues = [f"{unique}-{i}" for i in range(3)]
    for queue in queues:
        declare_queue_bound(channel, queue, unique, "same")
    channel.basic_publish(unique, "same", b"to each")
    for queue in queues:
        assert get_bodies(channel, queue) == [b"to each"]


def test_same_binding_twice_delivers_once(channel, unique):
    channel.exchange_declare(unique, "direct")
    declare_queue_bound(channel, unique, unique, "k")
    channel.queue_bind(unique, unique, routing_key="k")
    channel.basic_publish(unique, "k", b"once")
    assert get_bodies(channel, unique) == [b"once"]
    channel.exchange_delete(unique)


def test_fanout_ignores_routing_key(channel, unique):
    channel.exchange_declare(unique, "fanout")
    queues = [f"{unique}-{i}" for i in range(3)]
    for i, queue in enumerate(queues):
        declare_queue_bound(channel, queue, unique, f"binding-key-{i}")
    channel.basic_publish(unique, "whatever", b"to all")
    for queue in queues:
        assert get_bodies(channel, queue) == [b"to all"]
    channel.exchange_delete(unique)


def test_exchange_with_no_bindings_drops_silently(channel, unique):
    channel.exchange_declare(unique, "fanout")
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.confirm_delivery()
    channel.basic_publish(unique, "", b"nowhere")  # confirmed, not returned
    assert returned == [] and channel.is_open
    channel.exchange_delete(unique)


# --------------------------------------------------------------------------------------------
# routing: topic
# --------------------------------------------------------------------------------------------

TOPIC_CASES = [
    # pattern, keys that match, keys that do not
    ("a.b.c", ["a.b.c"], ["a.b", "a.b.c.d", "a.B.c", "a.b.cd", "", "abc"]),
    ("*", ["a", "abc"], ["", ".", "a.b"]),
    ("*.b.*", ["a.b.c", ".b."], ["b.c", "a.b", "a.b.c.d"]),
    ("a.*", ["a.b", "a."], ["a", "a.b.c", "b.a"]),
    ("*.*", ["a.b", "."], ["a", "", "a.b.c"]),
    ("#", ["", "a", "a.b.c", ".", ".."], []),
    ("#.#", ["", "a", "a.b"], []),
    ("a.#", ["a", "a.b", "a.b.c", "a."], ["b.a", "ab", ""]),
    ("#.c", ["c", "a.c", "a.b.c", ".c"], ["c.a", "ac", ""]),
    ("a.#.c", ["a.c", "a.b.c", "a.b.b.c"], ["a.b", "ac", "a.c.d"]),
    ("a.#.#.b", ["a.b", "a.x.b", "a.x.y.b"], ["a", "b"]),
    ("#.b.#", ["b", "a.b", "b.c", "a.b.c"], ["ab", "a.c"]),
    ("a.*.#", ["a.b", "a.b.c", "a."], ["a", "b.a"]),
    ("*.#", ["a", "a.b", "."], [""]),
    ("#.*", ["a", "a.b"], [""]),
    ("", [""], ["a", "."]),
    (".", ["."], ["", "a.", ".a", "a"]),
    ("a..b", ["a..b"], ["a.b", "a...b"]),
    ("a-b_c.d", ["a-b_c.d"], ["a-b_c", "a.b_c.d"]),
]


@pytest.mark.parametrize(
    ("pattern", "matching", "other"), TOPIC_CASES, ids=[repr(c[0]) for c in TOPIC_CASES]
)
def test_topic_pattern(channel, unique, pattern, matching, other):
    channel.exchange_declare(unique, "topic", auto_delete=True)
    declare_queue_bound(channel, unique, unique, pattern)
    for key in matching + other:
        channel.basic_publish(unique, key, key.encode())
    assert get_bodies(channel, unique) == [key.encode() for key in matching]
    channel.queue_delete(unique)


def test_topic_overlapping_bindings_deliver_once(channel, unique):
    channel.exchange_declare(unique, "topic")
    for pattern in ("a.*", "#", "a.b", "*.b"):
        declare_queue_bound(channel, unique, unique, pattern)
    channel.basic_publish(unique, "a.b", b"once")
    assert get_bodies(channel, unique) == [b"once"]
    channel.exchange_delete(unique)


def test_topic_unbind_one_pattern_keeps_the_others(channel, unique):
    channel.exchange_declare(unique, "topic")
    declare_queue_bound(channel, unique, unique, "a.*")
    channel.queue_bind(unique, unique, routing_key="#.z")
    channel.queue_unbind(unique, unique, routing_key="a.*")
    for key in ("a.b", "y.z"):
        channel.basic_publish(unique, key, key.encode())
    assert get_bodies(channel, unique) == [b"y.z"]
    channel.exchange_delete(unique)


# --------------------------------------------------------------------------------------------
# routing: headers
# --------------------------------------------------------------------------------------------

HEADERS_CASES = [
    # binding arguments, message headers, routed?
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, {"a": 2, "b": "x"}, False),
    ({"x-match": "all", "a": 1, "b": "x"}, None, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 1}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"b": "x", "z": 0}, True),
    ({"x-match": "any", "a": 1, "b": "x"}, {"a": 2, "b": "y"}, False),
    ({"x-match": "any", "a": 1, "b": "x"}, {}, False),
    ({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),  # absent x-match means all
    ({"a": 1, "b": "x"}, {"a": 1}, False),
    ({}, {"anything": 1}, True),  # all over nothing matches everything
    ({}, None, True),
    ({"x-match": "any"}, {"anything": 1}, False),  # any over nothing matches nothing
    # x- arguments are ignored by all/any ...
    ({"x-match": "all", "x-foo": 1}, {}, True),
    ({"x-match": "any", "x-foo": 1}, {"x-foo": 1}, False),
    # ... and compared by all-with-x/any-with-x.
    ({"x-match": "all-with-x", "x-foo": 1}, {"x-foo": 1}, True),
    ({"x-match": "all-with-x", "x-foo": 1}, {}, False),
    ({"x-match": "all-with-x", "x-foo": 1, "a": 1}, {"a": 1}, False),
    ({"x-match": "any-with-x", "x-foo": 1, "a": 1}, {"x-foo": 1}, True),
    ({"x-match": "any-with-x", "x-foo": 1}, {"x-foo": 2}, False),
    # a void binding value matches on presence alone
    ({"x-match": "all", "a": None}, {"a": "any value"}, True),
    ({"x-match": "all", "a": None}, {"b": 1}, False),
    # values of different types
    ({"a": 1}, {"a": "1"}, False),
    ({"a": "x"}, {"a": b"x"}, True),  # longstr and byte array hold the same bytes
    ({"a": True}, {"a": 1}, False),
    ({"a": 2**40}, {"a": 2**40}, True),
    ({"a": -1}, {"a": -1}, True),
    ({"a": decimal.Decimal("1")}, {"a": 1}, False),
    ({"a": False}, {"a": False}, True),
    ({"a": "é"}, {"a": "é"}, True),
    ({"a": "é"}, {"a": "e"}, False),
]


@pytest.mark.parametrize(("arguments", "headers", "routed"), HEADERS_CASES)
def test_headers_matching(channel, unique, arguments, headers, routed):
    channel.exchange_declare(unique, "headers", auto_delete=True)
    declare_queue_bound(channel, unique, unique, arguments=arguments)
    channel.basic_publish(unique, "ignored", b"m", pika.BasicProperties(headers=headers))
    assert get_bodies(channel, unique) == ([b"m"] if routed else [])
    channel.queue_delete(unique)


def test_headers_binding_key_is_ignored_and_amq_match_routes(channel, unique):
    declare_queue_bound(channel, unique, "amq.match", "some-key", arguments={"id": unique})
    channel.basic_publish(
        "amq.match", "other-key", b"m", pika.BasicProperties(headers={"id": unique})
    )
    assert get_bodies(channel, unique) == [b"m"]
    channel.queue_delete(unique)


def test_headers_invalid_x_match_is_406(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    bind = lambda: channel.queue_bind(unique, "amq.headers", arguments={"x-match": "foo"})  # noqa: E731
    assert channel_error(bind) == (
        406,
        'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; '
        "expected all, any, all-with-x, or any-with-x",
    )


def test_headers_invalid_x_match_on_exchange_bind_names_exchange_bind(broker, unique):
    """The refusal carries the ids of the method that asked (exchange.bind 40/30), not those of
    queue.bind, as in RabbitMQ 3.10.8 (RABBITMQ_TEXTS_ROUTING.md)."""
    source, destination = amqp_name(unique, "h."), amqp_name(unique, "d.")
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Exchange.Declare(exchange=source, exchange_type="headers",
                                               auto_delete=True))
        amqp.call(1, commands.Exchange.Declare(exchange=destination, auto_delete=True))
        close = amqp.call(1, commands.Exchange.Bind(destination=destination, source=source,
                                                    arguments={"x-match": "foo"}))
        assert close_summary(close) == (
            406, 'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; '
            "expected all, any, all-with-x, or any-with-x", 40, 30)
        amqp.send_method(1, commands.Channel.CloseOk())
        amqp.open_channel(2)
        for name in (source, destination):
            amqp.call(2, commands.Exchange.Delete(exchange=name))


@pytest.mark.parametrize(
    ("kind", "value", "routed"),
    [
        ("b", struct.pack(">b", 1), True),
        ("s", struct.pack(">h", 1), True),
        ("l", struct.pack(">q", 1), True),
        ("d", struct.pack(">d", 1.0), True),
        ("f", struct.pack(">f", 1.0), True),
        ("S", struct.pack(">I", 1) + b"1", False),
        ("t", b"\x01", False),
    ],
)
def test_headers_compares_numbers_across_field_types(broker, channel, unique, kind, value, routed):
    """A binding value 1 (pika sends a signed 32-bit 'I') against the same number sent as other
    field types: RabbitMQ compares values, not their encodings."""
    declare_queue_bound(channel, unique, "amq.headers", arguments={"x-match": "all", "n": 1})
    table = field_table(field("n", kind, value))
    with raw_client(broker) as raw:
        raw.publish_raw(
            1, "amq.headers", "", content_header_payload(1, HEADERS_FLAG, table), [b"m"]
        )
        raw.send_method(1, commands.Basic.Qos())  # a round trip: routing is done after it
        raw.expect(commands.Basic.QosOk)
    assert get_bodies(channel, unique) == ([b"m"] if routed else [])


def test_amq_default_is_not_an_alias_of_the_default_exchange(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    publish = lambda: channel.basic_publish("amq.default", unique, b"x")  # noqa: E731
    assert channel_error_after(channel, publish) == not_found("amq.default")


@pytest.mark.parametrize(
    ("binding_value", "wire_value", "routed"),
    [
        ([1], "A" + "b", False),  # array items keep their field types: I 1 != b 1
        ([1], "A" + "I", True),
        ({"n": 1}, "F" + "b", False),  # same inside tables
        ({"n": 1}, "F" + "I", True),
    ],
    ids=["array-b", "array-I", "table-b", "table-I"],
)
def test_headers_nested_values_compare_with_their_types(
    broker, channel, unique, binding_value, wire_value, routed
):
    """Top-level values compare as numbers, but arrays and tables compare item types too."""
    declare_queue_bound(
        channel, unique, "amq.headers", arguments={"x-match": "all", "k": binding_value}
    )
    container, item_type = wire_value
    item = struct.pack(">b", 1) if item_type == "b" else struct.pack(">i", 1)
    if container == "A":
        items = item_type.encode() + item
        value = struct.pack(">I", len(items)) + items
    else:
        value = field_table(field("n", item_type, item))
    table = field_table(field("k", container, value))
    with raw_client(broker) as raw:
        raw.publish_raw(
            1, "amq.headers", "", content_header_payload(1, HEADERS_FLAG, table), [b"m"]
        )
        raw.send_method(1, commands.Basic.Qos())
        raw.expect(commands.Basic.QosOk)
    assert get_bodies(channel, unique) == ([b"m"] if routed else [])


def test_unicode_exchange_name(channel, unique):
    name = unique + "-échange-交換"
    channel.exchange_declare(name, "fanout", auto_delete=True)
    declare_queue_bound(channel, unique, name)
    channel.basic_publish(name, "", b"m")
    assert get_bodies(channel, unique) == [b"m"]
