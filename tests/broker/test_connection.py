"""Connection-level behaviour as a client sees it on the wire, checked against RabbitMQ 3.10.

Covers the protocol header, connection.start (server properties, capabilities, mechanisms), tune
and its negotiation, connection.close in both directions, channel.open/close/flow and channel
numbers, and heartbeats. Every expected value, reply code and reply text here is what a RabbitMQ
3.10.8 node sent (see RABBITMQ_TEXTS.md in this folder).
"""

from __future__ import annotations

import time

import aio_pika
import pika
import pika.exceptions
import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat
from raw_amqp import RawAMQP, amqp_name, assert_broker_works, close_summary, describe

# --------------------------------------------------------------------------------------------
# Protocol header
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"AMQP\x00\x00\x09\x00",
    b"AMQP\x01\x01\x00\x0a",
    b"AMQP\x00\x00\x08\x00",
    b"GARBAGE!",
], ids=["http", "amqp-0-9-0", "amqp-1-1-0-10", "amqp-0-8-0", "garbage"])
def test_wrong_protocol_header_gets_supported_header_and_close(broker, header):
    with RawAMQP.connect(broker) as amqp:
        amqp.send(header)
        assert amqp.read_bytes(8) == b"AMQP\x00\x00\x09\x01"
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# connection.start
# --------------------------------------------------------------------------------------------


