"""Queues: declare (passive, durable, exclusive, auto-delete, server-named), bind/unbind, purge,
delete, the counts in declare-ok, and RabbitMQ 3.10's error texts for each refusal."""

from __future__ import annotations

import re

import pytest
from client_helpers import (
    channel_error,
    consume,
    get_bodies,
    message_count,
    opened,
    reply_text,
    wait_for,
)


@pytest.fixture
def other_connection(broker):
    with opened(broker) as conn:
        yield conn


def not_found(name: str) -> tuple[int, str]:
    return 404, f"NOT_FOUND - no queue '{name}' in vhost '/'"


def locked(name: str) -> tuple[int, str]:
    """The 405 text; with our long test names RabbitMQ cuts it at 255 bytes (see reply_text)."""
    return 405, reply_text(
        f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost '/'. "
        "It could be originally declared on another connection or the exclusive property value "
        "does not match that of the original declaration."
    )


def inequivalent(arg: str, name: str, received: str, current: str) -> tuple[int, str]:
    return 406, (
        f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{name}' in vhost '/': "
        f"received {received} but current is {current}"
    )


def publish(channel, queue: str, *bodies: bytes) -> None:
    """Publish with confirms, so the queue holds the messages when this returns (RabbitMQ answers
    a passive declare ahead of casts it has not processed yet)."""
    confirming = channel.connection.channel()
    confirming.confirm_delivery()
    for body in bodies:
        confirming.basic_publish("", queue, body)
    confirming.close()


# --------------------------------------------------------------------------------------------
# declare
# --------------------------------------------------------------------------------------------


def test_passive_declare_of_missing_queue_is_404(channel, unique):
    assert channel_error(lambda: channel.queue_declare(unique, passive=True)) == not_found(unique)


def test_long_reply_text_is_cut_to_255_bytes(channel, unique):
    name = unique + "-" + "x" * (254 - len(unique))
    code, text = channel_error(lambda: channel.queue_declare(name, passive=True))
    assert code == 404
    assert len(text.encode()) == 255
    assert text == f"NOT_FOUND - no queue '{name}' in vhost '/'".encode()[:252].decode() + "..."


