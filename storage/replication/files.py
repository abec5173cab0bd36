"""The replicated files of a data dir, as file actions: what the leader records while it writes
(`ActionLog`), what a follower has (`list_files`), what a follower must do to reach the
leader's files (`catch_up_actions`), and a follower applying actions (`Applier`).

Replicated: `definitions.json` and everything under `wal/` and `streams/` (but not a deleted
stream's directory, `*.deleted-*`, nor `*.tmp`). Not replicated: `warren.lock`,
`clean-shutdown`, `message-index` (a follower never starts from a snapshot: it removes them)
and `transient/` (never read after a restart).

Log files (`*.wal`, `*.seg`) only grow at their end, or are cut back after a failed write:
catch-up keeps the longest common prefix (compared chunk by chunk with CRC32) and sends the
rest. Any other file is sent whole (REPLACE, written atomically) when it differs.

Every action sets a state rather than changing one (write these bytes at that offset, cut to
that size, replace, delete), so applying a run of actions to a file that already has some of
them leaves it as the run does: the leader may read a file for catch-up while it is being
written, as long as it sends every action recorded since it started reading.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from storage.replication.wire import (
    APPEND,
    DELETE,
    REPLACE,
    TRUNCATE,
    Action,
    FileInfo,
    ProtocolError,
)
from storage.wal import fsync_directory, write_atomically

CHUNK_SIZE = 1024 * 1024
REPLICATED_ROOTS = ("wal", "streams")
REPLICATED_FILES = ("definitions.json",)
LOG_SUFFIXES = (".wal", ".seg")
NOT_FOLLOWER_STATE = ("clean-shutdown", "message-index")  # a follower removes them


class ActionLog:
    """The file actions the leader's writes made, in the order they hit the disk, until the
    replication leader takes them. Called from the write-ahead log's writer thread and from
    the event loop (a stream deleted), hence the lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._actions: list[Action] = []
        self._lock = threading.Lock()
        # The last action if it is an APPEND, and the offset it ends at: the next append to
        # the same file at that offset joins it (one action per file per batch, not per record).
        self._appending: Action | None = None
        self._append_end = 0
        self._names: dict[Path, str] = {}  # relative names of the paths seen lately

    def _relative(self, path: Path) -> str:
        name = self._names.get(path)
        if name is None:
            if len(self._names) > 1024:
                self._names.clear()
            name = self._names[path] = path.relative_to(self.root).as_posix()
        return name

    def append(self, path: Path, offset: int, data: bytes) -> None:
        with self._lock:
            name = self._relative(path)
            last = self._appending
            if last is not None and last.path == name and self._append_end == offset:
                last.parts.append(data)
            else:
                last = self._appending = Action(APPEND, name, offset, [data])
                self._actions.append(last)
            self._append_end = offset + len(data)

    def truncate(self, path: Path, size: int) -> None:
        self._add(path, TRUNCATE, size)

    def replace(self, path: Path, data: bytes) -> None:
        self._add(path, REPLACE, 0, [data])

    def delete(self, path: Path) -> None:
        self._add(path, DELETE)

    def _add(self, path: Path, kind: int, offset: int = 0, parts: list[bytes] | None = None
             ) -> None:
        with self._lock:
            self._actions.append(Action(kind, self._relative(path), offset, parts or []))
            self._appending = None

    def take(self) -> list[Action]:
        with self._lock:
            actions, self._actions = self._actions, []
            self._appending = None
        return actions


# -- listing ------------------------------------------------------------------------------


def is_log(path: str) -> bool:
    return path.endswith(LOG_SUFFIXES)


def replicated_paths(root: Path) -> Iterator[str]:
    """The replicated files under `root`, relative, sorted."""
    found: list[str] = [name for name in REPLICATED_FILES if (root / name).is_file()]
    for top in REPLICATED_ROOTS:
        base = root / top
        if not base.is_dir():
            continue
        for directory, subdirectories, names in os.walk(base):
            subdirectories[:] = [d for d in subdirectories if ".deleted-" not in d]
            for name in names:
                if name.endswith(".tmp"):
                    continue
                found.append(Path(directory, name).relative_to(root).as_posix())
    return iter(sorted(found))


def chunk_crcs(path: Path, size: int | None = None) -> tuple[tuple[int, ...], int]:
    """CRC32 of each CHUNK_SIZE chunk of the first `size` bytes (all if None); (crcs, size
    actually read)."""
    crcs = []
    read = 0
    with open(path, "rb") as file:
        while size is None or read < size:
            want = CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - read)
            data = file.read(want)
            if not data:
                break
            crcs.append(zlib.crc32(data))
            read += len(data)
            if len(data) < want:
                break
    return tuple(crcs), read


def list_files(root: Path) -> list[FileInfo]:
    """What a follower has (blocking: call it in a thread)."""
    files = []
    for name in replicated_paths(root):
        with contextlib.suppress(FileNotFoundError):
            crcs, size = chunk_crcs(root / name)
            files.append(FileInfo(name, size, crcs))
    return files


