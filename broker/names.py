"""Generated names (amq.gen-…, amq.ctag-…) and RabbitMQ's way of showing values in
equivalence errors."""

from __future__ import annotations

import base64
import datetime
import decimal
import os
from collections.abc import Iterable
from typing import Any

from broker.errors import PreconditionFailed


def generate(prefix: str) -> str:
    """RabbitMQ-style unique name: prefix + url-safe base64 of 16 random bytes (22 chars)."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def show(value: Any) -> str:
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    return f"'{value}'"


def field_type_name(value: Any) -> str:
    """The AMQP field type RabbitMQ names for a value: the one it came as, else the one pika
    would encode it as."""
    declared = getattr(type(value), "amqp_type", None)
    if declared is not None:
        return declared
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bytes):
        return "binary"
    if value is None:
        return "void"
    return "longstr"


def _plain(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def arguments_equivalent(new: Any, old: Any) -> bool:
    """RabbitMQ's rule: equal values of compatible types (all integer types are compatible)."""
    if new is None or old is None:
        return new is old
    if _numeric(new) and _numeric(old):
        return new == old and isinstance(new, float) == isinstance(old, float)
    return type(new) is type(old) and new == old


def inequivalent(arg: str, what: str, received: Any, current: Any) -> PreconditionFailed:
    """A redeclare whose property `arg` differs from the declared one's."""
    return PreconditionFailed(
        f"inequivalent arg '{arg}' for {what}: received {show(received)} "
        f"but current is {show(current)}"
    )


def check_arguments_equivalent(
    keys: Iterable[str], received: dict[str, Any], current: dict[str, Any], what: str
) -> None:
    for key in keys:
        new, old = received.get(key), current.get(key)
        if arguments_equivalent(new, old):
            continue
        if new is not None and old is not None:
            shown_new, shown_old = f"'{_plain(new)}'", f"'{_plain(old)}'"
        else:
            shown_new, shown_old = _typed(new), _typed(old)
        raise PreconditionFailed(
            f"inequivalent arg '{key}' for {what}: received {shown_new} but current is "
            f"{shown_old}"
        )


def _typed(value: Any) -> str:
    if value is None:
        return "none"
    return f"the value '{_plain(value)}' of type '{field_type_name(value)}'"


def erlang_pretty(term: str, column: int, width: int = 80) -> str:
    """An Erlang tuple as `~p` prints it starting at `column`: on one line if it ends before
    column `width` (RabbitMQ wraps a term that would end exactly there), else one element per
    line, aligned after the brace."""
    if column + len(term) < width or not (term.startswith("{") and term.endswith("}")):
        return term
    elements = term[1:-1].split(",")
    return "{" + (",\n" + " " * (column + 1)).join(elements) + "}"
