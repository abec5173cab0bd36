"""Queue order, in-process: FIFO, priority lanes, and requeued messages back in their original
place (marked redelivered), through the core's publish and get."""

from __future__ import annotations

from core_kit import bodies, declare, new_vhost, publish


def test_fifo():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    for index in range(5):
        assert publish(vhost, "q", f"m{index}") == (1, 0, False)
    assert queue.message_count == 5
    assert bodies(queue) == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert queue.message_count == 0


def test_priorities_highest_first_fifo_within_one():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_priority=5)
    for body, priority in (("a", 1), ("b", 5), ("c", 3), ("d", 5), ("e", 0), ("f", 20)):
        publish(vhost, "q", body, priority=priority)
    # above x-max-priority counts as the maximum, and keeps its place among those
    assert bodies(queue) == [b"b", b"d", b"f", b"c", b"a", b"e"]


def test_priority_ignored_without_max_priority():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    for body, priority in (("a", 1), ("b", 9), ("c", 3)):
        publish(vhost, "q", body, priority=priority)
    assert bodies(queue) == [b"a", b"b", b"c"]


def test_requeue_puts_messages_back_in_their_original_place():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    for index in range(5):
        publish(vhost, "q", f"m{index}")
    taken = [queue.get(no_ack=False) for _ in range(3)]  # m0 m1 m2 unacked
    queue.requeue(taken[2])
    queue.requeue(taken[0])
    queue.ack(taken[1])
    got = []
    while (entry := queue.get(no_ack=True)) is not None:
        got.append((entry.message.body, entry.redelivered))
    assert got == [(b"m0", True), (b"m2", True), (b"m3", False), (b"m4", False)]


def test_requeue_into_its_priority_lane():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_priority=5)
    publish(vhost, "q", "low-1", priority=0)
    publish(vhost, "q", "high", priority=5)
    publish(vhost, "q", "low-2", priority=0)
    high = queue.get(no_ack=False)
    low = queue.get(no_ack=False)
    assert (high.message.body, low.message.body) == (b"high", b"low-1")
    publish(vhost, "q", "high-2", priority=5)
    queue.requeue(low)
    queue.requeue(high)
    assert bodies(queue) == [b"high", b"high-2", b"low-1", b"low-2"]


def test_put_back_is_as_if_never_taken():
    """What the API's get does when it cannot render a message: no redelivered mark."""
    vhost = new_vhost()
    queue = declare(vhost, "q")
    publish(vhost, "q", "a")
    publish(vhost, "q", "b")
    first, second = queue.take(), queue.take()
    queue.put_back([second, first])
    entry = queue.get(no_ack=True)
    assert (entry.message.body, entry.redelivered) == (b"a", False)
    assert queue.messages_delivered == 1  # only the get that handed it out


def test_message_count_follows_every_change():
    """The queue's count is kept, not summed: it follows publishes, gets, requeues, a purge,
    in a queue with priority lanes."""
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_priority=3)
    for index in range(6):
        publish(vhost, "q", f"m{index}", priority=index % 4)
    assert queue.message_count == 6
    taken = [queue.get(no_ack=False) for _ in range(4)]
    assert queue.message_count == 2
    queue.requeue(taken[0])
    queue.requeue(taken[3])
    assert queue.message_count == 4
    assert queue.purge() == 4
    assert queue.message_count == 0 and queue.get(no_ack=True) is None
    publish(vhost, "q", "after")
    assert bodies(queue) == [b"after"] and queue.message_count == 0
