"""The x-death header exactly as RabbitMQ 3.10.8 writes it, checked on the wire bytes.

Observed on the reference node (see RABBITMQ_LIFECYCLE.md, section 6):
- first death: x-death = [ {count l 1, reason S, queue S, time T, exchange S, routing-keys A[S..],
  original-expiration S (only if the message had `expiration`)} ] in exactly that field order,
  plus x-first-death-exchange/-queue/-reason; the whole header table is then sorted by key;
- routing-keys = publish key + CC keys (BCC never);
- the dead-lettered copy has no `expiration` property; other properties are kept;
- a later death with the same (queue, reason) only increments count (time, exchange and
  routing-keys stay those of the first such death); the entry is re-sorted alphabetically;
- a new (queue, reason) entry is alphabetically sorted too; the updated/new entry goes first and,
  when there were 2+ entries, the others follow in REVERSED order;
- x-first-death-* never change after the first death.
"""

from __future__ import annotations

import datetime

import pika
from lifecycle_helpers import dl_args, get_one, raw_get, unix_now, wait_until

FIRST_ORDER = ["count", "reason", "queue", "time", "exchange", "routing-keys"]
SORTED_ORDER = ["count", "exchange", "queue", "reason", "routing-keys", "time"]


def entries(message) -> list[list[tuple[str, str, object]]]:
    kind, value = message.header("x-death")
    assert kind == "A"
    for item_kind, _ in value:
        assert item_kind == "F"
    return [table for _, table in value]


def as_dict(entry) -> dict:
    return {name: (kind, value) for name, kind, value in entry}


def reject_from(channel, queue: str) -> None:
    method, _properties, _body = channel.basic_get(queue)
    assert method is not None, f"nothing to reject in {queue}"
    channel.basic_reject(method.delivery_tag, requeue=False)


def test_first_death_exact_structure(broker, channel, topo):
    dlx = topo.exchange(channel, "dlx", "direct")
    dlq = topo.queue(channel, "dlq")
    channel.queue_bind(dlq, dlx, "rk")
    src = topo.queue(channel, "src", dl_args(dlx))
    channel.queue_bind(src, "amq.direct", "rk")
    properties = pika.BasicProperties(
        expiration="60000", message_id="m-1", priority=3, timestamp=12345, delivery_mode=2,
        content_type="text/plain", correlation_id="c-1", app_id="app",
        headers={"zeta": "last", "CC": ["cc-key"], "BCC": ["bcc-key"], "alpha": 1},
    )
    channel.basic_publish("amq.direct", "rk", b"payload", properties)
    before = unix_now()
    reject_from(channel, src)
    message = raw_get(broker, dlq)
    after = unix_now()

    assert message.body == b"payload"
    assert message.get_ok.exchange == dlx
    assert message.get_ok.routing_key == "rk"
    assert message.get_ok.redelivered is False
    assert not message.has("expiration")
    for prop in ("message_id", "priority", "timestamp", "delivery_mode", "content_type",
                 "correlation_id", "app_id"):
        assert message.has(prop), prop

    names = [name for name, _, _ in message.headers]
    assert names == ["CC", "alpha", "x-death", "x-first-death-exchange",
                     "x-first-death-queue", "x-first-death-reason", "zeta"]
    assert message.header("CC") == ("A", [("S", "cc-key")])
    assert message.header("x-first-death-exchange") == ("S", "amq.direct")
    assert message.header("x-first-death-queue") == ("S", src)
    assert message.header("x-first-death-reason") == ("S", "rejected")

    (entry,) = entries(message)
    assert [name for name, _, _ in entry] == [*FIRST_ORDER, "original-expiration"]
    fields = as_dict(entry)
    assert fields["count"] == ("l", 1)
    assert fields["reason"] == ("S", "rejected")
    assert fields["queue"] == ("S", src)
    assert fields["time"][0] == "T"
    assert before - 1 <= fields["time"][1] <= after + 1
    assert fields["exchange"] == ("S", "amq.direct")
    assert fields["routing-keys"] == ("A", [("S", "rk"), ("S", "cc-key")])
    assert fields["original-expiration"] == ("S", "60000")


