"""The in-sync set across a failover and the majority rule, on a 3-node cluster of real
processes: a new leader starts with the in-sync set it read from etcd (less the old leader), so
a surviving member stays eligible to lead and a confirm right after the failover waits for it;
with the default `cluster.min_in_sync` (`cluster.size // 2`: with the leader a majority of 3)
nothing is confirmed while both followers are down, and confirms resume when one is back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pika
from cluster_nodes import Cluster, ClusterNode, confirmed_publish, run_cluster
from etcd_process import EtcdProcess


class ConfirmedPublish(threading.Thread):
    """One persistent message published with confirms on a connection of its own; `outcome`
    is "confirmed" or the error that ended the wait."""

    def __init__(self, node: ClusterNode, queue: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", node.port))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.queue, self.body = queue, body
        self.outcome: object = None

    def run(self) -> None:
        try:
            self.channel.basic_publish("", self.queue, self.body,
                                       pika.BasicProperties(delivery_mode=2))
            self.outcome = "confirmed"
        except pika.exceptions.AMQPError as error:
            self.outcome = error


def in_sync_on(node: ClusterNode) -> set[str]:
    """The followers `node`'s /metrics counts in its in-sync set."""
    return {line.split('"')[1] for line in node.metrics().splitlines()
            if line.startswith("warren_cluster_replication_in_sync{")
            and float(line.rsplit(" ", 1)[1]) == 1}


def test_new_leader_keeps_the_surviving_member_in_sync_and_waits_for_it(
        etcd: EtcdProcess, tmp_path: Path) -> None:
    # A long replication timeout: the paused survivor is not dropped during the test.
    with run_cluster(tmp_path / "cluster", etcd.endpoint,
                     extra_args=["--replication-timeout", "15000"]) as cluster:
        old = cluster.in_sync()
        confirmed_publish(old.port, "kept-set", b"before")
        old.kill()
        new = cluster.leader(excluding=old)
        [survivor] = [node for node in cluster.followers(new) if node is not old]
        survivor.pause()  # before it could catch up with the new leader and join its set
        try:
            # in sync from the set the new leader read from etcd; the dead old leader is not
            assert in_sync_on(new) == {survivor.name}
            publish = ConfirmedPublish(new, "kept-set", b"after")
            publish.start()
            publish.join(timeout=2)
            assert publish.outcome is None, "confirmed without the in-sync survivor"
            new.kill()
        finally:
            survivor.resume()
        deadline = time.monotonic() + 20
        while survivor.role() != "leader":  # a member: it may lead, and has every confirm
            assert time.monotonic() < deadline, survivor.log()
            time.sleep(0.1)
        publish.join(timeout=10)
        assert publish.outcome != "confirmed"
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", survivor.port))
        method, _, body = connection.channel().basic_get("kept-set", auto_ack=True)
        connection.close()
        assert method is not None and body == b"before"


def test_both_followers_down_nothing_confirmed_until_one_is_back(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    confirmed_publish(leader.port, "majority", b"0")  # declared while it can be confirmed
    first, second = cluster.followers(leader)
    first.stop()
    second.stop()
    publish = ConfirmedPublish(leader, "majority", b"1")
    publish.start()
    publish.join(timeout=3)  # past the replication timeout: both left the in-sync set
    assert publish.outcome is None, "confirmed by the leader alone (cluster.size 3)"
    first.start()
    publish.join(timeout=20)
    assert publish.outcome == "confirmed"
    publish.connection.close()
