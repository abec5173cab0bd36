"""The log scan and the index snapshot, files only (no broker): storage/scan.py replays segment
files into a catalog (storage/catalog.py), storage/snapshot.py writes a catalog to a file and
reads it back, refusing anything it cannot trust.

The scan is checked against a reference replay written the plain way (a dict of members per
queue, as recovery worked before the catalog existed), on hand-made and random logs.
"""

from __future__ import annotations

import os
import random
import struct
from array import array
from pathlib import Path

import pytest

from storage import records, snapshot
from storage.catalog import ROW_ARRAYS, SEVERAL, Catalog, QueueRows
from storage.records import DELIVERED, REMOVE
from storage.scan import scan
from storage.store import _restore_order
from storage.wal import segment_path

A, B, C = ("/", "a"), ("/", "b"), ("other", "c")


def publish(message_id: int, queues, body: bytes = b"body", props: bytes = b"\x10\x00\x02",
            exchange: str = "", routing_key: str = "rk", published: int = 1_700_000_000_000
            ) -> bytes:
    return records.encode_publish(message_id, published, list(queues), exchange, routing_key,
                                  props, body)[0]


def write_log(directory: Path, segments: dict[int, list[bytes]]) -> Path:
    directory.mkdir(exist_ok=True)
    for number, pieces in segments.items():
        segment_path(directory, number).write_bytes(
            records.segment_header(number) + b"".join(pieces)
        )
    return directory


def members(catalog: Catalog) -> dict[tuple[str, str], list[tuple[int, bool]]]:
    """queue -> [(message id, delivered)] in queue order, as recovery sees it."""
    found = {}
    for key, held in catalog.by_queue().items():
        found[key] = [
            (catalog.ids[row], bool(held.shared_at.get(position, catalog.delivered[row])))
            for position, row in enumerate(held.rows)
        ]
    return found


def reference(segments: dict[int, list[bytes]]) -> dict[tuple[str, str], list[tuple[int, bool]]]:
    """The same replay, the plain way."""
    published: set[int] = set()
    queues: dict[tuple[str, str], dict[int, bool]] = {}
    for number in sorted(segments):
        data = b"".join(segments[number])
        offset = 0
        while offset < len(data):
            payload, offset = records.read_record(data, offset)
            record = records.decode_payload(payload)
            if isinstance(record, records.PublishRecord):
                if record.message_id in published:
                    for key, held in queues.items():
                        if key not in record.queues:
                            held.pop(record.message_id, None)
                published.add(record.message_id)
                for key in record.queues:
                    queues.setdefault(key, {}).setdefault(record.message_id, False)
            elif isinstance(record, records.IdsRecord):
                held = queues.get(record.queue)
                for message_id in record.message_ids if held is not None else ():
                    if record.record_type == REMOVE:
                        held.pop(message_id, None)
                    elif message_id in held:
                        held[message_id] = True
            else:
                queues.pop(record.queue, None)
    return {key: sorted(held.items()) for key, held in queues.items() if held}


def check(tmp_path: Path, segments: dict[int, list[bytes]]) -> Catalog:
    catalog = scan(write_log(tmp_path / "wal", segments))
    assert members(catalog) == reference(segments)
    return catalog


# -- hand-made logs ---------------------------------------------------------------------------


def test_publish_remove_deliver(tmp_path):
    catalog = check(tmp_path, {1: [
        *(publish(i, [A]) for i in range(1, 6)),
        records.encode_ids(REMOVE, A, [2, 99]),  # 99 was never logged
        records.encode_ids(DELIVERED, A, [3, 4]),
        records.encode_ids(DELIVERED, B, [5]),  # not b's
    ]})
    assert members(catalog) == {A: [(1, False), (3, True), (4, True), (5, False)]}
    assert catalog.in_id_order


def test_shared_message_has_a_flag_per_queue(tmp_path):
    catalog = check(tmp_path, {1: [
        publish(1, [A, B, C]), publish(2, [A, B]),
        records.encode_ids(DELIVERED, A, [1]),
        records.encode_ids(REMOVE, B, [1]),
        records.encode_ids(DELIVERED, C, [1]),
        records.encode_ids(REMOVE, A, [2]),
    ]})
    assert members(catalog) == {A: [(1, True)], B: [(2, False)], C: [(1, True)]}
    assert catalog.holders[0] == SEVERAL and catalog.holders[1] >= 0  # 2 is b's alone now


