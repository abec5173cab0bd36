"""x-queue-type: RabbitMQ 3.10 knows `classic`, `quorum` and `stream` and refuses anything else
with a 406 (see RABBITMQ_ANSWERS.md). Warren runs classic queues only, so until it has quorum
and stream queues it refuses them with a 406 of the same shape, naming the missing support,
instead of silently declaring a classic queue; the management API (PUT /api/queues, definitions
import) refuses them with a 400, as it maps every refused declare."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import pika
import pytest
from client_helpers import channel_error, opened
from raw_amqp import amqp_name

from broker.auth import hash_password

REFERENCE = bool(os.environ.get("WARREN_TEST_AMQP_PORT"))
warren_only = pytest.mark.skipif(REFERENCE, reason="RabbitMQ runs quorum and stream queues")


def invalid_queue_type(queue: str, term: str) -> tuple[int, str]:
    return 406, (f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{queue}' in "
                 f"vhost '/': {term}")


@pytest.mark.parametrize(("value", "term"), [
    ("foo", "\"unsupported queue type 'foo'\""),
    ("Classic", "\"unsupported queue type 'Classic'\""),
    ("", "\"unsupported queue type ''\""),
    (7, "{unacceptable_type,signedint}"),
    (True, "{unacceptable_type,bool}"),
], ids=["foo", "Classic", "empty", "integer", "bool"])
def test_an_unknown_queue_type_is_refused_as_rabbitmq_does(connection, unique, value, term):
    queue = amqp_name(unique)
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        queue, durable=True, arguments={"x-queue-type": value})) == invalid_queue_type(queue, term)


def test_the_queue_type_is_checked_before_the_other_arguments(connection, unique):
    queue = amqp_name(unique)
    channel = connection.channel()
    arguments = {"x-max-priority": "high", "x-queue-type": "foo"}
    assert channel_error(lambda: channel.queue_declare(queue, arguments=arguments)) == (
        invalid_queue_type(queue, "\"unsupported queue type 'foo'\""))


def test_a_classic_queue_type_is_a_classic_queue(channel, unique):
    queue = amqp_name(unique)
    declared = channel.queue_declare(queue, arguments={"x-queue-type": "classic"})
    assert declared.method.queue == queue
    channel.queue_delete(queue)


@warren_only
@pytest.mark.parametrize("queue_type", ["quorum"])  # streams are built (tests/queue_types)
def test_quorum_and_stream_queues_are_refused_until_implemented(broker, connection, unique,
                                                                queue_type):
    queue = amqp_name(unique)
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        queue, durable=True, arguments={"x-queue-type": queue_type})) == invalid_queue_type(
        queue, f"queue type '{queue_type}' is not supported by this broker yet")
    check = connection.channel()
    assert channel_error(lambda: check.queue_declare(queue, passive=True))[0] == 404


def http(broker, method: str, path: str, body: object) -> tuple[int, dict]:
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(
        f"http://{broker.host}:{broker.management_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, {}
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_the_api_refuses_an_unknown_queue_type_with_400(broker, unique):
    if broker.management_port is None:
        pytest.skip("no management port for this broker")
    queue = amqp_name(unique)
    status, answer = http(broker, "PUT", f"/api/queues/%2F/{urllib.parse.quote(queue)}",
                          {"durable": True, "arguments": {"x-queue-type": "foo"}})
    assert (status, answer) == (400, {"error": "bad_request", "reason": (
        f"invalid arg 'x-queue-type' for queue '{queue}' in vhost '/': "
        "\"unsupported queue type 'foo'\"")})


@warren_only
@pytest.mark.parametrize("queue_type", ["quorum"])  # streams are built (tests/queue_types)
def test_the_api_refuses_quorum_and_stream_queues_until_implemented(broker, unique, queue_type):
    queue = amqp_name(unique)
    text = (f"invalid arg 'x-queue-type' for queue '{queue}' in vhost '/': queue type "
            f"'{queue_type}' is not supported by this broker yet")
    status, answer = http(broker, "PUT", f"/api/queues/%2F/{urllib.parse.quote(queue)}",
                          {"durable": True, "arguments": {"x-queue-type": queue_type}})
    assert (status, answer) == (400, {"error": "bad_request", "reason": text})
    status, answer = http(broker, "POST", "/api/definitions", {"queues": [
        {"name": queue, "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {"x-queue-type": queue_type}}]})
    # the import shows the refused declare as RabbitMQ shows an AMQP error: an Erlang term
    assert (status, answer) == (400, {"error": "bad_request", "reason": [
        "amqp_error", "precondition_failed", [ord(char) for char in text], "none"]})
    status, _ = http(broker, "GET", f"/api/queues/%2F/{urllib.parse.quote(queue)}", None)
    assert status == 404


def test_a_queue_recorded_by_an_earlier_version_is_kept_at_start(warren_factory, tmp_path):
    """Earlier Warrens accepted any x-queue-type and ran the queue as a classic one: its entry in
    the broker's own definitions file is not checked again, so no queue is lost at start-up."""
    data_dir = tmp_path / "old-data"
    data_dir.mkdir()
    (data_dir / "definitions.json").write_text(json.dumps({
        "vhosts": [{"name": "/"}],
        "users": [{"name": "guest", "password_hash": hash_password("guest"),
                   "tags": ["administrator"]}],
        "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "queues": [{"name": "old-quorum", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-queue-type": "quorum"}}],
    }))
    broker = warren_factory(extra_args=["--data-dir", str(data_dir)])
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("old-quorum", passive=True).method.queue == "old-quorum"
    broker.assert_alive()


@warren_only
@pytest.mark.parametrize("default_type", ["quorum"])  # streams are built
def test_a_vhost_default_queue_type_warren_does_not_run_refuses_plain_declares(
        broker, unique, default_type):
    # RabbitMQ declares a queue of the vhost's default type when x-queue-type is absent: Warren
    # refuses it as it refuses that x-queue-type, rather than declaring a classic queue.
    if broker.management_port is None:
        pytest.skip("no management port for this broker")
    vhost = f"dqt-{unique[-20:]}"  # short: the reply text must fit in 255 bytes
    path = f"/api/vhosts/{urllib.parse.quote(vhost, safe='')}"
    assert http(broker, "PUT", path, {"defaultqueuetype": default_type})[0] == 201
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            broker.host, broker.port, virtual_host=vhost))
        try:
            queue = "plain"
            channel = connection.channel()
            assert channel_error(lambda: channel.queue_declare(queue, durable=True)) == (
                406, f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{queue}' in "
                     f"vhost '{vhost}': queue type '{default_type}' is not supported by this "
                     "broker yet")
            channel = connection.channel()
            declared = channel.queue_declare(queue, arguments={"x-queue-type": "classic"})
            assert declared.method.queue == queue
        finally:
            connection.close()
    finally:
        http(broker, "DELETE", path, None)
