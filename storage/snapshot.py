"""The index snapshot: at a clean stop the message store writes its catalog of live messages
(storage/catalog.py) to one file, and the next start loads it instead of replaying the log.

It is only a shortcut. It is used only after a clean stop (the `clean-shutdown` marker), only
if its checksum holds and every segment file is exactly as it was when the snapshot was
written: same numbers, sizes and modification times, and the same CRC32 of its whole content
(so that damage done while the broker was stopped is found, and then reported by the scan,
as without a snapshot). Start-up deletes it before the log changes again. In any other case the
log is scanned, as after a crash. Layout: see docs/storage-format.md.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import sys
import time
import zlib
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storage.catalog import NO_HOLDER, ROW_ARRAYS, SEVERAL, Catalog
from storage.iostats import IO_STATS
from storage.scan import segment_numbers
from storage.wal import segment_path, write_atomically

log = logging.getLogger(__name__)

FILE_NAME = "message-index"
MAGIC = b"WARRENIX"
VERSION = 2  # 2: marks (a queue's state of a row: returns, kept dead letter, place, out)
_HEADER = struct.Struct("<8sHHIQ")  # magic, version, reserved, crc32 of the rest, its length
# next id, segments, queues, metas, groups, shared rows, marks
_COUNTS = struct.Struct("<QIIIIII")
_SEGMENT = struct.Struct("<IQQI")  # number, size, mtime in ns, crc32 of the file
_ROWS = struct.Struct("<Q")
_GROUP = struct.Struct("<iQQ")  # holder, first row, end row
_SHARED = struct.Struct("<IH")  # row, holder count
_MEMBER = struct.Struct("<iB")  # holder, delivered
_MARK = struct.Struct("<IiIBQB")  # row, holder, returns, dead-letter reason code, place, out
_u16 = struct.Struct("<H")
_u32 = struct.Struct("<I")


class _Invalid(ValueError):
    """The snapshot cannot be used (the reason is logged, then the log is scanned)."""


Stamp = tuple[int, int, int]  # a segment file's size, modification time (ns) and CRC32


def segment_stamps(wal_dir: Path, known: dict[int, Stamp] | None = None) -> dict[int, Stamp]:
    """Segment number -> Stamp of the segment files now. A CRC in `known` is taken for a file
    of the same size and time (a closed segment never changes); the others are computed."""
    found = {}
    for number in segment_numbers(wal_dir):
        stat = os.stat(segment_path(wal_dir, number))
        found[number] = (stat.st_size, stat.st_mtime_ns)
    known = known or {}
    todo = [number for number, stamp in found.items() if known.get(number, ())[:2] != stamp]
    crcs = {number: known[number][2] for number in found if number not in todo}
    crcs.update(zip(todo, checksums(wal_dir, todo), strict=True))
    return {number: (*stamp, crcs[number]) for number, stamp in found.items()}


def checksums(wal_dir: Path, numbers: list[int]) -> list[int]:
    """The CRC32 of each segment's whole file: two at a time (zlib lets go of the GIL)."""
    if not numbers:
        return []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="warren-crc") as pool:
        return list(pool.map(lambda number: _file_crc(segment_path(wal_dir, number)), numbers))


def _file_crc(path: Path) -> int:
    started = time.perf_counter()
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if not size:
            return 0
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            crc = zlib.crc32(data)
    IO_STATS.read(size, started)  # one read of the mapped segment
    return crc


# -- writing ----------------------------------------------------------------------------------


def write(path: Path, catalog: Catalog, stamps: dict[int, Stamp]) -> int:
    """Write `catalog` (live rows only; `next_id` set) and the segments' `stamps`
    atomically; return the file's size."""
    data = encode(catalog, stamps)
    write_atomically(path, data)
    return len(data)


def encode(catalog: Catalog, stamps: dict[int, Stamp]) -> bytes:
    groups = catalog.groups or []
    parts = [_COUNTS.pack(catalog.next_id, len(stamps), len(catalog.queue_keys),
                          len(catalog.meta_table), len(groups), len(catalog.shared),
                          len(catalog.marks))]
    parts += [_SEGMENT.pack(number, *stamp) for number, stamp in sorted(stamps.items())]
    for key in catalog.queue_keys:
        assert key is not None
        parts += [_text(key[0]), _text(key[1])]
    for exchange, routing_key, props in catalog.meta_table:
        parts += [_text(exchange), _text(routing_key), _u32.pack(len(props)), props]
    parts += [_GROUP.pack(*group) for group in groups]
    parts.append(_ROWS.pack(len(catalog)))
    for name, code in ROW_ARRAYS:
        column = getattr(catalog, name)
        assert column.typecode == code and len(column) == len(catalog), name
        parts.append(_little_endian(column).tobytes())
    for row, members in sorted(catalog.shared.items()):
        parts.append(_SHARED.pack(row, len(members)))
        parts += [_MEMBER.pack(holder, delivered) for holder, delivered in members.items()]
    parts += [_MARK.pack(row, holder, *mark)
              for (row, holder), mark in sorted(catalog.marks.items())]
    payload = b"".join(parts)
    return _HEADER.pack(MAGIC, VERSION, 0, zlib.crc32(payload), len(payload)) + payload


