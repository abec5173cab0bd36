"""A queue: ready messages in order, requeued messages back in their original position,
consumers served round-robin within their prefetch windows."""

from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Any

from broker.message import Message, QueuedMessage

if TYPE_CHECKING:
    from broker.connection import Connection
    from broker.consumer import Consumer
    from broker.exchanges import Binding
    from broker.vhost import VirtualHost


class Queue:
    def __init__(
        self, vhost: VirtualHost, name: str, *, durable: bool = False, auto_delete: bool = False,
        owner: Connection | None = None, arguments: dict[str, Any] | None = None,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.owner = owner  # the connection of an exclusive queue
        self.arguments = arguments or {}
        self.bindings_in: set[Binding] = set()
        self.consumers: list[Consumer] = []
        self.exclusive_consumer: Consumer | None = None
        self.deleted = False
        self.unacked_count = 0
        self._ready: deque[QueuedMessage] = deque()
        self._requeued: list[QueuedMessage] = []  # heap by seq: they precede everything in _ready
        self._next_seq = 0
        self._next_consumer = 0
        self._dispatching = False
        # Plain counters, read by the management plane at scrape time.
        self.messages_published = 0
        self.messages_delivered = 0
        self.messages_acked = 0
        self.messages_redelivered = 0

    @property
    def exclusive(self) -> bool:
        return self.owner is not None

    @property
    def message_count(self) -> int:
        return len(self._ready) + len(self._requeued)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def describe(self) -> str:
        return f"queue '{self.name}' in vhost '{self.vhost.name}'"

    # -- messages -------------------------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        self._ready.append(QueuedMessage(message, self._next_seq))
        self._next_seq += 1
        self.messages_published += 1
        if self.consumers:
            self.dispatch()

    def pop(self) -> QueuedMessage | None:
        if self._requeued:
            return heapq.heappop(self._requeued)
        if self._ready:
            return self._ready.popleft()
        return None

    def requeue(self, entry: QueuedMessage) -> None:
        """Put a delivered message back where it was, marked redelivered (dispatch separately)."""
        entry.redelivered = True
        heapq.heappush(self._requeued, entry)

    def settle(self, entry: QueuedMessage) -> None:
        """A delivered message was acknowledged (or rejected without requeue)."""
        self.messages_acked += 1

    def purge(self) -> int:
        count = self.message_count
        self._ready.clear()
        self._requeued.clear()
        return count

    # -- consumers ------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach a consumer; True if this made an auto-delete queue lose its last one."""
        self.consumers.remove(consumer)
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if self.auto_delete and not self.consumers and not self.deleted:
            self.vhost.delete_queue(self)

    def dispatch(self) -> None:
        """Deliver ready messages to consumers that have room, round-robin."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            consumers = self.consumers
            while consumers and (self._requeued or self._ready):
                consumer = self._next_ready_consumer()
                if consumer is None:
                    break
                entry = self.pop()
                self.messages_delivered += 1
                if entry.redelivered:
                    self.messages_redelivered += 1
                consumer.channel.deliver(consumer, self, entry)
        finally:
            self._dispatching = False

    def _next_ready_consumer(self) -> Consumer | None:
        consumers = self.consumers
        count = len(consumers)
        start = self._next_consumer % count
        for step in range(count):
            index = (start + step) % count
            consumer = consumers[index]
            if consumer.can_take():
                self._next_consumer = index + 1
                return consumer
        return None
