"""A channel: its state, method dispatch and lifecycle. What it does with messages lives in
three mixins: publishing.py (content assembly and routing), delivering.py (consumers,
deliveries, acknowledgements) and confirms.py (publisher confirms, transactions).

This is where the broker core's refusals (broker/errors.py) become AMQP: `handle_frame` turns
a BrokerError raised while handling a frame into a channel or connection close with the reply
code of its kind and the class and method ids of the method being handled (basic.publish for
its content frames). The try costs nothing on the way through (Python 3.11's exceptions)."""

from __future__ import annotations

from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from broker import topology
from broker.confirms import ConfirmsAndTransactions
from broker.consumer import Consumer
from broker.delivering import Delivering, Unacked
from broker.errors import BrokerError
from broker.message import Message
from broker.publishing import CACHE_LIMIT, EXPECT_BODY, EXPECT_HEADER, IDLE, Publishing
from protocol import codec
from protocol.constants import (
    BASIC_ACK,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    NOT_IMPLEMENTED,
)
from protocol.errors import (
    AMQPChannelError,
    AMQPConnectionError,
    AMQPError,
    named_error,
    unexpected_frame,
)
from protocol.fieldtable import arguments_table

if TYPE_CHECKING:
    from broker.connection import Connection
    from broker.exchanges import Exchange


# Methods whose arguments table is re-read with field types kept: index -> shortstrs before it.
_TYPED_ARGUMENTS = {
    spec.Queue.Declare.index: 1, spec.Exchange.Declare.index: 2, spec.Basic.Consume.index: 2,
}
# Methods followed by content: basic.publish, and those only a server sends, whose content
# RabbitMQ still assembles before it refuses them.
SERVER_CONTENT_METHODS = frozenset(
    (spec.Basic.Return.index, spec.Basic.Deliver.index, spec.Basic.GetOk.index)
)

def amqp_error(error: BrokerError, index: int) -> AMQPError:
    """The close a refusal of the broker core gets, for the method with `index`
    (class << 16 | method)."""
    return named_error(error.kind, error.text, index >> 16, index & 0xFFFF)


