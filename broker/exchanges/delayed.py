"""The x-delayed-message exchange (what rabbitmq-delayed-message-exchange adds to RabbitMQ,
built in here): a message with an `x-delay` header (milliseconds) is held until its time
comes, then routed like the exchange's `x-delayed-type` would route it. Delays are absolute
deadlines; on a durable exchange, held persistent messages are in the log and survive a
restart."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from broker.errors import CommandInvalid, PreconditionFailed
from broker.exchanges.base import Binding, BoundQueue, Exchange
from protocol import properties
from protocol.fieldtable import encode_table

if TYPE_CHECKING:
    from broker.message import Message
    from storage.catalog import Catalog, Rows


class DelayedExchange(Exchange):
    type_name = "x-delayed-message"

    def __init__(self, name: str, *, inner_types: dict[str, type[Exchange]], **kwargs) -> None:
        super().__init__(name, **kwargs)
        delayed_type = self.arguments.get("x-delayed-type")
        if not isinstance(delayed_type, str):
            raise PreconditionFailed(
                "Invalid argument, 'x-delayed-type' must be an existing exchange type"
            )
        if delayed_type == self.type_name:
            raise PreconditionFailed(
                "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"
            )
        inner_class = inner_types.get(delayed_type)
        if inner_class is None:
            raise CommandInvalid(f"unknown exchange type '{delayed_type}'")
        self._inner = inner_class(name)
        self.holding = Holding(self)

    def bind(self, binding: Binding) -> None:
        self._inner.bind(binding)

    def unbind(self, binding: Binding) -> None:
        self._inner.unbind(binding)

    def validate_binding(self, arguments: dict[str, Any]) -> None:
        self._inner.validate_binding(arguments)

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        return self._inner.match(message, routing_key)


MAX_DELAY = 2**32 - 1
RELEASE_RETRY_SECONDS = 5  # a message whose release failed is held this much longer


def delay_of(message: Message) -> int:
    """The x-delay header in ms as the plugin reads it: integers as they are, strings parsed,
    floats truncated; 0 (no delay) when absent, not positive, too large or of another type."""
    tag, value = message.typed_headers.get("x-delay", ("V", None))
    if tag in "Sx":
        try:
            value = int(value.decode())
        except ValueError:
            return 0
    elif tag in "fdD":
        value = int(value)
    elif tag not in "bBsUuIilL":
        return 0
    return value if 0 < value <= MAX_DELAY else 0


def delivered_properties(message: Message, delay: int) -> bytes:
    """The plugin delivers a delayed message with x-delay rewritten to -delay (signedint)."""
    headers = dict(message.typed_headers)
    headers["x-delay"] = ("I", -delay) if delay <= 2**31 else ("l", -delay)
    return properties.rebuild(message.props_raw, {"headers": encode_table(headers)})


class Holding:
    """The messages a delayed exchange holds, by deadline. The message store logs held
    messages under its `key`; to recovery it is a `storage.holders.MessageHolder`, so they
    come back after a restart, each as an object (it keeps no cold rows)."""

    keeps_cold_rows = False

    def __init__(self, exchange: DelayedExchange) -> None:
        self.exchange = exchange
        self.release: Callable[[Message], None] | None = None  # set by the vhost
        self._heap: list[tuple[float, int, Message]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.deleted = False

    @property
    def name(self) -> str:
        return f"delayed:{self.exchange.name}"

    @property
    def key(self) -> tuple[str, str]:
        return "\x00delayed", self.exchange.name

    @property
    def durable(self) -> bool:
        return self.exchange.durable

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, message: Message, delay_ms: int) -> None:
        self._push(message, message.timestamp + delay_ms / 1000)

    def hold_again(self, message: Message) -> None:
        """A message whose release failed: held RELEASE_RETRY_SECONDS more."""
        self._push(message, time.time() + RELEASE_RETRY_SECONDS)

    def restore(self, message: Message, redelivered: bool, logged_delivery: bool) -> None:
        """A held message recovered from the log (its x-delay already negated for delivery):
        its deadline is absolute."""
        tag, value = message.typed_headers.get("x-delay", ("I", 0))
        delay = -value if tag in "bBsUuIilL" and value < 0 else 0
        self._push(message, message.timestamp + delay / 1000)

    def restore_cold(self, rows: Rows, catalog: Catalog, expirations: list[int | None],
                     all_redelivered: bool) -> None:
        raise TypeError("a delayed exchange keeps no cold rows")  # the store never asks

    def cold_rows(self) -> list[Rows]:
        return []

    def logged_deliveries(self) -> Iterator[tuple[Message, bool]]:
        return iter(())  # nothing here is delivered from this holder: the log's flags stand

    def _push(self, message: Message, deadline: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._order), message))
        if self._heap[0][2] is message:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._heap or self.deleted:
            self._timer = None
            return
        delay = max(0.0, self._heap[0][0] - time.time())
        self._timer = asyncio.get_event_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        while self._heap and self._heap[0][0] <= now and not self.deleted:
            _, _, message = heapq.heappop(self._heap)
            if self.release is not None:
                self.release(message)
        self._schedule()

    def drop(self) -> list[Message]:
        """The exchange is deleted: everything it held is gone."""
        self.deleted = True
        if self._timer is not None:
            self._timer.cancel()
        messages = [message for _, _, message in self._heap]
        self._heap.clear()
        return messages
