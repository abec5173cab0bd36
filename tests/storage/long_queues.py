"""Helpers of the long-queue tests (test_cold_messages.py, test_live_cold_rows.py,
test_paged_transient.py): fill a queue well past its resident head, restart cleanly or after a
crash, read the management API, wait for what the broker does in the background."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import pika
from warren_process import PERSISTENT, WarrenNode, get_all, publish_confirmed, publish_many

HEAD = 64  # a lowered --resident-head, for the nodes of the tests of live long queues
AUTH = {"authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}  # guest:guest


def fill(node: WarrenNode, queue: str, *, count: int, size: int,
         arguments: dict | None = None, durable: bool = True, declare: bool = True,
         properties: pika.BasicProperties = PERSISTENT) -> list[bytes]:
    """Publish `count` numbered bodies of `size` bytes more into `queue` (declared first unless
    `declare` is false), all confirmed; returns the bodies, in order."""
    bodies = [b"%05d-" % i + b"m" * size for i in range(count)]
    if declare:
        with node.channel() as ch:
            ch.queue_declare(queue, durable=durable, arguments=arguments)
    publish_many(node, [("", queue, body) for body in bodies], window=500,
                 properties=properties)
    return bodies


def restart(node: WarrenNode, how: str) -> None:
    """A clean restart, or a crash once what was done so far is on disk (acks, purges and
    deletes are written without waiting: a confirmed publish after them waits for them)."""
    if how == "crash":
        with node.channel() as ch:
            ch.queue_declare("barrier", durable=True)
            publish_confirmed(ch, "barrier", [b"barrier"])
        node.crash_restart()
    else:
        node.restart()


def api(node: WarrenNode, path: str, method: str = "GET", body: dict | None = None):
    """A management API call as guest; the decoded JSON answer (None if empty)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.management_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={**AUTH, "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def publish_priorities(node: WarrenNode, queue: str, count: int,
                       properties: pika.BasicProperties = PERSISTENT) -> list[bytes]:
    """Declare `queue` with x-max-priority 2 (durable if `properties` are persistent) and
    publish `count` messages of priorities 0 to 3 in turn (3 counts as 2), all confirmed;
    returns the bodies in the order a consumer must get them."""
    messages = [(b"%05d" % i, i % 4) for i in range(count)]
    with node.channel() as ch:
        ch.queue_declare(queue, durable=properties.delivery_mode == 2,
                         arguments={"x-max-priority": 2})
        ch.confirm_delivery()
        for body, priority in messages:
            ch.basic_publish("", queue, body, pika.BasicProperties(
                delivery_mode=properties.delivery_mode, priority=priority))
    return [body for level in (2, 1, 0) for body, priority in messages
            if min(priority, 2) == level]


def check_requeued_go_back(node: WarrenNode, queue: str, bodies: list[bytes],
                           taken: int = HEAD + 30) -> None:
    """Take `taken` messages of `queue` (holding `bodies`) by basic.get, nack three of them
    back, ack the first and close the channel (the others go back too): the queue then holds
    the rest in their places, the ones taken marked redelivered."""
    connection = node.connect()
    ch = connection.channel()
    got = [ch.basic_get(queue) for _ in range(taken)]
    assert [body for _, _, body in got] == bodies[:taken]
    for index in (taken - 10, 3, taken - 25):
        ch.basic_nack(got[index][0].delivery_tag, requeue=True)
    ch.basic_ack(got[0][0].delivery_tag)
    connection.close()
    with node.channel() as ch:
        found = get_all(ch, queue)
    assert [message.body for message in found] == bodies[1:]
    assert all(message.redelivered for message in found[:taken - 1])
    assert not any(message.redelivered for message in found[taken - 1:])


def purge_and_delete(node: WarrenNode, fill: Callable[..., list[bytes]], count: int) -> list[bytes]:
    """Fill queues "to-purge" and "to-delete" (`count` messages each) and "kept" (HEAD * 3)
    with `fill`; purge "to-purge" while one of its messages is unacked (then acked), delete
    "to-delete". Returns the bodies of "kept"."""
    fill(node, "to-purge")
    fill(node, "to-delete")
    kept = fill(node, "kept", count=HEAD * 3)
    with node.channel() as ch:
        method, _, _ = ch.basic_get("to-purge")
        assert ch.queue_purge("to-purge").method.message_count == count - 1
        ch.basic_ack(method.delivery_tag)
        ch.queue_delete("to-delete")
    return kept
