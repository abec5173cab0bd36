"""Prometheus metrics with rabbitmq_prometheus's names: `GET /metrics` (aggregated) and
`GET /metrics/per-object` (per-queue series labelled vhost, queue), parsed with
prometheus_client's text parser and checked against real AMQP activity (pika).

What RabbitMQ 3.10.8 exposes is recorded in RABBITMQ_METRICS.md next to this file; these tests
encode it. To run them against a RabbitMQ node with the rabbitmq_prometheus plugin, set
WARREN_TEST_AMQP_PORT (its AMQP port) and WARREN_TEST_METRICS_PORT (its prometheus port, 15692 by
default in RabbitMQ). Against Warren the metrics are served on the management port.

RabbitMQ feeds its queue gauges from statistics emitted every 5 s, so every check polls (up to
POLL_TIMEOUT seconds) until the value is reached; the counters are compared as deltas between a
scrape taken before the activity and one taken after. Checks that only make sense for Warren
(values exact at once, memory and disk of the broker process) are skipped against another broker.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest
from client_helpers import opened
from metrics_kit import EXTERNAL, key, wait_for_deltas, wait_until

CLASSIC = "rabbit_classic_queue"
QUORUM = "rabbit_quorum_queue"
STREAM = "rabbit_stream_queue"
QUEUE_TYPES = (CLASSIC, QUORUM, STREAM)
AMQP091 = {"protocol": "amqp091"}
warren_only = pytest.mark.skipif(EXTERNAL, reason="Warren-only check (WARREN_TEST_AMQP_PORT set)")

# name (as in `# TYPE` and in the samples) -> (type, HELP text) in RabbitMQ 3.10.8
FAMILIES: dict[str, tuple[str, str]] = {
    "rabbitmq_queue_messages_ready": ("gauge", "Messages ready to be delivered to consumers"),
    "rabbitmq_queue_messages_unacked": (
        "gauge", "Messages delivered to consumers but not yet acknowledged"),
    "rabbitmq_queue_messages": (
        "gauge", "Sum of ready and unacknowledged messages - total queue depth"),
    "rabbitmq_queue_consumers": ("gauge", "Consumers on a queue"),
    "rabbitmq_queues": ("gauge", "Queues available"),
    "rabbitmq_connections": ("gauge", "Connections currently open"),
    "rabbitmq_channels": ("gauge", "Channels currently open"),
    "rabbitmq_consumers": ("gauge", "Consumers currently connected"),
    "rabbitmq_global_messages_received_total": (
        "counter", "Total number of messages received from publishers"),
    "rabbitmq_global_messages_received_confirm_total": (
        "counter", "Total number of messages received from publishers expecting confirmations"),
    "rabbitmq_global_messages_routed_total": (
        "counter", "Total number of messages routed to queues or streams"),
    "rabbitmq_global_messages_unroutable_dropped_total": (
        "counter", "Total number of messages published as non-mandatory into an exchange and "
        "dropped as unroutable"),
    "rabbitmq_global_messages_unroutable_returned_total": (
        "counter", "Total number of messages published as mandatory into an exchange and "
        "returned to the publisher as unroutable"),
    "rabbitmq_global_messages_confirmed_total": (
        "counter", "Total number of messages confirmed to publishers"),
    "rabbitmq_global_messages_delivered_total": (
        "counter", "Total number of messages delivered to consumers"),
    "rabbitmq_global_messages_delivered_consume_auto_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.consume with "
        "automatic acknowledgment"),
    "rabbitmq_global_messages_delivered_consume_manual_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.consume with "
        "manual acknowledgment"),
    "rabbitmq_global_messages_delivered_get_auto_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.get with "
        "automatic acknowledgment"),
    "rabbitmq_global_messages_delivered_get_manual_ack_total": (
        "counter", "Total number of messages delivered to consumers using basic.get with manual "
        "acknowledgment"),
    "rabbitmq_global_messages_redelivered_total": (
        "counter", "Total number of messages redelivered to consumers"),
    "rabbitmq_global_messages_acknowledged_total": (
        "counter", "Total number of messages acknowledged by consumers"),
    "rabbitmq_global_messages_get_empty_total": (
        "counter", "Total number of times basic.get operations fetched no message"),
    "rabbitmq_global_consumers": ("gauge", "Current number of consumers"),
    "rabbitmq_global_publishers": ("gauge", "Current number of publishers"),
    "rabbitmq_global_messages_dead_lettered_rejected_total": (
        "counter", "Total number of messages dead-lettered due to basic.reject or basic.nack"),
    "rabbitmq_global_messages_dead_lettered_expired_total": (
        "counter", "Total number of messages dead-lettered due to message TTL exceeded"),
    "rabbitmq_global_messages_dead_lettered_maxlen_total": (
        "counter", "Total number of messages dead-lettered due to overflow drop-head or "
        "reject-publish-dlx"),
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total": (
        "counter", "Total number of messages dead-lettered due to delivery-limit exceeded"),
    "rabbitmq_global_messages_dead_lettered_confirmed_total": (
        "counter", "Total number of messages dead-lettered and confirmed by target queues"),
    "rabbitmq_process_resident_memory_bytes": ("gauge", "Memory used in bytes"),
    "rabbitmq_resident_memory_limit_bytes": ("gauge", "Memory high watermark in bytes"),
    "rabbitmq_disk_space_available_bytes": ("gauge", "Disk space available in bytes"),
    "rabbitmq_disk_space_available_limit_bytes": (
        "gauge", "Free disk space low watermark in bytes"),
}  # fmt: skip

# label sets of the global counters: (protocol only) or (protocol x every queue type)
PROTOCOL_ONLY = (
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_received_confirm_total",
    "rabbitmq_global_messages_routed_total",
    "rabbitmq_global_messages_unroutable_dropped_total",
    "rabbitmq_global_messages_unroutable_returned_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_consumers",
    "rabbitmq_global_publishers",
)
PER_QUEUE_TYPE = (
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total",
    "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    "rabbitmq_global_messages_delivered_get_auto_ack_total",
    "rabbitmq_global_messages_delivered_get_manual_ack_total",
    "rabbitmq_global_messages_redelivered_total",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_global_messages_get_empty_total",
)
_CLASSIC_DL = {(CLASSIC, "at_most_once"), (CLASSIC, "disabled")}
_QUORUM_DL = {(QUORUM, "at_least_once"), (QUORUM, "at_most_once"), (QUORUM, "disabled")}
DEAD_LETTERED = {
    "rabbitmq_global_messages_dead_lettered_rejected_total": _CLASSIC_DL | _QUORUM_DL,
    "rabbitmq_global_messages_dead_lettered_expired_total": _CLASSIC_DL | _QUORUM_DL,
    "rabbitmq_global_messages_dead_lettered_maxlen_total": _CLASSIC_DL | {
        (QUORUM, "at_most_once"), (QUORUM, "disabled")},
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total": _QUORUM_DL,
    "rabbitmq_global_messages_dead_lettered_confirmed_total": {(QUORUM, "at_least_once")},
}  # fmt: skip
# Warren also offers x-delivery-limit on classic queues (tests/lifecycle/test_delivery_limit.py),
# so it may count classic delivery-limit dead-letterings too; extra series break no dashboard.
WARREN_EXTRA_DEAD_LETTERED = {
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total": _CLASSIC_DL,
}
QUEUE_GAUGES = (
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queue_messages",
    "rabbitmq_queue_consumers",
)
UNLABELLED = (
    "rabbitmq_queues",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_consumers",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_disk_space_available_bytes",
    "rabbitmq_disk_space_available_limit_bytes",
)
ENDPOINTS = ("/metrics", "/metrics/per-object")


# --------------------------------------------------------------------------------------------
# AMQP
# --------------------------------------------------------------------------------------------


@pytest.fixture
def channel(confirming_channel):
    return confirming_channel


@pytest.fixture
def queues(broker) -> Iterator[list[str]]:
    """Names appended here are deleted at the end of the test."""
    names: list[str] = []
    yield names
    with opened(broker) as conn:
        ch = conn.channel()
        for name in names:
            with contextlib.suppress(pika.exceptions.AMQPError):
                ch.queue_delete(name)
                ch.exchange_delete(name)


@pytest.fixture
def queue(channel, queues, unique) -> str:
    channel.queue_declare(unique)
    queues.append(unique)
    return unique


def publish(channel, queue: str, count: int, exchange: str = "") -> None:
    for i in range(count):
        channel.basic_publish(exchange, queue, str(i).encode())


# --------------------------------------------------------------------------------------------
# shape: names, types, HELP, labels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_endpoint_serves_prometheus_text(scrape, path):
    got = scrape(path)
    assert got.content_type.startswith("text/plain"), got.content_type
    assert "version=0.0.4" in got.content_type, got.content_type
    assert got.samples, "no samples"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_listed_families_have_rabbitmq_names_and_types(scrape, queue, path):
    got = scrape(path)
    wrong = [
        f"{name}: expected TYPE {kind}, got {got.types.get(name)}"
        for name, (kind, _) in FAMILIES.items()
        if got.types.get(name) != kind
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_listed_families_have_rabbitmq_help(scrape, queue, path):
    got = scrape(path)
    wrong = [
        f"{name}: expected HELP {text!r}, got {got.helps.get(name)!r}"
        for name, (_, text) in FAMILIES.items()
        if got.helps.get(name) != text
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_global_counter_labels(scrape, path):
    got = scrape(path)
    wrong = []
    for name in PROTOCOL_ONLY:
        labels = [lab for lab, _ in got.series(name)]
        if labels != [AMQP091]:
            wrong.append(f"{name}: expected [{AMQP091}], got {labels}")
    for name in PER_QUEUE_TYPE:
        labels = sorted((lab for lab, _ in got.series(name)), key=lambda lab: sorted(lab.items()))
        want = [{"protocol": "amqp091", "queue_type": t} for t in QUEUE_TYPES]
        if labels != want:
            wrong.append(f"{name}: expected {want}, got {labels}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_dead_lettered_counter_labels(scrape, path):
    got = scrape(path)
    wrong = []
    for name, want in DEAD_LETTERED.items():
        labels = [lab for lab, _ in got.series(name)]
        if any(set(lab) != {"queue_type", "dead_letter_strategy"} for lab in labels):
            wrong.append(f"{name}: expected labels queue_type, dead_letter_strategy; got {labels}")
            continue
        pairs = {(lab["queue_type"], lab["dead_letter_strategy"]) for lab in labels}
        allowed = want | WARREN_EXTRA_DEAD_LETTERED.get(name, set()) if not EXTERNAL else want
        if not want <= pairs <= allowed or len(labels) != len(pairs):
            wrong.append(f"{name}: expected {sorted(want)}, got {sorted(pairs)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_node_gauges_are_unlabelled_and_positive(scrape, queue, path):
    got = scrape(path)
    for name in UNLABELLED:
        series = got.series(name)
        assert len(series) == 1 and series[0][0] == {}, f"{name}: {series}"
    for name in (
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_disk_space_available_bytes",
        "rabbitmq_queues",
    ):
        assert got.value(name) > 0, name


def test_aggregated_queue_gauges_are_one_unlabelled_sample(scrape, queue):
    got = scrape("/metrics")
    for name in QUEUE_GAUGES:
        series = got.series(name)
        assert len(series) == 1 and series[0][0] == {}, f"{name}: {series[:5]}"


def test_per_object_queue_gauges_are_labelled_vhost_and_queue(scrape, queue):
    def check() -> None:
        got = scrape("/metrics/per-object")
        for name in QUEUE_GAUGES:
            series = got.series(name)
            assert series, f"{name}: no samples"
            bad = [lab for lab, _ in series if set(lab) != {"vhost", "queue"}]
            assert not bad, f"{name}: labels other than vhost, queue: {bad[:5]}"
            assert got.queue(name, queue) == 0, f"{name} for {queue}: {got.queue(name, queue)}"

    wait_until(check)


def test_aggregated_queue_gauges_are_the_sum_of_per_object(scrape, channel, queue):
    publish(channel, queue, 3)

    def check() -> None:
        per_object = scrape("/metrics/per-object")
        aggregated = scrape("/metrics")
        for name in QUEUE_GAUGES:
            total = sum(v for _, v in per_object.series(name))
            assert aggregated.value(name) == total, (
                f"{name}: aggregated {aggregated.value(name)}, sum of per-object {total}"
            )
        assert aggregated.value("rabbitmq_queues") == len(
            per_object.series("rabbitmq_queue_messages")
        )

    wait_until(check)


# --------------------------------------------------------------------------------------------
# values follow activity
# --------------------------------------------------------------------------------------------


def test_publish_counts_and_queue_depth(scrape, channel, queue):
    before = scrape()
    publish(channel, queue, 7)
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_received_total", **AMQP091): 7,
        key("rabbitmq_global_messages_received_confirm_total", **AMQP091): 7,
        key("rabbitmq_global_messages_confirmed_total", **AMQP091): 7,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 7,
        key("rabbitmq_global_messages_unroutable_dropped_total", **AMQP091): 0,
    })  # fmt: skip

    def depth() -> None:
        got = scrape("/metrics/per-object")
        values = {name: got.queue(name, queue) for name in QUEUE_GAUGES}
        assert values == {
            "rabbitmq_queue_messages_ready": 7,
            "rabbitmq_queue_messages_unacked": 0,
            "rabbitmq_queue_messages": 7,
            "rabbitmq_queue_consumers": 0,
        }, values

    wait_until(depth)


def test_publish_without_confirms_is_not_counted_as_confirm(scrape, connection, queue):
    plain = connection.channel()
    before = scrape()
    publish(plain, queue, 4)
    connection.channel().queue_declare(queue, passive=True)  # a round trip after the publishes
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_received_total", **AMQP091): 4,
        key("rabbitmq_global_messages_received_confirm_total", **AMQP091): 0,
        key("rabbitmq_global_messages_confirmed_total", **AMQP091): 0,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 4,
    })  # fmt: skip


def test_routed_counts_one_per_destination_queue(scrape, channel, queues, unique):
    """RabbitMQ counts a message routed to 3 queues as 3 routed messages."""
    channel.exchange_declare(unique, "fanout")
    queues.append(unique)
    for suffix in ("a", "b", "c"):
        channel.queue_declare(f"{unique}-{suffix}")
        queues.append(f"{unique}-{suffix}")
        channel.queue_bind(f"{unique}-{suffix}", unique)
    before = scrape()
    publish(channel, "", 2, exchange=unique)
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_received_total", **AMQP091): 2,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 6,
    })  # fmt: skip


def test_unroutable_dropped_and_returned(scrape, channel, unique):
    before = scrape()
    channel.basic_publish("amq.direct", unique, b"dropped")
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish("amq.direct", unique, b"returned", mandatory=True)
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_received_total", **AMQP091): 2,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 0,
        key("rabbitmq_global_messages_unroutable_dropped_total", **AMQP091): 1,
        key("rabbitmq_global_messages_unroutable_returned_total", **AMQP091): 1,
        key("rabbitmq_global_messages_confirmed_total", **AMQP091): 2,
    })  # fmt: skip


def test_consumer_delivery_and_acks(scrape, connection, channel, queue):
    publish(channel, queue, 5)
    consuming = connection.channel()
    before = scrape()
    received: list[int] = []
    tag = consuming.basic_consume(
        queue, lambda ch, method, props, body: received.append(method.delivery_tag)
    )
    classic = {"protocol": "amqp091", "queue_type": CLASSIC}
    wait_for_deltas(scrape, before, {
        key("rabbitmq_consumers"): 1,
        key("rabbitmq_global_consumers", **AMQP091): 1,
        key("rabbitmq_global_messages_delivered_total", **classic): 5,
        key("rabbitmq_global_messages_delivered_consume_manual_ack_total", **classic): 5,
        key("rabbitmq_global_messages_delivered_consume_auto_ack_total", **classic): 0,
        key("rabbitmq_global_messages_acknowledged_total", **classic): 0,
    }, pump=connection)  # fmt: skip

    def holding(unacked: float, consumers: float) -> Callable[[], None]:
        def check() -> None:
            got = scrape("/metrics/per-object")
            values = {name: got.queue(name, queue) for name in QUEUE_GAUGES}
            assert values == {
                "rabbitmq_queue_messages_ready": 0,
                "rabbitmq_queue_messages_unacked": unacked,
                "rabbitmq_queue_messages": unacked,
                "rabbitmq_queue_consumers": consumers,
            }, values

        return check

    wait_until(holding(5, 1), pump=connection)

    def all_received() -> None:
        assert len(received) == 5, received

    wait_until(all_received, pump=connection)
    consuming.basic_ack(received[-1], multiple=True)
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_acknowledged_total", **classic): 5,
    }, pump=connection)  # fmt: skip
    wait_until(holding(0, 1), pump=connection)
    consuming.basic_cancel(tag)
    wait_until(holding(0, 0), pump=connection)
    wait_for_deltas(scrape, before, {key("rabbitmq_consumers"): 0}, pump=connection)


def test_auto_ack_consumer(scrape, connection, channel, queue):
    publish(channel, queue, 3)
    consuming = connection.channel()
    before = scrape()
    consuming.basic_consume(queue, lambda *args: None, auto_ack=True)
    classic = {"protocol": "amqp091", "queue_type": CLASSIC}
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_delivered_total", **classic): 3,
        key("rabbitmq_global_messages_delivered_consume_auto_ack_total", **classic): 3,
        key("rabbitmq_global_messages_delivered_consume_manual_ack_total", **classic): 0,
        key("rabbitmq_global_messages_acknowledged_total", **classic): 0,
    }, pump=connection)  # fmt: skip


def test_basic_get_counters(scrape, channel, queue):
    publish(channel, queue, 3)
    before = scrape()
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    assert method is not None
    method, _, _ = channel.basic_get(queue)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = channel.basic_get(queue)
    assert method.redelivered
    channel.basic_ack(method.delivery_tag)
    method, _, _ = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    assert channel.basic_get(queue)[0] is None
    classic = {"protocol": "amqp091", "queue_type": CLASSIC}
    wait_for_deltas(scrape, before, {
        key("rabbitmq_global_messages_delivered_total", **classic): 4,
        key("rabbitmq_global_messages_delivered_get_auto_ack_total", **classic): 1,
        key("rabbitmq_global_messages_delivered_get_manual_ack_total", **classic): 3,
        key("rabbitmq_global_messages_redelivered_total", **classic): 1,
        key("rabbitmq_global_messages_acknowledged_total", **classic): 2,
        key("rabbitmq_global_messages_get_empty_total", **classic): 1,
    })  # fmt: skip


def by_type(name: str, queue_type: str) -> tuple:
    return key(name, protocol="amqp091", queue_type=queue_type)


DELIVERY_COUNTERS = ("delivered", "delivered_consume_manual_ack", "delivered_consume_auto_ack",
                     "delivered_get_manual_ack", "delivered_get_auto_ack", "redelivered",
                     "acknowledged", "get_empty")


def deltas_by_type(queue_type: str, **counts: int) -> dict[tuple, float]:
    """rabbitmq_global_messages_<counter>_total: `counts` under `queue_type` (0 where not
    given), 0 under the other two types."""
    return {by_type(f"rabbitmq_global_messages_{counter}_total", labelled):
            counts.get(counter, 0) if labelled == queue_type else 0
            for counter in DELIVERY_COUNTERS for labelled in QUEUE_TYPES}


def test_quorum_queue_traffic_is_counted_under_its_type(scrape, connection, channel, queues,
                                                         unique):
    """Deliveries, gets and acks of a quorum queue count under rabbit_quorum_queue only."""
    queue = f"{unique}-quorum"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    queues.append(queue)
    publish(channel, queue, 4)
    before = scrape()
    method, _, _ = channel.basic_get(queue)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = channel.basic_get(queue, auto_ack=True)
    consuming = connection.channel()
    received: list[int] = []
    consuming.basic_consume(queue, lambda ch, m, p, b: received.append(m.delivery_tag))
    wait_until(lambda: _assert_len(received, 3), pump=connection)
    consuming.basic_ack(received[-1], multiple=True)
    assert channel.basic_get(queue)[0] is None
    wait_for_deltas(scrape, before, deltas_by_type(
        QUORUM, delivered=5, delivered_get_manual_ack=1, delivered_get_auto_ack=1,
        delivered_consume_manual_ack=3, redelivered=1, acknowledged=3, get_empty=1,
    ), pump=connection)


def test_stream_traffic_is_counted_under_its_type(scrape, connection, channel, queues, unique):
    """A stream consumer's deliveries and acks count under rabbit_stream_queue only."""
    queue = f"{unique}-stream"
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "stream"})
    queues.append(queue)
    publish(channel, queue, 3)
    before = scrape()
    consuming = connection.channel()
    consuming.basic_qos(prefetch_count=10)
    received: list[int] = []
    consuming.basic_consume(queue, lambda ch, m, p, b: received.append(m.delivery_tag),
                            arguments={"x-stream-offset": "first"})
    wait_until(lambda: _assert_len(received, 3), pump=connection)
    consuming.basic_ack(received[-1], multiple=True)
    wait_for_deltas(scrape, before, deltas_by_type(
        STREAM, delivered=3, delivered_consume_manual_ack=3, acknowledged=3,
    ), pump=connection)


