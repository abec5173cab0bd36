"""The page store: the bodies of transient messages (and of persistent ones in non-durable
queues) far from the head of a long queue, written to files under `data_dir/transient` so that
a backlog of them grows with the disk rather than the RAM. Nothing there outlives the broker:
the directory is emptied at start-up and removed at a clean stop, and nothing is fsynced.

A paged message is a row of parallel arrays (where its body is, its size, publication time,
meta, delivery mode: about 30 bytes) that the queue holds in a `ColdRun`; its object is kept
only until its body is written. Bodies are appended to the current file in memory order and
written by one writer thread, a batch per write (what arrived while the last write ran). When
the queue reaches a run, `thaw` makes its rows messages again, bodies read back at once
(recently written pages are usually still in the page cache). A file is deleted once none of
its rows is left (thawed, purged or deleted with its queue).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import os
import shutil
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.codec import shortstr
from storage import iostats
from storage.iostats import IO_STATS
from storage.metas import MetaTable
from storage.records import published_ms

if TYPE_CHECKING:
    from storage.catalog import Rows
    from storage.holders import MakeLoggedMessage, StoredMessage

log = logging.getLogger(__name__)


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_trim()
_TRIM_EVERY = 1.0  # seconds
_trimmed_at = 0.0


def _give_back_memory() -> None:
    """Let the C allocator return the pages the paged-out bodies held to the system (glibc
    keeps freed memory in the middle of its heap otherwise), at most once a second."""
    global _trimmed_at
    now = time.monotonic()
    if _malloc_trim is not None and now - _trimmed_at >= _TRIM_EVERY:
        _trimmed_at = now
        _malloc_trim(0)


def page_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}.pages"


class PageStore:
    def __init__(self, directory: Path, file_size: int, make_message: MakeLoggedMessage) -> None:
        shutil.rmtree(directory, ignore_errors=True)  # pages of an earlier run: never read
        directory.mkdir(parents=True)
        self.make_message = make_message  # the broker's: a message back from a row
        self.directory = directory
        self.file_size = file_size
        # One entry per row; a row left (thawed or dropped) is reused by the next message.
        self._files = array("I")
        self._offsets = array("q")
        self._sizes = array("I")
        self._published = array("q")  # ms since the epoch
        self._metas = array("I")
        self._persistent = array("B")
        self._free_rows = array("I")
        self.metas = MetaTable()
        self._route_bytes: dict[tuple[str, str], bytes] = {}
        self.count = 0  # rows held
        # Files: the one being filled, where its next body goes, rows held per file.
        self._file = 1
        self._offset = 0
        self._live: dict[int, int] = {1: 0}
        self._live_bytes: dict[int, int] = {1: 0}
        self.live_bytes = 0
        self._compacting: set[int] = set()  # files whose rows are being copied forward
        # Bodies to write, in file order, and their (row, object, file, offset); the objects of
        # rows not written yet.
        self._bodies: list[tuple[int, int, bytes]] = []
        self._batch: list[tuple[int, StoredMessage, int, int]] = []
        # Compaction: (from file, offset, size, to file, offset) copies, and the rows moved.
        self._copies: list[tuple[int, int, int, int, int]] = []
        self._moves: list[tuple[int, int, int, int, int, int]] = []
        self._doomed: list[int] = []  # files to delete once the writes before are done
        self._unwritten: dict[int, StoredMessage] = {}
        self._writing = False
        self._flush_soon = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-pager")
        self.failed: BaseException | None = None  # a write failed: page nothing more
        self._closed = False
        self.bytes_written = 0
        self.lost = 0  # rows whose body could not be read back (logged)
        self.lost_bytes = 0  # and the size of their bodies

    # -- paging out ------------------------------------------------------------------------

    def add(self, messages: list[StoredMessage]) -> array | None:
        """Page messages out (in queue order): returns their rows, or None if the store
        cannot take them (a write failed before; the caller keeps the objects). Done a batch
        at a time, column by column: much cheaper per message than one at a time."""
        if self.failed is not None or self._closed or not messages:
            return None
        bodies = [message.body for message in messages]
        sizes = [len(body) for body in bodies]
        numbers, offsets = [], []
        limit, count, placed = self.file_size, 0, 0
        for size in sizes:
            if self._offset and self._offset + size > limit:
                self._live[self._file] += count  # (counted before the file is left)
                self._live_bytes[self._file] += placed
                self.live_bytes += placed
                count = placed = 0
                self._roll()  # (which may compact: placing other bodies first)
            numbers.append(self._file)
            offsets.append(self._offset)
            self._offset += size
            count += 1
            placed += size
        self._live[self._file] += count
        self._live_bytes[self._file] += placed
        self.live_bytes += placed
        metas = self._meta_indexes(messages)
        published = [published_ms(message.timestamp) for message in messages]
        persistent = [1 if message.persistent else 0 for message in messages]
        rows = self._allocate(numbers, offsets, sizes, published, metas, persistent)
        self.count += len(rows)
        self._bodies.extend(zip(numbers, offsets, bodies, strict=True))
        self._batch.extend(zip(rows, messages, numbers, offsets, strict=True))
        self._unwritten.update(zip(rows, messages, strict=True))
        self._schedule()
        return rows

    def _meta_indexes(self, messages: list[StoredMessage]) -> list[int]:
        """Each message's meta (neighbours mostly share the same property bytes object)."""
        table = self.metas
        indexes = []
        last_props = last_route = None
        last = -1
        for message in messages:
            props, route = message.props_raw, message.route_bytes
            if props is not last_props or route is not last_route:
                last_props, last_route = props, route
                last = table.add(message.exchange, message.routing_key, props,
                                 message.expiration, 0)
            indexes.append(last)
        if indexes[0] == indexes[-1] and len(set(indexes)) == 1:
            table.rows[last] += len(indexes)
        else:
            for index, count in Counter(indexes).items():
                table.rows[index] += count
        return indexes

    def _allocate(self, *columns: list[int]) -> array:
        """Rows for new messages (`columns` in the order of `_columns`): places left by
        others first, then new ones at the end."""
        arrays = self._columns()
        free = self._free_rows
        reused = min(len(free), len(columns[0]))
        rows = array("I")
        if reused:
            rows = free[len(free) - reused:]
            del free[len(free) - reused:]
            for column, values in zip(arrays, columns, strict=True):
                for row, value in zip(rows, values, strict=False):
                    column[row] = value
        if reused < len(columns[0]):
            first = len(arrays[0])
            for column, values in zip(arrays, columns, strict=True):
                column.extend(values[reused:])
            rows.extend(range(first, len(arrays[0])))
        return rows

    def _columns(self) -> tuple[array, ...]:
        return (self._files, self._offsets, self._sizes, self._published, self._metas,
                self._persistent)

    def _place(self, size: int) -> tuple[int, int]:
        """Where the next body of `size` bytes goes (counted live there)."""
        if self._offset and self._offset + size > self.file_size:
            self._roll()
        number, offset = self._file, self._offset
        self._offset += size
        self._live[number] += 1
        self._live_bytes[number] += size
        self.live_bytes += size
        return number, offset

    def _roll(self) -> None:
        full = self._file
        self._file += 1
        self._offset = 0
        self._live[self._file] = 0
        self._live_bytes[self._file] = 0
        if not self._live[full]:
            self._delete(full)
        self._compact()

    def _delete(self, number: int) -> None:
        if number in self._live:
            del self._live[number], self._live_bytes[number]
            self._doomed.append(number)
            self._schedule()

    def _compact(self) -> None:
        """While the files hold more than twice the live bytes plus one file, copy the rows of
        the oldest files forward (as the log does): a few long-lived messages must not keep
        every file they sit in. A queue drained from its head empties its files by itself."""
        for number in sorted(self._live):
            kept = len(self._live) - len(self._compacting)
            if number == self._file or kept * self.file_size <= (
                2 * self.live_bytes + self.file_size
            ):
                return
            if number in self._compacting:
                continue
            self._compacting.add(number)
            files, offsets, sizes = self._files, self._offsets, self._sizes
            for row in itertools.compress(range(len(files)), map(number.__eq__, files)):
                size = sizes[row]
                # (`_place` may roll over, and compact again: this file is marked already.)
                target, at = self._place(size)
                self._copies.append((number, offsets[row], size, target, at))
                self._moves.append((row, number, offsets[row], target, at, size))
            self._moves.append((-1, number, 0, 0, 0, 0))  # the file is done
            self._schedule()

    def _moved(self, moves: list[tuple[int, int, int, int, int, int]]) -> None:
        """Copies made by compaction are written: rows still where they were copied from
        now read the copy; the old files go."""
        files, offsets = self._files, self._offsets
        for row, number, offset, target, at, size in moves:
            if row < 0:
                self._compacting.discard(number)
                if not self._live.get(number, 1):
                    self._delete(number)
                continue
            if row < len(files) and files[row] == number and offsets[row] == offset:
                files[row], offsets[row] = target, at
                moved_from = number
            else:  # the row left meanwhile: its copy is dead
                moved_from = target
            self._live[moved_from] -= 1
            self._live_bytes[moved_from] -= size
            self.live_bytes -= size
            if not self._live[moved_from] and moved_from != self._file:
                self._delete(moved_from)

    def _schedule(self) -> None:
        if not self._flush_soon and not self._writing:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._closed or self._writing or not (self._bodies or self._copies or self._doomed):
            return
        bodies, batch, copies, moves, doomed = (self._bodies, self._batch, self._copies,
                                                self._moves, self._doomed)
        self._bodies, self._batch, self._copies, self._moves, self._doomed = [], [], [], [], []
        self._writing = True
        future = asyncio.get_running_loop().run_in_executor(
            self._writer, _write, self.directory, bodies, copies, doomed)
        future.add_done_callback(lambda done: self._written(done, batch, moves))

    def _written(self, done: asyncio.Future,
                 batch: list[tuple[int, StoredMessage, int, int]],
                 moves: list[tuple[int, int, int, int, int, int]]) -> None:
        self._writing = False
        error = done.exception()
        if error is not None:
            # The objects stay (nothing is lost); later messages are not paged out.
            if self.failed is None:
                log.error("page store: writing to %s failed (%s); transient messages stay in "
                          "memory from now on", self.directory, error)
            self.failed = error
            return
        self.bytes_written += done.result()
        # A row is written if it still holds that message at that place: a queue may have
        # thawed it (its object used) and paged the same message out again, into the same
        # freed row, at a place a later write has not reached yet.
        unwritten, files, offsets = self._unwritten, self._files, self._offsets
        for row, message, number, offset in batch:
            if (unwritten.get(row) is message and files[row] == number
                    and offsets[row] == offset):
                del unwritten[row]
        del batch[:]  # the objects go now
        _give_back_memory()
        if moves:
            self._moved(moves)
        if self._bodies or self._copies or self._doomed:
            self._flush()

    # -- back in ---------------------------------------------------------------------------

    def thaw(self, rows: Rows) -> list[StoredMessage | None]:
        """The messages of rows that reached the head of their queue, bodies read back, a
        stretch of neighbouring bodies at a time (None for a row whose body could not be
        read: logged and counted as lost)."""
        logged, table, expirations = self.make_message, self.metas.table, self.metas.expirations
        files, offsets, sizes, metas, published, persistent = (
            self._files, self._offsets, self._sizes, self._metas, self._published,
            self._persistent)
        unwritten = self._unwritten
        messages: list[StoredMessage | None] = []
        to_read: list[tuple[int, int, int]] = []  # (position in messages, row, stretch)
        stretches: list[list[int]] = []  # [file, first offset, end offset]
        for row in rows:
            message = unwritten.pop(row, None) if unwritten else None
            if message is None:
                number, offset = files[row], offsets[row]
                last = stretches[-1] if stretches else None
                if last is not None and last[0] == number and last[2] == offset:
                    last[2] = offset + sizes[row]
                else:
                    stretches.append([number, offset, offset + sizes[row]])
                to_read.append((len(messages), row, len(stretches) - 1))
            messages.append(message)
        data = [self._read(*stretch) for stretch in stretches]
        IO_STATS.bodies(read=sum(data[stretch] is not None for _, _, stretch in to_read))
        for position, row, stretch in to_read:
            chunk = data[stretch]
            if chunk is None:
                self.lost += 1
                self.lost_bytes += sizes[row]
                continue
            meta, size = metas[row], sizes[row]
            exchange, routing_key, props = table[meta]
            at = offsets[row] - stretches[stretch][1]
            message = logged(exchange, routing_key, self._route(exchange, routing_key), props,
                             size, published[row] / 1000, expirations[meta], None)
            message.body = chunk[at:at + size]
            message.persistent = persistent[row] == 1
            messages[position] = message
        self._release(rows)
        self._reset_if_empty()
        return messages

    def _read(self, number: int, offset: int, end: int) -> bytes | None:
        path = page_path(self.directory, number)
        try:
            descriptor = os.open(path, os.O_RDONLY)
            IO_STATS.reopen()
            try:
                data = iostats.pread(descriptor, end - offset, offset)
            finally:
                os.close(descriptor)
            if len(data) != end - offset:
                raise OSError(f"short read at offset {offset}")
        except OSError as error:
            log.error("page store: paged-out messages are lost, their bodies could not be read "
                      "from %s: %s", path, error)
            return None
        return data

    def drop(self, runs: Iterable[Rows]) -> None:
        """Rows that leave without being thawed (purge, queue deleted)."""
        unwritten = self._unwritten
        for rows in runs:
            if unwritten:
                for row in rows:
                    unwritten.pop(row, None)
            self._release(rows)
        self._reset_if_empty()

    def _release(self, rows: Rows) -> None:
        """Rows left (thawed or dropped): their places, metas and file space can be reused."""
        files, sizes = self._files, self._sizes
        self.count -= len(rows)
        self._free_rows.extend(rows)
        metas = [self._metas[row] for row in rows]
        if len(set(metas)) == 1:
            self.metas.release(metas[0], len(metas))
        else:
            for index, count in Counter(metas).items():
                self.metas.release(index, count)
        numbers = [files[row] for row in rows]
        if numbers and numbers[0] == numbers[-1] and len(set(numbers)) == 1:
            gone = {numbers[0]: (len(rows), sum([sizes[row] for row in rows]))}
        else:
            gone = {}
            for number, row in zip(numbers, rows, strict=True):
                count, size = gone.get(number, (0, 0))
                gone[number] = (count + 1, size + sizes[row])
        for row in rows:
            files[row] = 0  # (files are numbered from 1) no file holds it
        for number, (count, size) in gone.items():
            self._live[number] -= count
            self._live_bytes[number] -= size
            self.live_bytes -= size
            if not self._live[number] and number != self._file:
                self._delete(number)

    def _reset_if_empty(self) -> None:
        if not self.count:  # nothing paged any more: give the arrays' memory back
            for name in ("_files", "_offsets", "_sizes", "_published", "_metas",
                         "_persistent", "_free_rows"):
                setattr(self, name, array(getattr(self, name).typecode))
            self.metas = MetaTable()

    def _route(self, exchange: str, routing_key: str) -> bytes:
        route_bytes = self._route_bytes.get((exchange, routing_key))
        if route_bytes is None:
            if len(self._route_bytes) >= 10_000:
                self._route_bytes.clear()
            route_bytes = shortstr(exchange) + shortstr(routing_key)
            self._route_bytes[(exchange, routing_key)] = route_bytes
        return route_bytes

    def close(self) -> None:
        """At a clean stop: nothing paged is needed any more."""
        self._closed = True
        self._writer.shutdown(wait=True)
        shutil.rmtree(self.directory, ignore_errors=True)




