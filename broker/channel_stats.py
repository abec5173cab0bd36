"""A channel's plain message counters, as RabbitMQ's management API shows them in a channel's
message_stats (publish, confirm, return_unroutable, drop_unroutable, deliveries and gets with
and without ack, empty gets, redeliveries, acks). One integer increment where the channel
already handles the message; read by the management plane's sampler."""

from __future__ import annotations


class ChannelStats:
    __slots__ = ("published", "confirmed", "returned", "dropped", "delivered", "redelivered",
                 "consumed_no_ack", "gets", "gets_no_ack", "gets_empty", "acked")

    def __init__(self) -> None:
        self.published = self.confirmed = self.returned = self.dropped = 0
        self.delivered = self.redelivered = self.consumed_no_ack = 0  # consume and get
        self.gets = self.gets_no_ack = self.gets_empty = self.acked = 0
