"""Generated names (amq.gen-…, amq.ctag-…) and RabbitMQ's way of showing values in
equivalence errors."""

from __future__ import annotations

import base64
import datetime
import decimal
import os
from collections.abc import Iterable
from typing import Any

from protocol.constants import PRECONDITION_FAILED
from protocol.errors import AMQPChannelError


def generate(prefix: str) -> str:
    """RabbitMQ-style unique name: prefix + url-safe base64 of 16 random bytes (22 chars)."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def show(value: Any) -> str:
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    return f"'{value}'"


def field_type_name(value: Any) -> str:
    """The AMQP field type RabbitMQ would name for a value as pika encodes it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
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


def show_argument(value: Any) -> str:
    if value is None:
        return "none"
    shown = value.decode(errors="replace") if isinstance(value, bytes) else value
    if isinstance(value, bool):
        shown = str(value).lower()
    return f"the value '{shown}' of type '{field_type_name(value)}'"


def check_arguments_equivalent(
    keys: Iterable[str], received: dict[str, Any], current: dict[str, Any], what: str,
    class_id: int, method_id: int,
) -> None:
    for key in keys:
        new, old = received.get(key), current.get(key)
        if new != old or type(new) is not type(old):
            raise AMQPChannelError(
                PRECONDITION_FAILED,
                f"inequivalent arg '{key}' for {what}: received {show_argument(new)} "
                f"but current is {show_argument(old)}",
                class_id, method_id,
            )
