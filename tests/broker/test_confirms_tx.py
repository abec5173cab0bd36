"""Publisher confirms (confirm.select, ack tags in order, multiple acks, nacks, returns before
acks, errors) and transactions (tx.select/commit/rollback for publishes and acks)."""

from __future__ import annotations

import pika
import pika.exceptions
import pytest
from client_helpers import channel_error, get_bodies, opened, settle, wait_for
from pamqp import commands
from raw_amqp import content_header_payload, raw_client, safe_name


def read_acks(raw, count: int) -> list[commands.Basic.Ack]:
    """Read frames until the acks received cover delivery tags 1..count."""
    acks = []
    while not acks or acks[-1].delivery_tag < count:
        method = raw.read_raw_frame().method()
        assert isinstance(method, commands.Basic.Ack), method
        acks.append(method)
    return acks


def acked_tags(acks: list[commands.Basic.Ack]) -> list[int]:
    """Expand multiple acks into the list of tags they confirm, checking they only go up."""
    tags: list[int] = []
    for ack in acks:
        last = tags[-1] if tags else 0
        assert ack.delivery_tag > last, f"ack {ack.delivery_tag} after {last}"
        if ack.multiple:
            tags.extend(range(last + 1, ack.delivery_tag + 1))
        else:
            tags.append(ack.delivery_tag)
    return tags


def raw_publish(raw, exchange: str, routing_key: str, body: bytes, mandatory=False) -> None:
    raw.send_method(
        1,
        commands.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
    )
    raw.send_raw_frame(2, 1, content_header_payload(len(body), 0, b""))
    if body:
        raw.send_raw_frame(3, 1, body)


# --------------------------------------------------------------------------------------------
# publisher confirms
# --------------------------------------------------------------------------------------------


def test_confirm_select_ok(broker):
    with raw_client(broker) as raw:
        replies = []
        for _ in range(2):  # selecting again is harmless
            raw.send_method(1, commands.Confirm.Select())
            replies.append(raw.read_raw_frame())
    assert [(f.channel, type(f.method())) for f in replies] == [(1, commands.Confirm.SelectOk)] * 2


def test_every_publish_is_acked_in_order(broker, unique):
    unique = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        for i in range(5):
            raw_publish(raw, "", unique, str(i).encode())
            # One at a time: each publish gets an ack of its own tag.
            ack = raw.expect(commands.Basic.Ack)
            assert (ack.delivery_tag, ack.multiple) == (i + 1, False)


def test_burst_of_publishes_is_acked_completely(broker, unique):
    """Acks may be coalesced with multiple=True; together they confirm 1..N exactly once."""
    unique = safe_name(unique)
    count = 500
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        for i in range(count):
            raw_publish(raw, "", unique, str(i).encode())
        acks = read_acks(raw, count)
        assert acked_tags(acks) == list(range(1, count + 1))


def test_unroutable_messages_are_acked_too(broker, unique):
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        raw_publish(raw, "amq.direct", safe_name(unique), b"nowhere")
        ack = raw.expect(commands.Basic.Ack)
        assert (ack.delivery_tag, ack.multiple) == (1, False)


def test_mandatory_return_comes_before_the_ack(broker, unique):
    key = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        raw_publish(raw, "amq.direct", key, b"returned", mandatory=True)
        returned = raw.expect(commands.Basic.Return)
        assert (returned.reply_code, returned.reply_text) == (312, "NO_ROUTE")
        assert (returned.exchange, returned.routing_key) == ("amq.direct", key)
        header, body = raw.read_raw_frame(), raw.read_raw_frame()
        assert (header.kind, body.kind, body.payload) == (2, 3, b"returned")
        ack = raw.expect(commands.Basic.Ack)
        assert ack.delivery_tag == 1


def test_persistent_message_to_durable_queue_is_acked(channel, unique):
    channel.queue_declare(unique, durable=True)
    try:
        channel.confirm_delivery()
        channel.basic_publish("", unique, b"durable", pika.BasicProperties(delivery_mode=2))
        assert get_bodies(channel, unique) == [b"durable"]
    finally:
        channel.queue_delete(unique)


def test_publish_rejected_by_a_full_queue_is_nacked(broker, unique):
    unique = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(
            1,
            commands.Queue.Declare(
                queue=unique,
                exclusive=True,
                arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
            ),
        )
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Confirm.Select())
        raw.expect(commands.Confirm.SelectOk)
        raw_publish(raw, "", unique, b"fits")
        assert raw.expect(commands.Basic.Ack).delivery_tag == 1
        raw_publish(raw, "", unique, b"rejected")
        nack = raw.expect(commands.Basic.Nack)
        # RabbitMQ 3.10 sends these nacks with multiple=True, even for a single message.
        assert (nack.delivery_tag, nack.multiple) == (2, True)
        raw_publish(raw, "", "", b"unroutable")  # an ack in between
        ack = raw.expect(commands.Basic.Ack)
        assert (ack.delivery_tag, ack.multiple) == (3, False)
        raw_publish(raw, "", unique, b"rejected again")
        nack = raw.expect(commands.Basic.Nack)
        assert (nack.delivery_tag, nack.multiple) == (4, True)


