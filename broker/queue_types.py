"""Queue types: what `x-queue-type` names, how a declare of that type is checked, and which
class runs it. `VirtualHost.declare_queue` asks `queue_type_of` for the type, lets it check the
declare (`QueueType.check`, `QueueType.check_new`) and builds `QueueType.queue_class`.

A type adds one `QueueType` to `QUEUE_TYPES` (classic, quorum and stream: the types RabbitMQ
3.10 knows).

RabbitMQ 3.10.8's order, observed (tests/queue_types/RABBITMQ_QUEUE_TYPES.md §1): the values of
the arguments the type runs, then the arguments it refuses, then the properties it refuses
(auto-delete, exclusive, non-durable); a server-named declare is refused before all of them
(broker/topology.py asks `refuses_server_names`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker import quorum, stream_args
from broker.errors import PreconditionFailed
from broker.names import check_arguments_equivalent
from broker.queue import Queue
from broker.queue_args import (
    CLASSIC_CHECKED,
    CLASSIC_REFUSED,
    refuse_arguments,
    validate_queue_arguments,
)
from broker.quorum import QuorumQueue
from broker.stream import StreamQueue

# The arguments compared when an existing queue is declared again, in the order the first
# that differs is named; each type compares those it runs (RabbitMQ 3.10.8:
# RABBITMQ_QUEUE_TYPES.md §1b), x-queue-type always. A redeclare checks nothing else of them.
COMPARED_ORDER = (
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
    "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-type", "x-single-active-consumer",
    "x-delivery-limit", "x-queue-master-locator", "x-queue-leader-locator",
    "x-quorum-initial-group-size", "x-max-age", "x-stream-max-segment-size-bytes",
    "x-dead-letter-strategy", "x-initial-cluster-size", "x-queue-version",
)


def _compared(*keys: str) -> tuple[str, ...]:
    return tuple(key for key in COMPARED_ORDER if key in (*keys, "x-queue-type"))


@dataclass(frozen=True)
class QueueType:
    queue_class: type[Queue]
    checked: tuple[str, ...]  # arguments whose values are checked
    refused: tuple[str, ...] = ()  # arguments refused, in the order RabbitMQ names them
    # RabbitMQ names the first refused argument in the client's order instead (classic queues)
    refused_in_argument_order: bool = False
    durable_only: bool = False  # refuses auto-delete, exclusive and non-durable queues
    server_named: bool = True  # may be declared with queue=""
    # Checks of the type's own that come before the shared ones (a stream's refusals).
    check_first: Callable[[dict[str, Any], str], None] | None = None
    compared: tuple[str, ...] = _compared()  # on redeclare, in COMPARED_ORDER

    @property
    def name(self) -> str:
        return self.queue_class.type_name

    @property
    def module(self) -> str:
        """RabbitMQ's module for the type, named in its texts."""
        return self.queue_class.type_module

    def check(self, arguments: dict[str, Any], what: str) -> None:
        """The arguments of a declare of this type (new queue or not)."""
        if self.check_first is not None:
            self.check_first(arguments, what)
        validate_queue_arguments(arguments, what, self.checked)
        refuse_arguments(arguments, self.refused, what, self.module,
                         self.refused_in_argument_order)

    def check_equivalent(self, received: dict[str, Any], current: dict[str, Any],
                         what: str) -> None:
        """A declare of an existing queue of this type: PreconditionFailed (inequivalent arg)
        for the first compared argument that differs; the others are not looked at."""
        check_arguments_equivalent(self.compared, received, current, what)

    def check_new(self, what: str, durable: bool, exclusive: bool, auto_delete: bool) -> None:
        """The properties of a queue about to be made."""
        if not self.durable_only:
            return
        for refused, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner"),
                              (not durable, "non-durable")):
            if refused:
                raise PreconditionFailed(f"invalid property '{prop}' for {what}")


CLASSIC = QueueType(
    Queue, CLASSIC_CHECKED, CLASSIC_REFUSED, refused_in_argument_order=True,
    compared=_compared(
        "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
        "x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode",
        "x-single-active-consumer", "x-queue-master-locator", "x-queue-version",
        "x-delivery-limit",  # Warren's classic queues run it (RabbitMQ's do not compare it)
    ),
)
QUEUE_TYPES: dict[str, QueueType] = {
    "classic": CLASSIC,
    "quorum": QueueType(
        QuorumQueue, quorum.SUPPORTED_ARGUMENTS, quorum.REFUSED_ARGUMENTS, durable_only=True,
        server_named=False, compared=_compared(*quorum.SUPPORTED_ARGUMENTS, "x-delivery-limit"),
    ),
    "stream": QueueType(
        StreamQueue, CLASSIC_CHECKED, durable_only=True, server_named=False,
        check_first=stream_args.validate_declare,
        compared=_compared("x-max-length-bytes", "x-queue-leader-locator", "x-max-age",
                           "x-stream-max-segment-size-bytes", "x-initial-cluster-size"),
    ),
}


def type_of_queue(queue: Queue) -> QueueType:
    return QUEUE_TYPES.get(queue.type_name, CLASSIC)


def queue_type_of(arguments: dict[str, Any], what: str | None) -> QueueType:
    """The type an (already typed: the vhost's default filled in) declare names. `what`: the
    queue as texts name it, to check x-queue-type with RabbitMQ's refusals; None for a queue
    from the broker's own definitions file, never refused (a type it does not know, recorded
    by an earlier version, is run as a classic queue rather than lost)."""
    if what is not None:
        validate_queue_arguments(arguments, what, ("x-queue-type",))
    return QUEUE_TYPES.get(arguments.get("x-queue-type", "classic"), CLASSIC)


def refuses_server_names(arguments: dict[str, Any]) -> str | None:
    """The module of a type that cannot be declared with a server-generated name, if the
    (typed) arguments name one."""
    queue_type = QUEUE_TYPES.get(arguments.get("x-queue-type", "classic"))
    if queue_type is None or queue_type.server_named:
        return None
    return queue_type.module
