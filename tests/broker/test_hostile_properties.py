"""Hostile bytes in content headers and names, over raw sockets: what RabbitMQ 3.10.8 refuses
is refused the same way and stores nothing; what it accepts passes through byte for byte.

- Property bytes RabbitMQ cannot decode close the connection with 541 INTERNAL_ERROR (0, 0)
  once the message is complete; nothing is queued, confirmed or written to the log.
- Tables and arrays nested 3000 deep are valid: published, routed by a headers exchange,
  dead-lettered (x-death added) and shown by the management API's get.
- Names that are not UTF-8: basic.publish takes any bytes (and sends them on as they came);
  every other method's shortstrs must be UTF-8 (501 `Malformed UTF-8 in shortstr`).
- A connection.start-ok whose client properties table overruns itself: the socket is closed
  without a frame.

Every expectation was observed on RabbitMQ (tests/broker/RABBITMQ_HOSTILE.md); with
WARREN_TEST_AMQP_PORT / WARREN_TEST_HTTP_PORT set these tests run against it unchanged.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pamqp import commands
from raw_amqp import RawAMQP, assert_broker_works, raw_client, safe_name

# --------------------------------------------------------------------------------------------
# helpers


def tbl(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def sstr(data: bytes) -> bytes:
    return bytes((len(data),)) + data


def header(props: bytes, body_size: int, weight: int = 0) -> bytes:
    return struct.pack(">HHQ", 60, weight, body_size) + props


def method(class_id: int, method_id: int, arguments: bytes) -> bytes:
    return struct.pack(">HH", class_id, method_id) + arguments


def close_of(payload: bytes) -> tuple[int, bytes, int, int]:
    """(code, text bytes, class, method) of a connection.close or channel.close payload, read
    without decoding the text (it may quote bytes that are not UTF-8)."""
    code, length = struct.unpack_from(">HB", payload, 4)
    text = payload[7 : 7 + length]
    class_id, method_id = struct.unpack_from(">HH", payload, 7 + length)
    return code, text, class_id, method_id


CONNECTION_CLOSE = b"\x00\x0a\x00\x32"
CHANNEL_CLOSE = b"\x00\x14\x00\x28"


def expect_connection_close(client: RawAMQP) -> tuple[int, bytes, int, int]:
    """The next frame is connection.close (nothing before it: no basic.ack, no delivery);
    answer close-ok and see the socket closed."""
    frame = client.read_raw_frame()
    assert frame.kind == 1 and frame.payload[:4] == CONNECTION_CLOSE, frame
    client.send_raw_frame(1, 0, b"\x00\x0a\x00\x33")
    client.sock.settimeout(5)
    try:
        while client.sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return close_of(frame.payload)


def expect_ok(client: RawAMQP, method_payload: bytes) -> bytes:
    client.send_raw_frame(1, 1, method_payload)
    frame = client.read_raw_frame()
    assert frame.kind == 1 and frame.payload[:4] not in (CONNECTION_CLOSE, CHANNEL_CLOSE), (
        close_of(frame.payload))
    return frame.payload


def declare(client: RawAMQP, queue: str, durable: bool = False, arguments: bytes = b"") -> None:
    flags = 0x02 if durable else 0
    expect_ok(client, method(50, 10, b"\x00\x00" + sstr(queue.encode()) + bytes((flags,))
                             + tbl(arguments)))


def delete_queue(client: RawAMQP, queue: str) -> None:
    expect_ok(client, method(50, 40, b"\x00\x00" + sstr(queue.encode()) + b"\x00"))


def message_count(client: RawAMQP, queue: str) -> int:
    reply = expect_ok(client, method(50, 10, b"\x00\x00" + sstr(queue.encode()) + b"\x01"
                                     + tbl(b"")))
    return struct.unpack_from(">I", reply, 5 + reply[4])[0]


def get_raw(client: RawAMQP, queue: str, no_ack: bool = True) -> tuple[bytes, bytes, bytes]:
    """basic.get: (get-ok payload, property bytes of the header, body)."""
    client.send_raw_frame(1, 1, method(60, 70, b"\x00\x00" + sstr(queue.encode())
                                   + bytes((int(no_ack),))))
    get_ok = client.read_raw_frame().payload
    assert get_ok[:4] == b"\x00\x3c\x00\x47", ("expected basic.get-ok", get_ok[:60])
    header_payload = client.read_raw_frame().payload
    body_size = struct.unpack_from(">Q", header_payload, 4)[0]
    body = b""
    while len(body) < body_size:
        body += client.read_raw_frame().payload
    return get_ok, header_payload[12:], body


def get_ok_route(get_ok: bytes) -> tuple[bytes, bytes]:
    """(exchange, routing key) of a basic.get-ok payload, as the bytes sent."""
    offset = 4 + 8 + 1
    exchange = get_ok[offset + 1 : offset + 1 + get_ok[offset]]
    offset += 1 + get_ok[offset]
    return exchange, get_ok[offset + 1 : offset + 1 + get_ok[offset]]


def publish(client: RawAMQP, exchange: bytes, routing_key: bytes, props: bytes, body: bytes,
            weight: int = 0) -> None:
    client.send_raw_frame(1, 1, method(60, 40, b"\x00\x00" + sstr(exchange) + sstr(routing_key)
                                   + b"\x00"))
    client.send_raw_frame(2, 1, header(props, len(body), weight))
    if body:
        client.send_raw_frame(3, 1, body)


def wait_confirms(client: RawAMQP, last: int) -> None:
    """Read basic.acks until the one covering publish number `last` (single or multiple)."""
    while True:
        frame = client.read_raw_frame()
        assert frame.payload[:4] == b"\x00\x3c\x00\x50", close_of(frame.payload)
        if struct.unpack_from(">Q", frame.payload, 4)[0] >= last:
            return


def assert_second_connection_works(broker, queue: str) -> None:
    """Another connection publishes and gets a message; the queue held nothing before it."""
    with raw_client(broker) as client:
        assert message_count(client, queue) == 0
        publish(client, b"", queue.encode(), b"\x00\x00", b"after")
        assert get_raw(client, queue)[2] == b"after"
        delete_queue(client, queue)
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# Property bytes RabbitMQ cannot decode


REFUSED = {
    "shortstr-longer-than-the-rest": b"\x80\x00\x0aabc",
    "table-longer-than-the-properties": b"\x20\x00" + struct.pack(">I", 100) + b"\x01aSx",
    "field-type-Z": b"\x20\x00" + tbl(b"\x01aZ"),
    "field-type-U": b"\x20\x00" + tbl(b"\x01aU\x00\x01"),
    "continuation-flag-word": b"\x00\x01\x00\x00",
    "bytes-after-the-last-property": b"\x00\x00xx",
    "no-flag-word": b"",
    "delivery-mode-flagged-but-absent": b"\x10\x00",
    "timestamp-of-7-bytes": b"\x00\x40" + bytes(7),
    "nested-table-past-its-parent":
        b"\x20\x00" + tbl(b"\x01aF" + struct.pack(">I", 10) + b"\x01bV"),
    "key-longer-than-the-table": b"\x20\x00" + tbl(b"\x05ab"),
    "array-item-of-unknown-type": b"\x20\x00" + tbl(b"\x01aA" + tbl(b"Z")),
    "float-NaN": b"\x20\x00" + tbl(b"\x01af" + struct.pack(">f", math.nan)),
    "double-infinity": b"\x20\x00" + tbl(b"\x01ad" + struct.pack(">d", math.inf)),
    "decimal-cut-short": b"\x20\x00" + tbl(b"\x01aD\x02\x00\x00"),
    "persistent-then-garbage": b"\x10\x00\x02\xff",
}


@pytest.mark.parametrize("props", REFUSED.values(), ids=REFUSED.keys())
def test_undecodable_properties_close_541_and_nothing_is_kept(broker, unique, props):
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue, durable=True)
        expect_ok(client, method(85, 10, b"\x00"))  # confirm.select
        publish(client, b"", queue.encode(), props, b"refused-" + queue.encode())
        assert expect_connection_close(client) == (541, b"INTERNAL_ERROR", 0, 0)
    assert_second_connection_works(broker, queue)


def test_refused_publish_writes_nothing_to_the_log(broker, unique):
    """A refused persistent message for a durable queue never reaches the write-ahead log,
    while the accepted one next to it does (the marker is found in the data directory)."""
    if not broker.is_warren:
        pytest.skip("looks into Warren's data directory")
    queue = safe_name(unique)
    refused, accepted = f"refused-{time.time_ns()}".encode(), f"kept-{time.time_ns()}".encode()
    with raw_client(broker) as client:
        declare(client, queue, durable=True)
        expect_ok(client, method(85, 10, b"\x00"))
        publish(client, b"", queue.encode(), b"\x10\x00\x02", accepted)
        wait_confirms(client, 1)
        publish(client, b"", queue.encode(), b"\x10\x00\x02\xff", refused)
        assert expect_connection_close(client) == (541, b"INTERNAL_ERROR", 0, 0)
    logged = b"".join(path.read_bytes() for path in Path(broker.data_dir).rglob("*")
                      if path.is_file())
    assert accepted in logged
    assert refused not in logged
    with raw_client(broker) as client:
        assert get_raw(client, queue)[2] == accepted
        assert message_count(client, queue) == 0
        delete_queue(client, queue)


def test_properties_are_checked_when_the_message_is_complete(broker, unique):
    """RabbitMQ decodes the properties after the body: a bad header followed by a method
    instead of the body is the content error (505), not 541."""
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue)
        client.send_raw_frame(1, 1, method(60, 40, b"\x00\x00" + sstr(b"") + sstr(queue.encode())
                                       + b"\x00"))
        client.send_raw_frame(2, 1, header(REFUSED["field-type-Z"], 5))
        client.send_raw_frame(1, 1, method(60, 10, struct.pack(">IHB", 0, 1, 0)))  # basic.qos
        assert expect_connection_close(client) == (
            505, b"UNEXPECTED_FRAME - expected content body, got non content body frame instead",
            60, 40)
    assert_second_connection_works(broker, queue)


def test_bad_properties_of_an_empty_message_are_refused_at_once(broker, unique):
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue)
        publish(client, b"", queue.encode(), REFUSED["field-type-Z"], b"")
        assert expect_connection_close(client) == (541, b"INTERNAL_ERROR", 0, 0)
    assert_second_connection_works(broker, queue)


@pytest.mark.parametrize("class_id", [60, 50])
def test_non_zero_weight_is_not_a_content_header(broker, unique, class_id):
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue)
        client.send_raw_frame(1, 1, method(60, 40, b"\x00\x00" + sstr(b"") + sstr(queue.encode())
                                       + b"\x00"))
        client.send_raw_frame(2, 1, struct.pack(">HHQ", class_id, 1, 5) + b"\x00\x00")
        client.send_raw_frame(3, 1, b"hello")
        assert expect_connection_close(client) == (
            505, b"UNEXPECTED_FRAME - expected content header for class 60, got non content "
                 b"header frame instead", 60, 40)
    assert_second_connection_works(broker, queue)


ACCEPTED = {
    "undefined-flag-bit-1": b"\x00\x02",
    "undefined-flag-bits-with-content-type": b"\x80\x03\x02ab",
    "flag-bit-0-alone": b"\x00\x01",
    "field-type-L": b"\x20\x00" + tbl(b"\x01aL" + b"\xff" * 8),
    "boolean-2": b"\x20\x00" + tbl(b"\x01at\x02"),
    "content-type-not-utf8": b"\x80\x00\x02\xff\xfe",
    "header-key-not-utf8": b"\x20\x00" + tbl(b"\x02\xff\xfeI\x00\x00\x00\x01"),
    "longstr-not-utf8": b"\x20\x00" + tbl(b"\x01aS" + struct.pack(">I", 2) + b"\xff\xfe"),
    "empty-key": b"\x20\x00" + tbl(b"\x00V"),
}


@pytest.mark.parametrize("props", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_properties_rabbitmq_accepts_pass_through_byte_for_byte(broker, unique, props):
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue)
        publish(client, b"", queue.encode(), props, b"body")
        _, received, body = get_raw(client, queue)
        assert (received, body) == (props, b"body")
        delete_queue(client, queue)


# --------------------------------------------------------------------------------------------
# Tables and arrays nested 3000 deep

DEPTH = 3000


def deep_table(depth: int) -> bytes:
    value = b"I" + struct.pack(">i", 7)
    for _ in range(depth):
        value = b"F" + tbl(b"\x01a" + value)
    return value


def deep_array(depth: int) -> bytes:
    value = b"S" + tbl(b"hi")
    for _ in range(depth):
        value = b"A" + tbl(value)
    return value


def deep_props(depth: int) -> bytes:
    return b"\x20\x00" + tbl(b"\x05matchS" + tbl(b"yes") + b"\x04deep" + deep_table(depth)
                             + b"\x03arr" + deep_array(depth))


def api_get(broker, queue: str) -> list:
    port = broker.management_port
    if port is None:
        pytest.skip("no management port (set WARREN_TEST_HTTP_PORT)")
    request = urllib.request.Request(
        f"http://{broker.host}:{port}/api/queues/%2F/{queue}/get", method="POST",
        data=json.dumps({"count": 1, "ackmode": "ack_requeue_true",
                         "encoding": "auto"}).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
        text = answer.read()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * DEPTH + 1000))  # json.loads recurses, too
    try:
        return json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


def test_headers_nested_3000_deep(broker, unique):
    """Published, routed by a headers exchange, dead-lettered with x-death added, shown by
    the management API: the deep headers come back whole everywhere."""
    name = safe_name(unique)
    exchange, routed, source, dead = (f"{name}-{s}" for s in ("x", "hx", "src", "dlq"))
    props = deep_props(DEPTH)
    with raw_client(broker) as client:
        expect_ok(client, method(40, 10, b"\x00\x00" + sstr(exchange.encode())
                                 + sstr(b"headers") + b"\x04" + tbl(b"")))  # auto-delete
        declare(client, routed)
        declare(client, dead)
        declare(client, source, arguments=b"\x16x-dead-letter-exchangeS" + tbl(b"")
                + b"\x19x-dead-letter-routing-keyS" + tbl(dead.encode()))
        expect_ok(client, method(50, 20, b"\x00\x00" + sstr(routed.encode())
                                 + sstr(exchange.encode()) + sstr(b"") + b"\x00"
                                 + tbl(b"\x07x-matchS" + tbl(b"all") + b"\x05matchS"
                                       + tbl(b"yes"))))
        expect_ok(client, method(85, 10, b"\x00"))
        publish(client, exchange.encode(), b"", props, b"deep")
        publish(client, b"", source.encode(), props, b"deep")
        wait_confirms(client, 2)

        _, received, body = get_raw(client, routed)
        assert (received, body) == (props, b"deep")

        get_ok, received, _ = get_raw(client, source, no_ack=False)
        assert received == props
        delivery_tag = struct.unpack_from(">Q", get_ok, 4)[0]
        client.send_raw_frame(1, 1, method(60, 90, struct.pack(">QB", delivery_tag, 0)))  # reject
        deadline = time.monotonic() + 5
        while message_count(client, dead) == 0:
            assert time.monotonic() < deadline, "not dead-lettered"
            time.sleep(0.05)
        _, dead_props, _ = get_raw(client, dead)
        assert b"\x07x-deathA" in dead_props
        assert b"\x04deep" + deep_table(DEPTH) in dead_props
        assert b"\x03arr" + deep_array(DEPTH) in dead_props

        publish(client, exchange.encode(), b"", props, b"deep")
        wait_confirms(client, 3)
        [shown] = api_get(broker, routed)
        headers = shown["properties"]["headers"]
        value, depth = headers["deep"], 0
        while isinstance(value, dict):
            value, depth = value["a"], depth + 1
        assert (depth, value) == (DEPTH, 7)
        value, depth = headers["arr"], 0
        while isinstance(value, list):
            [value], depth = value, depth + 1
        assert (depth, value) == (DEPTH, "hi")
        assert headers["match"] == "yes"
        assert shown["payload"] == "deep"
        assert message_count(client, routed) == 1  # requeued by the API's get
        for queue in (routed, source, dead):
            delete_queue(client, queue)
    assert_broker_works(broker)


# --------------------------------------------------------------------------------------------
# Names that are not UTF-8


def test_publish_takes_a_routing_key_that_is_not_utf8(broker, unique):
    """The consumer gets the routing key's bytes as sent; persistent, through a durable queue
    (so through the log) and a fanout exchange."""
    queue = safe_name(unique)
    key = b"rk-\xff\xfe-" + queue.encode()
    with raw_client(broker) as client:
        declare(client, queue, durable=True)
        expect_ok(client, method(50, 20, b"\x00\x00" + sstr(queue.encode())
                                 + sstr(b"amq.fanout") + sstr(b"") + b"\x00" + tbl(b"")))
        expect_ok(client, method(85, 10, b"\x00"))
        publish(client, b"amq.fanout", key, b"\x10\x00\x02", b"persistent")
        wait_confirms(client, 1)
        get_ok, _, body = get_raw(client, queue)
        assert get_ok_route(get_ok) == (b"amq.fanout", key)
        assert body == b"persistent"
        delete_queue(client, queue)


def test_publish_to_an_exchange_name_that_is_not_utf8_is_404_quoting_the_bytes(broker):
    with raw_client(broker) as client:
        publish(client, b"wp-\xff\xfe", b"x", b"\x00\x00", b"body")
        frame = client.read_raw_frame()
        assert frame.payload[:4] == CHANNEL_CLOSE
        assert close_of(frame.payload) == (
            404, b"NOT_FOUND - no exchange 'wp-\xff\xfe' in vhost '/'", 60, 40)


MALFORMED_UTF8 = (501, b"FRAME_ERROR - Malformed UTF-8 in shortstr", 0, 0)
NOT_UTF8_NAMES = {
    "queue.declare": method(50, 10, b"\x00\x00" + sstr(b"q-\xff") + b"\x00" + tbl(b"")),
    "exchange.declare": method(40, 10, b"\x00\x00" + sstr(b"x-\xff") + sstr(b"direct") + b"\x00"
                               + tbl(b"")),
    "queue.bind routing key": method(50, 20, b"\x00\x00" + sstr(b"q") + sstr(b"amq.direct")
                                     + sstr(b"rk-\xff") + b"\x00" + tbl(b"")),
    "basic.consume tag": method(60, 20, b"\x00\x00" + sstr(b"q") + sstr(b"tag-\xff") + b"\x02"
                                + tbl(b"")),
    "basic.get queue": method(60, 70, b"\x00\x00" + sstr(b"q-\xff") + b"\x01"),
}


@pytest.mark.parametrize("payload", NOT_UTF8_NAMES.values(), ids=NOT_UTF8_NAMES.keys())
def test_other_methods_refuse_shortstrs_that_are_not_utf8(broker, payload):
    with raw_client(broker) as client:
        client.send_raw_frame(1, 1, payload)
        assert expect_connection_close(client) == MALFORMED_UTF8
    assert_broker_works(broker)


def test_declare_argument_keys_need_not_be_utf8(broker, unique):
    queue = safe_name(unique)
    with raw_client(broker) as client:
        declare(client, queue, arguments=b"\x02\xff\xfeI\x00\x00\x00\x01")
        delete_queue(client, queue)


def test_headers_exchange_routes_a_message_with_a_key_that_is_not_utf8(broker, unique):
    name = safe_name(unique)
    exchange, queue = f"{name}-x", f"{name}-q"
    props = b"\x20\x00" + tbl(b"\x02\xff\xfeI\x00\x00\x00\x01\x05matchS" + tbl(b"yes"))
    with raw_client(broker) as client:
        expect_ok(client, method(40, 10, b"\x00\x00" + sstr(exchange.encode())
                                 + sstr(b"headers") + b"\x04" + tbl(b"")))
        declare(client, queue)
        expect_ok(client, method(50, 20, b"\x00\x00" + sstr(queue.encode())
                                 + sstr(exchange.encode()) + sstr(b"") + b"\x00"
                                 + tbl(b"\x05matchS" + tbl(b"yes"))))
        publish(client, exchange.encode(), b"", props, b"body")
        _, received, _ = get_raw(client, queue)
        assert received == props
        delete_queue(client, queue)


# --------------------------------------------------------------------------------------------
# connection.start-ok


def start_ok(client_properties: bytes) -> bytes:
    return method(10, 11, client_properties + sstr(b"PLAIN") + tbl(b"\x00guest\x00guest")
                  + sstr(b"en_US"))


BAD_CLIENT_PROPERTIES = {
    "longstr-past-the-table": struct.pack(">I", 14) + b"\x07productS" + struct.pack(">I", 50)
                              + b"x",
    "nested-table-past-its-parent": tbl(b"\x0ccapabilitiesF" + struct.pack(">I", 40) + b"\x01aV"),
    "unknown-field-type": tbl(b"\x01aZ"),
    "table-past-the-frame": struct.pack(">I", 1000) + b"\x07productS" + tbl(b"x"),
}


@pytest.mark.parametrize("table", BAD_CLIENT_PROPERTIES.values(),
                         ids=BAD_CLIENT_PROPERTIES.keys())
def test_start_ok_with_client_properties_overrunning_is_refused_without_a_frame(broker, table):
    """RabbitMQ closes the socket (about 3 s later) without connection.tune or a close."""
    with RawAMQP.connect(broker, timeout=10) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.send(struct.pack(">BHI", 1, 0, len(start_ok(table))) + start_ok(table) + b"\xce")
        frames = amqp.wait_closed(timeout=8)
        assert frames == []
    assert_broker_works(broker)


def test_start_ok_with_a_client_property_key_that_is_not_utf8_is_accepted(broker):
    payload = start_ok(tbl(b"\x02\xff\xfeS" + tbl(b"x")))
    with RawAMQP.connect(broker) as amqp:
        amqp.send_protocol_header()
        amqp.expect(commands.Connection.Start)
        amqp.send(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")
        amqp.expect(commands.Connection.Tune)
