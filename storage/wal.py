"""The segmented write-ahead log: appends on the event loop, writes and fsyncs in one writer
thread (group commit: everything appended while one fsync runs shares the next one).

Each append returns a ticket; `when_durable(ticket, callback)` runs the callback on the event
loop once every record appended under that ticket is on disk. The definitions file is written
(atomically) by the same thread just before the records of a batch, so a queue is always on
disk before any message that was confirmed into it.

In a cluster the leader's log also records every change it makes to its files as file actions
(`actions`, storage/replication/files.py `ActionLog`) and has a `replicator` (the replication
leader): a written batch is then only `written_ticket`; its waiters run when the replicator
calls `release(ticket)` (the followers in sync have it too). Without a replicator (a single
node) a written batch is released at once and nothing is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from storage import iostats
from storage.iostats import IO_STATS
from storage.records import RECORD_HEAD, RECORD_HEAD_SIZE, SEGMENT_HEADER_SIZE, segment_header

log = logging.getLogger(__name__)

SEGMENT_SIZE = 64 * 1024 * 1024


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}.wal"


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        iostats.fsync(fd)
    finally:
        os.close(fd)


def read_at(directory: Path, segment: int, offset: int, length: int) -> bytes:
    """`length` bytes of a segment file from `offset` (blocking: call it in a thread; the
    segment is opened again for it: counted as a reopen)."""
    fd = os.open(segment_path(directory, segment), os.O_RDONLY)
    IO_STATS.reopen()
    try:
        data = iostats.pread(fd, length, offset)
    finally:
        os.close(fd)
    if len(data) != length:
        raise OSError(f"segment {segment}: short read at offset {offset}")
    return data


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, directory fsync: the file is either old or new, never torn."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    with open(temporary, "wb") as file:
        iostats.write(file, data)
        iostats.sync_file(file)
    os.replace(temporary, path)
    fsync_directory(path.parent)


@dataclass
class CopiedRecord:
    """A record rebuilt by the writer thread from a new prefix and a body read from another
    segment (compaction moving a message whose body is paged out)."""

    prefix: bytes
    source_segment: int
    source_offset: int
    length: int


class FileActions(Protocol):
    """Where the leader's log records what it does to its files (paths absolute, inside the
    data dir; storage/replication/files.py `ActionLog`)."""

    def append(self, path: Path, offset: int, data: bytes) -> None: ...
    def truncate(self, path: Path, size: int) -> None: ...
    def replace(self, path: Path, data: bytes) -> None: ...
    def delete(self, path: Path) -> None: ...


class Replicator(Protocol):
    """Holds a written batch's waiters back until the followers have it
    (storage/replication/leader.py `ReplicationLeader`), then calls `WriteAheadLog.release`."""

    def written(self, ticket: int) -> None: ...


class Companion(Protocol):
    """A log of its own whose writes go out with the write-ahead log's group commits (a
    stream, storage/streamlog.py): durable under the same tickets, fsynced by the same thread."""

    def take(self) -> Any | None:
        """Event loop, as a batch starts: what to write with it (None: nothing)."""
        ...

    def write(self, payload: Any) -> None:
        """Writer thread: write and fsync `payload`; on failure leave the files as they were
        (the payload is written again, first, with the next batch)."""
        ...

    def written(self, payload: Any) -> None:
        """Event loop: `payload` is durable."""
        ...


@dataclass
class _Batch:
    ticket: int
    # (segment number, record bytes or a record to rebuild)
    pieces: list[tuple[int, bytes | CopiedRecord]] = field(default_factory=list)
    definitions: bytes | None = None
    delete_segments: list[int] = field(default_factory=list)
    companions: list[tuple[Companion, Any]] = field(default_factory=list)
    bodies: int = 0  # publish records among the pieces (message bodies: disk_writes)


class WriteAheadLog:
    def __init__(self, directory: Path, first_segment: int, segment_size: int = SEGMENT_SIZE,
                 definitions_path: Path | None = None) -> None:
        self.directory = directory
        self.segment_size = segment_size
        self.definitions_path = definitions_path
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-wal")
        self._files: dict[int, object] = {}  # writer thread only
        self.segment = first_segment
        self.segment_bytes = SEGMENT_HEADER_SIZE
        self._batch = _Batch(ticket=1)
        self._failed_batch: _Batch | None = None  # written again, first, with the next batch
        self._batch.pieces.append((first_segment, segment_header(first_segment)))
        self._flushing = False
        self.written_ticket = 0  # on this node's disk
        self.durable_ticket = 0  # released: its waiters have run (= written without replicator)
        self.actions: FileActions | None = None  # recorded for replication (a cluster's leader)
        self.replicator: Replicator | None = None
        # Writer thread, once a batch's records are written and before they are fsynced: the
        # replicator ships them then, so that followers fsync while this node does.
        self.before_fsync: Callable[[], None] | None = None
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()
        self._companions: dict[Companion, None] = {}  # with writes waiting for the next batch
        self._definitions_source: Callable[[], bytes] | None = None
        self._definitions_ticket = 0  # the batch that took the last definitions change
        self._idle = asyncio.Event()
        self._idle.set()
        self.before_flush: Callable[[], None] | None = None  # last chance to append
        self.after_flush: Callable[[], None] | None = None
        self.fsyncs = 0
        self.bytes_written = 0
        self.failed: BaseException | None = None  # the last write failure, until one succeeds
        self.callback_failures = 0  # waiters and hooks that raised (logged, then skipped)
        # Told of a failed write (the error) and of the first success after one (None).
        self.on_write_result: Callable[[BaseException | None], None] | None = None

    # -- event loop side ------------------------------------------------------------------

    @property
    def pending_ticket(self) -> int:
        """The ticket records appended now will get."""
        return self._batch.ticket

    def append(self, record: bytes | CopiedRecord, body: bool = False) -> tuple[int, int, int]:
        """Queue a record for the next group commit: (ticket, segment number, offset);
        `body`: it is a message's publish record (counted as a body written, once on disk)."""
        size = (
            len(record) if isinstance(record, bytes)
            else RECORD_HEAD_SIZE + len(record.prefix) + record.length
        )
        if self.segment_bytes + size > self.segment_size and (
            self.segment_bytes > SEGMENT_HEADER_SIZE
        ):
            self.segment += 1
            self.segment_bytes = SEGMENT_HEADER_SIZE
            self._batch.pieces.append((self.segment, segment_header(self.segment)))
        offset = self.segment_bytes
        self._batch.pieces.append((self.segment, record))
        self._batch.bodies += body
        self.segment_bytes += size
        self.schedule()
        return self._batch.ticket, self.segment, offset

    def definitions_changed(self, source: Callable[[], bytes]) -> None:
        """Write the definitions file with the next batch (the snapshot is taken then)."""
        self._definitions_source = source
        self.schedule()

    def when_definitions_durable(self, callback: Callable[[], None]) -> None:
        """Call back once the definitions changed so far are durable (at once if none are
        waiting to be written or released)."""
        if self._definitions_source is not None:
            self.when_durable(self._batch.ticket, callback)
        else:  # the batch that took the last change may still be in flight (or held back)
            self.when_durable(self._definitions_ticket, callback)

    def delete_segment_when_durable(self, number: int) -> None:
        """Delete a segment after everything appended so far is durable."""
        self._batch.delete_segments.append(number)
        self.schedule()

    def companion_pending(self, companion: Companion) -> int:
        """`companion` has writes for the next batch; the ticket they will be durable under."""
        self._companions[companion] = None
        self.schedule()
        return self._batch.ticket

    def when_durable(self, ticket: int, callback: Callable[[], None]) -> None:
        if ticket <= self.durable_ticket:
            callback()
        else:
            self._waiters.append((ticket, callback))

    def schedule(self) -> None:
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            self._loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._run_hook(self.before_flush)
        batch = self._batch
        if self._failed_batch is not None:
            failed, self._failed_batch = self._failed_batch, None
            batch.pieces[:0] = failed.pieces
            batch.delete_segments[:0] = failed.delete_segments
            batch.companions[:0] = failed.companions
            batch.bodies += failed.bodies
            if batch.definitions is None:
                batch.definitions = failed.definitions
        if self._definitions_source is not None:
            source, self._definitions_source = self._definitions_source, None
            self._definitions_ticket = batch.ticket
            try:
                batch.definitions = source()
            except Exception:  # the records still go; the next definitions change retries
                self.callback_failures += 1
                log.exception("taking the definitions snapshot raised; not written this time")
        companions, self._companions = self._companions, {}
        for companion in companions:
            payload = companion.take()
            if payload is not None:
                batch.companions.append((companion, payload))
        if not batch.pieces and batch.definitions is None and not batch.delete_segments and (
            not batch.companions
        ):
            self._flushing = False
            self._idle.set()
            return
        self._batch = _Batch(ticket=batch.ticket + 1)
        future = self._loop.run_in_executor(self._executor, self._write, batch)
        future.add_done_callback(lambda done: self._flushed(batch, done))

    def _flushed(self, batch: _Batch, done: asyncio.Future) -> None:
        ticket = batch.ticket
        error = done.exception()
        if error is not None:
            # Nothing of the batch counts as written: its waiters wait for the retry.
            self._failed_batch = batch
            self.failed = error
            log.critical("write-ahead log write failed, confirms are withheld: %s", error)
            self._flushing = False
            self._idle.set()
            if self.on_write_result is not None:
                self._run_hook(lambda: self.on_write_result(error))
            return
        if self.failed is not None:
            self.failed = None
            if self.on_write_result is not None:
                self._run_hook(lambda: self.on_write_result(None))
        self.written_ticket = ticket
        failed = 0
        for companion, payload in batch.companions:
            try:
                companion.written(payload)
            except Exception:
                failed += 1
                log.exception("a companion log's callback raised; the log goes on")
        self.callback_failures += failed
        if self.replicator is None:
            self.release(ticket)
        else:
            self._run_hook(lambda: self.replicator.written(ticket))
        self._run_hook(self.after_flush)
        self._flushing = False
        if (self._batch.pieces or self._definitions_source or self._batch.delete_segments
                or self._companions):
            self.schedule()
        else:
            self._idle.set()

    def release(self, ticket: int) -> None:
        """Run the waiters of every ticket up to `ticket` (written, and in a cluster on the
        followers in sync)."""
        if ticket <= self.durable_ticket:
            return
        self.durable_ticket = ticket
        failed = 0
        waiters = self._waiters
        while waiters and waiters[0][0] <= ticket:
            callback = waiters.popleft()[1]
            try:
                callback()
            except Exception:  # one waiter's bug must not stop the others, nor the log
                failed += 1
                if failed == 1:
                    log.exception("a callback waiting for write-ahead log batch %d raised; "
                                  "the other waiters and later batches go on", ticket)
        self.callback_failures += failed

    def _run_hook(self, hook: Callable[[], None] | None) -> None:
        """Run before_flush or after_flush; if it raises, log it and go on: the batch is
        written (or released) all the same, and the log does not stay stuck mid-flush."""
        if hook is None:
            return
        try:
            hook()
        except Exception:
            self.callback_failures += 1
            log.exception("write-ahead log hook %s raised; the log goes on",
                          getattr(hook, "__name__", hook))

    async def drain(self) -> None:
        """Wait until everything appended so far is on disk."""
        self.schedule()
        await self._idle.wait()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for file in self._files.values():
            file.close()
        self._files.clear()

    # -- writer thread --------------------------------------------------------------------

    def _write(self, batch: _Batch) -> None:
        """Write and fsync a batch; if that fails, cut the segments back to where the batch
        began, so that a retry puts every record at the offset append() gave it."""
        starts: dict[int, int] = {}
        try:
            self._write_batch(batch, starts)
        except BaseException:
            for number, size in starts.items():
                file = self._files.pop(number, None)
                if file is not None:
                    with contextlib.suppress(OSError):
                        file.close()  # may fail again flushing what is buffered
                with contextlib.suppress(OSError):
                    os.truncate(segment_path(self.directory, number), size)
                    if self.actions is not None:
                        self.actions.truncate(segment_path(self.directory, number), size)
            raise

    def _write_batch(self, batch: _Batch, starts: dict[int, int]) -> None:
        if batch.definitions is not None and self.definitions_path is not None:
            write_atomically(self.definitions_path, batch.definitions)
            self.fsyncs += 2
            if self.actions is not None:
                self.actions.replace(self.definitions_path, batch.definitions)
        for companion, payload in batch.companions:
            companion.write(payload)
        touched = {}
        created = False
        ends: dict[int, int] = {}  # where the next piece of each segment goes
        paths: dict[int, Path] = {}
        started, size, written = time.perf_counter(), 0, set()
        for number, data in batch.pieces:
            if isinstance(data, CopiedRecord):
                data = self._rebuild(data)
            file = self._files.get(number)
            if file is None:
                for old in [n for n in self._files if n < number]:
                    self._sync_and_close(old)
                    touched.pop(old, None)
                path = segment_path(self.directory, number)
                file = self._files[number] = open(path, "ab")  # noqa: SIM115 - kept open
                created = True
            if number not in starts:
                starts[number] = file.tell()
                ends[number] = starts[number]
            if self.actions is not None:
                path = paths.get(number)
                if path is None:
                    path = paths[number] = segment_path(self.directory, number)
                self.actions.append(path, ends[number], data)
                ends[number] += len(data)
            file.write(data)
            size += len(data)
            touched[number] = file
            written.add(number)
        self.bytes_written += size
        if written:  # counted as one write per segment file
            IO_STATS.write(size, started, count=len(written))
        if self.before_fsync is not None and touched:
            for file in touched.values():
                file.flush()
            try:
                self.before_fsync()
            except Exception:  # shipping early is an optimisation: the write goes on
                log.exception("write-ahead log before_fsync hook raised")
        for file in touched.values():
            iostats.sync_file(file)
            self.fsyncs += 1
        if created:
            fsync_directory(self.directory)
        for number in batch.delete_segments:
            self._sync_and_close(number)
            try:
                os.remove(segment_path(self.directory, number))
            except FileNotFoundError:
                pass
            if self.actions is not None:
                self.actions.delete(segment_path(self.directory, number))
        if batch.delete_segments:
            fsync_directory(self.directory)
        IO_STATS.bodies(written=batch.bodies)  # the batch is written: its bodies count

    def _rebuild(self, copy: CopiedRecord) -> bytes:
        source = self._files.get(copy.source_segment)
        if source is not None:
            source.flush()
        body = read_at(self.directory, copy.source_segment, copy.source_offset, copy.length)
        crc = zlib.crc32(body, zlib.crc32(copy.prefix))
        return RECORD_HEAD.pack(len(copy.prefix) + len(body), crc) + copy.prefix + body

    def _sync_and_close(self, number: int) -> None:
        file = self._files.pop(number, None)
        if file is not None:
            iostats.sync_file(file)
            file.close()
