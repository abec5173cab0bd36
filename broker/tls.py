"""TLS for the AMQPS listener and the HTTPS management port: the server contexts built from
the Config, and names read off a client's certificate (for /api/connections and for the
EXTERNAL authentication mechanism). In a cluster a follower terminates a client's TLS and
hands the session's figures to the leader (`session_summary`), which sees them as a
`ForwardedTLS` in place of the socket's SSL object."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

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


_SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
                "domainComponent": "DC", "emailAddress": "emailAddress"}


def distinguished_name(rdns: Any) -> str | None:
    """A certificate name (as ssl.getpeercert() gives it) as RFC 4514 writes it and RabbitMQ
    shows it: last RDN first, "CN=client,O=Example"."""
    if not rdns:
        return None
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(key, key)}={_escape(value)}" for key, value in rdn)
        for rdn in reversed(rdns)
    )


def _escape(value: str) -> str:
    escaped = "".join(f"\\{char}" if char in ',+"\\<>;=' else char for char in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def peer_certificate(tls: ssl.SSLObject | None) -> dict[str, Any] | None:
    """The client's verified certificate, or None (no TLS, or no certificate asked for)."""
    return (tls.getpeercert() or None) if tls is not None else None


def login_name(certificate: dict[str, Any], login_from: str) -> str | None:
    """The user name EXTERNAL takes from a certificate: its whole subject, or its common name
    (RabbitMQ's ssl_cert_login_from = distinguished_name | common_name)."""
    subject = certificate.get("subject")
    if login_from == "common_name":
        names = [value for rdn in subject or () for key, value in rdn if key == "commonName"]
        return names[-1] if names else None
    return distinguished_name(subject)


def session_summary(tls: ssl.SSLObject | None) -> str:
    """A TLS session as JSON for the leader (broker/cluster/clientlink.py): what
    /api/connections and EXTERNAL read of it; "" for plain TCP."""
    if tls is None:
        return ""
    return json.dumps({"version": tls.version(), "cipher": tls.cipher(),
                       "peercert": tls.getpeercert() or {}})


class ForwardedTLS:
    """A client's TLS session on the follower it connected to, as `session_summary` gave it:
    answers what this module and /api/connections ask of an ssl.SSLObject. The follower
    verified the client's certificate with its own amqps settings."""

    def __init__(self, summary: str) -> None:
        document = json.loads(summary)
        self._version = document.get("version")
        self._cipher = tuple(document["cipher"]) if document.get("cipher") else None
        self._peercert = document.get("peercert") or {}

    def version(self) -> str | None:
        return self._version

    def cipher(self) -> tuple | None:
        return self._cipher

    def getpeercert(self) -> dict[str, Any]:
        return self._peercert
