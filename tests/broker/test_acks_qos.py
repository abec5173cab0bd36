"""Acknowledgements and flow: ack/nack/reject (multiple, requeue), redelivery order, unknown
delivery tags, basic.recover, requeue on channel/connection close, basic.qos prefetch (per
consumer and per channel, RabbitMQ 3.10 semantics) and round-robin between consumers."""

from __future__ import annotations

import pika
import pytest
from client_helpers import (
    channel_error_after,
    connection_error,
    consume,
    get_bodies,
    opened,
    settle,
    wait_for,
)


@pytest.fixture
def queue(broker, channel, unique):
    """A queue that outlives the test's channels (not exclusive: other connections use it)."""
    channel.queue_declare(unique)
    yield unique
    with opened(broker) as cleanup:
        cleanup.channel().queue_delete(unique)


def publish(channel, queue: str, count: int, start: int = 0) -> list[bytes]:
    """Publish str(i) for i in [start, start+count) with confirms; return the bodies."""
    bodies = [str(i).encode() for i in range(start, start + count)]
    confirming = channel.connection.channel()
    confirming.confirm_delivery()
    for body in bodies:
        confirming.basic_publish("", queue, body)
    confirming.close()
    return bodies


def get(channel, queue: str):
    """basic.get without auto-ack; returns (delivery_tag, body, redelivered)."""
    method, _, body = channel.basic_get(queue)
    assert method is not None, "queue unexpectedly empty"
    return method.delivery_tag, body, method.redelivered


def drain_with_flags(channel, queue: str) -> list[tuple[bytes, bool]]:
    result = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return result
        result.append((body, method.redelivered))


def unknown_tag(tag: int) -> tuple[int, str]:
    return 406, f"PRECONDITION_FAILED - unknown delivery tag {tag}"


# --------------------------------------------------------------------------------------------
# ack / nack / reject
# --------------------------------------------------------------------------------------------


def test_ack_removes_the_message(connection, channel, queue):
    publish(channel, queue, 2)
    tag, body, _ = get(channel, queue)
    channel.basic_ack(tag)
    channel.close()  # nothing unacked is left to requeue
    other = connection.channel()
    assert get_bodies(other, queue) == [b"1"]


def test_ack_multiple_acks_everything_up_to_the_tag(connection, channel, queue):
    publish(channel, queue, 4)
    tags = [get(channel, queue)[0] for _ in range(4)]
    channel.basic_ack(tags[2], multiple=True)
    channel.close()
    assert drain_with_flags(connection.channel(), queue) == [(b"3", True)]


def test_ack_zero_with_multiple_acks_all_outstanding(connection, channel, queue):
    publish(channel, queue, 3)
    for _ in range(3):
        get(channel, queue)
    channel.basic_ack(0, multiple=True)
    channel.close()
    assert get_bodies(connection.channel(), queue) == []


def test_reject_requeue_redelivers_with_redelivered_flag(channel, queue):
    publish(channel, queue, 1)
    tag, _, redelivered = get(channel, queue)
    assert redelivered is False
    channel.basic_reject(tag, requeue=True)
    tag, body, redelivered = get(channel, queue)
    assert (body, redelivered) == (b"0", True)
    channel.basic_ack(tag)


def test_reject_without_requeue_drops(channel, queue):
    publish(channel, queue, 2)
    tag, _, _ = get(channel, queue)
    channel.basic_reject(tag, requeue=False)
    assert drain_with_flags(channel, queue) == [(b"1", False)]


def test_nack_without_requeue_drops(channel, queue):
    publish(channel, queue, 2)
    tag, _, _ = get(channel, queue)
    channel.basic_nack(tag, requeue=False)
    assert drain_with_flags(channel, queue) == [(b"1", False)]


def test_nack_multiple_requeue(channel, queue):
    publish(channel, queue, 4)
    tags = [get(channel, queue)[0] for _ in range(3)]
    channel.basic_nack(tags[1], multiple=True, requeue=True)
    assert drain_with_flags(channel, queue) == [(b"0", True), (b"1", True), (b"3", False)]
    channel.basic_ack(tags[2])


