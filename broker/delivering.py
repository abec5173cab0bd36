"""The consuming side of a channel: basic.qos, consume, cancel and get, deliveries to
consumers, and acknowledgements (ack, nack, reject, recover) with requeueing."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from pamqp import commands as spec

from broker import names, topology
from broker.consumer import Consumer
from broker.errors import AccessRefused, NotAllowed, NotImplementedByBroker, PreconditionFailed
from broker.message import Message, QueuedMessage
from broker.queue_args import validate_consumer_priority
from broker.topology import DIRECT_REPLY_TO
from protocol import codec
from protocol.constants import (
    NOT_IMPLEMENTED,
)
from protocol.errors import AMQPConnectionError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from broker.queue import Queue

# An outstanding delivery: (queue or None for direct reply-to, queued message, consumer or None).
Unacked = tuple["Queue", QueuedMessage, "Consumer | None"]


class Delivering:
    """The consumer and acknowledgement methods of Channel, whose __init__ sets up the state
    they use."""

    def can_deliver(self) -> bool:
        if self.global_prefetch and self.global_unacked >= self.global_prefetch:
            return False
        return self.connection.writable

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        tag = self._next_delivery_tag
        self._next_delivery_tag = tag + 1
        if consumer.no_ack:
            queue.settle(entry)
        else:
            self.unacked[tag] = (queue, entry, consumer)
            consumer.unacked += 1
            self.global_unacked += 1
            queue.unacked_count += 1
        message = entry.message
        connection = self.connection
        connection.write(codec.encode_deliver(
            self.number, consumer.tag_bytes, tag, entry.redelivered, message.route_bytes,
            queue.delivery_properties(entry) if entry.delivery_count else message.props_raw,
            message.body, connection.frame_max,
        ))
        node = connection.node
        node.messages_delivered += 1
        if consumer.no_ack:
            node.delivered_consume_auto_ack += 1
        else:
            node.delivered_consume_manual_ack += 1
        if entry.redelivered:
            node.messages_redelivered += 1

    def deliver_reply(self, message: Message) -> None:
        tag = self._next_delivery_tag
        self._next_delivery_tag = tag + 1
        self.connection.write(codec.encode_deliver(
            self.number, codec.shortstr(self.reply_consumer_tag), tag, False, message.route_bytes,
            message.props_raw, message.body, self.connection.frame_max,
        ))

    def kick_queues(self) -> None:
        """Our consumers may take messages again: let their queues dispatch."""
        for queue in {consumer.queue for consumer in self.consumers.values()}:
            queue.dispatch()

    def _on_qos(self, method: spec.Basic.Qos) -> None:
        if method.prefetch_size:
            raise NotImplementedByBroker(f"prefetch_size!=0 ({method.prefetch_size})")
        if method.global_:
            self.global_prefetch = method.prefetch_count
        else:
            self.default_prefetch = method.prefetch_count
        self.send_method(spec.Basic.QosOk())
        self.kick_queues()

    def _on_consume(self, method: spec.Basic.Consume) -> None:
        tag = method.consumer_tag or names.generate("amq.ctag-")
        if tag in self.consumers or tag == self.reply_consumer_tag:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        if method.queue == DIRECT_REPLY_TO:
            self._consume_replies(method, tag)
            return
        name = topology.queue_name(self, method.queue)
        self.vhost.check_permission(self.user, "read", "queue", name)
        queue = topology.queue_for(self, name)
        validate_consumer_priority(method.arguments or {}, queue.describe())
        if queue.exclusive_consumer is not None or (method.exclusive and (
            queue.consumers or queue.settings.single_active_consumer
        )):
            raise AccessRefused(f"{queue.describe()} in exclusive use")
        consumer = Consumer(
            self, queue, tag, no_ack=method.no_ack, exclusive=method.exclusive,
            prefetch=self.default_prefetch, arguments=method.arguments,
        )
        self.consumers[tag] = consumer
        if not method.nowait:
            self.send_method(spec.Basic.ConsumeOk(tag))
        queue.add_consumer(consumer)

    def _consume_replies(self, method: spec.Basic.Consume, tag: str) -> None:
        if not method.no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge")
        if self.reply_key is not None:
            raise PreconditionFailed("reply consumer already set")
        self.reply_consumer_tag = tag
        self.reply_key = names.generate("")
        self.connection.node.reply_channels[self.reply_key] = self
        if not method.nowait:
            self.send_method(spec.Basic.ConsumeOk(tag))

    def _on_cancel(self, method: spec.Basic.Cancel) -> None:
        consumer = self.consumers.get(method.consumer_tag)
        if consumer is not None:
            self._remove_consumer(consumer)
        elif method.consumer_tag == self.reply_consumer_tag and self.reply_key is not None:
            self.connection.node.reply_channels.pop(self.reply_key, None)
            self.reply_key = self.reply_consumer_tag = None
        if not method.nowait:
            self.send_method(spec.Basic.CancelOk(method.consumer_tag))

    def _remove_consumer(self, consumer: Consumer, dispatch: bool = True) -> None:
        del self.consumers[consumer.tag]
        if not consumer.queue.deleted:
            consumer.queue.remove_consumer(consumer, dispatch)

    def cancelled(self, consumer: Consumer) -> None:
        """The consumed queue went away: tell the client (consumer_cancel_notify)."""
        self.consumers.pop(consumer.tag, None)
        if not self.connection.capability("consumer_cancel_notify"):
            return  # RabbitMQ tells only clients that asked for it; the consumer is just gone
        if self._held_cancels is not None:
            self._held_cancels.append(consumer.tag)
        elif not self.closing:
            self.send_method(spec.Basic.Cancel(consumer.tag, False))

    @contextmanager
    def cancels_held(self) -> Iterator[list[str]]:
        """Collect the consumer tags cancelled by the server inside the block instead of
        sending basic.cancel at once (the caller sends them after its reply)."""
        held: list[str] = []
        self._held_cancels = held
        try:
            yield held
        finally:
            self._held_cancels = None

    def send_cancels(self, tags: list[str]) -> None:
        for tag in tags:
            self.send_if_open(spec.Basic.Cancel(tag, False))

    def _on_get(self, method: spec.Basic.Get) -> None:
        name = topology.queue_name(self, method.queue)
        self.vhost.check_permission(self.user, "read", "queue", name)
        queue = topology.queue_for(self, name)
        queue.arm_unused_timer()
        entry = queue.pop()
        if entry is None:
            self.connection.node.get_empty += 1
            self.send_method(spec.Basic.GetEmpty())
            return
        tag = self._next_delivery_tag
        self._next_delivery_tag = tag + 1
        body = queue.head_body(entry)
        queue.note_delivery(entry)
        if method.no_ack:
            queue.settle(entry)
        else:
            self.unacked[tag] = (queue, entry, None)
            queue.unacked_count += 1
        message = entry.message
        self.connection.write(codec.encode_get_ok(
            self.number, tag, entry.redelivered, message.route_bytes, queue.message_count,
            queue.delivery_properties(entry, always=True), body, self.connection.frame_max,
        ))
        self.connection.node.count_get(entry.redelivered, method.no_ack)

    def _take_unacked(
        self, delivery_tag: int, multiple: bool
    ) -> list[tuple[int, Unacked]]:
        unacked = self.unacked
        if multiple and (delivery_tag == 0 or delivery_tag in unacked):
            taken = []
            while unacked:
                first = next(iter(unacked))
                if delivery_tag and first > delivery_tag:
                    break
                taken.append(unacked.popitem(last=False))
            return taken
        if not multiple:
            entry = unacked.pop(delivery_tag, None)
            if entry is not None:
                return [(delivery_tag, entry)]
        raise PreconditionFailed(f"unknown delivery tag {delivery_tag}")

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, False, acked=True)

    def _settle(
        self, delivery_tag: int, multiple: bool, requeue: bool, acked: bool = False,
    ) -> None:
        taken = self._take_unacked(delivery_tag, multiple)
        if self.tx_mode:
            self._tx_settlements.extend((tag, entry, acked, requeue) for tag, entry in taken)
            return
        self._apply_settlement([entry for _, entry in taken], acked, requeue)

    def _apply_settlement(self, entries: list[Unacked], acked: bool, requeue: bool) -> None:
        if requeue and not acked:
            self._requeue(entries)
            return
        was_blocked = self.global_prefetch and self.global_unacked >= self.global_prefetch
        kick: list[Queue] = []
        for queue, entry, consumer in entries:
            queue.unacked_count -= 1
            if acked:
                queue.settle(entry)
            else:
                queue.reject(entry)
            if consumer is not None:
                self.global_unacked -= 1
                if consumer.prefetch and consumer.unacked == consumer.prefetch:
                    kick.append(queue)
                consumer.unacked -= 1
        if acked:
            self.connection.node.messages_acknowledged += len(entries)
        if was_blocked:
            self.kick_queues()
        else:
            for queue in kick:
                queue.dispatch()

    def _requeue(self, entries: list[Unacked]) -> None:
        was_blocked = self.global_prefetch and self.global_unacked >= self.global_prefetch
        queues: dict[Queue, None] = {}
        for queue, entry, consumer in entries:
            queue.unacked_count -= 1
            if consumer is not None:
                consumer.unacked -= 1
                self.global_unacked -= 1
            if queue.deleted:
                queue.discard(entry.message)
            else:
                queue.requeue(entry)
                queues[queue] = None
        for queue in queues:
            queue.dispatch()
        if was_blocked:
            self.kick_queues()

    def _on_recover(self, method: spec.Basic.Recover | spec.Basic.RecoverAsync) -> None:
        if not method.requeue:
            raise AMQPConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, method.index & 0xFFFF)
        entries = list(self.unacked.values())
        self.unacked.clear()
        self._requeue(entries)
        if isinstance(method, spec.Basic.Recover):
            self.send_method(spec.Basic.RecoverOk())
