"""GET /metrics/detailed as rabbitmq_prometheus 3.10 serves it: only the metric groups named
by the `family` query parameters (repeatable), per object, under the `rabbitmq_detailed_`
prefix; queues limited to the vhosts named by the `vhost` parameters (all when none); the
cluster-wide groups (vhost_status, exchange_names, exchange_bindings) under
`rabbitmq_cluster_`, never filtered; rabbitmq_build_info and rabbitmq_identity_info always.
The channel message counter groups are per channel and exchange (channel_exchange_metrics,
labelled `channel`, `vhost`, `exchange`) and per channel and queue (channel_queue_metrics:
`channel`, `vhost`, `queue`), as RabbitMQ's; channel_queue_exchange_metrics per queue, labelled
`queue_vhost` and `queue`. A group name RabbitMQ has but Warren does not count (Erlang
internals: see tests/management/RABBITMQ_METRICS.md), like an unknown one, adds nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric

from broker.node import Node
from management.api.common import NODE_KEY
from management.metrics import Snapshot, identity, node_coarse, node_limits, respond
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
    QUEUE_CONSUMERS,
    QUEUE_EXCHANGE_LABELS,
    QUEUE_METRICS,
    QueueRow,
    auth_attempts,
    channel_labels,
    churn,
    columns,
    object_name,
    queue_exchange_labels,
    queue_labels,
)
from management.metrics_text import TextFamily

PREFIX = "rabbitmq_detailed_"
CLUSTER_PREFIX = "rabbitmq_cluster_"
ExchangeRow = tuple[str, str, str, int]  # vhost, name, type, bindings


class Request:
    """What one scrape asked for and the figures read for it."""

    def __init__(self, node: Node, families: list[str], vhosts: list[str]) -> None:
        self.families = families
        self.snapshot = Snapshot.of(node)
        wanted = set(vhosts)
        self.queues: list[QueueRow] = [queue for queue in self.snapshot.queues
                                       if not wanted or queue.vhost in wanted]
        self.exchanges: list[ExchangeRow] = [
            (vhost.name, exchange.name, exchange.type_name, len(exchange.bindings))
            for vhost in node.vhosts.values() for exchange in vhost.exchanges.values()
            if exchange.name and not exchange.internal  # as RabbitMQ lists them
        ] if {"exchange_names", "exchange_bindings"} & set(families) else []


def _queue_group(spec: tuple) -> Callable[[Request], Iterator[Metric | TextFamily]]:
    return lambda request: columns(PREFIX, spec, request.queues, ["vhost", "queue"],
                                   queue_labels)


def _vhost_status(request: Request) -> Iterator[Metric]:
    family = GaugeMetricFamily(CLUSTER_PREFIX + "vhost_status",
                               "Whether a given vhost is running", labels=["vhost"])
    for vhost in request.snapshot.vhosts:
        family.add_metric([vhost], 1)
    yield family


def _exchanges(name: str, documentation: str, bindings: bool
               ) -> Callable[[Request], Iterator[Metric]]:
    def group(request: Request) -> Iterator[Metric]:
        family = GaugeMetricFamily(CLUSTER_PREFIX + name, documentation,
                                   labels=["vhost", "exchange", "type"])
        for vhost, exchange, type_name, count in request.exchanges:
            family.add_metric([vhost, exchange, type_name], count if bindings else 1)
        yield family
    return group


GROUPS: dict[str, Callable[[Request], Iterator[Metric | TextFamily]]] = {
    "connection_churn_metrics": lambda request: churn(PREFIX, request.snapshot.churn),
    "queue_coarse_metrics": _queue_group(tuple(QUEUE_COARSE)),
    "queue_consumer_count": _queue_group((QUEUE_CONSUMERS,)),
    "queue_metrics": _queue_group(tuple(QUEUE_METRICS)),
    "channel_metrics": lambda request: columns(PREFIX, CHANNEL_METRICS,
                                               request.snapshot.channels, ["channel"],
                                               object_name),
    "channel_exchange_metrics": lambda request: columns(
        PREFIX, CHANNEL_EXCHANGE_METRICS, request.snapshot.channel_exchange_counts,
        CHANNEL_EXCHANGE_LABELS, channel_labels),
    "channel_queue_metrics": lambda request: columns(
        PREFIX, CHANNEL_QUEUE_METRICS, request.snapshot.channel_queue_counts,
        CHANNEL_QUEUE_LABELS, channel_labels),
    # (RabbitMQ filters only the queue groups by vhost)
    "channel_queue_exchange_metrics": lambda request: columns(
        PREFIX, CHANNEL_QUEUE_EXCHANGE_METRICS, request.snapshot.queue_exchange_counts,
        QUEUE_EXCHANGE_LABELS, queue_exchange_labels),
    "connection_coarse_metrics": lambda request: columns(
        PREFIX, CONNECTION_COARSE, request.snapshot.connections, ["channel"], object_name),
    "connection_metrics": lambda request: columns(
        PREFIX, CONNECTION_METRICS, request.snapshot.connections, ["channel"], object_name),
    "node_coarse_metrics": lambda request: node_coarse(PREFIX, request.snapshot),
    "node_metrics": lambda request: node_limits(PREFIX, request.snapshot),
    "auth_attempt_metrics": lambda request: auth_attempts(
        PREFIX, request.snapshot.auth_succeeded, request.snapshot.auth_failed),
    "vhost_status": _vhost_status,
    "exchange_names": _exchanges(
        "exchange_name", "Enumerates exchanges without any additional info. This value is "
        "cluster-wide. A cheaper alternative to `exchange_bindings`", bindings=False),
    "exchange_bindings": _exchanges(
        "exchange_bindings", "Number of bindings for an exchange. This value is cluster-wide.",
        bindings=True),
}


class DetailedCollector:
    def __init__(self, request: Request) -> None:
        self.request = request

    def collect(self) -> Iterator[Metric | TextFamily]:
        written: set[str] = set()  # queue_metrics and queue_consumer_count share a family
        for name in dict.fromkeys(self.request.families):
            for family in GROUPS.get(name, lambda _: iter(()))(self.request):
                if family.name not in written:
                    written.add(family.name)
                    yield family
        yield from identity("rabbitmq_", self.request.snapshot)


async def metrics_detailed(request: web.Request) -> web.Response:
    scrape = Request(request.app[NODE_KEY], request.query.getall("family", []),
                     request.query.getall("vhost", []))
    return await respond(request, DetailedCollector(scrape))


ROUTES = [("GET", "/metrics/detailed", metrics_detailed)]