def _write(directory: Path, bodies: list[tuple[int, int, bytes]],
           copies: list[tuple[int, int, int, int, int]], doomed: list[int]) -> int:
    """Write bodies (in file order; neighbours in one write, handed to the kernel as they are,
    never joined: that would double, for a moment, the memory of a batch), then make
    the copies of compaction (from files written before), then delete the doomed files."""
    written = 0
    start = 0
    while start < len(bodies):
        number, offset, body = bodies[start]
        end, next_offset = start + 1, offset + len(body)
        while end < len(bodies) and bodies[end][0] == number and bodies[end][1] == next_offset:
            next_offset += len(bodies[end][2])
            end += 1
        _write_at(directory, number, offset, [body for _, _, body in bodies[start:end]])
        written += next_offset - offset
        start = end
    for source, offset, size, target, at in copies:
        with open(page_path(directory, source), "rb") as file:
            data = iostats.pread(file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{page_path(directory, source)}: short read at offset {offset}")
        _write_at(directory, target, at, [data])
        written += size
    IO_STATS.bodies(written=len(bodies))
    for number in doomed:
        try:
            os.unlink(page_path(directory, number))
        except FileNotFoundError:
            pass
    return written


_IOV_MAX = 1024  # buffers one pwritev takes (Linux's IOV_MAX)


def _write_at(directory: Path, number: int, offset: int, buffers: list[bytes]) -> None:
    """Write `buffers` one after another at `offset`, without joining them: paging out a long
    tail must not need a second copy of its bodies in memory."""
    descriptor = os.open(page_path(directory, number), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        pending: list[bytes | memoryview] = [buffer for buffer in buffers if buffer]
        first = 0  # pending[:first] are written
        while first < len(pending):
            done = iostats.pwritev(descriptor, pending[first:first + _IOV_MAX], offset)
            offset += done
            while done and done >= len(pending[first]):
                done -= len(pending[first])
                first += 1
            if done:  # a short write ended inside this buffer
                pending[first] = memoryview(pending[first])[done:]
    finally:
        os.close(descriptor)
