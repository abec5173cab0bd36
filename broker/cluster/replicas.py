"""The replication a cluster node runs: storage/replication's `ReplicationLeader` and
`ReplicationFollower` (built on branch "repl", to the interface in docs/cluster.md).

STUB: until that branch is merged, broker/cluster/replication_stub.py stands in for it (no data
is copied; followers only join the in-sync set) and `STUB` is True, logged loudly at start.
Delete the stub and this fallback once storage/replication is here."""

from __future__ import annotations

try:
    from storage.replication import (
        FollowerStatus,
        ReplicationFollower,
        ReplicationLeader,
        ReplicationRefused,
    )

    STUB = False
except ImportError:  # STUB: storage/replication is not merged yet
    from broker.cluster.replication_stub import (  # type: ignore[assignment]
        FollowerStatus,
        ReplicationFollower,
        ReplicationLeader,
        ReplicationRefused,
    )

    STUB = True

__all__ = ["STUB", "FollowerStatus", "ReplicationFollower", "ReplicationLeader",
           "ReplicationRefused"]
