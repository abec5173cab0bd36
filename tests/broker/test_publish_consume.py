"""Publishing and consuming: mandatory returns, every basic property and field-table type
round-tripped (through pika and byte for byte on a raw socket), body sizes around the frame size,
consumers (no-ack, exclusive, tags, cancel, server-sent cancel) and basic.get."""

from __future__ import annotations

import datetime
import decimal
import re
import struct

import pika
import pika.exceptions
import pytest
from client_helpers import (
    channel_error,
    channel_error_after,
    consume,
    get_bodies,
    opened,
    settle,
    wait_for,
)
from pamqp import commands
from raw_amqp import (
    HEADERS_FLAG,
    content_header_payload,
    field,
    field_table,
    raw_client,
    safe_name,
    short_str,
)


@pytest.fixture
def queue(channel, unique):
    channel.queue_declare(unique, exclusive=True)
    return unique


# --------------------------------------------------------------------------------------------
# mandatory and unroutable
# --------------------------------------------------------------------------------------------


def test_mandatory_unroutable_message_is_returned(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(
        lambda ch, method, props, body: returned.append((method, props, body))
    )
    properties = pika.BasicProperties(message_id="m1", headers={"h": "v"})
    channel.basic_publish("amq.direct", unique, b"nobody", properties, mandatory=True)
    assert wait_for(connection, lambda: returned)
    method, props, body = returned[0]
    assert (method.reply_code, method.reply_text) == (312, "NO_ROUTE")
    assert (method.exchange, method.routing_key) == ("amq.direct", unique)
    assert (props.message_id, props.headers, body) == ("m1", {"h": "v"}, b"nobody")
    assert channel.is_open


def test_mandatory_unroutable_to_default_exchange_is_returned(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda ch, method, props, body: returned.append(method))
    channel.basic_publish("", unique, b"no such queue", mandatory=True)
    assert wait_for(connection, lambda: returned)
    assert (returned[0].reply_code, returned[0].exchange, returned[0].routing_key) == (
        312,
        "",
        unique,
    )


def test_mandatory_unroutable_with_confirms_raises_unroutable_error(channel, unique):
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        channel.basic_publish("amq.direct", unique, b"nobody", mandatory=True)
    (message,) = raised.value.messages
    assert (message.method.reply_code, message.method.reply_text) == (312, "NO_ROUTE")
    assert message.body == b"nobody"
    assert channel.is_open


def test_mandatory_routed_message_is_not_returned(connection, channel, queue):
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"routed", mandatory=True)
    settle(connection, 0.1)
    assert returned == []
    assert get_bodies(channel, queue) == [b"routed"]


def test_non_mandatory_unroutable_is_dropped_silently(connection, channel, unique):
    returned = []
    channel.add_on_return_callback(lambda *args: returned.append(args))
    channel.confirm_delivery()
    channel.basic_publish("amq.direct", unique, b"dropped")  # acked, not returned
    settle(connection, 0.1)
    assert returned == []


# --------------------------------------------------------------------------------------------
# properties and headers through pika
# --------------------------------------------------------------------------------------------

ALL_PROPERTIES = {
    "content_type": "application/json",
    "content_encoding": "gzip",
    "headers": {"a": 1, "b": "two"},
    "delivery_mode": 2,
    "priority": 7,
    "correlation_id": "corr-1",
    "reply_to": "reply-queue",
    "expiration": "60000",
    "message_id": "msg-1",
    "timestamp": 1700000000,
    "type": "order.created",
    "user_id": "guest",
    "app_id": "warren-tests",
    "cluster_id": "cluster-a",
}


def test_every_basic_property_round_trips_through_get(channel, queue):
    channel.basic_publish("", queue, b"body", pika.BasicProperties(**ALL_PROPERTIES))
    method, properties, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"body"
    assert {name: getattr(properties, name) for name in ALL_PROPERTIES} == ALL_PROPERTIES


