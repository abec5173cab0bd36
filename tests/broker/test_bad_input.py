"""Malformed and out-of-order input over a raw socket, after (or during) a correct handshake.

For each case the test asserts exactly what RabbitMQ 3.10.8 answered: a connection.close with
its reply code, text and (class_id, method_id), or a plain TCP close with no frame. After each
case another connection must still work and the broker must still be running.

Reply texts of frame errors quote the offending frame the way Erlang prints binaries
(`<<0,20,0,10,0>>`, or `<<"abc">>` when all bytes are printable). RabbitMQ allows a frame
payload of up to frame_max bytes (not frame_max - 8) but names frame_max - 8 in the error.
"""

from __future__ import annotations

import socket
import struct

import pytest
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from raw_amqp import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    RawAMQP,
    amqp_name,
    assert_broker_works,
    close_summary,
    describe,
    method_payload,
    raw_frame,
)

UNEXPECTED_NON_METHOD = "UNEXPECTED_FRAME - expected method frame, got non method frame instead"


@pytest.fixture
def amqp(broker):
    """A raw connection of guest on `/`, handshake done (no heartbeats), channel 1 open."""
    with RawAMQP.connect(broker) as connection:
        connection.handshake()
        connection.open_channel(1)
        yield connection
    assert_broker_works(broker)


def expect_close(amqp: RawAMQP, code: int, text: str, class_id: int = 0, method_id: int = 0,
                 wait_for_eof: bool = True) -> None:
    """The broker answers with exactly this connection.close (we reply close-ok), then ends the
    connection. After a fatal frame error RabbitMQ ignores close-ok and closes ~3 s later;
    those tests skip the wait (test_socket_closed_after_fatal_frame_error covers it once)."""
    close = amqp.expect_connection_close()
    assert close_summary(close) == (code, text, class_id, method_id)
    if wait_for_eof:
        assert amqp.is_closed(timeout=5), "socket still open 5 s after connection.close/close-ok"


# --------------------------------------------------------------------------------------------
# Frame-level errors (501 FRAME_ERROR)
# --------------------------------------------------------------------------------------------


GARBAGE_CLOSE_TEXT = (
    # "GARB" is read as type 71 ('G'), channel 0x4152, size 0x42414745.
    "FRAME_ERROR - type 71, all octets = <<>>: {frame_too_large,1111574341,131064}")


def test_garbage_bytes(amqp):
    amqp.send(b"GARBAGE GARBAGE GARBAGE!")
    expect_close(amqp, 501, GARBAGE_CLOSE_TEXT, wait_for_eof=False)


def test_socket_closed_after_fatal_frame_error(amqp):
    """After a frame it cannot delimit, the broker stops parsing and closes the socket (within
    ~3 s in RabbitMQ) whether or not close-ok arrives."""
    amqp.send(b"GARBAGE GARBAGE GARBAGE!")
    close = amqp.read_method()[1]
    assert close_summary(close) == (501, GARBAGE_CLOSE_TEXT, 0, 0)
    assert amqp.is_closed(timeout=5)


def test_frame_end_byte_not_0xce(amqp):
    amqp.send(raw_frame(FRAME_METHOD, 1, method_payload(20, 10, b"\x00"), end=b"\x00"))
    expect_close(amqp, 501, "FRAME_ERROR - type 1, all octets = <<0,20,0,10,0>>: "
                            "{invalid_frame_end_marker,0}", wait_for_eof=False)


