"""The consuming side of a channel, `Deliveries`: basic.qos, consume, cancel and get, deliveries
to consumers (the channel is their `DeliveryTarget`), and the outcome of each delivery: ack,
or nack/reject (requeued, or rejected to the queue), and recover."""

from __future__ import annotations

from contextlib import contextmanager
from itertools import repeat
from typing import TYPE_CHECKING

from pamqp import commands as spec

from broker import names, topology, tracing
from broker.consumer import Consumer
from broker.errors import AccessRefused, NotAllowed, NotImplementedByBroker, PreconditionFailed
from broker.message import Message, QueuedMessage
from broker.queue_args import validate_consumer_priority
from broker.topology import DIRECT_REPLY_TO
from protocol import codec
from protocol.constants import FRAME_END_BYTE, NOT_IMPLEMENTED
from protocol.deliverytags import DeliveryTags
from protocol.errors import AMQPConnectionError
from protocol.transactions import TransactionBuffer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from broker.channel import Channel
    from broker.publishing import HeldPublish
    from broker.queue import Queue

# An outstanding delivery: (queue, queued message, consumer or None for basic.get). A plain
# tuple, not a NamedTuple: one is made per delivery on the hot path, and a tuple is the
# cheapest record to build and unpack.
Unacked = tuple["Queue", QueuedMessage, "Consumer | None"]

_pack_tag = codec.pack_tag_and_flag

_ACK, _NACK, _REJECT = (method.index & 0xFFFF for method in (
    spec.Basic.Ack, spec.Basic.Nack, spec.Basic.Reject))


