"""File actions (storage/replication/files.py) on real directories: catch-up turns any
follower dir into the leader's, deletes come last, and an action outside the replicated
files is refused."""

from __future__ import annotations

import pytest

from storage.replication.files import CHUNK_SIZE, Applier, catch_up_actions, check_path, list_files
from storage.replication.wire import DELETE, REPLACE, TRUNCATE, ProtocolError


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