def test_every_basic_property_round_trips_through_consume(connection, channel, queue):
    channel.basic_publish("", queue, b"body", pika.BasicProperties(**ALL_PROPERTIES))
    _, collector = consume(channel, queue, auto_ack=True)
    (delivery,) = collector.wait(1)
    assert {name: getattr(delivery.properties, name) for name in ALL_PROPERTIES} == ALL_PROPERTIES


def test_no_properties_arrive_as_no_properties(channel, queue):
    channel.basic_publish("", queue, b"bare")
    _, properties, _ = channel.basic_get(queue, auto_ack=True)
    assert all(getattr(properties, name) is None for name in ALL_PROPERTIES)


def test_user_id_must_be_the_authenticated_user(channel, unique):
    publish = lambda: channel.basic_publish(  # noqa: E731
        "", unique, b"x", pika.BasicProperties(user_id="somebody-else")
    )
    assert channel_error_after(channel, publish) == (
        406,
        "PRECONDITION_FAILED - user_id property set to 'somebody-else' but authenticated user "
        "was 'guest'",
    )


PIKA_HEADERS = {
    "str": "text",
    "unicode": "héllo wörld ✓",
    "empty-str": "",
    "bytes": b"\x00\x01\xfe\xff",
    "small": 7,
    "zero": 0,
    "negative": -42,
    "int32-max": 2**31 - 1,
    "int32-min": -(2**31),
    "large": 2**40,
    "large-negative": -(2**40),
    "int64-max": 2**63 - 1,
    "true": True,
    "false": False,
    "decimal": decimal.Decimal("3.14"),
    "decimal-negative": decimal.Decimal("-0.005"),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "none": None,
    "nested": {"a": 1, "b": {"c": ["x", 2, None]}},
    "empty-table": {},
    "list": [1, "two", b"three", None, True, {"k": "v"}, [1, [2]]],
    "empty-list": [],
}


def test_header_values_of_every_pika_type_round_trip(channel, queue):
    """pika cannot encode floats in tables (UnsupportedAMQPFieldException); the raw-bytes test
    below covers 'f' and 'd'."""
    channel.basic_publish("", queue, b"h", pika.BasicProperties(headers=PIKA_HEADERS))
    _, properties, _ = channel.basic_get(queue, auto_ack=True)
    assert properties.headers == PIKA_HEADERS
    # Same Python types as sent, not merely equal values.
    for key, value in PIKA_HEADERS.items():
        assert type(properties.headers[key]) is type(value) or isinstance(
            properties.headers[key], type(value)
        ), key


# --------------------------------------------------------------------------------------------
# raw bytes: the content header goes out exactly as it came in
# --------------------------------------------------------------------------------------------

ARRAY_ITEMS = (
    b"S" + struct.pack(">I", 1) + b"a"
    + b"I" + struct.pack(">i", 1)
    + b"V"
    + b"F" + struct.pack(">I", 0)
    + b"t\x00"
)  # fmt: skip
ARRAY = struct.pack(">I", len(ARRAY_ITEMS)) + ARRAY_ITEMS

EVERY_FIELD_TYPE = field_table(
    field("b", "b", struct.pack(">b", -5)),
    field("B", "B", struct.pack(">B", 250)),
    field("s", "s", struct.pack(">h", -300)),
    field("u", "u", struct.pack(">H", 65000)),
    field("I", "I", struct.pack(">i", -70000)),
    field("i", "i", struct.pack(">I", 4_000_000_000)),
    field("l", "l", struct.pack(">q", -(2**40))),
    field("f", "f", struct.pack(">f", 1.5)),
    field("d", "d", struct.pack(">d", -2.25)),
    field("D", "D", struct.pack(">BI", 2, 314)),
    field("T", "T", struct.pack(">Q", 1_700_000_000)),
    field("V", "V", b""),
    field("x", "x", struct.pack(">I", 3) + b"\x00\x01\xff"),
    field("t", "t", b"\x01"),
    field("S", "S", struct.pack(">I", 6) + "héllo".encode()),
    field("S-binary", "S", struct.pack(">I", 2) + b"\xff\xfe"),
    field("A", "A", ARRAY),
    field(
        "F",
        "F",
        field_table(
            field("inner", "S", struct.pack(">I", 1) + b"v"),
            field("deep", "F", field_table(field("n", "b", b"\x01"))),
        ),
    ),
    # Keys out of order and a repeated type, as some clients send them.
    field("a-last-key", "S", struct.pack(">I", 0)),
)


