"""Prometheus /metrics with rabbitmq_prometheus's metric names, so RabbitMQ dashboards work:
a custom collector that reads the broker's plain counters when scraped (no per-message work).
/metrics is aggregated; /metrics/per-object has per-queue series labelled vhost and queue."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from broker.node import Node
from management.api.common import NODE_KEY
from management.api.overview import resident_memory

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_QUEUE_GAUGES = (
    ("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers",
     lambda q: q.message_count),
    ("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged",
     lambda q: q.unacked_count),
    ("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages - total queue depth",
     lambda q: q.message_count + q.unacked_count),
    ("rabbitmq_queue_consumers", "Consumers on a queue", lambda q: len(q.consumers)),
)
_GLOBAL_COUNTERS = (
    ("rabbitmq_global_messages_received", "Total number of messages received from publishers",
     "messages_received"),
    ("rabbitmq_global_messages_routed", "Total number of messages routed to queues or streams",
     "messages_routed"),
    ("rabbitmq_global_messages_unroutable_dropped",
     "Total number of messages published as non-mandatory into an exchange and dropped as "
     "unroutable", "messages_unroutable"),
    ("rabbitmq_global_messages_delivered",
     "Total number of messages delivered to consumers", "messages_delivered"),
    ("rabbitmq_global_messages_acknowledged",
     "Total number of message acknowledgements received from consumers",
     "messages_acknowledged"),
    ("rabbitmq_global_messages_confirmed",
     "Total number of messages confirmed to publishers", "messages_confirmed"),
)


class BrokerCollector:
    def __init__(self, node: Node, per_object: bool) -> None:
        self.node = node
        self.per_object = per_object

    def collect(self) -> Iterator[Metric]:
        node = self.node
        queues = [
            (vhost.name, queue) for vhost in node.vhosts.values()
            for queue in vhost.queues.values()
        ]
        for name, documentation, read in _QUEUE_GAUGES:
            if self.per_object:
                family = GaugeMetricFamily(name, documentation, labels=["vhost", "queue"])
                for vhost, queue in queues:
                    family.add_metric([vhost, queue.name], read(queue))
            else:
                family = GaugeMetricFamily(name, documentation,
                                           value=sum(read(queue) for _, queue in queues))
            yield family
        yield GaugeMetricFamily("rabbitmq_queues", "Queues available", value=len(queues))
        yield GaugeMetricFamily("rabbitmq_connections", "Connections currently open",
                                value=len(node.connections))
        yield GaugeMetricFamily(
            "rabbitmq_channels", "Channels currently open",
            value=sum(len(connection.channels) for connection in node.connections),
        )
        yield GaugeMetricFamily("rabbitmq_consumers", "Consumers currently connected",
                                value=sum(len(queue.consumers) for _, queue in queues))
        for name, documentation, attribute in _GLOBAL_COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["protocol"])
            family.add_metric(["amqp091"], getattr(node, attribute))
            yield family
        dead_lettered = CounterMetricFamily(
            "rabbitmq_global_messages_dead_lettered_confirmed",
            "Total number of messages dead-lettered and confirmed by target queues",
            labels=["queue_type", "dead_letter_strategy"],
        )
        dead_lettered.add_metric(
            ["rabbit_classic_queue", "at_most_once"],
            sum(queue.messages_dead_lettered for _, queue in queues),
        )
        yield dead_lettered
        yield GaugeMetricFamily("rabbitmq_process_resident_memory_bytes",
                                "Memory used in bytes", value=resident_memory())
        yield GaugeMetricFamily("rabbitmq_disk_space_available_bytes",
                                "Disk space available in bytes", value=_disk_free(node))
        yield GaugeMetricFamily("rabbitmq_process_open_fds", "Open file descriptors",
                                value=_open_fds())


def _disk_free(node: Node) -> int:
    try:
        return shutil.disk_usage(node.config.data_dir).free
    except OSError:
        return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _render(node: Node, per_object: bool) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(node, per_object))
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})


async def metrics(request: web.Request) -> web.Response:
    return _render(request.app[NODE_KEY], per_object=False)


async def metrics_per_object(request: web.Request) -> web.Response:
    return _render(request.app[NODE_KEY], per_object=True)


ROUTES = [
    ("GET", "/metrics", metrics),
    ("GET", "/metrics/per-object", metrics_per_object),
]
