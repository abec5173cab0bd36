"""This node's etcd lease: granted at start, kept alive every TTL/3, and the one answer to
"may this node still act as the leader?".

`valid_until` is the monotonic time of the last successful keep-alive request's *send* plus the
TTL minus a safety margin: etcd counts the TTL from when the request arrives, later than it was
sent, so until `valid_until` no other node can have been granted leadership. A paused process
(SIGSTOP) wakes up with the clock past `valid_until` and confirms nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from broker.cluster.etcd import ClusterKeys, EtcdUnavailable
from storage.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def safety_margin(ttl: int) -> float:
    """Time kept in hand against clock drift and a slow loop: a fifth of the TTL, 0.5 s at
    least."""
    return max(0.5, ttl / 5)


class LeaseSession:
    def __init__(self, keys: ClusterKeys, ttl: int, on_expired: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.ttl = ttl
        self.id = 0
        self.valid_until = 0.0
        self._on_expired = on_expired  # the lease is gone: keys under it are gone with it
        self._clock = clock
        self._task: asyncio.Task | None = None

    def valid(self) -> bool:
        return self._clock() < self.valid_until

    async def grant(self) -> None:
        """A fresh lease (raises EtcdUnavailable)."""
        sent = self._clock()
        self.id = await self.keys.grant(self.ttl)
        self.valid_until = sent + self.ttl - safety_margin(self.ttl)
        if self._task is None:
            self._task = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)
            sent = self._clock()
            try:
                remaining = await self.keys.keepalive(self.id)
            except EtcdUnavailable as error:
                log.warning("etcd lease keep-alive failed (%s); valid for %.1fs more", error,
                            max(0.0, self.valid_until - self._clock()))
                continue
            if remaining <= 0:
                log.warning("etcd lease %x expired", self.id)
                self.valid_until = 0.0
                self._on_expired()
                continue
            self.valid_until = sent + remaining - safety_margin(self.ttl)

    async def close(self, revoke: bool) -> None:
        """Stop the keep-alives (and revoke the lease, best effort); this node may no longer
        lead from the first line on. A cancel of the caller meanwhile is raised."""
        self.valid_until = 0.0
        try:
            await cancel_and_wait(self._task)
        finally:
            self.valid_until = 0.0
        if revoke and self.id:
            with contextlib.suppress(EtcdUnavailable):
                await self.keys.revoke(self.id)