def all_properties_bytes(table: bytes) -> tuple[int, bytes]:
    """Every basic property set, encoded by hand: (property flags, property bytes)."""
    flags = 0xFFFC  # bits 15..2: content_type .. cluster_id
    data = (
        short_str("text/plain")
        + short_str("utf-8")
        + table
        + bytes([2])  # delivery_mode
        + bytes([5])  # priority
        + short_str("corr")
        + short_str("reply")
        + short_str("60000")
        + short_str("id-1")
        + struct.pack(">Q", 1_700_000_000)
        + short_str("kind")
        + short_str("guest")
        + short_str("app")
        + short_str("cluster")
    )
    return flags, data


def test_every_field_type_reaches_the_consumer_byte_for_byte(broker, unique):
    unique = safe_name(unique)
    body = b"payload"
    flags, properties = all_properties_bytes(EVERY_FIELD_TYPE)
    header = content_header_payload(len(body), flags, properties)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.publish_raw(1, "", unique, header, [body])
        raw.send_method(1, commands.Basic.Consume(queue=unique, no_ack=True))
        raw.expect(commands.Basic.ConsumeOk)
        deliver, received_header, bodies = raw.read_message()
        assert isinstance(deliver, commands.Basic.Deliver)
        assert received_header.payload == header
        assert b"".join(b.payload for b in bodies) == body


def test_headers_only_message_comes_back_byte_for_byte_from_get(broker, unique):
    unique = safe_name(unique)
    header = content_header_payload(0, HEADERS_FLAG, EVERY_FIELD_TYPE)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.publish_raw(1, "", unique, header, [])
        raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))
        get_ok, received_header, bodies = raw.read_message()
        assert isinstance(get_ok, commands.Basic.GetOk)
        assert received_header.payload == header
        assert bodies == []


def test_headers_exchange_routing_keeps_the_header_bytes(broker, unique):
    """The headers exchange has to read the table; what it forwards is still the original."""
    unique = safe_name(unique)
    header = content_header_payload(1, HEADERS_FLAG, EVERY_FIELD_TYPE)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(
            1,
            commands.Queue.Bind(
                queue=unique, exchange="amq.headers", arguments={"x-match": "all", "b": -5}
            ),
        )
        raw.expect(commands.Queue.BindOk)
        raw.publish_raw(1, "amq.headers", "", header, [b"!"])
        raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))
        _, received_header, _ = raw.read_message()
        assert received_header.payload == header


# --------------------------------------------------------------------------------------------
# body sizes
# --------------------------------------------------------------------------------------------


def body_of(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize(
    "size",
    [0, 1, 131072 - 8, 131072 - 7, 3 * 131072 + 5],
    ids=["empty", "one", "frame_max-8", "frame_max-7", "several-frames"],
)
def test_body_sizes_round_trip_with_pika(channel, queue, size):
    body = body_of(size)
    channel.basic_publish("", queue, body)
    _, _, received = channel.basic_get(queue, auto_ack=True)
    assert received == body


@pytest.mark.parametrize(
    ("size", "sent_chunks", "received_chunks"),
    [
        (0, [], []),
        (1, [1], [1]),
        (131064, [131064], [131064]),
        (131065, [131064, 1], [131064, 1]),
        (10, [3, 3, 4], [10]),
        (131072, [131063, 9], [131064, 8]),
        (3 * 131064 + 5, [131064, 131064, 131064, 5], [131064, 131064, 131064, 5]),
    ],
    ids=["empty", "one", "one-full-frame", "full-plus-one", "small-pieces", "rechunked", "four"],
)
def test_body_frames_are_cut_at_frame_max_minus_8(
    broker, unique, size, sent_chunks, received_chunks
):
    """Frame max 131072 (the default both sides agree on): a body frame carries at most 131064
    bytes, the broker re-cuts bodies to full frames, and an empty body has no body frame."""
    unique = safe_name(unique)
    body = body_of(size)
    pieces, offset = [], 0
    for chunk in sent_chunks:
        pieces.append(body[offset : offset + chunk])
        offset += chunk
    with raw_client(broker, frame_max=131072) as raw:
        assert raw.frame_max == 131072
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.publish_raw(1, "", unique, content_header_payload(size, 0, b""), pieces)
        raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))
        _, _, bodies = raw.read_message()
    assert [len(b.payload) for b in bodies] == received_chunks
    assert b"".join(b.payload for b in bodies) == body


