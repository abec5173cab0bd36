"""A stream's append-only log: one directory per stream, segment files of records, a small
in-memory index per segment, group-committed writes in the write-ahead log's writer thread.

Layout: `<data dir>/streams/<vhost hex>.<queue hex>/<first offset, 20 digits>.seg`. A segment
starts with a 20-byte header (magic "WARRENSM", version u16 = 1, reserved u16, first offset
u64), then records back to back (big-endian):

    record := length u32 | crc32 u32 | offset u64 | timestamp ms u64 | flags u8 |
              route length u16 | properties length u32 | route | raw properties | body

`length` and the CRC cover everything after the CRC. `route` is the exchange and routing key
as encoded shortstrs (what basic.deliver carries), the properties are the publisher's raw
content-header property bytes. Offsets are dense: 0, 1, 2 ... for the life of the stream.
Flag 1 marks the first record of a chunk, the records one write + fsync put on disk together
(x-stream-offset `last` starts at the last chunk, as RabbitMQ's does). A segment is closed
(fsynced) when the next record would take it past the segment size (a record is never split;
a record larger than a segment gets one of its own) and only then is the next one created.

Memory: per segment its first offset and timestamp, its committed end, its newest timestamp,
and a mark (offset, timestamp, file position) every MARK_EVERY bytes, so that a reader finds
an offset or a time by reading at most MARK_EVERY bytes. Nothing per message.

Writes: `append` (event loop) queues a record and asks the write-ahead log for a group commit
(the log's `Companion` protocol, storage/wal.py): at its next batch the log `take`s what is
pending, `write`s it in its writer thread (records, fsync, new segment files, directory fsync,
deletions) and calls `written` back on the loop once it is durable, with the batch's ticket:
the publisher confirm waits for that ticket. Only then do readers see the records.

Retention: when a new segment is created, whole old segments go while the stream is larger than
max_bytes or their newest record is older than max_age (never the segment being written).

Replication: with `actions` (a cluster's leader, storage/wal.py `FileActions`) every change
to the stream's files is recorded there as it is made, for the followers.

Recovery (`open`, blocking: call it before serving or in a thread): every segment's record heads
are read (the CRC is checked in the last one); a record cut short or whose CRC fails at the tail
of the last segment is a torn write and is cut off, as the write-ahead log does.

Reads (`read`, blocking, in a reader thread): records of one segment from a file position up to
the committed end the caller took from the index, skipping those below an offset or a time.
storage/ imports nothing from broker/: the stream queue (broker/stream.py) drives all of this.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import shutil
import struct
import time
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from storage import iostats
from storage.iostats import IO_STATS
from storage.wal import FileActions, fsync_directory

log = logging.getLogger(__name__)

MAGIC = b"WARRENSM"
VERSION = 1
SEGMENT_HEAD = struct.Struct("!8sHHQ")  # magic, version, reserved, first offset
HEAD = struct.Struct("!II")  # length, crc32
FIXED = struct.Struct("!QQBHI")  # offset, timestamp ms, flags, route length, props length
RECORD_OVERHEAD = HEAD.size + FIXED.size
CHUNK_START = 1
MARK_EVERY = 256 * 1024
DEFAULT_SEGMENT_SIZE = 500_000_000  # RabbitMQ's x-stream-max-segment-size-bytes default

# (offset, timestamp ms, route bytes, raw property bytes, body)
Record = tuple[int, int, bytes, bytes, bytes]


def stream_directory(root: Path, vhost: str, name: str) -> Path:
    """Where a stream's segments live: names hex-encoded (any byte is allowed in them)."""
    return root / f"{vhost.encode().hex()}.{name.encode().hex()}"


def segment_file(directory: Path, first_offset: int) -> Path:
    return directory / f"{first_offset:020d}.seg"


