"""Replication of a data dir (storage/replication/): a leader data dir written by the real
Node, message store and write-ahead log, followers on real sockets in the same process.

The etcd side (writing the in-sync set, the lease behind may_confirm) is the cluster's; here
an InSyncStore (tests/storage/replication_kit.py) records the sets written and can hold a
write, as a slow etcd would. What is checked is on disk and in the log's confirm callbacks."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
from pathlib import Path

import pytest
from replication_kit import (
    SECRET,
    Confirms,
    InSyncStore,
    confirmed,
    declare,
    files_of,
    follower_for,
    in_step,
    publish,
    start_following,
    start_leader,
    stop,
    wait_until,
)

from broker.config import Config
from broker.node import Node
from storage.datadir import lock_data_dir
from storage.replication import ReplicationFollower, ReplicationLeader, ReplicationRefused, wire
from storage.replication import files as replication_files
from storage.replication import follower as follower_module
from storage.replication.transport import introduce, read_message, send


async def test_a_populated_dir_is_caught_up_and_starts_as_a_warren_data_dir(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    task = None
    try:
        declare(node, "orders")
        declare(node, "ledger", **{"x-queue-type": "stream"})
        for n in range(200):
            publish(node, "orders", f"order {n}".encode() * 20)
            publish(node, "ledger", f"entry {n}".encode())
        await node.store.wal.drain()
        follower = follower_for(leader, tmp_path / "follower")
        task = asyncio.ensure_future(follower.run())
        await in_step(node, leader, follower)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        assert any(name.startswith("streams/") for name in files_of(tmp_path / "follower"))
        status = follower.status()
        assert status.caught_up and status.lag_bytes == 0 and status.acked == leader.position
        await wait_until(lambda: [s.in_sync for s in leader.followers()] == [True],
                         "the caught-up follower joins the in-sync set")
        [seen] = leader.followers()
        assert (seen.name, seen.caught_up, seen.lag_bytes) == ("f1", True, 0)
        assert seen.address.startswith("127.0.0.1:")
    finally:
        await stop(node, leader, *(t for t in [task] if t))
    promoted = Node(Config(data_dir=tmp_path / "follower"))
    await promoted.start()
    try:
        queues = promoted.vhosts["/"].queues
        assert queues["orders"].message_count == 200
        assert queues["ledger"].message_count == 200
    finally:
        await promoted.stop()


async def test_live_actions_follow_publishes_acks_definitions_and_segment_deletes(tmp_path):
    node, leader, follower, task = await start_following(tmp_path, in_sync=set(), min_in_sync=0)
    try:
        await in_step(node, leader, follower)
        node.store.wal.segment_size = 64 * 1024  # several segments, some of them deleted
        declare(node, "live")
        for n in range(300):
            publish(node, "live", b"x" * 1000 + str(n).encode())
        await in_step(node, leader, follower)
        queue = node.vhosts["/"].queues["live"]
        for _ in range(250):  # acked: their segments die and are deleted
            entry = queue.get(no_ack=True)
            assert entry is not None
        for n in range(20):
            publish(node, "live", f"after {n}".encode())
        node.add_vhost("replicated-vhost")
        await in_step(node, leader, follower)
        await asyncio.sleep(0.1)  # the deletes go with the batch after the acks
        await in_step(node, leader, follower)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        assert b"replicated-vhost" in (tmp_path / "follower" / "definitions.json").read_bytes()
        assert not (tmp_path / "follower" / "wal" / "000000000001.wal").exists(), \
            "a segment the leader deleted is deleted on the follower"
    finally:
        await stop(node, leader, task)


async def test_live_stream_segments_retention_and_a_deleted_stream_follow(tmp_path):
    node, leader, follower, task = await start_following(tmp_path, in_sync=set(), min_in_sync=0)
    try:
        await in_step(node, leader, follower)
        declare(node, "kept", **{"x-queue-type": "stream",
                                 "x-stream-max-segment-size-bytes": 20_000,
                                 "x-max-length-bytes": 60_000})
        declare(node, "dropped", **{"x-queue-type": "stream"})
        for n in range(400):  # many segments; retention deletes the oldest
            publish(node, "kept", f"{n:05d}".encode() * 40)
            publish(node, "dropped", b"soon gone")
        await in_step(node, leader, follower)
        kept = [name for name in files_of(tmp_path / "leader") if name.startswith("streams/")]
        assert len(kept) > 3
        assert not any(name.endswith("00000000000000000000.seg") and "6b657074" in name
                       for name in kept), "retention deleted the first segment of 'kept'"
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        vhost = node.vhosts["/"]
        vhost.delete_queue(vhost.queues["dropped"])
        publish(node, "kept", b"after the delete")
        await in_step(node, leader, follower)
        await asyncio.sleep(0.1)
        await in_step(node, leader, follower)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        assert not [path for path in (tmp_path / "follower" / "streams").iterdir()
                    if "64726f70706564" in path.name], "the deleted stream's directory is gone"
    finally:
        await stop(node, leader, task)


async def test_a_follower_joining_under_load_ends_with_the_leaders_files(tmp_path):
    """Catch-up reads files the log keeps writing, compacting and deleting; the live actions
    recorded meanwhile, applied after it, leave the follower with the leader's bytes."""
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    node.store.wal.segment_size = 32 * 1024
    declare(node, "busy")
    declare(node, "log", **{"x-queue-type": "stream", "x-stream-max-segment-size-bytes": 8000,
                            "x-max-length-bytes": 40_000})
    queue = node.vhosts["/"].queues["busy"]
    running = True

    async def load() -> None:
        n = 0
        while running:
            for _ in range(20):
                publish(node, "busy", f"message {n} ".encode() * 30)
                publish(node, "log", f"entry {n}".encode())
                n += 1
            for _ in range(15):
                queue.get(no_ack=True)
            await asyncio.sleep(0.002)

    loading = asyncio.ensure_future(load())
    followers = []
    try:
        await asyncio.sleep(0.3)
        for index in range(3):  # joining at different moments of the load
            follower = follower_for(leader, tmp_path / f"follower{index}", f"f{index}")
            followers.append((follower, asyncio.ensure_future(follower.run())))
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
        running = False
        await loading
        for follower, _ in followers:
            await in_step(node, leader, follower)
        await asyncio.sleep(0.1)  # deletes of segments retired by the last batch
        for follower, _ in followers:
            await in_step(node, leader, follower)
        expected = files_of(tmp_path / "leader")
        assert len([name for name in expected if name.startswith("wal/")]) >= 2
        assert "wal/000000000001.wal" not in expected, "compaction deleted segments meanwhile"
        for index in range(3):
            assert files_of(tmp_path / f"follower{index}") == expected, f"follower {index}"
    finally:
        running = False
        await stop(node, leader, loading, *(task for _, task in followers))


