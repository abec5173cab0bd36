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

Checksums are cached per process (`CHECKSUMS`): a file's chunk CRCs stay valid while its size
and mtime_ns are those they were computed at, so a caught-up follower that reconnects has
nothing read on either side. A follower's `Applier` keeps the CRCs of what it writes up to date
(CRC32 extended over appended bytes, no read); the leader's `ActionLog` forgets a file it cuts,
replaces or deletes. `CHECKSUMS.bytes_read` counts the bytes read to checksum.
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
        CHECKSUMS.forget(path)
        self._add(path, TRUNCATE, size)

    def replace(self, path: Path, data: bytes) -> None:
        CHECKSUMS.forget(path)
        self._add(path, REPLACE, 0, [data])

    def delete(self, path: Path) -> None:
        CHECKSUMS.forget(path)
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


# -- checksums ----------------------------------------------------------------------------


class ChecksumCache:
    """The chunk CRCs of files by path, each valid while the file's (size, mtime_ns) are those
    it was stored with. Used from the follower's and the leader's threads, hence the lock."""

    def __init__(self) -> None:
        # path -> (size, mtime_ns or None until the writer has stat'ed it, chunk CRCs)
        self._entries: dict[Path, tuple[int, int | None, list[int]]] = {}
        self._lock = threading.Lock()
        # One more at every forget: a checksum computed from bytes read while a file was cut
        # or replaced is not stored (it could be of the bytes before).
        self.generation = 0
        self.bytes_read = 0  # read to compute checksums, since the process started

    def crcs(self, path: Path) -> tuple[tuple[int, ...], int]:
        """(CRC32 of each CHUNK_SIZE chunk, size) of `path` now (FileNotFoundError if gone).
        A log file that has grown since is read from where its entry ends only: log files
        change otherwise only through actions that make the cache forget them (and the
        leader forgets its whole data dir when it attaches, after recovery's own cuts)."""
        generation = self.generation
        stat = os.stat(path)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[1] is not None:
            known, mtime, crcs = entry
            if (known, mtime) == (stat.st_size, stat.st_mtime_ns):
                return tuple(crcs), known
            if is_log(path.name) and known < stat.st_size:
                crcs = list(crcs)
                with open(path, "rb") as file:
                    file.seek(known)
                    data = file.read(stat.st_size - known)
                self._count(len(data))
                if known + len(data) == stat.st_size:
                    _extend_crcs(crcs, known, data)
                    self._store(path, stat, crcs, generation)
                    return tuple(crcs), stat.st_size
        found, size = chunk_crcs(path, stat.st_size)
        self._count(size)
        if size == stat.st_size:
            self._store(path, stat, list(found), generation)
        return found, size

    def read_at(self, path: Path, offset: int, size: int) -> bytes:
        """`size` bytes of `path` from `offset` (fewer at its end), counted as read."""
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read(size)
        self._count(len(data))
        return data

    def learned(self, path: Path, crcs: list[int], size: int, generation: int) -> None:
        """The CRCs of the first `size` bytes of `path`, computed from bytes read for another
        purpose (a catch-up sending them) since `generation`: kept if the file still has that
        size and nothing was forgotten meanwhile."""
        stat = os.stat(path)
        if stat.st_size == size:
            self._store(path, stat, crcs, generation)

    def _store(self, path: Path, stat: os.stat_result, crcs: list[int], generation: int
               ) -> None:
        with self._lock:
            if generation == self.generation:
                self._entries[path] = (stat.st_size, stat.st_mtime_ns, crcs)

    def _count(self, read: int) -> None:
        with self._lock:
            self.bytes_read += read

    def forget(self, path: Path) -> None:
        """`path` (and whatever is under it) changed other than by growing: compute again."""
        with self._lock:
            self.generation += 1
            for known in [known for known in self._entries
                          if known == path or path in known.parents]:
                del self._entries[known]

    # -- a follower's own writes (its Applier) --------------------------------------------

    def appended(self, path: Path, offset: int, parts: list[bytes]) -> None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != offset:
                self._entries.pop(path, None)
                return
            size, _, crcs = entry
            for part in parts:
                size = _extend_crcs(crcs, size, part)
            self._entries[path] = (size, None, crcs)

    def truncated(self, path: Path, size: int) -> None:
        with self._lock:
            entry = self._entries.get(path)
            if size == 0:
                self._entries[path] = (0, None, [])
            elif entry is not None and size <= entry[0] and size % CHUNK_SIZE == 0:
                self._entries[path] = (size, None, entry[2][:size // CHUNK_SIZE])
            else:
                self._entries.pop(path, None)

    def replaced(self, path: Path, data: bytes) -> None:
        crcs: list[int] = []
        size = _extend_crcs(crcs, 0, data)
        with self._lock:
            self._entries[path] = (size, os.stat(path).st_mtime_ns, crcs)

    def synced(self, path: Path, stat: os.stat_result) -> None:
        """The writer's stat of `path` after its writes: the entry is valid at that stat."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry[0] == stat.st_size:
                self._entries[path] = (entry[0], stat.st_mtime_ns, entry[2])
            else:
                self._entries.pop(path, None)


def _extend_crcs(crcs: list[int], size: int, data: bytes) -> int:
    """Extend the chunk CRCs of a file of `size` bytes by `data` appended; the new size."""
    view = memoryview(data)
    partial = size % CHUNK_SIZE
    if partial and view:
        take = min(CHUNK_SIZE - partial, len(view))
        crcs[-1] = zlib.crc32(view[:take], crcs[-1])
        view = view[take:]
    while view:
        crcs.append(zlib.crc32(view[:CHUNK_SIZE]))
        view = view[CHUNK_SIZE:]
    return size + len(data)


CHECKSUMS = ChecksumCache()


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
            crcs, size = CHECKSUMS.crcs(root / name)
            files.append(FileInfo(name, size, crcs))
    return files


# -- catch-up (leader side, blocking: in a thread) ----------------------------------------


def common_prefix(path: Path, theirs: FileInfo) -> int:
    """How many leading bytes of the leader's `path` the follower's file has too: its chunk
    CRCs against ours (cached); only a last chunk of theirs that ends inside one of ours is
    read."""
    mine, size = CHECKSUMS.crcs(path)
    common = 0
    for index, crc in enumerate(theirs.crcs):
        want = min(CHUNK_SIZE, theirs.size - common)
        if common + want > size:  # bytes we do not have
            break
        if want == CHUNK_SIZE or common + want == size:  # the same range as our chunk
            if mine[index] != crc:
                break
        elif zlib.crc32(CHECKSUMS.read_at(path, common, want)) != crc:
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
    generation = CHECKSUMS.generation
    size = path.stat().st_size
    if not is_log(name):
        if theirs is not None and theirs.size == size and common_prefix(path, theirs) == size:
            return
        data = path.read_bytes()
        crcs: list[int] = []
        CHECKSUMS.learned(path, crcs, _extend_crcs(crcs, 0, data), generation)
        yield Action(REPLACE, name, 0, [data])
        return
    learning: list[int] | None = None  # the CRCs of a file sent whole, as it is read
    if theirs is None:
        common = 0
        learning = []
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
            if learning is not None:
                _extend_crcs(learning, offset, data)
            yield Action(APPEND, name, offset, [data])
            offset += len(data)
    if learning is not None:
        CHECKSUMS.learned(path, learning, offset, generation)


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
            CHECKSUMS.appended(path, action.offset, action.parts)
        elif action.kind == TRUNCATE:
            os.ftruncate(self._fd(path), action.offset)
            self._dirty.add(path)
            CHECKSUMS.truncated(path, action.offset)
        elif action.kind == REPLACE:
            self._close_under(path)
            self._make_parents(path)
            write_atomically(path, action.data)
            self.bytes_applied += action.size
            CHECKSUMS.replaced(path, action.data)
        elif action.kind == DELETE:
            CHECKSUMS.forget(path)
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
                CHECKSUMS.synced(path, os.fstat(fd))
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
            CHECKSUMS.synced(path, os.fstat(fd))
            self._dirty.discard(path)
        os.close(fd)

    def _close_under(self, path: Path) -> None:
        for opened in [p for p in self._open if p == path or path in p.parents]:
            self._close(opened)
