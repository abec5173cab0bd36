"""Fixtures of the message-lifecycle tests (TTL, x-expires, length limits, dead-lettering,
delivery limit): the reusable helpers of tests/broker are importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "broker"))

from helpers import deadline, opened  # noqa: E402
from lifecycle_helpers import Topology  # noqa: E402


@pytest.fixture(autouse=True)
def _deadline():
    with deadline():
        yield


@pytest.fixture
def connection(broker):
    with opened(broker) as conn:
        yield conn


@pytest.fixture
def channel(connection):
    """A channel in confirm mode: basic_publish returns once the broker has routed and
    enqueued the message, so counts read right after a publish are meaningful."""
    opened_channel = connection.channel()
    opened_channel.confirm_delivery()
    return opened_channel


@pytest.fixture
def topo(broker, unique):
    """Declares queues/exchanges under `unique` names and deletes them after the test."""
    topology = Topology(broker, unique)
    try:
        yield topology
    finally:
        topology.cleanup()
