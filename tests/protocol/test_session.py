"""Bytes-only tests of protocol/session.py, the connection side of the AMQP session: the
handshake, closes both ways, the heartbeat monitor and the table of channel numbers, driven
with the bytes a client sends and checked on the frames and actions the session gives back
(no socket, no broker). The wire-level tests of the same behaviour, against Warren and
RabbitMQ, are in tests/broker/test_connection.py, test_auth.py and test_closing.py; the texts
and codes here are RabbitMQ 3.10.8's, recorded in tests/broker/RABBITMQ_TEXTS.md.
"""

from __future__ import annotations

import struct

import pytest
from pamqp import commands as spec
from pamqp import encode as pamqp_encode

from protocol import codec
from protocol.constants import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    CONNECTION_FORCED,
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
)
from protocol.errors import AMQPConnectionError
from protocol.session import (
    CLOSE_OK_TIMEOUT,
    HANDSHAKE_TIMED_OUT,
    HANDSHAKE_TIMEOUT,
    LINGER_TIMEOUT,
    MISSED_HEARTBEATS,
    SILENT_CLOSE_DELAY,
    Authenticate,
    AwaitChannelContent,
    ClientClosed,
    CloseChannels,
    CloseSocket,
    HandshakeRefused,
    OpenChannel,
    OpenVhost,
    Refuse,
    SecretUpdated,
    Send,
    Session,
    StartHeartbeats,
    State,
    Tuned,
)

CHANNEL_MAX, FRAME_MAX, HEARTBEAT = 2047, 131072, 60
PLAIN_GUEST = "\x00guest\x00guest"


def new_session() -> Session[str]:
    return Session(mechanisms=["PLAIN", "AMQPLAIN"], server_properties={"product": "RabbitMQ"},
                   channel_max=CHANNEL_MAX, frame_max=FRAME_MAX, heartbeat=HEARTBEAT)


def feed(session: Session[str], data: bytes) -> list:
    """Bytes from the client, handed to the session as broker/connection.py hands them: the
    protocol header, then frames (channel 0 to handle_frame, a number not in the table to
    frame_on_new_channel). Actions that make a channel put it in the table."""
    actions = []
    if session.state is State.AWAITING_HEADER:
        actions, data = session.receive_header(data)
    for frame_type, number, payload in session.reader.feed(data):
        if number:
            if number in session.channels:
                continue  # the channel's own business
            got = session.frame_on_new_channel(number, frame_type, payload)
            for action in got:
                if isinstance(action, OpenChannel | AwaitChannelContent):
                    session.channel_made(action.number, f"channel {action.number}")
        else:
            got = session.handle_frame(frame_type, payload)
        actions += got
    return actions


def method(channel: int, method_: object) -> bytes:
    return codec.encode_method(channel, method_)


def sent_methods(actions: list) -> list[tuple[int, object]]:
    """The frames of the Send actions, decoded: (channel, method) pairs."""
    reader = codec.FrameReader(FRAME_MAX)
    frames = reader.feed(b"".join(a.data for a in actions if isinstance(a, Send)))
    return [(number, codec.decode_method(codec.method_index(payload), payload))
            for _, number, payload in frames]


def only_method(actions: list) -> object:
    """The one method the actions send, on channel 0."""
    [(number, sent)] = sent_methods(actions)
    assert number == 0
    return sent


def others(actions: list) -> list:
    return [action for action in actions if not isinstance(action, Send)]


def tuned(session: Session[str], *, capabilities: dict | None = None) -> None:
    """Through start-ok (PLAIN guest/guest, accepted) and tune-ok."""
    feed(session, PROTOCOL_HEADER)
    props = {"capabilities": capabilities or {}}
    feed(session, method(0, spec.Connection.StartOk(
        client_properties=props, mechanism="PLAIN", response=PLAIN_GUEST)))
    session.login_accepted()
    feed(session, method(0, spec.Connection.TuneOk(channel_max=10, frame_max=FRAME_MAX,
                                                   heartbeat=HEARTBEAT)))


