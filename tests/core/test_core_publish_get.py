"""The core's one publish (VirtualHost.publish) and one get (Queue.get, Queue.take +
Queue.hand_out), in-process: what they return and count, direct reply-to, the delayed
exchange's hold — what the AMQP channel, the API and the aliveness test all rely on."""

from __future__ import annotations

import asyncio

from core_kit import declare, message, new_vhost, publish

from broker.auth import Permission, TopicPermission, User
from broker.errors import BrokerError


def counts(vhost, *names: str) -> dict[str, int]:
    return {name: getattr(vhost.counters, name) for name in names}


PUBLISH_COUNTERS = ("messages_received", "messages_received_confirm", "messages_routed",
                    "messages_unroutable_dropped", "messages_unroutable_returned")


def test_publish_counts_routed_copies_and_unroutable_ones():
    vhost = new_vhost()
    for name in ("a", "b"):
        vhost.bind(vhost.exchanges["amq.fanout"], declare(vhost, name), "", {})
    fanout = vhost.exchanges["amq.fanout"]
    assert vhost.publish(fanout, message("m"), confirm=True) == (2, 0, False)
    assert vhost.publish(vhost.default_exchange, message("x", "nobody")) == (0, 0, False)
    assert vhost.publish(vhost.default_exchange, message("y", "nobody"),
                         mandatory=True) == (0, 0, False)
    assert counts(vhost, *PUBLISH_COUNTERS) == {
        "messages_received": 3, "messages_received_confirm": 1, "messages_routed": 2,
        "messages_unroutable_dropped": 1, "messages_unroutable_returned": 1}
    assert (fanout.messages_in, fanout.messages_out) == (1, 2)
    assert (vhost.default_exchange.messages_in, vhost.default_exchange.messages_out) == (2, 0)


def test_direct_reply_goes_to_the_requester_the_node_knows():
    """A reply is routed to no queue, delivered or not: RabbitMQ 3.10.8 counts 50 replies to a
    live requester in rabbitmq_global_messages_unroutable_dropped_total, not in _routed."""
    vhost = new_vhost()
    replies = []
    vhost.deliver_reply = lambda key, reply: key == "abc" and not replies.append(reply)
    assert publish(vhost, "amq.rabbitmq.reply-to.abc", "answer") == (0, 0, False)
    assert publish(vhost, "amq.rabbitmq.reply-to.gone", "lost") == (0, 0, False)
    assert [reply.body for reply in replies] == [b"answer"]
    assert counts(vhost, "messages_routed", "messages_unroutable_dropped") == {
        "messages_routed": 0, "messages_unroutable_dropped": 2}


async def test_delayed_exchange_holds_then_routes():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    exchange = vhost.declare_exchange(
        "delayed", "x-delayed-message", passive=False, durable=False, auto_delete=False,
        internal=False, arguments={"x-delayed-type": "direct"})
    vhost.bind(exchange, queue, "k", {})
    assert vhost.publish(exchange, message("later", "k", "delayed", headers={"x-delay": 30}),
                         mandatory=True) == (0, 0, False)  # held: returned, as the plugin does
    assert queue.message_count == 0 and len(exchange.holding) == 1
    await asyncio.sleep(0.1)
    entry = queue.get(no_ack=True)
    assert entry.message.body == b"later"
    assert entry.message.typed_headers["x-delay"] == ("I", -30)
    assert vhost.publish(exchange, message("now", "k", "delayed")) == (1, 0, False)


GET_COUNTERS = ("messages_delivered", "delivered_get_auto_ack", "delivered_get_manual_ack",
                "messages_redelivered", "get_empty")


def test_get_counts_and_acks():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    publish(vhost, "q", "a")
    publish(vhost, "q", "b")
    first = queue.get(no_ack=False)
    queue.requeue(first)
    again = queue.get(no_ack=True)  # the requeued one, redelivered, gone at once
    assert (again.message.body, again.redelivered) == (b"a", True)
    assert queue.get(no_ack=True).message.body == b"b"
    assert queue.get(no_ack=True) is None
    assert counts(vhost, *GET_COUNTERS) == {
        "messages_delivered": 3, "delivered_get_auto_ack": 2, "delivered_get_manual_ack": 1,
        "messages_redelivered": 1, "get_empty": 1}
    # a no-ack get is not an ack (RabbitMQ's queue stats: get_no_ack, ack 0)
    assert (queue.messages_delivered, queue.messages_redelivered, queue.messages_acked) == (
        3, 1, 0)


def test_take_is_undone_by_put_back_and_completed_by_hand_out():
    vhost = new_vhost()
    queue = declare(vhost, "q")
    publish(vhost, "q", "a")
    entry = queue.take()
    assert queue.message_count == 0 and vhost.counters.messages_delivered == 0
    queue.put_back([entry])
    assert queue.message_count == 1
    entry = queue.take()
    queue.hand_out(entry, no_ack=False)
    assert (vhost.counters.delivered_get_manual_ack, queue.messages_acked) == (1, 0)
    queue.ack(entry)
    assert queue.messages_acked == 1


def refusal_of(call) -> tuple[str, str] | None:
    try:
        call()
    except BrokerError as failure:
        return failure.kind, failure.text
    return None


def test_exchange_for_publish_checks_in_rabbitmq_order():
    """Write permission first (even for an exchange that does not exist), then existence,
    then internal, then the topic permission of the routing key."""
    vhost = new_vhost()
    user = User("u", "")
    vhost.access.add_user(user)
    vhost.access.set_permissions("u", "/", Permission("", "^(amq\\.topic|amq\\.rabbitmq.*)$", ""))
    check = vhost.exchange_for_publish
    assert refusal_of(lambda: check(user, "amq.direct", "k")) == (
        "access_refused", "access to exchange 'amq.direct' in vhost '/' refused for user 'u'")
    assert refusal_of(lambda: check(user, "", "k"))[1].startswith(
        "access to exchange 'amq.default'")
    assert refusal_of(lambda: check(user, "amq.rabbitmq.nothing", "k")) == (
        "not_found", "no exchange 'amq.rabbitmq.nothing' in vhost '/'")
    assert refusal_of(lambda: check(user, "amq.rabbitmq.trace", "k")) == (
        "access_refused", "cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'")
    assert check(user, "amq.topic", "any") is vhost.exchanges["amq.topic"]
    vhost.access.set_topic_permission(TopicPermission("u", "/", "amq.topic", "^a$", ".*"))
    assert refusal_of(lambda: check(user, "amq.topic", "b")) == (
        "access_refused",
        "access to topic 'b' in exchange 'amq.topic' in vhost '/' refused for user 'u'")
    assert check(user, "amq.topic", "a") is vhost.exchanges["amq.topic"]
    # a caller that checked the write permission before (the AMQP channel) skips it
    assert check(user, "amq.direct", "k", permitted=True) is vhost.exchanges["amq.direct"]