def _assert_len(items: list, count: int) -> None:
    assert len(items) == count, items


def test_connections_channels_gauges(scrape, broker):
    before = scrape()
    with opened(broker) as first, opened(broker) as second, opened(broker) as third:
        for conn in (first, second, third):
            conn.channel()
            conn.channel()
        wait_for_deltas(scrape, before, {
            key("rabbitmq_connections"): 3,
            key("rabbitmq_channels"): 6,
        })  # fmt: skip
        wait_for_deltas(scrape, before, {
            key("rabbitmq_connections"): 3,
            key("rabbitmq_channels"): 6,
        }, path="/metrics/per-object")  # fmt: skip
        second.close()
        wait_for_deltas(scrape, before, {
            key("rabbitmq_connections"): 2,
            key("rabbitmq_channels"): 4,
        })  # fmt: skip
    wait_for_deltas(scrape, before, {key("rabbitmq_connections"): 0, key("rabbitmq_channels"): 0})


def test_queue_count_and_deleted_queue_disappears(scrape, channel, unique):
    """rabbitmq_queues counts the queues that have per-object series; deleted ones go away.

    (Compared within one moment rather than as a delta from before the test: RabbitMQ drops
    queues deleted by earlier tests from rabbitmq_queues only at its next statistics tick.)"""
    names = [f"{unique}-{i}" for i in range(3)]

    def queues_are(present: bool) -> Callable[[], None]:
        def check() -> None:
            per_object = scrape("/metrics/per-object")
            aggregated = scrape("/metrics")
            values = [per_object.queue("rabbitmq_queue_messages", n) for n in names]
            assert values == ([0, 0, 0] if present else [None, None, None]), values
            listed = len(per_object.series("rabbitmq_queue_messages"))
            assert aggregated.value("rabbitmq_queues") == listed, (
                f"rabbitmq_queues {aggregated.value('rabbitmq_queues')}, {listed} queues listed"
            )

        return check

    try:
        for name in names:
            channel.queue_declare(name)
        wait_until(queues_are(True))
        during = scrape().value("rabbitmq_queues")
    finally:
        for name in names:
            channel.queue_delete(name)
    wait_until(queues_are(False))
    assert scrape().value("rabbitmq_queues") <= during - 3


