"""Refused lifecycle arguments and expirations, with RabbitMQ 3.10.8's exact replies.

queue.declare with a bad x-message-ttl / x-expires / x-max-length / x-max-length-bytes /
x-overflow / x-dead-letter-* closes the channel with 406 (class 50, method 10); a publish with a
bad `expiration` closes the channel with 406 (class 60, method 40) while the connection stays
usable. Texts are listed in RABBITMQ_LIFECYCLE.md, sections 1 and 2.
"""

from __future__ import annotations

from decimal import Decimal

import pika
import pytest
from client_helpers import channel_error, channel_error_after
from lifecycle_helpers import count, get_one, warren_only
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from raw_amqp import RawAMQP, amqp_name, close_summary

INVALID = "PRECONDITION_FAILED - invalid arg '{arg}' for queue '{queue}' in vhost '/': {reason}"

BAD_ARGUMENTS = [
    ("x-message-ttl", -1, "{value_negative,-1}"),
    ("x-message-ttl", "abc", '"expected integer, got longstr"'),
    ("x-message-ttl", Decimal("1.5"), '"expected integer, got decimal"'),
    ("x-message-ttl", True, '"expected integer, got bool"'),
    ("x-expires", 0, "{value_zero,0}"),
    ("x-expires", -1, "{value_negative,-1}"),
    ("x-expires", "10", '"expected integer, got longstr"'),
    ("x-max-length", -1, "{value_negative,-1}"),
    ("x-max-length", "x", '"expected integer, got longstr"'),
    ("x-max-length-bytes", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", True, '"expected integer, got bool"'),
    ("x-overflow", "bogus", "invalid_overflow"),
    ("x-overflow", 1, "{unacceptable_type,signedint}"),
    ("x-dead-letter-routing-key", 1, "{unacceptable_type,signedint}"),
]


@pytest.mark.parametrize(
    ("arg", "value", "reason"), BAD_ARGUMENTS,
    ids=[f"{arg}={value!r}" for arg, value, _ in BAD_ARGUMENTS])
def test_bad_argument_refused(connection, unique, arg, value, reason):
    queue = amqp_name(unique)
    channel = connection.channel()
    code, text = channel_error(lambda: channel.queue_declare(queue, arguments={arg: value}))
    assert (code, text) == (406, INVALID.format(arg=arg, queue=queue, reason=reason))
    assert connection.is_open
    probe = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        probe.queue_declare(queue, passive=True)
    assert refused.value.reply_code == 404  # nothing was declared


def test_dead_letter_routing_key_without_exchange(connection, unique):
    queue = amqp_name(unique)
    channel = connection.channel()
    code, text = channel_error(lambda: channel.queue_declare(
        queue, arguments={"x-dead-letter-routing-key": "rk"}))
    assert (code, text) == (406, INVALID.format(
        arg="x-dead-letter-routing-key", queue=queue, reason="routing_key_but_no_dlx_defined"))


def test_dead_letter_exchange_of_wrong_type(connection, unique):
    """This one has a text of its own."""
    queue = amqp_name(unique)
    channel = connection.channel()
    code, text = channel_error(lambda: channel.queue_declare(
        queue, arguments={"x-dead-letter-exchange": 1}))
    assert (code, text) == (
        406,
        f"PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
        f"in queue '{queue}' in vhost '/'",
    )


ACCEPTED = [
    {"x-message-ttl": 0},
    {"x-message-ttl": 4294967296},
    {"x-max-length": 0},
    {"x-max-length-bytes": 0},
    {"x-expires": 1},
    {"x-overflow": "drop-head"},
    {"x-overflow": "reject-publish"},
    {"x-overflow": "reject-publish-dlx"},
    {"x-dead-letter-exchange": "no-such-exchange-anywhere"},
    {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": ""},
]


@pytest.mark.parametrize("arguments", ACCEPTED, ids=[repr(a) for a in ACCEPTED])
def test_accepted_arguments(channel, topo, arguments):
    topo.queue(channel, "q", arguments)
    assert channel.is_open


def test_bad_argument_class_and_method(broker, unique):
    queue = amqp_name(unique)
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Queue.Declare(queue=queue, arguments={"x-expires": 0}))
        close = amqp.expect_channel_close(1)
        assert close_summary(close) == (
            406, INVALID.format(arg="x-expires", queue=queue, reason="{value_zero,0}"), 50, 10)


BAD_EXPIRATIONS = [
    ("abc", "no_integer"),
    ("", "no_integer"),
    (" 100", "no_integer"),
    ("-1", "{value_negative,-1}"),
    ("1.5", '{leftover_string,".5"}'),
    ("100 ", '{leftover_string," "}'),
    ("1e3", '{leftover_string,"e3"}'),
    ("315360000001", "{value_too_large,315360000001}"),
]


@pytest.mark.parametrize(
    ("expiration", "reason"), BAD_EXPIRATIONS, ids=[repr(e) for e, _ in BAD_EXPIRATIONS])
def test_bad_expiration_closes_the_channel(connection, topo, expiration, reason):
    setup = connection.channel()
    queue = topo.queue(setup, "q")
    channel = connection.channel()
    code, text = channel_error_after(channel, lambda: channel.basic_publish(
        "", queue, b"x", pika.BasicProperties(expiration=expiration)))
    assert (code, text) == (
        406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}")
    assert connection.is_open
    assert count(setup, queue) == 0


def test_bad_expiration_refused_even_when_unroutable(connection, unique):
    channel = connection.channel()
    code, text = channel_error_after(channel, lambda: channel.basic_publish(
        "amq.direct", amqp_name(unique, "nowhere-"), b"x",
        pika.BasicProperties(expiration="-5")))
    assert (code, text) == (406, "PRECONDITION_FAILED - invalid expiration '-5': "
                                 "{value_negative,-5}")


def test_bad_expiration_class_and_method(broker, unique):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key=amqp_name(unique)))
        amqp.send_frame(1, ContentHeader(0, 1, commands.Basic.Properties(expiration="abc")))
        amqp.send_frame(1, ContentBody(b"x"))
        close = amqp.expect_channel_close(1)
        assert close_summary(close) == (
            406, "PRECONDITION_FAILED - invalid expiration 'abc': no_integer", 60, 40)
        amqp.open_channel(2)  # the connection is still fine
        amqp.close_connection()


@pytest.mark.parametrize("expiration", ["315360000000", "4294967296", "+60000", "060000"])
def test_accepted_expirations_are_delivered_unchanged(channel, topo, expiration):
    queue = topo.queue(channel, "q")
    channel.basic_publish("", queue, b"x", pika.BasicProperties(expiration=expiration))
    _method, properties, _body = get_one(channel, queue)
    assert properties.expiration == expiration


@warren_only
def test_delivery_limit_accepted_on_classic_queue(channel, topo):
    """RabbitMQ 3.10 refuses it on classic queues ("... of queue type rabbit_classic_queue");
    Warren accepts it as an extension."""
    topo.queue(channel, "q", {"x-delivery-limit": 3})
    assert channel.is_open
