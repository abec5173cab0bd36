"""Where the frames of an AMQP byte stream end, without decoding or copying them: a proxy that
passes a server's output through untouched (a cluster follower, broker/cluster/passthrough.py)
asks `between_frames` before it puts a frame of its own into the stream, and `opened` (the
server sent connection.open-ok) before it may send connection.close. Only frame headers (and,
until the connection is open, a channel-0 method's class and method ids) are read."""

from __future__ import annotations

import struct

from protocol.constants import FRAME_METHOD, PROTOCOL_HEADER

_HEAD = struct.Struct(">BHI")  # type, channel, payload size
_HEAD_AND_METHOD = _HEAD.size + 4  # with a method frame's class and method ids
CONNECTION_OPEN_OK = (10 << 16) | 41


class FrameBoundaries:
    """Feed it a server's output in pieces of any size; it says whether what was fed so far
    ends between two frames and whether connection.open-ok went by."""

    def __init__(self) -> None:
        self._head = b""  # the frame header (and a method's ids) read so far
        self._remaining = 0  # bytes of the current frame not yet seen (payload + frame end)
        self.opened = False

    @property
    def between_frames(self) -> bool:
        return self._remaining == 0 and not self._head

    def feed(self, data: bytes) -> None:
        offset, size = 0, len(data)
        while offset < size:
            if self._remaining:
                taken = min(self._remaining, size - offset)
                self._remaining -= taken
                offset += taken
                continue
            if not self._head and data[offset:offset + 4] == PROTOCOL_HEADER[:4]:
                return  # a protocol header (the server refusing ours): no frames follow
            wanted = _HEAD.size if len(self._head) < _HEAD.size or self.opened else (
                _HEAD_AND_METHOD)
            piece = data[offset:offset + wanted - len(self._head)]
            self._head += piece
            offset += len(piece)
            if len(self._head) < _HEAD.size:
                continue
            frame_type, channel, payload = _HEAD.unpack_from(self._head)
            if not self.opened and frame_type == FRAME_METHOD and channel == 0:
                if len(self._head) < _HEAD_AND_METHOD:
                    continue
                method = int.from_bytes(self._head[_HEAD.size:_HEAD_AND_METHOD], "big")
                self.opened = method == CONNECTION_OPEN_OK
            self._remaining = payload + 1 - (len(self._head) - _HEAD.size)
            self._head = b""
