"""The page store in process (storage/paging.py): whatever mix of paging out, reading back and
dropping, every body comes back as it went in, files are deleted once nothing in them is held,
compaction keeps the files near the live data, and the directory of an earlier run is emptied.
(The broker-level behaviour is in test_paged_transient.py.)"""

from __future__ import annotations

import asyncio
import os
import random
import threading

from broker.message import Message
from protocol.codec import shortstr
from storage import paging
from storage.paging import PageStore

FILE_SIZE = 4096


def message(number: int, size: int) -> Message:
    key = f"q{number % 3}"
    body = (b"%08d" % number + bytes([number % 251]) * size)[:max(size, 8)]
    props = b"\x00\x00" if number % 2 else b"\x10\x00\x01"  # two metas, never parsed here
    return Message("", key, shortstr("") + shortstr(key), props, body)


async def settle(store: PageStore) -> None:
    for _ in range(200):
        if not (store._writing or store._bodies or store._copies or store._doomed):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("page store writes did not finish")


def files(store: PageStore) -> list[str]:
    return sorted(path.name for path in store.directory.iterdir())


def test_random_mix_gives_every_body_back(tmp_path):
    async def run() -> None:
        store = PageStore(tmp_path / "transient", FILE_SIZE, Message.logged)
        rng = random.Random(7)
        held: list[tuple[int, bytes]] = []  # (row, body) in order of paging
        number = 0
        for step in range(400):
            action = rng.random()
            if action < 0.5 or not held:
                batch = [message(number + i, rng.choice((10, 100, 700))) for i in
                         range(rng.randint(1, 40))]
                number += len(batch)
                rows = store.add(batch)
                held += [(row, item.body) for row, item in zip(rows, batch, strict=True)]
            elif action < 0.8:
                count = rng.randint(1, min(len(held), 50))
                taken, held = held[:count], held[count:]
                thawed = store.thaw([row for row, _ in taken])
                assert [item.body for item in thawed] == [body for _, body in taken]
            else:  # a queue purged: rows from anywhere
                count = rng.randint(1, min(len(held), 30))
                start = rng.randrange(0, len(held) - count + 1)
                store.drop([[row for row, _ in held[start:start + count]]])
                del held[start:start + count]
            if step % 25 == 0:
                await settle(store)
        await settle(store)
        thawed = store.thaw([row for row, _ in held])
        assert [item.body for item in thawed] == [body for _, body in held]
        await settle(store)
        assert store.count == 0 and store.live_bytes == 0
        assert len(files(store)) <= 1  # the file being filled
        store.close()
        assert not store.directory.exists()

    asyncio.run(run())


def test_a_few_long_held_rows_do_not_keep_every_file(tmp_path):
    async def run() -> None:
        store = PageStore(tmp_path / "transient", FILE_SIZE, Message.logged)
        pinned: list[tuple[int, bytes]] = []
        for round_ in range(30):
            keep = message(round_, 50)
            (row,) = store.add([keep])
            pinned.append((row, keep.body))
            busy = [message(1000 + round_ * 100 + i, 200) for i in range(40)]
            rows = store.add(busy)
            await settle(store)
            assert [item.body for item in store.thaw(list(rows))] == [m.body for m in busy]
            await settle(store)
        assert len(files(store)) <= 4, files(store)
        thawed = store.thaw([row for row, _ in pinned])
        assert [item.body for item in thawed] == [body for _, body in pinned]
        store.close()

    asyncio.run(run())


def test_an_earlier_runs_files_are_removed(tmp_path):
    directory = tmp_path / "transient"
    directory.mkdir()
    (directory / "000000000001.pages").write_bytes(b"old")

    async def run() -> None:
        store = PageStore(directory, FILE_SIZE, Message.logged)
        assert files(store) == []
        store.close()

    asyncio.run(run())


def test_a_batch_larger_than_one_write_comes_back_whole(tmp_path, monkeypatch):
    """Neighbouring bodies go to the file in vectored writes of at most IOV_MAX buffers, never
    joined (a join of a whole batch would double its memory for a moment), and a write that
    the kernel takes only part of goes on where it stopped: every body still comes back."""
    calls: list[int] = []
    real_pwritev = os.pwritev

    def short_pwritev(descriptor, buffers, offset):
        calls.append(len(buffers))
        if len(calls) % 2:  # every other call: the kernel takes half of the first buffer only
            return real_pwritev(descriptor, [memoryview(buffers[0])[:len(buffers[0]) // 2]],
                                offset)
        return real_pwritev(descriptor, buffers, offset)

    monkeypatch.setattr(paging.os, "pwritev", short_pwritev)

    async def run() -> None:
        store = PageStore(tmp_path / "transient", 64 << 20, Message.logged)
        batch = [message(number, 2_000) for number in range(3000)]  # one file, one run
        rows = store.add(batch)
        await settle(store)
        assert max(calls) == paging._IOV_MAX and len(calls) >= 4
        assert [item.body for item in store.thaw(rows)] == [item.body for item in batch]
        store.close()

    asyncio.run(run())


def test_a_message_paged_again_into_its_old_row_waits_for_its_new_write(tmp_path, monkeypatch):
    """A queue thaws rows whose write is still under way (their objects are used), then pages
    the same messages out again behind its head: they get the same rows back (freed rows are
    reused) at new places in the file. When the first write ends, the rows must still wait for
    the second: read from the file before it is written, the bodies were lost (seen under load
    in test_paged_transient.py::test_limits as 11 dead-lettered messages missing)."""
    gate = threading.Event()
    real_write = paging._write
    writes: list[int] = []

    def write_then_wait(*args):
        writes.append(len(writes))
        if len(writes) > 1:  # the second write is held back until the test lets it go
            gate.wait(10)
        return real_write(*args)

    monkeypatch.setattr(paging, "_write", write_then_wait)

    async def run() -> None:
        store = PageStore(tmp_path / "transient", FILE_SIZE, Message.logged)
        try:
            batch = [message(number, 100) for number in range(5)]
            rows = store.add(batch)
            await asyncio.sleep(0)  # the first write starts
            thawed = store.thaw(rows)  # before it is reported done: the objects come back
            assert [item.body for item in thawed] == [item.body for item in batch]
            again = store.add(thawed)
            assert list(again) == list(rows)  # the freed rows, reused in order
            for _ in range(400):  # the first write is reported done; the second waits
                if store.bytes_written:
                    break
                await asyncio.sleep(0.005)
            assert store.bytes_written and len(writes) == 2
            back = store.thaw(again)
            assert store.lost == 0
            assert [item.body for item in back] == [item.body for item in batch]
        finally:
            gate.set()
        await settle(store)
        store.close()

    asyncio.run(run())
