"""The consumer line, in-process: round robin among consumers of one priority, higher
x-priority first while it has room, prefetch windows, single active consumer, and the
delivery target's own readiness (a front that cannot take a message now)."""

from __future__ import annotations

from core_kit import Target, consume, declare, new_vhost, publish


def test_round_robin():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    target = Target()
    for tag in ("c1", "c2", "c3"):
        consume(queue, target, tag)
    for index in range(6):
        publish(vhost, "q", f"m{index}")
    assert target.tags() == ["c1", "c2", "c3", "c1", "c2", "c3"]
    assert target.bodies() == [b"m0", b"m1", b"m2", b"m3", b"m4", b"m5"]
    assert queue.message_count == 0 and queue.messages_delivered == 6


def test_higher_priority_first_while_it_has_room():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    target = Target()
    consume(queue, target, "low", x_priority=1)
    consume(queue, target, "high", prefetch=2, x_priority=5)
    for index in range(4):
        publish(vhost, "q", f"m{index}")
    assert target.tags() == ["high", "high", "low", "low"]


def test_prefetch_window_and_ack_let_messages_flow_again():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    target = Target()
    consumer = consume(queue, target, "c", prefetch=2)
    for index in range(5):
        publish(vhost, "q", f"m{index}")
    assert target.bodies() == [b"m0", b"m1"]
    assert (queue.message_count, consumer.unacked) == (3, 2)
    target.ack_all()
    queue.dispatch()
    assert target.bodies() == [b"m2", b"m3"]


def test_a_target_that_cannot_take_is_passed_over():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    busy, free = Target(), Target()
    busy.full = True
    consume(queue, busy, "busy")
    consume(queue, free, "free")
    publish(vhost, "q", "a")
    publish(vhost, "q", "b")
    assert (busy.tags(), free.tags()) == ([], ["free", "free"])
    free.full = True
    publish(vhost, "q", "c")
    assert queue.message_count == 1  # nobody can take it: it waits
    busy.full = False
    queue.dispatch()
    assert busy.bodies() == [b"c"]


def test_single_active_consumer_takes_everything():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_single_active_consumer=True)
    target = Target()
    first = consume(queue, target, "first")
    consume(queue, target, "second")
    for index in range(3):
        publish(vhost, "q", f"m{index}")
    assert target.tags() == ["first"] * 3
    assert queue.consumers.active is first


def test_single_active_consumer_successor_is_the_highest_priority_waiting():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_single_active_consumer=True)
    target = Target()
    first = consume(queue, target, "first")
    consume(queue, target, "early-low", x_priority=1)
    consume(queue, target, "late-high", x_priority=3)
    consume(queue, target, "later-high", x_priority=3)
    queue.remove_consumer(first)
    publish(vhost, "q", "m")
    assert target.tags() == ["late-high"]


def test_single_active_consumer_waits_while_the_active_one_is_full():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_single_active_consumer=True)
    target = Target()
    consume(queue, target, "active", prefetch=1)
    consume(queue, target, "waiting")
    publish(vhost, "q", "a")
    publish(vhost, "q", "b")
    assert target.tags() == ["active"]
    assert queue.message_count == 1  # not given to the waiting consumer


def test_deleting_the_queue_cancels_its_consumers():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    target = Target()
    consume(queue, target, "c1")
    consume(queue, target, "c2")
    assert vhost.delete_queue(queue) == 0
    assert target.cancelled_tags == ["c1", "c2"]
    assert "q" not in vhost.queues
