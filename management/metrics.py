"""Prometheus /metrics with rabbitmq_prometheus's metric names, so RabbitMQ dashboards work:
a custom collector that reads the broker's plain counters when scraped (no per-message work),
formatted off the event loop, gzipped when the scraper accepts it.
/metrics is aggregated (the channel message counters including the closed channels' totals
the node keeps); /metrics/per-object has per-object series (queues labelled vhost and queue,
channels and connections labelled channel, the channel message counters channel, vhost and
exchange or queue);
/metrics/detailed has the groups named by
its `family` parameters, per object, limited to the `vhost` parameters' vhosts
(management/metrics_detailed.py). The groups' families are in management/metrics_groups.py."""

from __future__ import annotations

import asyncio
import gzip
import math
import platform
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Protocol

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from broker import RABBITMQ_VERSION
from broker.alarms import DISK, MEMORY, open_fds, resident_memory
from broker.channel import Channel
from broker.channel_stats import ChannelStats, ExchangeCounts, QueueCounts
from broker.connection import Connection
from broker.consumer_use import consumer_capacity
from broker.node import Node, node_name
from broker.queue import Queue
from management.api.common import NODE_KEY
from management.api.connections import channel_name
from management.api.overview import cluster_name_of
from management.api.queue_figures import (
    NO_PENDING,
    Pending,
    head_message_timestamp,
    pending_acks,
    ready_in_memory,
)
from management.cluster_metrics import ClusterFigures, cluster_families
from management.metrics_groups import (
    CHANNEL_EXCHANGE_LABELS,
    CHANNEL_EXCHANGE_METRICS,
    CHANNEL_METRICS,
    CHANNEL_QUEUE_EXCHANGE_METRICS,
    CHANNEL_QUEUE_LABELS,
    CHANNEL_QUEUE_METRICS,
    CONNECTION_COARSE,
    CONNECTION_METRICS,
    QUEUE_COARSE,
    QUEUE_EXCHANGE_LABELS,
    QUEUE_METRICS,
    ChannelCounts,
    ChannelExchangeCounts,
    ChannelQueueCounts,
    ChannelQueueExchangeCounts,
    ChannelRow,
    Churn,
    ConnectionRow,
    QueueRow,
    auth_attempts,
    channel_labels,
    churn,
    columns,
    object_name,
    queue_exchange_labels,
    queue_labels,
)
from management.metrics_text import TextFamily, render

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name without _total, HELP, node counter, labelled by queue type too?)
_GLOBAL_COUNTERS = (
    ("rabbitmq_global_messages_received", "Total number of messages received from publishers",
     "messages_received", False),
    ("rabbitmq_global_messages_received_confirm",
     "Total number of messages received from publishers expecting confirmations",
     "messages_received_confirm", False),
    ("rabbitmq_global_messages_routed", "Total number of messages routed to queues or streams",
     "messages_routed", False),
    ("rabbitmq_global_messages_unroutable_dropped",
     "Total number of messages published as non-mandatory into an exchange and dropped as "
     "unroutable", "messages_unroutable_dropped", False),
    ("rabbitmq_global_messages_unroutable_returned",
     "Total number of messages published as mandatory into an exchange and returned to the "
     "publisher as unroutable", "messages_unroutable_returned", False),
    ("rabbitmq_global_messages_confirmed", "Total number of messages confirmed to publishers",
     "messages_confirmed", False),
    ("rabbitmq_global_messages_delivered", "Total number of messages delivered to consumers",
     "messages_delivered", True),
    ("rabbitmq_global_messages_delivered_consume_auto_ack",
     "Total number of messages delivered to consumers using basic.consume with automatic "
     "acknowledgment", "delivered_consume_auto_ack", True),
    ("rabbitmq_global_messages_delivered_consume_manual_ack",
     "Total number of messages delivered to consumers using basic.consume with manual "
     "acknowledgment", "delivered_consume_manual_ack", True),
    ("rabbitmq_global_messages_delivered_get_auto_ack",
     "Total number of messages delivered to consumers using basic.get with automatic "
     "acknowledgment", "delivered_get_auto_ack", True),
    ("rabbitmq_global_messages_delivered_get_manual_ack",
     "Total number of messages delivered to consumers using basic.get with manual "
     "acknowledgment", "delivered_get_manual_ack", True),
    ("rabbitmq_global_messages_redelivered", "Total number of messages redelivered to consumers",
     "messages_redelivered", True),
    ("rabbitmq_global_messages_acknowledged",
     "Total number of messages acknowledged by consumers", "messages_acknowledged", True),
    ("rabbitmq_global_messages_get_empty",
     "Total number of times basic.get operations fetched no message", "get_empty", True),
)
QUEUE_TYPES = ("rabbit_classic_queue", "rabbit_quorum_queue", "rabbit_stream_queue")
_CLASSIC = [(QUEUE_TYPES[0], "at_most_once"), (QUEUE_TYPES[0], "disabled")]
_QUORUM = [(QUEUE_TYPES[1], "at_least_once"), (QUEUE_TYPES[1], "at_most_once"),
           (QUEUE_TYPES[1], "disabled")]
