"""Content assembly of one channel, sans-I/O: a content-bearing method (basic.publish), then
its content header, then body frames until the header's body size is reached. Frames in; the
property bytes and the whole body out, or the error RabbitMQ closes the connection with.

The states, and the one kind of frame each takes (the transition table):

    state           takes                next state
    IDLE            method frame         IDLE; EXPECT_HEADER once `start`ed by a content method
    EXPECT_HEADER   content header       EXPECT_BODY; IDLE if the body size is 0 (complete)
    EXPECT_BODY     body frame           EXPECT_BODY; IDLE once the body size is reached

Any other frame is a 505 UNEXPECTED_FRAME connection error with RabbitMQ's text for the state
(`UNEXPECTED`); a content header of another class than basic's, or with a weight, is one too.
A body that overruns its size never completes (as in RabbitMQ, the next method frame is the
error). Content that is only checked, not kept (`start(keep=False)`: a method only servers
send, or a channel that must not act) raises the `refusal` it was started with once complete.

The checks are comparisons against the state rather than lookups in the table: `header` and
`body` run for every published message."""

from __future__ import annotations

from protocol.codec import decode_content_header
from protocol.constants import CLASS_BASIC, FRAME_BODY, FRAME_HEADER, FRAME_METHOD, UNEXPECTED_FRAME
from protocol.errors import AMQPConnectionError, AMQPError

IDLE, EXPECT_HEADER, EXPECT_BODY = 0, 1, 2

# state -> the frame type it takes
TAKES = {IDLE: FRAME_METHOD, EXPECT_HEADER: FRAME_HEADER, EXPECT_BODY: FRAME_BODY}
# state -> RabbitMQ's text for any other frame (with basic's class and the method's id, except
# in IDLE)
UNEXPECTED = {
    IDLE: "expected method frame, got non method frame instead",
    EXPECT_HEADER: "expected content header for class 60, got non content header frame instead",
    EXPECT_BODY: "expected content body, got non content body frame instead",
}


class ContentAssembly:
    """The content being assembled on one channel."""

    __slots__ = ("state", "method_id", "body_size", "received", "_parts", "_keep", "_refusal")

    def __init__(self) -> None:
        self.state = IDLE
        self.method_id = 40  # of the content's method: basic.publish, or one only servers send
        self.body_size = 0
        self.received = 0
        self._parts: list[bytes] = []
        self._keep = True
        self._refusal: AMQPError | None = None

    def start(self, index: int, keep: bool = True, refusal: AMQPError | None = None) -> None:
        """A content method (`index`: class << 16 | method) was taken: its header comes next.
        Content not kept is checked frame by frame, then dropped and `refusal` raised."""
        self.method_id = index & 0xFFFF
        self.state = EXPECT_HEADER
        self._keep = keep
        self._refusal = refusal

    def reset(self) -> None:
        """Drop the content being assembled (the channel closes, or refused it)."""
        self.state = IDLE
        self._parts = []

    def unexpected(self) -> AMQPConnectionError:
        """The error for a frame the current state does not take."""
        if self.state == IDLE:
            return AMQPConnectionError(UNEXPECTED_FRAME, UNEXPECTED[IDLE])
        return AMQPConnectionError(UNEXPECTED_FRAME, UNEXPECTED[self.state], CLASS_BASIC,
                                   self.method_id)

    def header(self, payload: bytes) -> tuple[bytes, int] | None:
        """A content header frame: (raw property bytes, body size) of content to keep, None for
        content not kept. When the body size is 0 the content is complete (IDLE again)."""
        class_id, weight, body_size, props_raw = decode_content_header(payload)
        if self.state != EXPECT_HEADER:
            raise self.unexpected()
        if weight or class_id != CLASS_BASIC:
            got = f"one for class {class_id}" if not weight else "non content header frame"
            raise AMQPConnectionError(
                UNEXPECTED_FRAME, f"expected content header for class 60, got {got} instead",
                CLASS_BASIC, self.method_id,
            )
        self.body_size = body_size
        self.received = 0
        if not self._keep:
            self.state = EXPECT_BODY
            if not body_size:
                self._drop()
            return None
        self.state = EXPECT_BODY if body_size else IDLE
        return props_raw, body_size

    def body(self, payload: bytes) -> bytes | None:
        """A body frame: the whole body once complete (IDLE again), else None."""
        if self.state != EXPECT_BODY:
            raise self.unexpected()
        self.received = received = self.received + len(payload)
        if not self._keep:
            if received >= self.body_size:
                self._drop()
            return None
        if received < self.body_size:
            self._parts.append(payload)
            return None
        if received > self.body_size:  # never completes: the next method frame is the error
            self._parts.clear()
            return None
        self.state = IDLE
        if not self._parts:
            return payload
        self._parts.append(payload)
        body = b"".join(self._parts)
        self._parts = []
        return body

    def _drop(self) -> None:
        self.state = IDLE
        if self._refusal is not None:
            raise self._refusal
