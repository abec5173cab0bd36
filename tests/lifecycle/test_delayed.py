"""Delayed messages: exchange type `x-delayed-message`, as the rabbitmq-delayed-message-exchange
plugin (3.10.x era) does it. Warren builds it in; the RabbitMQ reference node does not have the
plugin, so these tests run against Warren only (skipped with WARREN_TEST_AMQP_PORT).

Expectations come from the plugin's README and source
(RABBITMQ_PRIORITY_POLICIES_DELAYED.md): `x-delayed-type` is required and names the routing
(direct, fanout, topic, headers); a message with an `x-delay` header of N > 0 ms (at most
2^32-1) is routed N ms after it was published, with the bindings that exist then, and
delivered with `x-delay` = -N; no header, 0, a negative or a too large
delay → routed at once, header untouched; string delays are parsed; at publish time a delayed
message routes to nothing, so a mandatory one is returned at once (312 NO_ROUTE) and a confirm
comes at once; in a transaction it is held at basic.publish (routing time), so a rollback does
not take it back.
"""

from __future__ import annotations

import struct
import time

import pika
import pika.exceptions
import pytest
from client_helpers import channel_error, connection_error
from multi_consumer import REFERENCE, Recorder, pump, pump_until
from pamqp import commands
from raw_amqp import HEADERS_FLAG, content_header_payload, field_table, raw_client, safe_name
from raw_amqp import field as table_field

pytestmark = pytest.mark.skipif(
    REFERENCE, reason="RabbitMQ's reference node has no delayed-message-exchange plugin"
)

TIMING_SLACK = 0.01  # a timer may fire this much early (clock resolution)
LATE = 1.5  # generous upper bound on lateness


@pytest.fixture
def channel(connection):
    """A plain channel (the lifecycle folder's default is in confirm mode)."""
    return connection.channel()


@pytest.fixture
def names(channel, unique):
    """(exchange, queue) names; deleted at the end."""
    exchange, queue = f"{safe_name(unique)}-x", f"{safe_name(unique)}-q"
    yield exchange, queue
    if channel.is_open:
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)


def delayed_exchange(channel, name: str, delayed_type: str = "direct", **kwargs) -> None:
    channel.exchange_declare(name, "x-delayed-message",
                             arguments={"x-delayed-type": delayed_type}, **kwargs)


def headers(delay=None, **others) -> pika.BasicProperties:
    table = dict(others)
    if delay is not None:
        table["x-delay"] = delay
    return pika.BasicProperties(headers=table or None)


@pytest.fixture
def direct_setup(channel, names):
    """A delayed direct exchange with the queue bound by key "k"; returns (exchange, queue)."""
    exchange, queue = names
    delayed_exchange(channel, exchange)
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, "k")
    return exchange, queue


def consume_one(connection, channel, queue: str, timeout: float = 5.0):
    """Start a consumer; return (delivery, arrival time) of its first message."""
    recorder = Recorder()
    channel.basic_consume(queue, recorder.callback("c"), auto_ack=True)
    assert pump_until([connection], lambda: recorder.deliveries, timeout), "nothing delivered"
    return recorder.deliveries[0]


# -- declaring --------------------------------------------------------------------------------


def test_delayed_type_is_required(channel, unique):
    assert channel_error(lambda: channel.exchange_declare(unique, "x-delayed-message")) == (
        406,
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange "
        "type",
    )


def test_delayed_type_must_be_a_string(channel, unique):
    assert channel_error(lambda: channel.exchange_declare(
        unique, "x-delayed-message", arguments={"x-delayed-type": 5})) == (
        406,
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange "
        "type",
    )


def test_delayed_type_cannot_be_x_delayed_message(channel, unique):
    assert channel_error(lambda: delayed_exchange(channel, unique, "x-delayed-message")) == (
        406,
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for "
        "'x-delayed-type'",
    )


def test_unknown_delayed_type_closes_the_connection(connection, unique):
    channel = connection.channel()
    assert connection_error(lambda: delayed_exchange(channel, unique, "x-nonesuch")) == (
        503, "COMMAND_INVALID - unknown exchange type 'x-nonesuch'")


def test_redeclare_and_passive_declare(connection, channel, names):
    exchange, _queue = names
    delayed_exchange(channel, exchange)
    delayed_exchange(channel, exchange)
    channel.exchange_declare(exchange, passive=True)
    other = connection.channel()
    assert channel_error(lambda: other.exchange_declare(exchange, "direct")) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{exchange}' in vhost '/': "
        "received 'direct' but current is 'x-delayed-message'",
    )


# -- delaying ---------------------------------------------------------------------------------


def test_message_is_routed_after_its_delay_not_before(connection, channel, direct_setup):
    exchange, queue = direct_setup
    started = time.monotonic()
    channel.basic_publish(exchange, "k", b"later", headers(400, other="kept"))
    time.sleep(0.2)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    delivery = consume_one(connection, channel, queue)
    waited = delivery.at - started
    assert 0.4 - TIMING_SLACK <= waited < 0.4 + LATE, waited
    assert delivery.body == b"later"
    assert (delivery.exchange, delivery.routing_key) == (exchange, "k")
    assert delivery.properties.headers == {"x-delay": -400, "other": "kept"}