async def test_a_follower_tail_the_leader_does_not_have_is_cut_and_extra_files_go(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    first = follower_for(leader, tmp_path / "follower")
    task = asyncio.ensure_future(first.run())
    try:
        declare(node, "q")
        for n in range(50):
            publish(node, "q", f"confirmed {n}".encode())
        await in_step(node, leader, first)
        await stop(None, None, task)
        # What a deposed leader would have: records it wrote but nobody confirmed, a segment
        # of its own, and a definitions file that differs.
        segment = max((tmp_path / "follower" / "wal").glob("*.wal"))
        with open(segment, "ab") as file:
            file.write(b"unconfirmed tail" * 100)
        (tmp_path / "follower" / "wal" / "000000009999.wal").write_bytes(b"stray")
        (tmp_path / "follower" / "clean-shutdown").write_bytes(b"")
        for n in range(10):
            publish(node, "q", f"later {n}".encode())
        second = follower_for(leader, tmp_path / "follower")
        task = asyncio.ensure_future(second.run())
        await in_step(node, leader, second)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        assert not (tmp_path / "follower" / "clean-shutdown").exists(), \
            "a follower never starts from a clean stop's snapshot"
    finally:
        await stop(node, leader, task)


async def test_a_wrong_secret_is_refused_both_ways(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    try:
        follower = follower_for(leader, tmp_path / "follower", secret="not the secret")
        with pytest.raises(ReplicationRefused, match="secret"):
            await asyncio.wait_for(follower.run(), 10)
        # A follower that cannot prove it knows the secret gets REFUSE from the leader.
        reader, writer = await asyncio.open_connection("127.0.0.1", leader.port)
        send(writer, wire.Hello(wire.FOLLOWER, leader.epoch, bytes(32), "intruder"))
        hello = await read_message(reader, wire.MAX_HANDSHAKE_FRAME)
        assert isinstance(hello, wire.Hello) and hello.role == wire.LEADER
        send(writer, wire.Auth(bytes(32)))
        refusal = await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME), 5)
        assert refusal == wire.Refuse(wire.REFUSED_AUTH, "authentication failed")
        writer.close()
        assert leader.followers() == []
    finally:
        await stop(node, leader)


