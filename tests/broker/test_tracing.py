"""Firehose tracing as RabbitMQ 3.10.8 has it (broker/tracing.py): the `amq.rabbitmq.trace`
exchange of every vhost, tracing switched per vhost through the management API, and the copies
of publishes (`publish.<exchange>`) and deliveries and gets (`deliver.<queue>`) a queue bound to
that exchange receives, compared byte for byte with the header table RabbitMQ writes. Each
test makes a vhost of its own and deletes it. RabbitMQ's answers are in RABBITMQ_TRACING.md;
run with WARREN_TEST_AMQP_PORT / WARREN_TEST_HTTP_PORT to check them against it.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest
from management_api import q
from pamqp import commands
from pamqp.decode import field_table as decode_field_table
from raw_amqp import RawAMQP, amqp_name, content_header_payload, raw_client

TRACE_EXCHANGE = "amq.rabbitmq.trace"
HEADERS_ONLY = b"\x20\x00"  # the property flags of a trace copy
WAIT = 10.0  # seconds to wait for a copy (RabbitMQ's trace queue takes it asynchronously)


# -- the exact bytes of a field table, written out by hand ----------------------------------

def long_str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return b"S" + struct.pack(">I", len(raw)) + raw


def signed(value: int) -> bytes:
    return b"I" + struct.pack(">i", value)


def array(*values: bytes) -> bytes:
    data = b"".join(values)
    return b"A" + struct.pack(">I", len(data)) + data


def table(*entries: tuple[str, bytes]) -> bytes:
    """A table with its length (no tag): entries are (name, tagged value)."""
    data = b"".join(bytes((len(name),)) + name.encode() + value for name, value in entries)
    return struct.pack(">I", len(data)) + data


def short(text: str) -> bytes:
    return bytes((len(text),)) + text.encode()


# A message with every basic property set, its headers holding several value types.
PUBLISHED_HEADERS = table(
    ("s", long_str("str")), ("i", signed(5)), ("l", b"l" + struct.pack(">q", 2**40)),
    ("arr", array(signed(1), long_str("a"))), ("t", b"F" + table(("x", signed(1)))),
    ("CC", array(long_str("a.c"))),
)
ALL_PROPERTIES = (
    short("text/plain") + short("gzip") + PUBLISHED_HEADERS + bytes((2, 3)) + short("cid")
    + short("rt") + short("60000") + short("mid") + struct.pack(">Q", 1_700_000_000)
    + short("ty") + short("guest") + short("app") + short("cl")
)
ALL_FLAGS = 0xFFFC
# ... and the `properties` table RabbitMQ writes for it: last property first, strings as
# longstr, octets and the timestamp as signedint, the headers table as it came.
TRACED_PROPERTIES = b"F" + table(
    ("cluster_id", long_str("cl")), ("app_id", long_str("app")), ("user_id", long_str("guest")),
    ("type", long_str("ty")), ("timestamp", signed(1_700_000_000)),
    ("message_id", long_str("mid")), ("expiration", long_str("60000")),
    ("reply_to", long_str("rt")), ("correlation_id", long_str("cid")),
    ("priority", signed(3)), ("delivery_mode", signed(2)),
    ("headers", b"F" + PUBLISHED_HEADERS), ("content_encoding", long_str("gzip")),
    ("content_type", long_str("text/plain")),
)


# -- fixtures and helpers -------------------------------------------------------------------

@pytest.fixture
def vhost(api, unique) -> Iterator[str]:
    """A vhost of the test's own, tracing; tracing off and the vhost gone afterwards."""
    name = "trace-" + amqp_name(unique)
    assert api.put(f"/api/vhosts/{q(name)}", {}).status == 201
    assert api.put(f"/api/vhosts/{q(name)}", {"tracing": True}).status == 204
    yield name
    api.put(f"/api/vhosts/{q(name)}", {"tracing": False})
    api.delete(f"/api/vhosts/{q(name)}")


@pytest.fixture
def amqp(broker, vhost) -> Iterator[RawAMQP]:
    """A raw client on the vhost, channel 1 open, with an exclusive queue `traces` bound to
    amq.rabbitmq.trace with '#'."""
    with raw_client(broker, vhost=vhost) as client:
        declare(client, "traces", exclusive=True)
        client.call(1, commands.Queue.Bind(queue="traces", exchange=TRACE_EXCHANGE,
                                           routing_key="#"))
        yield client


