"""The data directory: checked before anything is written, then locked for this process.

Layout: `definitions.json` (durable definitions, RabbitMQ's export format), `wal/` (log
segments), `transient/` (the page store's files, emptied at start), `warren.lock` (held while
a broker runs), `clean-shutdown` and `message-index` (present only while no broker runs after
a clean stop), `local-admin.secret` (rewritten at every start, never replicated:
management/local_admin.py).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from storage import snapshot
from storage.store import StorageError, check_segments
from storage.wal import fsync_directory, write_atomically


@dataclass
class DataDir:
    path: Path
    lock_file: IO[bytes]

    @property
    def definitions_path(self) -> Path:
        return self.path / "definitions.json"

    @property
    def wal_path(self) -> Path:
        return self.path / "wal"

    @property
    def index_path(self) -> Path:
        """The index snapshot written at a clean stop (storage/snapshot.py)."""
        return self.path / snapshot.FILE_NAME

    @property
    def _clean_marker(self) -> Path:
        return self.path / "clean-shutdown"

    def was_shut_down_cleanly(self) -> bool:
        """False after a crash (or on first start with existing data)."""
        return self._clean_marker.exists()

    def mark_running(self) -> None:
        """From now on the log changes: a crash leaves no marker, and no index snapshot."""
        self._clean_marker.unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)
        fsync_directory(self.path)

    def mark_clean(self) -> None:
        write_atomically(self._clean_marker, b"")

    def close(self) -> None:
        self.lock_file.close()


def _check_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise StorageError(f"data dir {path} is not a directory")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StorageError(f"data dir {path} is not readable and writable by this user")


def open_data_dir(path: Path) -> DataDir:
    """Validate (touching nothing), then create what is missing and take the lock."""
    path = path.resolve()
    _check_directory(path)
    _check_directory(path / "wal")
    if (path / "wal").is_dir():
        check_segments(path / "wal")
    definitions = path / "definitions.json"
    if definitions.exists():
        try:
            json.loads(definitions.read_text())
        except (OSError, ValueError) as exc:
            raise StorageError(f"{definitions} is unreadable: {exc}") from exc
    return DataDir(path, lock_data_dir(path))


def lock_data_dir(path: Path) -> IO[bytes]:
    """Create the data dir (and wal/) if missing and take its lock: the open lock file, held
    until closed. A replication follower holds it too, while it writes the directory."""
    try:
        (path / "wal").mkdir(parents=True, exist_ok=True)
        lock_file = open(path / "warren.lock", "ab")  # noqa: SIM115 - held for the process life
    except OSError as exc:
        raise StorageError(f"cannot create data dir {path}: {exc}") from exc
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise StorageError(f"data dir {path} is in use by another Warren process") from exc
    return lock_file
