"""Messages in quorum queues, as RabbitMQ 3.10.8 handles them (RABBITMQ_QUEUE_TYPES.md §2):
x-delivery-count on redeliveries, x-delivery-limit (dropped, or dead-lettered with reason
delivery_limit), the dead-letter strategies, length limits with drop-head and reject-publish,
message TTL, single active consumer and consumer priorities. Durability across restarts is in
test_queue_types_restart.py (Warren only); the management API view in test_queue_types_api.py.
The typed header bytes of a delivery_limit death are also checked in
tests/lifecycle/test_delivery_limit.py."""

from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest
from client_helpers import consume, message_count, opened, settle, wait_for
from management_api import Api
from queue_types_helpers import api_queue, wait_count


def get_unacked(channel, queue: str):
    """basic.get (manual ack) until a message comes: (method, properties, body)."""
    found: list = []

    def got() -> bool:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            found.append((method, properties, body))
        return bool(found)

    assert wait_for(channel.connection, got, 3.0), f"nothing in {queue}"
    return found[0]


def get_acked(channel, queue: str):
    method, properties, body = get_unacked(channel, queue)
    channel.basic_ack(method.delivery_tag)
    return method, properties, body


def death(properties) -> dict:
    headers = properties.headers
    assert list(headers) == ["x-death", "x-first-death-exchange", "x-first-death-queue",
                             "x-first-death-reason"]
    (entry,) = headers["x-death"]
    assert list(entry) == ["count", "reason", "queue", "time", "exchange", "routing-keys"]
    assert type(entry["count"]).__name__ == "long" and entry["count"] == 1
    return entry


# -- x-delivery-count --------------------------------------------------------------------------


def test_basic_get_carries_the_delivery_count_from_the_first_delivery(channel, queues):
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"m")
    for expected in (0, 1, 2):
        method, properties, body = get_unacked(channel, queue)
        assert body == b"m"
        assert method.redelivered is (expected > 0)
        assert properties.headers == {"x-delivery-count": expected}
        assert type(properties.headers["x-delivery-count"]).__name__ == "long"
        channel.basic_nack(method.delivery_tag, requeue=True)


def test_a_consumer_sees_the_delivery_count_only_on_redeliveries(connection, channel, queues):
    """nack, reject and a closed channel each count as a return."""
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"m", pika.BasicProperties(headers={"h": "v"}))
    consuming = connection.channel()
    _tag, collector = consume(consuming, queue)
    first = collector.wait(1)[0]
    assert not first.method.redelivered
    assert first.properties.headers == {"h": "v"}
    consuming.basic_nack(first.method.delivery_tag, requeue=True)
    second = collector.wait(2)[1]
    assert second.method.redelivered
    assert second.properties.headers == {"h": "v", "x-delivery-count": 1}
    consuming.basic_reject(second.method.delivery_tag, requeue=True)
    third = collector.wait(3)[2]
    assert third.properties.headers == {"h": "v", "x-delivery-count": 2}
    consuming.close()  # unacked: returned once more
    _method, properties, _body = get_acked(channel, queue)
    assert properties.headers == {"h": "v", "x-delivery-count": 3}


# -- requeue order -------------------------------------------------------------------------------


def test_a_requeued_message_goes_to_the_back(channel, queues):
    """Unlike a classic queue (which puts it back in its place), a RabbitMQ 3.10.8 quorum queue
    delivers a message returned by nack/reject with requeue after the ones already waiting."""
    queue = queues.quorum(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    method, _properties, _body = get_unacked(channel, queue)
    channel.basic_nack(method.delivery_tag, requeue=True)
    settle(channel.connection, 0.1)
    assert [get_acked(channel, queue)[2] for _ in range(3)] == [b"b", b"c", b"a"]


def test_a_consumer_gets_its_requeued_message_after_the_others(connection, channel, queues):
    queue = queues.quorum(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=1)
    seen: list[bytes] = []

    def on_message(ch, method, _properties, body) -> None:
        seen.append(body)
        if len(seen) == 1:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    consuming.basic_consume(queue, on_message)
    assert wait_for(connection, lambda: len(seen) >= 4)
    assert seen == [b"a", b"b", b"c", b"a"]


# -- x-delivery-limit --------------------------------------------------------------------------


def test_past_the_delivery_limit_a_message_is_dead_lettered(channel, queues):
    dlq = queues.classic(channel, "dlq")
    queue = queues.quorum(channel, delivery_limit=1, dead_letter_exchange="",
                          dead_letter_routing_key=dlq)
    channel.basic_publish("", queue, b"m", pika.BasicProperties(headers={"h": 1}))
    for _ in range(2):  # delivered limit + 1 times
        method, _properties, _body = get_unacked(channel, queue)
        channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, dlq, 1)
    assert message_count(channel, queue) == 0
    _method, properties, body = get_acked(channel, dlq)
    assert body == b"m"
    assert properties.headers["h"] == 1
    assert "x-delivery-count" not in properties.headers
    entry = death(pika.BasicProperties(headers={
        key: value for key, value in properties.headers.items() if key != "h"}))
    assert entry["reason"] == "delivery_limit"
    assert entry["queue"] == queue
    assert entry["exchange"] == ""
    assert entry["routing-keys"] == [queue]
    assert properties.headers["x-first-death-reason"] == "delivery_limit"


