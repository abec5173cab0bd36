"""Authentication, virtual hosts and permissions, as RabbitMQ 3.10 reports them on the wire.

Users come from tests/definitions.json: guest/guest (all of `/`, nothing on `other`),
limited/limited (configure/write/read `^limited-` on `/`) and noperm/noperm (no permissions).
Reply codes and texts are the ones a RabbitMQ 3.10.8 node sent (see RABBITMQ_TEXTS.md).
"""

from __future__ import annotations

import aio_pika
import aiormq.exceptions
import pika
import pika.exceptions
import pytest
from brokers import non_loopback_address
from pamqp import commands, encode
from raw_amqp import (
    RawAMQP,
    amqp_name,
    amqplain_response,
    assert_broker_works,
    close_summary,
    describe,
)

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism {}. "
                 "For details see the broker logfile.")


def start_ok_reply(broker, user: str, password: str, mechanism: str = "PLAIN",
                   host: str | None = None, source: str | None = None
                   ) -> commands.Connection.Close:
    """Send start-ok with the given credentials; return the broker's connection.close."""
    with RawAMQP.connect(broker, host=host, source=source) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.start_ok(user, password, mechanism)
        close = amqp.expect_connection_close()
        assert amqp.is_closed(timeout=2), "socket still open after close-ok"
        return close


def open_reply(broker, user: str, password: str, vhost: str) -> commands.Connection.Close:
    """Complete the handshake up to connection.open; return the broker's answer to it."""
    with RawAMQP.connect(broker) as amqp:
        reply = amqp.handshake(user, password, vhost)
        assert isinstance(reply, commands.Connection.Close), reply
        amqp.send_method(0, commands.Connection.CloseOk())
        assert amqp.is_closed(timeout=2), "socket still open after close-ok"
        return reply


def pika_connect(broker, user: str, password: str, vhost: str = "/", host: str | None = None):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host or broker.host, broker.port, vhost, pika.PlainCredentials(user, password),
        connection_attempts=1))


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user, password", [
    ("guest", "wrong"), ("nobody", "guest"), ("limited", "guest"), ("guest", ""),
], ids=["wrong-password", "unknown-user", "other-users-password", "empty-password"])
def test_bad_credentials_get_403_then_close(broker, user, password):
    close = start_ok_reply(broker, user, password)
    assert close_summary(close) == (403, LOGIN_REFUSED.format("PLAIN"), 0, 0)
    assert_broker_works(broker)


def test_pika_reports_authentication_error(broker):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as raised:
        pika_connect(broker, "guest", "wrong")
    assert "(403)" in str(raised.value)
    assert LOGIN_REFUSED.format("PLAIN") in str(raised.value)


async def test_aio_pika_reports_authentication_error(broker):
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as raised:
        await aio_pika.connect(host=broker.host, port=broker.port, login="guest",
                               password="wrong")
    assert raised.value.args == (LOGIN_REFUSED.format("PLAIN"),)


def test_amqplain_login(broker):
    with RawAMQP.connect(broker) as amqp:
        assert isinstance(amqp.handshake(mechanism="AMQPLAIN"), commands.Connection.OpenOk)
        amqp.open_channel(1)
        amqp.close_connection()


def test_amqplain_wrong_password(broker):
    close = start_ok_reply(broker, "guest", "wrong", mechanism="AMQPLAIN")
    assert close_summary(close) == (403, LOGIN_REFUSED.format("AMQPLAIN"), 0, 0)


def test_other_users_can_log_in(broker):
    with RawAMQP.connect(broker) as amqp:
        assert isinstance(amqp.handshake("limited", "limited"), commands.Connection.OpenOk)
        amqp.close_connection()


def _start_ok_raw(broker, mechanism: str, response: str, capabilities: bool = True) -> RawAMQP:
    amqp = RawAMQP.connect(broker, timeout=8)
    amqp.send_protocol_header()
    amqp.expect(commands.Connection.Start)
    properties = {"capabilities": {"authentication_failure_close": True}} if capabilities else {}
    amqp.send_method(0, commands.Connection.StartOk(
        client_properties=properties, mechanism=mechanism, response=response, locale="en_US"))
    return amqp


