"""Fixtures of the cluster tests: a real etcd (skipped with the reason when it is not
installed) and Warren nodes as subprocesses (cluster_nodes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import Cluster, run_cluster
from etcd_process import EtcdProcess, etcd_missing, run_etcd


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    reason = etcd_missing()
    if reason:
        pytest.skip(reason)
    with run_etcd(tmp_path / "etcd") as running:
        yield running


@pytest.fixture
def cluster(etcd: EtcdProcess, tmp_path: Path) -> Iterator[Cluster]:
    """Three Warren nodes on the test's etcd, stopped by PID at the end."""
    with run_cluster(tmp_path / "cluster", etcd.endpoint) as running:
        yield running
