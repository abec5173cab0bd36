"""Long queues while the broker runs: a persistent message arriving in a durable queue that
already holds `--resident-head` messages (lowered to 64 here) is kept as a compact row of the
message store's catalog, its body on disk, as recovered messages are (test_cold_messages.py),
and becomes an object again a batch at a time as it nears the head. None of this may show:
every message comes out in order with its properties; requeued messages go back to their
place; priorities, TTLs, length limits, dead-lettering, purges, deletes, compaction and
restarts (clean or crash) treat these messages as any others.
"""

from __future__ import annotations

import time
from functools import partial

import long_queues
import pika
import pytest
from client_helpers import message_count
from long_queues import (
    HEAD,
    api,
    check_requeued_go_back,
    publish_priorities,
    purge_and_delete,
    restart,
    wait_until,
)
from warren_process import (
    PERSISTENT,
    ConfirmingPublisher,
    WarrenNode,
    consume_unacked,
    drain,
    get_all,
    publish_confirmed,
    publish_many,
)

COUNT = 3000  # well past the head, and more than two thaw batches of 1024
fill = partial(long_queues.fill, count=COUNT, size=20)


@pytest.fixture
def node(node_factory) -> WarrenNode:
    return node_factory(extra_args=["--resident-head", str(HEAD)]).start()


def test_live_long_queue_is_compact_and_comes_out_in_order(node):
    """Messages with properties of their own (a header each) come out as they went in, none
    redelivered; the queue's memory figure shows rows (~50 B), not objects (~500 B)."""
    with node.channel() as ch:
        ch.queue_declare("long", durable=True)
    publisher = node.connect()
    ch = publisher.channel()
    ch.confirm_delivery()
    for i in range(COUNT):
        ch.basic_publish("", "long", b"%05d" % i, pika.BasicProperties(
            delivery_mode=2, headers={"i": i % 7}, message_id=f"m{i % 3}"))
    publisher.close()
    queue = api(node, "/api/queues/%2F/long")
    assert queue["messages"] == COUNT
    # bodies + ~500 B per object at the head + ~50 B per row (objects would be ~1.5 MB)
    assert queue["memory"] < COUNT * 5 + 500 * HEAD + 100 * COUNT, queue["memory"]

    found = drain(node, "long", COUNT, batch=300)
    assert [got.body for got in found] == [b"%05d" % i for i in range(COUNT)]
    assert not any(got.redelivered for got in found)
    with node.channel() as ch:  # properties of their own, the rows' places reused
        for i in range(COUNT):
            ch.basic_publish("", "long", b"again-%d" % i, pika.BasicProperties(
                delivery_mode=2, headers={"i": i % 7}, message_id=f"id-{i}"))
        found = get_all(ch, "long")
    assert [got.body for got in found] == [b"again-%d" % i for i in range(COUNT)]
    assert [(got.properties.headers, got.properties.message_id) for got in found] == [
        ({"i": i % 7}, f"id-{i}") for i in range(COUNT)]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_restart_with_live_rows_half_consumed(node, how):
    """Rows taken while running, some consumed (their places in the catalog reused by later
    arrivals), then a restart: the rest comes back whole and in order."""
    bodies = fill(node, "half")
    drain(node, "half", 2000, batch=250)
    bodies += fill(node, "half", count=1500, declare=False)
    restart(node, how)
    found = drain(node, "half", COUNT - 2000 + 1500, batch=250)
    assert [got.body for got in found] == bodies[2000:]
    assert {got.redelivered for got in found} == {how == "crash"}
    assert "Traceback" not in node.log_text()


def test_requeued_messages_go_back_to_their_place(node):
    check_requeued_go_back(node, "rq", fill(node, "rq"))  # taken past the head: thawed rows


def test_priority_queue(node):
    expected = publish_priorities(node, "prio", COUNT)
    assert [got.body for got in drain(node, "prio", COUNT, batch=250)] == expected


def test_ttl_expires_rows_and_dead_letters_them_in_order(node):
    """Queue TTL and per-message expiration reach rows far from the head; the expired
    messages are dead-lettered in order, bodies and all."""
    with node.channel() as ch:
        ch.queue_declare("expired", durable=True)
    bodies = fill(node, "ttl", arguments={"x-message-ttl": 1500, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "expired"})
    with node.channel() as ch:
        ch.queue_declare("own-ttl", durable=True)
        publish_confirmed(ch, "own-ttl", [b"keep-%d" % i for i in range(HEAD * 2)])
        publish_confirmed(ch, "own-ttl", [b"short"] * 500, properties=pika.BasicProperties(
            delivery_mode=2, expiration="1500"))
    expired_by = time.monotonic() + 1.6
    wait_until(lambda: not message_count(node.connect().channel(), "ttl"), "ttl not empty")
    with node.channel() as ch:
        assert message_count(ch, "own-ttl") == HEAD * 2 + 500  # not at the head: not expired
        dead = get_all(ch, "expired")
        assert [got.body for got in dead] == bodies
        assert all(got.properties.headers["x-death"][0]["reason"] == "expired" for got in dead)
        time.sleep(max(0.0, expired_by - time.monotonic()))
        kept = get_all(ch, "own-ttl")  # the short ones expire as they reach the head
    assert [got.body for got in kept] == [b"keep-%d" % i for i in range(HEAD * 2)]


