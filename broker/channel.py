"""A channel: method dispatch, content assembly, publishing (with confirms and transactions),
consumers, deliveries and their acknowledgements."""

from __future__ import annotations

import logging
import re
import struct
from collections import OrderedDict, deque
from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from broker import names, topology
from broker.consumer import Consumer
from broker.exchanges import DelayedExchange, delay_of
from broker.message import Message, QueuedMessage
from broker.names import erlang_pretty
from broker.queue_args import InvalidArgument, check_expiry, validate_consumer_priority
from broker.topology import DIRECT_REPLY_TO
from protocol import codec, properties
from protocol.constants import (
    ACCESS_REFUSED,
    BASIC_ACK,
    BASIC_PUBLISH,
    CHANNEL_ERROR,
    FRAME_BODY,
    FRAME_HEADER,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from protocol.errors import AMQPChannelError, AMQPConnectionError
from protocol.fieldtable import arguments_table

if TYPE_CHECKING:
    from broker.connection import Connection
    from broker.exchanges import Exchange
    from broker.queue import Queue

log = logging.getLogger(__name__)

_USER_ID_FLAG = 0x0010
_REPLY_TO_FLAG = 0x0200
_HEADERS_FLAG = 0x2000
_EXPIRATION_FLAG = 0x0100
_DELIVERY_MODE_FLAG = 0x1000

# Methods whose arguments table is re-read with field types kept: index -> shortstrs before it.
_TYPED_ARGUMENTS = {
    spec.Queue.Declare.index: 1, spec.Exchange.Declare.index: 2, spec.Basic.Consume.index: 2,
}
_CACHE_LIMIT = 1024  # entries in a connection's publish/properties caches

# Content assembly: basic.publish, then a content header, then body frames.
_IDLE, _EXPECT_HEADER, _EXPECT_BODY = 0, 1, 2

# An outstanding delivery: (queue or None for direct reply-to, queued message, consumer or None).
Unacked = tuple["Queue", QueuedMessage, "Consumer | None"]


class Channel:
    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.vhost = connection.vhost
        self.user = connection.user
        self.closing = False
        self.last_queue_name = ""
        self.consumers: dict[str, Consumer] = {}
        self.unacked: OrderedDict[int, Unacked] = OrderedDict()
        self._next_delivery_tag = 1
        self.default_prefetch = 0  # basic.qos global=false: for consumers created afterwards
        self.global_prefetch = 0  # basic.qos global=true: shared by the channel's consumers
        self.global_unacked = 0
        # Content being assembled: the publish method, then header, then body frames.
        self._content_state = _IDLE
        self._publish: codec.Publish | None = None
        self._publish_exchange: Exchange | None = None
        self._props_raw = b""
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
            spec.Channel.FlowOk: lambda method: None,
            spec.Channel.Open: self._on_reopen,
            spec.Basic.Qos: self._on_qos,
            spec.Basic.Consume: self._on_consume,
            spec.Basic.Cancel: self._on_cancel,
            spec.Basic.Get: self._on_get,
            spec.Basic.Ack: lambda m: self.ack(m.delivery_tag, m.multiple),
            spec.Basic.Nack: lambda m: self._settle(m.delivery_tag, m.multiple, m.requeue, 120),
            spec.Basic.Reject: lambda m: self._settle(m.delivery_tag, False, m.requeue, 90),
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
        """One frame for this channel; AMQP errors propagate to the connection."""
        if self.closing:
            self._handle_while_closing(frame_type, payload)
            return
        if frame_type == FRAME_BODY:
            self._on_body(payload)
        elif frame_type == FRAME_HEADER:
            self._on_header(payload)
        else:
            index = codec.method_index(payload)
            if self._content_state != _IDLE:
                raise self._unexpected_content_frame()
            if index == BASIC_PUBLISH:
                # Publishers repeat the same exchange, key and flags: decode each once, and let
                # every message share the strings (less work, less memory per queued message).
                cache = self.connection.publish_cache
                publish = cache.get(payload)
                if publish is None:
                    publish = codec.decode_publish(payload)
                    if len(cache) >= _CACHE_LIMIT:
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
                self.handle_method(method)

    def handle_method(self, method: Any) -> None:
        handler = self._handlers.get(type(method))
        if handler is None:
            raise AMQPConnectionError(
                NOT_IMPLEMENTED if method.index >> 16 not in (10, 20) else UNEXPECTED_FRAME,
                f"{method.name} not allowed here", method.index >> 16, method.index & 0xFFFF,
            )
        handler(method)

    def _handle_while_closing(self, frame_type: int, payload: bytes) -> None:
        """After we sent channel.close, everything but close/close-ok is dropped."""
        if frame_type != 1:
            return
        index = codec.method_index(payload)
        if index == spec.Channel.CloseOk.index:
            self.connection.channel_closed(self)
        elif index == spec.Channel.Close.index:
            self.send_method(spec.Channel.CloseOk())
            self.connection.channel_closed(self)

    # -- channel lifecycle ----------------------------------------------------------------

    def _on_reopen(self, method: spec.Channel.Open) -> None:
        raise AMQPConnectionError(CHANNEL_ERROR, "second 'channel.open' seen", 20, 10)

    def _on_close(self, method: spec.Channel.Close) -> None:
        self.release()
        self.send_method(spec.Channel.CloseOk())
        self.connection.channel_closed(self)

    def _on_close_ok(self, method: spec.Channel.CloseOk) -> None:
        self.connection.channel_closed(self)

    def close_with_error(self, error: AMQPChannelError) -> None:
        """Soft error: tell the client with channel.close and drop what it sends meanwhile."""
        self.release()
        self.closing = True
        self.send_method(
            spec.Channel.Close(error.reply_code, error.reply_text, error.class_id, error.method_id)
        )

    def _on_flow(self, method: spec.Channel.Flow) -> None:
        if not method.active:  # RabbitMQ has never supported client-side flow control
            raise AMQPConnectionError(NOT_IMPLEMENTED, "active=false", 20, 20)
        self.send_method(spec.Channel.FlowOk(True))

    def release(self) -> None:
        """Give back everything the channel holds: consumers go, unacked messages are requeued."""
        self._content_state = _IDLE
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

    # -- publishing -----------------------------------------------------------------------

    def _on_publish(self, publish: codec.Publish) -> None:
        vhost = self.vhost
        if publish.exchange != self._permitted_exchange:
            vhost.check_permission(self.user, "write", "exchange", publish.exchange, 60, 40)
            self._permitted_exchange = publish.exchange
        exchange = vhost.exchanges.get(publish.exchange)
        if exchange is None:
            raise AMQPChannelError(
                404, f"no exchange '{publish.exchange}' in vhost '{vhost.name}'", 60, 40
            )
        if exchange.internal:
            raise AMQPChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal exchange '{publish.exchange}' in vhost "
                f"'{vhost.name}'",
                60, 40,
            )
        if publish.immediate:
            raise AMQPConnectionError(NOT_IMPLEMENTED, "immediate=true", 60, 40)
        self._publish = publish
        self._publish_exchange = exchange
        self._content_state = _EXPECT_HEADER

    def _on_header(self, payload: bytes) -> None:
        if self._content_state != _EXPECT_HEADER:
            raise self._unexpected_content_frame()
        class_id, body_size, props_raw = codec.decode_content_header(payload)
        if len(props_raw) <= 256:  # share identical property bytes between messages
            cache = self.connection.properties_cache
            shared = cache.get(props_raw)
            if shared is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[props_raw] = props_raw
            else:
                props_raw = shared
        if class_id != 60:
            raise AMQPConnectionError(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {class_id} instead",
                60, 40,
            )
        max_size = self.connection.node.config.max_message_size
        if body_size > max_size:
            self._content_state = _IDLE
            raise AMQPChannelError(
                PRECONDITION_FAILED,
                f"message size {body_size} is larger than configured max size "
                f"{max_size}",
                60, 40,
            )
        self._props_raw = props_raw
        self._body_size = body_size
        self._content_state = _EXPECT_BODY
        if body_size == 0:
            self._complete_publish(b"")

    def _on_body(self, payload: bytes) -> None:
        if self._content_state != _EXPECT_BODY:
            raise self._unexpected_content_frame()
        self._body_received += len(payload)
        if self._body_received > self._body_size:
            # Like RabbitMQ: an overrun is not checked here; the content never completes and
            # the next method frame is the error.
            self._body_parts.clear()
            return
        if self._body_received == self._body_size:
            if self._body_parts:
                self._body_parts.append(payload)
                body = b"".join(self._body_parts)
                self._body_parts = []
            else:
                body = payload
            self._complete_publish(body)
        else:
            self._body_parts.append(payload)

    def _unexpected_content_frame(self) -> AMQPConnectionError:
        if self._content_state == _IDLE:
            return AMQPConnectionError(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        if self._content_state == _EXPECT_HEADER:
            return AMQPConnectionError(
                UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
                60, 40,
            )
        return AMQPConnectionError(
            UNEXPECTED_FRAME, "expected content body, got non content body frame instead", 60, 40
        )

    def _complete_publish(self, body: bytes) -> None:
        publish, exchange, props_raw = self._publish, self._publish_exchange, self._props_raw
        self._content_state = _IDLE
        self._publish = None
        self._body_received = 0
        flags = (props_raw[0] << 8) | props_raw[1] if len(props_raw) >= 2 else 0
        if flags & (_USER_ID_FLAG | _REPLY_TO_FLAG):
            props_raw = self._check_special_properties(flags, props_raw)
        cc: tuple[str, ...] = ()
        if flags & _HEADERS_FLAG and (b"\x02CC" in props_raw or b"\x03BCC" in props_raw):
            props_raw, cc = _sender_selected_keys(props_raw)
        message = Message(publish.exchange, publish.routing_key, publish.route_bytes, props_raw,
                          body)
        message.cc = cc
        if flags & _EXPIRATION_FLAG:
            message.expiration = _parse_expiration(properties.get(props_raw, "expiration"))
        if flags & _DELIVERY_MODE_FLAG:
            mode = properties.delivery_mode(props_raw)
            if mode not in (1, 2):
                raise AMQPChannelError(
                    PRECONDITION_FAILED, f"invalid message: {{delivery_mode_unknown,{mode}}}",
                    60, 40,
                )
            message.persistent = mode == 2
        if self.tx_mode:
            self._tx_publishes.append((exchange, message, publish.mandatory))
            return
        ticket = self.route(exchange, message, publish.mandatory)
        if self.confirm_mode:
            self._publish_seq += 1
            if self._nack_next:
                self._nack_next = False
                self._nacked.append(self._publish_seq)
            if ticket:
                self._wait_until_durable(self._publish_seq, ticket)
            self.connection.confirms_due(self)

    def _check_special_properties(self, flags: int, props_raw: bytes) -> bytes:
        properties.validate(props_raw)
        if flags & _USER_ID_FLAG:
            user_id = properties.get(props_raw, "user_id")
            if user_id != self.user.name:
                raise AMQPChannelError(
                    PRECONDITION_FAILED,
                    f"user_id property set to '{user_id}' but authenticated user was "
                    f"'{self.user.name}'",
                    60, 40,
                )
        if flags & _REPLY_TO_FLAG and properties.get(props_raw, "reply_to") == DIRECT_REPLY_TO:
            if self.reply_key is None:
                raise AMQPChannelError(
                    PRECONDITION_FAILED, "fast reply consumer does not exist", 60, 40
                )
            props_raw = properties.replace_shortstr(
                props_raw, "reply_to", f"{DIRECT_REPLY_TO}.{self.reply_key}"
            )
        return props_raw

    def route(self, exchange: Exchange, message: Message, mandatory: bool) -> int:
        """Deliver a complete message to the queues it routes to. Returns the log ticket to wait
        for before confirming (0 when nothing was logged)."""
        node = self.connection.node
        node.messages_received += 1
        self.has_published = True
        if self.confirm_mode:
            node.messages_received_confirm += 1
        ticket = 0
        try:
            queues = ()
            if exchange is self.vhost.default_exchange and message.routing_key.startswith(
                DIRECT_REPLY_TO + "."
            ):
                routed = self._deliver_reply(message)
            elif isinstance(exchange, DelayedExchange) and (delay := delay_of(message)):
                # Held, so routed nowhere yet: a mandatory one is returned now, as the plugin
                # does, and still delivered when its time comes.
                routed = False
                ticket = self.vhost.hold_delayed(exchange, message, delay)
            else:
                queues = self.vhost.route(exchange, message)
                routed = bool(queues)
                exchange.messages_in += 1
                exchange.messages_out += len(queues)
                if routed:
                    ticket, refused = self.vhost.deliver(message, queues)
                    if refused and self.confirm_mode:
                        self._nack_next = True
        except (ValueError, IndexError, KeyError, struct.error) as exc:  # malformed headers
            raise AMQPConnectionError(SYNTAX_ERROR, f"malformed message properties: {exc}") from exc
        if routed:
            node.messages_routed += len(queues) if queues else 1
        elif not mandatory:
            node.messages_unroutable_dropped += 1
        else:
            node.messages_unroutable_returned += 1
            self.connection.write(codec.encode_return(
                self.number, NO_ROUTE, "NO_ROUTE", message.route_bytes, message.props_raw,
                message.body, self.connection.frame_max,
            ))
        return ticket

    def _deliver_reply(self, message: Message) -> bool:
        key = message.routing_key[len(DIRECT_REPLY_TO) + 1 :]
        channel = self.connection.node.reply_channels.get(key)
        if channel is None:
            return False
        channel.deliver_reply(message)
        return True

    def _wait_until_durable(self, seq: int, ticket: int) -> None:
        """Hold the confirm of publish `seq` (and the ones after it) until the log says `ticket`
        is on disk."""
        self._durable_waits.append((seq, ticket))
        if ticket != self._awaited_ticket:
            self._awaited_ticket = ticket
            self.vhost.store.wal.when_durable(ticket, self._log_durable)

    def _log_durable(self) -> None:
        if self.closing or self.connection.channels.get(self.number) is not self:
            return
        durable = self.vhost.store.wal.durable_ticket
        waits = self._durable_waits
        while waits and waits[0][1] <= durable:
            waits.popleft()
        self.flush_confirms()

    def flush_confirms(self) -> None:
        """Confirm every publish handled so far (up to the first one still waiting for the disk):
        one basic.ack (multiple) per run of accepted messages, a basic.nack for each refused one
        (with multiple set, as RabbitMQ does)."""
        upto, done = self._publish_seq, self._confirmed_upto
        if self._durable_waits:
            upto = self._durable_waits[0][0] - 1
        if upto <= done:
            return
        write, number = self.connection.write, self.number
        while self._nacked and self._nacked[0] <= upto:
            nacked = self._nacked.popleft()
            if nacked - 1 > done:
                write(codec.encode_ack(number, nacked - 1, nacked - 1 - done > 1))
            write(codec.encode_nack(number, nacked, True))
            done = nacked
        if upto > done:
            write(codec.encode_ack(number, upto, upto - done > 1))
        self.connection.node.messages_confirmed += upto - self._confirmed_upto
        self._confirmed_upto = upto

    # -- deliveries -----------------------------------------------------------------------

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

    # -- consumers ------------------------------------------------------------------------

    def _on_qos(self, method: spec.Basic.Qos) -> None:
        if method.prefetch_size:
            raise AMQPConnectionError(
                NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})", 60, 10
            )
        if method.global_:
            self.global_prefetch = method.prefetch_count
        else:
            self.default_prefetch = method.prefetch_count
        self.send_method(spec.Basic.QosOk())
        self.kick_queues()

    def _on_consume(self, method: spec.Basic.Consume) -> None:
        tag = method.consumer_tag or names.generate("amq.ctag-")
        if tag in self.consumers or tag == self.reply_consumer_tag:
            raise AMQPConnectionError(
                NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20
            )
        if method.queue == DIRECT_REPLY_TO:
            self._consume_replies(method, tag)
            return
        name = topology.queue_name(self, method.queue, 60, 20)
        self.vhost.check_permission(self.user, "read", "queue", name, 60, 20)
        queue = topology.queue_for(self, name, 60, 20)
        validate_consumer_priority(method.arguments or {}, queue.describe())
        if queue.exclusive_consumer is not None or (method.exclusive and (
            queue.consumers or queue.settings.single_active_consumer
        )):
            raise AMQPChannelError(
                ACCESS_REFUSED, f"{queue.describe()} in exclusive use", 60, 20
            )
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
            raise AMQPChannelError(
                PRECONDITION_FAILED, "reply consumer cannot acknowledge", 60, 20
            )
        if self.reply_key is not None:
            raise AMQPChannelError(
                PRECONDITION_FAILED, "reply consumer already set", 60, 20
            )
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

    def cancel_by_server(self, consumer: Consumer) -> None:
        """The consumed queue went away: tell the client (consumer_cancel_notify)."""
        self.consumers.pop(consumer.tag, None)
        if not self.closing:
            self.send_method(spec.Basic.Cancel(consumer.tag, False))

    def _on_get(self, method: spec.Basic.Get) -> None:
        name = topology.queue_name(self, method.queue, 60, 70)
        self.vhost.check_permission(self.user, "read", "queue", name, 60, 70)
        queue = topology.queue_for(self, name, 60, 70)
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
        node = self.connection.node
        node.messages_delivered += 1
        if method.no_ack:
            node.delivered_get_auto_ack += 1
        else:
            node.delivered_get_manual_ack += 1
        if entry.redelivered:
            node.messages_redelivered += 1

    # -- acknowledgements -----------------------------------------------------------------

    def _take_unacked(
        self, delivery_tag: int, multiple: bool, method_id: int
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
        raise AMQPChannelError(
            PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}", 60, method_id
        )

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, False, 80, acked=True)

    def _settle(
        self, delivery_tag: int, multiple: bool, requeue: bool, method_id: int,
        acked: bool = False,
    ) -> None:
        taken = self._take_unacked(delivery_tag, multiple, method_id)
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

    # -- confirms and transactions --------------------------------------------------------

    def _on_confirm_select(self, method: spec.Confirm.Select) -> None:
        if self.tx_mode:
            raise AMQPChannelError(
                PRECONDITION_FAILED, "cannot switch from tx to confirm mode", 85, 10
            )
        self.confirm_mode = True
        if not method.nowait:
            self.send_method(spec.Confirm.SelectOk())

    def _on_tx_select(self, method: spec.Tx.Select) -> None:
        if self.confirm_mode:
            raise AMQPChannelError(
                PRECONDITION_FAILED, "cannot switch from confirm to tx mode", 90, 10
            )
        self.tx_mode = True
        self.send_method(spec.Tx.SelectOk())

    def _require_tx(self, method_id: int) -> None:
        if not self.tx_mode:
            raise AMQPChannelError(
                PRECONDITION_FAILED, "channel is not transactional", 90, method_id
            )

    def _on_tx_commit(self, method: spec.Tx.Commit) -> None:
        self._require_tx(20)
        publishes, self._tx_publishes = self._tx_publishes, []
        settlements, self._tx_settlements = self._tx_settlements, []
        ticket = 0
        for exchange, message, mandatory in publishes:
            ticket = self.route(exchange, message, mandatory) or ticket
        for _, entry, acked, requeue in settlements:
            self._apply_settlement([entry], acked, requeue)
        if ticket:  # commit-ok promises the persistent messages are on disk
            self.vhost.store.wal.when_durable(ticket, self._send_commit_ok)
        else:
            self._send_commit_ok()

    def _send_commit_ok(self) -> None:
        self.send_if_open(spec.Tx.CommitOk())

    def _on_tx_rollback(self, method: spec.Tx.Rollback) -> None:
        self._require_tx(30)
        self._tx_publishes.clear()
        settlements, self._tx_settlements = self._tx_settlements, []
        restored = dict(self.unacked)
        for tag, entry, _, _ in settlements:
            restored[tag] = entry
        self.unacked = OrderedDict(sorted(restored.items()))
        self.send_method(spec.Tx.RollbackOk())


