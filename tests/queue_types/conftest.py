"""Fixtures of the quorum and stream queue tests: a confirm-mode channel (a publish returns
once the broker has the message, so counts read after it are meaningful) and `queues`, the
named queues of a test, deleted afterwards. Broker, connection and API are tests/conftest.py's."""

from __future__ import annotations

import pytest
from client_helpers import deadline
from queue_types_helpers import Queues


@pytest.fixture
def channel(confirming_channel):
    return confirming_channel


@pytest.fixture
def queues(broker, unique):
    made = Queues(broker, unique)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(autouse=True)
def _deadline():
    """A test that hangs on a broker that never answers fails instead."""
    with deadline():
        yield