def opened(session: Session[str]) -> None:
    tuned(session)
    feed(session, method(0, spec.Connection.Open(virtual_host="/")))
    session.vhost_opened()


# --- the handshake ---------------------------------------------------------------------------


def test_happy_path_from_protocol_header_to_open_ok():
    session = new_session()
    assert session.start() == [CloseSocket(HANDSHAKE_TIMEOUT, HANDSHAKE_TIMED_OUT)]

    actions = feed(session, PROTOCOL_HEADER[:3])
    assert actions == [] and session.state is State.AWAITING_HEADER
    actions = feed(session, PROTOCOL_HEADER[3:])
    start = only_method(actions)
    assert isinstance(start, spec.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert start.mechanisms == "PLAIN AMQPLAIN" and start.locales == "en_US"
    assert start.server_properties["product"] == "RabbitMQ"
    assert session.state is State.AWAITING_START_OK

    props = {"capabilities": {"connection.blocked": True, "basic.nack": False}}
    actions = feed(session, method(0, spec.Connection.StartOk(
        client_properties=props, mechanism="PLAIN", response=PLAIN_GUEST)))
    assert actions == [Authenticate("PLAIN", "guest", "guest")]
    assert session.capability("connection.blocked") and not session.capability("basic.nack")
    assert session.mechanism == "PLAIN"

    tune = only_method(session.login_accepted())
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (CHANNEL_MAX, FRAME_MAX,
                                                                  HEARTBEAT)
    assert session.state is State.AWAITING_TUNE_OK

    actions = feed(session, method(0, spec.Connection.TuneOk(
        channel_max=100, frame_max=65536, heartbeat=20)))
    assert actions == [Tuned(65536, 100, 20)]
    assert session.reader.frame_max == 65536 and session.state is State.AWAITING_OPEN

    assert feed(session, method(0, spec.Connection.Open(virtual_host="other"))) == [
        OpenVhost("other")]
    actions = session.vhost_opened()
    assert [type(m) for _, m in sent_methods(actions)] == [spec.Connection.OpenOk]
    assert others(actions) == [StartHeartbeats(10.0)]
    assert session.state is State.OPEN


def test_amqplain_response_is_read_from_its_field_table():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    table = pamqp_encode.field_table({"LOGIN": "alice", "PASSWORD": "s3cret"})[4:].decode()
    actions = feed(session, method(0, spec.Connection.StartOk(
        client_properties={}, mechanism="AMQPLAIN", response=table)))
    assert actions == [Authenticate("AMQPLAIN", "alice", "s3cret")]


def test_frames_in_the_same_read_as_the_header_are_handled():
    session = new_session()
    actions = feed(session, PROTOCOL_HEADER + method(0, spec.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response=PLAIN_GUEST)))
    assert others(actions) == [Authenticate("PLAIN", "guest", "guest")]


def test_wrong_protocol_header_is_answered_with_ours_and_the_socket_closed():
    session = new_session()
    actions = feed(session, b"AMQP\x01\x01\x00\x09")
    assert actions == [Send(PROTOCOL_HEADER), CloseSocket()]
    assert session.state is State.CLOSED


@pytest.mark.parametrize("mechanism, response", [
    ("EXTERNAL", ""),  # not offered here
    ("PLAIN", "guest\x00guest"),  # two parts, not three
    ("AMQPLAIN", "\x05LOGINS\x00\x00\x00\x05alice"),  # no PASSWORD
])
def test_unusable_mechanism_or_response_is_refused_without_a_word(mechanism, response):
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    with pytest.raises(HandshakeRefused):
        feed(session, method(0, spec.Connection.StartOk(
            client_properties={}, mechanism=mechanism, response=response)))
    assert session.refuse() == [Refuse(SILENT_CLOSE_DELAY)]
    assert session.state is State.CLOSED
    assert session.refuse() == []


