"""Bytes-only tests of protocol/codec.py: frame splitting, the fast paths, pamqp for the rest.

Every fast-path encoder and decoder is cross-checked against pamqp, which is the reference: bytes
pamqp marshals must decode to the same fields, and bytes Warren builds must unmarshal (or marshal,
byte for byte) to the same frames in pamqp. Frames and methods that cannot be taken apart are
501 FRAME_ERROR connection errors, as in RabbitMQ ("cannot decode <<...>>" for method arguments).
"""

from __future__ import annotations

import datetime
import itertools
import struct
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import body as pamqp_body
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp import header as pamqp_header
from pamqp import heartbeat as pamqp_heartbeat

from protocol import codec
from protocol.constants import (
    BASIC_ACK,
    BASIC_PUBLISH,
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    NOT_IMPLEMENTED,
)
from protocol.errors import AMQPConnectionError

FRAME_MAX = FRAME_MIN_SIZE
CHUNK = FRAME_MAX - 8  # the largest body frame payload

PROPERTIES = spec.Basic.Properties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={"x-retries": 3, "origin": "tests", "nested": {"ok": True}},
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="amq.rabbitmq.reply-to",
    expiration="60000",
    message_id="msg-1",
    timestamp=datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.UTC),
    message_type="order.created",
    user_id="guest",
    app_id="warren-tests",
)
PROPS_RAW = PROPERTIES.marshal()

BODY_SIZES = [0, 1, FRAME_MAX - 8, FRAME_MAX - 7, 3 * FRAME_MAX]
MAX_TAG = 2**63 - 1  # pamqp encodes longlong as signed: the largest tag it can cross-check


def marshal(method, channel: int = 1) -> bytes:
    return pamqp_frame.marshal(method, channel)


def payload_of(frame: bytes) -> bytes:
    """The payload of one complete frame: no 7-byte header, no end octet."""
    return frame[7:-1]


def unmarshal_all(data: bytes) -> list[tuple[int, object]]:
    """Every frame in `data` as pamqp reads it: (channel, frame object); all bytes consumed."""
    frames = []
    while data:
        consumed, channel, frame = pamqp_frame.unmarshal(data)
        frames.append((channel, frame))
        data = data[consumed:]
    return frames


def body_of(body_frames: list[tuple[int, object]]) -> bytes:
    return b"".join(frame.value for _, frame in body_frames)


def make_body(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def raises_code(code: int):
    return pytest.raises(AMQPConnectionError, check=lambda exc: exc.reply_code == code)


# ---------------------------------------------------------------------------------------------
# FrameReader

STREAM_FRAMES = [
    marshal(spec.Basic.Publish(exchange="amq.direct", routing_key="k", mandatory=True), 1),
    marshal(pamqp_header.ContentHeader(body_size=5, properties=PROPERTIES), 1),
    marshal(pamqp_body.ContentBody(b"hello"), 1),
    pamqp_heartbeat.Heartbeat().marshal(),
    marshal(spec.Basic.Ack(delivery_tag=7, multiple=True), 2),
    marshal(pamqp_body.ContentBody(make_body(CHUNK)), 65535),  # exactly frame_max long
    marshal(spec.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0), 3),
]
STREAM = b"".join(STREAM_FRAMES)
EXPECTED = [(frame[0], int.from_bytes(frame[1:3]), payload_of(frame)) for frame in STREAM_FRAMES]


def unfused(frames: list) -> list:
    """The frames the reader gave, with each PUBLISH_CONTENT frame as the frames it stands for."""
    return [each for frame_type, channel, payload in frames
            for each in (codec.content_frames(channel, payload)
                         if frame_type == codec.PUBLISH_CONTENT
                         else [(frame_type, channel, payload)])]


def feed_in_chunks(reader: codec.FrameReader, data: bytes, cuts: list[int]) -> list:
    frames = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        frames += reader.feed(data[start:end])
    return unfused(frames)


def test_expected_stream_is_what_pamqp_marshalled():
    assert [frame_type for frame_type, _, _ in EXPECTED] == [
        FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_BODY,
        FRAME_METHOD,
    ]
    assert len(STREAM_FRAMES[5]) == FRAME_MAX


def test_reader_splits_many_frames_in_one_chunk():
    reader = codec.FrameReader(FRAME_MAX)
    assert unfused(reader.feed(STREAM)) == EXPECTED
    assert not reader.has_partial_frame


def test_reader_byte_by_byte():
    reader = codec.FrameReader(FRAME_MAX)
    frames = []
    for i in range(len(STREAM)):
        frames += reader.feed(STREAM[i : i + 1])
    assert frames == EXPECTED
    assert not reader.has_partial_frame


def test_reader_gives_a_whole_publish_as_one_frame():
    """A basic.publish with its header and its one body frame in the same read is one
    PUBLISH_CONTENT frame: the method payload, the property bytes, the body."""
    reader = codec.FrameReader(FRAME_MAX)
    frames = reader.feed(STREAM)
    assert frames[0] == (codec.PUBLISH_CONTENT, 1, (
        EXPECTED[0][2], EXPECTED[1][2][12:], [b"hello"]))
    assert frames[1:] == EXPECTED[3:]
    assert codec.content_frames(1, frames[0][2]) == EXPECTED[:3]


def test_reader_gives_a_publish_without_body_as_one_frame():
    publish = marshal(spec.Basic.Publish(routing_key="q"), 5)
    header = marshal(pamqp_header.ContentHeader(body_size=0, properties=PROPERTIES), 5)
    frames = codec.FrameReader(FRAME_MAX).feed(publish + header)
    assert frames == [(codec.PUBLISH_CONTENT, 5, (payload_of(publish), payload_of(header)[12:],
                                                  [b""]))]
    assert codec.content_frames(5, frames[0][2]) == [
        (FRAME_METHOD, 5, payload_of(publish)), (FRAME_HEADER, 5, payload_of(header))]