def test_handshake_failures_close_the_socket_without_a_frame(broker):
    """These fail the handshake silently: no connection.close, the TCP connection just ends
    (RabbitMQ waits ~3 s first). They run side by side so the test pays that delay once."""
    cases = {
        "unknown mechanism": ("FOO", "\0guest\0guest", True),
        "malformed PLAIN response": ("PLAIN", "garbage", True),
        "malformed AMQPLAIN response": ("AMQPLAIN", "garbage", True),
        "mechanism in lower case": ("plain", "\0guest\0guest", True),
        "PLAIN response without password": ("PLAIN", "\0guest", True),
        "truncated AMQPLAIN table": ("AMQPLAIN", amqplain_response("guest", "x")[:12], True),
        "AMQPLAIN without PASSWORD": ("AMQPLAIN", encode.field_table({"LOGIN": "guest"})[4:]
                                      .decode(), True),
        # without the authentication_failure_close capability a refused login is silent too
        "wrong password, no capability": ("PLAIN", "\0guest\0wrong", False),
    }
    connections = {name: _start_ok_raw(broker, *case) for name, case in cases.items()}
    try:
        for name, amqp in connections.items():
            frames = amqp.wait_closed(timeout=6)
            assert frames == [], f"{name}: expected a silent close, got {describe(frames)}"
    finally:
        for amqp in connections.values():
            amqp.close()
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# Virtual hosts
# --------------------------------------------------------------------------------------------


def test_unknown_vhost(broker):
    close = open_reply(broker, "guest", "guest", "no-such-vhost")
    assert close_summary(close) == (530, "NOT_ALLOWED - vhost no-such-vhost not found", 10, 40)


