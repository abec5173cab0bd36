"""IPv6: by default Warren listens on every IPv6 and IPv4 address (`::` and `0.0.0.0`), as
RabbitMQ 3.10 listens dual stack, so `::1` works out of the box for AMQP, AMQPS and the
management port; an explicit bind setting (one address or a comma-separated list) is obeyed."""

from __future__ import annotations

import socket
import ssl

import pika
import pytest
from http_json import get_json
from test_tls import _client_context, _round_trip, _tls_args

from broker.config import Config, ConfigError, build_parser, parse_args, resolve


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")


def _pika(host: str, port: int, **options) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host, port, connection_attempts=1, socket_timeout=5, **options))


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


def test_default_binds_every_ipv6_and_ipv4_address():
    config = parse_args([], env={})
    assert config.host == config.amqps_host == config.management_host == ("::", "0.0.0.0")


def test_bind_takes_one_address_or_a_list(tmp_path):
    assert parse_args(["--bind", "127.0.0.1"], env={}).host == ("127.0.0.1",)
    assert parse_args([], env={"WARREN_MANAGEMENT_BIND": "::1, 127.0.0.1"}).management_host == (
        "::1", "127.0.0.1")
    file = tmp_path / "warren.toml"
    file.write_text('[amqps]\nbind = ["::1", "127.0.0.1"]\n')
    assert parse_args(["--config", str(file)], env={}).amqps_host == ("::1", "127.0.0.1")
    with pytest.raises(ConfigError, match="expected one address or more"):
        resolve(build_parser().parse_args(["--bind", ""]), {})
    assert Config().host == ("::", "0.0.0.0")


@needs_ipv6
def test_amqp_and_http_over_ipv6_loopback_by_default(warren_factory, unique):
    broker = warren_factory()
    connection = _pika("::1", broker.port)
    try:
        assert _round_trip(connection, unique) == b"over tls"  # (the helper's body)
        api = f"http://[::1]:{broker.management_port}/api"
        [entry] = [entry for entry in get_json(f"{api}/connections")
                   if entry["peer_host"] == "::1"]
        assert entry["user"] == "guest"  # guest's loopback-only login works over ::1
        assert entry["name"] == f"[::1]:{entry['peer_port']} -> [::1]:{broker.port}"  # RabbitMQ's
        amqp = {entry["ip_address"] for entry in get_json(f"{api}/overview")["listeners"]
                if entry["protocol"] == "amqp"}
        assert amqp == {"::", "0.0.0.0"}
    finally:
        connection.close()
    # IPv4 goes on working beside it.
    connection = _pika("127.0.0.1", broker.port)
    connection.close()
    assert "started TCP listener on [::]:" in broker.log_text()


@needs_ipv6
def test_amqps_over_ipv6_loopback_by_default(warren_factory, certificates, free_tcp_port, unique):
    warren_factory(extra_args=_tls_args(certificates, free_tcp_port))
    context: ssl.SSLContext = _client_context(certificates)
    connection = _pika("::1", free_tcp_port,
                       ssl_options=pika.SSLOptions(context, "localhost"))
    try:
        assert _round_trip(connection, unique) == b"over tls"
    finally:
        connection.close()


@needs_ipv6
def test_explicit_ipv4_bind_leaves_ipv6_alone(warren_factory):
    broker = warren_factory(extra_args=["--bind", "127.0.0.1", "--management-bind",
                                        "127.0.0.1"])
    assert _refused("::1", broker.port) and _refused("::1", broker.management_port)
    _pika("127.0.0.1", broker.port).close()


@needs_ipv6
def test_explicit_list_of_addresses(warren_factory):
    broker = warren_factory(extra_args=["--bind", "::1,127.0.0.1"])
    for host in ("::1", "127.0.0.1"):
        _pika(host, broker.port).close()
