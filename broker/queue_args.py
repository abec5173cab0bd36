"""Queue arguments and policies: validated at declare with RabbitMQ's checks and texts, and
resolved into the settings a queue runs with (a policy's value against the argument's, the way
RabbitMQ resolves each key)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from broker.errors import PreconditionFailed
from broker.names import field_type_name
from broker.policies import Policy, merged_definition

MAX_PRIORITY = 255
MAX_EXPIRY = 315_360_000_000  # ten years in milliseconds, RabbitMQ's upper bound
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum", "stream")  # the types RabbitMQ 3.10 knows
DEAD_LETTER_STRATEGIES = ("at-most-once", "at-least-once")
LEADER_LOCATORS = ("client-local", "balanced", "random", "least-leaders")  # (one node: no-op)


class InvalidArgument(Exception):
    """An argument RabbitMQ would refuse; `term` is the Erlang term it prints."""

    def __init__(self, term: str) -> None:
        super().__init__(term)
        self.term = term


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any) -> int:
    if not is_integer(value):
        raise InvalidArgument(f'"expected integer, got {field_type_name(value)}"')
    return value


def _non_negative(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise InvalidArgument(f"{{value_negative,{number}}}")
    return number


def check_expiry(number: int) -> int:
    if number < 0:
        raise InvalidArgument(f"{{value_negative,{number}}}")
    if number > MAX_EXPIRY:
        raise InvalidArgument(f"{{value_too_large,{number}}}")
    return number


def _message_ttl(value: Any, _: dict) -> int:
    return check_expiry(_int(value))


def _expires(value: Any, _: dict) -> int:
    if _int(value) == 0:
        raise InvalidArgument("{value_zero,0}")
    return check_expiry(value)


def _max_priority(value: Any, _: dict) -> int:
    number = _non_negative(value)
    if number > MAX_PRIORITY:
        raise InvalidArgument(f"{{max_value_exceeded,{number}}}")
    return number


def _longstr(value: Any, _: dict) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{{unacceptable_type,{field_type_name(value)}}}")
    return value


class InvalidType(Exception):
    """x-dead-letter-exchange of the wrong type: RabbitMQ words this one differently."""


def _dead_letter_exchange(value: Any, _: dict) -> str:
    if not isinstance(value, str):
        raise InvalidType(field_type_name(value))
    return value


def _dead_letter_routing_key(value: Any, arguments: dict) -> str:
    _longstr(value, arguments)
    if "x-dead-letter-exchange" not in arguments:
        raise InvalidArgument("routing_key_but_no_dlx_defined")
    return value


def _overflow(value: Any, _: dict) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{{unacceptable_type,{field_type_name(value)}}}")
    if value not in OVERFLOW_MODES:
        raise InvalidArgument("invalid_overflow")
    return value


def _dead_letter_strategy(value: Any, _: dict) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{{unacceptable_type,{field_type_name(value)}}}")
    if value not in DEAD_LETTER_STRATEGIES:
        raise InvalidArgument("invalid_dlx_strategy")
    return value


def _positive(value: Any, _: dict) -> int:
    if _non_negative(value) == 0:
        raise InvalidArgument("{value_zero,0}")
    return value


def _leader_locator(value: Any, arguments: dict) -> str:
    if _longstr(value, arguments) not in LEADER_LOCATORS:
        raise InvalidArgument("invalid_queue_locator_arg")
    return value


def _bool(value: Any, _: dict) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{{unacceptable_type,{field_type_name(value)}}}")
    return value


def _any(value: Any, _: dict) -> Any:
    return value


def _queue_type(value: Any, _: dict) -> str:
    """RabbitMQ's check of x-queue-type. (A type Warren does not run yet is refused when a
    queue of that type would be made: broker/queue_types.py.)"""
    if not isinstance(value, str):
        raise InvalidArgument(f"{{unacceptable_type,{field_type_name(value)}}}")
    if value not in QUEUE_TYPES:
        raise InvalidArgument(f'"unsupported queue type \'{value}\'"')
    return value


_CHECKS: dict[str, Callable[[Any, dict], Any]] = {
    "x-queue-type": _queue_type,  # RabbitMQ finds the queue type before checking the rest
    "x-expires": _expires,
    "x-message-ttl": _message_ttl,
    "x-dead-letter-exchange": _dead_letter_exchange,
    "x-dead-letter-routing-key": _dead_letter_routing_key,
    "x-dead-letter-strategy": _dead_letter_strategy,
    "x-max-length": lambda value, _: _non_negative(value),
    "x-max-length-bytes": lambda value, _: _non_negative(value),
    "x-max-in-memory-length": lambda value, _: _non_negative(value),
    "x-max-in-memory-bytes": lambda value, _: _non_negative(value),
    "x-max-priority": _max_priority,
    "x-overflow": _overflow,
    "x-single-active-consumer": _bool,
    "x-delivery-limit": lambda value, _: _non_negative(value),
    "x-queue-mode": _any,
    "x-quorum-initial-group-size": _positive,
    "x-queue-leader-locator": _leader_locator,
}
# The arguments of the other queue types that RabbitMQ 3.10.8 refuses on a classic queue
# (tests/queue_types/RABBITMQ_QUEUE_TYPES.md §1b). x-delivery-limit is not among them: Warren's
# classic queues run it (tests/lifecycle/test_delivery_limit.py).
CLASSIC_REFUSED = (
    "x-dead-letter-strategy", "x-quorum-initial-group-size", "x-queue-leader-locator",
    "x-max-in-memory-length", "x-max-in-memory-bytes", "x-max-age",
    "x-stream-max-segment-size-bytes", "x-initial-cluster-size",
)
# The arguments whose values a classic queue checks (the others are accepted and ignored).
CLASSIC_CHECKED = tuple(key for key in _CHECKS if key not in CLASSIC_REFUSED)


def validate_queue_arguments(arguments: dict[str, Any], what: str,
                             checked: Collection[str] = CLASSIC_CHECKED) -> None:
    """PreconditionFailed with RabbitMQ's text for the first argument it would refuse, among
    those whose values the queue's type checks (`checked`: RabbitMQ checks only the arguments
    a type supports)."""
    for key, check in _CHECKS.items():
        if key in arguments and key in checked:
            try:
                check(arguments[key], arguments)
            except InvalidArgument as error:
                raise PreconditionFailed(f"invalid arg '{key}' for {what}: {error.term}") from None
            except InvalidType as error:
                raise PreconditionFailed(
                    f"invalid type '{error}' for arg '{key}' in {what}"
                ) from None


def refuse_arguments(arguments: dict[str, Any], refused: Collection[str], what: str,
                     module: str, in_argument_order: bool = False) -> None:
    """406 naming the first of `refused` (in that order, or in the order of `arguments` as the
    client sent them) present in `arguments`, as RabbitMQ names an argument a queue type
    (`module`) does not take."""
    if in_argument_order:
        refused = [argument for argument in arguments if argument in refused]
    for argument in refused:
        if argument in arguments:
            raise PreconditionFailed(f"invalid arg '{argument}' for {what} of queue type {module}")


def validate_consumer_priority(arguments: dict[str, Any], what: str) -> None:
    """basic.consume's x-priority must be an integer."""
    if "x-priority" in arguments:
        try:
            _int(arguments["x-priority"])
        except InvalidArgument as error:
            raise PreconditionFailed(
                f"invalid arg 'x-priority' for {what}: {error.term}"
            ) from None


