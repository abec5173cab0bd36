"""A queue's consumer capacity (RabbitMQ's consumer_capacity, alias consumer_utilisation): the
share of time the queue could hand a message to a consumer at once, as RabbitMQ 3.10's
rabbit_queue_consumers keeps it. The queue is *active* until a delivery it attempts finds no
consumer that can take the message (every window full, every channel blocked, or no consumer),
*inactive* from then until a consumer is added or can take again. Each switch folds the time
spent active and inactive since the last into a moving average with a half-life of one second
(rabbit_misc:moving_average); reading it folds in the time up to now.

`ConsumerUse` changes state only when a queue's dispatch stops for want of a consumer and
when one becomes ready again: nothing per delivered message."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.consumer import ConsumerLine
    from broker.queue import Queue

HALF_LIFE = 1.0  # seconds (rabbit_queue_consumers' ?USE_AVG_HALF_LIFE, 1,000,000 µs)
_DECAY = math.log(0.5) / HALF_LIFE


def moving_average(elapsed: float, sample: float, average: float) -> float:
    """rabbit_misc:moving_average: `sample` weighted by how long it lasted against the half-life."""
    weight = math.exp(elapsed * _DECAY)
    return sample * (1 - weight) + average * weight


class ConsumerUse:
    """Active since `since`, or (`inactive_since` set) inactive since then after `active_for`
    seconds of activity; `average` is the share of time active up to the last switch."""

    __slots__ = ("since", "inactive_since", "active_for", "average")

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.inactive_since: float | None = None
        self.active_for = 0.0
        self.average = 1.0  # a new queue starts active, at 1.0, as RabbitMQ's

    def blocked(self) -> None:
        """A delivery found no consumer that could take the message."""
        if self.inactive_since is None:
            now = time.monotonic()
            self.active_for, self.inactive_since = now - self.since, now

    def unblocked(self) -> None:
        """A consumer was added, or one can take messages again."""
        if self.inactive_since is not None:
            now = time.monotonic()
            self.average = _folded(self.active_for, now - self.inactive_since, self.average)
            self.since, self.inactive_since = now, None

    def capacity(self) -> float:
        """The share of time active, up to now."""
        now = time.monotonic()
        if self.inactive_since is None:
            return _folded(now - self.since, 0.0, self.average)
        return _folded(self.active_for, now - self.inactive_since, self.average)


def _folded(active: float, inactive: float, average: float) -> float:
    total = active + inactive
    if total <= 0:
        return average
    return moving_average(total, active / total, average)


def could_take(line: ConsumerLine) -> bool:
    """Whether a consumer of the line could take a message now (without moving the line)."""
    if line.single_active:
        active = line.active
        return active is not None and active.can_take()
    return any(consumer.can_take() for consumer in line.consumers)


def consumer_capacity(queue: Queue) -> float:
    """What RabbitMQ shows as consumer_capacity and consumer_utilisation (the API and
    /metrics): 0 without consumers, else the share of time the queue could deliver."""
    return queue.use.capacity() if queue.consumers else 0.0
