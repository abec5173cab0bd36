"""x-queue-type: RabbitMQ 3.10 knows `classic`, `quorum` and `stream` and refuses anything else
with a 406 (see RABBITMQ_ANSWERS.md); the management API (PUT /api/queues, definitions import)
refuses it with a 400, as it maps every refused declare. Warren runs all three (quorum queues
and streams are tested in tests/queue_types); a vhost's default type applies to plain
declares."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from client_helpers import channel_error, opened
from raw_amqp import amqp_name

from broker.auth import hash_password


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


@pytest.mark.parametrize("default_type", ["quorum", "stream"])
def test_a_vhost_default_queue_type_makes_plain_declares_of_that_type(broker, unique,
                                                                       default_type):
    """RabbitMQ declares a queue of the vhost's default type when x-queue-type is absent, and
    records the type: a plain redeclare is the same queue, a classic one is inequivalent."""
    if broker.management_port is None:
        pytest.skip("no management port for this broker")
    vhost = f"dqt-{unique[-20:]}"
    path = f"/api/vhosts/{urllib.parse.quote(vhost, safe='')}"
    assert http(broker, "PUT", path, {"defaultqueuetype": default_type})[0] in (201, 204)
    try:
        with opened(broker, virtual_host=vhost) as connection:
            channel = connection.channel()
            channel.queue_declare("plain", durable=True)
            assert channel.queue_declare("plain", durable=True).method.queue == "plain"
            assert channel_error(lambda: channel.queue_declare(
                "plain", durable=True, arguments={"x-queue-type": "classic"})) == (
                406, f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'plain' "
                     f"in vhost '{vhost}': received 'classic' but current is '{default_type}'")
    finally:
        http(broker, "DELETE", path, None)
