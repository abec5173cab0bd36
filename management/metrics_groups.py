"""rabbitmq_prometheus 3.10's metric groups for queues, channels, connections, churn, logins
and the node's process, built from the rows a scrape snapshot read (management/metrics.py).

Each group yields its families under a name prefix (`rabbitmq_` on /metrics and
/metrics/per-object, `rabbitmq_detailed_` on /metrics/detailed), either aggregated (one
unlabelled sample, the sum over the objects, as RabbitMQ's /metrics) or per object (labelled
as RabbitMQ labels them: queues `vhost`, `queue`; channels and, as RabbitMQ 3.10 does,
connections `channel`). Names, types and HELP texts are RabbitMQ 3.10.8's
(tests/management/RABBITMQ_METRICS.md). Families RabbitMQ has that Warren does not count
(Erlang internals) are listed there, not written here.

The channel message counters are counted per channel and exchange (CHANNEL_EXCHANGE_METRICS,
per object labelled `channel`, `vhost`, `exchange`) and per channel and queue
(CHANNEL_QUEUE_METRICS: `channel`, `vhost`, `queue`), as RabbitMQ's; aggregated, the sums are
over the channels' totals (ChannelCounts), the node's closed channels' totals a row too.
rabbitmq_queue_messages_published_total (CHANNEL_QUEUE_EXCHANGE_METRICS) is counted per
channel, queue and exchange (ChannelQueueExchangeCounts, per object labelled `channel`,
`queue_vhost`, `queue`, `exchange_vhost`, `exchange`); aggregated, it is the queues' own
counters' sum, closed channels' publishes included."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from management.metrics_text import TextFamily, label_text, number


class QueueRow(NamedTuple):
    vhost: str
    name: str
    ready: int
    unacked: int
    consumers: int
    ready_bytes: int
    unacked_bytes: int
    paged_out: int  # ready messages whose bodies are not in memory (catalog rows, paged out)
    paged_out_bytes: int
    capacity: float  # the share of time the queue could deliver at once (0 without consumers)
    persistent: int
    persistent_bytes: int
    # the timestamp property of the oldest message (NaN: none has one, as RabbitMQ writes it;
    # None: not asked for (aggregated) or not a classic queue: no sample)
    head_timestamp: float | None
    published: int  # messages published to it (Queue.messages_published)


class ChannelRow(NamedTuple):
    name: str
    consumers: int
    unacked: int
    unconfirmed: int
    uncommitted: int
    acks_uncommitted: int
    consumer_prefetch: int
    channel_prefetch: int


class ChannelCounts(NamedTuple):
    """A channel's message counters (broker/channel_stats.py), as the families name them."""

    name: str
    vhost: str
    published: int
    confirmed: int
    returned: int
    dropped: int
    get_ack: int
    get: int
    delivered_ack: int
    delivered: int
    redelivered: int
    acked: int
    get_empty: int


class ChannelExchangeCounts(NamedTuple):
    """A channel's counts of one exchange (channel_exchange_metrics, per object)."""

    channel: str
    vhost: str
    exchange: str  # "" for the default exchange, as RabbitMQ labels it
    published: int
    confirmed: int
    returned: int
    dropped: int


class ChannelQueueCounts(NamedTuple):
    """A channel's counts of one queue (channel_queue_metrics, per object)."""

    channel: str
    vhost: str
    queue: str
    get_ack: int
    get: int
    delivered_ack: int
    delivered: int
    redelivered: int
    acked: int
    get_empty: int


class ChannelQueueExchangeCounts(NamedTuple):
    """A channel's publishes put into one queue through one exchange
    (channel_queue_exchange_metrics, per object)."""

    channel: str
    vhost: str  # the queue's and the exchange's
    queue: str
    exchange: str
    published: int


CHANNEL_EXCHANGE_LABELS = ("channel", "vhost", "exchange")
CHANNEL_QUEUE_LABELS = ("channel", "vhost", "queue")


class ConnectionRow(NamedTuple):
    name: str
    recv_oct: int
    send_oct: int
    recv_cnt: int
    send_cnt: int
    pending: int
    channels: int


class Churn(NamedTuple):
    connections_opened: int
    connections_closed: int
    channels_opened: int
    channels_closed: int
    queues_declared: int
    queues_created: int
    queues_deleted: int


# (name after the prefix, type, HELP, value of a row); None values are left out
Column = tuple[str, str, str, Callable[[tuple], float | None]]

QUEUE_COARSE: Sequence[Column] = (
    ("queue_messages_ready", "gauge", "Messages ready to be delivered to consumers",
     lambda q: q.ready),
    ("queue_messages_unacked", "gauge",
     "Messages delivered to consumers but not yet acknowledged", lambda q: q.unacked),
    ("queue_messages", "gauge", "Sum of ready and unacknowledged messages - total queue depth",
     lambda q: q.ready + q.unacked),
)
QUEUE_CONSUMERS: Column = ("queue_consumers", "gauge", "Consumers on a queue",
                           lambda q: q.consumers)
