"""The catalog of logged messages: one row per message in parallel arrays (no Python object per
message) and which durable queue holds each row.

The log scan (storage/scan.py) and the index snapshot (storage/snapshot.py) produce a catalog;
recovery puts its rows into the queues, and the message store keeps it afterwards as the home
of recovered messages that no queue has materialised as a `Message` yet ("cold" rows: about 41
bytes each instead of several hundred for the objects).

A row held by one queue names that queue's index in `queue_keys`; a row held by several says
SEVERAL and `shared[row]` maps each holder to its delivered flag. NO_HOLDER: no queue holds it
(removed, purged, or materialised into a `Message` that the store tracks from then on).
`marks[(row, holder)]` is a holder's own state of a row when it has one (a STATE record: how
many times the message came back to that queue, the code of the reason it keeps it as a dead
letter or 0, and its place in the queue if it was returned to the back: an id taken when it
was, else 0; then 1 if the log has a delivery of it after that, else 0: it was out when the
log ends); few rows have one, and recovery makes those objects. A row without one was out if
the log has its delivery (a queue that counts returns logs a STATE at each).
"""

from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.records import QueueKey

NO_HOLDER = -1
SEVERAL = -2

# (attribute, array type code) of the per-row arrays, in the order the snapshot stores them.
ROW_ARRAYS = (
    ("ids", "q"),  # message id
    ("segments", "I"),  # segment number of the message's PUBLISH record
    ("body_offsets", "q"),  # where its body starts in that segment file
    ("body_sizes", "I"),
    ("published", "q"),  # ms since the epoch
    ("metas", "I"),  # index into meta_table
    ("holders", "i"),  # index into queue_keys, NO_HOLDER or SEVERAL
    ("delivered", "B"),  # 1: the log has its delivery from its single holder
)
# Bytes a row is charged in its segment's live total (the record's size, roughly; the same
# figure whether the message is cold or materialised).
RECORD_OVERHEAD = 64


Rows = Sequence[int]  # catalog row numbers: an array("I"), or a range
Mark = tuple[int, int, int, int]  # a queue's state of a row: see `marks` above


@dataclass
class QueueRows:
    """The rows one queue holds, in queue (= message id) order."""

    rows: Rows
    # Position in `rows` -> this queue's delivered flag, for rows other queues hold too (the
    # flag of any other row is `Catalog.delivered[row]`).
    shared_at: dict[int, bool] = field(default_factory=dict)
    # Position in `rows` -> this queue's (returns, dead-letter reason code, place, out) of that
    # row.
    marks_at: dict[int, Mark] = field(default_factory=dict)


