"""Operations quorum queues refuse or treat their own way in RabbitMQ 3.10.8
(RABBITMQ_QUEUE_TYPES.md §2): a global prefetch and queue.delete with if-empty / if-unused are
540 connection closes; x-stream-offset is refused on a consumer of any queue but a stream
(so a classic queue never silently gives destructive reads to a stream consumer); message
priorities are ignored; purge and basic.recover work as on classic queues."""

from __future__ import annotations

import pika
import pytest
from client_helpers import channel_error, connection_error, consume, opened, settle
from queue_types_helpers import queue_text


def test_a_global_prefetch_is_refused_on_a_quorum_queue(broker, channel, queues):
    queue = queues.quorum(channel)
    with opened(broker) as connection:
        consuming = connection.channel()
        consuming.basic_qos(prefetch_count=1, global_qos=True)
        assert connection_error(lambda: consuming.basic_consume(queue, lambda *_: None)) == (
            540, f"NOT_IMPLEMENTED - {queue_text(queue)} does not support global qos")


def test_a_consumer_prefetch_set_after_the_global_one_is_accepted(broker, channel, queues):
    """basic.qos global=false lifts the channel's global prefetch (RabbitMQ's
    rabbit_limiter:unlimit_prefetch): the quorum queue then sees no global qos; a global
    prefetch set after the consumer one is refused as ever."""
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"m")
    with opened(broker) as connection:
        consuming = connection.channel()
        consuming.basic_qos(prefetch_count=1, global_qos=True)
        consuming.basic_qos(prefetch_count=5)
        _tag, collector = consume(consuming, queue)
        assert collector.wait(1)[0].body == b"m"
        consuming.basic_qos(prefetch_count=1, global_qos=True)
        assert connection_error(lambda: consuming.basic_consume(queue, lambda *_: None)) == (
            540, f"NOT_IMPLEMENTED - {queue_text(queue)} does not support global qos")


@pytest.mark.parametrize("flag", ["if_empty", "if_unused"])
def test_conditional_delete_is_refused_on_a_quorum_queue(broker, channel, queues, flag):
    queue = queues.quorum(channel)
    with opened(broker) as connection:
        deleting = connection.channel()
        assert connection_error(lambda: deleting.queue_delete(queue, **{flag: True})) == (
            540, f"NOT_IMPLEMENTED - cannot delete {queue_text(queue)}. queue.delete operations "
                 f"with {flag.replace('_', '-')} flag set are not supported by quorum queues")
    assert channel.queue_declare(queue, passive=True).method.queue == queue


@pytest.mark.parametrize("kind", ["classic", "quorum"])
def test_x_stream_offset_is_refused_on_other_queue_types(connection, channel, queues, kind):
    queue = queues.quorum(channel) if kind == "quorum" else queues.classic(channel)
    channel.basic_publish("", queue, b"kept")
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=10)
    assert channel_error(lambda: consuming.basic_consume(
        queue, lambda *_: None, arguments={"x-stream-offset": "first"})) == (
        406, f"PRECONDITION_FAILED - invalid arg 'x-stream-offset' for {queue_text(queue)} of "
             f"queue type rabbit_{kind}_queue")
    assert channel.queue_declare(queue, passive=True).method.message_count == 1


def test_message_priorities_are_ignored(channel, queues):
    queue = queues.quorum(channel)
    for priority in (1, 9, 5):
        channel.basic_publish("", queue, b"p%d" % priority,
                              pika.BasicProperties(priority=priority))
    assert [channel.basic_get(queue, auto_ack=True)[2] for _ in range(3)] == [b"p1", b"p9", b"p5"]


def test_purge_answers_the_count_it_removed(channel, queues):
    queue = queues.quorum(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    assert channel.queue_purge(queue).method.message_count == 3
    assert channel.basic_get(queue)[0] is None


def test_basic_recover_requeues_the_unacked(connection, channel, queues):
    queue = queues.quorum(channel)
    channel.basic_publish("", queue, b"m")
    consuming = connection.channel()
    _tag, collector = consume(consuming, queue)
    collector.wait(1)
    consuming.basic_recover(requeue=True)
    again = collector.wait(2)[1]
    assert again.body == b"m"
    assert again.method.redelivered
    assert again.properties.headers == {"x-delivery-count": 1}
    consuming.basic_ack(again.method.delivery_tag)
    settle(connection, 0.1)