def test_64_mib_body_round_trips(broker, unique):
    body = bytes(range(256)) * (64 * 1024 * 1024 // 256)
    with opened(broker, socket_timeout=60, blocked_connection_timeout=120) as connection:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        channel.basic_publish("", unique, body)
        _, collector = consume(channel, unique, auto_ack=True)
        (delivery,) = collector.wait(1, timeout=120)
        assert len(delivery.body) == len(body)
        assert delivery.body == body


# --------------------------------------------------------------------------------------------
# consumers
# --------------------------------------------------------------------------------------------


def test_consumer_receives_in_order_with_delivery_fields(connection, channel, queue):
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    tag, collector = consume(channel, queue, consumer_tag="my-consumer")
    assert tag == "my-consumer"
    deliveries = collector.wait(5)
    assert [d.body for d in deliveries] == [b"0", b"1", b"2", b"3", b"4"]
    for number, delivery in enumerate(deliveries, start=1):
        method = delivery.method
        assert method.delivery_tag == number
        assert method.consumer_tag == "my-consumer"
        assert method.redelivered is False
        assert (method.exchange, method.routing_key) == ("", queue)


def test_delivery_tags_are_per_channel(connection, unique):
    first, second = connection.channel(), connection.channel()
    first.queue_declare(unique, exclusive=True)
    for i in range(4):
        first.basic_publish("", unique, str(i).encode())
    tags = [ch.basic_get(unique)[0].delivery_tag for ch in (first, second, first, second)]
    assert tags == [1, 1, 2, 2]


def test_no_ack_consumer_needs_no_acks(connection, channel, queue):
    for i in range(3):
        channel.basic_publish("", queue, str(i).encode())
    consumer_channel = connection.channel()
    _, collector = consume(consumer_channel, queue, auto_ack=True)
    collector.wait(3)
    consumer_channel.close()  # nothing was unacked, so nothing comes back
    assert channel.queue_declare(queue, passive=True).method.message_count == 0


def test_consumer_gets_messages_published_later(connection, channel, queue):
    _, collector = consume(channel, queue, auto_ack=True)
    publisher = connection.channel()
    for i in range(3):
        publisher.basic_publish("", queue, str(i).encode())
    assert [d.body for d in collector.wait(3)] == [b"0", b"1", b"2"]


def test_server_generated_consumer_tags(broker, unique):
    unique = safe_name(unique)
    pattern = re.compile(r"^amq\.ctag-[A-Za-z0-9_-]{22}$")
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        tags = []
        for _ in range(2):
            raw.send_method(1, commands.Basic.Consume(queue=unique))
            tags.append(raw.expect(commands.Basic.ConsumeOk).consumer_tag)
    assert all(pattern.match(tag) for tag in tags), tags
    assert tags[0] != tags[1]


def test_duplicate_consumer_tag_on_a_channel_closes_the_connection(broker, unique):
    unique = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Basic.Consume(queue=unique, consumer_tag="same"))
        raw.expect(commands.Basic.ConsumeOk)
        raw.send_method(1, commands.Basic.Consume(queue=unique, consumer_tag="same"))
        close = raw.read_raw_frame().method()
        assert isinstance(close, commands.Connection.Close)
        assert (close.reply_code, close.reply_text) == (
            530,
            "NOT_ALLOWED - attempt to reuse consumer tag 'same'",
        )
        assert (close.class_id, close.method_id) == (60, 20)


