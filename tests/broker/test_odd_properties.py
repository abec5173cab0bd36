"""Messages whose properties are valid AMQP but odd — header keys and short strings that are not
UTF-8, byte arrays, decimals of any scale, timestamps past 2106 and up to 2**64-1, unsigned
integers, nested tables and arrays — go through the later steps that read or rewrite
properties as they do in RabbitMQ 3.10.8: the management API's get (every ack mode) renders
them and settles them as asked, and dead-lettering (rejected, expired, maxlen) keeps every
original header entry byte for byte next to x-death. Warren used to answer such a get with a
500 after taking the message out of the queue for good, and to close the connection of a
consumer whose reject dead-lettered one (losing it). RabbitMQ's answers are recorded in
RABBITMQ_ODD_PROPERTIES.md; run with WARREN_TEST_AMQP_PORT / WARREN_TEST_HTTP_PORT to check
them against it.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import urllib.error
import urllib.request

import pytest
from pamqp import commands
from raw_amqp import content_header_payload, field, field_table, raw_client

from protocol.fieldtable import decode_value


def _long(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _short(data: bytes) -> bytes:
    return bytes((len(data),)) + data


def _decimal(scale: int, value: int) -> bytes:
    return bytes((scale,)) + struct.pack(">i", value)


# The headers table, entries in key order (as RabbitMQ sorts them when it rewrites a table).
HEADER_ENTRIES = [
    field("B", "B", b"\xff"),
    field("D1", "D", _decimal(255, 12345)),
    field("D2", "D", _decimal(2, -12345)),
    field("F", "F", field_table(field("a", "A", _long(
        b"T" + struct.pack(">Q", 5) + b"V" + b"D" + _decimal(1, 15) + b"x" + _long(b"\xff"))))),
    field("L", "L", struct.pack(">Q", 2**63)),
    field("S", "S", _long(b"\xe2\x82")),
    field("T", "T", struct.pack(">Q", 2**64 - 1)),
    field("Tms", "T", struct.pack(">Q", 1_700_000_000_000)),
    field("b", "b", b"\xff"),
    field("esc", "S", _long(b'quote" back\\ ctl\x01 euro\xe2\x82\xac')),
    field("i", "i", struct.pack(">I", 2**32 - 1)),
    field("s", "s", struct.pack(">h", -2)),
    field("u", "u", struct.pack(">H", 65535)),
    field("x", "x", _long(b"\xff\x00")),
    b"\x02\xff\xfe" + b"S" + _long(b"v"),  # a key that is not UTF-8
]
# Dead-lettering rewrites the table as RabbitMQ decodes it: 'L' is read as its signed long
# and written back as 'l'; every other entry keeps its bytes.
LONG_L = field("L", "L", struct.pack(">Q", 2**63))
DEAD_LETTERED_ENTRIES = [field("L", "l", struct.pack(">Q", 2**63)) if entry == LONG_L else entry
                         for entry in HEADER_ENTRIES]
FLAGS = 0xFFFC & ~0x0200 & ~0x0010  # all properties but reply_to and user_id
BEFORE_HEADERS = _short(b"text/\xff") + _short(b"enc\xfe")
AFTER_HEADERS = (
    b"\x02" + b"\x09" + _short(b"cid\xff")  # delivery_mode, priority, correlation_id
    + _short(b"600000")  # expiration (moved into x-death when dead-lettered)
    + _short(b"mid") + struct.pack(">Q", 2**64 - 1) + _short(b"typ\xff")
    + _short(b"app\xff") + _short(b"clu\xff")
)
PROPERTIES = BEFORE_HEADERS + field_table(*HEADER_ENTRIES) + AFTER_HEADERS
BODY = b"\xffbc"

# What RabbitMQ 3.10.8's management plugin shows for that message (POST .../get).
SHOWN = {
    "payload": "/2Jj", "payload_encoding": "base64", "payload_bytes": 3, "exchange": "",
    "properties": {
        "content_type": "text/\ufffd", "content_encoding": "enc\ufffd",
        "headers": {
            "B": 255, "D1": 255.12345, "D2": 2.4294954951, "F": {"a": [5, "undefined", 1.15,
            "Not UTF-8, base64 is: /w=="]}, "L": -9223372036854775808,
            "S": "Not UTF-8, base64 is: 4oI=", "T": 18446744073709551615, "Tms": 1700000000000,
            "b": -1, "esc": 'quote" back\\ ctl\x01 euro\u20ac', "i": 4294967295, "s": -2,
            "u": 65535, "x": "Not UTF-8, base64 is: /wA=", "\ufffd\ufffd": "v",
        },
        "delivery_mode": 2, "priority": 9, "correlation_id": "cid\ufffd", "expiration": "600000",
        "message_id": "mid", "timestamp": 18446744073709551615, "type": "typ\ufffd",
        "app_id": "app\ufffd", "cluster_id": "clu\ufffd",
    },
}
ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
            "reject_requeue_false")


def api_post(broker, path: str, body: dict) -> tuple[int, object]:
    if broker.management_port is None:
        pytest.skip("no management port (WARREN_TEST_HTTP_PORT)")
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


def get(broker, queue: str, ackmode: str, **extra) -> tuple[int, object]:
    return api_post(broker, f"/api/queues/%2F/{queue}/get",
                    {"count": 5, "ackmode": ackmode, "encoding": "auto", **extra})


@pytest.fixture
def names(broker):
    """Queue names for a test (call it with a suffix); deleted when the test ends, even if it
    fails half-way (RabbitMQ is shared)."""
    made: list[str] = []

    def name(suffix: str) -> str:
        made.append(f"odd.{suffix}.{time.monotonic_ns()}")
        return made[-1]

    yield name
    with raw_client(broker) as client:
        for queue in made:
            for dead_letters in (queue, queue + ".dlq"):
                client.send_method(1, commands.Queue.Delete(queue=dead_letters))
                client.expect(commands.Queue.DeleteOk)


def declare(client, queue: str, **arguments) -> None:
    client.send_method(1, commands.Queue.Declare(queue=queue, arguments=arguments or None))
    client.expect(commands.Queue.DeclareOk)


def count(client, queue: str) -> int:
    client.send_method(1, commands.Queue.Declare(queue=queue, passive=True))
    return client.expect(commands.Queue.DeclareOk).message_count


def wait_count(client, queue: str, expected: int) -> int:
    """The queue's message count once it is `expected` (RabbitMQ's queues count a publish
    a moment later), or what it is after 5 s."""
    deadline = time.monotonic() + 5
    while (found := count(client, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def publish(client, queue: str, properties: bytes = PROPERTIES) -> None:
    client.publish_raw(1, "", queue, content_header_payload(len(BODY), FLAGS, properties), [BODY])


def take(client, queue: str) -> tuple[object, bytes]:
    """basic.get (no ack) of one message: (get-ok, its property flags and bytes)."""
    client.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
    method, header, _ = client.read_message()
    return method, header.payload[12:]


def test_management_get_renders_odd_properties_as_rabbitmq(broker, names):
    queue = names("get")
    with raw_client(broker) as client:
        declare(client, queue)
        publish(client, queue)
        assert wait_count(client, queue, 1) == 1
        status, shown = get(broker, queue, "ack_requeue_true")
        assert status == 200, shown
        assert shown == [{**SHOWN, "routing_key": queue, "message_count": 0,
                          "redelivered": False}]
        status, shown = get(broker, queue, "ack_requeue_false", truncate=1)
        assert status == 200, shown
        assert shown[0]["redelivered"] is True and shown[0]["payload"] == "/w=="
        assert shown[0]["properties"] == SHOWN["properties"]
        assert count(client, queue) == 0


@pytest.mark.parametrize("ackmode", ACKMODES)
def test_management_get_settles_odd_messages_as_asked(broker, names, ackmode):
    queue = names("ackmode")
    dead_letters = queue + ".dlq"
    with raw_client(broker) as client:
        declare(client, dead_letters)
        declare(client, queue, **{"x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": dead_letters})
        publish(client, queue)
        assert wait_count(client, queue, 1) == 1
        status, shown = get(broker, queue, ackmode)
        assert status == 200, shown
        assert [message["properties"] for message in shown] == [SHOWN["properties"]]
        if ackmode.endswith("requeue_true"):  # back in the queue, untouched
            assert (count(client, queue), count(client, dead_letters)) == (1, 0)
            method, properties = take(client, queue)
            assert method.redelivered and properties == struct.pack(">H", FLAGS) + PROPERTIES
        elif ackmode == "ack_requeue_false":
            assert (count(client, queue), count(client, dead_letters)) == (0, 0)
        else:
            assert (count(client, queue), wait_count(client, dead_letters, 1)) == (0, 1)
            _, properties = take(client, dead_letters)
            assert_dead_lettered(properties, queue, "rejected")


@pytest.mark.parametrize("reason", ["rejected", "expired", "maxlen"])
def test_dead_lettering_keeps_odd_properties(broker, names, reason):
    queue = names(f"dlx.{reason}")
    dead_letters = queue + ".dlq"
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letters,
                 **{"expired": {"x-message-ttl": 10}, "maxlen": {"x-max-length": 1},
                    "rejected": {}}[reason]}
    with raw_client(broker) as client:
        declare(client, dead_letters)
        declare(client, queue, **arguments)
        publish(client, queue)
        if reason == "rejected":
            client.send_method(1, commands.Basic.Get(queue=queue))
            method, _, _ = client.read_message()
            client.send_method(1, commands.Basic.Reject(delivery_tag=method.delivery_tag,
                                                        requeue=False))
        elif reason == "maxlen":
            publish(client, queue)  # the first one is dropped from the head
        assert wait_count(client, dead_letters, 1) == 1
        _, properties = take(client, dead_letters)
        assert_dead_lettered(properties, queue, reason)


def assert_dead_lettered(properties: bytes, queue: str, reason: str) -> None:
    """RabbitMQ's copy: every property as published but the expiration (moved into x-death),
    the headers table sorted by key bytes with each original entry byte for byte ('L' as
    'l')."""
    assert properties[:2] == struct.pack(">H", FLAGS & ~0x0100)
    assert properties[2:].startswith(BEFORE_HEADERS)
    start = 2 + len(BEFORE_HEADERS)
    end = start + 4 + struct.unpack_from(">I", properties, start)[0]
    expiration = _short(b"600000")
    at = AFTER_HEADERS.index(expiration)
    assert properties[end:] == AFTER_HEADERS[:at] + AFTER_HEADERS[at + len(expiration):]
    entries = _entries(properties, start, end)
    keys = [key for key, _ in entries]
    assert keys == sorted(keys)
    for entry in DEAD_LETTERED_ENTRIES:
        assert (entry[1 : 1 + entry[0]], entry) in entries
    assert {b"x-death", b"x-first-death-exchange", b"x-first-death-queue",
            b"x-first-death-reason"} <= set(keys)
    values = {key: decode_value(entry, 1 + len(key))[0] for key, entry in entries}
    assert values[b"x-first-death-queue"] == ("S", queue.encode())
    assert values[b"x-first-death-reason"] == ("S", reason.encode())
    (tag, death), = values[b"x-death"][1]
    assert tag == "F"
    assert death["queue"] == ("S", queue.encode()) and death["reason"] == ("S", reason.encode())
    assert death["count"] == ("l", 1) and death["original-expiration"] == ("S", b"600000")


def _entries(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """(key, entry bytes) of the table at data[start:end] (its length first)."""
    entries, offset = [], start + 4
    while offset < end:
        key_end = offset + 1 + data[offset]
        _, value_end = decode_value(data, key_end)
        entries.append((data[offset + 1 : key_end], data[offset:value_end]))
        offset = value_end
    return entries



def test_management_get_truncate_is_an_integer(broker, names):
    """truncate as RabbitMQ reads it: an integer (or a string or float that reads as one);
    anything else is a 400 not_integer before any message is taken; a negative one is an empty
    500 — after which RabbitMQ has lost the message (it took and acked it first), Warren not."""
    queue = names("truncate")
    with raw_client(broker) as client:
        declare(client, queue)
        publish(client, queue)
        assert wait_count(client, queue, 1) == 1
        for value in ("abc", None, [1]):
            assert get(broker, queue, "ack_requeue_false", truncate=value) == (
                400, {"error": "bad_request", "reason": ["not_integer", value]})
        assert get(broker, queue, "ack_requeue_false", truncate=-1) == (500, None)
        if not broker.is_warren:
            publish(client, queue)
        assert wait_count(client, queue, 1) == 1
        for value, payload in (("2", "/2I="), (1.5, "/w==")):
            status, shown = get(broker, queue, "ack_requeue_true", truncate=value)
            assert status == 200 and shown[0]["payload"] == payload, shown
