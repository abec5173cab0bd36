"""Figures of the management API that RabbitMQ 3.10.8 computes from messages and counters, and
its sample history (`?lengths_age=&lengths_incr=`, `msg_rates_*`, `data_rates_*`), checked by
value on the same traffic. Every expectation was observed on RabbitMQ 3.10.8 (RABBITMQ_API.md,
"Queue figures and sample history"); run against it with WARREN_TEST_AMQP_PORT=5682
WARREN_TEST_HTTP_PORT=15682 (its statistics lag: values are polled).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import pika
import pytest
from management_api import GUEST, Api, eventually, q, wait_for_queue_field

AGED = "lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5"


@contextlib.contextmanager
def amqp(broker, name: str = "") -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        broker.host, broker.port, credentials=pika.PlainCredentials(*GUEST), heartbeat=0,
        client_properties={"connection_name": name} if name else None))
    try:
        yield connection
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            if connection.is_open:
                connection.close()


@pytest.fixture
def queue(api, unique):
    name = f"samples-{unique}"
    yield name
    api.delete(f"/api/queues/%2F/{q(name)}")


def test_sample_retention_policies_are_rabbitmqs(api):
    assert api.ok_json("/api/overview")["sample_retention_policies"] == {
        "global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]}


def _check_range(details: dict, age: int, incr: int) -> None:
    """RabbitMQ's shape: samples newest first, one per `incr` back to `age`, on multiples of
    `incr`; avg their mean, avg_rate the change over the range per second."""
    samples = details["samples"]
    assert set(details) == {"rate", "samples", "avg", "avg_rate"}
    assert len(samples) == age // incr + 1
    stamps = [sample["timestamp"] for sample in samples]
    assert stamps[0] % (incr * 1000) == 0
    assert stamps == [stamps[0] - step * incr * 1000 for step in range(len(samples))]
    values = [sample["sample"] for sample in samples]
    assert details["avg"] == pytest.approx(sum(values) / len(values))
    assert details["avg_rate"] == pytest.approx((values[0] - values[-1]) / age)


def test_queue_length_and_message_samples(api, broker, queue):
    """A queue's messages_details and message_stats' details with ranges: the newest sample
    shows the three messages published (and their publish count) once sampled."""
    with amqp(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue)
        for _ in range(3):
            channel.basic_publish("", queue, b"m")
        shown = eventually(
            lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}?{AGED}"),
            lambda info: info["messages_details"]["samples"][0]["sample"] == 3
            and info["message_stats"]["publish_details"]["samples"][0]["sample"] == 3,
            timeout=30, interval=0.5)
    for name in ("messages_details", "messages_ready_details",
                 "messages_unacknowledged_details"):
        _check_range(shown[name], 60, 5)
    _check_range(shown["message_stats"]["publish_details"], 60, 5)
    plain = api.ok_json(f"/api/queues/%2F/{q(queue)}")
    assert set(plain["messages_details"]) == {"rate"}
    overview = api.ok_json("/api/overview?lengths_age=30&lengths_incr=10")
    _check_range(overview["queue_totals"]["messages_details"], 30, 10)


def test_range_parameters_rabbitmq_refuses(api):
    """age and incr at least 1, at most 500 samples; the lists of queues and exchanges name
    the error differently; a parameter that is not an integer is ignored."""
    assert api.get("/api/overview?lengths_age=0&lengths_incr=5").json() == {
        "error": "bad_request", "reason": "Invalid range parameters: age 0, incr 5"}
    answer = api.get("/api/exchanges?msg_rates_age=501&msg_rates_incr=1")
    assert answer.status == 400
    assert answer.json() == {"error": "invalid_range_parameters",
                             "reason": "Invalid range parameters: age 501, incr 1"}
    assert api.get("/api/overview?lengths_age=500&lengths_incr=1").status == 200
    ignored = api.ok_json("/api/overview?lengths_age=x&lengths_incr=5")
    assert "samples" not in ignored["queue_totals"].get("messages_details", {})


def test_queue_figures_from_its_messages(api, broker, queue):
    """head_message_timestamp is the oldest timestamp of the ready head and the unacked
    messages; persistent, in-memory counts and bytes; deliveries split by kind."""
    with amqp(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        for stamp, mode, body in ((1000, 2, b"12345"), (2000, 1, b"123"), (3000, 2, b"1")):
            channel.basic_publish("", queue, body, pika.BasicProperties(
                delivery_mode=mode, timestamp=stamp))
        held = channel.basic_get(queue, auto_ack=False)  # the oldest, unacked
        assert held[2] == b"12345"
        channel.basic_get(queue, auto_ack=True)
        info = wait_for_queue_field(api, "/", queue, messages=2, messages_unacknowledged=1)
        info = eventually(lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}"),
                          lambda info: info.get("message_stats", {}).get("get_no_ack") == 1
                          and info.get("messages_persistent") == 2
                          and "head_message_timestamp" in info, timeout=30)
    assert info["head_message_timestamp"] == 1000  # the unacked one is older than the head
    assert info["messages_persistent"] == 2 and info["message_bytes_persistent"] == 6
    assert info["messages_ram"] == 2 and info["message_bytes_ram"] == 6
    assert info["messages_ready_ram"] == 1 and info["messages_unacknowledged_ram"] == 1
    assert info["messages_paged_out"] == 0 and info["message_bytes_paged_out"] == 0
    stats = info["message_stats"]
    assert (stats["publish"], stats["get"], stats["get_no_ack"], stats["deliver"],
            stats["deliver_no_ack"], stats["deliver_get"]) == (3, 1, 1, 0, 0, 2)
    assert info["backing_queue_status"]["len"] == 1


def test_head_message_timestamp_is_null_without_one(api, broker, queue):
    """Only the head's (and the oldest unacked message's) timestamp counts."""
    with amqp(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue)
        channel.basic_publish("", queue, b"no timestamp")
        channel.basic_publish("", queue, b"behind", pika.BasicProperties(
            timestamp=5, delivery_mode=2))
        info = eventually(lambda: api.ok_json(f"/api/queues/%2F/{q(queue)}"),
                          lambda info: info.get("messages") == 2
                          and "head_message_timestamp" in info, timeout=30)
    assert info["head_message_timestamp"] is None
    assert info["messages_persistent"] == 0  # none is persistent in a transient queue


def test_channel_message_stats(api, broker, unique):
    """A channel's counts: publishes, confirms, returns and drops of unroutable ones, gets
    with and without ack, empty gets, acks."""
    name = f"chstats-{unique}"
    with amqp(broker, name) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(name, auto_delete=True)
        channel.basic_publish("", name, b"a")
        channel.basic_publish("", name, b"b")
        channel.basic_publish("", f"{name}-nowhere", b"dropped")
        with contextlib.suppress(pika.exceptions.UnroutableError):
            channel.basic_publish("", f"{name}-nowhere", b"returned", mandatory=True)
        method, _, _ = channel.basic_get(name, auto_ack=False)
        channel.basic_ack(method.delivery_tag)
        channel.basic_get(name, auto_ack=True)
        channel.basic_get(name, auto_ack=True)  # empty

        def mine() -> dict | None:
            named = [item["name"] for item in api.ok_json("/api/connections")
                     if item.get("user_provided_name") == name]
            for item in api.ok_json("/api/channels"):
                if named and item["connection_details"]["name"] == named[0]:
                    return item
            return None

        shown = eventually(mine, lambda item: item is not None and item.get(
            "message_stats", {}).get("get_empty") == 1 and item["message_stats"]["ack"] == 1
            and item["message_stats"]["publish"] == 4, timeout=30, interval=0.5)
    stats = shown["message_stats"]
    assert (stats["publish"], stats["confirm"], stats["drop_unroutable"],
            stats["return_unroutable"]) == (4, 4, 1, 1)
    assert (stats["get"], stats["get_no_ack"], stats["get_empty"], stats["ack"],
            stats["deliver_get"]) == (1, 1, 1, 1, 2)
    assert shown["messages_unconfirmed"] == 0 and shown["acks_uncommitted"] == 0


def test_wrong_method_is_rabbitmqs_405(api):
    answer = api.post("/api/overview", {})
    assert (answer.status, answer.body, answer.header("allow")) == (
        405, b"", "HEAD, GET, OPTIONS")
    answer = api.request("PATCH", "/api/queues/%2F/whatever", raw=b"{}")
    assert answer.header("allow") == "HEAD, GET, PUT, DELETE, OPTIONS"


def test_error_body_is_compact_json(api):
    answer = api.get("/api/queues/%2F/no-such-queue-at-all")
    assert answer.body == b'{"error":"Object Not Found","reason":"Not Found"}'
    assert api.get("/api/consumers/no-such-vhost").status == 404


def test_vhost_lengths_have_rates_but_no_samples(api, unique):
    """A vhost's messages, ready and unacked with their `_details` rates; RabbitMQ checks the
    sample ranges of a vhost request (its list names a refused one
    `invalid_range_parameters`) but answers no samples for `lengths_*` (it samples them for
    `msg_rates_*`: test_api_figures.py)."""
    vhost, name = f"samples-vh-{unique}", "q"
    assert api.put(f"/api/vhosts/{q(vhost)}").status == 201
    try:
        api.create_queue(vhost, name)
        api.publish(vhost, "amq.default", name, "one")
        api.publish(vhost, "amq.default", name, "two")
        shown = eventually(
            lambda: api.ok_json(f"/api/vhosts/{q(vhost)}?lengths_age=10&lengths_incr=5"),
            lambda info: info.get("messages") == 2, timeout=30, interval=0.5)
        assert shown["messages_ready"] == 2 and shown["messages_unacknowledged"] == 0
        for key in ("messages_details", "messages_ready_details",
                    "messages_unacknowledged_details"):
            assert set(shown[key]) == {"rate"}
        assert api.get("/api/vhosts?lengths_age=0&lengths_incr=5").json()["error"] == (
            "invalid_range_parameters")
        assert api.get(f"/api/vhosts/{q(vhost)}?lengths_age=0&lengths_incr=5").json() == {
            "error": "bad_request", "reason": "Invalid range parameters: age 0, incr 5"}
    finally:
        api.delete(f"/api/vhosts/{q(vhost)}")


def test_idle_since_once_nothing_moves(warren_factory):
    """A queue and a channel show idle_since (RabbitMQ's ISO text with milliseconds, the
    moment their figures last moved) once a sample found them unchanged."""
    broker = warren_factory(extra_args=["--collect-statistics-interval", "200"])
    api = Api(broker.host, broker.management_port)
    with amqp(broker, "idle-test") as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("idle-q")
        channel.basic_publish("", "idle-q", b"x")
        shown = eventually(lambda: api.ok_json("/api/queues/%2F/idle-q"),
                           lambda info: "idle_since" in info, timeout=15, interval=0.2)
        channels = eventually(lambda: api.ok_json("/api/channels"),
                              lambda items: items and "idle_since" in items[0], timeout=15)
    for text in (shown["idle_since"], channels[0]["idle_since"]):
        moment = datetime.datetime.fromisoformat(text)
        assert text.endswith("+00:00") and len(text.split(".")[1]) == len("123+00:00")
        age = datetime.datetime.now(datetime.UTC) - moment
        assert datetime.timedelta(0) <= age < datetime.timedelta(seconds=15)
