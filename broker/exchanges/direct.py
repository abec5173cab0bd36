"""Direct exchanges (routing key equals binding key) and the default exchange (every queue is
bound under its own name)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from broker.exchanges.base import Binding, BoundQueue, Exchange

if TYPE_CHECKING:
    from broker.message import Message


class DirectExchange(Exchange):
    type_name = "direct"

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self._by_key: dict[str, dict[BoundQueue | Exchange, int]] = {}

    def bind(self, binding: Binding) -> None:
        destinations = self._by_key.setdefault(binding.routing_key, {})
        destinations[binding.destination] = destinations.get(binding.destination, 0) + 1

    def unbind(self, binding: Binding) -> None:
        destinations = self._by_key[binding.routing_key]
        count = destinations[binding.destination] - 1
        if count:
            destinations[binding.destination] = count
        else:
            del destinations[binding.destination]
            if not destinations:
                del self._by_key[binding.routing_key]

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        return self._by_key.get(routing_key, ())


class DefaultExchange(Exchange):
    """The nameless direct exchange: a message goes to the queue named by its routing key."""

    type_name = "direct"

    def __init__(self, queue_lookup: Callable[[str], BoundQueue | None]) -> None:
        super().__init__("", durable=True)
        self._queue_lookup = queue_lookup

    def bind(self, binding: Binding) -> None:  # refused before it gets here
        raise AssertionError("the default exchange takes no explicit bindings")

    unbind = bind

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        queue = self._queue_lookup(routing_key)
        return (queue,) if queue is not None else ()