def test_connection_start_fields(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        start = amqp.expect(commands.Connection.Start, channel=0)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms.split() == ["PLAIN", "AMQPLAIN"]
    assert start.locales == "en_US"


def test_server_properties(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        properties = amqp.expect(commands.Connection.Start).server_properties
    assert set(properties) == {
        "capabilities", "cluster_name", "copyright", "information", "platform", "product",
        "version",
    }
    for key in ("cluster_name", "copyright", "information", "platform", "product", "version"):
        assert isinstance(properties[key], str) and properties[key], key
    assert properties["capabilities"] == {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    }
    assert all(value is True for value in properties["capabilities"].values())


def test_pika_sees_server_capabilities(broker):
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    try:
        capabilities = connection._impl.server_capabilities
        assert capabilities["publisher_confirms"] is True
        assert capabilities["basic.nack"] is True
        assert capabilities["consumer_cancel_notify"] is True
    finally:
        connection.close()


async def test_aio_pika_connects_and_sees_capabilities(broker):
    connection = await aio_pika.connect(host=broker.host, port=broker.port)
    try:
        underlying = connection.transport.connection
        assert underlying.server_properties["capabilities"]["publisher_confirms"] is True
        tune = underlying.connection_tune
        assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        assert queue.name.startswith("amq.gen-")
    finally:
        await connection.close()


# --------------------------------------------------------------------------------------------
# connection.tune and negotiation
# --------------------------------------------------------------------------------------------


def test_tune_offers_rabbitmq_defaults(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.start_ok()
        tune = amqp.expect(commands.Connection.Tune, channel=0)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


def test_pika_lower_client_values_win(broker):
    params = pika.ConnectionParameters(broker.host, broker.port, heartbeat=5, frame_max=8192,
                                       channel_max=10)
    connection = pika.BlockingConnection(params)
    try:
        negotiated = connection._impl.params
        assert (negotiated.heartbeat, negotiated.frame_max, negotiated.channel_max) == (5, 8192, 10)
        channel = connection.channel()
        channel.queue_declare("", exclusive=True)
    finally:
        connection.close()


def test_pika_defaults_take_server_values(broker):
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    try:
        negotiated = connection._impl.params
        assert (negotiated.heartbeat, negotiated.frame_max, negotiated.channel_max) == (
            60, 131072, 2047)
    finally:
        connection.close()


def test_client_may_choose_a_longer_heartbeat(broker):
    """Heartbeat is the client's choice: RabbitMQ accepts 600 s even though it offered 60 s."""
    params = pika.ConnectionParameters(broker.host, broker.port, heartbeat=600)
    connection = pika.BlockingConnection(params)
    try:
        assert connection._impl.params.heartbeat == 600
        connection.channel().queue_declare("", exclusive=True)
    finally:
        connection.close()


def test_raw_lower_values_accepted(broker):
    with RawAMQP.connect(broker) as amqp:
        open_ok = amqp.handshake(heartbeat=0, frame_max=4096, channel_max=1)
        assert isinstance(open_ok, commands.Connection.OpenOk)
        amqp.open_channel(1)
        amqp.close_connection()


def test_server_splits_bodies_at_negotiated_frame_max(broker, unique):
    """With frame_max 4096 a 10000-byte body comes back as 4088 + 4088 + 1824 byte frames."""
    queue = amqp_name(unique, "q-")
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(frame_max=4096)
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        amqp.publish(1, "", queue, b"y" * 10000, frame_size=4000)
        assert isinstance(amqp.call(1, commands.Basic.Get(queue=queue, no_ack=True)),
                          commands.Basic.GetOk)
        assert amqp.expect(ContentHeader, channel=1).body_size == 10000
        sizes = []
        while sum(sizes) < 10000:
            sizes.append(len(amqp.expect(ContentBody, channel=1).value))
        assert sizes == [4088, 4088, 1824]
        amqp.close_connection()


def _tune_ok_then_open(broker, channel_max: int, frame_max: int) -> RawAMQP:
    amqp = RawAMQP.connect(broker, timeout=8)
    amqp.send_protocol_header()
    amqp.expect(commands.Connection.Start)
    amqp.start_ok()
    amqp.expect(commands.Connection.Tune)
    amqp.send_method(0, commands.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max,
                                                  heartbeat=0))
    amqp.send_method(0, commands.Connection.Open(virtual_host="/"))
    return amqp


def test_tune_ok_outside_limits_closes_the_socket_without_a_frame(broker):
    """RabbitMQ refuses tune-ok values beyond its limits by closing the TCP connection.

    It logs "failed to negotiate connection parameters: negotiated frame_max = 200000 is higher
    than the maximum allowed value (131072)" but sends no connection.close (it closes ~3 s
    later). The cases run side by side so the test takes one delay, not five.
    """
    cases = {
        "frame_max above 131072": (2047, 200000),
        "frame_max below 4096": (2047, 1000),
        "frame_max 0 (unlimited)": (2047, 0),
        "channel_max above 2047": (3000, 131072),
        "channel_max 0 (unlimited)": (0, 131072),
    }
    connections = {name: _tune_ok_then_open(broker, *values) for name, values in cases.items()}
    try:
        for name, amqp in connections.items():
            frames = amqp.wait_closed(timeout=6)
            assert frames == [], f"{name}: expected a silent close, got {describe(frames)}"
    finally:
        for amqp in connections.values():
            amqp.close()
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# connection.close
# --------------------------------------------------------------------------------------------


def test_client_close_gets_close_ok(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.open_channel(2)
        amqp.send_method(0, commands.Connection.Close(reply_code=200, reply_text="Normal shutdown",
                                                     class_id=0, method_id=0))
        amqp.expect(commands.Connection.CloseOk, channel=0)
    assert_broker_works(broker)


def test_pika_open_and_close(broker):
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    channel = connection.channel()
    assert channel.is_open
    channel.close()
    assert channel.is_closed
    connection.close()
    assert connection.is_closed


def test_close_before_connection_open_is_a_channel_error(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.start_ok()
        amqp.expect(commands.Connection.Tune)
        amqp.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                      heartbeat=0))
        amqp.send_method(0, commands.Connection.Close(reply_code=200, reply_text="bye",
                                                     class_id=0, method_id=0))
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            504, "CHANNEL_ERROR - unexpected method in connection state opening", 10, 50)
        assert amqp.is_closed(timeout=2)


def test_connection_open_twice_is_a_channel_error(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.send_method(0, commands.Connection.Open(virtual_host="/"))
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            504, "CHANNEL_ERROR - unexpected method in connection state running", 10, 40)
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------


def test_channel_open_twice_closes_the_connection(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Channel.Open())
        close = amqp.expect_connection_close()
        assert close_summary(close) == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


def test_channel_open_on_channel_zero(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.send_method(0, commands.Channel.Open())
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            504, "CHANNEL_ERROR - unexpected method in connection state running", 20, 10)
        assert amqp.is_closed(timeout=2)


def test_client_channel_close_and_reopen(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye",
                                                  class_id=0, method_id=0))
        amqp.expect(commands.Channel.CloseOk, channel=1)
        amqp.open_channel(1)
        declare_ok = amqp.call(1, commands.Queue.Declare(queue="", exclusive=True))
        assert isinstance(declare_ok, commands.Queue.DeclareOk)
        amqp.close_connection()


def test_server_channel_close_ignores_methods_until_close_ok(broker, unique):
    """After the broker closes a channel, everything but close-ok on it is dropped silently."""
    queue = amqp_name(unique, "missing-")
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        close = amqp.call(1, commands.Basic.Get(queue=queue))
        assert isinstance(close, commands.Channel.Close)
        assert close_summary(close) == (
            404, f"NOT_FOUND - no queue '{queue}' in vhost '/'", 60, 70)
        amqp.send_method(1, commands.Basic.Qos(prefetch_count=1))
        amqp.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
        amqp.send_method(1, commands.Channel.CloseOk())
        amqp.open_channel(1)
        assert isinstance(amqp.call(1, commands.Basic.Qos(prefetch_count=1)),
                          commands.Basic.QosOk)
        amqp.close_connection()