def _with_byte(frame: bytes, index: int, value: int) -> bytes:
    changed = bytearray(frame)
    changed[index] = value
    return bytes(changed)


PUBLISH, HEADER, BODY = STREAM_FRAMES[:3]


@pytest.mark.parametrize("frames", [
    pytest.param([PUBLISH, HEADER], id="body in a later read"),
    pytest.param([PUBLISH, HEADER, marshal(pamqp_body.ContentBody(b"hel"), 1),
                  marshal(pamqp_body.ContentBody(b"lo"), 1)], id="body in two frames"),
    pytest.param([PUBLISH, HEADER, marshal(pamqp_body.ContentBody(b"hello!"), 1)],
                 id="body longer than its size"),
    pytest.param([PUBLISH, HEADER, marshal(pamqp_body.ContentBody(b"hello"), 2)],
                 id="body on another channel"),
    pytest.param([PUBLISH, marshal(pamqp_header.ContentHeader(body_size=5), 3), BODY],
                 id="header on another channel"),
    pytest.param([PUBLISH, _with_byte(HEADER, 8, 50), BODY], id="header of another class"),
    pytest.param([PUBLISH, _with_byte(HEADER, 10, 1), BODY], id="header with a weight"),
    pytest.param([PUBLISH, BODY, HEADER], id="body before header"),
    pytest.param([PUBLISH, HEADER, _with_byte(BODY, 0, FRAME_METHOD)], id="not a body frame"),
])
def test_reader_gives_anything_else_frame_by_frame(frames):
    """Only a well-formed publish, header and single body on one channel are taken together:
    whatever the channel or the content's order must judge comes frame by frame."""
    frames_in = [(frame[0], int.from_bytes(frame[1:3]), payload_of(frame)) for frame in frames]
    assert codec.FrameReader(FRAME_MAX).feed(b"".join(frames)) == frames_in


def test_reader_judges_a_broken_body_end_after_the_frames_before_it():
    reader = codec.FrameReader(FRAME_MAX)
    frames = reader.feed(PUBLISH + HEADER + BODY[:-1] + b"\x00")
    assert frames == [*EXPECTED[:2], (codec.READ_ERROR, 0, b"")]
    assert reader.error.reply_code == FRAME_ERROR


def publish_frames(body: bytes, channel: int = 1) -> list[bytes]:
    frames = [marshal(spec.Basic.Publish(routing_key="q"), channel),
              marshal(pamqp_header.ContentHeader(body_size=len(body), properties=PROPERTIES),
                      channel)]
    return frames + [marshal(pamqp_body.ContentBody(body), channel)] if body else frames


# A publisher's stream: the same publish again and again, others between (another body size, no
# body, another channel, an ack)
REPEATS = [
    *publish_frames(b"abc"), *publish_frames(b"abc"), *publish_frames(b"abc"),
    *publish_frames(b"abcd"), *publish_frames(b"abc"), *publish_frames(b""),
    *publish_frames(b""), marshal(spec.Basic.Ack(delivery_tag=7, multiple=True), 1),
    *publish_frames(b"abc", 2), *publish_frames(b"abc"),
]
REPEATS_IN = [(frame[0], int.from_bytes(frame[1:3]), payload_of(frame)) for frame in REPEATS]


def test_reader_takes_repeated_publishes_whole():
    """The same publish (method and properties, whatever its body) right after itself joins
    its frame (a run of bodies, in order)."""
    frames = codec.FrameReader(FRAME_MAX).feed(b"".join(REPEATS))
    assert [(frame_type, channel, payload[2] if frame_type == codec.PUBLISH_CONTENT else None)
            for frame_type, channel, payload in frames] == [
        (codec.PUBLISH_CONTENT, 1, [b"abc", b"abc", b"abc", b"abcd", b"abc", b"", b""]),
        (FRAME_METHOD, 1, None),
        (codec.PUBLISH_CONTENT, 2, [b"abc"]),
        (codec.PUBLISH_CONTENT, 1, [b"abc"]),
    ]
    assert unfused(frames) == REPEATS_IN


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(b"".join(REPEATS))), max_size=40))
def test_reader_takes_repeated_publishes_in_any_chunking(cuts):
    reader = codec.FrameReader(FRAME_MAX)
    assert feed_in_chunks(reader, b"".join(REPEATS), cuts) == REPEATS_IN
    assert not reader.has_partial_frame


def _frame_by_frame(data: bytes, frame_max: int) -> tuple[list, tuple | None, bool]:
    """What a reader that takes no publish whole makes of `data` in one read (the frame
    splitting before publishes were taken whole): its frames, its error (reply code and text)
    if a frame is broken, and whether it stalled before an oversize frame."""
    frames, offset = [], 0
    while len(data) - offset >= 7:
        frame_type, channel, length = struct.unpack_from(">BHI", data, offset)
        if length > frame_max:
            if frames:
                return frames, None, True
            return [(codec.READ_ERROR, 0, b"")], (FRAME_ERROR, "frame_too_large"), False
        end = offset + 7 + length
        if end >= len(data):
            break
        if data[end] != 0xCE:
            return frames + [(codec.READ_ERROR, 0, b"")], (FRAME_ERROR, "end"), False
        frames.append((frame_type, channel, data[offset + 7 : end]))
        offset = end + 1
    return frames, None, False


def _framing_octets(frames: list[bytes]) -> list[int]:
    """Where the framing of `frames` (one after the other) is: each frame's type, channel and
    size, a content header's class, weight and body size, and each end octet."""
    places, offset = [], 0
    for frame in frames:
        places += range(offset, offset + (19 if frame[0] == FRAME_HEADER else 7))
        offset += len(frame)
        places.append(offset - 1)
    return places