def _text(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")  # routing keys may be any bytes
    return _u16.pack(len(raw)) + raw


def _little_endian(column: array) -> array:
    if sys.byteorder == "little" or column.itemsize == 1:
        return column
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped


# -- loading ----------------------------------------------------------------------------------


def load(path: Path, wal_dir: Path) -> Catalog | None:
    """The catalog the snapshot at `path` holds, or None (logged) if there is none or it
    cannot be trusted."""
    try:
        started = time.perf_counter()
        data = path.read_bytes()
        IO_STATS.read(len(data), started)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("message index %s unreadable (%s): scanning the log", path, exc)
        return None
    try:
        catalog, stamps = decode(data)
        # Sizes and times first (cheap: the CRCs are taken from `stamps`), then every byte.
        now = segment_stamps(wal_dir, stamps)
        if now == stamps:
            now = segment_stamps(wal_dir)
        if now != stamps:
            changed = sorted({number for number in now.keys() | stamps.keys()
                              if now.get(number) != stamps.get(number)})
            raise _Invalid(f"segments {changed[:8]} changed since it was written")
    except _Invalid as exc:
        # Harmless: the scan reads what the log holds (and reports any damage it finds).
        log.info("message index %s not used (%s): scanning the log", path, exc)
        return None
    catalog.segment_sizes = {number: stamp[0] for number, stamp in stamps.items()}
    catalog.segment_stamps = stamps
    return catalog


def decode(data: bytes) -> tuple[Catalog, dict[int, Stamp]]:
    """(catalog, segment stamps) from a snapshot file's bytes; _Invalid if they are not one
    this version wrote intact."""
    if len(data) < _HEADER.size:
        raise _Invalid("truncated")
    magic, version, _, crc, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise _Invalid("not a Warren message index")
    if version != VERSION:
        raise _Invalid(f"format version {version}, this Warren reads {VERSION}")
    payload = memoryview(data)[_HEADER.size:]
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise _Invalid("checksum mismatch")
    try:
        return _decode_payload(payload)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        raise _Invalid(f"undecodable ({exc})") from exc


class _Cursor:
    __slots__ = ("data", "offset")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, layout: struct.Struct) -> tuple:
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def view(self, size: int) -> memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise ValueError("runs past the end")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def take(self, size: int) -> bytes:
        return bytes(self.view(size))

    def text(self) -> str:
        return self.take(self.unpack(_u16)[0]).decode("utf-8", "surrogateescape")


def _decode_payload(payload: memoryview) -> tuple[Catalog, dict[int, Stamp]]:
    cursor = _Cursor(payload)
    next_id, segments, queues, metas, groups, shared, marks = cursor.unpack(_COUNTS)
    stamps = {}
    for _ in range(segments):
        number, size, mtime, crc = cursor.unpack(_SEGMENT)
        stamps[number] = (size, mtime, crc)
    catalog = Catalog(next_id=next_id)
    catalog.queue_keys = [(cursor.text(), cursor.text()) for _ in range(queues)]
    names: dict[str, str] = {}  # one copy of each exchange and routing key
    for _ in range(metas):
        exchange, routing_key = cursor.text(), cursor.text()
        exchange = names.setdefault(exchange, exchange)
        routing_key = names.setdefault(routing_key, routing_key)
        catalog.meta_table.append((exchange, routing_key, cursor.take(cursor.unpack(_u32)[0])))
    catalog.groups = [cursor.unpack(_GROUP) for _ in range(groups)]
    rows = cursor.unpack(_ROWS)[0]
    for name, code in ROW_ARRAYS:
        column = array(code)
        column.frombytes(cursor.view(rows * column.itemsize))
        if sys.byteorder != "little" and column.itemsize > 1:
            column.byteswap()
        setattr(catalog, name, column)
    for _ in range(shared):
        row, count = cursor.unpack(_SHARED)
        catalog.shared[row] = dict(cursor.unpack(_MEMBER) for _ in range(count))
    for _ in range(marks):
        row, holder, *mark = cursor.unpack(_MARK)
        catalog.marks[(row, holder)] = tuple(mark)
    if cursor.offset != len(payload):
        raise ValueError("trailing bytes")
    _check(catalog)
    return catalog, stamps


def _check(catalog: Catalog) -> None:
    """Indexes in range, or ValueError."""
    rows = len(catalog)
    if rows and (max(catalog.metas) >= len(catalog.meta_table)
                 or max(catalog.holders) >= len(catalog.queue_keys)
                 or min(catalog.holders) < SEVERAL):
        raise ValueError("row index out of range")
    for row, members in catalog.shared.items():
        if not 0 <= row < rows or catalog.holders[row] != SEVERAL or any(
            not 0 <= holder < len(catalog.queue_keys) for holder in members
        ):
            raise ValueError("shared row out of range")
    for row, holder in catalog.marks:
        if not 0 <= row < rows or not 0 <= holder < len(catalog.queue_keys):
            raise ValueError("marked row out of range")
    if NO_HOLDER in catalog.holders:
        raise ValueError("a row nobody holds")
    covered = 0
    for holder, start, end in catalog.groups:
        if not (0 <= holder < len(catalog.queue_keys) and start == covered and end >= start
                and catalog.holders[start:end] == array("i", [holder]) * (end - start)):
            raise ValueError("row groups do not match the rows")
        covered = end
    if covered != rows - len(catalog.shared):
        raise ValueError("row groups do not cover the single-holder rows")