class Deliveries:
    """A channel's consumers, its prefetch windows and its unacknowledged deliveries by tag."""

    def __init__(
        self, channel: Channel, transaction: TransactionBuffer[HeldPublish, Unacked]
    ) -> None:
        self.channel = channel
        self.connection = channel.connection
        self.number = channel.number
        self.vhost = channel.vhost
        self.transaction = transaction  # while active, outcomes wait for tx.commit
        self.consumers: dict[str, Consumer] = {}
        self._held_cancels: list[str] | None = None  # basic.cancel to send after a reply
        self.tags: DeliveryTags[Unacked] = DeliveryTags()
        self.encoder = codec.DeliverEncoder(self.number)
        self._write_parts = self.connection.write_parts  # (the transport's)
        self.stats = channel.stats
        self.default_prefetch = 0  # basic.qos global=false: for consumers created afterwards
        # basic.qos global=true: shared by the channel's consumers, until a global=false one
        self.global_prefetch = 0
        self.global_unacked = 0
        # Direct reply-to: the consumer tag and the key replies are addressed to.
        self.reply_consumer_tag: str | None = None
        self.reply_key: str | None = None

    # -- delivery (the channel's DeliveryTarget methods) ----------------------------------

    def can_deliver(self) -> bool:
        if self.global_prefetch and self.global_unacked >= self.global_prefetch:
            return False
        return self.connection.writable

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        message = entry.message
        counters, stats = queue.counters, self.stats  # the node's, for the queue's type
        counts = (stats.last_queue_counts if queue is stats.last_queue
                  else stats.queue_counts(queue))  # the channel's, for this queue
        if consumer.no_ack:
            tag = self.tags.issue()
            queue.discard(message)
            counters.delivered_consume_auto_ack += 1
            queue.consumed_no_ack += 1
            counts.consumed_no_ack += 1
        else:
            tag = self.tags.keep((queue, entry, consumer))
            consumer.unacked += 1
            self.global_unacked += 1
            queue.unacked_count += 1
            queue.unacked_bytes += message.body_size
            counters.delivered_consume_manual_ack += 1
        # DeliverEncoder.shape's test of its last shape, inline (frame_max is settled before
        # a channel opens), then DeliverShape.parts of one body frame: once per message.
        shape = self.encoder.last
        if (shape is None or shape.route_bytes is not message.route_bytes
                or shape.props_raw is not message.props_raw
                or shape.body_size != message.body_size
                or shape.consumer_tag_bytes is not consumer.tag_bytes or entry.delivery_count):
            shape = self.encoder.shape(
                consumer.tag_bytes, message.route_bytes,
                queue.delivery_properties(entry) if entry.delivery_count else message.props_raw,
                message.body_size, self.connection.frame_max)
        if shape.single:
            self._write_parts((shape.head, _pack_tag(tag, entry.redelivered), shape.tail,
                               message.body, FRAME_END_BYTE), shape.size)
        else:
            self._write_parts(shape.parts(tag, entry.redelivered, message.body), shape.size)
        counts.delivered += 1
        if entry.redelivered:
            counters.messages_redelivered += 1
            counts.redelivered += 1
        if self.vhost.tracing:
            tracing.delivered(self.vhost, queue, entry, self.channel)

    def deliver_run(self, consumer: Consumer, queue: Queue, entries: list[QueuedMessage]
                    ) -> tuple[int, int]:
        """`deliver` for a run of messages taken from `queue` together for `consumer` (manual
        ack; their deliveries not counted yet): in order, as many as the channel's shared
        window and the connection's turn budget take (at least one: the queue found the
        consumer ready), written as one piece. Returns how many were delivered (the queue
        puts the others back) and how many of those were redeliveries."""
        connection = self.connection
        limit = len(entries)
        if self.global_prefetch and self.global_prefetch - self.global_unacked < limit:
            limit = self.global_prefetch - self.global_unacked
        room = connection.write_room()  # past it, the connection stops taking deliveries
        frame_max, tag_bytes = connection.frame_max, consumer.tag_bytes
        tag = self.tags.next_tag  # the run's tags: this one on
        parts: list[bytes | memoryview] = []
        size = redelivered = body_bytes = count = 0
        route = props = shape = None
        body_size = -1
        for entry in entries:
            message = entry.message
            if entry.delivery_count:  # (its properties carry x-delivery-count)
                shape = self.encoder.shape(tag_bytes, message.route_bytes,
                                           queue.delivery_properties(entry),
                                           message.body_size, frame_max)
                route = None
            elif (message.route_bytes is not route or message.props_raw is not props
                  or message.body_size != body_size):
                route, props, body_size = (message.route_bytes, message.props_raw,
                                           message.body_size)
                shape = self.encoder.shape(tag_bytes, route, props, body_size, frame_max)
            parts += shape.parts(tag + count, entry.redelivered, message.body)
            size += shape.size
            body_bytes += message.body_size
            count += 1
            if entry.redelivered:
                redelivered += 1
            if count == limit or size > room:
                break
        self.tags.keep_run(zip(repeat(queue), entries, repeat(consumer)), count)
        consumer.unacked += count
        self.global_unacked += count
        queue.unacked_count += count
        queue.unacked_bytes += body_bytes
        counters, stats = queue.counters, self.stats
        counters.delivered_consume_manual_ack += count
        counts = (stats.last_queue_counts if queue is stats.last_queue
                  else stats.queue_counts(queue))
        counts.delivered += count
        if redelivered:
            counters.messages_redelivered += redelivered
            counts.redelivered += redelivered
        connection.write_parts(parts, size)
        if self.vhost.tracing:
            for entry in entries[:count]:
                tracing.delivered(self.vhost, queue, entry, self.channel)
        return count, redelivered

    def cancelled(self, consumer: Consumer) -> None:
        """The consumed queue went away: tell the client (consumer_cancel_notify)."""
        self.consumers.pop(consumer.tag, None)
        if not self.connection.capability("consumer_cancel_notify"):
            return  # RabbitMQ tells only clients that asked for it; the consumer is just gone
        if self._held_cancels is not None:
            self._held_cancels.append(consumer.tag)
        elif self.channel.lifecycle.is_open:
            self.channel.send_method(spec.Basic.Cancel(consumer.tag, False))

    def deliver_reply(self, message: Message) -> None:
        self.connection.write(codec.encode_deliver(
            self.number, codec.shortstr(self.reply_consumer_tag), self.tags.issue(), False,
            message.route_bytes,
            message.props_raw, message.body, self.connection.frame_max,
        ))

    def kick_queues(self) -> None:
        """Our consumers may take messages again: let their queues dispatch."""
        for queue in {consumer.queue for consumer in self.consumers.values()}:
            queue.dispatch()

    # -- qos, consume, cancel, get --------------------------------------------------------

    def on_qos(self, method: spec.Basic.Qos) -> None:
        if method.prefetch_size:
            raise NotImplementedByBroker(f"prefetch_size!=0 ({method.prefetch_size})")
        if method.global_:
            self.global_prefetch = method.prefetch_count
        else:
            # RabbitMQ lifts the channel-wide limit here too (rabbit_limiter:unlimit_prefetch)
            self.default_prefetch, self.global_prefetch = method.prefetch_count, 0
        self.channel.send_method(spec.Basic.QosOk())
        self.kick_queues()

    def on_consume(self, method: spec.Basic.Consume) -> None:
        tag = method.consumer_tag or names.generate("amq.ctag-")
        if tag in self.consumers or tag == self.reply_consumer_tag:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        if method.queue == DIRECT_REPLY_TO:
            self._consume_replies(method, tag)
            return
        channel = self.channel
        name = topology.queue_name(channel, method.queue)
        channel.vhost.check_permission(channel.user, "read", "queue", name)
        queue = topology.queue_for(channel, name)
        validate_consumer_priority(method.arguments or {}, queue.describe())
        queue.check_consumer(method.no_ack, self.default_prefetch, method.arguments or {},
                             global_qos=bool(self.global_prefetch))
        if queue.exclusive_consumer is not None or (method.exclusive and (
            queue.consumers or queue.settings.single_active_consumer
        )):
            raise AccessRefused(f"{queue.describe()} in exclusive use")
        consumer = Consumer(
            channel, queue, tag, no_ack=method.no_ack, exclusive=method.exclusive,
            prefetch=self.default_prefetch, arguments=method.arguments,
        )
        self.consumers[tag] = consumer
        if not method.nowait:
            channel.send_method(spec.Basic.ConsumeOk(tag))
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
            self.channel.send_method(spec.Basic.ConsumeOk(tag))

    def _stop_replies(self) -> None:
        if self.reply_key is not None:
            self.connection.node.reply_channels.pop(self.reply_key, None)
            self.reply_key = self.reply_consumer_tag = None

    def on_cancel(self, method: spec.Basic.Cancel) -> None:
        consumer = self.consumers.get(method.consumer_tag)
        if consumer is not None:
            self._remove_consumer(consumer)
        elif method.consumer_tag == self.reply_consumer_tag:
            self._stop_replies()
        if not method.nowait:
            self.channel.send_method(spec.Basic.CancelOk(method.consumer_tag))

    def _remove_consumer(self, consumer: Consumer, dispatch: bool = True) -> None:
        del self.consumers[consumer.tag]
        if not consumer.queue.deleted:
            consumer.queue.remove_consumer(consumer, dispatch)

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
            self.channel.send_if_open(spec.Basic.Cancel(tag, False))

    def on_get(self, method: spec.Basic.Get) -> None:
        channel = self.channel
        name = topology.queue_name(channel, method.queue)
        channel.vhost.check_permission(channel.user, "read", "queue", name)
        queue = topology.queue_for(channel, name)
        entry = queue.get(method.no_ack)
        stats = self.stats.queue_counts(queue)
        if entry is None:
            stats.gets_empty += 1
            channel.send_method(spec.Basic.GetEmpty())
            return
        stats.delivered += 1
        stats.redelivered += entry.redelivered
        if method.no_ack:
            stats.gets_no_ack += 1
            tag = self.tags.issue()
        else:
            stats.gets += 1
            tag = self.tags.keep((queue, entry, None))
            queue.unacked_count += 1
            queue.unacked_bytes += entry.message.body_size
        message = entry.message
        self.connection.write(codec.encode_get_ok(
            self.number, tag, entry.redelivered, message.route_bytes, queue.message_count,
            queue.delivery_properties(entry, always=True), message.body,
            self.connection.frame_max,
        ))
        if self.vhost.tracing:
            tracing.delivered(self.vhost, queue, entry, channel, get=True)

    # -- outcomes: ack, nack/reject, recover ----------------------------------------------

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        """basic.ack: the deliveries are done with (or, in a transaction, will be at commit)."""
        taken = self.tags.take(delivery_tag, multiple, _ACK)
        if self.transaction.active:
            self.transaction.hold_outcomes(taken, True, False)
        else:
            self.apply_outcome([delivery for _, delivery in taken], True, False)

    def reject(self, delivery_tag: int, multiple: bool, requeue: bool, nack: bool) -> None:
        """basic.nack (`nack`) and basic.reject (a nack of one): requeued, or rejected to the
        queue (dead-lettered or dropped)."""
        taken = self.tags.take(delivery_tag, multiple, _NACK if nack else _REJECT)
        for _, (queue, _, _) in taken:
            queue.check_settle()
        if self.transaction.active:
            self.transaction.hold_outcomes(taken, False, requeue)
        else:
            self.apply_outcome([delivery for _, delivery in taken], False, requeue)

    def apply_outcome(self, entries: list[Unacked], acked: bool, requeue: bool) -> None:
        """Give the queues the outcome of deliveries taken from `tags`."""
        if requeue and not acked:
            self.requeue(entries)
            return
        was_blocked = self.global_prefetch and self.global_unacked >= self.global_prefetch
        kick: list[Queue] = []
        if acked:
            self._acked(entries, kick)
        else:
            for queue, entry, consumer in entries:
                queue.unacked_count -= 1
                queue.unacked_bytes -= entry.message.body_size
                queue.reject(entry)
                if consumer is not None:
                    self._settled(consumer, queue, 1, kick)
        if was_blocked:
            self.kick_queues()
        else:
            for queue in kick:
                queue.dispatch()

    def _acked(self, entries: list[Unacked], kick: list[Queue]) -> None:
        """Acknowledged deliveries leave their queues: those of one queue and consumer in a row
        (every delivery of a basic.ack multiple, as a rule) in one step."""
        run: list[QueuedMessage] = []
        queue = consumer = None
        for delivery in entries:
            if delivery[0] is not queue or delivery[2] is not consumer:
                if run:
                    self._acked_run(queue, consumer, run, kick)
                    run = []
                queue, _, consumer = delivery
            run.append(delivery[1])
        if run:
            self._acked_run(queue, consumer, run, kick)

    def _acked_run(self, queue: Queue, consumer: Consumer | None, run: list[QueuedMessage],
                   kick: list[Queue]) -> None:
        count = len(run)
        queue.unacked_count -= count
        queue.unacked_bytes -= sum([entry.message.body_size for entry in run])
        queue.counters.messages_acknowledged += count
        stats = self.stats  # the channel's acks of this queue, once per run
        (stats.last_queue_counts if queue is stats.last_queue
         else stats.queue_counts(queue)).acked += count
        queue.ack_all(run)
        if consumer is not None:
            self._settled(consumer, queue, count, kick)

    def _settled(self, consumer: Consumer, queue: Queue, count: int, kick: list[Queue]) -> None:
        """`count` deliveries of `consumer` are settled: a full window that opens again
        means its queue may dispatch (`kick`)."""
        self.global_unacked -= count
        unacked = consumer.unacked
        if consumer.prefetch and unacked >= consumer.prefetch > unacked - count:
            kick.append(queue)
        consumer.unacked = unacked - count

    def requeue(self, entries: list[Unacked], returned: bool = True) -> None:
        """Deliveries go back to their queues (in their original places), `returned` by the
        client (nack, reject, recover) or released (its channel closes)."""
        was_blocked = self.global_prefetch and self.global_unacked >= self.global_prefetch
        queues: dict[Queue, None] = {}
        for queue, entry, consumer in entries:
            queue.unacked_count -= 1
            queue.unacked_bytes -= entry.message.body_size
            if consumer is not None:
                consumer.unacked -= 1
                self.global_unacked -= 1
            if queue.deleted:
                queue.discard(entry.message)
            else:
                if returned:
                    queue.requeue(entry)
                else:
                    queue.release(entry)
                queues[queue] = None
        for queue in queues:
            queue.dispatch()
        if was_blocked:
            self.kick_queues()

    def on_recover(self, method: spec.Basic.Recover | spec.Basic.RecoverAsync) -> None:
        if not method.requeue:
            raise AMQPConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, method.index & 0xFFFF)
        self.requeue(self.tags.take_all())
        if isinstance(method, spec.Basic.Recover):
            self.channel.send_method(spec.Basic.RecoverOk())

    def release(self, pending: list[Unacked]) -> None:
        """The channel closes: consumers go first (so nothing is delivered back to it), then
        `pending` (deliveries whose outcome a transaction held) and the unacked deliveries are
        requeued, and only then do the queues hand out again: the requeued messages first, in
        their original places."""
        consumed = {consumer.queue: None for consumer in self.consumers.values()}
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer, dispatch=False)
        self._stop_replies()
        pending.extend(self.tags.take_all())
        self.requeue(pending, returned=False)
        for queue in consumed:
            if not queue.deleted:
                queue.dispatch()
