"""Fixtures for the operations tests: a certificate authority and its certificates."""

from __future__ import annotations

from types import SimpleNamespace

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
        unknown=ca.issue("no-such-user", server=False),
        stranger=stranger_ca.issue("stranger-client", server=False),
    )
