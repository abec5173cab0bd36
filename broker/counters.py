"""The node's plain message counters (RabbitMQ's `rabbitmq_global_*` figures), read by /metrics
and the API's message_stats at scrape time; nothing counts per message into Prometheus.

`Node` is a `MessageCounters`, and hands itself to its vhosts, whose core operations
(`VirtualHost.publish`, `Queue.get`) count here; a vhost made alone (the core's unit tests)
gets counters of its own. The AMQP channel counts its deliveries, acks and confirms here too."""

from __future__ import annotations


class MessageCounters:
    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_received_confirm = 0
        self.messages_routed = 0  # one per destination queue, as RabbitMQ counts
        self.messages_unroutable_dropped = 0
        self.messages_unroutable_returned = 0
        self.messages_delivered = 0
        self.delivered_consume_auto_ack = 0
        self.delivered_consume_manual_ack = 0
        self.delivered_get_auto_ack = 0
        self.delivered_get_manual_ack = 0
        self.messages_redelivered = 0
        self.get_empty = 0
        self.messages_acknowledged = 0
        self.messages_confirmed = 0

    def count_get(self, redelivered: bool, no_ack: bool) -> None:
        """A message handed out by a get: basic.get, and the API's get and aliveness test
        (which RabbitMQ makes as basic.get)."""
        self.messages_delivered += 1
        if no_ack:
            self.delivered_get_auto_ack += 1
        else:
            self.delivered_get_manual_ack += 1
        if redelivered:
            self.messages_redelivered += 1