# The label sets rabbitmq_prometheus 3.10 exposes for each dead-letter reason (zeros included).
_DEAD_LETTER_LABELS = {
    "rejected": _CLASSIC + _QUORUM,
    "expired": _CLASSIC + _QUORUM,
    "maxlen": _CLASSIC + [(QUEUE_TYPES[1], "at_most_once"), (QUEUE_TYPES[1], "disabled")],
    "delivery_limit": _CLASSIC + _QUORUM,
}
_DEAD_LETTERED = (
    ("rejected", "Total number of messages dead-lettered due to basic.reject or basic.nack"),
    ("expired", "Total number of messages dead-lettered due to message TTL exceeded"),
    ("maxlen", "Total number of messages dead-lettered due to overflow drop-head or "
     "reject-publish-dlx"),
    ("delivery_limit", "Total number of messages dead-lettered due to delivery-limit exceeded"),
)


@dataclass
class Snapshot:
    """The numbers a scrape reports, read on the event loop in one quick pass; the metric
    families are built from them and formatted in a worker thread, so that a scrape of many
    queues does not hold up AMQP traffic."""

    queues: list[QueueRow]
    channels: list[ChannelRow]
    channel_counts: list[ChannelCounts]  # the totals of the open channels
    # the open channels' counts per exchange and per queue (per-object scrapes only)
    channel_exchange_counts: list[ChannelExchangeCounts]
    channel_queue_counts: list[ChannelQueueCounts]
    queue_exchange_counts: list[ChannelQueueExchangeCounts]
    closed_channel_counts: ChannelCounts  # the totals of those that have closed
    connections: list[ConnectionRow]
    churn: Churn
    auth_succeeded: dict[str, int]
    auth_failed: dict[str, int]
    publishers: int
    counters: dict[str, int]  # the unlabelled ones; by_queue_type: the others, by type
    by_queue_type: dict[str, dict[str, int]]  # Queue.type_name -> attribute -> value
    dead_lettered: dict[tuple[str, str, str], int]  # (queue type, reason, strategy)
    step_failures: dict[str, int]
    paged_out: int  # transient messages held in the page store now
    paged_out_lost: int  # paged-out messages whose bodies could not be read back
    alarms: frozenset[str]
    memory_limit: int
    disk_free_limit: int
    disk_free: int
    node: str
    cluster_name: str
    started_at: float
    cluster: ClusterFigures | None = None  # in a cluster
    vhosts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, node: Node, per_object: bool = True) -> Snapshot:
        """`per_object`: with the figures only per-object series show (head timestamps)."""
        connections = list(node.connections)
        pending = pending_acks(node) if per_object else None
        channels = [channel for connection in connections
                    for channel in connection.channels.values()]
        for channel in channels:  # a deleted queue's series go, as RabbitMQ's
            channel.stats.forget_queues(channel.vhost.queues)
        names = [channel_name(channel) for channel in channels] if per_object else []
        churn = node.churn
        return cls(
            queues=[queue_row(queue, pending)
                    for vhost in node.vhosts.values() for queue in vhost.queues.values()],
            channels=[channel_row(channel) for channel in channels],
            channel_counts=[channel_counts(channel_name(channel), channel.vhost.name,
                                           channel.stats) for channel in channels],
            channel_exchange_counts=[
                channel_exchange_counts(name, channel.vhost.name, exchange, counts)
                for name, channel in zip(names, channels, strict=False)
                for exchange, counts in channel.stats.exchange_rows()],
            channel_queue_counts=[
                channel_queue_counts(name, channel.vhost.name, queue, counts)
                for name, channel in zip(names, channels, strict=False)
                for queue, counts in channel.stats.queue_rows()],
            queue_exchange_counts=[
                ChannelQueueExchangeCounts(name, channel.vhost.name, queue, exchange, count)
                for name, channel in zip(names, channels, strict=False)
                for (queue, exchange), count in channel.stats.routed_rows()],
            closed_channel_counts=channel_counts("", "", node.closed_channels),
            connections=[connection_row(connection) for connection in connections],
            churn=Churn(churn.connections_opened, churn.connections_closed,
                        churn.channels_opened, churn.channels_opened - len(channels),
                        churn.queues_declared, churn.queues_created, churn.queues_deleted),
            auth_succeeded=dict(node.auth_attempts.succeeded),
            auth_failed=dict(node.auth_attempts.failed),
            publishers=sum(1 for channel in channels if channel.publishing.has_published),
            counters={attribute: getattr(node, attribute)
                      for _, _, attribute, by_type in _GLOBAL_COUNTERS if not by_type},
            by_queue_type={
                type_name: {attribute: getattr(counters, attribute)
                            for _, _, attribute, by_type in _GLOBAL_COUNTERS if by_type}
                for type_name, counters in node.by_queue_type.items()
            },
            dead_lettered=dict(node.dead_lettered),
            step_failures=dict(node.step_failures.counts),
            paged_out=node.store.pages.count if node.store.pages is not None else 0,
            paged_out_lost=node.store.pages.lost if node.store.pages is not None else 0,
            alarms=frozenset(node.alarms.active),
            memory_limit=node.alarms.memory_limit,
            disk_free_limit=node.alarms.disk_free_limit,
            disk_free=node.alarms.disk_free,
            node=node_name(),
            cluster_name=cluster_name_of(node),
            started_at=node.started_at,
            cluster=ClusterFigures.of(node.cluster) if node.cluster is not None else None,
            vhosts=list(node.vhosts),
        )