def test_requeued_messages_return_to_their_original_position(channel, queue):
    """Requeued in the order 3, 1: they come back as 1, 3, each where it was in the queue."""
    publish(channel, queue, 5)
    tags = [get(channel, queue)[0] for _ in range(4)]
    channel.basic_reject(tags[3], requeue=True)
    channel.basic_reject(tags[1], requeue=True)
    assert drain_with_flags(channel, queue) == [(b"1", True), (b"3", True), (b"4", False)]
    channel.basic_ack(tags[2], multiple=True)


def test_requeued_message_goes_ahead_of_never_delivered_ones(channel, queue):
    publish(channel, queue, 3)
    first, _, _ = get(channel, queue)
    second, _, _ = get(channel, queue)
    channel.basic_reject(second, requeue=True)
    channel.basic_reject(first, requeue=True)
    assert drain_with_flags(channel, queue) == [(b"0", True), (b"1", True), (b"2", False)]


def test_requeue_to_a_consumer_is_redelivered(connection, channel, queue):
    publish(channel, queue, 1)
    _, collector = consume(channel, queue)
    (first,) = collector.wait(1)
    channel.basic_nack(first.method.delivery_tag, requeue=True)
    second = collector.wait(2)[1]
    assert (second.body, second.method.redelivered) == (b"0", True)
    assert second.method.delivery_tag == first.method.delivery_tag + 1
    channel.basic_ack(second.method.delivery_tag)


@pytest.mark.parametrize(
    "settle_tag",
    [
        pytest.param(lambda ch, tag: ch.basic_ack(tag), id="ack"),
        pytest.param(lambda ch, tag: ch.basic_ack(tag, multiple=True), id="ack-multiple"),
        pytest.param(lambda ch, tag: ch.basic_nack(tag), id="nack"),
        pytest.param(lambda ch, tag: ch.basic_reject(tag), id="reject"),
    ],
)
def test_unknown_delivery_tag_closes_the_channel(channel, settle_tag):
    assert channel_error_after(channel, lambda: settle_tag(channel, 42)) == unknown_tag(42)


def test_ack_zero_without_multiple_is_an_unknown_tag(channel):
    assert channel_error_after(channel, lambda: channel.basic_ack(0)) == unknown_tag(0)


def test_double_ack_closes_the_channel(channel, queue):
    publish(channel, queue, 1)
    tag, _, _ = get(channel, queue)
    channel.basic_ack(tag)
    assert channel_error_after(channel, lambda: channel.basic_ack(tag)) == unknown_tag(tag)


def test_ack_after_no_ack_delivery_is_an_unknown_tag(channel, queue):
    publish(channel, queue, 1)
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    tag = method.delivery_tag
    assert channel_error_after(channel, lambda: channel.basic_ack(tag)) == unknown_tag(tag)


def test_ack_on_another_channel_is_an_unknown_tag(connection, channel, queue):
    publish(channel, queue, 1)
    tag, _, _ = get(channel, queue)
    other = connection.channel()
    assert channel_error_after(other, lambda: other.basic_ack(tag)) == unknown_tag(tag)
    channel.basic_ack(tag)


def test_unknown_tag_closes_channel_and_requeues_its_unacked(connection, channel, queue):
    publish(channel, queue, 2)
    get(channel, queue)
    assert channel_error_after(channel, lambda: channel.basic_ack(99)) == unknown_tag(99)
    other = connection.channel()
    assert drain_with_flags(other, queue) == [(b"0", True), (b"1", False)]


# --------------------------------------------------------------------------------------------
# recover and requeue on close
# --------------------------------------------------------------------------------------------


def test_basic_recover_requeue_redelivers_unacked(connection, channel, queue):
    publish(channel, queue, 3)
    _, collector = consume(channel, queue)
    collector.wait(3)
    channel.basic_ack(collector.deliveries[0].method.delivery_tag)
    channel.basic_recover(requeue=True)
    redelivered = collector.wait(5)[3:]
    assert [(d.body, d.method.redelivered) for d in redelivered] == [(b"1", True), (b"2", True)]
    # The old tags are gone: redeliveries carry new ones.
    assert [d.method.delivery_tag for d in redelivered] == [4, 5]
    channel.basic_ack(5, multiple=True)


def test_basic_recover_without_requeue_is_not_implemented(connection, channel):
    assert connection_error(lambda: channel.basic_recover(requeue=False)) == (
        540,
        "NOT_IMPLEMENTED - requeue=false",
    )


