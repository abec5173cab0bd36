"""A callback that raises while the write-ahead log releases a batch's waiters (or one of its
flush hooks) does not wedge the log: the other waiters of that batch are still called, later
batches are written and released, and drain() (what a clean stop waits for) returns.

Faults are injected in-process on a real WriteAheadLog writing real segment files; the same
fault through a whole broker (publisher confirms, clean stop, restart) is
test_raising_confirm_callback_does_not_wedge_the_log in tests/broker/test_step_faults.py.
"""

from __future__ import annotations

import asyncio
import logging

from storage.records import frame, read_record
from storage.wal import WriteAheadLog, segment_path


class Boom(Exception):
    """The injected fault."""


def _raise() -> None:
    raise Boom("injected")


def _records_on_disk(directory, first_offset: int) -> list[bytes]:
    data = segment_path(directory, 1).read_bytes()
    found, offset = [], first_offset
    while offset < len(data):
        _, end = read_record(data, offset)
        found.append(data[offset:end])
        offset = end
    return found


async def test_raising_waiter_does_not_stop_the_batch_or_the_log(tmp_path, caplog):
    wal = WriteAheadLog(tmp_path, 1)
    called: list[str] = []
    records = [frame(1, f"record {n}".encode() * 50) for n in range(4)]
    try:
        ticket, _, first_offset = wal.append(records[0])
        wal.when_durable(ticket, lambda: called.append("before"))
        wal.when_durable(ticket, _raise)
        wal.when_durable(ticket, _raise)
        wal.when_durable(ticket, lambda: called.append("after"))
        with caplog.at_level(logging.ERROR, logger="storage.wal"):
            await asyncio.wait_for(wal.drain(), 5)
        assert called == ["before", "after"]
        assert wal.callback_failures == 2
        logged = [r for r in caplog.records if "raised" in r.getMessage()]
        assert len(logged) == 1, "one line per batch, not one per failing waiter"

        for n in (1, 2, 3):  # later batches: written and released
            ticket, _, _ = wal.append(records[n])
            wal.when_durable(ticket, lambda n=n: called.append(f"later {n}"))
            await asyncio.wait_for(wal.drain(), 5)
        assert called == ["before", "after", "later 1", "later 2", "later 3"]
        assert wal.durable_ticket == ticket
    finally:
        wal.close()
    assert _records_on_disk(tmp_path, first_offset) == records


async def test_raising_flush_hooks_do_not_wedge_the_log(tmp_path):
    wal = WriteAheadLog(tmp_path, 1)
    wal.before_flush = _raise
    wal.after_flush = _raise
    called: list[int] = []
    records = [frame(1, f"record {n}".encode() * 50) for n in range(3)]
    try:
        first_offset = None
        for n, record in enumerate(records):
            ticket, _, offset = wal.append(record)
            first_offset = offset if first_offset is None else first_offset
            wal.when_durable(ticket, lambda n=n: called.append(n))
            await asyncio.wait_for(wal.drain(), 5)
        assert called == [0, 1, 2]
        assert wal.callback_failures == 6  # both hooks, each batch
    finally:
        wal.close()
    assert _records_on_disk(tmp_path, first_offset) == records


async def test_raising_definitions_snapshot_does_not_hold_back_records(tmp_path):
    definitions = tmp_path / "definitions.json"
    wal = WriteAheadLog(tmp_path, 1, definitions_path=definitions)
    called: list[str] = []
    try:
        wal.definitions_changed(_raise)
        ticket, _, _ = wal.append(frame(1, b"message"))
        wal.when_durable(ticket, lambda: called.append("durable"))
        await asyncio.wait_for(wal.drain(), 5)
        assert called == ["durable"] and not definitions.exists()

        wal.definitions_changed(lambda: b'{"ok": true}')  # the next change is written
        await asyncio.wait_for(wal.drain(), 5)
        assert definitions.read_bytes() == b'{"ok": true}'
    finally:
        wal.close()
