"""The fields of /api/queues that depend on the queue's type, as RabbitMQ 3.10.8 shows them on
one node (tests/queue_types/RABBITMQ_QUEUE_TYPES.md §3, §6): a quorum queue names its leader,
its members and the online ones (all this node), counts every message as persistent (it logs
them all), shows the dead letters at-least-once keeps and what it holds in memory; a stream its
members, readers and size on disk (`StreamQueue.api_fields`), without the classic queue's
fields RabbitMQ's stream object lacks. A type adds one entry to TYPE_FIELDS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.queue import Queue
from broker.quorum import QuorumQueue
from broker.stream import StreamQueue


def _quorum(queue: Queue, node: str) -> dict[str, Any]:
    assert isinstance(queue, QuorumQueue)
    kept, kept_bytes = len(queue.kept_dead_letters), queue.dead_letter_bytes
    ready, unacked = queue.message_count, queue.unacked_count
    total_bytes = queue.ready_bytes + queue.unacked_bytes + kept_bytes
    in_memory, bytes_in_memory = queue.in_memory()
    active = queue.consumers.active
    return {
        "leader": node, "members": [node], "online": [node],
        "messages": ready + unacked + kept,
        "messages_persistent": ready + unacked + kept,
        "message_bytes": total_bytes, "message_bytes_persistent": total_bytes,
        "message_bytes_unacknowledged": queue.unacked_bytes,
        # Warren's figures: RabbitMQ 3.10 keeps no bodies in memory (0); Warren keeps those of
        # the resident head and of the unacked deliveries
        "messages_ram": in_memory, "message_bytes_ram": bytes_in_memory,
        "open_files": {node: 0},  # its messages are in the node's shared log, no file of its own
        "messages_dlx": kept, "message_bytes_dlx": kept_bytes,
        "single_active_consumer_ctag": active.tag if active else None,
    }


def _stream(queue: Queue, node: str) -> dict[str, Any]:
    assert isinstance(queue, StreamQueue)
    return queue.api_fields(node)


TYPE_FIELDS: dict[str, Callable[[Queue, str], dict[str, Any]]] = {
    "quorum": _quorum, "stream": _stream,
}
# The classic queue's fields a type's object does not have (RabbitMQ 3.10.8).
OMITTED: dict[str, tuple[str, ...]] = {
    "quorum": ("exclusive_consumer_tag", "single_active_consumer_tag", "owner_pid_details",
               "recoverable_slaves"),
    "stream": ("exclusive_consumer_tag", "single_active_consumer_tag", "owner_pid_details",
               "consumer_utilisation", "consumer_capacity", "message_bytes",
               "message_bytes_ready", "message_bytes_unacknowledged", "recoverable_slaves"),
}


def with_type_fields(info: dict[str, Any], queue: Queue, node: str) -> dict[str, Any]:
    """A queue's API object `info` with the fields its type adds, overrides or lacks."""
    fields = TYPE_FIELDS.get(queue.type_name)
    if fields is None:
        return info
    for key in OMITTED.get(queue.type_name, ()):
        info.pop(key, None)
    info.update(fields(queue, node))
    return info