def test_unknown_frame_type(amqp):
    amqp.send(raw_frame(9, 1, b"abc"))
    expect_close(amqp, 501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame')


def test_empty_method_frame(amqp):
    amqp.send(raw_frame(FRAME_METHOD, 1, b""))
    expect_close(amqp, 501, "FRAME_ERROR - type 1, all octets = <<>>: unknown_frame")


def test_method_frame_too_short_for_ids(amqp):
    amqp.send(raw_frame(FRAME_METHOD, 1, b"\x00\x32"))
    expect_close(amqp, 501, "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame")


def test_truncated_method_arguments(amqp):
    amqp.send(raw_frame(FRAME_METHOD, 1, method_payload(50, 10, b"\x00")))
    expect_close(amqp, 501, "FRAME_ERROR - cannot decode <<0>>", 50, 10)


def test_heartbeat_with_payload(amqp):
    amqp.send(raw_frame(FRAME_HEARTBEAT, 0, b"xx"))
    expect_close(amqp, 501, 'FRAME_ERROR - type 8, all octets = <<"xx">>: unknown_frame')


# --------------------------------------------------------------------------------------------
# Frame size against frame_max
# --------------------------------------------------------------------------------------------


def test_frame_larger_than_default_frame_max(amqp):
    amqp.send(raw_frame(FRAME_METHOD, 1, method_payload(50, 10, b"x" * 131073)))
    expect_close(amqp, 501,
                 "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131077,131064}",
                 wait_for_eof=False)


def test_frame_larger_than_negotiated_frame_max(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(frame_max=4096)
        amqp.open_channel(1)
        amqp.send(raw_frame(FRAME_BODY, 1, b"x" * 4097))
        expect_close(amqp, 501,
                     "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}",
                     wait_for_eof=False)
    assert_broker_works(broker)


def test_oversized_frame_is_refused_from_its_header_alone(amqp):
    """The size in the 7-byte frame header is enough: the broker does not wait for the body."""
    amqp.send(struct.pack(">BHI", FRAME_BODY, 1, 10_000_000))
    expect_close(amqp, 501,
                 "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,10000000,131064}",
                 wait_for_eof=False)


def test_body_frame_of_exactly_frame_max_payload_is_accepted(broker, unique):
    """RabbitMQ accepts a payload of frame_max bytes (a 4104-byte frame with frame_max=4096)."""
    queue = amqp_name(unique, "q-")
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(frame_max=4096)
        amqp.open_channel(1)
        amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        body = bytes(range(256)) * 16
        amqp.publish(1, "", queue, body, frame_size=4096)
        get_ok = amqp.call(1, commands.Basic.Get(queue=queue, no_ack=True))
        assert isinstance(get_ok, commands.Basic.GetOk), get_ok
        amqp.expect(ContentHeader, channel=1)
        received = b""
        while len(received) < len(body):
            received += amqp.expect(ContentBody, channel=1).value
        assert received == body
        amqp.close_connection()


# --------------------------------------------------------------------------------------------
# Content frames out of order (505 UNEXPECTED_FRAME)
# --------------------------------------------------------------------------------------------


def test_content_header_without_publish(amqp):
    amqp.send_frame(1, ContentHeader(0, 5, commands.Basic.Properties()))
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_content_body_without_publish(amqp):
    amqp.send_frame(1, ContentBody(b"hello"))
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_body_frame_without_publish_at_frame_max(amqp):
    """A 131072-byte payload passes the size check, then fails as an unexpected frame."""
    amqp.send(raw_frame(FRAME_BODY, 1, b"x" * 131072))
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_method_instead_of_content_header(amqp):
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    amqp.send_method(1, commands.Basic.Qos(prefetch_count=1))
    expect_close(amqp, 505, "UNEXPECTED_FRAME - expected content header for class 60, "
                            "got non content header frame instead", 60, 40)


def test_method_instead_of_content_body(amqp):
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    amqp.send_frame(1, ContentHeader(0, 5, commands.Basic.Properties()))
    amqp.send_method(1, commands.Basic.Qos(prefetch_count=1))
    expect_close(amqp, 505, "UNEXPECTED_FRAME - expected content body, "
                            "got non content body frame instead", 60, 40)


def test_content_header_of_another_class(amqp):
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    amqp.send(raw_frame(FRAME_HEADER, 1, struct.pack(">HHQH", 50, 0, 5, 0)))
    expect_close(amqp, 505, "UNEXPECTED_FRAME - expected content header for class 60, "
                            "got one for class 50 instead", 60, 40)


def test_content_header_on_another_channel(amqp):
    amqp.open_channel(2)
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    amqp.send_frame(2, ContentHeader(0, 5, commands.Basic.Properties()))
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_body_longer_than_declared_keeps_waiting_for_body(amqp):
    """RabbitMQ does not check a body overrun: it counts down past zero, keeps expecting body
    frames, and fails only when the next method arrives."""
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key="nowhere"))
    amqp.send_frame(1, ContentHeader(0, 5, commands.Basic.Properties()))
    amqp.send_frame(1, ContentBody(b"0123456789"))
    with pytest.raises(TimeoutError):
        amqp.read_frame(timeout=0.5)
    amqp.send_method(1, commands.Basic.Qos(prefetch_count=1))
    expect_close(amqp, 505, "UNEXPECTED_FRAME - expected content body, "
                            "got non content body frame instead", 60, 40)