def declare(client: RawAMQP, queue: str, **options) -> None:
    reply = client.call(1, commands.Queue.Declare(queue=queue, **options))
    assert isinstance(reply, commands.Queue.DeclareOk), reply


def node_of(api) -> str:
    return api.get("/api/overview").json()["node"]


def connection_name(client: RawAMQP) -> str:
    """RabbitMQ's name of the client's connection: "peer address -> broker address"."""
    local, peer = client.sock.getsockname(), client.sock.getpeername()
    return f"{local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"


def next_trace(client: RawAMQP) -> tuple[str, bytes, bytes]:
    """The next copy in `traces`: (routing key, property bytes, body), the copy checked to
    come from the trace exchange."""
    deadline = time.monotonic() + WAIT
    while True:
        client.send_method(1, commands.Basic.Get(queue="traces", no_ack=True))
        first = client.read_raw_frame()
        method = first.method()
        if isinstance(method, commands.Basic.GetOk):
            break
        assert isinstance(method, commands.Basic.GetEmpty), method
        assert time.monotonic() < deadline, "no trace copy arrived"
        time.sleep(0.05)
    assert method.exchange == TRACE_EXCHANGE
    header = client.read_raw_frame()
    size = struct.unpack_from(">Q", header.payload, 4)[0]
    body = b""
    while len(body) < size:
        body += client.read_raw_frame().payload
    return method.routing_key, header.payload[12:], body


def trace_headers(client: RawAMQP) -> tuple[str, dict, bytes]:
    """The next copy decoded: (routing key, its headers, body)."""
    key, props, body = next_trace(client)
    assert props[:2] == HEADERS_ONLY
    return key, decode_field_table(props[2:])[1], body


def publish(client: RawAMQP, exchange: str, routing_key: str, body: bytes,
            flags: int = 0, props: bytes = b"", channel: int = 1) -> None:
    client.publish_raw(channel, exchange, routing_key,
                       content_header_payload(len(body), flags, props), [body])


# -- the exchange, and the switch -----------------------------------------------------------

def test_trace_exchange_exists_in_a_new_vhost_and_refuses_publishers(api, vhost, broker):
    exchange = api.get(f"/api/exchanges/{q(vhost)}/{TRACE_EXCHANGE}").json()
    assert {key: exchange[key] for key in ("type", "durable", "auto_delete", "internal",
                                           "arguments")} == {
        "type": "topic", "durable": True, "auto_delete": False, "internal": True,
        "arguments": {}}
    with raw_client(broker, vhost=vhost) as client:
        publish(client, TRACE_EXCHANGE, "x", b"forged")
        close = client.expect_channel_close(1)
        assert (close.reply_code, close.reply_text) == (
            403, f"ACCESS_REFUSED - cannot publish to internal exchange '{TRACE_EXCHANGE}' "
                 f"in vhost '{vhost}'")


def test_vhost_tracing_field_follows_the_api_switch(api, unique):
    name = "trace-" + amqp_name(unique)
    path = f"/api/vhosts/{q(name)}"
    try:
        assert api.put(path, {}).status == 201
        assert api.get(path).json()["tracing"] is False
        assert api.put(path, {"tracing": True}).status == 204
        assert api.get(path).json()["tracing"] is True
        assert api.put(path, {}).status == 204  # a PUT without `tracing` leaves it be
        assert api.get(path).json()["tracing"] is True
        assert [v["tracing"] for v in api.get("/api/vhosts").json() if v["name"] == name] == [
            True]
        assert api.put(path, {"tracing": "false"}).status == 204  # the strings are taken too
        assert api.get(path).json()["tracing"] is False
        assert api.put(path, {"tracing": "true"}).status == 204
        assert api.get(path).json()["tracing"] is True
    finally:
        api.put(path, {"tracing": False})
        api.delete(path)


