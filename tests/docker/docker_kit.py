"""The docker CLI for the opt-in Docker tests: run a command and fail with its output, the base
image to build on (docker/build-base-image.sh makes it when missing), and which Compose the
machine has."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from brokers import REPO_ROOT

DEFAULT_BASE = "warren-base:bookworm"
BUILD_TIMEOUT = 1200.0
KEEP_IMAGES = os.environ.get("WARREN_DOCKER_KEEP_IMAGES") == "1"


def run(command: list[str], timeout: float = 120.0, check: bool = True,
        env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout (stripped), or an AssertionError with its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            env=None if env is None else {**os.environ, **env})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """Run the docker CLI; its stdout (stripped), or an AssertionError with its output."""
    return run(["docker", *args], timeout=timeout, check=check)


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def dangling_images() -> set[str]:
    return set(docker("images", "--quiet", "--no-trunc", "--filter", "dangling=true").split())


def build_base_image(tag: str) -> str | None:
    """Make `tag` with docker/build-base-image.sh unless it exists; why it cannot, or None."""
    if image_exists(tag) or tag != DEFAULT_BASE:
        return None
    if os.geteuid() != 0:
        return (f"no {tag} image, and building it takes root: "
                "run `sudo docker/build-base-image.sh` first")
    script = REPO_ROOT / "docker" / "build-base-image.sh"
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT, env={**os.environ, "WARREN_BASE_TAG": tag})
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}{result.stderr}"
    return None


def compose_command() -> list[str] | None:
    """$WARREN_DOCKER_COMPOSE (a command line), else `docker compose` (Compose v2's plugin),
    else `docker-compose` (1.29 from Debian, or v2's standalone binary), else None."""
    configured = os.environ.get("WARREN_DOCKER_COMPOSE")
    if configured:
        return shlex.split(configured)
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None
