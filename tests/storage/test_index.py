"""The message index written at a clean stop (data_dir/message-index, storage/snapshot.py).

A clean stop writes it; the next start loads it instead of scanning the log ("recovered ...
from the index written at the last clean stop" in the log) and deletes it before the log
changes. What a client sees must not depend on it: every scenario here runs twice, once
starting from the index and once with the index deleted (so the log is scanned), with the same
expectations: messages, order, properties and redelivered flags. After a crash, or when the
index is damaged or no longer matches the log, the log is scanned.
"""

from __future__ import annotations

import os
import signal
import time

import pika
import pytest
from client_helpers import close_quietly
from warren_process import (
    PERSISTENT,
    WarrenNode,
    consume_unacked,
    get_all,
    publish_confirmed,
    publish_many,
)

FROM_INDEX = "from the index written at the last clean stop"
FROM_LOG = "from the log"


def index_file(node: WarrenNode):
    return node.data_dir / "message-index"


def recovered_from(node: WarrenNode) -> str:
    lines = [line for line in node.log_text().splitlines() if "recovered" in line]
    assert lines, node.log_text()[-2000:]
    return FROM_INDEX if lines[-1].endswith(FROM_INDEX) else FROM_LOG


def start(node: WarrenNode, how: str) -> None:
    """Start a stopped node from its index ("index") or by scanning its log ("scan")."""
    if how == "scan":
        index_file(node).unlink()
    node.start()
    assert recovered_from(node) == (FROM_INDEX if how == "index" else FROM_LOG)
    assert "Traceback" not in node.log_text()


def flags(found) -> list[tuple[bytes, bool]]:
    return [(got.body, got.redelivered) for got in found]


BOTH = pytest.mark.parametrize("how", ["index", "scan"])


@BOTH
def test_messages_and_flags_after_a_clean_stop(node, how):
    """Acked: gone. Unacked at the stop, or rejected with requeue: redelivered. Never
    delivered: not. Order and properties kept."""
    props = pika.BasicProperties(delivery_mode=2, headers={"n": 1}, priority=3,
                                 correlation_id="c", expiration="3600000")
    holder = node.connect()
    ch = holder.channel()
    ch.queue_declare("m", durable=True)
    publish_confirmed(ch, "m", [f"p{i}".encode() for i in range(8)], properties=props)
    method, _, _ = ch.basic_get("m")
    ch.basic_ack(method.delivery_tag)  # p0 gone
    ch.basic_get("m")  # p1 unacked at the stop
    method, _, _ = ch.basic_get("m")
    ch.basic_reject(method.delivery_tag, requeue=True)  # p2 back, redelivered
    node.stop_with_clients([holder])
    assert index_file(node).exists()

    start(node, how)
    assert not index_file(node).exists()  # deleted before the log changes again
    with node.channel() as ch:
        found = get_all(ch, "m", ack=False)
    assert flags(found) == [(b"p1", True), (b"p2", True),
                            *((f"p{i}".encode(), False) for i in range(3, 8))]
    for got in found:
        for name in ("headers", "priority", "correlation_id", "expiration", "delivery_mode"):
            assert getattr(got.properties, name) == getattr(props, name), name


@BOTH
def test_fanned_out_messages_have_flags_per_queue(node, how):
    with node.channel() as ch:
        ch.exchange_declare("fan", "fanout", durable=True)
        for name in ("fan-1", "fan-2", "fan-3"):
            ch.queue_declare(name, durable=True)
            ch.queue_bind(name, "fan")
        publish_confirmed(ch, "", [b"a", b"b", b"c"], exchange="fan")
        get_all(ch, "fan-1", ack=False)  # delivered from fan-1 only, requeued at close
        method, _, _ = ch.basic_get("fan-3")
        ch.basic_ack(method.delivery_tag)  # a leaves fan-3: b and c are shared by all three
    node.stop()

    start(node, how)
    with node.channel() as ch:
        assert flags(get_all(ch, "fan-1")) == [(b"a", True), (b"b", True), (b"c", True)]
        assert flags(get_all(ch, "fan-2")) == [(b"a", False), (b"b", False), (b"c", False)]
        assert flags(get_all(ch, "fan-3")) == [(b"b", False), (b"c", False)]


