"""A queue's backlog handed to its only consumer: what the consumer sees (delivery tags,
order, exchange and routing key, properties, bodies cut into frames, redelivered flags, the
prefetch windows) and what the management API counts for it are the same whether the broker
hands the messages out one at a time or, as Warren's dispatch does for a queue's only
consumer, many at once (broker/queue.py `_dispatch_run`). Runs against RabbitMQ too
(WARREN_TEST_AMQP_PORT / WARREN_TEST_HTTP_PORT)."""

from __future__ import annotations

import pika
import pytest
from client_helpers import consume, opened, settle
from management_api import eventually, q

BIG = 300_000  # more than two body frames at the default frame_max (131072)


def message(index: int) -> tuple[str, pika.BasicProperties, bytes]:
    """The exchange, properties and body of the backlog's message `index`: the exchange, the
    properties and the body size change from one stretch to the next, one message has a
    per-message TTL (a deadline: a run stops before it), two have bodies of several frames."""
    exchange = "amq.direct" if index // 7 % 2 else ""
    if index % 3 == 0:
        properties = pika.BasicProperties(content_type="text/plain")
    elif index % 3 == 1:
        properties = pika.BasicProperties(headers={"index": index}, delivery_mode=1)
    else:
        properties = pika.BasicProperties()
    if index == 20:
        properties = pika.BasicProperties(expiration="600000")
    body = (b"%d:" % index) * (BIG // 4 if index in (10, 11) else 1)
    return exchange, properties, body


def publish_all(connection: pika.BlockingConnection, queue: str, indices: range) -> None:
    confirming = connection.channel()
    confirming.confirm_delivery()
    for index in indices:
        exchange, properties, body = message(index)
        confirming.basic_publish(exchange, queue, body, properties)
    confirming.close()


@pytest.fixture
def queue(broker, channel, unique):
    """A queue bound to amq.direct by its name, deleted after the test."""
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", unique)
    yield unique
    with opened(broker) as cleanup:
        cleanup.channel().queue_delete(unique)


def test_a_mixed_backlog_reaches_its_only_consumer_in_order_with_every_field(connection,
                                                                              queue):
    publish_all(connection, queue, range(40))
    # Five come back unacknowledged (their channel closes): they go first, redelivered.
    first = connection.channel()
    first.basic_qos(prefetch_count=5)
    _, taken = consume(first, queue)
    taken.wait(5)
    first.close()
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    _, collector = consume(channel, queue)
    collector.wait(40)
    publish_all(connection, queue, range(40, 50))  # an empty queue now: one at a time
    deliveries = collector.wait(50)
    settle(connection)
    assert [d.method.delivery_tag for d in deliveries] == list(range(1, 51))
    assert [d.body for d in deliveries] == [message(index)[2] for index in range(50)]
    assert [d.method.redelivered for d in deliveries] == [True] * 5 + [False] * 45
    for index, delivery in enumerate(deliveries):
        exchange, properties, _ = message(index)
        assert (delivery.method.exchange, delivery.method.routing_key) == (exchange, queue)
        got = delivery.properties
        assert (got.content_type, got.headers, got.delivery_mode, got.expiration) == (
            properties.content_type, properties.headers, properties.delivery_mode,
            properties.expiration), index
    channel.basic_ack(50, multiple=True)


def test_the_shared_window_stops_a_backlog_at_its_size(connection, channel, queue):
    publish_all(connection, queue, range(30))
    channel.basic_qos(prefetch_count=10, global_qos=False)
    channel.basic_qos(prefetch_count=4, global_qos=True)
    _, collector = consume(channel, queue)
    collector.wait(4)
    settle(connection)
    assert [d.method.delivery_tag for d in collector.deliveries] == [1, 2, 3, 4]
    channel.basic_ack(3, multiple=True)  # three places open in the channel's window
    collector.wait(7)
    settle(connection)
    assert [d.method.delivery_tag for d in collector.deliveries] == list(range(1, 8))
    assert collector.bodies == [message(index)[2] for index in range(7)]


def test_a_backlog_larger_than_a_turns_output_arrives_whole_and_in_order(connection, channel,
                                                                         queue):
    """No prefetch limit, 4 MB waiting: Warren hands a connection about 1 MB per event-loop
    turn (broker/transport.py's TURN_BUDGET); the consumer sees one unbroken sequence."""
    bodies = [bytes([index]) * 65536 for index in range(64)]
    confirming = connection.channel()
    confirming.confirm_delivery()
    for body in bodies:
        confirming.basic_publish("", queue, body)
    confirming.close()
    _, collector = consume(channel, queue)
    collector.wait(64)
    settle(connection)
    assert [d.method.delivery_tag for d in collector.deliveries] == list(range(1, 65))
    assert collector.bodies == bodies


def test_the_api_counts_a_backlog_consumed_at_once(api, broker, queue, unique):
    """The queue's and the consuming channel's figures for 30 deliveries made from a backlog:
    delivered, unacknowledged, then acknowledged."""
    with opened(broker, client_properties={"connection_name": unique}) as connection:
        publish_all(connection, queue, range(30))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=100)
        _, collector = consume(channel, queue)
        collector.wait(30)
        stats = eventually(lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}"),
                           lambda s: s["messages_unacknowledged"] == 30
                           and s["message_stats"]["deliver_get"] == 30)
        assert (stats["messages_ready"], stats["message_stats"]["deliver"],
                stats["message_stats"]["redeliver"]) == (0, 30, 0)
        name = eventually(lambda: [c["name"] for c in api.ok_json("/api/connections")
                                   if c["client_properties"].get("connection_name") == unique],
                          lambda found: len(found) == 1)[0]
        mine = eventually(lambda: [c for c in api.ok_json(f"/api/connections/{q(name)}/channels")
                                   if c["number"] == channel.channel_number],
                          lambda found: found and found[0]["messages_unacknowledged"] == 30
                          and found[0]["message_stats"]["deliver"] == 30)[0]
        assert mine["message_stats"]["deliver_get"] == 30
        channel.basic_ack(30, multiple=True)
        stats = eventually(lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}"),
                           lambda s: s["message_stats"]["ack"] == 30)
        assert stats["messages_unacknowledged"] == 0