@pytest.mark.parametrize("suffix", [
    " spaces, commas=and é ü 中",
    pytest.param('"quoted"\\back\\slash', marks=warren_only),  # RabbitMQ 3.10.8 does not
    # escape them, which makes its whole /metrics/per-object unparseable (RABBITMQ_METRICS.md)
])  # fmt: skip
def test_queue_name_in_labels(scrape, channel, queues, unique, suffix):
    name = unique + suffix
    channel.queue_declare(name)
    queues.append(name)
    publish(channel, name, 2)

    def check() -> None:
        assert scrape("/metrics/per-object").queue("rabbitmq_queue_messages_ready", name) == 2

    wait_until(check)


# --------------------------------------------------------------------------------------------
# dead-lettering
# --------------------------------------------------------------------------------------------


def dead_letter_setup(channel, queues, unique, **arguments) -> tuple[str, str]:
    """A source queue dead-lettering to a fanout exchange bound to a target queue."""
    source, target, dlx = f"{unique}-src", f"{unique}-dead", f"{unique}-dlx"
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(target)
    channel.queue_bind(target, dlx)
    channel.queue_declare(source, arguments={"x-dead-letter-exchange": dlx, **arguments})
    queues.extend([source, target, dlx])
    return source, target


def dl(reason: str, strategy: str, queue_type: str = CLASSIC) -> tuple:
    return key(
        f"rabbitmq_global_messages_dead_lettered_{reason}_total",
        queue_type=queue_type,
        dead_letter_strategy=strategy,
    )


