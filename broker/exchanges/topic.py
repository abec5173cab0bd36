"""Topic exchanges: binding keys are dot-separated words where `*` matches one word and `#`
zero or more. Bindings live in a trie of words, so a publish walks the key once instead of
testing a pattern per binding."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from broker.exchanges.base import Binding, BoundQueue, Exchange

if TYPE_CHECKING:
    from broker.message import Message


class _Node:
    __slots__ = ("children", "destinations")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.destinations: dict[BoundQueue | Exchange, int] = {}


class TopicExchange(Exchange):
    type_name = "topic"

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self._root = _Node()

    def bind(self, binding: Binding) -> None:
        node = self._root
        for word in _words(binding.routing_key):
            node = node.children.setdefault(word, _Node())
        node.destinations[binding.destination] = node.destinations.get(binding.destination, 0) + 1

    def unbind(self, binding: Binding) -> None:
        path = [self._root]
        words = _words(binding.routing_key)
        for word in words:
            path.append(path[-1].children[word])
        leaf = path[-1]
        count = leaf.destinations[binding.destination] - 1
        if count:
            leaf.destinations[binding.destination] = count
            return
        del leaf.destinations[binding.destination]
        for depth in range(len(words), 0, -1):  # prune empty branches
            node = path[depth]
            if node.destinations or node.children:
                break
            del path[depth - 1].children[words[depth - 1]]

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        found: set[BoundQueue | Exchange] = set()
        _collect(self._root, _words(routing_key), 0, found)
        return found


def _words(key: str) -> list[str]:
    """An empty key has no words (so `*` does not match it); "." has two empty ones."""
    return key.split(".") if key else []


def _collect(node: _Node, words: list[str], index: int, found: set) -> None:
    children = node.children
    hash_node = children.get("#")
    if hash_node is not None:  # '#' swallows zero or more words
        for next_index in range(index, len(words) + 1):
            _collect(hash_node, words, next_index, found)
    if index == len(words):
        found.update(node.destinations)
        return
    exact = children.get(words[index])
    if exact is not None:
        _collect(exact, words, index + 1, found)
    star = children.get("*")
    if star is not None:
        _collect(star, words, index + 1, found)
