"""Consumer priorities (the `x-priority` argument of basic.consume), as in RabbitMQ 3.10.

Consumers of the highest priority get the messages while they have prefetch room; lower ones
only while every higher one is blocked; round-robin among consumers of one priority; no
x-priority is 0 and negative priorities rank below it. Any integer type is accepted; other types
close the channel with RabbitMQ's 406 text. See RABBITMQ_PRIORITY_POLICIES_DELAYED.md.
"""

from __future__ import annotations

import struct

import pytest
from client_helpers import channel_error
from multi_consumer import Recorder, pump, pump_until, raw_basic_consume, raw_close
from pamqp import commands
from raw_amqp import field as table_field
from raw_amqp import field_table, safe_name


@pytest.fixture
def channel(connection):
    """A plain channel (the lifecycle folder's default is in confirm mode)."""
    return connection.channel()


@pytest.fixture
def queue_name(channel, unique):
    channel.queue_declare(unique)
    yield unique
    if channel.is_open:
        channel.queue_delete(unique)


def consumer(connection, queue, recorder, name, priority=None, prefetch=None, auto_ack=False):
    """A consumer on a channel of its own; returns (channel, consumer tag)."""
    channel = connection.channel()
    if prefetch is not None:
        channel.basic_qos(prefetch_count=prefetch)
    arguments = {"x-priority": priority} if priority is not None else None
    tag = channel.basic_consume(queue, recorder.callback(name), auto_ack=auto_ack,
                                arguments=arguments)
    return channel, tag


def publish(channel, queue: str, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        channel.basic_publish("", queue, str(number).encode())


def test_high_priority_gets_everything_while_it_has_room(connection, channel, queue_name):
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "low", auto_ack=True)
    consumer(connection, queue_name, recorder, "high", priority=10, auto_ack=True)
    publish(channel, queue_name, 5)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 5)
    pump([connection], 0.1)
    assert recorder.names() == ["high"] * 5


def test_lower_priority_gets_messages_only_while_higher_is_blocked(
    connection, channel, queue_name
):
    recorder = Recorder()
    high_channel, _ = consumer(connection, queue_name, recorder, "high", priority=10, prefetch=2)
    consumer(connection, queue_name, recorder, "low", priority=-5, auto_ack=True)
    publish(channel, queue_name, 6)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 6)
    assert recorder.of("high") == [b"0", b"1"]
    assert recorder.of("low") == [b"2", b"3", b"4", b"5"]
    recorder.clear()
    high_channel.basic_ack(2, multiple=True)
    channel.queue_declare(queue_name, passive=True)  # the acks are in before the publishes
    publish(channel, queue_name, 4, start=6)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert recorder.of("high") == [b"6", b"7"]
    assert recorder.of("low") == [b"8", b"9"]


def test_round_robin_within_a_priority(connection, channel, queue_name):
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "m1", priority=3, auto_ack=True)
    consumer(connection, queue_name, recorder, "default", auto_ack=True)
    consumer(connection, queue_name, recorder, "m2", priority=3, auto_ack=True)
    publish(channel, queue_name, 6)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 6)
    assert recorder.of("m1") == [b"0", b"2", b"4"]
    assert recorder.of("m2") == [b"1", b"3", b"5"]
    assert recorder.of("default") == []


def test_round_robin_of_the_lower_priority_while_higher_is_blocked(
    connection, channel, queue_name
):
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "high", priority=5, prefetch=1)
    consumer(connection, queue_name, recorder, "low1", auto_ack=True)
    consumer(connection, queue_name, recorder, "low2", auto_ack=True)
    publish(channel, queue_name, 5)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 5)
    assert recorder.of("high") == [b"0"]
    assert recorder.of("low1") == [b"1", b"3"]
    assert recorder.of("low2") == [b"2", b"4"]


def test_negative_priority_ranks_below_the_default(connection, channel, queue_name):
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "negative", priority=-1, auto_ack=True)
    consumer(connection, queue_name, recorder, "default", auto_ack=True)
    publish(channel, queue_name, 3)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 3)
    assert recorder.names() == ["default"] * 3


