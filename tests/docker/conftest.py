"""Opt-in Docker tests: tests marked `docker` run only with WARREN_DOCKER_TESTS=1 and a reachable
Docker daemon; otherwise they are skipped with the reason. The other tests here need no Docker."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from docker_kit import DEFAULT_BASE, KEEP_IMAGES, build_base_image, docker, image_exists


@functools.cache
def docker_unavailable() -> str | None:
    """Why Docker cannot be used here, or None when the CLI reaches a daemon."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`docker info` failed: {error}"
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr or result.stdout).strip().splitlines()
        return "no Docker daemon reachable: " + (detail[-1] if detail else "docker info failed")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # the marker, not item.keywords: every test in tests/docker has "docker" among its keywords
    docker_items = [item for item in items if item.get_closest_marker("docker") is not None]
    if not docker_items:
        return
    if os.environ.get("WARREN_DOCKER_TESTS") != "1":
        reason = "Docker test: set WARREN_DOCKER_TESTS=1 to run it (needs a Docker daemon)"
    else:
        reason = docker_unavailable()
        if reason is None:
            return
        reason = f"Docker test: {reason}"
    for item in docker_items:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def base_image() -> Iterator[str]:
    """The base to build on: WARREN_DOCKER_BASE_IMAGE, or warren-base:bookworm (made if
    missing, and then removed at the end unless WARREN_DOCKER_KEEP_IMAGES=1)."""
    tag = os.environ.get("WARREN_DOCKER_BASE_IMAGE") or DEFAULT_BASE
    made = not image_exists(tag)
    reason = build_base_image(tag)
    if reason:
        pytest.skip(reason)
    yield tag
    if made and not KEEP_IMAGES:
        docker("rmi", tag, check=False)
