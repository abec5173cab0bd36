"""What the leader sees of a client that came through a follower (issue 14): the client's own
address as the follower saw it, the follower as the connection's node, and the client's TLS
session when the follower terminated TLS for it (broker/cluster/clientlink.py). Loopback-only
users (guest) are judged on the node the client connected to, as RabbitMQ judges them, on
AMQP and on the management API (whose requests a follower passes on the same way).

One 2-node cluster on a real etcd serves the module; every node listens for AMQP on 127.0.0.1
and on this machine's own address (when it has one), and for AMQPS (certificates made here,
client certificates verified, EXTERNAL offered). pika's sockets are bound before they connect
(pika's own hook for socket options), so the test knows the client's address and can connect
from this machine's own address.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from types import SimpleNamespace
from unittest import mock

import pika
import pika.exceptions
import pika.tcp_socket_opts
import pytest
from brokers import free_port, non_loopback_address
from cluster_nodes import ClusterNode, run_cluster
from etcd_process import etcd_missing, run_etcd
from management_api import NOT_FOUND, Api, eventually, get_from, q
from tls_certificates import CertificateAuthority

from storage.replication import wire

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")
CERT_USER = "CN=test-client,O=Warren tests"
LOCALHOST_ONLY = {"error": "not_authorised", "reason": "User can only log in via localhost"}
FORGED = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    ca = CertificateAuthority(tmp_path_factory.mktemp("certs"), "cluster-test-ca")
    return SimpleNamespace(ca=ca.pair, server=ca.issue("localhost", server=True),
                           client=ca.issue("test-client", server=False))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory,
          certificates: SimpleNamespace) -> Iterator[SimpleNamespace]:
    """The leader, the follower and each node's AMQPS port, once the follower is in sync."""
    reason = etcd_missing()
    if reason:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("origin")
    amqps: dict[str, int] = {}
    address = non_loopback_address()  # the nodes listen there too, if the host has one

    def tls_args(node: ClusterNode) -> list[str]:
        amqps[node.name] = free_port()
        return ["--bind", ",".join(["127.0.0.1", *([address] if address else [])]),
                "--amqps-port", str(amqps[node.name]),
                "--amqps-certfile", str(certificates.server.cert),
                "--amqps-keyfile", str(certificates.server.key),
                "--amqps-cacertfile", str(certificates.ca.cert), "--amqps-verify-peer", "true",
                "--auth-mechanisms", "PLAIN,AMQPLAIN,EXTERNAL"]

    with run_etcd(directory / "etcd") as etcd, run_cluster(
        directory / "cluster", etcd.endpoint, size=2, node_args=tls_args,
    ) as cluster:
        leader = cluster.in_sync()
        [follower] = cluster.followers(leader)
        yield SimpleNamespace(leader=leader, follower=follower, amqps=amqps, address=address,
                              api=Api("127.0.0.1", leader.management_port))


def connect(port: int, name: str, *, source: str = "127.0.0.1", host: str = "127.0.0.1",
            credentials: pika.credentials.VALID_TYPES | None = None,
            tls: ssl.SSLContext | None = None) -> tuple[pika.BlockingConnection, tuple[str, int]]:
    """A pika connection to `host`:`port` from `source`, named `name`; and its own address."""
    bound: list[tuple[str, int]] = []
    set_sock_opts = pika.tcp_socket_opts.set_sock_opts

    def bind_first(options: dict | None, sock: socket.socket) -> None:
        set_sock_opts(options, sock)
        sock.bind((source, 0))
        bound.append(sock.getsockname()[:2])

    parameters = pika.ConnectionParameters(
        host, port, credentials=credentials or pika.PlainCredentials("guest", "guest"),
        client_properties={"connection_name": name}, connection_attempts=1, socket_timeout=5,
        ssl_options=pika.SSLOptions(tls, "localhost") if tls is not None else None)
    with mock.patch.object(pika.tcp_socket_opts, "set_sock_opts", bind_first):
        connection = pika.BlockingConnection(parameters)
    return connection, bound[-1]