@dataclass
class QueueSettings:
    """What a queue does, from its arguments and the policy that applies to it."""

    message_ttl: int | None = None
    expires: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int | None = None
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    max_in_memory_length: int | None = None  # (quorum queues)
    max_in_memory_bytes: int | None = None
    dead_letter_strategy: str = "at-most-once"  # (quorum queues)
    policy: str | None = None
    operator_policy: str | None = None

    def __post_init__(self) -> None:
        # What enqueue asks of every message, answered once (settings are never changed in
        # place: a policy change makes new ones)
        self.limited = self.max_length is not None or self.max_length_bytes is not None
        self.stamps_entries = bool(self.max_priority) or self.message_ttl is not None

    def ttl_for(self, expiration: int | None) -> int | None:
        """The TTL (ms) of a message with this expiration property: the queue's message TTL
        or its own, the smaller; None if neither."""
        ttl = self.message_ttl
        if expiration is not None and (ttl is None or expiration < ttl):
            return expiration
        return ttl


# policy key -> (argument, how the two combine: "min" = the lower wins, "arg" = argument wins)
POLICY_KEYS = {
    "message-ttl": ("x-message-ttl", "min"),
    "expires": ("x-expires", "min"),
    "max-length": ("x-max-length", "min"),
    "max-length-bytes": ("x-max-length-bytes", "min"),
    "delivery-limit": ("x-delivery-limit", "min"),
    "max-in-memory-length": ("x-max-in-memory-length", "min"),  # (quorum queues)
    "max-in-memory-bytes": ("x-max-in-memory-bytes", "min"),
    "overflow": ("x-overflow", "arg"),
    "dead-letter-exchange": ("x-dead-letter-exchange", "arg"),
    "dead-letter-routing-key": ("x-dead-letter-routing-key", "arg"),
}


def resolve(arguments: dict[str, Any], policy: Policy | None = None,
            operator: Policy | None = None) -> QueueSettings:
    """Settings from (already validated) arguments, an optional policy and an optional
    operator policy (merged first, see broker/policies.py's `merged_definition`)."""
    values: dict[str, Any] = {
        argument: arguments[argument]
        for argument, _ in POLICY_KEYS.values() if argument in arguments
    }
    definition = merged_definition(policy, operator)
    for key, (argument, rule) in POLICY_KEYS.items():
        if key not in definition:
            continue
        value = definition[key]
        if argument not in values:
            values[argument] = value
        elif rule == "min" and is_integer(value):
            values[argument] = min(values[argument], value)
    priority = arguments.get("x-max-priority")
    return QueueSettings(
        message_ttl=values.get("x-message-ttl"),
        expires=values.get("x-expires"),
        max_length=values.get("x-max-length"),
        max_length_bytes=values.get("x-max-length-bytes"),
        overflow=values.get("x-overflow", "drop-head"),
        dead_letter_exchange=values.get("x-dead-letter-exchange"),
        dead_letter_routing_key=values.get("x-dead-letter-routing-key"),
        max_priority=priority if is_integer(priority) and priority > 0 else None,
        single_active_consumer=arguments.get("x-single-active-consumer") is True,
        delivery_limit=values.get("x-delivery-limit"),
        max_in_memory_length=values.get("x-max-in-memory-length"),
        max_in_memory_bytes=values.get("x-max-in-memory-bytes"),
        dead_letter_strategy=arguments.get("x-dead-letter-strategy", "at-most-once"),
        policy=policy.name if policy is not None else None,
        operator_policy=operator.name if operator is not None else None,
    )
