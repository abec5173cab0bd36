"""Fixtures for the operations tests: certificates, a free port, and a tiny HTTP(S) JSON getter."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from tls_certificates import CertificateAuthority


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    directory = tmp_path_factory.mktemp("certs")
    ca = CertificateAuthority(directory, "warren-test-ca")
    stranger_ca = CertificateAuthority(directory, "stranger-ca")
    return SimpleNamespace(
        ca=ca.pair, server=ca.issue("localhost", server=True),
        client=ca.issue("test-client", server=False),
        stranger=stranger_ca.issue("stranger-client", server=False),
    )


@pytest.fixture
def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, context: ssl.SSLContext | None = None,
             user: tuple[str, str] = ("guest", "guest")) -> Any:
    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(":".join(user).encode()).decode(),
    })
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        return json.loads(answer.read())
