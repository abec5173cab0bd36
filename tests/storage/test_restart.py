"""Clean restarts: SIGTERM, then a new Warren process on the same data dir and port.

What survives is RabbitMQ 3.10.8's behaviour, checked by restarting a private RabbitMQ node
(`rabbitmqctl stop`, start again) with the same declarations:
- durable exchanges of every type, with their arguments (the alternate exchange still works;
  redeclaring with other arguments gets the same 406 texts, argument types included: pika's
  ints are 'signedint'); non-durable ones are gone;
- durable queues with their arguments; non-durable and exclusive queues are gone; a durable
  auto-delete queue that never had a consumer stays, one whose consumer was still attached at
  shutdown is deleted (the shutdown closes the consumer's connection); a durable auto-delete
  exchange stays even when its only binding was to a queue that did not survive;
- bindings between durable objects (queue and exchange-to-exchange); others are gone;
- persistent messages in durable queues: acked ones gone, delivered-but-unacked ones back
  with redelivered=True, never-delivered ones redelivered=False, in their original order,
  properties intact; transient messages are gone;
- users, vhosts and permissions (Warren keeps them in its definitions file).
SIGTERM and SIGINT close every connection with 320 "CONNECTION_FORCED - broker forced
connection closure with reason 'shutdown'" (RabbitMQ's exact text) and exit with code 0.
"""

from __future__ import annotations

import json
import signal
import threading

import pika
import pika.exceptions
import pytest
from client_helpers import close_quietly
from warren_process import (
    PERSISTENT,
    SHUTDOWN_TEXT,
    TEST_DEFINITIONS,
    TRANSIENT,
    get_all,
    passive_exchange_exists,
    passive_queue_exists,
    publish_confirmed,
)


def channel_error(action) -> tuple[int, str]:
    try:
        action()
    except pika.exceptions.ChannelClosedByBroker as error:
        return error.reply_code, error.reply_text
    raise AssertionError("the broker did not close the channel")


def bodies(found) -> list[bytes]:
    return [got.body for got in found]


# -- exchanges --------------------------------------------------------------------------------


EXCHANGE_TYPES = ["direct", "fanout", "topic", "headers"]