async def test_a_client_link_is_handed_over_after_ready_and_refused_without_a_taker(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)

    class Upper(asyncio.Protocol):  # stands for the AMQP server the socket is handed to
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())

    taken = []

    def take(via, client, writer):
        taken.append((via, client, writer))
        protocol = Upper()
        writer.transport.set_protocol(protocol)
        protocol.connection_made(writer.transport)

    client = wire.Client(("192.0.2.9", 4242), ("127.0.0.1", 5672))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", leader.port)
        send(writer, wire.Hello(wire.CLIENT_LINK, leader.epoch, bytes(32), "f1"))
        refusal = await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME), 5)
        assert refusal.reason == wire.REFUSED_PROTOCOL  # this leader takes no clients
        writer.close()
        leader.take_client = take
        reader, writer = await asyncio.open_connection("127.0.0.1", leader.port)
        await introduce(reader, writer, role=wire.CLIENT_LINK, secret=SECRET,
                        epoch=leader.epoch, node_name="f1", timeout=5)
        send(writer, client)
        assert await asyncio.wait_for(read_message(reader, wire.MAX_HANDSHAKE_FRAME), 5) == (
            wire.Ready())
        writer.write(b"amqp bytes")
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"AMQP BYTES"
        assert [(via, got) for via, got, _ in taken] == [("f1", client)]
        assert leader.followers() == []  # a client link is no follower
        writer.close()
    finally:
        await stop(node, leader)


