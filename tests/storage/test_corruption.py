"""Damaged log segments, edited directly in data_dir/wal/*.wal between two runs.

A torn or corrupt tail of the last segment (a partial record, a bad CRC, garbage or zeros
after the last record) is truncated with a warning; a corrupt record in the middle is skipped,
counted and logged. Either way the broker starts, never crashes, and serves every intact
message in its original order. Record layout: storage/records.py, docs/storage-format.md.
"""

from __future__ import annotations

import os
import random
import re
import struct
from pathlib import Path

import pytest
from warren_process import (
    WarrenNode,
    consume_unacked,
    get_all,
    publish_confirmed,
    publish_many,
    segment_records,
)

from storage import records

COUNT = 50


def fill(node: WarrenNode, queue: str = "q", count: int = COUNT, size: int = 100) -> list[bytes]:
    """A durable queue with `count` confirmed persistent messages; the broker is then stopped
    cleanly. Returns the bodies."""
    bodies = [b"%04d-" % i + b"m" * size for i in range(count)]
    with node.channel() as ch:
        ch.queue_declare(queue, durable=True)
    publish_many(node, [("", queue, body) for body in bodies])
    assert node.stop() == 0
    return bodies


def last_segment(node: WarrenNode) -> Path:
    segments = [path for path in node.segments() if path.stat().st_size >
                records.SEGMENT_HEADER_SIZE]
    return segments[-1]


def warnings(node: WarrenNode) -> list[str]:
    return [line for line in node.log_text().splitlines() if "[warning]" in line]


def start_and_check_alive(node: WarrenNode) -> None:
    node.start()
    log = node.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert node.is_running()


def served(node: WarrenNode, queue: str = "q") -> list[bytes]:
    return [got.body for got in consume_unacked(node, queue)]


# -- torn / corrupt tail of the last segment --------------------------------------------------


TAILS = {
    "3 zero bytes": b"\x00" * 3,
    "100 zero bytes": b"\x00" * 100,
    "random garbage": random.Random(7).randbytes(300),
    "record head only": struct.pack("!II", 40, 12345),
    "whole record with a bad CRC": struct.pack("!II", 5, 0xDEADBEEF) + b"\x02abcd",
    "absurd length": struct.pack("!II", 0xFFFFFFF0, 0) + b"x" * 20,
}


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
def test_garbage_after_the_last_record_is_truncated(node, tail):
    bodies = fill(node)
    segment = last_segment(node)
    size = segment.stat().st_size
    with open(segment, "ab") as file:
        file.write(tail)

    start_and_check_alive(node)

    assert any(segment.name in line and "truncat" in line for line in warnings(node)), (
        f"no truncation warning naming {segment.name}:\n{node.log_text()}"
    )
    assert segment.stat().st_size == size, "the damaged tail was not cut off"
    assert served(node) == bodies


@pytest.mark.parametrize("keep", [3, 8, 20, "half", -1], ids=lambda k: f"keep-{k}")
def test_last_record_cut_short_is_truncated(node, keep):
    """A torn write: only the first bytes of the last record reached the disk."""
    bodies = fill(node)
    segment = last_segment(node)
    last = segment_records(segment)[-1]
    assert last.record_type == records.PUBLISH and last.record.body == bodies[-1]
    length = last.end - last.offset
    kept = {"half": length // 2, -1: length - 1}.get(keep, keep)
    os.truncate(segment, last.offset + kept)

    start_and_check_alive(node)

    assert any("truncat" in line for line in warnings(node)), node.log_text()
    assert segment.stat().st_size == last.offset
    assert served(node) == bodies[:-1]


def test_flipped_byte_in_the_last_record_is_truncated(node):
    bodies = fill(node)
    segment = last_segment(node)
    last = segment_records(segment)[-1]
    flip_byte(segment, last.end - 3)

    start_and_check_alive(node)

    assert any("truncat" in line for line in warnings(node)), node.log_text()
    assert served(node) == bodies[:-1]


def test_truncation_is_done_once(node):
    """After the truncating start, the next start finds a clean log."""
    bodies = fill(node)
    segment = last_segment(node)
    with open(segment, "ab") as file:
        file.write(b"\x00" * 50)
    start_and_check_alive(node)
    assert warnings(node)

    node.restart()

    assert not [line for line in warnings(node) if "truncat" in line], node.log_text()
    assert served(node) == bodies


def test_torn_segment_header(node):
    """A segment that was being created when the power went: shorter than its header."""
    bodies = fill(node)
    number = max(int(path.stem) for path in node.segments()) + 1
    torn = node.wal_dir / f"{number:012d}.wal"
    torn.write_bytes(records.segment_header(number)[:7])

    start_and_check_alive(node)

    assert served(node) == bodies
    assert [got.body for got in consume_unacked(node, "q")] == bodies


def test_empty_segment_file(node):
    bodies = fill(node)
    number = max(int(path.stem) for path in node.segments()) + 1
    (node.wal_dir / f"{number:012d}.wal").write_bytes(b"")

    start_and_check_alive(node)

    assert served(node) == bodies


# -- corrupt records in the middle ------------------------------------------------------------


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0x5A]))


def corrupt_record_count(node: WarrenNode) -> int:
    """The count in the start-up summary line, '... (N corrupt records skipped)'."""
    match = re.search(r"(\d+) corrupt records? skipped", node.log_text())
    assert match, f"no corrupt-record count in the log:\n{node.log_text()}"
    return int(match.group(1))


def test_corrupt_record_in_the_middle_is_skipped_and_counted(node):
    bodies = fill(node)
    segment = last_segment(node)
    victims = segment_records(segment)
    victim = victims[20]
    assert victim.record.body == bodies[20]
    size = segment.stat().st_size
    flip_byte(segment, victim.end - 10)  # inside the message body

    start_and_check_alive(node)

    corrupt_lines = [line for line in warnings(node) if "corrupt" in line]
    assert len(corrupt_lines) == 1, node.log_text()
    assert str(victim.offset) in corrupt_lines[0], "the warning does not say where"
    assert corrupt_record_count(node) == 1
    assert segment.stat().st_size == size, "records after the corrupt one were cut off"
    assert served(node) == bodies[:20] + bodies[21:]


def test_corrupt_record_head_in_the_middle(node):
    """The length field itself is damaged: the records after it are still found."""
    bodies = fill(node)
    segment = last_segment(node)
    victim = segment_records(segment)[10]
    flip_byte(segment, victim.offset + 2)

    start_and_check_alive(node)

    assert corrupt_record_count(node) == 1
    assert served(node) == bodies[:10] + bodies[11:]


def test_several_corrupt_records_in_several_segments(node_factory):
    node = node_factory(extra_args=["--segment-size", "65536"]).start()
    bodies = fill(node, count=400, size=1000)
    segments = node.segments()
    assert len(segments) >= 4
    lost = set()
    for segment in segments[:3]:  # none of them is the last one
        victim = segment_records(segment)[3]
        lost.add(victim.record.body)
        flip_byte(segment, victim.end - 1)

    start_and_check_alive(node)

    assert corrupt_record_count(node) == 3
    assert served(node) == [body for body in bodies if body not in lost]


def test_corrupt_records_do_not_stop_later_restarts(node):
    bodies = fill(node)
    segment = last_segment(node)
    flip_byte(segment, segment_records(segment)[5].end - 1)
    start_and_check_alive(node)
    with node.channel() as ch:
        publish_confirmed(ch, "q", [b"after"])

    node.restart()

    assert node.is_running()
    expected = bodies[:5] + bodies[6:] + [b"after"]
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "q")] == expected