def listed(api: Api, path: str, name: str) -> dict:
    """The entry of /api/connections or /api/channels of the connection named `name`."""
    def entry(items: list[dict]) -> dict | None:
        for item in items:
            properties = item.get("client_properties") or item.get(
                "connection_details", {}).get("client_properties") or {}
            if name in (properties.get("connection_name"), item.get("user_provided_name")):
                return item
        return None

    return entry(eventually(lambda: api.ok_json(path), lambda items: entry(items) is not None,
                            timeout=10))


def round_trip(connection: pika.BlockingConnection, queue: str) -> bytes:
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue, exclusive=True)
    channel.basic_publish("", queue, b"through")
    _, _, body = channel.basic_get(queue, auto_ack=True)
    return body


def test_the_leader_sees_the_clients_own_address_and_the_node_it_came_through(nodes) -> None:
    follower, leader = nodes.follower, nodes.leader
    connection, (host, port) = connect(follower.port, "origin-through-follower")
    try:
        assert round_trip(connection, "origin-q") == b"through"
        info = listed(nodes.api, "/api/connections", "origin-through-follower")
        assert (info["peer_host"], info["peer_port"]) == (host, port)
        assert (info["host"], info["port"]) == ("127.0.0.1", follower.port)
        assert info["name"] == f"{host}:{port} -> 127.0.0.1:{follower.port}"
        assert info["node"] == follower.name
        assert info["ssl"] is False
        connection.channel()
        channels = [item for item in nodes.api.ok_json("/api/channels")
                    if item["connection_details"]["name"] == info["name"]]
        assert channels and all(item["node"] == follower.name for item in channels)
        assert {item["connection_details"]["peer_port"] for item in channels} == {port}
    finally:
        connection.close()
    direct, (host, port) = connect(leader.port, "origin-direct")
    try:
        info = listed(nodes.api, "/api/connections", "origin-direct")
        assert (info["peer_port"], info["port"], info["node"]) == (port, leader.port,
                                                                   leader.name)
    finally:
        direct.close()


def test_guest_is_judged_on_the_node_it_connected_to(nodes) -> None:
    """As RabbitMQ judges it (tests/broker/test_auth.py): by the address the client connected
    to, here the follower's; only a client on the follower's host reaches its loopback."""
    address, follower = nodes.address, nodes.follower
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as refused:
        connect(follower.port, "origin-guest-remote", source=address, host=address)
    assert LOGIN_REFUSED in str(refused.value)
    assert "PLAIN login refused: user 'guest' can only connect via localhost" in (
        nodes.leader.log_path.read_text())
    # from the host's own address to the follower's loopback: on the follower's host
    connection, (_, port) = connect(follower.port, "origin-guest-local", source=address)
    try:
        info = listed(nodes.api, "/api/connections", "origin-guest-local")
        assert (info["peer_host"], info["peer_port"], info["host"], info["user"]) == (
            address, port, "127.0.0.1", "guest")
    finally:
        connection.close()
    # a user who is not loopback-only logs in at the follower's other address
    connection, (_, port) = connect(follower.port, "origin-limited-remote", source=address,
                                    host=address,
                                    credentials=pika.PlainCredentials("limited", "limited"))
    try:
        info = listed(nodes.api, "/api/connections", "origin-limited-remote")
        assert (info["peer_host"], info["peer_port"], info["host"], info["port"],
                info["node"]) == (address, port, address, follower.port, follower.name)
    finally:
        connection.close()


def test_a_client_link_without_the_cluster_secret_is_refused(nodes) -> None:
    leader = nodes.leader
    epoch = leader.epoch()
    for answer in (wire.Auth(bytes(wire.MAC_SIZE)), wire.Client(("127.0.0.1", 1),
                                                                 ("127.0.0.1", 2))):
        with socket.create_connection(("127.0.0.1", leader.replication_port), timeout=5) as sock:
            sock.sendall(wire.encode(wire.Hello(wire.CLIENT_LINK, epoch,
                                                os.urandom(wire.NONCE_SIZE), "intruder")))
            reader = wire.FrameReader()
            messages: list[wire.Message] = []
            while len(messages) < 1:
                messages += reader.feed(sock.recv(4096))
            assert isinstance(messages[0], wire.Hello) and messages[0].role == wire.LEADER
            sock.sendall(wire.encode(answer))  # a wrong mac, or no AUTH at all
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        [refusal] = wire.FrameReader().feed(received)
        assert refusal == wire.Refuse(wire.REFUSED_AUTH, "authentication failed")
    leader.assert_alive()


