"""broker/alarms.py without a broker: size parsing, cgroup limits, the limits the monitor
computes, the alarms it raises and clears, and the write-ahead log's failures raising the disk
alarm (storage/wal.py's hook, broker/node.py's retries)."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from broker.alarms import (
    DISK,
    MEMORY,
    ResourceMonitor,
    blocked_reason,
    cgroup_memory_limit,
)
from broker.config import Config, parse_size
from broker.node import Node
from storage.wal import WriteAheadLog


@pytest.mark.parametrize(("text", "expected"), [
    (123, 123), ("123", 123), ("1k", 1024), ("1KiB", 1024), ("2MiB", 2 * 1024**2),
    ("1g", 1024**3), ("1kB", 1000), ("50MB", 50_000_000), ("1000GB", 10**12), ("3Gb", 3 * 10**9),
])
def test_information_units_as_rabbitmq_reads_them(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "1.5GB", "-1", "1TB", "GB", "1 GB", -5, True])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_blocked_reason_texts_are_rabbitmqs():
    assert blocked_reason({MEMORY}) == "low on memory"
    assert blocked_reason({DISK}) == "low on disk"
    assert blocked_reason({MEMORY, DISK}) == "low on disk & memory"


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> int | None:
    (tmp_path / "cgroup").write_text(proc)
    root = tmp_path / "fs"
    for name, value in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    return cgroup_memory_limit(str(tmp_path / "cgroup"), str(root))


def test_cgroup_v2_limit_is_the_smallest_on_the_path(tmp_path):
    assert _cgroup(tmp_path, "0::/box/app\n", {
        "box/memory.max": "1073741824\n", "box/app/memory.max": "max\n",
    }) == 1073741824


def test_cgroup_v1_limit(tmp_path):
    assert _cgroup(tmp_path, "5:cpu,cpuacct:/x\n4:memory:/docker/abc\n", {
        "memory/docker/abc/memory.limit_in_bytes": "536870912\n",
    }) == 536870912


def test_no_cgroup_limit(tmp_path):
    assert _cgroup(tmp_path, "4:memory:/\n", {
        "memory/memory.limit_in_bytes": "9223372036854771712\n",
    }) is None
    assert _cgroup(tmp_path, "0::/\n", {"memory.max": "max\n"}) is None
    assert cgroup_memory_limit(str(tmp_path / "missing"), str(tmp_path)) is None


def _monitor(tmp_path: Path, **fields) -> tuple[ResourceMonitor, list[set[str]]]:
    changes: list[set[str]] = []
    monitor = ResourceMonitor(Config(data_dir=tmp_path, **fields), "warren@test",
                              lambda: changes.append(set(monitor.active)))
    return monitor, changes


def test_memory_limit_fraction_absolute_and_runtime_changes(tmp_path):
    monitor, changes = _monitor(tmp_path, memory_high_watermark=0.5)
    assert monitor.memory_limit == int(0.5 * monitor.usable_memory)
    monitor, changes = _monitor(tmp_path, memory_high_watermark_absolute=1)
    assert monitor.memory_limit == 1  # the absolute value wins over the fraction
    monitor.check_memory()
    assert monitor.active == {MEMORY} and changes == [{MEMORY}]
    monitor.set_memory_high_watermark(fraction=0.9)
    assert monitor.memory_limit == int(0.9 * monitor.usable_memory)
    assert monitor.active == set() and changes == [{MEMORY}, set()]
    with pytest.raises(ValueError):
        monitor.set_memory_high_watermark(fraction=1.5)
    monitor.set_memory_high_watermark(absolute=10**15)  # more than there is: the usable memory
    assert monitor.memory_limit == monitor.usable_memory


async def test_disk_alarm_follows_the_limit(tmp_path):
    monitor, changes = _monitor(tmp_path, disk_free_limit=10**18)
    monitor.start()
    try:
        assert monitor.active == {DISK} and monitor.disk_free > 0
        await monitor.set_disk_free_limit(1)
        assert monitor.active == set() and changes == [{DISK}, set()]
    finally:
        monitor.stop()


def test_storage_failure_holds_the_disk_alarm_until_a_write_succeeds(tmp_path):
    monitor, changes = _monitor(tmp_path)
    monitor.storage_failed(OSError(28, "No space left on device"))
    assert monitor.active == {DISK}
    monitor.storage_failed(OSError(28, "No space left on device"))
    monitor.storage_recovered()
    assert monitor.active == set() and changes == [{DISK}, set()]


async def test_wal_reports_a_failed_write_and_the_next_good_one(tmp_path):
    directory = tmp_path / "wal"
    directory.mkdir()
    results: list[BaseException | None] = []
    wal = WriteAheadLog(directory, 1)
    wal.on_write_result = results.append
    try:
        directory.rmdir()  # the segment cannot be created: an OSError in the writer thread
        wal.append(b"record")
        await asyncio.wait_for(wal.drain(), 5)
        assert len(results) == 1 and isinstance(results[0], OSError)
        directory.mkdir()
        wal.append(b"record")
        await asyncio.wait_for(wal.drain(), 5)
        assert results[1:] == [None]
        wal.append(b"record")
        await asyncio.wait_for(wal.drain(), 5)
        assert results[1:] == [None]  # told once, not after every write
    finally:
        wal.close()


async def test_node_raises_the_disk_alarm_while_its_log_cannot_write(tmp_path, monkeypatch):
    """In-process node: fsync fails (as on a full disk) -> disk alarm; the node tries a write
    again every second and the alarm clears once one succeeds."""
    node = Node(Config(data_dir=tmp_path / "data"))
    await node.start()
    try:
        real_fsync = os.fsync

        def full_disk(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        node.definitions_changed()  # the log writes the definitions file next
        await _until(lambda: DISK in node.alarms.active)
        assert isinstance(node.alarms.storage_error, OSError)
        monkeypatch.setattr(os, "fsync", real_fsync)
        await _until(lambda: not node.alarms.active)
    finally:
        await node.stop()


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
