"""Length limits and TTL, in-process: x-max-length and x-max-length-bytes with each x-overflow
(drop-head, reject-publish, reject-publish-dlx), policies changing limits, and expiry (queue
TTL, per-message expiration, expiry at the head only, TTL 0 to a ready consumer)."""

from __future__ import annotations

import asyncio

from core_kit import Target, bodies, consume, declare, new_vhost, publish

from broker.policies import Policy


def test_max_length_drop_head():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_length=2)
    for index in range(4):
        assert publish(vhost, "q", f"m{index}") == (1, 0, False)
    assert bodies(queue) == [b"m2", b"m3"]
    assert vhost.dead_lettered == {("classic", "maxlen", "disabled"): 2}


def test_max_length_reject_publish_refuses_the_new_message():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_length=2, x_overflow="reject-publish")
    results = [publish(vhost, "q", f"m{index}") for index in range(3)]
    assert results == [(1, 0, False), (1, 0, False), (1, 0, True)]  # refused: a nack
    assert bodies(queue) == [b"m0", b"m1"]
    assert vhost.dead_lettered == {}


def test_reject_publish_dlx_dead_letters_the_refused_one():
    vhost = new_vhost()
    dead = declare(vhost, "dead")
    queue = declare(vhost, "q", x_max_length=1, x_overflow="reject-publish-dlx",
                    x_dead_letter_exchange="", x_dead_letter_routing_key="dead")
    publish(vhost, "q", "kept")
    assert publish(vhost, "q", "refused") == (1, 0, True)
    assert bodies(queue) == [b"kept"]
    assert bodies(dead) == [b"refused"]


def test_max_length_bytes_counts_bodies():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_length_bytes=10)
    for body in ("aaaa", "bbbb", "cccc"):
        publish(vhost, "q", body)
    assert queue.ready_bytes == 8
    assert bodies(queue) == [b"bbbb", b"cccc"]


def test_fanout_refused_by_one_queue_still_reaches_the_other():
    vhost = new_vhost()
    full = declare(vhost, "full", x_max_length=0, x_overflow="reject-publish")
    free = declare(vhost, "free")
    fanout = vhost.exchanges["amq.fanout"]
    for queue in (full, free):
        vhost.bind(fanout, queue, "", {})
    assert publish(vhost, "", "m", exchange="amq.fanout") == (2, 0, True)
    assert (bodies(full), bodies(free)) == ([], [b"m"])


def test_a_ready_consumer_takes_a_message_before_the_limit_applies():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_max_length=0)
    target = Target()
    consume(queue, target, "c")
    publish(vhost, "q", "m")
    assert target.bodies() == [b"m"]


async def test_queue_ttl_expires_without_a_consumer():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_message_ttl=20)
    publish(vhost, "q", "m")
    assert queue.message_count == 1
    await asyncio.sleep(0.08)
    assert queue.message_count == 0
    assert vhost.dead_lettered == {("classic", "expired", "disabled"): 1}


async def test_per_message_expiration_the_earlier_of_the_two():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_message_ttl=60000)
    publish(vhost, "q", "short", expiration=10)
    publish(vhost, "q", "long")
    await asyncio.sleep(0.06)
    assert bodies(queue) == [b"long"]


async def test_expiry_only_at_the_head():
    """RabbitMQ expires from the head only: an expired message behind a live one waits, and
    goes (without being delivered) once it reaches the head."""
    vhost = new_vhost()
    queue = declare(vhost, "q")
    publish(vhost, "q", "live")
    publish(vhost, "q", "brief", expiration=10)
    await asyncio.sleep(0.05)
    assert queue.message_count == 2
    assert bodies(queue) == [b"live"]
    assert vhost.dead_lettered == {("classic", "expired", "disabled"): 1}


async def test_ttl_zero_reaches_a_ready_consumer_only():
    vhost = new_vhost()
    queue = declare(vhost, "q", x_message_ttl=0)
    target = Target()
    consume(queue, target, "c")
    publish(vhost, "q", "taken")
    target.full = True
    publish(vhost, "q", "lost")
    await asyncio.sleep(0.02)  # the expiry timer's next tick
    assert target.bodies() == [b"taken"]
    assert queue.message_count == 0
    assert vhost.dead_lettered == {("classic", "expired", "disabled"): 1}


def test_a_policy_lowers_the_limit_of_a_queue():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    for index in range(4):
        publish(vhost, "q", f"m{index}")
    vhost.set_policy(Policy(vhost="/", name="short", pattern="^q$",
                            definition={"max-length": 1}, apply_to="queues"))
    assert bodies(queue) == [b"m3"]
