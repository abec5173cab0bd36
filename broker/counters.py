"""The node's plain message counters (RabbitMQ's `rabbitmq_global_*` figures), read by /metrics
and the API's message_stats at scrape time; nothing counts per message into Prometheus.

`Node` is a `MessageCounters`, and hands itself to its vhosts, whose core operations
(`VirtualHost.publish`, `Queue.get`) count here; a vhost made alone (the core's unit tests)
gets counters of its own. The AMQP channel counts its deliveries, acks and confirms here too.

The delivery side (delivered, redelivered, acknowledged, get_empty: the figures
rabbitmq_prometheus labels with `queue_type`) is counted by queue type: each queue holds the
`DeliveryCounters` of its type (`MessageCounters.of_type`) and counts into it, which costs the
same as counting into the node; the node's totals are their sums.

`ChurnCounters` and `AuthAttempts` count what opens and closes (connections, channels, queues)
and logins, once per event, for rabbitmq_prometheus's churn and auth_attempts families.

`closed_channels` holds the message counters of the channels that have closed (each adds its
`ChannelStats` when it leaves its connection's table), so that the sums over channels /metrics
writes (`rabbitmq_channel_messages_published_total`...) never go down; each vhost keeps the
same of its own connections and channels in a `ClosedTraffic` (the API's vhost figures)."""

from __future__ import annotations

from broker.channel_stats import ChannelStats

QUEUE_TYPE_NAMES = ("classic", "quorum", "stream")  # as Queue.type_name names them


class DeliveryCounters:
    """The delivery-side counters of one queue type."""

    __slots__ = (
        "delivered_consume_auto_ack", "delivered_consume_manual_ack",
        "delivered_get_auto_ack", "delivered_get_manual_ack", "messages_redelivered",
        "get_empty", "messages_acknowledged",
    )

    def __init__(self) -> None:
        self.delivered_consume_auto_ack = 0
        self.delivered_consume_manual_ack = 0
        self.delivered_get_auto_ack = 0
        self.delivered_get_manual_ack = 0
        self.messages_redelivered = 0
        self.get_empty = 0
        self.messages_acknowledged = 0

    @property
    def messages_delivered(self) -> int:
        """Every delivery, to consumers and gets (their four counts added up: one increment
        less per delivery)."""
        return (self.delivered_consume_auto_ack + self.delivered_consume_manual_ack
                + self.delivered_get_auto_ack + self.delivered_get_manual_ack)

    def count_get(self, redelivered: bool, no_ack: bool) -> None:
        """A message handed out by a get: basic.get, and the API's get and aliveness test
        (which RabbitMQ makes as basic.get)."""
        if no_ack:
            self.delivered_get_auto_ack += 1
        else:
            self.delivered_get_manual_ack += 1
        if redelivered:
            self.messages_redelivered += 1


def _total(attribute: str) -> property:
    """A node-wide figure: the sum over the queue types."""
    return property(lambda self: sum(getattr(counters, attribute)
                                     for counters in self.by_queue_type.values()),
                    doc=f"{attribute}, all queue types")


class MessageCounters:
    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_received_confirm = 0
        self.messages_routed = 0  # one per destination queue, as RabbitMQ counts
        self.messages_unroutable_dropped = 0
        self.messages_unroutable_returned = 0
        self.messages_confirmed = 0
        self.by_queue_type = {name: DeliveryCounters() for name in QUEUE_TYPE_NAMES}
        self.churn = ChurnCounters()
        self.closed_channels = ChannelStats()  # the totals of the channels that have closed

    def of_type(self, type_name: str) -> DeliveryCounters:
        """The counters a queue of `type_name` counts into."""
        return self.by_queue_type[type_name]

    messages_delivered = _total("messages_delivered")
    delivered_consume_auto_ack = _total("delivered_consume_auto_ack")
    delivered_consume_manual_ack = _total("delivered_consume_manual_ack")
    delivered_get_auto_ack = _total("delivered_get_auto_ack")
    delivered_get_manual_ack = _total("delivered_get_manual_ack")
    messages_redelivered = _total("messages_redelivered")
    get_empty = _total("get_empty")
    messages_acknowledged = _total("messages_acknowledged")


class ChurnCounters:
    """Connections, channels and queues opened and closed since start (RabbitMQ's
    connection_churn_metrics). Channels closed are derived: opened minus those open now."""

    __slots__ = ("connections_opened", "connections_closed", "channels_opened",
                 "queues_declared", "queues_created", "queues_deleted")

    def __init__(self) -> None:
        self.connections_opened = 0  # admitted to a vhost (connection.open-ok)
        self.connections_closed = 0  # every AMQP socket that ended, refused logins included
        self.channels_opened = 0
        self.queues_declared = 0  # non-passive declares, of new and existing queues
        self.queues_created = 0
        self.queues_deleted = 0


class ClosedTraffic:
    """What the closed connections and channels of one vhost moved: their sockets' bytes and
    their channels' message counts, added as each closes, so that the API's per-vhost
    `recv_oct`, `send_oct` and `message_stats` (its open ones plus these) never go down, as
    RabbitMQ's do not. The management API's publishes and gets count into `channels` too:
    RabbitMQ makes them on a channel of its own, opened and closed for the request."""

    __slots__ = ("recv_oct", "send_oct", "channels")

    def __init__(self) -> None:
        self.recv_oct = self.send_oct = 0
        self.channels = ChannelStats()


AUTH_PROTOCOLS = ("amqp091", "http")  # rabbitmq_prometheus's `protocol` label values


class AuthAttempts:
    """Login attempts by protocol (AMQP's connection.start-ok, the HTTP API's Basic auth)."""

    def __init__(self) -> None:
        self.succeeded = dict.fromkeys(AUTH_PROTOCOLS, 0)
        self.failed = dict.fromkeys(AUTH_PROTOCOLS, 0)

    def count(self, protocol: str, succeeded: bool) -> None:
        (self.succeeded if succeeded else self.failed)[protocol] += 1