def test_pika_confirm_delivery_raises_nack_error(channel, unique):
    channel.queue_declare(
        unique, exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", unique, b"no room")


def test_publish_to_missing_exchange_in_confirm_mode_closes_the_channel(channel, unique):
    channel.confirm_delivery()
    assert channel_error(lambda: channel.basic_publish(unique, "k", b"x")) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


def test_confirm_select_on_a_transactional_channel_is_406(channel):
    channel.tx_select()
    assert channel_error(channel.confirm_delivery) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    )


def test_tx_select_on_a_confirm_channel_is_406(channel):
    channel.confirm_delivery()
    assert channel_error(channel.tx_select) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )


# --------------------------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------------------------


@pytest.fixture
def queue(broker, channel, unique):
    channel.queue_declare(unique)
    yield unique
    with opened(broker) as cleanup:
        cleanup.channel().queue_delete(unique)


def test_published_messages_are_invisible_until_commit(connection, channel, queue):
    observer = connection.channel()
    channel.tx_select()
    for body in (b"1", b"2", b"3"):
        channel.basic_publish("", queue, body)
    settle(connection, 0.1)
    assert observer.queue_declare(queue, passive=True).method.message_count == 0
    assert get_bodies(observer, queue) == []
    channel.tx_commit()
    assert get_bodies(observer, queue) == [b"1", b"2", b"3"]


def test_rollback_discards_published_messages(connection, channel, queue):
    channel.tx_select()
    channel.basic_publish("", queue, b"discarded")
    channel.tx_rollback()
    channel.basic_publish("", queue, b"kept")
    channel.tx_commit()
    assert get_bodies(connection.channel(), queue) == [b"kept"]


def test_channel_stays_transactional_after_commit(connection, channel, queue):
    channel.tx_select()
    channel.basic_publish("", queue, b"1")
    channel.tx_commit()
    channel.basic_publish("", queue, b"2")
    channel.tx_rollback()
    channel.tx_commit()  # an empty commit is fine
    assert get_bodies(connection.channel(), queue) == [b"1"]


def test_acks_in_a_transaction_apply_at_commit(connection, channel, queue):
    for body in (b"1", b"2"):
        channel.basic_publish("", queue, body)
    channel.tx_select()
    method, _, _ = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    channel.tx_rollback()
    # The ack was discarded: the message is still unacked, not back in the queue.
    assert channel.queue_declare(queue, passive=True).method.message_count == 1
    channel.basic_ack(method.delivery_tag)
    channel.tx_commit()
    channel.close()  # nothing unacked remains to be requeued
    assert get_bodies(connection.channel(), queue) == [b"2"]


def test_reject_in_a_rolled_back_transaction_is_discarded(connection, channel, queue):
    channel.basic_publish("", queue, b"1")
    channel.tx_select()
    method, _, _ = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=True)
    channel.tx_rollback()
    assert channel.queue_declare(queue, passive=True).method.message_count == 0
    channel.basic_reject(method.delivery_tag, requeue=True)
    channel.tx_commit()
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"1", True)


def test_unknown_delivery_tag_in_a_transaction_fails_at_once(channel):
    channel.tx_select()
    channel.basic_ack(99)
    assert channel_error(channel.tx_commit) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 99",
    )


def test_mandatory_return_in_a_transaction_comes_at_commit(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append(body))
    channel.tx_select()
    channel.basic_publish("amq.direct", unique, b"unroutable", mandatory=True)
    settle(connection, 0.1)
    assert returned == []
    channel.tx_commit()
    assert wait_for(connection, lambda: returned)
    assert returned == [b"unroutable"]


def test_publish_to_missing_exchange_in_a_transaction_fails_at_once(channel, unique):
    channel.tx_select()
    channel.basic_publish(unique, "k", b"x")
    assert channel_error(channel.tx_commit) == (
        404,
        f"NOT_FOUND - no exchange '{unique}' in vhost '/'",
    )


@pytest.mark.parametrize("method", ["tx_commit", "tx_rollback"])
def test_commit_or_rollback_without_select_is_406(channel, method):
    assert channel_error(getattr(channel, method)) == (
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    )


def test_confirm_delivery_tags_are_per_channel(broker):
    with raw_client(broker) as raw:
        raw.send_method(2, commands.Channel.Open())
        raw.expect(commands.Channel.OpenOk)
        for channel in (1, 2):
            raw.send_method(channel, commands.Confirm.Select())
            raw.expect(commands.Confirm.SelectOk)
        acks = []
        for channel in (1, 2, 1):
            raw.publish_raw(channel, "amq.direct", "nobody", content_header_payload(0, 0, b""), [])
            received = raw.read_raw_frame()
            acks.append((received.channel, received.method().delivery_tag))
    assert acks == [(1, 1), (2, 1), (1, 2)]
