"""Single active consumer (`x-single-active-consumer: true`), as RabbitMQ 3.10 runs it on
classic queues.

One consumer (the first registered) gets every message; the others wait. When the active one
goes, the waiting consumer with the highest x-priority takes over (registration order among
equals); a closed channel's unacked messages are requeued to it first. basic.cancel does not
requeue. Exclusive basic.consume is refused on such a queue. See
RABBITMQ_PRIORITY_POLICIES_DELAYED.md (which also describes a RabbitMQ 3.10 stall these tests
avoid: cancelling an active consumer that is blocked by its prefetch while messages wait).
"""

from __future__ import annotations

import os

import pytest
from client_helpers import channel_error, close_quietly, connect
from multi_consumer import Recorder, publish_bodies, pump, pump_until
from pamqp import commands
from raw_amqp import raw_client

SAC = {"x-single-active-consumer": True}


@pytest.fixture
def connections(broker):
    """connections() opens a new connection; all are closed at the end."""
    opened = []

    def make():
        connection = connect(broker)
        opened.append(connection)
        return connection

    yield make
    for connection in opened:
        close_quietly(connection)


@pytest.fixture
def control(connections):
    return connections().channel()


@pytest.fixture
def queue_name(control, unique):
    control.queue_declare(unique, arguments=SAC)
    yield unique
    if control.is_open:
        control.queue_delete(unique)


warren_only = pytest.mark.skipif(
    bool(os.environ.get("WARREN_TEST_AMQP_PORT")),
    reason="RabbitMQ 3.10 stalls here (a bug Warren does not copy)",
)


def test_only_the_first_consumer_gets_messages(connections, control, queue_name):
    recorder = Recorder()
    first, second, third = connections(), connections(), connections()
    first.channel().basic_consume(queue_name, recorder.callback("first"), auto_ack=True)
    second.channel().basic_consume(queue_name, recorder.callback("second"), auto_ack=True)
    third.channel().basic_consume(queue_name, recorder.callback("third"), auto_ack=True)
    publish_bodies(control, queue_name, ["0", "1", "2", "3", "4", "5"])
    everyone = [first, second, third]
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 6)
    pump(everyone, 0.2)
    assert recorder.of("first") == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert recorder.names() == ["first"] * 6
    declare_ok = control.queue_declare(queue_name, passive=True).method
    assert (declare_ok.consumer_count, declare_ok.message_count) == (3, 0)


def test_consumers_on_one_channel_too(connections, control, queue_name):
    connection = connections()
    channel = connection.channel()
    recorder = Recorder()
    channel.basic_consume(queue_name, recorder.callback("a"), auto_ack=True)
    channel.basic_consume(queue_name, recorder.callback("b"), auto_ack=True)
    publish_bodies(control, queue_name, ["0", "1", "2", "3"])
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert recorder.names() == ["a"] * 4


def test_false_means_round_robin(connections, control, unique):
    control.queue_declare(unique, arguments={"x-single-active-consumer": False})
    connection = connections()
    recorder = Recorder()
    connection.channel().basic_consume(unique, recorder.callback("a"), auto_ack=True)
    connection.channel().basic_consume(unique, recorder.callback("b"), auto_ack=True)
    publish_bodies(control, unique, ["0", "1", "2", "3"])
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    assert recorder.of("a") == [b"0", b"2"]
    assert recorder.of("b") == [b"1", b"3"]
    control.queue_delete(unique)


@warren_only
def test_connection_close_hands_over_with_unacked_requeued(connections, control, queue_name):
    recorder = Recorder()
    active, waiting = connections(), connections()
    active_channel = active.channel()
    active_channel.basic_qos(prefetch_count=2)
    active_channel.basic_consume(queue_name, recorder.callback("active"))
    waiting.channel().basic_consume(queue_name, recorder.callback("waiting"))
    publish_bodies(control, queue_name, ["0", "1", "2", "3", "4"])
    assert pump_until([active, waiting], lambda: len(recorder.deliveries) == 2)
    pump([active, waiting], 0.2)
    assert recorder.pairs() == [("active", b"0"), ("active", b"1")]
    recorder.clear()
    active.close()
    assert pump_until([waiting], lambda: len(recorder.deliveries) == 5)
    # pika cancels its consumers before closing: the waiting consumer takes over at the cancel
    # and gets what is in the queue, then the closed channel's unacked messages, redelivered.
    # (RabbitMQ 3.10 stalls the queue when a SAC consumer blocked by its prefetch is cancelled
    # -- see RABBITMQ_PRIORITY_POLICIES_DELAYED.md -- and so happens to deliver 0 and 1 first;
    # Warren does not copy that bug.)
    assert [(d.name, d.body, d.redelivered) for d in recorder.deliveries] == [
        ("waiting", b"2", False), ("waiting", b"3", False), ("waiting", b"4", False),
        ("waiting", b"0", True), ("waiting", b"1", True)]
    assert [d.delivery_tag for d in recorder.deliveries] == [1, 2, 3, 4, 5]