def test_unacked_messages_are_requeued_when_the_channel_closes(connection, channel, queue):
    publish(channel, queue, 4)
    consumer_channel = connection.channel()
    tags = [get(consumer_channel, queue)[0] for _ in range(3)]
    consumer_channel.basic_ack(tags[1])
    consumer_channel.close()
    assert drain_with_flags(channel, queue) == [(b"0", True), (b"2", True), (b"3", False)]


def test_unacked_messages_are_requeued_when_the_connection_closes(broker, channel, queue):
    publish(channel, queue, 3)
    with opened(broker) as consumer_connection:
        consumer_channel = consumer_connection.channel()
        _, collector = consume(consumer_channel, queue)
        collector.wait(3)
    # A message published after the close goes behind the requeued ones.
    publish(channel, queue, 1, start=3)
    assert drain_with_flags(channel, queue) == [
        (b"0", True),
        (b"1", True),
        (b"2", True),
        (b"3", False),
    ]


def test_requeued_on_close_go_to_another_consumer(broker, connection, channel, queue):
    publish(channel, queue, 2)
    with opened(broker) as first:
        first_channel = first.channel()
        first_channel.basic_qos(prefetch_count=10)
        _, collector = consume(first_channel, queue)
        collector.wait(2)
        _, second = consume(channel, queue)
    deliveries = second.wait(2)
    assert [(d.body, d.method.redelivered) for d in deliveries] == [(b"0", True), (b"1", True)]


# --------------------------------------------------------------------------------------------
# basic.qos
# --------------------------------------------------------------------------------------------


def test_prefetch_count_limits_unacked_per_consumer(connection, channel, queue):
    publish(channel, queue, 5)
    channel.basic_qos(prefetch_count=2)
    _, collector = consume(channel, queue)
    collector.wait(2)
    settle(connection)
    assert collector.bodies == [b"0", b"1"]
    channel.basic_ack(collector.deliveries[0].method.delivery_tag)
    collector.wait(3)
    settle(connection)
    assert collector.bodies == [b"0", b"1", b"2"]
    channel.basic_ack(collector.deliveries[2].method.delivery_tag, multiple=True)
    assert [d.body for d in collector.wait(5)] == [b"0", b"1", b"2", b"3", b"4"]


def test_per_consumer_prefetch_applies_to_each_consumer_of_the_channel(connection, channel, unique):
    first, second = f"{unique}-1", f"{unique}-2"
    for name in (first, second):
        channel.queue_declare(name, exclusive=True)
        publish(channel, name, 5)
    channel.basic_qos(prefetch_count=2, global_qos=False)
    _, one = consume(channel, first)
    _, two = consume(channel, second)
    one.wait(2)
    two.wait(2)
    settle(connection)
    assert (len(one.deliveries), len(two.deliveries)) == (2, 2)


def test_global_prefetch_is_shared_by_the_channels_consumers(connection, channel, unique):
    first, second = f"{unique}-1", f"{unique}-2"
    for name in (first, second):
        channel.queue_declare(name, exclusive=True)
        publish(channel, name, 5)
    channel.basic_qos(prefetch_count=3, global_qos=True)
    _, one = consume(channel, first)
    _, two = consume(channel, second)
    wait_for(connection, lambda: len(one.deliveries) + len(two.deliveries) >= 3)
    settle(connection)
    assert len(one.deliveries) + len(two.deliveries) == 3
    # Acking one frees one slot, for any consumer of the channel.
    delivered = one.deliveries + two.deliveries
    channel.basic_ack(delivered[0].method.delivery_tag)
    wait_for(connection, lambda: len(one.deliveries) + len(two.deliveries) >= 4)
    settle(connection)
    assert len(one.deliveries) + len(two.deliveries) == 4


def test_global_and_per_consumer_limits_combine(connection, channel, queue):
    publish(channel, queue, 10)
    channel.basic_qos(prefetch_count=5, global_qos=False)
    channel.basic_qos(prefetch_count=2, global_qos=True)
    _, one = consume(channel, queue)
    _, two = consume(channel, queue)
    wait_for(connection, lambda: len(one.deliveries) + len(two.deliveries) >= 2)
    settle(connection)
    assert len(one.deliveries) + len(two.deliveries) == 2


