"""Long recovered queues: recovered messages held by one queue stay rows of the message store's
catalog (a few dozen bytes each, broker/coldrun.py) and become objects a batch of 1024 at a
time as they reach the head. A client must see exactly what it saw before the restart: every
message, in order, with its properties; requeued messages back in their place; TTLs, priorities,
length limits, purges and deletes applied to the recovered messages as to any others; and
compaction moving messages that are still rows.
"""

from __future__ import annotations

import time
from functools import partial

import long_queues
import pika
import pytest
from client_helpers import message_count
from long_queues import publish_priorities, restart
from warren_process import (
    consume_unacked,
    drain,
    get_all,
    publish_confirmed,
    publish_many,
)

COUNT = 3500  # more than three batches of 1024
fill = partial(long_queues.fill, count=COUNT, size=100)


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_long_queue_comes_back_whole_and_in_order(node, how):
    headers = [{"i": i, "tag": "x" * (i % 5)} for i in range(COUNT)]
    with node.channel() as ch:
        ch.queue_declare("long", durable=True)
    publish_many(node, [("", "long", b"%05d" % i) for i in range(COUNT)], window=500)
    with node.channel() as ch:  # and some with properties of their own
        publish_confirmed(ch, "long", [b"props-%d" % i for i in range(50)],
                          properties=pika.BasicProperties(delivery_mode=2,
                                                          headers=headers[0]))
    restart(node, how)

    found = drain(node, "long", COUNT + 50, batch=300)
    assert [got.body for got in found] == [b"%05d" % i for i in range(COUNT)] + [
        b"props-%d" % i for i in range(50)]
    assert {got.redelivered for got in found} == {how == "crash"}
    node.restart()
    with node.channel() as ch:
        assert message_count(ch, "long") == 0


def test_requeued_messages_go_back_to_their_place(node):
    bodies = fill(node, "rq")
    node.restart()
    connection = node.connect()
    ch = connection.channel()
    taken = [ch.basic_get("rq") for _ in range(5)]  # thawed, unacked
    assert [body for _, _, body in taken] == bodies[:5]
    ch.basic_nack(taken[3][0].delivery_tag, requeue=True)
    ch.basic_nack(taken[1][0].delivery_tag, requeue=True)
    ch.basic_ack(taken[0][0].delivery_tag)
    connection.close()  # 2 and 4 go back too
    found = get_all(node.connect().channel(), "rq")
    assert [got.body for got in found] == bodies[1:]
    assert [got.redelivered for got in found[:4]] == [True] * 4
    assert not any(got.redelivered for got in found[4:])


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_priority_queue(node, how):
    expected = publish_priorities(node, "prio", COUNT)
    restart(node, how)
    assert [got.body for got in drain(node, "prio", COUNT, batch=250)] == expected


def test_message_ttl_applies_to_recovered_messages(node):
    # 8 s: the fill and the restart must end before the first message expires, also under load
    fill(node, "ttl", arguments={"x-message-ttl": 8000})
    with node.channel() as ch:
        ch.queue_declare("own-ttl", durable=True)
        publish_confirmed(ch, "own-ttl", [b"short"] * 1500, properties=pika.BasicProperties(
            delivery_mode=2, expiration="8000"))
        publish_confirmed(ch, "own-ttl", [b"long"], properties=pika.BasicProperties(
            delivery_mode=2, expiration="600000"))
    node.restart()
    with node.channel() as ch:
        assert message_count(ch, "ttl") == COUNT
    deadline = time.monotonic() + 25
    with node.channel() as ch:
        while message_count(ch, "ttl") or message_count(ch, "own-ttl") > 1:
            assert time.monotonic() < deadline, (message_count(ch, "ttl"),
                                                 message_count(ch, "own-ttl"))
            time.sleep(0.2)
        assert [got.body for got in get_all(ch, "own-ttl")] == [b"long"]


