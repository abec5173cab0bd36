"""Delivery tags of one channel, sans-I/O: the tags handed out with basic.deliver and
basic.get-ok, and the deliveries still waiting for their basic.ack, nack or reject.

Rules, as RabbitMQ applies them:
- tags count from 1 per channel, one per delivery, whether or not it needs an ack;
- `multiple` takes every unacknowledged tag up to and including the given one, and tag 0 with
  `multiple` takes all of them (possibly none);
- a tag that is not outstanding (never given, already settled, or a `multiple` tag not
  itself outstanding) is a channel error: 406 PRECONDITION_FAILED "unknown delivery tag N",
  with the class and method ids of the method that named it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

from protocol.constants import CLASS_BASIC, PRECONDITION_FAILED
from protocol.errors import AMQPChannelError

Delivery = TypeVar("Delivery")


class DeliveryTags(Generic[Delivery]):
    """The outstanding deliveries of a channel by tag, in tag order; what a delivery is
    (a record of the queue, message and consumer) is the caller's."""

    __slots__ = ("next_tag", "unacked")

    def __init__(self) -> None:
        self.next_tag = 1
        self.unacked: OrderedDict[int, Delivery] = OrderedDict()

    def __len__(self) -> int:
        return len(self.unacked)

    def issue(self) -> int:
        """The tag of a delivery that needs no ack."""
        tag = self.next_tag
        self.next_tag = tag + 1
        return tag

    def keep(self, delivery: Delivery) -> int:
        """The tag of a delivery that waits for its ack."""
        tag = self.next_tag
        self.next_tag = tag + 1
        self.unacked[tag] = delivery
        return tag

    def keep_run(self, deliveries: Iterable[Delivery], count: int) -> int:
        """`keep` for the first `count` of `deliveries` at once (their tags: the first one
        returned, on)."""
        first = self.next_tag
        self.next_tag = first + count
        self.unacked.update(zip(range(first, first + count), deliveries, strict=False))
        return first

    def take(
        self, delivery_tag: int, multiple: bool, method_id: int
    ) -> list[tuple[int, Delivery]]:
        """The deliveries an ack, nack (`multiple`) or reject of `delivery_tag` settles, taken
        out in tag order; AMQPChannelError 406 for an unknown tag (`method_id`: of basic's
        method that named it, for the channel.close)."""
        unacked = self.unacked
        if not multiple:
            delivery = unacked.pop(delivery_tag, None)
            if delivery is not None:
                return [(delivery_tag, delivery)]
        elif delivery_tag == 0 or delivery_tag in unacked:
            if delivery_tag == 0 or delivery_tag == next(reversed(unacked)):  # all of them
                taken = list(unacked.items())
                unacked.clear()
                return taken
            first = next(iter(unacked))
            if next(reversed(unacked)) - first + 1 == len(unacked):  # no tag settled between
                count = delivery_tag - first + 1  # (the usual case: counted, not walked)
            else:
                count = 0  # the tags up to delivery_tag are the first ones
                for tag in unacked:
                    if tag > delivery_tag:
                        break
                    count += 1
            popitem = unacked.popitem
            return [popitem(False) for _ in range(count)]
        raise AMQPChannelError(PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}",
                               CLASS_BASIC, method_id)

    def take_all(self) -> list[Delivery]:
        """Every outstanding delivery, in tag order (basic.recover, the channel closing)."""
        deliveries = list(self.unacked.values())
        self.unacked.clear()
        return deliveries

    def restore(self, taken: list[tuple[int, Delivery]]) -> None:
        """Deliveries taken out are outstanding again under their tags (tx.rollback)."""
        restored = dict(self.unacked)
        restored.update(taken)
        self.unacked = OrderedDict(sorted(restored.items()))
