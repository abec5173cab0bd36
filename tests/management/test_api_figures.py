"""Honest figures of the management API: socket byte and read/write counts of connections,
consumers' activity, the aliveness test's real round trip, single-node health checks, and vhost
metadata kept across a restart.

Every expectation was checked against RabbitMQ 3.10.8 (RABBITMQ_API.md, "Honest figures");
run against it with WARREN_TEST_AMQP_PORT=5682 WARREN_TEST_HTTP_PORT=15682 (the restart and
fast-rate tests need a Warren of their own and are skipped there).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pika
import pytest
from brokers import run_warren
from management_api import GUEST, Api, eventually, q


@pytest.fixture
def vhost(api, unique):
    """A fresh vhost (guest gets full permissions on it by creating it); deleted afterwards."""
    name = f"vh-{unique}"
    assert api.put(f"/api/vhosts/{q(name)}").status == 201
    yield name
    api.delete(f"/api/vhosts/{q(name)}")


@contextlib.contextmanager
def amqp(host: str, port: int, name: str, vhost: str = "/") -> Iterator[pika.BlockingConnection]:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, virtual_host=vhost, credentials=pika.PlainCredentials(*GUEST),
        client_properties={"connection_name": name}, heartbeat=0, connection_attempts=1,
        socket_timeout=5,
    ))
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


class CountingProxy:
    """A TCP relay between one client and the broker that counts the bytes each way: what
    the broker must report as recv_oct (client to broker) and send_oct (broker to client)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.to_broker = self.to_client = 0
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        self._sockets += [client, server]
        threading.Thread(target=self._pump, args=(client, server, "to_broker"),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, "to_client"),
                         daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, counter: str) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                setattr(self, counter, getattr(self, counter) + len(data))
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # the end of the stream goes through too

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def connection_named(api: Api, name: str) -> dict | None:
    for connection in api.ok_json("/api/connections"):
        if connection.get("user_provided_name") == name:
            return connection
    return None


def test_connection_counts_every_byte_both_ways(api, broker, unique):
    """recv_oct/send_oct are the bytes the socket carried each way (measured by a relay in
    between); recv_cnt/send_cnt count the socket's reads and writes."""
    proxy = CountingProxy(broker.host, broker.port)
    name = f"bytes-{unique}"
    try:
        with amqp("127.0.0.1", proxy.port, name) as connection:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            for _ in range(20):
                channel.basic_publish("", queue, b"x" * 1000)
            assert channel.basic_get(queue, auto_ack=True)[2] == b"x" * 1000
            connection.process_data_events(0.2)  # nothing more in flight either way

            def exact(info: dict | None) -> bool:
                return info is not None and (info["recv_oct"], info["send_oct"]) == (
                    proxy.to_broker, proxy.to_client)

            info = eventually(lambda: connection_named(api, name), exact)
            assert proxy.to_broker > 20_000 and proxy.to_client > 1000
            assert 1 <= info["recv_cnt"] <= info["recv_oct"]
            assert 1 <= info["send_cnt"] <= info["send_oct"]
            assert info["recv_oct_details"].keys() == info["send_oct_details"].keys() == {"rate"}
            reads = info["recv_cnt"]
            channel.queue_declare(queue, passive=True)
            eventually(lambda: connection_named(api, name), lambda now: exact(now) and (
                now["recv_cnt"] > reads))
    finally:
        proxy.close()