@dataclass
class Catalog:
    ids: array = field(default_factory=lambda: array("q"))
    segments: array = field(default_factory=lambda: array("I"))
    body_offsets: array = field(default_factory=lambda: array("q"))
    body_sizes: array = field(default_factory=lambda: array("I"))
    published: array = field(default_factory=lambda: array("q"))
    metas: array = field(default_factory=lambda: array("I"))
    holders: array = field(default_factory=lambda: array("i"))
    delivered: array = field(default_factory=lambda: array("B"))
    # (exchange, routing key, raw content-header properties): they repeat from message to message
    meta_table: list[tuple[str, str, bytes]] = field(default_factory=list)
    queue_keys: list[QueueKey | None] = field(default_factory=list)  # None: purged since
    shared: dict[int, dict[int, bool]] = field(default_factory=dict)
    # (row, holder) -> (returns, dead-letter reason code, place, out), for the rows a holder
    # marked
    marks: dict[tuple[int, int], Mark] = field(default_factory=dict)
    # (holder, first row, end row): blocks of single-holder rows in id order, if the rows are
    # laid out that way (the snapshot's are); saves looking at every row to group them.
    groups: list[tuple[int, int, int]] | None = None
    in_id_order: bool = False  # rows are in increasing id order (the scan's usually are)
    segment_sizes: dict[int, int] = field(default_factory=dict)  # readable bytes per segment
    # From an index snapshot: its segments' (size, mtime ns, crc32), reused by the next one.
    segment_stamps: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    next_id: int = 0  # the id the next message gets, if known (else: above every row's)
    corrupt_records: int = 0
    truncated_bytes: int = 0
    _props_sizes: list[int] = field(default_factory=list, repr=False)  # by meta, when needed

    def __len__(self) -> int:
        return len(self.ids)

    def put_row(self, row: int | None, message_id: int, segment: int, body_offset: int,
                body_size: int, published: int, meta: int, holder: int, delivered: int) -> int:
        """Write a message's row, in the order of ROW_ARRAYS: over `row` (a place left by
        another message) or, with None, at the end. Returns the row."""
        if row is None:
            row = len(self.ids)
            self.ids.append(message_id)
            self.segments.append(segment)
            self.body_offsets.append(body_offset)
            self.body_sizes.append(body_size)
            self.published.append(published)
            self.metas.append(meta)
            self.holders.append(holder)
            self.delivered.append(delivered)
        else:
            self.ids[row] = message_id
            self.segments[row] = segment
            self.body_offsets[row] = body_offset
            self.body_sizes[row] = body_size
            self.published[row] = published
            self.metas[row] = meta
            self.holders[row] = holder
            self.delivered[row] = delivered
        return row

    def charged_size(self, row: int) -> int:
        """What a row counts for in its segment's live bytes."""
        return self.body_sizes[row] + len(self.meta_table[self.metas[row]][2]) + RECORD_OVERHEAD

    def charged_bytes(self, rows: Rows) -> int:
        """charged_size() of every row, summed."""
        if isinstance(rows, range) and rows.step == 1:
            body = sum(self.body_sizes[rows.start:rows.stop])
            metas = self.metas[rows.start:rows.stop]
        else:
            body = sum(map(self.body_sizes.__getitem__, rows))
            metas = map(self.metas.__getitem__, rows)
        if len(self.meta_table) == 1:
            props = len(rows) * len(self.meta_table[0][2])
        else:
            if len(self._props_sizes) != len(self.meta_table):
                self._props_sizes = [len(meta[2]) for meta in self.meta_table]
            props = sum(map(self._props_sizes.__getitem__, metas))
        return body + props + RECORD_OVERHEAD * len(rows)

    def body_bytes(self, rows: Rows) -> int:
        """The body sizes of `rows`, summed."""
        if isinstance(rows, range) and rows.step == 1:
            return sum(self.body_sizes[rows.start:rows.stop])
        return sum(map(self.body_sizes.__getitem__, rows))

    def _single_holder_rows(self) -> dict[int, Rows]:
        """Holder -> the rows it alone holds, in row order. With few queues this runs at C
        speed (a pass per queue); with many, one pass in Python."""
        holders = self.holders
        present = set(holders)
        present.difference_update((NO_HOLDER, SEVERAL))
        if len(present) > 8:
            grouped: dict[int, list[int]] = {}
            for row, holder in enumerate(holders):
                if holder >= 0:
                    rows = grouped.get(holder)
                    if rows is None:
                        rows = grouped[holder] = []
                    rows.append(row)
            return grouped
        found: dict[int, Rows] = {}
        for holder in present:
            if holders.count(holder) == len(holders):
                found[holder] = range(len(holders))
            else:
                found[holder] = array("I", itertools.compress(range(len(holders)),
                                                              map(holder.__eq__, holders)))
        return found

    def by_queue(self) -> dict[QueueKey, QueueRows]:
        """Each queue's rows in message id order (the order the queue had)."""
        blocks: dict[int, list[Rows]] = {}
        if self.groups is not None:
            for holder, start, end in self.groups:
                blocks.setdefault(holder, []).append(range(start, end))
        else:
            for holder, rows in self._single_holder_rows().items():
                blocks[holder] = [rows]
        shared_rows: dict[int, list[int]] = {}
        for row, members in self.shared.items():
            for holder in members:
                shared_rows.setdefault(holder, []).append(row)
        for holder, rows in shared_rows.items():
            blocks.setdefault(holder, []).append(rows)
        result: dict[QueueKey, QueueRows] = {}
        ids = self.ids
        for holder, parts in blocks.items():
            key = self.queue_keys[holder]
            if key is None:
                continue  # purged
            assert key not in result, f"queue {key} listed twice"
            # Blocks come in id order (a group, or the rows in row order if that is id order)
            # unless some of them are shared rows.
            if len(parts) == 1 and holder not in shared_rows and (
                self.groups is not None or self.in_id_order
            ):
                rows: Rows = _compact(parts[0])
            else:  # mostly in order already: timsort merges the runs in linear time
                rows = _compact(sorted(itertools.chain.from_iterable(parts),
                                       key=ids.__getitem__))
            held = result[key] = QueueRows(rows)
            for row in shared_rows.get(holder, ()):
                position = bisect.bisect_left(rows, ids[row], key=ids.__getitem__)
                held.shared_at[position] = self.shared[row][holder]
        for (row, holder), mark in self.marks.items():
            key = self.queue_keys[holder]
            held = result.get(key) if key is not None else None
            if held is None:
                continue
            position = bisect.bisect_left(held.rows, ids[row], key=ids.__getitem__)
            if position < len(held.rows) and held.rows[position] == row:
                held.marks_at[position] = mark
        return result


def _compact(rows: Rows) -> Rows:
    """The rows as a range if they are consecutive (often: one queue's rows, in log order),
    else as an array."""
    if isinstance(rows, range):
        return rows
    if rows and rows[-1] - rows[0] + 1 == len(rows) and list(rows) == list(
        range(rows[0], rows[-1] + 1)
    ):
        return range(rows[0], rows[-1] + 1)
    return array("I", rows)
