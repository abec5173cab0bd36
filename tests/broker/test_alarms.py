"""Resource alarms through real clients over real sockets, against a Warren of its own (its
thresholds are changed at run time through the management API, or set by its config).

What RabbitMQ 3.10.8 does, and these tests expect, is recorded in RABBITMQ_ALARMS.md: a
connection is blocked when it publishes while an alarm is in effect (connection.blocked "low on
memory" / "low on disk" / "low on disk & memory" to clients with the capability), nothing more is
read from it until every alarm clears (connection.unblocked), its heartbeats are not checked
meanwhile, and connections that only consume keep going.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pika
import pytest
from client_helpers import consume, opened, settle, wait_for
from pamqp import commands, frame, heartbeat
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from raw_amqp import ConnectionClosedByPeer, RawAMQP, publish_bytes

MEMORY_ALARM = ["--memory-high-watermark-absolute", "1"]  # any process is over one byte
DISK_ALARM = ["--disk-free-limit", str(10**18)]  # no disk has an exabyte free
NO_ALARM_MEMORY = {"fraction": 0.9}
NO_ALARM_DISK = {"limit": "1MB"}


# -- helpers ------------------------------------------------------------------------------------


def api(broker, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                 "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as failure:
        status, payload = failure.code, failure.read()
    return status, json.loads(payload) if payload else None


def node_name(broker) -> str:
    return api(broker, "GET", "/api/nodes")[1][0]["name"]


def set_memory(broker, **body: Any) -> None:
    status, reply = api(broker, "PUT",
                        f"/api/nodes/{node_name(broker)}/memory-high-watermark", body)
    assert status == 204, reply


def set_disk(broker, **body: Any) -> None:
    status, reply = api(broker, "PUT", f"/api/nodes/{node_name(broker)}/disk-free-limit", body)
    assert status == 204, reply


def states(broker) -> dict[str, str]:
    """Connection state by client-provided name, from /api/connections."""
    return {c["user_provided_name"]: c["state"] for c in api(broker, "GET", "/api/connections")[1]
            if c["user_provided_name"]}


def queue_depth(broker, queue: str) -> int:
    return api(broker, "GET", f"/api/queues/%2F/{queue}")[1]["messages"]


class Watched:
    """A pika connection that records connection.blocked / connection.unblocked."""

    def __init__(self, broker, name: str) -> None:
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(
            broker.host, broker.port, client_properties={"connection_name": name},
            blocked_connection_timeout=30, socket_timeout=5,
        ))
        self.events: list[tuple[str, str | None]] = []
        self.connection.add_on_connection_blocked_callback(
            lambda _c, frame_: self.events.append(("blocked", frame_.method.reason)))
        self.connection.add_on_connection_unblocked_callback(
            lambda _c, _f: self.events.append(("unblocked", None)))

    def wait_events(self, count: int, timeout: float = 5.0) -> list[tuple[str, str | None]]:
        assert wait_for(self.connection, lambda: len(self.events) >= count, timeout), self.events
        return self.events

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def poll(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def raw_open(broker, heartbeat_seconds: int = 0, blocked_capability: bool = True) -> RawAMQP:
    """A raw connection, handshake done and channel 1 open; it can advertise (or not) the
    connection.blocked capability."""
    raw = RawAMQP.connect(broker)
    raw.send_protocol_header()
    raw.expect(commands.Connection.Start)
    capabilities = {"connection.blocked": True} if blocked_capability else {}
    raw.send_method(0, commands.Connection.StartOk(
        client_properties={"product": "warren-tests", "capabilities": capabilities},
        mechanism="PLAIN", response="\0guest\0guest", locale="en_US",
    ))
    tune = raw.expect(commands.Connection.Tune)
    raw.send_method(0, commands.Connection.TuneOk(
        channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat_seconds))
    raw.send_method(0, commands.Connection.Open(virtual_host="/"))
    raw.expect(commands.Connection.OpenOk)
    raw.open_channel(1)
    return raw


def raw_publish(raw: RawAMQP, queue: str, body: bytes) -> None:
    """basic.publish, header and body in one write."""
    raw.send(frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
             + frame.marshal(ContentHeader(body_size=len(body)), 1)
             + frame.marshal(ContentBody(body), 1))


def frames_for(raw: RawAMQP, seconds: float) -> list[str]:
    """Names of the frames read for `seconds` ("heartbeat" for heartbeats, "EOF" at the end)."""
    names: list[str] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            _, value = raw.read_frame(remaining)
        except TimeoutError:
            break
        except (ConnectionClosedByPeer, OSError):
            names.append("EOF")
            break
        names.append("heartbeat" if isinstance(value, heartbeat.Heartbeat) else value.name)
    return names


@pytest.fixture
def warren(warren_factory):
    """A Warren of its own, with RabbitMQ's default thresholds (no alarm)."""
    return warren_factory()