def test_connection_byte_rates_are_sampled(warren_factory):
    """recv_oct_details/send_oct_details.rate: bytes per second over the last sampling
    interval while traffic flows, 0.0 on an idle connection."""
    broker = warren_factory(extra_args=["--collect-statistics-interval", "300"])
    api = Api(broker.host, broker.management_port)
    with amqp(broker.host, broker.port, "busy") as busy, amqp(broker.host, broker.port, "idle"):
        channel = busy.channel()
        channel.queue_declare("rates")
        deadline = time.monotonic() + 1.5  # several sampling intervals of steady traffic
        while time.monotonic() < deadline:
            channel.basic_publish("", "rates", b"x" * 1000)
            channel.basic_get("rates", auto_ack=True)
            time.sleep(0.01)
        loaded, idle = connection_named(api, "busy"), connection_named(api, "idle")
    assert loaded["recv_oct_details"]["rate"] > 10_000  # > 10 KB/s of 1 KB publishes
    assert loaded["send_oct_details"]["rate"] > 10_000
    assert idle["recv_oct_details"] == idle["send_oct_details"] == {"rate": 0.0}


def test_single_active_consumer_standby_is_waiting(api, broker, unique):
    name = f"sac-{unique}"
    with amqp(broker.host, broker.port, name) as connection:
        channel = connection.channel()
        channel.queue_declare(name, arguments={"x-single-active-consumer": True})
        plain = channel.queue_declare("", exclusive=True).method.queue
        try:
            channel.basic_consume(name, lambda *a: None, consumer_tag="first")
            channel.basic_consume(name, lambda *a: None, consumer_tag="second")
            channel.basic_consume(plain, lambda *a: None, consumer_tag="plain")

            def activity() -> dict[str, tuple[bool, str]]:
                return {c["consumer_tag"]: (c["active"], c["activity_status"])
                        for c in api.ok_json("/api/consumers/%2F")
                        if c["queue"]["name"] in (name, plain)}

            eventually(activity, lambda seen: seen == {
                "first": (True, "single_active"), "second": (False, "waiting"),
                "plain": (True, "up")})
            details = eventually(
                lambda: api.ok_json(f"/api/queues/%2F/{q(name)}"),
                lambda queue: len(queue["consumer_details"]) == 2)["consumer_details"]
            assert {c["consumer_tag"]: (c["active"], c["activity_status"]) for c in details} == {
                "first": (True, "single_active"), "second": (False, "waiting")}
            assert {"name", "number", "connection_name", "peer_host", "peer_port", "user",
                    "node"} <= details[0]["channel_details"].keys()
            channel.basic_cancel("first")
            eventually(activity, lambda seen: seen == {
                "second": (True, "single_active"), "plain": (True, "up")})
        finally:
            channel.queue_delete(name)


def test_aliveness_test_round_trips_a_message(api, vhost):
    assert api.ok_json(f"/api/aliveness-test/{q(vhost)}") == {"status": "ok"}
    queue = api.ok_json(f"/api/queues/{q(vhost)}/aliveness-test")
    assert (queue["durable"], queue["auto_delete"], queue["exclusive"], queue["arguments"]) == (
        False, False, False, {})
    stats = eventually(lambda: api.ok_json(f"/api/queues/{q(vhost)}/aliveness-test"),
                       lambda queue: queue["message_stats"]["publish"] == 1)
    assert stats["messages"] == 0 and stats["message_stats"]["deliver_get"] == 1


def test_aliveness_test_fails_when_the_message_does_not_come_back(api, vhost):
    """A policy that keeps nothing in the queue: RabbitMQ's 503, the queue is empty."""
    answer = api.put(f"/api/policies/{q(vhost)}/none", {
        "pattern": "^aliveness", "definition": {"max-length": 0}})
    assert answer.status == 201
    answer = api.get(f"/api/aliveness-test/{q(vhost)}")
    assert (answer.status, answer.json()) == (
        503, {"status": "failed", "reason": "aliveness-test queue is empty"})


def test_aliveness_test_needs_permissions(api, vhost):
    api.delete(f"/api/permissions/{q(vhost)}/guest")
    answer = api.get(f"/api/aliveness-test/{q(vhost)}")
    assert (answer.status, answer.json()) == (
        401, {"error": "not_authorised", "reason": "Access refused."})
    api.put(f"/api/permissions/{q(vhost)}/guest", {"configure": "", "write": ".*", "read": ".*"})
    answer = api.get(f"/api/aliveness-test/{q(vhost)}")
    assert (answer.status, answer.json()) == (401, {
        "error": "not_authorised",
        "reason": f"ACCESS_REFUSED - access to queue 'aliveness-test' in vhost '{vhost}' "
                  "refused for user 'guest'"})


