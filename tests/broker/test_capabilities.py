"""The client capabilities of connection.start-ok, with and without each, in raw frames, as
RabbitMQ 3.10.8 reads them (RABBITMQ_ANSWERS.md, "Client capabilities"): only
`consumer_cancel_notify`, `connection.blocked` (test_alarms.py) and
`authentication_failure_close` change what the broker sends, and only when the value is the
boolean true; `basic.nack`, `exchange_exchange_bindings` and `per_consumer_qos` change nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from pamqp import commands
from raw_amqp import (
    ConnectionClosedByPeer,
    RawAMQP,
    amqp_name,
    assert_broker_works,
    close_summary,
    plain_response,
    publish_bytes,
)

NOTHING = object()  # start-ok without a capabilities table


def connect(broker, capabilities: Any, password: str = "guest") -> RawAMQP:
    """Handshake with these client capabilities; stops after start-ok if the login fails."""
    amqp = RawAMQP.connect(broker)
    amqp.send_protocol_header()
    amqp.expect(commands.Connection.Start)
    properties: dict[str, Any] = {"product": "warren-capability-tests"}
    if capabilities is not NOTHING:
        properties["capabilities"] = capabilities
    amqp.send_method(0, commands.Connection.StartOk(
        client_properties=properties, mechanism="PLAIN",
        response=plain_response("guest", password), locale="en_US"))
    if password != "guest":
        return amqp
    amqp.expect(commands.Connection.Tune)
    amqp.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                  heartbeat=0))
    amqp.send_method(0, commands.Connection.Open(virtual_host="/"))
    amqp.expect(commands.Connection.OpenOk)
    amqp.open_channel(1)
    return amqp


def frames_within(amqp: RawAMQP, seconds: float = 0.5) -> list[str]:
    names = []
    try:
        while True:
            names.append(amqp.read_method(seconds)[1].name)
    except TimeoutError:
        return names


WITHOUT = [NOTHING, {}, {"consumer_cancel_notify": False}, {"consumer_cancel_notify": 1}]


@pytest.mark.parametrize("capabilities", WITHOUT, ids=["no-table", "empty", "false", "integer"])
def test_no_basic_cancel_without_consumer_cancel_notify(broker, unique, capabilities):
    queue = amqp_name(unique)
    with connect(broker, capabilities) as amqp:
        amqp.call(1, commands.Queue.Declare(queue=queue))
        amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag="theirs"))
        with connect(broker, {"consumer_cancel_notify": True}) as other:
            other.call(1, commands.Queue.Delete(queue=queue))
            other.close_connection()
        amqp.call(1, commands.Queue.Declare(queue=queue))
        amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag="own"))
        amqp.send_method(1, commands.Queue.Delete(queue=queue))
        assert frames_within(amqp) == ["Queue.DeleteOk"]  # no basic.cancel for either consumer
        # The consumers are gone all the same: cancelling one is just cancel-ok.
        assert amqp.call(1, commands.Basic.Cancel(consumer_tag="own")).consumer_tag == "own"
        amqp.close_connection()


def test_basic_cancel_with_consumer_cancel_notify(broker, unique):
    queue = amqp_name(unique)
    with connect(broker, {"consumer_cancel_notify": True}) as amqp:
        amqp.call(1, commands.Queue.Declare(queue=queue))
        amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag="theirs"))
        with connect(broker, NOTHING) as other:
            other.call(1, commands.Queue.Delete(queue=queue))
            other.close_connection()
        assert amqp.expect(commands.Basic.Cancel, channel=1).consumer_tag == "theirs"
        amqp.close_connection()


def test_bad_login_without_authentication_failure_close_is_a_silent_close(broker):
    """No connection.close: the socket is closed, ~3 s later as RabbitMQ does."""
    with connect(broker, NOTHING, password="wrong") as amqp:
        started = time.monotonic()
        assert amqp.wait_closed(timeout=6) == []
        assert 2 <= time.monotonic() - started <= 5
    assert_broker_works(broker)


def test_bad_login_with_authentication_failure_close_is_a_403(broker):
    with connect(broker, {"authentication_failure_close": True}, password="wrong") as amqp:
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For "
            "details see the broker logfile.", 0, 0)
        try:
            assert amqp.wait_closed(timeout=3) == []
        except ConnectionClosedByPeer:
            pass
    assert_broker_works(broker)


@pytest.mark.parametrize("capabilities", [NOTHING, {"basic.nack": True}],
                         ids=["without", "with"])
def test_basic_nack_is_sent_with_or_without_the_capability(broker, unique, capabilities):
    queue = amqp_name(unique)
    with connect(broker, capabilities) as amqp:
        amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True, arguments={
            "x-max-length": 0, "x-overflow": "reject-publish"}))
        amqp.call(1, commands.Confirm.Select())
        amqp.send(publish_bytes(1, "", queue))
        assert amqp.expect(commands.Basic.Nack, channel=1).delivery_tag == 1
        amqp.close_connection()


def test_exchange_bindings_without_the_capability(broker, unique):
    exchange = amqp_name(unique)
    with connect(broker, NOTHING) as amqp:
        amqp.call(1, commands.Exchange.Declare(exchange=exchange, exchange_type="fanout",
                                               auto_delete=True))
        reply = amqp.call(1, commands.Exchange.Bind(destination=exchange, source="amq.fanout"))
        assert isinstance(reply, commands.Exchange.BindOk)
        amqp.call(1, commands.Exchange.Delete(exchange=exchange))
        amqp.close_connection()


@pytest.mark.parametrize("capabilities", [NOTHING, {"per_consumer_qos": True}],
                         ids=["without", "with"])
def test_prefetch_is_per_consumer_with_or_without_the_capability(broker, unique, capabilities):
    """basic.qos global=false prefetch 1, two consumers on one channel: one delivery each."""
    queues = [amqp_name(unique, "a-"), amqp_name(unique, "b-")]
    with connect(broker, capabilities) as amqp:
        for queue in queues:
            amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        amqp.call(1, commands.Basic.Qos(prefetch_count=1))
        for queue in queues:
            amqp.call(1, commands.Basic.Consume(queue=queue, consumer_tag=queue))
        amqp.send(b"".join(publish_bytes(1, "", queue) for queue in queues * 2))
        assert frames_within(amqp).count("Basic.Deliver") == 2
        amqp.close_connection()
