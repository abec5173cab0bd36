"""Dead-letter cycles, as RabbitMQ 3.10.8 detects them (rabbit_dead_letter:detect_cycles).

For any reason but `rejected`, a target queue is skipped when the copy's x-death (which already
holds the death just recorded, first) has an entry for that queue and no entry up to and
including that one has reason `rejected`. The copy still goes to the other targets. A rejection
never triggers the check. The x-death header is what counts, even one a client wrote.
"""

from __future__ import annotations

import datetime

import pika
from lifecycle_helpers import count, dl_args, get_one, pump, wait_count


def test_queue_dead_lettering_to_itself_on_expiry_drops(channel, topo):
    src = topo.queue(channel, "self", dl_args("", topo.name("self"), message_ttl=200))
    channel.basic_publish("", src, b"x")
    wait_count(channel, src, 0, timeout=3)
    pump(channel.connection, 0.4)
    assert count(channel, src) == 0


def test_rejected_into_itself_then_expired_drops(channel, topo):
    """A rejection goes round (no check); the following expiry in the same queue is a cycle."""
    src = topo.queue(channel, "self", dl_args("", topo.name("self"), message_ttl=400))
    channel.basic_publish("", src, b"x")
    method, _properties, _body = channel.basic_get(src)
    channel.basic_reject(method.delivery_tag, requeue=False)
    wait_count(channel, src, 1, timeout=3)  # back in the same queue
    method, properties, _body = channel.basic_get(src)
    assert [(d["queue"], d["reason"]) for d in properties.headers["x-death"]] == [
        (src, "rejected")]
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, src, 0, timeout=3)
    pump(channel.connection, 0.5)
    assert count(channel, src) == 0


def test_two_queue_ttl_cycle_drops_on_return(channel, topo):
    a, b = topo.name("a"), topo.name("b")
    topo.queue(channel, "a", dl_args("", b, message_ttl=150))
    topo.queue(channel, "b", dl_args("", a, message_ttl=150))
    watch = topo.queue(channel, "watch")
    channel.basic_publish("", a, b"x")
    # it expires from a into b, from b it would go back to a: dropped
    wait_count(channel, b, 1, timeout=3)
    wait_count(channel, b, 0, timeout=3)
    pump(channel.connection, 0.4)
    assert count(channel, a) == 0
    assert count(channel, b) == 0
    assert count(channel, watch) == 0


def test_rejection_in_the_cycle_lets_it_through(channel, topo):
    """a (ttl) -> b, rejected from b -> a, expires again -> b: delivered, since the walk to b's
    entry meets a rejection. x-death: [a expired count 2, b rejected count 1]."""
    a, b = topo.name("a"), topo.name("b")
    topo.queue(channel, "a", dl_args("", b, message_ttl=150))
    topo.queue(channel, "b", dl_args("", a))
    channel.basic_publish("", a, b"x")
    wait_count(channel, b, 1, timeout=3)
    method, _properties, _body = channel.basic_get(b)
    channel.basic_reject(method.delivery_tag, requeue=False)
    wait_count(channel, b, 1, timeout=3)
    _method, properties, body = get_one(channel, b)
    assert body == b"x"
    deaths = properties.headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (a, "expired", 2), (b, "rejected", 1)]
    assert properties.headers["x-first-death-queue"] == a
    assert properties.headers["x-first-death-reason"] == "expired"


def test_maxlen_then_expiry_cycle_drops(channel, topo):
    """c (x-max-length 1) drops its head into d (ttl), which would send it back to c: dropped;
    c keeps only the newer message."""
    c, d = topo.name("c"), topo.name("d")
    topo.queue(channel, "c", dl_args("", d, max_length=1))
    topo.queue(channel, "d", dl_args("", c, message_ttl=150))
    channel.basic_publish("", c, b"1")
    channel.basic_publish("", c, b"2")
    wait_count(channel, d, 1, timeout=3)
    wait_count(channel, d, 0, timeout=3)
    pump(channel.connection, 0.3)
    assert count(channel, c) == 1
    method, properties, body = channel.basic_get(c, auto_ack=True)
    assert body == b"2"
    assert properties.headers is None


def test_cycle_skips_only_the_cycling_target(channel, topo):
    """The DLX is a fanout bound to the source queue itself and to another queue: on expiry the
    copy reaches the other queue only."""
    dlx = topo.exchange(channel, "dlx", "fanout")
    src = topo.queue(channel, "src", dl_args(dlx, message_ttl=150))
    other = topo.queue(channel, "other")
    channel.queue_bind(src, dlx)
    channel.queue_bind(other, dlx)
    channel.basic_publish("", src, b"x")
    _method, properties, body = get_one(channel, other)
    assert body == b"x"
    assert [(d["queue"], d["reason"]) for d in properties.headers["x-death"]] == [
        (src, "expired")]
    pump(channel.connection, 0.3)
    assert count(channel, src) == 0
    assert count(channel, other) == 0


def test_client_supplied_x_death_counts(channel, topo):
    """A message published with an x-death that says it already expired in b is dropped when
    it expires from a into b."""
    b = topo.queue(channel, "b")
    a = topo.queue(channel, "a", dl_args("", b, message_ttl=150))
    earlier = {
        "count": 1, "reason": "expired", "queue": b,
        "time": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        "exchange": "", "routing-keys": [b],
    }
    channel.basic_publish("", a, b"fake", pika.BasicProperties(headers={"x-death": [earlier]}))
    # a control message without that header does arrive
    channel.basic_publish("", a, b"plain")
    _method, _properties, body = get_one(channel, b)
    assert body == b"plain"
    pump(channel.connection, 0.3)
    assert count(channel, a) == 0
    assert count(channel, b) == 0
