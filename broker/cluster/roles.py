"""A node of a cluster, from start to stop: it joins (lease, node key), listens on its AMQP and
HTTP ports from the start, and takes the role etcd gives it.

- **follower** (the leader key is another node's): runs the replication follower into its data
  dir, passes AMQP connections through to the leader (broker/cluster/passthrough.py) and the
  management API to it (httpfront.py). No broker core runs. When the leader key goes or changes
  (an etcd watch on it, etcd.py `next_leader`), passed-through connections get 320 and, if
  this node is in the in-sync set, it campaigns.
- **leader** (it won the campaign): starts the broker the ordinary way (`Node.start` on its data
  dir: definitions, then a log scan), the replication leader and the management server, and
  serves AMQP itself. When it can no longer be sure it leads (its lease may have lapsed, or the
  leader key is not its epoch's), it stops confirming at once (the WAL's confirm gate asks
  `may_confirm`), closes its connections with 320 and re-executes itself (same PID, same
  arguments) to rejoin fresh as a follower, whose catch-up truncates its unconfirmed tail.

A follower's data dir never has the clean-stop index or marker (removed when it starts), so a
promoted follower recovers from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

from broker.alarms import ResourceMonitor
from broker.cluster.clientlink import take_client
from broker.cluster.election import Election
from broker.cluster.etcd import ClusterKeys, EtcdUnavailable, Leader
from broker.cluster.httpfront import FollowerFront
from broker.cluster.lease import LeaseSession
from broker.cluster.passthrough import PassThrough
from broker.cluster.view import ClusterNodeInfo, ReplicaLag
from broker.config import Config
from broker.listeners import bind_all
from broker.node import Node, name_this_node, node_name
from broker.node_figures import node_description, node_figures
from broker.tls import amqps_context
from broker.transport import Transport
from management import local_admin
from management.app import ManagementServer
from protocol.session import HANDSHAKE_TIMEOUT
from storage.datadir import open_data_dir
from storage.replication import ReplicationFollower, ReplicationLeader, ReplicationRefused

log = logging.getLogger(__name__)

CAMPAIGN_RETRY = 0.2  # seconds before a campaign etcd did not answer is tried again
LEASE_CHECK = 0.1  # seconds between the leader's looks at its lease's validity
FOLLOW_RETRY = 0.5  # seconds before a failed replication follower tries again
CLOSE_FLUSH = 0.3  # seconds the 320 closes get to reach clients before a re-exec
FIGURES_INTERVAL = 2.0  # seconds between updates of this node's figures in its etcd node key
COMPACT_INTERVAL = 300.0  # seconds between the leader's compactions of etcd's history
COMPACT_KEEP = 10_000  # revisions of etcd's history kept by a compaction


class ClusterMember:
    """This process as a node of a cluster (`ClusterView` for the API and /metrics)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cluster_name = config.cluster_name
        self.name = config.node_name or node_name()
        name_this_node(self.name)
        host = config.advertise_host
        self.addresses: dict[str, Any] = {
            "amqp": [host, config.port], "http": [host, config.management_port],
            "replication": [host, config.replication_port],
        }
        self.keys = ClusterKeys(config.cluster_etcd, config.cluster_name,
                                call_timeout=max(0.5, config.lease_ttl / 5))
        self.lease = LeaseSession(self.keys, config.lease_ttl, self._lease_expired)
        self.election = Election(self.keys, self.name, self.addresses, self.lease)
        self.role = "candidate"
        self.leader: Leader | None = None  # the leader this follower follows
        self.node: Node | None = None  # the broker, while leading
        self.replication: ReplicationLeader | None = None
        self.follower: ReplicationFollower | None = None
        self.passthroughs: set[PassThrough] = set()
        self._known_nodes: list[ClusterNodeInfo] = []
        self._in_sync_members: frozenset[str] = frozenset()  # as last read from etcd
        self._tasks: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self.started_at = time.time()
        # Memory and disk, measured while following (the broker's Node has its own monitor)
        self.monitor = ResourceMonitor(config, self.name, on_change=lambda: None)
        self._demoting = False
        self._rejoining = False
        self.management: ManagementServer | None = None

    # -- ClusterView -----------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        if self.role == "leader":
            return self.election.epoch
        return self.leader.epoch if self.leader is not None else None

    def nodes(self) -> list[ClusterNodeInfo]:
        return list(self._known_nodes)

    def replicas(self) -> list[ReplicaLag]:
        """The leader: each follower as its replication sees it (in sync: in the set it last
        wrote to etcd); a follower: itself (in sync: in the set last read from etcd, a second
        old at most; on the leader that read could name a follower it has since dropped)."""
        if self.replication is not None:
            return [ReplicaLag(status.name, status.lag_bytes, status.lag_seconds, status.in_sync)
                    for status in self.replication.followers()]
        if self.follower is not None:
            status = self.follower.status()
            return [ReplicaLag(status.name, status.lag_bytes, status.lag_seconds,
                               status.name in self._in_sync_members)]
        return []

    def may_confirm(self) -> bool:
        return self.election.may_confirm()

    # -- the process -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        # Checked and marked running (a follower's copy is never a clean-stop snapshot), then
        # let go: the replication follower holds the lock while it writes, then Node.start.
        data_dir = open_data_dir(self.config.data_dir)
        data_dir.mark_running()
        data_dir.close()
        self.local_secret = local_admin.write_secret(self.config.data_dir)
        self.monitor.start()  # measured before the node key first carries its figures
        if not await self._join():
            self.monitor.stop()
            return
        listeners = await bind_all(self.config.host, self.config.port, self._amqp_listener,
                                   "TCP")
        tls = amqps_context(self.config)  # each node terminates its clients' TLS itself
        if tls is not None:
            listeners += await bind_all(self.config.amqps_host, self.config.amqps_port,
                                        partial(self._amqp_listener, tls=tls), "TLS (SSL)")
        front = FollowerFront(self, self.local_secret)
        await front.start(self.config.management_host, self.config.management_port)
        self._spawn(self._refresh_nodes())
        self._spawn(self._publish_figures())
        roles = asyncio.create_task(self._take_roles(front))
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait([roles, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        log.info("shutting down")
        for listener in listeners:
            listener.close()
        roles.cancel()
        await asyncio.wait({roles})
        # e.g. the broker could not start on promotion: re-raised after the shutdown
        failure = None if roles.cancelled() else roles.exception()
        await self._shut_down(front)
        if failure is not None:
            raise failure

    def _amqp_listener(self, host: str, tls: ssl.SSLContext | None = None
                       ) -> Awaitable[asyncio.Server]:
        return asyncio.get_running_loop().create_server(
            self._accept, host, self.config.amqps_port if tls else self.config.port, ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None, reuse_address=True,
            backlog=1024)

    def _accept(self) -> asyncio.Protocol:
        """A client connection: served here while leading, passed through while following."""
        if self.node is not None and self.role == "leader":
            return Transport(self.node)
        return PassThrough(self.leader, self.passthroughs, secret=self.config.cluster_secret,
                           node_name=self.name)

    async def _join(self) -> bool:
        """Lease and node key, retried until etcd answers; False if stopped meanwhile."""
        while not self._stop.is_set():
            try:
                await self.lease.grant()
                await self._register()
                log.info("%s joined cluster %s (etcd lease %x)", self.name, self.cluster_name,
                         self.lease.id)
                return True
            except EtcdUnavailable as error:
                log.warning("cannot join the cluster yet: %s", error)
                await asyncio.sleep(1.0)
        return False

    async def _register(self) -> None:
        """This node's key: its addresses and its figures for /api/nodes, under its lease."""
        await self.keys.register(self.name, {**self.addresses, "started": self.started_at,
                                             "figures": self.figures()}, self.lease.id)

    def figures(self) -> dict[str, Any]:
        """This node's own figures and description (broker/node_figures.py): the broker's
        figures while leading."""
        if self.node is not None:
            figures = node_figures(self.node.alarms, self.node.started_at,
                                   len(self.node.connections))
        else:
            figures = node_figures(self.monitor, self.started_at, len(self.passthroughs))
        return {**figures, **node_description(self.config)}

    async def _publish_figures(self) -> None:
        """Refresh the node key (figures included) every FIGURES_INTERVAL seconds."""
        while True:
            await asyncio.sleep(FIGURES_INTERVAL)
            if self.lease.id and not self._rejoining:
                with contextlib.suppress(EtcdUnavailable):
                    await self._register()

    def _lease_expired(self) -> None:
        if self.role == "leader":
            self._demote("its etcd lease expired")
        elif not self._rejoining:  # a follower that lost its lease (etcd was away) takes a new one
            self._rejoining = True
            self._spawn(self._rejoin())

    async def _rejoin(self) -> None:
        try:
            await self._join()
        finally:
            self._rejoining = False

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_nodes(self) -> None:
        """The nodes registered in etcd, for /api/nodes (read every second); a node seen
        before whose key is gone (its lease expired: it is down) stays listed, not running."""
        seen: dict[str, ClusterNodeInfo] = {}
        while True:
            with contextlib.suppress(EtcdUnavailable):
                registered = await self.keys.nodes()
                self._in_sync_members = (await self.keys.in_sync()).members
                leader = self.name if self.role == "leader" else (
                    self.leader.node if self.leader is not None else None)
                for name in seen.keys() - registered.keys():
                    seen[name].running, seen[name].role = False, "follower"
                for name, document in registered.items():
                    seen[name] = ClusterNodeInfo(
                        name, "leader" if name == leader else "follower", True,
                        tuple(document["amqp"]), tuple(document["http"]), document.get("started"),
                        document.get("figures", {}))
                self._known_nodes = [seen[name] for name in sorted(seen)]
            await asyncio.sleep(1.0)

    async def _take_roles(self, front: FollowerFront) -> None:
        while True:
            try:
                leader, revision = await self.keys.leader_at()
            except EtcdUnavailable as error:
                log.warning("etcd unavailable: %s", error)
                await asyncio.sleep(1.0)
                continue
            if leader is None:
                try:
                    epoch = await self.election.campaign()
                except EtcdUnavailable:
                    await asyncio.sleep(CAMPAIGN_RETRY)
                    continue
                if epoch is not None:
                    await self._lead(front)
                    return
                # Another node won (its key is after `revision`: seen at once), or this one
                # may not lead (not in the in-sync set): wait for a leader.
                await self.keys.next_leader(None, revision)
            elif leader.node == self.name:  # our key from before a re-exec: it expires soon
                await self.keys.next_leader(leader.epoch, revision)
            else:
                await self._follow(leader, revision)

    # -- follower --------------------------------------------------------------------------

    async def _follow(self, leader: Leader, revision: int) -> None:
        self.role, self.leader = "follower", leader
        log.info("following %s (epoch %d)", leader.node, leader.epoch)
        replicating = asyncio.create_task(self._replicate(leader))
        try:
            # (while etcd does not answer, the leader's own lease rule covers the time)
            await self.keys.next_leader(leader.epoch, revision)
            log.info("leader %s (epoch %d) is gone", leader.node, leader.epoch)
        finally:
            replicating.cancel()
            await asyncio.wait({replicating})  # it holds the data dir's lock until it is done
            if not replicating.cancelled() and replicating.exception() is not None:
                log.error("replication follower failed", exc_info=replicating.exception())
            self.follower, self.leader = None, None
            for pipe in list(self.passthroughs):
                pipe.leader_changed()

    async def _replicate(self, leader: Leader) -> None:
        while True:
            self.follower = ReplicationFollower(
                self.config.data_dir, secret=self.config.cluster_secret, node_name=self.name,
                leader=tuple(leader.replication), epoch=leader.epoch)
            try:
                await self.follower.run()
            except ReplicationRefused as error:
                log.warning("the leader refused replication: %s", error)
            except (OSError, EOFError, asyncio.IncompleteReadError) as error:
                log.info("replication from %s interrupted: %s", leader.node, error)
            await asyncio.sleep(FOLLOW_RETRY)

    # -- leader ----------------------------------------------------------------------------

    async def _lead(self, front: FollowerFront) -> None:
        epoch = self.election.epoch
        self.role = "promoting"
        for pipe in list(self.passthroughs):
            pipe.leader_changed()
        self.replication = ReplicationLeader(
            self.config.data_dir, secret=self.config.cluster_secret, epoch=epoch,
            node_name=self.name, min_in_sync=self.config.required_in_sync,
            in_sync=self.election.followers_in_sync,
            write_in_sync=self._write_in_sync, may_confirm=self.may_confirm,
            replication_timeout=self.config.replication_timeout / 1000)
        node = Node(self.config, replicator=self.replication)  # attached to its log in start
        node.cluster = self
        self.replication.take_client = partial(take_client, node)  # followers' client links
        node.started_at = self.started_at  # uptime is the process's, as RabbitMQ's node's
        self.monitor.stop()  # the broker measures memory and disk from now on
        await node.start()
        await self.replication.start(self.config.advertise_host, self.config.replication_port)
        await front.stop()
        self.management = ManagementServer(node, self.local_secret)
        await self.management.start(self.config.management_host, self.config.management_port)
        self.node, self.role = node, "leader"
        log.info("serving as the leader of cluster %s, epoch %d", self.cluster_name, epoch)
        self._spawn(self._watch_own_key(epoch))
        self._spawn(self._compact_history())
        while True:
            await asyncio.sleep(LEASE_CHECK)
            if not self.lease.valid():
                self._demote("its etcd lease may have lapsed")

    async def _watch_own_key(self, epoch: int) -> None:
        """Demote this leader as soon as etcd's leader key is not its epoch's (watched from the
        revision that created it)."""
        await self.keys.next_leader(epoch, epoch)
        self._demote("the leader key is no longer its own")

    async def _compact_history(self) -> None:
        """The leader keeps etcd's history from growing without end (the node keys' updates
        make about one revision per node every FIGURES_INTERVAL): a compaction every
        COMPACT_INTERVAL. A watch from a compacted revision falls back to a fresh read."""
        compacted = 0
        while True:
            await asyncio.sleep(COMPACT_INTERVAL)
            try:
                _, revision = await self.keys.leader_at()
                if revision - COMPACT_KEEP > compacted:
                    compacted = await self.keys.compact(COMPACT_KEEP)
            except EtcdUnavailable as error:
                log.info("etcd history not compacted: %s", error)

    async def _write_in_sync(self, followers: set[str]) -> bool:
        try:
            return await self.election.write_in_sync(followers)
        except EtcdUnavailable as error:
            log.warning("in-sync set not written: %s", error)
            return False

    def _demote(self, reason: str) -> None:
        """Stop confirming now, close clients with 320, re-execute this process as a fresh
        follower."""
        if self.election.deposed and self._demoting:
            return
        self.election.deposed = self._demoting = True
        log.warning("%s stops leading: %s; restarting as a follower", self.name, reason)
        if self.node is not None:
            for connection in list(self.node.connections):
                connection.close_forced("leader changed")
        self._spawn(self._let_go())
        asyncio.get_running_loop().call_later(CLOSE_FLUSH, _reexec)

    async def _let_go(self) -> None:
        """Best effort before the re-exec: revoke the lease, so that the leader key (if it is
        still ours) goes now rather than when the TTL runs out."""
        with contextlib.suppress(EtcdUnavailable, TimeoutError):
            async with asyncio.timeout(CLOSE_FLUSH * 0.8):
                await self.keys.revoke(self.lease.id)

    async def _shut_down(self, front: FollowerFront) -> None:
        self.monitor.stop()
        for task in list(self._tasks):
            task.cancel()
        for pipe in list(self.passthroughs):
            pipe.leader_changed()
        if self.role == "leader" and self.node is not None:
            await self.management.stop()
            await self.node.close_clients()
            await self.replication.close()
            await self.node.stop()
            with contextlib.suppress(EtcdUnavailable):
                await self.keys.resign(self.election.epoch)
        else:
            await front.stop()
        await self.lease.close(revoke=True)
        await self.keys.close()
        log.info("stopped")


def _reexec() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execv(sys.executable, [sys.executable, "-m", "broker", *sys.argv[1:]])


async def serve_cluster(config: Config) -> None:
    await ClusterMember(config).run()
