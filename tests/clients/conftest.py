"""Fixture of the kombu and Celery tests: the broker URL as their users write it (the deadline
and the broker are tests/conftest.py's)."""

from __future__ import annotations

import pytest


@pytest.fixture
def url(broker) -> str:
    """The broker URL as kombu and Celery users write it (vhost '/' is the trailing '/')."""
    return f"amqp://guest:guest@{broker.host}:{broker.port}//"