def test_durable_exchanges_of_each_type_survive_with_their_arguments(node):
    with node.channel() as ch:
        ch.exchange_declare("ae", "fanout", durable=True)
        ch.queue_declare("ae-q", durable=True)
        ch.queue_bind("ae-q", "ae")
        for kind in EXCHANGE_TYPES:
            ch.exchange_declare(f"x.{kind}", kind, durable=True,
                                arguments={"alternate-exchange": "ae"})
        ch.exchange_declare("x.internal", "topic", durable=True, internal=True)
        ch.exchange_declare("x.transient", "direct", durable=False)
        ch.exchange_declare("x.autodelete", "direct", durable=True, auto_delete=True)

    node.restart()

    connection = node.connect()
    try:
        for kind in EXCHANGE_TYPES:
            assert passive_exchange_exists(connection, f"x.{kind}")
        assert passive_exchange_exists(connection, "x.internal")
        assert passive_exchange_exists(connection, "x.autodelete")
        assert not passive_exchange_exists(connection, "x.transient")

        ch = connection.channel()
        for kind in EXCHANGE_TYPES:  # the same declaration is still equivalent
            ch.exchange_declare(f"x.{kind}", kind, durable=True,
                                arguments={"alternate-exchange": "ae"})
        ch.exchange_declare("x.internal", "topic", durable=True, internal=True)
        ch.exchange_declare("x.autodelete", "direct", durable=True, auto_delete=True)

        assert channel_error(lambda: connection.channel().exchange_declare(
            "x.direct", "topic", durable=True, arguments={"alternate-exchange": "ae"},
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x.direct' in "
                    "vhost '/': received 'topic' but current is 'direct'")
        assert channel_error(lambda: connection.channel().exchange_declare(
            "x.fanout", "fanout", durable=False, arguments={"alternate-exchange": "ae"},
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'x.fanout' "
                    "in vhost '/': received 'false' but current is 'true'")
        assert channel_error(lambda: connection.channel().exchange_declare(
            "x.topic", "topic", durable=True, arguments={"alternate-exchange": "other"},
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
                    "'x.topic' in vhost '/': received 'other' but current is 'ae'")
        assert channel_error(lambda: connection.channel().exchange_declare(
            "x.headers", "headers", durable=True,
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange "
                    "'x.headers' in vhost '/': received none but current is the value 'ae' of "
                    "type 'longstr'")

        # The alternate exchange still catches what the exchanges cannot route.
        ch = connection.channel()
        ch.confirm_delivery()
        for kind in EXCHANGE_TYPES:
            ch.basic_publish(f"x.{kind}", "nowhere", kind.encode(), PERSISTENT)
        assert sorted(bodies(get_all(ch, "ae-q"))) == sorted(k.encode() for k in EXCHANGE_TYPES)

        # Still internal: clients may not publish to it.
        internal = connection.channel()
        internal.basic_publish("x.internal", "k", b"x")
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            internal.basic_get("ae-q")
        assert closed.value.args == (
            403, "ACCESS_REFUSED - cannot publish to internal exchange 'x.internal' in vhost '/'"
        )
    finally:
        close_quietly(connection)


def test_bindings_between_durable_objects_survive(node):
    with node.channel() as ch:
        for kind in EXCHANGE_TYPES:
            ch.exchange_declare(f"b.{kind}", kind, durable=True)
        for name in ("direct-q", "fanout-q", "topic-q", "headers-q", "e2e-q", "unbound-q"):
            ch.queue_declare(name, durable=True)
        ch.queue_declare("transient-q", durable=False)
        ch.exchange_declare("b.transient", "fanout", durable=False)
        ch.queue_bind("direct-q", "b.direct", "k1")
        ch.queue_bind("direct-q", "b.direct", "k2")
        ch.queue_bind("transient-q", "b.direct", "k1")
        ch.queue_bind("fanout-q", "b.fanout")
        ch.queue_bind("topic-q", "b.topic", "a.*.c")
        ch.queue_bind("topic-q", "b.topic", "#.z")
        ch.queue_bind("headers-q", "b.headers",
                      arguments={"x-match": "all", "colour": "red", "size": 3})
        ch.exchange_bind("b.fanout", "b.direct", "to-fanout")  # e2e: direct -> fanout
        ch.exchange_bind("b.transient", "b.direct", "to-transient")
        ch.queue_bind("e2e-q", "b.transient")
        ch.queue_bind("unbound-q", "b.direct", "k1")
        ch.queue_unbind("unbound-q", "b.direct", "k1")

    node.restart()

    connection = node.connect()
    try:
        assert not passive_queue_exists(connection, "transient-q")
        assert not passive_exchange_exists(connection, "b.transient")
        ch = connection.channel()
        ch.confirm_delivery()

        def publish(exchange, key, body, headers=None):
            properties = pika.BasicProperties(delivery_mode=2, headers=headers)
            ch.basic_publish(exchange, key, body, properties)

        publish("b.direct", "k1", b"d1")
        publish("b.direct", "k2", b"d2")
        publish("b.direct", "k3", b"d3-nowhere")
        publish("b.direct", "to-fanout", b"via-e2e")
        publish("b.direct", "to-transient", b"lost")
        publish("b.fanout", "", b"f")
        publish("b.topic", "a.b.c", b"t1")
        publish("b.topic", "x.y.z", b"t2")
        publish("b.topic", "a.b", b"t3-nowhere")
        publish("b.headers", "", b"h1", {"colour": "red", "size": 3, "extra": "x"})
        publish("b.headers", "", b"h2-nowhere", {"colour": "red"})

        assert bodies(get_all(ch, "direct-q")) == [b"d1", b"d2"]
        assert bodies(get_all(ch, "fanout-q")) == [b"via-e2e", b"f"]
        assert bodies(get_all(ch, "topic-q")) == [b"t1", b"t2"]
        assert bodies(get_all(ch, "headers-q")) == [b"h1"]
        assert bodies(get_all(ch, "unbound-q")) == []
        assert bodies(get_all(ch, "e2e-q")) == []
    finally:
        close_quietly(connection)


# -- queues -----------------------------------------------------------------------------------


def test_durable_queue_arguments_survive(node):
    arguments = {"x-max-length": 3, "x-message-ttl": 600000, "x-queue-mode": "lazy"}
    with node.channel() as ch:
        ch.queue_declare("args-q", durable=True, arguments=arguments)
        publish_confirmed(ch, "args-q", [b"a", b"b", b"c", b"d"])  # "a" is dropped

    node.restart()

    connection = node.connect()
    try:
        ch = connection.channel()
        ch.queue_declare("args-q", durable=True, arguments=arguments)  # still equivalent
        assert channel_error(lambda: connection.channel().queue_declare(
            "args-q", durable=True, arguments={**arguments, "x-max-length": 4},
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'args-q' "
                    "in vhost '/': received '4' but current is '3'")
        assert channel_error(lambda: connection.channel().queue_declare(
            "args-q", durable=True, arguments={"x-max-length": 3, "x-queue-mode": "lazy"},
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'args-q' "
                    "in vhost '/': received none but current is the value '600000' of type "
                    "'signedint'")
        assert channel_error(lambda: connection.channel().queue_declare(
            "args-q", durable=False, arguments=arguments,
        )) == (406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'args-q' in "
                    "vhost '/': received 'false' but current is 'true'")

        ch = connection.channel()
        assert bodies(get_all(ch, "args-q", ack=False)) == [b"b", b"c", b"d"]
        ch.close()
        # x-max-length still applies (drop-head).
        ch = connection.channel()
        publish_confirmed(ch, "args-q", [b"1", b"2"])
        assert bodies(get_all(ch, "args-q")) == [b"d", b"1", b"2"]
    finally:
        close_quietly(connection)


def test_which_queues_survive(node):
    """Durable stays; non-durable and exclusive go; durable auto-delete stays unless a consumer
    was still attached when the broker stopped (RabbitMQ deletes it as the consumer goes)."""
    keeper = node.connect()
    ch = keeper.channel()
    ch.queue_declare("durable-q", durable=True)
    ch.queue_declare("transient-q", durable=False)
    ch.queue_declare("exclusive-durable-q", durable=True, exclusive=True)
    ch.queue_declare("autodelete-idle-q", durable=True, auto_delete=True)
    ch.queue_declare("autodelete-consumed-q", durable=True, auto_delete=True)
    ch.basic_consume("autodelete-consumed-q", lambda *args: None)
    ch.exchange_declare("autodelete-x", "direct", durable=True, auto_delete=True)
    ch.queue_bind("transient-q", "autodelete-x", "k")  # its only binding does not survive

    assert node.stop_with_clients([keeper]) == [(320, SHUTDOWN_TEXT)]
    node.start()

    connection = node.connect()
    try:
        assert passive_queue_exists(connection, "durable-q")
        assert passive_queue_exists(connection, "autodelete-idle-q")
        assert not passive_queue_exists(connection, "transient-q")
        assert not passive_queue_exists(connection, "exclusive-durable-q")
        assert not passive_queue_exists(connection, "autodelete-consumed-q")
        assert passive_exchange_exists(connection, "autodelete-x")
        # The exclusive queue's name is free for anyone now.
        connection.channel().queue_declare("exclusive-durable-q", durable=True)
    finally:
        close_quietly(connection)


def test_deleted_and_purged_queues_stay_empty(node):
    with node.channel() as ch:
        ch.queue_declare("deleted-q", durable=True)
        ch.queue_declare("purged-q", durable=True)
        publish_confirmed(ch, "deleted-q", [b"old-1", b"old-2"])
        publish_confirmed(ch, "purged-q", [b"old-1", b"old-2"])
        ch.queue_delete("deleted-q")
        ch.queue_purge("purged-q")
        ch.queue_declare("deleted-q", durable=True)
        publish_confirmed(ch, "deleted-q", [b"new"])
        publish_confirmed(ch, "purged-q", [b"new"])

    node.restart()

    with node.channel() as ch:
        assert bodies(get_all(ch, "deleted-q")) == [b"new"]
        assert bodies(get_all(ch, "purged-q")) == [b"new"]


# -- messages ---------------------------------------------------------------------------------


def test_messages_after_a_clean_restart(node):
    """Acked or discarded (nack without requeue): gone. Delivered, not acked at shutdown:
    redelivered=True. Rejected with requeue: redelivered=True. Never delivered:
    redelivered=False. Transient: gone. Order kept."""
    holder = node.connect()
    ch = holder.channel()
    ch.queue_declare("m", durable=True)
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", "m", f"p{i}".encode(), PERSISTENT)
        if i % 3 == 0:
            ch.basic_publish("", "m", f"t{i}".encode(), TRANSIENT)
    method, _, body = ch.basic_get("m")
    assert body == b"p0"
    ch.basic_ack(method.delivery_tag)
    method, _, body = ch.basic_get("m")
    assert body == b"t0"
    ch.basic_ack(method.delivery_tag)
    held, _, body = ch.basic_get("m")
    assert body == b"p1"  # stays unacked until the broker stops
    method, _, body = ch.basic_get("m")
    assert body == b"p2"
    ch.basic_nack(method.delivery_tag, requeue=False)  # discarded
    method, _, body = ch.basic_get("m")
    assert body == b"p3"
    ch.basic_reject(method.delivery_tag, requeue=True)

    assert node.stop_with_clients([holder]) == [(320, SHUTDOWN_TEXT)]
    node.start()

    with node.channel() as ch:
        found = get_all(ch, "m")
    assert [(got.body, got.redelivered) for got in found] == [
        (b"p1", True), (b"p3", True),
        *((f"p{i}".encode(), False) for i in range(4, 10)),
    ]


def test_message_contents_survive(node):
    properties = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"str": "value", "int": 42, "nested": {"list": [1, "two"]}, "bool": True},
        delivery_mode=2, priority=7, correlation_id="corr-1", reply_to="replies",
        expiration="3600000", message_id="msg-1", timestamp=1_700_000_000, type="kind",
        user_id="guest", app_id="tests",
    )
    big = bytes(range(256)) * 4096  # 1 MiB: several body frames
    with node.channel() as ch:
        ch.exchange_declare("contents-x", "direct", durable=True)
        ch.queue_declare("contents-q", durable=True)
        ch.queue_bind("contents-q", "contents-x", "the.key")
        ch.confirm_delivery()
        ch.basic_publish("contents-x", "the.key", b'{"a": 1}', properties)
        ch.basic_publish("contents-x", "the.key", big, PERSISTENT)
        ch.basic_publish("contents-x", "the.key", b"", PERSISTENT)

    node.restart()

    with node.channel() as ch:
        first, second, third = get_all(ch, "contents-q")
    assert (first.exchange, first.routing_key) == ("contents-x", "the.key")
    assert first.body == b'{"a": 1}'
    for name in ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                 "user_id", "app_id"):
        assert getattr(first.properties, name) == getattr(properties, name), name
    assert second.body == big
    assert third.body == b""


def test_fanned_out_message_is_kept_per_queue(node):
    with node.channel() as ch:
        ch.exchange_declare("fan", "fanout", durable=True)
        for name in ("fan-1", "fan-2"):
            ch.queue_declare(name, durable=True)
            ch.queue_bind(name, "fan")
        ch.queue_declare("fan-transient", durable=False)
        ch.queue_bind("fan-transient", "fan")
        publish_confirmed(ch, "", [b"a", b"b", b"c"], exchange="fan")
        assert bodies(get_all(ch, "fan-1")) == [b"a", b"b", b"c"]  # acked in fan-1 only

    node.restart()

    with node.channel() as ch:
        assert get_all(ch, "fan-1") == []
        assert [(got.body, got.redelivered) for got in get_all(ch, "fan-2")] == [
            (b"a", False), (b"b", False), (b"c", False),
        ]


def test_transactions(node):
    """Committed: kept. Rolled back or never committed: gone."""
    connection = node.connect()
    ch = connection.channel()
    ch.queue_declare("tx-q", durable=True)
    ch.tx_select()
    ch.basic_publish("", "tx-q", b"committed-1", PERSISTENT)
    ch.basic_publish("", "tx-q", b"committed-2", PERSISTENT)
    ch.tx_commit()
    ch.basic_publish("", "tx-q", b"rolled-back", PERSISTENT)
    ch.tx_rollback()
    ch.basic_publish("", "tx-q", b"never-committed", PERSISTENT)

    assert node.stop_with_clients([connection]) == [(320, SHUTDOWN_TEXT)]
    node.start()

    with node.channel() as ch:
        assert bodies(get_all(ch, "tx-q")) == [b"committed-1", b"committed-2"]


def test_two_restarts_in_a_row(node):
    with node.channel() as ch:
        ch.queue_declare("twice", durable=True)
        publish_confirmed(ch, "twice", [b"1", b"2", b"3"])
        method, _, _ = ch.basic_get("twice")
        ch.basic_ack(method.delivery_tag)

    node.restart()
    node.restart()

    with node.channel() as ch:
        assert [(got.body, got.redelivered) for got in get_all(ch, "twice")] == [
            (b"2", False), (b"3", False),
        ]


# -- users, vhosts, permissions ---------------------------------------------------------------


def test_users_vhosts_and_permissions_survive(node_factory, tmp_path):
    """Loaded once with --load-definitions, then restarted without it."""
    definitions = json.loads(TEST_DEFINITIONS.read_text())
    definitions["vhosts"].append({"name": "v1"})
    definitions["permissions"] += [
        {"user": "limited", "vhost": "v1", "configure": "^limited-", "write": "^limited-",
         "read": "^limited-"},
        {"user": "guest", "vhost": "v1", "configure": ".*", "write": ".*", "read": ".*"},
    ]
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(definitions))
    node = node_factory().start(load_definitions=path)
    with node.channel(virtual_host="v1") as ch:
        ch.queue_declare("limited-q", durable=True)
        publish_confirmed(ch, "limited-q", [b"in v1"])
    with node.channel() as ch:
        ch.queue_declare("limited-q", durable=True)
        publish_confirmed(ch, "limited-q", [b"in /"])

    node.restart()  # no --load-definitions this time

    limited = pika.PlainCredentials("limited", "limited")
    with node.channel(virtual_host="v1", credentials=limited) as ch:
        assert bodies(get_all(ch, "limited-q")) == [b"in v1"]
        assert channel_error(lambda: ch.queue_declare("not-limited-q")) == (
            403, "ACCESS_REFUSED - access to queue 'not-limited-q' in vhost 'v1' refused for "
                 "user 'limited'"
        )
    with node.channel(credentials=limited) as ch:
        assert bodies(get_all(ch, "limited-q")) == [b"in /"]
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        node.connect(virtual_host="v1", credentials=pika.PlainCredentials("noperm", "noperm"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        node.connect(credentials=pika.PlainCredentials("limited", "wrong"))


# -- shutdown ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_closes_connections_with_320_and_exits_0(node, sig):
    connections = [node.connect() for _ in range(3)]
    consumer = connections[0].channel()
    consumer.queue_declare("shutdown-q", durable=True)
    publish_confirmed(connections[1].channel(), "shutdown-q", [b"1", b"2", b"3"])
    consumer.basic_qos(prefetch_count=2)
    delivered = []
    consumer.basic_consume("shutdown-q", lambda _ch, method, _p, body: delivered.append(body))
    while len(delivered) < 2:
        connections[0].process_data_events(time_limit=0.1)

    assert node.stop_with_clients(connections, sig) == [(320, SHUTDOWN_TEXT)] * 3
    log = node.log_text()
    assert "Traceback" not in log
    assert log.rstrip().splitlines()[-1].endswith("stopped"), log[-2000:]

    node.start()
    with node.channel() as ch:
        assert [(got.body, got.redelivered) for got in get_all(ch, "shutdown-q")] == [
            (b"1", True), (b"2", True), (b"3", False),
        ]


def test_shutdown_while_publishing_keeps_every_confirmed_message(node):
    """Confirms received before the close are for messages that come back."""
    with node.channel() as ch:
        ch.queue_declare("publishing-q", durable=True)
    connection = node.connect()
    ch = connection.channel()
    ch.confirm_delivery()
    confirmed = []
    timer = threading.Timer(0.3, node.process.send_signal, [signal.SIGTERM])
    timer.start()
    try:
        for i in range(100_000):
            ch.basic_publish("", "publishing-q", str(i).encode(), PERSISTENT)
            confirmed.append(str(i).encode())
    except pika.exceptions.ConnectionClosedByBroker as error:
        assert (error.reply_code, error.reply_text) == (320, SHUTDOWN_TEXT)
    finally:
        timer.cancel()
    assert node.process.wait(10) == 0
    assert confirmed, "nothing was confirmed before the shutdown"

    node.start()
    with node.channel() as ch:
        found = get_all(ch, "publishing-q")
    # Every confirmed message, in order; perhaps the one whose confirm the close overtook.
    assert bodies(found)[: len(confirmed)] == confirmed
    assert len(found) <= len(confirmed) + 1
    assert not any(got.redelivered for got in found)



def test_a_garbled_definitions_file_stops_the_start_with_a_clear_error(node_factory):
    """The broker's own definitions file is not JSON (edited by hand, say): Warren refuses to
    start with exit code 1 and says which file and why, rather than a traceback."""
    node = node_factory().start()
    node.stop()
    definitions = node.data_dir / "definitions.json"
    assert definitions.exists()
    definitions.write_text('{"users": [')
    node.start(wait=False)
    assert node.process.wait(20) == 1
    log = node.log_text()
    assert f"cannot start: {definitions} is unreadable" in log
    assert "Traceback" not in log


def test_load_definitions_that_are_not_a_json_object_stop_the_start(node_factory, tmp_path):
    """--load-definitions with JSON that is not an object (a list): exit code 1 and a clear
    error naming the file, rather than a traceback."""
    path = tmp_path / "definitions.json"
    path.write_text("[]")
    node = node_factory().start(load_definitions=path, wait=False)
    assert node.process.wait(20) == 1
    log = node.log_text()
    assert f"cannot start: cannot read definitions from {path}: not a JSON object" in log
    assert "Traceback" not in log


def test_load_definitions_with_a_parameter_warren_has_not_stop_the_start(node_factory, tmp_path):
    """--load-definitions with a runtime parameter of a component Warren does not have (a
    federation upstream from a RabbitMQ export): refused with RabbitMQ's 'component ... not
    found', exit code 1, rather than loaded without it."""
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps({"parameters": [{
        "vhost": "/", "component": "federation-upstream", "name": "up",
        "value": {"uri": "amqp://elsewhere"}}]}))
    node = node_factory().start(load_definitions=path, wait=False)
    assert node.process.wait(20) == 1
    log = node.log_text()
    assert ("cannot start: parameter //federation-upstream/up: component federation-upstream "
            "not found") in log
    assert "Traceback" not in log