def test_refused_login_is_silent_without_authentication_failure_close():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    feed(session, method(0, spec.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response=PLAIN_GUEST)))
    with pytest.raises(HandshakeRefused, match="login refused for user 'guest'"):
        session.login_refused("guest")


def test_refused_login_gets_403_with_authentication_failure_close():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    feed(session, method(0, spec.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism="PLAIN", response=PLAIN_GUEST)))
    with pytest.raises(AMQPConnectionError) as raised:
        session.login_refused("guest")
    actions = session.fail(raised.value)
    close = only_method(actions)
    assert close.reply_code == ACCESS_REFUSED
    assert close.reply_text == ("ACCESS_REFUSED - Login was refused using authentication "
                                "mechanism PLAIN. For details see the broker logfile.")
    assert others(actions) == [CloseChannels([]), CloseSocket(CLOSE_OK_TIMEOUT)]
    assert session.state is State.CLOSING


@pytest.mark.parametrize("channel_max, frame_max, text", [
    (10, FRAME_MAX + 1, f"negotiated frame_max = {FRAME_MAX + 1} is outside [4096, {FRAME_MAX}]"),
    (10, FRAME_MIN_SIZE - 1, f"negotiated frame_max = 4095 is outside [4096, {FRAME_MAX}]"),
    (0, FRAME_MAX, f"negotiated channel_max = 0 is outside [1, {CHANNEL_MAX}]"),
    (CHANNEL_MAX + 1, FRAME_MAX, f"negotiated channel_max = 2048 is outside [1, {CHANNEL_MAX}]"),
])
def test_tune_ok_outside_the_offer_is_refused(channel_max, frame_max, text):
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    feed(session, method(0, spec.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response=PLAIN_GUEST)))
    session.login_accepted()
    with pytest.raises(HandshakeRefused) as raised:
        feed(session, method(0, spec.Connection.TuneOk(
            channel_max=channel_max, frame_max=frame_max, heartbeat=0)))
    assert str(raised.value) == text
    assert session.state is State.AWAITING_TUNE_OK  # a refusing handler changes nothing


def test_unexpected_method_during_tuning_is_refused_silently():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    feed(session, method(0, spec.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response=PLAIN_GUEST)))
    session.login_accepted()
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, method(0, spec.Connection.Open(virtual_host="/")))
    assert raised.value.reply_code == CHANNEL_ERROR
    assert raised.value.reply_text == ("CHANNEL_ERROR - unexpected method in connection state "
                                       "tuning")
    assert session.fail(raised.value) == [Refuse(SILENT_CLOSE_DELAY)]


def test_refused_vhost_is_answered_once_tuned():
    session = new_session()
    tuned(session)
    feed(session, method(0, spec.Connection.Open(virtual_host="nope")))
    # The adapter's refusal (broker/connection.py maps the core's NotAllowed so).
    refusal = AMQPConnectionError(NOT_ALLOWED, "vhost nope not found", 10, 40)
    close = only_method(session.fail(refusal))
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        NOT_ALLOWED, "NOT_ALLOWED - vhost nope not found", 10, 40)
    assert session.state is State.CLOSING


def test_unknown_method_during_the_handshake_drops_the_socket_at_once():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    payload = struct.pack("!HH", 10, 99)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", 1, 0, len(payload)) + payload + b"\xce")
    assert session.fail(raised.value) == [CloseSocket()]


def test_frame_error_is_told_and_the_socket_closed_at_once():
    session = new_session()
    opened(session)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", 1, 0, 4) + b"\x00\x0a\x00\x3c" + b"\x00")  # no end
    assert raised.value.reply_code == FRAME_ERROR
    actions = session.fail(raised.value)
    close = only_method(actions)
    assert close.reply_code == FRAME_ERROR
    assert others(actions) == [CloseSocket()]
    assert session.state is State.CLOSED


