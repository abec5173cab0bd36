"""The rabbitmq_prometheus 3.10 families beyond the global message counters: identity and
build info, churn totals, auth attempts, the queue, channel and connection families, process
limits; `/metrics/detailed` with `family` and `vhost`; gzip. Shape (names, types, HELP, label
names per endpoint) is diffed against what RabbitMQ 3.10.8's plugin wrote for the same objects
(a connection, a channel with confirms and prefetch 5 consuming from a queue holding one
message; tests/management/RABBITMQ_METRICS.md); values that must move are moved by real pika
clients. Runs against RabbitMQ too: WARREN_TEST_AMQP_PORT, WARREN_TEST_HTTP_PORT and
WARREN_TEST_METRICS_PORT (its prometheus port) as for test_metrics.py."""

from __future__ import annotations

import base64
import functools
import gzip
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest
from brokers import run_warren
from client_helpers import opened
from metrics_kit import (
    EXTERNAL,
    POLL_TIMEOUT,
    Scrape,
    key,
    metrics_base,
    wait_for_deltas,
    wait_until,
)
from pamqp import commands
from prometheus_client.parser import text_string_to_metric_families
from raw_amqp import publish_bytes, raw_client

warren_only = pytest.mark.skipif(EXTERNAL, reason="Warren-only check (WARREN_TEST_AMQP_PORT set)")

ABSENT = None  # not in this endpoint
NO_SAMPLES = "no samples"  # `# TYPE` and `# HELP` only
UNLABELLED: tuple[str, ...] = ()
PROTOCOL = ("protocol",)
BY_QUEUE_TYPE = ("protocol", "queue_type")
DEAD_LETTER = ("queue_type", "dead_letter_strategy")
BUILD = ("rabbitmq_version", "prometheus_plugin_version", "prometheus_client_version",
         "erlang_version")
IDENTITY = ("rabbitmq_node", "rabbitmq_cluster", "rabbitmq_cluster_permanent_id")
CHANNEL = ("channel",)  # RabbitMQ 3.10 labels connections `channel` too
CHANNEL_EXCHANGE = ("channel", "vhost", "exchange")
CHANNEL_QUEUE = ("channel", "vhost", "queue")
QUEUE = ("vhost", "queue")
QUEUE_EXCHANGE = ("channel", "queue_vhost", "queue", "exchange_vhost", "exchange")

