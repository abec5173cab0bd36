"""Rates and history for the API's figures: the node's (its storage's I/O too), each vhost's,
queue's, exchange's, connection's and channel's plain counters (and queue lengths), sampled
every `collect_statistics_interval` (no per-message work). A figure is shown as RabbitMQ shows
it: its value as of now and `<name>_details` with the rate over the last interval, plus the
samples of a requested range (`?lengths_age=&lengths_incr=`, `msg_rates_*`, `data_rates_*`:
management/history.py).

A `Kind` names the figures of one kind of object, the range group of each and how to read them;
`Rates` keeps a `Series` (last counts, rates, history) per live object and kind."""

from __future__ import annotations

import asyncio
import datetime
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from broker.alarms import open_fds, resident_memory
from management.history import History
from storage.iostats import IO_STATS

if TYPE_CHECKING:
    from broker.channel_stats import ChannelStats
    from broker.node import Node
    from broker.queue import Queue
    from broker.vhost import VirtualHost

LENGTHS, MSG_RATES, DATA_RATES = "lengths", "msg_rates", "data_rates"


@dataclass(frozen=True, eq=False)
class Kind:
    """The sampled figures of one kind of object: names, range group of each (by position),
    the reader of all of them at once, and the retention policy of its history. `shown`
    groups the names RabbitMQ shows together in message_stats (a group appears once one of
    its figures moved)."""

    names: tuple[str, ...]
    groups: tuple[str, ...]
    read: Callable[[Any], tuple[int, ...]]
    policy: str = "basic"

    def index(self, name: str) -> int:
        return self.names.index(name)


# A queue's deliveries split as RabbitMQ's message_stats split them: a get with or without
# ack, a consume delivery with or without ack (the rest of messages_delivered).
def _queue_figures(queue: Queue) -> tuple[int, ...]:
    ready, unacked = queue.message_count, queue.unacked_count
    delivered, gets, gets_no_ack, consumed_no_ack = (
        queue.messages_delivered, queue.gets, queue.gets_no_ack, queue.consumed_no_ack)
    return (ready + unacked, ready, unacked,
            queue.messages_published, delivered, delivered - gets - gets_no_ack - consumed_no_ack,
            consumed_no_ack, gets, gets_no_ack, queue.gets_empty, queue.messages_acked,
            queue.messages_redelivered)


QUEUE_LENGTHS = ("messages", "messages_ready", "messages_unacknowledged")
DELIVER_STATS = ("deliver_get", "deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty",
                 "ack", "redeliver")
QUEUE = Kind(QUEUE_LENGTHS + ("publish",) + DELIVER_STATS[:6] + ("ack", "redeliver"),
             (LENGTHS,) * 3 + (MSG_RATES,) * 9, _queue_figures)
# message_stats groups, as RabbitMQ records them (a group shows once one of its figures moved)
QUEUE_STATS = (("publish",), DELIVER_STATS)

def _vhost_lengths(vhost: Any) -> tuple[int, ...]:
    queues = vhost.queues.values()
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked_count for queue in queues)
    return ready + unacked, ready, unacked


# RabbitMQ 3.10.8 samples a vhost's message counts for a `msg_rates_*` range (not `lengths_*`)
VHOST = Kind(QUEUE_LENGTHS, (MSG_RATES,) * 3, _vhost_lengths)

EXCHANGE = Kind(("publish_in", "publish_out"), (MSG_RATES,) * 2,
                lambda exchange: (exchange.messages_in, exchange.messages_out))
EXCHANGE_STATS = (("publish_in",), ("publish_out",))

CONNECTION = Kind(("recv_oct", "send_oct"), (DATA_RATES,) * 2,
                  lambda connection: (connection.transport.recv_oct,
                                      connection.transport.send_oct))

PUBLISH_STATS = ("publish", "confirm", "return_unroutable", "drop_unroutable")