# --- closing --------------------------------------------------------------------------------


def test_client_close_releases_its_channels_and_close_ok_waits_for_confirms():
    session = new_session()
    opened(session)
    feed(session, method(1, spec.Channel.Open()) + method(2, spec.Channel.Open()))
    actions = feed(session, method(0, spec.Connection.Close(200, "bye", 0, 0)))
    assert actions == [CloseSocket(LINGER_TIMEOUT),
                       ClientClosed(200, "bye", ["channel 1", "channel 2"])]
    assert session.channels == {} and session.state is State.LINGERING
    # Frames after close are dropped until close-ok is sent; a repeated close then gets another.
    assert feed(session, method(0, spec.Connection.Close(200, "bye", 0, 0))) == []
    assert [type(m) for _, m in sent_methods(session.close_confirmed())] == [
        spec.Connection.CloseOk]
    assert [type(m) for _, m in sent_methods(feed(
        session, method(0, spec.Connection.Close(200, "bye", 0, 0))))] == [
        spec.Connection.CloseOk]
    assert feed(session, method(1, spec.Channel.Open())) == []
    # Garbage after close: hang up.
    assert session.fail(AMQPConnectionError(FRAME_ERROR, "x")) == [CloseSocket()]


def test_server_close_waits_for_close_ok_and_ignores_the_rest():
    session = new_session()
    opened(session)
    feed(session, method(1, spec.Channel.Open()))
    actions = session.close_forced("shutdown")
    close = only_method(actions)
    assert (close.reply_code, close.reply_text) == (
        CONNECTION_FORCED, "CONNECTION_FORCED - shutdown")
    assert others(actions) == [CloseChannels(["channel 1"]), CloseSocket(CLOSE_OK_TIMEOUT)]
    assert session.state is State.CLOSING
    # A crossing close is not answered; content and channel frames are dropped.
    assert feed(session, method(0, spec.Connection.Close(200, "bye", 0, 0))) == []
    assert feed(session, struct.pack("!BHI", FRAME_BODY, 0, 1) + b"x\xce") == []
    assert feed(session, method(1, spec.Channel.Open())) == []
    assert feed(session, method(0, spec.Connection.CloseOk())) == [CloseSocket()]
    assert session.state is State.CLOSED


def test_close_forced_before_open_closes_the_socket():
    session = new_session()
    feed(session, PROTOCOL_HEADER)
    assert session.close_forced("shutdown") == [CloseSocket()]


def test_update_secret_is_answered():
    session = new_session()
    opened(session)
    actions = feed(session, method(0, spec.Connection.UpdateSecret("new", "rotation")))
    assert others(actions) == [SecretUpdated("rotation")]
    assert [type(m) for _, m in sent_methods(actions)] == [spec.Connection.UpdateSecretOk]


# --- heartbeats -----------------------------------------------------------------------------


def test_heartbeat_monitor_sends_when_idle_and_closes_after_two_silent_intervals():
    session = new_session()
    opened(session)
    assert session.heartbeat_tick(received=True, sent=False) == [Send(codec.HEARTBEAT_FRAME)]
    assert session.heartbeat_tick(received=True, sent=True) == []
    for _ in range(3):
        assert session.heartbeat_tick(received=False, sent=True) == []
    assert session.heartbeat_tick(received=False, sent=True) == [
        CloseSocket(0.0, MISSED_HEARTBEATS)]
    assert session.state is State.CLOSED


def test_a_received_frame_resets_the_count_of_silent_ticks():
    session = new_session()
    opened(session)
    for _ in range(3):
        session.heartbeat_tick(received=False, sent=True)
    session.heartbeat_tick(received=True, sent=True)
    for _ in range(3):
        assert session.heartbeat_tick(received=False, sent=True) == []


# --- the channel table ----------------------------------------------------------------------