def test_length_limit_set_after_recovery_drops_from_the_head(node):
    bodies = fill(node, "limited")
    node.restart()
    with node.channel() as ch:
        ch.queue_declare("limited", durable=True)
    status = node.connect()
    status.close()
    import urllib.request
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.management_port}/api/policies/%2F/cap", method="PUT",
        data=b'{"pattern": "^limited$", "definition": {"max-length": 100}, '
             b'"apply-to": "queues"}',
        headers={"content-type": "application/json",
                 "authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
    urllib.request.urlopen(request, timeout=10).close()
    with node.channel() as ch:
        found = get_all(ch, "limited")
    assert [got.body for got in found] == bodies[-100:]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_purge_and_delete_recovered_queues(node, how):
    fill(node, "to-purge")
    fill(node, "to-delete")
    kept = fill(node, "kept", count=10)
    node.restart()
    with node.channel() as ch:
        method, _, _ = ch.basic_get("to-purge")  # a batch thawed, one unacked
        assert ch.queue_purge("to-purge").method.message_count == COUNT - 1
        ch.basic_ack(method.delivery_tag)
        ch.queue_delete("to-delete")
        ch.queue_declare("to-delete", durable=True)
    restart(node, how)
    with node.channel() as ch:
        assert message_count(ch, "to-purge") == 0
        assert message_count(ch, "to-delete") == 0
        assert [got.body for got in get_all(ch, "kept")] == kept


def test_cold_messages_are_copied_forward_by_compaction(node_factory):
    """A message nobody consumes stays a row; when the queue next to it is drained, the
    segments it sits in are mostly dead, and compaction copies it forward without thawing
    it. It survives, body and all, and the log shrinks."""
    node = node_factory(extra_args=["--segment-size", "65536"]).start()
    with node.channel() as ch:
        ch.queue_declare("pinned", durable=True)
        ch.queue_declare("busy", durable=True)
    pinned = []
    for i in range(4):
        with node.channel() as ch:
            pinned.append(b"pinned-%d" % i + b"p" * 300)
            publish_confirmed(ch, "pinned", [pinned[-1]])
        fill(node, "busy", count=300, size=1000)
    node.restart()
    before = len(node.segments())
    assert before > 10
    drain(node, "busy", 1200, batch=200)
    deadline = time.monotonic() + 20
    while len(node.segments()) > 4:
        assert time.monotonic() < deadline, [path.name for path in node.segments()]
        time.sleep(0.1)
    for how in ("clean", "crash", "clean"):
        restart(node, how)
        assert [got.body for got in consume_unacked(node, "pinned")] == pinned
    assert "Traceback" not in node.log_text()


def test_memory_of_a_long_recovered_queue(node_factory):
    """The broker's own estimate of a queue's memory counts recovered rows at ~50 bytes."""
    node = node_factory().start()
    fill(node, "estimate", count=20000, size=10)
    node.restart()
    import json
    import urllib.request
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.management_port}/api/queues/%2F/estimate",
        headers={"authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
    with urllib.request.urlopen(request, timeout=10) as response:
        queue = json.load(response)
    assert queue["messages"] == 20000
    assert queue["memory"] < 20000 * 100 + 20000 * 50


def test_purge_reaches_the_disk_without_another_write(node):
    """The removals of a purge noted while the log is writing something else (here the
    delivery of the basic.get just before) go out right after it, not with some later
    write: a crash a moment later does not bring the messages back."""
    for name in ("purged-soon", "other"):
        with node.channel() as ch:
            ch.queue_declare(name, durable=True)
        publish_many(node, [("", name, b"x%d" % i) for i in range(COUNT)], window=500)
    node.restart()
    with node.channel() as ch:
        method, _, _ = ch.basic_get("purged-soon")
        assert ch.queue_purge("purged-soon").method.message_count == COUNT - 1
        ch.basic_ack(method.delivery_tag)
    time.sleep(0.5)
    node.crash_restart()
    with node.channel() as ch:
        assert message_count(ch, "purged-soon") == 0
        assert message_count(ch, "other") == COUNT
