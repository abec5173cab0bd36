"""The replication leader: serves followers a byte copy of this node's durable files and holds
back the write-ahead log's confirms until the followers in sync have the batch on disk.

    leader = ReplicationLeader(data_dir, secret=..., epoch=..., node_name=..., min_in_sync=1,
                               in_sync={...}, write_in_sync=..., may_confirm=...)
    node = Node(config, replicator=leader)   # Node.start calls leader.attach(wal)
    await node.start()
    await leader.start(host, port)           # after Node.start: recovery's own changes to
    ...                                      # the files reach followers through catch-up
    leader.followers()                       # FollowerStatus of each connected or in-sync one
    await leader.close()                     # no confirm is released after this

`attach(wal)` makes the log record every change it makes to the files (storage/replication/
files.py `ActionLog`) and hand each written batch to `written(ticket)` instead of releasing its
waiters. The actions recorded go out as ACTIONS frames to every follower: a batch's records
once written, before the leader's fsync (`_ship` from the log's `before_fsync` hook), the rest
at `written`; a frame's position is the byte length of the live stream after it, a batch's
position that of its last frame.

The confirm rule (`_release`): a batch's waiters (publisher confirms, durable declare-ok,
tx.commit-ok) run when every follower of `in_sync` (the set last written to etcd) has
acknowledged its position, `in_sync` has at least `min_in_sync` members, and `may_confirm()`
(the lease is held). Checked on every ack, every set change and every tick (so a
`may_confirm` that turns true again releases what waited).

The in-sync set: a member with an unacknowledged batch older than `replication_timeout`, one
that disconnects, or one that has not connected within `replication_timeout` of the start is
dropped; a follower that has caught up and keeps up is added. Either way the new set is
written with `write_in_sync` (the etcd transaction guarded by the leader key) before it
counts: until then confirms wait for the old set. `write_in_sync` returning False means this
node no longer leads: nothing is confirmed after that. A follower is never required before
it has caught up, and never dropped without etcd knowing first.

A follower connects, authenticates (storage/replication/wire.py), sends its file list; the
leader registers it at the current position (live frames from then on are kept for it),
sends the catch-up actions computed from its files in a thread, CAUGHT_UP, the kept frames,
and from then on live frames as they come. It pings every follower every timeout / 3.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from storage.replication import wire
from storage.replication.files import CHECKSUMS, ActionLog, catch_up_actions
from storage.replication.status import FollowerStatus
from storage.replication.transport import read_message, refuse, send
from storage.tasks import cancel_and_wait

if TYPE_CHECKING:
    from storage.wal import WriteAheadLog

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
CATCH_UP_FRAME = 4 * 1024 * 1024  # data bytes per catch-up ACTIONS frame
MAX_UNSENT = 256 * 1024 * 1024  # a follower further behind is disconnected
MAX_SENT_KEPT = 1_000_000  # send times kept for lag_seconds


class _Link:
    """One connected follower."""

    def __init__(self, name: str, address: str, writer: asyncio.StreamWriter,
                 start: int) -> None:
        self.name = name
        self.address = address
        self.writer = writer
        self.start = start  # live actions after this position are sent after the catch-up
        self.live = False
        self.backlog: list[bytes] = []
        self.backlog_bytes = 0
        self.acked = -1
        self.connected_at = self.heard_at = self.pinged_at = time.monotonic()

    @property
    def caught_up(self) -> bool:
        return self.live and self.acked >= self.start

    def send(self, frame: bytes) -> None:
        """Queue a live frame; a follower that lets more than MAX_UNSENT bytes pile up is
        disconnected (it comes back and catches up from the files)."""
        if self.live:
            self.writer.write(frame)
            unsent = self.writer.transport.get_write_buffer_size()
        else:
            self.backlog.append(frame)
            self.backlog_bytes += len(frame)
            unsent = self.backlog_bytes
        if unsent > MAX_UNSENT:
            log.warning("replication follower %s is %d bytes behind: disconnected", self.name,
                        unsent)
            self.writer.close()

    def go_live(self) -> None:
        for frame in self.backlog:
            self.writer.write(frame)
        self.backlog.clear()
        self.backlog_bytes = 0
        self.live = True


class ReplicationLeader:
    def __init__(self, data_dir: Path, *, secret: str, epoch: int, node_name: str,
                 min_in_sync: int, in_sync: set[str],
                 write_in_sync: Callable[[set[str]], Awaitable[bool]],
                 may_confirm: Callable[[], bool], replication_timeout: float = 2.0) -> None:
        if not secret:
            raise ValueError("replication needs a cluster secret")
        self.data_dir = Path(data_dir).resolve()
        self.secret = secret
        self.epoch = epoch
        self.node_name = node_name
        self.min_in_sync = min_in_sync
        self.timeout = replication_timeout
        self.in_sync: set[str] = set(in_sync) - {node_name}  # as written to etcd
        self._wanted = set(self.in_sync)  # what the next etcd write will say
        self._write_in_sync = write_in_sync
        self._may_confirm = may_confirm
        self.position = 0  # length of the live stream sent so far
        self._pending: deque[tuple[int, int]] = deque()  # (position, ticket) not released
        # Positions of the live frames sent and when (monotonic), oldest first, back to the
        # oldest a connected follower has not acknowledged: its lag in seconds.
        self._sent_positions: list[int] = []
        self._sent_times: list[float] = []
        self._links: dict[str, _Link] = {}
        self._missing_since = dict.fromkeys(self.in_sync, time.monotonic())
        self._actions: ActionLog | None = None
        self._wal: WriteAheadLog | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writing: asyncio.Task | None = None
        self._reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="warren-repl")
        self.closed = False
        self.deposed = False  # write_in_sync refused: nothing is confirmed until one succeeds
        # Set by the cluster: takes an authenticated client link's socket (the node it came
        # through, its wire.Client, the writer) after READY; None refuses client links.
        self.take_client: Callable[[str, wire.Client, asyncio.StreamWriter], None] | None = None

    # -- the write-ahead log's side ------------------------------------------------------

    def attach(self, wal: WriteAheadLog) -> None:
        """From now on `wal` records its file actions and leaves releasing to this leader."""
        if self.data_dir not in Path(wal.directory).resolve().parents:
            raise ValueError(f"the write-ahead log in {wal.directory} is not in the replicated "
                             f"data dir {self.data_dir}")
        # Recovery may have cut files without recording it: no checksum of before counts.
        CHECKSUMS.forget(self.data_dir)
        self._actions = ActionLog(self.data_dir)
        wal.actions = self._actions
        wal.replicator = self
        loop = asyncio.get_running_loop()
        wal.before_fsync = lambda: loop.call_soon_threadsafe(self._ship)
        self._wal = wal

    def written(self, ticket: int) -> None:
        """The log wrote batch `ticket` (event loop): ship what is left of its actions,
        release what may go."""
        self._ship()
        if self.closed:
            return
        self._pending.append((self.position, ticket))
        self._release()

    def _ship(self) -> None:
        """Send the actions recorded so far as one live frame (event loop). Called as soon as
        the log has written a batch's records, before its fsync (followers fsync meanwhile),
        and when the batch is durable here (what came after: deletes, a failed write's cut).
        The loop runs the first before the second: a batch's position covers all of it."""
        actions = self._actions.take()
        if self.closed or not actions:
            return
        frame, self.position = wire.encode_batch(self.epoch, self.position, actions)
        self._sent_positions.append(self.position)
        self._sent_times.append(time.monotonic())
        for link in self._links.values():
            self._send(link, frame)

    def recheck(self) -> None:
        """Release what may go now (call it when `may_confirm` may have turned true)."""
        self._release()

    def _release(self) -> None:
        if self.closed or self.deposed or not self._pending or self._wal is None:
            return
        if len(self.in_sync) < self.min_in_sync or not self._may_confirm():
            return
        floor = min((self._acked(name) for name in self.in_sync), default=self.position)
        ticket = None
        pending = self._pending
        while pending and pending[0][0] <= floor:
            ticket = pending.popleft()[1]
        if ticket is not None:
            self._wal.release(ticket)

    def _acked(self, name: str) -> int:
        link = self._links.get(name)
        return link.acked if link is not None else -1

    # -- serving followers ----------------------------------------------------------------

    async def start(self, host: str, port: int, ssl: ssl_module.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=ssl,
                                                  reuse_address=True)
        # The members' time to connect counts from now, not from before the node's recovery.
        now = time.monotonic()
        for name in self._missing_since:
            self._missing_since[name] = now
        self._spawn(self._tick())
        log.info("replication leader of epoch %d listening on %s:%d (in sync: %s)",
                 self.epoch, host, port, sorted(self.in_sync) or "none")

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop serving; no waiter of the log is released after this (from the first line
        on, even if this close is itself cancelled: that cancel is raised, not swallowed)."""
        self.closed = True
        if self._wal is not None:
            self._wal.before_fsync = None
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            link.writer.close()
        try:
            await cancel_and_wait(*self._tasks, self._writing)
            if self._server is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._server.wait_closed()
        finally:
            self._reader.shutdown(wait=False)

    def followers(self) -> list[FollowerStatus]:
        """Every connected follower and every member of the in-sync set."""
        now = time.monotonic()
        statuses = [
            FollowerStatus(link.name, link.address, link.acked,
                           self.position - max(link.acked, 0), self._lag_seconds(link, now),
                           link.name in self.in_sync, link.caught_up)
            for link in self._links.values()
        ]
        for name in sorted(self.in_sync - set(self._links)):
            statuses.append(FollowerStatus(name, "", -1, self.position, self._lag_missing(name),
                                           True, False))
        return statuses

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        peer = writer.get_extra_info("peername")
        address = f"{peer[0]}:{peer[1]}" if peer else "?"
        link: _Link | None = None
        handed_over = False
        try:
            joined = await self._handshake(reader, writer, address)
            if joined is None:
                return
            if isinstance(joined, wire.Client):  # a client link: the socket is AMQP's now
                handed_over = True
                return
            link, files = joined
            await self._catch_up(link, files)
            while True:
                message = await read_message(reader, 64)
                if not isinstance(message, wire.Ack):
                    raise wire.ProtocolError(f"unexpected {type(message).__name__}")
                link.heard_at = time.monotonic()
                if message.position > link.acked:
                    link.acked = message.position
                    self._release()
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.info("replication follower %s (%s) gone: %s", link.name if link else "?",
                     address, exc or type(exc).__name__)
        except wire.ProtocolError as exc:
            log.warning("replication follower at %s broke the protocol: %s", address, exc)
            await refuse(writer, wire.REFUSED_PROTOCOL, str(exc), reader)
        finally:
            if not handed_over:
                writer.close()
            if link is not None and self._links.get(link.name) is link:
                del self._links[link.name]
                if link.name in self._wanted and not self.closed:
                    self._drop(link.name, "disconnected")

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         address: str) -> tuple[_Link, list[wire.FileInfo]] | wire.Client | None:
        hello = await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME),
                                       HANDSHAKE_TIMEOUT)
        roles = (wire.FOLLOWER,) if self.take_client is None else (wire.FOLLOWER,
                                                                     wire.CLIENT_LINK)
        if not isinstance(hello, wire.Hello) or hello.role not in roles or (
            hello.version != wire.VERSION
        ):
            raise wire.ProtocolError("expected a follower's HELLO of version 1")
        if hello.epoch != self.epoch:
            log.warning("replication follower %s at %s refused: its epoch %d is not %d",
                        hello.node, address, hello.epoch, self.epoch)
            await refuse(writer, wire.REFUSED_EPOCH,
                         f"epoch {hello.epoch} is not the leader's epoch {self.epoch}", reader)
            return None
        nonce = os.urandom(wire.NONCE_SIZE)
        send(writer, wire.Hello(wire.LEADER, self.epoch, nonce, self.node_name,
                                wire.leader_mac(self.secret, hello.nonce, nonce, self.epoch)))
        auth = await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME),
                                      HANDSHAKE_TIMEOUT)
        expected = wire.follower_mac(self.secret, nonce, hello.nonce, self.epoch)
        if not isinstance(auth, wire.Auth) or not wire.mac_matches(expected, auth.mac):
            log.warning("replication follower %s at %s refused: wrong cluster secret",
                        hello.node, address)
            await refuse(writer, wire.REFUSED_AUTH, "authentication failed", reader)
            return None
        if hello.role == wire.CLIENT_LINK:
            return await self._client_link(hello.node, reader, writer)
        files = await asyncio.wait_for(read_message(reader, wire.MAX_FRAME), HANDSHAKE_TIMEOUT)
        if not isinstance(files, wire.FileList):
            raise wire.ProtocolError("expected the follower's FILE_LIST")
        if self.closed:
            return None
        old = self._links.get(hello.node)
        if old is not None:  # the same node again: its old connection is stale
            old.writer.close()
        link = self._links[hello.node] = _Link(hello.node, address, writer, self.position)
        log.info("replication follower %s connected from %s; catching up from position %d",
                 hello.node, address, self.position)
        return link, list(files.files)

    async def _client_link(self, via: str, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> wire.Client | None:
        """An authenticated client link: READY, then its socket goes to `take_client` (in
        the same loop step: no byte of the client can reach the stream reader meanwhile;
        the follower sends none before READY)."""
        client = await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME),
                                        HANDSHAKE_TIMEOUT)
        if not isinstance(client, wire.Client):
            raise wire.ProtocolError("expected the client link's CLIENT")
        if self.closed or self.take_client is None:
            return None
        send(writer, wire.Ready())
        self.take_client(via, client, writer)
        return client

    async def _catch_up(self, link: _Link, files: list[wire.FileInfo]) -> None:
        """The actions that bring the follower's files to ours, CAUGHT_UP, then live."""
        loop = asyncio.get_running_loop()
        actions = catch_up_actions(self.data_dir, files)
        sent = 0
        while True:
            frame = await loop.run_in_executor(self._reader, _next_frame, self.epoch, actions)
            if frame is None:
                break
            sent += len(frame)
            link.writer.write(frame)
            await link.writer.drain()
        send(link.writer, wire.CaughtUp(self.epoch, link.start))
        link.go_live()
        log.info("replication follower %s: catch-up sent (%d bytes), following from %d",
                 link.name, sent, link.start)

    def _send(self, link: _Link, frame: bytes) -> None:
        try:
            link.send(frame)
        except (OSError, RuntimeError) as exc:
            log.info("replication follower %s: send failed: %s", link.name, exc)
            link.writer.close()

    # -- the in-sync set ------------------------------------------------------------------

    async def _tick(self) -> None:
        interval = min(0.1, self.timeout / 4)
        while not self.closed:
            await asyncio.sleep(interval)
            try:
                self._check(time.monotonic())
            except Exception:  # a bug here must not stop the checks for good
                log.exception("replication leader check failed")

    def _check(self, now: float) -> None:
        for name in list(self._wanted):
            link = self._links.get(name)
            if link is None:
                if self._lag_missing(name, now) > self.timeout:
                    self._drop(name, "not connected")
            elif self._lag_seconds(link, now) > self.timeout:
                self._drop(name, f"no acknowledgement for {self.timeout:g}s")
        for link in list(self._links.values()):
            if link.name not in self._wanted and link.caught_up and (
                self._lag_seconds(link, now) < self.timeout / 2
            ):
                log.info("replication follower %s caught up: joins the in-sync set", link.name)
                self._wanted.add(link.name)
                self._write_soon()
            if link.live and now - link.pinged_at >= self.timeout / 3:
                link.pinged_at = now
                with contextlib.suppress(OSError, RuntimeError):
                    send(link.writer, wire.Ping(self.epoch, self.position))
            if now - link.heard_at > 3 * self.timeout and link.live:
                log.info("replication follower %s silent for %.1fs: disconnected", link.name,
                         now - link.heard_at)
                link.writer.close()
        self._trim_sent()
        self._release()

    def _lag_seconds(self, link: _Link, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        if not link.caught_up:
            return now - link.connected_at
        index = bisect.bisect_right(self._sent_positions, link.acked)
        return now - self._sent_times[index] if index < len(self._sent_times) else 0.0

    def _lag_missing(self, name: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return now - self._missing_since.setdefault(name, now)

    def _trim_sent(self) -> None:
        floor = min((link.acked for link in self._links.values()), default=self.position)
        drop = max(bisect.bisect_right(self._sent_positions, floor),
                   len(self._sent_positions) - MAX_SENT_KEPT)
        if drop > 0:
            del self._sent_positions[:drop]
            del self._sent_times[:drop]

    def _drop(self, name: str, why: str) -> None:
        log.warning("replication follower %s leaves the in-sync set: %s", name, why)
        self._wanted.discard(name)
        self._missing_since.pop(name, None)
        self._write_soon()

    def _write_soon(self) -> None:
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write_wanted())

    async def _write_wanted(self) -> None:
        """Write the wanted set to etcd until it is what etcd says; only then does it count.
        A write refused (False: the leader key is not this node's, as far as it can tell)
        stops all confirms; they resume only if a later write, guarded by the same key,
        succeeds (the cluster side normally restarts the node as a follower first)."""
        retry = min(0.5, self.timeout / 4)
        while not self.closed and (self._wanted != self.in_sync or self.deposed):
            target = set(self._wanted)
            try:
                written = await self._write_in_sync(target)
            except Exception:
                log.exception("writing the in-sync set %s failed; retrying", sorted(target))
                await asyncio.sleep(retry)
                continue
            if not written:
                if not self.deposed:
                    log.error("the in-sync set could not be written: this node may no longer "
                              "lead; nothing more is confirmed")
                self.deposed = True
                await asyncio.sleep(retry)
                continue
            if self.deposed:
                log.warning("the in-sync set was written again: this node still leads epoch "
                            "%d; confirming again", self.epoch)
            self.deposed = False
            log.info("in-sync set of epoch %d: %s", self.epoch, sorted(target) or "none")
            self.in_sync = target
            self._release()


def _next_frame(epoch: int, actions: Iterator[wire.Action]) -> bytes | None:
    """The next catch-up ACTIONS frame (position 0), about CATCH_UP_FRAME data bytes; None at
    the end (reader thread)."""
    batch: list[wire.Action] = []
    size = 0
    for action in actions:
        batch.append(action)
        size += action.size
        if size >= CATCH_UP_FRAME:
            break
    if not batch:
        return None
    return wire.encode_actions(epoch, 0, batch)
