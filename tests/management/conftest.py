"""Fixtures of the management tests: `scrape` (GET a path of the broker under test's metrics
endpoint and parse it, metrics_kit.Scrape) and `cleanup` (API paths to delete after a test)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from metrics_kit import EXTERNAL, Scrape, metrics_base


@pytest.fixture
def scrape(broker) -> Callable[[str], Scrape]:
    base = metrics_base(broker)

    def get(path: str = "/metrics") -> Scrape:
        with urllib.request.urlopen(base + path, timeout=120 if EXTERNAL else 10) as response:
            assert response.status == 200
            body = response.read().decode("utf-8")
            return Scrape(path, body, response.headers.get("Content-Type", ""))

    return get


@pytest.fixture
def cleanup(api):
    """Paths to DELETE when the test ends (in reverse order)."""
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        api.delete(path)