@pytest.mark.parametrize("value", [1, 0, "yes", "TRUE", None, []])
def test_tracing_that_is_not_a_boolean_is_refused_and_changes_nothing(api, unique, value):
    name = "trace-" + amqp_name(unique)
    path = f"/api/vhosts/{q(name)}"
    answer = api.put(path, {"tracing": value})  # a vhost that does not exist: not made
    assert (answer.status, answer.json()) == (
        400, {"error": "bad_request", "reason": ["not_boolean", value]})
    assert api.get(path).status == 404
    try:
        assert api.put(path, {"tracing": True}).status == 201
        assert api.put(path, {"tracing": value}).status == 400
        assert api.get(path).json()["tracing"] is True
    finally:
        api.put(path, {"tracing": False})
        api.delete(path)


def test_a_vhost_made_again_traces_as_its_namesake_did(api, unique):
    """RabbitMQ keeps the names of the vhosts that trace, not the vhosts: one deleted and made
    again with tracing on traces at once."""
    name = "trace-" + amqp_name(unique)
    path = f"/api/vhosts/{q(name)}"
    try:
        assert api.put(path, {"tracing": True}).status == 201
        assert api.delete(path).status == 204
        assert api.put(path, {}).status == 201
        assert api.get(path).json()["tracing"] is True
    finally:
        api.put(path, {"tracing": False})
        api.delete(path)


# -- the copies -----------------------------------------------------------------------------

def test_publish_and_consume_copies_are_rabbitmqs_bytes(api, amqp, vhost):
    declare(amqp, "q")
    amqp.call(1, commands.Exchange.Declare(exchange="x", exchange_type="topic"))
    amqp.call(1, commands.Queue.Bind(queue="q", exchange="x", routing_key="a.*"))
    publish(amqp, "x", "a.b", b"hello", ALL_FLAGS, ALL_PROPERTIES)
    amqp.send_method(1, commands.Basic.Consume(queue="q", consumer_tag="c", no_ack=True))
    amqp.expect(commands.Basic.ConsumeOk, channel=1)
    deliver, header, bodies = amqp.read_message()
    assert header.payload[12:] == struct.pack(">H", ALL_FLAGS) + ALL_PROPERTIES  # untouched

    message = (("exchange_name", long_str("x")),
               ("routing_keys", array(long_str("a.b"), long_str("a.c"))),  # with CC's key
               ("properties", TRACED_PROPERTIES), ("node", long_str(node_of(api))))
    origin = (("vhost", long_str(vhost)), ("connection", long_str(connection_name(amqp))),
              ("channel", signed(1)), ("user", long_str("guest")))
    assert next_trace(amqp) == ("publish.x", HEADERS_ONLY + table(
        *message, *origin, ("routed_queues", array(long_str("q")))), b"hello")
    assert next_trace(amqp) == ("deliver.q", HEADERS_ONLY + table(
        *message, ("redelivered", signed(0)), *origin), b"hello")


def test_default_exchange_and_unroutable_publishes(api, amqp, vhost):
    declare(amqp, "q")
    publish(amqp, "", "q", b"plain")
    publish(amqp, "amq.direct", "nowhere", b"lost")
    node = long_str(node_of(api))
    origin = (("vhost", long_str(vhost)), ("connection", long_str(connection_name(amqp))),
              ("channel", signed(1)), ("user", long_str("guest")))
    assert next_trace(amqp) == ("publish.", HEADERS_ONLY + table(
        ("exchange_name", long_str("")), ("routing_keys", array(long_str("q"))),
        ("properties", b"F" + table()), ("node", node), *origin,
        ("routed_queues", array(long_str("q")))), b"plain")
    assert next_trace(amqp) == ("publish.amq.direct", HEADERS_ONLY + table(
        ("exchange_name", long_str("amq.direct")), ("routing_keys", array(long_str("nowhere"))),
        ("properties", b"F" + table()), ("node", node), *origin,
        ("routed_queues", array())), b"lost")


def test_cc_and_bcc_keys_are_routing_keys_and_bcc_is_not_shown(amqp):
    """The default exchange's routed queues are RabbitMQ's: every routing key (sorted),
    whether a queue has that name or not."""
    declare(amqp, "q")
    headers = table(("BCC", array(long_str("q"))), ("CC", array(long_str("nothing"))))
    publish(amqp, "", "zz", b"bcc", 0x2000, headers)
    key, traced, body = trace_headers(amqp)
    assert (key, body) == ("publish.", b"bcc")
    assert traced["routing_keys"] == ["zz", "nothing", "q"]
    assert traced["properties"] == {"headers": {"CC": ["nothing"]}}
    assert traced["routed_queues"] == ["nothing", "q", "zz"]


