"""Topic permissions on the wire: basic.publish to a topic exchange needs the routing key to match
the user's `write` pattern for that exchange, queue.bind/unbind and exchange.bind/unbind from a
topic exchange need the binding key to match `read`; "{username}" and "{vhost}" in a pattern
stand for the user's and vhost's names. A refusal is a 403 channel close with RabbitMQ's text.

Each case was run against RabbitMQ 3.10.8 (WARREN_TEST_AMQP_PORT=5682
WARREN_TEST_HTTP_PORT=15682; recorded in tests/management/RABBITMQ_API.md, "Topic
permissions"). Every test makes its own user and vhost over the management API and deletes them.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pika
import pika.exceptions
import pytest
from client_helpers import close_quietly, connect

PASSWORD = "tp-secret"


def api(broker, method: str, path: str, body: Any = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as failure:
        return failure.code


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class Scene:
    """A vhost and a user with full permissions in it, connected over AMQP."""

    def __init__(self, broker, vhost: str, user: str) -> None:
        self.broker, self.vhost, self.user = broker, vhost, user
        self.connection: pika.BlockingConnection | None = None

    def topic_permission(self, exchange: str, write: str, read: str) -> None:
        status = api(self.broker, "PUT", f"/api/topic-permissions/{q(self.vhost)}/{q(self.user)}",
                     {"exchange": exchange, "write": write, "read": read})
        assert status in (201, 204)

    def channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self.connection is None or not self.connection.is_open:
            self.connection = connect(self.broker, virtual_host=self.vhost,
                                      credentials=pika.PlainCredentials(self.user, PASSWORD))
        return self.connection.channel()

    def refusal(self, action) -> tuple[int, str] | None:
        """Run `action(channel)` on a fresh channel and a round trip after it: None if the
        broker took it, else the (code, text) of the channel close."""
        channel = self.channel()
        try:
            action(channel)
            channel.basic_qos(prefetch_count=1)  # a round trip: a refusal arrives before its ok
        except pika.exceptions.ChannelClosedByBroker as closed:
            return closed.reply_code, closed.reply_text
        channel.close()
        return None

    def refused(self, what: str, exchange: str) -> tuple[int, str]:
        return (403, f"ACCESS_REFUSED - access to topic '{what}' in exchange '{exchange}' in "
                     f"vhost '{self.vhost}' refused for user '{self.user}'")


@pytest.fixture
def scene(broker, unique):
    if broker.management_port is None:
        pytest.skip("needs the management API (set WARREN_TEST_HTTP_PORT)")
    suffix = str(abs(hash(unique)) % 10**9)
    vhost, user = f"tpv-{suffix}", f"tpu-{suffix}"
    assert api(broker, "PUT", f"/api/vhosts/{q(vhost)}", {}) == 201
    assert api(broker, "PUT", f"/api/users/{q(user)}", {"password": PASSWORD, "tags": ""}) == 201
    assert api(broker, "PUT", f"/api/permissions/{q(vhost)}/{q(user)}",
               {"configure": ".*", "write": ".*", "read": ".*"}) == 201
    scene = Scene(broker, vhost, user)
    yield scene
    if scene.connection is not None:
        close_quietly(scene.connection)
    api(broker, "DELETE", f"/api/vhosts/{q(vhost)}")
    api(broker, "DELETE", f"/api/users/{q(user)}")


def test_publish_needs_write_with_username_and_vhost_expanded(scene):
    scene.topic_permission("amq.topic", "^a\\.{username}\\.{vhost}$", ".*")
    allowed = f"a.{scene.user}.{scene.vhost}"
    channel = scene.channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "amq.topic", "a.#")
    channel.basic_publish("amq.topic", allowed, b"in")
    method, _, body = channel.basic_get(queue, auto_ack=True)
    assert (method.routing_key, body) == (allowed, b"in")
    # the placeholders are expanded in the pattern, not matched literally
    literal = "a.{username}.{vhost}"
    assert scene.refusal(lambda ch: ch.basic_publish("amq.topic", literal, b"x")) == \
        scene.refused(literal, "amq.topic")
    assert scene.refusal(lambda ch: ch.basic_publish("amq.topic", "x.y", b"x")) == \
        scene.refused("x.y", "amq.topic")
    # the refusal closed a channel only; what was refused never arrived
    assert channel.is_open
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)


def test_empty_pattern_allows_only_the_empty_key(scene):
    channel = scene.channel()
    channel.exchange_declare("tp-x", "topic")
    scene.topic_permission("tp-x", "", "")
    assert scene.refusal(lambda ch: ch.basic_publish("tp-x", "", b"x")) is None
    assert scene.refusal(lambda ch: ch.basic_publish("tp-x", "a", b"x")) == \
        scene.refused("a", "tp-x")


def test_only_topic_exchanges_with_a_topic_permission_are_checked(scene):
    channel = scene.channel()
    channel.exchange_declare("tp-direct", "direct")
    channel.exchange_declare("tp-other", "topic")
    queue = channel.queue_declare("", exclusive=True).method.queue
    scene.topic_permission("tp-direct", "", "")  # a direct exchange: never checked
    scene.topic_permission("amq.topic", "", "")
    assert scene.refusal(lambda ch: ch.basic_publish("tp-direct", "any", b"x")) is None
    assert scene.refusal(lambda ch: ch.queue_bind(queue, "tp-direct", "any")) is None
    # another topic exchange, without a topic permission: all allowed
    assert scene.refusal(lambda ch: ch.basic_publish("tp-other", "any", b"x")) is None
    assert scene.refusal(lambda ch: ch.queue_bind(queue, "tp-other", "any")) is None
    assert scene.refusal(lambda ch: ch.basic_publish("amq.topic", "any", b"x")) == \
        scene.refused("any", "amq.topic")


def test_queue_bind_and_unbind_need_read(scene):
    channel = scene.channel()
    channel.queue_declare("tp-q")
    scene.topic_permission("amq.topic", ".*", "^b\\.")
    assert scene.refusal(lambda ch: ch.queue_bind("tp-q", "amq.topic", "b.c")) is None
    assert scene.refusal(lambda ch: ch.queue_bind("tp-q", "amq.topic", "c.c")) == \
        scene.refused("c.c", "amq.topic")
    assert scene.refusal(lambda ch: ch.queue_bind("tp-q", "amq.topic", "")) == \
        scene.refused("", "amq.topic")
    # checked before the queue is looked up
    assert scene.refusal(lambda ch: ch.queue_bind("tp-none", "amq.topic", "c.c")) == \
        scene.refused("c.c", "amq.topic")
    assert scene.refusal(lambda ch: ch.queue_unbind("tp-q", "amq.topic", "c.c")) == \
        scene.refused("c.c", "amq.topic")
    assert scene.refusal(lambda ch: ch.queue_unbind("tp-q", "amq.topic", "b.c")) is None
    # a missing exchange is the usual 404
    code, _ = scene.refusal(lambda ch: ch.queue_bind("tp-q", "tp-nosuch", "c.c"))
    assert code == 404


def test_queue_bind_shortcut_checks_the_queue_name(scene):
    """queue.bind with no queue and no key binds the last declared queue with its own name as
    the key: that name is what read must match."""
    scene.topic_permission("amq.topic", ".*", "^b\\.")

    def bind_last_declared(name: str):
        def action(channel):
            channel.queue_declare(name, exclusive=True)
            channel.queue_bind("", "amq.topic", "")
        return action

    assert scene.refusal(bind_last_declared("tp-q")) == scene.refused("tp-q", "amq.topic")
    assert scene.refusal(bind_last_declared("b.tp-q")) is None


def test_exchange_bind_and_unbind_need_read_on_a_topic_source(scene):
    channel = scene.channel()
    channel.exchange_declare("tp-x", "topic")
    channel.exchange_declare("tp-direct", "direct")
    scene.topic_permission("amq.topic", ".*", "^b\\.")
    scene.topic_permission("tp-x", ".*", "")
    assert scene.refusal(lambda ch: ch.exchange_bind("tp-x", "amq.topic", "c.c")) == \
        scene.refused("c.c", "amq.topic")
    assert scene.refusal(lambda ch: ch.exchange_bind("tp-x", "amq.topic", "b.c")) is None
    assert scene.refusal(lambda ch: ch.exchange_unbind("tp-x", "amq.topic", "c.c")) == \
        scene.refused("c.c", "amq.topic")
    # a topic destination is not checked; a topic source is
    assert scene.refusal(lambda ch: ch.exchange_bind("tp-x", "amq.direct", "c.c")) is None
    assert scene.refusal(lambda ch: ch.exchange_bind("tp-direct", "tp-x", "")) is None
    assert scene.refusal(lambda ch: ch.exchange_bind("tp-direct", "tp-x", "a")) == \
        scene.refused("a", "tp-x")


def test_client_id_is_not_expanded_for_amqp(scene):
    """RabbitMQ expands {client_id} for MQTT clients only: for AMQP it stays as written."""
    channel = scene.channel()
    channel.queue_declare("tp-q")
    scene.topic_permission("amq.topic", ".*", "^{client_id}$")
    assert scene.refusal(lambda ch: ch.queue_bind("tp-q", "amq.topic", "{client_id}")) is None
    assert scene.refusal(lambda ch: ch.queue_bind("tp-q", "amq.topic", "zz")) == \
        scene.refused("zz", "amq.topic")


def test_a_new_topic_permission_applies_to_an_open_channel(scene):
    channel = scene.channel()
    channel.basic_publish("amq.topic", "x.y", b"x")
    channel.basic_qos(prefetch_count=1)
    scene.topic_permission("amq.topic", "^a", ".*")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_publish("amq.topic", "z.z", b"x")
        channel.basic_qos(prefetch_count=1)
    assert (closed.value.reply_code, closed.value.reply_text) == scene.refused("z.z", "amq.topic")


def test_a_name_with_regex_syntax_expanded_into_a_pattern(broker, scene):
    """A user named "tp(u-..." with write "^{username}": the expanded pattern does not compile.
    RabbitMQ closes the connection with 541 INTERNAL_ERROR (its regex call crashes); Warren
    refuses the publish with the 403 and keeps going."""
    if not broker.is_warren:
        pytest.skip("RabbitMQ 3.10 crashes the connection (541 INTERNAL_ERROR)")
    user = f"tp(u-{scene.user}"
    assert api(broker, "PUT", f"/api/users/{q(user)}", {"password": PASSWORD, "tags": ""}) == 201
    try:
        assert api(broker, "PUT", f"/api/permissions/{q(scene.vhost)}/{q(user)}",
                   {"configure": ".*", "write": ".*", "read": ".*"}) == 201
        scene.user = user
        scene.topic_permission("amq.topic", "^{username}", ".*")
        assert scene.refusal(lambda ch: ch.basic_publish("amq.topic", f"{user}.x", b"x")) == \
            scene.refused(f"{user}.x", "amq.topic")
        assert scene.connection.is_open
    finally:
        api(broker, "DELETE", f"/api/users/{q(user)}")