def test_past_the_delivery_limit_without_dlx_a_message_is_dropped(channel, queues):
    queue = queues.quorum(channel, delivery_limit=0)
    channel.basic_publish("", queue, b"m")
    method, properties, _body = get_unacked(channel, queue)
    assert properties.headers == {"x-delivery-count": 0}
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, queue, 0)
    settle(channel.connection, 0.2)
    assert channel.basic_get(queue)[0] is None


# -- dead-letter strategies ----------------------------------------------------------------------


def test_at_least_once_dead_letters_like_at_most_once_when_routed(channel, queues):
    dlx = queues.exchange(channel, "dlx")
    dlq = queues.classic(channel, "dlq")
    channel.queue_bind(dlq, dlx)
    queue = queues.quorum(channel, dead_letter_exchange=dlx, dead_letter_strategy="at-least-once",
                          overflow="reject-publish")
    channel.basic_publish("", queue, b"m")
    method, _properties, _body = get_unacked(channel, queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    _method, properties, body = get_acked(channel, dlq)
    assert body == b"m"
    entry = death(properties)
    assert (entry["reason"], entry["queue"], entry["exchange"]) == ("rejected", queue, "")


STRATEGIES = [
    # (x-dead-letter-strategy, x-overflow, dead letters kept)
    ("at-least-once", "reject-publish", 1),
    # at-least-once needs x-overflow reject-publish; without it RabbitMQ runs at-most-once
    ("at-least-once", None, 0),
    ("at-most-once", "reject-publish", 0),
    ("at-most-once", None, 0),
]


def test_an_unroutable_dead_letter_is_kept_only_at_least_once(broker, channel, queues):
    """A message dead-lettered to an exchange that routes it nowhere: at-most-once drops it;
    at-least-once keeps it (messages_dlx, message_bytes_dlx in the API) until it can be routed.
    The four cases share one wait for the API's figures."""
    if broker.management_port is None:
        pytest.skip("needs the management API")
    api = Api(broker.host, broker.management_port)
    dlx = queues.exchange(channel, "dlx")
    declared = []
    for index, (strategy, overflow, kept) in enumerate(STRATEGIES):
        arguments = {"dead_letter_exchange": dlx, "dead_letter_strategy": strategy}
        if overflow:
            arguments["overflow"] = overflow
        queue = queues.quorum(channel, f"q{index}", **arguments)
        channel.basic_publish("", queue, b"dead")
        channel.basic_publish("", queue, b"stays")
        method, _properties, _body = get_unacked(channel, queue)
        channel.basic_reject(method.delivery_tag, requeue=False)
        declared.append((queue, kept))
    for queue, kept in declared:
        wait_count(channel, queue, 1)
        answer = api_queue(api, queue, lambda a, kept=kept: a.get("messages_dlx") == kept)
        assert (answer["messages_dlx"], answer["message_bytes_dlx"]) == (kept, 4 * kept), queue
        assert channel.basic_get(queue, auto_ack=True)[2] == b"stays"


# -- length limits -------------------------------------------------------------------------------


def test_max_length_drops_the_head(channel, queues):
    queue = queues.quorum(channel, max_length=2)
    for index in range(4):
        channel.basic_publish("", queue, b"m%d" % index)
    assert message_count(channel, queue) == 2
    assert [get_acked(channel, queue)[2] for _ in range(2)] == [b"m2", b"m3"]


def test_max_length_bytes_drops_the_head(channel, queues):
    queue = queues.quorum(channel, max_length_bytes=10)
    for index in range(4):
        channel.basic_publish("", queue, b"body%d" % index)
    assert message_count(channel, queue) == 2
    assert [get_acked(channel, queue)[2] for _ in range(2)] == [b"body2", b"body3"]


def test_a_dropped_head_is_dead_lettered_with_reason_maxlen(channel, queues):
    dlq = queues.classic(channel, "dlq")
    queue = queues.quorum(channel, max_length=1, dead_letter_exchange="",
                          dead_letter_routing_key=dlq)
    for index in range(3):
        channel.basic_publish("", queue, b"m%d" % index)
    wait_count(channel, dlq, 2)
    _method, properties, body = get_acked(channel, dlq)
    assert body == b"m0"
    entry = death(properties)
    assert (entry["reason"], entry["queue"], entry["routing-keys"]) == ("maxlen", queue, [queue])


def test_reject_publish_nacks_once_the_queue_is_over_its_limit(channel, queues):
    """Unlike a classic queue, a quorum queue takes the message that brings it over the limit
    (max-length 2 holds 3) and nacks publishes from then on, until consumers make room."""
    queue = queues.quorum(channel, max_length=2, overflow="reject-publish")
    outcomes = []
    for index in range(5):
        try:
            channel.basic_publish("", queue, b"m%d" % index)
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    assert outcomes == ["ack", "ack", "ack", "nack", "nack"]
    assert message_count(channel, queue) == 3
    for _ in range(2):
        get_acked(channel, queue)
    wait_for(channel.connection, lambda: False, 0.3)
    channel.basic_publish("", queue, b"after")  # confirmed again (a nack would raise)
    assert message_count(channel, queue) == 2
    assert [get_acked(channel, queue)[2] for _ in range(2)] == [b"m2", b"after"]


def test_reject_publish_dlx_is_accepted_and_drops_the_head(channel, queues):
    """RabbitMQ 3.10.8 accepts x-overflow reject-publish-dlx on a quorum queue and then drops
    the head, confirming every publish."""
    queue = queues.quorum(channel, max_length=2, overflow="reject-publish-dlx")
    for index in range(5):
        channel.basic_publish("", queue, b"m%d" % index)  # all confirmed
    assert message_count(channel, queue) == 2
    assert [get_acked(channel, queue)[2] for _ in range(2)] == [b"m3", b"m4"]


# -- TTL -----------------------------------------------------------------------------------------


def test_message_ttl_is_enforced(channel, queues):
    queue = queues.quorum(channel, message_ttl=200)
    channel.basic_publish("", queue, b"m")
    assert message_count(channel, queue) == 1
    wait_count(channel, queue, 0)
    assert channel.basic_get(queue)[0] is None


def test_per_message_expiration_is_enforced(channel, queues):
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"short", pika.BasicProperties(expiration="200"))
    channel.basic_publish("", queue, b"long", pika.BasicProperties(expiration="60000"))
    settle(channel.connection, 0.5)
    assert get_acked(channel, queue)[2] == b"long"
    assert channel.basic_get(queue)[0] is None


