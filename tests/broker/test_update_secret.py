"""connection.update-secret (10,70): credential rotation, answered as RabbitMQ 3.10.8 answers it
with its internal auth backend (RABBITMQ_ANSWERS.md, "connection.update-secret"): update-secret-ok
(10,71) for any new secret, right or wrong, and the connection goes on; on a channel other than
0 it is 503 COMMAND_INVALID "unimplemented method"; before connection.open, 504."""

from __future__ import annotations

import aiormq
import pytest
from client_helpers import opened
from pamqp import commands
from raw_amqp import RawAMQP, assert_broker_works, close_summary


@pytest.mark.parametrize("secret", ["guest", "not-the-password", ""],
                         ids=["same", "wrong", "empty"])
def test_update_secret_is_answered_with_update_secret_ok(broker, secret):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(0, commands.Connection.UpdateSecret(new_secret=secret, reason="rotate"))
        amqp.expect(commands.Connection.UpdateSecretOk, channel=0)
        reply = amqp.call(1, commands.Queue.Declare(queue="", exclusive=True))
        assert isinstance(reply, commands.Queue.DeclareOk)
        amqp.close_connection()


def test_update_secret_on_a_channel_is_command_invalid(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Connection.UpdateSecret(new_secret="guest", reason="x"))
        close = amqp.expect_connection_close()
        assert close_summary(close) == (503, "COMMAND_INVALID - unimplemented method", 10, 70)
    assert_broker_works(broker)


def test_update_secret_before_open_is_a_channel_error(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.start_ok()
        amqp.expect(commands.Connection.Tune)
        amqp.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                      heartbeat=0))
        amqp.send_method(0, commands.Connection.UpdateSecret(new_secret="guest", reason="x"))
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            504, "CHANNEL_ERROR - unexpected method in connection state opening", 10, 70)
    assert_broker_works(broker)


def test_pika_update_secret(broker, unique):
    with opened(broker) as connection:
        connection.update_secret("guest", "rotation")
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"after rotation")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"after rotation"


async def test_aiormq_update_secret(broker):
    connection = await aiormq.connect(f"amqp://guest:guest@{broker.host}:{broker.port}/")
    try:
        answer = await connection.update_secret("guest", reason="rotation", timeout=5)
        assert isinstance(answer, commands.Connection.UpdateSecretOk)
        channel = await connection.channel()
        declared = await channel.queue_declare(exclusive=True)
        assert declared.queue.startswith("amq.gen-")
    finally:
        await connection.close()
