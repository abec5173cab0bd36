"""What every exchange has: identity, flags, its bindings; and routing through e2e bindings and
alternate exchanges with a visited set, so binding cycles cannot loop."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from broker.message import Message


class BoundQueue(Protocol):
    """A queue as exchanges see it (broker/queue.py's `Queue`): what a binding leads to when
    it is not an exchange, and what routing returns. A protocol, so that exchanges import
    nothing of the queue's module."""

    name: str
    durable: bool
    bindings_in: set[Binding]


def arguments_key(arguments: dict[str, Any] | None) -> str:
    """A hashable stand-in for a binding's argument table (binding identity includes it)."""
    return repr(sorted((arguments or {}).items()))


class Binding:
    """source --routing_key/arguments--> destination (a queue or an exchange)."""

    __slots__ = ("source", "destination", "routing_key", "arguments", "key")

    def __init__(
        self, source: Exchange, destination: BoundQueue | Exchange, routing_key: str,
        arguments: dict[str, Any],
    ) -> None:
        self.source = source
        self.destination = destination
        self.routing_key = routing_key
        self.arguments = arguments
        self.key = (id(destination), routing_key, arguments_key(arguments))


class Exchange:
    type_name = ""

    def __init__(
        self, name: str, *, durable: bool = False, auto_delete: bool = False,
        internal: bool = False, arguments: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        self.bindings: dict[tuple, Binding] = {}
        self.bindings_in: set[Binding] = set()  # bindings where this exchange is the destination
        self.has_exchange_destinations = False
        self.policy_alternate_exchange: str | None = None  # from an exchanges policy
        self.policy: str | None = None  # the name of the policy that applies
        self.declared_by = "rmq-internal"  # the user who declared it (the API shows it)
        # Plain counters for the management API: messages in, and copies routed out.
        self.messages_in = 0
        self.messages_out = 0

    @property
    def alternate_exchange(self) -> str | None:
        """The argument's, else the policy's (RabbitMQ: the argument wins)."""
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) else self.policy_alternate_exchange

    def add_binding(self, binding: Binding) -> bool:
        """Add; False if an identical binding already exists."""
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        binding.destination.bindings_in.add(binding)
        if isinstance(binding.destination, Exchange):
            self.has_exchange_destinations = True
        self.bind(binding)
        return True

    def remove_binding(self, binding: Binding) -> None:
        del self.bindings[binding.key]
        binding.destination.bindings_in.discard(binding)
        self.unbind(binding)
        if self.has_exchange_destinations:
            self.has_exchange_destinations = any(
                isinstance(b.destination, Exchange) for b in self.bindings.values()
            )

    def find_binding(
        self, destination: BoundQueue | Exchange, routing_key: str, arguments: dict[str, Any]
    ) -> Binding | None:
        return self.bindings.get((id(destination), routing_key, arguments_key(arguments)))

    # Type-specific: keep a matching structure in step with `bindings`, and match a message.
    def bind(self, binding: Binding) -> None:
        raise NotImplementedError

    def unbind(self, binding: Binding) -> None:
        raise NotImplementedError

    def match(self, message: Message, routing_key: str) -> Collection[BoundQueue | Exchange]:
        raise NotImplementedError

    def validate_binding(self, arguments: dict[str, Any]) -> None:
        """Raise an AMQP error if a binding's arguments make no sense for this type."""


def route(
    exchange: Exchange, message: Message, lookup: Callable[[str], Exchange | None],
    hold: Callable[[Exchange, Message], bool] | None = None,
) -> Collection[BoundQueue]:
    """All queues a message published to `exchange` reaches, under its routing key and the
    extra keys of its CC and BCC headers."""
    if message.cc:
        destinations = _match_keys(exchange, message)
    else:
        destinations = exchange.match(message, message.routing_key)
        if not exchange.has_exchange_destinations and destinations:
            return destinations  # the common case: one exchange, queues only
    queues: set[BoundQueue] = set()
    visited: set[int] = set()
    pending = [exchange]
    while pending:
        current = pending.pop()
        if id(current) in visited:
            continue
        visited.add(id(current))
        if current is not exchange and hold is not None and hold(current, message):
            continue  # a delayed exchange behind an e2e binding keeps it for later
        matched = _match_keys(current, message) if current is not exchange else destinations
        for destination in matched:
            if isinstance(destination, Exchange):
                pending.append(destination)
            else:
                queues.add(destination)
        if not matched and current.alternate_exchange:
            alternate = lookup(current.alternate_exchange)
            if alternate is not None:
                pending.append(alternate)
    return queues


def _match_keys(exchange: Exchange, message: Message) -> Collection[BoundQueue | Exchange]:
    if not message.cc:
        return exchange.match(message, message.routing_key)
    found: set[BoundQueue | Exchange] = set()
    for key in (message.routing_key, *message.cc):
        found.update(exchange.match(message, key))
    return found