def wait_for_ready(scrape, queue: str, count: int) -> None:
    def check() -> None:
        got = scrape("/metrics/per-object").queue("rabbitmq_queue_messages_ready", queue)
        assert got == count, f"{queue}: expected {count} ready, got {got}"

    wait_until(check)


def test_dead_lettered_rejected(scrape, channel, queues, unique):
    source, target = dead_letter_setup(channel, queues, unique)
    publish(channel, source, 3)
    before = scrape()
    for requeue_false in ("reject", "nack"):
        method, _, _ = channel.basic_get(source)
        if requeue_false == "reject":
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_nack(method.delivery_tag, requeue=False)
    wait_for_deltas(scrape, before, {
        dl("rejected", "at_most_once"): 2,
        dl("rejected", "disabled"): 0,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 0,
        key("rabbitmq_global_messages_received_total", **AMQP091): 0,
        key("rabbitmq_global_messages_acknowledged_total", protocol="amqp091",
            queue_type=CLASSIC): 0,
    })  # fmt: skip
    wait_for_ready(scrape, target, 2)
    wait_for_ready(scrape, source, 1)


def test_rejected_without_dead_letter_exchange_counts_as_disabled(scrape, channel, queue):
    publish(channel, queue, 1)
    before = scrape()
    method, _, _ = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    wait_for_deltas(scrape, before, {
        dl("rejected", "at_most_once"): 0,
        dl("rejected", "disabled"): 1,
    })  # fmt: skip


