"""STUB of storage/replication (branch "repl"), with its interface, so that the cluster's
election and fronts run before that branch is merged. It copies NO data and does not hold
confirms back: a follower connects, says its name and epoch, and is put in the in-sync set;
it leaves the set when its connection drops. Delete this file when storage/replication is
merged (broker/cluster/replicas.py picks the real one)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ReplicationRefused(Exception):
    """The leader refused this follower (wrong secret, other epoch)."""


@dataclass(frozen=True)
class FollowerStatus:
    name: str
    address: str
    acked: int = -1
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    in_sync: bool = False
    caught_up: bool = False


class ReplicationLeader:
    def __init__(self, data_dir: Path, *, secret: str, epoch: int, node_name: str,
                 min_in_sync: int, in_sync: set[str],
                 write_in_sync: Callable[[set[str]], Awaitable[bool]],
                 may_confirm: Callable[[], bool], replication_timeout: float = 2.0) -> None:
        self.epoch = epoch
        self.secret = secret
        self._write_in_sync = write_in_sync
        self._followers: dict[str, FollowerStatus] = {}
        self._server: asyncio.Server | None = None

    def attach(self, wal: Any) -> None:
        pass

    async def start(self, host: str, port: int, ssl: Any = None) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = None
        try:
            hello = json.loads(await reader.readline())
            if hello.get("epoch") != self.epoch or hello.get("secret") != self.secret:
                writer.write(b'{"refused": true}\n')
                return
            name = hello["node"]
            self._followers[name] = FollowerStatus(name, str(writer.get_extra_info("peername")))
            writer.write(b'{"refused": false}\n')
            if await self._write_in_sync(self._in_sync()):
                self._followers[name] = FollowerStatus(name, self._followers[name].address,
                                                       in_sync=True, caught_up=True)
            await reader.read()  # until the follower goes
        except (OSError, ValueError, KeyError):
            pass
        finally:
            writer.close()
        if self._followers.pop(name, None) is not None:
            await self._write_in_sync(self._in_sync())

    def _in_sync(self) -> set[str]:
        return set(self._followers)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def followers(self) -> list[FollowerStatus]:
        return list(self._followers.values())


class ReplicationFollower:
    def __init__(self, data_dir: Path, *, secret: str, node_name: str,
                 leader: tuple[str, int], epoch: int) -> None:
        self.leader = leader
        self.hello = {"node": node_name, "epoch": epoch, "secret": secret}
        self._caught_up = False
        self._since = time.time()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(*self.leader)
        try:
            writer.write(json.dumps(self.hello).encode() + b"\n")
            if json.loads(await reader.readline()).get("refused", True):
                raise ReplicationRefused("refused by the leader")
            self._caught_up = True
            await reader.read()
        finally:
            self._caught_up = False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def status(self) -> FollowerStatus:
        return FollowerStatus(self.hello["node"], f"{self.leader[0]}:{self.leader[1]}",
                              caught_up=self._caught_up)
