"""Queue expiry (x-expires) as RabbitMQ 3.10.8 does it.

An unused queue is deleted once the period has passed. Each of these counts as a use and starts
the period again: queue.declare (passive too), basic.get (even on an empty queue), a consumer
(the queue never expires while it has one; the period starts when the last one goes).
Publishing is NOT a use. The messages of an expired queue are not dead-lettered.

Checks of existence use a passive declare, which itself is a use: each test looks only once,
after the moment it is interested in.
"""

from __future__ import annotations

from lifecycle_helpers import count, dl_args, pump, queue_exists

PERIOD = 500


def declare(channel, topo, suffix: str = "q", **more) -> str:
    return topo.queue(channel, suffix, {"x-expires": PERIOD, **more})


def test_unused_queue_is_deleted(channel, topo):
    queue = declare(channel, topo)
    pump(channel.connection, 1.0)
    assert not queue_exists(channel.connection, queue)


def test_unused_queue_lives_until_the_period(channel, topo):
    queue = topo.queue(channel, "q", {"x-expires": 1500})
    pump(channel.connection, 0.6)
    assert queue_exists(channel.connection, queue)


def test_passive_declare_is_a_use(channel, topo):
    queue = declare(channel, topo)
    for _ in range(4):
        pump(channel.connection, 0.3)
        channel.queue_declare(queue, passive=True)
    pump(channel.connection, 0.3)
    assert queue_exists(channel.connection, queue)  # 1.5 s after declare, 0.3 s after use
    pump(channel.connection, 0.8)
    assert not queue_exists(channel.connection, queue)


def test_redeclare_is_a_use(channel, topo):
    queue = declare(channel, topo)
    for _ in range(4):
        pump(channel.connection, 0.3)
        channel.queue_declare(queue, arguments={"x-expires": PERIOD})
    pump(channel.connection, 0.3)
    assert queue_exists(channel.connection, queue)


def test_basic_get_is_a_use(channel, topo):
    queue = declare(channel, topo)
    for _ in range(4):
        pump(channel.connection, 0.3)
        assert channel.basic_get(queue)[0] is None
    pump(channel.connection, 0.3)
    assert queue_exists(channel.connection, queue)


def test_publishing_is_not_a_use(channel, topo):
    queue = declare(channel, topo)
    for _ in range(3):
        pump(channel.connection, 0.25)
        channel.basic_publish("", queue, b"x")
    pump(channel.connection, 0.5)
    assert not queue_exists(channel.connection, queue)


def test_consumer_keeps_it_and_cancel_starts_the_period(channel, topo):
    queue = declare(channel, topo)
    tag = channel.basic_consume(queue, lambda *args: None)
    pump(channel.connection, 1.0)
    channel.basic_cancel(tag)
    pump(channel.connection, 0.25)
    assert queue_exists(channel.connection, queue)  # a use: the period starts again here
    pump(channel.connection, 0.8)
    assert not queue_exists(channel.connection, queue)


def test_consumer_on_closed_channel_starts_the_period(channel, topo):
    queue = declare(channel, topo)
    other = channel.connection.channel()
    other.basic_consume(queue, lambda *args: None)
    pump(channel.connection, 0.8)
    other.close()
    pump(channel.connection, 1.0)
    assert not queue_exists(channel.connection, queue)


def test_expired_queue_does_not_dead_letter(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = declare(channel, topo, "q", **dl_args("", dlq))
    channel.basic_publish("", queue, b"lost")
    pump(channel.connection, 1.0)
    assert not queue_exists(channel.connection, queue)
    assert count(channel, dlq) == 0