def _node_figures(node: Node) -> tuple[int, ...]:
    queues = [queue for vhost in node.vhosts.values() for queue in vhost.queues.values()]
    ready = sum(queue.message_count for queue in queues)
    unacked = sum(queue.unacked_count for queue in queues)
    return (ready + unacked, ready, unacked,
            node.messages_received, node.messages_confirmed, node.messages_unroutable_returned,
            node.messages_unroutable_dropped, node.messages_delivered,
            node.delivered_consume_manual_ack, node.delivered_consume_auto_ack,
            node.delivered_get_manual_ack, node.delivered_get_auto_ack, node.get_empty,
            node.messages_acknowledged, node.messages_redelivered,
            IO_STATS.messages_read, IO_STATS.messages_written)


# Message bodies the storage read back from disk and wrote to it (storage/iostats.py): what
# RabbitMQ's disk_reads and disk_writes count of its message store.
DISK_STATS = ("disk_reads", "disk_writes")
NODE = Kind(QUEUE_LENGTHS + PUBLISH_STATS + DELIVER_STATS[:6] + ("ack", "redeliver")
            + DISK_STATS, (LENGTHS,) * 3 + (MSG_RATES,) * 14, _node_figures, policy="global")
NODE_STATS = (PUBLISH_STATS, DELIVER_STATS, DISK_STATS)


def _io_figures(_node: Node) -> tuple[int, ...]:
    io = IO_STATS
    return (io.read_count, io.read_bytes, io.read_time, io.write_count, io.write_bytes,
            io.write_time, io.sync_count, io.sync_time, io.seek_count, io.seek_time,
            io.reopen_count)


# The storage's file I/O (storage/iostats.py; times in microseconds), shown by io_figures as
# RabbitMQ's /api/nodes shows its file handle cache's.
IO = Kind(("io_read_count", "io_read_bytes", "io_read_time", "io_write_count", "io_write_bytes",
           "io_write_time", "io_sync_count", "io_sync_time", "io_seek_count", "io_seek_time",
           "io_reopen_count"), (LENGTHS,) * 11, _io_figures)


def _node_gauges(node: Node) -> tuple[int, ...]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (resident_memory(), open_fds(), len(node.connections), len(asyncio.all_tasks()),
            node.alarms.disk_free, usage.ru_nvcsw + usage.ru_nivcsw)


# What /api/nodes shows of the process, with rates: proc_used counts asyncio tasks (Warren's
# processes), context_switches the process's voluntary and involuntary ones.
NODE_GAUGES = Kind(("mem_used", "fd_used", "sockets_used", "proc_used", "disk_free",
                    "context_switches"), (LENGTHS,) * 6, _node_gauges)


def _churn_figures(node: Node) -> tuple[int, ...]:
    churn = node.churn  # type: ignore[attr-defined]
    open_channels = sum(len(connection.channels) for connection in node.connections)
    return (churn.connections_opened, churn.connections_closed, churn.channels_opened,
            churn.channels_opened - open_channels, churn.queues_declared, churn.queues_created,
            churn.queues_deleted)


# RabbitMQ's churn_rates (overview) and the node's same keys, from the node's churn counters
# (`node.churn`, counted for /metrics' churn families; absent from a node without them).
CHURN = Kind(("connection_created", "connection_closed", "channel_created", "channel_closed",
              "queue_declared", "queue_created", "queue_deleted"), (MSG_RATES,) * 7,
             _churn_figures, policy="global")


def io_figures(rates: Rates, node: Node) -> dict[str, Any]:
    """A node's io_* keys (IoStats.figures) with their `_details`: the rate of each count and
    bytes; for `io_<op>_avg_time` the mean milliseconds of those made over the last interval
    (0.0 without any), as RabbitMQ's."""
    shown: dict[str, Any] = IO_STATS.figures()
    per_second = rates.rates_of(IO, node, IO.names)
    for index, name in enumerate(IO.names):
        if not name.endswith("_time"):
            shown[f"{name}_details"] = {"rate": per_second[index]}
            continue
        operation = name.removesuffix("_time")
        calls = per_second[IO.index(f"{operation}_count")]
        shown[f"{operation}_avg_time_details"] = {
            "rate": per_second[index] / calls / 1000 if calls else 0.0}
    return shown


