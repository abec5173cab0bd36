"""A channel's plain message counters, as RabbitMQ's management API shows them in a channel's
message_stats (publish, confirm, return_unroutable, drop_unroutable, deliveries and gets with
and without ack, empty gets, redeliveries, acks) and rabbitmq_prometheus its
`rabbitmq_channel_*_total` families. One integer increment where the channel already handles
the message; read by the management plane's sampler and the /metrics collector.

The node keeps one more `ChannelStats`, the totals of the channels that have closed
(`MessageCounters.closed_channels`), so that /metrics' sums over channels never go down."""

from __future__ import annotations


class ChannelStats:
    __slots__ = ("published", "confirmed", "returned", "dropped", "delivered", "redelivered",
                 "consumed_no_ack", "gets", "gets_no_ack", "gets_empty", "acked")

    def __init__(self) -> None:
        self.published = self.confirmed = self.returned = self.dropped = 0
        self.delivered = self.redelivered = self.consumed_no_ack = 0  # consume and get
        self.gets = self.gets_no_ack = self.gets_empty = self.acked = 0

    @property
    def consumed_ack(self) -> int:
        """Deliveries to consumers in manual acknowledgement mode (`delivered` less the
        others, which are counted)."""
        return self.delivered - self.gets - self.gets_no_ack - self.consumed_no_ack

    def count_get(self, redelivered: bool, no_ack: bool) -> None:
        """A message handed out by a get (off the hot path: the management API's gets)."""
        self.delivered += 1
        self.redelivered += redelivered
        if no_ack:
            self.gets_no_ack += 1
        else:
            self.gets += 1

    def add(self, other: ChannelStats) -> None:
        """Add `other`'s counts to these (a closing channel's, to the node's totals)."""
        for name in ChannelStats.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