@settings(deadline=None, max_examples=500)
@given(st.lists(st.tuples(
    st.sampled_from(_framing_octets(REPEATS)) | st.integers(0, len(b"".join(REPEATS)) - 1),
    st.sampled_from([0, 1, 2, 3, 60, 0xCE]) | st.integers(0, 255)), max_size=4))
def test_reader_taking_publishes_whole_sees_what_frame_by_frame_sees(changes):
    """Any bytes changed in a publisher's stream: the frames the reader gives (each whole
    publish as the frames it stands for), its error and its stall are those of splitting the
    stream frame by frame: a publish is taken whole only where nothing in it differs."""
    data = bytearray(b"".join(REPEATS))
    for index, value in changes:
        data[index] = value
    reader = codec.FrameReader(FRAME_MAX)
    frames = unfused(reader.feed(bytes(data)))
    expected, error, stalled = _frame_by_frame(bytes(data), FRAME_MAX)
    assert frames == expected
    assert (reader.error is None) == (error is None) and reader.stalled == stalled
    if error is not None:
        assert reader.error.reply_code == error[0]


def test_reader_judges_a_repeated_publish_with_a_broken_body_end():
    first = b"".join(publish_frames(b"abc"))
    reader = codec.FrameReader(FRAME_MAX)
    frames = reader.feed(first + first[:-1] + b"\x00")
    assert unfused(frames) == [*REPEATS_IN[:3], *REPEATS_IN[3:5], (codec.READ_ERROR, 0, b"")]
    assert reader.error.reply_code == FRAME_ERROR


def test_reader_judges_a_repeated_publish_again_under_a_new_frame_max():
    """A body that fitted the former frame_max is judged again under a smaller one."""
    big = b"".join(publish_frames(b"x" * 3000))
    reader = codec.FrameReader(FRAME_MAX)
    assert reader.feed(big)[0][0] == codec.PUBLISH_CONTENT
    reader.frame_max = 1000
    frames = reader.feed(big)
    assert [frame_type for frame_type, _, _ in frames] == [FRAME_METHOD, FRAME_HEADER]
    assert reader.stalled
    assert broken_frame_error(reader, b"") is reader.error


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_reader_any_chunking(cuts):
    reader = codec.FrameReader(FRAME_MAX)
    assert feed_in_chunks(reader, STREAM, cuts) == EXPECTED
    assert not reader.has_partial_frame


@settings(deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=30))
def test_reader_random_chunk_sizes(sizes):
    reader = codec.FrameReader(FRAME_MAX)
    frames, offset = [], 0
    for size in itertools.cycle(sizes):
        if offset >= len(STREAM):
            break
        frames += reader.feed(STREAM[offset : offset + size])
        offset += size
    assert unfused(frames) == EXPECTED


def test_reader_yields_each_frame_once_it_is_complete():
    reader = codec.FrameReader(FRAME_MAX)
    first, second = STREAM_FRAMES[0], STREAM_FRAMES[4]
    assert reader.feed(first[:-1]) == []
    assert reader.has_partial_frame
    assert reader.feed(first[-1:] + second[:3]) == [EXPECTED[0]]
    assert reader.has_partial_frame
    assert reader.feed(second[3:]) == [EXPECTED[4]]
    assert not reader.has_partial_frame


def test_reader_has_partial_frame():
    reader = codec.FrameReader(FRAME_MAX)
    assert not reader.has_partial_frame
    assert reader.feed(b"") == []
    assert not reader.has_partial_frame
    assert reader.feed(STREAM_FRAMES[0][:3]) == []  # not even a whole frame header
    assert reader.has_partial_frame
    assert reader.feed(STREAM_FRAMES[0][3:10]) == []  # header, part of the payload
    assert reader.has_partial_frame
    assert reader.feed(STREAM_FRAMES[0][10:]) == [EXPECTED[0]]
    assert not reader.has_partial_frame


def test_reader_accepts_empty_payload_frames():
    reader = codec.FrameReader(FRAME_MAX)
    empty_body = bytes((FRAME_BODY, 0, 1, 0, 0, 0, 0, 0xCE))
    assert reader.feed(codec.HEARTBEAT_FRAME + empty_body) == [
        (FRAME_HEARTBEAT, 0, b""),
        (FRAME_BODY, 1, b""),
    ]


def oversize_header(frame_max: int) -> bytes:
    """The 7-byte header of a body frame whose payload is one octet over the limit."""
    return bytes((FRAME_BODY, 0, 1)) + (frame_max + 1).to_bytes(4, "big")


@pytest.mark.parametrize("payload_size", [CHUNK, CHUNK + 1, FRAME_MAX])
def test_reader_accepts_frames_up_to_frame_max_payload(payload_size):
    """Like RabbitMQ, a payload of up to frame_max octets is let in (frame_max - 8 is what we
    send, and what the error text names as the limit)."""
    frame = marshal(pamqp_body.ContentBody(make_body(payload_size)))
    assert codec.FrameReader(FRAME_MAX).feed(frame) == [(FRAME_BODY, 1, make_body(payload_size))]


def broken_frame_error(reader: codec.FrameReader, data: bytes) -> AMQPConnectionError:
    """Feed `data` that holds a broken frame: the frames before it come out, then the READ_ERROR
    marker; the reader's error is returned, and nothing more is read."""
    frames = reader.feed(data)
    assert frames and frames[-1] == (codec.READ_ERROR, 0, b""), frames
    assert reader.feed(STREAM) == []
    assert reader.error is not None and reader.error.reply_code == FRAME_ERROR
    return reader.error


def test_reader_rejects_a_frame_larger_than_frame_max():
    frame = marshal(pamqp_body.ContentBody(make_body(FRAME_MAX + 1)))
    error = broken_frame_error(codec.FrameReader(FRAME_MAX), frame)
    assert error.reply_text.startswith("FRAME_ERROR - ")
    assert f"{{frame_too_large,{FRAME_MAX + 1},{CHUNK}}}" in error.reply_text