@pytest.fixture
def queue(warren) -> str:
    name = f"alarms-{time.monotonic_ns()}"
    with opened(warren) as connection:
        connection.channel().queue_declare(name)
    return name


# -- blocking -----------------------------------------------------------------------------------


def test_publisher_blocked_consumer_drains_then_held_publishes_are_delivered(warren, queue):
    with opened(warren) as setup:
        channel = setup.channel()
        channel.confirm_delivery()
        for number in range(10):
            channel.basic_publish("", queue, f"before-{number}".encode())
    publisher = Watched(warren, "publisher")
    consumer = Watched(warren, "consumer")
    try:
        publishing = publisher.connection.channel()
        consuming = consumer.connection.channel()
        consuming.basic_qos(prefetch_count=3)
        set_memory(warren, absolute=1)
        assert states(warren) == {"publisher": "blocking", "consumer": "blocking"}

        publishing.basic_publish("", queue, b"held-1")
        publishing.basic_publish("", queue, b"held-2")
        assert publisher.wait_events(1) == [("blocked", "low on memory")]
        assert states(warren) == {"publisher": "blocked", "consumer": "blocking"}

        # The consumer, which does not publish, drains the queue and acks as usual.
        _, collector = consume(consuming, queue)
        while len(collector.deliveries) < 10:  # prefetch 3: only acks bring the next ones
            collector.wait(len(collector.deliveries) + 1)
            consuming.basic_ack(collector.deliveries[-1].method.delivery_tag, multiple=True)
        settle(consumer.connection, 0.3)
        assert collector.bodies == [f"before-{n}".encode() for n in range(10)]
        assert queue_depth(warren, queue) == 0  # the held publishes were not routed

        set_memory(warren, **NO_ALARM_MEMORY)
        assert publisher.wait_events(2)[1] == ("unblocked", None)
        collector.wait(12)
        assert collector.bodies[10:] == [b"held-1", b"held-2"]
        assert states(warren) == {"publisher": "running", "consumer": "running"}
        publishing.basic_publish("", queue, b"after")  # publishing goes on as before
        collector.wait(13)
        consuming.basic_ack(0, multiple=True)
        assert consumer.events == []  # a consume-only connection hears nothing of the alarm
    finally:
        set_memory(warren, **NO_ALARM_MEMORY)
        publisher.close()
        consumer.close()


def test_disk_then_both_alarms_unblock_only_when_all_clear(warren_factory):
    broker = warren_factory(extra_args=DISK_ALARM)
    name = f"both-{time.monotonic_ns()}"
    with opened(broker) as setup:
        setup.channel().queue_declare(name)
    first, second = Watched(broker, "first"), None
    try:
        first.connection.channel().basic_publish("", name, b"one")
        assert first.wait_events(1) == [("blocked", "low on disk")]
        set_memory(broker, absolute=1)
        second = Watched(broker, "second")
        second.connection.channel().basic_publish("", name, b"two")
        assert second.wait_events(1) == [("blocked", "low on disk & memory")]
        settle(first.connection, 0.2)
        assert first.events == [("blocked", "low on disk")]  # blocked once, not again

        set_disk(broker, **NO_ALARM_DISK)
        settle(first.connection, 0.3)
        settle(second.connection, 0.1)
        assert len(first.events) == 1 and len(second.events) == 1  # memory still in effect
        assert queue_depth(broker, name) == 0

        set_memory(broker, **NO_ALARM_MEMORY)
        assert first.wait_events(2)[1] == ("unblocked", None)
        assert second.wait_events(2)[1] == ("unblocked", None)
        assert poll(lambda: queue_depth(broker, name) == 2)
    finally:
        set_disk(broker, **NO_ALARM_DISK)
        set_memory(broker, **NO_ALARM_MEMORY)
        first.close()
        if second is not None:
            second.close()


