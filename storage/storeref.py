"""The message store's reference on a logged message: the one field (`store_ref`) a message
keeps for the stores, set when it is logged (None: never logged, or unlogged again), read and
changed by storage only. The broker tests it against None ("is this message logged?") and
asks the store anything else."""

from __future__ import annotations

from storage.records import QueueKey


class StoreRef:
    """Where a logged message is: its id, the segment whose live bytes count it, where its
    body can be read (the same segment, except while a compaction copy is not durable yet),
    the bytes charged to its segment, the queues holding it (keys; a tuple the store shares
    between messages held by the same queues), whether the log has a delivery of it, and the
    state a queue logged of it, if any (`marks`: key -> (returns, dead-letter reason code,
    place, out); see storage/records.py's STATE and storage/catalog.py's marks)."""

    __slots__ = ("id", "segment", "body_segment", "body_offset", "size", "queues", "delivered",
                 "marks")

    def __init__(self, message_id: int, segment: int, body_offset: int, size: int,
                 queues: tuple[QueueKey, ...], delivered: bool = False) -> None:
        self.id = message_id
        self.segment = segment
        self.body_segment = segment
        self.body_offset = body_offset
        self.size = size
        self.queues = queues
        self.delivered = delivered
        self.marks: dict[QueueKey, tuple[int, int, int, int]] | None = None


def logged_state(key: QueueKey, ref: StoreRef | None) -> tuple[int, int, int, int] | None:
    """(returns, dead-letter reason code, place, out) that queue `key` logged of the message
    with this reference (`MessageStore.note_state`), or that recovery found in the log; None
    if it logged none (then the message was out if the log has the queue's delivery of it)."""
    marks = ref.marks if ref is not None else None
    return marks.get(key) if marks else None