class Segment:
    """The index of one segment: what a reader needs to find a place in it."""

    __slots__ = ("first_offset", "first_ts", "last_ts", "end", "marks")

    def __init__(self, first_offset: int, first_ts: int) -> None:
        self.first_offset = first_offset
        self.first_ts = first_ts
        self.last_ts = first_ts
        self.end = SEGMENT_HEAD.size  # committed bytes: readers read up to here
        self.marks = array("q")  # (offset, timestamp ms, position) triples, flattened

    def mark(self, offset: int, timestamp: int, position: int) -> None:
        self.marks.extend((offset, timestamp, position))

    def place(self, offset: int | None, timestamp: int | None) -> int:
        """The file position of the last mark at or before `offset` (or `timestamp`)."""
        marks = self.marks
        position = SEGMENT_HEAD.size
        for index in range(0, len(marks), 3):
            if (offset is not None and marks[index] > offset) or (
                timestamp is not None and marks[index + 1] > timestamp
            ):
                break
            position = marks[index + 2]
        return position


@dataclass
class _Batch:
    """What one group commit writes for a stream, and (filled by the writer) what it did."""

    records: list[Record]
    deletes: list[int]  # first offsets of segments to delete
    remove_all: bool = False
    done: bool = False  # written: a retry of the write-ahead log's batch skips it
    # filled by the writer thread: (first offset, first ts) of segments it created, marks as
    # (segment first offset, offset, ts, position), and each touched segment's end and newest ts
    created: list[tuple[int, int]] = field(default_factory=list)
    marks: list[tuple[int, int, int, int]] = field(default_factory=list)
    ends: dict[int, tuple[int, int]] = field(default_factory=dict)


