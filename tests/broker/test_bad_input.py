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
import time

import pytest
from amqp_raw import (
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
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

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
def test_unknown_method_gets_540_not_implemented(broker, amqp, channel, class_id, method_id):
    """A deliberate difference from RabbitMQ 3.10, whose reader crashes on an unknown
    (class, method) and drops the TCP connection without a word: Warren says what was wrong,
    with the reply code the spec gives for it, and closes the connection."""
    amqp.send(raw_frame(FRAME_METHOD, channel, method_payload(class_id, method_id)))
    if not broker.is_warren:
        assert amqp.wait_closed(timeout=2) == []
        return
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


# --------------------------------------------------------------------------------------------
# Found by the frame fuzzer (tests/fuzz): where RabbitMQ checks what, and in which order
# --------------------------------------------------------------------------------------------


def shortstr(value: bytes) -> bytes:
    return bytes((len(value),)) + value


def method_frame(channel: int, class_id: int, method_id: int, arguments: bytes = b"") -> bytes:
    return raw_frame(FRAME_METHOD, channel, method_payload(class_id, method_id, arguments))


def header_frame(channel: int, body_size: int, properties: bytes = b"\x00\x00",
                 class_id: int = 60, weight: int = 0) -> bytes:
    return raw_frame(FRAME_HEADER, channel,
                     struct.pack(">HHQ", class_id, weight, body_size) + properties)


def publish_frame(channel: int, routing_key: bytes = b"nowhere", extra: bytes = b"") -> bytes:
    return method_frame(channel, 60, 40, b"\x00\x00" + shortstr(b"") + shortstr(routing_key)
                        + b"\x00" + extra)


def tuned(broker) -> RawAMQP:
    """A raw connection whose tune-ok is sent: connection.open comes next."""
    amqp = RawAMQP.connect(broker)
    amqp.send_protocol_header()
    amqp.expect(commands.Connection.Start)
    amqp.start_ok()
    amqp.expect(commands.Connection.Tune)
    amqp.send_method(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                  heartbeat=0))
    return amqp


START_OK = commands.Connection.StartOk(
    client_properties={"capabilities": {"authentication_failure_close": True}},
    mechanism="PLAIN", response="\0guest\0guest", locale="en_US")


HANDSHAKE_ERRORS = {  # name: (stage, bytes)
    "start-ok-trailing-byte": (
        "start_ok", raw_frame(FRAME_METHOD, 0, method_payload(10, 11) + START_OK.marshal() + b"x")),
    "start-ok-bad-frame-end": (
        "start_ok", raw_frame(FRAME_METHOD, 0, method_payload(10, 11) + START_OK.marshal(),
                              end=b"\x00")),
    "tune-ok-truncated": ("tune_ok", method_frame(0, 10, 31, b"\x07\xff\x00\x02")),
    "short-header-while-tuning": ("tune_ok", raw_frame(FRAME_HEADER, 0, bytes(4))),
    "open-without-its-bits": ("open", method_frame(0, 10, 40, shortstr(b"/") + shortstr(b""))),
}


def test_handshake_errors_get_no_frame_and_a_delayed_close(broker):
    """Before the connection is open RabbitMQ answers bad frames with silence (an undecodable
    connection.open too), where Warren used to send a connection.close. All cases at once, so
    that their 3 s run side by side."""
    connections = {}
    try:
        for name, (stage, data) in HANDSHAKE_ERRORS.items():
            amqp = connections[name] = RawAMQP.connect(broker)
            amqp.send_protocol_header()
            amqp.expect(commands.Connection.Start)
            if stage != "start_ok":
                amqp.start_ok()
                amqp.expect(commands.Connection.Tune)
            if stage == "open":
                amqp.send_method(0, commands.Connection.TuneOk(
                    channel_max=2047, frame_max=131072, heartbeat=0))
            amqp.send(data)
        time.sleep(1.5)
        for name, amqp in connections.items():
            with pytest.raises(TimeoutError):
                frames = amqp.wait_closed(timeout=0.01)
                pytest.fail(f"{name}: socket closed within 1.5 s; frames: {describe(frames)}")
        for name, amqp in connections.items():
            frames = amqp.wait_closed(timeout=4)
            assert frames == [], (name, describe(frames))
    finally:
        for amqp in connections.values():
            amqp.close()
    assert_broker_works(broker)


def test_unknown_method_in_the_handshake_drops_the_socket_at_once(broker):
    """RabbitMQ's reader crashes on it: no frame, no delay (Warren's 540 is for open
    connections only)."""
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.send(method_frame(0, 10, 12))
        assert amqp.wait_closed(timeout=1) == []


