"""The figures of a classic queue's API object (and of its /metrics queue families) that come
from its messages, not from counters: how many (and how many bytes) are in memory or paged out,
the timestamp of the oldest message (ready or unacknowledged, as RabbitMQ's
head_message_timestamp), and the backing_queue_status RabbitMQ's variable queue shows. Walked
when the API or a scrape asks (one walk of the node's unacknowledged deliveries per request; a
queue's messages again only once its counts moved), never on the message path. The persistent
ones are counted by the queue (`Queue.persistent_count`, `persistent_bytes`)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol import properties

if TYPE_CHECKING:
    from broker.message import Message, QueuedMessage
    from broker.node import Node
    from broker.queue import Queue


@dataclass
class Pending:
    """A queue's unacknowledged deliveries: the oldest."""

    oldest: list[QueuedMessage] = field(default_factory=list)  # at most one

    def add(self, entry: QueuedMessage) -> None:
        if not self.oldest or entry.seq < self.oldest[0].seq:
            self.oldest[:] = [entry]


NO_PENDING = Pending()  # a queue without unacknowledged deliveries (read only)


def pending_acks(node: Node) -> dict[Queue, Pending]:
    """Every classic queue's unacknowledged deliveries, from the channels that hold them (the
    other types count theirs themselves)."""
    found: dict[Queue, Pending] = {}
    for connection in node.connections:
        for channel in connection.channels.values():
            for queue, entry, _ in channel.deliveries.tags.unacked.values():
                if queue.type_name != "classic":
                    continue
                pending = found.get(queue)
                if pending is None:
                    pending = found[queue] = Pending()
                pending.add(entry)
    return found


def _timestamp(message: Message | None) -> int | None:
    if message is None:
        return None
    stamp = properties.get(message.props_raw, "timestamp")
    return int(stamp.timestamp()) if stamp is not None else None


def head_message_timestamp(queue: Queue, pending: Pending) -> int | None:
    """The earliest timestamp property of the ready head and the oldest unacked message (as
    RabbitMQ 3.10's variable queue reports it); null when neither has one."""
    stamps = [stamp for stamp in (
        _timestamp(queue.head_message()),
        _timestamp(pending.oldest[0].message if pending.oldest else None),
    ) if stamp is not None]
    return min(stamps) if stamps else None


# The walked figures of each queue, with the counts they were walked at: a queue none of whose
# counts moved since (an idle one, however long) is not walked again.
_WALKED: weakref.WeakKeyDictionary[Queue, tuple[tuple[int, ...], tuple[int, int]]] = (
    weakref.WeakKeyDictionary())


def ready_in_memory(queue: Queue) -> tuple[int, int]:
    """Ready messages whose bodies are in memory, and their bytes (the rest are paged out)."""
    if not queue.message_count:
        return 0, 0
    # (memory_estimate moves when a body is paged out or read back)
    counts = (queue.messages_published, queue.messages_delivered, queue.message_count,
              queue.unacked_count, queue.memory_estimate, queue.ready_bytes)
    known = _WALKED.get(queue)
    if known is not None and known[0] == counts:
        return known[1]
    figures = queue.ready_in_memory()
    _WALKED[queue] = (counts, figures)
    return figures


def classic_fields(queue: Queue, pending: Pending, rates: tuple[float, ...]) -> dict[str, Any]:
    """Persistence, memory and paging figures and backing_queue_status; `rates`: the queue's
    publish, deliver_get, deliveries needing an ack and ack rates."""
    ready, unacked = queue.message_count, queue.unacked_count
    ready_ram, ready_ram_bytes = ready_in_memory(queue)
    publish_rate, egress_rate, ack_ingress_rate, ack_rate = rates
    return {
        "head_message_timestamp": head_message_timestamp(queue, pending),
        "messages_persistent": queue.persistent_count,
        "message_bytes_persistent": queue.persistent_bytes,
        # an unacknowledged message's body stays in memory until it is settled
        "messages_ram": ready_ram + unacked, "messages_ready_ram": ready_ram,
        "messages_unacknowledged_ram": unacked,
        "message_bytes_ram": ready_ram_bytes + queue.unacked_bytes,
        "messages_paged_out": ready - ready_ram,
        "message_bytes_paged_out": queue.ready_bytes - ready_ram_bytes,
        "backing_queue_status": {
            "mode": queue.arguments.get("x-queue-mode", "default"), "version": 1,
            "len": ready, "next_seq_id": queue.next_seq_id, "target_ram_count": "infinity",
            "avg_ingress_rate": publish_rate, "avg_egress_rate": egress_rate,
            "avg_ack_ingress_rate": ack_ingress_rate, "avg_ack_egress_rate": ack_rate,
        },
    }