def test_properties_are_kept(connection, channel, direct_setup):
    exchange, queue = direct_setup
    properties = pika.BasicProperties(content_type="text/plain", message_id="m-1",
                                      correlation_id="c-1", priority=3, delivery_mode=2,
                                      headers={"x-delay": 100})
    channel.basic_publish(exchange, "k", b"body", properties)
    delivery = consume_one(connection, channel, queue)
    received = delivery.properties
    assert (received.content_type, received.message_id, received.correlation_id,
            received.priority, received.delivery_mode) == ("text/plain", "m-1", "c-1", 3, 2)
    assert received.headers == {"x-delay": -100}


@pytest.mark.parametrize(
    ("delayed_type", "routing_key", "binding_key", "binding_arguments", "message_headers"),
    [
        ("direct", "k", "k", None, {}),
        ("fanout", "anything", "", None, {}),
        ("topic", "a.b.c", "a.#", None, {}),
        ("headers", "", "", {"x-match": "all", "h": "v"}, {"h": "v"}),
    ],
)
def test_routing_follows_the_delayed_type(connection, channel, names, delayed_type, routing_key,
                                          binding_key, binding_arguments, message_headers):
    exchange, queue = names
    delayed_exchange(channel, exchange, delayed_type)
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, binding_key, arguments=binding_arguments)
    started = time.monotonic()
    channel.basic_publish(exchange, routing_key, b"m", headers(300, **message_headers))
    delivery = consume_one(connection, channel, queue)
    assert delivery.at - started >= 0.3 - TIMING_SLACK
    assert delivery.properties.headers == {"x-delay": -300, **message_headers}


@pytest.mark.parametrize(
    ("delayed_type", "routing_key", "binding_key", "binding_arguments", "message_headers"),
    [
        ("direct", "other", "k", None, {}),
        ("topic", "b.a", "a.#", None, {}),
        ("headers", "", "", {"x-match": "all", "h": "v"}, {"h": "w"}),
    ],
)
def test_delayed_messages_that_match_no_binding_are_dropped(
    connection, channel, names, delayed_type, routing_key, binding_key, binding_arguments,
    message_headers
):
    exchange, queue = names
    delayed_exchange(channel, exchange, delayed_type)
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, binding_key, arguments=binding_arguments)
    channel.basic_publish(exchange, routing_key, b"m", headers(100, **message_headers))
    time.sleep(0.4)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


@pytest.mark.parametrize(
    "delay",
    [None, 0, -250, 2**32, False],
    ids=["absent", "zero", "negative", "too-large", "bool"],
)
def test_no_positive_delay_means_routed_at_once(channel, direct_setup, delay):
    exchange, queue = direct_setup
    channel.confirm_delivery()  # once confirmed, an immediate message is in the queue
    properties = headers(delay) if delay is not None else None
    channel.basic_publish(exchange, "k", b"now", properties)
    method, received, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"now"
    expected = None if delay is None else {"x-delay": delay}
    assert received.headers == expected


def test_largest_delay_is_still_a_delay(channel, direct_setup):
    exchange, queue = direct_setup
    channel.confirm_delivery()
    channel.basic_publish(exchange, "k", b"m", headers(2**32 - 1))
    time.sleep(0.1)
    assert channel.basic_get(queue, auto_ack=True)[0] is None


def test_string_delay_is_parsed(connection, channel, direct_setup):
    exchange, queue = direct_setup
    started = time.monotonic()
    channel.basic_publish(exchange, "k", b"m", headers("300"))
    delivery = consume_one(connection, channel, queue)
    assert delivery.at - started >= 0.3 - TIMING_SLACK
    assert delivery.properties.headers == {"x-delay": -300}


def test_shorter_delays_are_delivered_first(connection, channel, direct_setup):
    exchange, queue = direct_setup
    channel.basic_publish(exchange, "k", b"slow", headers(700))
    channel.basic_publish(exchange, "k", b"fast", headers(200))
    channel.basic_publish(exchange, "k", b"now", headers(None))
    channel.basic_publish(exchange, "k", b"middle", headers(450))
    recorder = Recorder()
    channel.basic_consume(queue, recorder.callback("c"), auto_ack=True)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert [d.body for d in recorder.deliveries] == [b"now", b"fast", b"middle", b"slow"]


def test_bindings_are_those_of_the_end_of_the_delay(connection, channel, names):
    exchange, queue = names
    delayed_exchange(channel, exchange)
    channel.queue_declare(queue)
    early = f"{queue}-unbound-later"
    channel.queue_declare(early)
    channel.queue_bind(early, exchange, "k")
    channel.basic_publish(exchange, "k", b"m", headers(400))
    channel.queue_bind(queue, exchange, "k")  # bound after the publish
    channel.queue_unbind(early, exchange, "k")  # unbound before the delay ends
    delivery = consume_one(connection, channel, queue)
    assert delivery.body == b"m"
    assert channel.queue_declare(early, passive=True).method.message_count == 0
    channel.queue_delete(early)


