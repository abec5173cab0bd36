"""A routing key that is not UTF-8 (basic.publish takes any bytes, as RabbitMQ does) goes
through the log and comes back byte for byte after a clean restart and after a crash, read by
pika (which sends such a key as bytes and hands it back as bytes)."""

from __future__ import annotations

import pika
import pytest
from client_helpers import message_count
from warren_process import WarrenNode

KEY = b"rk-\xff\xfe-\xc3"


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_routing_key_that_is_not_utf8_survives_a_restart(node: WarrenNode, how: str):
    with node.channel() as ch:
        ch.queue_declare("raw-key", durable=True)
        ch.queue_bind("raw-key", "amq.fanout")
        ch.confirm_delivery()
        ch.basic_publish("amq.fanout", KEY, b"persistent",  # type: ignore[arg-type]
                         pika.BasicProperties(delivery_mode=2))
    node.restart() if how == "restart" else node.crash_restart()
    with node.channel() as ch:
        assert message_count(ch, "raw-key") == 1
        method, _, body = ch.basic_get("raw-key", auto_ack=True)
        assert (method.exchange, method.routing_key, body) == ("amq.fanout", KEY, b"persistent")
