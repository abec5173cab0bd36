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
import logging
import os
import shutil
from array import array
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.codec import shortstr
from storage.metas import MetaTable
from storage.records import published_ms

if TYPE_CHECKING:
    from broker.message import Message
    from storage.catalog import Rows

log = logging.getLogger(__name__)


def page_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}.pages"


class PageStore:
    def __init__(self, directory: Path, file_size: int) -> None:
        shutil.rmtree(directory, ignore_errors=True)  # pages of an earlier run: never read
        directory.mkdir(parents=True)
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
        # Bodies to write, in file order, and their rows; the objects of rows not written yet.
        self._bodies: list[tuple[int, int, bytes]] = []
        self._batch: list[tuple[int, Message]] = []
        self._doomed: list[int] = []  # files to delete once the writes before are done
        self._unwritten: dict[int, Message] = {}
        self._writing = False
        self._flush_soon = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-pager")
        self.failed: BaseException | None = None  # a write failed: page nothing more
        self.bytes_written = 0
        self.lost = 0  # rows whose body could not be read back (logged)

    # -- paging out ------------------------------------------------------------------------

    def add(self, message: Message) -> int | None:
        """Page a message out: returns its row, or None if the store cannot take it (a write
        failed before; the caller keeps the object)."""
        if self.failed is not None:
            return None
        body = message.body
        size = len(body)
        if self._offset and self._offset + size > self.file_size:
            self._roll()
        number, offset = self._file, self._offset
        self._offset += size
        self._live[number] += 1
        meta = self.metas.add(message.exchange, message.routing_key, message.props_raw,
                              message.expiration)
        published, persistent = published_ms(message.timestamp), 1 if message.persistent else 0
        free = self._free_rows
        if free:
            row = free.pop()
            self._files[row] = number
            self._offsets[row] = offset
            self._sizes[row] = size
            self._published[row] = published
            self._metas[row] = meta
            self._persistent[row] = persistent
        else:
            row = len(self._files)
            self._files.append(number)
            self._offsets.append(offset)
            self._sizes.append(size)
            self._published.append(published)
            self._metas.append(meta)
            self._persistent.append(persistent)
        self.count += 1
        self._bodies.append((number, offset, body))
        self._batch.append((row, message))
        self._unwritten[row] = message
        self._schedule()
        return row

    def _roll(self) -> None:
        full = self._file
        self._file += 1
        self._offset = 0
        self._live[self._file] = 0
        if not self._live[full]:
            self._delete(full)

    def _delete(self, number: int) -> None:
        del self._live[number]
        self._doomed.append(number)
        self._schedule()

    def _schedule(self) -> None:
        if not self._flush_soon and not self._writing:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._writing or not (self._bodies or self._doomed):
            return
        bodies, batch, doomed = self._bodies, self._batch, self._doomed
        self._bodies, self._batch, self._doomed = [], [], []
        self._writing = True
        future = asyncio.get_running_loop().run_in_executor(
            self._writer, _write, self.directory, bodies, doomed)
        future.add_done_callback(lambda done: self._written(done, batch))

    def _written(self, done: asyncio.Future, batch: list[tuple[int, Message]]) -> None:
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
        unwritten = self._unwritten
        for row, message in batch:
            if unwritten.get(row) is message:
                del unwritten[row]
        if self._bodies or self._doomed:
            self._flush()

    # -- back in ---------------------------------------------------------------------------

    def thaw(self, rows: Rows) -> list[Message | None]:
        """The messages of rows that reached the head of their queue, bodies read back
        (None for a row whose body could not be read: logged and counted as lost)."""
        from broker.message import Message

        logged, table, expirations = Message.logged, self.metas.table, self.metas.expirations
        files, offsets, sizes, metas, published, persistent = (
            self._files, self._offsets, self._sizes, self._metas, self._published,
            self._persistent)
        unwritten = self._unwritten
        messages: list[Message | None] = []
        descriptors: dict[int, int] = {}
        try:
            for row in rows:
                message = unwritten.pop(row, None) if unwritten else None
                if message is None:
                    meta = metas[row]
                    exchange, routing_key, props = table[meta]
                    size = sizes[row]
                    body = self._read(descriptors, files[row], offsets[row], size)
                    if body is not None:
                        message = logged(exchange, routing_key, self._route(exchange, routing_key),
                                         props, size, published[row] / 1000,
                                         expirations[meta], 0, (0, 0), 0, False)
                        message.body = body
                        message.persistent = persistent[row] == 1
                messages.append(message)
                self._release(row)
        finally:
            for descriptor in descriptors.values():
                os.close(descriptor)
            self._reset_if_empty()
        return messages

    def _read(self, descriptors: dict[int, int], number: int, offset: int,
              size: int) -> bytes | None:
        try:
            descriptor = descriptors.get(number)
            if descriptor is None:
                descriptor = descriptors[number] = os.open(page_path(self.directory, number),
                                                           os.O_RDONLY)
            body = os.pread(descriptor, size, offset)
            if len(body) != size:
                raise OSError(f"short read at offset {offset}")
        except OSError as error:
            self.lost += 1
            log.error("page store: a paged-out message is lost, its body could not be read "
                      "from %s: %s", page_path(self.directory, number), error)
            return None
        return body

    def drop(self, runs: Iterable[Rows]) -> None:
        """Rows that leave without being thawed (purge, queue deleted)."""
        unwritten = self._unwritten
        for rows in runs:
            for row in rows:
                if unwritten:
                    unwritten.pop(row, None)
                self._release(row)
        self._reset_if_empty()

    def _release(self, row: int) -> None:
        self.count -= 1
        self._free_rows.append(row)
        self.metas.release(self._metas[row])
        number = self._files[row]
        self._live[number] -= 1
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
        self._writer.shutdown(wait=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def _write(directory: Path, bodies: list[tuple[int, int, bytes]], doomed: list[int]) -> int:
    """Write bodies (in file order, each file's contiguous), then delete the doomed files."""
    written = 0
    start = 0
    while start < len(bodies):
        number, offset, _ = bodies[start]
        end = start
        while end < len(bodies) and bodies[end][0] == number:
            end += 1
        data = b"".join(body for _, _, body in bodies[start:end])
        descriptor = os.open(page_path(directory, number), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                done = os.pwrite(descriptor, view, offset)
                view, offset = view[done:], offset + done
        finally:
            os.close(descriptor)
        written += len(data)
        start = end
    for number in doomed:
        try:
            os.unlink(page_path(directory, number))
        except FileNotFoundError:
            pass
    return written