async def test_replication_runs_over_tls(tmp_path):
    from tls_certificates import CertificateAuthority  # the TLS tests' throwaway CA

    authority = CertificateAuthority(tmp_path, "replication-ca")
    server = authority.issue("localhost", server=True)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(server.cert, server.key)
    client_side = ssl.create_default_context(cafile=str(authority.pair.cert))
    store = InSyncStore()
    leader = ReplicationLeader(tmp_path / "leader", secret=SECRET, epoch=3, node_name="leader",
                               min_in_sync=0, in_sync=set(), write_in_sync=store.write,
                               may_confirm=lambda: True)
    node = Node(Config(data_dir=tmp_path / "leader"), replicator=leader)
    await node.start()
    await leader.start("127.0.0.1", 0, ssl=server_side)
    follower = ReplicationFollower(tmp_path / "follower", secret=SECRET, node_name="f1",
                                   leader=("127.0.0.1", leader.port), epoch=3, ssl=client_side)
    task = asyncio.ensure_future(follower.run())
    try:
        declare(node, "q")
        publish(node, "q", b"over TLS")
        await in_step(node, leader, follower)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
        plain = follower_for(leader, tmp_path / "plain", "f2")  # no TLS: no handshake
        plain_task = asyncio.ensure_future(plain.run())
        await asyncio.sleep(0.5)
        assert not plain.caught_up and {s.name for s in leader.followers()} == {"f1"}
        await stop(None, None, plain_task)
    finally:
        await stop(node, leader, task)


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\n\r\n",  # a frame of 1 GB announced before any handshake
    wire.FRAME_HEAD.pack(3, 99) + b"xx",  # an unknown frame type
    wire.encode(wire.Auth(bytes(32))),  # AUTH before HELLO
    b"\x00\x00",  # then the connection closes mid-frame
], ids=["http", "unknown-type", "auth-first", "torn"])
async def test_bytes_that_are_not_the_protocol_are_refused_and_the_leader_serves_on(
        tmp_path, garbage):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    task = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", leader.port)
        writer.write(garbage)
        if garbage == b"\x00\x00":
            writer.close()
        else:
            answer = await asyncio.wait_for(reader.read(), 5)  # then the leader closes
            assert wire.FrameReader().feed(answer)[0].reason == wire.REFUSED_PROTOCOL
        declare(node, "q")
        publish(node, "q", b"still replicated")
        follower = follower_for(leader, tmp_path / "follower")
        task = asyncio.ensure_future(follower.run())
        await in_step(node, leader, follower)
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
    finally:
        await stop(node, leader, *(t for t in [task] if t))


