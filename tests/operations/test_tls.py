"""AMQPS and HTTPS: pika over TLS with a CA made in the test, client certificate verification,
and the management API served over HTTPS."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import urllib.error
from urllib.parse import quote

import pika
import pytest
from http_json import get_json, put_json
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
        assert info["peer_cert_subject"] == "CN=test-client,O=Warren tests"  # RFC 4514 order
        assert info["peer_cert_issuer"] == "CN=warren-test-ca,O=Warren tests"
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


def _verifying_args(certificates, port: int) -> list[str]:
    return [*_tls_args(certificates, port), "--amqps-cacertfile", str(certificates.ca.cert),
            "--amqps-verify-peer", "true"]


def _external(port: int, context: ssl.SSLContext, vhost: str = "/") -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "localhost", port, vhost, credentials=pika.credentials.ExternalCredentials(),
        ssl_options=pika.SSLOptions(context, "localhost"), connection_attempts=1,
        socket_timeout=5,
    ))


def test_external_login_by_client_certificate(warren_factory, certificates, free_tcp_port,
                                              unique):
    broker = warren_factory(extra_args=[
        *_verifying_args(certificates, free_tcp_port),
        "--auth-mechanisms", "PLAIN,AMQPLAIN,EXTERNAL",
    ])
    api = f"http://127.0.0.1:{broker.management_port}/api"
    user = "CN=test-client,O=Warren tests"
    put_json(f"{api}/users/{quote(user, safe='')}", {"password": "", "tags": ""})
    put_json(f"{api}/permissions/%2F/{quote(user, safe='')}",
             {"configure": ".*", "write": ".*", "read": ".*"})
    connection = _external(free_tcp_port, _client_context(certificates, certificates.client))
    try:
        assert _round_trip(connection, unique) == b"over tls"
        [info] = [c for c in get_json(f"{api}/connections") if c["port"] == free_tcp_port]
        assert (info["user"], info["auth_mechanism"]) == (user, "EXTERNAL")
    finally:
        connection.close()
    # a certificate naming no user of the broker is refused, as a password login would be
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as refused:
        _external(free_tcp_port, _client_context(certificates, certificates.unknown))
    assert ("ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For "
            "details see the broker logfile.") in str(refused.value)
    assert "EXTERNAL login refused: user 'CN=no-such-user,O=Warren tests' - not found" in (
        broker.log_text())
    # no certificate at all (verify_peer without fail_if_no_peer_cert lets the TLS through)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _external(free_tcp_port, _client_context(certificates))
    assert "connection peer presented no TLS (x.509) certificate" in broker.log_text()
    # EXTERNAL is not offered without TLS: pika finds no mechanism it can use
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.credentials.ExternalCredentials(),
            connection_attempts=1))


def test_external_with_common_name(warren_factory, certificates, free_tcp_port, unique):
    broker = warren_factory(extra_args=[
        *_verifying_args(certificates, free_tcp_port), "--auth-mechanisms", "EXTERNAL",
        "--ssl-cert-login-from", "common_name",
    ])
    api = f"http://127.0.0.1:{broker.management_port}/api"
    put_json(f"{api}/users/test-client", {"password": "", "tags": ""})
    put_json(f"{api}/permissions/%2F/test-client", {"configure": ".*", "write": ".*",
                                                     "read": ".*"})
    connection = _external(free_tcp_port, _client_context(certificates, certificates.client))
    try:
        assert _round_trip(connection, unique) == b"over tls"
    finally:
        connection.close()
    with pytest.raises(pika.exceptions.AMQPConnectionError):  # PLAIN is not offered any more
        pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port,
                                                          connection_attempts=1))
