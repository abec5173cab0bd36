"""Texts RabbitMQ uses to name resources in its refusals, and the reserved-name rule."""

from __future__ import annotations

from broker.errors import AccessRefused, NotFound, ResourceLocked


def resource(kind: str, name: str, vhost: str) -> str:
    """How RabbitMQ names a resource in its texts: "queue 'x' in vhost '/'"."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def not_found(kind: str, name: str, vhost: str) -> NotFound:
    return NotFound(f"no {resource(kind, name, vhost)}")


RESERVED_PREFIX = "amq."  # names the broker's own: clients may not create or delete them


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX)


def check_reserved_name(kind: str, name: str) -> None:
    """Names starting with amq. are the broker's: clients may not create them."""
    if is_reserved(name):
        raise AccessRefused(f"{kind} name '{name}' contains reserved prefix 'amq.*'")


def queue_locked(described: str) -> ResourceLocked:
    """An exclusive queue refused to another connection, or a redeclare whose exclusive flag
    does not match; `described` is Queue.describe()."""
    return ResourceLocked(
        f"cannot obtain exclusive access to locked {described}. It could be originally "
        "declared on another connection or the exclusive property value does not match that "
        "of the original declaration."
    )


def default_exchange_refused() -> AccessRefused:
    """What RabbitMQ says to declaring, deleting or binding the default exchange ("")."""
    return AccessRefused("operation not permitted on the default exchange")