def test_expired_messages_are_dead_lettered_with_reason_expired(channel, queues):
    dlq = queues.classic(channel, "dlq")
    queue = queues.quorum(channel, message_ttl=100, dead_letter_exchange="",
                          dead_letter_routing_key=dlq)
    channel.basic_publish("", queue, b"m")
    wait_count(channel, dlq, 1)
    _method, properties, body = get_acked(channel, dlq)
    assert body == b"m"
    assert death(properties)["reason"] == "expired"


# -- x-expires -----------------------------------------------------------------------------------


def test_x_expires_deletes_an_unused_quorum_queue(broker, queues):
    """RabbitMQ checks a quorum queue's expiry on a periodic tick: a 1 s x-expires queue went
    after about 5 s."""
    with opened(broker) as connection:
        channel = connection.channel()
        queue = queues.quorum(channel, expires=1000)
        start = time.monotonic()
        gone: list[float] = []

        def deleted() -> bool:
            probe = connection.channel()
            try:
                probe.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as error:
                assert error.reply_code == 404
                gone.append(time.monotonic() - start)
                return True
            probe.close()
            return False

        assert wait_for(connection, deleted, 12.0)
        # (measured from declare-ok's arrival: a broker that deletes at exactly 1 s after the
        # declare may be seen a few ms earlier)
        assert gone[0] >= 0.9


# -- consumers -----------------------------------------------------------------------------------