def test_empty_body_publish_is_routed_and_deliveries_reach_a_blocked_connection(warren, queue):
    """RabbitMQ blocks after the frame that completes a publish: a message without a body is
    routed before its publisher stops being read. Deliveries to a blocked connection go on, but
    its acks are not read until it is unblocked."""
    with opened(warren) as setup:
        channel = setup.channel()
        channel.confirm_delivery()
        for number in range(3):
            channel.basic_publish("", queue, f"m{number}".encode())
    both = Watched(warren, "both")
    try:
        consuming = both.connection.channel()
        consuming.basic_qos(prefetch_count=1)
        _, collector = consume(consuming, queue)
        collector.wait(1)
        publishing = both.connection.channel()
        set_memory(warren, absolute=1)
        publishing.basic_publish("", queue, b"")
        assert both.wait_events(1) == [("blocked", "low on memory")]
        consuming.basic_ack(collector.deliveries[0].method.delivery_tag)
        settle(both.connection, 0.3)
        assert collector.bodies == [b"m0"]  # the ack was not read: no second delivery
        assert queue_depth(warren, queue) == 4  # the empty message was routed

        set_memory(warren, **NO_ALARM_MEMORY)
        collector.wait(2)
        assert collector.bodies == [b"m0", b"m1"]
    finally:
        set_memory(warren, **NO_ALARM_MEMORY)
        both.close()


def test_blocked_connection_is_not_dropped_for_missed_heartbeats(warren_factory):
    broker = warren_factory(extra_args=MEMORY_ALARM)
    name = f"heartbeats-{time.monotonic_ns()}"
    with opened(broker) as setup:
        setup.channel().queue_declare(name)
    blocked = raw_open(broker, heartbeat_seconds=1)
    silent = raw_open(broker, heartbeat_seconds=1)  # not blocked: its monitor runs
    try:
        raw_publish(blocked, name, b"held")
        assert blocked.expect(commands.Connection.Blocked).reason == "low on memory"
        # Two heartbeat intervals of silence drop an unblocked client, not a blocked one; the
        # broker keeps sending its heartbeats to both.
        seen = frames_for(blocked, 3.0)
        assert "EOF" not in seen and seen.count("heartbeat") >= 3, seen
        assert frames_for(silent, 2.0)[-1:] == ["EOF"]
        assert queue_depth(broker, name) == 0

        set_memory(broker, **NO_ALARM_MEMORY)
        blocked.expect(commands.Connection.Unblocked)
        assert poll(lambda: queue_depth(broker, name) == 1)
        blocked.send_heartbeat()
        blocked.send_method(0, commands.Connection.Close(200, "bye", 0, 0))
        blocked.expect(commands.Connection.CloseOk)
    finally:
        blocked.close()
        silent.close()


def test_client_without_the_capability_is_paused_without_a_word(warren_factory):
    broker = warren_factory(extra_args=MEMORY_ALARM)
    name = f"no-capability-{time.monotonic_ns()}"
    with opened(broker) as setup:
        setup.channel().queue_declare(name)
    raw = raw_open(broker, blocked_capability=False)
    try:
        raw_publish(raw, name, b"held")
        raw.send_method(2, commands.Channel.Open())  # held behind the publish, not lost
        assert frames_for(raw, 0.5) == []
        assert queue_depth(broker, name) == 0
        set_memory(broker, **NO_ALARM_MEMORY)
        raw.expect(commands.Channel.OpenOk, channel=2)  # and no connection.unblocked first
        assert poll(lambda: queue_depth(broker, name) == 1)
    finally:
        raw.close()