def test_a_consumer_prefetch_lifts_the_global_one(connection, channel, queue):
    """RabbitMQ: basic.qos global=false after global=true removes the channel-wide limit
    (rabbit_limiter:unlimit_prefetch); the per-consumer one (0: none) is what is left."""
    publish(channel, queue, 5)
    channel.basic_qos(prefetch_count=1, global_qos=True)
    channel.basic_qos(prefetch_count=0)
    _, collector = consume(channel, queue)
    collector.wait(5)
    settle(connection)
    assert len(collector.deliveries) == 5


def test_prefetch_is_fixed_when_the_consumer_starts(connection, channel, queue):
    """basic.qos (global=False) only affects consumers started after it."""
    publish(channel, queue, 10)
    channel.basic_qos(prefetch_count=2)
    _, collector = consume(channel, queue)
    collector.wait(2)
    channel.basic_qos(prefetch_count=4)
    settle(connection)
    assert len(collector.deliveries) == 2


def test_consumer_started_before_qos_is_unlimited(connection, channel, queue):
    publish(channel, queue, 10)
    _, early = consume(channel, queue)
    early.wait(10)
    channel.basic_qos(prefetch_count=2)
    assert len(early.deliveries) == 10


def test_no_ack_consumers_ignore_prefetch(connection, channel, queue):
    publish(channel, queue, 6)
    channel.basic_qos(prefetch_count=1)
    _, collector = consume(channel, queue, auto_ack=True)
    assert len(collector.wait(6)) == 6


def test_basic_get_ignores_and_does_not_use_prefetch(connection, channel, queue):
    publish(channel, queue, 6)
    channel.basic_qos(prefetch_count=2)
    for _ in range(3):
        get(channel, queue)  # three unacked gets despite prefetch 2
    _, collector = consume(channel, queue)
    collector.wait(2)
    settle(connection)
    assert collector.bodies == [b"3", b"4"]


def test_prefetch_zero_means_unlimited(connection, channel, queue):
    publish(channel, queue, 20)
    channel.basic_qos(prefetch_count=0)
    _, collector = consume(channel, queue)
    assert len(collector.wait(20)) == 20


def test_prefetch_size_is_not_implemented(connection, channel):
    assert connection_error(lambda: channel.basic_qos(prefetch_size=10)) == (
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
    )


def test_round_robin_between_consumers_of_one_channel(connection, channel, queue):
    received = []
    for name in ("a", "b", "c"):
        channel.basic_consume(
            queue,
            lambda _ch, method, _props, body, name=name: received.append((name, body)),
            auto_ack=True,
        )
    publish(channel, queue, 9)
    assert wait_for(connection, lambda: len(received) == 9)
    assert received == [(("a", "b", "c")[i % 3], str(i).encode()) for i in range(9)]


def test_round_robin_between_consumers_on_different_channels(connection, channel, queue):
    received = []
    for name in ("a", "b", "c"):
        connection.channel().basic_consume(
            queue,
            lambda _ch, method, _props, body, name=name: received.append((name, body)),
            auto_ack=True,
        )
    publish(channel, queue, 9)
    assert wait_for(connection, lambda: len(received) == 9)
    by_consumer = {name: [body for who, body in received if who == name] for name in "abc"}
    assert by_consumer == {
        "a": [b"0", b"3", b"6"],
        "b": [b"1", b"4", b"7"],
        "c": [b"2", b"5", b"8"],
    }


def test_round_robin_skips_consumers_at_their_prefetch_limit(connection, channel, queue):
    busy_channel, free_channel = connection.channel(), connection.channel()
    busy_channel.basic_qos(prefetch_count=1)
    _, busy = consume(busy_channel, queue)
    _, free = consume(free_channel, queue)
    publish(channel, queue, 5)
    wait_for(connection, lambda: len(busy.deliveries) + len(free.deliveries) == 5)
    assert busy.bodies == [b"0"]
    assert free.bodies == [b"1", b"2", b"3", b"4"]


def test_consumer_priority_argument_is_accepted(connection, channel, queue):
    received = []
    low = connection.channel()
    high = connection.channel()
    low.basic_consume(queue, lambda *a: received.append("low"), auto_ack=True)
    high.basic_consume(
        queue, lambda *a: received.append("high"), auto_ack=True, arguments={"x-priority": 10}
    )
    publish(channel, queue, 3)
    assert wait_for(connection, lambda: len(received) == 3)
    assert received == ["high", "high", "high"]