@pytest.mark.parametrize("length", [FRAME_MAX + 1, 2 * FRAME_MAX, 2**32 - 1])
def test_reader_rejects_oversize_frame_from_its_header_alone(length):
    """The error comes as soon as the 7-byte header is in: nothing of the payload is waited for."""
    header = bytes((FRAME_METHOD, 0, 1)) + length.to_bytes(4, "big")
    reader = codec.FrameReader(FRAME_MAX)
    assert reader.feed(header[:4]) == []
    assert broken_frame_error(reader, header[4:]) is reader.error


def test_reader_judges_an_oversize_frame_after_the_frames_before_it():
    """The frames before it come out first and may raise frame_max (tune-ok): the reader stalls
    until it is fed again, then judges the frame with the frame_max then in effect."""
    reader = codec.FrameReader(FRAME_MAX)
    assert unfused(reader.feed(STREAM + oversize_header(FRAME_MAX))) == EXPECTED
    assert reader.stalled
    assert broken_frame_error(reader, b"") is reader.error
    raised = codec.FrameReader(FRAME_MAX)
    assert unfused(raised.feed(STREAM + oversize_header(FRAME_MAX))) == EXPECTED
    raised.frame_max = 2 * FRAME_MAX
    assert raised.feed(b"") == [] and not raised.stalled and raised.error is None


def test_reader_passes_on_frames_of_any_type_and_size():
    """What a frame's type and payload make of it is judged later (check_frame), where
    RabbitMQ judges it."""
    frames = [bytes((9, 0, 1, 0, 0, 0, 1, 0, 0xCE)),
              bytes((FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 1, 0, 0xCE))]
    assert codec.FrameReader(FRAME_MAX).feed(b"".join(frames)) == [
        (9, 1, b"\x00"), (FRAME_HEARTBEAT, 0, b"\x00")]


@pytest.mark.parametrize(
    "frame_type, payload",
    [
        (9, b"\x00"),  # no such frame type
        (FRAME_METHOD, b"\x00\x3c\x00"),  # method id cut short
        (FRAME_HEADER, bytes(11)),  # no room for class, weight and body size
        (FRAME_HEARTBEAT, b"\x00"),  # heartbeat with a payload
    ],
)
def test_check_frame_refuses_frames_that_are_none_of_the_four_kinds(frame_type, payload):
    with raises_code(FRAME_ERROR) as caught:
        codec.check_frame(frame_type, payload)
    assert "unknown_frame" in caught.value.text


@pytest.mark.parametrize("frame_type, payload", [
    (FRAME_METHOD, b"\x00\x3c\x00\x50"), (FRAME_HEADER, bytes(12)), (FRAME_BODY, b""),
    (FRAME_HEARTBEAT, b""),
])
def test_check_frame_takes_the_four_kinds(frame_type, payload):
    codec.check_frame(frame_type, payload)


def test_reader_frame_max_can_grow_after_tune():
    reader = codec.FrameReader(FRAME_MAX)
    reader.frame_max = 131072
    frame = marshal(pamqp_body.ContentBody(make_body(100_000)))
    assert reader.feed(frame) == [(FRAME_BODY, 1, make_body(100_000))]


@pytest.mark.parametrize("bad_end", [0x00, 0xCD, 0xFF])
def test_reader_rejects_bad_frame_end(bad_end):
    frame = bytearray(STREAM_FRAMES[0])
    frame[-1] = bad_end
    error = broken_frame_error(codec.FrameReader(FRAME_MAX), bytes(frame))
    assert f"{{invalid_frame_end_marker,{bad_end}}}" in "".join(error.text.split())


# RabbitMQ 3.10.8's texts for these payloads with end octet 00 (its ~p breaks a term that would
# pass column 80 of the text after "FRAME_ERROR - ").
LAID_OUT = [
    ([100] * 16, 'type 1, all octets = <<"dddddddddddddddd">>: {invalid_frame_end_marker,0}'),
    ([10] * 16, 'type 1, all octets = <<"' + "\\n" * 16 + '">>: {invalid_frame_end_marker,\n'
     + " " * 62 + "0}"),
    ([0] * 16, "type 1, all octets = <<" + ",".join(["0"] * 16) + ">>: {invalid_frame_end_marker,"
     "\n" + " " * 59 + "0}"),
    ([127] * 14, "type 1, all octets = <<" + ",".join(["127"] * 14) + ">>: "
     "{invalid_frame_end_marker,\n" + " " * 83 + "0}"),
    ([127] * 15, "type 1, all octets = <<" + "127," * 14 + "\n" + " " * 23
     + "127>>: {invalid_frame_end_marker,0}"),
    ([1, 2, 3, *range(100, 113)], "type 1, all octets = <<1,2,3,100,101,102,103,104,105,106,107,"
     "108,109,110,111,\n" + " " * 23 + "112>>: {invalid_frame_end_marker,0}"),
    ([0, 10, 0, 40, 1, 47, 200, *[120] * 11], "type 1, first 16 octets = <<0,10,0,40,1,47,200,"
     "120,120,120,120,120,120,120,120,\n" + " " * 28 + "120>>: {invalid_frame_end_marker,0}"),
]


@pytest.mark.parametrize("payload, text", LAID_OUT)
def test_frame_error_texts_are_laid_out_as_rabbitmqs(payload, text):
    frame = bytes((FRAME_METHOD, 0, 1)) + len(payload).to_bytes(4, "big") + bytes(payload)
    assert broken_frame_error(codec.FrameReader(FRAME_MAX), frame + b"\x00").text == text


def test_reader_rejects_bad_frame_end_arriving_in_a_later_chunk():
    frame = bytearray(STREAM_FRAMES[4])
    frame[-1] = 0
    reader = codec.FrameReader(FRAME_MAX)
    assert reader.feed(STREAM_FRAMES[0] + frame[:-1]) == [EXPECTED[0]]
    broken_frame_error(reader, bytes(frame[-1:]))


