"""Priority queues (`x-max-priority`), as RabbitMQ 3.10 runs them.

Higher priority first, FIFO within a priority; no priority property counts as 0; a priority
above the maximum counts as the maximum (the delivered property is unchanged); requeued messages
go back to their place (their band, ahead of later messages); 0..255 accepted (0 = plain FIFO),
anything else refused with RabbitMQ's texts. See RABBITMQ_PRIORITY_POLICIES_DELAYED.md.
"""

from __future__ import annotations

import struct

import pika
import pika.exceptions
import pytest
from client_helpers import channel_error
from multi_consumer import Recorder, get_all, pump_until, raw_close, raw_queue_declare
from pamqp import commands
from raw_amqp import field as table_field
from raw_amqp import field_table, safe_name


@pytest.fixture
def channel(connection):
    """A plain channel (the lifecycle folder's default is in confirm mode)."""
    return connection.channel()


@pytest.fixture
def queue_name(channel, unique):
    yield unique
    if channel.is_open:
        channel.queue_delete(unique)


def declare(channel, name: str, max_priority) -> None:
    channel.queue_declare(name, arguments={"x-max-priority": max_priority})


def publish(channel, queue: str, messages: list[tuple[str, int | None]]) -> None:
    for body, priority in messages:
        properties = pika.BasicProperties(priority=priority) if priority is not None else None
        channel.basic_publish("", queue, body.encode(), properties)


def bodies_of(found) -> list[str]:
    return [body.decode() for _method, _properties, body in found]


MIXED = [("a", None), ("b", 1), ("c", 5), ("d", 10), ("e", 3), ("f", 5), ("g", None), ("h", 0),
         ("i", 255), ("j", 6)]


def test_higher_priority_first_fifo_within_a_priority(channel, queue_name):
    declare(channel, queue_name, 5)
    publish(channel, queue_name, MIXED)
    found = get_all(channel, queue_name)
    assert bodies_of(found) == list("cdfijebagh")
    # the delivered property is the one published, even above the maximum
    assert [properties.priority for _m, properties, _b in found] == [
        5, 10, 5, 255, 6, 3, 1, None, None, 0]
    assert [method.message_count for method, _p, _b in found] == list(range(9, -1, -1))


def test_priority_above_the_maximum_counts_as_the_maximum(channel, queue_name):
    declare(channel, queue_name, 2)
    publish(channel, queue_name, [("x", 9), ("y", 2), ("z", 200), ("w", 1), ("v", 3)])
    assert bodies_of(get_all(channel, queue_name)) == ["x", "y", "z", "v", "w"]


def test_no_priority_property_counts_as_zero(channel, queue_name):
    declare(channel, queue_name, 3)
    publish(channel, queue_name, [("none1", None), ("zero", 0), ("one", 1), ("none2", None)])
    assert bodies_of(get_all(channel, queue_name)) == ["one", "none1", "zero", "none2"]


def test_max_priority_one(channel, queue_name):
    declare(channel, queue_name, 1)
    publish(channel, queue_name, [("a", None), ("b", 1), ("c", 5), ("d", 0), ("e", 2)])
    assert bodies_of(get_all(channel, queue_name)) == ["b", "c", "e", "a", "d"]


def test_max_priority_zero_is_accepted_and_fifo(channel, queue_name):
    declare(channel, queue_name, 0)
    publish(channel, queue_name, [("a", None), ("b", 1), ("c", 5), ("d", 0)])
    assert bodies_of(get_all(channel, queue_name)) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("maximum", [1, 10, 255])