class StreamLog:
    def __init__(self, directory: Path, segment_size: int = DEFAULT_SEGMENT_SIZE,
                 max_bytes: int | None = None, max_age_ms: int | None = None,
                 actions: FileActions | None = None) -> None:
        self.directory = directory
        self.actions = actions
        self.segment_size = max(segment_size, SEGMENT_HEAD.size + RECORD_OVERHEAD)
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        self.segments: list[Segment] = []  # committed, oldest first (event loop side)
        self.next_offset = 0  # the offset the next append gets
        self.committed = 0  # offsets below this are durable and readable
        self.last_chunk = 0  # first offset of the newest durable chunk
        self.stored_bytes = 0  # record bytes in the segments (their headers not counted)
        self._pending: list[Record] = []
        self._deletes: list[int] = []
        self._remove_all = False
        self.removed = False
        # writer thread's own: the open segment, its first offset, its size, its last mark
        self._file = None
        self._file_first = -1
        self._file_size = 0
        self._file_marked = 0

    # -- recovery -----------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, segment_size: int = DEFAULT_SEGMENT_SIZE,
             max_bytes: int | None = None, max_age_ms: int | None = None, *,
             fresh: bool = False, actions: FileActions | None = None) -> StreamLog:
        """The log of `directory` (created if missing), its index rebuilt from the segments.
        `fresh`: a stream just declared; whatever a crash left under its name is removed."""
        if fresh and directory.exists():  # left by a crash before its deletion
            shutil.rmtree(directory, ignore_errors=True)
        if fresh and actions is not None:  # followers too (whatever a race left there)
            actions.delete(directory)
        stream = cls(directory, segment_size, max_bytes, max_age_ms, actions)
        directory.mkdir(parents=True, exist_ok=True)
        names = sorted(path for path in directory.iterdir() if path.suffix == ".seg")
        last_chunk: int | None = None
        for number, path in enumerate(names):
            last = number == len(names) - 1
            segment, chunk = _scan_segment(path, check=last)
            if segment is None:
                if last:  # torn as it was created: nothing in it was ever confirmed
                    with contextlib.suppress(OSError):
                        path.unlink()
                    continue
                log.warning("stream segment %s is unreadable; skipped", path)
                continue
            if segment.end == SEGMENT_HEAD.size and last and stream.segments:
                path.unlink()  # created, then cut before its first record reached the disk
                continue
            stream.segments.append(segment)
            stream.stored_bytes += segment.end - SEGMENT_HEAD.size
            if last:
                last_chunk = chunk
        if stream.segments:
            last = stream.segments[-1]
            stream.next_offset = stream.committed = _count_end(last, directory)
            stream.last_chunk = last.first_offset if last_chunk is None else last_chunk
            stream._file_first, stream._file_size = last.first_offset, last.end
            stream._file_marked = last.marks[-1] if len(last.marks) else SEGMENT_HEAD.size
        elif not stream.segments:
            stream.next_offset = stream.committed = 0
        return stream

    # -- event loop side ------------------------------------------------------------------

    @property
    def first_offset(self) -> int:
        return self.segments[0].first_offset if self.segments else self.committed

    @property
    def message_count(self) -> int:
        return self.committed - self.first_offset

    @property
    def disk_bytes(self) -> int:
        return self.stored_bytes + SEGMENT_HEAD.size * len(self.segments)

    @property
    def index_bytes(self) -> int:
        """Roughly what the index holds in memory."""
        return sum(120 + segment.marks.itemsize * len(segment.marks)
                   for segment in self.segments)

    def append(self, route: bytes, props: bytes, body: bytes, timestamp_ms: int) -> int:
        """Queue a record for the next group commit; its offset."""
        offset = self.next_offset
        self.next_offset = offset + 1
        self._pending.append((offset, timestamp_ms, route, props, body))
        return offset

    def remove(self) -> None:
        """The stream is deleted: its directory is renamed aside at once (a stream declared
        again under the same name starts empty) and removed with the next batch."""
        self.removed = self._remove_all = True
        self._pending.clear()
        trash = self.directory.with_name(f"{self.directory.name}.deleted-{id(self):x}")
        if self.actions is not None:  # a follower need not keep it aside
            self.actions.delete(self.directory)
        with contextlib.suppress(OSError):
            os.rename(self.directory, trash)
            self.directory = trash

    def has_pending(self) -> bool:
        return bool(self._pending or self._deletes or self._remove_all)

    def take(self) -> _Batch | None:
        """The write-ahead log's batch starts: what it writes for this stream."""
        if not self.has_pending():
            return None
        batch = _Batch(self._pending, self._deletes, self._remove_all)
        self._pending, self._deletes, self._remove_all = [], [], False
        return batch

    def written(self, batch: _Batch) -> bool:
        """The batch is durable: the records become readable. True if segments were created
        (retention has then been applied)."""
        if self.removed or not batch.records:
            return False
        by_first = {segment.first_offset: segment for segment in self.segments}
        for first, timestamp in batch.created:
            segment = by_first[first] = Segment(first, timestamp)
            self.segments.append(segment)
        for first, offset, timestamp, position in batch.marks:
            by_first[first].mark(offset, timestamp, position)
        for first, (end, newest) in batch.ends.items():
            segment = by_first[first]
            self.stored_bytes += end - segment.end
            segment.end, segment.last_ts = end, newest
        self.committed = batch.records[-1][0] + 1
        self.last_chunk = batch.records[0][0]
        if batch.created:
            self.apply_retention()
        return bool(batch.created)

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Drop whole old segments past max_bytes or max_age (never the newest); how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        dropped = 0
        segments = self.segments
        while len(segments) > 1:
            oldest = segments[0]
            too_big = self.max_bytes is not None and self.disk_bytes > self.max_bytes
            too_old = self.max_age_ms is not None and oldest.last_ts < now_ms - self.max_age_ms
            if not (too_big or too_old):
                break
            segments.pop(0)
            self.stored_bytes -= oldest.end - SEGMENT_HEAD.size
            self._deletes.append(oldest.first_offset)
            dropped += 1
        return dropped

    def segment_at(self, offset: int) -> Segment:
        """The segment holding `offset` (the first one below the first offset)."""
        firsts = [segment.first_offset for segment in self.segments]
        return self.segments[max(bisect.bisect_right(firsts, offset) - 1, 0)]

    def segment_at_time(self, timestamp: int) -> Segment:
        """The last segment that starts at or before `timestamp` (the first one if none)."""
        chosen = self.segments[0]
        for segment in self.segments:
            if segment.first_ts > timestamp:
                break
            chosen = segment
        return chosen

    def following(self, segment: Segment) -> Segment | None:
        """The segment after `segment`, if it is still indexed and not the newest."""
        for index, candidate in enumerate(self.segments):
            if candidate is segment:
                return self.segments[index + 1] if index + 1 < len(self.segments) else None
        return None

    # -- writer thread --------------------------------------------------------------------

    def write(self, batch: _Batch) -> None:
        """Write and fsync a batch. On failure the open segment is cut back and the writer's
        state restored, so that the retry writes the same bytes at the same places."""
        if batch.done:
            return
        if batch.remove_all:
            self._close_file()
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.actions is not None:
                self.actions.delete(self.directory)
            batch.done = True
            return
        saved = (self._file_first, self._file_size, self._file_marked)
        created_paths: list[Path] = []
        batch.created.clear()
        batch.marks.clear()
        batch.ends.clear()
        try:
            self._write_records(batch, created_paths)
        except BaseException:
            self._close_file()
            for path in created_paths:
                with contextlib.suppress(OSError):
                    path.unlink()
                if self.actions is not None:
                    self.actions.delete(path)
            self._file_first, self._file_size, self._file_marked = saved
            if saved[0] >= 0 and not created_paths:
                path = segment_file(self.directory, saved[0])
                with contextlib.suppress(OSError):
                    os.truncate(path, saved[1])
                if self.actions is not None:
                    self.actions.truncate(path, saved[1])
            raise
        for first in batch.deletes:
            with contextlib.suppress(FileNotFoundError):
                os.remove(segment_file(self.directory, first))
            if self.actions is not None:
                self.actions.delete(segment_file(self.directory, first))
        if batch.deletes:
            fsync_directory(self.directory)
        batch.done = True

    def _write_records(self, batch: _Batch, created_paths: list[Path]) -> None:
        if self._file is None and self._file_first >= 0:
            self._file = open(segment_file(self.directory, self._file_first), "r+b")  # noqa: SIM115
            iostats.seek(self._file, self._file_size)
        parts: list[bytes] = []
        flags = CHUNK_START
        newest = 0
        for offset, timestamp, route, props, body in batch.records:
            size = RECORD_OVERHEAD + len(route) + len(props) + len(body)
            if self._file is None or (
                self._file_size + size > self.segment_size
                and self._file_size > SEGMENT_HEAD.size
            ):
                if self._file is not None:
                    if parts:  # this batch's first records went to the segment now closed
                        self._write_out(b"".join(parts))
                        parts.clear()
                        batch.ends[self._file_first] = (self._file_size, newest)
                    self._close_file()
                path = segment_file(self.directory, offset)
                self._file = open(path, "w+b")  # noqa: SIM115 - kept open while written
                created_paths.append(path)
                if self.actions is not None:
                    self.actions.truncate(path, 0)
                self._file_first, self._file_size = offset, SEGMENT_HEAD.size
                parts.append(SEGMENT_HEAD.pack(MAGIC, VERSION, 0, offset))
                batch.created.append((offset, timestamp))
                batch.marks.append((offset, offset, timestamp, SEGMENT_HEAD.size))
                self._file_marked = SEGMENT_HEAD.size
            elif self._file_size - self._file_marked >= MARK_EVERY:
                batch.marks.append((self._file_first, offset, timestamp, self._file_size))
                self._file_marked = self._file_size
            fixed = FIXED.pack(offset, timestamp, flags, len(route), len(props))
            crc = zlib.crc32(body, zlib.crc32(props, zlib.crc32(route, zlib.crc32(fixed))))
            parts.append(HEAD.pack(size - HEAD.size, crc) + fixed + route + props)
            parts.append(body)
            flags = 0
            newest = timestamp
            self._file_size += size
        file = self._file
        self._write_out(b"".join(parts))
        iostats.sync_file(file)
        batch.ends[self._file_first] = (self._file_size, newest)
        if created_paths:
            fsync_directory(self.directory)

    def _write_out(self, data: bytes) -> None:
        """Append to the open segment (and record it for replication)."""
        if self.actions is not None:
            self.actions.append(segment_file(self.directory, self._file_first),
                                self._file.tell(), data)
        iostats.write(self._file, data)

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                iostats.sync_file(file)
            file.close()

    def close(self) -> None:
        """After the last batch (the write-ahead log's thread has stopped)."""
        self._close_file()


