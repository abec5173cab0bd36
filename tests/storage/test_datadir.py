"""The data directory: its layout, and start-up refusals.

A data dir Warren cannot use makes it exit within seconds, with a non-zero code and one clear
line saying 'cannot start: <why>', and touching nothing: the directory is byte-identical
afterwards (same files, same bytes, same modification times). The tests run as root, so
permissions cannot make a directory unusable; the cases are: a file where the data dir (or
its wal/ directory) should be, a path below a file, a segment of an unknown format version or
that is not a segment at all, an unreadable definitions file, and a data dir locked by another
running Warren.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path

import pytest
from brokers import port_is_open
from warren_process import WarrenNode, get_all, publish_confirmed, run_to_exit


def snapshot(path: Path) -> dict[str, tuple]:
    """Every file and directory under `path` (or `path` itself if it is a file): kind, bytes,
    modification time."""
    if path.is_file():
        return {".": ("file", path.read_bytes(), path.stat().st_mtime_ns)}
    found = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            full = Path(root, name)
            found[str(full.relative_to(path))] = ("dir", full.stat().st_mtime_ns)
        for name in files:
            full = Path(root, name)
            found[str(full.relative_to(path))] = ("file", full.read_bytes(),
                                                  full.stat().st_mtime_ns)
    return found


def prepared(node: WarrenNode) -> None:
    """A data dir that a clean run has used: definitions, a segment with a message."""
    node.start()
    with node.channel() as ch:
        ch.queue_declare("kept", durable=True)
        publish_confirmed(ch, "kept", [b"still here"])
    assert node.stop() == 0


def assert_refused(node: WarrenNode, path: Path, reason: str) -> str:
    """Run the broker on `node`'s data dir, expect a refusal naming `reason`."""
    before = snapshot(path)
    code, output, seconds = run_to_exit(node.command(), timeout=15)
    after = snapshot(path)
    lines = [line for line in output.splitlines() if "cannot start:" in line]
    assert code != 0, f"exit code 0:\n{output}"
    assert seconds < 5, f"took {seconds:.1f}s to give up"
    assert len(lines) == 1, f"expected one 'cannot start:' line:\n{output}"
    assert reason in lines[0], f"{reason!r} not in {lines[0]!r}"
    assert "Traceback" not in output, output
    assert after == before, "the data dir was changed"
    assert not port_is_open(node.port)
    return lines[0]


def test_fresh_data_dir_is_created_with_its_layout(node_factory):
    node = node_factory()
    node.data_dir = node.directory / "several" / "levels" / "data"
    node.start()
    assert (node.data_dir / "definitions.json").is_file()
    assert node.wal_dir.is_dir()
    assert (node.data_dir / "warren.lock").exists()
    assert not (node.data_dir / "clean-shutdown").exists(), "marked clean while running"
    assert node.stop() == 0
    assert (node.data_dir / "clean-shutdown").exists()


def test_clean_marker_only_after_a_clean_stop(node_factory):
    node = node_factory().start()
    node.kill()
    assert not (node.data_dir / "clean-shutdown").exists()
    node.start()
    assert node.stop(signal.SIGINT) == 0
    assert (node.data_dir / "clean-shutdown").exists()


def test_data_dir_is_a_file(node_factory):
    node = node_factory()
    node.data_dir.write_bytes(b"not a directory\n")
    line = assert_refused(node, node.data_dir, "not a directory")
    assert str(node.data_dir) in line


def test_wal_dir_is_a_file(node_factory):
    node = node_factory()
    prepared(node)
    for segment in node.segments():
        segment.unlink()
    node.wal_dir.rmdir()
    node.wal_dir.write_bytes(b"")
    assert_refused(node, node.data_dir, "not a directory")


def test_data_dir_below_a_file(node_factory):
    node = node_factory()
    blocker = node.directory / "blocker"
    blocker.write_bytes(b"x")
    node.data_dir = blocker / "data"
    assert_refused(node, blocker, str(blocker))


def set_segment_version(segment: Path, version: int) -> None:
    with open(segment, "r+b") as file:
        file.seek(8)
        file.write(struct.pack("!H", version))


def test_segment_of_an_unknown_format_version(node_factory):
    node = node_factory()
    prepared(node)
    segment = node.segments()[0]
    set_segment_version(segment, 99)
    line = assert_refused(node, node.data_dir, "version 99")
    assert segment.name in line


def test_segment_that_is_not_a_segment(node_factory):
    node = node_factory()
    prepared(node)
    (node.wal_dir / "000000000099.wal").write_bytes(b"PK\x03\x04 a zip file, say" * 4)
    assert_refused(node, node.data_dir, "000000000099.wal")


def test_unreadable_definitions_file(node_factory):
    node = node_factory()
    prepared(node)
    (node.data_dir / "definitions.json").write_text('{"queues": [')
    assert_refused(node, node.data_dir, "definitions.json")


def test_data_dir_in_use_by_another_warren(node_factory):
    node = node_factory()
    prepared(node)
    node.start()
    other = WarrenNode(node.directory)  # same data dir, other ports
    time.sleep(0.2)  # let the first one finish its start-up writes
    line = assert_refused(other, node.data_dir, "in use")
    assert str(node.data_dir.resolve()) in line or str(node.data_dir) in line
    # The running broker did not notice.
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "kept", ack=False)] == [b"still here"]


@pytest.mark.parametrize("case", ["version", "lock"])
def test_refusal_then_normal_start(node_factory, case):
    """Once the cause is gone the same data dir starts normally, with its messages."""
    node = node_factory()
    prepared(node)
    if case == "version":
        segment = node.segments()[0]
        set_segment_version(segment, 2)
        assert run_to_exit(node.command())[0] != 0
        set_segment_version(segment, 1)
    else:
        holder = WarrenNode(node.directory)
        holder.start()
        assert run_to_exit(node.command())[0] != 0
        assert holder.stop() == 0
    node.start()
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "kept")] == [b"still here"]
