"""Dispatch runs, in-process: a queue hands its only consumer (manual ack) many messages at
once (Queue._dispatch_run), as many as the window has room for, stopping before a message
with a deadline (which goes the per-message way) and after what the target takes; what the
target does not take goes back to the head, in order, counted in again; requeued messages go
one at a time, before the rest."""

from __future__ import annotations

from core_kit import Target, consume, declare, new_vhost, publish


def _queue_with(count: int, expiring: int | None = None):
    """A queue "q" of a new vhost holding m0, m1, ... (message `expiring` with a TTL)."""
    vhost = new_vhost()
    queue = declare(vhost, "q")
    for index in range(count):
        publish(vhost, "q", f"m{index}", **({"expiration": 60000} if index == expiring else {}))
    return queue


def test_a_run_fills_the_window_and_stops_before_a_message_with_a_deadline():
    queue = _queue_with(10, expiring=4)
    target = Target()
    consume(queue, target, "c", prefetch=8)
    assert target.bodies() == [f"m{index}".encode() for index in range(8)]
    assert target.runs == [4, 3]  # m0-m3, then m4 alone, then m5-m7 (the window's room)
    assert (queue.message_count, queue.ready_bytes, queue.messages_delivered) == (2, 4, 8)


def test_what_the_target_does_not_take_goes_back_to_the_head_in_order():
    queue = _queue_with(6)
    target = Target()
    target.take_at_most = 2
    consume(queue, target, "c")  # no prefetch limit: all six offered at once
    assert (target.bodies(), target.runs) == ([b"m0", b"m1"], [2])
    assert (queue.message_count, queue.ready_bytes, queue.messages_delivered) == (4, 8, 2)
    target.full = False
    queue.dispatch()
    assert target.bodies() == [f"m{index}".encode() for index in range(4)]
    target.full = target.take_at_most = None
    queue.dispatch()
    assert target.bodies() == [f"m{index}".encode() for index in range(6)]
    assert target.runs == [2, 2, 2]
    assert (queue.message_count, queue.ready_bytes, queue.messages_delivered) == (0, 0, 6)


def test_requeued_messages_go_one_at_a_time_ahead_of_the_rest():
    queue = _queue_with(6)
    target = Target()
    consumer = consume(queue, target, "c", prefetch=3)
    assert target.runs == [3]
    taken = [entry for _, _, entry in target.delivered]
    target.delivered.clear()
    consumer.unacked = 0
    for entry in reversed(taken):  # back in their places, redelivered
        queue.requeue(entry)
    queue.dispatch()
    assert target.bodies() == [b"m0", b"m1", b"m2"]
    assert [entry.redelivered for _, _, entry in target.delivered] == [True] * 3
    assert target.runs == [3]  # the requeued ones were not a run
    assert (queue.messages_delivered, queue.messages_redelivered) == (6, 3)
    target.ack_all()
    queue.dispatch()
    assert target.bodies() == [b"m3", b"m4", b"m5"]
    assert target.runs == [3, 3]