def queue_row(queue: Queue, pending: dict[Queue, Pending] | None) -> QueueRow:
    """A queue's figures; `pending` (the node's unacked deliveries by queue): with the head
    message timestamp (classic queues, as RabbitMQ's: NaN when no message has one)."""
    ready, unacked = queue.message_count, queue.unacked_count
    ready_bytes, unacked_bytes = queue.ready_bytes, queue.unacked_bytes
    head_timestamp: float | None = None
    if queue.type_name == "stream":  # its messages are in its log on disk
        paged_out, paged_out_bytes, persistent, persistent_bytes = (
            ready, ready_bytes, ready, ready_bytes)
    else:
        in_memory, in_memory_bytes = ready_in_memory(queue)
        paged_out, paged_out_bytes = ready - in_memory, ready_bytes - in_memory_bytes
        if queue.type_name == "quorum":  # it logs every message
            persistent, persistent_bytes = ready + unacked, ready_bytes + unacked_bytes
        else:
            persistent, persistent_bytes = queue.persistent_count, queue.persistent_bytes
            if pending is not None:
                stamp = head_message_timestamp(queue, pending.get(queue, NO_PENDING))
                head_timestamp = math.nan if stamp is None else stamp
    return QueueRow(queue.vhost.name, queue.name, ready, unacked, len(queue.consumers),
                    ready_bytes, unacked_bytes, paged_out, paged_out_bytes,
                    consumer_capacity(queue), persistent, persistent_bytes, head_timestamp,
                    queue.messages_published)