@pytest.mark.parametrize("method", [
    commands.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0),
    commands.Channel.CloseOk(),
    commands.Queue.Declare(queue="never-declared-unopened-channel"),
], ids=["close", "close-ok", "queue.declare"])
def test_method_on_unopened_channel(broker, method):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.send_method(5, method)
        close = amqp.expect_connection_close()
        class_id, method_id = divmod(method.index, 0x10000)
        assert close_summary(close) == (
            504, "CHANNEL_ERROR - expected 'channel.open'", class_id, method_id)
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


def test_channel_flow_active_true_gets_flow_ok(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        flow_ok = amqp.call(1, commands.Channel.Flow(active=True))
        assert isinstance(flow_ok, commands.Channel.FlowOk)
        assert flow_ok.active is True
        amqp.close_connection()


def test_channel_flow_active_false_is_not_implemented(broker):
    """RabbitMQ does not support client-side flow control: 540 closes the whole connection."""
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(1)
        amqp.send_method(1, commands.Channel.Flow(active=False))
        close = amqp.expect_connection_close()
        assert close_summary(close) == (540, "NOT_IMPLEMENTED - active=false", 20, 20)
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


def test_pika_channel_flow_false_raises(broker):
    connection = pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port))
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as raised:
        channel.flow(False)
    assert raised.value.reply_code == 540
    assert raised.value.reply_text == "NOT_IMPLEMENTED - active=false"


@pytest.mark.parametrize("number", [2047, 2048, 65535])
def test_channel_numbers_are_not_limited_by_channel_max(broker, number):
    """channel_max limits how many channels are open, not the channel numbers used."""
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake()
        amqp.open_channel(number)
        assert isinstance(amqp.call(number, commands.Basic.Qos(prefetch_count=1)),
                          commands.Basic.QosOk)
        amqp.close_connection()


def test_opening_more_channels_than_channel_max(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(channel_max=2)
        amqp.open_channel(1)
        amqp.open_channel(2)
        amqp.send_method(3, commands.Channel.Open())
        close = amqp.expect_connection_close()
        assert close_summary(close) == (
            530,
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated "
            "channel_max (2)",
            0, 0)
        assert amqp.is_closed(timeout=2)
    assert_broker_works(broker)


def test_closed_channel_frees_a_slot_under_channel_max(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(channel_max=1)
        amqp.open_channel(1)
        amqp.send_method(1, commands.Channel.Close(reply_code=200, reply_text="bye",
                                                  class_id=0, method_id=0))
        amqp.expect(commands.Channel.CloseOk, channel=1)
        amqp.open_channel(7)
        amqp.close_connection()


# --------------------------------------------------------------------------------------------
# Heartbeats
# --------------------------------------------------------------------------------------------


def test_server_sends_heartbeats_twice_per_interval(broker):
    """With heartbeat=1 negotiated, RabbitMQ sends a heartbeat frame every 0.5 s when idle."""
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(heartbeat=1)
        started = time.monotonic()
        beats = 0
        while time.monotonic() - started < 2.2:
            channel, frame = amqp.read_frame(timeout=2)
            assert isinstance(frame, Heartbeat), frame
            assert channel == 0
            beats += 1
            amqp.send_heartbeat()
        assert 4 <= beats <= 6  # (once an interval would be 3: its own heartbeat is not output)
        amqp.close_connection()


def test_silent_client_is_dropped_without_connection_close(broker):
    """A client that sends nothing is disconnected after ~2-3 intervals; RabbitMQ sends no
    connection.close, only heartbeats, then closes the TCP connection (3.0 s for heartbeat=1)."""
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(heartbeat=1)
        started = time.monotonic()
        frames = amqp.wait_closed(timeout=6)
        elapsed = time.monotonic() - started
        assert all(isinstance(frame, Heartbeat) for _, frame in frames), describe(frames)
        assert frames, "expected heartbeats before the broker gave up"
        assert 1.5 <= elapsed <= 5, elapsed
    assert_broker_works(broker)


def test_client_heartbeats_keep_the_connection_alive(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(heartbeat=1)
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            amqp.send_heartbeat()
            time.sleep(0.4)
        amqp.open_channel(1)
        amqp.close_connection()


def test_no_heartbeats_when_disabled_but_client_heartbeats_accepted(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(heartbeat=0)
        amqp.send_heartbeat()
        with pytest.raises(TimeoutError):
            amqp.read_frame(timeout=1.2)
        amqp.send_heartbeat()
        amqp.open_channel(1)
        amqp.close_connection()


def test_heartbeat_before_start_ok_is_ignored(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.send_heartbeat()
        amqp.start_ok()
        amqp.expect(commands.Connection.Tune)


# --------------------------------------------------------------------------------------------
# Handshake timeout
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_handshake_timeout_closes_silent_socket(broker):
    """A socket that never completes the protocol header is closed after 10 s, nothing sent."""
    with RawAMQP.connect(broker, timeout=15) as amqp:
        amqp.send(b"AMQP")
        started = time.monotonic()
        frames = amqp.wait_closed(timeout=15)
        assert frames == [], describe(frames)
        assert 8 <= time.monotonic() - started <= 13