async def test_another_epoch_is_refused_by_the_leader_and_by_the_follower(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0,
                                         epoch=7)
    try:
        old = follower_for(leader, tmp_path / "follower", epoch=6)
        with pytest.raises(ReplicationRefused, match="epoch 6 is not the leader's epoch 7"):
            await asyncio.wait_for(old.run(), 10)
    finally:
        await stop(node, leader)

    # A leader that authenticates for epoch 7 and then sends actions of epoch 6.
    async def stale_leader(reader, writer):
        hello = await read_message(reader, wire.MAX_HANDSHAKE_FRAME)
        nonce = bytes(range(32))
        send(writer, wire.Hello(wire.LEADER, 7, nonce, "stale",
                                wire.leader_mac(SECRET, hello.nonce, nonce, 7)))
        await read_message(reader, wire.MAX_HANDSHAKE_FRAME)  # AUTH
        await read_message(reader, wire.MAX_FRAME)  # FILE_LIST
        writer.write(wire.encode_actions(6, 10, [
            wire.Action(wire.APPEND, "wal/000000000001.wal", 0, [b"from an old epoch"])]))
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(stale_leader, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        follower = ReplicationFollower(tmp_path / "f2", secret=SECRET, node_name="f2",
                                       leader=("127.0.0.1", port), epoch=7)
        with pytest.raises(ReplicationRefused, match="epoch 6, not 7"):
            await asyncio.wait_for(follower.run(), 10)
        assert not (tmp_path / "f2" / "wal" / "000000000001.wal").exists()
    finally:
        server.close()


class _SlowDisk:
    """Holds the follower's fsync (Applier.sync) until released: a follower whose disk is
    slow, or that is stuck."""

    def __init__(self, monkeypatch) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        real = replication_files.Applier.sync

        def sync(applier):
            if not self.gate.is_set():
                self.waiting.set()
                self.gate.wait(30)
            real(applier)

        monkeypatch.setattr(replication_files.Applier, "sync", sync)


async def test_a_confirm_waits_for_the_followers_fsync(tmp_path, monkeypatch):
    disk = _SlowDisk(monkeypatch)
    node, leader, follower, task = await start_following(tmp_path, in_sync={"f1"}, min_in_sync=1)
    try:
        await in_step(node, leader, follower)
        declare(node, "q")
        await in_step(node, leader, follower)
        disk.gate.clear()
        ticket = publish(node, "q", b"must be on the follower first")
        seen = confirmed(node, ticket)
        await node.store.wal.drain()  # on the leader's disk
        await asyncio.get_running_loop().run_in_executor(None, disk.waiting.wait, 10)
        await asyncio.sleep(0.3)
        assert seen == [], "confirmed before the follower's fsync"
        assert node.store.wal.written_ticket >= ticket
        disk.gate.set()
        await wait_until(lambda: seen == [ticket], "the confirm after the follower's ack")
        segment = max((tmp_path / "follower" / "wal").glob("*.wal"))
        assert b"must be on the follower first" in segment.read_bytes()
    finally:
        disk.gate.set()
        await stop(node, leader, task)


async def test_followers_get_a_batch_before_the_leaders_fsync_but_confirms_wait_for_it(
        tmp_path, monkeypatch):
    node, leader, follower, task = await start_following(tmp_path, in_sync={"f1"}, min_in_sync=1)
    gate, waiting = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def fsync(fd):  # the leader's log thread waits; the follower's thread does not
        if threading.current_thread().name.startswith("warren-wal") and not gate.is_set():
            waiting.set()
            gate.wait(30)
        real_fsync(fd)

    try:
        declare(node, "q")
        await in_step(node, leader, follower)
        monkeypatch.setattr(os, "fsync", fsync)
        before = leader.position
        ticket = publish(node, "q", b"shipped before the leader's fsync")
        seen = confirmed(node, ticket)
        await asyncio.get_running_loop().run_in_executor(None, waiting.wait, 10)
        await wait_until(lambda: follower.acked >= leader.position > before,
                         "the follower has the batch while the leader's fsync runs")
        segment = max((tmp_path / "follower" / "wal").glob("*.wal"))
        assert b"shipped before the leader's fsync" in segment.read_bytes()
        await asyncio.sleep(0.2)
        assert seen == [], "confirmed before the leader's own fsync"
        gate.set()
        await wait_until(lambda: seen == [ticket], "the confirm after both fsyncs")
    finally:
        gate.set()
        await stop(node, leader, task)


async def test_every_confirmed_message_is_in_the_follower_dir_when_the_follower_stops(tmp_path):
    """The guarantee end to end: a follower cut off in the middle of a publishing run; what
    was confirmed until then (and nothing after: the set falls under min_in_sync) is in the
    follower's data dir, read back by a Node started on it as after a failover."""
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync={"f1"}, min_in_sync=1,
                                         timeout=0.5)
    follower = follower_for(leader, tmp_path / "follower")
    task = asyncio.ensure_future(follower.run())
    confirmed_bodies: list[bytes] = []
    try:
        declare(node, "q", **{"x-queue-type": "quorum"})
        await in_step(node, leader, follower)
        for n in range(3000):
            body = f"message {n}".encode()
            node.store.wal.when_durable(publish(node, "q", body),
                                        lambda body=body: confirmed_bodies.append(body))
            if n % 50 == 0:
                await asyncio.sleep(0.001)
            if n == 1500:
                task.cancel()  # the follower goes away mid-run
        await node.store.wal.drain()
        await asyncio.sleep(0.3)
    finally:
        await stop(node, leader, task)
    assert 0 < len(confirmed_bodies) < 3000
    promoted = Node(Config(data_dir=tmp_path / "follower"))
    await promoted.start()
    try:
        queue = promoted.vhosts["/"].queues["q"]
        bodies = set()
        while (entry := queue.get(no_ack=True)) is not None:
            message = entry.message
            body = message.body if message.body is not None else \
                promoted.store.read_body_now(message)
            bodies.add(bytes(body))
        assert set(confirmed_bodies) <= bodies, "a confirmed message is not on the follower"
    finally:
        await promoted.stop()


