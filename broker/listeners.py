"""Listening on the addresses of a bind setting: each address gets its own socket. The default,
`::` and `0.0.0.0`, is every IPv6 and every IPv4 address (dual stack, as RabbitMQ listens); on
a machine without IPv6 the `::` socket is skipped with a warning, while any address set
explicitly must bind or the broker does not start."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

ALL_IPV6, ALL_IPV4 = "::", "0.0.0.0"
DUAL_STACK = (ALL_IPV6, ALL_IPV4)
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)

Listener = TypeVar("Listener")


def show(address: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets as RabbitMQ logs it ([::]:5672)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def bind_all(addresses: Sequence[str], port: int,
                   bind: Callable[[str], Awaitable[Listener]], what: str) -> list[Listener]:
    """`bind(address)` for each address; returns what it returned for each that bound."""
    bound = []
    for address in addresses:
        try:
            bound.append(await bind(address))
        except OSError as error:
            if tuple(addresses) == DUAL_STACK and address == ALL_IPV6 and (
                error.errno in _NO_IPV6
            ):
                log.warning("no IPv6 on this machine (%s): the %s listener takes IPv4 only",
                            error.strerror, what)
                continue
            raise
        log.info("started %s listener on %s", what, show(address, port))
    return bound
