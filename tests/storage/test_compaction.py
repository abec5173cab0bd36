"""Compaction: the log stays bounded while durable queues are filled and drained in cycles,
and what it keeps (or copies forward) is exactly what the queues still hold.

With --segment-size 65536 a fill of 2000 messages of 1 KB spans ~34 segments. After each
drain the segments must go again, even with a few long-lived messages pinned in old segments
(a "sticky" queue that gets one message per cycle and is never drained: compaction has to copy
them forward). A restart then recovers exactly the messages left, in order, and no acked one.
"""

from __future__ import annotations

import time

import pytest
from client_helpers import close_quietly, message_count
from long_queues import restart
from warren_process import (
    WarrenNode,
    consume_unacked,
    drain,
    get_all,
    publish_confirmed,
    publish_many,
)

SEGMENT_SIZE = 65536
BODY = 1024
MAX_SEGMENTS_WHEN_EMPTY = 4  # the current segment, one being compacted, some slack


def wait_bounded(node: WarrenNode, segments: int, disk_bytes: int,
                 timeout: float = 20.0) -> tuple[int, int]:
    """Poll until the log is within bounds; return (segment count, bytes) as last seen.
    Compaction runs after group commits in the writer thread, so on a loaded machine it can
    take a few seconds to catch up; the bound itself does not move."""
    deadline = time.monotonic() + timeout
    while True:
        seen = len(node.segments()), node.disk_bytes()
        if (seen[0] <= segments and seen[1] <= disk_bytes) or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def body(cycle: int, index: int) -> bytes:
    return (b"%02d-%05d-" % (cycle, index)).ljust(BODY, b"b")


def run_cycles(node: WarrenNode, cycles: int, per_cycle: int) -> tuple[list[bytes], list[bytes]]:
    """Fill and drain `cycles` times; the last drain leaves a third of its fill. Returns the
    bodies left in (main queue, sticky queue)."""
    with node.channel() as ch:
        ch.queue_declare("churn", durable=True)
        ch.queue_declare("sticky", durable=True)
    sticky = []
    live_limit_bytes = 2 * per_cycle * (BODY + 100) + 3 * SEGMENT_SIZE
    figures = []
    for cycle in range(cycles):
        sticky.append(b"sticky-%02d" % cycle)
        with node.channel() as ch:
            publish_confirmed(ch, "sticky", [sticky[-1]])
        bodies = [body(cycle, i) for i in range(per_cycle)]
        publish_many(node, [("", "churn", b) for b in bodies], window=500)
        full = len(node.segments()), node.disk_bytes()
        assert full[1] <= live_limit_bytes, f"cycle {cycle}: {full} with {per_cycle} live"

        last = cycle == cycles - 1
        take = per_cycle - per_cycle // 3 if last else per_cycle
        got = drain(node, "churn", take)
        assert [g.body for g in got] == bodies[:take], f"cycle {cycle}: order or content"
        if not last:
            empty = wait_bounded(node, MAX_SEGMENTS_WHEN_EMPTY,
                                 MAX_SEGMENTS_WHEN_EMPTY * SEGMENT_SIZE)
            assert empty[0] <= MAX_SEGMENTS_WHEN_EMPTY, (
                f"cycle {cycle}: {empty[0]} segments ({empty[1]} bytes) after the drain; "
                f"segments: {[p.name for p in node.segments()]}"
            )
            assert empty[1] <= MAX_SEGMENTS_WHEN_EMPTY * SEGMENT_SIZE, empty
            figures.append((full, empty))
        with node.channel() as ch:
            assert message_count(ch, "churn") == (per_cycle - take)
    print(f"\n(segments, bytes) full -> drained per cycle: {figures}")
    return bodies[take:], sticky


def check_after_restart(node: WarrenNode, churn: list[bytes], sticky: list[bytes],
                        redelivered: bool) -> None:
    for queue, expected in (("churn", churn), ("sticky", sticky)):
        found = consume_unacked(node, queue)
        assert [got.body for got in found] == expected, f"{queue} after restart"
        assert {got.redelivered for got in found} == {redelivered}, queue


def test_fill_and_drain_cycles_keep_the_log_bounded(node_factory):
    """20 cycles of 2000 persistent messages of 1 KB (about 5 s here)."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    started = time.monotonic()
    churn, sticky = run_cycles(node, cycles=20, per_cycle=2000)
    print(f"20 cycles x 2000 in {time.monotonic() - started:.1f}s")

    node.restart()
    check_after_restart(node, churn, sticky, redelivered=False)
    node.crash_restart()
    check_after_restart(node, churn, sticky, redelivered=True)


def test_acked_messages_stay_gone_when_an_old_segment_is_pinned(node_factory):
    """Segment 1 keeps a big live message; the later segments hold the acked messages' REMOVE
    records and nothing live. Dropping those later segments while segment 1 stays would
    bring the acked messages of segment 1 back at the next start."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    with node.channel() as ch:
        ch.queue_declare("pinned", durable=True)
        ch.queue_declare("churn", durable=True)
        publish_confirmed(ch, "pinned", [b"P" * 40000])  # 60% of segment 1: not worth copying
    publish_many(node, [("", "churn", b"%04d" % i + b"." * 2000) for i in range(60)])
    drain(node, "churn", 60)

    for attempt in range(3):
        node.restart()
        with node.channel() as ch:
            leftovers = get_all(ch, "churn", ack=False)
            assert leftovers == [], (
                f"restart {attempt + 1}: {len(leftovers)} acked messages came back, first "
                f"{leftovers[0].body[:4]!r} redelivered={leftovers[0].redelivered}; segments "
                f"{[p.name for p in node.segments()]}"
            )
            assert message_count(ch, "pinned") == 1


