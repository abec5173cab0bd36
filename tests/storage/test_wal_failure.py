"""A log write that fails (a full disk) loses nothing: records whose batch failed are not
reported durable, are written again with the next batch, and land at the offsets append()
promised, with nothing of the failed attempt left in between."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from storage.records import frame, read_record
from storage.wal import WriteAheadLog, segment_path


class DiskFillsUp:
    """A segment file whose next write stores half its bytes and then fails, as on a full disk."""

    def __init__(self, file) -> None:
        self.file = file
        self.failed = False

    def write(self, data: bytes) -> int:
        if self.failed:
            return self.file.write(data)
        self.failed = True
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def _fsync_fails(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failure", ["write", "fsync"])
async def test_failed_batch_is_retried_at_its_promised_offsets(tmp_path, monkeypatch, failure):
    wal = WriteAheadLog(tmp_path, 1)
    durable: list[str] = []
    records = {name: frame(1, name.encode() * 100) for name in ("first", "lost", "next")}
    places = {}

    def append(name: str) -> None:
        places[name] = wal.append(records[name])
        wal.when_durable(places[name][0], lambda: durable.append(name))

    try:
        append("first")
        await asyncio.wait_for(wal.drain(), 5)
        assert durable == ["first"]

        if failure == "write":
            wal._files[1] = DiskFillsUp(wal._files[1])
        else:
            monkeypatch.setattr(os, "fsync", _fsync_fails)
        append("lost")
        await asyncio.wait_for(wal.drain(), 5)
        assert durable == ["first"] and isinstance(wal.failed, OSError)

        monkeypatch.undo()
        append("next")
        await asyncio.wait_for(wal.drain(), 5)
        assert durable == ["first", "lost", "next"] and wal.failed is None
    finally:
        wal.close()

    data = segment_path(tmp_path, 1).read_bytes()
    for name, (_, segment, offset) in places.items():
        assert segment == 1
        _, end = read_record(data, offset)
        assert data[offset:end] == records[name], name
    assert end == len(data)  # nothing after the last record