# name (as in `# TYPE`) -> (type, label names in /metrics, in /metrics/per-object, HELP), as
# RabbitMQ 3.10.8 wrote them; the families Warren leaves out are in LEFT_OUT.
EXPECTED: dict[str, tuple] = {
    "process_start_time_seconds": ("gauge", UNLABELLED, ABSENT,
        "Start time of the process since unix epoch in seconds."),
    "rabbitmq_alarms_file_descriptor_limit": ("untyped", UNLABELLED, ABSENT,
        "is 1 if file descriptor limit alarm is in effect"),
    "rabbitmq_alarms_free_disk_space_watermark": ("untyped", UNLABELLED, ABSENT,
        "is 1 if free disk space watermark alarm is in effect"),
    "rabbitmq_alarms_memory_used_watermark": ("untyped", UNLABELLED, ABSENT,
        "is 1 if VM memory watermark alarm is in effect"),
    "rabbitmq_auth_attempts_failed_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of failed authentication attempts"),
    "rabbitmq_auth_attempts_succeeded_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of successful authentication attempts"),
    "rabbitmq_auth_attempts_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of authorization attempts"),
    "rabbitmq_build_info": ("untyped", BUILD, BUILD,
        "RabbitMQ & Erlang/OTP version info"),
    "rabbitmq_channel_acks_uncommitted": ("gauge", UNLABELLED, CHANNEL,
        "Message acknowledgements in a transaction not yet committed"),
    "rabbitmq_channel_consumers": ("gauge", UNLABELLED, CHANNEL,
        "Consumers on a channel"),
    "rabbitmq_channel_messages_unacked": ("gauge", UNLABELLED, CHANNEL,
        "Delivered but not yet acknowledged messages"),
    "rabbitmq_channel_messages_uncommitted": ("gauge", UNLABELLED, CHANNEL,
        "Messages received in a transaction but not yet committed"),
    "rabbitmq_channel_messages_unconfirmed": ("gauge", UNLABELLED, CHANNEL,
        "Published but not yet confirmed messages"),
    "rabbitmq_channel_prefetch": ("gauge", UNLABELLED, CHANNEL,
        "Total limit of unacknowledged messages for all consumers on a channel"),
    "rabbitmq_channel_messages_published_total": ("counter", UNLABELLED, CHANNEL_EXCHANGE,
        "Total number of messages published into an exchange on a channel"),
    "rabbitmq_channel_messages_confirmed_total": ("counter", UNLABELLED, CHANNEL_EXCHANGE,
        "Total number of messages published into an exchange and confirmed on the channel"),
    "rabbitmq_channel_messages_unroutable_returned_total": ("counter", UNLABELLED, CHANNEL_EXCHANGE,  # noqa: E501
        "Total number of messages published as mandatory into an exchange and returned to the "
        "publisher as unroutable"),
    "rabbitmq_channel_messages_unroutable_dropped_total": ("counter", UNLABELLED, CHANNEL_EXCHANGE,  # noqa: E501
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable"),
    "rabbitmq_channel_get_ack_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages fetched with basic.get in manual acknowledgement mode"),
    "rabbitmq_channel_get_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages fetched with basic.get in automatic acknowledgement mode"),
    "rabbitmq_channel_messages_delivered_ack_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages delivered to consumers in manual acknowledgement mode"),
    "rabbitmq_channel_messages_delivered_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages delivered to consumers in automatic acknowledgement mode"),
    "rabbitmq_channel_messages_redelivered_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages redelivered to consumers"),
    "rabbitmq_channel_messages_acked_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of messages acknowledged by consumers"),
    "rabbitmq_channel_get_empty_total": ("counter", UNLABELLED, CHANNEL_QUEUE,
        "Total number of times basic.get operations fetched no message"),
    "rabbitmq_channels": ("gauge", UNLABELLED, UNLABELLED,
        "Channels currently open"),
    "rabbitmq_channels_closed_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of channels closed"),
    "rabbitmq_channels_opened_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of channels opened"),
    "rabbitmq_connection_channels": ("gauge", UNLABELLED, CHANNEL,
        "Channels on a connection"),
    "rabbitmq_connection_incoming_bytes_total": ("counter", UNLABELLED, CHANNEL,
        "Total number of bytes received on a connection"),
    "rabbitmq_connection_incoming_packets_total": ("counter", UNLABELLED, CHANNEL,
        "Total number of packets received on a connection"),
    "rabbitmq_connection_outgoing_bytes_total": ("counter", UNLABELLED, CHANNEL,
        "Total number of bytes sent on a connection"),
    "rabbitmq_connection_outgoing_packets_total": ("counter", UNLABELLED, CHANNEL,
        "Total number of packets sent on a connection"),
    "rabbitmq_connection_pending_packets": ("gauge", UNLABELLED, CHANNEL,
        "Number of packets waiting to be sent on a connection"),
    "rabbitmq_connections": ("gauge", UNLABELLED, UNLABELLED,
        "Connections currently open"),
    "rabbitmq_connections_closed_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of connections closed or terminated"),
    "rabbitmq_connections_opened_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of connections opened"),
    "rabbitmq_consumer_prefetch": ("gauge", UNLABELLED, CHANNEL,
        "Limit of unacknowledged messages for each consumer"),
    "rabbitmq_consumers": ("gauge", UNLABELLED, UNLABELLED,
        "Consumers currently connected"),
    "rabbitmq_disk_space_available_bytes": ("gauge", UNLABELLED, UNLABELLED,
        "Disk space available in bytes"),
    "rabbitmq_disk_space_available_limit_bytes": ("gauge", UNLABELLED, UNLABELLED,
        "Free disk space low watermark in bytes"),
    "rabbitmq_global_consumers": ("gauge", PROTOCOL, PROTOCOL,
        "Current number of consumers"),
    "rabbitmq_global_messages_acknowledged_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,
        "Total number of messages acknowledged by consumers"),
    "rabbitmq_global_messages_confirmed_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages confirmed to publishers"),
    "rabbitmq_global_messages_dead_lettered_confirmed_total": ("counter", DEAD_LETTER, DEAD_LETTER,
        "Total number of messages dead-lettered and confirmed by target queues"),
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total": ("counter", DEAD_LETTER, DEAD_LETTER,  # noqa: E501
        "Total number of messages dead-lettered due to delivery-limit exceeded"),
    "rabbitmq_global_messages_dead_lettered_expired_total": ("counter", DEAD_LETTER, DEAD_LETTER,
        "Total number of messages dead-lettered due to message TTL exceeded"),
    "rabbitmq_global_messages_dead_lettered_maxlen_total": ("counter", DEAD_LETTER, DEAD_LETTER,
        "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx"),
    "rabbitmq_global_messages_dead_lettered_rejected_total": ("counter", DEAD_LETTER, DEAD_LETTER,
        "Total number of messages dead-lettered due to basic.reject or basic.nack"),
    "rabbitmq_global_messages_delivered_consume_auto_ack_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,  # noqa: E501
        "Total number of messages delivered to consumers using basic.consume with automatic "
        "acknowledgment"),
    "rabbitmq_global_messages_delivered_consume_manual_ack_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,  # noqa: E501
        "Total number of messages delivered to consumers using basic.consume with manual "
        "acknowledgment"),
    "rabbitmq_global_messages_delivered_get_auto_ack_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,  # noqa: E501
        "Total number of messages delivered to consumers using basic.get with automatic "
        "acknowledgment"),
    "rabbitmq_global_messages_delivered_get_manual_ack_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,  # noqa: E501
        "Total number of messages delivered to consumers using basic.get with manual "
        "acknowledgment"),
    "rabbitmq_global_messages_delivered_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,
        "Total number of messages delivered to consumers"),
    "rabbitmq_global_messages_get_empty_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,
        "Total number of times basic.get operations fetched no message"),
    "rabbitmq_global_messages_received_confirm_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages received from publishers expecting confirmations"),
    "rabbitmq_global_messages_received_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages received from publishers"),
    "rabbitmq_global_messages_redelivered_total": ("counter", BY_QUEUE_TYPE, BY_QUEUE_TYPE,
        "Total number of messages redelivered to consumers"),
    "rabbitmq_global_messages_routed_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages routed to queues or streams"),
    "rabbitmq_global_messages_unroutable_dropped_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages published as non-mandatory into an exchange and dropped as "
        "unroutable"),
    "rabbitmq_global_messages_unroutable_returned_total": ("counter", PROTOCOL, PROTOCOL,
        "Total number of messages published as mandatory into an exchange and returned to the "
        "publisher as unroutable"),
    "rabbitmq_global_publishers": ("gauge", PROTOCOL, PROTOCOL,
        "Current number of publishers"),
    "rabbitmq_identity_info": ("untyped", IDENTITY, IDENTITY,
        "RabbitMQ node & cluster identity info"),
    "rabbitmq_process_max_fds": ("gauge", UNLABELLED, UNLABELLED,
        "Open file descriptors limit"),
    "rabbitmq_process_max_tcp_sockets": ("gauge", UNLABELLED, UNLABELLED,
        "Open TCP sockets limit"),
    "rabbitmq_process_open_fds": ("gauge", UNLABELLED, UNLABELLED,
        "Open file descriptors"),
    "rabbitmq_process_open_tcp_sockets": ("gauge", UNLABELLED, UNLABELLED,
        "Open TCP sockets"),
    "rabbitmq_process_resident_memory_bytes": ("gauge", UNLABELLED, UNLABELLED,
        "Memory used in bytes"),
    "rabbitmq_queue_consumer_capacity": ("gauge", NO_SAMPLES, QUEUE,
        "Consumer capacity"),
    "rabbitmq_queue_consumer_utilisation": ("gauge", UNLABELLED, QUEUE,
        "Same as consumer capacity"),
    "rabbitmq_queue_consumers": ("gauge", UNLABELLED, QUEUE,
        "Consumers on a queue"),
    "rabbitmq_queue_messages": ("gauge", UNLABELLED, QUEUE,
        "Sum of ready and unacknowledged messages - total queue depth"),
    "rabbitmq_queue_messages_bytes": ("gauge", UNLABELLED, QUEUE,
        "Size in bytes of ready and unacknowledged messages"),
    "rabbitmq_queue_messages_paged_out": ("gauge", UNLABELLED, QUEUE,
        "Messages paged out to disk"),
    "rabbitmq_queue_messages_persistent": ("gauge", UNLABELLED, QUEUE,
        "Persistent messages"),
    "rabbitmq_queue_messages_persistent_bytes": ("gauge", NO_SAMPLES, QUEUE,
        "Size in bytes of persistent messages"),
    "rabbitmq_queue_messages_published_total": ("counter", UNLABELLED, QUEUE_EXCHANGE,
        "Total number of messages published to queues"),
    "rabbitmq_queue_messages_ram_bytes": ("gauge", UNLABELLED, QUEUE,
        "Size of ready and unacknowledged messages stored in memory"),
    "rabbitmq_queue_messages_paged_out_bytes": ("gauge", UNLABELLED, QUEUE,
        "Size in bytes of messages paged out to disk"),
    "rabbitmq_queue_head_message_timestamp": ("gauge", NO_SAMPLES, QUEUE,
        "Timestamp of the first message in the queue, if any"),
    "rabbitmq_queue_messages_ram": ("gauge", UNLABELLED, QUEUE,
        "Ready and unacknowledged messages stored in memory"),
    "rabbitmq_queue_messages_ready": ("gauge", UNLABELLED, QUEUE,
        "Messages ready to be delivered to consumers"),
    "rabbitmq_queue_messages_ready_bytes": ("gauge", UNLABELLED, QUEUE,
        "Size in bytes of ready messages"),
    "rabbitmq_queue_messages_ready_ram": ("gauge", UNLABELLED, QUEUE,
        "Ready messages stored in memory"),
    "rabbitmq_queue_messages_unacked": ("gauge", UNLABELLED, QUEUE,
        "Messages delivered to consumers but not yet acknowledged"),
    "rabbitmq_queue_messages_unacked_bytes": ("gauge", UNLABELLED, QUEUE,
        "Size in bytes of all unacknowledged messages"),
    "rabbitmq_queue_messages_unacked_ram": ("gauge", UNLABELLED, QUEUE,
        "Unacknowledged messages stored in memory"),
    "rabbitmq_queues": ("gauge", UNLABELLED, UNLABELLED,
        "Queues available"),
    "rabbitmq_queues_created_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of queues created"),
    "rabbitmq_queues_declared_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of queues declared"),
    "rabbitmq_queues_deleted_total": ("counter", UNLABELLED, UNLABELLED,
        "Total number of queues deleted"),
    "rabbitmq_resident_memory_limit_bytes": ("gauge", UNLABELLED, UNLABELLED,
        "Memory high watermark in bytes"),
}
# What Warren leaves out, and why (RABBITMQ_METRICS.md lists them too).
ERLANG = "about the Erlang VM or a RabbitMQ process/store internal Warren does not have"
NOT_COUNTED = "not counted by Warren yet"
LEFT_OUT_PREFIXES = {
    "rabbitmq_erlang_": ERLANG, "rabbitmq_io_": ERLANG, "rabbitmq_schema_db_": ERLANG,
    "rabbitmq_msg_store_": ERLANG, "rabbitmq_queue_index_": ERLANG, "rabbitmq_raft_": ERLANG,
}
LEFT_OUT = {
    "rabbitmq_queue_process_reductions_total": ERLANG,
    "rabbitmq_queue_process_memory_bytes": ERLANG,
    "rabbitmq_channel_process_reductions_total": ERLANG,
    "rabbitmq_connection_process_reductions_total": ERLANG,
    "rabbitmq_queue_disk_reads_total": ERLANG,
    "rabbitmq_queue_disk_writes_total": ERLANG,
    "rabbitmq_auth_attempts_detailed_total": NOT_COUNTED,
    "rabbitmq_auth_attempts_detailed_succeeded_total": NOT_COUNTED,
    "rabbitmq_auth_attempts_detailed_failed_total": NOT_COUNTED,
}
ENDPOINTS = ("/metrics", "/metrics/per-object")


