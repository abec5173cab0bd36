"""A queue: ready messages in order, requeued messages back in their original position,
length limits, consumers served by priority and round-robin within their prefetch windows."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from broker.message import Message, QueuedMessage

# A durable queue keeps the bodies of its first RESIDENT_HEAD messages in memory; bodies of
# logged messages behind them are paged out and read back PAGE_IN_BATCH at a time.
RESIDENT_HEAD = 2048
PAGE_IN_BATCH = 1024

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
        self._consumer_groups: list[_ConsumerGroup] = []  # by x-priority, highest first
        self.exclusive_consumer: Consumer | None = None
        self.deleted = False
        self.unacked_count = 0
        self._ready: deque[QueuedMessage] = deque()
        self._requeued: list[QueuedMessage] = []  # heap by seq: they precede everything in _ready
        self._next_seq = 0
        self._dispatching = False
        self._bytes = 0  # body bytes of ready messages, for x-max-length-bytes
        self._paging_in = False
        self.max_length = _limit(self.arguments.get("x-max-length"))
        self.max_length_bytes = _limit(self.arguments.get("x-max-length-bytes"))
        self.overflow = self.arguments.get("x-overflow", "drop-head")
        # Plain counters, read by the management plane at scrape time.
        self.messages_published = 0
        self.messages_delivered = 0
        self.messages_acked = 0
        self.messages_redelivered = 0

    @property
    def key(self) -> tuple[str, str]:
        """How the message store names this queue."""
        return self.vhost.name, self.name

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

    def enqueue(self, message: Message) -> bool:
        """Add a published message; False if the queue refuses it (x-overflow reject-publish)."""
        limited = self.max_length is not None or self.max_length_bytes is not None
        if limited and self.overflow != "drop-head" and self._full_for(message.body_size):
            return False
        self._ready.append(QueuedMessage(message, self._next_seq))
        self._next_seq += 1
        self._bytes += message.body_size
        self.messages_published += 1
        if message.store_id and len(self._ready) > RESIDENT_HEAD and self.durable:
            self.vhost.store.page_out_when_durable(message)
        if self.max_length is not None or self.max_length_bytes is not None:
            self._drop_over_limit()
        if self.consumers:
            self.dispatch()
        return True

    def _full_for(self, size: int) -> bool:
        if self.max_length is not None and self.message_count >= self.max_length:
            return True
        return self.max_length_bytes is not None and self._bytes + size > self.max_length_bytes

    def restore(self, message: Message, redelivered: bool) -> None:
        """Put back a message recovered from the log (at start-up, in log order)."""
        entry = QueuedMessage(message, self._next_seq)
        entry.redelivered = redelivered
        self._ready.append(entry)
        self._next_seq += 1
        self._bytes += message.body_size

    def _drop_over_limit(self) -> None:
        while self.message_count and (
            (self.max_length is not None and self.message_count > self.max_length)
            or (self.max_length_bytes is not None and self._bytes > self.max_length_bytes)
        ):
            self.discard(self.pop().message)

    def pop(self) -> QueuedMessage | None:
        if self._requeued:
            entry = heapq.heappop(self._requeued)
        elif self._ready:
            entry = self._ready.popleft()
        else:
            return None
        self._bytes -= entry.message.body_size
        return entry

    def requeue(self, entry: QueuedMessage) -> None:
        """Put a delivered message back where it was, marked redelivered (dispatch separately)."""
        entry.redelivered = True
        self._bytes += entry.message.body_size
        heapq.heappush(self._requeued, entry)

    def settle(self, entry: QueuedMessage) -> None:
        """A delivered message was acknowledged."""
        self.messages_acked += 1
        self.discard(entry.message)

    def discard(self, message: Message) -> None:
        """A message leaves the queue for good (ack, reject, drop): unlog it if logged."""
        if message.store_id and self.durable:
            self.vhost.store.removed(self, message)

    def note_delivery(self, entry: QueuedMessage) -> None:
        """A message is handed to a consumer or basic.get (it stays unacked or is settled)."""
        self.messages_delivered += 1
        if entry.redelivered:
            self.messages_redelivered += 1
        message = entry.message
        if message.store_id and self.durable:
            self.vhost.store.delivered(self, message)

    def purge(self) -> int:
        count = self.message_count
        entries = [*self._requeued, *self._ready]
        self._ready.clear()
        self._requeued.clear()
        self._bytes = 0
        for entry in entries:
            self.discard(entry.message)
        return count

    def drop_everything(self) -> None:
        """The queue is deleted: its ready messages go, and the log forgets it entirely."""
        entries = [*self._requeued, *self._ready]
        self._ready.clear()
        self._requeued.clear()
        self._bytes = 0
        if self.durable and self.vhost.store is not None:
            self.vhost.store.purged(self, [entry.message for entry in entries])

    # -- consumers ------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        for group in self._consumer_groups:
            if group.priority == consumer.priority:
                group.consumers.append(consumer)
                break
        else:
            self._consumer_groups.append(_ConsumerGroup(consumer.priority, [consumer]))
            self._consumer_groups.sort(key=lambda group: -group.priority)
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach a consumer; an auto-delete queue that loses its last one is deleted."""
        self.consumers.remove(consumer)
        for group in self._consumer_groups:
            if consumer in group.consumers:
                group.consumers.remove(consumer)
                if not group.consumers:
                    self._consumer_groups.remove(group)
                break
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
                head = self._requeued[0] if self._requeued else self._ready[0]
                if head.message.body is None:
                    self._page_in()
                    break
                entry = self.pop()
                self.note_delivery(entry)
                consumer.channel.deliver(consumer, self, entry)
        finally:
            self._dispatching = False

    def _page_in(self) -> None:
        """Read the next paged-out bodies from the log; dispatch resumes when they are in."""
        if self._paging_in:
            return
        messages = [
            entry.message for entry in itertools.islice(
                itertools.chain(sorted(self._requeued), self._ready), PAGE_IN_BATCH
            ) if entry.message.body is None
        ]
        self._paging_in = True
        self.vhost.store.page_in(messages, self._paged_in)

    def _paged_in(self) -> None:
        self._paging_in = False
        if not self.deleted:
            self.dispatch()

    def head_body(self, entry: QueuedMessage) -> bytes:
        """The body of a message about to be handed out by basic.get (read now if paged out)."""
        message = entry.message
        if message.body is None:
            message.body = self.vhost.store.read_body_now(message)
        return message.body

    def _next_ready_consumer(self) -> Consumer | None:
        """The highest-priority consumer with room; round-robin within a priority."""
        for group in self._consumer_groups:
            consumer = group.next_ready()
            if consumer is not None:
                return consumer
        return None


class _ConsumerGroup:
    """The consumers of one x-priority in line, as RabbitMQ keeps them: the first one with
    room gets the message and goes to the back; a new consumer joins at the back."""

    __slots__ = ("priority", "consumers")

    def __init__(self, priority: int, consumers: list[Consumer]) -> None:
        self.priority = priority
        self.consumers = consumers

    def next_ready(self) -> Consumer | None:
        consumers = self.consumers
        for index, consumer in enumerate(consumers):
            if consumer.can_take():
                if index != len(consumers) - 1:
                    del consumers[index]
                    consumers.append(consumer)
                return consumer
        return None


def _limit(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