class Channel(Publishing, Delivering, ConfirmsAndTransactions):
    """One AMQP channel of a connection. All of its state is set up here."""

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.vhost = connection.vhost
        self.user = connection.user
        self.closing = False
        # Frames are only checked, never acted on (_handle_while_dead): after a message whose
        # properties do not decode (a 541 is due, see _crash), or before channel.open (then
        # `_refusal` is raised once the content of the first method is complete).
        self.dead = False
        self._refusal: AMQPConnectionError | None = None
        self.last_queue_name = ""
        self.consumers: dict[str, Consumer] = {}
        self._held_cancels: list[str] | None = None  # basic.cancel to send after a reply
        self.unacked: OrderedDict[int, Unacked] = OrderedDict()
        self._next_delivery_tag = 1
        self.default_prefetch = 0  # basic.qos global=false: for consumers created afterwards
        self.global_prefetch = 0  # basic.qos global=true: shared by the channel's consumers
        self.global_unacked = 0
        # Content being assembled: the publish method, then header, then body frames.
        self._content_state = IDLE
        self._content_method_id = 40  # basic.publish, or a method only servers send
        self._publish: codec.Publish | None = None
        self._publish_exchange: Exchange | None = None
        self._props_raw = b""
        self._props_ok = True  # whether _props_raw are well-formed property bytes
        self._permitted_exchange: str | None = None  # last exchange we checked write access to
        self._body_size = 0
        self._body_parts: list[bytes] = []
        self._body_received = 0
        # Publisher confirms and transactions.
        self.confirm_mode = False
        self.has_published = False  # a publisher, for rabbitmq_global_publishers
        self._publish_seq = 0
        self._confirmed_upto = 0
        self._nacked: deque[int] = deque()  # publish seqs to nack rather than ack
        self._nack_next = False  # a queue refused the message being routed
        self._durable_waits: deque[tuple[int, int]] = deque()  # (publish seq, log ticket)
        self._awaited_ticket = 0
        self.tx_mode = False
        self._tx_publishes: list[tuple[Exchange, Message, bool]] = []
        self._tx_settlements: list[tuple[int, Unacked, bool, bool]] = []
        # Direct reply-to: the consumer tag and the key replies are addressed to.
        self.reply_consumer_tag: str | None = None
        self.reply_key: str | None = None
        self._handlers = {
            method_class: partial(handler, self)
            for method_class, handler in topology.HANDLERS.items()
        }
        self._handlers.update(self._own_handlers())

    def _own_handlers(self) -> dict[type, Any]:
        return {
            spec.Channel.Close: self._on_close,
            spec.Channel.CloseOk: self._on_close_ok,
            spec.Channel.Flow: self._on_flow,
            codec.AccessRequest: lambda method: self.send_method(
                codec.unchecked(codec.AccessRequestOk, ticket=1)),
            spec.Channel.Open: self._on_reopen,
            spec.Basic.Qos: self._on_qos,
            spec.Basic.Consume: self._on_consume,
            spec.Basic.Cancel: self._on_cancel,
            spec.Basic.Get: self._on_get,
            spec.Basic.Ack: lambda m: self.ack(m.delivery_tag, m.multiple),
            spec.Basic.Nack: lambda m: self._settle(m.delivery_tag, m.multiple, m.requeue),
            spec.Basic.Reject: lambda m: self._settle(m.delivery_tag, False, m.requeue),
            spec.Basic.Recover: self._on_recover,
            spec.Basic.RecoverAsync: self._on_recover,
            spec.Confirm.Select: self._on_confirm_select,
            spec.Tx.Select: self._on_tx_select,
            spec.Tx.Commit: self._on_tx_commit,
            spec.Tx.Rollback: self._on_tx_rollback,
        }

    # -- output ---------------------------------------------------------------------------

    def send_if_open(self, method: Any) -> None:
        """A reply that waited (for the disk): dropped if the channel went meanwhile."""
        if not self.closing and self.connection.channels.get(self.number) is self:
            self.send_method(method)

    def send_method(self, method: Any) -> None:
        self.connection.write(codec.encode_method(self.number, method))

    # -- input ----------------------------------------------------------------------------

    def handle_frame(self, frame_type: int, payload: bytes) -> None:
        """One frame for this channel; AMQP errors propagate to the connection, and so do the
        broker core's refusals, made AMQP errors of the method being handled. What kind of
        frame it is is checked first, as codec.check_frame does (inline here: hot path)."""
        if self.closing:
            self._handle_while_closing(frame_type, payload)
            return
        try:
            if frame_type == FRAME_BODY:
                self._on_body(payload)
            elif frame_type == FRAME_HEADER:
                self._on_header(payload)
            elif frame_type != FRAME_METHOD or len(payload) < 4:
                codec.check_frame(frame_type, payload)
                raise unexpected_frame(frame_type, payload)  # a heartbeat
            else:
                index = codec.method_index(payload)
                if self._content_state != IDLE:
                    raise self._unexpected_content_frame()
                if index == BASIC_PUBLISH:
                    # Publishers repeat the same exchange, key and flags: decode each once, and let
                    # every message share the strings (less work, less memory per queued message).
                    cache = self.connection.publish_cache
                    publish = cache.get(payload)
                    if publish is None:
                        publish = codec.decode_publish(payload)
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        cache[payload] = publish
                    self._on_publish(publish)
                elif index == BASIC_ACK:
                    ack = codec.decode_ack(payload)
                    self.ack(ack.delivery_tag, ack.multiple)
                else:
                    method = codec.decode_method(index, payload)
                    if index in _TYPED_ARGUMENTS:
                        # Keep the field types of arguments: RabbitMQ names them in its replies.
                        method.arguments = arguments_table(payload, _TYPED_ARGUMENTS[index])
                    elif index in SERVER_CONTENT_METHODS:
                        self.expect_unimplemented_content(index)
                        return
                    self.handle_method(method)
        except BrokerError as error:
            index = codec.method_index(payload) if frame_type == FRAME_METHOD else BASIC_PUBLISH
            raise amqp_error(error, index) from None

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
        if self.dead:
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
        channel.closing = channel.dead = True
        channel._content_method_id = index & 0xFFFF
        channel._content_state = EXPECT_HEADER
        channel._refusal = AMQPConnectionError(
            CHANNEL_ERROR, "expected 'channel.open'", index >> 16, index & 0xFFFF
        )
        return channel

    def _handle_while_dead(self, frame_type: int, payload: bytes) -> None:
        """A frame for a channel whose frames are only checked (see `dead`): as RabbitMQ's
        reader checks them, frame kind and content order, whose errors come first; dropped."""
        codec.check_frame(frame_type, payload)
        state = self._content_state
        if frame_type == FRAME_METHOD:
            if state != IDLE:
                raise self._unexpected_content_frame()
            index = codec.method_index(payload)
            codec.decode_method(index, payload)
            if index == BASIC_PUBLISH or index in SERVER_CONTENT_METHODS:
                self._content_method_id = index & 0xFFFF
                self._content_state = EXPECT_HEADER
            return
        if frame_type == FRAME_HEADER:
            if state != EXPECT_HEADER:
                raise self._unexpected_content_frame()
            class_id, weight, self._body_size, _ = codec.decode_content_header(payload)
            if weight or class_id != 60:
                raise self._not_our_header(class_id, weight)
            self._body_received = 0
            self._content_state = EXPECT_BODY
        elif frame_type == FRAME_BODY:
            if state != EXPECT_BODY:
                raise self._unexpected_content_frame()
            self._body_received += len(payload)
        else:
            raise unexpected_frame(frame_type, payload)
        if self._body_received >= self._body_size:  # the content is complete
            self._content_state = IDLE
            if self._refusal is not None:
                raise self._refusal

    # -- channel lifecycle ----------------------------------------------------------------

    def _on_reopen(self, method: spec.Channel.Open | None) -> None:
        raise AMQPConnectionError(CHANNEL_ERROR, "second 'channel.open' seen", 20, 10)

    def _on_close(self, method: spec.Channel.Close) -> None:
        self.release()
        self.closing = True  # until close-ok is sent: the client must not send anything
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
        self.closing = True
        self.end_confirms()
        self.send_method(
            spec.Channel.Close(error.reply_code, error.reply_text, error.class_id, error.method_id)
        )

    def _on_flow(self, method: spec.Channel.Flow) -> None:
        if not method.active:  # RabbitMQ has never supported client-side flow control
            raise AMQPConnectionError(NOT_IMPLEMENTED, "active=false", 20, 20)
        self.send_method(spec.Channel.FlowOk(True))

    def release(self) -> None:
        """Give back everything the channel holds: consumers go, unacked messages are requeued."""
        self._content_state = IDLE
        self._publish = None
        # Consumers go first (so nothing is delivered back to this channel), then the unacked
        # messages are requeued, and only then do the queues hand out again: the requeued
        # messages first, in their original places.
        consumed = {consumer.queue: None for consumer in self.consumers.values()}
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer, dispatch=False)
        if self.reply_key is not None:
            self.connection.node.reply_channels.pop(self.reply_key, None)
            self.reply_key = self.reply_consumer_tag = None
        pending = [unacked for _, unacked, _, _ in self._tx_settlements]
        self._tx_settlements.clear()
        self._tx_publishes.clear()
        pending.extend(self.unacked.values())
        self.unacked.clear()
        self._requeue(pending)
        for queue in consumed:
            if not queue.deleted:
                queue.dispatch()
