"""Fixtures of the storage tests: Warren nodes that can be restarted on the same data dir."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from warren_process import WarrenNode, warren_node


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., WarrenNode]]:
    """Make WarrenNodes (not started yet); each is SIGKILLed at the end of the test if it
    still runs. Arguments: extra_args=[...], env={...}."""
    if os.environ.get("WARREN_TEST_AMQP_PORT"):
        pytest.skip("storage tests restart a Warren of their own")
    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def make(**kwargs) -> WarrenNode:
        directory = tmp_path / f"node{next(counter)}"
        directory.mkdir()
        return stack.enter_context(warren_node(directory, **kwargs))

    with stack:
        yield make


@pytest.fixture
def node(node_factory) -> WarrenNode:
    """A started Warren with default settings."""
    return node_factory().start()