def test_no_original_expiration_without_expiration(broker, channel, topo):
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"x")
    reject_from(channel, src)
    message = raw_get(broker, dlq)
    assert message.headers is not None
    assert [name for name, _, _ in message.headers] == [
        "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"]
    (entry,) = entries(message)
    assert [name for name, _, _ in entry] == FIRST_ORDER
    # dead-lettered through the default exchange with an explicit key: routing-keys still
    # hold the key the message was PUBLISHED with
    assert as_dict(entry)["routing-keys"] == ("A", [("S", src)])
    assert as_dict(entry)["exchange"] == ("S", "")
    assert message.header("x-first-death-exchange") == ("S", "")


def test_pika_view_of_the_header(channel, topo):
    """The same header through pika: count is a long, time a datetime, keys a list of str."""
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"x", pika.BasicProperties(expiration="5000"))
    reject_from(channel, src)
    _method, properties, _body = get_one(channel, dlq)
    assert properties.expiration is None
    (death,) = properties.headers["x-death"]
    assert type(death["count"]).__name__ == "long"  # pika decodes 'l' as its `long`
    assert death["count"] == 1
    assert isinstance(death["time"], datetime.datetime)
    assert death == {
        "count": 1, "reason": "rejected", "queue": src, "time": death["time"],
        "exchange": "", "routing-keys": [src], "original-expiration": "5000",
    }
    assert properties.headers["x-first-death-queue"] == src
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert properties.headers["x-first-death-exchange"] == ""


def test_repeat_death_increments_count_and_keeps_first_details(broker, channel, topo):
    """Rejected twice from the same queue (it dead-letters to itself): count 2; time,
    exchange and routing-keys stay those of the first death although the copy came back
    through the default exchange; the entry is now sorted alphabetically."""
    src = topo.queue(channel, "src", dl_args("", topo.name("src")))
    channel.queue_bind(src, "amq.direct", "k1")
    channel.basic_publish("amq.direct", "k1", b"x", pika.BasicProperties(expiration="60000"))
    reject_from(channel, src)

    method, properties, _body = get_one_unacked(channel, src)
    assert method.exchange == ""
    assert method.routing_key == src
    assert method.redelivered is False
    (death,) = properties.headers["x-death"]
    first_time = int(death["time"].timestamp())
    assert wait_until(channel.connection, lambda: unix_now() > first_time, 3.0)
    channel.basic_reject(method.delivery_tag, requeue=False)

    message = raw_get(broker, src)
    (entry,) = entries(message)
    assert [name for name, _, _ in entry] == [
        "count", "exchange", "original-expiration", "queue", "reason", "routing-keys", "time"]
    assert as_dict(entry) == {
        "count": ("l", 2),
        "exchange": ("S", "amq.direct"),
        "original-expiration": ("S", "60000"),
        "queue": ("S", src),
        "reason": ("S", "rejected"),
        "routing-keys": ("A", [("S", "k1")]),
        "time": ("T", first_time),
    }
    assert message.header("x-first-death-exchange") == ("S", "amq.direct")
    assert message.header("x-first-death-queue") == ("S", src)
    assert message.header("x-first-death-reason") == ("S", "rejected")


