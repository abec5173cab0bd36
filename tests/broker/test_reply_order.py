"""The order of what the broker sends on its own (basic.cancel, basic.return, publisher confirms)
relative to the reply of the method that caused it, checked byte-level with raw frames against
what RabbitMQ 3.10.8 sends (RABBITMQ_ANSWERS.md, "Order of server-sent methods").

- queue.delete of a queue one of the channel's own consumers reads: delete-ok, then
  basic.cancel (kombu's consumer bookkeeping relies on it).
- mandatory unroutable publish in confirm mode: basic.return (with its content), then basic.ack.
"""

from __future__ import annotations

import pytest
from amqp_raw import RawAMQP, amqp_name
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader


def publish_bytes(channel: int, exchange: str, routing_key: str, body: bytes = b"x",
                  mandatory: bool = False,
                  properties: commands.Basic.Properties | None = None) -> bytes:
    return (frame.marshal(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                 mandatory=mandatory), channel)
            + frame.marshal(ContentHeader(0, len(body), properties or commands.Basic.Properties()),
                            channel)
            + frame.marshal(ContentBody(body), channel))


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