QUEUE_METRICS: Sequence[Column] = (
    QUEUE_CONSUMERS,
    ("queue_consumer_capacity", "gauge", "Consumer capacity", lambda q: q.capacity),
    ("queue_consumer_utilisation", "gauge", "Same as consumer capacity", lambda q: q.capacity),
    ("queue_messages_ram", "gauge", "Ready and unacknowledged messages stored in memory",
     lambda q: q.ready - q.paged_out + q.unacked),
    ("queue_messages_ram_bytes", "gauge",
     "Size of ready and unacknowledged messages stored in memory",
     lambda q: q.ready_bytes - q.paged_out_bytes + q.unacked_bytes),
    ("queue_messages_ready_ram", "gauge", "Ready messages stored in memory",
     lambda q: q.ready - q.paged_out),
    ("queue_messages_unacked_ram", "gauge", "Unacknowledged messages stored in memory",
     lambda q: q.unacked),
    ("queue_messages_persistent", "gauge", "Persistent messages", lambda q: q.persistent),
    ("queue_messages_persistent_bytes", "gauge", "Size in bytes of persistent messages",
     lambda q: q.persistent_bytes),
    ("queue_messages_bytes", "gauge", "Size in bytes of ready and unacknowledged messages",
     lambda q: q.ready_bytes + q.unacked_bytes),
    ("queue_messages_ready_bytes", "gauge", "Size in bytes of ready messages",
     lambda q: q.ready_bytes),
    ("queue_messages_unacked_bytes", "gauge", "Size in bytes of all unacknowledged messages",
     lambda q: q.unacked_bytes),
    ("queue_messages_paged_out", "gauge", "Messages paged out to disk", lambda q: q.paged_out),
    ("queue_messages_paged_out_bytes", "gauge", "Size in bytes of messages paged out to disk",
     lambda q: q.paged_out_bytes),
    ("queue_head_message_timestamp", "gauge",
     "Timestamp of the first message in the queue, if any", lambda q: q.head_timestamp),
)
CHANNEL_METRICS: Sequence[Column] = (
    ("channel_consumers", "gauge", "Consumers on a channel", lambda c: c.consumers),
    ("channel_messages_unacked", "gauge", "Delivered but not yet acknowledged messages",
     lambda c: c.unacked),
    ("channel_messages_unconfirmed", "gauge", "Published but not yet confirmed messages",
     lambda c: c.unconfirmed),
    ("channel_messages_uncommitted", "gauge",
     "Messages received in a transaction but not yet committed", lambda c: c.uncommitted),
    ("channel_acks_uncommitted", "gauge",
     "Message acknowledgements in a transaction not yet committed",
     lambda c: c.acks_uncommitted),
    ("consumer_prefetch", "gauge", "Limit of unacknowledged messages for each consumer",
     lambda c: c.consumer_prefetch),
    ("channel_prefetch", "gauge",
     "Total limit of unacknowledged messages for all consumers on a channel",
     lambda c: c.channel_prefetch),
)
# RabbitMQ's channel_exchange_metrics and channel_queue_metrics groups
CHANNEL_EXCHANGE_METRICS: Sequence[Column] = (
    ("channel_messages_published_total", "counter",
     "Total number of messages published into an exchange on a channel", lambda c: c.published),
    ("channel_messages_confirmed_total", "counter",
     "Total number of messages published into an exchange and confirmed on the channel",
     lambda c: c.confirmed),
    ("channel_messages_unroutable_returned_total", "counter",
     "Total number of messages published as mandatory into an exchange and returned to the "
     "publisher as unroutable", lambda c: c.returned),
    ("channel_messages_unroutable_dropped_total", "counter",
     "Total number of messages published as non-mandatory into an exchange and dropped as "
     "unroutable", lambda c: c.dropped),
)
CHANNEL_QUEUE_METRICS: Sequence[Column] = (
    ("channel_get_ack_total", "counter",
     "Total number of messages fetched with basic.get in manual acknowledgement mode",
     lambda c: c.get_ack),
    ("channel_get_total", "counter",
     "Total number of messages fetched with basic.get in automatic acknowledgement mode",
     lambda c: c.get),
    ("channel_messages_delivered_ack_total", "counter",
     "Total number of messages delivered to consumers in manual acknowledgement mode",
     lambda c: c.delivered_ack),
    ("channel_messages_delivered_total", "counter",
     "Total number of messages delivered to consumers in automatic acknowledgement mode",
     lambda c: c.delivered),
    ("channel_messages_redelivered_total", "counter",
     "Total number of messages redelivered to consumers", lambda c: c.redelivered),
    ("channel_messages_acked_total", "counter",
     "Total number of messages acknowledged by consumers", lambda c: c.acked),
    ("channel_get_empty_total", "counter",
     "Total number of times basic.get operations fetched no message", lambda c: c.get_empty),
)
# RabbitMQ's channel_queue_exchange_metrics: per object a ChannelQueueExchangeCounts row each,
# aggregated the QueueRows' sum
CHANNEL_QUEUE_EXCHANGE_METRICS: Sequence[Column] = (
    ("queue_messages_published_total", "counter", "Total number of messages published to queues",
     lambda row: row.published),
)
QUEUE_EXCHANGE_LABELS = ("channel", "queue_vhost", "queue", "exchange_vhost", "exchange")
CONNECTION_COARSE: Sequence[Column] = (
    ("connection_incoming_bytes_total", "counter",
     "Total number of bytes received on a connection", lambda c: c.recv_oct),
    ("connection_outgoing_bytes_total", "counter", "Total number of bytes sent on a connection",
     lambda c: c.send_oct),
)
CONNECTION_METRICS: Sequence[Column] = (
    ("connection_incoming_packets_total", "counter",
     "Total number of packets received on a connection", lambda c: c.recv_cnt),
    ("connection_outgoing_packets_total", "counter",
     "Total number of packets sent on a connection", lambda c: c.send_cnt),
    ("connection_pending_packets", "gauge",
     "Number of packets waiting to be sent on a connection", lambda c: c.pending),
    ("connection_channels", "gauge", "Channels on a connection", lambda c: c.channels),
)
CHURN: Sequence[tuple[str, str, str]] = (
    ("connections_opened_total", "Total number of connections opened", "connections_opened"),
    ("connections_closed_total", "Total number of connections closed or terminated",
     "connections_closed"),
    ("channels_opened_total", "Total number of channels opened", "channels_opened"),
    ("channels_closed_total", "Total number of channels closed", "channels_closed"),
    ("queues_declared_total", "Total number of queues declared", "queues_declared"),
    ("queues_created_total", "Total number of queues created", "queues_created"),
    ("queues_deleted_total", "Total number of queues deleted", "queues_deleted"),
)
AUTH_ATTEMPTS = (
    ("auth_attempts_total", "Total number of authorization attempts", None),
    ("auth_attempts_succeeded_total", "Total number of successful authentication attempts",
     True),
    ("auth_attempts_failed_total", "Total number of failed authentication attempts", False),
)


