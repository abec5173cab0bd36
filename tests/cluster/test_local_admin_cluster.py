"""Local administration in a cluster (management/local_admin.py): `warren ctl` beside a
follower, with no credentials, works through the follower's own local secret; the follower
passes the request on to the leader signed with the cluster secret. A forged signature and a
wrong local secret are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from cluster_nodes import Cluster, ClusterNode

from management import local_admin


def ctl_beside(node: ClusterNode, *args: str) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("WARREN_DEFAULT_", "WARREN_CTL_", "WARREN_MANAGEMENT_URL"))}
    env |= {"WARREN_DATA_DIR": str(node.data_dir),
            "WARREN_MANAGEMENT_PORT": str(node.management_port)}
    return subprocess.run([sys.executable, "-m", "broker", "ctl", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def status_of(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as failure:
        return failure.code


def test_ctl_beside_a_follower_needs_no_credentials(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    follower = cluster.followers(leader)[0]
    expected = {leader.name: "leader",
                **{node.name: "follower" for node in cluster.followers(leader)}}
    deadline = time.monotonic() + 20  # the leader lists a follower once it has seen it
    while True:
        status = ctl_beside(follower, "cluster_status")
        assert status.returncode == 0, status.stderr
        roles = dict(line.split("\t")[::2] for line in status.stdout.splitlines()[2:])
        if roles == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert roles == expected
    added = ctl_beside(follower, "add_vhost", "local-admin-through-follower")
    assert added.returncode == 0, added.stderr
    vhosts = ctl_beside(leader, "list_vhosts")
    assert "local-admin-through-follower" in vhosts.stdout.split()
    # with a percent-encoded path (vhost "/"), signed as the leader receives it
    queues = ctl_beside(follower, "list_queues", "-p", "/")
    assert queues.returncode == 0, queues.stderr


def test_forged_or_wrong_local_credentials_are_refused(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    follower = cluster.followers(leader)[0]
    path = "/api/overview"
    forged = local_admin.sign_forward("not-the-cluster-secret", follower.name, "GET", path, b"")
    assert status_of(f"http://127.0.0.1:{leader.management_port}{path}",
                     {local_admin.FORWARD_HEADER: forged}) == 401
    # a follower passes no X-Warren-Local-Admin of a client on, and checks its own secret
    assert status_of(f"http://127.0.0.1:{follower.management_port}{path}",
                     {local_admin.FORWARD_HEADER: forged}) == 401
    leaders_secret = local_admin.read_secret(leader.data_dir)
    assert leaders_secret is not None
    assert status_of(f"http://127.0.0.1:{follower.management_port}{path}",
                     {"Authorization": local_admin.header_value(leaders_secret)}) == 401
    followers_secret = local_admin.read_secret(follower.data_dir)
    assert status_of(f"http://127.0.0.1:{follower.management_port}{path}",
                     {"Authorization": local_admin.header_value(followers_secret)}) == 200