def test_routed_queues_are_sorted_by_name(amqp):
    amqp.call(1, commands.Exchange.Declare(exchange="fan", exchange_type="fanout"))
    for name in ("q-c", "q-a", "q-b"):
        declare(amqp, name)
        amqp.call(1, commands.Queue.Bind(queue=name, exchange="fan"))
    publish(amqp, "fan", "", b"fanned")
    assert trace_headers(amqp)[1]["routed_queues"] == ["q-a", "q-b", "q-c"]


def reply_address(amqp: RawAMQP) -> str:
    """Consume replies on channel 1 (consumer tag `replies`), request through a queue
    `requests` and return the reply address the request carries; its copies are taken."""
    declare(amqp, "requests")
    amqp.send_method(1, commands.Basic.Consume(queue="amq.rabbitmq.reply-to", no_ack=True,
                                               consumer_tag="replies"))
    amqp.expect(commands.Basic.ConsumeOk, channel=1)
    publish(amqp, "", "requests", b"request", 0x0200, short("amq.rabbitmq.reply-to"))
    assert trace_headers(amqp)[0] == "publish."
    get_ok = amqp.call(1, commands.Basic.Get(queue="requests", no_ack=True))
    assert isinstance(get_ok, commands.Basic.GetOk)
    header, _ = amqp.read_raw_frame(), amqp.read_raw_frame()
    reply_to = header.payload[15:15 + header.payload[14]].decode()
    assert reply_to.startswith("amq.rabbitmq.reply-to.")
    assert trace_headers(amqp)[0] == "deliver.requests"
    return reply_to


def test_direct_reply_is_traced_as_published_but_not_as_delivered(amqp):
    """A reply to a direct reply-to requester: its publish is traced with the reply key among
    its routing keys (and not among its routed queues); its delivery to the requester is not
    traced."""
    reply_to = reply_address(amqp)
    publish(amqp, "", reply_to, b"reply")
    deliver, _, bodies = amqp.read_message()
    assert (deliver.consumer_tag, bodies[0].payload) == ("replies", b"reply")
    key, traced, body = trace_headers(amqp)
    assert (key, body, traced["routing_keys"], traced["routed_queues"]) == (
        "publish.", b"reply", [reply_to], [])
    publish(amqp, "amq.direct", "marker", b"marker")  # next: no copy of the reply's delivery
    assert trace_headers(amqp)[1]["routing_keys"] == ["marker"]


def test_direct_reply_with_cc_keys_reaches_their_queues_too(api, amqp, vhost):
    """RabbitMQ's default exchange hands a message to the requester of each reply address
    among its routing keys and routes the other keys to queues: a reply with CC `cq` and BCC
    `bq` is also in both queues (its routed_queues), and taking it from `cq` is traced; a
    publish to `cq` with the reply address as a CC key reaches the requester too, under the
    routing key `cq`."""
    reply_to = reply_address(amqp)
    declare(amqp, "cq")
    declare(amqp, "bq")
    shown = table(("CC", array(long_str("cq"))))  # the BCC header is removed
    publish(amqp, "", reply_to, b"reply", 0x2000,
            table(("BCC", array(long_str("bq"))), ("CC", array(long_str("cq")))))
    deliver, header, bodies = amqp.read_message()
    assert (deliver.consumer_tag, deliver.routing_key, bodies[0].payload) == (
        "replies", reply_to, b"reply")
    assert header.payload[12:] == HEADERS_ONLY + shown
    message = (("exchange_name", long_str("")),
               ("routing_keys", array(long_str(reply_to), long_str("cq"), long_str("bq"))),
               ("properties", b"F" + table(("headers", b"F" + shown))),
               ("node", long_str(node_of(api))))
    origin = (("vhost", long_str(vhost)), ("connection", long_str(connection_name(amqp))),
              ("channel", signed(1)), ("user", long_str("guest")))
    assert next_trace(amqp) == ("publish.", HEADERS_ONLY + table(
        *message, *origin, ("routed_queues", array(long_str("bq"), long_str("cq")))), b"reply")
    got = amqp.call(1, commands.Basic.Get(queue="cq", no_ack=True))
    assert isinstance(got, commands.Basic.GetOk)
    amqp.read_raw_frame(), amqp.read_raw_frame()
    assert next_trace(amqp) == ("deliver.cq", HEADERS_ONLY + table(
        *message, ("redelivered", signed(0)), *origin), b"reply")
    assert amqp.call(1, commands.Queue.Declare(queue="bq", passive=True)).message_count == 1

    publish(amqp, "", "cq", b"cc reply", 0x2000, table(("CC", array(long_str(reply_to)))))
    deliver, _, bodies = amqp.read_message()
    assert (deliver.consumer_tag, deliver.routing_key, bodies[0].payload) == (
        "replies", "cq", b"cc reply")
    key, traced, _ = trace_headers(amqp)
    assert (key, traced["routing_keys"], traced["routed_queues"]) == (
        "publish.", ["cq", reply_to], ["cq"])


