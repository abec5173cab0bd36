"""Many publishes in one write, over a raw socket: a publisher's repeated publishes reach
Warren's frame reader together (one run of messages, protocol/codec.py), and every message of
the run must be taken as if it had come alone: in order, each confirmed or nacked on its own,
each returned when unroutable, and a refusal stops the run where RabbitMQ's channel stops.

Every expectation holds on RabbitMQ 3.10.8 as well: with WARREN_TEST_AMQP_PORT set these tests
run against it unchanged.
"""

from __future__ import annotations

import struct

import pika
from pamqp import commands, constants, frame
from raw_amqp import amqp_name, publish_bytes, raw_client, raw_frame

RUN = 300  # publishes in the one write


def _bodies(count: int) -> list[bytes]:
    return [b"message %05d" % number for number in range(count)]  # one size: one run


def _outcomes(client, count: int) -> dict[int, str]:
    """basic.ack / basic.nack per delivery tag, `multiple` spread over the tags it covers."""
    outcomes: dict[int, str] = {}
    while len(outcomes) < count:
        _, method = client.read_method()
        assert isinstance(method, commands.Basic.Ack | commands.Basic.Nack), method
        kind = "ack" if isinstance(method, commands.Basic.Ack) else "nack"
        first = method.delivery_tag if not method.multiple else min(
            (tag for tag in range(1, method.delivery_tag + 1) if tag not in outcomes),
            default=method.delivery_tag)
        for tag in range(first, method.delivery_tag + 1):
            outcomes.setdefault(tag, kind)
    return outcomes


def _drain(broker, queue: str) -> list[bytes]:
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    try:
        channel = connection.channel()
        bodies = []
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            bodies.append(got[2])
        channel.queue_delete(queue)
        return bodies
    finally:
        connection.close()


def test_a_run_of_publishes_is_confirmed_and_queued_in_order(broker, unique):
    queue = amqp_name(unique)
    with raw_client(broker) as client:
        client.call(1, commands.Confirm.Select())
        client.call(1, commands.Queue.Declare(queue=queue))
        client.send(b"".join(publish_bytes(1, "", queue, body) for body in _bodies(RUN)))
        assert set(_outcomes(client, RUN).values()) == {"ack"}
    assert _drain(broker, queue) == _bodies(RUN)


def test_reject_publish_nacks_each_publish_of_a_run_over_the_limit(broker, unique):
    queue = amqp_name(unique)
    with raw_client(broker) as client:
        client.call(1, commands.Confirm.Select())
        client.call(1, commands.Queue.Declare(queue=queue, arguments={
            "x-max-length": 3, "x-overflow": "reject-publish"}))
        client.send(b"".join(publish_bytes(1, "", queue, body) for body in _bodies(8)))
        outcomes = _outcomes(client, 8)
    assert [outcomes[tag] for tag in range(1, 9)] == ["ack"] * 3 + ["nack"] * 5
    assert _drain(broker, queue) == _bodies(3)


def test_each_unroutable_mandatory_publish_of_a_run_is_returned(broker, unique):
    nowhere = amqp_name(unique, "nowhere-")
    with raw_client(broker) as client:
        client.send(b"".join(publish_bytes(1, "", nowhere, body, mandatory=True)
                             for body in _bodies(5)))
        returned = []
        for _ in range(5):
            method, _, body_frames = client.read_message()
            assert isinstance(method, commands.Basic.Return) and method.reply_code == 312
            returned.append(b"".join(frame.payload for frame in body_frames))
    assert returned == _bodies(5)


def test_a_refused_publish_stops_its_run(broker, unique):
    """The first publish of the run names another user: 406 closes the channel, and the
    publishes after it in the same write go nowhere (the closing channel drops them)."""
    queue = amqp_name(unique)
    impostor = commands.Basic.Properties(user_id="someone-else")
    with raw_client(broker) as client:
        client.call(1, commands.Queue.Declare(queue=queue))
        client.send(b"".join(publish_bytes(1, "", queue, body, properties=impostor)
                             for body in _bodies(20)))
        close = client.expect_channel_close(1)
        assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 40)
        assert close.reply_text == ("PRECONDITION_FAILED - user_id property set to "
                                    "'someone-else' but authenticated user was 'guest'")
    assert _drain(broker, queue) == []


def test_a_run_with_undecodable_properties_closes_541_and_keeps_nothing(broker, unique):
    queue = amqp_name(unique)
    garbage = b"\x10\x00\x02\xff"  # persistent, then a byte no property accounts for
    publish = frame.marshal(commands.Basic.Publish(routing_key=queue), 1)
    with raw_client(broker) as client:
        client.call(1, commands.Queue.Declare(queue=queue))
        client.send(b"".join(
            publish + raw_frame(constants.FRAME_HEADER, 1,
                                struct.pack(">HHQ", 60, 0, len(body)) + garbage)
            + raw_frame(constants.FRAME_BODY, 1, body) for body in _bodies(20)))
        close = client.expect_connection_close()
        assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
            541, "INTERNAL_ERROR", 0, 0)
    assert _drain(broker, queue) == []


def test_a_run_in_a_transaction_waits_for_its_commit(broker, unique):
    """Rolled back, none of the run is queued; committed, all of it, in order."""
    queue = amqp_name(unique)
    run = b"".join(publish_bytes(1, "", queue, body) for body in _bodies(50))
    with raw_client(broker) as client:
        client.call(1, commands.Queue.Declare(queue=queue))
        client.call(1, commands.Tx.Select())
        client.send(run)
        assert isinstance(client.call(1, commands.Tx.Rollback()), commands.Tx.RollbackOk)
        assert client.call(1, commands.Queue.Declare(queue=queue, passive=True)
                           ).message_count == 0
        client.send(run)
        assert isinstance(client.call(1, commands.Tx.Commit()), commands.Tx.CommitOk)
    assert _drain(broker, queue) == _bodies(50)
