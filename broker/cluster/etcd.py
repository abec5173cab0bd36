"""The cluster's keys in etcd, through aetcd (etcd's v3 gRPC API; works with etcd 3.4): one
`ClusterKeys` per node, the only module that talks to etcd.

Keys, under /warren/<cluster name>/:
- `leader`: JSON {node, amqp, http, replication} under the leader's lease, created only when
  absent; its create revision is the leader's *epoch* (fencing token).
- `nodes/<name>`: JSON {amqp, http, replication, started} under that node's lease.
- `in_sync`: JSON {epoch, leader, members}: the nodes holding every confirmed record (the
  leader that wrote it included); written by the leader only, in a transaction that checks the
  leader key still has the leader's epoch.

Every call has a timeout (`call_timeout`) and raises `EtcdUnavailable` when etcd cannot be
reached in it; several endpoints are tried in turn. gRPC's reconnect back-off is capped at one
second so that the cluster resumes soon after etcd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aetcd
import aetcd.exceptions

log = logging.getLogger(__name__)

_GRPC_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
}


FALLBACK_POLL = 1.0  # seconds between looks at the leader key while its watch is broken


class EtcdUnavailable(Exception):
    """etcd did not answer (down, unreachable, or too slow)."""


@dataclass(frozen=True)
class Leader:
    """The leader key's value and its create revision, the epoch."""

    node: str
    amqp: tuple[str, int]
    http: tuple[str, int]
    replication: tuple[str, int]
    epoch: int
    lease: int

    @classmethod
    def parse(cls, value: bytes, epoch: int, lease: int) -> Leader:
        document = json.loads(value)
        return cls(document["node"], tuple(document["amqp"]), tuple(document["http"]),
                   tuple(document["replication"]), epoch, lease)


@dataclass(frozen=True)
class InSync:
    epoch: int | None
    members: frozenset[str]
    revision: int  # mod revision of the key; 0: no key (a cluster's first start)
    leader: str | None = None  # the leader that wrote it


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


