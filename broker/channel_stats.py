"""A channel's plain message counters, as RabbitMQ's management API shows them in a channel's
message_stats (publish, confirm, return_unroutable, drop_unroutable, deliveries and gets with
and without ack, empty gets, redeliveries, acks) and rabbitmq_prometheus its
`rabbitmq_channel_*_total` families, which are per channel and exchange
(channel_exchange_metrics: `ExchangeCounts`) or per channel and queue (channel_queue_metrics:
`QueueCounts`), as RabbitMQ counts them.

The hot path finds the counts of the exchange or queue through a one-entry cache (the last
exchange and the last queue the channel used: `last_exchange`/`last_exchange_counts`,
`last_queue`/`last_queue_counts`) and increments one attribute; `exchange_counts` and
`queue_counts` are the miss paths. Counts are keyed by name (a channel lives in one vhost): an
exchange or queue deleted and declared again keeps its series, as its labels do.

The channel's totals (`published`, `delivered`, ...) are sums over these plus `gone`, the counts
whose series went: those of a deleted queue (`forget_queues`, called at a scrape, as RabbitMQ
drops a deleted queue's series) and, in the node's `MessageCounters.closed_channels`, those of
the channels that have closed (`add`), so that /metrics' sums over channels never go down.

Confirms are counted against the exchange each confirmed publish went to: in confirm mode a
run of publishes to one exchange starts at a cache miss (`runs`: first publish number and
counts), and `count_confirms` spreads a batch of confirms over the runs it covers."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from typing import Any


class ExchangeCounts:
    """A channel's publishes into one exchange."""

    __slots__ = ("published", "confirmed", "returned", "dropped")
    FIELDS = __slots__

    def __init__(self) -> None:
        self.published = self.confirmed = self.returned = self.dropped = 0


class QueueCounts:
    """A channel's deliveries, gets and acks of one queue (`delivered` counts consumes and
    gets, with and without ack)."""

    __slots__ = ("delivered", "redelivered", "consumed_no_ack", "gets", "gets_no_ack",
                 "gets_empty", "acked")
    FIELDS = __slots__

    def __init__(self) -> None:
        self.delivered = self.redelivered = self.consumed_no_ack = 0
        self.gets = self.gets_no_ack = self.gets_empty = self.acked = 0

    @property
    def consumed_ack(self) -> int:
        """Deliveries to consumers in manual acknowledgement mode (`delivered` less the
        others, which are counted)."""
        return self.delivered - self.gets - self.gets_no_ack - self.consumed_no_ack


class _GoneCounts:
    """Counts whose series went (deleted queues, closed channels): every field."""

    __slots__ = ExchangeCounts.FIELDS + QueueCounts.FIELDS

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


def _total(field: str, source: str) -> property:
    """A channel's total of `field`, over its `source` counts and `gone`; set (`+= 1`: the
    management API's own publishes and gets, counted in a vhost's totals), it moves `gone`."""
    def read(self: ChannelStats) -> int:
        counts: dict[str, Any] = getattr(self, source)
        return getattr(self.gone, field) + sum([getattr(c, field) for c in counts.values()])

    def write(self: ChannelStats, value: int) -> None:
        setattr(self.gone, field, getattr(self.gone, field) + value - read(self))
    return property(read, write)


