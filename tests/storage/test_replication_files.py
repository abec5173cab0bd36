"""File actions (storage/replication/files.py) on real directories: catch-up turns any
follower dir into the leader's, deletes come last, and an action outside the replicated
files is refused; chunk checksums are cached, extended over a log's growth, and kept up to
date by a follower's own writes without reading."""

from __future__ import annotations

import pytest

from storage.replication.files import (
    CHECKSUMS,
    CHUNK_SIZE,
    Applier,
    ChecksumCache,
    catch_up_actions,
    check_path,
    chunk_crcs,
    list_files,
)
from storage.replication.wire import APPEND, DELETE, REPLACE, TRUNCATE, Action, ProtocolError


def _write(root, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def _contents(root) -> dict[str, bytes]:
    return {info.path: (root / info.path).read_bytes() for info in list_files(root)}


def test_catch_up_makes_the_follower_dir_the_leaders(tmp_path):
    leader, follower = tmp_path / "leader", tmp_path / "follower"
    big = bytes(range(256)) * 10_000  # several chunks
    _write(leader, {"definitions.json": b'{"queues": []}', "wal/000000000002.wal": big,
                    "wal/000000000003.wal": b"new", "streams/61.62/00000000000000000000.seg":
                    b"stream", "transient/000000000001.pages": b"not replicated"})
    _write(follower, {"definitions.json": b'{"queues": [1]}',
                      "wal/000000000001.wal": b"compacted away",
                      "wal/000000000002.wal": big[:1_500_000] + b"unconfirmed tail",
                      "message-index": b"a clean stop's"})
    actions = list(catch_up_actions(leader, list_files(follower), piece=100_000))
    kinds = [(a.kind, a.path) for a in actions]
    assert (REPLACE, "definitions.json") in kinds
    assert (TRUNCATE, "wal/000000000002.wal") in kinds
    cut = next(a for a in actions if a.kind == TRUNCATE and a.path.endswith("2.wal"))
    assert cut.offset == CHUNK_SIZE, "the common prefix is kept, to the last equal chunk"
    assert kinds[-1] == (DELETE, "wal/000000000001.wal"), "deletes come last"
    applier = Applier(follower)
    for action in actions:
        applier.apply(action)
    applier.close()
    assert _contents(follower) == _contents(leader)
    assert (follower / "message-index").exists(), "files outside the replicated set are left"
    assert list(catch_up_actions(leader, list_files(follower))) == [], "nothing more to send"


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "wal/../../x", "transient/1",
                                  "warren.lock", "wal", "", "streams/./x"])
def test_an_action_outside_the_replicated_files_is_refused(path):
    with pytest.raises(ProtocolError, match="outside"):
        check_path(path)


def test_checksums_are_cached_and_a_grown_log_is_read_only_past_its_entry(tmp_path):
    cache = ChecksumCache()
    path = tmp_path / "wal" / "00000001.wal"
    _write(tmp_path, {"wal/00000001.wal": bytes(range(256)) * (3 * CHUNK_SIZE // 256 + 7)})
    crcs, size = cache.crcs(path)
    assert (crcs, size) == chunk_crcs(path) and cache.bytes_read == size
    assert cache.crcs(path) == (crcs, size) and cache.bytes_read == size  # nothing read
    with open(path, "ab") as file:
        file.write(b"x" * (CHUNK_SIZE + 5))
    grown = cache.crcs(path)
    assert grown == chunk_crcs(path)
    assert cache.bytes_read == grown[1]  # the first size, then only what was appended
    cache.forget(tmp_path / "wal")
    assert cache.crcs(path) == grown and cache.bytes_read == 2 * grown[1]


def test_a_followers_own_writes_keep_its_checksums_without_reading(tmp_path):
    applier = Applier(tmp_path)
    name = "wal/00000001.wal"
    data = bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 3)
    applier.apply(Action(TRUNCATE, name, 0))
    applier.apply(Action(APPEND, name, 0, [data[:1000], data[1000:CHUNK_SIZE + 10]]))
    applier.apply(Action(APPEND, name, CHUNK_SIZE + 10, [data[CHUNK_SIZE + 10:]]))
    applier.apply(Action(REPLACE, "definitions.json", 0, [b"{}"]))
    applier.sync()
    before = CHECKSUMS.bytes_read
    listed = {info.path: (info.crcs, info.size) for info in list_files(tmp_path)}
    assert CHECKSUMS.bytes_read == before  # known from the writes
    assert listed[name] == chunk_crcs(tmp_path / name)
    assert listed["definitions.json"] == chunk_crcs(tmp_path / "definitions.json")
    applier.apply(Action(TRUNCATE, name, CHUNK_SIZE))  # a cut at a chunk's end: still known
    applier.sync()
    assert {info.path: (info.crcs, info.size) for info in list_files(tmp_path)}[name] == (
        chunk_crcs(tmp_path / name))
    assert CHECKSUMS.bytes_read == before
    applier.close()
