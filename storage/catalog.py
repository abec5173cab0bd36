"""The catalog of logged messages: one row per message in parallel arrays (no Python object per
message) and which durable queue holds each row.

The log scan (storage/scan.py) and the index snapshot (storage/snapshot.py) produce a catalog;
recovery puts its rows into the queues, and the message store keeps it afterwards as the home
of recovered messages that no queue has materialised as a `Message` yet ("cold" rows: about 40
bytes each instead of several hundred for the objects).

A row held by one queue names that queue's index in `queue_keys`; a row held by several says
SEVERAL and `shared[row]` maps each holder to its delivered flag. NO_HOLDER: no queue holds it
(removed, purged, or materialised into a `Message` that the store tracks from then on).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
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
    ("delivered", "B"),  # 1: comes back redelivered (for the single holder)
)
# Bytes a row is charged in its segment's live total (the record's size, roughly; the same
# figure whether the message is cold or materialised).
RECORD_OVERHEAD = 64


@dataclass
class QueueRows:
    """The rows one queue holds, in queue (= message id) order, with its delivered flags."""

    rows: array = field(default_factory=lambda: array("I"))
    delivered: array = field(default_factory=lambda: array("B"))
    # Positions (in `rows`) of rows that other queues hold too.
    shared_at: list[int] = field(default_factory=list)


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
    segment_sizes: dict[int, int] = field(default_factory=dict)  # readable bytes per segment
    corrupt_records: int = 0
    truncated_bytes: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def charged_size(self, row: int) -> int:
        """What a row counts for in its segment's live bytes."""
        return self.body_sizes[row] + len(self.meta_table[self.metas[row]][2]) + RECORD_OVERHEAD

    def mark_all_delivered(self) -> None:
        """After a crash every message may have been delivered: all come back redelivered."""
        self.delivered = array("B", b"\x01") * len(self.ids)
        for holders in self.shared.values():
            for index in holders:
                holders[index] = True

    def by_queue(self) -> dict[QueueKey, QueueRows]:
        """Each queue's rows in message id order (the order the queue had)."""
        keys = self.queue_keys
        grouped: dict[int, list[int]] = {}
        for row, holder in enumerate(self.holders):  # the single-holder rows, in row order
            if holder >= 0:
                rows = grouped.get(holder)
                if rows is None:
                    rows = grouped[holder] = []
                rows.append(row)
        for row, members in self.shared.items():
            for holder in members:
                grouped.setdefault(holder, []).append(row)
        result: dict[QueueKey, QueueRows] = {}
        ids, delivered, shared = self.ids, self.delivered, self.shared
        for holder, rows in grouped.items():
            key = keys[holder]
            if key is None:
                continue  # purged
            assert key not in result, f"queue {key} listed twice"
            # Rows are mostly in id order already (timsort is linear on sorted input).
            rows.sort(key=ids.__getitem__)
            entry = result[key] = QueueRows(array("I", rows))
            entry.delivered = array("B", map(delivered.__getitem__, rows))
            if shared:
                for position, row in enumerate(rows):
                    members = shared.get(row)
                    if members is not None:
                        entry.shared_at.append(position)
                        entry.delivered[position] = members[holder]
        return result

    def live_rows(self) -> Iterator[int]:
        """Rows some queue holds."""
        for row, holder in enumerate(self.holders):
            if holder != NO_HOLDER:
                yield row

