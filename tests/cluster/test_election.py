"""Leader election through a real etcd, in-process: two or three candidates with their own
leases (broker/cluster/election.py, lease.py, etcd.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from etcd_process import EtcdProcess

from broker.cluster.election import Election
from broker.cluster.etcd import ClusterKeys, EtcdUnavailable
from broker.cluster.lease import LeaseSession

TTL = 2


class FakeClock:
    """Monotonic time that a test can move forward, as a SIGSTOP of the process would."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


async def candidate(etcd: EtcdProcess, name: str, cluster: str,
                    clock: FakeClock | None = None) -> Election:
    keys = ClusterKeys((etcd.endpoint,), cluster, call_timeout=1.0)
    lease = LeaseSession(keys, TTL, on_expired=lambda: None, **({"clock": clock} if clock else {}))
    await lease.grant()
    return Election(keys, name, {"amqp": ["127.0.0.1", 1], "http": ["127.0.0.1", 2],
                                 "replication": ["127.0.0.1", 3]}, lease)


async def close(*elections: Election) -> None:
    for election in elections:
        await election.lease.close(revoke=False)
        await election.keys.close()


async def test_one_leader_elected_and_seen_by_the_other(etcd: EtcdProcess) -> None:
    a, b = await candidate(etcd, "a", "one"), await candidate(etcd, "b", "one")
    try:
        epoch = await a.campaign()
        assert epoch is not None and a.may_confirm()
        assert await b.campaign() is None  # the key exists: b does not lead
        assert not b.may_confirm()
        leader = await b.leader()
        assert (leader.node, leader.epoch, leader.amqp) == ("a", epoch, ("127.0.0.1", 1))
        in_sync = await b.keys.in_sync()
        assert (in_sync.epoch, in_sync.members) == (epoch, {"a"})
        assert not await b.eligible()  # only members of the in-sync set may campaign
    finally:
        await close(a, b)


async def test_leader_gone_a_member_takes_over_within_the_ttl(etcd: EtcdProcess) -> None:
    a, b, c = [await candidate(etcd, name, "two") for name in "abc"]
    try:
        first = await a.campaign()
        assert await a.write_in_sync({"b"})  # b caught up; c did not
        await a.lease.close(revoke=False)  # a dies: its lease is no longer kept alive
        started = time.monotonic()
        while await b.leader() is not None:
            assert time.monotonic() - started < TTL + 2, "the dead leader's key stayed"
            await asyncio.sleep(0.1)
        assert await c.campaign() is None  # not in the in-sync set
        second = await b.campaign()
        assert second is not None and second > first
        assert (await c.leader()).node == "b"
        assert not await a.write_in_sync({"c"})  # the old leader is fenced off by its epoch
        assert not a.may_confirm()
        assert (await c.keys.in_sync()).members == {"b"}
    finally:
        await close(a, b, c)


async def test_paused_leader_stops_confirming_before_its_lease_can_lapse(
        etcd: EtcdProcess) -> None:
    clock = FakeClock()
    a, b = await candidate(etcd, "a", "three", clock), await candidate(etcd, "b", "three")
    try:
        await a.campaign()
        await a.write_in_sync({"b"})
        assert a.may_confirm()
        a.lease._task.cancel()  # the process is stopped: no keep-alive goes out ...
        clock.skew = TTL - 0.4  # ... and when it runs again, time has passed
        assert not a.may_confirm(), "confirming this close to the lease's end is unsafe"
        deadline = time.monotonic() + TTL + 3
        while await b.campaign() is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert not await a.still_leading()
        assert not a.may_confirm()
    finally:
        await close(a, b)


async def test_etcd_down_the_leader_stops_confirming_and_resumes_after(
        etcd: EtcdProcess) -> None:
    a = await candidate(etcd, "a", "four")
    try:
        await a.campaign()
        etcd.stop()
        with pytest.raises(EtcdUnavailable):
            await a.leader()
        deadline = time.monotonic() + TTL + 2
        while a.may_confirm():
            assert time.monotonic() < deadline, "confirming without a lease it can renew"
            await asyncio.sleep(0.1)
        etcd.start()
        deadline = time.monotonic() + 10
        while True:  # back: the lease expired meanwhile or not; a fresh campaign decides
            try:
                if await a.leader() is None:
                    await a.lease.grant()
                    if await a.campaign() is not None:
                        break
                elif await a.still_leading() and a.may_confirm():
                    break
            except EtcdUnavailable:
                pass
            assert time.monotonic() < deadline, "etcd back, but no leader again"
            await asyncio.sleep(0.2)
        assert a.may_confirm()
    finally:
        await close(a)


async def test_next_leader_is_watched_from_the_revision_read_and_across_an_etcd_restart(
        etcd: EtcdProcess) -> None:
    a, b = await candidate(etcd, "a", "five"), await candidate(etcd, "b", "five")
    try:
        epoch = await a.campaign()
        leader, revision = await b.keys.leader_at()
        assert leader.epoch == epoch
        waiting = asyncio.create_task(b.keys.next_leader(epoch, revision))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # nothing changed
        await a.keys.resign(epoch)
        async with asyncio.timeout(5):
            assert await waiting is None
        # A change between the read and the watch is not missed: it is watched from `revision`.
        _, revision = await b.keys.leader_at()
        second = await a.campaign()  # (a, the only member of the in-sync set)
        async with asyncio.timeout(5):
            assert (await b.keys.next_leader(None, revision)).epoch == second
        # etcd restarted: the watch breaks; the slow look and a new watch see the next leader.
        _, revision = await b.keys.leader_at()
        waiting = asyncio.create_task(b.keys.next_leader(second, revision))
        etcd.stop()
        etcd.start()
        async with asyncio.timeout(15):
            while True:
                try:
                    await a.keys.resign(second)
                    break
                except EtcdUnavailable:
                    await asyncio.sleep(0.2)
            assert await waiting is None
    finally:
        await close(a, b)


async def test_a_cancelled_lease_close_is_cancelled_and_ends_the_lease(etcd: EtcdProcess) -> None:
    a = await candidate(etcd, "a", "six")
    try:
        await a.campaign()
        closing = asyncio.ensure_future(a.lease.close(revoke=False))
        await asyncio.sleep(0)  # waiting for the keep-alive task to end
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing  # the caller's cancel is not swallowed
        assert not a.may_confirm()
        await asyncio.sleep(0.05)
        assert a.lease._task.done()  # and the keep-alives stopped all the same
    finally:
        await close(a)


async def test_history_compacted_a_watch_from_before_falls_back_and_sees_the_change(
        etcd: EtcdProcess) -> None:
    a = await candidate(etcd, "a", "seven")
    try:
        epoch = await a.campaign()
        _, old_revision = await a.keys.leader_at()
        for round_ in range(20):  # history, as the node keys' updates make it
            await a.keys.register("a", {"round": round_}, a.lease.id)
        compacted = await a.keys.compact(keep=5)
        assert compacted > old_revision
        waiting = asyncio.create_task(a.keys.next_leader(epoch, old_revision))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the leader key did not change
        await a.keys.resign(epoch)
        async with asyncio.timeout(10):
            assert await waiting is None
    finally:
        await close(a)
