"""Headers exchanges: a binding's arguments are matched against the message's headers with
x-match = all (default), any, all-with-x or any-with-x."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from broker.errors import PreconditionFailed
from broker.exchanges.base import Binding, BoundQueue, Exchange
from protocol.fieldtable import FLOAT_TAGS, INTEGER_TAGS, TypedValue, typed

if TYPE_CHECKING:
    from broker.message import Message

MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


class HeadersExchange(Exchange):
    type_name = "headers"

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        # binding -> (match all?, the header pairs it requires)
        self._rules: dict[Binding, tuple[bool, list[tuple[str, Any]]]] = {}

    def validate_binding(self, arguments: dict[str, Any]) -> None:
        mode = arguments.get("x-match", "all")
        if mode not in MATCH_MODES:
            shown = mode.decode() if isinstance(mode, bytes) else mode
            raise PreconditionFailed(
                f"Invalid x-match field value <<\"{shown}\">>; "
                "expected all, any, all-with-x, or any-with-x"
            )

    def bind(self, binding: Binding) -> None:
        mode = binding.arguments.get("x-match", "all")
        with_x = mode.endswith("-with-x")
        pairs = [
            (key, typed(value))
            for key, value in binding.arguments.items()
            if key != "x-match" and (with_x or not key.startswith("x-"))
        ]
        self._rules[binding] = (mode.startswith("all"), pairs)

    def unbind(self, binding: Binding) -> None:
        del self._rules[binding]

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        headers = message.typed_headers
        found: set[BoundQueue | Exchange] = set()
        for binding, (match_all, pairs) in self._rules.items():
            if binding.destination in found:
                continue
            if _matches(headers, pairs, match_all):
                found.add(binding.destination)
        return found


def _matches(headers: dict[str, TypedValue], pairs: list[tuple[str, TypedValue]],
             match_all: bool) -> bool:
    if match_all:
        return all(_pair_matches(headers, key, value) for key, value in pairs)
    return any(_pair_matches(headers, key, value) for key, value in pairs)


def _pair_matches(headers: dict[str, TypedValue], key: str, expected: TypedValue) -> bool:
    actual = headers.get(key)
    if actual is None:
        return False
    if expected[0] == "V":  # a void binding value only asks for the header to be present
        return True
    return _same_value(actual, expected)


def _same_value(actual: TypedValue, expected: TypedValue) -> bool:
    """RabbitMQ's rule at the top level: numbers compare by value whatever their field types,
    strings and byte arrays by their bytes; anything else (and everything nested inside arrays
    and tables) must have the same type and value."""
    if _is_number(actual) and _is_number(expected):
        return actual[1] == expected[1]
    if actual[0] in "Sx" and expected[0] in "Sx":
        return actual[1] == expected[1]
    return actual == expected


def _is_number(value: TypedValue) -> bool:
    return value[0] in INTEGER_TAGS or value[0] in FLOAT_TAGS
