"""Fixtures of the kombu and Celery tests: a per-test deadline, and a kombu Connection (py-amqp
transport) to the session's broker. The helpers of tests/broker are importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "broker"))

from helpers import deadline  # noqa: E402


@pytest.fixture(autouse=True)
def _deadline():
    """A test that hangs fails after TEST_DEADLINE seconds instead of stalling the run."""
    with deadline():
        yield


@pytest.fixture
def url(broker) -> str:
    """The broker URL as kombu and Celery users write it (vhost '/' is the trailing '/')."""
    return f"amqp://guest:guest@{broker.host}:{broker.port}//"