def test_queue_deleted_during_the_delay(broker, connection, channel, direct_setup):
    exchange, queue = direct_setup
    channel.basic_publish(exchange, "k", b"m", headers(200))
    channel.queue_delete(queue)
    pump([connection], 0.4)
    assert connection.is_open
    channel.queue_declare(queue)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    broker.assert_alive()


# -- mandatory and confirms -------------------------------------------------------------------


def test_mandatory_delayed_message_is_returned_at_once_and_still_delivered(
    connection, channel, direct_setup
):
    exchange, queue = direct_setup
    returned = []
    channel.add_on_return_callback(
        lambda _ch, method, properties, body: returned.append((method, body, time.monotonic()))
    )
    started = time.monotonic()
    channel.basic_publish(exchange, "k", b"m", headers(600), mandatory=True)
    assert pump_until([connection], lambda: returned, timeout=2)
    method, body, at = returned[0]
    assert (method.reply_code, method.reply_text, method.exchange, method.routing_key, body) == (
        312, "NO_ROUTE", exchange, "k", b"m")
    assert at - started < 0.5
    delivery = consume_one(connection, channel, queue)
    assert delivery.at - started >= 0.6 - TIMING_SLACK
    assert delivery.body == b"m"


def test_a_transaction_holds_at_publish_and_a_rollback_does_not_undo_it(
    connection, channel, direct_setup
):
    """The plugin delays a message while routing it (its route/2), which a transaction does at
    basic.publish, not at tx.commit: a delayed message rolled back is still delivered."""
    exchange, queue = direct_setup
    channel.tx_select()
    channel.basic_publish(exchange, "k", b"rolled back", headers(300))
    channel.tx_rollback()
    assert consume_one(connection, channel, queue).body == b"rolled back"


def test_mandatory_without_delay_is_routed_normally(connection, channel, direct_setup):
    exchange, queue = direct_setup
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish(exchange, "k", b"m", headers(0), mandatory=True)
    channel.basic_publish(exchange, "nowhere", b"lost", headers(0), mandatory=True)
    assert pump_until([connection], lambda: returned, timeout=2)
    pump([connection], 0.1)
    assert [body for *_rest, body in returned] == [b"lost"]
    assert channel.basic_get(queue, auto_ack=True)[2] == b"m"


def test_confirm_comes_before_the_delay_ends(channel, direct_setup):
    exchange, queue = direct_setup
    channel.confirm_delivery()
    started = time.monotonic()
    channel.basic_publish(exchange, "k", b"m", headers(1000), mandatory=False)
    assert time.monotonic() - started < 0.5
    assert channel.basic_get(queue, auto_ack=True)[0] is None


# -- other header types, exchange-to-exchange -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [("d", struct.pack(">d", 300.9)), ("f", struct.pack(">f", 300.5)),
     ("s", struct.pack(">h", 300)), ("l", struct.pack(">q", 300))],
    ids=["double", "float", "short", "long"],
)
def test_numeric_delay_types(broker, connection, channel, direct_setup, kind, value):
    """Integer types are used as they are, floats are truncated (the plugin's get_delay)."""
    exchange, queue = direct_setup
    properties = field_table(table_field("x-delay", kind, value))
    started = time.monotonic()
    with raw_client(broker) as client:
        client.publish_raw(1, exchange, "k", content_header_payload(1, HEADERS_FLAG, properties),
                           [b"m"])
        client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye",
                                                     class_id=0, method_id=0))
        client.expect(commands.Channel.CloseOk)
    delivery = consume_one(connection, channel, queue)
    assert delivery.at - started >= 0.3 - TIMING_SLACK
    assert delivery.properties.headers == {"x-delay": -300}


def test_delayed_exchange_as_an_exchange_to_exchange_destination(connection, channel, names):
    """Bound behind another exchange, the delayed exchange delays what it is given; the message
    keeps the exchange it was published to."""
    delayed, queue = names
    source = f"{delayed}-source"
    delayed_exchange(channel, delayed, "fanout")
    channel.exchange_declare(source, "direct")
    channel.exchange_bind(delayed, source, "k")
    channel.queue_declare(queue)
    channel.queue_bind(queue, delayed)
    started = time.monotonic()
    channel.basic_publish(source, "k", b"m", headers(300))
    time.sleep(0.15)
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    delivery = consume_one(connection, channel, queue)
    assert delivery.at - started >= 0.3 - TIMING_SLACK
    assert (delivery.exchange, delivery.routing_key) == (source, "k")
    assert delivery.properties.headers == {"x-delay": -300}
    channel.exchange_delete(source)
