"""A 3-node cluster of real processes on a real etcd: one leader, followers passing AMQP and
the management API through to it, a new leader after the old one is killed.
Each node's role and lag on /metrics, and its own figures in /api/nodes on any node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pika
from cluster_nodes import Cluster, ClusterNode

from management.rates import CHURN


def api(node: ClusterNode, path: str) -> object:
    request = urllib.request.Request(f"http://127.0.0.1:{node.management_port}{path}")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def ctl(node: ClusterNode, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--url",
         f"http://127.0.0.1:{node.management_port}", *args],
        capture_output=True, text=True, timeout=30)


def nodes_seen(node: ClusterNode, expected: set[tuple]) -> set[tuple]:
    """(name, running, cluster_role) of /api/nodes, once it is `expected` (etcd's node list is
    read every second) or after 5 s."""
    deadline = time.monotonic() + 5
    while True:
        seen = {(item["name"], item["running"], item["cluster_role"])
                for item in api(node, "/api/nodes")}
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def publish_and_get(node: ClusterNode, queue: str, body: bytes) -> bytes:
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", node.port, connection_attempts=20, retry_delay=0.25))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
        method, _, got = channel.basic_get(queue, auto_ack=True)
        assert method is not None
        return got
    finally:
        connection.close()


def test_one_leader_and_followers_pass_clients_through(cluster: Cluster) -> None:
    leader = cluster.leader()
    for node in cluster.nodes:  # any node serves AMQP: followers pass it to the leader
        assert publish_and_get(node, f"roles-{node.name}", node.name.encode()) == (
            node.name.encode())
    expected = {(other.name, True, "leader" if other is leader else "follower")
                for other in cluster.nodes}
    for node in cluster.nodes:
        assert nodes_seen(node, expected) == expected
        assert api(node, "/api/overview")["cluster_name"] == leader.cluster
    epoch = leader.epoch()
    assert epoch > 0 and all(node.epoch() == epoch for node in cluster.nodes)
    status = ctl(cluster.followers(leader)[0], "cluster_status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"Cluster status of {leader.cluster} ..."
    assert lines[1] == "name\trunning\tcluster_role"
    assert sorted(lines[2:]) == sorted(
        f"{node.name}\ttrue\t{'leader' if node is leader else 'follower'}"
        for node in cluster.nodes)


def test_metrics_and_api_nodes_show_each_nodes_own_figures(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    metrics = leader.metrics()
    assert f'warren_cluster_role{{cluster="{leader.cluster}",role="leader"}} 1' in metrics
    assert "rabbitmq_queues " in metrics  # the broker's own figures are there too
    for follower in cluster.followers(leader):
        assert f'warren_cluster_replication_lag_bytes{{follower="{follower.name}"}}' in metrics
        assert f'warren_cluster_replication_lag_seconds{{follower="{follower.name}"}}' in (
            metrics)
        assert follower.role() == "follower"
        assert follower.epoch() == leader.epoch()
    for follower in cluster.followers(leader):  # a follower shows its own replication
        deadline = time.monotonic() + 5
        while (f'warren_cluster_replication_in_sync{{follower="{follower.name}"}} 1'
               not in follower.metrics()):
            assert time.monotonic() < deadline, follower.metrics()
            time.sleep(0.2)
    # /api/nodes: each node publishes its figures in its etcd node key; the API (answered by
    # the leader, here through a follower) shows RabbitMQ's node object for every node.
    follower = cluster.followers(leader)[0]
    connection = pika.BlockingConnection(pika.ConnectionParameters(  # through the follower
        "127.0.0.1", follower.port))
    try:
        deadline = time.monotonic() + 15
        while True:
            found = {item["name"]: item for item in api(follower, "/api/nodes")}
            if (len(found) == 3 and found[follower.name].get("sockets_used", 0) >= 1
                    and all("os_pid" in item for item in found.values())):
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
    finally:
        connection.close()
    local = found[leader.name]  # the object the answering node makes for itself
    # Only the answering node has sample history (`*_details`) and churn figures of its own.
    sampled = {key for key in local if key.endswith("_details")} | set(CHURN.names)
    for node in cluster.nodes:
        item = found[node.name]
        if node is not leader:
            assert set(item) ^ (set(local) - sampled) == set(), node.name  # RabbitMQ's keys
            assert item["db_dir"] == str(node.data_dir.resolve())  # its own description
        assert item["os_pid"] == str(node.process.pid)  # its own figures, not the leader's
        assert item["running"] is True
        assert item["uptime"] > 0 and item["mem_used"] > 0 and item["fd_used"] > 0
        assert item["disk_free"] > 0 and item["mem_limit"] > 0


def test_leader_killed_another_takes_over_within_seconds(cluster: Cluster) -> None:
    old = cluster.in_sync()
    follower = cluster.followers(old)[0]
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", follower.port))
    old_epoch = old.epoch()
    old.kill()
    killed = time.monotonic()
    new = cluster.leader(excluding=old)
    took = time.monotonic() - killed
    assert new is not old and new.epoch() > old_epoch
    assert took < 15, f"failover took {took:.1f}s"
    # the passed-through connection was closed with 320 (or cut, if it was mid-frame)
    closed_with = None
    try:
        connection.process_data_events(time_limit=2)
        connection.channel()
    except pika.exceptions.ConnectionClosedByBroker as error:
        closed_with = error.reply_code
    except pika.exceptions.AMQPConnectionError:
        closed_with = "cut"
    assert closed_with in (320, "cut")
    assert publish_and_get(new, "after-failover", b"x") == b"x"
    expected = {(node.name, node is not old, "leader" if node is new else "follower")
                for node in cluster.nodes}
    assert nodes_seen(new, expected) == expected  # the dead node: listed, not running
    old.start()  # it comes back as a follower
    assert cluster.leader() is new