@BOTH
def test_unacked_messages_of_a_client_that_never_closed(node, how):
    """A consumer that does not answer the shutdown's connection.close keeps its messages
    until the broker exits: they are in the index as delivered."""
    with node.channel() as ch:
        ch.queue_declare("stuck", durable=True)
        publish_confirmed(ch, "stuck", [b"1", b"2", b"3", b"4"])
    connection = node.connect()
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=2)
    taken = []
    consumer.basic_consume("stuck", lambda _c, _m, _p, body: taken.append(body))
    while len(taken) < 2:
        connection.process_data_events(time_limit=0.1)
    assert node.stop(timeout=20) == 0  # the client is not pumped: it never answers
    close_quietly(connection)

    start(node, how)
    with node.channel() as ch:
        assert flags(get_all(ch, "stuck")) == [(b"1", True), (b"2", True), (b"3", False),
                                               (b"4", False)]


@BOTH
def test_crash_then_clean_stop(node, how):
    """After a crash every recovered message is marked redelivered; that mark is not logged,
    so after a later clean stop only the messages delivered meanwhile are redelivered."""
    with node.channel() as ch:
        ch.queue_declare("c", durable=True)
        publish_confirmed(ch, "c", [b"1", b"2", b"3"])
    node.crash_restart()
    assert recovered_from(node) == FROM_LOG
    with node.channel() as ch:
        method, _, body = ch.basic_get("c")
        assert (body, method.redelivered) == (b"1", True)
        ch.basic_reject(method.delivery_tag, requeue=True)
    node.stop()

    start(node, how)
    with node.channel() as ch:
        assert flags(get_all(ch, "c")) == [(b"1", True), (b"2", False), (b"3", False)]


@BOTH
def test_delayed_and_priority_messages(node, how):
    with node.channel() as ch:
        ch.exchange_declare("delayed", "x-delayed-message", durable=True,
                            arguments={"x-delayed-type": "direct"})
        ch.queue_declare("later", durable=True)
        ch.queue_bind("later", "delayed", "k")
        ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 3})
        ch.confirm_delivery()
        published = time.monotonic()
        ch.basic_publish("delayed", "k", b"late", pika.BasicProperties(
            delivery_mode=2, headers={"x-delay": 3000}))
        for i, priority in enumerate([0, 3, 1, 3, 2]):
            ch.basic_publish("", "prio", b"%d" % i,
                             pika.BasicProperties(delivery_mode=2, priority=priority))
    node.stop()

    start(node, how)
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "prio")] == [b"1", b"3", b"4", b"2", b"0"]
        if time.monotonic() - published < 2.5:  # a slow machine may restart past the delay
            assert get_all(ch, "later") == []
        deadline = time.monotonic() + 10
        while not (found := get_all(ch, "later")):
            assert time.monotonic() < deadline, "the delayed message never came"
            time.sleep(0.1)
        assert [got.body for got in found] == [b"late"]


def test_index_not_used_after_a_crash(node):
    with node.channel() as ch:
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "q", [b"1", b"2"])
    node.restart()
    assert recovered_from(node) == FROM_INDEX
    with node.channel() as ch:
        publish_confirmed(ch, "q", [b"3"])
    node.kill()
    assert not index_file(node).exists()
    node.start()
    assert recovered_from(node) == FROM_LOG
    assert flags(consume_unacked(node, "q")) == [(b"1", True), (b"2", True), (b"3", True)]


def damage_flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def damage_truncate(path):
    path.write_bytes(path.read_bytes()[:-3])


def damage_version(path):
    data = bytearray(path.read_bytes())
    data[8] = 99
    path.write_bytes(bytes(data))


def damage_garbage(path):
    path.write_bytes(b"not an index at all")


