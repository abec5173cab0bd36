"""/api/trace-sessions (Warren's own, behind the UI's Trace page; broker/tracesessions.py): a
session's filters (exchange, queue, routing-key pattern) pick the messages it follows, a
followed message's later events are kept whatever the filters, messages leaving a queue with no
dead-letter copy show as dropped with their reason, and the firehose a session switched on is
switched off when the last session ends (one an operator switched on stays on)."""

from __future__ import annotations

import time

import pika
import pytest
from management_api import Api, q


@pytest.fixture
def warren_api(broker, api) -> Api:
    if not broker.is_warren:
        pytest.skip("trace sessions are Warren's own")
    return api


@pytest.fixture
def vhost(warren_api, unique):
    name = f"sessions-{unique}"
    assert warren_api.put(f"/api/vhosts/{q(name)}", {}).status == 201
    yield name
    warren_api.delete(f"/api/vhosts/{q(name)}")


@pytest.fixture
def channel(broker, vhost):
    with pika.BlockingConnection(pika.ConnectionParameters(broker.host, broker.port,
                                                           vhost)) as connection:
        opened = connection.channel()
        opened.confirm_delivery()
        yield opened


def start(api: Api, vhost: str, **filters) -> int:
    answer = api.post(f"/api/trace-sessions/{q(vhost)}", filters)
    assert answer.status == 201, answer
    return answer.json()["id"]


def events(api: Api, vhost: str, session: int, since: int = 0) -> list[dict]:
    answer = api.get(f"/api/trace-sessions/{q(vhost)}/{session}?since={since}")
    assert answer.status == 200, answer
    return answer.json()["events"]


def summary(found: list[dict]) -> list[tuple]:
    return [(e["event"], e["exchange"], e["routing_keys"], e.get("queue"), e.get("reason"))
            for e in found]


def test_routing_key_pattern_and_exchange_filters(warren_api, vhost, channel):
    by_key = start(warren_api, vhost, routing_key="orders.#")
    by_exchange = start(warren_api, vhost, exchange="amq.fanout")
    for key in ("orders", "orders.eu.new", "audit.orders", "ordersx"):
        channel.basic_publish("amq.topic", key, b"topic")
    channel.basic_publish("amq.fanout", "orders.fanned", b"fanned")
    assert [e["routing_keys"] for e in events(warren_api, vhost, by_key)] == [
        ["orders"], ["orders.eu.new"], ["orders.fanned"]]
    assert [e["routing_keys"] for e in events(warren_api, vhost, by_exchange)] == [
        ["orders.fanned"]]
    assert events(warren_api, vhost, by_key, since=2)[0]["seq"] == 3


def test_a_followed_message_is_followed_past_the_filter(warren_api, vhost, channel):
    """Filtered by queue `work`: its message is followed into the dead-letter queue, whose
    own other messages are not."""
    channel.queue_declare("dead")
    channel.queue_declare("work", arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": "dead"})
    session = start(warren_api, vhost, queue="work")
    channel.basic_publish("", "dead", b"unrelated")
    channel.basic_publish("", "work", b"job", pika.BasicProperties(message_id="job-1"))
    method, _, _ = channel.basic_get("work")
    channel.basic_nack(method.delivery_tag, requeue=False)
    bodies = [channel.basic_get("dead", auto_ack=True)[2] for _ in range(2)]
    assert bodies == [b"unrelated", b"job"]
    found = events(warren_api, vhost, session)
    assert summary(found) == [
        ("published", "", ["work"], None, None),
        ("delivered", "", ["work"], "work", None),
        ("dead_lettered", "", ["work"], "work", "rejected"),
        ("delivered", "", ["dead"], "dead", None),
    ]
    assert {e["journey"] for e in found} == {"id:job-1"}
    assert (found[2]["dead_letter_exchange"], found[2]["dead_letter_routing_keys"],
            found[2]["dead_letter_queues"]) == ("", ["dead"], ["dead"])
    assert found[3]["x_death"] == [{"reason": "rejected", "queue": "work", "exchange": "",
                                    "count": 1, "routing-keys": ["work"]}]


def test_messages_leaving_without_a_copy_show_as_dropped(warren_api, vhost, channel):
    channel.queue_declare("short", arguments={"x-max-length": 1})
    channel.queue_declare("brief", arguments={"x-message-ttl": 1})
    session = start(warren_api, vhost)
    channel.basic_publish("", "short", b"first")
    channel.basic_publish("", "short", b"second")  # drops the first from the head
    channel.basic_publish("", "brief", b"gone soon")
    deadline = time.monotonic() + 10
    while len(found := events(warren_api, vhost, session)) < 5:  # 3 published, 2 dropped
        assert time.monotonic() < deadline, summary(found)
        time.sleep(0.05)
    dropped = [(e["queue"], e["reason"], e["body"]) for e in found if e["event"] == "dropped"]
    assert dropped == [("short", "maxlen", "first"), ("brief", "expired", "gone soon")]


def test_the_firehose_a_session_switched_on_goes_off_with_the_last_session(warren_api, vhost):
    path = f"/api/vhosts/{q(vhost)}"
    first, second = start(warren_api, vhost), start(warren_api, vhost)
    assert warren_api.get(path).json()["tracing"] is True
    assert warren_api.delete(f"/api/trace-sessions/{q(vhost)}/{first}").status == 204
    assert warren_api.get(path).json()["tracing"] is True  # the second one still traces
    assert warren_api.delete(f"/api/trace-sessions/{q(vhost)}/{second}").status == 204
    assert warren_api.get(path).json()["tracing"] is False
    assert warren_api.get(f"/api/trace-sessions/{q(vhost)}/{second}").status == 404

    assert warren_api.put(path, {"tracing": True}).status == 204  # the operator's: it stays
    third = start(warren_api, vhost)
    assert warren_api.delete(f"/api/trace-sessions/{q(vhost)}/{third}").status == 204
    assert warren_api.get(path).json()["tracing"] is True
    warren_api.put(path, {"tracing": False})


def test_refusals(warren_api, vhost):
    assert warren_api.post("/api/trace-sessions/no-such-vhost", {}).status == 404
    assert warren_api.post(f"/api/trace-sessions/{q(vhost)}", {"queue": 5}).status == 400
    assert warren_api.get(f"/api/trace-sessions/{q(vhost)}/999999").status == 404
    limited = warren_api.post(f"/api/trace-sessions/{q(vhost)}", {},
                              auth=("limited", "limited"))
    assert limited.status == 401
