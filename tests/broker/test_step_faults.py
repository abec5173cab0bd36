"""A step after publishing that fails on a message loses nothing: the message stays where it
was, or is dead-lettered unchanged; the failure is logged once for the queue (not once per
message) and counted in /metrics as warren_message_step_failures_total{step=...}.

No valid message is known to break these steps any more (tests/broker/test_odd_properties.py
runs the odd ones through them), so the failures are injected: each test starts a Warren through
tests/fault_broker.py, which replaces one function of the broker by one that raises, and then
checks what a client sees — over AMQP, the management API and /metrics.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pika
import pytest
from client_helpers import connect, wait_for
from pamqp import commands
from prometheus_client.parser import text_string_to_metric_families
from raw_amqp import content_header_payload, raw_client

FAULT_BROKER = Path(__file__).resolve().parents[1] / "fault_broker.py"
DELIVERY_MODE_FLAG = 0x1000
STEPS = ("dead_letter", "expiry", "delayed", "delivery_count", "management_get", "trace")


def start(warren_factory, faults: str):
    return warren_factory(launcher=[sys.executable, str(FAULT_BROKER), faults])


def step_failures(broker) -> dict[str, float]:
    url = f"http://127.0.0.1:{broker.management_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "warren_message_step_failures":
            assert family.type == "counter"
            return {sample.labels["step"]: sample.value for sample in family.samples
                    if sample.name.endswith("_total")}
    raise AssertionError("no warren_message_step_failures_total in /metrics")


def api_get(broker, queue: str, ackmode: str) -> tuple[int, dict | list]:
    """POST /api/queues/%2F/{queue}/get for 2 messages: (status, decoded body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}/api/queues/%2F/{queue}/get",
        data=json.dumps({"count": 2, "ackmode": ackmode, "encoding": "auto"}).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def failure_lines(broker, step: str) -> list[str]:
    return [line for line in broker.log_text().splitlines() if f"] <broker.stepfailures> {step}"
            " failed in" in line]


def dead_letter_setup(channel, queue: str, **arguments) -> str:
    """`queue` dead-lettering through the default exchange into `queue`.dlq."""
    channel.queue_declare(queue + ".dlq")
    channel.queue_declare(queue, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue + ".dlq", **arguments,
    })
    return queue + ".dlq"


HEADERS = pika.BasicProperties(headers={"h": "v"}, message_id="m")


def test_failed_dead_letter_rewrite_dead_letters_the_message_unchanged(warren_factory):
    broker = start(warren_factory, "dead_letter_rewrite")
    connection = connect(broker)
    channel = connection.channel()
    rejected = dead_letter_setup(channel, "faults.rejected")
    expired = dead_letter_setup(channel, "faults.expired", **{"x-message-ttl": 20})
    for n in range(3):
        channel.basic_publish("", "faults.rejected", f"r{n}".encode(), HEADERS)
        channel.basic_publish("", "faults.expired", f"e{n}".encode(), HEADERS)
    for _ in range(3):
        method, _, _ = channel.basic_get("faults.rejected")
        channel.basic_reject(method.delivery_tag, requeue=False)
    assert wait_for(connection, lambda: channel.queue_declare(expired, passive=True)
             .method.message_count == 3)
    for queue, bodies in ((rejected, [b"r0", b"r1", b"r2"]), (expired, [b"e0", b"e1", b"e2"])):
        got = [channel.basic_get(queue, auto_ack=True) for _ in range(3)]
        assert sorted(body for _, _, body in got) == bodies
        for _, properties, _ in got:  # as published: no x-death, nothing else changed
            assert properties.headers == {"h": "v"} and properties.message_id == "m"
    connection.close()

    counts = step_failures(broker)
    assert counts == {**dict.fromkeys(STEPS, 0.0), "dead_letter": 3.0, "expiry": 3.0}
    for step, queue in (("dead_letter", "faults.rejected"), ("expiry", "faults.expired")):
        lines = failure_lines(broker, step)
        assert len(lines) == 1, lines
        assert f"queue '{queue}' in vhost '/'" in lines[0]
        assert "dead-lettered with its properties unchanged" in lines[0]