def test_same_consumer_tag_on_two_channels_is_allowed(connection, unique):
    first, second = connection.channel(), connection.channel()
    first.queue_declare(unique, exclusive=True)
    assert consume(first, unique, consumer_tag="same")[0] == "same"
    assert consume(second, unique, consumer_tag="same")[0] == "same"


def test_exclusive_consumer_refuses_other_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    consume(channel, unique, exclusive=True)
    assert channel_error(lambda: consume(connection.channel(), unique)) == (
        403,
        f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use",
    )


def test_exclusive_consume_refused_when_queue_has_consumers(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    consume(channel, unique)
    assert channel_error(lambda: consume(connection.channel(), unique, exclusive=True)) == (
        403,
        f"ACCESS_REFUSED - queue '{unique}' in vhost '/' in exclusive use",
    )


def test_exclusive_consumer_gone_frees_the_queue(connection, unique):
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    tag, _ = consume(channel, unique, exclusive=True)
    channel.basic_cancel(tag)
    tag, _ = consume(connection.channel(), unique, exclusive=True)
    assert channel.queue_declare(unique, passive=True).method.consumer_count == 1


def test_consume_from_missing_queue_is_404(channel, unique):
    assert channel_error(lambda: consume(channel, unique)) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


def test_cancel_stops_deliveries(connection, channel, queue):
    tag, collector = consume(channel, queue, auto_ack=True)
    channel.basic_publish("", queue, b"before")
    collector.wait(1)
    channel.basic_cancel(tag)
    channel.basic_publish("", queue, b"after")
    settle(connection, 0.1)
    assert collector.bodies == [b"before"]
    assert get_bodies(channel, queue) == [b"after"]


def test_cancel_of_unknown_tag_is_answered_with_cancel_ok(broker):
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Basic.Cancel(consumer_tag="never-existed"))
        cancel_ok = raw.expect(commands.Basic.CancelOk)
        assert cancel_ok.consumer_tag == "never-existed"


def test_deleting_the_queue_sends_basic_cancel_to_its_consumer(connection, channel, queue):
    cancelled = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method))
    tag, _ = consume(channel, queue)
    connection.channel().queue_delete(queue)
    assert wait_for(connection, lambda: cancelled)
    assert cancelled[0].consumer_tag == tag
    assert channel.is_open
    assert channel.consumer_tags == []


def test_basic_cancel_on_queue_delete_on_the_wire(broker, unique):
    """Sent only to clients whose capabilities include consumer_cancel_notify (ours do)."""
    unique = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Basic.Consume(queue=unique, consumer_tag="c1"))
        raw.expect(commands.Basic.ConsumeOk)
        raw.send_method(2, commands.Channel.Open())
        raw.expect(commands.Channel.OpenOk)
        raw.send_method(2, commands.Queue.Delete(queue=unique))
        frames = [raw.read_raw_frame(), raw.read_raw_frame()]  # in either order
        by_channel = {f.channel: f.method() for f in frames}
        assert isinstance(by_channel[2], commands.Queue.DeleteOk)
        cancel = by_channel[1]
        assert isinstance(cancel, commands.Basic.Cancel)
        assert cancel.consumer_tag == "c1"
        # The client answers nothing; the channel stays usable.
        raw.send_method(1, commands.Basic.Qos())
        raw.expect(commands.Basic.QosOk)


def test_basic_get_reports_remaining_message_count(channel, queue):
    for i in range(3):
        channel.basic_publish("", queue, str(i).encode())
    counts = []
    for _ in range(3):
        method, _, _ = channel.basic_get(queue, auto_ack=True)
        counts.append(method.message_count)
    assert counts == [2, 1, 0]
    assert channel.basic_get(queue) == (None, None, None)


def test_basic_get_fields(channel, queue):
    channel.basic_publish("", queue, b"x")
    method, _, _ = channel.basic_get(queue)
    assert (method.delivery_tag, method.redelivered, method.exchange, method.routing_key) == (
        1,
        False,
        "",
        queue,
    )