@warren_only
def test_channel_close_hands_over(connections, control, queue_name):
    recorder = Recorder()
    connection = connections()
    active_channel = connection.channel()
    active_channel.basic_qos(prefetch_count=1)
    active_channel.basic_consume(queue_name, recorder.callback("active"))
    connection.channel().basic_consume(queue_name, recorder.callback("next"), auto_ack=True)
    publish_bodies(control, queue_name, ["0", "1", "2"])
    assert pump_until([connection], lambda: len(recorder.deliveries) == 1)
    active_channel.close()
    assert pump_until([connection], lambda: len(recorder.deliveries) == 4)
    # As above: the cancel pika sends first hands over at once; the requeued "0" follows.
    assert [(d.name, d.body, d.redelivered) for d in recorder.deliveries] == [
        ("active", b"0", False), ("next", b"1", False), ("next", b"2", False),
        ("next", b"0", True)]


def test_cancel_hands_over_without_requeueing(connections, control, queue_name):
    """basic.cancel leaves the cancelled consumer's unacked messages on its channel; the next
    consumer gets new messages at once, and the old ones when they are nacked back."""
    recorder = Recorder()
    old, new = connections(), connections()
    old_channel = old.channel()
    old_channel.basic_qos(prefetch_count=10)  # room left: not blocked when it cancels
    tag = old_channel.basic_consume(queue_name, recorder.callback("old"))
    new.channel().basic_consume(queue_name, recorder.callback("new"), auto_ack=True)
    publish_bodies(control, queue_name, ["0", "1", "2"])
    assert pump_until([old, new], lambda: len(recorder.deliveries) == 3)
    old_channel.basic_cancel(tag)
    pump([old, new], 0.2)
    assert control.queue_declare(queue_name, passive=True).method.message_count == 0
    publish_bodies(control, queue_name, ["3"])
    assert pump_until([old, new], lambda: len(recorder.deliveries) == 4)
    assert recorder.deliveries[-1].name == "new"
    # the old consumer's messages are still its channel's: nack them back
    old_channel.basic_nack(recorder.deliveries[2].delivery_tag, multiple=True, requeue=True)
    assert pump_until([old, new], lambda: len(recorder.deliveries) == 7)
    assert [(d.name, d.body, d.redelivered) for d in recorder.deliveries] == [
        ("old", b"0", False), ("old", b"1", False), ("old", b"2", False), ("new", b"3", False),
        ("new", b"0", True), ("new", b"1", True), ("new", b"2", True)]


def test_cancelled_consumer_can_still_ack(connections, control, queue_name):
    recorder = Recorder()
    old, new = connections(), connections()
    old_channel = old.channel()
    tag = old_channel.basic_consume(queue_name, recorder.callback("old"))
    new.channel().basic_consume(queue_name, recorder.callback("new"), auto_ack=True)
    publish_bodies(control, queue_name, ["0"])
    assert pump_until([old, new], lambda: len(recorder.deliveries) == 1)
    old_channel.basic_cancel(tag)
    old_channel.basic_ack(recorder.deliveries[0].delivery_tag)
    old.close()
    pump([new], 0.3)
    assert recorder.pairs() == [("old", b"0")]
    assert control.queue_declare(queue_name, passive=True).method.message_count == 0


