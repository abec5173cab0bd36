"""kombu applications over its py-amqp transport, as people write them: Connection, Producer
and Consumer, durable queues with persistent messages and publisher confirms, exchange types,
SimpleQueue, prefetch with ack/reject/requeue, queue arguments (TTL, priority, dead-lettering),
heartbeats, connection.blocked, and how a broker error surfaces and is recovered from.

Every test runs against the session's broker, so WARREN_TEST_AMQP_PORT=5673 runs it against a
RabbitMQ 3.10 reference node (the connection.blocked test needs a Warren of its own).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterator

import amqp.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

TIMEOUT = 5.0


@pytest.fixture
def connection(url) -> Iterator[Connection]:
    with Connection(url, connect_timeout=TIMEOUT) as conn:
        conn.connect()
        yield conn


@pytest.fixture
def confirmed(url) -> Iterator[Connection]:
    """A connection whose channels are in confirm mode (kombu's confirm_publish option): each
    publish returns once the broker has routed and enqueued the message."""
    with Connection(url, connect_timeout=TIMEOUT,
                    transport_options={"confirm_publish": True}) as conn:
        conn.connect()
        yield conn


def drain_until(connection: Connection, condition: Callable[[], bool],
                timeout: float = TIMEOUT) -> None:
    """Handle incoming frames until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        assert remaining > 0, "condition not reached in time"
        try:
            connection.drain_events(timeout=min(0.1, remaining))
        except TimeoutError:
            pass


def drain_for(connection: Connection, seconds: float) -> None:
    """Handle incoming frames for a while: used only to show that something does not arrive."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            connection.drain_events(timeout=remaining)
        except TimeoutError:
            pass


def get_payloads(queue: Queue) -> list:
    """basic.get (auto-ack) until the bound queue is empty; the decoded payloads in order."""
    payloads = []
    while (message := queue.get(no_ack=True, accept=["json"])) is not None:
        payloads.append(message.payload)
    return payloads


# -- publish and consume --------------------------------------------------------------------------


def test_producer_and_consumer_round_trip(connection, unique):
    exchange = Exchange(unique, type="direct", auto_delete=True)
    queue = Queue(unique, exchange, routing_key="greeting", auto_delete=True)
    received = []

    def on_message(body, message):
        received.append((body, message))
        message.ack()

    with Consumer(connection, queues=[queue], callbacks=[on_message], accept=["json"]):
        producer = Producer(connection, exchange=exchange, serializer="json")
        producer.publish({"hello": "warren", "n": [1, 2.5, None]}, routing_key="greeting",
                         headers={"trace": "abc", "attempt": 1}, correlation_id="c-1",
                         reply_to="replies", declare=[queue])
        drain_until(connection, lambda: received)

    body, message = received[0]
    assert body == {"hello": "warren", "n": [1, 2.5, None]}
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.headers == {"trace": "abc", "attempt": 1}
    assert message.properties["correlation_id"] == "c-1"
    assert message.properties["reply_to"] == "replies"
    assert message.delivery_info["exchange"] == unique
    assert message.delivery_info["routing_key"] == "greeting"
    assert message.delivery_info["redelivered"] is False
    assert message.acknowledged


def test_durable_queue_persistent_messages_with_publisher_confirms(confirmed, unique):
    channel = confirmed.channel()
    exchange = Exchange(unique, type="direct", durable=True)
    queue = Queue(unique, exchange, routing_key="work", durable=True)(channel)
    producer = Producer(channel, exchange=exchange, serializer="json")
    try:
        for n in range(5):
            producer.publish({"n": n}, routing_key="work", delivery_mode="persistent",
                             declare=[queue])
        # Confirmed, so already enqueued: a passive declare counts all five.
        assert queue.queue_declare(passive=True).message_count == 5
        message = queue.get(accept=["json"])
        assert message.payload == {"n": 0}
        assert message.properties["delivery_mode"] == 2
        message.ack()
        assert get_payloads(queue) == [{"n": n} for n in range(1, 5)]
    finally:
        queue.delete()
        exchange(channel).delete()


def test_publisher_confirm_nack_raises(confirmed, unique):
    """A queue that rejects publishes when full nacks the confirm; py-amqp raises it."""
    channel = confirmed.channel()
    queue = Queue(unique, max_length=1, auto_delete=True,
                  queue_arguments={"x-overflow": "reject-publish"})(channel)
    queue.declare()
    producer = Producer(channel, routing_key=unique, serializer="json")
    producer.publish("first")
    with pytest.raises(amqp.exceptions.MessageNacked):
        producer.publish("second")
    # The channel is still usable after a nack.
    assert get_payloads(queue) == ["first"]
    producer.publish("third")
    assert get_payloads(queue) == ["third"]
    queue.delete()


def test_exchange_types_route_as_declared(confirmed, unique):
    channel = confirmed.channel()
    direct = Exchange(f"{unique}-direct", type="direct", auto_delete=True)
    topic = Exchange(f"{unique}-topic", type="topic", auto_delete=True)
    fanout = Exchange(f"{unique}-fanout", type="fanout", auto_delete=True)
    queues = {
        "red": Queue(f"{unique}-red", direct, routing_key="red", exclusive=True),
        "orders": Queue(f"{unique}-orders", topic, routing_key="orders.#", exclusive=True),
        "eu": Queue(f"{unique}-eu", topic, routing_key="*.eu", exclusive=True),
        "all-1": Queue(f"{unique}-all-1", fanout, exclusive=True),
        "all-2": Queue(f"{unique}-all-2", fanout, exclusive=True),
    }
    bound = {key: queue(channel) for key, queue in queues.items()}
    for queue in bound.values():
        queue.declare()
    producer = Producer(channel, serializer="json")
    producer.publish("red", exchange=direct, routing_key="red")
    producer.publish("blue", exchange=direct, routing_key="blue")  # unroutable, dropped
    producer.publish("orders.eu", exchange=topic, routing_key="orders.eu")
    producer.publish("orders.us.new", exchange=topic, routing_key="orders.us.new")
    producer.publish("stock.eu", exchange=topic, routing_key="stock.eu")
    producer.publish("everyone", exchange=fanout, routing_key="ignored")

    assert {key: get_payloads(queue) for key, queue in bound.items()} == {
        "red": ["red"],
        "orders": ["orders.eu", "orders.us.new"],
        "eu": ["orders.eu", "stock.eu"],
        "all-1": ["everyone"],
        "all-2": ["everyone"],
    }


def test_simple_queue(confirmed, unique):
    connection = confirmed
    with connection.SimpleQueue(unique, serializer="json") as simple:
        for n in range(3):
            simple.put({"n": n})
        # Confirmed puts are enqueued: without confirms RabbitMQ may count them a moment later.
        assert simple.qsize() == 3
        first = simple.get(timeout=TIMEOUT)
        assert first.payload == {"n": 0}
        assert first.properties["delivery_mode"] == 2  # SimpleQueue publishes persistent
        first.ack()
        second = simple.get(timeout=TIMEOUT)
        second.requeue()
        # No prefetch limit: {"n": 2} was already on its way; the requeued one follows it.
        rest = [simple.get(timeout=TIMEOUT) for _ in range(2)]
        assert [(m.payload, m.delivery_info["redelivered"]) for m in rest] == [
            ({"n": 2}, False), ({"n": 1}, True)]
        for message in rest:
            message.ack()
        with pytest.raises(simple.Empty):
            simple.get(timeout=0.2)
        simple.put("leftover")
        drain_for(connection, 0.2)  # the consumer takes it but does not ack it
        assert simple.clear() == 0  # purge counts only ready messages
        leftover = simple.get(timeout=TIMEOUT)
        assert leftover.payload == "leftover"
        leftover.ack()
    queue = simple.queue(connection.default_channel)
    assert queue.queue_declare(passive=True).message_count == 0
    queue.delete()
    queue.exchange.delete()


def test_simple_buffer_is_transient_and_auto_acked(connection, unique):
    with connection.SimpleBuffer(unique) as buffer:
        buffer.put("one")
        message = buffer.get(timeout=TIMEOUT)
        assert message.payload == "one"
        assert message.properties["delivery_mode"] == 1
        assert buffer.qsize() == 0


def test_consumer_prefetch_ack_reject_and_requeue(confirmed, unique):
    channel = confirmed.channel()
    queue = Queue(unique)
    producer = Producer(channel, routing_key=unique, serializer="json")
    producer.declare()
    queue(channel).declare()
    for n in range(5):
        producer.publish(f"m{n}")

    received = []

    def on_message(body, message):
        received.append((body, message.delivery_info["redelivered"], message))

    consumer_channel = confirmed.channel()
    with Consumer(consumer_channel, queues=[queue], callbacks=[on_message], accept=["json"],
                  prefetch_count=2):
        drain_until(confirmed, lambda: len(received) == 2)
        drain_for(confirmed, 0.2)
        assert [body for body, _, _ in received] == ["m0", "m1"]  # the prefetch window

        received[0][2].ack()
        drain_until(confirmed, lambda: len(received) == 3)
        received[1][2].reject()  # dropped: no dead-letter exchange
        drain_until(confirmed, lambda: len(received) == 4)
        received[2][2].requeue()  # back to the head of the queue, redelivered
        drain_until(confirmed, lambda: len(received) == 5)
        received[3][2].ack()
        received[4][2].ack()
        drain_until(confirmed, lambda: len(received) == 6)
        received[5][2].ack()
        drain_for(confirmed, 0.2)

    assert [(body, redelivered) for body, redelivered, _ in received] == [
        ("m0", False), ("m1", False), ("m2", False), ("m3", False), ("m2", True), ("m4", False),
    ]
    assert queue(channel).queue_declare(passive=True).message_count == 0
    queue(channel).delete()


# -- queue arguments ------------------------------------------------------------------------------


def test_message_ttl_expires_messages(confirmed, unique):
    channel = confirmed.channel()
    queue = Queue(unique, message_ttl=0.1, auto_delete=True)(channel)  # x-message-ttl 100 ms
    queue.declare()
    Producer(channel, routing_key=unique, serializer="json").publish("short-lived")
    deadline = time.monotonic() + TIMEOUT
    while queue.queue_declare(passive=True).message_count:
        assert time.monotonic() < deadline, "the message did not expire"
        time.sleep(0.05)
    assert queue.get() is None
    queue.delete()


def test_max_priority_delivers_higher_priority_first(confirmed, unique):
    channel = confirmed.channel()
    queue = Queue(unique, max_priority=10, auto_delete=True)(channel)  # x-max-priority
    queue.declare()
    producer = Producer(channel, routing_key=unique, serializer="json")
    for priority in (1, 5, 9, 5, 0):
        producer.publish(f"p{priority}", priority=priority)
    assert get_payloads(queue) == ["p9", "p5", "p5", "p1", "p0"]
    queue.delete()


def test_dead_letter_exchange_receives_rejected_messages(confirmed, unique):
    channel = confirmed.channel()
    dlx = Exchange(f"{unique}-dlx", type="fanout", auto_delete=True)
    dead = Queue(f"{unique}-dead", dlx, auto_delete=True)(channel)
    work = Queue(f"{unique}-work", auto_delete=True,
                 queue_arguments={"x-dead-letter-exchange": dlx.name})(channel)
    dead.declare()
    work.declare()
    Producer(channel, routing_key=work.name, serializer="json").publish({"job": 1})

    message = work.get(accept=["json"])
    message.reject(requeue=False)

    deadline = time.monotonic() + TIMEOUT
    while (dead_letter := dead.get(no_ack=True, accept=["json"])) is None:
        assert time.monotonic() < deadline, "nothing was dead-lettered"
        time.sleep(0.05)
    assert dead_letter.payload == {"job": 1}
    assert dead_letter.delivery_info["routing_key"] == work.name
    (death,) = dead_letter.headers["x-death"]
    assert death["reason"] == "rejected"
    assert death["queue"] == work.name
    assert death["count"] == 1
    assert death["exchange"] == ""
    assert death["routing-keys"] == [work.name]
    assert dead_letter.headers["x-first-death-reason"] == "rejected"
    work.delete()
    dead.delete()


# -- connection-level behaviour -------------------------------------------------------------------


def test_heartbeats_keep_an_idle_connection_open(url):
    """With a 2 s heartbeat, kombu's heartbeat_check sends heartbeats and checks the broker's;
    neither side drops the idle connection, and the broker's heartbeats arrive."""
    with Connection(url, heartbeat=2, connect_timeout=TIMEOUT) as conn:
        conn.connect()
        assert conn.connection.heartbeat == 2  # the client's lower value wins in tune
        received_before = conn.connection.bytes_recv
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            conn.heartbeat_check(rate=2)  # raises ConnectionForced on two missed intervals
            try:
                conn.drain_events(timeout=0.25)
            except TimeoutError:
                pass
        assert conn.connection.bytes_recv > received_before  # the broker's heartbeat frames
        channel = conn.channel()
        assert Queue("", exclusive=True)(channel).declare()  # still open and usable


def _api(broker, method: str, path: str, body: object = None) -> tuple[int, object]:
    """A management API call to a Warren of its own: (status, decoded reply)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = response.read()
        return response.status, json.loads(payload) if payload else None


def test_connection_blocked_and_unblocked_callbacks(warren_factory):
    """kombu passes on_blocked/on_unblocked to py-amqp through transport_options."""
    warren = warren_factory(extra_args=["--memory-high-watermark-absolute", "1"])
    events: list[str] = []
    options = {"on_blocked": lambda reason: events.append(f"blocked: {reason}"),
               "on_unblocked": lambda: events.append("unblocked")}
    url = f"amqp://guest:guest@{warren.host}:{warren.port}//"
    with Connection(url, connect_timeout=TIMEOUT, transport_options=options) as conn:
        conn.connect()
        channel = conn.channel()
        queue = Queue("blocked-test", exclusive=True)(channel)
        queue.declare()
        Producer(channel, routing_key="blocked-test", serializer="json").publish("held")
        drain_until(conn, lambda: events)
        # py-amqp passes its own text, not the broker's reason ("low on memory").
        assert events == ["blocked: connection blocked, see broker logs"]

        node = _api(warren, "GET", "/api/nodes")[1][0]["name"]
        status, _ = _api(warren, "PUT", f"/api/nodes/{node}/memory-high-watermark",
                         {"fraction": 0.9})
        assert status == 204
        drain_until(conn, lambda: len(events) == 2)
        assert events[1] == "unblocked"
        deadline = time.monotonic() + TIMEOUT
        while (message := queue.get(no_ack=True)) is None:
            assert time.monotonic() < deadline, "the held publish was not delivered"
            time.sleep(0.05)
        assert message.payload == "held"


def test_inequivalent_declare_is_406_and_the_channel_is_revived(connection, unique):
    channel = connection.default_channel
    Queue(unique, durable=False, auto_delete=True)(channel).declare()

    with pytest.raises(amqp.exceptions.PreconditionFailed) as failure:
        Queue(unique, durable=True, auto_delete=True)(channel).declare()
    assert failure.value.reply_code == 406
    assert failure.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{unique}' in vhost '/': "
        "received 'true' but current is 'false'")

    with pytest.raises(amqp.exceptions.PreconditionFailed) as failure:
        Queue(unique, durable=False, auto_delete=True, message_ttl=2)(channel).declare()
    assert failure.value.reply_text == (
        f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{unique}' in vhost "
        "'/': received the value '2000' of type 'signedint' but current is none")

    # py-amqp reopened the channel after the broker closed it: kombu keeps using it.
    assert connection.default_channel is channel and channel.is_open
    producer = Producer(connection, routing_key=unique, serializer="json")
    publish = connection.ensure(producer, producer.publish, max_retries=2)
    publish("after the error")
    queue = Queue(unique, durable=False, auto_delete=True)(channel)
    assert get_payloads(queue) == ["after the error"]
    queue.delete()


def test_missing_queue_is_404(connection, unique):
    with pytest.raises(amqp.exceptions.NotFound) as failure:
        Queue(unique)(connection.default_channel).queue_declare(passive=True)
    assert failure.value.reply_text == f"NOT_FOUND - no queue '{unique}' in vhost '/'"
    assert connection.default_channel.is_open