def test_requeue_is_not_dead_lettering(scrape, channel, queues, unique):
    source, _ = dead_letter_setup(channel, queues, unique)
    publish(channel, source, 1)
    before = scrape()
    method, _, _ = channel.basic_get(source)
    channel.basic_reject(method.delivery_tag, requeue=True)
    wait_for_ready(scrape, source, 1)
    after = scrape()
    for strategy in ("at_most_once", "disabled"):
        name, labels = dl("rejected", strategy)
        assert after.value(name, **dict(labels)) == before.value(name, **dict(labels))


def test_dead_lettered_expired(scrape, channel, queues, unique):
    source, target = dead_letter_setup(channel, queues, unique, **{"x-message-ttl": 50})
    before = scrape()
    publish(channel, source, 2)
    wait_for_deltas(scrape, before, {dl("expired", "at_most_once"): 2})
    wait_for_ready(scrape, target, 2)
    wait_for_ready(scrape, source, 0)


def test_dead_lettered_maxlen(scrape, channel, queues, unique):
    source, target = dead_letter_setup(channel, queues, unique, **{"x-max-length": 2})
    before = scrape()
    publish(channel, source, 5)
    wait_for_deltas(scrape, before, {
        dl("maxlen", "at_most_once"): 3,
        key("rabbitmq_global_messages_received_total", **AMQP091): 5,
        key("rabbitmq_global_messages_routed_total", **AMQP091): 5,
    })  # fmt: skip
    wait_for_ready(scrape, target, 3)
    wait_for_ready(scrape, source, 2)