def channel_row(channel: Channel) -> ChannelRow:
    deliveries, confirms, transaction = channel.deliveries, channel.confirms, channel.transaction
    return ChannelRow(
        channel_name(channel), len(deliveries.consumers), len(deliveries.tags),
        confirms.published_seq - confirms.confirmed_upto if confirms.active else 0,
        len(transaction.publishes), sum(1 for outcome in transaction.outcomes if outcome.acked),
        deliveries.default_prefetch, deliveries.global_prefetch,
    )


def channel_counts(name: str, vhost: str, stats: ChannelStats) -> ChannelCounts:
    return ChannelCounts(name, vhost, stats.published, stats.confirmed, stats.returned,
                         stats.dropped, stats.gets, stats.gets_no_ack, stats.consumed_ack,
                         stats.consumed_no_ack, stats.redelivered, stats.acked,
                         stats.gets_empty)


def channel_exchange_counts(name: str, vhost: str, exchange: str, counts: ExchangeCounts
                            ) -> ChannelExchangeCounts:
    return ChannelExchangeCounts(name, vhost, exchange, counts.published, counts.confirmed,
                                 counts.returned, counts.dropped)


def channel_queue_counts(name: str, vhost: str, queue: str, counts: QueueCounts
                         ) -> ChannelQueueCounts:
    return ChannelQueueCounts(name, vhost, queue, counts.gets, counts.gets_no_ack,
                              counts.consumed_ack, counts.consumed_no_ack, counts.redelivered,
                              counts.acked, counts.gets_empty)


def connection_row(connection: Connection) -> ConnectionRow:
    transport = connection.transport
    return ConnectionRow(connection.display_name, transport.recv_oct, transport.send_oct,
                         transport.recv_cnt, transport.send_cnt, transport.pending_writes,
                         len(connection.channels))


