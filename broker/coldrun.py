"""Recovered messages a queue holds without Python objects: a run of message-store catalog rows
in one lane, in queue order. When a run reaches the head of its lane, the queue materialises
("thaws") its next rows into `QueuedMessage`s, a batch at a time; everything behind stays a few
bytes per message (see storage/catalog.py)."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.message import QueuedMessage
    from storage.catalog import Rows

# How many rows become objects at once (the queue pages their bodies in 1024 at a time).
THAW_BATCH = 1024


class ColdRun:
    """Catalog rows `rows[start:]`, the next ones to thaw first. Row i gets sequence number
    `first_seq + i` (reserved when the run was restored, so requeue order holds) and, if the
    queue has deadlines, expires at `deadlines[i]`. A row comes back redelivered if the log
    says its queue delivered it, or if `all_redelivered`."""

    __slots__ = ("rows", "first_seq", "deadlines", "all_redelivered", "start", "_thaw")

    def __init__(self, rows: Rows, first_seq: int, deadlines: array | None,
                 all_redelivered: bool,
                 thaw: Callable[[ColdRun, int, int], list[QueuedMessage]]) -> None:
        self.rows = rows
        self.first_seq = first_seq
        self.deadlines = deadlines
        self.all_redelivered = all_redelivered  # recovered after a crash
        self.start = 0
        self._thaw = thaw

    def __len__(self) -> int:
        return len(self.rows) - self.start

    def take(self, count: int = THAW_BATCH) -> list[QueuedMessage]:
        """Materialise the next `count` rows (fewer at the end of the run)."""
        start = self.start
        stop = min(len(self.rows), start + count)
        self.start = stop
        return self._thaw(self, start, stop)

    def remaining(self) -> Rows:
        """The rows not thawed yet."""
        return self.rows[self.start:]