def test_reader_hands_out_the_frames_before_a_broken_one():
    frame = bytearray(STREAM_FRAMES[4])
    frame[-1] = 0
    reader = codec.FrameReader(FRAME_MAX)
    frames = reader.feed(b"".join(STREAM_FRAMES[:4]) + frame)
    assert unfused(frames) == [*EXPECTED[:4], (codec.READ_ERROR, 0, b"")]


def test_reader_rejects_a_length_that_lies():
    """A frame that claims fewer octets than it has: the octet after the claim is not 0xCE."""
    frame = bytearray(STREAM_FRAMES[0])
    frame[6] -= 1
    broken_frame_error(codec.FrameReader(FRAME_MAX), bytes(frame))


# ---------------------------------------------------------------------------------------------
# basic.publish and basic.ack in (fast path)

PUBLISHES = [
    dict(exchange="", routing_key="queue-name", mandatory=False, immediate=False),
    dict(exchange="amq.topic", routing_key="a.b.c", mandatory=True, immediate=False),
    dict(exchange="ex", routing_key="", mandatory=False, immediate=True),
    dict(exchange="e.x-1:2_", routing_key="rk", mandatory=True, immediate=True),
    dict(exchange="x" * 127, routing_key="k" * 255, mandatory=True, immediate=False),
    dict(exchange="amq.direct", routing_key="ключ 🔑", mandatory=False, immediate=False),
]


@pytest.mark.parametrize("fields", PUBLISHES)
def test_decode_publish_matches_pamqp(fields):
    payload = payload_of(marshal(spec.Basic.Publish(**fields)))
    assert codec.method_index(payload) == BASIC_PUBLISH
    publish = codec.decode_publish(payload)
    assert publish.exchange == fields["exchange"]
    assert publish.routing_key == fields["routing_key"]
    assert publish.mandatory is fields["mandatory"]
    assert publish.immediate is fields["immediate"]
    assert publish.route_bytes == (
        codec.shortstr(fields["exchange"]) + codec.shortstr(fields["routing_key"])
    )


@pytest.mark.parametrize("exchange", ["ünïcode exchange", "é" * 127, "x" * 255])
def test_decode_publish_accepts_names_pamqp_would_reject(exchange):
    with pytest.raises(ValueError):
        spec.Basic.Publish(exchange=exchange)
    method = codec.unchecked(
        spec.Basic.Publish, ticket=0, exchange=exchange, routing_key="rk", mandatory=True,
        immediate=False,
    )
    publish = codec.decode_publish(payload_of(codec.encode_method(1, method)))
    assert (publish.exchange, publish.routing_key, publish.mandatory) == (exchange, "rk", True)
    assert publish.route_bytes == codec.shortstr(exchange) + codec.shortstr("rk")


def test_decode_publish_truncated_raises_501():
    payload = payload_of(marshal(spec.Basic.Publish(exchange="ex", routing_key="rk")))
    for cut in range(4, len(payload)):
        with raises_code(FRAME_ERROR) as caught:
            codec.decode_publish(payload[:cut])
        assert (caught.value.class_id, caught.value.method_id) == (60, 40)
        assert "cannot decode" in caught.value.text


def test_decode_publish_takes_any_bytes_and_keeps_them():
    """RabbitMQ checks no UTF-8 in basic.publish: the names are kept byte for byte."""
    payload = payload_of(marshal(spec.Basic.Publish(exchange="ex", routing_key="rk")))
    bad = payload.replace(b"\x02rk", b"\x02\xff\xfe").replace(b"\x02ex", b"\x02e\x80")
    publish = codec.decode_publish(bad)
    assert publish.route_bytes == b"\x02e\x80\x02\xff\xfe"
    assert codec.shortstr(publish.exchange) + codec.shortstr(publish.routing_key) == \
        publish.route_bytes


@pytest.mark.parametrize(
    ("delivery_tag", "multiple"), [(1, False), (42, True), (2**32 + 1, False), (MAX_TAG, True)]
)
def test_decode_ack_matches_pamqp(delivery_tag, multiple):
    payload = payload_of(marshal(spec.Basic.Ack(delivery_tag=delivery_tag, multiple=multiple)))
    assert codec.method_index(payload) == BASIC_ACK
    ack = codec.decode_ack(payload)
    assert (ack.delivery_tag, ack.multiple) == (delivery_tag, multiple)


def test_decode_ack_of_the_largest_tag():
    payload = (BASIC_ACK.to_bytes(4, "big") + (2**64 - 1).to_bytes(8, "big") + b"\x01")
    ack = codec.decode_ack(payload)
    assert (ack.delivery_tag, ack.multiple) == (2**64 - 1, True)


def test_decode_ack_truncated_raises_501():
    payload = payload_of(marshal(spec.Basic.Ack(delivery_tag=5)))
    for cut in range(4, len(payload)):
        with raises_code(FRAME_ERROR) as caught:
            codec.decode_ack(payload[:cut])
        assert (caught.value.class_id, caught.value.method_id) == (60, 80)


# ---------------------------------------------------------------------------------------------
# Content frames and basic.deliver / get-ok / return out (fast path)


