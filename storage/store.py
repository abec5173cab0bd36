"""The message store: which persistent messages each durable queue holds, kept in the
write-ahead log; recovery of that state on start; compaction of dead segments; paging of
message bodies out of memory (a logged body can always be read back from its segment).

A persistent message routed to durable queues is logged once (PUBLISH, listing the queues);
acks, rejects and drops are logged as REMOVE, deliveries as DELIVERED (so a message handed out
before a crash comes back redelivered), purges and deletes as PURGE, and what a queue keeps of
its own about a message (its returns, its place once returned to the back, whether it is a kept
dead letter: `note_state`) as STATE. REMOVE, DELIVERED and STATE entries are gathered during an
event-loop turn and written as one record per queue.

The store speaks queue keys (vhost, name), message ids and places in the log. A logged message
carries one `StoreRef` (storage/storeref.py): its id, where it is, the keys of the queues
holding it; the broker's queues tell the store by key what left them or was delivered.
Storage calls back into queues only to put recovered messages back (storage/holders.py).

Recovered messages held by one queue stay rows of the catalog (storage/catalog.py) until the
queue thaws them into message objects near its head (made by the broker's `make_message`);
the store keeps their place in the log (and moves them when it compacts) all the same. A logged
message arriving in a durable queue longer than `resident_head`, held by that queue alone,
becomes such a row at once ("frozen"): its object is kept only until its record is durable.
The catalog then lives as long as it has rows; the rows and metas that rows leave are reused
by the next ones.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from array import array
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import properties
from protocol.codec import shortstr
from storage import iostats, records
from storage.catalog import NO_HOLDER, RECORD_OVERHEAD, Catalog, Mark, QueueRows, Rows
from storage.iostats import IO_STATS
from storage.metas import MetaTable
from storage.records import QueueKey, published_ms
from storage.scan import segment_numbers
from storage.storeref import StoreRef
from storage.wal import SEGMENT_SIZE, CopiedRecord, WriteAheadLog, read_at, segment_path

if TYPE_CHECKING:
    from storage.holders import MakeLoggedMessage, MessageHolder, StoredMessage
    from storage.paging import PageStore

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The data directory cannot be used; the message says why."""


@dataclass
class _Segment:
    number: int
    size: int = 0
    live_bytes: int = 0
    messages: dict[int, StoredMessage] = field(default_factory=dict)  # live messages logged here
    # Catalog rows logged here (ranges, arrays), and how many of them are still cold.
    cold_rows: list[Rows] = field(default_factory=list)
    cold_live: int = 0


class _Move:
    """A message copied forward by compaction: where its body will be once the copy is
    durable. `target` is the message's reference, or its catalog row while it is cold (then
    `message_id` says whether the row still holds that message: rows are reused)."""

    __slots__ = ("target", "segment", "location", "message_id")

    def __init__(self, target: StoreRef | int, segment: int, location: tuple[int, int],
                 message_id: int = 0) -> None:
        self.target = target
        self.segment = segment
        self.location = location
        self.message_id = message_id


def _set_all(column: array, rows: Rows, value: int) -> None:
    """column[row] = value for every row."""
    if isinstance(rows, range) and rows.step == 1:
        column[rows.start:rows.stop] = array(column.typecode, [value]) * len(rows)
    else:
        for row in rows:
            column[row] = value


def _restore_order(rows: Rows, held: QueueRows, ids: array
                   ) -> Iterator[tuple[Rows | None, int]]:
    """How recovery puts a queue's rows back, in queue order: (a run of rows that stay cold,
    -1) or (None, position in `rows` of one restored as an object: one other queues hold too,
    or one this queue marked). A marked row returned to the back goes to its place (before
    the first row logged after that), the others stay where their id puts them."""
    marks = held.marks_at
    hot = held.shared_at.keys() | marks.keys()
    inserts = []  # (position it goes before, moved first, place, its position)
    for position in hot:
        place = marks[position][2] if position in marks else 0
        if place:
            inserts.append((bisect.bisect_left(rows, place, key=ids.__getitem__), 0, place,
                            position))
        else:
            inserts.append((position, 1, 0, position))
    inserts.sort()
    skips = sorted(hot)
    start = 0
    for before, _, _, position in inserts:
        yield from _cold_between(rows, start, before, skips)
        yield None, position
        start = max(start, before)
    yield from _cold_between(rows, start, len(rows), skips)


def _cold_between(rows: Rows, start: int, end: int, skips: list[int]
                  ) -> Iterator[tuple[Rows, int]]:
    """The runs of rows[start:end] without the positions in `skips` (sorted)."""
    index = bisect.bisect_left(skips, start)
    while start < end:
        stop = skips[index] if index < len(skips) and skips[index] < end else end
        if stop > start:
            yield rows[start:stop], -1
        start = stop + 1 if stop < end else end
        index += 1