def test_copy_moved_forward_lists_the_queues_still_holding_it(tmp_path):
    catalog = check(tmp_path, {
        1: [publish(1, [A, B], b"one"), records.encode_ids(DELIVERED, A, [1]),
            publish(2, [A], b"two")],
        2: [records.encode_ids(REMOVE, B, [1]), publish(1, [A], b"one")],  # a copy
    })
    assert members(catalog) == {A: [(1, True), (2, False)]}
    row = list(catalog.ids).index(1)
    assert catalog.segments[row] == 2
    data = segment_path(tmp_path / "wal", 2).read_bytes()
    assert data[catalog.body_offsets[row]:][:catalog.body_sizes[row]] == b"one"


def test_copy_whose_original_segment_is_gone_is_put_in_id_order(tmp_path):
    catalog = check(tmp_path, {
        2: [publish(5, [A]), publish(6, [A])],
        3: [publish(2, [A]), publish(7, [A])],  # 2: copied forward from deleted segment 1
    })
    assert [message_id for message_id, _ in members(catalog)[A]] == [2, 5, 6, 7]
    assert not catalog.in_id_order


def test_purge_forgets_what_was_logged_before_it(tmp_path):
    check(tmp_path, {1: [
        publish(1, [A, B]), publish(2, [A]),
        records.encode_purge(A),
        records.encode_ids(REMOVE, A, [1]),  # about nothing any more
        publish(3, [A]), records.encode_ids(DELIVERED, A, [2, 3]),
    ]})


def test_shapes_change_between_records(tmp_path):
    """Exchange, routing key, properties and queues change from record to record (the fast
    path takes runs of the same shape; the rest is decoded)."""
    pieces = []
    for i in range(1, 40):
        pieces.append(publish(i, [A] if i % 7 else [A, B], body=b"x" * i,
                              props=b"\x10\x00\x02" if i % 5 else bytes([i]),
                              exchange="ex" if i % 3 else "", routing_key=f"k{i % 4}",
                              published=1_700_000_000_000 + i))
    catalog = check(tmp_path, {1: pieces})
    for row in range(len(catalog)):
        i = catalog.ids[row]
        exchange, routing_key, props = catalog.meta_table[catalog.metas[row]]
        assert (exchange, routing_key) == ("ex" if i % 3 else "", f"k{i % 4}")
        assert props == (b"\x10\x00\x02" if i % 5 else bytes([i]))
        assert catalog.body_sizes[row] == i
        assert catalog.published[row] == 1_700_000_000_000 + i


def test_state_records_mark_a_queues_rows(tmp_path):
    """A STATE entry is the queue's latest state of a row it holds (absolute: the last one
    counts), and a DELIVERED after it says the message is out again; a REMOVE from that queue
    forgets it; a row the queue does not hold is not marked."""
    catalog = scan(write_log(tmp_path, {1: [
        publish(1, [A, B]), publish(2, [A]), publish(3, [B]),
        records.encode_states(A, [(1, 1, 0, 0), (2, 1, 0, 0), (3, 5, 0, 0)]),
        records.encode_states(A, [(1, 2, 0, 9)]),
        records.encode_ids(DELIVERED, A, [1]),  # delivered again since: out
        records.encode_states(B, [(1, 0, 1, 0), (3, 1, 0, 0)]),
        records.encode_ids(REMOVE, B, [3]),
    ]}))
    marks = {key: dict(held.marks_at) for key, held in catalog.by_queue().items()}
    assert marks == {A: {0: (2, 0, 9, 1), 1: (1, 0, 0, 0)}, B: {0: (0, 1, 0, 0)}}


def test_corrupt_record_is_skipped_and_counted(tmp_path):
    bad = bytearray(publish(2, [A]))
    bad[-1] ^= 0xFF
    catalog = scan(write_log(tmp_path / "wal",
                             {1: [publish(1, [A]), bytes(bad), publish(3, [A])]}))
    assert members(catalog) == {A: [(1, False), (3, False)]}
    assert catalog.corrupt_records == 1


# -- random logs ------------------------------------------------------------------------------


