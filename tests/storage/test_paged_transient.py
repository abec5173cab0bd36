"""Transient messages of long queues page out: a message arriving in a queue that already holds
`--resident-head` messages (lowered to 64 here), unless it is a persistent one of a durable
queue (test_live_cold_rows.py), has its body written to `data_dir/transient` once it has waited
there `--page-out-after` ms (0 here, but the last test) while memory is above the paging
threshold (`--memory-high-watermark-paging-ratio`: 0 here, so always), and is kept as a compact
row until it nears the head. Nothing there outlives the broker: the directory is
emptied at start-up. A client sees nothing of it: order, properties, requeues, priorities,
TTLs, limits, dead-lettering, purges and deletes work as for any message.
"""

from __future__ import annotations

import time
from functools import partial

import long_queues
import pika
import pytest
from client_helpers import message_count
from long_queues import (
    HEAD,
    api,
    check_requeued_go_back,
    publish_priorities,
    purge_and_delete,
    wait_until,
)
from warren_process import TRANSIENT, WarrenNode, drain, get_all

COUNT = 3000
ALWAYS_PAGE = ["--memory-high-watermark-paging-ratio", "0"]
fill = partial(long_queues.fill, count=COUNT, size=100, durable=False, properties=TRANSIENT)


@pytest.fixture
def node(node_factory) -> WarrenNode:
    return node_factory(extra_args=[*ALWAYS_PAGE, "--resident-head", str(HEAD),
                                    "--page-out-after", "0",
                                    "--segment-size", "65536"]).start()


def pages(node: WarrenNode) -> list[str]:
    return sorted(path.name for path in (node.data_dir / "transient").iterdir())


def publish(node: WarrenNode, queue: str, bodies: list[bytes], exchange: str = "",
            properties: pika.BasicProperties = TRANSIENT) -> None:
    """Publish with confirms (a transient message is confirmed once routed)."""
    with node.channel() as ch:
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish(exchange, queue, body, properties)


def test_transient_backlog_goes_to_disk_and_comes_back_in_order(node):
    with node.channel() as ch:
        ch.queue_declare("backlog")
        ch.confirm_delivery()
        for i in range(COUNT):
            ch.basic_publish("", "backlog", b"%05d-" % i + b"t" * 100, pika.BasicProperties(
                delivery_mode=1, headers={"i": i % 5}, message_id=f"id-{i}"))
    queue = api(node, "/api/queues/%2F/backlog")
    assert queue["messages"] == COUNT
    # bodies + ~500 B per object at the head + ~50 B per row (objects would be ~1.5 MB)
    assert queue["memory"] < COUNT * 106 + 500 * HEAD + 100 * COUNT, queue["memory"]
    assert len(pages(node)) > 2  # 300 KB of bodies in files of 64 KB
    with node.channel() as ch:
        found = get_all(ch, "backlog")
    assert [got.body for got in found] == [b"%05d-" % i + b"t" * 100 for i in range(COUNT)]
    assert [(got.properties.headers, got.properties.message_id, got.properties.delivery_mode)
            for got in found] == [({"i": i % 5}, f"id-{i}", 1) for i in range(COUNT)]
    assert not any(got.redelivered for got in found)
    assert len(pages(node)) <= 1  # emptied files are deleted (the one being filled stays)


def test_mixed_durable_queue_and_restart(node_factory):
    """Transient and persistent messages interleaved in a durable queue are all rows, and come
    out in order; after a restart only the persistent ones are there, and the page files are
    gone. (Paged out after waiting 500 ms: by then persistent rows follow them.)"""
    node = node_factory(extra_args=[*ALWAYS_PAGE, "--resident-head", str(HEAD),
                                    "--page-out-after", "500",
                                    "--segment-size", "65536"]).start()
    with node.channel() as ch:
        ch.queue_declare("mixed", durable=True)
        ch.confirm_delivery()
        expected = []
        for i in range(COUNT):
            mode = 2 if i % 3 == 0 else 1
            body = b"%05d-%d" % (i, mode)
            ch.basic_publish("", "mixed", body, pika.BasicProperties(delivery_mode=mode))
            expected.append(body)
    # persistent ones are rows at once, the transient ones between them become rows too
    wait_until(lambda: api(node, "/api/queues/%2F/mixed")["memory"] < 500 * HEAD + 100 * COUNT,
               "transient messages between persistent rows not paged out")
    found = drain(node, "mixed", 1000, batch=200)
    assert [got.body for got in found] == expected[:1000]
    node.restart()
    assert pages(node) == []
    with node.channel() as ch:
        found = get_all(ch, "mixed")
    assert [got.body for got in found] == [body for body in expected[1000:]
                                           if body.endswith(b"-2")]


