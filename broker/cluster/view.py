"""What the management API and /metrics read of the cluster (the `ClusterView` a cluster node
sets on its `Node` and hands its follower front): names, role, epoch, the nodes seen in etcd,
and the leader's replication status of each follower. Plain values, refreshed by the node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ReplicaLag:
    """A follower as the leader's replication sees it."""

    name: str
    lag_bytes: int
    lag_seconds: float
    in_sync: bool


@dataclass
class ClusterNodeInfo:
    """A node registered in etcd (its key lives while its process keeps its lease)."""

    name: str
    role: str  # leader | follower
    running: bool
    amqp: tuple[str, int] | None = None
    http: tuple[str, int] | None = None
    started: float | None = None
    figures: dict = field(default_factory=dict)  # what it published: broker/node_figures.py


class ClusterView(Protocol):
    cluster_name: str
    name: str
    role: str  # leader | follower | candidate
    epoch: int | None

    def nodes(self) -> list[ClusterNodeInfo]: ...

    def replicas(self) -> list[ReplicaLag]: ...