def test_max_priority_bounds_accepted(channel, queue_name, maximum):
    declare(channel, queue_name, maximum)
    publish(channel, queue_name, [("low", 0), ("top", maximum), ("mid", maximum // 2 or None)])
    assert bodies_of(get_all(channel, queue_name))[0] == "top"


def test_queue_without_max_priority_ignores_priorities(channel, queue_name):
    channel.queue_declare(queue_name)
    publish(channel, queue_name, [("a", None), ("b", 9), ("c", 1)])
    assert bodies_of(get_all(channel, queue_name)) == ["a", "b", "c"]


def test_nack_requeue_puts_messages_back_in_their_place(channel, queue_name):
    declare(channel, queue_name, 10)
    publish(channel, queue_name, [("a", 5), ("b", 2)])
    first, _, _ = channel.basic_get(queue_name)
    second, _, _ = channel.basic_get(queue_name)
    publish(channel, queue_name, [("c", 5), ("d", 2), ("e", 9)])
    channel.basic_nack(second.delivery_tag, requeue=True)
    channel.basic_nack(first.delivery_tag, requeue=True)
    found = get_all(channel, queue_name)
    assert [(body.decode(), method.redelivered) for method, _p, body in found] == [
        ("e", False), ("a", True), ("c", False), ("b", True), ("d", False)]


def test_recover_requeues_in_priority_order(channel, queue_name):
    declare(channel, queue_name, 5)
    messages = [("a", None), ("b", 1), ("c", 5), ("d", 10), ("e", 3), ("f", 5), ("g", None)]
    publish(channel, queue_name, messages)
    taken = get_all(channel, queue_name, auto_ack=False)
    assert bodies_of(taken) == list("cdfebag")
    # give two back first, then everything
    channel.basic_reject(taken[4][0].delivery_tag, requeue=True)  # b
    channel.basic_reject(taken[0][0].delivery_tag, requeue=True)  # c
    again = get_all(channel, queue_name, auto_ack=False)
    assert [(body.decode(), m.redelivered) for m, _p, body in again] == [("c", True), ("b", True)]
    channel.basic_recover(requeue=True)
    found = get_all(channel, queue_name)
    assert bodies_of(found) == list("cdfebag")
    assert all(method.redelivered for method, _p, _b in found)


def test_channel_close_requeues_in_priority_order(connection, queue_name):
    setup = connection.channel()
    declare(setup, queue_name, 4)
    publish(setup, queue_name, [("l1", 1), ("h1", 4), ("l2", 1), ("h2", 4), ("n", None)])
    taker = connection.channel()
    assert bodies_of(get_all(taker, queue_name, auto_ack=False)) == ["h1", "h2", "l1", "l2", "n"]
    publish(setup, queue_name, [("late-high", 4), ("late-low", 1)])
    taker.close()
    found = get_all(setup, queue_name)
    assert [(body.decode(), m.redelivered) for m, _p, body in found] == [
        ("h1", True), ("h2", True), ("late-high", False), ("l1", True), ("l2", True),
        ("late-low", False), ("n", True)]


def test_consumer_gets_its_backlog_in_priority_order(connection, channel, queue_name):
    declare(channel, queue_name, 10)
    publish(channel, queue_name, [("first", 1)])
    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    recorder = Recorder()
    consumer_channel.basic_consume(queue_name, recorder.callback("c"))
    assert pump_until([connection], lambda: len(recorder.deliveries) == 1)
    # while the consumer is busy with "first", a backlog builds up
    publish(channel, queue_name, [("l1", 1), ("h1", 8), ("l2", 1), ("m1", 4), ("h2", 8)])
    channel.queue_declare(queue_name, passive=True)  # a round trip: the publishes are queued
    while len(recorder.deliveries) < 6:
        consumer_channel.basic_ack(recorder.deliveries[-1].delivery_tag)
        count = len(recorder.deliveries)
        assert pump_until([connection], lambda count=count: len(recorder.deliveries) > count)
    assert [d.body.decode() for d in recorder.deliveries] == [
        "first", "h1", "h2", "m1", "l1", "l2"]


def test_auto_ack_consumer_on_priority_queue_gets_everything(connection, channel, queue_name):
    declare(channel, queue_name, 3)
    publish(channel, queue_name, [("a", 1), ("b", 3), ("c", None)])
    recorder = Recorder()
    channel.basic_consume(queue_name, recorder.callback("c"), auto_ack=True)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 3)
    assert [d.body for d in recorder.deliveries] == [b"b", b"a", b"c"]


# -- bad values -------------------------------------------------------------------------------


def invalid(queue: str, term: str) -> str:
    return (f"PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '{queue}' "
            f"in vhost '/': {term}")


@pytest.mark.parametrize(
    ("value", "term"),
    [
        (256, "{max_value_exceeded,256}"),
        (2**40, "{max_value_exceeded,1099511627776}"),
        (-1, "{value_negative,-1}"),
        ("5", '"expected integer, got longstr"'),
        (True, '"expected integer, got bool"'),
    ],
    ids=["256", "2^40", "-1", "string", "bool"],
)
def test_invalid_max_priority(connection, unique, value, term):
    channel = connection.channel()
    code, text = channel_error(
        lambda: channel.queue_declare(unique, arguments={"x-max-priority": value})
    )
    assert (code, text) == (406, invalid(unique, term))


@pytest.mark.parametrize(
    ("kind", "value", "term"),
    [
        ("f", struct.pack(">f", 5.0), '"expected integer, got float"'),
        ("d", struct.pack(">d", 5.0), '"expected integer, got double"'),
        ("V", b"", '"expected integer, got void"'),
        ("l", struct.pack(">q", 256), "{max_value_exceeded,256}"),
        ("b", struct.pack(">b", -2), "{value_negative,-2}"),
    ],
    ids=["float", "double", "void", "long-256", "byte-negative"],
)
def test_invalid_max_priority_field_types(broker, unique, kind, value, term):
    name = safe_name(unique)
    answer = raw_queue_declare(broker, name, field_table(table_field("x-max-priority", kind,
                                                                       value)))
    assert raw_close(answer) == (406, invalid(name, term), 50, 10)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("b", struct.pack(">b", 5)), ("B", struct.pack(">B", 5)), ("s", struct.pack(">h", 5)),
     ("u", struct.pack(">H", 5)), ("I", struct.pack(">i", 5)), ("i", struct.pack(">I", 5)),
     ("l", struct.pack(">q", 5))],
    ids=["byte", "unsigned-byte", "short", "unsigned-short", "int", "unsigned-int", "long"],
)
def test_every_integer_field_type_is_accepted(broker, unique, kind, value):
    arguments = field_table(table_field("x-max-priority", kind, value))
    answer = raw_queue_declare(broker, safe_name(unique), arguments)
    assert isinstance(answer, commands.Queue.DeclareOk), answer


