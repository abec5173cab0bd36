"""Dead-lettering as RabbitMQ 3.10.8 does it: where the copy goes and with which routing keys.

- reason `rejected`: basic.reject / basic.nack with requeue=false (nack multiple in tag order);
- without x-dead-letter-routing-key the copy is routed with the ORIGINAL routing keys: the
  publish key, the CC keys and even the BCC keys (x-death's routing-keys lists no BCC key);
- with x-dead-letter-routing-key only that key is used and the CC header is removed;
- the deliver shows the DLX as exchange ("" for the default exchange), redelivered=false, the
  expiration property is gone, every other property is kept;
- a DLX naming a missing exchange, or one that routes nowhere: the message is silently dropped;
- queue.delete, queue.purge and a requeue (nack requeue=true, channel close) never dead-letter.
"""

from __future__ import annotations

import pika
from client_helpers import consume, get_bodies
from lifecycle_helpers import count, dl_args, get_one, pump, wait_count


def reject_from(channel, queue: str) -> None:
    method, _properties, _body = channel.basic_get(queue)
    assert method is not None, f"nothing to reject in {queue}"
    channel.basic_reject(method.delivery_tag, requeue=False)


def test_reject_dead_letters_with_original_routing_key(channel, topo):
    dlx = topo.exchange(channel, "dlx", "direct")
    dlq = topo.queue(channel, "dlq")
    channel.queue_bind(dlq, dlx, "orig-key")
    src = topo.queue(channel, "src", dl_args(dlx))
    channel.queue_bind(src, "amq.direct", "orig-key")
    properties = pika.BasicProperties(
        message_id="id-7", priority=4, timestamp=1700000000, delivery_mode=2,
        content_type="application/json", type="kind", app_id="tests", user_id="guest",
        correlation_id="corr", reply_to="somewhere", expiration="60000",
        headers={"custom": "value"},
    )
    channel.basic_publish("amq.direct", "orig-key", b'{"a": 1}', properties)
    reject_from(channel, src)
    method, received, body = get_one(channel, dlq)
    assert body == b'{"a": 1}'
    assert method.exchange == dlx
    assert method.routing_key == "orig-key"
    assert method.redelivered is False
    assert received.expiration is None
    assert (received.message_id, received.priority, received.timestamp) == ("id-7", 4, 1700000000)
    assert (received.delivery_mode, received.content_type, received.type) == (
        2, "application/json", "kind")
    assert (received.app_id, received.user_id, received.correlation_id, received.reply_to) == (
        "tests", "guest", "corr", "somewhere")
    assert received.headers["custom"] == "value"
    assert received.headers["x-death"][0]["reason"] == "rejected"
    assert count(channel, src) == 0


def test_nack_requeue_false_dead_letters(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"n")
    method, _properties, _body = channel.basic_get(src)
    channel.basic_nack(method.delivery_tag, requeue=False)
    method, properties, body = get_one(channel, dlq)
    assert body == b"n"
    assert method.exchange == ""
    assert method.routing_key == dlq
    assert properties.headers["x-death"][0]["reason"] == "rejected"


