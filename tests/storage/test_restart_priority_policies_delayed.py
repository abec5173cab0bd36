"""Restarts and the lifecycle features of tests/lifecycle (priorities, single active consumer,
policies, delayed messages): what RabbitMQ 3.10 keeps across a clean restart, Warren keeps.

- Policies loaded once from a definitions file (`--load-definitions`) are durable definitions:
  after a restart without the file they still apply, to queues declared before and after.
- A durable priority queue recovers its persistent messages in priority order; a durable single
  active consumer queue is still one.
- Delayed messages on a durable x-delayed-message exchange survive (the plugin keeps every
  delayed message in a disc table and restarts its timer from the stored absolute time): a
  message is routed at its original deadline, not `delay` after the restart, and one whose
  deadline passed while the broker was down is routed right after start.
"""

from __future__ import annotations

import json
import time

import pika
from client_helpers import close_quietly
from warren_process import TEST_DEFINITIONS, get_all, publish_confirmed

TIMING_SLACK = 0.01


def bodies(found) -> list[bytes]:
    return [got.body for got in found]


def definitions_with_policies(tmp_path, policies: list[dict]):
    document = json.loads(TEST_DEFINITIONS.read_text())
    document["policies"] = policies
    path = tmp_path / "definitions-with-policies.json"
    path.write_text(json.dumps(document))
    return path


def policy(name: str, pattern: str, definition: dict, priority: int = 0,
           apply_to: str = "queues") -> dict:
    return {"vhost": "/", "name": name, "pattern": pattern, "apply-to": apply_to,
            "definition": definition, "priority": priority}


# -- policies ---------------------------------------------------------------------------------


def test_policies_from_definitions_survive_a_restart(node_factory, tmp_path):
    path = definitions_with_policies(tmp_path, [
        policy("limit-two", "^limited2\\.", {"max-length": 2}, priority=5),
        policy("limit-one-low", "^limited2\\.", {"max-length": 1}, priority=1),
        policy("ae-policy", "^with-ae\\.", {"alternate-exchange": "ae"}, apply_to="exchanges"),
    ])
    node = node_factory().start(load_definitions=path)
    with node.channel() as ch:
        ch.queue_declare("limited2.before", durable=True)
        publish_confirmed(ch, "limited2.before", [b"0", b"1", b"2"])
        assert bodies(get_all(ch, "limited2.before", ack=False)) == [b"1", b"2"]

    node.restart()  # no --load-definitions this time

    with node.channel() as ch:
        # a queue declared before the restart: still limited
        assert bodies(get_all(ch, "limited2.before", ack=False)) == [b"1", b"2"]
        publish_confirmed(ch, "limited2.before", [b"3", b"4", b"5"])
        assert bodies(get_all(ch, "limited2.before")) == [b"4", b"5"]
        # a queue declared after the restart: limited by the priority 5 policy
        ch.queue_declare("limited2.after", durable=False)
        publish_confirmed(ch, "limited2.after", [b"a", b"b", b"c"])
        assert bodies(get_all(ch, "limited2.after")) == [b"b", b"c"]
        # the exchanges policy still sets an alternate exchange
        ch.exchange_declare("ae", "fanout")
        ch.queue_declare("ae-q")
        ch.queue_bind("ae-q", "ae")
        ch.exchange_declare("with-ae.x", "direct")
        publish_confirmed(ch, "nowhere", [b"unroutable"], exchange="with-ae.x")
        assert bodies(get_all(ch, "ae-q")) == [b"unroutable"]

    node.restart()  # twice: the policies were written back, not only loaded

    with node.channel() as ch:
        ch.queue_declare("limited2.third", durable=False)
        publish_confirmed(ch, "limited2.third", [b"x", b"y", b"z"])
        assert bodies(get_all(ch, "limited2.third")) == [b"y", b"z"]


# -- priority and single active consumer queues -----------------------------------------------


def test_priority_queue_recovers_in_priority_order(node):
    with node.channel() as ch:
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})
        ch.confirm_delivery()
        for body, priority in [(b"a", None), (b"b", 1), (b"c", 5), (b"d", 9), (b"e", 3),
                               (b"f", 5), (b"g", 0)]:
            ch.basic_publish("", "prio", body,
                             pika.BasicProperties(delivery_mode=2, priority=priority))
        # take two without acking: they come back redelivered, in their place
        first, _, _ = ch.basic_get("prio")
        second, _, _ = ch.basic_get("prio")
        assert (first.delivery_tag, second.delivery_tag) == (1, 2)

    node.restart()

    with node.channel() as ch:
        found = get_all(ch, "prio")
        assert [(got.body, got.redelivered) for got in found] == [
            (b"c", True), (b"d", True), (b"f", False), (b"e", False), (b"b", False),
            (b"a", False), (b"g", False)]
        assert [got.properties.priority for got in found] == [5, 9, 5, 3, 1, None, 0]
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 5})