def test_entry_order_across_queues(channel, topo):
    """q_a -> q_b -> q_c -> q_a -> q_b -> q_c, rejected each time: the updated/new entry goes
    first, the others follow REVERSED when there were two or more (RabbitMQ 3.10.8)."""
    names = [topo.name(s) for s in ("a", "b", "c")]
    for index, suffix in enumerate(("a", "b", "c")):
        topo.queue(channel, suffix, dl_args("", names[(index + 1) % 3]))
    a, b, c = names
    channel.basic_publish("", a, b"x", pika.BasicProperties(expiration="100000"))

    expected_orders = [
        [a],
        [b, a],
        [c, a, b],
        [a, b, c],  # a updated (count 2); others: [c, a, b] reversed, minus a
        [b, c, a],  # b updated (count 2); others: [a, b, c] reversed, minus b
    ]
    counts = [
        {a: 1},
        {b: 1, a: 1},
        {c: 1, a: 1, b: 1},
        {a: 2, b: 1, c: 1},
        {b: 2, a: 2, c: 1},
    ]
    queue = a
    for step, (order, expected_counts) in enumerate(zip(expected_orders, counts, strict=True)):
        reject_from(channel, queue)
        queue = names[(step + 1) % 3]
        method, properties, _body = get_one_unacked(channel, queue)
        deaths = properties.headers["x-death"]
        assert [d["queue"] for d in deaths] == order, f"step {step}"
        assert {d["queue"]: d["count"] for d in deaths} == expected_counts, f"step {step}"
        assert all(d["reason"] == "rejected" for d in deaths)
        for death in deaths:
            if death["queue"] == a and death["count"] == 1:
                # the very first entry keeps RabbitMQ's insertion order until it is updated
                assert list(death) == [*FIRST_ORDER, "original-expiration"]
            elif death["queue"] == a:
                assert list(death) == ["count", "exchange", "original-expiration", "queue",
                                       "reason", "routing-keys", "time"]
            else:
                assert list(death) == SORTED_ORDER
                assert death["routing-keys"] == [death["queue"]]
        assert properties.headers["x-first-death-queue"] == a
        assert properties.expiration is None
        channel.basic_reject(method.delivery_tag, requeue=True)


def get_one_unacked(channel, queue: str):
    result: list = []

    def got() -> bool:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            result.append((method, properties, body))
        return bool(result)

    assert wait_until(channel.connection, got, 3.0), f"nothing in {queue}"
    return result[0]


def test_new_reason_for_same_queue_is_a_new_entry(channel, topo):
    """Rejected from q (back into q), then expired from q into another queue: two entries for
    q, the `expired` one first and alphabetically sorted."""
    out = topo.queue(channel, "out")
    src = topo.queue(channel, "src", dl_args("", out))
    channel.basic_publish("", src, b"x")
    reject_from(channel, src)
    _method, properties, body = get_one(channel, out)
    # send it to a TTL queue that dead-letters into `out` again
    ttl = topo.queue(channel, "ttl", dl_args("", out, message_ttl=50))
    channel.basic_publish("", ttl, body, properties)
    _method, properties, _body = get_one(channel, out)
    deaths = properties.headers["x-death"]
    assert [(d["queue"], d["reason"]) for d in deaths] == [(ttl, "expired"), (src, "rejected")]
    assert list(deaths[0]) == SORTED_ORDER
    assert deaths[0]["routing-keys"] == [ttl]
    assert deaths[0]["exchange"] == ""
    # the republished message carried x-first-death-* already: they stay
    assert properties.headers["x-first-death-queue"] == src
    assert properties.headers["x-first-death-reason"] == "rejected"


def test_x_death_of_wrong_type_is_replaced(broker, channel, topo):
    """A client-written x-death that is not an array is replaced by a fresh one-entry array;
    RabbitMQ then adds NO x-first-death-* headers."""
    dlq = topo.queue(channel, "dlq")
    src = topo.queue(channel, "src", dl_args("", dlq))
    channel.basic_publish("", src, b"x", pika.BasicProperties(headers={"x-death": "garbage"}))
    reject_from(channel, src)
    message = raw_get(broker, dlq)
    assert [name for name, _, _ in message.headers] == ["x-death"]
    (entry,) = entries(message)
    assert [name for name, _, _ in entry] == FIRST_ORDER
    assert as_dict(entry)["count"] == ("l", 1)
    assert as_dict(entry)["queue"] == ("S", src)