def left_out(name: str) -> bool:
    return name in LEFT_OUT or name.startswith(tuple(LEFT_OUT_PREFIXES))


def shape(text: str) -> dict[str, tuple[str, str, set[tuple[str, ...]]]]:
    """name -> (type, HELP, the label-name tuples of its samples, in the order written)."""
    families: dict[str, tuple[str, str, set[tuple[str, ...]]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, current, kind = line.split(" ", 3)
            families[current] = (kind, "", set())
        elif line.startswith("# HELP "):
            _, _, name, documentation = line.split(" ", 3)
            kind, _, labels = families[name]
            families[name] = (kind, documentation, labels)
        elif line and not line.startswith("#"):
            if "{" in line:
                inside = line[line.index("{") + 1:line.rindex("}")]
                names = tuple(part.split("=", 1)[0]
                              for part in inside.split('",') if "=" in part)
            else:
                names = ()
            families[current][2].add(names)
    return families


def get(base: str, path: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(base + path, headers=headers or {})
    return urllib.request.urlopen(request, timeout=60)


@pytest.fixture
def base(broker) -> str:
    return metrics_base(broker)


@pytest.fixture
def consuming(broker, unique, base):
    """A connection with a channel (confirms, prefetch 5) consuming from a queue that holds
    one 10-byte message; yields the queue's name once the per-object scrape lists it."""
    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(unique)
        channel.basic_publish("", unique, b"x" * 10)
        channel.basic_qos(prefetch_count=5)
        channel.basic_consume(unique, lambda *_: None)
        connection.process_data_events(time_limit=0.2)

        def listed() -> None:
            assert f'queue="{unique}"' in get(base, "/metrics/per-object").read().decode()

        wait_until(listed, pump=connection)
        yield unique
        channel.queue_delete(unique)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_families_have_rabbitmq_names_types_help_and_labels(base, consuming, path):
    got = shape(get(base, path).read().decode())
    wrong = []
    for name, (kind, aggregated, per_object, documentation) in EXPECTED.items():
        labels = aggregated if path == "/metrics" else per_object
        if labels is ABSENT:
            if name in got:
                wrong.append(f"{name}: in {path}, RabbitMQ has it only in the other endpoint")
            continue
        if name not in got:
            wrong.append(f"{name}: missing")
            continue
        got_kind, got_help, got_labels = got[name]
        if (got_kind, got_help) != (kind, documentation):
            wrong.append(f"{name}: {got_kind} {got_help!r}, RabbitMQ: {kind} {documentation!r}")
        want = set() if labels == NO_SAMPLES else {labels}
        if got_labels != want:
            wrong.append(f"{name}: labels {sorted(got_labels)}, RabbitMQ: {sorted(want)}")
    unknown = [name for name in got if name.startswith("rabbitmq_") and name not in EXPECTED
               and not left_out(name)]
    assert not wrong, "\n".join(wrong)
    assert not unknown, f"families neither expected nor listed as left out: {unknown}"


@warren_only
@pytest.mark.parametrize("path", ENDPOINTS)
def test_left_out_families_are_not_written(base, path):
    """A family Warren does not count is not advertised (not even with no sample)."""
    written = [name for name in shape(get(base, path).read().decode()) if left_out(name)]
    assert written == []


@pytest.fixture
def lone(broker, tmp_path) -> Iterator[tuple[object, Callable[..., Scrape]]]:
    """A broker no other test talks to, and its scrape: churn counters count every socket that
    ends, so on the shared broker an earlier test's connection closing late (its handshake timing
    out, pika's objects being collected) lands in the window. Against an external broker (run
    one test at a time) it is that broker."""
    if EXTERNAL:
        base = metrics_base(broker)
        yield broker, functools.partial(scrape_at, base)
        return
    with run_warren(tmp_path) as private:
        base = metrics_base(private)
        yield private, functools.partial(scrape_at, base)


def scrape_at(base: str, path: str = "/metrics") -> Scrape:
    with urllib.request.urlopen(base + path, timeout=120 if EXTERNAL else 10) as response:
        return Scrape(path, response.read().decode("utf-8"),
                      response.headers.get("Content-Type", ""))


def test_churn_counters_move(lone):
    broker, scrape = lone
    before = scrape()
    with opened(broker) as connection:
        channel = connection.channel()
        connection.channel().close()
        name = f"metrics-churn-{time.monotonic_ns()}"
        channel.queue_declare(name)
        channel.queue_declare(name)  # declared again: not created again
        channel.queue_declare(name, passive=True)  # passive: not a declaration
        channel.queue_delete(name)
    wait_for_deltas(scrape, before, {
        key("rabbitmq_connections_opened_total"): 1,
        key("rabbitmq_connections_closed_total"): 1,
        key("rabbitmq_channels_opened_total"): 2,
        key("rabbitmq_channels_closed_total"): 2,
        key("rabbitmq_queues_declared_total"): 2,
        key("rabbitmq_queues_created_total"): 1,
        key("rabbitmq_queues_deleted_total"): 1,
    })  # fmt: skip


def test_refused_login_counts_as_a_failed_auth_attempt(lone):
    broker, scrape = lone
    before = scrape()
    refused = pika.ConnectionParameters(broker.host, broker.port,
                                        credentials=pika.PlainCredentials("guest", "wrong"))
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(refused)
    amqp = {"protocol": "amqp091"}
    wait_for_deltas(scrape, before, {
        key("rabbitmq_auth_attempts_total", **amqp): 1,
        key("rabbitmq_auth_attempts_failed_total", **amqp): 1,
        key("rabbitmq_auth_attempts_succeeded_total", **amqp): 0,
        # a refused login is a connection closed, never opened
        key("rabbitmq_connections_opened_total"): 0,
        key("rabbitmq_connections_closed_total"): 1,
    })  # fmt: skip
    before = scrape()
    with opened(broker):
        pass
    wait_for_deltas(scrape, before, {
        key("rabbitmq_auth_attempts_total", **amqp): 1,
        key("rabbitmq_auth_attempts_succeeded_total", **amqp): 1,
    })  # fmt: skip


def test_http_api_logins_count_under_http(scrape, broker):
    http_port = os.environ.get("WARREN_TEST_HTTP_PORT") or broker.management_port
    if http_port is None:
        pytest.skip("no management port")
    before = scrape()
    for password in ("wrong", "guest"):
        request = urllib.request.Request(f"http://{broker.host}:{http_port}/api/whoami")
        credentials = base64.b64encode(f"guest:{password}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {credentials}")
        try:
            urllib.request.urlopen(request, timeout=10).read()
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
    http = {"protocol": "http"}
    if EXTERNAL:  # a shared node's API serves others' logins too: only the failure is ours
        wait_for_deltas(scrape, before, {key("rabbitmq_auth_attempts_failed_total", **http): 1})
        return
    wait_for_deltas(scrape, before, {
        key("rabbitmq_auth_attempts_total", **http): 2,
        key("rabbitmq_auth_attempts_failed_total", **http): 1,
        key("rabbitmq_auth_attempts_succeeded_total", **http): 1,
    })  # fmt: skip


def test_queue_bytes_and_memory_figures(scrape, channel, unique):
    channel.queue_declare(unique)
    try:
        for _ in range(3):
            channel.basic_publish("", unique, b"x" * 10)
        method, _, _ = channel.basic_get(unique)  # one unacked, two ready

        def check() -> None:
            now = scrape("/metrics/per-object")
            figures = {name: now.queue(f"rabbitmq_queue_{name}", unique) for name in (
                "messages_ready", "messages_unacked", "messages_bytes", "messages_ready_bytes",
                "messages_unacked_bytes", "messages_ram", "messages_ready_ram",
                "messages_unacked_ram", "messages_paged_out", "messages_persistent")}
            assert figures == {
                "messages_ready": 2, "messages_unacked": 1, "messages_bytes": 30,
                "messages_ready_bytes": 20, "messages_unacked_bytes": 10, "messages_ram": 3,
                "messages_ready_ram": 2, "messages_unacked_ram": 1, "messages_paged_out": 0,
                "messages_persistent": 0,  # transient messages in a non-durable queue
            }

        # (a shared RabbitMQ's per-object scrape can take a minute: several tries need time)
        wait_until(check, timeout=300 if EXTERNAL else POLL_TIMEOUT)
        channel.basic_ack(method.delivery_tag)
    finally:
        channel.queue_delete(unique)


def test_channel_gauges(scrape, broker, unique):
    """Consumers, unacked deliveries, prefetch limits and what a transaction holds."""
    before = scrape()
    held = f"{unique}-tx"
    with opened(broker) as connection:
        channel = connection.channel()
        for name in (unique, held):
            channel.queue_declare(name)
            channel.basic_publish("", name, b"x")
        channel.basic_publish("", unique, b"x")
        transactional = connection.channel()
        transactional.tx_select()
        method, _, _ = transactional.basic_get(held)
        transactional.basic_ack(method.delivery_tag)  # held until tx.commit
        transactional.basic_publish("", held, b"held")  # held until tx.commit
        channel.basic_qos(prefetch_count=7)
        channel.basic_qos(prefetch_count=11, global_qos=True)
        channel.basic_consume(unique, lambda *_: None)
        wait_for_deltas(scrape, before, {
            key("rabbitmq_channel_consumers"): 1,
            # the get whose ack the transaction holds is no longer counted (RabbitMQ 3.10.8
            # neither): the consumer's two
            key("rabbitmq_channel_messages_unacked"): 2,
            key("rabbitmq_channel_messages_uncommitted"): 1,
            key("rabbitmq_channel_acks_uncommitted"): 1,
            key("rabbitmq_consumer_prefetch"): 7,
            key("rabbitmq_channel_prefetch"): 11,
            key("rabbitmq_connection_channels"): 2,
        }, pump=connection)  # fmt: skip
        channel.queue_delete(unique)
        channel.queue_delete(held)


def test_connection_bytes_and_packets_move(scrape, broker, unique):
    """The new connection's own series (per object, labelled `channel` as RabbitMQ 3.10 does)
    counts the bytes and packets it sent and received."""
    names = ("rabbitmq_connection_incoming_bytes_total",
             "rabbitmq_connection_incoming_packets_total",
             "rabbitmq_connection_outgoing_bytes_total",
             "rabbitmq_connection_outgoing_packets_total")
    before = {labels["channel"] for labels, _ in
              scrape("/metrics/per-object").series(names[0])}
    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(unique)
        channel.basic_publish("", unique, b"x" * 20_000)

        def check() -> None:
            now = scrape("/metrics/per-object")
            new = {name: {labels["channel"]: value for labels, value in now.series(name)
                          if labels["channel"] not in before} for name in names}
            assert new[names[0]], "no series for the new connection"
            ours = max(new[names[0]], key=new[names[0]].get)  # (others may come and go)
            got = [new[name][ours] for name in names]
            assert got[0] >= 20_000 and got[1] >= 2 and got[2] >= 100 and got[3] >= 2, got

        wait_until(check, pump=connection)
        channel.queue_delete(unique)


@warren_only
def test_identity_and_build_info(scrape, api):
    overview = api.get("/api/overview").json()
    for path in ENDPOINTS:
        now = scrape(path)
        assert now.series("rabbitmq_identity_info") == [({
            "rabbitmq_node": overview["node"], "rabbitmq_cluster": overview["cluster_name"],
            "rabbitmq_cluster_permanent_id": f"warren-cluster-id-{overview['cluster_name']}",
        }, 1)]
        [(labels, value)] = now.series("rabbitmq_build_info")
        assert (labels["rabbitmq_version"], value) == (overview["rabbitmq_version"], 1)


@warren_only
def test_process_start_time_and_descriptor_limits(scrape, broker):
    now = scrape()
    started = now.value("process_start_time_seconds")
    assert time.time() - 3600 < started <= time.time()
    with open(f"/proc/{broker.process.pid}/limits") as file:
        limits = file.read()
    soft = next(line.split()[3] for line in limits.splitlines()
                if line.startswith("Max open files"))
    assert now.value("rabbitmq_process_max_fds") == int(soft)
    assert now.value("rabbitmq_process_max_tcp_sockets") == int(soft)
    assert 0 < now.value("rabbitmq_process_open_fds") <= int(soft)
    assert now.value("rabbitmq_process_open_tcp_sockets") == now.value("rabbitmq_connections")


def test_detailed_serves_the_families_asked_for_in_the_vhosts_asked_for(base, consuming):
    def detailed(query: str) -> Scrape:
        return Scrape("/metrics/detailed", get(base, "/metrics/detailed?" + query).read()
                      .decode(), "")

    nothing = detailed("")
    assert not [name for name in nothing.types if name.startswith("rabbitmq_detailed_")]
    assert nothing.types["rabbitmq_identity_info"] == "untyped"

    def ours(scraped: Scrape) -> list[dict[str, str]]:
        return [labels for labels, _ in scraped.series("rabbitmq_detailed_queue_messages")
                if labels.get("queue") == consuming]

    root = detailed("family=queue_coarse_metrics&family=connection_churn_metrics&vhost=%2F")
    assert ours(root) == [{"vhost": "/", "queue": consuming}]
    assert root.types["rabbitmq_detailed_connections_opened_total"] == "counter"
    assert root.series("rabbitmq_detailed_connections_opened_total")[0][0] == {}
    assert "rabbitmq_detailed_queue_consumers" not in root.types  # not asked for
    assert "rabbitmq_queue_messages" not in root.types  # only the detailed names
    assert ours(detailed("family=queue_coarse_metrics&vhost=other")) == []
    assert ours(detailed("family=queue_coarse_metrics")) == [{"vhost": "/", "queue": consuming}]
    both = detailed("family=queue_metrics&family=queue_consumer_count&vhost=%2F")
    assert [v for labels, v in both.series("rabbitmq_detailed_queue_consumers")
            if labels.get("queue") == consuming] == [1]
    cluster = detailed("family=vhost_status&family=exchange_bindings&vhost=other")
    assert ({"vhost": "/"}, 1) in cluster.series("rabbitmq_cluster_vhost_status")
    assert ({"vhost": "/", "exchange": "amq.direct", "type": "direct"}, 0) in cluster.series(
        "rabbitmq_cluster_exchange_bindings") or EXTERNAL  # (the shared node may bind it)


@pytest.mark.parametrize("path", [*ENDPOINTS, "/metrics/detailed?family=queue_metrics"])
def test_gzip_when_the_scraper_accepts_it(base, path):
    with get(base, path, {"Accept-Encoding": "gzip"}) as response:
        assert response.headers.get("Content-Encoding") == "gzip"
        text = gzip.decompress(response.read()).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "rabbitmq_identity_info" in names
    with get(base, path) as response:
        assert response.headers.get("Content-Encoding") in (None, "identity")
        assert response.read().startswith(b"# TYPE ")


# (name, delta) the traffic of `_channel_traffic` makes on its channel, as RabbitMQ 3.10.8
# counted it (RABBITMQ_METRICS.md)
CHANNEL_TRAFFIC = {
    "rabbitmq_channel_messages_published_total": 6,
    "rabbitmq_channel_messages_confirmed_total": 6,
    "rabbitmq_channel_messages_unroutable_dropped_total": 1,
    "rabbitmq_channel_messages_unroutable_returned_total": 1,
    "rabbitmq_channel_get_ack_total": 1,
    "rabbitmq_channel_get_total": 1,
    "rabbitmq_channel_messages_delivered_ack_total": 2,
    "rabbitmq_channel_messages_delivered_total": 1,
    "rabbitmq_channel_messages_redelivered_total": 1,
    "rabbitmq_channel_messages_acked_total": 2,
    "rabbitmq_channel_get_empty_total": 1,
}


def _channel_traffic(channel, queue: str) -> None:
    """Publishes with confirms (3 routed, one dropped, one returned), a get with ack and one
    without, a consumer with manual acks that nacks (requeue) then acks, one more publish taken
    by an auto-ack consumer, and an empty get."""
    channel.confirm_delivery()
    channel.queue_declare(queue)
    for _ in range(3):
        channel.basic_publish("", queue, b"x")
    channel.basic_publish("amq.direct", f"{queue}-nowhere", b"dropped")
    with pytest.raises(pika.exceptions.UnroutableError):
        channel.basic_publish("amq.direct", f"{queue}-nowhere", b"returned", mandatory=True)
    method, _, _ = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    assert channel.basic_get(queue, auto_ack=True)[0] is not None
    deliveries = channel.consume(queue, inactivity_timeout=POLL_TIMEOUT)
    method, _, _ = next(deliveries)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = next(deliveries)
    assert method.redelivered
    channel.basic_ack(method.delivery_tag)
    channel.cancel()
    channel.basic_publish("", queue, b"x")
    method, _, _ = next(channel.consume(queue, auto_ack=True, inactivity_timeout=POLL_TIMEOUT))
    assert method is not None
    channel.cancel()
    assert channel.basic_get(queue)[0] is None


# The same traffic per channel and exchange (the default exchange is labelled "") and per
# channel and queue, as RabbitMQ 3.10.8's channel_exchange_metrics and channel_queue_metrics
# counted it on the reference node (RABBITMQ_METRICS.md)
EXCHANGE_FAMILIES = [name for name in CHANNEL_TRAFFIC if "_messages_published_" in name
                     or "_confirmed_" in name or "_unroutable_" in name]
QUEUE_FAMILIES = [name for name in CHANNEL_TRAFFIC if name not in EXCHANGE_FAMILIES]
BY_EXCHANGE = {"": (4, 4, 0, 0), "amq.direct": (2, 2, 1, 1)}  # in EXCHANGE_FAMILIES' order
BY_QUEUE = (1, 1, 2, 1, 1, 2, 1)  # of the queue, in QUEUE_FAMILIES' order


def _split(scraped: Scrape, prefix: str, channel: str | None, queue: str
           ) -> tuple[str, dict[str, tuple[float, ...]], dict[str, tuple[float, ...]]]:
    """The series of `channel` (None: the one channel that used `queue`), by exchange and by
    queue (values in EXCHANGE_FAMILIES' and QUEUE_FAMILIES' order); checks their label names."""
    def name(family: str) -> str:
        return prefix + family.removeprefix("rabbitmq_")

    if channel is None:
        users = {labels["channel"] for labels, _ in scraped.series(name(QUEUE_FAMILIES[0]))
                 if labels.get("queue") == queue}
        assert len(users) == 1, scraped.series(name(QUEUE_FAMILIES[0]))
        channel = users.pop()
    split: list[dict[str, tuple[float, ...]]] = []
    for families, label, labels_of_family in ((EXCHANGE_FAMILIES, "exchange", CHANNEL_EXCHANGE),
                                              (QUEUE_FAMILIES, "queue", CHANNEL_QUEUE)):
        values: dict[str, list[float]] = {}
        for family in families:
            for labels, value in scraped.series(name(family)):
                assert tuple(labels) == labels_of_family, (family, labels)
                if labels["channel"] == channel:
                    assert labels["vhost"] == "/"
                    values.setdefault(labels[label], []).append(value)
        split.append({key: tuple(found) for key, found in values.items()})
    return channel, split[0], split[1]


def _detailed_channel_groups(base: str) -> Scrape:
    return Scrape("/metrics/detailed", get(
        base, "/metrics/detailed?family=channel_exchange_metrics&family=channel_queue_metrics"
    ).read().decode(), "")


def test_channel_message_counters_move(scrape, base, broker, unique):
    """rabbitmq_channel_*_total on /metrics (the sum over channels) move with real traffic; in
    /metrics/detailed (channel_exchange_metrics, channel_queue_metrics) the channel's series are
    per exchange and per queue, only for those it used, with the same figures as RabbitMQ's."""
    before = scrape()
    with opened(broker) as connection:
        channel = connection.channel()
        try:
            _channel_traffic(channel, unique)
            wait_for_deltas(scrape, before, {key(name): delta for name, delta in
                                             CHANNEL_TRAFFIC.items()}, pump=connection)

            def split_per_exchange_and_queue() -> None:
                _, exchanges, queues = _split(_detailed_channel_groups(base),
                                              "rabbitmq_detailed_", None, unique)
                assert exchanges == BY_EXCHANGE
                assert queues == {unique: BY_QUEUE}

            wait_until(split_per_exchange_and_queue, pump=connection)
        finally:
            channel.queue_delete(unique)


@warren_only
def test_channel_message_counters_per_object_and_after_close(scrape, broker, unique):
    """Per object, a channel's series per exchange and per queue it used (an idle channel has
    none); a deleted queue's series go, its counts stay in the sums; aggregated, a closed
    channel's counts stay in the sums (RabbitMQ's sums drop them: RABBITMQ_METRICS.md)."""
    names = list(CHANNEL_TRAFFIC)
    before = scrape()
    known = {labels["channel"] for name in names
             for labels, _ in scrape("/metrics/per-object").series(name)}
    with opened(broker) as connection:
        channel = connection.channel()
        connection.channel()  # idle: no series
        _channel_traffic(channel, unique)
        now = scrape("/metrics/per-object")
        busy, exchanges, queues = _split(now, "rabbitmq_", None, unique)
        assert (exchanges, queues) == (BY_EXCHANGE, {unique: BY_QUEUE})
        assert {labels["channel"] for name in names
                for labels, _ in now.series(name)} - known == {busy}
        channel.queue_delete(unique)
        now = scrape("/metrics/per-object")
        assert _split(now, "rabbitmq_", busy, unique)[1:] == (BY_EXCHANGE, {})
        assert {name: scrape().value(name) - before.value(name)
                for name in names} == CHANNEL_TRAFFIC
    after = scrape()  # the connection is closed: its channels are gone, their counts stay
    assert not [labels for labels, _ in scrape("/metrics/per-object").series(names[0])
                if labels["channel"] == busy]
    assert {name: after.value(name) - before.value(name) for name in names} == CHANNEL_TRAFFIC


def test_confirms_counted_per_exchange_when_batched(base, broker, unique):
    """Publishes to two exchanges sent in one write are confirmed together (basic.ack
    multiple, on Warren at least); each confirm counts against its publish's exchange."""
    order = ["", "", "amq.direct", "amq.direct", "amq.direct", "", "amq.direct", "", "",
             "amq.direct"]  # 5 to each, in runs
    with raw_client(broker) as raw:
        raw.send_method(1, commands.Queue.Declare(queue=unique))
        raw.expect(commands.Queue.DeclareOk)
        try:
            raw.send_method(1, commands.Queue.Bind(queue=unique, exchange="amq.direct",
                                                   routing_key=unique))
            raw.expect(commands.Queue.BindOk)
            raw.send_method(1, commands.Confirm.Select())
            raw.expect(commands.Confirm.SelectOk)
            raw.send(b"".join(publish_bytes(1, exchange, unique) for exchange in order))
            acks = []
            while not acks or acks[-1].delivery_tag < len(order):
                acks.append(raw.expect(commands.Basic.Ack))
            assert EXTERNAL or len(acks) < len(order), acks  # some cover several publishes
            raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))  # marks ours
            raw.expect(commands.Basic.GetOk)

            def per_exchange() -> None:
                _, exchanges, _ = _split(_detailed_channel_groups(base),
                                              "rabbitmq_detailed_", None, unique)
                assert exchanges == {"": (5, 5, 0, 0), "amq.direct": (5, 5, 0, 0)}

            wait_until(per_exchange)
        finally:
            raw.send_method(1, commands.Queue.Delete(queue=unique))


def test_nacked_publishes_are_not_counted_as_confirmed(base, broker, unique):
    """x-overflow reject-publish nacks the publishes over the limit: RabbitMQ 3.10.8 counts
    only the acked ones as confirmed, per channel and exchange and node-wide (checked on the
    reference node: 5 published, 2 acked, 3 nacked -> 2 confirmed)."""
    confirmed_before = scrape_at(base).value("rabbitmq_global_messages_confirmed_total",
                                             protocol="amqp091")
    with raw_client(broker) as raw:
        raw.call(1, commands.Confirm.Select())
        raw.call(1, commands.Queue.Declare(queue=unique, arguments={
            "x-max-length": 2, "x-overflow": "reject-publish"}))
        try:
            raw.send(b"".join(publish_bytes(1, "", unique) for _ in range(5)))
            outcomes: dict[int, str] = {}
            while len(outcomes) < 5:
                _, method = raw.read_method()
                tags = range(1, method.delivery_tag + 1) if method.multiple else [
                    method.delivery_tag]
                for tag in tags:
                    outcomes.setdefault(tag, type(method).__name__)
            assert [outcomes[tag] for tag in range(1, 6)] == ["Ack"] * 2 + ["Nack"] * 3
            raw.send_method(1, commands.Basic.Get(queue=unique, no_ack=True))  # marks ours
            raw.expect(commands.Basic.GetOk)

            def counted() -> None:
                _, exchanges, _ = _split(_detailed_channel_groups(base),
                                         "rabbitmq_detailed_", None, unique)
                assert exchanges == {"": (5, 2, 0, 0)}  # published, confirmed
                assert scrape_at(base).value("rabbitmq_global_messages_confirmed_total",
                                             protocol="amqp091") - confirmed_before == 2

            wait_until(counted)
        finally:
            raw.send_method(1, commands.Queue.Delete(queue=unique))


@warren_only
def test_detailed_channel_message_groups(base, broker, unique):
    """channel_exchange_metrics and channel_queue_metrics, per channel and exchange or queue,
    under the detailed prefix."""
    with opened(broker) as connection:
        channel = connection.channel()
        _channel_traffic(channel, unique)

        def detailed(query: str) -> Scrape:
            return Scrape("/metrics/detailed", get(base, "/metrics/detailed?" + query).read()
                          .decode(), "")

        exchange = detailed("family=channel_exchange_metrics")
        assert {name for name in exchange.types if name.startswith("rabbitmq_detailed_")} == {
            "rabbitmq_detailed_" + name.removeprefix("rabbitmq_") for name in names_of(
                "messages_published", "messages_confirmed", "messages_unroutable_dropped",
                "messages_unroutable_returned")}
        queue = detailed("family=channel_queue_metrics")
        busy = _split(queue, "rabbitmq_detailed_", None, unique)[0]
        assert {name for name in queue.types if name.startswith("rabbitmq_detailed_")} == {
            "rabbitmq_detailed_" + name.removeprefix("rabbitmq_") for name in CHANNEL_TRAFFIC
            if name not in names_of("messages_published", "messages_confirmed",
                                    "messages_unroutable_dropped",
                                    "messages_unroutable_returned")}
        for scraped in (exchange, queue):
            for name in scraped.types:
                if name.startswith("rabbitmq_detailed_"):
                    plain = "rabbitmq_" + name.removeprefix("rabbitmq_detailed_")
                    assert CHANNEL_TRAFFIC[plain] == sum(
                        value for labels, value in scraped.series(name)
                        if labels["channel"] == busy)
                    assert {tuple(labels) for labels, _ in scraped.series(name)} == {
                        CHANNEL_EXCHANGE if scraped is exchange else CHANNEL_QUEUE}
        channel.queue_delete(unique)


def names_of(*suffixes: str) -> list[str]:
    return [f"rabbitmq_channel_{suffix}_total" for suffix in suffixes]