def transactional_channel(amqp: RawAMQP) -> int:
    """Channel 2 of the client, open and in tx mode."""
    amqp.send_method(2, commands.Channel.Open())
    amqp.expect(commands.Channel.OpenOk, channel=2)
    amqp.send_method(2, commands.Tx.Select())
    amqp.expect(commands.Tx.SelectOk, channel=2)
    return 2


def depth(amqp: RawAMQP, queue: str) -> int:
    return amqp.call(1, commands.Queue.Declare(queue=queue, passive=True)).message_count


def test_a_transactions_publish_is_routed_and_traced_when_published(amqp):
    """RabbitMQ routes (and traces) a publish in a transaction at basic.publish and puts it
    into the queues routing named then at tx.commit: a binding changed in between changes
    nothing; the delivery is traced when it happens, after the commit."""
    tx = transactional_channel(amqp)
    for name in ("q1", "q2"):
        declare(amqp, name)
    amqp.call(1, commands.Exchange.Declare(exchange="x", exchange_type="direct"))
    amqp.call(1, commands.Queue.Bind(queue="q1", exchange="x", routing_key="k"))
    publish(amqp, "x", "k", b"in tx", channel=tx)
    key, traced, body = trace_headers(amqp)  # before tx.commit
    assert (key, body, traced["channel"], traced["routed_queues"]) == (
        "publish.x", b"in tx", tx, ["q1"])
    assert depth(amqp, "q1") == 0
    amqp.call(1, commands.Queue.Bind(queue="q2", exchange="x", routing_key="k"))
    amqp.call(1, commands.Queue.Unbind(queue="q1", exchange="x", routing_key="k"))
    amqp.send_method(tx, commands.Tx.Commit())
    amqp.expect(commands.Tx.CommitOk, channel=tx)
    assert (depth(amqp, "q1"), depth(amqp, "q2")) == (1, 0)
    get_ok = amqp.call(1, commands.Basic.Get(queue="q1", no_ack=True))
    assert isinstance(get_ok, commands.Basic.GetOk)
    amqp.read_raw_frame(), amqp.read_raw_frame()
    key, traced, body = trace_headers(amqp)
    assert (key, body, traced["routing_keys"]) == ("deliver.q1", b"in tx", ["k"])


def test_a_rolled_back_publish_stays_traced_and_is_never_delivered(amqp):
    tx = transactional_channel(amqp)
    declare(amqp, "q")
    publish(amqp, "", "q", b"rolled back", channel=tx)
    assert trace_headers(amqp)[::2] == ("publish.", b"rolled back")  # before tx.rollback
    amqp.send_method(tx, commands.Tx.Rollback())
    amqp.expect(commands.Tx.RollbackOk, channel=tx)
    publish(amqp, "", "q", b"kept", channel=tx)
    amqp.send_method(tx, commands.Tx.Commit())
    amqp.expect(commands.Tx.CommitOk, channel=tx)
    assert depth(amqp, "q") == 1
    amqp.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    _, _, bodies = amqp.read_message()
    assert bodies[0].payload == b"kept"
    assert [trace_headers(amqp)[::2] for _ in range(2)] == [
        ("publish.", b"kept"), ("deliver.q", b"kept")]