def test_connection_open_errors_are_answered_once_tuned(broker):
    """After tune-ok RabbitMQ answers AMQP errors with connection.close (here a vhost name that
    is not UTF-8), and judges frames with the negotiated frame_max even when they arrive in the
    same write as the tune-ok."""
    with tuned(broker) as amqp:
        amqp.send(method_frame(0, 10, 40, shortstr(b"\xc3\x28") + shortstr(b"") + b"\x00"))
        expect_close(amqp, 501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 10, 40)
    for tail, answer in (
        # A frame over the 4096 octets allowed before tune-ok, judged after it (131072).
        (raw_frame(FRAME_BODY, 0, b"a" * 5000),
         (505, 'UNEXPECTED_FRAME - type 3, first 16 octets = <<"aaaaaaaaaaaaaaaa">>', 0, 0)),
        # A frame error after the tune-ok in the same write is judged after it.
        (method_frame(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00")[:-1] + b"\x00",
         (501, "FRAME_ERROR - type 1, all octets = <<0,10,0,40,1,47,0,0>>: "
               "{invalid_frame_end_marker,0}", 0, 0)),
    ):
        with RawAMQP.connect(broker) as amqp:
            amqp.send_protocol_header()
            amqp.expect(commands.Connection.Start)
            amqp.start_ok()
            amqp.expect(commands.Connection.Tune)
            tune_ok = commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0)
            amqp.send(raw_frame(FRAME_METHOD, 0, method_payload(10, 31) + tune_ok.marshal())
                      + tail)
            assert close_summary(amqp.expect_connection_close()) == answer


def test_protocol_header_is_judged_on_all_8_bytes(broker):
    with RawAMQP.connect(broker) as amqp:
        amqp.send(b"\xff")
        with pytest.raises(TimeoutError):
            amqp.read_bytes(8, timeout=0.5)
        amqp.send(b"MQP\x00\x00\x09\x01")
        assert amqp.read_bytes(8) == b"AMQP\x00\x00\x09\x01"
        assert amqp.is_closed(timeout=2)


@pytest.mark.parametrize("data, class_id, method_id, octets", [
    (method_frame(1, 60, 80, bytes(9) + b"\xff"), 60, 80, "<<0,0,0,0,0,0,0,0,0,255>>"),
    (publish_frame(1, b"k", b"\x01"), 60, 40, '<<0,0,0,1,107,0,1>>'),
    (method_frame(1, 60, 10, bytes(7) + b"\x00"), 60, 10, "<<0,0,0,0,0,0,0,0>>"),
    (method_frame(1, 50, 10, b"\x00\x00" + shortstr(b"q") + b"\x00" + bytes(4) + b"x"), 50, 10,
     '<<0,0,1,113,0,0,0,0,0,120>>'),
    (method_frame(1, 50, 10, b"\x00\x00\x05q"), 50, 10, "<<0,0,5,113>>"),
    (method_frame(3, 20, 10, shortstr(b"") + b"\x00"), 20, 10, "<<0,0>>"),
], ids=["ack-trailing", "publish-trailing", "qos-trailing", "declare-trailing",
        "shortstr-past-the-frame", "channel-open-trailing"])
def test_method_arguments_must_fill_the_frame_exactly(amqp, data, class_id, method_id, octets):
    amqp.send(data)
    expect_close(amqp, 501, f"FRAME_ERROR - cannot decode {octets}", class_id, method_id)


def test_channel_open_checks_its_reserved_shortstr(amqp):
    amqp.send(method_frame(2, 20, 10, shortstr(b"\xc3\x28")))
    expect_close(amqp, 501, "FRAME_ERROR - Malformed UTF-8 in shortstr")


def test_shortstrs_are_utf8_as_erlang_reads_it(amqp, unique):
    """Erlang's UTF-8 match takes encoded surrogates and code points up to 0x1FFFFF, which
    Python's decoder refuses; the consumer tag comes back with the same bytes. It refuses
    overlong forms."""
    queue = amqp_name(unique, "q-").encode()
    amqp.send_method(1, commands.Queue.Declare(queue=queue.decode(), auto_delete=True))
    amqp.expect(commands.Queue.DeclareOk)
    for tag in (b"ct-\xed\xa0\x80", b"ct-\xf4\x90\x80\x80"):
        amqp.send(method_frame(1, 60, 20, b"\x00\x00" + shortstr(queue) + shortstr(tag) + b"\x00"
                               + bytes(4)))
        frame_type, _, payload = amqp.read_raw_frame()
        assert (frame_type, payload) == (FRAME_METHOD, method_payload(60, 21, shortstr(tag)))
    amqp.send(method_frame(1, 60, 20, b"\x00\x00" + shortstr(queue) + shortstr(b"\xc0\x80")
                           + b"\x00" + bytes(4)))
    expect_close(amqp, 501, "FRAME_ERROR - Malformed UTF-8 in shortstr")


