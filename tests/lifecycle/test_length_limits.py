"""Queue length limits as RabbitMQ 3.10.8 applies them: x-max-length, x-max-length-bytes and
x-overflow (drop-head, reject-publish, reject-publish-dlx).

- only READY messages count (unacked ones do not); x-max-length-bytes counts body bytes only;
- drop-head (the default) drops the oldest ready messages, dead-lettered with reason `maxlen`
  when there is a DLX; a requeued message (back at the head) is the one dropped; a body larger
  than x-max-length-bytes on its own is dropped at once; x-max-length 0 drops everything that
  no consumer takes at once;
- reject-publish: a confirm-mode publisher gets basic.nack, there is no basic.return even with
  mandatory, nothing is dead-lettered, the channel stays open; other queues the message was
  routed to still get it (the publisher gets a nack all the same);
- reject-publish-dlx: basic.nack AND the refused message is dead-lettered (reason `maxlen`,
  queue = the full queue, exchange and routing-keys of the original publish).
"""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from client_helpers import consume, get_bodies
from lifecycle_helpers import count, dl_args, get_one, pump, wait_count


def test_drop_head_keeps_the_newest(channel, topo):
    queue = topo.queue(channel, "q", {"x-max-length": 3})
    for index in range(6):
        channel.basic_publish("", queue, str(index).encode())
    assert count(channel, queue) == 3
    assert get_bodies(channel, queue) == [b"3", b"4", b"5"]


def test_drop_head_dead_letters_with_reason_maxlen(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, max_length=2))
    channel.queue_bind(queue, "amq.direct", "limited")
    for index in range(4):
        channel.basic_publish("amq.direct", "limited", str(index).encode(),
                              pika.BasicProperties(expiration="60000"))
    wait_count(channel, dlq, 2)
    _method, properties, body = get_one(channel, dlq)
    assert body == b"0"
    assert properties.expiration is None
    (death,) = properties.headers["x-death"]
    assert death == {
        "count": 1, "reason": "maxlen", "queue": queue, "time": death["time"],
        "exchange": "amq.direct", "routing-keys": ["limited"], "original-expiration": "60000",
    }
    assert list(death) == ["count", "reason", "queue", "time", "exchange", "routing-keys",
                           "original-expiration"]
    assert properties.headers["x-first-death-reason"] == "maxlen"
    assert get_one(channel, dlq)[2] == b"1"
    assert get_bodies(channel, queue) == [b"2", b"3"]


def test_unacked_messages_do_not_count(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, max_length=2))
    for body in (b"a", b"b"):
        channel.basic_publish("", queue, body)
    method, _properties, _body = channel.basic_get(queue)  # a: unacked
    channel.basic_publish("", queue, b"c")
    assert count(channel, queue) == 2
    assert count(channel, dlq) == 0
    # a goes back to the head: three ready, the head (a) is dropped
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, dlq, 1)
    assert get_bodies(channel, dlq) == [b"a"]
    assert get_bodies(channel, queue) == [b"b", b"c"]


def test_max_length_bytes_counts_bodies_only(channel, topo):
    queue = topo.queue(channel, "q", {"x-max-length-bytes": 10})
    big_headers = pika.BasicProperties(headers={"padding": "x" * 200})
    channel.basic_publish("", queue, b"12345", big_headers)
    channel.basic_publish("", queue, b"abcde", big_headers)
    assert count(channel, queue) == 2
    channel.basic_publish("", queue, b"!")  # 11 bytes: the head goes
    assert get_bodies(channel, queue) == [b"abcde", b"!"]


def test_body_larger_than_max_bytes_is_dropped(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, max_length_bytes=10))
    channel.basic_publish("", queue, b"small")
    channel.basic_publish("", queue, b"x" * 11)
    wait_count(channel, dlq, 2)
    assert count(channel, queue) == 0
    assert get_bodies(channel, dlq) == [b"small", b"x" * 11]