def test_a_direct_reply_in_a_transaction_is_delivered_when_published(amqp):
    """RabbitMQ's default exchange hands a reply over while routing, which a transaction does
    at basic.publish: the requester has it before tx.commit, and a rollback does not take it
    back."""
    reply_to = reply_address(amqp)
    tx = transactional_channel(amqp)
    publish(amqp, "", reply_to, b"reply", channel=tx)
    deliver, _, bodies = amqp.read_message()
    assert (deliver.consumer_tag, bodies[0].payload) == ("replies", b"reply")
    key, traced, _ = trace_headers(amqp)
    assert (key, traced["routing_keys"], traced["routed_queues"]) == (
        "publish.", [reply_to], [])
    amqp.send_method(tx, commands.Tx.Rollback())
    amqp.expect(commands.Tx.RollbackOk, channel=tx)


def test_timestamp_is_traced_as_its_low_32_bits(amqp):
    declare(amqp, "q")
    publish(amqp, "", "q", b"late", 0x0040, struct.pack(">Q", 2**33 + 7))
    _, traced, _ = trace_headers(amqp)
    assert traced["properties"] == {"timestamp": 7}


def test_get_and_redelivery_are_traced_with_the_redelivered_flag(amqp):
    declare(amqp, "q")
    publish(amqp, "", "q", b"again")
    assert trace_headers(amqp)[0] == "publish."
    get_ok = amqp.call(1, commands.Basic.Get(queue="q"))
    assert isinstance(get_ok, commands.Basic.GetOk)
    amqp.read_raw_frame(), amqp.read_raw_frame()  # its header and body
    amqp.send_method(1, commands.Basic.Nack(delivery_tag=get_ok.delivery_tag, requeue=True))
    amqp.send_method(1, commands.Basic.Get(queue="q", no_ack=True))
    again, _, _ = amqp.read_message()
    assert again.redelivered
    first, second = trace_headers(amqp), trace_headers(amqp)
    assert (first[0], first[1]["redelivered"], first[2]) == ("deliver.q", 0, b"again")
    assert (second[0], second[1]["redelivered"], second[2]) == ("deliver.q", 1, b"again")


def test_taking_a_copy_is_not_traced_and_tracing_off_copies_nothing(api, amqp, vhost):
    """Copies travel in channel order: after the copies taken, the next one in the queue is
    the marker's, not a copy of a copy's delivery; after tracing is switched off, the next
    copy is that of the publish made after it is switched on again."""
    publish(amqp, "amq.direct", "first", b"1")
    assert trace_headers(amqp)[1]["routing_keys"] == ["first"]  # taking it: not traced
    publish(amqp, "amq.direct", "marker", b"2")
    assert trace_headers(amqp)[1]["routing_keys"] == ["marker"]
    assert api.put(f"/api/vhosts/{q(vhost)}", {"tracing": False}).status == 204
    assert api.get(f"/api/vhosts/{q(vhost)}").json()["tracing"] is False
    publish(amqp, "amq.direct", "untraced", b"3")
    amqp.call(1, commands.Queue.Declare(queue="traces", passive=True))  # the publish is in
    assert api.put(f"/api/vhosts/{q(vhost)}", {"tracing": True}).status == 204
    publish(amqp, "amq.direct", "traced", b"4")
    assert trace_headers(amqp)[1]["routing_keys"] == ["traced"]


