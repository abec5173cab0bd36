"""TLS contexts for the AMQPS listener and the HTTPS management port, built from the Config."""

from __future__ import annotations

import ssl
from pathlib import Path

from broker.config import Config


def _server_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RabbitMQ's default versions
    context.load_cert_chain(certfile, keyfile)
    return context


def amqps_context(config: Config) -> ssl.SSLContext | None:
    if config.amqps_certfile is None or config.amqps_keyfile is None:
        return None
    context = _server_context(config.amqps_certfile, config.amqps_keyfile)
    if config.amqps_cacertfile is not None:
        context.load_verify_locations(config.amqps_cacertfile)
    if config.amqps_verify_peer:
        context.verify_mode = (
            ssl.CERT_REQUIRED if config.amqps_fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        )
    return context


def management_context(config: Config) -> ssl.SSLContext | None:
    if config.management_certfile is None or config.management_keyfile is None:
        return None
    return _server_context(config.management_certfile, config.management_keyfile)