def test_declare_ok_reports_ready_messages_and_consumers(connection, unique):
    channel = connection.channel()
    ok = channel.queue_declare(unique, exclusive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (unique, 0, 0)
    publish(channel, unique, b"1", b"2", b"3")
    ok = channel.queue_declare(unique, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (3, 0)
    # A message delivered but not acked is not counted as ready.
    channel.basic_get(unique)
    consumer_channel = connection.channel()
    consumer_channel.basic_qos(prefetch_count=1)
    consume(consumer_channel, unique)
    consume(consumer_channel, unique)
    ok = channel.queue_declare(unique, exclusive=True).method  # a full redeclare counts too
    assert (ok.message_count, ok.consumer_count) == (0, 2)


def test_durable_queue(channel, unique):
    ok = channel.queue_declare(unique, durable=True).method
    assert ok.queue == unique
    channel.queue_declare(unique, durable=True)
    channel.queue_delete(unique)


@pytest.mark.parametrize(
    ("first", "second", "arg", "received", "current"),
    [
        ({}, {"durable": True}, "durable", "'true'", "'false'"),
        ({"durable": True}, {}, "durable", "'false'", "'true'"),
        ({}, {"auto_delete": True}, "auto_delete", "'true'", "'false'"),
        ({"auto_delete": True}, {}, "auto_delete", "'false'", "'true'"),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {"arguments": {"x-message-ttl": 2000}},
            "x-message-ttl",
            "'2000'",
            "'1000'",
        ),
        (
            {"arguments": {"x-message-ttl": 1000}},
            {},
            "x-message-ttl",
            "none",
            "the value '1000' of type 'signedint'",
        ),
        (
            {},
            {"arguments": {"x-message-ttl": 1000}},
            "x-message-ttl",
            "the value '1000' of type 'signedint'",
            "none",
        ),
        (
            {"arguments": {"x-max-length": 10}},
            {"arguments": {"x-max-length": 20}},
            "x-max-length",
            "'20'",
            "'10'",
        ),
        (
            {},
            {"arguments": {"x-max-length": 20}},
            "x-max-length",
            "the value '20' of type 'signedint'",
            "none",
        ),
        (
            {"arguments": {"x-dead-letter-exchange": "a"}},
            {"arguments": {"x-dead-letter-exchange": "b"}},
            "x-dead-letter-exchange",
            "'b'",
            "'a'",
        ),
        (
            {"arguments": {"x-expires": 10000}},
            {"arguments": {"x-expires": 20000}},
            "x-expires",
            "'20000'",
            "'10000'",
        ),
    ],
    ids=[
        "durable",
        "not-durable",
        "auto-delete",
        "not-auto-delete",
        "ttl-changed",
        "ttl-dropped",
        "ttl-added",
        "max-length-changed",
        "max-length-added",
        "dlx-changed",
        "expires-changed",
    ],
)
def test_inequivalent_redeclare_is_406(connection, unique, first, second, arg, received, current):
    channel = connection.channel()
    channel.queue_declare(unique, **first)
    try:
        assert channel_error(lambda: channel.queue_declare(unique, **second)) == (
            inequivalent(arg, unique, received, current)
        )
    finally:
        connection.channel().queue_delete(unique)


def test_durable_is_not_compared_for_exclusive_queues(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    assert channel.queue_declare(unique, exclusive=True, durable=True).method.queue == unique
    durable = f"{unique}-durable"
    channel.queue_declare(durable, exclusive=True, durable=True)
    assert channel.queue_declare(durable, exclusive=True).method.queue == durable


def test_unknown_custom_arguments_are_not_compared(channel, unique):
    channel.queue_declare(unique, exclusive=True, arguments={"x-foo": "a"})
    ok = channel.queue_declare(unique, exclusive=True, arguments={"x-foo": "b", "bar": 1})
    assert ok.method.queue == unique


def test_passive_declare_ignores_flags_and_arguments(channel, unique):
    channel.queue_declare(unique, exclusive=True, arguments={"x-message-ttl": 1000})
    ok = channel.queue_declare(unique, passive=True, durable=True, arguments={"x-max-length": 1})
    assert ok.method.queue == unique


def test_exclusive_mismatch_on_the_same_connection_is_405(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    assert channel_error(lambda: channel.queue_declare(unique)) == locked(unique)
    channel = connection.channel()
    name = f"{unique}-shared"
    channel.queue_declare(name, auto_delete=True)
    try:
        assert channel_error(lambda: channel.queue_declare(name, exclusive=True)) == locked(name)
    finally:
        connection.channel().queue_delete(name)


def test_amq_prefix_is_reserved(channel, unique):
    name = f"amq.{unique}"
    assert channel_error(lambda: channel.queue_declare(name)) == (
        403,
        f"ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'",
    )


def test_passive_declare_with_amq_prefix_is_404(channel, unique):
    name = f"amq.{unique}"
    assert channel_error(lambda: channel.queue_declare(name, passive=True)) == not_found(name)


SERVER_NAME = re.compile(r"^amq\.gen-[A-Za-z0-9_-]{22}$")


def test_server_named_queue(channel):
    first = channel.queue_declare("", exclusive=True).method
    second = channel.queue_declare("", exclusive=True).method
    assert SERVER_NAME.match(first.queue), first.queue
    assert SERVER_NAME.match(second.queue), second.queue
    assert first.queue != second.queue
    assert (first.message_count, first.consumer_count) == (0, 0)
    channel.basic_publish("", first.queue, b"to a server-named queue")
    assert get_bodies(channel, first.queue) == [b"to a server-named queue"]


# --------------------------------------------------------------------------------------------
# exclusive
# --------------------------------------------------------------------------------------------

OTHER_CONNECTION_OPERATIONS = [
    pytest.param(lambda ch, q: ch.queue_declare(q), id="declare"),
    pytest.param(lambda ch, q: ch.queue_declare(q, exclusive=True), id="declare-exclusive"),
    pytest.param(lambda ch, q: ch.queue_declare(q, passive=True), id="declare-passive"),
    pytest.param(lambda ch, q: ch.basic_consume(q, lambda *a: None), id="consume"),
    pytest.param(lambda ch, q: ch.basic_get(q), id="get"),
    pytest.param(lambda ch, q: ch.queue_delete(q), id="delete"),
    pytest.param(lambda ch, q: ch.queue_purge(q), id="purge"),
    pytest.param(lambda ch, q: ch.queue_bind(q, "amq.fanout"), id="bind"),
]


@pytest.mark.parametrize("operation", OTHER_CONNECTION_OPERATIONS)
def test_exclusive_queue_is_locked_to_other_connections(
    channel, other_connection, unique, operation
):
    channel.queue_declare(unique, exclusive=True)
    other = other_connection.channel()
    assert channel_error(lambda: operation(other, unique)) == locked(unique)
    # The owner is not disturbed.
    assert channel.queue_declare(unique, passive=True).method.queue == unique


def test_unbinding_another_connections_exclusive_queue(channel, other_connection, unique):
    """An existing binding cannot be removed (405); a missing one is 'removed' fine."""
    channel.queue_declare(unique, exclusive=True)
    channel.queue_bind(unique, "amq.direct", routing_key="k")
    other = other_connection.channel()
    other.queue_unbind(unique, "amq.direct", routing_key="never-bound")
    unbind = lambda: other.queue_unbind(unique, "amq.direct", routing_key="k")  # noqa: E731
    assert channel_error(unbind) == locked(unique)
    channel.basic_publish("amq.direct", "k", b"still bound")
    assert get_bodies(channel, unique) == [b"still bound"]


def test_exclusive_queue_is_usable_from_other_channels_of_its_connection(connection, unique):
    connection.channel().queue_declare(unique, exclusive=True)
    other = connection.channel()
    other.queue_declare(unique, exclusive=True)
    other.basic_publish("", unique, b"m")
    assert get_bodies(other, unique) == [b"m"]


def test_other_connections_may_publish_to_an_exclusive_queue(channel, other_connection, unique):
    channel.queue_declare(unique, exclusive=True)
    other = other_connection.channel()
    other.basic_publish("", unique, b"from elsewhere")
    other.basic_qos(prefetch_count=0)  # a round trip: the publish has been routed
    assert get_bodies(channel, unique) == [b"from elsewhere"]


def test_exclusive_queue_is_deleted_when_its_connection_closes(broker, connection, unique):
    with opened(broker) as owner:
        owner.channel().queue_declare(unique, exclusive=True)

    def passive_declare_code() -> int:
        return channel_error(lambda: connection.channel().queue_declare(unique, passive=True))[0]

    # 405 while the owner's close is still being processed, then 404 for good.
    assert wait_for(connection, lambda: passive_declare_code() == 404)


# --------------------------------------------------------------------------------------------
# auto-delete
# --------------------------------------------------------------------------------------------


def test_auto_delete_queue_without_consumers_stays(channel, unique):
    channel.queue_declare(unique, auto_delete=True)
    channel.basic_publish("", unique, b"m")
    assert get_bodies(channel, unique) == [b"m"]  # basic.get is not a consumer
    assert channel.queue_declare(unique, passive=True).method.queue == unique
    channel.queue_delete(unique)


def test_auto_delete_queue_goes_when_its_last_consumer_cancels(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    first, _ = consume(channel, unique)
    second, _ = consume(channel, unique)
    channel.basic_cancel(first)
    assert channel.queue_declare(unique, passive=True).method.consumer_count == 1
    channel.basic_cancel(second)
    assert channel_error(lambda: channel.queue_declare(unique, passive=True)) == not_found(unique)


def test_auto_delete_queue_goes_when_the_consuming_channel_closes(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    consumer_channel = connection.channel()
    consume(consumer_channel, unique)
    consumer_channel.close()
    assert channel_error(lambda: channel.queue_declare(unique, passive=True)) == not_found(unique)


# --------------------------------------------------------------------------------------------
# bind / unbind
# --------------------------------------------------------------------------------------------


def test_bind_routes_and_unbind_stops(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    channel.queue_bind(unique, "amq.direct", routing_key=unique)
    channel.basic_publish("amq.direct", unique, b"bound")
    channel.queue_unbind(unique, "amq.direct", routing_key=unique)
    channel.basic_publish("amq.direct", unique, b"unbound")
    assert get_bodies(channel, unique) == [b"bound"]


def test_empty_queue_and_key_mean_the_last_declared_queue_for_bind_and_unbind(channel, unique):
    """RabbitMQ expands "" to the channel's last declared queue and, with it, an empty routing key
    to that queue's name: in queue.bind and in queue.unbind alike."""
    channel.queue_declare(unique, exclusive=True)
    channel.queue_bind("", "amq.direct", routing_key="")
    channel.basic_publish("amq.direct", unique, b"bound")
    channel.queue_unbind("", "amq.direct", routing_key="")
    channel.basic_publish("amq.direct", unique, b"unbound")
    assert get_bodies(channel, unique) == [b"bound"]


def test_bind_missing_queue_is_404(channel, unique):
    assert channel_error(lambda: channel.queue_bind(unique, "amq.direct")) == not_found(unique)


def test_bind_to_missing_exchange_is_404(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    missing = f"{unique}-x"
    assert channel_error(lambda: channel.queue_bind(unique, missing)) == (
        404,
        f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
    )


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(lambda q: (q, "amq.direct"), id="missing-binding"),
        pytest.param(lambda q: (q + "-none", "amq.direct"), id="missing-queue"),
        pytest.param(lambda q: (q, q + "-none"), id="missing-exchange"),
    ],
)
def test_unbind_of_something_missing_succeeds(channel, unique, target):
    channel.queue_declare(unique, exclusive=True)
    queue, exchange = target(unique)
    ok = channel.queue_unbind(queue, exchange, routing_key="never-bound")
    assert ok.method.NAME == "Queue.UnbindOk"


def test_deleting_a_queue_removes_its_bindings(channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.fanout")
    channel.queue_delete(unique)
    channel.queue_declare(unique, exclusive=True)
    channel.basic_publish("amq.fanout", "", b"should not be here")
    channel.basic_publish("", unique, b"direct")
    assert get_bodies(channel, unique) == [b"direct"]


# --------------------------------------------------------------------------------------------
# purge / delete
# --------------------------------------------------------------------------------------------


def test_purge_returns_the_number_of_ready_messages(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    publish(channel, unique, b"1", b"2", b"3", b"4")
    unacked, _, _ = channel.basic_get(unique)
    assert channel.queue_purge(unique).method.message_count == 3
    assert channel.queue_purge(unique).method.message_count == 0
    # The unacked message was not purged: rejecting it brings it back.
    channel.basic_reject(unacked.delivery_tag, requeue=True)
    assert get_bodies(channel, unique) == [b"1"]


def test_purge_missing_queue_is_404(channel, unique):
    assert channel_error(lambda: channel.queue_purge(unique)) == not_found(unique)


def test_delete_returns_the_message_count(channel, unique):
    channel.queue_declare(unique)
    publish(channel, unique, b"1", b"2")
    assert channel.queue_delete(unique).method.message_count == 2
    assert channel_error(lambda: channel.queue_declare(unique, passive=True)) == not_found(unique)


def test_delete_of_missing_queue_succeeds_with_zero(channel, unique):
    assert channel.queue_delete(unique).method.message_count == 0


def test_delete_if_unused_refuses_a_queue_with_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    consume(connection.channel(), unique)
    assert channel_error(lambda: channel.queue_delete(unique, if_unused=True)) == (
        406,
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' in use",
    )
    assert connection.channel().queue_delete(unique).method.message_count == 0


def test_delete_if_empty_refuses_a_queue_with_messages(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    publish(channel, unique, b"m")
    assert channel_error(lambda: channel.queue_delete(unique, if_empty=True)) == (
        406,
        f"PRECONDITION_FAILED - queue '{unique}' in vhost '/' not empty",
    )
    assert connection.channel().queue_delete(unique).method.message_count == 1


def test_delete_if_unused_and_if_empty_succeed_on_an_idle_empty_queue(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    channel.queue_delete(unique, if_unused=True, if_empty=True)
    assert channel_error(lambda: channel.queue_declare(unique, passive=True)) == not_found(unique)


def test_queue_delete_cancels_its_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    cancelled = []
    consumer_channel = connection.channel()
    consumer_channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag, _ = consume(consumer_channel, unique)
    channel.queue_delete(unique)
    assert wait_for(connection, lambda: cancelled)
    assert cancelled[0].consumer_tag == tag
    assert consumer_channel.is_open


def test_message_count_ignores_unacked(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    publish(channel, unique, b"1", b"2")
    channel.basic_get(unique)
    assert message_count(channel, unique) == 1


@pytest.mark.parametrize(
    "suffix", ["очередь-é", "with spaces", "x" * 180], ids=["unicode", "spaces", "long"]
)
def test_unusual_queue_names_work(channel, unique, suffix):
    name = (unique + suffix)[:255]
    assert channel.queue_declare(name, exclusive=True).method.queue == name
    channel.basic_publish("", name, b"m")
    assert get_bodies(channel, name) == [b"m"]


def test_queue_name_is_case_sensitive(channel, unique):
    channel.queue_declare(unique.lower() + "-q", exclusive=True)
    upper = unique.upper() + "-Q"
    assert channel_error(lambda: channel.queue_declare(upper, passive=True)) == not_found(upper)