def test_zero_size_body_needs_no_body_frame(amqp, unique):
    queue = amqp_name(unique, "q-")
    amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
    amqp.send_method(1, commands.Basic.Publish(exchange="", routing_key=queue))
    amqp.send_frame(1, ContentHeader(0, 0, commands.Basic.Properties()))
    assert isinstance(amqp.call(1, commands.Basic.Qos(prefetch_count=1)), commands.Basic.QosOk)
    get_ok = amqp.call(1, commands.Basic.Get(queue=queue, no_ack=True))
    assert isinstance(get_ok, commands.Basic.GetOk)
    assert amqp.expect(ContentHeader, channel=1).body_size == 0
    amqp.close_connection()


def test_heartbeat_on_a_channel_other_than_zero(amqp):
    amqp.send(raw_frame(FRAME_HEARTBEAT, 1, b""))
    expect_close(amqp, 505, "UNEXPECTED_FRAME - type 8, all octets = <<>>")


# --------------------------------------------------------------------------------------------
# Methods in the wrong place
# --------------------------------------------------------------------------------------------


def test_method_on_a_channel_that_is_not_open(amqp):
    amqp.send_method(5, commands.Queue.Declare(queue="never-declared"))
    expect_close(amqp, 504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)


def test_channel_method_on_channel_zero(amqp):
    amqp.send_method(0, commands.Queue.Declare(queue="never-declared"))
    expect_close(amqp, 504, "CHANNEL_ERROR - unexpected method in connection state running",
                 50, 10)


def test_channel_open_before_connection_open(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.start_ok()
        amqp.expect(commands.Connection.Tune)
        amqp.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                      heartbeat=0))
        amqp.send_method(1, commands.Channel.Open())
        # pamqp encodes channel.open's reserved out-of-band shortstr as "0" (48).
        expect_close(amqp, 505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>")
    assert_broker_works(broker)


@pytest.mark.parametrize("channel, class_id, method_id", [
    (1, 99, 10), (1, 60, 99), (0, 10, 99),
], ids=["unknown-class", "unknown-basic-method", "unknown-connection-method"])
def test_unknown_method_gets_540_not_implemented(amqp, channel, class_id, method_id):
    """A deliberate difference from RabbitMQ 3.10, whose reader crashes on an unknown
    (class, method) and drops the TCP connection without a word: Warren says what was wrong,
    with the reply code the spec gives for it, and closes the connection."""
    amqp.send(raw_frame(FRAME_METHOD, channel, method_payload(class_id, method_id)))
    expect_close(amqp, 540, f"NOT_IMPLEMENTED - unknown method class {class_id} method "
                            f"{method_id}", class_id, method_id)


# --------------------------------------------------------------------------------------------
# Truncated input
# --------------------------------------------------------------------------------------------


def test_truncated_frame_then_eof(amqp):
    frame = raw_frame(FRAME_METHOD, 1, method_payload(50, 10, b"x" * 100))
    amqp.send(frame[:30])
    amqp.sock.shutdown(socket.SHUT_WR)
    frames = amqp.wait_closed(timeout=3)
    assert frames == [], describe(frames)


def test_truncated_frame_waits_for_the_rest(amqp, unique):
    """Half a frame is not an error: the broker waits for the rest (here sent 0.3 s later)."""
    queue = amqp_name(unique, "q-")
    frame = raw_frame(FRAME_METHOD, 1, method_payload(50, 10) + commands.Queue.Declare(
        queue=queue, auto_delete=True).marshal())
    amqp.send(frame[:9])
    with pytest.raises(TimeoutError):
        amqp.read_frame(timeout=0.3)
    amqp.send(frame[9:])
    assert isinstance(amqp.read_method()[1], commands.Queue.DeclareOk)
    amqp.close_connection()


def test_eof_right_after_the_protocol_header(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.sock.shutdown(socket.SHUT_WR)
        frames = amqp.wait_closed(timeout=5)
        assert frames == [], describe(frames)
    assert_broker_works(broker)
