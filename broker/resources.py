"""Texts RabbitMQ uses to name resources in reply texts, and the reserved-name rules."""

from __future__ import annotations

from protocol.constants import ACCESS_REFUSED, NOT_FOUND
from protocol.errors import AMQPChannelError


def resource(kind: str, name: str, vhost: str) -> str:
    return f"{kind} '{name}' in vhost '{vhost}'"


def not_found(kind: str, name: str, vhost: str, class_id: int, method_id: int) -> AMQPChannelError:
    text = f"no {kind} '{name}' in vhost '{vhost}'"
    return AMQPChannelError(NOT_FOUND, text, class_id, method_id)


def check_reserved_name(kind: str, name: str, class_id: int, method_id: int) -> None:
    if name.startswith("amq."):
        raise AMQPChannelError(
            ACCESS_REFUSED, f"{kind} name '{name}' contains reserved prefix 'amq.*'",
            class_id, method_id,
        )
