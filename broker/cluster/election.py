"""Who leads: a node campaigns by creating the leader key under its lease (etcd transaction:
no leader key, and the in-sync set unchanged since it read it and naming it, or absent on a
cluster's first start). The winner's epoch is the key's create revision; it may confirm while
its lease is surely valid and it has not seen the key change.

The winner keeps the in-sync set it read, less the leader that wrote it (its key is gone: its
lease lapsed or it resigned, so it cannot be following). The members kept still hold every
confirmed record, so they stay eligible to lead; the new leader's confirms wait for each of
them until it has acknowledged, or has been dropped from the set in etcd after the
replication timeout (storage/replication/leader.py)."""

from __future__ import annotations

import logging
from typing import Any

from broker.cluster.etcd import ClusterKeys, Leader
from broker.cluster.lease import LeaseSession

log = logging.getLogger(__name__)


class Election:
    def __init__(self, keys: ClusterKeys, name: str, addresses: dict[str, Any],
                 lease: LeaseSession) -> None:
        self.keys = keys
        self.name = name
        self.addresses = addresses  # amqp, http, replication: [host, port] each
        self.lease = lease
        self.epoch: int | None = None  # set while this node leads
        self.followers_in_sync: set[str] = set()  # the in-sync set it won with, but itself
        self.deposed = False

    async def leader(self) -> Leader | None:
        return await self.keys.leader()

    async def eligible(self) -> bool:
        """May this node campaign: the in-sync set names it, or there is none yet."""
        in_sync = await self.keys.in_sync()
        return in_sync.revision == 0 or self.name in in_sync.members

    async def campaign(self) -> int | None:
        """Try to become the leader; the epoch if this node won. Raises EtcdUnavailable."""
        in_sync = await self.keys.in_sync()
        if in_sync.revision and self.name not in in_sync.members:
            return None
        followers = set(in_sync.members) - {self.name, in_sync.leader}
        epoch = await self.keys.campaign(self.name, self.addresses, self.lease.id, in_sync,
                                         {self.name, *followers})
        if epoch is None:
            return None
        self.epoch = epoch
        self.followers_in_sync = followers
        await self.write_in_sync(followers)
        log.info("%s leads the cluster, epoch %d (in sync: %s)", self.name, epoch,
                 sorted(followers) or "none")
        return epoch

    async def write_in_sync(self, followers: set[str]) -> bool:
        """The in-sync set is this leader and `followers`; False if it no longer leads (the
        leader key is not its epoch's), and then it confirms nothing more."""
        if self.epoch is None or self.deposed:
            return False
        written = await self.keys.write_in_sync(self.epoch, self.name, {self.name, *followers})
        if not written:
            self.deposed = True
        return written

    def may_confirm(self) -> bool:
        return self.epoch is not None and not self.deposed and self.lease.valid()

    async def still_leading(self) -> bool:
        """Raises EtcdUnavailable; the lease's validity covers the time etcd does not answer."""
        current = await self.keys.leader()
        if current is None or current.epoch != self.epoch:
            self.deposed = True
        return not self.deposed