def test_single_active_consumer(connection, channel, queues):
    queue = queues.quorum(channel, single_active_consumer=True)
    first = connection.channel()
    first_tag, first_got = consume(first, queue, auto_ack=True)
    second = connection.channel()
    _tag, second_got = consume(second, queue, auto_ack=True)
    for index in range(3):
        channel.basic_publish("", queue, b"a%d" % index)
    first_got.wait(3)
    settle(connection, 0.2)
    assert second_got.bodies == []
    first.basic_cancel(first_tag)
    channel.basic_publish("", queue, b"b")
    assert second_got.wait(1)[0].body == b"b"
    assert first_got.bodies == [b"a0", b"a1", b"a2"]


def test_consumer_priorities(connection, channel, queues):
    queue = queues.quorum(channel)
    low = connection.channel()
    _tag, low_got = consume(low, queue, auto_ack=True)
    high = connection.channel()
    _tag, high_got = consume(high, queue, auto_ack=True, arguments={"x-priority": 10})
    for index in range(4):
        channel.basic_publish("", queue, b"m%d" % index)
    high_got.wait(4)
    settle(connection, 0.2)
    assert low_got.bodies == []


def test_a_transient_message_keeps_its_properties(channel, queues):
    """The queue stores every message durably, but hands it back as published."""
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"m", pika.BasicProperties(content_type="text/plain"))
    _method, properties, _body = get_acked(channel, queue)
    assert properties.delivery_mode is None
    assert properties.content_type == "text/plain"


def test_a_transient_message_dead_lettered_into_a_durable_classic_queue_stays_transient(
        channel, queues):
    """A quorum queue keeps its transient messages durably, but their copies dead-lettered into
    a durable classic queue are transient there, as published (RabbitMQ 3.10.8's API then
    shows the classic queue with messages 2, messages_persistent 1). That a restart of Warren
    does not make them persistent: test_queue_types_restart.py."""
    target = queues.classic(channel, "dead", durable=True)
    queue = queues.quorum(channel, dead_letter_exchange="", dead_letter_routing_key=target)
    channel.basic_publish("", queue, b"transient")
    channel.basic_publish("", queue, b"persistent", pika.BasicProperties(delivery_mode=2))
    for _ in range(2):
        method, _properties, _body = get_unacked(channel, queue)
        channel.basic_reject(method.delivery_tag, requeue=False)
    wait_count(channel, target, 2)
    deliveries = [get_acked(channel, target) for _ in range(2)]
    assert [(body, properties.delivery_mode) for _, properties, body in deliveries] == [
        (b"transient", None), (b"persistent", 2)]


# -- returns: which go to the back -----------------------------------------------------------


def test_a_message_released_by_a_closing_channel_goes_back_to_its_place(connection, channel,
                                                                       queues):
    """Only the client's own returns (nack, reject, recover) go to the back: a message whose
    channel closes with it unacked comes back first, counted as a delivery."""
    queue = queues.quorum(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    other = connection.channel()
    get_unacked(other, queue)
    other.close()
    settle(connection, 0.1)
    got = [get_acked(channel, queue) for _ in range(3)]
    assert [body for _, _, body in got] == [b"a", b"b", b"c"]
    assert [properties.headers["x-delivery-count"] for _, properties, _ in got] == [1, 0, 0]
    assert [method.redelivered for method, _, _ in got] == [True, False, False]


def test_recover_puts_the_messages_at_the_back(connection, channel, queues):
    queue = queues.quorum(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    other = connection.channel()
    get_unacked(other, queue)
    other.basic_recover(requeue=True)
    settle(connection, 0.1)
    assert [get_acked(channel, queue)[2] for _ in range(3)] == [b"b", b"c", b"a"]


def test_reject_publish_takes_again_only_under_its_soft_limit(channel, queues):
    """Once over its limit, a reject-publish quorum queue refuses publishes until it is down
    to 80% of the limit (max-length 10: refused at 10 and 9 ready, taken at 8)."""
    queue = queues.quorum(channel, max_length=10, overflow="reject-publish")

    def outcome() -> str:
        try:
            channel.basic_publish("", queue, b"m")
            return "ack"
        except pika.exceptions.NackError:
            return "nack"

    assert [outcome() for _ in range(12)] == ["ack"] * 11 + ["nack"]
    seen = []
    for _ in range(3):
        get_acked(channel, queue)
        ready = message_count(channel, queue)
        seen.append((ready, outcome()))
    assert seen == [(10, "nack"), (9, "nack"), (8, "ack")]
    assert message_count(channel, queue) == 9
