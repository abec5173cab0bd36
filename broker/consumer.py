"""Consumers: one subscription of a channel to a queue with its prefetch window, and the line
of a queue's consumers (priority groups taking turns, or a single active consumer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from protocol.codec import shortstr

if TYPE_CHECKING:
    from broker.channel import Channel
    from broker.queue import Queue


class Consumer:
    __slots__ = (
        "channel", "queue", "tag", "tag_bytes", "no_ack", "exclusive", "arguments",
        "prefetch", "unacked", "priority",
    )

    def __init__(
        self, channel: Channel, queue: Queue, tag: str, *, no_ack: bool, exclusive: bool,
        prefetch: int, arguments: dict[str, Any] | None = None,
    ) -> None:
        self.channel = channel
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
        """Whether a message may be delivered now: window open, channel flowing, socket writable."""
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return self.channel.can_deliver()


class _PriorityGroup:
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
        self.consumers.append(consumer)
        if self.single_active and self._active is None:
            self._active = consumer
        for group in self._groups:
            if group.priority == consumer.priority:
                group.consumers.append(consumer)
                return
        self._groups.append(_PriorityGroup(consumer.priority, [consumer]))
        self._groups.sort(key=lambda group: -group.priority)

    def remove(self, consumer: Consumer) -> None:
        self.consumers.remove(consumer)
        if consumer is self._active:
            self._active = self._successor()
        for group in self._groups:
            if consumer in group.consumers:
                group.consumers.remove(consumer)
                if not group.consumers:
                    self._groups.remove(group)
                return

    def next_ready(self) -> Consumer | None:
        if self.single_active:
            active = self.active
            return active if active is not None and active.can_take() else None
        for group in self._groups:
            consumer = group.next_ready()
            if consumer is not None:
                return consumer
        return None