def check_content(frames: list, channel: int, body: bytes) -> None:
    """frames = [(channel, ContentHeader), (channel, ContentBody)...] as pamqp read them."""
    (header_channel, header), *body_frames = frames
    assert header_channel == channel
    assert isinstance(header, pamqp_header.ContentHeader)
    assert header.class_id == 60
    assert header.weight == 0
    assert header.body_size == len(body)
    assert header.properties == PROPERTIES
    assert all(isinstance(frame, pamqp_body.ContentBody) for _, frame in body_frames)
    assert all(frame_channel == channel for frame_channel, _ in body_frames)
    assert all(len(frame.value) <= CHUNK for _, frame in body_frames)
    assert len(body_frames) == -(-len(body) // CHUNK)  # ceil; no empty body frame
    assert body_of(body_frames) == body


def expected_content(channel: int, body: bytes) -> bytes:
    """Content header and body frames exactly as pamqp marshals them."""
    parts = [marshal(pamqp_header.ContentHeader(0, len(body), PROPERTIES), channel)]
    parts += [
        marshal(pamqp_body.ContentBody(body[start : start + CHUNK]), channel)
        for start in range(0, len(body), CHUNK)
    ]
    return b"".join(parts)


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_encode_deliver_parses_in_pamqp(body_size):
    body = make_body(body_size)
    data = codec.encode_deliver(
        3, codec.shortstr("amq.ctag-1"), 17, True,
        codec.shortstr("amq.direct") + codec.shortstr("rk"), PROPS_RAW, body, FRAME_MAX,
    )
    (channel, deliver), *content = unmarshal_all(data)
    assert channel == 3
    assert isinstance(deliver, spec.Basic.Deliver)
    assert deliver.consumer_tag == "amq.ctag-1"
    assert deliver.delivery_tag == 17
    assert deliver.redelivered is True
    assert deliver.exchange == "amq.direct"
    assert deliver.routing_key == "rk"
    check_content(content, 3, body)


@pytest.mark.parametrize("body_size", BODY_SIZES)
@pytest.mark.parametrize("redelivered", [False, True])
def test_encode_deliver_equals_pamqp_bytes(body_size, redelivered):
    body = make_body(body_size)
    deliver = spec.Basic.Deliver(
        consumer_tag="ctag", delivery_tag=2**40, redelivered=redelivered, exchange="",
        routing_key="queue",
    )
    data = codec.encode_deliver(
        65535, codec.shortstr("ctag"), 2**40, redelivered,
        codec.shortstr("") + codec.shortstr("queue"), PROPS_RAW, body, FRAME_MAX,
    )
    assert data == marshal(deliver, 65535) + expected_content(65535, body)


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_deliver_encoder_reuses_a_shape_and_equals_pamqp_bytes(body_size):
    """The encoder's pieces, joined, are pamqp's bytes for every delivery; the second delivery
    of the same shape (other tag, redelivered flag and body of that size) reuses the bytes
    encoded for the first, and `size` is the length of what is written."""
    encoder = codec.DeliverEncoder(7)
    route = codec.shortstr("amq.direct") + codec.shortstr("rk")
    for tag, redelivered, fill in ((1, False, b"a"), (2**40, True, b"b")):
        body = (fill * body_size)[:body_size]
        shape = encoder.shape(codec.shortstr("ctag"), route, PROPS_RAW, body_size, FRAME_MAX)
        data = b"".join(shape.parts(tag, redelivered, body))
        deliver = spec.Basic.Deliver(consumer_tag="ctag", delivery_tag=tag,
                                     redelivered=redelivered, exchange="amq.direct",
                                     routing_key="rk")
        assert data == marshal(deliver, 7) + expected_content(7, body)
        assert shape.size == len(data)
        if tag == 1:
            first = shape
    assert shape is first


def test_deliver_encoder_keeps_a_bounded_number_of_shapes():
    encoder = codec.DeliverEncoder(1, limit=4)
    shapes = [encoder.shape(b"\x01c", b"\x00\x01q", PROPS_RAW, size, FRAME_MAX)
              for size in range(10)]
    assert len(encoder._shapes) <= 4
    assert encoder.shape(b"\x01c", b"\x00\x01q", PROPS_RAW, 9, FRAME_MAX) is shapes[9]
    data = b"".join(shapes[3].parts(5, False, b"xyz"))
    assert codec.FrameReader(FRAME_MAX).feed(data)[2] == (FRAME_BODY, 1, b"xyz")


def test_encode_deliver_uses_the_publish_route_bytes():
    publish = codec.decode_publish(
        payload_of(marshal(spec.Basic.Publish(exchange="amq.topic", routing_key="a.b")))
    )
    data = codec.encode_deliver(
        1, codec.shortstr("c"), 1, False, publish.route_bytes, PROPS_RAW, b"x", FRAME_MAX,
    )
    _, deliver = unmarshal_all(data)[0]
    assert (deliver.exchange, deliver.routing_key) == ("amq.topic", "a.b")


def test_encode_deliver_reads_back_through_frame_reader():
    body = make_body(3 * FRAME_MAX)
    data = codec.encode_deliver(
        1, codec.shortstr("c"), 9, False, codec.shortstr("") + codec.shortstr("q"), PROPS_RAW,
        body, FRAME_MAX,
    )
    frames = codec.FrameReader(FRAME_MAX).feed(data)
    assert [frame_type for frame_type, _, _ in frames] == [
        FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_BODY, FRAME_BODY, FRAME_BODY,
    ]
    assert codec.decode_content_header(frames[1][2]) == (60, 0, len(body), PROPS_RAW)
    assert b"".join(payload for _, _, payload in frames[2:]) == body


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_encode_get_ok_matches_pamqp(body_size):
    body = make_body(body_size)
    data = codec.encode_get_ok(
        2, 99, False, codec.shortstr("ex") + codec.shortstr("rk"), 12, PROPS_RAW, body, FRAME_MAX,
    )
    (channel, get_ok), *content = unmarshal_all(data)
    assert channel == 2
    assert isinstance(get_ok, spec.Basic.GetOk)
    assert (get_ok.delivery_tag, get_ok.redelivered, get_ok.exchange, get_ok.routing_key) == (
        99, False, "ex", "rk",
    )
    assert get_ok.message_count == 12
    check_content(content, 2, body)
    expected = spec.Basic.GetOk(
        delivery_tag=99, redelivered=False, exchange="ex", routing_key="rk", message_count=12,
    )
    assert data == marshal(expected, 2) + expected_content(2, body)


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_encode_return_matches_pamqp(body_size):
    body = make_body(body_size)
    data = codec.encode_return(
        4, 312, "NO_ROUTE", codec.shortstr("ex") + codec.shortstr("nowhere"), PROPS_RAW, body,
        FRAME_MAX,
    )
    (channel, returned), *content = unmarshal_all(data)
    assert channel == 4
    assert isinstance(returned, spec.Basic.Return)
    assert (returned.reply_code, returned.reply_text) == (312, "NO_ROUTE")
    assert (returned.exchange, returned.routing_key) == ("ex", "nowhere")
    check_content(content, 4, body)
    expected = spec.Basic.Return(
        reply_code=312, reply_text="NO_ROUTE", exchange="ex", routing_key="nowhere",
    )
    assert data == marshal(expected, 4) + expected_content(4, body)


@pytest.mark.parametrize(("delivery_tag", "multiple"), [(1, False), (300, True), (MAX_TAG, True)])
def test_encode_ack_matches_pamqp(delivery_tag, multiple):
    data = codec.encode_ack(7, delivery_tag, multiple)
    assert data == marshal(spec.Basic.Ack(delivery_tag=delivery_tag, multiple=multiple), 7)
    _, ack = unmarshal_all(data)[0]
    assert (ack.delivery_tag, ack.multiple) == (delivery_tag, multiple)


@pytest.mark.parametrize(("delivery_tag", "multiple"), [(1, False), (300, True), (MAX_TAG, True)])
def test_encode_nack_matches_pamqp(delivery_tag, multiple):
    data = codec.encode_nack(7, delivery_tag, multiple)
    expected = spec.Basic.Nack(delivery_tag=delivery_tag, multiple=multiple, requeue=False)
    assert data == marshal(expected, 7)
    _, nack = unmarshal_all(data)[0]
    assert (nack.delivery_tag, nack.multiple, nack.requeue) == (delivery_tag, multiple, False)


RAW_PROPERTY_BYTES = [
    b"\x00\x00",  # no properties
    PROPS_RAW,
    spec.Basic.Properties(content_type="text/plain").marshal(),
    # Bytes pamqp would never produce: a cluster_id, and a headers table with a short-short int
    # ('b') and a short string ('s') that pamqp would re-encode differently.
    b"\x00\x04\x05node1",
    b"\x20\x00" + b"\x00\x00\x00\x0a" + b"\x01ab\x05" + b"\x01cs\x00\x02",
]


@pytest.mark.parametrize("props_raw", RAW_PROPERTY_BYTES)
@pytest.mark.parametrize("body_size", [0, 10, 2 * FRAME_MAX])
def test_encode_content_passes_property_bytes_through(props_raw, body_size):
    body = make_body(body_size)
    frames = codec.FrameReader(FRAME_MAX).feed(codec.encode_content(5, props_raw, body, FRAME_MAX))
    (frame_type, channel, header), *body_frames = frames
    assert (frame_type, channel) == (FRAME_HEADER, 5)
    assert header[12:] == props_raw
    assert codec.decode_content_header(header) == (60, 0, body_size, props_raw)
    assert all(frame[:2] == (FRAME_BODY, 5) for frame in body_frames)
    assert b"".join(frame[2] for frame in body_frames) == body


def test_encode_content_accepts_a_memoryview_body():
    body = make_body(2 * FRAME_MAX)
    data = codec.encode_content(1, PROPS_RAW, memoryview(body), FRAME_MAX)
    assert data == expected_content(1, body)


@pytest.mark.parametrize("payload", [b"", b"\x00\x3c\x00\x00", bytes(11)])
def test_decode_content_header_too_short_raises_501(payload):
    """Under 12 bytes: not a content header (RabbitMQ: 501 unknown_frame). 12 or 13 bytes are
    one whose properties cannot be decoded (541 at publish, see test_properties)."""
    with raises_code(FRAME_ERROR):
        codec.decode_content_header(payload)


def test_heartbeat_frame_matches_pamqp():
    assert pamqp_heartbeat.Heartbeat().marshal() == codec.HEARTBEAT_FRAME


# ---------------------------------------------------------------------------------------------
# Every other method, through pamqp

SERVER_PROPERTIES = {
    "product": "Warren",
    "version": "0.1.0",
    "platform": "Python",
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
    },
    "cluster_name": "warren@localhost",
}