class ChannelStats:
    __slots__ = ("exchanges", "queues", "gone", "last_exchange", "last_exchange_counts",
                 "last_queue", "last_queue_counts", "runs", "routed")

    def __init__(self) -> None:
        self.exchanges: dict[str, ExchangeCounts] = {}
        self.queues: dict[str, QueueCounts] = {}
        self.gone = _GoneCounts()
        self.last_exchange: object = None  # the Exchange / Queue object last used
        self.last_exchange_counts = ExchangeCounts()
        self.last_queue: object = None
        self.last_queue_counts = QueueCounts()
        self.runs: deque[tuple[int, ExchangeCounts]] = deque()  # (first publish number, counts)
        # Publishes put into each queue, by (queue name, exchange name): RabbitMQ's
        # channel_queue_exchange_metrics (VirtualHost.put_routed counts them).
        self.routed: dict[tuple[str, str], int] = {}

    published = _total("published", "exchanges")
    confirmed = _total("confirmed", "exchanges")
    returned = _total("returned", "exchanges")
    dropped = _total("dropped", "exchanges")
    delivered = _total("delivered", "queues")
    redelivered = _total("redelivered", "queues")
    consumed_no_ack = _total("consumed_no_ack", "queues")
    gets = _total("gets", "queues")
    gets_no_ack = _total("gets_no_ack", "queues")
    gets_empty = _total("gets_empty", "queues")
    acked = _total("acked", "queues")

    @property
    def consumed_ack(self) -> int:
        return self.delivered - self.gets - self.gets_no_ack - self.consumed_no_ack

    def exchange_counts(self, exchange: Any, confirm_seq: int = 0) -> ExchangeCounts:
        """The counts of `exchange` (an Exchange), now the cached ones (the cache missed);
        `confirm_seq`: in confirm mode, the number of the publish being counted, which starts
        a run of confirms for this exchange."""
        counts = self.exchanges.get(exchange.name)
        if counts is None:
            counts = self.exchanges[exchange.name] = ExchangeCounts()
        self.last_exchange, self.last_exchange_counts = exchange, counts
        if confirm_seq:
            self.runs.append((confirm_seq, counts))
        return counts

    def queue_counts(self, queue: Any) -> QueueCounts:
        """The counts of `queue` (a Queue), now the cached ones (the cache missed)."""
        counts = self.queues.get(queue.name)
        if counts is None:
            counts = self.queues[queue.name] = QueueCounts()
        self.last_queue, self.last_queue_counts = queue, counts
        return counts

    def confirm_mode(self) -> None:
        """confirm.select: the next publish starts a run (whatever exchange it goes to)."""
        self.last_exchange = None

    def count_confirms(self, before: int, upto: int) -> None:
        """Publishes `before`+1 to `upto` were confirmed: count each against its exchange."""
        runs = self.runs
        while runs:
            first, counts = runs[0]
            last = runs[1][0] - 1 if len(runs) > 1 else upto
            covered = min(last, upto) - max(first, before + 1) + 1
            if covered > 0:
                counts.confirmed += covered
            if len(runs) > 1 and last <= upto:
                runs.popleft()
            else:
                break

    def count_get(self, redelivered: bool, no_ack: bool) -> None:
        """A message handed out by a get of the management API (off the hot path), counted
        in a vhost's totals (ClosedTraffic)."""
        gone = self.gone
        gone.delivered += 1
        gone.redelivered += redelivered
        if no_ack:
            gone.gets_no_ack += 1
        else:
            gone.gets += 1

    def forget_queues(self, live: Collection[str]) -> None:
        """Drop the series of the queues not in `live` (deleted), their counts kept in the
        totals."""
        for name in [name for name in self.queues if name not in live]:
            counts = self.queues.pop(name)
            _add(self.gone, counts, QueueCounts.FIELDS)
            if counts is self.last_queue_counts:
                self.last_queue = None
        for key in [key for key in self.routed if key[0] not in live]:
            del self.routed[key]  # (the queues' own counters keep the totals)

    def exchange_rows(self) -> Iterator[tuple[str, ExchangeCounts]]:
        return iter(list(self.exchanges.items()))

    def queue_rows(self) -> Iterator[tuple[str, QueueCounts]]:
        return iter(list(self.queues.items()))

    def routed_rows(self) -> list[tuple[tuple[str, str], int]]:
        return list(self.routed.items())

    def add(self, other: ChannelStats) -> None:
        """Add `other`'s totals to these (a closing channel's, to the node's totals)."""
        gone = self.gone
        _add(gone, other.gone, ExchangeCounts.FIELDS + QueueCounts.FIELDS)
        for counts in other.exchanges.values():
            _add(gone, counts, ExchangeCounts.FIELDS)
        for queue_counts in other.queues.values():
            _add(gone, queue_counts, QueueCounts.FIELDS)


def _add(total: Any, counts: Any, fields: tuple[str, ...]) -> None:
    for name in fields:
        setattr(total, name, getattr(total, name) + getattr(counts, name))