def test_failed_dead_letter_keeps_the_message_in_its_queue(warren_factory):
    broker = start(warren_factory, "dead_letter")
    connection = connect(broker)
    channel = connection.channel()
    rejected = dead_letter_setup(channel, "faults.rejected")
    expired = dead_letter_setup(channel, "faults.expired", **{"x-message-ttl": 20})
    dropped = dead_letter_setup(channel, "faults.maxlen", **{"x-max-length": 1})
    limited = dead_letter_setup(channel, "faults.limit", **{"x-delivery-limit": 0})
    channel.basic_publish("", "faults.limit", b"limited", HEADERS)
    channel.basic_publish("", "faults.rejected", b"rejected", HEADERS)
    channel.basic_publish("", "faults.expired", b"expired", HEADERS)
    channel.basic_publish("", "faults.maxlen", b"first", HEADERS)
    channel.basic_publish("", "faults.maxlen", b"second", HEADERS)

    # Rejected without requeue: back among the ready messages, as after a requeue.
    method, _, _ = channel.basic_get("faults.rejected")
    channel.basic_reject(method.delivery_tag, requeue=False)
    connection.sleep(0.2)
    method, properties, body = channel.basic_get("faults.rejected", auto_ack=True)
    assert (body, method.redelivered, properties.headers) == (b"rejected", True, {"h": "v"})
    # Expired: stays, and no longer expires (each try would fail again).
    connection.sleep(0.3)
    method, _, body = channel.basic_get("faults.expired", auto_ack=True)
    assert (body, method.redelivered) == (b"expired", False)
    # Dropped from the head (max-length 1): the head stays, over the limit.
    assert channel.queue_declare("faults.maxlen", passive=True).method.message_count == 2
    assert [channel.basic_get("faults.maxlen", auto_ack=True)[2] for _ in range(2)] == [
        b"first", b"second"]
    # Past its delivery limit when requeued: requeued all the same.
    method, _, _ = channel.basic_get("faults.limit")
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = channel.basic_get("faults.limit", auto_ack=True)
    assert (body, method.redelivered) == (b"limited", True)
    for dead_letter_queue in (rejected, expired, dropped, limited):
        assert channel.queue_declare(dead_letter_queue, passive=True).method.message_count == 0
    connection.close()

    counts = step_failures(broker)
    assert counts == {**dict.fromkeys(STEPS, 0.0), "dead_letter": 3.0, "expiry": 1.0}
    lines = failure_lines(broker, "dead_letter") + failure_lines(broker, "expiry")
    assert len(lines) == 4 and all("the message stays in the queue" in line for line in lines)


ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
            "reject_requeue_false")


@pytest.mark.parametrize("fault", ["get_render", "get_json"])
def test_failed_management_get_leaves_the_messages_untouched(warren_factory, fault):
    broker = start(warren_factory, fault)
    connection = connect(broker)
    channel = connection.channel()
    for ackmode in ACKMODES:
        queue = f"faults.get.{ackmode}"
        dead_letter_queue = dead_letter_setup(channel, queue)
        for n in range(3):
            channel.basic_publish("", queue, f"m{n}".encode(), HEADERS)

        for _ in range(2):  # a second try fails alike, and is not logged again
            status, answer = api_get(broker, queue, ackmode)
            assert status == 500, answer
            assert answer["error"] == "internal_server_error"
            assert f"queue '{queue}' in vhost '/'" in answer["reason"]

        got = [channel.basic_get(queue, auto_ack=True) for _ in range(3)]
        assert [body for _, _, body in got] == [b"m0", b"m1", b"m2"], ackmode  # none taken
        assert not any(method.redelivered for method, _, _ in got), ackmode
        assert channel.queue_declare(dead_letter_queue, passive=True).method.message_count == 0
    connection.close()
    assert step_failures(broker)["management_get"] == 2.0 * len(ACKMODES)
    assert len(failure_lines(broker, "management_get")) == len(ACKMODES)  # one per queue


def test_failed_delayed_release_keeps_holding_and_tries_again(warren_factory):
    broker = start(warren_factory, "delayed_release:2")
    connection = connect(broker)
    channel = connection.channel()
    channel.exchange_declare("faults.delayed", "x-delayed-message",
                             arguments={"x-delayed-type": "direct"})
    channel.queue_declare("faults.delayed.q")
    channel.queue_bind("faults.delayed.q", "faults.delayed", "k")
    channel.basic_publish("faults.delayed", "k", b"later",
                          pika.BasicProperties(headers={"x-delay": 50}))
    assert wait_for(connection, lambda: channel.queue_declare("faults.delayed.q", passive=True)
             .method.message_count == 1)
    _, properties, body = channel.basic_get("faults.delayed.q", auto_ack=True)
    assert (body, properties.headers) == (b"later", {"x-delay": -50})
    connection.close()
    assert step_failures(broker)["delayed"] == 2.0
    lines = failure_lines(broker, "delayed")
    assert len(lines) == 1 and "exchange 'faults.delayed' in vhost '/'" in lines[0]