def random_log(rng: random.Random) -> dict[int, list[bytes]]:
    """Publishes (to one or more queues), removes, deliveries, purges and compaction-like
    copies, over a few segments."""
    keys = [A, B, C]
    live: dict[int, set] = {}  # id -> queues holding it
    segments: dict[int, list[bytes]] = {}
    next_id = 1
    for number in range(1, rng.randint(2, 5)):
        pieces = segments[number] = []
        for _ in range(rng.randint(0, 40)):
            kind = rng.random()
            if kind < 0.45 or not live:
                queues = rng.sample(keys, rng.choice([1, 1, 1, 2, 3]))
                pieces.append(publish(next_id, queues, props=bytes([rng.randint(0, 2)])))
                live[next_id] = set(queues)
                next_id += 1
            elif kind < 0.65:
                key = rng.choice(keys)
                ids = rng.sample(sorted(live), min(len(live), rng.randint(1, 4)))
                pieces.append(records.encode_ids(REMOVE, key, ids))
                for message_id in ids:
                    live[message_id].discard(key)
            elif kind < 0.85:
                key = rng.choice(keys)
                ids = rng.sample(sorted(live), min(len(live), rng.randint(1, 4)))
                pieces.append(records.encode_ids(DELIVERED, key, ids))
            elif kind < 0.92:
                key = rng.choice(keys)
                pieces.append(records.encode_purge(key))
                for holders in live.values():
                    holders.discard(key)
            else:  # a copy of a live message, listing the queues still holding it
                message_id = rng.choice(sorted(live))
                if live[message_id]:
                    pieces.append(publish(message_id, sorted(live[message_id])))
    if rng.random() < 0.3 and len(segments) > 1:
        del segments[min(segments)]  # compacted away
    return segments


@pytest.mark.parametrize("seed", range(60))
def test_random_logs_replay_as_the_reference_does(tmp_path, seed):
    check(tmp_path, random_log(random.Random(seed)))


# -- the index snapshot -----------------------------------------------------------------------


def live_catalog() -> Catalog:
    """A catalog as the store writes one: blocks of rows per queue in id order, then rows
    several queues hold."""
    catalog = Catalog(next_id=99, groups=[(0, 0, 3), (1, 3, 4)])
    catalog.queue_keys = [A, B, C]
    catalog.meta_table = [("", "rk", b"\x10\x00\x02"), ("ex", "ünï", b"")]
    rows = [  # id, segment, offset, size, published, meta, holder, delivered
        (1, 1, 100, 10, 1_700_000_000_001, 0, 0, 0),
        (4, 2, 200, 0, 1_700_000_000_004, 1, 0, 1),
        (7, 2, 300, 2**31, 1_700_000_000_007, 0, 0, 0),
        (2, 1, 400, 5, 1_700_000_000_002, 1, 1, 1),
        (3, 1, 500, 5, 1_700_000_000_003, 0, SEVERAL, 0),
    ]
    for values in rows:
        for (name, _), value in zip(snapshot.ROW_ARRAYS, values, strict=True):
            getattr(catalog, name).append(value)
    catalog.shared[4] = {1: True, 2: False}
    return catalog


STAMPS = {1: (1000, 123, 0xDEADBEEF), 2: (2000, 456, 7)}


def test_put_row_appends_or_overwrites_every_column():
    """A row written over a free one holds the new message's fields in every column of
    ROW_ARRAYS (the arguments come in that order), and nothing of the old message."""
    catalog = Catalog()
    first = catalog.put_row(None, 1, 2, 3, 4, 5, 6, 7, 1)
    second = catalog.put_row(None, 11, 12, 13, 14, 15, 16, 17, 0)
    assert (first, second) == (0, 1)
    assert catalog.put_row(first, 21, 22, 23, 24, 25, 26, 27, 0) == first
    assert len(catalog) == 2
    assert [[getattr(catalog, name)[row] for name, _ in ROW_ARRAYS] for row in (0, 1)] == [
        [21, 22, 23, 24, 25, 26, 27, 0], [11, 12, 13, 14, 15, 16, 17, 0]]


def test_snapshot_round_trip():
    written = live_catalog()
    # a count of returns, a kept dead letter, a place at the back
    written.marks = {(0, 0): (3, 0, 0, 0), (3, 1): (0, 1, 0, 0), (1, 0): (1, 0, 120, 1)}
    catalog, stamps = snapshot.decode(snapshot.encode(written, STAMPS))
    assert stamps == STAMPS
    for name, _ in snapshot.ROW_ARRAYS:
        assert getattr(catalog, name) == getattr(written, name), name
    assert (catalog.queue_keys, catalog.meta_table, catalog.shared, catalog.groups,
            catalog.next_id, catalog.marks) == (written.queue_keys, written.meta_table,
                                                written.shared, written.groups, 99,
                                                written.marks)
    assert members(catalog) == {A: [(1, False), (4, True), (7, False)],
                                B: [(2, True), (3, True)], C: [(3, False)]}


def test_snapshot_header_is_little_endian_magic_version_crc_length():
    data = snapshot.encode(live_catalog(), STAMPS)
    magic, version, _, _, length = struct.unpack_from("<8sHHIQ", data)
    assert (magic, version, length) == (b"WARRENIX", 2, len(data) - 24)
    assert struct.unpack_from("<IQQI", data, 24 + 32) == (1, 1000, 123, 0xDEADBEEF)