def test_maxlen_without_dead_letter_exchange_counts_as_disabled(scrape, channel, queues, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 1})
    queues.append(unique)
    before = scrape()
    publish(channel, unique, 3)
    wait_for_deltas(scrape, before, {
        dl("maxlen", "disabled"): 2,
        dl("maxlen", "at_most_once"): 0,
    })  # fmt: skip


# --------------------------------------------------------------------------------------------
# Warren only
# --------------------------------------------------------------------------------------------


@warren_only
def test_dead_lettered_delivery_limit_on_a_classic_queue(scrape, channel, queues, unique):
    """Warren's classic queues take x-delivery-limit (RabbitMQ 3.10: quorum queues only)."""
    source, target = dead_letter_setup(channel, queues, unique, **{"x-delivery-limit": 1})
    publish(channel, source, 1)
    before = scrape()
    for _ in range(3):  # limit 1: delivered twice, the second return dead-letters it
        method, _, _ = channel.basic_get(source)
        if method is None:
            break
        channel.basic_reject(method.delivery_tag, requeue=True)
    wait_for_deltas(scrape, before, {
        dl("delivery_limit", "at_most_once"): 1,
        dl("rejected", "at_most_once"): 0,
    })  # fmt: skip
    wait_for_ready(scrape, target, 1)