class SnapshotCollector:
    def __init__(self, snapshot: Snapshot, per_object: bool) -> None:
        self.snapshot = snapshot
        self.per_object = per_object

    def collect(self) -> Iterator[Metric | TextFamily]:
        snapshot = self.snapshot
        if not self.per_object:  # rabbitmq_prometheus has these in /metrics only
            yield GaugeMetricFamily("process_start_time_seconds",
                                    "Start time of the process since unix epoch in seconds.",
                                    value=int(snapshot.started_at))
            yield from _alarms(snapshot.alarms)
        yield from churn("rabbitmq_", snapshot.churn)
        yield from node_coarse("rabbitmq_", snapshot)
        yield from node_limits("rabbitmq_", snapshot)
        yield from auth_attempts("rabbitmq_", snapshot.auth_succeeded, snapshot.auth_failed)
        per_object = self.per_object
        yield from columns("rabbitmq_", QUEUE_COARSE + QUEUE_METRICS, snapshot.queues,
                           ["vhost", "queue"] if per_object else None, queue_labels)
        yield from columns("rabbitmq_", CHANNEL_METRICS, snapshot.channels,
                           ["channel"] if per_object else None, object_name)
        if per_object:  # per channel and exchange, per channel and queue
            yield from columns("rabbitmq_", CHANNEL_EXCHANGE_METRICS,
                               snapshot.channel_exchange_counts, CHANNEL_EXCHANGE_LABELS,
                               channel_labels)
            yield from columns("rabbitmq_", CHANNEL_QUEUE_METRICS,
                               snapshot.channel_queue_counts, CHANNEL_QUEUE_LABELS,
                               channel_labels)
        else:  # the closed channels count too: a counter never goes down
            yield from columns("rabbitmq_", CHANNEL_EXCHANGE_METRICS + CHANNEL_QUEUE_METRICS,
                               [*snapshot.channel_counts, snapshot.closed_channel_counts],
                               None, channel_labels)
        if per_object:
            yield from columns("rabbitmq_", CHANNEL_QUEUE_EXCHANGE_METRICS,
                               snapshot.queue_exchange_counts, QUEUE_EXCHANGE_LABELS,
                               queue_exchange_labels)
        else:
            yield from columns("rabbitmq_", CHANNEL_QUEUE_EXCHANGE_METRICS, snapshot.queues,
                               None, queue_labels)
        yield from columns("rabbitmq_", CONNECTION_COARSE + CONNECTION_METRICS,
                           snapshot.connections, ["channel"] if per_object else None,
                           object_name)  # (RabbitMQ 3.10 labels connections `channel` too)
        consumers = sum(queue.consumers for queue in snapshot.queues)
        yield GaugeMetricFamily("rabbitmq_connections", "Connections currently open",
                                value=len(snapshot.connections))
        yield GaugeMetricFamily("rabbitmq_channels", "Channels currently open",
                                value=len(snapshot.channels))
        yield GaugeMetricFamily("rabbitmq_consumers", "Consumers currently connected",
                                value=consumers)
        yield GaugeMetricFamily("rabbitmq_queues", "Queues available",
                                value=len(snapshot.queues))
        yield from identity("rabbitmq_", snapshot)
        for name, documentation, attribute, by_queue_type in _GLOBAL_COUNTERS:
            if by_queue_type:  # all three types, zeros included, as RabbitMQ lists them
                family = CounterMetricFamily(name, documentation,
                                             labels=["protocol", "queue_type"])
                for queue_type in QUEUE_TYPES:
                    family.add_metric(["amqp091", queue_type],
                                      snapshot.by_queue_type[_type_name(queue_type)][attribute])
            else:
                family = CounterMetricFamily(name, documentation, labels=["protocol"])
                family.add_metric(["amqp091"], snapshot.counters[attribute])
            yield family
        for reason, documentation in _DEAD_LETTERED:
            family = CounterMetricFamily(
                f"rabbitmq_global_messages_dead_lettered_{reason}", documentation,
                labels=["queue_type", "dead_letter_strategy"],
            )
            for queue_type, strategy in _DEAD_LETTER_LABELS[reason]:
                value = snapshot.dead_lettered.get((_type_name(queue_type), reason, strategy), 0)
                family.add_metric([queue_type, strategy], value)
            yield family
        confirmed = CounterMetricFamily(
            "rabbitmq_global_messages_dead_lettered_confirmed",
            "Total number of messages dead-lettered and confirmed by target queues",
            labels=["queue_type", "dead_letter_strategy"],
        )
        confirmed.add_metric([QUEUE_TYPES[1], "at_least_once"], 0)  # quorum queues only
        yield confirmed
        step_failures = CounterMetricFamily(
            "warren_message_step_failures",
            "Total number of times a step after publishing failed on a message, which was kept "
            "where it was or dead-lettered unchanged (Warren-specific)", labels=["step"],
        )
        for step, count in snapshot.step_failures.items():
            step_failures.add_metric([step], count)
        yield step_failures
        yield GaugeMetricFamily(
            "warren_paged_out_messages",
            "Messages behind the head of long queues whose bodies are paged out to the "
            "transient page store (Warren-specific)", value=snapshot.paged_out)
        yield CounterMetricFamily(
            "warren_paged_out_messages_lost",
            "Total number of paged-out messages whose bodies could not be read back from the "
            "page store (a disk failure; logged) (Warren-specific)", value=snapshot.paged_out_lost)
        global_consumers = GaugeMetricFamily("rabbitmq_global_consumers",
                                             "Current number of consumers", labels=["protocol"])
        global_consumers.add_metric(["amqp091"], consumers)
        yield global_consumers
        publishers = GaugeMetricFamily("rabbitmq_global_publishers",
                                       "Current number of publishers", labels=["protocol"])
        publishers.add_metric(["amqp091"], snapshot.publishers)
        yield publishers
        if snapshot.cluster is not None and not self.per_object:
            yield from cluster_families(snapshot.cluster)


def node_coarse(prefix: str, snapshot: Snapshot) -> Iterator[Metric]:
    """RabbitMQ's node_coarse_metrics that are not about the Erlang VM."""
    yield GaugeMetricFamily(prefix + "process_open_fds", "Open file descriptors",
                            value=open_fds())
    yield GaugeMetricFamily(prefix + "process_open_tcp_sockets", "Open TCP sockets",
                            value=len(snapshot.connections))
    yield GaugeMetricFamily(prefix + "process_resident_memory_bytes", "Memory used in bytes",
                            value=resident_memory())
    yield GaugeMetricFamily(prefix + "disk_space_available_bytes",
                            "Disk space available in bytes", value=snapshot.disk_free)