def test_basic_get_empty_on_the_wire(broker, unique):
    unique = safe_name(unique)
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique, exclusive=True))
        raw.expect(commands.Queue.DeclareOk)
        raw.send_method(1, commands.Basic.Get(queue=unique))
        empty = raw.expect(commands.Basic.GetEmpty)
        assert empty.cluster_id == ""


def test_basic_get_from_missing_queue_is_404(channel, unique):
    assert channel_error(lambda: channel.basic_get(unique)) == (
        404,
        f"NOT_FOUND - no queue '{unique}' in vhost '/'",
    )


# --------------------------------------------------------------------------------------------
# close frames carry the class and method that failed
# --------------------------------------------------------------------------------------------

Q, E, B = commands.Queue, commands.Exchange, commands.Basic

CLOSE_CASES = [
    # (setup methods, failing method, close kind, reply code, class id, method id)
    ([], E.Declare(exchange="UNIQUE-x", passive=True), "channel", 404, 40, 10),
    ([], E.Delete(exchange=""), "channel", 403, 40, 20),
    ([], E.Bind(destination="UNIQUE-x", source="amq.direct"), "channel", 404, 40, 30),
    ([], E.Declare(exchange="UNIQUE-x", exchange_type="x-nonesuch"), "connection", 503, 40, 10),
    ([], Q.Declare(queue="UNIQUE-q", passive=True), "channel", 404, 50, 10),
    ([], Q.Bind(queue="UNIQUE-q", exchange="amq.direct"), "channel", 404, 50, 20),
    ([], Q.Purge(queue="UNIQUE-q"), "channel", 404, 50, 30),
    (
        [Q.Declare(queue="UNIQUE-q", exclusive=True)],
        Q.Unbind(queue="UNIQUE-q", exchange=""),
        "channel",
        403,
        50,
        50,
    ),
    ([], B.Consume(queue="UNIQUE-q"), "channel", 404, 60, 20),
    ([], B.Get(queue="UNIQUE-q"), "channel", 404, 60, 70),
    ([], B.Ack(delivery_tag=3), "channel", 406, 60, 80),
    ([], B.Reject(delivery_tag=3), "channel", 406, 60, 90),
    ([], B.Nack(delivery_tag=3), "channel", 406, 60, 120),
    ([], B.Recover(requeue=False), "connection", 540, 60, 110),
    ([], B.Qos(prefetch_size=10), "connection", 540, 60, 10),
    ([], commands.Tx.Commit(), "channel", 406, 90, 20),
    ([], commands.Tx.Rollback(), "channel", 406, 90, 30),
    ([commands.Tx.Select()], commands.Confirm.Select(), "channel", 406, 85, 10),
    ([commands.Confirm.Select()], commands.Tx.Select(), "channel", 406, 90, 10),
]


def with_name(method, name: str):
    """A copy of `method` with 'UNIQUE' in its string fields replaced by `name`."""
    fields = {key: value for key, value in method}
    for key, value in fields.items():
        if isinstance(value, str):
            fields[key] = value.replace("UNIQUE", name)
    return type(method)(**fields)


@pytest.mark.parametrize(("setup", "failing", "kind", "code", "class_id", "method_id"), CLOSE_CASES)
def test_close_frames_name_the_failing_method(
    broker, unique, setup, failing, kind, code, class_id, method_id
):
    name = safe_name(unique)
    with raw_client(broker) as raw:
        for method in setup:
            raw.send_method(1, with_name(method, name))
            raw.read_raw_frame()
        raw.send_method(1, with_name(failing, name))
        close_frame = raw.read_raw_frame()
    close = close_frame.method()
    expected_type = commands.Channel.Close if kind == "channel" else commands.Connection.Close
    assert isinstance(close, expected_type), close
    assert close_frame.channel == (1 if kind == "channel" else 0)
    assert (close.reply_code, close.class_id, close.method_id) == (code, class_id, method_id)


