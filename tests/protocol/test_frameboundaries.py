"""FrameBoundaries, bytes only: it knows when a server's output is between two frames and when
the connection is open, so a proxy's own close frame never lands inside a frame (the cluster's
pass-through, broker/cluster/passthrough.py)."""

from __future__ import annotations

from pamqp import commands

from protocol.codec import encode_method
from protocol.frameboundaries import FrameBoundaries


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


