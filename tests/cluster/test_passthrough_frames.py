"""The pass-through's close frame, bytes only (where it may be put into the leader's output is
tests/protocol/test_frameboundaries.py)."""

from __future__ import annotations

from pamqp import commands

from broker.cluster.passthrough import leader_changed_frame
from protocol.codec import FrameReader, decode_method, method_index


def test_the_close_frame_is_rabbitmqs_320() -> None:
    [(frame_type, channel, payload)] = FrameReader(4096).feed(leader_changed_frame())
    close = decode_method(method_index(payload), payload)
    assert (frame_type, channel) == (1, 0)
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        320, "CONNECTION_FORCED - leader changed", 0, 0)
