"""Message lifecycle across restarts (Warren only: node_factory restarts on the same data dir).

- TTL deadlines are absolute: a persistent message with a 3 s TTL (queue x-message-ttl or
  per-message expiration) published at t0, broker restarted at ~t0+1 s, expires at ~t0+3 s, not
  3 s after the restart; a message whose TTL ran out while the broker was down is gone at once
  when it comes back (dead-lettered with reason `expired` if the queue has a DLX), after a clean
  stop or a SIGKILL;
- dead-lettering configuration (x-dead-letter-exchange/-routing-key, x-max-length with
  drop-head / reject-publish-dlx) works the same after a restart;
- a dead-lettered persistent message keeps its x-death header (types included) across a restart.
"""

from __future__ import annotations

import datetime
import time

import pika
import pika.exceptions
import pytest
from client_helpers import close_quietly, message_count

DURABLE_PERSISTENT = pika.BasicProperties(delivery_mode=2)


def persistent(**more) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, **more)


def declare_and_publish(node, queue: str, arguments: dict, properties: pika.BasicProperties,
                        extra_queues: dict[str, dict] | None = None) -> float:
    """Declare durable queues, publish one persistent message with confirms; when it was
    confirmed (monotonic)."""
    with node.channel() as channel:
        for name, args in (extra_queues or {}).items():
            channel.queue_declare(name, durable=True, arguments=args)
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.confirm_delivery()
        start = time.monotonic()
        channel.basic_publish("", queue, b"timed", properties)
    return start


def wait_gone(node, queue: str, timeout: float) -> float:
    """Poll the message count until 0; the monotonic time it was first seen at 0."""
    return watch_until_gone(node, queue, timeout)[1]


def watch_until_gone(node, queue: str, timeout: float) -> tuple[float | None, float]:
    """Poll the message count until 0: the monotonic times the message was last seen (None:
    never) and first seen gone."""
    connection = node.connect()
    last_seen = None
    try:
        channel = connection.channel()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            asked = time.monotonic()
            if message_count(channel, queue) == 0:
                return last_seen, time.monotonic()
            last_seen = asked
            connection.process_data_events(time_limit=0.03)
        raise AssertionError(f"{queue} still holds its message after {timeout}s")
    finally:
        close_quietly(connection)


def count_now(node, queue: str) -> int:
    with node.channel() as channel:
        return message_count(channel, queue)


def wait_until_elapsed(start: float, seconds: float) -> None:
    remaining = start + seconds - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


@pytest.mark.parametrize(
    ("arguments", "properties"),
    [
        ({"x-message-ttl": 3000}, persistent()),
        ({}, persistent(expiration="3000")),
    ],
    ids=["queue-ttl", "per-message-ttl"],
)
def test_ttl_deadline_is_absolute_across_restart(node_factory, arguments, properties):
    node = node_factory().start()
    start = declare_and_publish(node, "ttl-q", arguments, properties)
    wait_until_elapsed(start, 1.0)
    node.restart()
    if time.monotonic() - start < 2.4:
        assert count_now(node, "ttl-q") == 1, "the message did not survive the restart"
    last_seen, gone = watch_until_gone(node, "ttl-q", timeout=8.0)
    assert gone - start >= 2.6, f"expired {gone - start:.2f}s after the publish"
    # Expiring ~3 s after the publish. A deadline restarted at start-up would keep the message
    # until 3 s after the new process was spawned (itself >= 1 s after the publish): it must not
    # be seen halfway between the two deadlines (a loaded loop's slack), whenever the broker
    # answers first.
    restarted_deadline = node.spawned_at - start + 3.0
    if last_seen is not None:
        assert last_seen - start < max(3.5, (3.0 + restarted_deadline) / 2), (
            f"still there {last_seen - start:.2f}s after the publish (a restarted deadline: "
            f"{restarted_deadline:.2f}s)")


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "sigkill"])
def test_expired_while_down_is_gone_at_start(node_factory, crash):
    node = node_factory().start()
    declare_and_publish(
        node, "ttl-q", {"x-message-ttl": 600, "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": "dlq"},
        persistent(expiration="60000"), extra_queues={"dlq": {}})
    if crash:
        node.kill()
    else:
        assert node.stop() == 0
    time.sleep(1.0)
    node.start()
    with node.channel() as channel:
        assert message_count(channel, "ttl-q") == 0
    wait_gone(node, "ttl-q", 0.5)
    connection = node.connect()
    try:
        channel = connection.channel()
        end = time.monotonic() + 5
        method = None
        while method is None and time.monotonic() < end:
            method, properties, body = channel.basic_get("dlq", auto_ack=True)
            if method is None:
                connection.process_data_events(time_limit=0.05)
        assert method is not None, "the expired message was not dead-lettered"
        assert body == b"timed"
        assert properties.expiration is None
        (death,) = properties.headers["x-death"]
        assert death["reason"] == "expired"
        assert death["queue"] == "ttl-q"
        assert death["original-expiration"] == "60000"
    finally:
        close_quietly(connection)


