"""Warren only: quorum queues and streams across restarts (clean SIGTERM and kill -9) and in
`warren ctl`. The shared RabbitMQ reference is never restarted by the tests; what RabbitMQ
3.10.8 guarantees here (a quorum queue keeps every message, transient ones too, once
confirmed; a stream keeps its messages at their offsets) is its documented behaviour, and the
same shapes are checked live in the other files of this folder.

Each test starts a Warren of its own (tests/brokers.py run_warren) on a data dir that
successive processes share."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pika
import pytest
from brokers import BrokerProcess, run_warren
from client_helpers import channel_error, opened, wait_for
from management_api import Api
from queue_types_helpers import (
    QUORUM,
    STREAM,
    WARREN_ONLY,
    publish_each,
    stream_reader,
)

pytestmark = WARREN_ONLY

HOW = pytest.mark.parametrize("how", ["sigterm", "kill-9"])


class Restartable:
    """A Warren whose process can be stopped (SIGTERM) or killed (SIGKILL) and started again on
    the same data directory; `broker` is the current process."""

    def __init__(self, directory: Path, extra_args: list[str] | None = None) -> None:
        self.directory = directory
        self.extra_args = extra_args
        self.stack = contextlib.ExitStack()
        self.broker: BrokerProcess = self.stack.enter_context(run_warren(directory,
                                                                         extra_args=extra_args))

    def restart(self, how: str) -> BrokerProcess:
        process = self.broker.process
        assert process is not None
        if how == "kill-9":
            process.kill()
        else:
            process.terminate()
        process.wait(timeout=15)
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.broker = self.stack.enter_context(run_warren(self.directory,
                                                          extra_args=self.extra_args))
        return self.broker

    def close(self) -> None:
        self.stack.close()


@pytest.fixture
def warren(tmp_path):
    node = Restartable(tmp_path)
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def short_head_warren(tmp_path):
    """A Warren that keeps only the first 2 messages of a queue as objects (those behind
    become rows of the message store's catalog)."""
    node = Restartable(tmp_path, ["--resident-head", "2"])
    try:
        yield node
    finally:
        node.close()


@HOW
def test_a_confirmed_transient_message_in_a_quorum_queue_survives(warren, how):
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("qq", durable=True, arguments={**QUORUM, "x-delivery-limit": 5})
        channel.confirm_delivery()
        channel.basic_publish("", "qq", b"transient", pika.BasicProperties(headers={"h": 1}))
        channel.basic_publish("", "qq", b"persistent", pika.BasicProperties(delivery_mode=2))
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("qq", passive=True).method.message_count == 2
        method, properties, body = channel.basic_get("qq", auto_ack=True)
        assert (body, properties.delivery_mode) == (b"transient", None)
        assert properties.headers == {"h": 1, "x-delivery-count": 0}
        assert channel.basic_get("qq", auto_ack=True)[2] == b"persistent"
        # still a quorum queue with its arguments
        assert channel_error(lambda: channel.queue_declare("qq", durable=True)) == (
            406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost "
                 "'/': received none but current is the value 'quorum' of type 'longstr'")
    broker.assert_alive()


@HOW
def test_an_unacked_quorum_message_comes_back_redelivered(warren, how):
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("qq", durable=True, arguments=QUORUM)
        channel.confirm_delivery()
        channel.basic_publish("", "qq", b"m")
        method, _properties, _body = channel.basic_get("qq")
        assert method is not None  # left unacked
        # the delivery is logged like an ack, in the next group commit: a confirmed publish
        # after it is the client's way to know that commit is on disk before a kill -9
        channel.queue_declare("qq-after", durable=True, arguments=QUORUM)
        channel.basic_publish("", "qq-after", b"after")
        broker = warren.restart(how)
    with opened(broker) as connection:
        method, properties, body = connection.channel().basic_get("qq", auto_ack=True)
        assert body == b"m"
        assert method.redelivered
        # its return counts, at a SIGTERM (its channel closes) as after a kill -9 (it was out
        # when the broker stopped). Not observed on RabbitMQ (its node is shared and never
        # restarted): its quorum queue returns the messages of consumers gone when it starts
        # (rabbit_fifo's handle_down -> return_one, which counts a delivery)
        assert properties.headers == {"x-delivery-count": 1}


@HOW
def test_a_stream_keeps_its_messages_at_their_offsets(warren, how):
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("log", durable=True, arguments={**STREAM, "x-max-age": "1D"})
        channel.confirm_delivery()
        publish_each(channel, "log", [b"m0", b"m1", b"m2"])
    broker = warren.restart(how)
    with stream_reader(broker, "log", "first") as reader:
        assert reader.wait(3) == [b"m0", b"m1", b"m2"]
        assert reader.offsets == [0, 1, 2]
        with opened(broker) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish("", "log", b"m3")
        assert reader.wait(4)[-1] == b"m3"
        # appends go on after the recovered tail (RabbitMQ may skip an offset at a new segment)
        assert reader.offsets[3] > 2
        new_offset = reader.offsets[3]
    with stream_reader(broker, "log", 2) as reader:
        assert reader.wait(2) == [b"m2", b"m3"]
        assert reader.offsets == [2, new_offset]
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel_error(lambda: channel.queue_declare(
            "log", durable=True, arguments=STREAM)) == (
            406, "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue 'log' in vhost "
                 "'/': received none but current is the value '1D' of type 'longstr'")
    broker.assert_alive()


def test_a_deleted_streams_files_do_not_outlive_a_crash(warren):
    """A stream deleted just before a kill -9 (its directory renamed aside, not yet removed),
    and one left on disk by no stream, are removed at the next start; the live one stays."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for name in ("gone", "kept"):
            channel.queue_declare(name, durable=True, arguments=STREAM)
            publish_each(channel, name, [b"m0"])
        channel.queue_delete("gone")
    streams = warren.directory / "data" / "streams"
    (streams / "stray").mkdir(parents=True, exist_ok=True)
    broker = warren.restart("kill-9")
    assert sorted(path.name for path in streams.iterdir()) == [
        f"{b'/'.hex()}.{b'kept'.hex()}"]
    with stream_reader(broker, "kept", "first") as reader:
        assert reader.wait(1) == [b"m0"]


def test_warren_ctl_lists_the_queue_types(warren):
    broker = warren.broker
    with opened(broker) as connection:
        channel = connection.channel()
        channel.queue_declare("t-classic")
        channel.queue_declare("t-quorum", durable=True, arguments=QUORUM)
        channel.queue_declare("t-stream", durable=True, arguments=STREAM)
    result = subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--url",
         f"http://127.0.0.1:{broker.management_port}", "list_queues", "name", "type"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[0] == ["name", "type"]
    assert {tuple(row) for row in rows[1:]} >= {
        ("t-classic", "classic"), ("t-quorum", "quorum"), ("t-stream", "stream")}


def ctl(broker: BrokerProcess, *arguments: str) -> list[list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "ctl", "--url",
         f"http://127.0.0.1:{broker.management_port}", *arguments],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_warren_ctl_lists_quorum_queues_with_their_members(warren):
    """`list_queues name type leader members online`: rabbitmqctl's rows on one node are
    `q  quorum  rabbit@node  [rabbit@node]  [rabbit@node]`; a classic queue's replica fields
    are empty."""
    broker = warren.broker
    with opened(broker) as connection:
        channel = connection.channel()
        channel.queue_declare("t-classic")
        channel.queue_declare("t-quorum", durable=True, arguments=QUORUM)
    rows = ctl(broker, "list_queues", "name", "type", "leader", "members", "online")
    assert rows[0] == ["name", "type", "leader", "members", "online"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["t-classic"] == ["t-classic", "classic", "", "", ""]
    _, kind, leader, members, online = by_name["t-quorum"]
    assert kind == "quorum" and leader
    assert members == online == f"[{leader}]"


@HOW
def test_a_transient_message_fanned_out_is_kept_by_the_quorum_queue_only(warren, how):
    """A transient message routed to a quorum queue and to a durable classic queue is logged
    for the quorum queue alone: after a restart only the quorum queue has it; acking the
    classic queue's copy before the restart changes nothing for the quorum queue's."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("fan", "fanout", durable=True)
        channel.queue_declare("qq", durable=True, arguments=QUORUM)
        channel.queue_declare("cq", durable=True)
        channel.queue_declare("cq2", durable=True)
        for queue in ("qq", "cq", "cq2"):
            channel.queue_bind(queue, "fan")
        channel.confirm_delivery()
        channel.basic_publish("fan", "", b"transient")
        assert channel.basic_get("cq", auto_ack=True)[2] == b"transient"
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("cq2", passive=True).method.message_count == 0
        assert channel.basic_get("qq", auto_ack=True)[2] == b"transient"
    broker.assert_alive()


@pytest.mark.slow
def test_a_kept_at_least_once_dead_letter_is_delivered_once_routable(warren):
    """at-least-once + reject-publish: a dead letter its exchange routes nowhere stays in the
    quorum queue (messages_dlx) and is offered again every 10 s; once a queue is bound to the
    exchange, it arrives there and leaves the quorum queue. (Warren's retry period; RabbitMQ
    retries on a timer of its own, not observed.)"""
    broker = warren.broker
    with opened(broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("dlx", "fanout")
        channel.queue_declare("qq", durable=True, arguments={
            **QUORUM, "x-dead-letter-exchange": "dlx",
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        channel.confirm_delivery()
        channel.basic_publish("", "qq", b"dead")
        method, _properties, _body = channel.basic_get("qq")
        channel.basic_reject(method.delivery_tag, requeue=False)
        channel.queue_declare("late")
        channel.queue_bind("late", "dlx")
        arrived = wait_for(connection, lambda: channel.queue_declare(
            "late", passive=True).method.message_count == 1, 15.0)
        assert arrived
        assert channel.basic_get("late", auto_ack=True)[2] == b"dead"
        assert channel.queue_declare("qq", passive=True).method.message_count == 0


# -- what a quorum queue keeps of its messages across a restart -------------------------------


def get_and_nack(channel, queue: str) -> tuple[bytes, int | None]:
    """basic.get, then nack with requeue: (body, the x-delivery-count the get showed)."""
    method, properties, body = channel.basic_get(queue)
    assert method is not None, f"nothing in {queue}"
    channel.basic_nack(method.delivery_tag, requeue=True)
    return body, (properties.headers or {}).get("x-delivery-count")


@HOW
def test_the_delivery_count_is_kept_across_restarts(warren, how):
    """x-delivery-count counts every return, before and after a restart (RabbitMQ keeps it in
    the queue's log), and the delivery limit counts with it: a message returned twice, then
    once after the first restart, is past its limit of 3 at its return after the second. A
    message returned to the back of the queue is still behind the others after a restart
    (m, returned after z was published, comes after z and before z2)."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("qq", durable=True, arguments={**QUORUM, "x-delivery-limit": 3})
        channel.confirm_delivery()
        channel.basic_publish("", "qq", b"m")
        assert [get_and_nack(channel, "qq") for _ in range(2)] == [(b"m", 0), (b"m", 1)]
        channel.basic_publish("", "qq", b"z")  # confirmed: the returns are logged before it
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        assert get_and_nack(channel, "qq") == (b"m", 2)
        channel.basic_publish("", "qq", b"z2")
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        assert get_and_nack(channel, "qq") == (b"z", 0)
        assert get_and_nack(channel, "qq") == (b"m", 3)  # its 4th return: over the limit, dropped
        assert channel.queue_declare("qq", passive=True).method.message_count == 2
        assert [channel.basic_get("qq", auto_ack=True)[2] for _ in range(3)] == [
            b"z2", b"z", None]
    broker.assert_alive()


@HOW
def test_a_returned_message_out_again_at_the_stop_counts_one_more_return(warren, how):
    """Returned once, delivered again and left unacked when the broker stops: after the
    restart it has been returned twice (the second time by the stop), SIGTERM or kill -9."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("qq", durable=True, arguments=QUORUM)
        channel.confirm_delivery()
        channel.basic_publish("", "qq", b"m")
        assert get_and_nack(channel, "qq") == (b"m", 0)
        method, properties, _body = channel.basic_get("qq")  # out from here on
        assert properties.headers == {"x-delivery-count": 1}
        channel.basic_publish("", "qq", b"z")  # confirmed: the delivery is logged before it
        broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        method, properties, body = channel.basic_get("qq", auto_ack=True)
        assert (body, method.redelivered, properties.headers) == (
            b"m", True, {"x-delivery-count": 2})
    broker.assert_alive()


@HOW
def test_the_delivery_count_of_a_message_two_queues_hold_is_the_quorum_queues(warren, how):
    """A persistent message fanned out to a quorum queue and a durable classic queue is logged
    once for both: the quorum queue's returns are its own, after a restart too."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("fan", "fanout", durable=True)
        channel.queue_declare("qq", durable=True, arguments=QUORUM)
        channel.queue_declare("cq", durable=True)
        for queue in ("qq", "cq"):
            channel.queue_bind(queue, "fan")
        channel.confirm_delivery()
        channel.basic_publish("fan", "", b"m", pika.BasicProperties(delivery_mode=2))
        assert [get_and_nack(channel, "qq") for _ in range(2)] == [(b"m", 0), (b"m", 1)]
        channel.basic_publish("", "cq", b"flush", pika.BasicProperties(delivery_mode=2))
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        assert get_and_nack(channel, "qq") == (b"m", 2)
        _method, properties, body = channel.basic_get("cq", auto_ack=True)
        assert (body, properties.headers) == (b"m", None)
    broker.assert_alive()


@HOW
def test_a_recovered_transient_quorum_message_is_dead_lettered_as_transient(
        short_head_warren, how):
    """Transient messages kept by a quorum queue, recovered from the log or held as rows deep
    in the queue, are still transient when dead-lettered into a durable classic queue: a
    restart loses them there (as RabbitMQ's durable classic queues lose transient messages),
    while the persistent one stays."""
    warren = short_head_warren
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.queue_declare("dead", durable=True)
        channel.queue_declare("qq", durable=True, arguments={
            **QUORUM, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
        channel.confirm_delivery()
        publish_each(channel, "qq", [b"t1", b"t2", b"t3"])
        channel.basic_publish("", "qq", b"p", pika.BasicProperties(delivery_mode=2))
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        publish_each(channel, "qq", [b"t4", b"t5"])  # behind the head: rows of the catalog
        bodies = []
        for _ in range(6):
            method, properties, body = channel.basic_get("qq")
            bodies.append(body)
            channel.basic_reject(method.delivery_tag, requeue=False)
        assert bodies == [b"t1", b"t2", b"t3", b"p", b"t4", b"t5"]
        assert channel.queue_declare("dead", passive=True).method.message_count == 6
        channel.basic_publish("", "qq", b"flush")  # confirmed: the dead letters are logged
    broker = warren.restart(how)
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("dead", passive=True).method.message_count == 1
        method, properties, body = channel.basic_get("dead", auto_ack=True)
        assert (body, properties.delivery_mode) == (b"p", 2)
    broker.assert_alive()


@HOW
def test_a_kept_dead_letter_is_still_one_after_a_restart(warren, how):
    """at-least-once + reject-publish: a dead letter its exchange routes nowhere is kept by the
    quorum queue (messages_dlx) across a restart, not turned back into a ready message; once a
    queue is bound to the exchange, the retry (every 10 s) delivers it there."""
    with opened(warren.broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("dlx", "fanout", durable=True)
        channel.queue_declare("qq", durable=True, arguments={
            **QUORUM, "x-dead-letter-exchange": "dlx",
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        channel.confirm_delivery()
        publish_each(channel, "qq", [b"dead", b"stays"])
        method, _properties, _body = channel.basic_get("qq")
        channel.basic_reject(method.delivery_tag, requeue=False)
        channel.basic_publish("", "qq", b"later")  # confirmed: the kept dead letter is logged
    broker = warren.restart(how)
    api = Api(broker.host, broker.management_port)
    answer = api.ok_json("/api/queues/%2F/qq")
    assert (answer["messages_dlx"], answer["message_bytes_dlx"], answer["messages"]) == (1, 4, 3)
    with opened(broker) as connection:
        channel = connection.channel()
        assert channel.queue_declare("qq", passive=True).method.message_count == 2
        channel.queue_declare("late")
        channel.queue_bind("late", "dlx")
        assert wait_for(connection, lambda: channel.queue_declare(
            "late", passive=True).method.message_count == 1, 15.0)
        method, properties, body = channel.basic_get("late", auto_ack=True)
        assert body == b"dead"
        assert properties.headers["x-death"][0]["reason"] == "rejected"
        assert [channel.basic_get("qq", auto_ack=True)[2] for _ in range(3)] == [
            b"stays", b"later", None]
    assert api.ok_json("/api/queues/%2F/qq")["messages_dlx"] == 0
