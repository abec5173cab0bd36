"""The queue figures of rabbitmq_prometheus's queue_metrics group that come from the queue's
messages and consumers, per object (read through `/metrics/detailed?family=queue_metrics&vhost=/`,
which both brokers filter by vhost: the shared RabbitMQ's per-object scrape is huge) and in the
API: persistent messages and bytes (a counter kept on enqueue and settle), bytes in memory and
paged out, the head message timestamp, and consumer capacity as a share of time. What RabbitMQ
3.10.8 showed for the same steps is in RABBITMQ_METRICS.md ("Queue figures from messages");
runs against it too (WARREN_TEST_AMQP_PORT, WARREN_TEST_HTTP_PORT, WARREN_TEST_METRICS_PORT)."""

from __future__ import annotations

import math
import time
import urllib.request

import pika
import pytest
from metrics_kit import EXTERNAL, POLL_TIMEOUT, Scrape, metrics_base, wait_until

warren_only = pytest.mark.skipif(EXTERNAL, reason="Warren-only check (WARREN_TEST_AMQP_PORT set)")
PREFIX = "rabbitmq_detailed_queue_"
# RabbitMQ refreshes a queue's figures every 5 s (collect_statistics_interval)
TIMEOUT = 30 if EXTERNAL else POLL_TIMEOUT


@pytest.fixture
def queue_figures(broker):
    """`figures(queue)`: the queue_metrics series of `queue` in vhost /, by name after the
    `rabbitmq_detailed_queue_` prefix."""
    base = metrics_base(broker)

    def figures(queue: str) -> dict[str, float]:
        path = "/metrics/detailed?family=queue_metrics&vhost=%2F"
        with urllib.request.urlopen(base + path, timeout=60) as response:
            scraped = Scrape(path, response.read().decode(), "")
        found = {}
        for name in scraped.types:
            if name.startswith(PREFIX):
                value = scraped.queue(name, queue)
                if value is not None:
                    found[name.removeprefix(PREFIX)] = value
        return found

    return figures


def persistent(timestamp: int | None = None) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, timestamp=timestamp)


def test_persistent_ram_and_head_figures_follow_the_messages(queue_figures, api,
                                                             confirming_channel, unique):
    """A durable queue with 3 persistent 10-byte messages (two stamped) and 2 transient
    7-byte ones, one persistent message held unacked: RabbitMQ 3.10.8 counted 3 persistent
    (30 bytes), 44 bytes in memory, the head timestamp that of the first ready message; after
    an ack and a reject 1 (10 bytes); after a purge 0 and the timestamp NaN."""
    channel = confirming_channel
    channel.queue_declare(unique, durable=True)
    try:
        channel.basic_publish("", unique, b"p" * 10, persistent())
        channel.basic_publish("", unique, b"p" * 10, persistent(1700000001))
        channel.basic_publish("", unique, b"p" * 10, persistent(1700000002))
        for _ in range(2):
            channel.basic_publish("", unique, b"t" * 7,
                                  pika.BasicProperties(delivery_mode=1, timestamp=1600000000))
        held, _, _ = channel.basic_get(unique)  # the unstamped persistent one, unacked

        def expect(metrics: dict[str, float], fields: dict[str, object]) -> None:
            def check() -> None:
                got = queue_figures(unique)
                assert {name: got.get(name) for name in metrics} == metrics, got
                queue = api.get(f"/api/queues/%2F/{unique}").json()
                assert {name: queue.get(name) for name in fields} == fields

            wait_until(check, timeout=TIMEOUT)

        expect({"messages_persistent": 3, "messages_persistent_bytes": 30,
                "messages_ram_bytes": 44, "messages_paged_out_bytes": 0,
                "messages_bytes": 44, "head_message_timestamp": 1700000001},
               {"messages_persistent": 3, "message_bytes_persistent": 30,
                "message_bytes_ram": 44, "head_message_timestamp": 1700000001})
        channel.basic_ack(held.delivery_tag)
        rejected, _, _ = channel.basic_get(unique)
        channel.basic_reject(rejected.delivery_tag, requeue=False)
        expect({"messages_persistent": 1, "messages_persistent_bytes": 10,
                "messages_ram_bytes": 24, "head_message_timestamp": 1700000002},
               {"messages_persistent": 1, "message_bytes_persistent": 10,
                "head_message_timestamp": 1700000002})
        channel.queue_purge(unique)

        def purged() -> None:
            got = queue_figures(unique)
            assert (got["messages_persistent"], got["messages_persistent_bytes"],
                    got["messages_ram_bytes"]) == (0, 0, 0), got
            assert math.isnan(got["head_message_timestamp"]), got
            queue = api.get(f"/api/queues/%2F/{unique}").json()
            assert (queue["messages_persistent"], queue["head_message_timestamp"]) == (0, None)

        wait_until(purged, timeout=TIMEOUT)
    finally:
        channel.queue_delete(unique)