def test_per_message_expiry_while_down_behind_nothing(node_factory):
    """Several messages with different expirations: after a restart later than all of them,
    none is left, and a long-lived one behind them survives."""
    node = node_factory().start()
    with node.channel() as channel:
        channel.queue_declare("mixed", durable=True)
        channel.confirm_delivery()
        for ms in ("300", "500", "700"):
            channel.basic_publish("", "mixed", ms.encode(), persistent(expiration=ms))
        channel.basic_publish("", "mixed", b"long", persistent(expiration="60000"))
    assert node.stop() == 0
    time.sleep(0.9)
    node.start()
    with node.channel() as channel:
        method, properties, body = channel.basic_get("mixed", auto_ack=True)
        assert body == b"long"
        assert properties.expiration == "60000"
        assert method.message_count == 0


def test_dead_letter_configuration_survives_restart(node_factory):
    node = node_factory().start()
    with node.channel() as channel:
        channel.exchange_declare("dlx", "direct", durable=True)
        channel.queue_declare("dlq", durable=True)
        channel.queue_bind("dlq", "dlx", "dead")
        channel.queue_declare("src", durable=True, arguments={
            "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead",
            "x-max-length": 2})
        channel.queue_declare("full", durable=True, arguments={
            "x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dead",
            "x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    node.restart()
    connection = node.connect()
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for body in (b"1", b"2", b"3"):
            channel.basic_publish("", "src", body, DURABLE_PERSISTENT)  # 1: maxlen
        method, _properties, _body = channel.basic_get("src")
        channel.basic_reject(method.delivery_tag, requeue=False)  # 2: rejected
        channel.basic_publish("", "full", b"a", DURABLE_PERSISTENT)
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("", "full", b"b", DURABLE_PERSISTENT)  # b: maxlen + nack
        found = []
        end = time.monotonic() + 5
        while len(found) < 3 and time.monotonic() < end:
            method, properties, body = channel.basic_get("dlq", auto_ack=True)
            if method is None:
                connection.process_data_events(time_limit=0.05)
                continue
            death = properties.headers["x-death"][0]
            found.append((body, death["queue"], death["reason"], method.exchange,
                          method.routing_key))
        assert found == [
            (b"1", "src", "maxlen", "dlx", "dead"),
            (b"2", "src", "rejected", "dlx", "dead"),
            (b"b", "full", "maxlen", "dlx", "dead"),
        ]
    finally:
        close_quietly(connection)


def test_x_death_header_survives_restart(node_factory):
    node = node_factory().start()
    with node.channel() as channel:
        channel.queue_declare("dlq", durable=True)
        channel.queue_declare("src", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
        channel.confirm_delivery()
        channel.basic_publish("", "src", b"x", persistent(expiration="60000",
                                                          headers={"keep": "me"}))
        method, _properties, _body = channel.basic_get("src")
        channel.basic_reject(method.delivery_tag, requeue=False)
        end = time.monotonic() + 5
        while message_count(channel, "dlq") == 0 and time.monotonic() < end:
            channel.connection.process_data_events(time_limit=0.05)
        _method, before, _body = channel.basic_get("dlq")  # left unacked: back at close
    node.restart()
    with node.channel() as channel:
        method, after, body = channel.basic_get("dlq", auto_ack=True)
    assert body == b"x"
    assert method.redelivered is True
    assert after.headers == before.headers
    assert list(after.headers) == list(before.headers)
    (death,) = after.headers["x-death"]
    assert type(death["count"]).__name__ == "long"
    assert isinstance(death["time"], datetime.datetime)
    assert list(death) == ["count", "reason", "queue", "time", "exchange", "routing-keys",
                           "original-expiration"]
    assert after.expiration is None
    assert after.delivery_mode == 2
