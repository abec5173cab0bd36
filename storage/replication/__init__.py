"""Replication of a data dir from a cluster's leader to its followers (docs/replication.md).

`leader.ReplicationLeader` records the leader's file actions through its write-ahead log and
holds confirms back until the followers in sync have them; `follower.ReplicationFollower`
keeps a follower's data dir a byte copy of the leader's. `wire` is the protocol's bytes,
`files` the file actions (recording, listing, catch-up, applying), `status` what both report.
"""

from storage.replication.follower import ReplicationFollower
from storage.replication.leader import ReplicationLeader
from storage.replication.status import FollowerStatus, ReplicationRefused

__all__ = ["FollowerStatus", "ReplicationFollower", "ReplicationLeader", "ReplicationRefused"]