@warren_only
def test_values_are_exact_at_once(scrape, channel, queue):
    """Warren reads its counters at scrape time: no statistics interval to wait for."""
    before = scrape()
    publish(channel, queue, 4)  # confirmed, so the broker has counted them
    got = scrape("/metrics/per-object")
    assert got.queue("rabbitmq_queue_messages_ready", queue) == 4
    for name in (
        "rabbitmq_global_messages_received_total",
        "rabbitmq_global_messages_routed_total",
        "rabbitmq_global_messages_confirmed_total",
    ):
        assert got.value(name, **AMQP091) - before.value(name, **AMQP091) == 4, name


@warren_only
def test_resident_memory_is_the_broker_process_rss(scrape, broker):
    with open(f"/proc/{broker.process.pid}/status") as f:
        status = f.read()
    rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
    got = scrape().value("rabbitmq_process_resident_memory_bytes")
    assert 0.5 * rss <= got <= 2 * rss, f"metric {got}, VmRSS {rss}"


@warren_only
def test_disk_space_is_that_of_the_data_directory(scrape, broker):
    free = shutil.disk_usage(broker.data_dir).free
    got = scrape().value("rabbitmq_disk_space_available_bytes")
    assert abs(got - free) <= max(0.05 * free, 64 << 20), f"metric {got}, free {free}"