def remove_orphans(root: Path, keep: set[Path]) -> list[Path]:
    """Delete the stream directories under `root` that no stream owns (a stream deleted just
    before a crash, renamed aside or not); the ones removed (blocking: call it in a thread)."""
    if not root.is_dir():
        return []
    removed = [path for path in root.iterdir() if path not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# -- reading (blocking: reader threads) ---------------------------------------------------


def read(directory: Path, first_offset: int, position: int, end: int, min_offset: int,
         min_ts: int, max_records: int, max_bytes: int) -> tuple[list[Record], int]:
    """Records of one segment from `position` up to `end`, skipping those below `min_offset`
    or older than `min_ts` (until the first one that is neither); (records, next position).
    FileNotFoundError if retention deleted the segment meanwhile."""
    records: list[Record] = []
    skipping = min_offset > 0 or min_ts > 0
    with open(segment_file(directory, first_offset), "rb") as file:
        IO_STATS.reopen()
        while position < end and len(records) < max_records and max_bytes > 0:
            want = min(end - position, max(max_bytes, 64 * 1024))
            iostats.seek(file, position)
            data = iostats.read(file, want)
            at = 0
            while at + RECORD_OVERHEAD <= len(data) and len(records) < max_records:
                length = HEAD.unpack_from(data, at)[0]
                stop = at + HEAD.size + length
                if stop > len(data):
                    if at == 0:  # one record bigger than what was read: read it whole
                        iostats.seek(file, position)
                        data = iostats.read(file, HEAD.size + length)
                        stop = HEAD.size + length
                    else:
                        break
                offset, timestamp, _, route_length, props_length = FIXED.unpack_from(
                    data, at + HEAD.size)
                if skipping and (offset < min_offset or timestamp < min_ts):
                    at = stop
                    continue
                skipping = False
                start = at + RECORD_OVERHEAD
                props_start = start + route_length
                body_start = props_start + props_length
                records.append((offset, timestamp, data[start:props_start],
                                data[props_start:body_start], data[body_start:stop]))
                max_bytes -= stop - at
                at = stop
            if at == 0:
                break
            position += at
    return records, position


def _scan_segment(path: Path, check: bool) -> tuple[Segment | None, int | None]:
    """Index a segment by reading its record heads; with `check`, verify every CRC and cut a
    torn tail off. (segment or None if unreadable, first offset of its last chunk)."""
    with open(path, "r+b" if check else "rb") as file:
        head = file.read(SEGMENT_HEAD.size)
        if len(head) < SEGMENT_HEAD.size:
            return None, None
        magic, version, _, first = SEGMENT_HEAD.unpack(head)
        if magic != MAGIC or version != VERSION:
            return None, None
        size = os.fstat(file.fileno()).st_size
        segment = Segment(first, 0)
        position = SEGMENT_HEAD.size
        marked = -MARK_EVERY
        chunk: int | None = None
        while position + RECORD_OVERHEAD <= size:
            file.seek(position)
            fixed = file.read(RECORD_OVERHEAD)
            length, crc = HEAD.unpack_from(fixed)
            stop = position + HEAD.size + length
            if length < FIXED.size or stop > size:
                break
            offset, timestamp, flags, _, _ = FIXED.unpack_from(fixed, HEAD.size)
            if check:
                file.seek(position + HEAD.size)
                if zlib.crc32(file.read(length)) != crc:
                    break
            if position == SEGMENT_HEAD.size:
                segment.first_ts = timestamp
            if position - marked >= MARK_EVERY:
                segment.mark(offset, timestamp, position)
                marked = position
            if flags & CHUNK_START:
                chunk = offset
            segment.last_ts = timestamp
            position = stop
        if position < size:
            if check:
                log.warning("stream segment %s: torn tail cut at byte %d of %d",
                            path, position, size)
                file.truncate(position)
                iostats.fsync(file.fileno())
            else:
                log.warning("stream segment %s: unreadable after byte %d", path, position)
        segment.end = position
    return segment, chunk


def _count_end(segment: Segment, directory: Path) -> int:
    """The offset after the last record of `segment` (its first offset if it is empty)."""
    position = segment.place(None, None) if len(segment.marks) else SEGMENT_HEAD.size
    offset = segment.first_offset
    with open(segment_file(directory, segment.first_offset), "rb") as file:
        while position < segment.end:
            file.seek(position)
            length = HEAD.unpack(file.read(HEAD.size))[0]
            offset = FIXED.unpack(file.read(FIXED.size))[0] + 1
            position += HEAD.size + length
    return offset