def check_segments(directory: Path) -> None:
    """Refuse (before touching anything) segments this version cannot read."""
    for number in segment_numbers(directory):
        path = segment_path(directory, number)
        with open(path, "rb") as file:
            head = iostats.read(file, records.SEGMENT_HEADER_SIZE)
        if len(head) < records.SEGMENT_HEADER_SIZE:
            continue  # a segment torn at creation: recovery drops it
        try:
            version, _ = records.parse_segment_header(head)
        except records.CorruptRecord as exc:
            raise StorageError(f"{path}: {exc}") from exc
        if version != records.FORMAT_VERSION:
            raise StorageError(
                f"{path} has log format version {version}; this Warren reads version "
                f"{records.FORMAT_VERSION}"
            )


class MessageStore:
    def __init__(self, directory: Path, definitions_path: Path, make_message: MakeLoggedMessage,
                 segment_size: int = SEGMENT_SIZE, resident_head: int = 2048,
                 page_out_after: float = 2.0) -> None:
        self.directory = directory
        self.make_message = make_message  # the broker's: a message back from a catalog row
        self.definitions_path = definitions_path
        self.segment_size = segment_size
        self.resident_head = resident_head  # queue length past which arrivals become rows
        self.pages: PageStore | None = None  # where other messages behind the head go
        self.page_out_after = page_out_after  # seconds they wait there first
        self.memory_is_short: Callable[[], bool] = lambda: True  # ...and only while it says so
        self.wal: WriteAheadLog | None = None
        self._segments: OrderedDict[int, _Segment] = OrderedDict()
        self._next_id = 1
        self._removed: defaultdict[QueueKey, list[int]] = defaultdict(list)
        self._delivered: defaultdict[QueueKey, list[int]] = defaultdict(list)
        # STATE entries to log, per queue: (message id, returns, dead-letter reason code, place)
        self._states: defaultdict[QueueKey, list[tuple[int, int, int, int]]] = defaultdict(list)
        # The tuples of queue keys messages are held by, one per distinct set (shared).
        self._holdings: dict[tuple[QueueKey, ...], tuple[QueueKey, ...]] = {}
        # Deleted queues: key -> the id of the next message logged after the delete. Messages
        # below it that still list the key (handed out then, not settled yet) are not the
        # holdings of a queue declared again under the same name.
        self._deleted_before: dict[QueueKey, int] = {}
        self._to_page_out: deque[tuple[int, StoredMessage]] = deque()
        # (ticket of the copies, segment to delete once they are durable, moves)
        self._retiring: deque[tuple[int, int, list[_Move]]] = deque()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-reader")
        self.recovered_messages = 0
        # Messages held as cold catalog rows (recovered, or frozen on arrival), whose
        # `holders` index `_cold_queues` (None: a queue deleted since).
        self._catalog: Catalog | None = None
        self._cold_queues: list[QueueKey | None] = []
        self._cold_count = 0
        # Set up by the first freeze: where each queue is, the metas counted by row, the rows
        # free for reuse.
        self._holder_of: dict[QueueKey, int] | None = None
        self._metas: MetaTable | None = None
        self._free_rows = array("I")
        # Frozen rows whose PUBLISH is not durable yet: row -> the message (body in memory),
        # and (ticket, row, message) in log order, to forget them once durable.
        self._unsynced: dict[int, StoredMessage] = {}
        self._unsynced_order: deque[tuple[int, int, StoredMessage]] = deque()
        self._moving: dict[int, _Move] = {}  # cold rows copied forward, not yet durable there
        self._route_bytes: dict[tuple[str, str], bytes] = {}  # by (exchange, routing key)
        self._expirations: list[int | None] = []  # by meta index

    # -- start-up -------------------------------------------------------------------------

    def recover(self, catalog: Catalog, queues: dict[QueueKey, MessageHolder],
                clean: bool) -> None:
        """Put the recovered messages back into their durable queues, in their original order.
        Runs on the event loop before it serves anyone; then opens a fresh segment.

        After a clean shutdown the DELIVERED records say exactly which messages were handed
        out. After a crash the last of them may not have reached the disk, so every recovered
        message is marked redelivered: "may have been delivered before" is then the truth.

        A message held by one queue stays a catalog row (the queue thaws it later); one held
        by several queues, or by a holder that keeps no cold rows, becomes a message now."""
        for number, size in catalog.segment_sizes.items():
            self._segments[number] = _Segment(number, size)
        self._expirations = [stored_expiration(props) for _, _, props in catalog.meta_table]
        holders = array("i", [NO_HOLDER]) * len(catalog)
        hot: dict[int, StoredMessage] = {}
        cold: list[Rows] = []
        memberships = {key: held for key, held in catalog.by_queue().items() if key in queues}
        for key, held in memberships.items():
            queue, rows = queues[key], held.rows
            if not queue.keeps_cold_rows:  # e.g. a delayed exchange's messages
                for position, row in enumerate(rows):
                    delivered = held.shared_at.get(position, catalog.delivered[row])
                    self._restore_hot(catalog, row, key, queue, bool(delivered), clean, hot,
                                      held.marks_at.get(position))
                continue
            cold_index = len(self._cold_queues)
            self._cold_queues.append(key)
            for run, position in _restore_order(rows, held, catalog.ids):
                if run is not None:
                    _set_all(holders, run, cold_index)
                    cold.append(run)
                    queue.restore_cold(run, catalog, self._expirations, not clean)
                else:
                    row = rows[position]
                    delivered = held.shared_at.get(position, catalog.delivered[row])
                    self._restore_hot(catalog, row, key, queue, bool(delivered), clean, hot,
                                      held.marks_at.get(position))
        catalog.holders = holders
        catalog.shared.clear()
        catalog.groups = None
        self._account_cold(catalog, cold)
        self.recovered_messages = self._cold_count + len(hot)
        if self._cold_count:
            self._catalog = catalog
        self._next_id = max(catalog.next_id, max(catalog.ids, default=0) + 1,
                            max((mark[2] for mark in catalog.marks.values()), default=0) + 1)
        last = max(self._segments, default=0)
        self.wal = WriteAheadLog(self.directory, last + 1, self.segment_size,
                                 self.definitions_path)
        self.wal.before_flush = self._emit_pending
        self.wal.after_flush = self._after_flush
        self._segments[last + 1] = _Segment(last + 1, records.SEGMENT_HEADER_SIZE)
        self._compact()

    def _account_cold(self, catalog: Catalog, cold: list[Rows]) -> None:
        """Charge every cold row to its segment (for compaction). Rows in id order mostly
        come in long stretches of one segment."""
        column = catalog.segments
        for rows in cold:
            if isinstance(rows, range):
                end = rows.start
                for segment, stretch in itertools.groupby(rows, column.__getitem__):
                    start, end = end, deque(stretch, maxlen=1)[0] + 1
                    self._charge(catalog, self._segments[segment], range(start, end))
            else:
                for segment, stretch in itertools.groupby(rows, column.__getitem__):
                    self._charge(catalog, self._segments[segment], array("I", stretch))

    def _charge(self, catalog: Catalog, info: _Segment, rows: Rows) -> None:
        info.cold_rows.append(rows)
        info.cold_live += len(rows)
        info.live_bytes += catalog.charged_bytes(rows)
        self._cold_count += len(rows)

    def _restore_hot(self, catalog: Catalog, row: int, key: QueueKey, queue: MessageHolder,
                     delivered: bool, clean: bool, hot: dict[int, StoredMessage],
                     mark: Mark | None = None) -> None:
        """Put back a recovered message as an object (shared by the queues that hold it).
        `delivered`: the log has `queue`'s delivery of it; `mark`: the state `queue` logged
        of it (the queue reads it back with storage.storeref.logged_state)."""
        message = hot.get(row)
        if message is None:
            message = hot[row] = self._materialise(catalog, row)
            ref = message.store_ref
            info = self._segments[ref.segment]
            info.messages[ref.id] = message
            info.live_bytes += ref.size
        ref = message.store_ref
        ref.queues = self._holding((*ref.queues, key))
        ref.delivered = ref.delivered or delivered
        # Per queue from now on (see mark_delivered): its own state, or whether it has it out.
        if ref.marks is None:
            ref.marks = {}
        if mark is not None:
            ref.marks[key] = mark
        elif delivered:
            ref.marks[key] = (0, 0, 0, 1)
        queue.restore(message, delivered or not clean, delivered)

    def _materialise(self, catalog: Catalog, row: int) -> StoredMessage:
        """A message for a catalog row (its body stays on disk; held by no queue yet)."""
        meta = catalog.metas[row]
        exchange, routing_key, props = catalog.meta_table[meta]
        ref = StoreRef(catalog.ids[row], catalog.segments[row], catalog.body_offsets[row],
                       catalog.charged_size(row), (), bool(catalog.delivered[row]))
        message = self.make_message(
            exchange, routing_key, self._route(exchange, routing_key), props,
            catalog.body_sizes[row], catalog.published[row] / 1000, self._expirations[meta], ref,
        )
        message.persistent = stored_persistent(props)
        return message

    def _route(self, exchange: str, routing_key: str) -> bytes:
        """Exchange and routing key as encoded shortstrs (one copy per route)."""
        route_bytes = self._route_bytes.get((exchange, routing_key))
        if route_bytes is None:
            route_bytes = shortstr(exchange) + shortstr(routing_key)
            self._route_bytes[(exchange, routing_key)] = route_bytes
        return route_bytes

    # -- cold rows ------------------------------------------------------------------------

    def freeze(self, key: QueueKey, message: StoredMessage) -> int | None:
        """Hold a logged message far from the head of queue `key` as a catalog row from now
        on, if that queue alone holds it; returns the row (None: other queues hold it too).
        The store keeps the object (and its body) only until its record is durable: a thaw
        or a compaction copy before that takes it from there."""
        ref = message.store_ref
        if ref.queues != (key,):
            return None
        catalog = self._catalog
        if catalog is None:
            catalog = self._catalog = Catalog()
            self._expirations = []
        if self._holder_of is None:
            self._start_freezing(catalog)
        holder = self._holder_of.get(key)
        if holder is None:
            holder = self._holder_of[key] = len(self._cold_queues)
            self._cold_queues.append(key)
        props = message.props_raw
        meta = self._metas.add(message.exchange, message.routing_key, props, message.expiration)
        segment, offset = ref.body_segment, ref.body_offset
        published, size = published_ms(message.timestamp), message.body_size
        delivered = 1 if ref.delivered else 0
        free = self._free_rows
        row = catalog.put_row(free.pop() if free else None, ref.id, segment, offset, size,
                              published, meta, holder, delivered)
        # From now on the segment counts it as a cold row, charged as rows are.
        info = self._segments[ref.segment]
        info.messages.pop(ref.id, None)
        charged = size + len(props) + RECORD_OVERHEAD
        info.live_bytes += charged - ref.size
        ref.size = charged
        cold_rows = info.cold_rows
        if not cold_rows or cold_rows[-1].__class__ is not array:
            cold_rows.append(array("I"))
        cold_rows[-1].append(row)
        info.cold_live += 1
        self._cold_count += 1
        self._unsynced[row] = message
        self._unsynced_order.append((self.wal.pending_ticket, row, message))
        return row

    def _start_freezing(self, catalog: Catalog) -> None:
        """Index the queues and metas of the catalog (recovered rows may be in it) so that
        rows can be added, and count the rows of each meta so that unused ones are reused."""
        self._holder_of = {key: index for index, key in enumerate(self._cold_queues)
                           if key is not None}
        self._metas = MetaTable(catalog.meta_table, self._expirations, itertools.compress(
            catalog.metas, map(NO_HOLDER.__ne__, catalog.holders)))
        self._free_rows = array("I", itertools.compress(range(len(catalog)), map(
            NO_HOLDER.__eq__, catalog.holders)))

    def _release_row(self, catalog: Catalog, row: int) -> None:
        """A row left the catalog (thawed or dropped): its place, and its meta's if it was
        the last row using it, can be reused."""
        catalog.holders[row] = NO_HOLDER
        if self._holder_of is None:
            return  # recovered rows only: nothing is added, the arrays go when all are gone
        self._free_rows.append(row)
        if self._unsynced:
            self._unsynced.pop(row, None)
        self._metas.release(catalog.metas[row])

    def _forget_unsynced(self) -> None:
        """Frozen rows whose records are durable now: their objects are not needed."""
        durable, pending, unsynced = self.wal.written_ticket, self._unsynced_order, \
            self._unsynced
        while pending and pending[0][0] <= durable:
            _, row, message = pending.popleft()
            if unsynced.get(row) is message:
                del unsynced[row]

    def thaw(self, rows: Rows) -> list[StoredMessage]:
        """The messages of cold rows that reached the head of their queue (the rows are
        not cold any more; the messages are tracked like any other from now on)."""
        catalog = self._catalog
        assert catalog is not None
        logged, route, queues, moving, holding = self.make_message, self._route, \
            self._cold_queues, self._moving, self._holding
        ids, segments, offsets, sizes, published, metas, holders, delivered = (
            catalog.ids, catalog.segments, catalog.body_offsets, catalog.body_sizes,
            catalog.published, catalog.metas, catalog.holders, catalog.delivered,
        )
        meta_table, expirations, unsynced = catalog.meta_table, self._expirations, \
            self._unsynced
        release = self._release_row if self._holder_of is not None else None
        thawed = []
        last_meta = last_holder = -1
        for row in rows:
            message = unsynced.get(row) if unsynced else None
            if message is None:
                meta = metas[row]
                if meta != last_meta:  # neighbours mostly share them
                    last_meta = meta
                    exchange, routing_key, props = meta_table[meta]
                    route_bytes, expiration = route(exchange, routing_key), expirations[meta]
                    overhead = len(props) + RECORD_OVERHEAD
                    persistent = stored_persistent(props)
                body_size = sizes[row]
                holder = holders[row]
                if holder != last_holder:  # (a run's rows are all one queue's)
                    last_holder, held_by = holder, holding((queues[holder],))
                ref = StoreRef(ids[row], segments[row], offsets[row], body_size + overhead,
                               held_by, delivered[row] == 1)
                message = logged(exchange, routing_key, route_bytes, props, body_size,
                                 published[row] / 1000, expiration, ref)
                message.persistent = persistent
            else:
                ref = message.store_ref
            if moving:
                move = moving.pop(row, None)
                if move is not None:  # copied forward: counts there; read the old copy till then
                    move.target = ref
                    ref.segment = move.segment
            info = self._segments[ref.segment]
            info.messages[ref.id] = message
            if release is not None:
                release(catalog, row)
            else:
                holders[row] = NO_HOLDER
            info.cold_live -= 1
            if not info.cold_live:
                info.cold_rows = []
            thawed.append(message)
        self._cold_count -= len(thawed)
        self._free_if_all_thawed()
        return thawed

    def remove_rows(self, key: QueueKey, runs: list[Rows]) -> int:
        """Cold rows left queue `key` without being thawed (purge): logged as removed.
        Returns their body bytes."""
        catalog = self._catalog
        ids = self._removed[key]
        body_bytes = 0
        for rows in runs:
            body_bytes += catalog.body_bytes(rows)
            for row in rows:
                ids.append(catalog.ids[row])
        self._drop_cold(runs)
        self.wal.schedule()
        return body_bytes

    def _drop_cold(self, runs: list[Rows]) -> None:
        catalog = self._catalog
        for rows in runs:
            for row in rows:
                move = self._moving.pop(row, None)
                info = self._segments[move.segment if move else catalog.segments[row]]
                info.live_bytes -= catalog.charged_size(row)
                self._uncold(catalog, row, info)

    def _uncold(self, catalog: Catalog, row: int, info: _Segment) -> None:
        self._release_row(catalog, row)
        info.cold_live -= 1
        if not info.cold_live:
            info.cold_rows = []
        self._cold_count -= 1
        self._free_if_all_thawed()

    def _free_if_all_thawed(self) -> None:
        if not self._cold_count:  # every row is an object or gone: free the arrays
            self._catalog = None
            self._cold_queues.clear()
            self._holder_of = self._metas = None
            self._free_rows = array("I")
            self._expirations = []

    # -- for the index snapshot (storage/live.py) ----------------------------------------

    @property
    def next_id(self) -> int:
        return self._next_id

    @property
    def cold(self) -> tuple[Catalog | None, list[QueueKey | None], int]:
        """The catalog of the messages still rows, the queue keys its `holders` index (None:
        deleted since), and how many rows are still cold."""
        return self._catalog, self._cold_queues, self._cold_count

    def logged_messages(self) -> Iterator[StoredMessage]:
        """Every live logged message that is an object."""
        for info in self._segments.values():
            yield from info.messages.values()

    def holding(self, message: StoredMessage) -> tuple[QueueKey, ...]:
        """The keys of the queues that hold a logged message (a queue deleted since it was
        logged does not, even if one of that name was declared again)."""
        ref = message.store_ref
        deleted = self._deleted_before
        if not deleted:
            return ref.queues
        return tuple(key for key in ref.queues if deleted.get(key, 0) <= ref.id)

    @staticmethod
    def delivery_logged(message: StoredMessage) -> bool:
        """Whether the log has a delivery of this message (False if it is not logged)."""
        ref = message.store_ref
        return ref is not None and ref.delivered

    def _holding(self, keys: tuple[QueueKey, ...]) -> tuple[QueueKey, ...]:
        """The shared tuple equal to `keys` (messages held by the same queues share one)."""
        held = self._holdings.get(keys)
        if held is None:
            if len(self._holdings) >= 10_000:  # many sets of queues: start again
                self._holdings.clear()
            held = self._holdings[keys] = keys
        return held

    # -- logging --------------------------------------------------------------------------

    def persist(self, message: StoredMessage, keys: list[QueueKey]) -> int:
        """Log a persistent message (body in memory, not logged yet) routed to the durable
        queues `keys`; return its durability ticket."""
        message_id = self._next_id
        self._next_id += 1
        record, body_at = records.encode_publish(
            message_id, published_ms(message.timestamp), keys, message.exchange,
            message.routing_key, message.props_raw, message.body,
        )
        ticket, segment, offset = self.wal.append(record, body=True)
        message.store_ref = StoreRef(message_id, segment, offset + body_at, len(record),
                                     self._holding(tuple(keys)))
        info = self._segment(segment)
        info.size = offset + len(record)
        info.messages[message_id] = message
        info.live_bytes += len(record)
        return ticket

    def _segment(self, number: int) -> _Segment:
        info = self._segments.get(number)
        if info is None:
            info = self._segments[number] = _Segment(number, records.SEGMENT_HEADER_SIZE)
        return info

    def remove(self, key: QueueKey, message: StoredMessage) -> bool:
        """A logged message left queue `key` for good (ack, reject, drop, expiry): logged as
        removed (gathered per loop turn). False if `key` did not hold it (any more)."""
        if self._leave(key, message):
            self._removed[key].append(message.store_ref.id)
            self.wal.schedule()
            return True
        return False

    def release(self, key: QueueKey, message: StoredMessage) -> None:
        """A logged message leaves `key` to be routed afresh (a delayed exchange releasing
        it): removed there, its body read back if it is on disk only, and no longer logged
        (a persistent one is logged again for the durable queues it reaches)."""
        if message.body is None:
            message.body = self.read_body_now(message)
        self.remove(key, message)
        message.store_ref = None

    def mark_delivered(self, key: QueueKey, message: StoredMessage) -> None:
        """Queue `key` handed a logged message out: logged (gathered per loop turn), so that
        it comes back redelivered after a crash."""
        ref = message.store_ref
        ref.delivered = True
        marks = ref.marks
        if marks is not None or len(ref.queues) > 1:
            # `delivered` is the message's: once it has marks, or several queues hold it,
            # they say which queue has it out (since its last STATE)
            if marks is None:
                marks = ref.marks = {}
            marks[key] = (*marks[key][:3], 1) if key in marks else (0, 0, 0, 1)
        self._delivered[key].append(ref.id)
        self.wal.schedule()

    def note_state(self, key: QueueKey, message: StoredMessage, returns: int,
                   dead_letter_reason: int = 0, to_back: bool = False) -> None:
        """Queue `key`'s own state of a logged message it holds changed: how many times it
        came back to the queue (x-delivery-count), the code of the reason the queue keeps it
        as a dead letter (0: it does not), and whether it went `to_back` of the queue just now
        (else it keeps its place). Logged (gathered per loop turn) so that recovery gives it
        back (storage.storeref.logged_state) and puts it in its place."""
        ref = message.store_ref
        marks = ref.marks
        place = marks[key][2] if marks and key in marks else 0
        if to_back:  # after every message logged so far, before any logged from now on
            place = self._next_id
            self._next_id += 1
        if marks is None:
            marks = ref.marks = {}
        marks[key] = (returns, dead_letter_reason, place, 0)  # not out (any more)
        if self._delivered.get(key):
            # Pending entries are written STATE first, then DELIVERED: deliveries noted before
            # this state go out now, so that the log keeps their order.
            self._emit_for(key)
        self._states[key].append((ref.id, returns, dead_letter_reason, place))
        if self.wal is not None:  # (else recovery is running: written with the first flush)
            self.wal.schedule()

    def drop_queue(self, key: QueueKey, messages: list[StoredMessage],
                   cold: list[Rows] | None = None) -> None:
        """Queue `key` is deleted: everything logged for it is gone at once (a PURGE record),
        its ready messages (`messages`, logged or not) and its cold rows with it."""
        self._emit_pending()
        if cold:
            self._drop_cold(cold)
        if self._holder_of is not None:
            self._holder_of.pop(key, None)
        self._cold_queues = [None if held == key else held for held in self._cold_queues]
        for message in messages:
            if message.store_ref is not None:
                self._leave(key, message)
        self._deleted_before[key] = self._next_id
        self.wal.append(records.encode_purge(key))

    def _leave(self, key: QueueKey, message: StoredMessage) -> bool:
        """Queue `key` no longer holds a logged message (forgotten once no queue does);
        False if it did not hold it."""
        ref = message.store_ref
        queues = ref.queues
        if key not in queues:
            return False
        if ref.marks is not None:
            ref.marks.pop(key, None)
        if len(queues) == 1:
            ref.queues = ()
            info = self._segments.get(ref.segment)
            if info is not None and info.messages.pop(ref.id, None) is not None:
                info.live_bytes -= ref.size
        else:
            ref.queues = self._holding(tuple(held for held in queues if held != key))
        return True

    def _emit_for(self, key: QueueKey) -> None:
        """Write queue `key`'s pending STATE, then DELIVERED entries."""
        states = self._states.pop(key, None)
        if states:
            self._append(records.encode_states(key, states))
        ids = self._delivered.pop(key, None)
        if ids:
            self._append(records.encode_ids(records.DELIVERED, key, ids))

    def _emit_pending(self) -> None:
        # STATE before DELIVERED (note_state writes the deliveries noted before a state at
        # once), so that replay sees a message delivered after its last return as out.
        for key, states in self._states.items():
            self._append(records.encode_states(key, states))
        self._states.clear()
        for key, ids in self._delivered.items():
            self._append(records.encode_ids(records.DELIVERED, key, ids))
        self._delivered.clear()
        for key, ids in self._removed.items():
            self._append(records.encode_ids(records.REMOVE, key, ids))
        self._removed.clear()

    def _append(self, record: bytes) -> None:
        _, segment, offset = self.wal.append(record)
        self._segment(segment).size = offset + len(record)

    # -- compaction -----------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        return sum(info.size for info in self._segments.values())

    @property
    def live_bytes(self) -> int:
        return sum(info.live_bytes for info in self._segments.values())

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def _compact(self) -> None:
        """Drop the oldest segments once nothing in them is live; when worth it, copy the live
        messages of the oldest segment forward first. Oldest-first keeps replay correct: a
        REMOVE never outlives the PUBLISH it cancels."""
        segments = self._segments
        while len(segments) > 1:
            number, info = next(iter(segments.items()))
            if number >= self.wal.segment:
                break
            if (info.messages or info.cold_live) and not self._worth_copying(info):
                break
            moves = [self._copy_forward(message) for message in list(info.messages.values())]
            if info.cold_live:
                moves += [self._copy_cold_forward(row) for row in self._cold_rows_in(info)]
            del segments[number]
            if not moves:  # nothing live: it can go with the next batch
                self.wal.delete_segment_when_durable(number)
                continue
            # Readers keep using the old copies until the new ones are on disk; only then is
            # the old segment deleted.
            self._retiring.append((self.wal.pending_ticket, number, moves))

    def _worth_copying(self, info: _Segment) -> bool:
        """Copy the live messages of the oldest segment forward when it is mostly dead (under
        a quarter live: little to rewrite) or when the log has grown past twice the live data
        plus one segment. A queue drained from its head frees most segments by itself, so a
        lower bar would mostly rewrite what is about to be acked."""
        if info.live_bytes * 4 < info.size:
            return True
        return self.disk_bytes > 2 * self.live_bytes + self.segment_size

    def _copy_forward(self, message: StoredMessage) -> _Move:
        """Re-log a live message in the current segment; returns where its body will be."""
        ref = message.store_ref
        old = self._segments.get(ref.segment)
        if old is not None:
            old.messages.pop(ref.id, None)
        queues = list(self.holding(message))
        if message.body is not None:
            record, body_at = records.encode_publish(
                ref.id, published_ms(message.timestamp), queues, message.exchange,
                message.routing_key, message.props_raw, message.body,
            )
            size = len(record)
        else:  # paged out: the writer thread copies the body from the old segment
            prefix = records.publish_prefix(records.publish_head(
                ref.id, published_ms(message.timestamp), queues, message.exchange,
                message.routing_key, message.props_raw, message.body_size,
            ))
            record = CopiedRecord(prefix, ref.body_segment, ref.body_offset, message.body_size)
            body_at = records.RECORD_HEAD_SIZE + len(prefix)
            size = body_at + message.body_size
        _, segment, offset = self.wal.append(record)
        info = self._segment(segment)
        info.size = offset + size
        info.messages[ref.id] = message
        info.live_bytes += size
        ref.segment = segment
        ref.size = size
        marks = ref.marks
        if ref.delivered:  # each queue's delivery, if it has one since its last STATE
            for key in queues:
                if marks is None or (key in marks and marks[key][3]):
                    self._delivered[key].append(ref.id)
        if marks:
            for key, mark in marks.items():
                if key in queues:
                    self._states[key].append((ref.id, *mark[:3]))
        return _Move(ref, segment, (segment, offset + body_at))

    def _cold_rows_in(self, info: _Segment) -> list[int]:
        """The cold rows whose message is in a segment now (its list may name rows that have
        left it since, some of them reused by other messages)."""
        catalog, moving = self._catalog, self._moving
        holders, segments, number = catalog.holders, catalog.segments, info.number
        found = dict.fromkeys(
            row for row in itertools.chain.from_iterable(info.cold_rows)
            if holders[row] != NO_HOLDER
            and (moving[row].segment if row in moving else segments[row]) == number
        )
        return list(found)

    def _copy_cold_forward(self, row: int) -> _Move:
        """Re-log a cold row's message in the current segment (its body copied by the writer
        thread); it stays cold."""
        catalog = self._catalog
        key = self._cold_queues[catalog.holders[row]]
        message_id, body_size = catalog.ids[row], catalog.body_sizes[row]
        exchange, routing_key, props = catalog.meta_table[catalog.metas[row]]
        unsynced = self._unsynced.get(row) if self._unsynced else None
        if unsynced is not None and unsynced.body is not None:  # maybe not written yet
            record, body_at = records.encode_publish(
                message_id, catalog.published[row], [key], exchange, routing_key, props,
                unsynced.body,
            )
        else:
            prefix = records.publish_prefix(records.publish_head(
                message_id, catalog.published[row], [key], exchange, routing_key, props,
                body_size,
            ))
            # From where the body is durable now (an earlier copy may still be on its way).
            record = CopiedRecord(prefix, catalog.segments[row], catalog.body_offsets[row],
                                  body_size)
            body_at = records.RECORD_HEAD_SIZE + len(prefix)
        _, segment, offset = self.wal.append(record)
        info = self._segment(segment)
        info.size = offset + body_at + body_size
        if not info.cold_rows or not isinstance(info.cold_rows[-1], array):
            info.cold_rows.append(array("I"))
        info.cold_rows[-1].append(row)
        info.cold_live += 1
        info.live_bytes += catalog.charged_size(row)
        if catalog.delivered[row]:
            self._delivered[key].append(message_id)
        move = self._moving[row] = _Move(row, segment, (segment, offset + body_at), message_id)
        return move

    def _retire_segments(self) -> None:
        """Copies made by compaction are durable: point readers at them, delete the old."""
        durable, retiring = self.wal.written_ticket, self._retiring
        while retiring and retiring[0][0] <= durable:
            _, number, moves = retiring.popleft()
            catalog = self._catalog
            for move in moves:
                target = move.target
                if not isinstance(target, int):
                    target.body_segment, target.body_offset = move.location
                elif (catalog is not None and target < len(catalog)
                      and catalog.holders[target] != NO_HOLDER
                      and catalog.ids[target] == move.message_id):  # still that message's row
                    catalog.segments[target], catalog.body_offsets[target] = move.location
                    if self._moving.get(target) is move:
                        del self._moving[target]
            self.wal.delete_segment_when_durable(number)

    # -- paging ---------------------------------------------------------------------------

    def page_out_when_durable(self, message: StoredMessage) -> None:
        """Drop the body from memory once its record is on disk (it is read back on demand)."""
        self._to_page_out.append((self.wal.pending_ticket, message))

    def _page_out(self) -> None:
        durable, pending = self.wal.written_ticket, self._to_page_out
        while pending and pending[0][0] <= durable:
            message = pending.popleft()[1]
            ref = message.store_ref
            if ref is not None and ref.queues:
                message.body = None

    def page_in(self, messages: list[StoredMessage], done: Callable[[], None]) -> None:
        """Read the bodies of paged-out messages in the reader thread, then call `done`."""
        locations = [(m.store_ref.body_segment, m.store_ref.body_offset, m.body_size)
                     for m in messages]
        future = asyncio.get_running_loop().run_in_executor(
            self._reader, _read_bodies, self.directory, locations
        )

        def loaded(result: asyncio.Future) -> None:
            bodies = result.result() if not result.exception() else [None] * len(messages)
            for message, body in zip(messages, bodies, strict=True):
                if message.body is None and body is not None:
                    message.body = body
            done()

        future.add_done_callback(loaded)

    def read_body_now(self, message: StoredMessage) -> bytes:
        """Blocking read of one body (basic.get, which must answer in order)."""
        ref = message.store_ref
        body = read_at(self.directory, ref.body_segment, ref.body_offset, message.body_size)
        IO_STATS.bodies(read=1)
        return body

    def _after_flush(self) -> None:
        # Removals and deliveries noted while that batch was being written: into the next
        # batch (the log then sees it has more to write).
        self._emit_pending()
        self._page_out()
        if self._unsynced_order:
            self._forget_unsynced()
        self._retire_segments()
        self._compact()

    async def close(self) -> None:
        if self.pages is not None:
            self.pages.close()
        if self.wal is not None:
            self._emit_pending()
            await self.wal.drain()
            self.wal.close()
            self._reader.shutdown(wait=True)
            log.info("write-ahead log: %d fsyncs, %d bytes written, %d segments, %d bytes on "
                     "disk", self.wal.fsyncs, self.wal.bytes_written, self.segment_count,
                     self.disk_bytes)


def _read_bodies(directory: Path, locations: list[tuple[int, int, int]]) -> list[bytes | None]:
    bodies: list[bytes | None] = []
    for segment, offset, size in locations:
        try:
            bodies.append(read_at(directory, segment, offset, size))
        except OSError:  # moved by compaction meanwhile: the queue asks again
            bodies.append(None)
    IO_STATS.bodies(read=sum(body is not None for body in bodies))
    return bodies


def stored_persistent(props_raw: bytes) -> bool:
    """Whether a logged message was published persistent (delivery mode 2): a quorum queue
    logs transient ones too, and they stay transient once read back."""
    return properties.delivery_mode(props_raw) == 2


def stored_expiration(props_raw: bytes) -> int | None:
    """The expiration property of a logged message (validated when it was published)."""
    value = properties.get(props_raw, "expiration") if properties.has(props_raw, "expiration") \
        else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
