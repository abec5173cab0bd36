"""storage/streamlog.py on its own (no broker, no event loop: take, write, written as the
write-ahead log's batch would call them): segments and offsets, recovery after a torn write,
retention by size and age, finding an offset or a time through the marks, a failed write retried."""

from __future__ import annotations

import os
import time

import pytest

from storage import streamlog
from storage.streamlog import SEGMENT_HEAD, StreamLog

ROUTE = b"\x00\x01s"  # exchange "", routing key "s"
PROPS = b"\x00\x00"


def commit(stream: StreamLog) -> None:
    batch = stream.take()
    assert batch is not None
    stream.write(batch)
    stream.written(batch)


def fill(stream: StreamLog, count: int, size: int = 100, timestamp: int = 1000,
         per_batch: int = 1) -> None:
    for index in range(count):
        stream.append(ROUTE, PROPS, b"%06d" % stream.next_offset + b"x" * (size - 6), timestamp)
        if (index + 1) % per_batch == 0:
            commit(stream)
    if stream.has_pending():
        commit(stream)


def read_all(stream: StreamLog, min_offset: int = 0, min_ts: int = 0) -> list[tuple[int, bytes]]:
    got = []
    for segment in stream.segments:
        records, _ = streamlog.read(stream.directory, segment.first_offset, SEGMENT_HEAD.size,
                                    segment.end, min_offset, min_ts, 10**9, 10**9)
        got.extend((offset, body[:6]) for offset, _, _, _, body in records)
        if records:
            min_offset = min_ts = 0
    return got


def test_offsets_segments_and_reopen(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000)
    fill(stream, 20)
    assert len(stream.segments) == 3
    assert stream.message_count == 20
    assert [offset for offset, _ in read_all(stream)] == list(range(20))
    stream.close()
    again = StreamLog.open(tmp_path / "s", segment_size=1000)
    assert (again.first_offset, again.committed, again.next_offset) == (0, 20, 20)
    assert [segment.first_offset for segment in again.segments] == [
        segment.first_offset for segment in stream.segments]
    assert again.last_chunk == 19
    fill(again, 2)
    assert [offset for offset, _ in read_all(again)] == list(range(22))


def test_a_torn_tail_is_cut_and_appends_go_on_after_it(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=100_000)
    fill(stream, 5, per_batch=5)
    stream.close()
    path = streamlog.segment_file(tmp_path / "s", 0)
    size = path.stat().st_size
    with open(path, "ab") as file:  # half of a sixth record, as a kill -9 mid-write leaves it
        file.write(b"\x00\x00\x00\x80garbage")
    again = StreamLog.open(tmp_path / "s", segment_size=100_000)
    assert path.stat().st_size == size
    assert again.committed == 5 and again.last_chunk == 0
    fill(again, 1)
    assert [offset for offset, _ in read_all(again)] == list(range(6))


def test_a_damaged_last_record_is_cut(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=100_000)
    fill(stream, 3)
    stream.close()
    path = streamlog.segment_file(tmp_path / "s", 0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    again = StreamLog.open(tmp_path / "s", segment_size=100_000)
    assert again.committed == 2
    assert [offset for offset, _ in read_all(again)] == [0, 1]


def test_retention_by_size_drops_whole_old_segments(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000, max_bytes=2000)
    fill(stream, 40)
    files = sorted(os.listdir(tmp_path / "s"))
    assert stream.disk_bytes <= 2000 + 1000
    assert stream.first_offset > 0
    assert files == [f"{segment.first_offset:020d}.seg" for segment in stream.segments]
    offsets = [offset for offset, _ in read_all(stream)]
    assert offsets == list(range(stream.first_offset, 40))


def test_retention_by_age_keeps_the_newest_segment(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000, max_age_ms=60_000)
    fill(stream, 10, timestamp=1000)  # long ago: each new segment drops the older ones
    assert len(stream.segments) == 1 and stream.first_offset > 0  # the newest stays
    fill(stream, 10, timestamp=int(time.time() * 1000))
    offsets = [offset for offset, _ in read_all(stream)]
    assert offsets[-10:] == list(range(10, 20))
    assert offsets[0] >= 5


@pytest.mark.parametrize("count", [3000])
def test_marks_find_an_offset_and_a_time(tmp_path, count):
    stream = StreamLog.open(tmp_path / "s", segment_size=10_000_000)
    for index in range(count):
        stream.append(ROUTE, PROPS, b"%06d" % index + b"y" * 994, 1000 + index)
    commit(stream)
    segment = stream.segments[0]
    assert len(segment.marks) // 3 > 5  # a mark every MARK_EVERY bytes
    position = segment.place(2500, None)
    assert position > SEGMENT_HEAD.size
    records, _ = streamlog.read(stream.directory, 0, position, segment.end, 2500, 0, 1, 10**9)
    assert records[0][0] == 2500
    position = segment.place(None, 1000 + 1234)
    records, _ = streamlog.read(stream.directory, 0, position, segment.end, 0, 1000 + 1234, 1,
                                10**9)
    assert records[0][0] == 1234


def test_a_failed_write_is_retried_at_the_same_place(tmp_path, monkeypatch):
    stream = StreamLog.open(tmp_path / "s", segment_size=100_000)
    fill(stream, 2)
    stream.append(ROUTE, PROPS, b"000002", 1000)
    batch = stream.take()

    def broken(_fd):
        raise OSError("disk gone")

    monkeypatch.setattr(streamlog.os, "fsync", broken)
    with pytest.raises(OSError):
        stream.write(batch)
    monkeypatch.undo()
    stream.write(batch)
    stream.written(batch)
    assert [offset for offset, _ in read_all(stream)] == [0, 1, 2]
    stream.close()
    assert StreamLog.open(tmp_path / "s").committed == 3


def test_removing_a_stream_renames_it_aside_then_deletes_it(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000)
    fill(stream, 3)
    stream.remove()
    assert not (tmp_path / "s").exists()  # a stream declared again under the name starts empty
    batch = stream.take()
    stream.write(batch)
    assert os.listdir(tmp_path) == []


def test_a_segment_torn_as_it_was_created_is_removed(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000)
    fill(stream, 12)
    stream.close()
    torn = streamlog.segment_file(tmp_path / "s", stream.committed)
    torn.write_bytes(b"WARREN")  # a kill -9 while the next segment's header was written
    again = StreamLog.open(tmp_path / "s", segment_size=1000)
    assert not torn.exists()
    assert again.committed == 12
    fill(again, 10)
    assert [offset for offset, _ in read_all(again)] == list(range(22))


def test_a_record_larger_than_a_segment_or_a_read_gets_a_segment_of_its_own(tmp_path):
    stream = StreamLog.open(tmp_path / "s", segment_size=1000)
    fill(stream, 1, size=100)
    fill(stream, 1, size=5_000_000)
    fill(stream, 1, size=100)
    assert [segment.first_offset for segment in stream.segments] == [0, 1, 2]
    segment = stream.segments[1]
    records, position = streamlog.read(stream.directory, 1, SEGMENT_HEAD.size, segment.end, 0,
                                       0, 10, 1000)
    assert [(offset, len(body)) for offset, _, _, _, body in records] == [(1, 5_000_000)]
    assert position == segment.end
    assert [offset for offset, _ in read_all(stream)] == [0, 1, 2]