async def test_nothing_is_confirmed_without_min_in_sync_followers_or_the_lease(tmp_path):
    lease = Confirms()
    store = InSyncStore()
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=1,
                                         store=store, may_confirm=lease, timeout=0.5)
    task = None
    try:
        declare(node, "q")
        alone = confirmed(node, publish(node, "q", b"no follower yet"))
        await node.store.wal.drain()
        await asyncio.sleep(0.3)
        assert alone == [], "confirmed with fewer in-sync followers than min_in_sync"
        lease.allowed = False
        follower = follower_for(leader, tmp_path / "follower")
        task = asyncio.ensure_future(follower.run())
        await wait_until(lambda: store.written == [{"f1"}], "the caught-up follower is added")
        await asyncio.sleep(0.3)
        assert alone == [], "confirmed while may_confirm() is false"
        lease.allowed = True  # the lease is back: the next check releases what waited
        await wait_until(lambda: len(alone) == 1, "the confirm once the lease is held")
    finally:
        await stop(node, leader, *(t for t in [task] if t))


async def test_a_slow_follower_is_dropped_only_once_the_new_set_is_written(tmp_path,
                                                                           monkeypatch):
    disk = _SlowDisk(monkeypatch)
    store = InSyncStore()
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync={"f1"}, min_in_sync=0,
                                         store=store, timeout=0.5)
    follower = follower_for(leader, tmp_path / "follower")
    task = asyncio.ensure_future(follower.run())
    try:
        declare(node, "q")
        await in_step(node, leader, follower)
        disk.gate.clear()
        store.hold()  # etcd is slow to take the new set
        seen = confirmed(node, publish(node, "q", b"while f1 is stuck"))
        await wait_until(lambda: {s.name for s in leader.followers() if s.in_sync} == {"f1"}
                         and leader._wanted == set(), "the leader wants to drop f1")
        await asyncio.sleep(0.3)
        assert seen == [], "confirmed without f1 before etcd knew it was dropped"
        store.release()
        await wait_until(lambda: len(seen) == 1, "the confirm once the smaller set is written")
        assert store.written[0] == set()
        disk.gate.set()  # f1 catches up and joins again, written to etcd too
        await wait_until(lambda: store.written[-1] == {"f1"}, "f1 back in the in-sync set")
        status = {s.name: s for s in leader.followers()}["f1"]
        assert status.in_sync and status.caught_up and status.lag_bytes == 0
    finally:
        disk.gate.set()
        store.release()
        await stop(node, leader, task)


async def test_a_refused_in_sync_write_or_a_closed_leader_stops_confirms(tmp_path):
    store = InSyncStore()
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync={"gone"}, min_in_sync=0,
                                         store=store, timeout=0.3)
    try:
        declare(node, "q")
        store.leading = False  # the etcd transaction fails: another node leads
        seen = confirmed(node, publish(node, "q", b"never confirmed"))
        await wait_until(lambda: leader.deposed, "the leader learns it is deposed")
        await asyncio.sleep(0.3)
        assert seen == []
        store.leading = True  # a later guarded write succeeds: it did lead (etcd was away)
        await wait_until(lambda: len(seen) == 1, "confirms resume")
        await leader.close()
        later = confirmed(node, publish(node, "q", b"after close"))
        await node.store.wal.drain()
        await asyncio.sleep(0.2)
        assert later == []
    finally:
        await stop(node, None)


async def test_a_durable_declare_ok_waits_for_the_follower_even_after_its_batch_left(
        tmp_path, monkeypatch):
    disk = _SlowDisk(monkeypatch)
    node, leader, follower, task = await start_following(tmp_path, in_sync={"f1"}, min_in_sync=1)
    try:
        await in_step(node, leader, follower)
        disk.gate.clear()
        declare(node, "declared")
        first: list[str] = []
        node.when_definitions_durable(lambda: first.append("declare-ok"))
        await node.store.wal.drain()  # the definitions file is written on the leader
        second: list[str] = []  # a redeclare now: nothing changed, the first is in flight
        node.when_definitions_durable(lambda: second.append("declare-ok"))
        await asyncio.sleep(0.3)
        assert first == [] and second == [], "declare-ok before the follower had the queue"
        disk.gate.set()
        await wait_until(lambda: first and second, "both declare-oks")
        assert b"declared" in (tmp_path / "follower" / "definitions.json").read_bytes()
    finally:
        disk.gate.set()
        await stop(node, leader, task)