def test_publishes_sent_together_under_an_alarm_are_held_then_queued_in_order(warren_factory):
    """200 publishes in one write while the memory alarm is on (one run of whole publishes
    for the frame reader): the connection blocks after the first one's header, as RabbitMQ's
    reader does, and nothing is queued; once the alarm clears, every one is, in order."""
    broker = warren_factory(extra_args=MEMORY_ALARM)
    name = f"held-run-{time.monotonic_ns()}"
    bodies = [b"held %03d" % number for number in range(200)]
    with opened(broker) as setup:
        setup.channel().queue_declare(name)
    raw = raw_open(broker)
    try:
        raw.send(b"".join(publish_bytes(1, "", name, body) for body in bodies))
        assert raw.expect(commands.Connection.Blocked).reason == "low on memory"
        assert frames_for(raw, 0.3) == [] and queue_depth(broker, name) == 0
        set_memory(broker, **NO_ALARM_MEMORY)
        raw.expect(commands.Connection.Unblocked)
        assert poll(lambda: queue_depth(broker, name) == len(bodies))
    finally:
        raw.close()
    with opened(broker) as check:
        channel = check.channel()
        assert [channel.basic_get(name, auto_ack=True)[2] for _ in bodies] == bodies


def test_broker_closing_a_blocked_connection_reads_its_close_ok(warren_factory):
    broker = warren_factory(extra_args=MEMORY_ALARM)
    raw = raw_open(broker)
    try:
        raw_publish(raw, "nowhere", b"held")
        raw.expect(commands.Connection.Blocked)
        status, _ = api(broker, "DELETE", f"/api/connections/{_only_connection(broker)}")
        assert status == 204
        close = raw.expect(commands.Connection.Close)
        assert close.reply_code == 320
        raw.send_method(0, commands.Connection.CloseOk())
        assert raw.is_closed(timeout=2.0)  # at once, not after the close-ok timeout
    finally:
        raw.close()


def _only_connection(broker) -> str:
    (connection,) = api(broker, "GET", "/api/connections")[1]
    return urllib.request.quote(connection["name"], safe="")


def test_client_disconnecting_while_blocked_is_cleaned_up(warren_factory):
    broker = warren_factory(extra_args=MEMORY_ALARM)
    raw = raw_open(broker, heartbeat_seconds=1)
    raw_publish(raw, "nowhere", b"held")
    raw.expect(commands.Connection.Blocked)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()  # reset: the broker learns it when it next writes (a heartbeat)
    assert poll(lambda: api(broker, "GET", "/api/connections")[1] == [], timeout=5.0)
    broker.assert_alive()


# -- visibility ---------------------------------------------------------------------------------


def test_alarm_from_config_in_nodes_health_checks_metrics_and_log(warren_factory):
    broker = warren_factory(extra_args=MEMORY_ALARM)
    node = node_name(broker)
    status, (info,) = api(broker, "GET", "/api/nodes")
    assert (info["mem_alarm"], info["mem_limit"], info["disk_free_alarm"],
            info["disk_free_limit"]) == (True, 1, False, 50_000_000)
    memory = [{"node": node, "resource": "memory"}]
    assert api(broker, "GET", "/api/health/checks/alarms") == (503, {
        "alarms": memory, "reason": "There are alarms in effect in the cluster",
        "status": "failed"})
    assert api(broker, "GET", "/api/health/checks/local-alarms") == (503, {
        "alarms": memory, "reason": "There are alarms in effect on the node",
        "status": "failed"})
    metrics = _metrics(broker)
    assert metrics["rabbitmq_alarms_memory_used_watermark"] == "1"
    assert metrics["rabbitmq_alarms_free_disk_space_watermark"] == "0"
    assert metrics["rabbitmq_alarms_file_descriptor_limit"] == "0"
    assert float(metrics["rabbitmq_resident_memory_limit_bytes"]) == 1
    assert float(metrics["rabbitmq_disk_space_available_limit_bytes"]) == 50_000_000
    assert "# TYPE rabbitmq_alarms_memory_used_watermark untyped" in metrics["text"]
    assert (f"memory resource limit alarm set on node '{node}'.\n\n"
            "**********************************************************\n"
            "*** Publishers will be blocked until this alarm clears ***\n") in broker.log_text()
    with opened(broker, client_properties={"connection_name": "idle"}):
        assert states(broker) == {"idle": "blocking"}

    set_memory(broker, fraction=0.4)
    set_disk(broker, limit="1000000GB")
    status, (info,) = api(broker, "GET", "/api/nodes")
    assert (info["mem_alarm"], info["disk_free_alarm"], info["disk_free_limit"]) == (
        False, True, 10**15)
    assert 0 < info["mem_limit"] < 10**15
    assert api(broker, "GET", "/api/health/checks/alarms")[1]["alarms"] == [
        {"node": node, "resource": "disk space"}]
    metrics = _metrics(broker)
    assert metrics["rabbitmq_alarms_memory_used_watermark"] == "0"
    assert metrics["rabbitmq_alarms_free_disk_space_watermark"] == "1"
    assert float(metrics["rabbitmq_disk_space_available_limit_bytes"]) == 10**15
    assert float(metrics["rabbitmq_resident_memory_limit_bytes"]) == info["mem_limit"]
    set_memory(broker, absolute=1)
    assert [a["resource"] for a in api(broker, "GET", "/api/health/checks/alarms")[1][
        "alarms"]] == ["disk space", "memory"]

    set_memory(broker, fraction=0.4)
    set_disk(broker, mem_relative=0.0)
    assert api(broker, "GET", "/api/health/checks/alarms") == (200, {"status": "ok"})
    assert api(broker, "GET", "/api/health/checks/local-alarms") == (200, {"status": "ok"})
    log = broker.log_text()
    assert f"memory resource limit alarm cleared on node '{node}'" in log
    assert f"disk resource limit alarm set on node '{node}'." in log
    assert f"disk resource limit alarm cleared on node '{node}'" in log
    assert "Free disk space is insufficient. Free bytes: " in log


