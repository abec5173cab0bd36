"""Consumers: one subscription to a queue with its prefetch window, the line of a queue's
consumers (priority groups taking turns, or a single active consumer), and `DeliveryTarget`,
the interface through which a queue hands messages out.

The core owns `DeliveryTarget`: a queue delivers to whatever implements it (today an AMQP
channel, broker/channel.py), never to a Channel by name, so that another front can consume and
this module imports nothing of the AMQP adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from protocol.codec import shortstr

if TYPE_CHECKING:
    from broker.message import QueuedMessage
    from broker.queue import Queue


class DeliveryTarget(Protocol):
    """Where a consumer's messages go: what a queue needs of a consuming front."""

    def can_deliver(self) -> bool:
        """Whether the front takes a message now, for all of its consumers (its shared prefetch
        window has room, its connection is writable). The consumer's own window is checked by
        `Consumer.can_take`."""
        ...

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        """Hand `entry`, just taken from `queue` (delivery already counted by
        `Queue.note_delivery`), to `consumer`: the target keeps it unacknowledged, or settles it
        with the queue at once for a no-ack consumer."""
        ...

    def deliver_run(self, consumer: Consumer, queue: Queue, entries: list[QueuedMessage]
                    ) -> tuple[int, int]:
        """`deliver` for several messages taken from `queue` together for `consumer` (its
        only consumer, manual ack; not counted by the queue yet), in order: as many as the
        target takes now, at least the first. Returns how many it took (the queue puts the
        others back) and how many of those were redeliveries."""
        ...

    def cancelled(self, consumer: Consumer) -> None:
        """The queue of `consumer` was deleted: the consumer is gone (told to the client if the
        front tells such things)."""
        ...


class Consumer:
    __slots__ = (
        "target", "queue", "tag", "tag_bytes", "no_ack", "exclusive", "arguments",
        "prefetch", "unacked", "priority",
    )

    def __init__(
        self, target: DeliveryTarget, queue: Queue, tag: str, *, no_ack: bool, exclusive: bool,
        prefetch: int, arguments: dict[str, Any] | None = None,
    ) -> None:
        self.target = target  # who delivers this consumer's messages (e.g. an AMQP channel)
        self.queue = queue
        self.tag = tag
        self.tag_bytes = shortstr(tag)
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.arguments = arguments or {}
        self.prefetch = prefetch  # 0 = unlimited (basic.qos global=false at consume time)
        self.unacked = 0
        priority = self.arguments.get("x-priority", 0)
        self.priority = priority if isinstance(priority, int) else 0

    def can_take(self) -> bool:
        """Whether a message may be delivered now: own window open, and the target takes one."""
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.target.can_deliver()


class _PriorityGroup:
    """The consumers of one x-priority in line, as RabbitMQ keeps them: the first one with
    room gets the message and goes to the back; a new consumer joins at the back."""

    __slots__ = ("priority", "consumers")

    def __init__(self, priority: int, consumers: list[Consumer]) -> None:
        self.priority = priority
        self.consumers = consumers

    def next_ready(self) -> Consumer | None:
        consumers = self.consumers
        last = len(consumers) - 1
        if not last:  # one consumer (hot path: asked once per message published)
            consumer = consumers[0]
            return consumer if consumer.can_take() else None
        for index, consumer in enumerate(consumers):
            if consumer.can_take():
                if index != last:
                    del consumers[index]
                    consumers.append(consumer)
                return consumer
        return None


class ConsumerLine:
    """Who gets the next message of a queue: the highest-priority consumer with room, taking
    turns within a priority. With single-active-consumer only the active one does: the first
    registered, and when it goes, the waiting one of highest x-priority (earliest among
    equals), as RabbitMQ 3.10 picks it."""

    def __init__(self, single_active: bool = False) -> None:
        self.single_active = single_active
        self.consumers: list[Consumer] = []  # in registration order
        self._groups: list[_PriorityGroup] = []  # highest priority first
        self._active: Consumer | None = None
        # The consumer when there is exactly one (the hot path's case): it is the one in line
        # whatever the rules, single-active-consumer or not.
        self.only: Consumer | None = None

    def __len__(self) -> int:
        return len(self.consumers)

    def __bool__(self) -> bool:
        return bool(self.consumers)

    def __iter__(self):
        return iter(self.consumers)

    @property
    def active(self) -> Consumer | None:
        """The single active consumer (single-active-consumer queues)."""
        if not self.single_active:
            return None
        if self._active is None and self.consumers:  # e.g. the queue just became SAC
            self._active = self._successor()
        return self._active

    def _successor(self) -> Consumer | None:
        if not self.consumers:
            return None
        return min(enumerate(self.consumers), key=lambda pair: (-pair[1].priority, pair[0]))[1]

    def add(self, consumer: Consumer) -> None:
        if self.single_active and self._active is None:
            # (the queue became single-active-consumer since the consumers there joined)
            self._active = self._successor() or consumer
        self.consumers.append(consumer)
        self.only = consumer if len(self.consumers) == 1 else None
        for group in self._groups:
            if group.priority == consumer.priority:
                group.consumers.append(consumer)
                return
        self._groups.append(_PriorityGroup(consumer.priority, [consumer]))
        self._groups.sort(key=lambda group: -group.priority)

    def remove(self, consumer: Consumer) -> None:
        self.consumers.remove(consumer)
        self.only = self.consumers[0] if len(self.consumers) == 1 else None
        if consumer is self._active:
            self._active = self._successor()
        for group in self._groups:
            if consumer in group.consumers:
                group.consumers.remove(consumer)
                if not group.consumers:
                    self._groups.remove(group)
                return

    def next_ready(self) -> Consumer | None:
        only = self.only
        if only is not None:  # (Consumer.can_take, inline: asked once per message)
            if only.prefetch and only.unacked >= only.prefetch:
                return None
            return only if only.target.can_deliver() else None
        if self.single_active:
            active = self.active
            return active if active is not None and active.can_take() else None
        for group in self._groups:
            consumer = group.next_ready()
            if consumer is not None:
                return consumer
        return None