async def _ends_and_lets_go(task: asyncio.Task, path: Path) -> None:
    """The cancelled follower `task` ends within a second and no longer holds `path`'s lock."""
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(1.0):
            await task
    lock_data_dir(path).close()  # StorageError if the follower still held it


async def test_a_follower_cancelled_at_any_step_of_its_start_ends_and_lets_go_of_the_dir(
        tmp_path):
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        for turns in range(40):  # locking the dir, connecting, the handshake, in turn
            path = tmp_path / f"follower{turns}"
            follower = ReplicationFollower(path, secret=SECRET, node_name="f1",
                                           leader=("127.0.0.1", port), epoch=7)
            task = asyncio.ensure_future(follower.run())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await _ends_and_lets_go(task, path)
    finally:
        silent.close()


async def test_a_follower_cancelled_as_its_connect_completes_ends(tmp_path, monkeypatch):
    # Python 3.11's wait_for returns the connection and drops a cancel that arrives in that
    # moment: the follower then stayed attached to a (dead) leader after a failover.
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    connect = asyncio.open_connection
    tasks: list[asyncio.Task] = []

    async def connect_then_cancelled(*args, **kwargs):
        connection = await connect(*args, **kwargs)
        asyncio.get_running_loop().call_soon(tasks[0].cancel)
        return connection

    monkeypatch.setattr(asyncio, "open_connection", connect_then_cancelled)
    follower = ReplicationFollower(tmp_path / "follower", secret=SECRET, node_name="f1",
                                   leader=("127.0.0.1", port), epoch=7)
    tasks.append(asyncio.ensure_future(follower.run()))
    try:
        await _ends_and_lets_go(tasks[0], tmp_path / "follower")
    finally:
        tasks[0].cancel()
        silent.close()


async def test_a_follower_cancelled_again_while_it_closes_still_lets_go_of_the_dir(
        tmp_path, monkeypatch):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync={"f1"}, min_in_sync=1)
    close = replication_files.Applier.close

    def slow_close(applier) -> None:
        threading.Event().wait(0.3)
        close(applier)

    monkeypatch.setattr(replication_files.Applier, "close", slow_close)
    follower = follower_for(leader, tmp_path / "follower")
    task = asyncio.ensure_future(follower.run())
    try:
        await in_step(node, leader, follower)
        task.cancel()
        await asyncio.sleep(0.1)  # now closing its files
        task.cancel()
        await _ends_and_lets_go(task, tmp_path / "follower")
    finally:
        await stop(node, leader, task)


async def test_a_follower_cancelled_at_any_step_of_a_lost_connections_cleanup_ends(
        tmp_path, monkeypatch):
    # The cleanup of a lost connection waits for its receive and apply tasks: a cancel that
    # arrived meanwhile was taken for theirs and dropped, and the follower reconnected.
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    declare(node, "lost")
    read = follower_module.read_message
    lose: list[asyncio.Task] = []  # the follower task whose connection is lost next, once

    def cancel_after(turns: int, task: asyncio.Task) -> None:
        loop = asyncio.get_running_loop()
        if turns == 0:
            loop.call_soon(task.cancel)
        else:
            loop.call_soon(cancel_after, turns - 1, task)

    try:
        for turns in range(8):
            async def read_then_lost(reader, limit, turns=turns):
                message = await read(reader, limit)
                if lose:
                    cancel_after(turns, lose.pop())
                    raise asyncio.IncompleteReadError(b"", 1)
                return message

            monkeypatch.setattr(follower_module, "read_message", read_then_lost)
            path = tmp_path / f"follower{turns}"
            follower = follower_for(leader, path)
            task = asyncio.ensure_future(follower.run())
            await in_step(node, leader, follower)
            lose.append(task)
            publish(node, "lost", b"the frame the connection is lost at")
            await _ends_and_lets_go(task, path)
    finally:
        await stop(node, leader)