class ClusterKeys:
    def __init__(self, endpoints: tuple[str, ...], cluster: str, call_timeout: float) -> None:
        self.prefix = f"/warren/{cluster}/"
        self.call_timeout = call_timeout
        self._endpoints = [(host, int(port)) for host, _, port in
                           (endpoint.rpartition(":") for endpoint in endpoints)]
        self._current = 0
        self._client: aetcd.Client | None = None

    def _key(self, name: str) -> bytes:
        return (self.prefix + name).encode()

    def _connect(self) -> aetcd.Client:
        if self._client is None:
            host, port = self._endpoints[self._current]
            self._client = aetcd.Client(host=host, port=port, timeout=self.call_timeout,
                                        options=_GRPC_OPTIONS)
        return self._client

    async def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        client = self._connect()
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that arrives
            # as the call completes, and the node's roles task would then not stop.
            async with asyncio.timeout(self.call_timeout):
                return await getattr(client, operation)(*args, **kwargs)
        except (aetcd.exceptions.ClientError, TimeoutError, OSError) as error:
            await self._rotate()
            raise EtcdUnavailable(f"etcd {operation}: {error or type(error).__name__}") from error

    async def _rotate(self) -> None:
        """After a failure: the next endpoint for the next call (if there are several)."""
        if len(self._endpoints) > 1:
            await self._drop_client()
            self._current = (self._current + 1) % len(self._endpoints)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(1.0):
                    await client.close()
            except Exception:  # noqa: BLE001 - a broken channel is dropped either way
                log.debug("closing an etcd client failed", exc_info=True)

    async def close(self) -> None:
        await self._drop_client()

    # -- leases ----------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        lease = await self._call("lease", ttl)
        return lease.id

    async def keepalive(self, lease: int) -> int:
        """Refresh the lease; its TTL from now, 0 if it has expired already."""
        reply = await self._call("refresh_lease", lease)
        return 0 if reply is None else reply.TTL

    async def revoke(self, lease: int) -> None:
        await self._call("revoke_lease", lease)

    # -- nodes -----------------------------------------------------------------------------

    async def register(self, name: str, document: dict[str, Any], lease: int) -> None:
        await self._call("put", self._key("nodes/" + name), _json(document), lease=lease)

    async def nodes(self) -> dict[str, dict[str, Any]]:
        found = await self._call("get_prefix", self._key("nodes/"))
        start = len(self._key("nodes/"))
        return {item.key[start:].decode(): json.loads(item.value) for item in found}

    # -- leadership ------------------------------------------------------------------------

    async def leader(self) -> Leader | None:
        found = await self._call("get", self._key("leader"))
        if found is None:
            return None
        return Leader.parse(found.value, found.create_revision, found.lease)

    async def leader_at(self) -> tuple[Leader | None, int]:
        """The leader key (None if there is none) and the store's revision it was read at."""
        key = self._key("leader")
        found = await self._call("get_range", key, key + b"\0")
        leader = None
        for item in found:
            leader = Leader.parse(item.value, item.create_revision, item.lease)
        return leader, found.header.revision

    async def next_leader(self, epoch: int | None, revision: int) -> Leader | None:
        """Wait until the leader key is no longer that of `epoch` (None: no leader key), as
        read at `revision` (no change after it is missed), and return what it is then. An etcd
        watch on the key sees the change as soon as etcd applies it; while the watch cannot be
        set up or has broken (etcd away), a look every FALLBACK_POLL seconds, and a new watch
        from the revision last read."""
        while True:
            try:
                async with contextlib.aclosing(self._watch_leader(revision)) as changes:
                    async for current in changes:
                        if (current.epoch if current is not None else None) != epoch:
                            return current
            except EtcdUnavailable as error:
                log.debug("watching the leader key: %s; looking every %.1fs", error,
                          FALLBACK_POLL)
            await asyncio.sleep(FALLBACK_POLL)
            try:
                current, revision = await self.leader_at()
            except EtcdUnavailable:
                continue
            if (current.epoch if current is not None else None) != epoch:
                return current

    async def _watch_leader(self, revision: int) -> AsyncIterator[Leader | None]:
        """The leader key's values after `revision` as etcd applies them (None: deleted);
        raises EtcdUnavailable when the watch cannot be set up or breaks."""
        client = self._connect()
        try:
            async with asyncio.timeout(self.call_timeout):
                watch = await client.watch(self._key("leader"), start_revision=revision + 1)
        except (aetcd.exceptions.ClientError, TimeoutError, OSError) as error:
            await self._rotate()
            raise EtcdUnavailable(f"etcd watch: {error or type(error).__name__}") from error
        events = aiter(watch)
        try:
            async for event in events:
                if event.kind == "DELETE":
                    yield None
                else:
                    yield Leader.parse(event.kv.value, event.kv.create_revision, event.kv.lease)
        except (aetcd.exceptions.ClientError, OSError) as error:
            await self._rotate()
            raise EtcdUnavailable(f"etcd watch: {error or type(error).__name__}") from error
        finally:
            await events.aclose()
            with contextlib.suppress(Exception):  # a broken stream has no watch left to cancel
                async with asyncio.timeout(1.0):
                    await watch.cancel()

    async def compact(self, keep: int) -> int:
        """Drop etcd's history but the last `keep` revisions (etcd keeps every revision until
        compacted, and the node keys are rewritten every few seconds); the revision compacted
        to, 0 if there was not that much history."""
        _, revision = await self.leader_at()
        if revision <= keep:
            return 0
        await self._call("compact", revision - keep)
        return revision - keep

    async def in_sync(self) -> InSync:
        found = await self._call("get", self._key("in_sync"))
        if found is None:
            return InSync(None, frozenset(), 0)
        document = json.loads(found.value)
        return InSync(document.get("epoch"), frozenset(document["members"]), found.mod_revision,
                      document.get("leader"))

    async def campaign(self, name: str, document: dict[str, Any], lease: int,
                       in_sync: InSync, members: set[str]) -> int | None:
        """Create the leader key if there is none and the in-sync set is still `in_sync` (read
        by the caller, who is a member or it is empty); the in-sync set becomes `members` (a
        subset of it, with this node). The epoch when this node won, None when it did not."""
        t = self._connect().transactions
        won, responses = await self._call(
            "transaction",
            compare=[t.create(self._key("leader")) == 0,
                     t.mod(self._key("in_sync")) == in_sync.revision],
            success=[t.put(self._key("leader"), _json({"node": name, **document}), lease=lease),
                     t.put(self._key("in_sync"), _json(
                         {"epoch": None, "leader": name, "members": sorted(members)}))],
            failure=[],
        )
        if not won:
            return None
        return responses[0].response_put.header.revision

    async def write_in_sync(self, epoch: int, leader: str, members: set[str]) -> bool:
        """Write the in-sync set if the leader key still has `epoch`; False if it does not
        (this node no longer leads)."""
        t = self._connect().transactions
        written, _ = await self._call(
            "transaction",
            compare=[t.create(self._key("leader")) == epoch],
            success=[t.put(self._key("in_sync"), _json(
                {"epoch": epoch, "leader": leader, "members": sorted(members)}))],
            failure=[],
        )
        return bool(written)

    async def resign(self, epoch: int) -> None:
        """Delete the leader key if it is still this epoch's (a clean stop of the leader)."""
        t = self._connect().transactions
        await self._call("transaction", compare=[t.create(self._key("leader")) == epoch],
                         success=[t.delete(self._key("leader"))], failure=[])