METHODS = [
    spec.Connection.Start(server_properties=SERVER_PROPERTIES, mechanisms="PLAIN AMQPLAIN",
                          locales="en_US"),
    spec.Connection.StartOk(client_properties={"product": "pika", "n": 12}, mechanism="PLAIN",
                            response="\x00guest\x00guest", locale="en_US"),
    spec.Connection.Tune(channel_max=2047, frame_max=131072, heartbeat=60),
    spec.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60),
    spec.Connection.Open(virtual_host="/"),
    spec.Connection.Close(reply_code=320, reply_text="CONNECTION_FORCED - bye", class_id=0,
                          method_id=0),
    spec.Connection.Blocked(reason="low on memory"),
    spec.Channel.Open(),
    spec.Channel.OpenOk(),
    spec.Channel.Close(reply_code=404, reply_text="NOT_FOUND - no queue 'q' in vhost '/'",
                       class_id=50, method_id=10),
    spec.Channel.Flow(active=True),
    spec.Exchange.Declare(exchange="logs", exchange_type="topic", durable=True,
                          arguments={"alternate-exchange": "ae"}),
    spec.Exchange.Bind(destination="d", source="s", routing_key="#", nowait=True),
    spec.Queue.Declare(queue="q", durable=True, exclusive=True, arguments={"x-max-length": 10}),
    spec.Queue.DeclareOk(queue="amq.gen-abc", message_count=3, consumer_count=1),
    spec.Queue.Bind(queue="q", exchange="ex", routing_key="rk", arguments={"x-match": "all"}),
    spec.Queue.PurgeOk(message_count=42),
    spec.Queue.Delete(queue="q", if_unused=True, if_empty=True),
    spec.Basic.Qos(prefetch_size=0, prefetch_count=250, global_=True),
    spec.Basic.Consume(queue="q", consumer_tag="ctag", no_local=True, no_ack=True,
                       exclusive=True, nowait=False, arguments={"x-priority": 5}),
    spec.Basic.ConsumeOk(consumer_tag="amq.ctag-xyz"),
    spec.Basic.Cancel(consumer_tag="ctag", nowait=True),
    spec.Basic.Get(queue="q", no_ack=True),
    spec.Basic.GetEmpty(),
    spec.Basic.Reject(delivery_tag=8, requeue=False),
    spec.Basic.Nack(delivery_tag=9, multiple=True, requeue=True),
    spec.Basic.Recover(requeue=True),
    spec.Confirm.Select(nowait=False),
    spec.Tx.Select(),
]


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.name)
def test_encode_method_equals_pamqp_marshal(method):
    assert codec.encode_method(9, method) == marshal(method, 9)


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=5)))
def test_encode_method_packs_exchange_declare_bits(bits):
    passive, durable, auto_delete, internal, nowait = bits
    method = spec.Exchange.Declare(
        exchange="ex", exchange_type="direct", passive=passive, durable=durable,
        auto_delete=auto_delete, internal=internal, nowait=nowait, arguments={"k": "v"},
    )
    assert codec.encode_method(1, method) == marshal(method, 1)


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=5)))
def test_encode_method_packs_queue_declare_bits(bits):
    passive, durable, exclusive, auto_delete, nowait = bits
    method = spec.Queue.Declare(
        queue="q", passive=passive, durable=durable, exclusive=exclusive,
        auto_delete=auto_delete, nowait=nowait,
    )
    assert codec.encode_method(1, method) == marshal(method, 1)


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=4)))
def test_encode_method_packs_basic_consume_bits(bits):
    no_local, no_ack, exclusive, nowait = bits
    method = spec.Basic.Consume(
        queue="q", consumer_tag="t", no_local=no_local, no_ack=no_ack, exclusive=exclusive,
        nowait=nowait,
    )
    assert codec.encode_method(1, method) == marshal(method, 1)


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=2)))
def test_encode_method_packs_basic_nack_bits(bits):
    multiple, requeue = bits
    method = spec.Basic.Nack(delivery_tag=3, multiple=multiple, requeue=requeue)
    assert codec.encode_method(1, method) == marshal(method, 1)