@pytest.mark.parametrize("user, vhost", [("guest", "other"), ("noperm", "/"), ("limited", "other")])
def test_vhost_without_permission(broker, user, vhost):
    close = open_reply(broker, user, user, vhost)
    assert close_summary(close) == (
        530, f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'", 10, 40)
    assert_broker_works(broker)


def test_pika_reports_access_denied(broker):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as raised:
        pika_connect(broker, "guest", "guest", vhost="other")
    assert "(530)" in str(raised.value)
    assert "NOT_ALLOWED - access to vhost 'other' refused for user 'guest'" in str(raised.value)


async def test_aio_pika_refused_vhost_fails_the_connect(broker):
    """aiormq expects open-ok and reports the 530 connection.close as an invalid frame."""
    with pytest.raises(aiormq.exceptions.AMQPError):
        await aio_pika.connect(host=broker.host, port=broker.port, virtualhost="other")


# --------------------------------------------------------------------------------------------
# Permissions: user `limited` may configure/write/read only names matching ^limited-
# --------------------------------------------------------------------------------------------


def refused(kind: str, name: str) -> str:
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user 'limited'"


@pytest.fixture
def names(broker, unique):
    """Queues and exchanges owned by guest: limited-q/limited-ex match limited's permissions,
    other-q/other-ex do not. Deleted afterwards."""
    base = amqp_name(unique)
    created = {
        "limited_q": f"limited-q-{base}", "other_q": f"other-q-{base}",
        "limited_ex": f"limited-ex-{base}", "other_ex": f"other-ex-{base}",
    }
    with RawAMQP.connect(broker) as guest:
        guest.handshake()
        guest.open_channel(1)
        for key, name in created.items():
            if key.endswith("_q"):
                method = commands.Queue.Declare(queue=name)
            else:
                method = commands.Exchange.Declare(exchange=name, exchange_type="direct")
            assert not isinstance(guest.call(1, method), commands.Channel.Close)
        yield created
        for key, name in created.items():
            if key.endswith("_q"):
                guest.call(1, commands.Queue.Delete(queue=name))
            else:
                guest.call(1, commands.Exchange.Delete(exchange=name))
        guest.close_connection()


@pytest.fixture
def limited(broker):
    """A raw connection of user `limited` on `/` with channel 1 open."""
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake("limited", "limited")
        amqp.open_channel(1)
        yield amqp


def publish_then_sync(amqp: RawAMQP, exchange: str, routing_key: str = "k") -> object:
    """Publish a message, then basic.qos; return the first reply (qos-ok if publish was fine)."""
    amqp.publish(1, exchange, routing_key, b"hello")
    return amqp.call(1, commands.Basic.Qos(prefetch_count=0))


def assert_refused(reply, kind: str, name: str, class_id: int, method_id: int) -> None:
    assert isinstance(reply, commands.Channel.Close), reply
    assert close_summary(reply) == (403, refused(kind, name), class_id, method_id)


def test_declare_permitted_queue_and_exchange(limited, unique):
    queue, exchange = amqp_name(unique, "limited-q-"), amqp_name(unique, "limited-ex-")
    assert isinstance(limited.call(1, commands.Queue.Declare(queue=queue, auto_delete=True)),
                      commands.Queue.DeclareOk)
    assert isinstance(limited.call(1, commands.Exchange.Declare(exchange=exchange,
                                                                auto_delete=True)),
                      commands.Exchange.DeclareOk)


def test_declare_queue_refused(limited, unique):
    queue = amqp_name(unique, "other-q-")
    reply = limited.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    assert_refused(reply, "queue", queue, 50, 10)


def test_declare_server_named_queue_refused(limited):
    """The generated amq.gen-... name is checked against configure, and refused."""
    reply = limited.call(1, commands.Queue.Declare(queue="", exclusive=True))
    assert isinstance(reply, commands.Channel.Close)
    assert reply.reply_code == 403
    assert reply.reply_text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    assert reply.reply_text.endswith("' in vhost '/' refused for user 'limited'")
    assert (reply.class_id, reply.method_id) == (50, 10)


def test_declare_exchange_refused(limited, unique):
    exchange = amqp_name(unique, "other-ex-")
    reply = limited.call(1, commands.Exchange.Declare(exchange=exchange))
    assert_refused(reply, "exchange", exchange, 40, 10)


def test_passive_declare_needs_no_permission(limited, names):
    assert isinstance(limited.call(1, commands.Queue.Declare(queue=names["other_q"],
                                                             passive=True)),
                      commands.Queue.DeclareOk)
    assert isinstance(limited.call(1, commands.Exchange.Declare(exchange=names["other_ex"],
                                                                passive=True)),
                      commands.Exchange.DeclareOk)


def test_passive_declare_missing_queue_is_404_not_403(limited, unique):
    queue = amqp_name(unique, "other-missing-")
    reply = limited.call(1, commands.Queue.Declare(queue=queue, passive=True))
    assert close_summary(reply) == (404, f"NOT_FOUND - no queue '{queue}' in vhost '/'", 50, 10)


def test_publish_to_permitted_exchange(limited, names):
    assert isinstance(publish_then_sync(limited, names["limited_ex"]), commands.Basic.QosOk)


@pytest.mark.parametrize("exchange_key", ["other_ex", "amq.direct", "amq.default"])
def test_publish_refused(limited, names, exchange_key):
    exchange = names.get(exchange_key, exchange_key)
    wire_name = "" if exchange == "amq.default" else exchange
    reply = publish_then_sync(limited, wire_name, names["limited_q"])
    assert_refused(reply, "exchange", exchange, 60, 40)


def test_publish_to_missing_exchange_checks_permission_first(limited, unique):
    refused_name = amqp_name(unique, "other-nothere-")
    assert_refused(publish_then_sync(limited, refused_name), "exchange", refused_name, 60, 40)


def test_publish_to_missing_permitted_exchange_is_404(broker, unique):
    exchange = amqp_name(unique, "limited-nothere-")
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake("limited", "limited")
        amqp.open_channel(1)
        reply = publish_then_sync(amqp, exchange)
        assert close_summary(reply) == (
            404, f"NOT_FOUND - no exchange '{exchange}' in vhost '/'", 60, 40)


def test_consume_and_get(limited, names):
    consume_ok = limited.call(1, commands.Basic.Consume(queue=names["limited_q"],
                                                        consumer_tag="c1"))
    assert isinstance(consume_ok, commands.Basic.ConsumeOk)
    assert isinstance(limited.call(1, commands.Basic.Get(queue=names["limited_q"])),
                      commands.Basic.GetEmpty)


def test_consume_refused(limited, names):
    reply = limited.call(1, commands.Basic.Consume(queue=names["other_q"]))
    assert_refused(reply, "queue", names["other_q"], 60, 20)


def test_get_refused(limited, names):
    reply = limited.call(1, commands.Basic.Get(queue=names["other_q"]))
    assert_refused(reply, "queue", names["other_q"], 60, 70)


def test_bind_permitted(limited, names):
    reply = limited.call(1, commands.Queue.Bind(queue=names["limited_q"],
                                                exchange=names["limited_ex"], routing_key="k"))
    assert isinstance(reply, commands.Queue.BindOk)


def test_bind_needs_read_on_exchange(limited, names):
    reply = limited.call(1, commands.Queue.Bind(queue=names["limited_q"], exchange="amq.direct",
                                                routing_key="k"))
    assert_refused(reply, "exchange", "amq.direct", 50, 20)


def test_bind_needs_write_on_queue(limited, names):
    reply = limited.call(1, commands.Queue.Bind(queue=names["other_q"],
                                                exchange=names["limited_ex"], routing_key="k"))
    assert_refused(reply, "queue", names["other_q"], 50, 20)


def test_bind_checks_queue_before_exchange(limited, names):
    reply = limited.call(1, commands.Queue.Bind(queue=names["other_q"],
                                                exchange=names["other_ex"], routing_key="k"))
    assert_refused(reply, "queue", names["other_q"], 50, 20)


def test_unbind_needs_read_on_exchange(limited, names):
    reply = limited.call(1, commands.Queue.Unbind(queue=names["limited_q"], exchange="amq.direct",
                                                  routing_key="k"))
    assert_refused(reply, "exchange", "amq.direct", 50, 50)


def test_purge_refused(limited, names):
    reply = limited.call(1, commands.Queue.Purge(queue=names["other_q"]))
    assert_refused(reply, "queue", names["other_q"], 50, 30)


def test_delete_queue_refused(limited, names):
    reply = limited.call(1, commands.Queue.Delete(queue=names["other_q"]))
    assert_refused(reply, "queue", names["other_q"], 50, 40)


def test_delete_exchange_refused(limited, names):
    reply = limited.call(1, commands.Exchange.Delete(exchange=names["other_ex"]))
    assert_refused(reply, "exchange", names["other_ex"], 40, 20)


@pytest.mark.parametrize("destination_key, source_key", [
    ("limited_ex", "other_ex"), ("other_ex", "limited_ex"),
], ids=["read-on-source", "write-on-destination"])
def test_exchange_bind_refused(limited, names, destination_key, source_key):
    reply = limited.call(1, commands.Exchange.Bind(destination=names[destination_key],
                                                   source=names[source_key], routing_key="k"))
    assert_refused(reply, "exchange", names["other_ex"], 40, 30)


def test_refusal_closes_only_the_channel(limited, names):
    reply = limited.call(1, commands.Basic.Get(queue=names["other_q"]))
    assert isinstance(reply, commands.Channel.Close)
    limited.send_method(1, commands.Channel.CloseOk())
    limited.open_channel(2)
    assert isinstance(limited.call(2, commands.Basic.Get(queue=names["limited_q"])),
                      commands.Basic.GetEmpty)
    limited.close_connection()


def test_pika_permission_error(broker, names):
    connection = pika_connect(broker, "limited", "limited")
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
            channel.queue_declare(names["other_q"] + "-new")
        assert raised.value.reply_code == 403
        assert raised.value.reply_text == refused("queue", names["other_q"] + "-new")
        assert connection.is_open
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# guest from another host, and a replaced default user (Warren only)
# --------------------------------------------------------------------------------------------


def test_guest_refused_from_non_loopback_address(broker):
    address = non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    close = start_ok_reply(broker, "guest", "guest", host=address)
    assert close_summary(close) == (403, LOGIN_REFUSED.format("PLAIN"), 0, 0)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika_connect(broker, "guest", "guest", host=address)
    # other users are not loopback-only
    with RawAMQP.connect(broker, host=address) as amqp:
        assert isinstance(amqp.handshake("limited", "limited"), commands.Connection.OpenOk)
        amqp.close_connection()


def test_guest_is_judged_by_the_address_it_connected_to(broker):
    """RabbitMQ 3.10 judges a loopback-only user by the socket's local address (the address the
    client connected to), not the client's: from this host's own address to 127.0.0.1 guest
    gets in, from 127.0.0.1 to the host's address it does not (RABBITMQ_TEXTS.md)."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    with RawAMQP.connect(broker, host="127.0.0.1", source=address) as amqp:
        assert isinstance(amqp.handshake("guest", "guest"), commands.Connection.OpenOk)
        amqp.close_connection()
    close = start_ok_reply(broker, "guest", "guest", host=address, source="127.0.0.1")
    assert close_summary(close) == (403, LOGIN_REFUSED.format("PLAIN"), 0, 0)
    if broker.process is not None:
        assert "PLAIN login refused: user 'guest' can only connect via localhost" in (
            broker.log_text())


def test_default_user_and_vhost_from_environment(warren_factory):
    warren = warren_factory(env={"WARREN_DEFAULT_USER": "admin",
                                 "WARREN_DEFAULT_PASS": "s3cret",
                                 "WARREN_DEFAULT_VHOST": "prod"})
    with RawAMQP.connect(warren) as amqp:
        assert isinstance(amqp.handshake("admin", "s3cret", "prod"), commands.Connection.OpenOk)
        amqp.open_channel(1)
        assert isinstance(amqp.call(1, commands.Queue.Declare(queue="admin-q")),
                          commands.Queue.DeclareOk)
        amqp.close_connection()
    close = start_ok_reply(warren, "guest", "guest")
    assert close_summary(close) == (403, LOGIN_REFUSED.format("PLAIN"), 0, 0)
    warren.assert_alive()
