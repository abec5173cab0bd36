"""protocol/content.py: content assembly from frame payloads, with RabbitMQ's errors for frames
out of order (texts as tests/broker/test_bad_input.py checks them on the wire)."""

import struct

import pytest

from protocol.constants import BASIC_DELIVER, BASIC_PUBLISH, FRAME_HEADER
from protocol.content import EXPECT_BODY, EXPECT_HEADER, IDLE, TAKES, ContentAssembly
from protocol.errors import AMQPConnectionError, AMQPError

PROPS = b"\x10\x00\x01"  # delivery_mode 1


def header(body_size: int, class_id: int = 60, weight: int = 0, props: bytes = PROPS) -> bytes:
    return struct.pack(">HHQ", class_id, weight, body_size) + props


def publishing() -> ContentAssembly:
    content = ContentAssembly()
    content.start(BASIC_PUBLISH)
    return content


def test_header_then_bodies_give_the_whole_body():
    content = publishing()
    assert content.state == EXPECT_HEADER
    assert content.header(header(7)) == (PROPS, 7)
    assert content.state == EXPECT_BODY
    assert content.body(b"abc") is None
    assert content.body(b"de") is None
    assert content.body(b"fg") == b"abcdefg"
    assert content.state == IDLE


def test_one_body_frame_is_passed_through_without_a_copy():
    content = publishing()
    content.header(header(3))
    body = b"xyz"
    assert content.body(body) is body


def test_empty_body_is_complete_at_the_header():
    content = publishing()
    assert content.header(header(0)) == (PROPS, 0)
    assert content.state == IDLE


def test_overrun_never_completes():
    content = publishing()
    content.header(header(2))
    assert content.body(b"abc") is None
    assert content.state == EXPECT_BODY
    assert content.body(b"d") is None
    assert content.unexpected().reply_text == (
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead")


@pytest.mark.parametrize(("state", "text", "ids"), [
    (IDLE, "expected method frame, got non method frame instead", (0, 0)),
    (EXPECT_HEADER,
     "expected content header for class 60, got non content header frame instead", (60, 40)),
    (EXPECT_BODY, "expected content body, got non content body frame instead", (60, 40)),
])
def test_each_state_refuses_other_frames_with_rabbitmqs_text(state, text, ids):
    content = ContentAssembly()
    if state != IDLE:
        content.start(BASIC_PUBLISH)
    if state == EXPECT_BODY:
        content.header(header(5))
    assert content.state == state
    with pytest.raises(AMQPConnectionError) as raised:
        if TAKES[state] == FRAME_HEADER:
            content.body(b"x")
        else:
            content.header(header(1))
    error = raised.value
    assert (error.reply_code, error.class_id, error.method_id) == (505, *ids)
    assert error.reply_text == f"UNEXPECTED_FRAME - {text}"
    assert content.unexpected().reply_text == error.reply_text  # a method frame gets the same


@pytest.mark.parametrize(("class_id", "weight", "got"), [
    (50, 0, "one for class 50"),
    (60, 1, "non content header frame"),
])
def test_header_of_another_class_or_with_weight_is_505(class_id, weight, got):
    content = publishing()
    with pytest.raises(AMQPConnectionError) as raised:
        content.header(header(1, class_id, weight))
    assert raised.value.reply_text == (
        f"UNEXPECTED_FRAME - expected content header for class 60, got {got} instead")
    assert (raised.value.class_id, raised.value.method_id) == (60, 40)


def test_content_not_kept_is_checked_then_refused_once_complete():
    refusal = AMQPConnectionError(503, "unimplemented method", 60, 60)
    content = ContentAssembly()
    content.start(BASIC_DELIVER, keep=False, refusal=refusal)
    assert content.header(header(4)) is None
    assert content.body(b"ab") is None
    with pytest.raises(AMQPError) as raised:
        content.body(b"cd")
    assert raised.value is refusal
    assert content.state == IDLE


def test_content_not_kept_refused_at_an_empty_header_and_its_method_id_in_errors():
    refusal = AMQPConnectionError(504, "expected 'channel.open'", 60, 60)
    content = ContentAssembly()
    content.start(BASIC_DELIVER, keep=False, refusal=refusal)
    assert content.unexpected().method_id == 60
    with pytest.raises(AMQPError) as raised:
        content.header(header(0))
    assert raised.value is refusal


def test_content_not_kept_without_refusal_is_dropped_quietly():
    content = ContentAssembly()
    content.start(BASIC_PUBLISH, keep=False)
    content.header(header(2))
    assert content.body(b"abc") is None  # (an overrun completes dropped content)
    assert content.state == IDLE