@pytest.mark.parametrize("where", range(0, 400, 7))
def test_snapshot_with_any_byte_flipped_is_refused(where):
    data = bytearray(snapshot.encode(live_catalog(), STAMPS))
    where %= len(data)
    data[where] ^= 0x40
    with pytest.raises(ValueError):
        snapshot.decode(bytes(data))


def test_snapshot_truncated_or_of_another_version_is_refused():
    data = snapshot.encode(live_catalog(), STAMPS)
    for broken in (data[:-1], data[:10], b"", data[:8] + struct.pack("<H", 1) + data[10:]):
        with pytest.raises(ValueError):
            snapshot.decode(broken)


def test_snapshot_whose_groups_lie_is_refused():
    catalog = live_catalog()
    catalog.groups = [(0, 0, 2), (1, 2, 4)]  # row 2 is a's, not b's
    with pytest.raises(ValueError, match="groups"):
        snapshot.decode(snapshot.encode(catalog, STAMPS))


def test_load_checks_the_segments(tmp_path):
    wal = write_log(tmp_path / "wal", {1: [publish(1, [A])], 2: [publish(2, [A])]})
    index = tmp_path / "message-index"
    snapshot.write(index, live_catalog(), snapshot.segment_stamps(wal))
    assert snapshot.load(index, wal) is not None
    with open(segment_path(wal, 2), "ab") as file:  # the log changed since
        file.write(publish(3, [A]))
    assert snapshot.load(index, wal) is None
    snapshot.write(index, live_catalog(), snapshot.segment_stamps(wal))
    segment_path(wal, 2).unlink()
    assert snapshot.load(index, wal) is None
    assert snapshot.load(tmp_path / "missing", wal) is None


def test_load_checks_every_byte_of_the_segments(tmp_path):
    """A byte changed in place with the file's size and time put back (as bit rot would):
    the index is not used, so that the scan finds the damage."""
    wal = write_log(tmp_path / "wal", {1: [publish(1, [A]), publish(2, [A])]})
    index = tmp_path / "message-index"
    snapshot.write(index, live_catalog(), snapshot.segment_stamps(wal))
    loaded = snapshot.load(index, wal)
    assert loaded is not None and set(loaded.segment_stamps) == {1}
    path = segment_path(wal, 1)
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert snapshot.load(index, wal) is None


def test_known_checksums_are_reused_for_unchanged_segments(tmp_path, monkeypatch):
    wal = write_log(tmp_path / "wal", {1: [publish(1, [A])], 2: [publish(2, [A])]})
    stamps = snapshot.segment_stamps(wal)
    computed = []
    real = snapshot.checksums
    monkeypatch.setattr(snapshot, "checksums",
                        lambda wal_dir, numbers: computed.extend(numbers) or real(wal_dir, numbers))
    write_log(tmp_path / "wal", {3: [publish(3, [A])]})
    assert snapshot.segment_stamps(wal, stamps) == snapshot.segment_stamps(wal)
    assert computed[:1] == [3]


def restored(rows, ids, shared_at=(), marks_at=None):
    """What recovery makes of a queue's rows: ("cold", rows...) runs and ("hot", row)."""
    held = QueueRows(rows, dict.fromkeys(shared_at, False), marks_at or {})
    return [("cold", *run) if run is not None else ("hot", rows[position])
            for run, position in _restore_order(rows, held, array("q", ids))]


def test_recovery_puts_marked_rows_in_their_place():
    ids = [10, 20, 30, 40, 50, 60]  # row r has id ids[r]
    rows = range(6)
    assert restored(rows, ids) == [("cold", 0, 1, 2, 3, 4, 5)]
    # a count only, or a row other queues hold: an object where its id puts it
    assert restored(rows, ids, shared_at=[1], marks_at={2: (3, 0, 0, 0)}) == [
        ("cold", 0), ("hot", 1), ("hot", 2), ("cold", 3, 4, 5)]
    # returned to the back when ids up to 45 were taken: after 40, before 50; two returned
    # after 60 keep the order of their places; a kept dead letter stays an object
    assert restored(rows, ids, marks_at={0: (1, 0, 45, 0), 1: (2, 0, 71, 0), 2: (1, 0, 65, 1),
                                         5: (0, 1, 0, 0)}) == [
        ("cold", 3), ("hot", 0), ("cold", 4), ("hot", 5), ("hot", 2), ("hot", 1)]
    # the rows of one queue among others' (an array), the first and last moved
    assert restored(array("I", [3, 5, 7]), [0, 0, 0, 11, 0, 12, 0, 13],
                    marks_at={0: (1, 0, 15, 0), 2: (1, 0, 14, 0)}) == [
        ("cold", 5), ("hot", 7), ("hot", 3)]
