"""The cluster's figures on /metrics (Warren-specific): this node's role and the epoch it
knows, and on the leader each follower's replication lag in bytes and seconds and whether it
is in the in-sync set. Read from the node's `ClusterView` at scrape time; the follower's own
/metrics (broker/cluster/httpfront.py) shows the same families."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from broker.cluster.view import ClusterView, ReplicaLag

ROLES = ("leader", "follower", "candidate", "promoting")


@dataclass
class ClusterFigures:
    cluster: str
    node: str
    role: str
    epoch: int | None
    replicas: list[ReplicaLag]

    @classmethod
    def of(cls, view: ClusterView) -> ClusterFigures:
        return cls(view.cluster_name, view.name, view.role, view.epoch, view.replicas())


def cluster_families(figures: ClusterFigures) -> Iterator[Metric]:
    role = GaugeMetricFamily("warren_cluster_role", "1 for this node's role in the cluster "
                             "(leader, follower, or between them)", labels=["cluster", "role"])
    for name in ROLES:
        role.add_metric([figures.cluster, name], int(figures.role == name))
    yield role
    yield GaugeMetricFamily("warren_cluster_epoch", "The leader's epoch (etcd revision of its "
                            "leader key) this node knows; 0: none",
                            value=figures.epoch or 0)
    lag_bytes = GaugeMetricFamily("warren_cluster_replication_lag_bytes",
                                  "Bytes of the leader's data dir a follower has not "
                                  "acknowledged yet", labels=["follower"])
    lag_seconds = GaugeMetricFamily("warren_cluster_replication_lag_seconds",
                                    "Age of the oldest file action a follower has not "
                                    "acknowledged yet", labels=["follower"])
    in_sync = GaugeMetricFamily("warren_cluster_replication_in_sync",
                                "1 if the follower is in the in-sync set", labels=["follower"])
    for replica in figures.replicas:
        lag_bytes.add_metric([replica.name], replica.lag_bytes)
        lag_seconds.add_metric([replica.name], replica.lag_seconds)
        in_sync.add_metric([replica.name], int(replica.in_sync))
    yield from (lag_bytes, lag_seconds, in_sync)