# RabbitMQ 3.10 writes no aggregated sample of these (only `# TYPE` and `# HELP`): its sum
# leaves them out (the persistent bytes are summed under a misspelt key, never read back)
PER_OBJECT_ONLY = frozenset({"queue_consumer_capacity", "queue_messages_persistent_bytes",
                             "queue_head_message_timestamp"})


def _new(kind: str, name: str, documentation: str) -> Metric:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, documentation, labels=())


def columns(prefix: str, spec: Sequence[Column], rows: Sequence[tuple],
            labels: Sequence[str] | None, label_values: Callable[[tuple], list[str]]
            ) -> Iterator[Metric | TextFamily]:
    """One family per column: per object (`labels` given: one sample per row with a value) or
    aggregated (`labels` None: one unlabelled sample, the sum of the rows' values; none when
    a row has no value, as RabbitMQ writes none for a figure it lacks)."""
    if labels is not None:
        texts = [label_text(labels, label_values(row)) for row in rows]  # once for all columns
        for suffix, kind, documentation, value_of in spec:
            name = prefix + suffix
            lines = []
            for text, row in zip(texts, rows, strict=True):
                value = value_of(row)
                if value is not None:
                    lines.append(f"{name}{text} {number(value)}\n")
            yield TextFamily(name, kind, documentation, lines)
        return
    for suffix, kind, documentation, value_of in spec:
        family = _new(kind, prefix + suffix, documentation)
        values = list(map(value_of, rows))
        if None not in values and suffix not in PER_OBJECT_ONLY:
            family.add_metric([], sum(values))  # type: ignore[arg-type]
        yield family


def queue_labels(row: tuple) -> list[str]:
    return [row[0], row[1]]


def object_name(row: tuple) -> list[str]:
    return [row[0]]


def queue_exchange_labels(row: ChannelQueueExchangeCounts) -> list[str]:
    return [row.channel, row.vhost, row.queue, row.vhost, row.exchange]


def channel_labels(row: tuple) -> list[str]:
    """`channel`, `vhost` and `exchange` or `queue` of a ChannelExchangeCounts or
    ChannelQueueCounts row."""
    return [row[0], row[1], row[2]]


def churn(prefix: str, figures: Churn) -> Iterator[Metric]:
    for suffix, documentation, attribute in CHURN:
        yield CounterMetricFamily(prefix + suffix, documentation,
                                  value=getattr(figures, attribute))


def auth_attempts(prefix: str, succeeded: dict[str, int], failed: dict[str, int]
                  ) -> Iterator[Metric]:
    for suffix, documentation, outcome in AUTH_ATTEMPTS:
        family = CounterMetricFamily(prefix + suffix, documentation, labels=["protocol"])
        for protocol in succeeded:
            value = {True: succeeded[protocol], False: failed[protocol]}.get(
                outcome, succeeded[protocol] + failed[protocol])  # type: ignore[arg-type]
            family.add_metric([protocol], value)
        yield family