def test_redeclare_must_match_max_priority(connection, channel, queue_name):
    declare(channel, queue_name, 5)
    other = connection.channel()
    assert channel_error(lambda: other.queue_declare(queue_name)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '{queue_name}' in "
        "vhost '/': received none but current is the value '5' of type 'signedint'",
    )
    other = connection.channel()
    assert channel_error(lambda: declare(other, queue_name, 6)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue '{queue_name}' in "
        "vhost '/': received '6' but current is '5'",
    )
    other = connection.channel()
    declare(other, queue_name, 5)


# -- with a length limit ----------------------------------------------------------------------


def test_max_length_drops_the_head_which_is_the_highest_priority(channel, queue_name):
    """drop-head drops the message that would be delivered next: in a priority queue that is
    the oldest of the highest priority, not the oldest message."""
    channel.queue_declare(queue_name, arguments={"x-max-priority": 5, "x-max-length": 3})
    channel.confirm_delivery()
    publish(channel, queue_name, [("a", 1), ("b", 5), ("c", 1), ("d", 5), ("e", 3)])
    assert bodies_of(get_all(channel, queue_name)) == ["e", "a", "c"]


def test_max_length_drop_head_with_one_band(channel, queue_name):
    channel.queue_declare(queue_name, arguments={"x-max-priority": 5, "x-max-length": 3})
    channel.confirm_delivery()
    publish(channel, queue_name, [("a", 5), ("b", 5), ("c", 5), ("d", 1)])
    assert bodies_of(get_all(channel, queue_name)) == ["b", "c", "d"]


def test_max_length_reject_publish_keeps_what_is_there(channel, queue_name):
    channel.queue_declare(queue_name, arguments={"x-max-priority": 5, "x-max-length": 3,
                                                 "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    outcomes = []
    for body, priority in [("a", 1), ("b", 5), ("c", 1), ("d", 5), ("e", 3)]:
        try:
            channel.basic_publish("", queue_name, body.encode(),
                                  pika.BasicProperties(priority=priority))
            outcomes.append("ack")
        except pika.exceptions.NackError:
            outcomes.append("nack")
    assert outcomes == ["ack", "ack", "ack", "nack", "nack"]
    assert bodies_of(get_all(channel, queue_name)) == ["b", "a", "c"]
