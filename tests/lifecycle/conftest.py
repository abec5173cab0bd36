"""Fixtures of the message-lifecycle tests (TTL, x-expires, length limits, dead-lettering,
delivery limit): a channel in confirm mode by default, and a topology cleaned up after the test.
The broker, connection and deadline are tests/conftest.py's."""

from __future__ import annotations

import pytest
from lifecycle_helpers import Topology


@pytest.fixture
def channel(confirming_channel):
    """basic_publish returns once the broker has routed and enqueued the message, so counts read
    right after a publish are meaningful."""
    return confirming_channel


@pytest.fixture
def topo(broker, unique):
    """Declares queues/exchanges under `unique` names and deletes them after the test."""
    topology = Topology(broker, unique)
    try:
        yield topology
    finally:
        topology.cleanup()
