"""The quorum queue on a single node, as RabbitMQ 3.10.8 runs it over AMQP 0-9-1: a durable
queue that logs every message it takes, transient ones too (confirmed once durable), counts
every return (x-delivery-count: basic.get shows it from the first delivery, a consumer from
the first redelivery), puts a message returned by the client (nack, reject, recover) at the
back while one released by a closing channel goes back to its place, lets reject-publish take
the message that brings it over its limit and refuse from then on until it is back under 80%
of it, runs reject-publish-dlx as drop-head, and with `x-dead-letter-strategy: at-least-once`
plus reject-publish keeps a dead letter its exchange routes nowhere (retried on a timer)
instead of dropping it. Everything else (TTL, x-expires, limits, single active consumer,
consumer priorities, dead-lettering) is the classic queue's.

When Warren has a cluster, this is the queue that is replicated; on one node the leader, the
members and the online members are this node."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from broker.errors import NotImplementedByBroker
from broker.message import Message, QueuedMessage
from broker.queue import Queue
from broker.queue_args import QueueSettings, is_integer
from storage.storeref import logged_state

MODULE = "rabbit_quorum_queue"  # how RabbitMQ names the type in its texts
# The arguments a quorum queue runs (their values are checked as on classic queues, but for
# x-delivery-limit, which RabbitMQ 3.10.8 does not check); and those it refuses, in the order
# RabbitMQ names the first one present.
SUPPORTED_ARGUMENTS = (
    "x-queue-type", "x-expires", "x-message-ttl", "x-dead-letter-exchange",
    "x-dead-letter-routing-key", "x-dead-letter-strategy", "x-max-length", "x-max-length-bytes",
    "x-max-in-memory-length", "x-max-in-memory-bytes", "x-overflow", "x-single-active-consumer",
    "x-quorum-initial-group-size", "x-queue-leader-locator",
)
REFUSED_ARGUMENTS = ("x-max-priority", "x-queue-mode", "x-queue-master-locator",
                     "x-queue-version", "x-max-age")
# reject-publish refuses from the message past the limit until the queue is down to this
# share of it (RabbitMQ's soft limit).
SOFT_LIMIT = 0.8
# How often dead letters kept by at-least-once are offered to their exchange again.
DEAD_LETTER_RETRY_SECONDS = 10.0
# The reasons a kept dead letter is logged with (STATE records: the code is the index; never
# reorder, only append).
DEAD_LETTER_REASONS = ("", "rejected", "expired", "maxlen", "delivery_limit")


def quorum_settings(settings: QueueSettings) -> QueueSettings:
    """What a quorum queue runs of resolved settings: reject-publish-dlx is drop-head, and an
    x-delivery-limit that is not an integer (RabbitMQ accepts any) sets no limit."""
    changes: dict[str, Any] = {}
    if settings.overflow == "reject-publish-dlx":
        changes["overflow"] = "drop-head"
    if settings.delivery_limit is not None and not is_integer(settings.delivery_limit):
        changes["delivery_limit"] = None
    return dataclasses.replace(settings, **changes) if changes else settings


class QuorumQueue(Queue):
    type_name = "quorum"
    type_module = MODULE
    supports_global_qos = False
    logs_every_message = True
    counts_deliveries = True  # every delivery is counted, with or without a delivery limit

    def __init__(self, vhost: Any, name: str, *, settings: QueueSettings | None = None,
                 **options: Any) -> None:
        super().__init__(vhost, name, **options,
                         settings=quorum_settings(settings) if settings is not None else None)
        if settings is None:
            self.settings = quorum_settings(self.settings)
        self._rejecting = False  # reject-publish: over the limit, not yet under the soft one
        # at-least-once: dead letters their exchange routed nowhere (still logged here)
        self.kept_dead_letters: list[tuple[Message, str]] = []
        self._retry_timer: asyncio.TimerHandle | None = None
        self._take_memory_limits()

    def apply_settings(self, settings: QueueSettings) -> None:
        super().apply_settings(quorum_settings(settings))
        self._take_memory_limits()

    def _take_memory_limits(self) -> None:
        """x-max-in-memory-length / -bytes, or a policy's max-in-memory-length / -bytes (the
        lower of the two)."""
        settings = self.settings
        self.limits_memory = (settings.max_in_memory_length is not None
                              or settings.max_in_memory_bytes is not None)

    def check_delete(self, if_unused: bool, if_empty: bool) -> None:
        for refused, flag in ((if_unused, "if-unused"), (if_empty, "if-empty")):
            if refused:
                raise NotImplementedByBroker(
                    f"cannot delete {self.describe()}. queue.delete operations with {flag} flag "
                    "set are not supported by quorum queues")

    def declared_again(self) -> None:
        """A quorum queue's x-expires counts from its last consumer or get: a declare does not
        use it (RabbitMQ 3.10.8: a passive declare every few hundred ms does not keep it)."""

    # -- reject-publish ---------------------------------------------------------------------

    def enqueue(self, message: Message) -> bool:
        taken = super().enqueue(message)
        if taken and self.settings.overflow == "reject-publish" and self._over_limit():
            self._rejecting = True
        return taken

    def _full_for(self, size: int) -> bool:
        """reject-publish: refuse while over the limit, and after that until the queue is back
        at its soft limit (the message that goes over is taken)."""
        if self._over_limit():
            self._rejecting = True
        elif self._rejecting and self._under_soft_limit():
            self._rejecting = False
        return self._rejecting

    def _enforce_limits(self) -> None:
        """drop-head only: reject-publish lets the queue go over its limit by one."""
        if self.settings.overflow == "drop-head":
            super()._enforce_limits()

    def _over_limit(self) -> bool:
        settings, messages = self.settings, self._messages
        return ((settings.max_length is not None and len(messages) > settings.max_length)
                or (settings.max_length_bytes is not None
                    and messages.bytes > settings.max_length_bytes))

    def _under_soft_limit(self) -> bool:
        settings, messages = self.settings, self._messages
        return ((settings.max_length is None
                 or len(messages) <= int(settings.max_length * SOFT_LIMIT))
                and (settings.max_length_bytes is None
                     or messages.bytes <= int(settings.max_length_bytes * SOFT_LIMIT)))

    # -- in memory ----------------------------------------------------------------------------

    def _behind_memory_limit(self, message: Message) -> bool:
        """x-max-in-memory-length / -bytes: a message arriving when the queue holds that many
        ready messages (or would hold more bytes with it) is kept as a row of the message
        store's catalog, its body on disk, as one behind the node's resident head is."""
        settings, messages = self.settings, self._messages
        length, size = settings.max_in_memory_length, settings.max_in_memory_bytes
        return ((length is not None and len(messages) >= length)
                or (size is not None and messages.bytes + message.body_size > size))

    # -- returns ----------------------------------------------------------------------------

    def requeue(self, entry: QueuedMessage) -> None:
        """Returned by the client (nack or reject with requeue, recover): to the back."""
        self._return(entry, to_back=True)

    def release(self, entry: QueuedMessage) -> None:
        """Its channel or consumer went away: back to its place, ahead of the others."""
        self._return(entry, to_back=False)

    def _return(self, entry: QueuedMessage, to_back: bool) -> None:
        entry.delivery_count += 1
        limit = self.settings.delivery_limit
        if limit is not None and entry.delivery_count > limit and self._dead_letter(
                entry.message, "delivery_limit"):
            return
        self._log_returns(entry, to_back)
        entry.redelivered = True
        if to_back:
            entry.seq = self._next_seq
            self._next_seq += 1
            self._messages.append(entry)
        else:
            self._messages.requeue(entry)
        settings = self.settings
        if settings.max_length is not None or settings.max_length_bytes is not None:
            self._enforce_limits()
            if settings.overflow == "reject-publish" and self._over_limit():
                self._rejecting = True
        if entry.expires_at is not None:
            self._schedule_expiry()

    # -- dead-lettering: at-least-once --------------------------------------------------------

    @property
    def at_least_once(self) -> bool:
        """RabbitMQ 3.10 runs at-least-once only with a dead-letter exchange and reject-publish
        (else at-most-once)."""
        settings = self.settings
        return (settings.dead_letter_strategy == "at-least-once"
                and settings.overflow == "reject-publish"
                and settings.dead_letter_exchange is not None)

    def _dead_letter(self, message: Message, reason: str) -> bool:
        if not self.at_least_once:
            return super()._dead_letter(message, reason)
        if not self._offer_dead_letter(message, reason):
            return False
        counters = self.vhost.dead_lettered
        key = (self.type_name, reason, "at_least_once")
        counters[key] = counters.get(key, 0) + 1
        return True

    def _offer_dead_letter(self, message: Message, reason: str, again: bool = False) -> bool:
        """Publish the dead-lettered copy; one routed nowhere is kept (logged as kept, so that
        a restart keeps it too) to be offered `again`. False if it failed (the message stays
        where it was)."""
        delivered = self._publish_dead_letter(message, reason)
        if delivered is None:
            return False
        if delivered:
            self.messages_dead_lettered += 1
            self.discard(message)
        else:
            if not again and message.store_ref is not None:
                self.vhost.store.note_state(self.key, message, 0,
                                            DEAD_LETTER_REASONS.index(reason))
            self.kept_dead_letters.append((message, reason))
            self._arm_retry()
        return True

    def restore(self, message: Message, redelivered: bool, logged_delivery: bool) -> None:
        """A recovered message: back among the kept dead letters if it was one (retried as
        before), else as on any queue."""
        mark = logged_state(self.key, message.store_ref)
        reason = mark[1] if mark is not None else 0
        if not reason:
            super().restore(message, redelivered, logged_delivery)
            return
        self.kept_dead_letters.append((message, DEAD_LETTER_REASONS[reason]
                                       if reason < len(DEAD_LETTER_REASONS) else "rejected"))
        self._arm_retry()

    def _arm_retry(self) -> None:
        if self._retry_timer is None and self.kept_dead_letters and not self.deleted:
            self._retry_timer = asyncio.get_event_loop().call_later(
                DEAD_LETTER_RETRY_SECONDS, self._retry_dead_letters)

    def _retry_dead_letters(self) -> None:
        self._retry_timer = None
        kept, self.kept_dead_letters = self.kept_dead_letters, []
        if self.deleted:
            return
        for message, reason in kept:
            if not self._offer_dead_letter(message, reason, again=True):
                self.kept_dead_letters.append((message, reason))  # failed: kept all the same
        self._arm_retry()

    def in_memory(self) -> tuple[int, int]:
        """How many messages have their bodies in memory, and their bytes: the ready ones held
        as objects with their body (not catalog rows behind the resident head, not paged out)
        and every unacked delivery (its body went out with it). Walks the objects: the API
        asks, not the message path."""
        count, size = self.ready_in_memory()
        return count + self.unacked_count, size + self.unacked_bytes

    @property
    def dead_letter_bytes(self) -> int:
        return sum(message.body_size for message, _ in self.kept_dead_letters)

    def drop_everything(self) -> None:
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        kept, self.kept_dead_letters = self.kept_dead_letters, []
        for message, _ in kept:
            self.discard(message)
        super().drop_everything()