def test_aliveness_test_with_an_inequivalent_queue(api, vhost):
    api.create_queue(vhost, "aliveness-test", durable=True)
    answer = api.get(f"/api/aliveness-test/{q(vhost)}")
    assert (answer.status, answer.json()) == (400, {
        "error": "bad_request",
        "reason": f"406 PRECONDITION_FAILED - inequivalent arg 'durable' for queue "
                  f"'aliveness-test' in vhost '{vhost}': received 'false' but current is "
                  "'true'"})


def test_single_node_health_checks(api):
    for check in ("node-is-quorum-critical", "node-is-mirror-sync-critical"):
        assert api.ok_json(f"/api/health/checks/{check}") == {
            "status": "ok", "reason": "single node cluster"}


def test_vhost_counts_the_traffic_of_its_connections_after_they_close(api, broker, vhost):
    """A vhost's recv_oct/send_oct and message_stats sum its connections' bytes and their
    channels' message counts, and keep them once the connections are closed (RabbitMQ 3.10.8
    shows the same message counts; RABBITMQ_API.md, "Vhost traffic"). The management API's
    own publish and get count too: RabbitMQ makes them on a channel of its own."""
    path = f"/api/vhosts/{q(vhost)}"
    fresh = api.ok_json(path)
    assert "recv_oct" not in fresh and "message_stats" not in fresh  # no connection yet
    proxy = CountingProxy(broker.host, broker.port)
    try:
        with amqp("127.0.0.1", proxy.port, f"vhost-traffic-{vhost}", vhost) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.queue_declare("q")
            for number in range(3):
                channel.basic_publish("", "q", b"message %d" % number)
            channel.basic_publish("", "nowhere", b"dropped")  # not mandatory: dropped
            for _ in range(2):
                method = channel.basic_get("q")[0]
                channel.basic_ack(method.delivery_tag)
            assert channel.basic_get("q", auto_ack=True)[0] is not None
            assert channel.basic_get("q")[0] is None  # an empty get
            connection.process_data_events(0.2)
            open_figures = (proxy.to_broker, proxy.to_client)
            eventually(lambda: api.ok_json(path),
                       lambda shown: (shown["recv_oct"], shown["send_oct"]) == open_figures)
        closed = (proxy.to_broker, proxy.to_client)  # with the connection's close
        assert api.post(f"/api/exchanges/{q(vhost)}/amq.default/publish", {
            "properties": {}, "routing_key": "q", "payload": "via http",
            "payload_encoding": "string"}).json() == {"routed": True}
        got = api.post(f"/api/queues/{q(vhost)}/q/get", {
            "count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).json()
        assert [message["payload"] for message in got] == ["via http"]
        expected = {"publish": 5, "confirm": 5, "return_unroutable": 0, "drop_unroutable": 1,
                    "deliver_get": 4, "get": 2, "get_no_ack": 2, "deliver": 0,
                    "deliver_no_ack": 0, "get_empty": 1, "ack": 2, "redeliver": 0}
        # RabbitMQ keeps what it last sampled of the connection (not the bytes of its close);
        # Warren counts every byte the socket carried
        kept = closed if broker.process is not None else open_figures

        def settled(shown: dict) -> bool:
            stats = shown["message_stats"]
            return (shown["recv_oct"], shown["send_oct"]) == kept and all(
                stats[name] == count for name, count in expected.items())

        shown = eventually(lambda: api.ok_json(path), settled)
    finally:
        proxy.close()
    assert set(shown["message_stats"]) == {
        key for name in expected for key in (name, f"{name}_details")}
    listed = next(item for item in api.ok_json("/api/vhosts") if item["name"] == vhost)
    assert (listed["recv_oct"], listed["send_oct"]) == kept
    # samples of the byte and message figures for their ranges (the newest on a multiple of 5 s)
    eventually(lambda: api.ok_json(f"{path}?data_rates_age=60&data_rates_incr=5"
                                   "&msg_rates_age=60&msg_rates_incr=5"),
               lambda aged: aged["recv_oct_details"]["samples"][0]["sample"] == kept[0] and (
                   aged["message_stats"]["publish_details"]["samples"][0]["sample"] == 5))
    # RabbitMQ samples a vhost's message counts for msg_rates_* (not for lengths_*)
    assert "samples" in api.ok_json(f"{path}?msg_rates_age=60&msg_rates_incr=5")[
        "messages_details"]
    assert api.ok_json(f"{path}?lengths_age=60&lengths_incr=5")["messages_details"].keys() == {
        "rate"}


def test_vhost_metadata_shape(api, unique):
    name = f"meta-{unique}"
    path = f"/api/vhosts/{q(name)}"
    try:
        assert api.put(path, {"description": "d", "tags": "a,b",
                              "defaultqueuetype": "quorum"}).status == 201
        shown = api.ok_json(path)
        assert {key: shown[key] for key in (
            "name", "description", "tags", "default_queue_type", "metadata", "tracing")} == {
            "name": name, "description": "d", "tags": ["a", "b"],
            "default_queue_type": "quorum",
            "metadata": {"description": "d", "tags": ["a", "b"],
                         "default_queue_type": "quorum"},
            "tracing": False}
        assert list(shown["cluster_state"].values()) == ["running"]
        assert api.put(path, {"description": "new", "tags": ["c"]}).status == 204
        shown = api.ok_json(path)
        assert (shown["description"], shown["tags"], shown["default_queue_type"]) == (
            "new", ["c"], "quorum")
        # A PUT on an existing vhost replaces description and tags (left out: cleared) and
        # keeps the default queue type, as RabbitMQ 3.10.8 does.
        assert api.put(path, {"defaultqueuetype": "stream"}).status == 204
        shown = api.ok_json(path)
        assert (shown["description"], shown["tags"], shown["default_queue_type"]) == (
            "", [], "quorum")
    finally:
        api.delete(path)
    plain = f"plain-{unique}"
    try:
        assert api.put(f"/api/vhosts/{q(plain)}").status == 201
        shown = api.ok_json(f"/api/vhosts/{q(plain)}")
        assert shown["default_queue_type"] == "undefined"
        assert shown["metadata"] == {"description": "", "tags": []}
        assert api.put(f"/api/vhosts/{q(plain)}", {"defaultqueuetype": "stream",
                                                    "tags": "x"}).status == 204
        shown = api.ok_json(f"/api/vhosts/{q(plain)}")
        assert (shown["default_queue_type"], shown["tags"]) == ("undefined", ["x"])
    finally:
        api.delete(f"/api/vhosts/{q(plain)}")


def test_vhost_metadata_is_exported_and_survives_a_restart(tmp_path):
    if os.environ.get("WARREN_TEST_AMQP_PORT"):
        pytest.skip("restarts a Warren of its own (RabbitMQ 3.10 exports vhosts as {name})")
    metadata = {"description": "kept", "tags": ["x", "y"], "default_queue_type": "quorum"}
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.put("/api/vhosts/meta", {"description": "kept", "tags": "x,y",
                                            "defaultqueuetype": "quorum"}).status == 201
    with run_warren(tmp_path) as broker:
        api = Api(broker.host, broker.management_port)
        assert api.ok_json("/api/vhosts/meta")["metadata"] == metadata
        exported = {v["name"]: v for v in api.ok_json("/api/definitions")["vhosts"]}
        assert exported["meta"] == {"name": "meta", "limits": [], "metadata": metadata}
        assert exported["/"]["metadata"] == {"description": "", "tags": []}
