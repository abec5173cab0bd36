"""The broker node: its vhosts, users, open connections, direct reply-to registry, storage,
resource alarms, and the plain message counters that /metrics reads at scrape time (a
`broker/counters.py` `MessageCounters`, shared with its vhosts)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from broker.alarms import ResourceMonitor
from broker.auth import AccessControl, Permission, User, hash_password
from broker.counters import AuthAttempts, MessageCounters
from broker.definitions import apply_definitions, definitions_bytes, load_definitions
from broker.exchanges import DelayedExchange
from broker.message import Message
from broker.nodename import name_this_node as name_this_node  # re-exported
from broker.nodename import node_name
from broker.stepfailures import StepFailures
from broker.vhost import VirtualHost
from storage import snapshot
from storage.datadir import DataDir, open_data_dir
from storage.definitions import read_document
from storage.live import live_catalog
from storage.paging import PageStore
from storage.scan import scan
from storage.store import MessageStore
from storage.streamlog import remove_orphans

if TYPE_CHECKING:
    from collections.abc import Callable

    from broker.clients import ClientConnection, ReplyConsumer
    from broker.cluster.view import ClusterView
    from broker.config import Config
    from storage.holders import MessageHolder
    from storage.replication import ReplicationLeader

log = logging.getLogger(__name__)

STORAGE_RETRY_INTERVAL = 1.0  # seconds between writes tried while the log is failing
SHUTDOWN_REASON = "broker forced connection closure with reason 'shutdown'"
SHUTDOWN_GRACE = 3.0  # seconds clients get to go at a shutdown


class Node(MessageCounters):
    """The node; its plain message counters are those of `MessageCounters`, shared with its
    vhosts."""

    def __init__(self, config: Config, replicator: ReplicationLeader | None = None) -> None:
        """`replicator`: a cluster leader's replication (storage/replication/leader.py),
        attached to the write-ahead log as soon as it exists; None on a single node."""
        super().__init__()
        self.config = config
        self.replicator = replicator
        self.access = AccessControl(config.loopback_users)
        self.vhosts: dict[str, VirtualHost] = {}
        self.connections: set[ClientConnection] = set()
        self.reply_channels: dict[str, ReplyConsumer] = {}
        self.store: MessageStore | None = None
        self.data_dir: DataDir | None = None
        self.started_at = time.time()
        self.alarms = ResourceMonitor(config, node_name(), self._alarms_changed)
        self._storage_retry: asyncio.TimerHandle | None = None
        self._storage_failing = False  # since the last failed write of the log
        self._segment_stamps: dict[int, tuple[int, int, int]] = {}  # of the index loaded
        # (reason, "at_most_once" with a dead-letter exchange / "disabled" without) -> count
        self.dead_lettered: dict[tuple[str, str, str], int] = {}
        self.step_failures = StepFailures()  # warren_message_step_failures_total
        self.auth_attempts = AuthAttempts()  # logins by protocol, for /metrics
        self.cluster: ClusterView | None = None  # set when this node leads a cluster
        # The vhosts whose firehose is on (broker/tracing.py), by name as RabbitMQ keeps them
        # (its trace_vhosts): not written to disk, so a restart turns tracing off, and kept
        # when a vhost is deleted, so a vhost made again with that name traces at once.
        self.trace_vhosts: set[str] = set()

    async def start(self) -> None:
        """Open the data dir, load definitions, recover persistent messages."""
        self.data_dir = data_dir = open_data_dir(self.config.data_dir)
        self.alarms.start()
        if data_dir.definitions_path.exists():
            apply_definitions(self, read_document(data_dir.definitions_path), recovered=True)
        else:
            self._add_defaults()
        if self.config.load_definitions:
            load_definitions(self, self.config.load_definitions)
        loop = asyncio.get_running_loop()
        started = loop.time()
        clean = data_dir.was_shut_down_cleanly()
        catalog = None
        if clean:
            catalog = await loop.run_in_executor(
                None, snapshot.load, data_dir.index_path, data_dir.wal_path
            )
        source = "the index written at the last clean stop"
        if catalog is None:
            source = "the log"
            catalog = await loop.run_in_executor(None, scan, data_dir.wal_path)
        self.store = MessageStore(data_dir.wal_path, data_dir.definitions_path, Message.logged,
                                  self.config.segment_size, self.config.resident_head,
                                  self.config.page_out_after / 1000)
        self.store.memory_is_short = lambda: self.alarms.paging
        self.store.pages = PageStore(data_dir.path / "transient", self.config.segment_size,
                                      Message.logged)
        durable_queues = self._message_holders()
        self.store.recover(catalog, durable_queues, clean)
        if self.replicator is not None and self.store.wal is not None:
            self.replicator.attach(self.store.wal)
        self._segment_stamps = catalog.segment_stamps
        if self.store.wal is not None:
            self.store.wal.on_write_result = self._storage_write_result
        data_dir.mark_running()
        for vhost in self.vhosts.values():
            self._attach(vhost)
        streams = [queue for queue in durable_queues.values()
                   if getattr(queue, "logs_itself", False)]
        for queue in streams:  # their logs read back before serving
            await loop.run_in_executor(None, queue.open_log)
        for queue in streams:  # what an older Warren logged for them as classic queues
            await queue.adopt_recovered()
        orphans = await loop.run_in_executor(None, remove_orphans, data_dir.path / "streams",
                                             {queue.directory for queue in streams})
        if orphans:
            log.warning("removed %d stream directories no stream owns", len(orphans))
        self.definitions_changed()
        if self.store.wal is not None:  # the definitions are on disk before any client is served
            await self.store.wal.drain()
        log.info("recovered %d messages in %d durable queues in %.2fs (%d corrupt records "
                 "skipped), from %s", self.store.recovered_messages, len(durable_queues),
                 loop.time() - started, catalog.corrupt_records, source)

    def _message_holders(self) -> dict[tuple[str, str], MessageHolder]:
        """What holds logged messages, by the key the message store logs them under: the
        durable queues and the durable delayed exchanges' held messages."""
        holders: dict[tuple[str, str], MessageHolder] = {
            queue.key: queue for vhost in self.vhosts.values() for queue in vhost.queues.values()
            if queue.durable
        }
        for vhost in self.vhosts.values():  # delayed exchanges keep messages too
            for exchange in vhost.exchanges.values():
                if isinstance(exchange, DelayedExchange) and exchange.durable:
                    holders[exchange.holding.key] = exchange.holding
        return holders

    async def close_clients(self) -> None:
        """At a shutdown: close every client connection with 320 and wait (SHUTDOWN_GRACE at
        most) for them to go."""
        for connection in list(self.connections):
            connection.close_forced(SHUTDOWN_REASON)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.alarms.stop()
        if self._storage_retry is not None:
            self._storage_retry.cancel()
        if self.store is not None:
            await self.store.close()
            if self.data_dir is not None and self.store.wal is not None:
                await self._write_index()
        if self.data_dir is not None:
            self.data_dir.mark_clean()
            self.data_dir.close()

    async def _write_index(self) -> None:
        """The index snapshot, so that the next start need not scan the log (written before
        the clean-stop marker; without the marker it is never used)."""
        if self.store.wal.failed is not None:
            return  # the log may lack what memory holds: the next start scans it
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        # The segments' CRCs are computed in threads while the catalog is built here.
        stamps = loop.run_in_executor(None, snapshot.segment_stamps, self.data_dir.wal_path,
                                      self._segment_stamps)
        try:
            live = live_catalog(self.store, self._message_holders())
            if live is None:
                return
            size = await loop.run_in_executor(
                None, snapshot.write, self.data_dir.index_path, live, await stamps
            )
        except OSError as exc:
            log.warning("message index not written (%s): the next start scans the log", exc)
            return
        except Exception:  # a bug must not spoil the clean stop: the log has everything
            log.exception("message index not written: the next start scans the log")
            return
        log.info("message index of %d messages written (%d bytes) in %.2fs", len(live), size,
                 time.monotonic() - started)

    def deliver_reply(self, key: str, message: Message) -> bool:
        """Direct reply-to: deliver to the channel consuming replies under `key`; False if
        none does (the reply is unroutable)."""
        channel = self.reply_channels.get(key)
        if channel is None:
            return False
        channel.deliver_reply(message)
        return True

    def _alarms_changed(self) -> None:
        """An alarm was raised or cleared: blocked connections may go on."""
        for connection in list(self.connections):
            connection.alarms_changed()

    def _storage_write_result(self, error: BaseException | None) -> None:
        """The log failed to write a batch: a write (the definitions file, with the failed
        batch first) is tried again every second until one succeeds (error None), whatever
        the failure, so that withheld confirms do not wait for traffic. A disk failure
        (OSError: disk full, I/O error) also raises the disk alarm until then; any other
        failure (a bug in a step of the write) is logged with its traceback."""
        if error is None:
            self.alarms.storage_recovered()
            self._storage_failing = False
            return
        if isinstance(error, OSError):
            self.alarms.storage_failed(error)
        elif not self._storage_failing:  # the traceback once, not every second
            log.error("write-ahead log write raised; tried again every %.0f s",
                      STORAGE_RETRY_INTERVAL, exc_info=error)
        self._storage_failing = True
        if self._storage_retry is None:  # one retry armed at a time
            self._storage_retry = asyncio.get_running_loop().call_later(
                STORAGE_RETRY_INTERVAL, self._retry_storage
            )

    def _retry_storage(self) -> None:
        self._storage_retry = None
        self.definitions_changed()

    def _add_defaults(self) -> None:
        config = self.config
        self.add_vhost(config.default_vhost)
        self.access.add_user(User(
            config.default_user, hash_password(config.default_pass), ["administrator"]
        ))
        self.access.set_permissions(
            config.default_user, config.default_vhost, Permission(".*", ".*", ".*")
        )

    def add_vhost(self, name: str) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(name, self.access)
            vhost.counters = self
            vhost.dead_lettered = self.dead_lettered
            vhost.step_failures = self.step_failures
            vhost.deliver_reply = self.deliver_reply
            vhost.tracing = name in self.trace_vhosts
            if self.store is not None:
                self._attach(vhost)
                self.definitions_changed()
        return vhost

    def set_tracing(self, name: str, enabled: bool) -> None:
        """rabbitmqctl trace_on / trace_off (and the API's vhost `tracing`): for a vhost that
        does not exist (yet) too, as RabbitMQ takes it."""
        if (name in self.trace_vhosts) == enabled:
            log.info("Tracing is already %s for vhost '%s'",
                     "enabled" if enabled else "disabled", name)
        else:
            log.info("%s tracing for vhost '%s'", "Enabling" if enabled else "Disabling", name)
        if enabled:
            self.trace_vhosts.add(name)
        else:
            self.trace_vhosts.discard(name)
        vhost = self.vhosts.get(name)
        if vhost is not None:
            vhost.tracing = enabled

    def delete_vhost(self, vhost: VirtualHost) -> None:
        """Close its connections, delete its queues and exchanges, forget its permissions and topic
        permissions."""
        for connection in list(self.connections):
            if connection.vhost is vhost:
                connection.close_forced(f"vhost '{vhost.name}' is deleted")
        for queue in list(vhost.queues.values()):
            vhost.delete_queue(queue)
        del self.vhosts[vhost.name]
        for key in [key for key in self.access.permissions if key[1] == vhost.name]:
            del self.access.permissions[key]
        self.access.clear_topic_permissions(vhost=vhost.name)
        self.definitions_changed()

    def _attach(self, vhost: VirtualHost) -> None:
        vhost.store = self.store
        vhost.on_definitions_changed = self.definitions_changed

    def definitions_changed(self) -> None:
        """A durable definition changed: the log writes a fresh definitions file next."""
        if self.store is not None and self.store.wal is not None:
            self.store.wal.definitions_changed(self._definitions_snapshot)

    def when_definitions_durable(self, callback: Callable[[], None]) -> None:
        if self.store is not None and self.store.wal is not None:
            self.store.wal.when_definitions_durable(callback)
        else:
            callback()

    def _definitions_snapshot(self) -> bytes:
        return definitions_bytes(self)