def test_malformed_utf8_on_channel_zero_names_the_method(amqp):
    amqp.send(method_frame(0, 50, 10, b"\x00\x00" + shortstr(b"q\xff") + b"\x00" + bytes(4)))
    expect_close(amqp, 501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 50, 10)


def test_undecodable_method_on_channel_zero(broker, amqp):
    """A deliberate difference: RabbitMQ does not take its decoder's failure on channel 0 for an
    AMQP error and answers a bare 541; Warren gives the 501 that RabbitMQ sends for the same
    bytes on any other channel."""
    amqp.send(method_frame(0, 50, 10, b"\x00\x00" + shortstr(b"q") + b"\x00" + bytes(4) + b"x"))
    if broker.is_warren:
        expect_close(amqp, 501, "FRAME_ERROR - cannot decode <<0,0,1,113,0,0,0,0,0,120>>", 50, 10)
    else:
        expect_close(amqp, 541, "INTERNAL_ERROR")


@pytest.mark.parametrize("data", [header_frame(5, 3), raw_frame(FRAME_BODY, 5, b"abc")],
                         ids=["header", "body"])
def test_content_frame_on_a_channel_never_opened(amqp, data):
    amqp.send(data)
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_publish_on_a_channel_never_opened_takes_its_content_first(amqp):
    amqp.send(publish_frame(5) + header_frame(5, 3) + raw_frame(FRAME_BODY, 5, b"abc"))
    expect_close(amqp, 504, "CHANNEL_ERROR - expected 'channel.open'", 60, 40)


@pytest.mark.parametrize("channel", [1, 5], ids=["open-channel", "channel-never-opened"])
def test_content_header_too_short_is_unknown_frame_whatever_the_state(amqp, channel):
    amqp.send(raw_frame(FRAME_HEADER, channel, b"\x00\x5a\x00\x0a"))
    expect_close(amqp, 501, "FRAME_ERROR - type 2, all octets = <<0,90,0,10>>: unknown_frame")


@pytest.mark.parametrize("class_id, method_id, arguments", [
    (90, 11, b""), (50, 11, shortstr(b"q") + bytes(8)), (20, 21, b"\x01"),
    (10, 50, b"\x00\xc8" + shortstr(b"bye") + bytes(4)),
], ids=["tx.select-ok", "queue.declare-ok", "channel.flow-ok", "connection.close-on-a-channel"])
def test_methods_only_servers_send_are_503(amqp, class_id, method_id, arguments):
    amqp.send(method_frame(1, class_id, method_id, arguments))
    expect_close(amqp, 503, "COMMAND_INVALID - unimplemented method", class_id, method_id)


def test_server_content_method_is_refused_after_its_content(amqp):
    deliver = method_frame(1, 60, 60, shortstr(b"ct") + bytes(9) + shortstr(b"") + shortstr(b"k"))
    amqp.send(deliver + header_frame(1, 3) + raw_frame(FRAME_BODY, 1, b"abc"))
    expect_close(amqp, 503, "COMMAND_INVALID - unimplemented method", 60, 60)


def test_frames_read_before_the_properties_541_are_judged_first(amqp, unique):
    """RabbitMQ's channel crashes on undecodable properties (541) after its reader has taken
    the frames it already read: a stray body frame after a 0-byte message is its 505."""
    bad_properties = b"\x80\x00\x0aabc"  # content_type of 10 bytes, 3 follow
    amqp.send(publish_frame(1) + header_frame(1, 0, bad_properties)
              + raw_frame(FRAME_BODY, 1, b"x"))
    expect_close(amqp, 505, UNEXPECTED_NON_METHOD)


def test_access_request_gets_ticket_1(amqp):
    """Deprecated by AMQP 0-9-1 (and unknown to pamqp), still answered by RabbitMQ."""
    amqp.send(method_frame(1, 30, 10, shortstr(b"/data") + b"\x1f"))
    assert amqp.read_raw_frame() == (FRAME_METHOD, 1, method_payload(30, 11, b"\x00\x01"))
    amqp.close_connection()


def test_exchange_declare_checks_the_type_first(amqp):
    """RabbitMQ checks the type before the name (default exchange) and permissions: 503, a
    connection error, even for the default exchange (found past the fuzzer's recording)."""
    amqp.send_method(1, commands.Exchange.Declare(exchange="", exchange_type="no-such-type"))
    expect_close(amqp, 503, "COMMAND_INVALID - unknown exchange type 'no-such-type'", 40, 10)
