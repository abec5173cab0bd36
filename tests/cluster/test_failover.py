"""Failures of a 3-node cluster of real processes: a paused leader (SIGSTOP) is replaced and
rejoins as a follower of the new one; etcd down stops confirms, etcd back brings service back."""

from __future__ import annotations

import time

import pika
import pytest
from cluster_nodes import LEASE_TTL, Cluster, confirmed_publish
from etcd_process import EtcdProcess


def test_paused_leader_is_replaced_and_rejoins_as_a_follower(cluster: Cluster) -> None:
    old = cluster.in_sync()
    pid = old.process.pid
    old.pause()
    try:
        paused = time.monotonic()
        new = cluster.leader(excluding=old)
        took = time.monotonic() - paused
        assert took < LEASE_TTL + 10, f"failover took {took:.1f}s"
    finally:
        old.resume()
    deadline = time.monotonic() + 20
    while old.role() != "follower":  # it re-executed itself (same PID) and follows
        assert time.monotonic() < deadline, old.log()
        old.assert_alive()
        time.sleep(0.2)
    assert old.process.pid == pid
    assert cluster.leader() is new
    assert "stops leading" in old.log_path.read_text()
    confirmed_publish(old.port, "after-pause", b"x")  # through the old leader, now a follower


def test_etcd_down_nothing_confirmed_then_service_resumes(cluster: Cluster,
                                                          etcd: EtcdProcess) -> None:
    leader = cluster.in_sync()
    confirmed_publish(leader.port, "etcd-down", b"before")
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", leader.port))
    channel = connection.channel()
    channel.confirm_delivery()
    etcd.stop()
    time.sleep(LEASE_TTL + 0.5)  # past any lease the leader may still count on
    with pytest.raises(pika.exceptions.AMQPError):  # no confirm: nacked, cut or closed (320)
        channel.basic_publish("", "etcd-down", b"during", pika.BasicProperties(delivery_mode=2))
        connection.process_data_events(time_limit=3)
        raise AssertionError("confirmed without etcd")
    if connection.is_open:
        connection.close()
    etcd.start()
    started = time.monotonic()
    new = cluster.leader(timeout=30)
    confirmed_publish(new.port, "etcd-down", b"after")
    print(f"service back {time.monotonic() - started:.1f}s after etcd")


def test_leader_stopped_cleanly_hands_over_at_once_and_comes_back_with_everything(
        cluster: Cluster) -> None:
    """A SIGTERM'd leader deletes its key: the next election does not wait for the lease. Its
    data dir then has the clean-stop index; back as a follower it must not trust it (the
    followers' copy goes on from the new leader's log), so when it leads again it has every
    message, also those published while it was down."""
    old = cluster.in_sync()
    for number in range(10):
        confirmed_publish(old.port, "clean-stop", str(number).encode())
    old.stop()
    stopped = time.monotonic()
    new = cluster.leader(excluding=old)
    assert time.monotonic() - stopped < LEASE_TTL, "the stopped leader's key outlived it"
    for number in range(10, 20):
        confirmed_publish(new.port, "clean-stop", str(number).encode())
    old.start()
    cluster.in_sync()
    # Confirmed only once every in-sync follower has it on disk: the old leader has acked the
    # latest publish, and it is in the in-sync set just before the others go.
    confirmed_publish(new.port, "clean-stop", b"20")
    cluster.in_sync()
    cluster.left_alone(old)  # the only node left: it leads
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", old.port))
    channel = connection.channel()
    bodies = []
    while (got := channel.basic_get("clean-stop", auto_ack=True))[0] is not None:
        bodies.append(int(got[2]))
    connection.close()
    assert bodies == list(range(21))
