"""Fanout exchanges: every bound destination gets every message."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from broker.exchanges.base import Binding, BoundQueue, Exchange

if TYPE_CHECKING:
    from broker.message import Message


class FanoutExchange(Exchange):
    type_name = "fanout"

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self._destinations: dict[BoundQueue | Exchange, int] = {}

    def bind(self, binding: Binding) -> None:
        self._destinations[binding.destination] = self._destinations.get(binding.destination, 0) + 1

    def unbind(self, binding: Binding) -> None:
        count = self._destinations[binding.destination] - 1
        if count:
            self._destinations[binding.destination] = count
        else:
            del self._destinations[binding.destination]

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        return self._destinations
