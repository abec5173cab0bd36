"""Message rates for the API's *_details.rate fields: the node's plain counters sampled every
few seconds (no per-message work), and the rate over the last interval."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from broker.node import Node

SAMPLE_INTERVAL = 5.0

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


@dataclass
class Rates:
    """The last sample of the node's counters and the rates since the one before."""

    values: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    sampled_at: float = 0.0


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
    rates.values, rates.sampled_at = values, now


async def sample_forever(node: Node, rates: Rates) -> None:
    while True:
        sample(node, rates)
        await asyncio.sleep(SAMPLE_INTERVAL)


def message_stats(node: Node, rates: Rates) -> dict[str, Any]:
    """Counts as of now, rates over the last sampling interval."""
    stats: dict[str, Any] = {}
    for name, read in COUNTERS.items():
        stats[name] = read(node)
        stats[f"{name}_details"] = {"rate": rates.rates.get(name, 0.0)}
    return stats
