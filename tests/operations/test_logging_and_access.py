"""What the broker logs about connections (RabbitMQ's lines, with peer and user), log level and
log file settings, and loopback_users."""

from __future__ import annotations

import re
import socket
import time

import pika
import pytest
from pika.exceptions import ProbableAuthenticationError


def _wait_for_log(read, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = read()
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not logged; log was:\n{text}")
        time.sleep(0.05)


def test_connection_lines_name_peer_and_user(warren_factory):
    broker = warren_factory()
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    local_port = connection._impl._transport._sock.getsockname()[1]
    name = re.escape(f"127.0.0.1:{local_port} -> 127.0.0.1:{broker.port}")
    connection.close()
    text = _wait_for_log(broker.log_text, rf"\[info\] .*closing AMQP connection {name} "
                                          r"\(vhost: '/', user: 'guest'\)")
    assert re.search(rf"\[info\] .*accepting AMQP connection {name}\n", text)
    assert re.search(rf"\[info\] .*connection {name}: user 'guest' authenticated and granted "
                     r"access to vhost '/'", text)
    # RabbitMQ's timestamp shape: 2026-11-23 13:50:01.123456+00:00 [info] <...> ...
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00 \[info\] <", text, re.M)

    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "wrong")))
    _wait_for_log(broker.log_text, r"\[error\] .*PLAIN login refused: user 'guest' - invalid "
                                   r"credentials")

    dropped = socket.create_connection(("127.0.0.1", broker.port))
    blocking = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    blocking._impl._transport._sock.close()  # vanish without connection.close
    dropped.close()
    _wait_for_log(broker.log_text, r"\[warning\] .*client unexpectedly closed TCP connection")


def test_log_level_and_log_file(warren_factory, tmp_path):
    log_file = tmp_path / "warren.log"
    broker = warren_factory(extra_args=["--log-file", str(log_file), "--log-level", "warning"],
                            env={"WARREN_LOG_LEVEL": "debug"})  # the flag wins
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    connection.close()
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.port, credentials=pika.PlainCredentials("guest", "wrong")))
    text = _wait_for_log(log_file.read_text, "login refused")
    assert "accepting AMQP connection" not in text  # info lines are below the level
    assert "login refused" not in broker.log_text()  # the file, not stderr


def _outward_address() -> str | None:
    """An address of this machine other than loopback, to connect from 'another host'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_loopback_users(warren_factory):
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    restricted = warren_factory()
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(pika.ConnectionParameters(address, restricted.port))
    open_to_all = warren_factory(extra_args=["--loopback-users", ""])
    connection = pika.BlockingConnection(pika.ConnectionParameters(address, open_to_all.port))
    assert connection.is_open
    connection.close()
