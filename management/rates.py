"""Rates for the API's *_details.rate fields: the node's, each queue's and each connection's
plain counters sampled every few seconds (no per-message work), and the rate over the last
interval."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from broker.connection import Connection
    from broker.node import Node
    from broker.queue import Queue

# API name -> how to read the counter from the node
COUNTERS = {
    "publish": lambda node: node.messages_received,
    "deliver_get": lambda node: node.messages_delivered,
    "ack": lambda node: node.messages_acknowledged,
    "confirm": lambda node: node.messages_confirmed,
    "return_unroutable": lambda node: node.messages_unroutable_returned,
    "drop_unroutable": lambda node: node.messages_unroutable_dropped,
    "redeliver": lambda node: node.messages_redelivered,
    "get_empty": lambda node: node.get_empty,
}
# The per-queue counters, in the order QueueSample keeps them.
QUEUE_COUNTERS = ("publish", "deliver_get", "ack", "redeliver")


# The per-connection socket counters with a rate in the API (RabbitMQ gives none to the _cnt).
CONNECTION_COUNTERS = ("recv_oct", "send_oct")


def _connection_counts(connection: Connection) -> tuple[int, ...]:
    transport = connection.transport
    return (transport.recv_oct, transport.send_oct)


def _queue_counts(queue: Queue) -> tuple[int, ...]:
    return (queue.messages_published, queue.messages_delivered, queue.messages_acked,
            queue.messages_redelivered)


@dataclass
class QueueSample:
    queue: Queue  # a queue deleted and declared again under the same name starts afresh
    counts: tuple[int, ...]
    rates: tuple[float, ...] = (0.0,) * len(QUEUE_COUNTERS)


@dataclass
class CounterSample:
    counts: tuple[int, ...]
    rates: tuple[float, ...]


@dataclass
class Rates:
    """The last sample of the node's counters and the rates since the one before."""

    values: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    sampled_at: float = 0.0
    queues: dict[tuple[str, str], QueueSample] = field(default_factory=dict)
    connections: dict[Connection, CounterSample] = field(default_factory=dict)

    def queue_stats(self, queue: Queue) -> dict[str, Any]:
        """A queue's message_stats: counts as of now, rates over the last interval."""
        sample = self.queues.get((queue.vhost.name, queue.name))
        rates = sample.rates if sample is not None and sample.queue is queue else None
        stats: dict[str, Any] = {}
        for index, (name, count) in enumerate(zip(QUEUE_COUNTERS, _queue_counts(queue),
                                                  strict=True)):
            stats[name] = count
            stats[f"{name}_details"] = {"rate": rates[index] if rates else 0.0}
        return stats

    def connection_rates(self, connection: Connection) -> dict[str, dict[str, float]]:
        """recv_oct_details and send_oct_details: the rates over the last interval."""
        sample = self.connections.get(connection)
        rates = sample.rates if sample is not None else (0.0,) * len(CONNECTION_COUNTERS)
        return {f"{name}_details": {"rate": rate}
                for name, rate in zip(CONNECTION_COUNTERS, rates, strict=True)}


RATES_KEY = web.AppKey("rates", Rates)


def sample(node: Node, rates: Rates) -> None:
    now = time.monotonic()
    values = {name: read(node) for name, read in COUNTERS.items()}
    if rates.sampled_at:
        elapsed = max(now - rates.sampled_at, 1e-6)
        rates.rates = {
            name: round((values[name] - rates.values.get(name, 0)) / elapsed, 1)
            for name in values
        }
    elapsed = max(now - rates.sampled_at, 1e-6) if rates.sampled_at else 0.0
    rates.values, rates.sampled_at = values, now
    rates.queues = {
        key: _sample_queue(queue, rates.queues.get(key), elapsed)
        for vhost in node.vhosts.values() for key, queue in (
            ((vhost.name, name), queue) for name, queue in vhost.queues.items()
        )
    }
    rates.connections = {
        connection: _sample_counts(_connection_counts(connection),
                                   rates.connections.get(connection), elapsed)
        for connection in node.connections
    }


def _sample_queue(queue: Queue, last: QueueSample | None, elapsed: float) -> QueueSample:
    counts = _queue_counts(queue)
    if last is None or last.queue is not queue or not elapsed:
        return QueueSample(queue, counts)
    return QueueSample(queue, counts, _rates(counts, last.counts, elapsed))


def _sample_counts(counts: tuple[int, ...], last: CounterSample | None,
                   elapsed: float) -> CounterSample:
    if last is None or not elapsed:
        return CounterSample(counts, (0.0,) * len(counts))
    return CounterSample(counts, _rates(counts, last.counts, elapsed))


def _rates(counts: tuple[int, ...], before: tuple[int, ...], elapsed: float) -> tuple[float, ...]:
    return tuple(round((now - then) / elapsed, 1) for now, then in zip(counts, before,
                                                                        strict=True))


async def sample_forever(node: Node, rates: Rates) -> None:
    interval = node.config.collect_statistics_interval / 1000
    while True:
        sample(node, rates)
        await asyncio.sleep(interval)


def message_stats(node: Node, rates: Rates) -> dict[str, Any]:
    """Counts as of now, rates over the last sampling interval."""
    stats: dict[str, Any] = {}
    for name, read in COUNTERS.items():
        stats[name] = read(node)
        stats[f"{name}_details"] = {"rate": rates.rates.get(name, 0.0)}
    return stats
