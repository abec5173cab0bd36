"""Fixtures of the quorum and stream queue tests: a confirm-mode channel (a publish returns
once the broker has the message, so counts read after it are meaningful) and `queues`, the
named queues of a test, deleted afterwards. Broker, connection, API and the per-test deadline
are tests/conftest.py's."""

from __future__ import annotations

import pytest
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
