"""What the in-process core tests are built on: a VirtualHost of its own (no node, no storage,
no sockets), messages made as a front makes them, and `Target`, a delivery target that records
what a queue hands it (the interface Queue.dispatch delivers through, broker/consumer.py).

Only transient messages in non-durable queues here: durability is the storage tests' room."""

from __future__ import annotations

import asyncio
from typing import Any

from pamqp import commands as spec

from broker.auth import AccessControl
from broker.consumer import Consumer
from broker.message import Message, QueuedMessage
from broker.queue import Queue
from broker.vhost import VirtualHost
from protocol import properties
from protocol.codec import shortstr
from protocol.fieldtable import to_python


def new_vhost(name: str = "/") -> VirtualHost:
    return VirtualHost(name, AccessControl())


def declare(vhost: VirtualHost, name: str, **arguments: Any) -> Queue:
    """A non-durable queue; keyword arguments are its x- arguments, `x_max_length=2` for
    x-max-length."""
    return vhost.declare_queue(
        name, None, passive=False, durable=False, exclusive=False, auto_delete=False,
        arguments={"x-" + key[2:].replace("_", "-") if key.startswith("x_") else key: value
                   for key, value in arguments.items()},
    )


def message(body: bytes | str, routing_key: str = "", exchange: str = "", *,
            expiration: int | None = None, props_raw: bytes | None = None,
            **props: Any) -> Message:
    """A message as the AMQP front makes one (raw property bytes, expiration validated);
    `props_raw` to give the property bytes as they are."""
    body = body.encode() if isinstance(body, str) else body
    if expiration is not None:
        props["expiration"] = str(expiration)
    if props_raw is None:
        props_raw = spec.Basic.Properties(**props).marshal()
    made = Message(exchange, routing_key, shortstr(exchange) + shortstr(routing_key),
                   props_raw, body)
    made.expiration = expiration
    return made


def publish(vhost: VirtualHost, routing_key: str, body: bytes | str, exchange: str = "",
            **props: Any) -> tuple[int, int, bool]:
    """The core publish every front makes (VirtualHost.publish)."""
    return vhost.publish(vhost.exchanges[exchange], message(body, routing_key, exchange, **props))


def bodies(queue: Queue) -> list[bytes]:
    """Take every ready message of `queue` with basic.get no_ack, in order."""
    taken = []
    while (entry := queue.get(no_ack=True)) is not None:
        taken.append(entry.message.body)
    return taken


def headers(raw: bytes) -> dict[str, Any]:
    """A message's headers as plain Python (x-death entries as dicts)."""
    return to_python(("F", properties.typed_headers(raw)))


async def turn() -> None:
    """Let the callbacks the core scheduled with call_soon run (a reject's dispatch)."""
    await asyncio.sleep(0)


class Target:
    """A delivery target that takes every message (unless `full`) and keeps what it got, in
    order, as (consumer tag, queue, queued message)."""

    def __init__(self) -> None:
        self.full = False
        self.delivered: list[tuple[str, Queue, QueuedMessage]] = []
        self.cancelled_tags: list[str] = []
        self.runs: list[int] = []  # how many messages each deliver_run took
        # deliver_run takes at most this many, then is `full` (a front whose window or output
        # budget fills during a run)
        self.take_at_most: int | None = None

    def can_deliver(self) -> bool:
        return not self.full

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        if consumer.no_ack:
            queue.discard(entry.message)
        else:
            consumer.unacked += 1
        self.delivered.append((consumer.tag, queue, entry))

    def deliver_run(self, consumer: Consumer, queue: Queue, entries: list[QueuedMessage]
                    ) -> tuple[int, int]:
        if self.take_at_most is not None and len(entries) > self.take_at_most:
            entries = entries[:self.take_at_most]
            self.full = True
        for entry in entries:
            self.deliver(consumer, queue, entry)
        self.runs.append(len(entries))
        return len(entries), sum(entry.redelivered for entry in entries)

    def cancelled(self, consumer: Consumer) -> None:
        self.cancelled_tags.append(consumer.tag)

    cancel_by_server = cancelled  # the name before the channel branch's DeliveryTarget

    def tags(self) -> list[str]:
        return [tag for tag, _, _ in self.delivered]

    def bodies(self) -> list[bytes]:
        return [entry.message.body for _, _, entry in self.delivered]

    def ack_all(self) -> None:
        """Acknowledge everything delivered so far (consumers' windows open again)."""
        for tag, queue, entry in self.delivered:
            consumer = next((c for c in queue.consumers if c.tag == tag), None)
            if consumer is not None and not consumer.no_ack:
                consumer.unacked -= 1
                queue.ack(entry)
        self.delivered.clear()


def consume(queue: Queue, target: Target, tag: str, *, prefetch: int = 0, no_ack: bool = False,
            exclusive: bool = False, **arguments: Any) -> Consumer:
    """Add a consumer of `queue` delivering to `target` (x_priority=5 for x-priority)."""
    consumer = Consumer(
        target, queue, tag, no_ack=no_ack, exclusive=exclusive, prefetch=prefetch,
        arguments={"x-" + key[2:].replace("_", "-"): value for key, value in arguments.items()},
    )
    queue.add_consumer(consumer)
    return consumer