@pytest.mark.parametrize(
    ("flags", "properties", "code", "text"),
    [
        (0x0010, short_str("bob"), 406, "PRECONDITION_FAILED - user_id property set to 'bob' "
         "but authenticated user was 'guest'"),
        (0x0200, short_str("amq.rabbitmq.reply-to"), 406,
         "PRECONDITION_FAILED - fast reply consumer does not exist"),
    ],
    ids=["user-id", "reply-to"],
)  # fmt: skip
def test_publish_errors_name_basic_publish(broker, unique, flags, properties, code, text):
    with raw_client(broker) as raw:
        raw.publish_raw(1, "", safe_name(unique), content_header_payload(0, flags, properties), [])
        close = raw.read_raw_frame().method()
    assert isinstance(close, commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        code,
        text,
        60,
        40,
    )


# --------------------------------------------------------------------------------------------
# sender-selected distribution (CC / BCC), immediate, the "last declared queue"
# --------------------------------------------------------------------------------------------


def test_cc_and_bcc_headers_add_routing_keys_and_bcc_is_removed(channel, unique):
    names = {n: f"{unique}-{n}" for n in ("to", "cc", "bcc", "other")}
    for name in names.values():
        channel.queue_declare(name, exclusive=True)
        channel.queue_bind(name, "amq.direct", routing_key=name)
    headers = {"CC": [names["cc"]], "BCC": [names["bcc"]], "x": 1}
    channel.basic_publish("amq.direct", names["to"], b"m", pika.BasicProperties(headers=headers))
    for role in ("to", "cc", "bcc"):
        method, properties, body = channel.basic_get(names[role], auto_ack=True)
        assert body == b"m", role
        assert method.routing_key == names["to"], role
        assert properties.headers == {"CC": [names["cc"]], "x": 1}, role
    assert get_bodies(channel, names["other"]) == []


def test_cc_header_must_be_an_array(channel, unique):
    properties = pika.BasicProperties(headers={"CC": "not-an-array"})
    publish = lambda: channel.basic_publish("", unique, b"m", properties)  # noqa: E731
    assert channel_error_after(channel, publish) == (
        406,
        'PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}',
    )


def test_immediate_publish_is_not_implemented(broker, unique):
    with raw_client(broker) as raw:
        raw.send_method(
            1, commands.Basic.Publish(exchange="", routing_key=safe_name(unique), immediate=True)
        )
        raw.send_raw_frame(2, 1, content_header_payload(0, 0, b""))
        close = raw.read_raw_frame().method()
    assert isinstance(close, commands.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        540,
        "NOT_IMPLEMENTED - immediate=true",
        60,
        40,
    )


def test_empty_queue_name_means_the_last_declared_queue(broker, unique):
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue="", exclusive=True))
        declared = raw.expect(commands.Queue.DeclareOk).queue
        key = safe_name(unique)
        raw.send_method(1, commands.Queue.Bind(queue="", exchange="amq.direct", routing_key=key))
        raw.expect(commands.Queue.BindOk)
        raw.publish_raw(1, "amq.direct", key, content_header_payload(1, 0, b""), [b"1"])
        raw.publish_raw(1, "amq.direct", key, content_header_payload(1, 0, b""), [b"2"])
        raw.send_method(1, commands.Basic.Get(queue="", no_ack=True))
        get_ok, _, bodies = raw.read_message()
        assert (get_ok.routing_key, bodies[0].payload) == (key, b"1")
        raw.send_method(1, commands.Queue.Purge(queue=""))
        assert raw.expect(commands.Queue.PurgeOk).message_count == 1
        raw.send_method(1, commands.Basic.Consume(queue="", consumer_tag="c"))
        raw.expect(commands.Basic.ConsumeOk)
        raw.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
        raw.expect(commands.Basic.CancelOk)
        raw.send_method(1, commands.Queue.Delete(queue=""))
        raw.expect(commands.Queue.DeleteOk)
        raw.send_method(1, commands.Queue.Declare(queue=declared, passive=True))
        close = raw.expect(commands.Channel.Close)
        assert close.reply_code == 404


