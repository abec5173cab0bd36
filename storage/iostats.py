"""Counts of the storage's file I/O: what RabbitMQ 3.10's /api/nodes shows of its file handle
cache (io_read_count, io_read_bytes, io_read_avg_time, the same for writes, io_sync_*,
io_seek_*, io_reopen_count) and /api/overview's message_stats of its message store
(disk_reads, disk_writes: message bodies read from and written to disk).

One `IoStats` per process, `IO_STATS`: the thread that makes a read, write, fsync or seek of
a data file (the write-ahead log's writer, the page store's writer, the readers of bodies and
stream records, recovery) adds to it right there, with the time the call took; the management
API reads the figures on the event loop. Several threads add to the same figures, so an
addition holds a lock (nothing beside the system call it counts). What each figure counts in
Warren's storage is written down in tests/management/RABBITMQ_API.md, "Storage I/O"."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import IO


class IoStats:
    """Plain totals since start; times in microseconds."""

    __slots__ = ("_lock", "read_count", "read_bytes", "read_time", "write_count", "write_bytes",
                 "write_time", "sync_count", "sync_time", "seek_count", "seek_time",
                 "reopen_count", "messages_read", "messages_written")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_count = self.read_bytes = self.read_time = 0
        self.write_count = self.write_bytes = self.write_time = 0
        self.sync_count = self.sync_time = 0
        self.seek_count = self.seek_time = 0
        self.reopen_count = 0  # a data file opened again to read it (no read handle is kept)
        self.messages_read = self.messages_written = 0  # bodies: disk_reads, disk_writes

    def read(self, size: int, started: float) -> None:
        """A read of `size` bytes that began at `started` (a time.perf_counter())."""
        took = micros_since(started)
        with self._lock:
            self.read_count += 1
            self.read_bytes += size
            self.read_time += took

    def write(self, size: int, started: float, count: int = 1) -> None:
        """`count` writes of `size` bytes in all, made since `started`."""
        took = micros_since(started)
        with self._lock:
            self.write_count += count
            self.write_bytes += size
            self.write_time += took

    def sync(self, started: float) -> None:
        took = micros_since(started)
        with self._lock:
            self.sync_count += 1
            self.sync_time += took

    def seek(self, started: float) -> None:
        took = micros_since(started)
        with self._lock:
            self.seek_count += 1
            self.seek_time += took

    def reopen(self) -> None:
        with self._lock:
            self.reopen_count += 1

    def figures(self) -> dict[str, int | float]:
        """RabbitMQ's io_* keys of a node (without `_details`): counts, bytes, reopens, and
        the mean milliseconds of a read, write, sync and seek since start."""
        shown: dict[str, int | float] = {}
        for operation in ("read", "write", "sync", "seek"):
            count = getattr(self, f"{operation}_count")
            shown[f"io_{operation}_count"] = count
            if operation in ("read", "write"):
                shown[f"io_{operation}_bytes"] = getattr(self, f"{operation}_bytes")
            shown[f"io_{operation}_avg_time"] = (
                getattr(self, f"{operation}_time") / count / 1000 if count else 0.0)
        shown["io_reopen_count"] = self.reopen_count
        return shown

    def bodies(self, read: int = 0, written: int = 0) -> None:
        """Message bodies read back from disk, or written to it (once each, whatever the
        number of queues holding them)."""
        with self._lock:
            self.messages_read += read
            self.messages_written += written


def micros_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1_000_000)


IO_STATS = IoStats()


# -- the calls, counted (each where a storage module made the plain one) ------------------------


def fsync(fd: int) -> None:
    started = time.perf_counter()
    os.fsync(fd)
    IO_STATS.sync(started)


def sync_file(file: IO[bytes]) -> None:
    """Flush a buffered file and fsync it: one sync (the flush hands the kernel what the
    buffer held, written by then as far as the counts go)."""
    started = time.perf_counter()
    file.flush()
    os.fsync(file.fileno())
    IO_STATS.sync(started)


def write(file: IO[bytes], data: bytes) -> None:
    started = time.perf_counter()
    file.write(data)
    IO_STATS.write(len(data), started)


def pread(fd: int, length: int, offset: int) -> bytes:
    started = time.perf_counter()
    data = os.pread(fd, length, offset)
    IO_STATS.read(len(data), started)
    return data


def pwritev(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> int:
    started = time.perf_counter()
    done = os.pwritev(fd, buffers, offset)
    IO_STATS.write(done, started)
    return done


def read(file: IO[bytes], size: int = -1) -> bytes:
    """`file.read(size)`, counted."""
    started = time.perf_counter()
    data = file.read(size)
    IO_STATS.read(len(data), started)
    return data


def seek(file: IO[bytes], position: int) -> None:
    started = time.perf_counter()
    file.seek(position)
    IO_STATS.seek(started)
