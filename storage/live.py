"""What is live in the message store, as a catalog: the content of the index snapshot written
at a clean stop (storage/snapshot.py), once the log is drained.

It must be what a scan of the log would find, without scanning it: every message a durable
queue (or a delayed exchange) holds, ready or delivered and unacked, with its place in the
log and, per queue, whether the log has that queue's delivery of it. Rows come in blocks, one
queue's in message id order (`Catalog.groups`), so that loading them needs no pass over every
row: first the recovered messages still catalog rows, then those that are objects, then the
ones several queues hold.
"""

from __future__ import annotations

import itertools
import logging
import operator
from array import array
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from storage.catalog import ROW_ARRAYS, SEVERAL, Catalog, Rows
from storage.records import QueueKey, published_ms

if TYPE_CHECKING:
    from storage.holders import MessageHolder, StoredMessage
    from storage.store import MessageStore

log = logging.getLogger(__name__)

Meta = tuple[str, str, bytes]  # exchange, routing key, raw properties


class _Builder:
    """A catalog being filled; queues and metas numbered as they first appear."""

    def __init__(self, next_id: int) -> None:
        self.live = Catalog(next_id=next_id, groups=[])
        self._positions: dict[QueueKey, int] = {}
        self._metas: dict[Meta, int] = {}

    def position(self, key: QueueKey) -> int:
        index = self._positions.get(key)
        if index is None:
            index = self._positions[key] = len(self.live.queue_keys)
            self.live.queue_keys.append(key)
        return index

    def use_metas(self, table: list[Meta]) -> None:
        self.live.meta_table = list(table)
        self._metas = {meta: index for index, meta in enumerate(table)}

    def meta(self, meta: Meta) -> int:
        index = self._metas.get(meta)
        if index is None:
            index = self._metas[meta] = len(self.live.meta_table)
            self.live.meta_table.append(meta)
        return index

    def mark(self, row: int, holder: int, key: QueueKey, message: StoredMessage) -> None:
        """Copy the state queue `key` (index `holder`) logged of the message at `row`."""
        marks = message.store_ref.marks
        if marks and key in marks:
            self.live.marks[(row, holder)] = marks[key]

    def mark_all(self, row: int, message: StoredMessage) -> None:
        """mark() for every queue listed so far that logged a state of the message."""
        marks = message.store_ref.marks
        if marks:
            for key, mark in marks.items():
                if key in self._positions:
                    self.live.marks[(row, self._positions[key])] = mark

    def add_messages(self, messages: list[StoredMessage], holders: Sequence[int],
                     delivered: list[bool]) -> None:
        """Rows for messages that are objects (column by column: much faster)."""
        live = self.live
        refs = [message.store_ref for message in messages]
        live.ids.extend([ref.id for ref in refs])
        live.segments.extend([ref.body_segment for ref in refs])
        live.body_offsets.extend([ref.body_offset for ref in refs])
        live.body_sizes.extend([message.body_size for message in messages])
        live.published.extend([published_ms(message.timestamp) for message in messages])
        live.metas.extend([self.meta((message.exchange, message.routing_key, message.props_raw))
                           for message in messages])
        live.holders.extend(holders)
        live.delivered.extend(delivered)