def test_files_of_an_earlier_run_are_removed_at_start(node):
    fill(node, "left")
    assert pages(node)
    node.crash_restart()
    assert pages(node) == []
    with node.channel() as ch:
        assert not ch.queue_declare("left", passive=False).method.message_count


def test_requeued_messages_go_back_to_their_place(node):
    check_requeued_go_back(node, "rq", fill(node, "rq"))


def test_priority_queue(node):
    expected = publish_priorities(node, "prio", COUNT, TRANSIENT)
    assert [got.body for got in drain(node, "prio", COUNT, batch=250)] == expected


def test_ttl_dead_letters_paged_messages_in_order(node):
    with node.channel() as ch:
        ch.queue_declare("expired")
    bodies = fill(node, "ttl", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "expired"})
    wait_until(lambda: not message_count(node.connect().channel(), "ttl"), "ttl not empty")
    with node.channel() as ch:
        dead = get_all(ch, "expired")
    assert [got.body for got in dead] == bodies
    assert {got.properties.headers["x-death"][0]["reason"] for got in dead} == {"expired"}


def test_per_message_ttl_on_paged_rows(node):
    with node.channel() as ch:
        ch.queue_declare("own-ttl")
    publish(node, "own-ttl", [b"short"] * 1000,
            properties=pika.BasicProperties(delivery_mode=1, expiration="800"))
    publish(node, "own-ttl", [b"long-%d" % i for i in range(500)])
    time.sleep(1.0)
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "own-ttl")] == [b"long-%d" % i
                                                                for i in range(500)]


def test_limits(node):
    with node.channel() as ch:
        ch.queue_declare("dropped")
    bodies = fill(node, "capped", arguments={"x-max-length": 1500, "x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": "dropped"})
    full = [b"full-%d" % i for i in range(1500)]
    with node.channel() as ch:  # no confirms: those past the limit are dropped
        ch.queue_declare("full", arguments={"x-max-length": 1000, "x-overflow": "reject-publish"})
        for body in full:
            ch.basic_publish("", "full", body, TRANSIENT)
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "capped")] == bodies[-1500:]
        assert [got.body for got in get_all(ch, "dropped")] == bodies[:-1500]
        assert [got.body for got in get_all(ch, "full")] == full[:1000]


def test_purge_and_delete_remove_the_files(node):
    kept = purge_and_delete(node, fill, COUNT)
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "kept")] == kept
    assert len(pages(node)) <= 1


def test_fanned_out_and_persistent_in_transient_queues(node):
    """Each queue pages its own copy; a persistent message in a transient queue is paged too
    (and stays persistent if it is dead-lettered into a durable queue)."""
    with node.channel() as ch:
        ch.exchange_declare("fan", "fanout")
        for name in ("fan-a", "fan-b"):
            ch.queue_declare(name, arguments={"x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": "kept-dead"})
            ch.queue_bind(name, "fan")
        ch.queue_declare("kept-dead", durable=True)
    bodies = [b"f%05d" % i for i in range(1500)]
    publish(node, "", bodies, exchange="fan",
            properties=pika.BasicProperties(delivery_mode=2))
    assert [got.body for got in drain(node, "fan-a", len(bodies), batch=200)] == bodies
    with node.channel() as ch:
        got = []
        for _ in range(len(bodies)):
            method, _, body = ch.basic_get("fan-b")
            ch.basic_reject(method.delivery_tag, requeue=False)
            got.append(body)
    assert got == bodies
    node.restart()
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "kept-dead")] == bodies