def test_nack_multiple_dead_letters_in_order(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    for index in range(5):
        channel.basic_publish("", src, str(index).encode())
    tags = [channel.basic_get(src)[0].delivery_tag for _ in range(5)]
    channel.basic_nack(tags[3], multiple=True, requeue=False)
    wait_count(channel, dlq, 4)
    channel.basic_nack(tags[4], requeue=False)
    wait_count(channel, dlq, 5)
    assert get_bodies(channel, dlq) == [b"0", b"1", b"2", b"3", b"4"]


def test_consumer_reject_dead_letters(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    _tag, collector = consume(channel, src)
    channel.basic_publish("", src, b"c")
    (delivery,) = collector.wait(1)
    channel.basic_reject(delivery.method.delivery_tag, requeue=False)
    _method, properties, body = get_one(channel, dlq)
    assert body == b"c"
    assert properties.headers["x-death"][0]["queue"] == src


def test_copy_is_routed_with_cc_and_bcc_keys(channel, topo):
    """No x-dead-letter-routing-key: publish key, CC and BCC keys all route the copy (a queue
    bound only with the BCC key gets it), but x-death's routing-keys omit BCC."""
    dlx = topo.exchange(channel, "dlx", "direct")
    by_cc = topo.queue(channel, "by-cc")
    by_bcc = topo.queue(channel, "by-bcc")
    by_other = topo.queue(channel, "by-other")
    channel.queue_bind(by_cc, dlx, "cc-key")
    channel.queue_bind(by_bcc, dlx, "bcc-key")
    channel.queue_bind(by_other, dlx, "other")
    src = topo.queue(channel, "src", dl_args(dlx))
    channel.basic_publish(
        "", src, b"x", pika.BasicProperties(headers={"CC": ["cc-key"], "BCC": ["bcc-key"]}))
    reject_from(channel, src)
    for queue in (by_cc, by_bcc):
        method, properties, _body = get_one(channel, queue)
        assert method.routing_key == src
        assert method.exchange == dlx
        assert properties.headers["CC"] == ["cc-key"]
        assert "BCC" not in properties.headers
        assert properties.headers["x-death"][0]["routing-keys"] == [src, "cc-key"]
    pump(channel.connection, 0.1)
    assert count(channel, by_other) == 0


def test_dead_letter_routing_key_replaces_keys_and_drops_cc(channel, topo):
    dlx = topo.exchange(channel, "dlx", "direct")
    dlq = topo.queue(channel, "dlq")
    by_cc = topo.queue(channel, "by-cc")
    by_bcc = topo.queue(channel, "by-bcc")
    channel.queue_bind(dlq, dlx, "dl-key")
    channel.queue_bind(by_cc, dlx, "cc-key")
    channel.queue_bind(by_bcc, dlx, "bcc-key")
    src = topo.queue(channel, "src", dl_args(dlx, "dl-key"))
    channel.basic_publish(
        "", src, b"x",
        pika.BasicProperties(headers={"CC": ["cc-key"], "BCC": ["bcc-key"], "keep": "me"}))
    reject_from(channel, src)
    method, properties, _body = get_one(channel, dlq)
    assert method.routing_key == "dl-key"
    assert method.exchange == dlx
    assert "CC" not in properties.headers
    assert properties.headers["keep"] == "me"
    # x-death still records the keys the message was published with (CC included)
    assert properties.headers["x-death"][0]["routing-keys"] == [src, "cc-key"]
    pump(channel.connection, 0.1)
    assert count(channel, by_cc) == 0
    assert count(channel, by_bcc) == 0


def test_default_exchange_as_dlx(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.queue_bind(src, "amq.topic", "a.b")
    channel.basic_publish("amq.topic", "a.b", b"x")
    reject_from(channel, src)
    method, properties, _body = get_one(channel, dlq)
    assert (method.exchange, method.routing_key) == ("", dlq)
    death = properties.headers["x-death"][0]
    assert (death["exchange"], death["routing-keys"]) == ("amq.topic", ["a.b"])


def test_fanout_dlx_reaches_every_bound_queue(channel, topo):
    dlx = topo.exchange(channel, "dlx", "fanout")
    first = topo.queue(channel, "one")
    second = topo.queue(channel, "two")
    channel.queue_bind(first, dlx)
    channel.queue_bind(second, dlx)
    src = topo.queue(channel, "src", dl_args(dlx))
    channel.basic_publish("", src, b"f")
    reject_from(channel, src)
    assert get_one(channel, first)[2] == b"f"
    assert get_one(channel, second)[2] == b"f"


def test_missing_dlx_drops_silently(channel, topo):
    src = topo.queue(channel, "src", dl_args(topo.name("no-such-exchange")))
    channel.basic_publish("", src, b"x")
    reject_from(channel, src)
    pump(channel.connection, 0.2)
    assert channel.is_open
    assert count(channel, src) == 0
    # later: the exchange appears; new rejects are then dead-lettered through it
    dlx = topo.exchange(channel, "no-such-exchange", "fanout")
    dlq = topo.queue(channel, "dlq")
    channel.queue_bind(dlq, dlx)
    channel.basic_publish("", src, b"y")
    reject_from(channel, src)
    assert get_one(channel, dlq)[2] == b"y"


def test_dlx_routing_nowhere_drops(channel, topo):
    dlx = topo.exchange(channel, "dlx", "direct")
    src = topo.queue(channel, "src", dl_args(dlx, "unbound"))
    confirm = channel.connection.channel()
    confirm.confirm_delivery()
    confirm.basic_publish("", src, b"x", mandatory=True)
    reject_from(channel, src)
    pump(channel.connection, 0.2)
    assert channel.is_open and confirm.is_open
    assert count(channel, src) == 0


def test_requeue_is_not_dead_lettering(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"a")
    channel.basic_publish("", src, b"b")
    method, _properties, _body = channel.basic_get(src)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _properties, _body = channel.basic_get(src)
    channel.basic_reject(method.delivery_tag, requeue=True)
    other = channel.connection.channel()
    other.basic_get(src)
    other.close()  # unacked message goes back, not to the DLX
    pump(channel.connection, 0.1)
    assert count(channel, dlq) == 0
    assert count(channel, src) == 2


def test_purge_and_delete_do_not_dead_letter(channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"a")
    channel.basic_publish("", src, b"b")
    wait_count(channel, src, 2)
    assert channel.queue_purge(src).method.message_count == 2
    channel.basic_publish("", src, b"c")
    wait_count(channel, src, 1)
    channel.queue_delete(src)
    pump(channel.connection, 0.2)
    assert count(channel, dlq) == 0


def test_dead_lettered_from_one_of_two_queues(channel, topo):
    """A message routed to two queues and rejected in one: only that copy is dead-lettered;
    the other queue keeps its copy."""
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    twin = topo.queue(channel, "twin")
    fanout = topo.exchange(channel, "fan", "fanout")
    channel.queue_bind(src, fanout)
    channel.queue_bind(twin, fanout)
    channel.basic_publish(fanout, "", b"both")
    reject_from(channel, src)
    _method, properties, body = get_one(channel, dlq)
    assert body == b"both"
    assert properties.headers["x-death"][0]["queue"] == src
    assert properties.headers["x-death"][0]["exchange"] == fanout
    assert count(channel, twin) == 1
    _method, twin_properties, _body = channel.basic_get(twin, auto_ack=True)
    assert twin_properties.headers is None