def test_drop_head_limit_dead_letters_the_oldest(node):
    with node.channel() as ch:
        ch.queue_declare("dropped", durable=True)
    bodies = fill(node, "capped", arguments={"x-max-length": 1500, "x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": "dropped"})
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "capped")] == bodies[-1500:]
        assert [got.body for got in get_all(ch, "dropped")] == bodies[:-1500]


def test_limit_set_by_policy_on_a_long_live_queue(node):
    bodies = fill(node, "limited")
    api(node, "/api/policies/%2F/cap", "PUT", {"pattern": "^limited$",
                                               "definition": {"max-length": 100},
                                               "apply-to": "queues"})
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "limited")] == bodies[-100:]


def test_reject_publish_refuses_past_the_limit(node):
    with node.channel() as ch:
        ch.queue_declare("full", durable=True, arguments={"x-max-length": 1000,
                                                          "x-overflow": "reject-publish"})
    bodies = [b"%05d" % i for i in range(1500)]
    publisher = ConfirmingPublisher(node.parameters(), [("", "full", body) for body in bodies],
                                    window=1).run()
    assert publisher.error is None
    assert publisher.confirmed == bodies[:1000]
    assert publisher.nacked == bodies[1000:]
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "full")] == bodies[:1000]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_purge_and_delete_long_live_queues(node, how):
    kept = purge_and_delete(node, fill, COUNT)
    more = fill(node, "to-delete", count=HEAD * 2)  # declared again
    restart(node, how)
    with node.channel() as ch:
        assert message_count(ch, "to-purge") == 0
        assert [got.body for got in get_all(ch, "to-delete")] == more
        assert [got.body for got in get_all(ch, "kept")] == kept


def test_fanned_out_and_mixed_routes(node):
    """A message two durable queues hold stays an object shared by both; one routed to a
    durable and a transient queue is a row in the first, an object in the second."""
    with node.channel() as ch:
        ch.exchange_declare("fan", "fanout", durable=True)
        for name, durable in (("fan-a", True), ("fan-b", True), ("fan-t", False)):
            ch.queue_declare(name, durable=durable)
            ch.queue_bind(name, "fan")
    bodies = [b"f%05d" % i for i in range(1500)]
    publish_many(node, [("fan", "", body) for body in bodies], window=300)
    for name in ("fan-a", "fan-b", "fan-t"):
        assert [got.body for got in drain(node, name, len(bodies), batch=200)] == bodies


def test_read_back_at_once(node):
    """Messages fetched right after their publish, maybe before their record is durable:
    the rows' objects are kept until then."""
    with node.channel() as ch:
        ch.queue_declare("quick", durable=True)
        expected = []
        for round_ in range(20):
            batch = [b"q%02d-%04d" % (round_, i) for i in range(HEAD * 3)]
            for body in batch:
                ch.basic_publish("", "quick", body, PERSISTENT)
            expected += batch
            for _ in range(HEAD * 2):
                method, _, body = ch.basic_get("quick", auto_ack=True)
                assert body == expected.pop(0)
        assert [got.body for got in get_all(ch, "quick")] == expected


def test_live_rows_are_copied_forward_by_compaction(node_factory):
    """Rows nobody consumes sit in segments that a busy neighbour otherwise empties:
    compaction copies them forward as rows, and they survive restarts, bodies and all."""
    node = node_factory(extra_args=["--segment-size", "65536", "--resident-head", "8"]).start()
    with node.channel() as ch:
        ch.queue_declare("pinned", durable=True)
        ch.queue_declare("busy", durable=True)
    pinned = []
    for i in range(6):
        batch = [b"pinned-%d-%d-" % (i, j) + b"p" * 300 for j in range(5)]
        publish_many(node, [("", "pinned", body) for body in batch])
        pinned += batch
        fill(node, "busy", count=300, size=1000, declare=False)
    before = len(node.segments())
    assert before > 10
    drain(node, "busy", 1800, batch=200)
    wait_until(lambda: len(node.segments()) <= 4, "segments not compacted")
    assert [got.body for got in consume_unacked(node, "pinned")] == pinned
    for how in ("clean", "crash", "clean"):
        restart(node, how)
        assert [got.body for got in consume_unacked(node, "pinned")] == pinned
    assert "Traceback" not in node.log_text()
