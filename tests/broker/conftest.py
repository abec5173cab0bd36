"""Fixtures shared by the messaging tests of this folder: a per-test deadline, and a pika
connection and channel to the session's broker."""

from __future__ import annotations

import pytest
from helpers import deadline, opened


@pytest.fixture(autouse=True)
def _deadline():
    """A test that hangs fails after TEST_DEADLINE seconds instead of stalling the run."""
    with deadline():
        yield


@pytest.fixture
def connection(broker):
    with opened(broker) as conn:
        yield conn


@pytest.fixture
def channel(connection):
    return connection.channel()