def _stats_figures(stats: ChannelStats) -> tuple[int, ...]:
    return (stats.published, stats.confirmed, stats.returned, stats.dropped, stats.delivered,
            stats.consumed_ack, stats.consumed_no_ack, stats.gets, stats.gets_no_ack,
            stats.gets_empty, stats.acked, stats.redelivered)


CHANNEL = Kind(PUBLISH_STATS + DELIVER_STATS, (MSG_RATES,) * 12,
               lambda channel: _stats_figures(channel.stats))
CHANNEL_STATS = (PUBLISH_STATS, DELIVER_STATS)


def vhost_traffic(node: Node) -> dict[VirtualHost, tuple[int, ...]]:
    """Each vhost's VHOST_TRAFFIC figures: the bytes of its connections and the message counts
    of their channels, open ones and those that closed (`VirtualHost.closed_traffic`)."""
    totals: dict[VirtualHost, list[int]] = {}
    for vhost in node.vhosts.values():
        closed = vhost.closed_traffic
        totals[vhost] = [closed.recv_oct, closed.send_oct, *_stats_figures(closed.channels)]
    for connection in node.connections:
        row = totals.get(connection.vhost)
        if row is None:  # its vhost is being deleted
            continue
        row[0] += connection.transport.recv_oct
        row[1] += connection.transport.send_oct
        for channel in connection.channels.values():
            for index, count in enumerate(_stats_figures(channel.stats), 2):
                row[index] += count
    return {vhost: tuple(row) for vhost, row in totals.items()}


def _by_node_only(vhost: VirtualHost) -> tuple[int, ...]:
    raise TypeError("a vhost's traffic is summed over the node's connections: vhost_traffic")


# A vhost's bytes and message counts (RabbitMQ's vhost recv_oct, send_oct, message_stats),
# read for all vhosts at once by vhost_traffic and handed to Rates as counts.
VHOST_TRAFFIC = Kind(("recv_oct", "send_oct") + PUBLISH_STATS + DELIVER_STATS,
                     (DATA_RATES,) * 2 + (MSG_RATES,) * 12, _by_node_only)
VHOST_OCTETS = (("recv_oct", "send_oct"),)


class Series:
    """One object's last counts, the rates since the sample before, its history, and when
    its figures last changed (wall-clock ms: RabbitMQ's idle_since)."""

    __slots__ = ("counts", "rates", "history", "changed_at")

    def __init__(self, counts: tuple[int, ...], policy: str, now_ms: int) -> None:
        self.counts = counts
        self.rates: tuple[float, ...] = (0.0,) * len(counts)
        self.history = History(len(counts), policy)
        self.changed_at = now_ms