def test_pika_properties_are_kept_on_redelivery(channel, queue):
    properties = pika.BasicProperties(message_id="keep-me", headers={"k": "v"})
    channel.basic_publish("", queue, b"m", properties)
    tag, _, _ = get(channel, queue)
    channel.basic_reject(tag, requeue=True)
    method, received, body = channel.basic_get(queue, auto_ack=True)
    assert (received.message_id, received.headers, body, method.redelivered) == (
        "keep-me",
        {"k": "v"},
        b"m",
        True,
    )


def test_raising_global_prefetch_applies_to_running_consumers(connection, channel, queue):
    """Unlike the per-consumer limit, the channel-wide limit can change under consumers."""
    publish(channel, queue, 10)
    channel.basic_qos(prefetch_count=2, global_qos=True)
    _, collector = consume(channel, queue)
    collector.wait(2)
    channel.basic_qos(prefetch_count=5, global_qos=True)
    collector.wait(5)
    settle(connection)
    assert len(collector.deliveries) == 5


def test_cancel_leaves_unacked_deliveries_ackable(connection, channel, queue):
    publish(channel, queue, 3)
    tag, collector = consume(channel, queue)
    collector.wait(3)
    channel.basic_cancel(tag)
    # Not requeued by the cancel ...
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    # ... and still ours to settle.
    channel.basic_ack(collector.deliveries[0].method.delivery_tag)
    channel.basic_reject(collector.deliveries[1].method.delivery_tag, requeue=True)
    channel.basic_ack(0, multiple=True)
    assert drain_with_flags(channel, queue) == [(b"1", True)]


def test_ack_multiple_covers_gets_and_every_consumer_of_the_channel(connection, channel, unique):
    first, second = f"{unique}-1", f"{unique}-2"
    for name in (first, second):
        channel.queue_declare(name, exclusive=True)
        publish(channel, name, 2)
    get(channel, first)
    _, one = consume(channel, first)
    _, two = consume(channel, second)
    one.wait(1)
    two.wait(2)
    channel.basic_ack(4, multiple=True)
    channel.close()
    other = connection.channel()
    assert get_bodies(other, first) == [] and get_bodies(other, second) == []


def test_ack_after_the_queue_was_deleted_is_accepted(connection, channel, unique):
    channel.queue_declare(unique, exclusive=True)
    publish(channel, unique, 1)
    tag, _, _ = get(channel, unique)
    connection.channel().queue_delete(unique)
    channel.basic_ack(tag)
    channel.basic_qos(prefetch_count=0)  # a round trip: the channel is still open
    assert channel.is_open


def test_round_robin_after_a_cancel_and_a_new_consumer(connection, channel, queue):
    """The consumer just served goes to the back of the line; a new consumer joins at the end."""
    received = []
    tags = {}
    for name in ("a", "b", "c"):
        tags[name] = channel.basic_consume(
            queue, lambda *_, name=name: received.append(name), auto_ack=True
        )
    publish(channel, queue, 4)
    assert wait_for(connection, lambda: len(received) == 4)
    channel.basic_cancel(tags["b"])
    publish(channel, queue, 4)
    assert wait_for(connection, lambda: len(received) == 8)
    channel.basic_consume(queue, lambda *_: received.append("d"), auto_ack=True)
    publish(channel, queue, 6)
    assert wait_for(connection, lambda: len(received) == 14)
    assert "".join(received) == "abca" + "caca" + "cadcad"


def test_nack_zero_with_multiple_requeues_all_outstanding(channel, queue):
    publish(channel, queue, 3)
    for _ in range(3):
        get(channel, queue)
    channel.basic_nack(0, multiple=True, requeue=True)
    assert drain_with_flags(channel, queue) == [(b"0", True), (b"1", True), (b"2", True)]


@pytest.mark.parametrize(
    "settle_tag",
    [
        pytest.param(lambda ch: ch.basic_reject(0), id="reject"),
        pytest.param(lambda ch: ch.basic_nack(0, multiple=False), id="nack"),
    ],
)
def test_tag_zero_without_multiple_is_unknown(channel, settle_tag):
    assert channel_error_after(channel, lambda: settle_tag(channel)) == unknown_tag(0)


def test_ack_multiple_beyond_the_last_delivery_is_unknown(channel, queue):
    publish(channel, queue, 1)
    get(channel, queue)
    assert channel_error_after(channel, lambda: channel.basic_ack(5, multiple=True)) == (
        unknown_tag(5)
    )