def test_both_limits(channel, topo):
    queue = topo.queue(channel, "q", {"x-max-length": 3, "x-max-length-bytes": 6})
    for body in (b"aa", b"bb", b"cc", b"dd"):
        channel.basic_publish("", queue, body)
    assert get_bodies(channel, queue) == [b"bb", b"cc", b"dd"]
    for body in (b"1", b"2222", b"33"):
        channel.basic_publish("", queue, body)
    assert get_bodies(channel, queue) == [b"2222", b"33"]


def test_max_length_zero(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(channel, "q", dl_args("", dlq, max_length=0))
    channel.basic_publish("", queue, b"nobody")
    assert count(channel, queue) == 0
    wait_count(channel, dlq, 1)
    _tag, collector = consume(channel, queue, auto_ack=True)
    channel.basic_publish("", queue, b"taken")
    assert collector.wait(1)[0].body == b"taken"
    pump(channel.connection, 0.1)
    assert count(channel, dlq) == 1


@pytest.mark.parametrize("with_dlx", [False, True], ids=["plain", "with-dlx"])
def test_reject_publish_nacks_without_return(channel, topo, with_dlx):
    dlq = topo.queue(channel, "dlq")
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    if with_dlx:
        arguments.update(dl_args("", dlq))
    queue = topo.queue(channel, "q", arguments)
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("", queue, b"kept", mandatory=True)
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"refused", mandatory=True)
    pump(channel.connection, 0.2)
    assert returned == []
    assert channel.is_open
    assert count(channel, dlq) == 0
    assert get_bodies(channel, queue) == [b"kept"]
    channel.basic_publish("", queue, b"room again")  # acked
    assert get_bodies(channel, queue) == [b"room again"]


def test_reject_publish_without_confirms_drops_silently(channel, topo):
    queue = topo.queue(channel, "q", {"x-max-length": 1, "x-overflow": "reject-publish"})
    plain = channel.connection.channel()
    plain.basic_publish("", queue, b"kept")
    plain.basic_publish("", queue, b"refused", mandatory=True)
    pump(channel.connection, 0.2)
    assert plain.is_open
    assert get_bodies(channel, queue) == [b"kept"]


def test_reject_publish_other_queues_still_get_it(channel, topo):
    fanout = topo.exchange(channel, "fan", "fanout")
    full = topo.queue(channel, "full", {"x-max-length": 1, "x-overflow": "reject-publish"})
    free = topo.queue(channel, "free")
    channel.queue_bind(full, fanout)
    channel.queue_bind(free, fanout)
    channel.basic_publish(fanout, "", b"1")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish(fanout, "", b"2")
    assert get_bodies(channel, full) == [b"1"]
    assert get_bodies(channel, free) == [b"1", b"2"]


def test_reject_publish_counts_ready_only(channel, topo):
    queue = topo.queue(channel, "q", {"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", queue, b"a")
    method, _properties, _body = channel.basic_get(queue)
    channel.basic_publish("", queue, b"b")  # a is unacked: room for b
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_count(channel, queue, 2)  # a requeued beyond the limit: nothing is dropped
    assert get_bodies(channel, queue) == [b"a", b"b"]


def test_reject_publish_dlx_nacks_and_dead_letters(channel, topo):
    dlq = topo.queue(channel, "dlq")
    queue = topo.queue(
        channel, "q", dl_args("", dlq, max_length=1, overflow="reject-publish-dlx"))
    channel.queue_bind(queue, "amq.direct", "rk")
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.basic_publish("amq.direct", "rk", b"kept", mandatory=True)
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish(
            "amq.direct", "rk", b"refused",
            pika.BasicProperties(expiration="5000", headers={"CC": ["cc-key"]}), mandatory=True)
    method, properties, body = get_one(channel, dlq)
    assert body == b"refused"
    assert (method.exchange, method.routing_key) == ("", dlq)
    assert properties.expiration is None
    (death,) = properties.headers["x-death"]
    assert death == {
        "count": 1, "reason": "maxlen", "queue": queue, "time": death["time"],
        "exchange": "amq.direct", "routing-keys": ["rk", "cc-key"],
        "original-expiration": "5000",
    }
    assert properties.headers["x-first-death-reason"] == "maxlen"
    assert returned == []
    assert get_bodies(channel, queue) == [b"kept"]
