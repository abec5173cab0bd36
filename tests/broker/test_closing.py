"""Closing as RabbitMQ 3.10.8 closes (RABBITMQ_ANSWERS.md, "Closing"), with raw frames:

- after its close-ok to a client's connection.close the broker leaves the socket open for the
  client to close, reading and dropping what still comes (a repeated connection.close gets
  close-ok again), so a client whose publishes and close go out in one write reads close-ok
  rather than a reset;
- channel.close crossing the broker's channel.close: the client's close gets close-ok and the
  channel stays closing until the client's close-ok (a channel.open before that is 504 "second
  'channel.open' seen"); afterwards the number opens again;
- connection.close crossing the broker's: not answered; the client's close-ok ends it.
"""

from __future__ import annotations

import time

from pamqp import commands, frame
from raw_amqp import RawAMQP, amqp_name, assert_broker_works, close_summary, publish_bytes

BYE = commands.Connection.Close(200, "bye", 0, 0)
MISSING_QUEUE_TEXT = "NOT_FOUND - no queue 'ans-no-such-queue' in vhost '/'"


def test_socket_stays_open_after_close_ok_until_the_client_closes(broker, unique):
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, exclusive=True))
        amqp.close_connection()
        # The connection is over for the broker: its exclusive queue is gone ...
        with RawAMQP.connect(broker) as other:
            other.handshake()
            other.open_channel(1)
            close = other.call(1, commands.Queue.Declare(queue=queue, passive=True))
            assert close_summary(close)[0] == 404
            other.close_connection()
        # ... but the socket is left for us to close; what we send is dropped, except that a
        # repeated connection.close gets close-ok again.
        amqp.send(publish_bytes(1, "", queue) + frame.marshal(BYE, 0))
        amqp.expect(commands.Connection.CloseOk, channel=0)
        assert not amqp.is_closed(timeout=1.0)
    assert_broker_works(broker)


def test_publishes_still_in_flight_after_close_get_no_reset(broker):
    """Publishes and connection.close in one write, then more publishes (another thread of
    the client still writing): the broker reads and drops them, so the client's writes do not
    fail with a broken pipe or reset, and it reads close-ok."""
    def publishes(count: int) -> bytes:
        return b"".join(publish_bytes(1, "amq.direct", "nowhere", b"p" * 1000)
                        for _ in range(count))

    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send(publishes(500) + frame.marshal(BYE, 0))
        amqp.expect(commands.Connection.CloseOk, channel=0, timeout=10)
        for _ in range(3):
            amqp.send(publishes(20))  # OSError (EPIPE, ECONNRESET) if the broker had hung up
            time.sleep(0.1)
        assert not amqp.is_closed(timeout=0.3)
    assert_broker_works(broker)


def test_channel_close_crossing_the_brokers(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        # The broker closes channel 1 (404) while our channel.close is on its way.
        amqp.send(frame.marshal(commands.Basic.Get(queue="ans-no-such-queue"), 1)
                  + frame.marshal(commands.Channel.Close(200, "bye", 0, 0), 1))
        close = amqp.expect(commands.Channel.Close, channel=1)
        assert close_summary(close) == (404, MISSING_QUEUE_TEXT, 60, 70)
        amqp.expect(commands.Channel.CloseOk, channel=1)  # the answer to our close
        amqp.send_method(1, commands.Channel.Close(200, "again", 0, 0))
        amqp.expect(commands.Channel.CloseOk, channel=1)  # still closing: answered again
        amqp.send_method(1, commands.Channel.CloseOk())  # our answer to the broker's close
        amqp.open_channel(1)  # the number is free again; the connection lives
        amqp.open_channel(2)
        amqp.close_connection()
    assert_broker_works(broker)


def test_channel_stays_closing_until_the_clients_close_ok(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send(frame.marshal(commands.Basic.Get(queue="ans-no-such-queue"), 1)
                  + frame.marshal(commands.Channel.Close(200, "bye", 0, 0), 1))
        amqp.expect(commands.Channel.Close, channel=1)
        amqp.expect(commands.Channel.CloseOk, channel=1)
        amqp.send_method(1, commands.Channel.Open())
        close = amqp.expect_connection_close()
        assert close_summary(close) == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    assert_broker_works(broker)


def test_connection_close_crossing_the_brokers(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Channel.Open())
        close = amqp.expect(commands.Connection.Close, channel=0)
        assert close_summary(close) == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
        amqp.send_method(0, BYE)  # crossing: the broker does not answer it ...
        assert not amqp.is_closed(timeout=0.5)
        amqp.send_method(0, commands.Connection.CloseOk())  # ... our close-ok ends it
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)
