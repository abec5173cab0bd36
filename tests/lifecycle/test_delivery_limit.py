"""Delivery limit (x-delivery-limit) and the x-delivery-count header.

RabbitMQ 3.10 has it on quorum queues only (classic queues refuse the argument); Warren also
offers it on classic queues, with the shapes observed on a RabbitMQ 3.10.8 quorum queue:
- every return of a delivered message (nack/reject with requeue, channel closed with it unacked)
  counts; deliveries carry `x-delivery-count` (long) = the number of earlier returns, inserted in
  sorted position among the other headers;
- basic.get always carries the header (0 the first time); a consumer's first delivery has none,
  its redeliveries do; redelivered=true after a return;
- limit N: delivered N+1 times (counts 0..N); the next return dead-letters it with reason
  `delivery_limit` (first-death x-death shape, no x-delivery-count on the copy, no expiration,
  original-expiration kept); without a DLX it is dropped.
The quorum-queue cases run against both (Warren's quorum queues: broker/quorum.py); the
classic-queue ones against Warren only.
"""

from __future__ import annotations

import pika
import pytest
from client_helpers import consume
from lifecycle_helpers import (
    count,
    dl_args,
    get_one,
    pump,
    raw_get,
    wait_count,
    wait_until,
    warren_only,
)

KINDS = [
    pytest.param("quorum", id="quorum"),
    pytest.param("classic", id="classic", marks=warren_only),
]


def declare(channel, topo, kind: str, suffix: str = "q", **arguments) -> str:
    if kind == "quorum":
        arguments["x-queue-type"] = "quorum"
    return topo.queue(channel, suffix, arguments, durable=(kind == "quorum"))


def get_unacked(channel, queue: str):
    result: list = []

    def got() -> bool:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            result.append((method, properties, body))
        return bool(result)

    assert wait_until(channel.connection, got, 3.0), f"nothing in {queue}"
    return result[0]


@pytest.mark.parametrize("kind", KINDS)
def test_get_counts_and_dead_letters_past_the_limit(broker, channel, topo, kind):
    dlq = topo.queue(channel, "dlq")
    queue = declare(channel, topo, kind, **{"x-delivery-limit": 2}, **dl_args("", dlq))
    channel.basic_publish("", queue, b"body", pika.BasicProperties(
        expiration="60000", message_id="m", headers={"z": "last", "a": "first"}))
    for expected in (0, 1, 2):
        method, properties, body = get_unacked(channel, queue)
        assert body == b"body"
        assert method.redelivered is (expected > 0)
        assert properties.headers == {"a": "first", "x-delivery-count": expected, "z": "last"}
        assert list(properties.headers) == ["a", "x-delivery-count", "z"]
        assert type(properties.headers["x-delivery-count"]).__name__ == "long"
        assert properties.expiration == "60000"
        channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, dlq, 1)
    assert count(channel, queue) == 0
    message = raw_get(broker, dlq)
    assert message.body == b"body"
    assert not message.has("expiration")
    assert message.has("message_id")
    assert [name for name, _, _ in message.headers] == [
        "a", "x-death", "x-first-death-exchange", "x-first-death-queue",
        "x-first-death-reason", "z"]
    kind_, deaths = message.header("x-death")
    assert kind_ == "A" and len(deaths) == 1
    entry = deaths[0][1]
    assert [(name, letter) for name, letter, _ in entry] == [
        ("count", "l"), ("reason", "S"), ("queue", "S"), ("time", "T"), ("exchange", "S"),
        ("routing-keys", "A"), ("original-expiration", "S")]
    values = {name: value for name, _, value in entry}
    assert values["count"] == 1
    assert values["reason"] == "delivery_limit"
    assert values["queue"] == queue
    assert values["exchange"] == ""
    assert values["routing-keys"] == [("S", queue)]
    assert values["original-expiration"] == "60000"
    assert message.header("x-first-death-reason") == ("S", "delivery_limit")
    assert message.header("x-first-death-queue") == ("S", queue)


@pytest.mark.parametrize("kind", KINDS)
def test_consumer_sees_the_header_from_the_first_redelivery(channel, topo, kind):
    queue = declare(channel, topo, kind, **{"x-delivery-limit": 5})
    channel.basic_publish("", queue, b"x")
    channel.basic_publish("", queue, b"y", pika.BasicProperties(headers={"h": 1}))
    _tag, collector = consume(channel, queue)
    first, second = collector.wait(2)
    assert first.properties.headers is None
    assert second.properties.headers == {"h": 1}
    assert not first.method.redelivered
    channel.basic_nack(second.method.delivery_tag, multiple=True, requeue=True)
    collector.wait(4)
    redelivered = {d.body: d for d in collector.deliveries[2:]}
    assert redelivered[b"x"].properties.headers == {"x-delivery-count": 1}
    assert redelivered[b"y"].properties.headers == {"h": 1, "x-delivery-count": 1}
    assert all(d.method.redelivered for d in redelivered.values())


@pytest.mark.parametrize("kind", KINDS)
def test_reject_and_channel_close_count_as_returns(channel, topo, kind):
    dlq = topo.queue(channel, "dlq")
    queue = declare(channel, topo, kind, **{"x-delivery-limit": 1}, **dl_args("", dlq))
    channel.basic_publish("", queue, b"x")
    method, properties, _body = get_unacked(channel, queue)
    assert properties.headers == {"x-delivery-count": 0}
    channel.basic_reject(method.delivery_tag, requeue=True)
    other = channel.connection.channel()
    _method, properties, _body = get_unacked(other, queue)
    assert properties.headers == {"x-delivery-count": 1}
    other.close()  # second return: past the limit of 1
    _method, properties, _body = get_one(channel, dlq)
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
    assert "x-delivery-count" not in properties.headers
    assert count(channel, queue) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_without_dlx_the_message_is_dropped(channel, topo, kind):
    queue = declare(channel, topo, kind, **{"x-delivery-limit": 0})
    channel.basic_publish("", queue, b"x")
    method, properties, _body = get_unacked(channel, queue)
    assert properties.headers == {"x-delivery-count": 0}
    channel.basic_nack(method.delivery_tag, requeue=True)
    pump(channel.connection, 0.2)
    assert count(channel, queue) == 0
    assert channel.basic_get(queue)[0] is None


@pytest.mark.parametrize("kind", KINDS)
def test_acked_and_dead_lettered_by_reject_do_not_use_the_limit(channel, topo, kind):
    dlq = topo.queue(channel, "dlq")
    queue = declare(channel, topo, kind, **{"x-delivery-limit": 1}, **dl_args("", dlq))
    channel.basic_publish("", queue, b"x")
    method, _properties, _body = get_unacked(channel, queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    _method, properties, _body = get_one(channel, dlq)
    assert properties.headers["x-death"][0]["reason"] == "rejected"
    assert "x-delivery-count" not in properties.headers


@warren_only
def test_classic_queue_without_limit_has_no_header(channel, topo):
    """Warren adds x-delivery-count only to queues with x-delivery-limit (plain classic queues
    stay as RabbitMQ's)."""
    queue = topo.queue(channel, "q")
    channel.basic_publish("", queue, b"x")
    method, properties, _body = get_unacked(channel, queue)
    assert properties.headers is None
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, properties, _body = get_unacked(channel, queue)
    assert method.redelivered
    assert properties.headers is None