async def test_a_cancelled_close_is_cancelled_and_the_leader_still_stops(tmp_path):
    node, leader, follower, task = await start_following(tmp_path, in_sync={"f1"},
                                                         min_in_sync=1)
    try:
        await in_step(node, leader, follower)
        declare(node, "q")
        closing = asyncio.ensure_future(leader.close())
        await asyncio.sleep(0)  # waiting for the leader's tasks (the follower's link) to end
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing  # the caller's cancel is not swallowed
        seen = confirmed(node, publish(node, "q", b"after close"))
        await node.store.wal.drain()
        await asyncio.sleep(0.2)
        assert seen == [] and leader.closed  # nothing is released after a close, cancelled
    finally:
        await stop(node, None, task)


async def test_a_caught_up_follower_reconnecting_has_nothing_read_for_checksums(tmp_path):
    node, leader, _ = await start_leader(tmp_path / "leader", in_sync=set(), min_in_sync=0)
    checksums = replication_files.CHECKSUMS
    task = None
    try:
        declare(node, "q")
        for _ in range(300):  # more than a checksum chunk of log
            publish(node, "q", bytes(5000))
        await node.store.wal.drain()

        async def connect() -> tuple[ReplicationFollower, asyncio.Task]:
            follower = follower_for(leader, tmp_path / "follower")
            running = asyncio.ensure_future(follower.run())
            await in_step(node, leader, follower)
            return follower, running

        _, task = await connect()  # the first catch-up: every byte is sent
        task.cancel()
        await asyncio.wait({task})
        before = checksums.bytes_read
        _, task = await connect()
        assert checksums.bytes_read == before, "a caught-up follower's files were read again"
        task.cancel()
        await asyncio.wait({task})
        # A file changed behind the cache's back (same size) is read again and put right.
        segment = next((tmp_path / "follower" / "wal").glob("*.wal"))
        with open(segment, "r+b") as file:
            file.seek(100)
            file.write(b"\xff" * 8)
        _, task = await connect()
        assert checksums.bytes_read > before
        assert files_of(tmp_path / "follower") == files_of(tmp_path / "leader")
    finally:
        await stop(node, leader, *([task] if task else []))


async def test_a_member_has_the_whole_timeout_to_connect_from_the_leaders_start(tmp_path):
    """A promoted leader's in-sync members (read from etcd) cannot connect before its
    replication listener is up: a long recovery before it must not drop them."""
    store = InSyncStore()
    leader = ReplicationLeader(
        tmp_path / "leader", secret=SECRET, epoch=7, node_name="leader", min_in_sync=1,
        in_sync={"f1"}, write_in_sync=store.write, may_confirm=lambda: True,
        replication_timeout=2.0)
    node = Node(Config(data_dir=tmp_path / "leader"), replicator=leader)
    task = None
    try:
        await node.start()
        await asyncio.sleep(2.2)  # as a long log scan would take
        await leader.start("127.0.0.1", 0)
        await asyncio.sleep(0.5)  # the member connects well within the timeout of the start
        follower = follower_for(leader, tmp_path / "follower")
        task = asyncio.ensure_future(follower.run())
        declare(node, "q")
        seen = confirmed(node, publish(node, "q", b"x"))
        await wait_until(lambda: seen, "the member's confirm")
        assert store.written == [], "the member was dropped before it could connect"
    finally:
        await stop(node, leader, *([task] if task else []))
