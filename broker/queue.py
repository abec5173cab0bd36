"""A queue: ready messages in delivery order (by priority, requeued ones back in their
original place), TTL expiry, length limits, dead-lettering, delivery limits, the unused-queue
timer, dispatch to its line of consumers (through each consumer's `DeliveryTarget`), the
one get every front makes (`get`, or its halves `take` and `hand_out`), and what becomes of a
delivered message (`ack`, `reject`, `requeue`). It sees its vhost as a `QueueHost`.
Deep in a long queue, logged messages become rows of the store's catalog and transient ones
are paged out (storage/paging.py), held in the lanes as `ColdRun`s."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from broker import deadletter, stepfailures, tracesessions
from broker.coldrun import NEVER, ColdRun, lane_runs
from broker.consumer import Consumer, ConsumerLine
from broker.consumer_use import ConsumerUse, could_take
from broker.errors import NotImplementedByBroker
from broker.lanes import MessageLanes
from broker.message import Message, QueuedMessage
from broker.queue_args import QueueSettings, refuse_arguments, resolve
from broker.resources import resource
from protocol import properties
from protocol.fieldtable import encode_table
from storage.storeref import logged_state

# A queue keeps its first `resident_head` messages (a setting, 2048 by default) in memory. A
# logged message arriving behind them becomes a row of the message store's catalog if this
# durable queue alone holds it, else its body is paged out (read back PAGE_IN_BATCH at a time);
# other messages go to the page store once they have waited there for `page_out_after`, while
# memory is above the paging threshold (`memory_high_watermark_paging_ratio` of the watermark).
PAGE_IN_BATCH = 1024
# Entries in a message's lane from which its queue checks whether it is behind the resident
# head (a cheap first test: a queue whose consumers keep up never gets there).
PAGE_OUT_DEPTH = 64
# The expiry timer fires on a whole number of milliseconds after now, rounded up (as RabbitMQ's
# classic queues round theirs), so messages whose deadlines fall in one tick expire together
# rather than one timer each.
EXPIRY_TICK_MS = 1
# The most messages one dispatch hands a consumer as one run (then it looks again): a consumer
# without a prefetch limit still gets its connection's turn budget at most (broker/transport.py).
RUN_LIMIT = 1000

if TYPE_CHECKING:
    from broker.clients import QueueOwner
    from broker.counters import MessageCounters
    from broker.exchanges import Binding
    from storage.catalog import Catalog, Rows
    from storage.store import MessageStore


class QueueHost(deadletter.Republisher, Protocol):
    """What a queue needs of its vhost (broker/vhost.py's `VirtualHost`, which imports this
    module): its name, the message store, the node's counters, dead-lettering's republishing
    and counters, and its own deletion (auto-delete, x-expires)."""

    name: str
    counters: MessageCounters
    dead_lettered: dict[tuple[str, str, str], int]  # (queue type, reason, strategy)

    def delete_queue(self, queue: Queue, *, if_unused: bool = False,
                     if_empty: bool = False) -> int: ...


class Queue:
    keeps_cold_rows = True  # to recovery and the index snapshot: a storage.holders.MessageHolder
    type_name = "classic"  # x-queue-type (broker/queue_types.py builds each type's class)
    type_module = "rabbit_classic_queue"  # how RabbitMQ names the type in its refusals
    # basic.consume arguments this type refuses (x-stream-offset: only a stream reads it; a
    # classic queue taking it would give a would-be stream reader destructive reads)
    refused_consumer_arguments: tuple[str, ...] = ("x-stream-offset",)
    supports_global_qos = True  # consumers under a basic.qos global=true prefetch
    logs_every_message = False  # only persistent ones (a quorum queue logs transient ones too)
    logs_itself = False  # a stream keeps its own log (broker/stream.py), not the message store
    # A limit of its own on the messages it keeps in memory (quorum: x-max-in-memory-*), on
    # top of the node's resident head: see `_behind_memory_limit`.
    limits_memory = False

    def __init__(
        self, vhost: QueueHost, name: str, *, durable: bool = False, auto_delete: bool = False,
        owner: QueueOwner | None = None, arguments: dict[str, Any] | None = None,
        settings: QueueSettings | None = None,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.owner = owner  # the connection of an exclusive queue
        self.arguments = arguments or {}
        self.settings = settings or resolve(self.arguments)
        self.bindings_in: set[Binding] = set()
        self.consumers = ConsumerLine(self.settings.single_active_consumer)
        self.exclusive_consumer: Consumer | None = None
        self.deleted = False
        self.unacked_count = 0
        self._messages = MessageLanes(self.settings.max_priority)
        self._next_seq = 0
        self._dispatching = False
        self._fresh: QueuedMessage | None = None  # the message being enqueued right now
        self._paging_in = False
        self._page_timer: asyncio.TimerHandle | None = None  # see _page_out_waiting
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at: float | None = None
        self._unused_timer: asyncio.TimerHandle | None = None
        # Plain counters, read by the management plane at scrape time.
        # messages published to it: counted by VirtualHost.publish per routed queue, a refused
        # one too, dead-lettered copies not (RabbitMQ's queue_messages_published_total and
        # the API's message_stats.publish count a channel's publishes to the queue)
        self.messages_published = 0
        self.messages_delivered = 0
        self.messages_acked = 0
        self.messages_redelivered = 0
        self.messages_dead_lettered = 0
        # how the deliveries split (the API's message_stats): gets with and without ack,
        # consume deliveries without ack (counted by the channel), empty gets
        self.gets = self.gets_no_ack = self.consumed_no_ack = self.gets_empty = 0
        self.counters = vhost.counters.of_type(self.type_name)  # the node's, for its type
        self.unacked_bytes = 0  # body bytes of the deliveries counted in unacked_count
        # The messages logged for this durable queue (persistent ones; a quorum queue's all),
        # ready or unacked, and their body bytes: counted in on `enqueue` (before a refusal,
        # whose `discard` counts it out again), `restore`, `restore_cold`; out when the store
        # forgets it for this queue (`discard`, `purge`).
        self.persistent_count = self.persistent_bytes = 0
        self.use = ConsumerUse()  # consumer capacity: the share of time it could deliver
        self.arm_unused_timer()

    @property
    def key(self) -> tuple[str, str]:
        """How the message store names this queue."""
        return self.vhost.name, self.name

    @property
    def exclusive(self) -> bool:
        return self.owner is not None

    @property
    def message_count(self) -> int:
        return len(self._messages)

    @property
    def ready_bytes(self) -> int:
        return self._messages.bytes

    @property
    def cold_count(self) -> int:
        """Ready messages whose bodies are not in memory: catalog rows and paged-out runs."""
        return self._messages.cold_count

    @property
    def memory_estimate(self) -> int:
        """Roughly what the queue holds in memory: resident bodies plus ~500 B of index per
        message that is an object, ~50 B per message that is a row (see the README)."""
        messages = self._messages
        cold = messages.cold_count
        return messages.bytes + 500 * (len(messages) - cold + self.unacked_count) + 50 * cold

    # -- read by the management API (walks, never on the message path) --------------------

    def head_message(self) -> Message | None:
        """The next ready message, if it is an object (not a row of a cold run)."""
        entry = self._messages.peek()
        return entry.message if entry is not None else None

    def ready_in_memory(self) -> tuple[int, int]:
        """How many ready messages have their body in memory, and their bytes."""
        count = size = 0
        for entry in self._messages.objects():
            if entry.message.body is not None:
                count += 1
                size += entry.message.body_size
        return count, size

    @property
    def next_seq_id(self) -> int:
        return self._next_seq

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    def describe(self) -> str:
        return resource("queue", self.name, self.vhost.name)

    def apply_settings(self, settings: QueueSettings) -> None:
        """A policy changed: run with the new settings from now on."""
        self.settings = settings
        self.consumers.single_active = settings.single_active_consumer
        self._enforce_limits()
        self._schedule_expiry()
        self.arm_unused_timer()
        self.dispatch()

    # -- messages in ----------------------------------------------------------------------

    def enqueue(self, message: Message) -> bool:
        """Add a published message; False if the queue refuses it (x-overflow reject-publish,
        reject-publish-dlx: then it is dead-lettered as maxlen)."""
        settings = self.settings
        logged = message.store_ref is not None and self.durable
        if logged:
            self.persistent_count += 1
            self.persistent_bytes += message.body_size
        limited = settings.limited
        if limited and settings.overflow != "drop-head" and self._full_for(message.body_size):
            if settings.overflow == "reject-publish-dlx":
                self._dead_letter(message, "maxlen")
            return False
        if logged and (len(self._messages) >= self.vhost.store.resident_head or (
            self.limits_memory and self._behind_memory_limit(message)
        )) and self._freeze(message, self.vhost.store, limited):
            return True
        if settings.stamps_entries or message.expiration is not None:
            entry = QueuedMessage(
                message, self._next_seq,
                self._priority_of(message) if settings.max_priority else 0,
                self._deadline(message, message.timestamp))
        else:
            entry = QueuedMessage(message, self._next_seq)
        self._next_seq += 1
        if not self._messages.count and self.consumers.consumers and not self._dispatching:
            # An empty queue hands it straight to a ready consumer (as RabbitMQ's queue
            # delivers, or else enqueues): nothing is queued, no limit or expiry applies.
            consumer = self.consumers.next_ready()
            if consumer is not None:
                self._dispatching = True
                try:
                    self.note_delivery(entry)
                    consumer.target.deliver(consumer, self, entry)
                finally:
                    self._dispatching = False
                return True
        depth = self._messages.append(entry)
        if self.consumers.consumers:  # a ready consumer takes it before any limit applies
            self._fresh = entry
            self.dispatch()
            self._fresh = None
        if limited:
            self._enforce_limits()
        if entry.expires_at is not None:
            self._schedule_expiry()
        if depth >= PAGE_OUT_DEPTH and not logged and self._page_timer is None:
            self._arm_page_timer()
        return True

    def _arm_page_timer(self) -> None:
        """A message that the page store may take arrived in a long lane: if it is behind the
        resident head, look again when it has waited there long enough."""
        store = self.vhost.store
        if store is not None and store.pages is not None and (
            len(self._messages) > store.resident_head
        ):
            self._page_timer = asyncio.get_event_loop().call_later(store.page_out_after,
                                                                   self._page_out_waiting)

    def _page_out_waiting(self) -> None:
        """Messages that have waited behind the resident head for `page_out_after` seconds,
        and that the message store does not keep (transient ones, any in a non-durable
        queue), go to the page store, all at once: their bodies are written to a file that
        does not outlive the broker and they become rows until they near the head. (Waiting
        first spares the messages of a queue whose consumers are only a little behind.) Only
        while memory is above the paging threshold: below it writing and reading them back
        costs more than it saves (twice the CPU per message on a backlog of a few seconds)."""
        self._page_timer = None
        store = self.vhost.store
        if self.deleted or store.pages.failed is not None:
            return
        if not store.memory_is_short():  # (RabbitMQ keeps them in memory too, till then)
            self._page_timer = asyncio.get_event_loop().call_later(store.page_out_after,
                                                                   self._page_out_waiting)
            return
        budget = len(self._messages) - store.resident_head  # (never within the head)
        if budget > 0 and self._messages.page_out_tail(
            store.pages, budget, self.durable, self._thaw, time.time() - store.page_out_after
        ):  # newer ones wait their turn
            self._page_timer = asyncio.get_event_loop().call_later(store.page_out_after,
                                                                   self._page_out_waiting)

    def _behind_memory_limit(self, message: Message) -> bool:
        """Whether a logged message arriving now is behind the queue's own in-memory limit
        (then it is kept as a row, as behind the resident head); only if `limits_memory`."""
        return False

    def _freeze(self, message: Message, store: MessageStore, limited: bool) -> bool:
        """A logged message arriving behind the resident head of this durable queue becomes a
        row of the message store's catalog, if this queue alone holds it (its object goes
        once its record is durable; it becomes one again when the row nears the head).
        False: it stays an object (its body is paged out once durable)."""
        # (CC keys do not survive a row: the message keeps them for dead-lettering.)
        row = None if message.cc else store.freeze(self.key, message)
        if row is None:  # (or other queues hold it too)
            store.page_out_when_durable(message)
            return False
        deadline = self._deadline(message, message.timestamp)
        self._messages.append_row(row, self._priority_of(message), deadline, message.body_size,
                                  self._next_seq, self._thaw)
        self._next_seq += 1
        if self.consumers:
            self.dispatch()
        if limited:
            self._enforce_limits()
        if deadline is not None:
            self._schedule_expiry()
        return True

    def restore(self, message: Message, redelivered: bool, logged_delivery: bool) -> None:
        """Put back a message recovered from the log (at start-up, in log order)."""
        entry = QueuedMessage(message, self._next_seq, self._priority_of(message),
                              self._deadline(message, message.timestamp))
        entry.redelivered = redelivered
        entry.logged_delivery = logged_delivery
        self._next_seq += 1
        if message.store_ref is not None and self.durable:
            self.persistent_count += 1
            self.persistent_bytes += message.body_size
        self._messages.append(entry)
        if entry.expires_at is not None:
            self._schedule_expiry_after_recovery()
        mark = logged_state(self.key, message.store_ref)
        if mark is not None:
            entry.delivery_count = mark[0]
        if self.counts_deliveries and (mark[3] if mark is not None else logged_delivery):
            self._returned_at_start(entry)

    def _returned_at_start(self, entry: QueuedMessage) -> None:
        """A recovered message was out (delivered, not settled) when the broker stopped: that
        counts as a return, as when its channel closes (RabbitMQ's quorum queue returns the
        messages of consumers that are gone when it starts)."""
        entry.delivery_count += 1
        if self.vhost.store is None:  # recovery: the vhost gets its store once it is over
            asyncio.get_running_loop().call_soon(self._log_returns, entry)
        else:
            self._log_returns(entry)

    def restore_cold(self, rows: Rows, catalog: Catalog, expirations: list[int | None],
                     all_redelivered: bool) -> None:
        """Put back recovered messages as catalog rows (at start-up, in log order): they become
        objects only as they near the head. `expirations` are the expiration properties of the
        catalog's meta table; `all_redelivered` marks every one redelivered (after a crash)."""
        for priority, lane_rows, deadlines in lane_runs(rows, catalog, expirations,
                                                        self.settings):
            run = ColdRun(lane_rows, self._next_seq, deadlines, all_redelivered, self._thaw)
            self._next_seq += len(lane_rows)
            body_bytes = catalog.body_bytes(lane_rows)
            self._messages.append_cold(run, priority, body_bytes)
            self.persistent_count += len(lane_rows)
            self.persistent_bytes += body_bytes
            if deadlines is not None:
                self._schedule_expiry_after_recovery()

    def cold_rows(self) -> list[Rows]:
        """The message store's catalog rows this queue holds (for the index snapshot)."""
        return [run.remaining() for run in self._messages.cold_runs() if not run.paged]

    def logged_deliveries(self) -> Iterator[tuple[Message, bool]]:
        """The logged messages this queue holds ready as objects, each with whether the log
        has this queue's delivery of it (for the index snapshot)."""
        for entry in self._messages.objects():
            if entry.message.store_ref is not None:
                yield entry.message, entry.logged_delivery

    def _schedule_expiry_after_recovery(self) -> None:
        """Arm the expiry timer once recovery is over (looking at the head thaws it, which
        needs the message store running)."""
        asyncio.get_running_loop().call_soon(self._schedule_expiry)

    def _thaw(self, run: ColdRun, start: int, stop: int) -> list[QueuedMessage]:
        """Materialise rows `start:stop` of a cold run that reached the head."""
        store = self.vhost.store
        if run.paged:
            lost_bytes = store.pages.lost_bytes
            messages = store.pages.thaw(run.rows[start:stop])
            self._messages.bytes -= store.pages.lost_bytes - lost_bytes
        else:
            messages = store.thaw(run.rows[start:stop])
        deadlines, all_redelivered = run.deadlines, run.all_redelivered
        prioritised = bool(self.settings.max_priority)
        entries = []
        for index, message in enumerate(messages, start):
            if message is None:  # a paged body that could not be read (logged)
                continue
            deadline = deadlines[index] if deadlines is not None else NEVER
            entry = QueuedMessage(
                message, run.first_seq + index,
                self._priority_of(message) if prioritised else 0,
                None if deadline == NEVER else deadline,
            )
            entry.logged_delivery = store.delivery_logged(message)  # the row's: one queue holds it
            entry.redelivered = all_redelivered or entry.logged_delivery
            if entry.logged_delivery and self.counts_deliveries:  # (only recovered rows)
                self._returned_at_start(entry)
            entries.append(entry)
        return entries

    def _priority_of(self, message: Message) -> int:
        if not self.settings.max_priority:
            return 0
        return properties.get(message.props_raw, "priority") or 0

    def _deadline(self, message: Message, since: float) -> float | None:
        """When a message expires (wall clock): the queue's TTL or its own expiration, the
        earlier; both counted from when it was published, so a restart changes nothing."""
        ttl = self.settings.ttl_for(message.expiration)
        return None if ttl is None else since + ttl / 1000

    def _full_for(self, size: int) -> bool:
        settings = self.settings
        if settings.max_length is not None and len(self._messages) >= settings.max_length:
            return True
        return (settings.max_length_bytes is not None
                and self._messages.bytes + size > settings.max_length_bytes)

    def _enforce_limits(self) -> None:
        """drop-head: drop (dead-letter as maxlen) from the head while over a limit."""
        settings, messages = self.settings, self._messages
        while messages and (
            (settings.max_length is not None and len(messages) > settings.max_length)
            or (settings.max_length_bytes is not None
                and messages.bytes > settings.max_length_bytes)
        ):
            entry = messages.pop()
            if not self._dead_letter(entry.message, "maxlen"):
                messages.requeue(entry)  # kept at the head, over the limit, until it can go
                break

    # -- messages out ---------------------------------------------------------------------

    def pop(self) -> QueuedMessage | None:
        """The next message to hand out (expired ones at the head are dead-lettered first, and
        those that reach the head now, as RabbitMQ does)."""
        self._expire_head()
        entry = self._messages.pop()
        self._expire_head()
        return entry

    def requeue(self, entry: QueuedMessage) -> None:
        """Put a delivered message back where it was, marked redelivered (dispatch separately).
        Past its delivery limit it is dead-lettered instead."""
        limit = self.settings.delivery_limit
        if limit is not None:
            entry.delivery_count += 1
            if entry.delivery_count > limit and self._dead_letter(entry.message,
                                                                  "delivery_limit"):
                return
            self._log_returns(entry)
        entry.redelivered = True
        self._messages.requeue(entry)
        settings = self.settings
        if settings.overflow == "drop-head" and (
            settings.max_length is not None or settings.max_length_bytes is not None
        ):
            self._enforce_limits()  # a requeued message over the limit is dropped from the head
        if entry.expires_at is not None:
            self._schedule_expiry()

    def _log_returns(self, entry: QueuedMessage, to_back: bool = False) -> None:
        """A logged message came back (x-delivery-count), to its place or `to_back` of the
        queue: the log keeps its count and place, so that both are the same after a
        restart."""
        message = entry.message
        if message.store_ref is not None and self.durable:
            self.vhost.store.note_state(self.key, message, entry.delivery_count,
                                        to_back=to_back)

    def release(self, entry: QueuedMessage) -> None:
        """A delivery comes back because its consumer or channel went away (not returned by
        the client): as `requeue` here; a quorum queue tells the two apart."""
        self.requeue(entry)

    def ack(self, entry: QueuedMessage) -> None:
        """A delivered message was acknowledged by the client: it leaves the queue. (One
        delivered with no_ack just leaves, `discard`: RabbitMQ counts no ack for it.)"""
        self.ack_all((entry,))

    def ack_all(self, entries: Sequence[QueuedMessage]) -> None:
        """`ack` for several deliveries at once (a basic.ack with `multiple`)."""
        self.messages_acked += len(entries)
        if self.durable:
            for entry in entries:
                self.discard(entry.message)

    def reject(self, entry: QueuedMessage) -> None:
        """Rejected (or nacked) without requeue: dead-lettered as rejected (or, if that fails,
        back among the ready messages, as after a requeue)."""
        if self._dead_letter(entry.message, "rejected"):
            return
        if self.deleted:
            self.discard(entry.message)
            return
        entry.redelivered = True
        self._messages.requeue(entry)
        # Dispatched once the caller (a settlement, the management get) is done.
        asyncio.get_running_loop().call_soon(self.dispatch)

    def put_back(self, entries: list[QueuedMessage]) -> None:
        """Messages taken from the head by a step that then failed go back to their places,
        as if never taken (not marked redelivered, no delivery counted)."""
        for entry in entries:
            self._messages.requeue(entry)
        if any(entry.expires_at is not None for entry in entries):
            self._schedule_expiry()

    def discard(self, message: Message) -> None:
        """A message leaves the queue for good (ack, reject, drop): unlog it if logged (and
        count it out, once: the store says whether this queue still held it)."""
        if message.store_ref is not None and self.durable and self.vhost.store.remove(
            self.key, message
        ):
            self.persistent_count -= 1
            self.persistent_bytes -= message.body_size

    def _publish_dead_letter(self, message: Message, reason: str) -> bool | None:
        """Publish the dead-lettered copy of `message`: whether a queue took it, or None if
        that failed (logged and counted; the message stays where it was)."""
        try:
            return deadletter.dead_letter(self, message, reason)
        except Exception as error:
            self.vhost.step_failures.record(
                stepfailures.EXPIRY if reason == "expired" else stepfailures.DEAD_LETTER,
                self.describe(), error, "the message stays in the queue",
            )
            return None

    def _dead_letter(self, message: Message, reason: str) -> bool:
        """Dead-letter (or, without a dead-letter exchange, drop) a message leaving for
        `reason`; counted per reason and strategy as rabbitmq_prometheus counts it. False if
        its copy could not be routed or delivered: then the message has not left, and the
        caller keeps it where it was (the failure is logged and counted)."""
        has_exchange = self.settings.dead_letter_exchange is not None
        if has_exchange:
            delivered = self._publish_dead_letter(message, reason)
            if delivered is None:
                return False
            if delivered:
                self.messages_dead_lettered += 1
        if self.vhost.trace_sessions and not (has_exchange and delivered):  # no copy made
            tracesessions.dropped(self.vhost, self.name, reason, message)
        counters = self.vhost.dead_lettered
        key = (self.type_name, reason, "at_most_once" if has_exchange else "disabled")
        counters[key] = counters.get(key, 0) + 1
        self.discard(message)
        return True

    def note_delivery(self, entry: QueuedMessage) -> None:
        """A message is handed to a consumer or basic.get (it stays unacked or is settled)."""
        self.messages_delivered += 1
        if entry.redelivered:
            self.messages_redelivered += 1
        message = entry.message
        if message.store_ref is not None and self.durable:
            entry.logged_delivery = True
            self.vhost.store.mark_delivered(self.key, message)

    @property
    def counts_deliveries(self) -> bool:
        """Whether deliveries carry x-delivery-count (delivery-limit queues; quorum queues)."""
        return self.settings.delivery_limit is not None

    def delivery_properties(self, entry: QueuedMessage, always: bool = False) -> bytes:
        """The property bytes to deliver: the message's own, plus (delivery-limit queues, as
        quorum queues do) x-delivery-count once it has come back — or `always`, for
        basic.get."""
        raw = entry.message.props_raw
        if not self.counts_deliveries or not (entry.delivery_count or always):
            return raw
        try:
            headers = dict(properties.typed_headers(raw))
            headers["x-delivery-count"] = ("l", entry.delivery_count)
            return properties.rebuild(
                raw, {"headers": encode_table(dict(sorted(headers.items())))}
            )
        except Exception as error:  # delivered as published rather than not at all
            self.vhost.step_failures.record(
                stepfailures.DELIVERY_COUNT, self.describe(), error,
                "the message was delivered without x-delivery-count",
            )
            return raw

    def purge(self) -> int:
        count = len(self._messages)
        cleared = self._messages.clear()
        for entry in cleared.entries:
            self.discard(entry.message)
        logged = self._drop_paged(cleared.cold)
        if logged:
            self.persistent_bytes -= self.vhost.store.remove_rows(self.key, logged)
            self.persistent_count -= sum(len(rows) for rows in logged)
        return count

    def drop_everything(self) -> None:
        """The queue is deleted: its ready messages go, and the log forgets it entirely."""
        self._cancel_timers()
        cleared = self._messages.clear()
        logged = self._drop_paged(cleared.cold)
        if self.durable and self.vhost.store is not None:
            self.vhost.store.drop_queue(self.key, [entry.message for entry in cleared.entries],
                                        logged)

    def _drop_paged(self, runs: list[ColdRun]) -> list[Rows]:
        """Let the page store forget the paged rows of `runs`; returns the others' rows."""
        paged = [run.remaining() for run in runs if run.paged]
        if paged:
            self.vhost.store.pages.drop(paged)
        return [run.remaining() for run in runs if not run.paged]

    # -- expiry ---------------------------------------------------------------------------

    def _expire_head(self) -> None:
        """Dead-letter expired messages at the head (RabbitMQ expires only from the head, so
        this never scans the queue)."""
        messages = self._messages
        head = messages.head()
        if head is None or head.expires_at is None:
            return
        now = time.time()
        while head is not None and head.expires_at is not None and head.expires_at <= now:
            messages.pop()
            if not self._dead_letter(head.message, "expired"):
                head.expires_at = None  # stays, for consumers; trying again would fail again
                messages.requeue(head)
            head = messages.head()

    def _schedule_expiry(self) -> None:
        """A timer for the head's deadline, so messages expire even when nobody consumes."""
        head = self._messages.head()
        deadline = head.expires_at if head is not None else None
        if deadline is None or deadline == self._expiry_at:
            return
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        loop = asyncio.get_event_loop()
        self._expiry_at = deadline
        ticks = math.ceil(max(0.0, deadline - time.time()) * 1000 / EXPIRY_TICK_MS)
        self._expiry_timer = loop.call_later(ticks * EXPIRY_TICK_MS / 1000, self._on_expiry)

    def _on_expiry(self) -> None:
        self._expiry_timer = self._expiry_at = None
        if self.deleted:
            return
        self._expire_head()
        self._schedule_expiry()

    # -- the unused-queue timer (x-expires) -----------------------------------------------

    def arm_unused_timer(self) -> None:
        """(Re)start the x-expires countdown: the queue was used, or lost its last consumer."""
        if self._unused_timer is not None:
            self._unused_timer.cancel()
            self._unused_timer = None
        expires = self.settings.expires
        if expires is None or self.consumers or self.deleted:
            return
        loop = asyncio.get_event_loop()
        self._unused_timer = loop.call_later(expires / 1000, self._on_unused)

    def declared_again(self) -> None:
        """A declare (passive or not) found this queue: it counts as a use (x-expires)."""
        self.arm_unused_timer()

    def created(self, recovered: bool) -> None:
        """The vhost has just made this queue (`recovered`: from its definitions file): a hook
        for types with state outside the queue object (a stream's log)."""

    def _on_unused(self) -> None:
        self._unused_timer = None
        if not self.consumers and not self.deleted:
            self.vhost.delete_queue(self)

    def _cancel_timers(self) -> None:
        for timer in (self._expiry_timer, self._unused_timer, self._page_timer):
            if timer is not None:
                timer.cancel()
        self._expiry_timer = self._unused_timer = self._expiry_at = self._page_timer = None

    # -- consumers ------------------------------------------------------------------------

    def check_consumer(self, no_ack: bool, prefetch: int, arguments: dict[str, Any],
                       global_qos: bool = False) -> None:
        """Refuse a basic.consume this queue type does not take: the consumer arguments it
        refuses (`global_qos`: the channel has a basic.qos global=true prefetch)."""
        refuse_arguments(arguments, self.refused_consumer_arguments, self.describe(),
                         self.type_module)
        self.check_global_qos(global_qos)

    def check_global_qos(self, global_qos: bool) -> None:
        if global_qos and not self.supports_global_qos:
            raise NotImplementedByBroker(f"{self.describe()} does not support global qos")

    def check_delete(self, if_unused: bool, if_empty: bool) -> None:
        """Refuse a queue.delete this queue type does not take (quorum: the conditional ones);
        classic: none."""

    def check_settle(self) -> None:
        """Refuse basic.nack / basic.reject of this queue's deliveries (streams); classic: none."""

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.add(consumer)
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        self.use.unblocked()
        self.arm_unused_timer()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer, dispatch: bool = True) -> None:
        """Detach a consumer; an auto-delete queue that loses its last one is deleted."""
        self.consumers.remove(consumer)
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if self.auto_delete and not self.consumers and not self.deleted:
            self.vhost.delete_queue(self)
            return
        self.arm_unused_timer()
        if dispatch:
            self.dispatch()

    def dispatch(self) -> None:
        """Deliver ready messages to consumers that have room, and keep `use`: blocked when a
        delivery finds no consumer with room; unblocked when the ready messages are all
        delivered, or (an empty queue) when a consumer has room again. (A dispatch that
        delivers and then blocks again leaves it blocked: it was unblocked for no time.)"""
        messages, line = self._messages, self.consumers
        if self._dispatching or not line.consumers:
            return
        use = self.use
        if not messages.count:
            if use.inactive_since is not None and could_take(line):
                use.unblocked()
            return
        only = line.only
        if only is not None and only.prefetch and only.unacked >= only.prefetch:
            use.blocked()  # (the common miss, a publish to a queue whose consumer is full)
            return
        self._dispatching = True
        try:
            while messages.count:
                consumer = line.next_ready()
                if consumer is None:
                    if use.inactive_since is None:
                        use.blocked()
                    break
                if consumer is only and not only.no_ack and self._dispatch_run(only):
                    continue
                head = messages.head()
                if head is None:  # the rows left could not be thawed
                    break
                # A just-published message is offered to a ready consumer even with TTL 0.
                if head.expires_at is not None and head is not self._fresh and (
                    head.expires_at <= time.time()
                ):
                    self._expire_head()
                    continue
                if head.message.body is None:
                    self._page_in()
                    break
                messages.pop_head(head)
                self.note_delivery(head)
                consumer.target.deliver(consumer, self, head)
            else:  # every ready message went out
                if use.inactive_since is not None:
                    use.unblocked()
        finally:
            self._dispatching = False

    def _dispatch_run(self, consumer: Consumer) -> bool:
        """Hand the queue's only consumer (manual ack) a run of messages from the head at
        once, as many as its window has room for, up to RUN_LIMIT: its target writes them as
        one piece and gives back those it could not take (its shared window or its
        connection's turn budget filled). False, nothing done, if the head is not for a run
        (see `MessageLanes.take_run`): the caller takes it the ordinary way."""
        room = consumer.prefetch - consumer.unacked if consumer.prefetch else RUN_LIMIT
        entries = self._messages.take_run(room if room < RUN_LIMIT else RUN_LIMIT)
        if not entries:
            return False
        count, redelivered = consumer.target.deliver_run(consumer, self, entries)
        if count < len(entries):
            self._messages.give_back(entries[count:])
            del entries[count:]
        if self.durable:  # (a logged message's delivery goes to the log)
            for entry in entries:
                self.note_delivery(entry)
        else:
            self.messages_delivered += count
            self.messages_redelivered += redelivered
        return True

    def _page_in(self) -> None:
        """Read the next paged-out bodies from the log; dispatch resumes when they are in."""
        if self._paging_in:
            return
        paged_out = [  # the head's (iteration stops at a cold run, thawed when reached)
            entry.message for entry in itertools.islice(self._messages, PAGE_IN_BATCH)
            if entry.message.body is None
        ]
        self._paging_in = True
        self.vhost.store.page_in(paged_out, self._paged_in)

    def _paged_in(self) -> None:
        self._paging_in = False
        if not self.deleted:
            self.dispatch()

    # -- get: basic.get, the API's get, the aliveness test --------------------------------

    def get(self, no_ack: bool) -> QueuedMessage | None:
        """The one get every front makes: the next message handed out (`take`, then
        `hand_out`); None when the queue is empty (counted as an empty get)."""
        entry = self.take()
        if entry is not None:
            self.hand_out(entry, no_ack)
        return entry

    def take(self) -> QueuedMessage | None:
        """A get's first half: the next message, its body in memory, not yet handed out: a
        caller that then fails gives it back with `put_back`, else completes the get with
        `hand_out`. None when the queue is empty (counted as an empty get). If its paged-out
        body cannot be read, it stays in its place and this raises."""
        self.arm_unused_timer()
        entry = self.pop()
        if entry is None:
            self.counters.get_empty += 1
            self.gets_empty += 1
            return None
        message = entry.message
        if message.body is None:
            try:
                message.body = self.vhost.store.read_body_now(message)
            except Exception:
                self.put_back([entry])
                raise
        return entry

    def hand_out(self, entry: QueuedMessage, no_ack: bool) -> None:
        """A get's second half: the message taken is delivered (counted by the queue and the
        node as a get), and with `no_ack` gone at once; else the caller keeps it as unacked
        until it acks, rejects or requeues it."""
        self.note_delivery(entry)
        self.counters.count_get(entry.redelivered, no_ack)
        if no_ack:
            self.gets_no_ack += 1
            self.discard(entry.message)
        else:
            self.gets += 1
