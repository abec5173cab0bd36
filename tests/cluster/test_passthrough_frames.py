"""The pass-through's frame tracking, bytes only: it knows when the leader's output is between
two frames and when the connection is open, so the 320 close never lands inside a frame."""

from __future__ import annotations

from pamqp import commands

from broker.cluster.passthrough import FrameBoundaries, leader_changed_frame
from protocol.codec import FrameReader, decode_method, encode_method, method_index


def frames() -> list[bytes]:
    start = encode_method(0, commands.Connection.Start(
        server_properties={"product": "x"}, mechanisms="PLAIN", locales="en_US"))
    tune = encode_method(0, commands.Connection.Tune(channel_max=10, frame_max=4096,
                                                     heartbeat=0))
    open_ok = encode_method(0, commands.Connection.OpenOk())
    heartbeat = b"\x08\x00\x00\x00\x00\x00\x00\xce"
    deliver = encode_method(1, commands.Basic.Deliver(consumer_tag="c", delivery_tag=1,
                                                      exchange="", routing_key="q"))
    return [start, tune, open_ok, heartbeat, deliver]


def test_boundaries_in_every_split_of_the_stream() -> None:
    stream = b"".join(frames())
    ends = set()
    total = 0
    for frame in frames():
        total += len(frame)
        ends.add(total)
    open_ok_end = sum(len(frame) for frame in frames()[:3])
    for chunk in (1, 2, 3, 5, 7, 11, 64):
        tracker = FrameBoundaries()
        for offset in range(0, len(stream), chunk):
            tracker.feed(stream[offset:offset + chunk])
            seen = min(offset + chunk, len(stream))
            assert tracker.between_frames == (seen in ends), (chunk, seen)
            may_close = tracker.opened and tracker.between_frames
            assert may_close == (seen in ends and seen >= open_ok_end), (chunk, seen)


def test_refusal_header_is_not_taken_for_frames() -> None:
    tracker = FrameBoundaries()
    tracker.feed(b"AMQP\x00\x00\x09\x01")
    assert tracker.between_frames and not tracker.opened


def test_the_close_frame_is_rabbitmqs_320() -> None:
    [(frame_type, channel, payload)] = FrameReader(4096).feed(leader_changed_frame())
    close = decode_method(method_index(payload), payload)
    assert (frame_type, channel) == (1, 0)
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        320, "CONNECTION_FORCED - leader changed", 0, 0)
