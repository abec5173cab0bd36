"""Headers exchanges: a binding's arguments are matched against the message's headers with
x-match = all (default), any, all-with-x or any-with-x."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from broker.exchanges.base import Binding, Exchange
from protocol.constants import PRECONDITION_FAILED
from protocol.errors import AMQPChannelError

if TYPE_CHECKING:
    from broker.message import Message
    from broker.queue import Queue

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
            raise AMQPChannelError(
                PRECONDITION_FAILED,
                f"Invalid x-match field value <<\"{shown}\">>; "
                "expected all, any, all-with-x, or any-with-x",
                50, 20,
            )

    def bind(self, binding: Binding) -> None:
        mode = binding.arguments.get("x-match", "all")
        with_x = mode.endswith("-with-x")
        pairs = [
            (key, value)
            for key, value in binding.arguments.items()
            if key != "x-match" and (with_x or not key.startswith("x-"))
        ]
        self._rules[binding] = (mode.startswith("all"), pairs)

    def unbind(self, binding: Binding) -> None:
        del self._rules[binding]

    def match(self, message: Message, routing_key: str) -> Collection[Queue | Exchange]:
        headers = message.headers
        found: set[Queue | Exchange] = set()
        for binding, (match_all, pairs) in self._rules.items():
            if binding.destination in found:
                continue
            if _matches(headers, pairs, match_all):
                found.add(binding.destination)
        return found


def _matches(headers: dict[str, Any], pairs: list[tuple[str, Any]], match_all: bool) -> bool:
    if match_all:
        return all(_pair_matches(headers, key, value) for key, value in pairs)
    return any(_pair_matches(headers, key, value) for key, value in pairs)


def _pair_matches(headers: dict[str, Any], key: str, value: Any) -> bool:
    if key not in headers:
        return False
    if value is None:  # a void binding value only asks for the header to be present
        return True
    return _same_value(headers[key], value)


def _same_value(actual: Any, expected: Any) -> bool:
    """Like RabbitMQ: numbers compare by value across field types (but booleans and decimals
    are their own types), strings and byte arrays by their bytes."""
    if isinstance(actual, _TEXT) and isinstance(expected, _TEXT):
        return _as_bytes(actual) == _as_bytes(expected)
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


_TEXT = (str, bytes, bytearray)


def _as_bytes(value: str | bytes | bytearray) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