def defaultable_methods():
    """Every method class pamqp can marshal with its default field values (not deprecated ones)."""
    for method_class in spec.INDEX_MAPPING.values():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)
                marshal(method_class())
        except (TypeError, ValueError, DeprecationWarning):
            continue
        yield method_class


@pytest.mark.parametrize("method_class", list(defaultable_methods()), ids=lambda c: c.name)
def test_encode_method_equals_pamqp_for_default_fields(method_class):
    assert codec.encode_method(0, method_class()) == marshal(method_class(), 0)


@pytest.mark.parametrize(
    ("method_class", "fields", "name_field"),
    [
        (spec.Queue.DeclareOk, dict(message_count=1, consumer_count=2), "queue"),
        (spec.Basic.GetOk,
         dict(delivery_tag=1, redelivered=True, routing_key="rk", message_count=0), "exchange"),
        (spec.Basic.Deliver,
         dict(consumer_tag="c", delivery_tag=1, redelivered=False, routing_key="rk"), "exchange"),
    ],
)
@pytest.mark.parametrize("name", ["ünïcode queue", "名前 with spaces", "é" * 127])
def test_unchecked_lets_names_pamqp_rejects_through(method_class, fields, name_field, name):
    with pytest.raises(ValueError):
        method_class(**fields, **{name_field: name})
    method = codec.unchecked(method_class, **fields, **{name_field: name})
    data = codec.encode_method(1, method)
    (channel, parsed), = unmarshal_all(data)
    assert channel == 1
    assert isinstance(parsed, method_class)
    assert getattr(parsed, name_field) == name
    for field, value in fields.items():
        assert getattr(parsed, field) == value


def test_shortstr():
    assert codec.shortstr("") == b"\x00"
    assert codec.shortstr("ab") == b"\x02ab"
    assert codec.shortstr("ü") == b"\x02\xc3\xbc"


# ---------------------------------------------------------------------------------------------
# decode_method


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.name)
def test_decode_method_round_trips_pamqp_bytes(method):
    payload = payload_of(marshal(method))
    decoded = codec.decode_method(codec.method_index(payload), payload)
    assert type(decoded) is type(method)
    assert dict(decoded) == dict(method)


@pytest.mark.parametrize(
    ("class_id", "method_id"), [(10, 99), (99, 10), (60, 200), (0, 0), (65535, 65535)]
)
def test_decode_method_unknown_index_raises_540(class_id, method_id):
    index = (class_id << 16) | method_id
    payload = index.to_bytes(4, "big") + b"\x00\x00"
    with raises_code(NOT_IMPLEMENTED) as caught:
        codec.decode_method(index, payload)
    assert (caught.value.class_id, caught.value.method_id) == (class_id, method_id)


@pytest.mark.parametrize(
    "method", [method for method in METHODS if payload_of(marshal(method))[4:]],
    ids=lambda method: method.name,
)
def test_decode_method_truncated_raises_501(method):
    """Every cut of the arguments is refused, also one inside a trailing shortstr or longstr
    (which pamqp alone would silently decode as a shorter string)."""
    payload = payload_of(marshal(method))
    index = codec.method_index(payload)
    for cut in range(4, len(payload)):
        with raises_code(FRAME_ERROR) as caught:
            codec.decode_method(index, payload[:cut])
        assert (caught.value.class_id << 16) | caught.value.method_id == index
        assert caught.value.text.startswith("cannot decode <<")
