"""What the replication must carry over a failover, seen by clients of a 3-node cluster of real
processes: definitions made through any node (users, vhosts, permissions, queues, exchanges,
bindings, policies, operator policies) and a follower killed under load that catches up; a
paused leader confirms nothing after its lease is gone, and what it took then is not on the
cluster afterwards."""

from __future__ import annotations

import threading
import time

import pika
from cluster_nodes import Cluster, confirmed_publish
from management_api import Api, q


def test_definitions_made_through_a_follower_survive_a_failover(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    follower = cluster.followers(leader)[0]
    api = Api("127.0.0.1", follower.management_port)  # passed through to the leader
    assert api.put("/api/vhosts/replicated").status == 201
    assert api.put("/api/users/replica-user", {"password": "pw", "tags": "management"}).status \
        == 201
    assert api.put("/api/permissions/replicated/replica-user",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status == 201
    api.create_exchange("replicated", "replica-x", "topic", durable=True)
    api.create_queue("replicated", "replica-q", durable=True)
    assert api.post("/api/bindings/replicated/e/replica-x/q/replica-q",
                    {"routing_key": "a.#"}).status == 201
    assert api.put("/api/policies/replicated/replica-ttl",
                   {"pattern": "^replica-", "definition": {"message-ttl": 60000},
                    "apply-to": "queues"}).status == 201
    assert api.put("/api/operator-policies/replicated/replica-cap",
                   {"pattern": "^replica-", "definition": {"max-length": 1000},
                    "apply-to": "queues"}).status == 201
    leader.kill()
    new = cluster.leader(excluding=leader)
    api = Api("127.0.0.1", new.management_port)
    assert api.ok_json("/api/users/replica-user")["tags"] in (["management"], "management")
    assert api.ok_json("/api/queues/replicated/replica-q")["durable"] is True
    assert api.ok_json("/api/exchanges/replicated/replica-x")["type"] == "topic"
    bindings = api.ok_json(f"/api/bindings/replicated/e/replica-x/q/{q('replica-q')}")
    assert [binding["routing_key"] for binding in bindings] == ["a.#"]
    assert api.ok_json("/api/policies/replicated/replica-ttl")["definition"] == {
        "message-ttl": 60000}
    replicated = api.ok_json("/api/queues/replicated/replica-q")
    assert (replicated["operator_policy"], replicated["effective_policy_definition"]) == (
        "replica-cap", {"max-length": 1000, "message-ttl": 60000})
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", new.port, "replicated", pika.PlainCredentials("replica-user", "pw")))
    connection.close()  # the user, its password and its permissions came over


def test_follower_killed_under_load_catches_up(cluster: Cluster) -> None:
    leader = cluster.in_sync()
    victim, other = cluster.followers(leader)
    for number in range(20):
        confirmed_publish(leader.port, "follower-kill", str(number).encode())
    victim.kill()
    for number in range(20, 40):  # the other follower is enough (min_in_sync 1)
        confirmed_publish(leader.port, "follower-kill", str(number).encode())
    victim.start()
    assert cluster.in_sync() is leader  # caught up and back in the in-sync set
    leader.kill()
    other.kill()  # only the caught-up victim is left to lead: it must have all 40
    other.start(wait=False)
    new = cluster.leader(excluding=leader)
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", new.port))
    channel = connection.channel()
    assert channel.queue_declare("follower-kill", durable=True, passive=True).method \
        .message_count == 40
    connection.close()


def test_paused_leader_confirms_nothing_after_losing_its_lease(cluster: Cluster) -> None:
    old = cluster.in_sync()
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", old.port))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("paused", durable=True)
    outcome: list[object] = []

    def publish() -> None:  # blocks until confirmed, or the connection goes
        try:
            channel.basic_publish("", "paused", b"late", pika.BasicProperties(delivery_mode=2))
            outcome.append("confirmed")
        except pika.exceptions.AMQPError as error:
            outcome.append(error)

    old.pause()
    publisher = threading.Thread(target=publish, daemon=True)
    try:
        publisher.start()  # its bytes wait in the paused leader's socket
        cluster.leader(excluding=old)
    finally:
        old.resume()
    publisher.join(timeout=15)
    assert outcome and outcome[0] != "confirmed", "the deposed leader confirmed a publish"
    deadline = time.monotonic() + 20
    while old.role() != "follower":
        assert time.monotonic() < deadline, old.log()
        time.sleep(0.2)
    cluster.in_sync()
    cluster.left_alone(old)  # the only node left: it leads
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", old.port))
    # (a get, not a passive declare: alone, it confirms nothing, declare-ok included)
    method, _, _ = connection.channel().basic_get("paused")
    assert method is None  # what it took after losing the lease was truncated
    connection.close()
