"""Transaction bookkeeping of one channel, sans-I/O: after tx.select, publishes and delivery
outcomes (ack, nack, reject) are held, to be applied at tx.commit or dropped at tx.rollback.

Rules, as RabbitMQ applies them:
- tx.commit and tx.rollback on a channel without tx.select: 406 PRECONDITION_FAILED "channel
  is not transactional";
- the channel stays transactional after a commit or rollback;
- a rollback drops the held publishes, and the deliveries whose outcome was held are
  unacknowledged again (the caller restores them);
- a channel closing drops the held publishes and hands back the held deliveries (requeued).

What a publish and a delivery are is the caller's (`Publish`, `Delivery`)."""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from protocol.constants import CLASS_TX, PRECONDITION_FAILED
from protocol.errors import AMQPChannelError

Publish = TypeVar("Publish")
Delivery = TypeVar("Delivery")

TX_COMMIT, TX_ROLLBACK = 20, 30  # method ids of class tx


class HeldOutcome(NamedTuple, Generic[Delivery]):
    """An ack, nack or reject in a transaction, applied at tx.commit."""

    delivery_tag: int
    delivery: Delivery
    acked: bool
    requeue: bool


class TransactionBuffer(Generic[Publish, Delivery]):
    """The held publishes and delivery outcomes of a channel in tx mode."""

    __slots__ = ("active", "publishes", "outcomes")

    def __init__(self) -> None:
        self.active = False  # tx.select seen
        self.publishes: list[Publish] = []
        self.outcomes: list[HeldOutcome[Delivery]] = []

    def hold_publish(self, publish: Publish) -> None:
        self.publishes.append(publish)

    def hold_outcomes(self, taken: list[tuple[int, Delivery]], acked: bool,
                      requeue: bool) -> None:
        self.outcomes.extend(HeldOutcome(tag, delivery, acked, requeue)
                             for tag, delivery in taken)

    def _require_active(self, method_id: int) -> None:
        if not self.active:
            raise AMQPChannelError(PRECONDITION_FAILED, "channel is not transactional",
                                   CLASS_TX, method_id)

    def commit(self) -> tuple[list[Publish], list[HeldOutcome[Delivery]]]:
        """tx.commit: what was held, in order, to be applied now."""
        self._require_active(TX_COMMIT)
        publishes, self.publishes = self.publishes, []
        outcomes, self.outcomes = self.outcomes, []
        return publishes, outcomes

    def rollback(self) -> list[tuple[int, Delivery]]:
        """tx.rollback: the held publishes are dropped; returns the deliveries (with their
        tags) whose held outcome is dropped, unacknowledged again."""
        self._require_active(TX_ROLLBACK)
        self.publishes.clear()
        outcomes, self.outcomes = self.outcomes, []
        return [(held.delivery_tag, held.delivery) for held in outcomes]

    def clear(self) -> list[Delivery]:
        """The channel closes: held publishes are dropped; returns the deliveries whose held
        outcome is dropped."""
        self.publishes.clear()
        outcomes, self.outcomes = self.outcomes, []
        return [held.delivery for held in outcomes]
