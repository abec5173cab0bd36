"""A channel: its lifecycle (protocol/channelstate.py: open, closing, dead) and method
dispatch. What it does with messages is owned by four
collaborators, each with its own state: `publishing` (publishing.py: content assembly and
routing), `deliveries` (delivering.py: consumers, qos, delivery tags and the outcome of each
delivery), `confirms` (protocol/confirms.py: which publishes are confirmed; the channel sends
them, and waits for the log where a publish needs it) and `transaction`
(protocol/transactions.py: what tx.commit applies). The channel is its consumers'
`DeliveryTarget` (broker/consumer.py): `deliver`, `can_deliver` and `cancelled` are its
`deliveries`' methods.

This is where the broker core's refusals (broker/errors.py) become AMQP: `handle_frame` turns
a BrokerError raised while handling a frame into a channel or connection close with the reply
code of its kind and the class and method ids of the method being handled (basic.publish for
its content frames). The try costs nothing on the way through (Python 3.11's exceptions)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from broker import topology
from broker.channel_stats import ChannelStats
from broker.delivering import Deliveries, Unacked
from broker.errors import BrokerError, PreconditionFailed
from broker.publishing import CACHE_LIMIT, HeldPublish, Publishing
from broker.tracing import Origin
from protocol import codec
from protocol.channelstate import BROKER_CLOSE, CLIENT_CLOSE, DEAD, ChannelLifecycle
from protocol.confirms import ConfirmTracker
from protocol.constants import (
    BASIC_ACK,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    CLASS_CHANNEL,
    COMMAND_INVALID,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    NOT_IMPLEMENTED,
)
from protocol.content import IDLE
from protocol.errors import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    named_error,
    unexpected_frame,
)
from protocol.fieldtable import arguments_table
from protocol.transactions import TransactionBuffer

if TYPE_CHECKING:
    from collections.abc import Callable

    from broker.connection import Connection


# Methods whose arguments table is re-read with field types kept: index -> shortstrs before it.
_TYPED_ARGUMENTS = {
    spec.Queue.Declare.index: 1, spec.Exchange.Declare.index: 2, spec.Basic.Consume.index: 2,
}
# Methods followed by content: basic.publish, and those only a server sends, whose content
# RabbitMQ still assembles before it refuses them.
SERVER_CONTENT_METHODS = frozenset(
    (spec.Basic.Return.index, spec.Basic.Deliver.index, spec.Basic.GetOk.index)
)

_unpack_method_index = codec.unpack_method_index


def amqp_error(error: BrokerError, index: int) -> AMQPError:
    """The close a refusal of the broker core gets, for the method with `index`
    (class << 16 | method)."""
    return named_error(error.kind, error.text, index >> 16, index & 0xFFFF)


class Channel:
    """One AMQP channel of a connection: its lifecycle, and the frames it takes, handed to
    its collaborators."""

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.vhost = connection.vhost
        self.user = connection.user
        # OPEN, CLOSING or DEAD (protocol/channelstate.py). A DEAD channel's frames are only
        # checked, never acted on (_handle_while_dead): after a message whose properties do
        # not decode (a 541 is due, see Publishing._crash), or before channel.open (then
        # `_refusal` is raised once the content of the first method is complete).
        self.lifecycle = ChannelLifecycle()
        self._refusal: AMQPConnectionError | None = None
        self.last_queue_name = ""
        self.transaction: TransactionBuffer[HeldPublish, Unacked] = TransactionBuffer()
        self.confirms = ConfirmTracker()
        self.stats = ChannelStats()  # read by the management API
        self.deliveries = deliveries = Deliveries(self, self.transaction)
        self.publishing = publishing = Publishing(self, deliveries, self.confirms,
                                                  self.transaction)
        # Bound methods kept as attributes: one lookup on the hot path (queue dispatch, frames)
        # and what the connection and the queues call, in one place.
        self.can_deliver = deliveries.can_deliver  # the DeliveryTarget methods
        self.deliver = deliveries.deliver
        self.deliver_run = deliveries.deliver_run
        self.cancelled = deliveries.cancelled
        self.kick_queues = deliveries.kick_queues
        self._content = publishing.content
        self._on_publish = publishing.on_publish
        self._on_header = publishing.on_header
        self._content_body = publishing.content.body
        self._complete_publish = publishing.complete
        self._publish_whole = publishing.publish_whole
        self._ack = deliveries.ack
        self._handlers = {
            method_class: partial(handler, self)
            for method_class, handler in topology.HANDLERS.items()
        }
        self._handlers.update(self._own_handlers())

    def _own_handlers(self) -> dict[type, Any]:
        deliveries = self.deliveries
        return {
            spec.Channel.Close: self._on_close,
            spec.Channel.CloseOk: self._on_close_ok,
            spec.Channel.Flow: self._on_flow,
            codec.AccessRequest: lambda method: self.send_method(
                codec.unchecked(codec.AccessRequestOk, ticket=1)),
            spec.Channel.Open: self._on_reopen,
            spec.Basic.Qos: deliveries.on_qos,
            spec.Basic.Consume: deliveries.on_consume,
            spec.Basic.Cancel: deliveries.on_cancel,
            spec.Basic.Get: deliveries.on_get,
            spec.Basic.Ack: lambda m: deliveries.ack(m.delivery_tag, m.multiple),
            spec.Basic.Nack: lambda m: deliveries.reject(m.delivery_tag, m.multiple, m.requeue,
                                                         nack=True),
            spec.Basic.Reject: lambda m: deliveries.reject(m.delivery_tag, False, m.requeue,
                                                           nack=False),
            spec.Basic.Recover: deliveries.on_recover,
            spec.Basic.RecoverAsync: deliveries.on_recover,
            spec.Confirm.Select: self._on_confirm_select,
            spec.Tx.Select: self._on_tx_select,
            spec.Tx.Commit: self._on_tx_commit,
            spec.Tx.Rollback: self._on_tx_rollback,
        }

    def trace_origin(self) -> Origin:
        """Who the firehose names for this channel's publishes and deliveries."""
        return Origin(self.connection.display_name, self.number, self.user.name)

    # -- output ---------------------------------------------------------------------------

    def send_if_open(self, method: Any) -> None:
        """A reply that waited (for the disk): dropped if the channel went meanwhile."""
        if self.lifecycle.is_open and self.connection.channels.get(self.number) is self:
            self.send_method(method)

    def send_method(self, method: Any) -> None:
        self.connection.write(codec.encode_method(self.number, method))

    # -- input ----------------------------------------------------------------------------

    def handle_frame(self, frame_type: int, payload: bytes) -> None:
        """One frame for this channel; AMQP errors propagate to the connection, and so do the
        broker core's refusals, made AMQP errors of the method being handled. What kind of
        frame it is is checked first, as codec.check_frame does (inline here: hot path)."""
        if self.lifecycle.state:  # not open
            self._handle_while_closing(frame_type, payload)
            return
        try:
            if frame_type == FRAME_BODY:
                body = self._content_body(payload)
                if body is not None:
                    self._complete_publish(body)
            elif frame_type == FRAME_HEADER:
                self._on_header(payload)
            elif frame_type != FRAME_METHOD or len(payload) < 4:
                codec.check_frame(frame_type, payload)
                raise unexpected_frame(frame_type, payload)  # a heartbeat
            else:
                index = _unpack_method_index(payload)[0]
                if self._content.state != IDLE:
                    raise self._content.unexpected()
                if index == BASIC_PUBLISH:
                    self._on_publish(self._decoded_publish(payload))
                elif index == BASIC_ACK:
                    ack = codec.decode_ack(payload)
                    self._ack(ack.delivery_tag, ack.multiple)
                else:
                    method = codec.decode_method(index, payload)
                    if index in _TYPED_ARGUMENTS:
                        # Keep the field types of arguments: RabbitMQ names them in its replies.
                        method.arguments = arguments_table(payload, _TYPED_ARGUMENTS[index])
                    elif index in SERVER_CONTENT_METHODS:
                        # Like RabbitMQ: its content is taken, then the method refused.
                        self._content.start(index, keep=False, refusal=AMQPConnectionError(
                            COMMAND_INVALID, "unimplemented method", 60, index & 0xFFFF))
                        return
                    self.handle_method(method)
        except BrokerError as error:
            index = codec.method_index(payload) if frame_type == FRAME_METHOD else BASIC_PUBLISH
            raise amqp_error(error, index) from None

    def publish_whole(self, content: codec.PublishContent) -> bool:
        """basic.publish with its whole content, repeated for each of its bodies, which the
        frame reader found together (codec.PUBLISH_CONTENT), taken as their frames would be.
        False, having done nothing, where the channel is not open or is assembling a content:
        the frames go through `handle_frame` one by one then."""
        if self.lifecycle.state or self._content.state != IDLE:
            return False
        payload, props_raw, bodies = content
        try:
            self._publish_whole(self._decoded_publish(payload), props_raw, bodies)
        except BrokerError as error:
            raise amqp_error(error, BASIC_PUBLISH) from None
        return True

    def _decoded_publish(self, payload: bytes) -> codec.Publish:
        # Publishers repeat the same exchange, key and flags: decode each once, and let every
        # message share the strings (less work, less memory per queued message).
        cache = self.connection.publish_cache
        publish = cache.get(payload)
        if publish is None:
            publish = codec.decode_publish(payload)
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[payload] = publish
        return publish

    def handle_method(self, method: Any) -> None:
        handler = self._handlers.get(type(method))
        if handler is None:  # what RabbitMQ's channel does not take: methods servers send
            raise AMQPConnectionError(COMMAND_INVALID, "unimplemented method",
                                      method.index >> 16, method.index & 0xFFFF)
        handler(method)

    def _handle_while_closing(self, frame_type: int, payload: bytes) -> None:
        """After we sent channel.close, everything but close/close-ok is dropped. A close of the
        client's crossing ours gets close-ok, and the channel stays closing until the client's
        close-ok arrives (as RabbitMQ keeps it): only that frees the number."""
        if self.lifecycle.state == DEAD:
            self._handle_while_dead(frame_type, payload)
            return
        codec.check_frame(frame_type, payload)
        if frame_type != FRAME_METHOD:
            return
        index = codec.method_index(payload)
        if index == spec.Channel.CloseOk.index:
            self.connection.channel_closed(self)
        elif index == spec.Channel.Close.index:
            self.send_method(spec.Channel.CloseOk())
        elif index == spec.Channel.Open.index:
            self._on_reopen(None)

    @classmethod
    def awaiting_content(cls, connection: Connection, number: int, index: int) -> Channel:
        """A channel never opened that got a content method: RabbitMQ's reader assembles the
        content before the channel sees the method and wants channel.open instead."""
        channel = cls(connection, number)
        channel.lifecycle = ChannelLifecycle(DEAD)
        channel._refusal = AMQPConnectionError(
            CHANNEL_ERROR, "expected 'channel.open'", index >> 16, index & 0xFFFF
        )
        channel._content.start(index, keep=False, refusal=channel._refusal)
        return channel

    def _handle_while_dead(self, frame_type: int, payload: bytes) -> None:
        """A frame for a channel whose frames are only checked (DEAD): as RabbitMQ's
        reader checks them, frame kind and content order, whose errors come first; dropped."""
        codec.check_frame(frame_type, payload)
        content = self._content
        if frame_type == FRAME_METHOD:
            if content.state != IDLE:
                raise content.unexpected()
            index = codec.method_index(payload)
            codec.decode_method(index, payload)
            if index == BASIC_PUBLISH or index in SERVER_CONTENT_METHODS:
                content.start(index, keep=False, refusal=self._refusal)
        elif frame_type == FRAME_HEADER:
            content.header(payload)
        elif frame_type == FRAME_BODY:
            content.body(payload)
        else:
            raise unexpected_frame(frame_type, payload)

    # -- channel lifecycle ----------------------------------------------------------------

    def _on_reopen(self, method: spec.Channel.Open | None) -> None:
        raise AMQPConnectionError(CHANNEL_ERROR, "second 'channel.open' seen", CLASS_CHANNEL, 10)

    def _on_close(self, method: spec.Channel.Close) -> None:
        self.release()
        self.lifecycle.on(CLIENT_CLOSE)  # until close-ok is sent: the client must not send
        self.when_confirmed(self._send_close_ok)

    def _send_close_ok(self) -> None:
        if self.connection.channels.get(self.number) is self:
            self.send_method(spec.Channel.CloseOk())
            self.connection.channel_closed(self)

    def _on_close_ok(self, method: spec.Channel.CloseOk) -> None:
        self.connection.channel_closed(self)

    def close_with_error(self, error: AMQPChannelError) -> None:
        """Soft error: tell the client with channel.close and drop what it sends meanwhile."""
        self.release()
        self.lifecycle.on(BROKER_CLOSE)
        self.flush_confirms()
        self.confirms.end()
        self.send_method(
            spec.Channel.Close(error.reply_code, error.reply_text, error.class_id, error.method_id)
        )

    def _on_flow(self, method: spec.Channel.Flow) -> None:
        if not method.active:  # RabbitMQ has never supported client-side flow control
            raise AMQPConnectionError(NOT_IMPLEMENTED, "active=false", CLASS_CHANNEL, 20)
        self.send_method(spec.Channel.FlowOk(True))

    def _on_confirm_select(self, method: spec.Confirm.Select) -> None:
        if self.transaction.active:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self.confirms.active = True
        self.stats.confirm_mode()
        if not method.nowait:
            self.send_method(spec.Confirm.SelectOk())

    def _on_tx_select(self, method: spec.Tx.Select) -> None:
        if self.confirms.active:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self.transaction.active = True
        self.send_method(spec.Tx.SelectOk())

    def _on_tx_commit(self, method: spec.Tx.Commit) -> None:
        """Put the held publishes (routed when published) into their queues, apply the held
        outcomes; commit-ok once the persistent messages among them are on disk."""
        publishes, outcomes = self.transaction.commit()
        ticket = 0
        for publish in publishes:
            ticket = self.publishing.commit(publish) or ticket
        for outcome in outcomes:
            self.deliveries.apply_outcome([outcome.delivery], outcome.acked, outcome.requeue)
        if ticket:  # commit-ok promises the persistent messages are on disk
            self.vhost.store.wal.when_durable(ticket, self._send_commit_ok)
        else:
            self._send_commit_ok()

    def _send_commit_ok(self) -> None:
        self.send_if_open(spec.Tx.CommitOk())

    def _on_tx_rollback(self, method: spec.Tx.Rollback) -> None:
        self.deliveries.tags.restore(self.transaction.rollback())
        self.send_method(spec.Tx.RollbackOk())

    # -- publisher confirms: the tracker's confirms sent, the log awaited -----------------

    def confirm_later(self, ticket: int, refused: bool) -> None:
        """A publish in confirm mode was routed: confirmed at the end of this input, or once
        the log `ticket` (when not 0) is durable; nacked if a queue `refused` it."""
        if self.confirms.published(refused, ticket):
            self.vhost.store.wal.when_durable(ticket, self._log_durable)
        self.connection.confirms_due(self)

    def _log_durable(self) -> None:
        if not self.lifecycle.is_open or self.connection.channels.get(self.number) is not self:
            return
        self.confirms.durable(self.vhost.store.wal.durable_ticket)
        self.flush_confirms()

    def flush_confirms(self) -> None:
        """Send the confirms due: every publish handled so far, up to the first one still
        waiting for the disk."""
        confirms = self.confirms
        before = confirms.confirmed_upto
        due = confirms.due()
        if not due:
            return
        write, number = self.connection.write, self.number
        acked = 0
        for confirm in due:  # (each covers the publishes after the one before it)
            if confirm.nack:  # not counted as confirmed, as by RabbitMQ
                write(codec.encode_nack(number, confirm.delivery_tag, confirm.multiple))
            else:
                write(codec.encode_ack(number, confirm.delivery_tag, confirm.multiple))
                self.stats.count_confirms(before, confirm.delivery_tag)
                acked += confirm.delivery_tag - before
            before = confirm.delivery_tag
        self.connection.node.messages_confirmed += acked

    def when_confirmed(self, callback: Callable[[], None]) -> None:
        """Send the confirms of every publish so far, waiting for the disk where a persistent
        message needs it, then call back (at once when nothing waits): a channel's confirms
        all go out before its close-ok, never after."""
        self.flush_confirms()
        ticket = self.confirms.last_ticket
        if not ticket:
            callback()
            return

        def durable() -> None:
            self.confirms.all_durable()
            self.flush_confirms()
            callback()

        self.vhost.store.wal.when_durable(ticket, durable)

    def release(self) -> None:
        """Give back everything the channel holds: consumers go, unacked messages (and those
        whose outcome a transaction held) are requeued, a content being assembled is dropped."""
        self.publishing.reset()
        self.deliveries.release(self.transaction.clear())