def test_single_active_consumer_queue_is_still_one(node):
    with node.channel() as ch:
        ch.queue_declare("sac", durable=True, arguments={"x-single-active-consumer": True})

    node.restart()

    first, second = node.connect(), node.connect()
    try:
        received = []
        first.channel().basic_consume(
            "sac", lambda _c, _m, _p, body: received.append(("first", body)), auto_ack=True)
        second.channel().basic_consume(
            "sac", lambda _c, _m, _p, body: received.append(("second", body)), auto_ack=True)
        with node.channel() as ch:
            publish_confirmed(ch, "sac", [b"0", b"1", b"2"])
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            for connection in (first, second):
                connection.process_data_events(time_limit=0.02)
        assert received == [("first", b"0"), ("first", b"1"), ("first", b"2")]
    finally:
        close_quietly(first)
        close_quietly(second)


# -- delayed messages -------------------------------------------------------------------------


def setup_delayed(node, exchange: str = "delayed", queue: str = "delayed-q") -> None:
    with node.channel() as ch:
        ch.exchange_declare(exchange, "x-delayed-message", durable=True,
                            arguments={"x-delayed-type": "direct"})
        ch.queue_declare(queue, durable=True)
        ch.queue_bind(queue, exchange, "k")


def publish_delayed(node, delay_ms: int, body: bytes = b"delayed",
                    exchange: str = "delayed") -> float:
    """Publish with confirms; return the monotonic time just before the publish."""
    with node.channel() as ch:
        ch.confirm_delivery()
        started = time.monotonic()
        ch.basic_publish(exchange, "k", body, pika.BasicProperties(
            delivery_mode=2, headers={"x-delay": delay_ms}))
        return started


def first_delivery(node, queue: str = "delayed-q", timeout: float = 10.0):
    """Consume until one message arrives: (arrival monotonic time, method, properties, body)."""
    connection = node.connect()
    try:
        channel = connection.channel()
        for method, properties, body in channel.consume(queue, auto_ack=True,
                                                        inactivity_timeout=timeout):
            assert method is not None, f"nothing delivered within {timeout}s"
            return time.monotonic(), method, properties, body
    finally:
        close_quietly(connection)


def test_delayed_message_keeps_its_absolute_deadline_across_a_restart(node):
    setup_delayed(node)
    published = publish_delayed(node, 3000)
    assert node.stop() == 0
    time.sleep(1.0)
    node.start()
    up = time.monotonic()
    arrived, method, properties, body = first_delivery(node)
    deadline = published + 3.0
    assert arrived - published >= 3.0 - TIMING_SLACK, "routed before its delay"
    # at the original deadline (or at once if the restart took longer), not 3 s after start
    assert arrived - max(deadline, up) < 1.0, (arrived - published, up - published)
    assert body == b"delayed"
    assert (method.exchange, method.routing_key, method.redelivered) == ("delayed", "k", False)
    assert properties.headers == {"x-delay": -3000}
    assert properties.delivery_mode == 2


def test_delayed_message_whose_deadline_passed_while_down_comes_at_start(node):
    setup_delayed(node)
    publish_delayed(node, 500)
    assert node.stop() == 0
    time.sleep(1.0)
    node.start()
    up = time.monotonic()
    arrived, _method, properties, body = first_delivery(node)
    assert body == b"delayed"
    assert arrived - up < 1.0
    assert properties.headers == {"x-delay": -500}


def test_delayed_messages_keep_their_order_across_a_restart(node):
    setup_delayed(node)
    for delay, body in ((2600, b"third"), (1800, b"second"), (1500, b"first")):
        publish_delayed(node, delay, body)
    assert node.stop() == 0
    node.start()
    connection = node.connect()
    try:
        channel = connection.channel()
        got = []
        for method, _properties, body in channel.consume("delayed-q", auto_ack=True,
                                                         inactivity_timeout=8):
            assert method is not None, f"only {got} delivered"
            got.append(body)
            if len(got) == 3:
                break
        assert got == [b"first", b"second", b"third"]
    finally:
        close_quietly(connection)


def test_delivered_delayed_messages_are_not_delivered_again_after_a_restart(node):
    setup_delayed(node)
    publish_delayed(node, 100)
    _arrived, _method, _properties, body = first_delivery(node)  # auto-acked
    assert body == b"delayed"
    node.restart()
    time.sleep(0.5)
    with node.channel() as ch:
        assert ch.queue_declare("delayed-q", passive=True).method.message_count == 0


def test_delayed_message_routed_before_the_restart_is_a_queued_message(node):
    """Once routed, a persistent delayed message is an ordinary message of its durable queue."""
    setup_delayed(node)
    publish_delayed(node, 100)
    time.sleep(0.6)
    with node.channel() as ch:
        assert ch.queue_declare("delayed-q", passive=True).method.message_count == 1
    node.restart()
    with node.channel() as ch:
        found = get_all(ch, "delayed-q")
        assert [(got.body, got.properties.headers) for got in found] == [
            (b"delayed", {"x-delay": -100})]