def test_channel_open_on_a_free_number_opens_it():
    session = new_session()
    opened(session)
    actions = feed(session, method(5, spec.Channel.Open()))
    assert others(actions) == [OpenChannel(5)]
    assert [(n, type(m)) for n, m in sent_methods(actions)] == [(5, spec.Channel.OpenOk)]
    session.channel_closed(5)
    assert session.channels == {}


def test_channel_max_counts_the_channels_in_the_table():
    session = new_session()
    tuned(session)  # channel_max 10
    feed(session, method(0, spec.Connection.Open(virtual_host="/")))
    session.vhost_opened()
    for number in range(1, 11):
        feed(session, method(number, spec.Channel.Open()))
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, method(11, spec.Channel.Open()))
    assert (raised.value.reply_code, raised.value.reply_text) == (
        NOT_ALLOWED, "NOT_ALLOWED - number of channels opened (10) has reached the negotiated "
                     "channel_max (10)")


def test_a_method_other_than_channel_open_on_a_new_number_is_504():
    session = new_session()
    opened(session)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, method(1, spec.Queue.Declare(queue="q")))
    assert (raised.value.reply_code, raised.value.reply_text) == (
        CHANNEL_ERROR, "CHANNEL_ERROR - expected 'channel.open'")
    assert (raised.value.class_id, raised.value.method_id) == (50, 10)


def test_a_publish_on_a_new_number_waits_for_its_content():
    session = new_session()
    opened(session)
    actions = feed(session, method(3, spec.Basic.Publish(exchange="", routing_key="q")))
    assert actions == [AwaitChannelContent(3, spec.Basic.Publish.index)]


def test_a_content_frame_on_a_new_number_is_505():
    session = new_session()
    opened(session)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", FRAME_BODY, 1, 1) + b"x\xce")
    assert (raised.value.reply_code, raised.value.reply_text) == (
        UNEXPECTED_FRAME, "UNEXPECTED_FRAME - expected method frame, got non method frame "
                          "instead")


def test_a_channel_frame_before_the_connection_is_open_is_unexpected():
    session = new_session()
    tuned(session)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, method(1, spec.Channel.Open()))
    assert raised.value.reply_code == UNEXPECTED_FRAME
    assert raised.value.reply_text.startswith("UNEXPECTED_FRAME - type 1, all octets = ")
    # Once tuned RabbitMQ answers it (state "opening").
    close = only_method(session.fail(raised.value))
    assert close.reply_code == UNEXPECTED_FRAME


# --- frames on channel 0 ---------------------------------------------------------------------


def test_heartbeats_on_channel_0_are_taken_and_a_content_frame_is_505():
    session = new_session()
    opened(session)
    assert feed(session, codec.HEARTBEAT_FRAME) == []
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", FRAME_BODY, 0, 1) + b"x\xce")
    assert raised.value.reply_code == UNEXPECTED_FRAME
    assert raised.value.reply_text.startswith("UNEXPECTED_FRAME - type 3, all octets = ")


def test_a_frame_over_frame_max_ends_the_stream_with_the_readers_error():
    session = new_session()
    feed(session, PROTOCOL_HEADER)  # frame_max is 4096 until tune-ok
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", 1, 0, FRAME_MIN_SIZE + 1))
    assert raised.value.reply_code == FRAME_ERROR
    assert "frame_too_large" in raised.value.reply_text


def test_malformed_utf8_on_channel_0_names_the_method():
    session = new_session()
    opened(session)
    payload = struct.pack("!HHH", 10, 50, 200) + b"\x03\xff\xfe\xfd" + struct.pack("!HH", 0, 0)
    with pytest.raises(AMQPConnectionError) as raised:
        feed(session, struct.pack("!BHI", 1, 0, len(payload)) + payload + b"\xce")
    assert (raised.value.reply_code, raised.value.class_id, raised.value.method_id) == (
        FRAME_ERROR, 10, 50)
    assert raised.value.reply_text == "FRAME_ERROR - Malformed UTF-8 in shortstr"