@warren_only
def test_persistent_count_survives_refusals_and_dead_lettering(queue_figures, api,
                                                               confirming_channel, unique):
    """A refused persistent publish (x-overflow reject-publish) is not counted; a persistent
    message dead-lettered from one durable queue into another counts in the second only; a
    consumer without acks takes them out."""
    channel = confirming_channel
    dead = f"{unique}-dead"
    channel.queue_declare(dead, durable=True)
    channel.queue_declare(unique, durable=True, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish", "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead})
    try:
        channel.basic_publish("", unique, b"x" * 5, persistent())
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("", unique, b"y" * 6, persistent())
        method, _, _ = channel.basic_get(unique)
        channel.basic_reject(method.delivery_tag, requeue=False)  # dead-lettered to `dead`
        channel.basic_publish("", unique, b"z" * 7, persistent())

        def counts(queue: str) -> tuple[float | None, float | None]:
            got = queue_figures(queue)
            return got.get("messages_persistent"), got.get("messages_persistent_bytes")

        wait_until(lambda: assert_equal((counts(unique), counts(dead)), ((1, 7), (1, 5))))
        assert api.get(f"/api/queues/%2F/{dead}").json()["messages_persistent"] == 1
        for queue in (unique, dead):
            assert channel.basic_get(queue, auto_ack=True)[0] is not None
        wait_until(lambda: assert_equal((counts(unique), counts(dead)), ((0, 0), (0, 0))))
    finally:
        channel.queue_delete(unique)
        channel.queue_delete(dead)


def assert_equal(got: object, want: object) -> None:
    assert got == want


