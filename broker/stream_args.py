"""A stream's declare rules and its consumers' x-stream-offset, with RabbitMQ 3.10.8's texts
(tests/queue_types/RABBITMQ_QUEUE_TYPES.md §4, §5).

Declaring: durable only (non-durable, exclusive and auto-delete are invalid properties); the
arguments a stream cannot run are refused naming `rabbit_stream_queue`, the first in RabbitMQ's
order; x-max-age is a positive integer and one unit letter (Y M D h m s). Where RabbitMQ's
parser crashes (541) on an x-max-age with no leading number, Warren gives the same 406
`invalid_max_age` as for every other bad one.

Consuming: x-stream-offset is `first`, `last`, `next`, a number, an AMQP timestamp (seconds)
or an interval such as "1h"; anything else is RabbitMQ's 406
`{invalid_stream_offset_arg,{Type,Value}}` (where RabbitMQ crashes with a 541 on an offset
that does not start with a digit or is no string, Warren gives the same 406).
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
from dataclasses import dataclass
from typing import Any

from broker.errors import PreconditionFailed
from broker.names import field_type_name
from broker.queue_args import refuse_arguments

MODULE = "rabbit_stream_queue"
# RabbitMQ's order: the first of these in it is the one named.
REFUSED_ARGUMENTS = (
    "x-max-length", "x-message-ttl", "x-max-priority", "x-dead-letter-exchange",
    "x-dead-letter-routing-key", "x-single-active-consumer", "x-overflow", "x-expires",
    "x-queue-mode", "x-delivery-limit", "x-queue-master-locator", "x-queue-version",
    "x-max-in-memory-length", "x-max-in-memory-bytes",
)
UNIT_MS = {"Y": 365 * 86_400_000, "M": 30 * 86_400_000, "D": 86_400_000, "h": 3_600_000,
           "m": 60_000, "s": 1000}
_AGE = re.compile(r"([0-9]+)([YMDhms])")


def parse_age(text: str) -> int | None:
    """Milliseconds of "7D", "1h" ... (a positive integer, one unit letter); None if not."""
    match = _AGE.fullmatch(text)
    if match is None or int(match.group(1)) <= 0:
        return None
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def validate_declare(arguments: dict[str, Any], what: str) -> None:
    """The argument checks of a stream declare (after the checks every queue type shares)."""
    refuse_arguments(arguments, REFUSED_ARGUMENTS, what, MODULE)
    if "x-max-age" in arguments:
        age = arguments["x-max-age"]
        if not isinstance(age, str):
            raise PreconditionFailed(
                f"invalid arg 'x-max-age' for {what}: {{unacceptable_type,{field_type_name(age)}}}")
        if parse_age(age) is None:
            raise PreconditionFailed(f"invalid arg 'x-max-age' for {what}: invalid_max_age")
    if "x-stream-max-segment-size-bytes" in arguments:
        size = arguments["x-stream-max-segment-size-bytes"]
        if not isinstance(size, int) or isinstance(size, bool):
            raise PreconditionFailed(
                f"invalid arg 'x-stream-max-segment-size-bytes' for {what}: "
                f'"expected integer, got {field_type_name(size)}"')
        if size < 0:
            raise PreconditionFailed(
                f"invalid arg 'x-stream-max-segment-size-bytes' for {what}: "
                f"{{value_negative,{size}}}")


@dataclass(frozen=True)
class StartAt:
    """Where a consumer starts: one of `first`, `last`, `next`, an offset or a time (ms)."""

    kind: str  # "first" | "last" | "next" | "offset" | "time"
    value: int = 0


def parse_offset(arguments: dict[str, Any], what: str) -> StartAt:
    """basic.consume's x-stream-offset (absent: `next`)."""
    if "x-stream-offset" not in arguments:
        return StartAt("next")
    value = arguments["x-stream-offset"]
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return StartAt("offset", max(value, 0)) if value >= 0 else StartAt("first")
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is None:  # AMQP timestamps are UTC
            value = value.replace(tzinfo=datetime.UTC)
        return StartAt("time", int(value.timestamp() * 1000))
    elif isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if text in ("first", "last", "next"):
            return StartAt(text)
        age = parse_age(text)
        if age is not None:
            return StartAt("time", int(time.time() * 1000) - age)
    raise PreconditionFailed(f"invalid arg 'x-stream-offset' for {what}: "
                             f"{{invalid_stream_offset_arg,{_field_term(value)}}}")


def _field_term(value: Any) -> str:
    """The Erlang term RabbitMQ holds for a field-table value, {Type,Value}, as it prints it."""
    kind = field_type_name(value)
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        return f'{{{kind},<<"{text}">>}}'
    if isinstance(value, bool):
        return f"{{bool,{str(value).lower()}}}"
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        number = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        return f"{{decimal,{{{max(-int(exponent), 0)},{number}}}}}"
    if isinstance(value, dict):
        fields = ",".join(f'{{<<"{key}">>,{_field_term(item)[1:]}' for key, item in value.items())
        return f"{{table,[{fields}]}}"
    return f"{{{kind},{value}}}"