ALARM_FAMILIES = {
    "rabbitmq_alarms_file_descriptor_limit": "is 1 if file descriptor limit alarm is in effect",
    "rabbitmq_alarms_free_disk_space_watermark":
        "is 1 if free disk space watermark alarm is in effect",
    "rabbitmq_alarms_memory_used_watermark": "is 1 if VM memory watermark alarm is in effect",
}


def test_alarm_gauges_are_untyped_and_only_aggregated(scrape):
    """0/1 per alarm (tests/broker/test_alarms.py raises them on a Warren of its own)."""
    got = scrape("/metrics")
    for name, text in ALARM_FAMILIES.items():
        assert (got.types.get(name), got.helps.get(name)) == ("untyped", text), name
        assert got.value(name) == 0, name  # the shared broker is never in alarm
    assert not [name for name in scrape("/metrics/per-object").types
                if name.startswith("rabbitmq_alarms_")]


@warren_only
def test_dead_lettered_from_a_quorum_queue_is_labelled_quorum(scrape, channel, queues, unique):
    """Deaths in a quorum queue count under queue_type rabbit_quorum_queue, not classic."""
    target, dlx = f"{unique}-dead", f"{unique}-dlx"
    source = f"{unique}-quorum"
    channel.exchange_declare(dlx, "fanout")
    channel.queue_declare(target)
    channel.queue_bind(target, dlx)
    channel.queue_declare(source, durable=True, arguments={
        "x-queue-type": "quorum", "x-dead-letter-exchange": dlx, "x-delivery-limit": 0})
    queues.extend([source, target, dlx])
    publish(channel, source, 2)
    before = scrape()
    for requeue in (False, True):  # rejected, then past the delivery limit
        method, _, _ = channel.basic_get(source)
        channel.basic_reject(method.delivery_tag, requeue=requeue)
    wait_for_deltas(scrape, before, {
        dl("rejected", "at_most_once", QUORUM): 1,
        dl("delivery_limit", "at_most_once", QUORUM): 1,
        dl("rejected", "at_most_once"): 0,
        dl("delivery_limit", "at_most_once"): 0,
    })  # fmt: skip
    wait_for_ready(scrape, target, 2)