def test_takeover_follows_registration_order(connections, control, queue_name):
    recorder = Recorder()
    a, b, c = connections(), connections(), connections()
    for name, connection in (("a", a), ("b", b), ("c", c)):
        connection.channel().basic_consume(queue_name, recorder.callback(name), auto_ack=True)
    everyone = [a, b, c]
    publish_bodies(control, queue_name, ["0"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 1)
    a.close()
    publish_bodies(control, queue_name, ["1"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 2)
    b.close()
    publish_bodies(control, queue_name, ["2"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 3)
    assert recorder.pairs() == [("a", b"0"), ("b", b"1"), ("c", b"2")]


def test_new_consumer_joins_the_end_of_the_line(connections, control, queue_name):
    recorder = Recorder()
    a, b = connections(), connections()
    a.channel().basic_consume(queue_name, recorder.callback("a"), auto_ack=True)
    b.channel().basic_consume(queue_name, recorder.callback("b"), auto_ack=True)
    a.close()
    c = connections()
    c.channel().basic_consume(queue_name, recorder.callback("c"), auto_ack=True)
    a2 = connections()
    a2.channel().basic_consume(queue_name, recorder.callback("a2"), auto_ack=True)
    publish_bodies(control, queue_name, ["0", "1"])
    everyone = [b, c, a2]
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 2)
    pump(everyone, 0.2)
    assert recorder.names() == ["b", "b"]
    b.close()
    publish_bodies(control, queue_name, ["2"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 3)
    assert recorder.deliveries[-1].name == "c"


# -- with consumer priorities (x-priority) ----------------------------------------------------


def run_takeovers(connections, control, queue_name, priorities: list[int | None]) -> list[str]:
    """Register one consumer per priority (in that order, each on its own connection), then
    repeatedly publish one message and cancel whoever got it; return who got each message."""
    recorder = Recorder()
    everyone, channels, tags = [], {}, {}
    for index, priority in enumerate(priorities):
        name = f"c{index}"
        connection = connections()
        channel = connection.channel()
        arguments = {"x-priority": priority} if priority is not None else None
        tags[name] = channel.basic_consume(queue_name, recorder.callback(name), auto_ack=True,
                                           arguments=arguments)
        channels[name] = channel
        everyone.append(connection)
    order = []
    for count in range(1, len(priorities) + 1):
        publish_bodies(control, queue_name, [str(count)])
        assert pump_until(everyone, lambda count=count: len(recorder.deliveries) == count)
        who = recorder.deliveries[-1].name
        order.append(who)
        channels[who].basic_cancel(tags[who])
    return order


def test_a_higher_priority_consumer_does_not_take_over_the_active_one(
    connections, control, queue_name
):
    recorder = Recorder()
    low, high = connections(), connections()
    low.channel().basic_consume(queue_name, recorder.callback("low"), auto_ack=True)
    high.channel().basic_consume(queue_name, recorder.callback("high"), auto_ack=True,
                                 arguments={"x-priority": 10})
    publish_bodies(control, queue_name, ["0", "1", "2"])
    assert pump_until([low, high], lambda: len(recorder.deliveries) == 3)
    pump([low, high], 0.2)
    assert recorder.names() == ["low", "low", "low"]


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ([0, 0, 10], ["c0", "c2", "c1"]),
        ([None, 5, 10, 5], ["c0", "c2", "c1", "c3"]),
        ([10, 0, 5], ["c0", "c2", "c1"]),
        ([-1, 0, None], ["c0", "c1", "c2"]),
        ([1, -5, 3, 3], ["c0", "c2", "c3", "c1"]),
    ],
    ids=["0-0-10", "none-5-10-5", "10-0-5", "neg-0-none", "1-neg5-3-3"],
)
def test_next_active_is_the_highest_priority_then_the_oldest(
    connections, control, queue_name, priorities, expected
):
    assert run_takeovers(connections, control, queue_name, priorities) == expected


# -- exclusive consumers, basic.get, deletion -------------------------------------------------


def exclusive_use(queue: str) -> tuple[int, str]:
    return 403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use"


def test_exclusive_consume_is_refused_even_alone(connections, queue_name):
    channel = connections().channel()
    assert channel_error(
        lambda: channel.basic_consume(queue_name, lambda *a: None, exclusive=True)
    ) == exclusive_use(queue_name)


def test_exclusive_consume_is_refused_beside_a_consumer(connections, queue_name):
    connection = connections()
    connection.channel().basic_consume(queue_name, lambda *a: None)
    channel = connection.channel()
    assert channel_error(
        lambda: channel.basic_consume(queue_name, lambda *a: None, exclusive=True)
    ) == exclusive_use(queue_name)
    # the refused attempt left the queue usable
    other = connection.channel()
    other.basic_consume(queue_name, lambda *a: None)


def test_basic_get_beside_the_active_consumer(connections, control, queue_name):
    connection = connections()
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    recorder = Recorder()
    channel.basic_consume(queue_name, recorder.callback("active"))
    publish_bodies(control, queue_name, ["0", "1", "2"])
    assert pump_until([connection], lambda: len(recorder.deliveries) == 1)
    method, _properties, body = control.basic_get(queue_name, auto_ack=True)
    assert (body, method.message_count) == (b"1", 1)


def test_queue_deletion_cancels_every_consumer(connections, control, queue_name):
    cancelled = []
    active, waiting = connections(), connections()
    for name, connection in (("active", active), ("waiting", waiting)):
        channel = connection.channel()
        channel.add_on_cancel_callback(lambda frame, name=name: cancelled.append(name))
        channel.basic_consume(queue_name, lambda *a: None, consumer_tag=f"tag-{name}")
    control.queue_delete(queue_name)
    assert pump_until([active, waiting], lambda: len(cancelled) == 2)
    assert sorted(cancelled) == ["active", "waiting"]


# -- argument checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [("true", "longstr"), (1, "signedint"), (0, "signedint")],
    ids=["string", "one", "zero"],
)
def test_value_must_be_a_bool(connections, unique, value, kind):
    channel = connections().channel()
    assert channel_error(
        lambda: channel.queue_declare(unique, arguments={"x-single-active-consumer": value})
    ) == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue '{unique}' "
        f"in vhost '/': {{unacceptable_type,{kind}}}",
    )


