"""Run Warren with faults injected, for tests that prove a failing step loses nothing:

    python tests/fault_broker.py FAULT[:TIMES][,FAULT[:TIMES]...] BROKER-ARGS...

Each FAULT replaces one function of the broker by one that raises `InjectedFault` (the first
TIMES calls only, then the real function runs again; every call when TIMES is left out). The
broker's own code has no hook for this: the wrapper patches it before `broker.__main__.main`
starts, so production paths pay nothing.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root


class InjectedFault(Exception):
    """The failure a test asked for."""


def _targets() -> dict[str, tuple[object, str]]:
    """Fault name -> (object, attribute) of the function it replaces."""
    import broker.channel
    import broker.deadletter
    import broker.exchanges.delayed
    import broker.queue
    import broker.tracing
    import broker.vhost
    import management.api.queues
    import storage.streamlog

    return {
        # dead-lettering: the properties rewrite, or the whole step (routing the copy)
        "dead_letter_rewrite": (broker.deadletter, "rewritten"),
        "dead_letter": (broker.deadletter, "dead_letter"),
        # the management API's get: rendering a message, or the JSON text of the answer
        "get_render": (management.api.queues, "properties_json"),
        "get_json": (management.api.queues, "json_response"),
        # the delayed exchange: x-delay rewritten when held, routing when released
        "delayed_hold": (broker.vhost, "delivered_properties"),
        "delayed_release": (broker.exchanges.delayed.DelayedExchange, "match"),
        # x-delivery-count added on delivery from a queue with a delivery limit
        "delivery_count": (broker.queue, "encode_table"),
        # the firehose's copy of a publish or delivery (its header table)
        "trace": (broker.tracing, "encode_table"),
        # a write-ahead log waiter: the publisher-confirm callback
        "confirm_callback": (broker.channel.Channel, "_log_durable"),
        # a stream's write in the write-ahead log's batch (failed: the batch is tried again)
        "stream_write": (storage.streamlog.StreamLog, "write"),
    }


def _failing(name: str, real: Callable, times: int | None) -> Callable:
    calls = 0

    @functools.wraps(real)
    def fault(*args, **kwargs):
        nonlocal calls
        calls += 1
        if times is None or calls <= times:
            raise InjectedFault(f"injected fault {name} (call {calls})")
        return real(*args, **kwargs)

    return fault


def inject(spec: str) -> None:
    targets = _targets()
    for item in spec.split(","):
        name, _, times = item.partition(":")
        owner, attribute = targets[name]
        real = getattr(owner, attribute)
        setattr(owner, attribute, _failing(name, real, int(times) if times else None))
    import broker.exchanges.delayed

    broker.exchanges.delayed.RELEASE_RETRY_SECONDS = 0.2  # retried quickly, for tests


if __name__ == "__main__":
    inject(sys.argv[1])
    from broker.__main__ import main

    sys.exit(main(sys.argv[2:]))
