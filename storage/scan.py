"""Replaying the log into a catalog: every segment in order, each record checked against its CRC,
decoding only what recovery needs (ids, queues, where the body is; never the body itself).

A torn or corrupt tail of the last segment is truncated; a corrupt record elsewhere is skipped
(and counted). Consecutive PUBLISH records mostly share their queues, exchange, routing key and
properties: when a record's bytes there equal the previous one's, nothing is decoded again.
"""

from __future__ import annotations

import logging
import mmap
import struct
import time
import zlib
from pathlib import Path

from storage import records
from storage.catalog import NO_HOLDER, SEVERAL, Catalog
from storage.iostats import IO_STATS
from storage.wal import segment_path

log = logging.getLogger(__name__)

_head = records.RECORD_HEAD.unpack_from
_publish_head = records.PUBLISH_HEAD.unpack_from  # message id, published at, queue count
_PUBLISH_META = 1 + records.PUBLISH_HEAD.size  # where the queue list starts in a PUBLISH payload
# length, crc32, type, message id, published at, queue count: a PUBLISH record's first bytes
_publish_record_head = struct.Struct("!IIBQQH").unpack_from
_PUBLISH_RECORD_META = records.RECORD_HEAD_SIZE + _PUBLISH_META
_u32 = struct.Struct("!I").unpack_from
_HEAD = records.RECORD_HEAD_SIZE
_MAX = records.MAX_RECORD_SIZE
_PUBLISH, _REMOVE, _DELIVERED, _PURGE, _STATE = (
    records.PUBLISH, records.REMOVE, records.DELIVERED, records.PURGE, records.STATE,
)
_DECODE_ERRORS = (IndexError, struct.error, UnicodeDecodeError, ValueError)


def segment_numbers(directory: Path) -> list[int]:
    numbers = []
    for path in directory.glob("*.wal"):
        try:
            numbers.append(int(path.stem))
        except ValueError:
            continue
    return sorted(numbers)


def scan(directory: Path) -> Catalog:
    """Replay every segment in order (truncating a torn tail of the last one)."""
    replay = _Replay()
    catalog = replay.catalog
    numbers = segment_numbers(directory)
    for index, number in enumerate(numbers):
        path = segment_path(directory, number)
        started = time.perf_counter()
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            if size:
                data.madvise(mmap.MADV_SEQUENTIAL)
            end = replay.segment(number, data)
        finally:
            if size:
                data.close()
        IO_STATS.read(size, started)  # one read of the mapped segment (its replay's time)
        catalog.segment_sizes[number] = end
        if end < size:
            lost = size - end
            catalog.truncated_bytes += lost
            if index == len(numbers) - 1:
                log.warning("%s: torn tail of %d bytes after offset %d truncated", path, lost, end)
                with open(path, "r+b") as file:
                    file.truncate(end)
            else:
                log.warning("%s: %d unreadable bytes after offset %d skipped", path, lost, end)
    return replay.finish()


def _skip_shortstrs(data: bytes, offset: int, count: int) -> int:
    for _ in range(count):
        offset += 1 + data[offset]
    return offset


