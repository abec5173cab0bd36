"""What the in-process replication tests are built on: a Warren node (the real Node, message
store and write-ahead log) on a leader data dir with a ReplicationLeader attached, an etcd
stand-in for the in-sync set (`InSyncStore`: records the sets written, can be held or made to
say "not leader"), persistent messages published as a front publishes them, and the
replicated files of a data dir read back for comparison."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from pamqp import commands as spec

from broker.config import Config
from broker.message import Message
from broker.node import Node
from protocol.codec import shortstr
from storage.replication import ReplicationFollower, ReplicationLeader
from storage.replication.files import replicated_paths

SECRET = "s3cret"
DEADLINE = 15.0


class InSyncStore:
    """Stands in for the etcd transaction that writes the in-sync set: what was written, in
    order; `hold` makes writes wait until `release`; `leading = False` makes them fail as a
    deposed leader's would."""

    def __init__(self) -> None:
        self.written: list[set[str]] = []
        self.leading = True
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def write(self, members: set[str]) -> bool:
        await self._open.wait()
        if not self.leading:
            return False
        self.written.append(set(members))
        return True


class Confirms:
    """may_confirm as a switch."""

    def __init__(self) -> None:
        self.allowed = True

    def __call__(self) -> bool:
        return self.allowed


async def start_leader(path: Path, *, in_sync: set[str], min_in_sync: int = 1,
                       timeout: float = 2.0, store: InSyncStore | None = None,
                       may_confirm: Callable[[], bool] | None = None,
                       epoch: int = 7) -> tuple[Node, ReplicationLeader, InSyncStore]:
    store = store or InSyncStore()
    leader = ReplicationLeader(
        path, secret=SECRET, epoch=epoch, node_name="leader", min_in_sync=min_in_sync,
        in_sync=in_sync, write_in_sync=store.write, may_confirm=may_confirm or (lambda: True),
        replication_timeout=timeout,
    )
    node = Node(Config(data_dir=path), replicator=leader)
    await node.start()
    await leader.start("127.0.0.1", 0)
    return node, leader, store


def follower_for(leader: ReplicationLeader, path: Path, name: str = "f1", *,
                 secret: str = SECRET, epoch: int | None = None) -> ReplicationFollower:
    return ReplicationFollower(path, secret=secret, node_name=name,
                               leader=("127.0.0.1", leader.port),
                               epoch=leader.epoch if epoch is None else epoch)


async def start_following(tmp_path: Path, **leader_options
                          ) -> tuple[Node, ReplicationLeader, ReplicationFollower, asyncio.Task]:
    """A leader in tmp_path/leader (start_leader's options) and its follower "f1" in
    tmp_path/follower, running."""
    node, leader, _ = await start_leader(tmp_path / "leader", **leader_options)
    follower = follower_for(leader, tmp_path / "follower")
    return node, leader, follower, asyncio.ensure_future(follower.run())


def declare(node: Node, name: str, **arguments) -> None:
    node.vhosts["/"].declare_queue(name, None, passive=False, durable=True, exclusive=False,
                                   auto_delete=False, arguments=arguments)


def publish(node: Node, queue: str, body: bytes) -> int:
    """A persistent message to `queue` through the default exchange; its log ticket."""
    vhost = node.vhosts["/"]
    message = Message("", queue, shortstr("") + shortstr(queue),
                      spec.Basic.Properties(delivery_mode=2).marshal(), body)
    message.persistent = True
    _, ticket, _ = vhost.publish(vhost.exchanges[""], message)
    return ticket


def confirmed(node: Node, ticket: int) -> list[int]:
    """A list that gets `ticket` once the log releases it (as a publisher confirm would)."""
    seen: list[int] = []
    node.store.wal.when_durable(ticket, lambda: seen.append(ticket))
    return seen


def files_of(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in replicated_paths(root)}


async def wait_until(predicate: Callable[[], bool], what: str,
                     timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def in_step(node: Node, leader: ReplicationLeader, follower: ReplicationFollower) -> None:
    """Until the follower has acknowledged everything the leader's log has written."""
    await node.store.wal.drain()
    await wait_until(lambda: follower.caught_up and follower.acked >= leader.position,
                     "the follower acknowledged the leader's position")


async def stop(node: Node | None, leader: ReplicationLeader | None,
               *tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if leader is not None:
        await leader.close()
    if node is not None:
        await node.stop()
