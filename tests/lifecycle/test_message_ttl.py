"""Message TTL as RabbitMQ 3.10.8 does it: per queue (x-message-ttl) and per message
(`expiration`).

- queue-TTL messages expire on time with nobody consuming (passive declare's message_count
  drops to 0 without any basic.get or consume);
- a per-message-TTL message at the head expires on its own; one BEHIND a longer-lived head is
  not expired (still counted) until it reaches the head; then it is dropped at once (the get-ok
  of the head already says message_count=0), dead-lettered at that moment if there is a DLX;
- the effective TTL is the smaller of x-message-ttl and expiration;
- TTL 0: delivered to a consumer that can take it at once, dropped otherwise;
- the delivered message keeps its `expiration` property; the dead-lettered copy has none and
  carries original-expiration in x-death;
- a requeued message keeps its original expiry (it is not restarted), and one requeued after
  its expiry is expired at once (reason `expired`).
"""

from __future__ import annotations

import time

import pika
from client_helpers import consume, get_bodies
from lifecycle_helpers import count, dl_args, get_one, pump, wait_count


def expiring(ms: int, **more) -> pika.BasicProperties:
    return pika.BasicProperties(expiration=str(ms), **more)


def test_queue_ttl_expires_without_consumers(channel, topo):
    queue = topo.queue(channel, "q", {"x-message-ttl": 300})
    start = time.monotonic()
    for index in range(3):
        channel.basic_publish("", queue, str(index).encode())
    assert count(channel, queue) == 3
    when = wait_count(channel, queue, 0, timeout=4)
    assert 0.2 <= when - start <= 2.0


def test_queue_ttl_counts_from_each_publish(channel, topo):
    queue = topo.queue(channel, "q", {"x-message-ttl": 500})
    channel.basic_publish("", queue, b"early")
    pump(channel.connection, 0.3)
    channel.basic_publish("", queue, b"late")
    wait_count(channel, queue, 1, timeout=3)
    assert get_bodies(channel, queue) == [b"late"]


def test_per_message_ttl_at_head_expires_on_its_own(channel, topo):
    queue = topo.queue(channel, "q")
    start = time.monotonic()
    channel.basic_publish("", queue, b"short", expiring(250))
    channel.basic_publish("", queue, b"long", expiring(30000))
    assert count(channel, queue) == 2
    when = wait_count(channel, queue, 1, timeout=4)
    assert 0.15 <= when - start <= 2.0
    assert get_bodies(channel, queue) == [b"long"]


def test_per_message_ttl_behind_a_long_head_waits_for_the_head(channel, topo):
    queue = topo.queue(channel, "q")
    channel.basic_publish("", queue, b"long", expiring(30000))
    channel.basic_publish("", queue, b"short", expiring(150))
    pump(channel.connection, 0.5)
    assert count(channel, queue) == 2  # expired but not at the head: still counted
    method, _properties, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"long"
    assert method.message_count == 0  # the expired one was dropped when it became the head
    assert count(channel, queue) == 0
    assert channel.basic_get(queue)[0] is None


def test_expired_behind_head_is_dead_lettered_when_the_head_leaves(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq))
    channel.basic_publish("", queue, b"long", expiring(800))
    channel.basic_publish("", queue, b"short", expiring(100))
    pump(channel.connection, 0.4)
    assert count(channel, queue) == 2
    assert count(channel, dlq) == 0
    wait_count(channel, dlq, 2, timeout=4)
    assert count(channel, queue) == 0
    deaths = []
    for expected in (b"long", b"short"):
        _method, properties, body = get_one(channel, dlq)
        assert body == expected
        assert properties.expiration is None
        deaths.append(properties.headers["x-death"][0])
    assert [(d["reason"], d["original-expiration"]) for d in deaths] == [
        ("expired", "800"), ("expired", "100")]


def test_effective_ttl_is_the_smaller_one(channel, topo):
    queue = topo.queue(channel, "q", {"x-message-ttl": 300})
    start = time.monotonic()
    channel.basic_publish("", queue, b"queue-ttl-wins", expiring(30000))
    when = wait_count(channel, queue, 0, timeout=4)
    assert 0.2 <= when - start <= 2.0
    start = time.monotonic()
    channel.basic_publish("", queue, b"message-ttl-wins", expiring(50))
    # well before the queue TTL it is gone
    when = wait_count(channel, queue, 0, timeout=4)
    assert when - start < 0.28


def test_queue_ttl_zero_without_consumer_drops(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, message_ttl=0))
    channel.basic_publish("", queue, b"x")
    pump(channel.connection, 0.1)
    assert count(channel, queue) == 0
    assert channel.basic_get(queue)[0] is None
    _method, properties, body = get_one(channel, dlq)
    assert body == b"x"
    assert properties.headers["x-death"][0]["reason"] == "expired"