def _metrics(broker) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.management_port}/metrics") as reply:
        text = reply.read().decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line and not line.startswith("#") and "{" not in line)
    values["text"] = text
    return values


def test_per_object_metrics_have_no_alarm_gauges(warren):
    url = f"http://127.0.0.1:{warren.management_port}/metrics/per-object"
    with urllib.request.urlopen(url) as reply:
        assert "rabbitmq_alarms_" not in reply.read().decode()


def test_setting_thresholds_takes_an_administrator_and_valid_values(warren):
    node = node_name(warren)
    path = f"/api/nodes/{node}/memory-high-watermark"
    for body in ({"fraction": 1.5}, {"fraction": "0.4"}, {"absolute": "1.5GB"}, {}, [1]):
        assert api(warren, "PUT", path, body)[0] == 400, body
    assert api(warren, "PUT", f"/api/nodes/{node}/disk-free-limit", {"limit": "lots"})[0] == 400
    assert api(warren, "PUT", "/api/nodes/rabbit@elsewhere/disk-free-limit",
               {"limit": 1})[0] == 404
    assert api(warren, "GET", "/api/health/checks/alarms") == (200, {"status": "ok"})


def test_warren_ctl_sets_the_thresholds(warren):
    url = f"http://127.0.0.1:{warren.management_port}"
    node = node_name(warren)

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "broker", "ctl", "--url", url, *args],
                              capture_output=True, text=True, timeout=30)

    result = ctl("set_vm_memory_high_watermark", "absolute", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Setting memory threshold on {node} to 1 bytes ...\n"
    assert api(warren, "GET", "/api/nodes")[1][0]["mem_alarm"] is True
    result = ctl("set_vm_memory_high_watermark", "0.4")
    assert result.stdout == f"Setting memory threshold on {node} to 0.4 ...\n"
    assert api(warren, "GET", "/api/nodes")[1][0]["mem_alarm"] is False
    result = ctl("set_disk_free_limit", "1000000GB")
    assert result.stdout == f"Setting disk free limit on {node} to 1000000GB bytes ...\n"
    assert api(warren, "GET", "/api/nodes")[1][0]["disk_free_alarm"] is True
    result = ctl("set_disk_free_limit", "mem_relative", "0.001")
    assert result.returncode == 0, result.stderr
    assert api(warren, "GET", "/api/nodes")[1][0]["disk_free_alarm"] is False
    assert ctl("set_vm_memory_high_watermark", "1.5").returncode == 64
    assert ctl("set_vm_memory_high_watermark").returncode == 64
    failed = ctl("set_disk_free_limit", "12XB")
    assert failed.returncode == 1 and "400" in failed.stderr
