"""The one asyncio.Protocol: adapts a socket to a Connection. Output written during one
event-loop turn is collected and handed to the socket in a single call. Counts the bytes and
the reads and writes of the socket (RabbitMQ's recv_oct/recv_cnt, send_oct/send_cnt).

Backpressure: the connection is unwritable (its consumers are passed over by dispatch) while
the socket's own buffer is above its high-water mark (asyncio's pause_writing/resume_writing),
and, within a loop turn, once the output collected in that turn passes TURN_BUDGET bytes, until
it is handed to the socket. So a consumer with no prefetch limit on a long queue gets at most a
budget per loop turn, and nothing more while its reader is behind, instead of the whole queue.

A connection a cluster's follower passed on (broker/cluster/clientlink.py) has an `Origin`:
the client's own address, the follower's address it connected to, the follower's name and its
TLS session there, which stand for the socket's own.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.connection import Connection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from broker.node import Node

WRITE_HIGH_WATER = 4 * 1024 * 1024  # the socket's buffer above which asyncio pauses writing
TURN_BUDGET = 1024 * 1024  # output of one loop turn past which dispatch waits for the flush


@dataclass(frozen=True)
class Origin:
    """Where a connection passed on by a cluster's follower really comes from."""

    peer: tuple[str, int]  # the client, as the follower saw it
    local: tuple[str, int]  # the follower's address the client connected to
    node: str  # the follower's node name
    tls: Any = None  # broker.tls.ForwardedTLS, or None for plain TCP
    keep: Any = None  # what must live as long as the socket (the stream writer it came on)


class Transport(asyncio.Protocol):
    def __init__(self, node: Node, origin: Origin | None = None) -> None:
        self.node = node
        self.origin = origin
        self.connection: Connection | None = None
        self.local_address: tuple[str, int] | None = None
        self.tls: ssl.SSLObject | None = None  # set on the AMQPS listener
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes | memoryview] = []
        self._out_bytes = 0  # in _out
        self._over_budget = False  # _out passed TURN_BUDGET: unwritable until flushed
        self._paused = False  # asyncio's pause_writing: the socket's buffer is above high water
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        # Plain counters read by the management API: one increment per read or write batch.
        self.recv_oct = self.recv_cnt = self.send_oct = self.send_cnt = 0

    @property
    def pending_writes(self) -> int:
        """Writes the kernel has not taken yet: the chunks collected this loop turn, plus one
        for asyncio's buffer of the socket when it holds a backlog (RabbitMQ's pending_send)."""
        backlog = self._transport is not None and self._transport.get_write_buffer_size() > 0
        return len(self._out) + backlog

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        origin = self.origin
        if origin is None:
            self.local_address = transport.get_extra_info("sockname")
            self.tls = transport.get_extra_info("ssl_object")
            peer = transport.get_extra_info("peername")
        else:
            self.local_address, self.tls, peer = origin.local, origin.tls, origin.peer
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.connection = Connection(self.node, self, peer)

    @property
    def send_pending(self) -> int:
        """Bytes written but not yet handed to the socket (RabbitMQ's send_pend)."""
        waiting = self._transport.get_write_buffer_size() if self._transport is not None else 0
        return self._out_bytes + waiting

    def data_received(self, data: bytes) -> None:
        self.recv_oct += len(data)
        self.recv_cnt += 1
        self.connection.data_received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._out.clear()
        self.connection.connection_lost()

    def write(self, data: bytes) -> None:
        self.write_parts([data], len(data))

    def write_parts(self, parts: Sequence[bytes | memoryview], size: int) -> None:
        """Output of `size` bytes in pieces, joined with the rest of the turn's at the flush:
        each body is copied once between the message and the socket."""
        self._out += parts
        self._out_bytes += size
        if self._out_bytes > TURN_BUDGET and not self._over_budget:
            self._over_budget = True
            self.connection.pause_writing()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def write_room(self) -> int:
        """Bytes that may be collected this turn before TURN_BUDGET is passed."""
        return TURN_BUDGET - self._out_bytes

    def sent_since(self, send_cnt: int) -> bool:
        """Whether anything was written since the socket's writes numbered `send_cnt`
        (written to it since, or collected for the next flush): the heartbeat's question."""
        return self.send_cnt != send_cnt or bool(self._out)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        self._out_bytes = 0
        if not out or self._transport is None or self._transport.is_closing():
            out.clear()
            return
        self._out = []
        data = out[0] if len(out) == 1 else b"".join(out)
        self.send_oct += len(data)
        self.send_cnt += 1
        self._transport.write(data)  # may pause_writing
        if self._over_budget:
            self._over_budget = False
            if not self._paused:  # dispatch fills the next turn's budget
                self.connection.resume_writing()

    def close(self) -> None:
        """Flush what is pending, then close the socket."""
        self._over_budget = False  # no more dispatch to a socket we are closing
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def pause_reading(self) -> None:
        """Read nothing more from the socket (a publisher blocked by a resource alarm)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self._paused = True
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if not self._over_budget:
            self.connection.resume_writing()
