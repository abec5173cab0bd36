"""The ready messages of a queue, in delivery order: one lane, or one per priority level for
an x-max-priority queue. Within a lane, requeued messages (a heap by original position) come
before the never-delivered ones (a deque), so a requeued message is back where it was."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator

from broker.message import QueuedMessage


class _Lane:
    __slots__ = ("ready", "requeued")

    def __init__(self) -> None:
        self.ready: deque[QueuedMessage] = deque()
        self.requeued: list[QueuedMessage] = []

    def head(self) -> QueuedMessage | None:
        if self.requeued:
            return self.requeued[0]
        return self.ready[0] if self.ready else None

    def pop(self) -> QueuedMessage:
        return heapq.heappop(self.requeued) if self.requeued else self.ready.popleft()

    def __len__(self) -> int:
        return len(self.ready) + len(self.requeued)

    def in_order(self) -> Iterator[QueuedMessage]:
        return itertools.chain(sorted(self.requeued), self.ready)


class MessageLanes:
    def __init__(self, max_priority: int | None = None) -> None:
        self.max_priority = max_priority or 0
        # Highest priority first; a plain queue has a single lane.
        self._lanes = [_Lane() for _ in range(self.max_priority + 1)]
        self._by_priority = list(reversed(self._lanes))
        self.bytes = 0

    def _lane(self, entry: QueuedMessage) -> _Lane:
        if not self.max_priority:
            return self._lanes[0]
        return self._by_priority[min(entry.priority, self.max_priority)]

    def append(self, entry: QueuedMessage) -> None:
        self._lane(entry).ready.append(entry)
        self.bytes += entry.message.body_size

    def requeue(self, entry: QueuedMessage) -> None:
        heapq.heappush(self._lane(entry).requeued, entry)
        self.bytes += entry.message.body_size

    def head(self) -> QueuedMessage | None:
        for lane in self._lanes:
            if lane.ready or lane.requeued:
                return lane.head()
        return None

    def pop(self) -> QueuedMessage | None:
        for lane in self._lanes:
            if lane.ready or lane.requeued:
                entry = lane.pop()
                self.bytes -= entry.message.body_size
                return entry
        return None

    def clear(self) -> list[QueuedMessage]:
        entries = list(self)
        for lane in self._lanes:
            lane.ready.clear()
            lane.requeued.clear()
        self.bytes = 0
        return entries

    def last_ready_count(self) -> int:
        """How many never-delivered messages the lane just appended to holds."""
        return len(self._lanes[0].ready) if not self.max_priority else len(self)

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes) if self.max_priority else len(
            self._lanes[0]
        )

    def __bool__(self) -> bool:
        return any(lane.ready or lane.requeued for lane in self._lanes)

    def __iter__(self) -> Iterator[QueuedMessage]:
        """Every ready message in delivery order."""
        return itertools.chain.from_iterable(lane.in_order() for lane in self._lanes)
