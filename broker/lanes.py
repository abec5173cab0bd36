"""The ready messages of a queue, in delivery order: one lane, or one per priority level for
an x-max-priority queue. Within a lane, requeued messages (a heap by original position) come
before the never-delivered ones (a deque), so a requeued message is back where it was.

Messages recovered from the log, or arriving in a long queue, may sit in a lane's deque as a
`ColdRun` (many messages, no objects); the run is thawed a batch at a time when it reaches the
head, so `head()` and `pop()` always see `QueuedMessage`s.

`MessageLanes.count` is the number of messages, kept up to date by every change (a queue's
dispatch asks for it once per message: it is read, never summed)."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from broker.coldrun import ColdRun
from broker.message import QueuedMessage

if TYPE_CHECKING:
    from storage.paging import PageStore


class Cleared(NamedTuple):
    """What `MessageLanes.clear()` took out: messages as objects, and runs never thawed."""

    entries: list[QueuedMessage]
    cold: list[ColdRun]


class _Lane:
    __slots__ = ("owner", "ready", "requeued", "cold", "runs")

    def __init__(self, owner: MessageLanes) -> None:
        self.owner = owner  # whose count a thaw that loses messages corrects
        self.ready: deque[QueuedMessage | ColdRun] = deque()
        self.requeued: list[QueuedMessage] = []
        self.cold = 0  # messages in cold runs
        self.runs = 0  # cold runs in `ready`

    def head(self) -> QueuedMessage | None:
        if self.requeued:
            return self.requeued[0]
        # A batch can thaw into nothing (paged bodies that could not be read back): go on.
        while self.ready and self.ready[0].__class__ is ColdRun:
            self._thaw_head(self.ready[0])
        return self.ready[0] if self.ready else None

    def pop(self) -> QueuedMessage | None:
        if self.requeued:
            return heapq.heappop(self.requeued)
        return self.ready.popleft() if self.head() is not None else None

    def _thaw_head(self, run: ColdRun) -> None:
        before = len(run)
        entries = run.take()
        taken = before - len(run)
        self.cold -= taken
        self.owner.count -= taken - len(entries)  # bodies that could not be read back
        if not run:
            self.ready.popleft()
            self.runs -= 1
        self.ready.extendleft(reversed(entries))

    def in_order(self) -> Iterator[QueuedMessage]:
        """The messages that are objects, in order, up to the first cold run."""
        yield from sorted(self.requeued)
        for entry in self.ready:
            if entry.__class__ is ColdRun:
                return
            yield entry


def _open_run(lane: _Lane, first_seq: int,
              thaw: Callable[[ColdRun, int, int], list[QueuedMessage]], paged: bool) -> ColdRun:
    """The open run of that kind at the tail of a lane (a new one, starting at sequence
    number `first_seq`, if the tail is not one)."""
    ready = lane.ready
    run = ready[-1] if ready else None
    if run is None or run.__class__ is not ColdRun or not run.open or run.paged != paged:
        run = ColdRun.arrivals(first_seq, thaw, paged)
        ready.append(run)
        lane.runs += 1
    return run


class MessageLanes:
    def __init__(self, max_priority: int | None = None) -> None:
        self.max_priority = max_priority or 0
        # Highest priority first; a plain queue has a single lane.
        self._lanes = [_Lane(self) for _ in range(self.max_priority + 1)]
        self._by_priority = list(reversed(self._lanes))
        self.bytes = 0
        self.count = 0  # messages, objects and rows (len())
        self._head_lane = self._lanes[0]  # where head() last found the head

    def _lane(self, entry: QueuedMessage) -> _Lane:
        if not self.max_priority:
            return self._lanes[0]
        return self._by_priority[min(entry.priority, self.max_priority)]

    def append(self, entry: QueuedMessage) -> int:
        """Add a message at the tail of its lane; returns how many entries (objects and runs)
        that lane now has (a cheap hint of how long the queue is)."""
        ready = self._lane(entry).ready
        ready.append(entry)
        self.bytes += entry.message.body_size
        self.count += 1
        return len(ready)

    def append_cold(self, run: ColdRun, priority: int, body_bytes: int) -> None:
        """Add recovered messages that stay rows until they come near the head."""
        if not run:
            return
        lane = self._by_priority[min(priority, self.max_priority)]
        lane.ready.append(run)
        lane.cold += len(run)
        lane.runs += 1
        self.bytes += body_bytes
        self.count += len(run)

    def append_row(self, row: int, priority: int, deadline: float | None, body_size: int,
                   first_seq: int, thaw: Callable[[ColdRun, int, int], list[QueuedMessage]],
                   ) -> None:
        """Add an arriving message as a row of the message store's catalog, at the tail of
        its lane's open run (a new one, starting at sequence number `first_seq`, if the tail
        is not one)."""
        lane = self._by_priority[min(priority, self.max_priority)] if self.max_priority \
            else self._lanes[0]
        _open_run(lane, first_seq, thaw, False).append(row, deadline)
        lane.cold += 1
        self.bytes += body_size
        self.count += 1

    def page_out_tail(self, pages: PageStore, budget: int, durable: bool,
                      thaw: Callable[[ColdRun, int, int], list[QueuedMessage]],
                      published_before: float) -> bool:
        """Page out messages among the last `budget` of the queue: in each lane, each stretch
        of objects published before `published_before` that the page store may take (not
        logged ones of a durable queue, nor ones with CC keys, which a row would lose) becomes
        a paged run in its place. True if newer ones were left for later."""
        newer_left = False
        for lane in self._lanes:
            ready, taken, seen = lane.ready, [], 0
            newest = 0  # the objects at the tail too young to go: looked at, not moved
            for entry in reversed(ready):
                if newest >= budget or entry.__class__ is ColdRun or (
                    entry.message.timestamp < published_before
                ):
                    break
                newest += 1
            if newest:
                newer_left = True
            if newest >= budget or newest == len(ready):  # nothing older within reach here
                budget -= newest
                if budget <= 0:
                    break
                continue
            while ready and seen < budget:  # off the tail, then back in order
                entry = ready.pop()
                taken.append(entry)
                seen += len(entry) if entry.__class__ is ColdRun else 1
            budget -= seen
            stretch: list[QueuedMessage] = []
            for entry in reversed(taken):
                if entry.__class__ is not ColdRun:
                    message = entry.message
                    logged = durable and message.store_ref is not None
                    if not (message.cc or message.body is None or logged):
                        if message.timestamp < published_before:
                            stretch.append(entry)
                            continue
                        newer_left = True
                if stretch:
                    self._page_out(lane, stretch, pages, thaw)
                    stretch = []
                ready.append(entry)
            if stretch:
                self._page_out(lane, stretch, pages, thaw)
            if budget <= 0:
                break
        return newer_left

    @staticmethod
    def _page_out(lane: _Lane, entries: list[QueuedMessage], pages: PageStore,
                  thaw: Callable[[ColdRun, int, int], list[QueuedMessage]]) -> None:
        """Objects at the tail of a lane become rows of the page store, in its open paged run
        (they stay objects if the page store cannot take them)."""
        rows = pages.add([entry.message for entry in entries])
        if rows is None:
            lane.ready.extend(entries)
            return
        _open_run(lane, entries[0].seq, thaw, True).extend(
            rows, [entry.expires_at for entry in entries])
        lane.cold += len(entries)

    def requeue(self, entry: QueuedMessage) -> None:
        heapq.heappush(self._lane(entry).requeued, entry)
        self.bytes += entry.message.body_size
        self.count += 1

    def head(self) -> QueuedMessage | None:
        if not self.count:
            return None
        for lane in self._lanes:
            if lane.ready or lane.requeued:
                entry = lane.head()
                if entry is not None:
                    self._head_lane = lane
                    return entry
        return None

    def pop_head(self, entry: QueuedMessage) -> None:
        """Take out `entry`, which `head()` has just returned, nothing changed since (dispatch:
        the head looked at, then taken, without looking for it again)."""
        lane = self._head_lane
        if lane.requeued:  # (the lane's head is its first requeued message, if any)
            heapq.heappop(lane.requeued)
        else:
            lane.ready.popleft()
        self.bytes -= entry.message.body_size
        self.count -= 1

    def take_run(self, limit: int) -> list[QueuedMessage]:
        """Up to `limit` messages from the head, taken out together (dispatch's run of
        deliveries to one consumer), from the one lane of a queue without priorities while
        nothing is requeued and no cold run waits in it, and only messages with their body in
        memory and no deadline: it stops before the first other one. [] if the head itself is
        not one (the caller takes the head the ordinary way)."""
        lane = self._lanes[0]
        if self.max_priority or lane.requeued or lane.runs:
            return []
        ready = lane.ready
        taken: list[QueuedMessage] = []
        size = 0
        append, popleft = taken.append, ready.popleft
        for _ in range(min(limit, len(ready))):
            entry = popleft()
            message = entry.message
            if entry.expires_at is not None or message.body is None:
                ready.appendleft(entry)
                break
            append(entry)
            size += message.body_size
        self.bytes -= size
        self.count -= len(taken)
        return taken

    def give_back(self, entries: list[QueuedMessage]) -> None:
        """The messages of a `take_run` that were not handed out go back to the head, in
        their order."""
        self._lanes[0].ready.extendleft(reversed(entries))
        self.bytes += sum([entry.message.body_size for entry in entries])
        self.count += len(entries)

    def peek(self) -> QueuedMessage | None:
        """The head as `head` finds it, without thawing a cold run (None if one is first)."""
        for lane in self._lanes:
            if lane.requeued:
                return lane.requeued[0]
            if lane.ready:
                entry = lane.ready[0]
                return None if entry.__class__ is ColdRun else entry
        return None

    def pop(self) -> QueuedMessage | None:
        if not self.count:
            return None
        for lane in self._lanes:
            if lane.ready or lane.requeued:
                entry = lane.pop()
                if entry is not None:
                    self.bytes -= entry.message.body_size
                    self.count -= 1
                    return entry
        return None

    def clear(self) -> Cleared:
        entries, cold = [], []
        for lane in self._lanes:
            entries.extend(sorted(lane.requeued))
            for entry in lane.ready:
                (cold if entry.__class__ is ColdRun else entries).append(entry)
            lane.ready.clear()
            lane.requeued.clear()
            lane.cold = lane.runs = 0
        self.bytes = self.count = 0
        return Cleared(entries, cold)

    def __len__(self) -> int:
        return self.count

    @property
    def cold_count(self) -> int:
        """How many of the messages are still cold rows."""
        return sum(lane.cold for lane in self._lanes)

    def __bool__(self) -> bool:
        return self.count > 0

    def cold_runs(self) -> list[ColdRun]:
        """The runs not thawed yet, lane by lane (highest priority first)."""
        return [entry for lane in self._lanes for entry in lane.ready
                if entry.__class__ is ColdRun] if self.cold_count else []

    def objects(self) -> Iterator[QueuedMessage]:
        """Every ready message that is an object (cold runs skipped), in no useful order."""
        for lane in self._lanes:
            yield from lane.requeued
            for entry in lane.ready:
                if entry.__class__ is not ColdRun:
                    yield entry

    def __iter__(self) -> Iterator[QueuedMessage]:
        """The ready messages that are objects, in delivery order, up to the first cold run of
        each lane (what is about to be delivered)."""
        return itertools.chain.from_iterable(lane.in_order() for lane in self._lanes)