def test_redeclare_must_match(connections, queue_name):
    connection = connections()
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(queue_name)) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue "
        f"'{queue_name}' in vhost '/': received none but current is the value 'true' of type "
        "'bool'",
    )
    channel = connection.channel()
    assert channel_error(
        lambda: channel.queue_declare(queue_name, arguments={"x-single-active-consumer": False})
    ) == (
        406,
        f"PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue "
        f"'{queue_name}' in vhost '/': received 'false' but current is 'true'",
    )
    channel = connection.channel()
    channel.queue_declare(queue_name, arguments=SAC)


def test_cancelling_a_waiting_consumer_changes_nothing_for_the_active_one(
    connections, control, queue_name
):
    recorder = Recorder()
    a, b, c = connections(), connections(), connections()
    a.channel().basic_consume(queue_name, recorder.callback("a"), auto_ack=True)
    b_channel = b.channel()
    b_tag = b_channel.basic_consume(queue_name, recorder.callback("b"), auto_ack=True)
    c.channel().basic_consume(queue_name, recorder.callback("c"), auto_ack=True)
    b_channel.basic_cancel(b_tag)
    everyone = [a, b, c]
    publish_bodies(control, queue_name, ["0"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 1)
    a.close()
    publish_bodies(control, queue_name, ["1"])
    assert pump_until(everyone, lambda: len(recorder.deliveries) == 2)
    assert recorder.pairs() == [("a", b"0"), ("c", b"1")]
    declare_ok = control.queue_declare(queue_name, passive=True).method
    assert declare_ok.consumer_count == 1


# -- hand-over without a basic.cancel first (pika always cancels before it closes) ------------


@pytest.mark.parametrize("how", ["channel-close", "socket-close"])
def test_close_without_cancel_hands_over_requeued_messages_first(
    broker, connections, control, queue_name, how
):
    """A raw client that closes its channel (or drops its socket) without cancelling: its
    unacked messages go back to the head of the queue before the waiting consumer takes over,
    so it gets them first (redelivered), then the rest."""
    with raw_client(broker) as client:
        client.send_method(1, commands.Basic.Qos(prefetch_count=2))
        client.expect(commands.Basic.QosOk)
        client.send_method(1, commands.Basic.Consume(queue=queue_name, consumer_tag="raw"))
        client.expect(commands.Basic.ConsumeOk)
        waiting = connections()
        recorder = Recorder()
        waiting.channel().basic_consume(queue_name, recorder.callback("waiting"))
        publish_bodies(control, queue_name, ["0", "1", "2", "3", "4"])
        taken = [client.read_message()[2][0].payload for _ in range(2)]
        assert taken == [b"0", b"1"]
        pump([waiting], 0.2)
        assert recorder.deliveries == []
        if how == "channel-close":
            client.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye",
                                                         class_id=0, method_id=0))
            client.expect(commands.Channel.CloseOk)
        else:
            client.close()
        assert pump_until([waiting], lambda: len(recorder.deliveries) == 5)
        assert [(d.body, d.redelivered) for d in recorder.deliveries] == [
            (b"0", True), (b"1", True), (b"2", False), (b"3", False), (b"4", False)]