def test_failed_delayed_hold_rewrite_holds_the_message_unchanged(warren_factory):
    broker = start(warren_factory, "delayed_hold")
    connection = connect(broker)
    channel = connection.channel()
    channel.exchange_declare("faults.delayed", "x-delayed-message",
                             arguments={"x-delayed-type": "direct"})
    channel.queue_declare("faults.delayed.q")
    channel.queue_bind("faults.delayed.q", "faults.delayed", "k")
    started = time.monotonic()
    channel.basic_publish("faults.delayed", "k", b"later",
                          pika.BasicProperties(headers={"x-delay": 300}))
    assert wait_for(connection, lambda: channel.queue_declare("faults.delayed.q", passive=True)
             .method.message_count == 1)
    assert time.monotonic() - started >= 0.25  # still delayed
    _, properties, body = channel.basic_get("faults.delayed.q", auto_ack=True)
    assert (body, properties.headers) == (b"later", {"x-delay": 300})  # not negated
    connection.close()
    assert step_failures(broker)["delayed"] == 1.0


def test_failed_delivery_count_delivers_the_message_as_published(warren_factory):
    broker = start(warren_factory, "delivery_count")
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare("faults.limit", arguments={"x-delivery-limit": 5})
    channel.basic_publish("", "faults.limit", b"counted", HEADERS)
    method, _, _ = channel.basic_get("faults.limit")
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, properties, body = channel.basic_get("faults.limit", auto_ack=True)
    assert (body, method.redelivered, properties.headers) == (b"counted", True, {"h": "v"})
    connection.close()
    assert step_failures(broker)["delivery_count"] == 2.0
    assert len(failure_lines(broker, "delivery_count")) == 1


def test_raising_confirm_callback_does_not_wedge_the_log(warren_factory):
    """The write-ahead log calls a channel back when a batch is durable (to send its confirms);
    that callback raising once must not stop the log: later publishes are still confirmed
    (the first with them, multiple=true), and a clean stop still writes everything."""
    broker = start(warren_factory, "confirm_callback:1")
    persistent = content_header_payload(1, DELIVERY_MODE_FLAG, b"\x02")
    with raw_client(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue="faults.durable", durable=True))
        client.expect(commands.Queue.DeclareOk)
        client.send_method(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk)
        client.publish_raw(1, "", "faults.durable", persistent, [b"1"])
        time.sleep(0.5)  # its batch is written, and the callback raised
        client.publish_raw(1, "", "faults.durable", persistent, [b"2"])
        ack = client.expect(commands.Basic.Ack)
        assert (ack.delivery_tag, ack.multiple) == (2, True)
        client.publish_raw(1, "", "faults.durable", persistent, [b"3"])
        ack = client.expect(commands.Basic.Ack)
        assert (ack.delivery_tag, ack.multiple) == (3, False)
    broker.process.terminate()
    assert broker.process.wait(15) == 0, broker.log_text()[-3000:]
    lines = [line for line in broker.log_text().splitlines()
             if "a callback waiting for write-ahead log batch" in line]
    assert len(lines) == 1, lines

    again = warren_factory(extra_args=["--data-dir", str(broker.data_dir)])
    connection = connect(again)
    channel = connection.channel()
    bodies = [channel.basic_get("faults.durable", auto_ack=True)[2] for _ in range(3)]
    assert bodies == [b"1", b"2", b"3"]
    connection.close()


def test_failed_trace_copy_lets_the_message_go_on_untraced(warren_factory):
    """The firehose's copy failing (its header table) costs the copy, not the message: it is
    routed, delivered and acknowledged as if tracing were off."""
    broker = start(warren_factory, "trace")
    request = urllib.request.Request(
        f"http://127.0.0.1:{broker.management_port}/api/vhosts/%2F",
        data=json.dumps({"tracing": True}).encode(), method="PUT",
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204
    connection = connect(broker)
    channel = connection.channel()
    channel.queue_declare("faults.traces")
    channel.queue_bind("faults.traces", "amq.rabbitmq.trace", "#")
    channel.queue_declare("faults.traced")
    channel.confirm_delivery()
    for n in range(3):
        channel.basic_publish("", "faults.traced", f"t{n}".encode())
    got = [channel.basic_get("faults.traced") for _ in range(3)]
    assert [body for _, _, body in got] == [b"t0", b"t1", b"t2"]
    channel.basic_ack(got[-1][0].delivery_tag, multiple=True)
    assert channel.queue_declare("faults.traced", passive=True).method.message_count == 0
    assert channel.queue_declare("faults.traces", passive=True).method.message_count == 0
    connection.close()

    assert step_failures(broker) == {**dict.fromkeys(STEPS, 0.0), "trace": 6.0}
    lines = failure_lines(broker, "trace")
    assert len(lines) == 2, lines  # once for the exchange, once for the queue
    assert "exchange '' in vhost '/'" in lines[0] and "queue 'faults.traced'" in lines[1]
    assert all("the message went on untraced" in line for line in lines)