# -- catch-up (leader side, blocking: in a thread) ----------------------------------------


def common_prefix(path: Path, theirs: FileInfo) -> int:
    """How many leading bytes of the leader's `path` the follower's file has too."""
    common = 0
    with open(path, "rb") as file:
        for crc in theirs.crcs:
            want = min(CHUNK_SIZE, theirs.size - common)
            data = file.read(want)
            if len(data) < want or zlib.crc32(data) != crc:
                break
            common += want
    return common


def catch_up_actions(root: Path, theirs: list[FileInfo],
                     piece: int = CHUNK_SIZE) -> Iterator[Action]:
    """The actions that turn a follower's files (`theirs`) into the leader's (under `root`),
    yielded a piece of at most `piece` data bytes at a time; files that vanish while read are
    skipped (their DELETE comes with the live actions)."""
    by_path = {info.path: info for info in theirs}
    mine = list(replicated_paths(root))
    for name in mine:  # definitions first, log segments in order
        try:
            yield from _file_actions(root / name, name, by_path.get(name), piece)
        except FileNotFoundError:
            continue
    # Deletes last: a follower stopped half-way keeps the old copy of what compaction moved.
    for name in sorted(set(by_path) - set(mine)):
        yield Action(DELETE, name)


def _file_actions(path: Path, name: str, theirs: FileInfo | None,
                  piece: int) -> Iterator[Action]:
    size = path.stat().st_size
    if not is_log(name):
        if theirs is not None and theirs.size == size and common_prefix(path, theirs) == size:
            return
        yield Action(REPLACE, name, 0, [path.read_bytes()])
        return
    if theirs is None:
        common = 0
        yield Action(TRUNCATE, name, 0)  # creates it
    else:
        common = common_prefix(path, theirs)
        if common < theirs.size:
            yield Action(TRUNCATE, name, common)
    with open(path, "rb") as file:
        file.seek(common)
        offset = common
        while True:
            data = file.read(piece)
            if not data:
                break
            yield Action(APPEND, name, offset, [data])
            offset += len(data)


# -- applying (follower side, blocking: in a thread) --------------------------------------


def check_path(name: str) -> None:
    """A path a leader may touch: relative, inside a replicated root, no '..'."""
    parts = name.split("/")
    if (name.startswith("/") or any(part in ("", ".", "..") for part in parts)
            or not (name in REPLICATED_FILES or parts[0] in REPLICATED_ROOTS and len(parts) > 1)):
        raise ProtocolError(f"file action on a path outside the replicated files: {name!r}")


class Applier:
    """Applies file actions to a follower's data dir; `sync()` makes them durable (files and
    the directories whose entries changed). Keeps the files it writes open."""

    MAX_OPEN = 64

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[Path, int] = {}  # path -> fd, oldest first
        self._dirty: set[Path] = set()
        self._dirty_directories: set[Path] = set()
        self.bytes_applied = 0

    def apply(self, action: Action) -> None:
        check_path(action.path)
        path = self.root / action.path
        if action.kind == APPEND:
            fd = self._fd(path)
            offset = action.offset
            for part in action.parts:
                view = memoryview(part)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view = view[written:]
                    offset += written
            self.bytes_applied += action.size
            self._dirty.add(path)
        elif action.kind == TRUNCATE:
            os.ftruncate(self._fd(path), action.offset)
            self._dirty.add(path)
        elif action.kind == REPLACE:
            self._close_under(path)
            self._make_parents(path)
            write_atomically(path, action.data)
            self.bytes_applied += action.size
        elif action.kind == DELETE:
            self._close_under(path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self._dirty_directories.add(path.parent)
        else:
            raise ProtocolError(f"unknown action kind {action.kind}")

    def sync(self) -> None:
        for path in self._dirty:
            fd = self._open.get(path)
            if fd is not None:
                os.fsync(fd)
        self._dirty.clear()
        for directory in sorted(self._dirty_directories, key=lambda p: -len(p.parts)):
            with contextlib.suppress(FileNotFoundError):
                fsync_directory(directory)
        self._dirty_directories.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sync()
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def _fd(self, path: Path) -> int:
        fd = self._open.get(path)
        if fd is not None:
            return fd
        if len(self._open) >= self.MAX_OPEN:
            oldest = next(iter(self._open))
            self._close(oldest)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            self._make_parents(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            self._dirty_directories.add(path.parent)
        self._open[path] = fd
        return fd

    def _make_parents(self, path: Path) -> None:
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir(exist_ok=True)
            self._dirty_directories.add(directory.parent)

    def _close(self, path: Path) -> None:
        fd = self._open.pop(path)
        if path in self._dirty:
            os.fsync(fd)
            self._dirty.discard(path)
        os.close(fd)

    def _close_under(self, path: Path) -> None:
        for opened in [p for p in self._open if p == path or path in p.parents]:
            self._close(opened)