@pytest.mark.parametrize("how", ["basic.get", "basic.consume"])
def test_long_recovered_queue_drained_while_it_compacts(node_factory, how):
    """Recovered bodies stay on disk; draining the queue makes old segments mostly dead, so
    compaction copies the rest forward while the consumer keeps reading them."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    with node.channel() as ch:
        ch.queue_declare("long", durable=True)
    bodies = [b"%05d-" % i + b"x" * 500 for i in range(5000)]
    publish_many(node, [("", "long", b) for b in bodies], window=500)
    node.restart()

    if how == "basic.get":
        with node.channel() as ch:
            found = [got.body for got in get_all(ch, "long")]
    else:
        found = [got.body for got in drain(node, "long", len(bodies))]
    assert found == bodies
    assert "Traceback" not in node.log_text(), node.log_text()[-3000:]
    node.restart()
    with node.channel() as ch:
        assert message_count(ch, "long") == 0


def test_deleted_queues_message_is_not_copied_into_a_queue_of_the_same_name(node_factory):
    """A durable queue is deleted while a consumer still holds one of its messages unacked,
    and declared again under the same name. When compaction copies that message forward, the
    copy must not list the new queue: after a crash the new queue holds only its own messages
    (the deleted queue's message is gone, as in RabbitMQ)."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    holder = node.connect()
    try:
        held = holder.channel()
        held.queue_declare("reborn", durable=True)
        publish_confirmed(held, "reborn", [b"old"])
        first = node.segments()[-1]  # where "old" is
        assert held.basic_get("reborn", auto_ack=False)[2] == b"old"  # unacked from here on
        with node.channel() as ch:
            ch.queue_delete("reborn")
            ch.queue_declare("reborn", durable=True)
        bodies = [body(0, i) for i in range(300)]  # several segments
        publish_many(node, [("", "reborn", b) for b in bodies], window=100)
        assert [got.body for got in drain(node, "reborn", len(bodies))] == bodies
        deadline = time.monotonic() + 20
        while first.exists() and time.monotonic() < deadline:  # "old" copied forward
            time.sleep(0.05)
        assert not first.exists(), [path.name for path in node.segments()]
        restart(node, "crash")  # once the acks are on disk: they are not waited for
    finally:
        close_quietly(holder)
    with node.channel() as ch:
        assert get_all(ch, "reborn") == []


def test_a_quorum_queues_state_of_its_messages_is_copied_forward(node_factory):
    """A quorum queue's messages in segment 1: two returned to the back (x-delivery-count 1
    and 2) and a dead letter it keeps (at-least-once, its exchange routes it nowhere). When
    compaction copies them forward and deletes segment 1, their STATE records are copied
    too: after a crash the counts and the order are the same, and the dead letter is still
    kept, not ready."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    with node.channel() as ch:
        ch.exchange_declare("nowhere", "fanout", durable=True)
        ch.queue_declare("qq", durable=True, arguments={
            "x-queue-type": "quorum", "x-dead-letter-exchange": "nowhere",
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        ch.queue_declare("churn", durable=True)
        publish_confirmed(ch, "qq", [b"dead", b"a", b"b"])
        first = node.segments()[-1]
        method, _properties, _body = ch.basic_get("qq")
        ch.basic_reject(method.delivery_tag, requeue=False)  # kept: routed nowhere
        for expected in (b"a", b"b", b"a"):  # each back to the back: b a, a b, b a
            method, _properties, got = ch.basic_get("qq")
            assert got == expected
            ch.basic_nack(method.delivery_tag, requeue=True)
    bodies = [body(0, i) for i in range(300)]  # several segments
    publish_many(node, [("", "churn", b) for b in bodies], window=100)
    assert [got.body for got in drain(node, "churn", len(bodies))] == bodies
    deadline = time.monotonic() + 20
    while first.exists() and time.monotonic() < deadline:  # copied forward
        time.sleep(0.05)
    assert not first.exists(), [path.name for path in node.segments()]
    restart(node, "crash")
    with node.channel() as ch:
        assert message_count(ch, "qq") == 2
        found = [ch.basic_get("qq", auto_ack=True) for _ in range(2)]
        assert [(got[2], got[1].headers["x-delivery-count"]) for got in found] == [
            (b"b", 1), (b"a", 2)]


def test_a_message_another_queue_delivered_is_not_out_in_the_quorum_queue(node_factory):
    """A persistent message fanned out to a quorum queue and a classic queue, delivered (and
    acked) by the classic queue only, is copied forward by compaction: the copy must not say
    that the quorum queue delivered it, or after a crash the quorum queue would count a return
    it never had."""
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    with node.channel() as ch:
        ch.exchange_declare("fan", "fanout", durable=True)
        ch.queue_declare("qq", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_declare("cq", durable=True)
        ch.queue_declare("cq2", durable=True)
        for queue in ("qq", "cq", "cq2"):
            ch.queue_bind(queue, "fan")
        ch.queue_declare("churn", durable=True)
        publish_confirmed(ch, "fan", [b"m"], exchange="fan")
        first = node.segments()[-1]
        method, _properties, _body = ch.basic_get("cq")
        ch.basic_ack(method.delivery_tag)
    bodies = [body(0, i) for i in range(300)]
    publish_many(node, [("", "churn", b) for b in bodies], window=100)
    assert [got.body for got in drain(node, "churn", len(bodies))] == bodies
    deadline = time.monotonic() + 20
    while first.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not first.exists(), [path.name for path in node.segments()]
    restart(node, "crash")
    with node.channel() as ch:
        _method, properties, got = ch.basic_get("qq", auto_ack=True)
        assert (got, properties.headers) == (b"m", {"x-delivery-count": 0})
        assert ch.basic_get("cq2", auto_ack=True)[2] == b"m"
