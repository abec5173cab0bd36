"""The replication follower: keeps this node's data dir a byte copy of the leader's.

    follower = ReplicationFollower(data_dir, secret=..., node_name=..., leader=(host, port),
                                   epoch=...)
    task = asyncio.create_task(follower.run())   # until cancelled; ReplicationRefused if the
    follower.caught_up, follower.status()        # leader refuses (or is refused)

`run` removes the clean-stop marker and the index snapshot (a promoted follower starts with a
log scan, `Node.start` as after a crash), holds the data dir's lock while it runs (release it
by cancelling `run` before `Node.start` opens the dir), then connects to the leader:
handshake with the cluster secret and the epoch (storage/replication/wire.py), its file list,
the catch-up actions (a tail the leader does not have is cut off), CAUGHT_UP, then live
actions. Actions are applied in a thread (storage/replication/files.py `Applier`), as many as
have arrived at once, then fsynced, then the last position among them is acknowledged: an ack
means "on my disk". A lost connection is retried every `reconnect_delay` with the same leader
and epoch; the cluster side cancels `run` and starts a new follower when the leader changes.
A frame of another epoch than the follower's is refused (ReplicationRefused).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storage.datadir import DataDir, lock_data_dir
from storage.replication import wire
from storage.replication.files import Applier, list_files
from storage.replication.status import FollowerStatus, ReplicationRefused
from storage.replication.transport import introduce, read_message, refuse, send
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
INCOMING = 64  # frames received and not yet applied (catch-up frames are about 4 MiB)


class ReplicationFollower:
    def __init__(self, data_dir: Path, *, secret: str, node_name: str,
                 leader: tuple[str, int], epoch: int, ssl: ssl_module.SSLContext | None = None,
                 reconnect_delay: float = 0.5, idle_timeout: float = 10.0) -> None:
        if not secret:
            raise ValueError("replication needs a cluster secret")
        self.data_dir = Path(data_dir).resolve()
        self.secret = secret
        self.node_name = node_name
        self.leader = leader
        self.epoch = epoch
        self.ssl = ssl
        self.reconnect_delay = reconnect_delay
        self.idle_timeout = idle_timeout  # the leader pings every replication_timeout / 3
        self.acked = -1
        self.leader_position = 0
        self.behind_since: float | None = None
        self._caught_up = False
        self.connected = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-follow")

    @property
    def caught_up(self) -> bool:
        """Catch-up applied and fsynced; following the live actions."""
        return self._caught_up

    def status(self) -> FollowerStatus:
        behind = self.leader_position - max(self.acked, 0) if self.connected else 0
        waited = time.monotonic() - self.behind_since if self.behind_since is not None else 0.0
        return FollowerStatus(self.node_name, f"{self.leader[0]}:{self.leader[1]}", self.acked,
                              max(behind, 0), waited if behind > 0 else 0.0, False,
                              self._caught_up)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        preparing = loop.run_in_executor(self._executor, self._prepare)
        try:
            lock = await _through_cancels(preparing)
        except asyncio.CancelledError:
            if not preparing.exception():
                preparing.result().close()
            self._executor.shutdown(wait=False)
            raise
        applier = Applier(self.data_dir)
        last_error = ""
        try:
            while True:
                try:
                    await self._follow(applier)
                except ReplicationRefused:
                    raise
                except (OSError, asyncio.IncompleteReadError, TimeoutError,
                        wire.ProtocolError) as exc:
                    error = str(exc) or type(exc).__name__
                    if self.connected:  # it had followed: a new failure is news
                        last_error = ""
                    # Once per kind of failure, not twice a second while the leader is away.
                    log.log(logging.DEBUG if error == last_error else logging.WARNING,
                            "replication from %s:%d interrupted: %s", *self.leader, error)
                    last_error = error
                finally:
                    self._caught_up = self.connected = False
                await asyncio.sleep(self.reconnect_delay)
        finally:
            # After any batch still being applied (the follower's thread), and before `run`
            # ends even if cancelled again meanwhile: whoever waits for it gets the lock.
            try:
                await _through_cancels(
                    loop.run_in_executor(self._executor, _release, applier, lock))
            finally:
                self._executor.shutdown(wait=False)

    def _prepare(self):
        """Lock the dir; a follower's dir is never a clean stop's (blocking)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_data_dir(self.data_dir)
        DataDir(self.data_dir, lock).mark_running()
        return lock

    async def _follow(self, applier: Applier) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancel that arrives as
        # the connect completes, and the follower would stay on a dead leader.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(*self.leader, ssl=self.ssl)
        try:
            await self._handshake(reader, writer)
            files = await asyncio.get_running_loop().run_in_executor(
                self._executor, list_files, self.data_dir)
            send(writer, wire.FileList(tuple(files)))
            self.connected = True
            # Bounded: a follower whose disk is slower than the leader stops reading the
            # socket (the leader then disconnects it past its limit) instead of filling memory.
            incoming: asyncio.Queue[wire.Actions | wire.CaughtUp] = asyncio.Queue(INCOMING)
            receiving = asyncio.ensure_future(self._receive(reader, writer, incoming))
            applying = asyncio.ensure_future(self._apply(applier, writer, incoming))
            try:
                done, _ = await asyncio.wait({receiving, applying},
                                             return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                await cancel_and_wait(receiving, applying)
        finally:
            writer.close()

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        await introduce(reader, writer, role=wire.FOLLOWER, secret=self.secret,
                        epoch=self.epoch, node_name=self.node_name, timeout=CONNECT_TIMEOUT)

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       incoming: asyncio.Queue) -> None:
        while True:
            async with asyncio.timeout(self.idle_timeout):
                message = await read_message(reader, wire.MAX_FRAME)
            if isinstance(message, wire.Refuse):
                raise ReplicationRefused(f"the leader refused: {message.text}")
            if not isinstance(message, wire.Actions | wire.CaughtUp | wire.Ping):
                raise wire.ProtocolError(f"unexpected {type(message).__name__}")
            if message.epoch != self.epoch:
                await refuse(writer, wire.REFUSED_EPOCH, f"follower of epoch {self.epoch}")
                raise ReplicationRefused(
                    f"{type(message).__name__} of epoch {message.epoch}, not {self.epoch}")
            if message.position > self.leader_position:
                self.leader_position = message.position
                if self.behind_since is None:
                    self.behind_since = time.monotonic()
            if isinstance(message, wire.Ping):
                if self.acked >= 0:
                    send(writer, wire.Ack(self.acked))
            else:
                await incoming.put(message)

    async def _apply(self, applier: Applier, writer: asyncio.StreamWriter,
                     incoming: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await incoming.get()]
            while not incoming.empty():
                batch.append(incoming.get_nowait())
            await loop.run_in_executor(self._executor, _apply_all, applier, batch)
            positions = [m.position for m in batch
                         if isinstance(m, wire.CaughtUp) or m.position > 0]
            if any(isinstance(m, wire.CaughtUp) for m in batch):
                self._caught_up = True
                log.info("replication: caught up with %s:%d at position %d", *self.leader,
                         positions[-1])
            if positions:
                self.acked = max(self.acked, positions[-1])
                if self.acked >= self.leader_position:
                    self.behind_since = None
                send(writer, wire.Ack(self.acked))


def _apply_all(applier: Applier, batch: list[wire.Actions | wire.CaughtUp]) -> None:
    """Apply the actions of these frames, then fsync (follower's thread)."""
    for message in batch:
        if isinstance(message, wire.Actions):
            for action in message.actions:
                applier.apply(action)
    applier.sync()


def _release(applier: Applier, lock) -> None:
    """Close the applier, then let go of the data dir's lock (follower's thread)."""
    try:
        applier.close()
    finally:
        lock.close()



async def _through_cancels(future: asyncio.Future):
    """The result of `future` (work in the follower's thread), waited for until it is there
    even if this task is cancelled meanwhile; the cancel is raised after."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done() and future.cancelled():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return future.result()