def test_queue_ttl_zero_with_ready_consumer_delivers(channel, topo):
    queue = topo.queue(channel, "q", {"x-message-ttl": 0})
    _tag, collector = consume(channel, queue, auto_ack=True)
    channel.basic_publish("", queue, b"now")
    (delivery,) = collector.wait(1)
    assert delivery.body == b"now"
    assert delivery.properties.expiration is None


def test_expiration_zero(channel, topo):
    queue = topo.queue(channel, "q")
    channel.basic_publish("", queue, b"nobody", expiring(0))
    pump(channel.connection, 0.1)
    assert count(channel, queue) == 0
    _tag, collector = consume(channel, queue, auto_ack=True)
    channel.basic_publish("", queue, b"taken", expiring(0))
    (delivery,) = collector.wait(1)
    assert delivery.body == b"taken"
    assert delivery.properties.expiration == "0"  # delivered copies keep the property


def test_expiration_zero_consumer_without_credit_drops(channel, topo):
    """A consumer whose prefetch is used up cannot take it at once: dropped."""
    queue = topo.queue(channel, "q")
    channel.basic_qos(prefetch_count=1)
    _tag, collector = consume(channel, queue)
    channel.basic_publish("", queue, b"first")
    collector.wait(1)
    channel.basic_publish("", queue, b"no-credit", expiring(0))
    pump(channel.connection, 0.2)
    assert count(channel, queue) == 0
    channel.basic_ack(collector.deliveries[0].method.delivery_tag)
    pump(channel.connection, 0.2)
    assert collector.bodies == [b"first"]


def test_delivered_message_keeps_expiration(channel, topo):
    queue = topo.queue(channel, "q")
    channel.basic_publish("", queue, b"x", expiring(60000))
    _method, properties, _body = get_one(channel, queue)
    assert properties.expiration == "60000"


def test_requeue_keeps_original_expiry(channel, topo):
    """Fetched at once, requeued at ~0.5 s: it still expires at ~0.8 s (TTL 800 ms), not
    0.8 s after the requeue."""
    queue = topo.queue(channel, "q", {"x-message-ttl": 800})
    start = time.monotonic()
    channel.basic_publish("", queue, b"x")
    method, _properties, _body = channel.basic_get(queue)
    pump(channel.connection, 0.5)
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, queue, 1, timeout=0.25)
    when = wait_count(channel, queue, 0, timeout=4)
    assert when - start < 1.15


def test_requeued_after_expiry_is_expired_at_once(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, message_ttl=200))
    channel.basic_publish("", queue, b"late", expiring(60000))
    method, _properties, _body = channel.basic_get(queue)
    pump(channel.connection, 0.4)
    assert count(channel, dlq) == 0  # unacked messages do not expire
    channel.basic_reject(method.delivery_tag, requeue=True)
    _method, properties, body = get_one(channel, dlq)
    assert body == b"late"
    death = properties.headers["x-death"][0]
    assert (death["reason"], death["original-expiration"]) == ("expired", "60000")
    assert count(channel, queue) == 0


def test_requeued_by_channel_close_keeps_per_message_expiry(channel, topo):
    queue = topo.queue(channel, "q")
    other = channel.connection.channel()
    channel.basic_publish("", queue, b"x", expiring(300))
    method, _properties, _body = other.basic_get(queue)
    assert method is not None
    pump(channel.connection, 0.45)
    other.close()
    pump(channel.connection, 0.1)
    assert count(channel, queue) == 0


def test_dead_lettered_copy_ttl_counts_from_dead_lettering(channel, topo):
    """src (TTL 400) dead-letters into dlq (TTL 400): the copy arrives at ~0.4 s and lives
    there ~0.4 s more; its clock starts when it is dead-lettered, not at the first publish."""
    dlq = topo.queue(channel, "dlq", {"x-message-ttl": 400})
    src = topo.queue(channel, "src", dl_args("", dlq, message_ttl=400))
    start = time.monotonic()
    channel.basic_publish("", src, b"x", expiring(60000))
    arrived = wait_count(channel, dlq, 1, timeout=4) - start
    gone = wait_count(channel, dlq, 0, timeout=4) - start
    assert 0.3 <= arrived <= 1.5
    assert gone - arrived >= 0.25, f"arrived at {arrived:.2f}s, gone at {gone:.2f}s"


def test_queue_ttl_expires_messages_waiting_for_a_busy_consumer(channel, topo):
    queue = topo.queue(channel, "q", {"x-message-ttl": 300})
    channel.basic_qos(prefetch_count=1)
    _tag, collector = consume(channel, queue)
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)
    collector.wait(1)
    assert count(channel, queue) == 2
    wait_count(channel, queue, 0, timeout=3)
    channel.basic_ack(collector.deliveries[0].method.delivery_tag)
    pump(channel.connection, 0.2)
    assert collector.bodies == [b"1"]