def pump_for(connection: pika.BlockingConnection, seconds: float) -> None:
    """Process the connection's I/O for `seconds` (process_data_events returns at the first
    event)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        connection.process_data_events(time_limit=left)


def test_consumer_capacity_is_a_share_of_time(queue_figures, api, connection, unique):
    """A consumer at its prefetch limit holding its message while two more wait: the queue
    could deliver for a while, then not. RabbitMQ 3.10.8 showed a fraction (0.58, as of its
    last statistics event) in both families and the API; a present-state figure would be 0."""
    channel = connection.channel()
    channel.queue_declare(unique)
    try:
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(unique, lambda *_: None)
        for _ in range(3):
            channel.basic_publish("", unique, b"x")

        def fraction() -> None:
            got = queue_figures(unique)
            capacity = got.get("consumer_capacity")
            assert capacity is not None and 0 < capacity < 1, got
            assert got["consumer_utilisation"] == pytest.approx(capacity, abs=0.05)
            # (RabbitMQ's object has the field only once the queue's statistics came in)
            api_figure = api.get(f"/api/queues/%2F/{unique}").json().get("consumer_capacity")
            assert api_figure is not None and 0 < api_figure < 1

        wait_until(fraction, timeout=TIMEOUT, pump=connection)
    finally:
        channel.queue_delete(unique)


@warren_only
def test_consumer_capacity_falls_while_blocked_and_recovers(queue_figures, connection, unique):
    """1 while the consumer could take every message; halving each second while it holds its
    prefetch limit and messages wait (RabbitMQ's moving average, half-life 1 s); back up once
    it acks them all and could take more."""
    channel = connection.channel()
    channel.queue_declare(unique)
    deliveries: list[int] = []
    try:
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(unique, lambda _ch, method, *_: deliveries.append(
            method.delivery_tag))
        connection.process_data_events(time_limit=0.2)
        assert queue_figures(unique)["consumer_capacity"] == 1
        for _ in range(3):
            channel.basic_publish("", unique, b"x")
        pump_for(connection, 2.5)
        low = queue_figures(unique)["consumer_capacity"]
        assert 0 < low < 0.5
        pump_for(connection, 1)
        assert queue_figures(unique)["consumer_capacity"] < low  # still blocked: falling
        while len(deliveries) < 3:
            channel.basic_ack(deliveries[-1])
            connection.process_data_events(time_limit=0.2)
        channel.basic_ack(deliveries[-1])  # the queue is empty, the consumer has room
        wait_until(lambda: assert_equal(queue_figures(unique)["consumer_capacity"] > 0.5, True),
                   pump=connection)
    finally:
        channel.queue_delete(unique)


def test_messages_published_to_a_queue(broker, api, confirming_channel, unique):
    """rabbitmq_queue_messages_published_total counts a channel's publishes routed to a queue,
    one the queue refused (x-overflow reject-publish) too, a dead-lettered copy not; a series
    per channel, queue and exchange while the channel is open. RabbitMQ 3.10.8: 3 for the
    queue (2 through the default
    exchange, one refused, and 1 through amq.fanout), 1 for its dead-letter queue (the fanout
    copy); the API's message_stats.publish shows the same."""
    channel = confirming_channel
    base = metrics_base(broker)
    dead = f"{unique}-dead"
    channel.queue_declare(dead)
    channel.queue_declare(unique, arguments={
        "x-max-length": 2, "x-overflow": "reject-publish", "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead})
    try:
        for queue in (unique, dead):
            channel.queue_bind(queue, "amq.fanout")
        channel.basic_publish("", unique, b"1")
        channel.basic_publish("amq.fanout", "", b"2")  # to both
        with pytest.raises(pika.exceptions.NackError):
            channel.basic_publish("", unique, b"3")  # refused: the queue is full
        method, _, _ = channel.basic_get(unique)
        channel.basic_reject(method.delivery_tag, requeue=False)  # a copy to `dead`

        def published(queue: str) -> dict[str, float]:
            """The queue's series: exchange -> value (one channel published them all)."""
            path = "/metrics/detailed?family=channel_queue_exchange_metrics"
            with urllib.request.urlopen(base + path, timeout=60) as response:
                scraped = Scrape(path, response.read().decode(), "")
            found: dict[str, float] = {}
            for labels, value in scraped.series("rabbitmq_detailed_queue_messages_published_total"):
                if (labels["queue_vhost"], labels["queue"]) == ("/", queue):
                    assert sorted(labels) == ["channel", "exchange", "exchange_vhost", "queue",
                                              "queue_vhost"], labels
                    assert labels["exchange_vhost"] == "/"
                    found[labels["exchange"]] = value
            return found

        def check() -> None:
            assert published(unique) == {"": 2, "amq.fanout": 1}
            assert published(dead) == {"amq.fanout": 1}
            stats = [api.get(f"/api/queues/%2F/{queue}").json().get("message_stats", {})
                     for queue in (unique, dead)]
            assert [figures.get("publish") for figures in stats] == [3, 1]

        wait_until(check, timeout=TIMEOUT)
    finally:
        channel.queue_delete(unique)
        channel.queue_delete(dead)
