"""A consumer: one subscription of a channel to a queue, with its prefetch window."""

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