def _client_context(certificates: SimpleNamespace, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates.ca.cert))
    if with_certificate:
        context.load_cert_chain(str(certificates.client.cert), str(certificates.client.key))
    return context


def test_amqps_through_a_follower_shows_the_clients_tls_session(nodes, certificates) -> None:
    follower, leader = nodes.follower, nodes.leader
    connection, (_, port) = connect(nodes.amqps[follower.name], "origin-tls",
                                    tls=_client_context(certificates, False))
    try:
        assert round_trip(connection, "origin-tls-q") == b"through"
        info = listed(nodes.api, "/api/connections", "origin-tls")
        assert (info["peer_port"], info["port"], info["node"]) == (
            port, nodes.amqps[follower.name], follower.name)
        assert info["ssl"] is True and info["ssl_protocol"] in ("tlsv1.2", "tlsv1.3")
        assert info["ssl_cipher"] and info["peer_cert_subject"] is None
    finally:
        connection.close()
    direct, _ = connect(nodes.amqps[leader.name], "origin-tls-direct",
                        tls=_client_context(certificates, False))
    try:  # the leader terminates its own clients' TLS
        assert round_trip(direct, "origin-tls-direct-q") == b"through"
    finally:
        direct.close()


def test_external_login_by_certificate_through_a_follower(nodes, certificates) -> None:
    api, follower = nodes.api, nodes.follower
    assert api.put(f"/api/users/{q(CERT_USER)}", {"password": "", "tags": ""}).status in (
        201, 204)
    try:
        assert api.put(f"/api/permissions/%2F/{q(CERT_USER)}",
                       {"configure": ".*", "write": ".*", "read": ".*"}).status in (201, 204)
        connection, _ = connect(nodes.amqps[follower.name], "origin-external",
                                credentials=pika.credentials.ExternalCredentials(),
                                tls=_client_context(certificates, True))
        try:
            assert round_trip(connection, "origin-external-q") == b"through"
            info = listed(api, "/api/connections", "origin-external")
            assert (info["user"], info["auth_mechanism"]) == (CERT_USER, "EXTERNAL")
            assert info["peer_cert_subject"] == CERT_USER
            assert info["peer_cert_issuer"] == "CN=cluster-test-ca,O=Warren tests"
        finally:
            connection.close()
    finally:
        api.delete(f"/api/users/{q(CERT_USER)}")


def test_the_management_api_through_a_follower_judges_guest_by_the_clients_address(
        nodes) -> None:
    follower, leader = nodes.follower, nodes.leader
    local = get_from("127.0.0.1", "127.0.0.1", follower.management_port, "/api/whoami")
    assert (local.status, local.json()["name"]) == (200, "guest")
    address = non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    for port in (follower.management_port, leader.management_port):
        remote = get_from(address, "127.0.0.1", port, "/api/whoami")
        assert (remote.status, remote.json()) == (401, LOCALHOST_ONLY)
        # no header a client sends speaks for its address
        forged = get_from(address, "127.0.0.1", port, "/api/whoami", headers=FORGED)
        assert (forged.status, forged.json()) == (401, LOCALHOST_ONLY)


def test_the_management_api_through_a_follower_answers_as_the_leader(nodes) -> None:
    api = Api("127.0.0.1", nodes.follower.management_port)
    assert api.put("/api/queues/%2F/origin-http-q", {"durable": True}).status == 201
    try:
        answer = api.get("/api/queues/%2F/origin-http-q")
        assert answer.status == 200 and answer.header("content-type").startswith(
            "application/json")
        assert (answer.json()["name"], answer.json()["node"]) == ("origin-http-q",
                                                                  nodes.leader.name)
    finally:
        assert api.delete("/api/queues/%2F/origin-http-q").status == 204
    missing = api.get("/api/queues/%2F/origin-http-q")
    assert (missing.status, missing.json()) == (404, NOT_FOUND)