def live_catalog(store: MessageStore, holders: Mapping[QueueKey, MessageHolder]) -> Catalog | None:
    """Every live message of `store` as a catalog, `holders` being the durable queues and
    delayed exchanges there are now, by key; None if the store's books do not add up (then no
    snapshot is written, and the next start scans the log)."""
    builder = _Builder(store.next_id)
    if not _add_cold_rows(builder, store, holders):
        return None
    live = builder.live
    # Messages that are objects, by the one queue holding them; then those several hold.
    single: dict[QueueKey, list[StoredMessage]] = {}
    shared: list[tuple[StoredMessage, tuple[QueueKey, ...]]] = []
    for message in store.logged_messages():
        keys = store.holding(message)
        if len(keys) == 1:
            found = single.get(keys[0])
            if found is None:
                found = single[keys[0]] = []
            found.append(message)
        else:
            shared.append((message, keys))
    for key, messages in single.items():
        queue = holders.get(key)
        if queue is None:  # deleted
            continue
        messages.sort(key=operator.attrgetter("store_ref.id"))
        start, holder = len(live), builder.position(key)
        builder.add_messages(messages, array("i", [holder]) * len(messages),
                             _flags_in(queue, messages))
        live.groups.append((holder, start, len(live)))
        for row, message in enumerate(messages, start):
            builder.mark(row, holder, key, message)
    flags: dict[QueueKey, dict[int, bool]] = {}  # each queue's _ready_flags()
    several = []
    for message, keys in shared:  # each queue's flag: from the queue (delivered if not ready)
        members = {}
        message_id = message.store_ref.id
        for key in keys:
            queue = holders.get(key)
            if queue is not None:
                if key not in flags:
                    flags[key] = _ready_flags(queue)
                members[builder.position(key)] = flags[key].get(message_id, True)
        if len(members) == 1:  # the others were deleted
            (holder, delivered), = members.items()
            live.groups.append((holder, len(live), len(live) + 1))
            builder.mark_all(len(live), message)
            builder.add_messages([message], [holder], [delivered])
        elif members:
            several.append((message, members))
    for message, members in several:  # after every block
        live.shared[len(live)] = members
        builder.mark_all(len(live), message)
        builder.add_messages([message], [SEVERAL], [False])
    return live


def _add_cold_rows(builder: _Builder, store: MessageStore,
                   holders: Mapping[QueueKey, MessageHolder]) -> bool:
    """Copy the messages still catalog rows, queue by queue; False if the queues do not hold
    exactly the rows the store counts as cold."""
    catalog, cold_queues, cold_count = store.cold
    if catalog is None:
        return True
    live = builder.live
    builder.use_metas(catalog.meta_table)
    blocks: list[Rows] = []
    for key in cold_queues:
        queue = None if key is None else holders.get(key)
        runs = [] if queue is None else queue.cold_rows()
        if not runs:
            continue
        rows = runs[0] if len(runs) == 1 else array("I", sorted(
            itertools.chain.from_iterable(runs), key=catalog.ids.__getitem__))
        start = sum(map(len, blocks))
        live.groups.append((builder.position(key), start, start + len(rows)))
        blocks.append(rows)
    if sum(map(len, blocks)) != cold_count:
        log.error("message index not written: %d cold messages in queues, %d in the store",
                  sum(map(len, blocks)), cold_count)
        return False
    everything = len(blocks) == 1 and blocks[0] == range(len(catalog))
    for name, code in ROW_ARRAYS:
        if name == "holders":
            continue
        column = getattr(catalog, name)
        setattr(live, name, array(code, column) if everything else array(
            code, map(column.__getitem__, itertools.chain.from_iterable(blocks))))
    for holder, start, end in live.groups:
        live.holders.extend(array("i", [holder]) * (end - start))
    return True


def _flags_in(queue: MessageHolder, messages: list[StoredMessage]) -> list[bool]:
    """Whether the log has `queue`'s delivery of messages it alone holds. Never delivered
    from any queue: no. Else the queue's own flag (it may have been delivered from another
    queue that held it then): yes unless the queue holds it ready with no logged delivery."""
    ready: dict[int, bool] | None = None
    flags = []
    for message in messages:
        ref = message.store_ref
        if not ref.delivered:
            flags.append(False)
            continue
        if ready is None:
            ready = _ready_flags(queue)
        flags.append(ready.get(ref.id, True))
    return flags


def _ready_flags(queue: MessageHolder) -> dict[int, bool]:
    """Message id -> whether the log has `queue`'s delivery of it, for the logged messages
    it holds ready as objects."""
    return {message.store_ref.id: delivered
            for message, delivered in queue.logged_deliveries()}
