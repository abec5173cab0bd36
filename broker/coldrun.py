"""Messages a queue holds without Python objects: a run of rows in one lane, in queue order.
Rows of the message store's catalog: recovered messages, and persistent messages arriving in a
durable queue already longer than its resident head (the run at the tail of the lane is "open"
and takes them one by one). Or rows of the page store (`paged`): other messages that waited
behind the head, taken a batch at a time. When a run reaches the head of its lane, the queue
materialises ("thaws") its next rows into `QueuedMessage`s, a batch at a time; everything
behind stays a few bytes per message (see storage/catalog.py, storage/paging.py). `lane_runs`
says how a queue's settings split recovered rows into its priority lanes, and when each row
expires."""

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
TRIM_AT = 16 * THAW_BATCH  # an open run drops the rows it has thawed past this many


class ColdRun:
    """Rows `rows[start:]`, the next ones to thaw first. Row i gets sequence number
    `first_seq + i` (reserved when the run was restored; for an open run, never above the
    number its message had, so requeue order holds) and, if the queue has deadlines, expires
    at `deadlines[i]`. A row comes back redelivered if the log
    says its queue delivered it, or if `all_redelivered`."""

    __slots__ = ("rows", "first_seq", "deadlines", "all_redelivered", "start", "open", "paged",
                 "_thaw")

    def __init__(self, rows: Rows, first_seq: int, deadlines: array | None,
                 all_redelivered: bool,
                 thaw: Callable[[ColdRun, int, int], list[QueuedMessage]]) -> None:
        self.rows = rows
        self.first_seq = first_seq
        self.deadlines = deadlines
        self.all_redelivered = all_redelivered  # recovered after a crash
        self.start = 0
        self.open = False  # rows may be appended (a run of live arrivals, `rows` an array)
        self.paged = False  # rows of the page store (storage/paging.py), not of the catalog
        self._thaw = thaw

    @classmethod
    def arrivals(cls, first_seq: int, thaw: Callable[[ColdRun, int, int], list[QueuedMessage]],
                 paged: bool) -> ColdRun:
        """An empty open run at the tail of a lane, for messages arriving from now on."""
        run = cls(array("I"), first_seq, None, False, thaw)
        run.open = True
        run.paged = paged
        return run

    def append(self, row: int, deadline: float | None) -> None:
        """Add a row at the tail of an open run."""
        deadlines = self.deadlines
        if deadline is not None and deadlines is None:
            deadlines = self.deadlines = array("d", [NEVER]) * len(self.rows)
        self.rows.append(row)
        if deadlines is not None:
            deadlines.append(NEVER if deadline is None else deadline)

    def __len__(self) -> int:
        return len(self.rows) - self.start

    def extend(self, rows: array, deadlines: list[float | None]) -> None:
        """append() for many rows at once."""
        if self.deadlines is None and any(deadline is not None for deadline in deadlines):
            self.deadlines = array("d", [NEVER]) * len(self.rows)
        self.rows.extend(rows)
        if self.deadlines is not None:
            self.deadlines.extend([NEVER if deadline is None else deadline
                                   for deadline in deadlines])

    def take(self, count: int = THAW_BATCH) -> list[QueuedMessage]:
        """Materialise the next `count` rows (fewer at the end of the run)."""
        start = self.start
        stop = min(len(self.rows), start + count)
        self.start = stop
        entries = self._thaw(self, start, stop)
        if self.open and stop >= TRIM_AT and stop * 2 >= len(self.rows):
            # A run fed at its tail while drained from its head: forget the rows thawed.
            del self.rows[:stop]
            if self.deadlines is not None:
                del self.deadlines[:stop]
            self.first_seq += stop
            self.start = 0
        return entries

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
