"""Direct reply-to (amq.rabbitmq.reply-to): the pseudo-queue consumer, the rewritten reply_to
address, replies routed back through the default exchange, and RabbitMQ 3.10's error texts."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from client_helpers import channel_error, channel_error_after, consume, opened, settle, wait_for

REPLY_TO = "amq.rabbitmq.reply-to"


@pytest.fixture
def server_connection(broker):
    with opened(broker) as conn:
        yield conn


@pytest.fixture
def service_queue(server_connection, unique):
    """The queue the 'server' side consumes requests from (exclusive to its connection)."""
    server_connection.channel().queue_declare(unique, exclusive=True)
    return unique


def request(channel, service_queue: str, body: bytes = b"request", **properties) -> None:
    channel.basic_publish(
        "", service_queue, body, pika.BasicProperties(reply_to=REPLY_TO, **properties)
    )


def receive_request(server_connection, service_queue: str):
    """The next request as the server sees it: (method, properties, body)."""
    channel = server_connection.channel()
    _, collector = consume(channel, service_queue, auto_ack=True)
    delivery = collector.wait(1)[0]
    return delivery.method, delivery.properties, delivery.body


def test_request_reply_round_trip(connection, server_connection, service_queue):
    client = connection.channel()
    reply_tag, replies = consume(client, REPLY_TO, auto_ack=True)
    request(client, service_queue, b"ping", correlation_id="c-1")

    _, properties, body = receive_request(server_connection, service_queue)
    assert body == b"ping"
    address = properties.reply_to
    assert address.startswith(REPLY_TO + ".")
    assert len(address) > len(REPLY_TO) + 1
    assert properties.correlation_id == "c-1"

    server_connection.channel().basic_publish(
        "", address, b"pong", pika.BasicProperties(correlation_id="c-1")
    )
    (reply,) = replies.wait(1)
    assert reply.body == b"pong"
    assert reply.properties.correlation_id == "c-1"
    method = reply.method
    assert (method.consumer_tag, method.exchange, method.routing_key) == (reply_tag, "", address)
    assert method.redelivered is False


def test_the_address_is_stable_per_channel_and_differs_between_channels(
    connection, server_connection, service_queue
):
    first, second = connection.channel(), connection.channel()
    for channel in (first, second):
        consume(channel, REPLY_TO, auto_ack=True)
    request(first, service_queue)
    request(first, service_queue)
    request(second, service_queue)
    server = server_connection.channel()
    _, collector = consume(server, service_queue, auto_ack=True)
    addresses = [d.properties.reply_to for d in collector.wait(3)]
    assert addresses[0] == addresses[1]
    assert addresses[2] != addresses[0]


def test_replies_reach_the_right_channel(connection, server_connection, service_queue):
    first, second = connection.channel(), connection.channel()
    _, first_replies = consume(first, REPLY_TO, auto_ack=True)
    _, second_replies = consume(second, REPLY_TO, auto_ack=True)
    request(first, service_queue, b"from first")
    request(second, service_queue, b"from second")
    server = server_connection.channel()
    _, requests = consume(server, service_queue, auto_ack=True)
    for delivery in requests.wait(2):
        server.basic_publish("", delivery.properties.reply_to, b"re: " + delivery.body)
    first_replies.wait(1)
    second_replies.wait(1)
    settle(connection, 0.1)
    assert first_replies.bodies == [b"re: from first"]
    assert second_replies.bodies == [b"re: from second"]


def test_reply_consumer_must_be_no_ack(connection):
    channel = connection.channel()
    assert channel_error(lambda: consume(channel, REPLY_TO, auto_ack=False)) == (
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
    )


def test_only_one_reply_consumer_per_channel(connection):
    channel = connection.channel()
    consume(channel, REPLY_TO, auto_ack=True)
    assert channel_error(lambda: consume(channel, REPLY_TO, auto_ack=True)) == (
        406,
        "PRECONDITION_FAILED - reply consumer already set",
    )


def test_publishing_with_reply_to_requires_the_reply_consumer(connection, unique):
    channel = connection.channel()
    assert channel_error_after(channel, lambda: request(channel, unique)) == (
        406,
        "PRECONDITION_FAILED - fast reply consumer does not exist",
    )


def test_after_cancel_the_reply_consumer_is_gone(connection, unique):
    channel = connection.channel()
    tag, _ = consume(channel, REPLY_TO, auto_ack=True)
    channel.basic_cancel(tag)
    assert channel_error_after(channel, lambda: request(channel, unique)) == (
        406,
        "PRECONDITION_FAILED - fast reply consumer does not exist",
    )


def test_declaring_the_pseudo_queue(connection):
    """Passive or not, declaring amq.rabbitmq.reply-to answers declare-ok with 0 messages and
    1 consumer (the amq. prefix is not refused), even without a reply consumer."""
    channel = connection.channel()
    for passive in (True, False):
        ok = channel.queue_declare(REPLY_TO, passive=passive).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (REPLY_TO, 0, 1)


def test_passive_declare_of_an_address_tells_whether_its_consumer_lives(
    broker, connection, server_connection, service_queue
):
    with opened(broker) as requester:
        client = requester.channel()
        consume(client, REPLY_TO, auto_ack=True)
        request(client, service_queue)
        _, properties, _ = receive_request(server_connection, service_queue)
        address = properties.reply_to
        ok = connection.channel().queue_declare(address, passive=True).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (address, 0, 1)
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(address, passive=True)) == (
        404,
        f"NOT_FOUND - no queue '{address}' in vhost '/'",
    )


def test_unknown_address_is_404_on_declare(connection):
    channel = connection.channel()
    address = REPLY_TO + ".bogus"
    assert channel_error(lambda: channel.queue_declare(address, passive=True)) == (
        404,
        f"NOT_FOUND - no queue '{address}' in vhost '/'",
    )


def test_basic_get_on_the_pseudo_queue_is_404(connection):
    channel = connection.channel()
    assert channel_error(lambda: channel.basic_get(REPLY_TO)) == (
        404,
        f"NOT_FOUND - no queue '{REPLY_TO}' in vhost '/'",
    )


def test_reply_to_a_gone_requester_is_dropped_or_returned(
    broker, connection, server_connection, service_queue
):
    with opened(broker) as requester:
        client = requester.channel()
        consume(client, REPLY_TO, auto_ack=True)
        request(client, service_queue)
        _, properties, _ = receive_request(server_connection, service_queue)
    server = server_connection.channel()
    server.confirm_delivery()
    server.basic_publish("", properties.reply_to, b"too late")  # dropped, still confirmed
    with pytest.raises(pika.exceptions.UnroutableError):
        server.basic_publish("", properties.reply_to, b"too late", mandatory=True)


def test_a_mandatory_reply_is_returned_though_its_requester_gets_it(
    connection, server_connection, service_queue
):
    """RabbitMQ 3.10's default exchange hands a reply to its requester while routing and
    routes it to no queue: a mandatory reply comes back as 312 NO_ROUTE (then is confirmed),
    and the requester has it all the same."""
    client = connection.channel()
    _, replies = consume(client, REPLY_TO, auto_ack=True)
    request(client, service_queue)
    _, properties, _ = receive_request(server_connection, service_queue)
    server = server_connection.channel()
    server.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        server.basic_publish("", properties.reply_to, b"answer", mandatory=True)
    (returned,) = raised.value.messages
    assert (returned.method.reply_code, returned.method.reply_text, returned.body) == (
        312, "NO_ROUTE", b"answer")
    assert [reply.body for reply in replies.wait(1)] == [b"answer"]


@pytest.mark.parametrize("address", [REPLY_TO, REPLY_TO + ".bogus", REPLY_TO + "."])
def test_publishing_to_a_non_address_is_unroutable(connection, address):
    channel = connection.channel()
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        channel.basic_publish("", address, b"x", mandatory=True)
    (returned,) = raised.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")


def test_reply_from_the_requesting_channel_itself(connection):
    channel = connection.channel()
    _, replies = consume(channel, REPLY_TO, auto_ack=True)
    # Ask ourselves: publish a request to our own exclusive queue and answer it.
    own = channel.queue_declare("", exclusive=True).method.queue
    request(channel, own, b"self")
    method, properties, _ = channel.basic_get(own, auto_ack=True)
    channel.basic_publish("", properties.reply_to, b"answer")
    assert wait_for(connection, lambda: replies.bodies == [b"answer"])
