"""Recovered messages a queue holds without Python objects: a run of message-store catalog rows
in one lane, in queue order. When a run reaches the head of its lane, the queue materialises
("thaws") its next rows into `QueuedMessage`s, a batch at a time; everything behind stays a few
bytes per message (see storage/catalog.py). `lane_runs` says how a queue's settings split
recovered rows into its priority lanes, and when each row expires."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from protocol import properties

if TYPE_CHECKING:
    from broker.message import QueuedMessage
    from broker.queue_args import QueueSettings
    from storage.catalog import Catalog, Rows

# How many rows become objects at once (the queue pages their bodies in 1024 at a time).
THAW_BATCH = 1024
NEVER = float("inf")  # the deadline of a row that does not expire


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


def lane_runs(rows: Rows, catalog: Catalog, expirations: list[int | None],
              settings: QueueSettings) -> Iterator[tuple[int, Rows, array | None]]:
    """How a queue with `settings` holds recovered `rows` (in queue order): per priority
    lane, highest first, (priority, its rows, their deadlines or None if none expires).
    `expirations`: the expiration property of each of the catalog's metas."""
    metas = catalog.metas
    top = settings.max_priority
    if top:
        priorities = [min(properties.get(props, "priority") or 0, top)
                      for _, _, props in catalog.meta_table]
        lanes: dict[int, array] = {}
        for row in rows:
            lanes.setdefault(priorities[metas[row]], array("I")).append(row)
        split = sorted(lanes.items(), reverse=True)
    else:
        split = [(0, rows)]
    ttls = [settings.ttl_for(expiration) for expiration in expirations]
    for priority, lane_rows in split:
        deadlines = None
        if any(ttl is not None for ttl in ttls):  # deadlines count from publication
            published = catalog.published
            deadlines = array("d", (
                NEVER if ttls[metas[row]] is None
                else (published[row] + ttls[metas[row]]) / 1000
                for row in lane_rows
            ))
        yield priority, lane_rows, deadlines