def _sender_selected_keys(props_raw: bytes) -> tuple[bytes, tuple[str, ...]]:
    """RabbitMQ's sender-selected distribution: the CC and BCC headers (arrays of strings) add
    routing keys; BCC is removed before the message is stored."""
    properties.validate(props_raw)
    headers = properties.get(props_raw, "headers") or {}
    keys: list[str] = []
    for name in ("CC", "BCC"):
        if name not in headers:
            continue
        value = headers[name]
        if not isinstance(value, list):
            raise AMQPChannelError(
                PRECONDITION_FAILED,
                f'invalid message: {{unacceptable_type_in_header,"{name}",'
                f"{names.field_type_name(value)}}}",
                60, 40,
            )
        keys.extend(item.decode() if isinstance(item, bytes | bytearray) else str(item)
                    for item in value)
    if "BCC" in headers:
        props_raw = properties.remove_header(props_raw, "BCC")
    return props_raw, tuple(keys)


_LEADING_INTEGER = re.compile(r"[+-]?[0-9]+")


def _parse_expiration(value: str) -> int:
    """The expiration property as RabbitMQ reads it (Erlang's string:to_integer), or 406."""
    match = _LEADING_INTEGER.match(value)
    try:
        if match is None:
            raise InvalidArgument("no_integer")
        if match.end() != len(value):
            raise InvalidArgument(f'{{leftover_string,"{value[match.end():]}"}}')
        return check_expiry(int(match.group()))
    except InvalidArgument as error:
        prefix = f"invalid expiration '{value}': "
        raise AMQPChannelError(
            PRECONDITION_FAILED, prefix + erlang_pretty(error.term, len(prefix)), 60, 40
        ) from None
