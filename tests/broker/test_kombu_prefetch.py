"""Prefetch growth for a running consumer, the way Celery does it through kombu.

A Celery worker holds ETA/countdown tasks (and retries) unacked and raises its prefetch by one
basic.qos per held task, so that other tasks keep reaching it. Which `global` flag it sends is
kombu's choice, made from connection.start's server properties (`qos_semantics_matches_spec`):
for product "RabbitMQ" 3.3 to 3.x it sends global=true, which RabbitMQ applies at once to
running consumers; for any other product it assumes the AMQP spec's per-channel global=false,
which RabbitMQ (and Warren) apply only to consumers started later. A broker with RabbitMQ's QoS
semantics must therefore announce itself as RabbitMQ 3.x, or Celery workers stall on ETA tasks.
"""

from __future__ import annotations

import time

from client_helpers import DEFAULT_TIMEOUT
from kombu import Connection, Consumer, Producer, Queue


def _drain(connection: Connection, condition, timeout: float = DEFAULT_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            connection.drain_events(timeout=min(0.1, remaining))
        except TimeoutError:  # socket.timeout: nothing arrived in this slice
            pass
    return True


def test_kombu_picks_global_qos_and_raising_it_reaches_the_running_consumer(broker, unique):
    url = f"amqp://guest:guest@{broker.host}:{broker.port}//"
    with Connection(url, connect_timeout=DEFAULT_TIMEOUT,
                    transport_options={"confirm_publish": True}) as connection:
        connection.connect()
        properties = connection.connection.server_properties
        assert (properties["product"], properties["version"]) == ("RabbitMQ", "3.10.8")
        # What Celery's worker does: qos_global = not qos_semantics_matches_spec.
        apply_global = not connection.qos_semantics_matches_spec
        assert apply_global

        channel = connection.channel()
        queue = Queue(unique, auto_delete=True)(channel)
        queue.declare()
        producer = Producer(channel, routing_key=unique, serializer="json")
        for n in range(3):
            producer.publish(n)

        held: list = []
        consumer_channel = connection.channel()
        consumer_channel.basic_qos(0, 1, apply_global)
        with Consumer(consumer_channel, queues=[queue], accept=["json"],
                      callbacks=[lambda _body, message: held.append(message)]):
            assert _drain(connection, lambda: len(held) == 1)
            for prefetch in (2, 3):  # one more per held (ETA) message, as Celery's QoS does
                consumer_channel.basic_qos(0, prefetch, apply_global)
                assert _drain(connection, lambda p=prefetch: len(held) == p), (
                    f"prefetch raised to {prefetch}, still {len(held)} delivered")
            for message in held:
                message.ack()
