"""The order of what the broker sends on its own (basic.cancel, basic.return, publisher confirms)
relative to the reply of the method that caused it, checked byte-level with raw frames against
what RabbitMQ 3.10.8 sends (RABBITMQ_ANSWERS.md, "Order of server-sent methods").

- queue.delete of a queue one of the channel's own consumers reads: delete-ok, then
  basic.cancel (kombu's consumer bookkeeping relies on it).
- mandatory unroutable publish in confirm mode: basic.return (with its content), then basic.ack.
- confirms go out before the channel.close-ok / connection.close-ok of a client's close, never
  after it; when the broker closes a channel for an error, the confirms it can give go before
  its channel.close and none follows it.
"""

from __future__ import annotations

import os

import amqp.exceptions
import kombu
import pytest
from pamqp import commands, frame
from raw_amqp import RawAMQP, amqp_name, publish_bytes

REFERENCE = bool(os.environ.get("WARREN_TEST_AMQP_PORT"))
warren_only = pytest.mark.skipif(
    REFERENCE, reason="RabbitMQ sends no confirm once the channel closes (RABBITMQ_ANSWERS.md)")

PERSISTENT = commands.Basic.Properties(delivery_mode=2)


def names_until(amqp: RawAMQP, last: type, count: int = 50) -> list[tuple[int, str]]:
    """(channel, method name) of the frames read up to and including the first `last`."""
    seen = []
    for _ in range(count):
        channel, value = amqp.read_method()
        name = value.name
        if isinstance(value, commands.Basic.Ack | commands.Basic.Nack):
            name += f"({value.delivery_tag}{',multiple' if value.multiple else ''})"
        seen.append((channel, name))
        if isinstance(value, last):
            return seen
    raise AssertionError(f"no {last.__name__} in {seen}")


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_own_consumer_is_cancelled_after_delete_ok(broker, unique, durable):
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, durable=durable))
        amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag="mine"))
        amqp.send_method(1, commands.Queue.Delete(queue=queue))
        assert amqp.expect(commands.Queue.DeleteOk, channel=1).message_count == 0
        cancel = amqp.expect(commands.Basic.Cancel, channel=1)
        assert cancel.consumer_tag == "mine"
        amqp.close_connection()


def test_kombu_deletes_a_queue_it_consumes(broker, unique):
    """py-amqp waits for delete-ok; a basic.cancel before it raised ConsumerCancelled out of
    queue.delete(). In RabbitMQ's order the delete returns and the cancel comes next."""
    with kombu.Connection(f"amqp://guest:guest@{broker.host}:{broker.port}//") as connection:
        channel = connection.channel()
        queue = kombu.Queue(amqp_name(unique), channel=channel, auto_delete=False)
        queue.declare()
        kombu.Consumer(channel, queues=[queue], callbacks=[lambda body, message: None]).consume()
        assert queue.delete() == 0
        with pytest.raises(amqp.exceptions.ConsumerCancelled):
            connection.drain_events(timeout=2)


def test_own_consumer_cancel_follows_a_nowait_delete(broker, unique):
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue))
        amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag="mine"))
        amqp.send_method(1, commands.Queue.Delete(queue=queue, nowait=True))
        assert amqp.expect(commands.Basic.Cancel, channel=1).consumer_tag == "mine"
        amqp.close_connection()


def test_return_comes_before_the_confirm(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Confirm.Select())
        amqp.send(publish_bytes(1, "amq.direct", "nowhere", mandatory=True))
        assert names_until(amqp, commands.Basic.Ack) == [
            (1, "Basic.Return"), (1, "ContentHeader"), (1, "ContentBody"), (1, "Basic.Ack(1)")]
        amqp.close_connection()


def test_return_comes_before_tx_commit_ok(broker, unique):
    """In a transaction the publishes are routed at tx.commit: basic.return first, then
    commit-ok (after the disk for a persistent message on a durable queue)."""
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, durable=True))
        amqp.call(1, commands.Tx.Select())
        amqp.send(publish_bytes(1, "", queue, properties=PERSISTENT)
                  + publish_bytes(1, "amq.direct", "nowhere", mandatory=True)
                  + frame.marshal(commands.Tx.Commit(), 1))
        assert names_until(amqp, commands.Tx.CommitOk) == [
            (1, "Basic.Return"), (1, "ContentHeader"), (1, "ContentBody"), (1, "Tx.CommitOk")]
        assert amqp.call(1, commands.Queue.Delete(queue=queue)).message_count == 1
        amqp.close_connection()


@warren_only
@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
def test_confirms_come_before_channel_close_ok(broker, unique, persistent):
    """All in one write: publishes, then channel.close. Persistent messages on a durable queue
    are confirmed after the disk, and close-ok waits for that."""
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, durable=True))
        amqp.call(1, commands.Confirm.Select())
        properties = PERSISTENT if persistent else None
        amqp.send(b"".join(publish_bytes(1, "", queue, properties=properties) for _ in range(5))
                  + publish_bytes(1, "amq.direct", "nowhere", mandatory=True)
                  + frame.marshal(commands.Channel.Close(200, "bye", 0, 0), 1))
        assert names_until(amqp, commands.Channel.CloseOk) == [
            (1, "Basic.Return"), (1, "ContentHeader"), (1, "ContentBody"),
            (1, "Basic.Ack(6,multiple)"), (1, "Channel.CloseOk")]
        amqp.open_channel(1)
        assert amqp.call(1, commands.Queue.Delete(queue=queue)).message_count == 5
        amqp.close_connection()


@warren_only
def test_confirms_come_before_connection_close_ok(broker, unique):
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.open_channel(2)
        amqp.call(1, commands.Queue.Declare(queue=queue, durable=True))
        for channel in (1, 2):
            amqp.call(channel, commands.Confirm.Select())
        amqp.send(b"".join(publish_bytes(channel, "", queue, properties=PERSISTENT)
                           for channel in (1, 2, 1, 2, 1))
                  + frame.marshal(commands.Connection.Close(200, "bye", 0, 0), 0))
        assert sorted(names_until(amqp, commands.Connection.CloseOk)) == [
            (0, "Connection.CloseOk"), (1, "Basic.Ack(3,multiple)"),
            (2, "Basic.Ack(2,multiple)")]
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        assert amqp.call(1, commands.Queue.Delete(queue=queue)).message_count == 5
        amqp.close_connection()


def test_nothing_follows_the_channel_close_of_an_error(broker, unique):
    """Publishes, then a method that fails, in one write: RabbitMQ sends no confirm at all;
    Warren sends the ones it can give before channel.close. Nothing comes after it."""
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        amqp.call(1, commands.Confirm.Select())
        amqp.send(publish_bytes(1, "", queue) + publish_bytes(1, "", queue)
                  + frame.marshal(commands.Basic.Get(queue=queue + "-missing"), 1))
        seen = names_until(amqp, commands.Channel.Close)
        assert seen in ([(1, "Channel.Close")],
                        [(1, "Basic.Ack(2,multiple)"), (1, "Channel.Close")])
        if broker.is_warren:
            assert len(seen) == 2
        amqp.send_method(1, commands.Channel.CloseOk())
        amqp.open_channel(1)  # the next frame on channel 1 is open-ok: nothing came between
        amqp.close_connection()
