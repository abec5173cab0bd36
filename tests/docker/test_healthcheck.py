"""docker/healthcheck.py against real brokers (no Docker needed): healthy while the broker
answers and no alarm is in effect, with the port and credentials resolved from WARREN_*."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "docker" / "healthcheck.py")], cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}, capture_output=True,
        text=True, timeout=30,
    )


def test_healthy_broker(warren_factory):
    broker = warren_factory(env={"WARREN_DEFAULT_USER": "ops", "WARREN_DEFAULT_PASS": "pw"})
    result = _healthcheck({"WARREN_MANAGEMENT_PORT": str(broker.management_port),
                           "WARREN_DEFAULT_USER": "ops", "WARREN_DEFAULT_PASS": "pw"})
    assert result.returncode == 0, result
    assert "'status': 'ok'" in result.stdout


def test_unhealthy_during_an_alarm_or_when_down(warren_factory):
    broker = warren_factory(extra_args=["--disk-free-limit", str(10**18)])
    env = {"WARREN_MANAGEMENT_PORT": str(broker.management_port)}
    result = _healthcheck(env)
    assert result.returncode == 1 and "HTTP 503" in result.stdout, result
    broker.process.terminate()
    broker.process.wait(timeout=10)
    result = _healthcheck(env)
    assert result.returncode == 1 and "Connection refused" in result.stdout, result


def test_healthy_without_any_password_through_the_local_secret(warren_factory):
    """A later container started without WARREN_DEFAULT_* (the volume has other users): the
    check reads the broker's local administration secret from the data dir instead."""
    broker = warren_factory(env={"WARREN_DEFAULT_USER": "ops", "WARREN_DEFAULT_PASS": "pw"})
    env = {"WARREN_MANAGEMENT_PORT": str(broker.management_port),
           "WARREN_DATA_DIR": str(broker.data_dir)}
    result = _healthcheck(env)  # as guest/guest it would be refused: there is no guest
    assert result.returncode == 0, result
    assert "'status': 'ok'" in result.stdout
    assert _healthcheck({**env, "WARREN_DATA_DIR": str(broker.data_dir / "elsewhere")}) \
        .returncode == 1
