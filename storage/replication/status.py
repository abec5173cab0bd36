"""What the replication leader and follower tell about a follower (for /metrics, /api/nodes and
`warren ctl cluster_status`), and the refusal that ends a follower's run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FollowerStatus:
    name: str
    address: str  # host:port: the follower's as the leader sees it, the leader's on a follower
    acked: int  # the stream position acknowledged (fsynced); -1 before the first
    lag_bytes: int  # bytes of the leader's stream it has not acknowledged
    lag_seconds: float  # how long the oldest of those has waited
    in_sync: bool  # in the set confirms wait for (the leader knows; False on a follower)
    caught_up: bool  # catch-up done, following the live actions


class ReplicationRefused(Exception):
    """The other end refused (or was refused): wrong secret, another epoch, not the
    protocol. Retrying with the same settings will not help: re-read the cluster state."""