def test_when_both_are_blocked_whoever_acks_gets_the_next(connection, channel, queue_name):
    recorder = Recorder()
    high_channel, _ = consumer(connection, queue_name, recorder, "high", priority=10, prefetch=1)
    low_channel, _ = consumer(connection, queue_name, recorder, "low", prefetch=1)
    publish(channel, queue_name, 4)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 2)
    pump([connection], 0.1)
    assert sorted(recorder.pairs()) == [("high", b"0"), ("low", b"1")]
    low_channel.basic_ack(recorder.deliveries[[d.name for d in recorder.deliveries]
                                              .index("low")].delivery_tag)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 3)
    assert recorder.pairs()[-1] == ("low", b"2")
    high_channel.basic_ack(1)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert recorder.pairs()[-1] == ("high", b"3")


def test_a_new_higher_priority_consumer_takes_the_following_messages(
    connection, channel, queue_name
):
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "low", auto_ack=True)
    publish(channel, queue_name, 2)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 2)
    consumer(connection, queue_name, recorder, "high", priority=1, auto_ack=True)
    publish(channel, queue_name, 2, start=2)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert recorder.pairs() == [("low", b"0"), ("low", b"1"), ("high", b"2"), ("high", b"3")]


def test_cancelling_the_high_priority_consumer_lets_the_low_one_in(
    connection, channel, queue_name
):
    recorder = Recorder()
    high_channel, high_tag = consumer(connection, queue_name, recorder, "high", priority=7,
                                      auto_ack=True)
    consumer(connection, queue_name, recorder, "low", auto_ack=True)
    publish(channel, queue_name, 1)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 1)
    high_channel.basic_cancel(high_tag)
    publish(channel, queue_name, 2, start=1)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 3)
    assert recorder.pairs() == [("high", b"0"), ("low", b"1"), ("low", b"2")]


def test_backlog_goes_to_the_higher_priority_consumer_that_starts_first(
    connection, channel, queue_name
):
    """A backlog is drained by consumers as they come: the first consumer takes it all."""
    publish(channel, queue_name, 3)
    recorder = Recorder()
    consumer(connection, queue_name, recorder, "high", priority=2, prefetch=2)
    consumer(connection, queue_name, recorder, "low", auto_ack=True)
    assert pump_until([connection], lambda: len(recorder.deliveries) == 3)
    assert recorder.of("high") == [b"0", b"1"]
    assert recorder.of("low") == [b"2"]


# -- argument checks --------------------------------------------------------------------------


def invalid(queue: str, kind: str) -> str:
    return (f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{queue}' in vhost '/': "
            f'"expected integer, got {kind}"')


@pytest.mark.parametrize(("value", "kind"), [("5", "longstr"), (True, "bool")],
                         ids=["string", "bool"])
def test_invalid_x_priority(connection, queue_name, value, kind):
    channel = connection.channel()
    assert channel_error(
        lambda: channel.basic_consume(queue_name, lambda *a: None,
                                      arguments={"x-priority": value})
    ) == (406, invalid(queue_name, kind))


@pytest.mark.parametrize(
    ("kind", "value", "name"),
    [("f", struct.pack(">f", 5.0), "float"), ("d", struct.pack(">d", 5.0), "double"),
     ("V", b"", "void"), ("S", struct.pack(">I", 1) + b"5", "longstr")],
    ids=["float", "double", "void", "longstr"],
)
def test_invalid_x_priority_field_types(broker, unique, kind, value, name):
    queue = safe_name(unique)
    answer = raw_basic_consume(broker, queue, field_table(table_field("x-priority", kind, value)))
    assert raw_close(answer) == (406, invalid(queue, name), 60, 20)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("b", struct.pack(">b", -3)), ("s", struct.pack(">h", 300)), ("l", struct.pack(">q", 2**62)),
     ("l", struct.pack(">q", -(2**62))), ("I", struct.pack(">i", -5))],
    ids=["byte", "short", "long-big", "long-negative", "int-negative"],
)
def test_any_integer_x_priority_is_accepted(broker, unique, kind, value):
    answer = raw_basic_consume(broker, safe_name(unique),
                               field_table(table_field("x-priority", kind, value)))
    assert isinstance(answer, commands.Basic.ConsumeOk), answer