def node_limits(prefix: str, snapshot: Snapshot) -> Iterator[Metric]:
    """RabbitMQ's node_metrics that are not about the Erlang VM. Warren has no socket limit of
    its own: every socket takes a file descriptor, so both limits are the descriptor limit."""
    max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    yield GaugeMetricFamily(prefix + "process_max_fds", "Open file descriptors limit",
                            value=max_fds)
    yield GaugeMetricFamily(prefix + "process_max_tcp_sockets", "Open TCP sockets limit",
                            value=max_fds)
    yield GaugeMetricFamily(prefix + "resident_memory_limit_bytes",
                            "Memory high watermark in bytes", value=snapshot.memory_limit)
    yield GaugeMetricFamily(prefix + "disk_space_available_limit_bytes",
                            "Free disk space low watermark in bytes",
                            value=snapshot.disk_free_limit)


def identity(prefix: str, snapshot: Snapshot) -> Iterator[Metric]:
    """rabbitmq_build_info and rabbitmq_identity_info (untyped, value 1), which dashboards
    join on. Warren keeps no cluster id of its own: the permanent id is derived from the
    cluster's name, which is as stable."""
    build = UnknownMetricFamily(prefix + "build_info", "RabbitMQ & Erlang/OTP version info",
                                labels=["rabbitmq_version", "prometheus_plugin_version",
                                        "prometheus_client_version", "erlang_version"])
    build.add_metric([RABBITMQ_VERSION, RABBITMQ_VERSION, _CLIENT_VERSION,
                      f"Python {platform.python_version()}"], 1)
    yield build
    info = UnknownMetricFamily(prefix + "identity_info", "RabbitMQ node & cluster identity info",
                               labels=["rabbitmq_node", "rabbitmq_cluster",
                                       "rabbitmq_cluster_permanent_id"])
    info.add_metric([snapshot.node, snapshot.cluster_name,
                     f"warren-cluster-id-{snapshot.cluster_name}"], 1)
    yield info


_CLIENT_VERSION = version("prometheus-client")


def _type_name(queue_type: str) -> str:
    """rabbit_quorum_queue -> quorum (Queue.type_name)."""
    return queue_type.removeprefix("rabbit_").removesuffix("_queue")


def _alarms(active: frozenset[str]) -> Iterator[Metric]:
    """rabbitmq_alarms_*: 1 while the alarm is in effect (untyped, as rabbitmq_prometheus
    writes them). Warren raises no file descriptor alarm: it refuses no connection for that."""
    for name, documentation, value in (
        ("file_descriptor_limit", "is 1 if file descriptor limit alarm is in effect", 0),
        ("free_disk_space_watermark", "is 1 if free disk space watermark alarm is in effect",
         int(DISK in active)),
        ("memory_used_watermark", "is 1 if VM memory watermark alarm is in effect",
         int(MEMORY in active)),
    ):
        family = UnknownMetricFamily(f"rabbitmq_alarms_{name}", documentation)
        family.add_metric([], value)
        yield family




class Collector(Protocol):
    def collect(self) -> Iterator[Metric | TextFamily]: ...


async def respond(request: web.Request, collector: Collector) -> web.Response:
    """Format the collector's families in a worker thread, gzipped if the scraper accepts it
    (as rabbitmq_prometheus does; Prometheus asks for it)."""
    wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "")

    def text() -> bytes:
        body = render(collector.collect())
        return gzip.compress(body, compresslevel=1) if wants_gzip else body

    body = await asyncio.to_thread(text)
    headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if wants_gzip:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


async def metrics(request: web.Request) -> web.Response:
    snapshot = Snapshot.of(request.app[NODE_KEY], per_object=False)
    return await respond(request, SnapshotCollector(snapshot, per_object=False))


async def metrics_per_object(request: web.Request) -> web.Response:
    snapshot = Snapshot.of(request.app[NODE_KEY])
    return await respond(request, SnapshotCollector(snapshot, per_object=True))


ROUTES = [
    ("GET", "/metrics", metrics),
    ("GET", "/metrics/per-object", metrics_per_object),
]