DAMAGE = {"flipped byte": damage_flip, "truncated": damage_truncate,
          "unknown version": damage_version, "garbage": damage_garbage}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_damaged_index_is_ignored(node, damage):
    with node.channel() as ch:
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "q", [b"1", b"2", b"3"])
        get_all(ch, "q", ack=False)  # delivered, requeued: redelivered from now on
    node.stop()
    damage(index_file(node))
    node.start()
    assert recovered_from(node) == FROM_LOG
    assert "message index" in node.log_text() and "not used" in node.log_text()
    assert flags(consume_unacked(node, "q")) == [(b"1", True), (b"2", True), (b"3", True)]


def test_stale_index_is_ignored(node):
    """An index from an earlier stop does not describe the log any more."""
    with node.channel() as ch:
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "q", [b"1", b"2", b"3"])
    node.stop()
    old_index = index_file(node).read_bytes()
    node.start()
    with node.channel() as ch:
        method, _, _ = ch.basic_get("q")
        ch.basic_ack(method.delivery_tag)
        publish_confirmed(ch, "q", [b"4"])
    node.stop()
    index_file(node).write_bytes(old_index)
    node.start()
    assert recovered_from(node) == FROM_LOG
    with node.channel() as ch:
        assert flags(get_all(ch, "q")) == [(b"2", False), (b"3", False), (b"4", False)]


def test_many_messages_in_many_queues(node_factory):
    """Blocks of rows per queue, thawed and cold, shared and not, through two clean stops."""
    node = node_factory(extra_args=["--segment-size", "262144"]).start()
    queues = [f"many-{i}" for i in range(5)]
    with node.channel() as ch:
        ch.exchange_declare("many-fan", "fanout", durable=True)
        for name in queues:
            ch.queue_declare(name, durable=True)
        ch.queue_bind(queues[0], "many-fan")
        ch.queue_bind(queues[1], "many-fan")
    messages = [("", queues[i % 5], b"%d-%05d" % (i % 5, i)) for i in range(3000)]
    messages += [("many-fan", "", b"fan-%05d" % i) for i in range(500)]
    publish_many(node, messages, window=300)
    expected = {name: [body for exchange, key, body in messages
                       if key == name or (exchange and name in queues[:2])]
                for name in queues}
    for _ in range(2):
        node.restart()
        assert recovered_from(node) == FROM_INDEX
        with node.channel() as ch:  # take one from each queue: the rest stays cold
            for name in queues:
                method, _, body = ch.basic_get(name)
                assert body == expected[name].pop(0)
                ch.basic_ack(method.delivery_tag)
    for how in ("index", "scan"):
        node.stop()
        start(node, how)
        for name in queues:
            assert [got.body for got in consume_unacked(node, name)] == expected[name], name


def test_sigint_writes_the_index_too(node):
    with node.channel() as ch:
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "q", [b"1"], properties=PERSISTENT)
    assert node.stop(signal.SIGINT) == 0
    assert index_file(node).exists()


def test_damage_while_stopped_is_found_even_if_the_file_looks_untouched(node):
    """A byte of a record changed in place, the segment's size and time as they were (as a
    disk's bit rot would leave it): the index is not used, the log is scanned, and the
    damaged record is skipped and counted, as without an index."""
    with node.channel() as ch:
        ch.queue_declare("q", durable=True)
        publish_confirmed(ch, "q", [b"first-" + b"a" * 50, b"second-" + b"b" * 50,
                                    b"third-" + b"c" * 50])
    node.stop()
    segment = max(node.segments(), key=lambda path: path.stat().st_size)
    before = segment.stat()
    data = bytearray(segment.read_bytes())
    where = data.index(b"second-")
    data[where + 10] ^= 0x01
    segment.write_bytes(bytes(data))
    os.utime(segment, ns=(before.st_atime_ns, before.st_mtime_ns))
    node.start()
    assert recovered_from(node) == FROM_LOG
    assert "(1 corrupt records skipped)" in node.log_text()
    assert [got.body[:6] for got in consume_unacked(node, "q")] == [b"first-", b"third-"]
