"""AMQPS and HTTPS: pika over TLS with a CA made in the test, client certificate verification,
and the management API served over HTTPS."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import urllib.error

import pika
import pytest
from conftest import get_json
from pika.exceptions import AMQPConnectionError

# pika raises the TLS error itself when the handshake fails, its own error when the server hangs up
REFUSED = (AMQPConnectionError, ssl.SSLError, ConnectionError)


def _tls_args(certificates, port: int) -> list[str]:
    return ["--amqps-port", str(port), "--amqps-certfile", str(certificates.server.cert),
            "--amqps-keyfile", str(certificates.server.key)]


def _client_context(certificates, client=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates.ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _connect(port: int, context: ssl.SSLContext) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "localhost", port, ssl_options=pika.SSLOptions(context, "localhost"),
        connection_attempts=1, socket_timeout=5,
    ))


def _round_trip(connection: pika.BlockingConnection, queue: str) -> bytes:
    channel = connection.channel()
    channel.queue_declare(queue, exclusive=True)
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"over tls")
    _, _, body = channel.basic_get(queue, auto_ack=True)
    return body


def test_pika_round_trip_over_amqps(warren_factory, certificates, free_tcp_port, unique):
    broker = warren_factory(extra_args=_tls_args(certificates, free_tcp_port))
    connection = _connect(free_tcp_port, _client_context(certificates))
    try:
        assert _round_trip(connection, unique) == b"over tls"
        api = f"http://127.0.0.1:{broker.management_port}/api"
        [info] = [c for c in get_json(f"{api}/connections") if c["port"] == free_tcp_port]
        assert info["ssl"] is True
        assert info["ssl_protocol"] in ("tlsv1.2", "tlsv1.3")
        assert info["peer_cert_subject"] is None  # no client certificate was asked for
        listeners = {(entry["protocol"], entry["port"])
                     for entry in get_json(f"{api}/overview")["listeners"]}
        assert ("amqp/ssl", free_tcp_port) in listeners and ("amqp", broker.port) in listeners
        assert get_json(f"{api}/health/checks/port-listener/{free_tcp_port}")["status"] == "ok"
    finally:
        connection.close()
    # The plain listener goes on working beside the TLS one.
    plain = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    try:
        assert _round_trip(plain, unique + "-plain") == b"over tls"
    finally:
        plain.close()


def test_client_that_does_not_trust_the_server_is_refused(warren_factory, certificates,
                                                          free_tcp_port):
    warren_factory(extra_args=_tls_args(certificates, free_tcp_port))
    with pytest.raises(REFUSED):
        _connect(free_tcp_port, ssl.create_default_context())  # system CAs only


def test_verify_peer_requires_a_certificate_from_the_ca(warren_factory, certificates,
                                                        free_tcp_port, unique):
    broker = warren_factory(extra_args=[
        *_tls_args(certificates, free_tcp_port), "--amqps-cacertfile", str(certificates.ca.cert),
        "--amqps-verify-peer", "true", "--amqps-fail-if-no-peer-cert", "true",
    ])
    connection = _connect(free_tcp_port, _client_context(certificates, certificates.client))
    try:
        assert _round_trip(connection, unique) == b"over tls"
        api = f"http://127.0.0.1:{broker.management_port}/api"
        [info] = [c for c in get_json(f"{api}/connections") if c["port"] == free_tcp_port]
        assert info["peer_cert_subject"] == "O=Warren tests,CN=test-client"
        assert info["peer_cert_issuer"] == "O=Warren tests,CN=warren-test-ca"
    finally:
        connection.close()
    with pytest.raises(REFUSED):
        _connect(free_tcp_port, _client_context(certificates))  # no client certificate
    with pytest.raises(REFUSED):
        _connect(free_tcp_port, _client_context(certificates, certificates.stranger))
    broker.assert_alive()


def test_management_serves_https(warren_factory, certificates):
    broker = warren_factory(extra_args=[
        "--management-certfile", str(certificates.server.cert),
        "--management-keyfile", str(certificates.server.key),
    ])
    url = f"https://localhost:{broker.management_port}/api"
    overview = get_json(f"{url}/overview", _client_context(certificates))
    assert {"https"} <= {entry["protocol"] for entry in overview["listeners"]}
    assert get_json(f"{url}/whoami", _client_context(certificates))["name"] == "guest"
    # Plain HTTP on the HTTPS port gets nowhere.
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        get_json(f"http://localhost:{broker.management_port}/api/overview")


def test_warren_ctl_over_https(warren_factory, certificates):
    broker = warren_factory(extra_args=[
        "--management-certfile", str(certificates.server.cert),
        "--management-keyfile", str(certificates.server.key),
    ])
    url = f"https://localhost:{broker.management_port}"
    ctl = [sys.executable, "-m", "broker", "ctl", "--url", url]
    trusted = subprocess.run([*ctl, "--cacert", str(certificates.ca.cert), "list_vhosts"],
                             capture_output=True, text=True, timeout=30)
    assert trusted.returncode == 0, trusted.stderr
    assert "/" in trusted.stdout.split()
    untrusted = subprocess.run([*ctl, "list_vhosts"], capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 69  # EX_UNAVAILABLE, as rabbitmqctl for an unreachable node
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
