"""AMQP pass-through on a follower: each client connection is piped, bytes untouched, to the
leader over a client link (broker/cluster/clientlink.py: the leader's replication port,
authenticated with the cluster secret, so the leader sees the client's own address). When the
leader changes, the follower ends each piped connection as RabbitMQ ends one it closes:
connection.close 320 `CONNECTION_FORCED - leader changed` on channel 0 (only between two
frames of the leader's output, and only once the connection is open, as the broker itself
does), then the socket closes; clients reconnect to any node.

`FrameBoundaries` (protocol/frameboundaries.py) follows the leader's output frame by frame
(headers only, no copy) so the close frame is never put into the middle of one."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pamqp import commands

from broker.cluster.clientlink import adopt, client_of, open_link
from protocol.codec import encode_method
from protocol.constants import CONNECTION_FORCED
from protocol.frameboundaries import FrameBoundaries
from storage.replication import ReplicationRefused, wire

if TYPE_CHECKING:
    from broker.cluster.etcd import Leader

log = logging.getLogger(__name__)

LEADER_CHANGED = "CONNECTION_FORCED - leader changed"
PENDING_LIMIT = 64 * 1024  # client bytes held while the link is set up; then it is not read


def leader_changed_frame() -> bytes:
    return encode_method(0, commands.Connection.Close(
        reply_code=CONNECTION_FORCED, reply_text=LEADER_CHANGED, class_id=0, method_id=0))


class _Upstream(asyncio.Protocol):
    """The follower's connection to the leader for one client (a client link after READY)."""

    def __init__(self, pipe: PassThrough, writer: asyncio.StreamWriter) -> None:
        self.pipe: PassThrough | None = pipe  # None once the client is let go
        self.writer = writer  # the link's stream writer: collected, it would close the socket
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.pipe is not None:
            self.pipe.from_leader(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pipe is not None:
            self.pipe.leader_gone()

    def pause_writing(self) -> None:
        if self.pipe is not None:
            self.pipe.pause_client()

    def resume_writing(self) -> None:
        if self.pipe is not None:
            self.pipe.resume_client()


class PassThrough(asyncio.Protocol):
    """One client connection on a follower, piped to `leader` over a client link authenticated
    with `secret` as node `node_name`; leader None: there is no leader at the moment, the
    connection is closed at once."""

    def __init__(self, leader: Leader | None, registry: set[PassThrough], *, secret: str,
                 node_name: str) -> None:
        self.leader = leader
        self.registry = registry
        self.secret = secret
        self.node_name = node_name
        self.client: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.frames = FrameBoundaries()
        self._pending: list[bytes] = []  # client bytes before the link is up
        self._pending_bytes = 0
        self._task: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]
        if self.leader is None:
            transport.close()
            return
        self.registry.add(self)
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        leader = self.leader
        try:
            _, writer = await open_link(tuple(leader.replication), client_of(self.client),
                                     secret=self.secret, epoch=leader.epoch,
                                     node_name=self.node_name)
        except (OSError, TimeoutError, EOFError, ReplicationRefused,
                wire.ProtocolError) as error:
            log.warning("cannot pass a client to the leader %s at %s:%d: %s", leader.node,
                        *leader.replication, error or type(error).__name__)
            self.client.close()
            return
        self.upstream = _Upstream(self, writer)
        adopt(writer, self.upstream)
        for data in self._pending:
            self.upstream.transport.write(data)
        self._pending.clear()
        if self._pending_bytes > PENDING_LIMIT:
            self.client.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > PENDING_LIMIT:  # a client does not send much before Start
            self.client.pause_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        if self._task is not None:
            self._task.cancel()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def pause_client(self) -> None:
        self.client.pause_reading()

    def resume_client(self) -> None:
        self.client.resume_reading()

    def from_leader(self, data: bytes) -> None:
        self.frames.feed(data)
        self.client.write(data)

    def leader_gone(self) -> None:
        """The leader closed our connection (it closed the client's, or it died)."""
        self.client.close()

    def leader_changed(self) -> None:
        """Stop piping; tell the client with 320 where that can be said, and close."""
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.pipe = None
            self.upstream.transport.abort()
        if self.frames.opened and self.frames.between_frames and not self.client.is_closing():
            self.client.write(leader_changed_frame())
        self.client.close()