def test_files_pinned_by_a_few_messages_are_compacted(node):
    """A queue nobody consumes gets a message now and then, between bursts into a busy
    queue: its few rows sit in every file; compaction copies them forward so that the files
    follow the live data, and they still come out whole."""
    with node.channel() as ch:
        ch.queue_declare("pinned")
        ch.queue_declare("busy")
    publish(node, "pinned", [b"head-%d" % i for i in range(HEAD)])  # past the head from now
    pinned = []
    for i in range(12):
        pinned.append(b"pinned-%d-" % i + b"p" * 300)
        publish(node, "pinned", [pinned[-1]])
        fill_busy = [b"busy-%d-%d-" % (i, j) + b"b" * 1000 for j in range(200)]
        publish(node, "busy", fill_busy)
        drain(node, "busy", 200, batch=100)
    wait_until(lambda: len(pages(node)) <= 3, f"files not compacted: {pages(node)}")
    with node.channel() as ch:
        found = get_all(ch, "pinned")
    assert [got.body for got in found] == [b"head-%d" % i for i in range(HEAD)] + pinned
    # Emptied page files are deleted by the page store's writer thread, after the gets.
    wait_until(lambda: len(pages(node)) <= 1, f"emptied files not deleted: {pages(node)}")


def test_messages_wait_before_they_are_paged_out(node_factory):
    """A backlog that consumers take within --page-out-after is never written out; one that
    waits longer is."""
    node = node_factory(extra_args=[*ALWAYS_PAGE, "--resident-head", str(HEAD),
                                    "--page-out-after", "4000"]).start()
    bodies = fill(node, "slow")
    assert pages(node) == []
    before = api(node, "/api/queues/%2F/slow")["memory"]
    assert before > 500 * (COUNT - HEAD)  # still objects
    wait_until(lambda: api(node, "/api/queues/%2F/slow")["memory"] < 100 * COUNT + COUNT * 106,
               "not paged out")
    assert pages(node)
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "slow")] == bodies


def test_below_the_paging_threshold_a_backlog_stays_in_memory(node_factory):
    """With memory below the paging threshold (the default: half the high watermark, far above
    this broker's use), a backlog that waits past --page-out-after stays in memory, as
    RabbitMQ's does; lowering the ratio at the next start pages it out."""
    node = node_factory(extra_args=["--resident-head", str(HEAD), "--page-out-after", "0"])
    node.start()
    bodies = fill(node, "kept")
    time.sleep(1.0)  # a few page-out timers' worth (0 ms each, re-armed when memory is short)
    assert pages(node) == []
    assert metric(node, "warren_paged_out_messages") == 0
    assert api(node, "/api/queues/%2F/kept")["memory"] > 500 * (COUNT - HEAD)  # still objects
    assert "transient backlogs page out" not in node.log_text()
    node.stop()
    node.extra_args = [*node.extra_args, *ALWAYS_PAGE]
    node.start()  # (transient messages do not survive a restart: publish them again)
    bodies = fill(node, "paged")
    wait_until(lambda: metric(node, "warren_paged_out_messages") > 0, "nothing paged out")
    assert "transient backlogs page out" in node.log_text()
    with node.channel() as ch:
        assert [got.body for got in get_all(ch, "paged")] == bodies


def metric(node: WarrenNode, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.management_port}/metrics",
                                timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_paged_out_and_lost_messages_are_counted_in_metrics(node):
    """A page file removed under the broker (a disk failure) loses what it held: the consumer
    gets the rest, in order, and /metrics counts what is paged out and what was lost."""
    bodies = fill(node, "counted")
    wait_until(lambda: metric(node, "warren_paged_out_messages") > 0, "nothing paged out")
    assert metric(node, "warren_paged_out_messages_lost_total") == 0
    paged = int(metric(node, "warren_paged_out_messages"))
    assert paged <= COUNT - HEAD
    for name in pages(node):
        (node.data_dir / "transient" / name).unlink()
    with node.channel() as ch:
        found = [got.body for got in get_all(ch, "counted")]
    lost = int(metric(node, "warren_paged_out_messages_lost_total"))
    assert lost > 0
    assert len(found) + lost == COUNT
    assert found == [body for body in bodies if body in set(found)]  # in order
    assert metric(node, "warren_paged_out_messages") == 0
    queue = api(node, "/api/queues/%2F/counted")
    assert (queue["messages"], queue["message_bytes"]) == (0, 0)