class _Replay:
    """Applies records to a catalog under construction."""

    def __init__(self) -> None:
        self.catalog = Catalog(in_id_order=True)
        self._rows: dict[int, int] | None = None  # message id -> row, built on first need
        self._last_id = 0
        self._queues: dict[bytes, int] = {}  # raw queue key -> its current holder index
        # raw exchange + routing key -> (exchange, routing key, raw props -> meta index)
        self._routes: dict[bytes, tuple[str, str, dict[bytes, int]]] = {}
        # The previous PUBLISH record's queue count, bytes from the queue list to the body
        # size, and what they decoded to (holders, meta index).
        self._last_shape: tuple[int, bytes, tuple[int, ...], int] = (-1, b"", (), 0)

    # -- segments -------------------------------------------------------------------------

    def segment(self, number: int, data: bytes | mmap.mmap) -> int:
        """Apply a segment's records; return the offset where readable data ends."""
        size = len(data)
        if size < records.SEGMENT_HEADER_SIZE:
            return 0
        view = memoryview(data)
        try:
            return self._records(number, data, view, size)
        finally:
            view.release()

    def _records(self, number: int, data: bytes | mmap.mmap, view: memoryview, size: int) -> int:
        offset = records.SEGMENT_HEADER_SIZE
        while offset < size:
            offset = self._fast_run(number, data, view, offset, size)
            if offset >= size:
                break
            problem, end = self._record(number, data, view, offset, size)
            if problem is None:
                offset = end
                continue
            resume = _next_good_record(data, offset + 1)
            if resume is None:
                return offset
            self.catalog.corrupt_records += 1
            log.warning("segment %d: corrupt record at offset %d skipped (%s)", number, offset,
                        problem)
            offset = resume
        return offset

    def _fast_run(self, number: int, data: bytes | mmap.mmap, view: memoryview, offset: int,
                  size: int) -> int:
        """Apply PUBLISH records for one queue shaped like the previous one (same queue list,
        exchange, routing key and properties), logged for the first time, for as long as they
        come; return the offset of the first record that is not one (`_record` takes it)."""
        count, shape, holders_of_shape, meta = self._last_shape
        if len(holders_of_shape) != 1:
            return offset
        holder = holders_of_shape[0]
        catalog = self.catalog
        ids, segments, offsets, sizes, published, metas, holders, delivered = (
            catalog.ids, catalog.segments, catalog.body_offsets, catalog.body_sizes,
            catalog.published, catalog.metas, catalog.holders, catalog.delivered,
        )
        crc32, head, u32 = zlib.crc32, _publish_record_head, _u32
        rows, last_id = self._rows, self._last_id
        shape_end = _PUBLISH_RECORD_META + len(shape)  # where the body size is, from offset
        while offset + _PUBLISH_RECORD_META <= size:
            length, crc, kind, message_id, published_at, queue_count = head(data, offset)
            start, end = offset + _HEAD, offset + _HEAD + length
            body_at = offset + shape_end + 4
            if (kind != _PUBLISH or queue_count != count or message_id <= last_id
                    or body_at > end or end > size
                    or data[offset + _PUBLISH_RECORD_META:body_at - 4] != shape
                    or u32(data, body_at - 4)[0] != end - body_at
                    or crc32(view[start:end]) != crc):
                break
            last_id = message_id
            if rows is not None:
                rows[message_id] = len(ids)
            ids.append(message_id)
            segments.append(number)
            offsets.append(body_at)
            sizes.append(end - body_at)
            published.append(published_at)
            metas.append(meta)
            holders.append(holder)
            delivered.append(0)
            offset = end
        self._last_id = last_id
        return offset

    def _record(self, number: int, data: bytes | mmap.mmap, view: memoryview, offset: int,
                size: int) -> tuple[str | None, int]:
        """Check and apply the record at `offset`: (what is wrong with it or None, its end)."""
        start = offset + _HEAD
        if start > size:
            return "record runs past the end of the segment", 0
        length, crc = _head(data, offset)
        end = start + length
        if length == 0 or length > _MAX:
            return f"bad record length {length}", end
        if end > size:
            return "record runs past the end of the segment", end
        if zlib.crc32(view[start:end]) != crc:
            return "CRC mismatch", end
        if data[start] != _PUBLISH:
            return self._other(data, start, end), end
        try:
            self._publish(number, data, start, end)
        except _DECODE_ERRORS as exc:
            return f"undecodable record ({exc})", end
        return None, end

    def _other(self, data: bytes | mmap.mmap, start: int, end: int) -> str | None:
        """Apply a REMOVE, DELIVERED, PURGE or STATE record; what is wrong with it, if
        anything."""
        kind = data[start]
        try:
            if kind in (_REMOVE, _DELIVERED):
                self._ids(kind, data, start, end)
            elif kind == _STATE:
                self._states(data, start, end)
            elif kind == _PURGE:
                self._purge(data, start, end)
            else:
                return f"unknown record type {kind}"
        except _DECODE_ERRORS as exc:
            return f"undecodable record ({exc})"
        return None

    # -- records --------------------------------------------------------------------------

    def _holder(self, raw_key: bytes) -> int:
        index = self._queues.get(raw_key)
        if index is None:
            vhost_end = 1 + raw_key[0]
            key = (raw_key[1:vhost_end].decode(), raw_key[vhost_end + 1:].decode())
            index = self._queues[raw_key] = len(self.catalog.queue_keys)
            self.catalog.queue_keys.append(key)
        return index

    def _publish(self, segment: int, data: bytes | mmap.mmap, start: int, end: int) -> None:
        """A PUBLISH record off the fast path: decode its shape (and remember it)."""
        message_id, published_at, count = _publish_head(data, start + 1)
        meta_at = start + _PUBLISH_META
        queues_end = _skip_shortstrs(data, meta_at, 2 * count)
        route_end = _skip_shortstrs(data, queues_end, 2)
        props_at = route_end + 4
        body_at = props_at + _u32(data, route_end)[0] + 4
        if body_at > end or body_at + _u32(data, body_at - 4)[0] != end:
            raise ValueError("publish record body size mismatch")
        holders = []
        offset = meta_at
        for _ in range(count):
            key_at = offset
            offset = _skip_shortstrs(data, offset, 2)
            holders.append(self._holder(data[key_at:offset]))
        raw_route = data[queues_end:route_end]
        route = self._routes.get(raw_route)
        if route is None:
            exchange_end = 1 + raw_route[0]
            route = self._routes[raw_route] = (
                # A routing key may be any bytes (RabbitMQ checks no UTF-8 in basic.publish).
                raw_route[1:exchange_end].decode("utf-8", "surrogateescape"),
                raw_route[exchange_end + 1:].decode("utf-8", "surrogateescape"), {}
            )
        props = data[props_at:body_at - 4]
        meta = route[2].get(props)  # the props bytes are the key and the table's copy
        if meta is None:
            meta = route[2][props] = len(self.catalog.meta_table)
            self.catalog.meta_table.append((route[0], route[1], props))
        shape = (count, data[meta_at:body_at - 4], tuple(holders), meta)
        self._last_shape = shape
        body_size = end - body_at
        if message_id > self._last_id:
            self._last_id = message_id
            self._append(message_id, segment, body_at, body_size, published_at, meta, shape[2])
            return
        row = self._row(message_id)
        if row is None:  # first seen here: a copy whose original segment is gone
            self.catalog.in_id_order = False
            self._append(message_id, segment, body_at, body_size, published_at, meta, shape[2])
        else:  # a copy moved forward: it is here now, and lists the queues still holding it
            self.catalog.segments[row] = segment
            self.catalog.body_offsets[row] = body_at
            self._set_holders(row, shape[2])

    def _append(self, message_id: int, segment: int, body_at: int, body_size: int,
                published_at: int, meta: int, holders: tuple[int, ...]) -> None:
        catalog = self.catalog
        holder = holders[0] if len(holders) == 1 else SEVERAL if holders else NO_HOLDER
        row = catalog.put_row(None, message_id, segment, body_at, body_size, published_at,
                              meta, holder, 0)
        if self._rows is not None:
            self._rows[message_id] = row
        if holder == SEVERAL:
            catalog.shared[row] = dict.fromkeys(holders, False)

    def _row(self, message_id: int) -> int | None:
        if self._rows is None:
            ids = self.catalog.ids
            self._rows = dict(zip(ids, range(len(ids)), strict=True))
        return self._rows.get(message_id)


    def _set_holders(self, row: int, listed: tuple[int, ...]) -> None:
        """A copy lists the queues that still hold the row; each keeps its delivered flag."""
        catalog = self.catalog
        holder = catalog.holders[row]
        if holder == SEVERAL:
            before = catalog.shared.pop(row)
        elif holder == NO_HOLDER:
            before = {}
        else:
            before = {holder: bool(catalog.delivered[row])}
        self._put_holders(row, {index: before.get(index, False) for index in listed})

    def _put_holders(self, row: int, flags: dict[int, bool]) -> None:
        catalog = self.catalog
        if not flags:
            catalog.holders[row] = NO_HOLDER
        elif len(flags) == 1:
            (holder, delivered), = flags.items()
            catalog.holders[row] = holder
            catalog.delivered[row] = delivered
        else:
            catalog.holders[row] = SEVERAL
            catalog.shared[row] = flags

    def _ids(self, kind: int, data: bytes | mmap.mmap, start: int, end: int) -> None:
        key_end = _skip_shortstrs(data, start + 1, 2)
        count = _u32(data, key_end)[0]
        if key_end + 4 + 8 * count != end:
            raise ValueError("ids record size mismatch")
        holder = self._queues.get(data[start + 1:key_end])
        if holder is None:
            return  # a queue nothing was published to (or purged since)
        message_ids = struct.unpack_from(f"!{count}Q", data, key_end + 4)
        catalog = self.catalog
        holders, shared = catalog.holders, catalog.shared
        row_of = self._row
        marks = catalog.marks
        for message_id in message_ids:
            row = row_of(message_id)
            if row is None:
                continue
            if marks:
                if kind == _REMOVE:
                    marks.pop((row, holder), None)
                else:  # delivered since its last STATE: out
                    mark = marks.get((row, holder))
                    if mark is not None:
                        marks[(row, holder)] = (*mark[:3], 1)
            current = holders[row]
            if current == holder:
                if kind == _REMOVE:
                    holders[row] = NO_HOLDER
                else:
                    catalog.delivered[row] = 1
            elif current == SEVERAL:
                flags = shared[row]
                if holder in flags:
                    if kind == _REMOVE:
                        del flags[holder]
                        del shared[row]
                        self._put_holders(row, flags)
                    else:
                        flags[holder] = True

    def _states(self, data: bytes | mmap.mmap, start: int, end: int) -> None:
        """A queue's state of messages it holds (returns, kept as a dead letter)."""
        key_end = _skip_shortstrs(data, start + 1, 2)
        holder = self._queues.get(data[start + 1:key_end])
        states = records.decode_states(data, key_end, end)
        if holder is None:
            return
        catalog = self.catalog
        for message_id, returns, reason, place in states:
            row = self._row(message_id)
            if row is None or not (catalog.holders[row] == holder or (
                    catalog.holders[row] == SEVERAL and holder in catalog.shared[row])):
                continue  # not (or no longer) this queue's
            catalog.marks[(row, holder)] = (returns, reason, place, 0)

    def _purge(self, data: bytes | mmap.mmap, start: int, end: int) -> None:
        """Everything logged so far for the queue is gone: later records get a new index."""
        key_end = _skip_shortstrs(data, start + 1, 2)
        if key_end != end:
            raise ValueError("purge record size mismatch")
        holder = self._queues.pop(data[start + 1:key_end], None)
        if holder is not None:
            self.catalog.queue_keys[holder] = None
            self._last_shape = (-1, b"", (), 0)  # its queue list now means another index

    def finish(self) -> Catalog:
        self._rows = None
        return self.catalog


def _next_good_record(data: bytes | mmap.mmap, start: int) -> int | None:
    """The first offset from `start` where a whole, valid record begins (None: the rest is a
    torn tail)."""
    unpack, size = records.RECORD_HEAD.unpack_from, len(data)
    for offset in range(start, size - records.RECORD_HEAD_SIZE):
        length = unpack(data, offset)[0]
        if not 0 < length <= size - offset - records.RECORD_HEAD_SIZE:
            continue  # cheap rejection before the CRC
        try:
            read = records.read_record(data, offset)
            if read is not None:
                records.decode_payload(bytes(read[0]))
                return offset
        except records.CorruptRecord:
            continue
    return None