def test_empty_queue_name_without_a_declared_queue_is_404(broker):
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Basic.Consume(queue=""))
        close = raw.expect(commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        404,
        "NOT_FOUND - no previously declared queue",
        60,
        20,
    )


def test_nowait_methods_get_no_reply(broker, unique):
    """With nowait set, declare/bind/consume/cancel/purge/delete/confirm.select answer nothing:
    the next frame is the reply to the next synchronous method."""
    exchange, queue = safe_name(unique) + "-x", safe_name(unique) + "-q"
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Exchange.Declare(exchange=exchange, nowait=True))
        raw.send_method(1, commands.Queue.Declare(queue=queue, exclusive=True, nowait=True))
        raw.send_method(
            1, commands.Queue.Bind(queue=queue, exchange=exchange, routing_key="k", nowait=True)
        )
        raw.send_method(
            1, commands.Basic.Consume(queue=queue, consumer_tag="c", no_ack=True, nowait=True)
        )
        raw.send_method(1, commands.Basic.Qos())
        raw.expect(commands.Basic.QosOk)
        raw.publish_raw(1, exchange, "k", content_header_payload(1, 0, b""), [b"z"])
        deliver, _, _ = raw.read_message()
        assert isinstance(deliver, commands.Basic.Deliver)
        assert (deliver.consumer_tag, deliver.exchange) == ("c", exchange)
        raw.send_method(1, commands.Basic.Cancel(consumer_tag="c", nowait=True))
        raw.send_method(1, commands.Queue.Purge(queue=queue, nowait=True))
        raw.send_method(1, commands.Queue.Delete(queue=queue, nowait=True))
        raw.send_method(1, commands.Exchange.Delete(exchange=exchange, nowait=True))
        raw.send_method(1, commands.Confirm.Select(nowait=True))
        raw.send_method(1, commands.Basic.Qos())
        raw.expect(commands.Basic.QosOk)
        # Errors still close the channel.
        raw.send_method(1, commands.Queue.Declare(queue=queue, passive=True, nowait=True))
        close = raw.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (404, 50, 10)


def test_basic_get_is_allowed_beside_an_exclusive_consumer(connection, channel, queue):
    for i in range(3):
        channel.basic_publish("", queue, str(i).encode())
    channel.basic_qos(prefetch_count=1)
    _, collector = consume(channel, queue, exclusive=True)
    collector.wait(1)
    method, _, body = connection.channel().basic_get(queue, auto_ack=True)
    assert (body, method.message_count) == (b"1", 1)


# --------------------------------------------------------------------------------------------
# property validation on publish
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        (" 5", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
        (
            "99999999999999999999",
            "{value_too_large,\n" + " " * 44 + "99999999999999999999}",
        ),
    ],
    ids=["letters", "empty", "space", "negative", "decimal", "too-large"],
)
def test_invalid_expiration_is_406(channel, queue, expiration, reason):
    properties = pika.BasicProperties(expiration=expiration)
    publish = lambda: channel.basic_publish("", queue, b"m", properties)  # noqa: E731
    assert channel_error_after(channel, publish) == (
        406,
        f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}",
    )


def test_expiration_zero_expires_at_once(channel, queue):
    channel.basic_publish("", queue, b"gone", pika.BasicProperties(expiration="0"))
    channel.basic_publish("", queue, b"kept", pika.BasicProperties(expiration="60000"))
    assert get_bodies(channel, queue) == [b"kept"]


@pytest.mark.parametrize("delivery_mode", [0, 3, 255])
def test_unknown_delivery_mode_is_406(channel, queue, delivery_mode):
    properties = pika.BasicProperties(delivery_mode=delivery_mode)
    publish = lambda: channel.basic_publish("", queue, b"m", properties)  # noqa: E731
    assert channel_error_after(channel, publish) == (
        406,
        f"PRECONDITION_FAILED - invalid message: {{delivery_mode_unknown,{delivery_mode}}}",
    )
