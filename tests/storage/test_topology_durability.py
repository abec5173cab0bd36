"""A declare-ok, delete-ok or bind-ok for durable topology is sent only once the definitions
holding the change are on disk: a SIGKILL the instant after the reply loses nothing of it."""

from __future__ import annotations

import pika
from client_helpers import close_quietly


def test_durable_topology_answered_only_once_on_disk(node):
    connection = node.connect()
    channel = connection.channel()
    channel.exchange_declare("topology-x", "direct", durable=True)
    channel.queue_declare("topology-doomed", durable=True)
    channel.queue_declare("topology-q", durable=True)
    channel.queue_bind("topology-q", "topology-x", "key")
    channel.queue_delete("topology-doomed")
    node.kill()  # at once after the last reply: no time for a later write to happen
    close_quietly(connection)

    node.start()
    connection = node.connect()
    try:
        channel = connection.channel()
        channel.exchange_declare("topology-x", passive=True)
        channel.queue_declare("topology-q", passive=True)
        channel.confirm_delivery()
        channel.basic_publish("topology-x", "key", b"bound", mandatory=True)  # routed: bound
        assert channel.basic_get("topology-q", auto_ack=True)[2] == b"bound"
        try:
            channel.queue_declare("topology-doomed", passive=True)
            raise AssertionError("the deleted queue came back")
        except pika.exceptions.ChannelClosedByBroker as closed:
            assert closed.reply_code == 404
    finally:
        close_quietly(connection)