class Rates:
    """The series of every live object, by kind; replaced at each sample (a deleted object's
    series goes with it, one declared again under the same name starts afresh)."""

    def __init__(self) -> None:
        self.series: dict[Kind, dict[Any, Series]] = {}
        self.sampled_at = 0.0
        self.sampled_at_ms = 0

    def sample(self, kind: Kind, objects: Iterable[Any], elapsed: float, now_ms: int,
               counts_of: Mapping[Any, tuple[int, ...]] | None = None) -> None:
        """Sample each object's figures (`kind.read`, or as given in `counts_of`)."""
        before = self.series.get(kind, {})
        current: dict[Any, Series] = {}
        read = kind.read if counts_of is None else counts_of.__getitem__
        for obj in objects:
            counts = read(obj)
            series = before.get(obj)
            if series is None:
                series = Series(counts, kind.policy, now_ms)
                series.history.record(now_ms, counts)
            elif counts != series.counts:
                series.rates = tuple(round((now - then) / elapsed, 1) for now, then in
                                     zip(counts, series.counts, strict=True))
                series.counts, series.changed_at = counts, now_ms
                series.history.record(now_ms, counts)  # (an unchanged one needs no row)
            elif any(series.rates):
                series.rates = (0.0,) * len(counts)
            current[obj] = series
        self.series[kind] = current

    def idle_since(self, kind: Kind, obj: Any) -> str | None:
        """When the object's figures last changed, if not since the sample before (RabbitMQ's
        ISO text with milliseconds), else None: it is busy."""
        series = self.series.get(kind, {}).get(obj)
        if series is None or series.changed_at >= self.sampled_at_ms:
            return None
        moment = datetime.datetime.fromtimestamp(series.changed_at / 1000, datetime.UTC)
        return moment.isoformat(timespec="milliseconds")

    def rates_of(self, kind: Kind, obj: Any, names: Iterable[str]) -> tuple[float, ...]:
        """The rates over the last interval of some of the object's figures."""
        series = self.series.get(kind, {}).get(obj)
        if series is None:
            return tuple(0.0 for _ in names)
        return tuple(series.rates[kind.index(name)] for name in names)

    def figures(self, kind: Kind, obj: Any, names: Iterable[str],
                ranges: Mapping[str, tuple[int, int]], counts: tuple[int, ...] | None = None,
                ) -> dict[str, Any]:
        """`name` (as of now) and `name_details` for each of `names`."""
        counts = kind.read(obj) if counts is None else counts
        series = self.series.get(kind, {}).get(obj)
        now_ms = int(time.time() * 1000)
        shown: dict[str, Any] = {}
        for name in names:
            index = kind.index(name)
            rate = series.rates[index] if series is not None else 0.0
            span = ranges.get(kind.groups[index])
            shown[name] = counts[index]
            if span is None:
                shown[f"{name}_details"] = {"rate": rate}
            else:
                history = series.history if series is not None else _fresh(kind, counts, now_ms)
                shown[f"{name}_details"] = history.details(index, rate, *span, now_ms)
        return shown

    def message_stats(self, kind: Kind, obj: Any, groups: tuple[tuple[str, ...], ...],
                      ranges: Mapping[str, tuple[int, int]],
                      counts: tuple[int, ...] | None = None) -> dict[str, Any]:
        """RabbitMQ's message_stats of an object: each group of figures once one moved ({}
        while none has: an object's API view then leaves the key out, as RabbitMQ does)."""
        counts = kind.read(obj) if counts is None else counts
        names = [name for group in groups
                 if any(counts[kind.index(name)] for name in group) for name in group]
        return self.figures(kind, obj, names, ranges, counts)


def _fresh(kind: Kind, counts: tuple[int, ...], now_ms: int) -> History:
    """The history of an object not sampled yet: its figures as of now."""
    history = History(len(counts), kind.policy)
    history.record(now_ms, counts)
    return history


RATES_KEY = web.AppKey("rates", Rates)


def sample(node: Node, rates: Rates) -> None:
    now = time.monotonic()
    elapsed = max(now - rates.sampled_at, 1e-6) if rates.sampled_at else 0.0
    rates.sampled_at = now
    now_ms = rates.sampled_at_ms = int(time.time() * 1000)
    vhosts = list(node.vhosts.values())
    connections = list(node.connections)
    rates.sample(NODE, (node,), elapsed, now_ms)
    rates.sample(NODE_GAUGES, (node,), elapsed, now_ms)
    rates.sample(IO, (node,), elapsed, now_ms)
    rates.sample(CHURN, (node,), elapsed, now_ms)
    queues = [queue for vhost in vhosts for queue in vhost.queues.values()]
    rates.sample(QUEUE, queues, elapsed, now_ms)
    rates.sample(VHOST, vhosts, elapsed, now_ms)
    rates.sample(VHOST_TRAFFIC, vhosts, elapsed, now_ms, vhost_traffic(node))
    rates.sample(EXCHANGE, (exchange for vhost in vhosts
                            for exchange in vhost.exchanges.values()), elapsed, now_ms)
    rates.sample(CONNECTION, connections, elapsed, now_ms)
    rates.sample(CHANNEL, (channel for connection in connections
                           for channel in connection.channels.values()), elapsed, now_ms)


async def sample_forever(node: Node, rates: Rates) -> None:
    interval = node.config.collect_statistics_interval / 1000
    while True:
        sample(node, rates)
        await asyncio.sleep(interval)