def test_api_publish_and_get_are_traced_as_the_apis_user(api, amqp, vhost):
    declare(amqp, "q")
    answer = api.post(f"/api/exchanges/{q(vhost)}/amq.default/publish", {
        "properties": {}, "routing_key": "q", "payload": "via api",
        "payload_encoding": "string"})
    assert answer.json() == {"routed": True}
    got = api.post(f"/api/queues/{q(vhost)}/q/get", {
        "count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert [message["payload"] for message in got.json()] == ["via api"]
    for expected_key in ("publish.", "deliver.q"):
        key, traced, body = trace_headers(amqp)
        assert (key, body) == (expected_key, b"via api")
        # RabbitMQ's API uses an internal connection, named after an Erlang process
        assert traced["connection"].startswith("<")
        assert (traced["channel"], traced["user"], traced["vhost"]) == (1, "guest", vhost)


def test_quorum_deliveries_are_traced_with_their_delivery_count(amqp):
    """The properties traced for a delivery are those delivered: a quorum queue's
    x-delivery-count (a get always has it; a consumer's delivery once it has come back)."""
    declare(amqp, "qq", durable=True, arguments={"x-queue-type": "quorum"})
    amqp.call(1, commands.Confirm.Select())
    publish(amqp, "", "qq", b"counted", 0x2000, table(("a", signed(1))))
    amqp.expect(commands.Basic.Ack, channel=1)
    get_ok = amqp.call(1, commands.Basic.Get(queue="qq"))
    assert isinstance(get_ok, commands.Basic.GetOk)
    amqp.read_raw_frame(), amqp.read_raw_frame()
    amqp.send_method(1, commands.Basic.Nack(delivery_tag=get_ok.delivery_tag, requeue=True))
    amqp.send_method(1, commands.Basic.Consume(queue="qq", consumer_tag="c", no_ack=True))
    amqp.expect(commands.Basic.ConsumeOk, channel=1)
    amqp.read_message()

    def traced_properties(count: int) -> bytes:
        return short("properties") + b"F" + table(("headers", b"F" + table(
            ("a", signed(1)), ("x-delivery-count", b"l" + struct.pack(">q", count)))))

    assert next_trace(amqp)[0] == "publish."
    for count in (0, 1):
        key, props, _ = next_trace(amqp)
        assert key == "deliver.qq"
        assert traced_properties(count) in props


def test_stream_deliveries_are_traced_with_their_offset(amqp):
    """A stream's deliveries (records read back from its log) are traced like any other, with
    the x-stream-offset they are delivered with."""
    declare(amqp, "st", durable=True, arguments={"x-queue-type": "stream"})
    amqp.call(1, commands.Confirm.Select())
    publish(amqp, "", "st", b"streamed", 0x2000, table(("a", signed(1))))
    amqp.expect(commands.Basic.Ack, channel=1)
    assert next_trace(amqp)[0] == "publish."
    amqp.call(1, commands.Basic.Qos(prefetch_count=10))
    amqp.send_method(1, commands.Basic.Consume(queue="st", consumer_tag="reader",
                                               arguments={"x-stream-offset": "first"}))
    amqp.expect(commands.Basic.ConsumeOk, channel=1)
    deliver, _, bodies = amqp.read_message()
    assert bodies[0].payload == b"streamed"
    amqp.send_method(1, commands.Basic.Ack(delivery_tag=deliver.delivery_tag))
    key, props, body = next_trace(amqp)
    assert (key, body) == ("deliver.st", b"streamed")
    assert short("routing_keys") + array(long_str("st")) in props
    assert short("properties") + b"F" + table(("headers", b"F" + table(
        ("a", signed(1)), ("x-stream-offset", b"l" + struct.pack(">q", 0))))) in props


def test_copies_reach_the_trace_exchanges_alternate_exchange(api, amqp, vhost):
    """With nothing bound to amq.rabbitmq.trace but an alternate exchange set by a policy,
    the copies go there (so they are made)."""
    amqp.call(1, commands.Queue.Unbind(queue="traces", exchange=TRACE_EXCHANGE,
                                       routing_key="#"))
    amqp.call(1, commands.Exchange.Declare(exchange="ae", exchange_type="fanout"))
    declare(amqp, "via-ae")
    amqp.call(1, commands.Queue.Bind(queue="via-ae", exchange="ae"))
    policy = {"pattern": "^amq\\.rabbitmq\\.trace$", "apply-to": "exchanges",
              "definition": {"alternate-exchange": "ae"}}
    assert api.put(f"/api/policies/{q(vhost)}/trace-ae", policy).status == 201
    # RabbitMQ's channels keep the trace exchange as it was when tracing was switched on
    for tracing in (False, True):
        assert api.put(f"/api/vhosts/{q(vhost)}", {"tracing": tracing}).status == 204
    deadline = time.monotonic() + WAIT
    while True:  # RabbitMQ applies a policy asynchronously
        publish(amqp, "amq.direct", "probe", b"probe")
        got = amqp.call(1, commands.Basic.Get(queue="via-ae", no_ack=True))
        if isinstance(got, commands.Basic.GetOk):
            amqp.read_raw_frame(), amqp.read_raw_frame()
            break
        assert time.monotonic() < deadline, "no copy reached the alternate exchange"
        time.sleep(0.1)
    assert got.routing_key == "publish.amq.direct"
