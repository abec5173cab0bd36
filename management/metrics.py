"""Prometheus /metrics with rabbitmq_prometheus's metric names, so RabbitMQ dashboards work:
a custom collector that reads the broker's plain counters when scraped (no per-message work),
formatted off the event loop.
/metrics is aggregated; /metrics/per-object has per-queue series labelled vhost and queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from broker.alarms import DISK, MEMORY, open_fds, resident_memory
from broker.node import Node
from management.api.common import NODE_KEY
from management.cluster_metrics import ClusterFigures, cluster_families

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUEUE_GAUGES = (
    ("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers"),
    ("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged"),
    ("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages - total queue depth"),
    ("rabbitmq_queue_consumers", "Consumers on a queue"),
)
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

    queues: list[tuple[str, str, int, int, int]]  # vhost, name, ready, unacked, consumers
    connections: int
    channels: int
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
    cluster: ClusterFigures | None = None  # in a cluster

    @classmethod
    def of(cls, node: Node) -> Snapshot:
        return cls(
            queues=[
                (vhost.name, queue.name, queue.message_count, queue.unacked_count,
                 len(queue.consumers))
                for vhost in node.vhosts.values() for queue in vhost.queues.values()
            ],
            connections=len(node.connections),
            channels=sum(len(connection.channels) for connection in node.connections),
            publishers=sum(
                1 for connection in node.connections
                for channel in connection.channels.values() if channel.publishing.has_published
            ),
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
            cluster=ClusterFigures.of(node.cluster) if node.cluster is not None else None,
        )


class SnapshotCollector:
    def __init__(self, snapshot: Snapshot, per_object: bool) -> None:
        self.snapshot = snapshot
        self.per_object = per_object

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if not self.per_object:  # rabbitmq_prometheus has these in /metrics only
            yield from _alarms(snapshot.alarms)
        queues = snapshot.queues
        for column, (name, documentation) in enumerate(_QUEUE_GAUGES):
            if self.per_object:
                family = GaugeMetricFamily(name, documentation, labels=["vhost", "queue"])
                for queue in queues:
                    family.add_metric([queue[0], queue[1]], _queue_value(queue, column))
            else:
                family = GaugeMetricFamily(
                    name, documentation, value=sum(_queue_value(queue, column) for queue in queues)
                )
            yield family
        consumers = sum(queue[4] for queue in queues)
        yield GaugeMetricFamily("rabbitmq_queues", "Queues available", value=len(queues))
        yield GaugeMetricFamily("rabbitmq_connections", "Connections currently open",
                                value=snapshot.connections)
        yield GaugeMetricFamily("rabbitmq_channels", "Channels currently open",
                                value=snapshot.channels)
        yield GaugeMetricFamily("rabbitmq_consumers", "Consumers currently connected",
                                value=consumers)
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
        yield GaugeMetricFamily("rabbitmq_resident_memory_limit_bytes",
                                "Memory high watermark in bytes", value=snapshot.memory_limit)
        yield GaugeMetricFamily("rabbitmq_disk_space_available_limit_bytes",
                                "Free disk space low watermark in bytes",
                                value=snapshot.disk_free_limit)
        yield GaugeMetricFamily("rabbitmq_process_resident_memory_bytes",
                                "Memory used in bytes", value=resident_memory())
        yield GaugeMetricFamily("rabbitmq_disk_space_available_bytes",
                                "Disk space available in bytes", value=snapshot.disk_free)
        yield GaugeMetricFamily("rabbitmq_process_open_fds", "Open file descriptors",
                                value=open_fds())
        if snapshot.cluster is not None and not self.per_object:
            yield from cluster_families(snapshot.cluster)


def _type_name(queue_type: str) -> str:
    """rabbit_quorum_queue -> quorum (Queue.type_name)."""
    return queue_type.removeprefix("rabbit_").removesuffix("_queue")


def _queue_value(queue: tuple[str, str, int, int, int], column: int) -> int:
    """ready, unacked, ready + unacked, consumers: the _QUEUE_GAUGES in order."""
    _, _, ready, unacked, consumers = queue
    return (ready, unacked, ready + unacked, consumers)[column]


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


def _exposition(snapshot: Snapshot, per_object: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, per_object))
    return generate_latest(registry)


async def _render(node: Node, per_object: bool) -> web.Response:
    body = await asyncio.to_thread(_exposition, Snapshot.of(node), per_object)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def metrics(request: web.Request) -> web.Response:
    return await _render(request.app[NODE_KEY], per_object=False)


async def metrics_per_object(request: web.Request) -> web.Response:
    return await _render(request.app[NODE_KEY], per_object=True)


ROUTES = [
    ("GET", "/metrics", metrics),
    ("GET", "/metrics/per-object", metrics_per_object),
]
