"""The publishing side of a channel: basic.publish and its content header and body frames
assembled into a Message, checked (user_id, reply-to, expiration, delivery mode, CC/BCC) and
routed, with basic.return for an unroutable mandatory message."""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING

from broker import names
from broker.errors import NotImplementedByBroker, PreconditionFailed
from broker.message import Message
from broker.names import erlang_pretty
from broker.queue_args import InvalidArgument, check_expiry
from broker.topology import DIRECT_REPLY_TO
from protocol import codec, properties
from protocol.constants import (
    COMMAND_INVALID,
    NO_ROUTE,
    SYNTAX_ERROR,
    UNEXPECTED_FRAME,
)
from protocol.errors import AMQPConnectionError

if TYPE_CHECKING:
    from broker.exchanges import Exchange

_USER_ID_FLAG = 0x0010
_REPLY_TO_FLAG = 0x0200
_HEADERS_FLAG = 0x2000
_EXPIRATION_FLAG = 0x0100
_DELIVERY_MODE_FLAG = 0x1000

# Content assembly: basic.publish, then a content header, then body frames. The last two states
# assemble the content of a method only servers send (basic.deliver...), refused once complete.
IDLE, EXPECT_HEADER, EXPECT_BODY, UNIMPLEMENTED_HEADER, UNIMPLEMENTED_BODY = 0, 1, 2, 3, 4
CACHE_LIMIT = 1024  # entries in a connection's publish/properties caches


class Publishing:
    """The publishing methods of Channel, whose __init__ sets up the state they use."""

    def _on_publish(self, publish: codec.Publish) -> None:
        exchange = self.vhost.exchange_for_publish(
            self.user, publish.exchange, publish.routing_key,
            publish.exchange == self._permitted_exchange)
        self._permitted_exchange = publish.exchange
        if publish.immediate:
            raise NotImplementedByBroker("immediate=true")
        self._publish = publish
        self._publish_exchange = exchange
        self._content_state = EXPECT_HEADER

    def _on_header(self, payload: bytes) -> None:
        class_id, weight, body_size, props_raw = codec.decode_content_header(payload)
        if self._content_state != EXPECT_HEADER:
            if self._content_state == UNIMPLEMENTED_HEADER:
                self._unimplemented_header(class_id, weight, body_size)
                return
            raise self._unexpected_content_frame()
        if weight or class_id != 60:
            raise self._not_our_header(class_id, weight)
        if len(props_raw) <= 256:
            # Identical property bytes are shared between messages, and checked only once: the
            # cache holds well-formed bytes only.
            cache = self.connection.properties_cache
            shared = cache.get(props_raw)
            if shared is not None:
                props_raw = shared
                self._props_ok = True
            elif properties.well_formed(props_raw):
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[props_raw] = props_raw
                self._props_ok = True
            else:
                self._props_ok = False
        else:
            self._props_ok = properties.well_formed(props_raw)
        max_size = self.connection.node.config.max_message_size
        if body_size > max_size:
            self._content_state = IDLE
            raise PreconditionFailed(
                f"message size {body_size} is larger than configured max size {max_size}"
            )
        self._props_raw = props_raw
        self._body_size = body_size
        self._content_state = EXPECT_BODY
        if body_size == 0:
            self._complete_publish(b"")

    def _on_body(self, payload: bytes) -> None:
        if self._content_state != EXPECT_BODY:
            if self._content_state == UNIMPLEMENTED_BODY:
                self._unimplemented_body(payload)
                return
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
        if self._content_state == IDLE:
            return AMQPConnectionError(
                UNEXPECTED_FRAME, "expected method frame, got non method frame instead"
            )
        if self._content_state in (EXPECT_HEADER, UNIMPLEMENTED_HEADER):
            return AMQPConnectionError(
                UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
                60, self._content_method_id,
            )
        return AMQPConnectionError(
            UNEXPECTED_FRAME, "expected content body, got non content body frame instead", 60,
            self._content_method_id,
        )

    def _not_our_header(self, class_id: int, weight: int) -> AMQPConnectionError:
        """505 for a content header of another class, or with a weight (which RabbitMQ does not
        take for a content header at all)."""
        got = (f"one for class {class_id}" if not weight
               else "non content header frame")
        return AMQPConnectionError(
            UNEXPECTED_FRAME, f"expected content header for class 60, got {got} instead", 60,
            self._content_method_id,
        )

    def expect_unimplemented_content(self, index: int) -> None:
        """A content method only servers send: like RabbitMQ, take its content, then refuse it."""
        self._content_method_id = index & 0xFFFF
        self._content_state = UNIMPLEMENTED_HEADER

    def _unimplemented_header(self, class_id: int, weight: int, body_size: int) -> None:
        if weight or class_id != 60:
            raise self._not_our_header(class_id, weight)
        self._body_size, self._body_received = body_size, 0
        self._content_state = UNIMPLEMENTED_BODY
        if not body_size:
            self._refuse_unimplemented()

    def _unimplemented_body(self, payload: bytes) -> None:
        self._body_received += len(payload)
        if self._body_received >= self._body_size:
            self._refuse_unimplemented()

    def _refuse_unimplemented(self) -> None:
        self._content_state = IDLE
        raise AMQPConnectionError(COMMAND_INVALID, "unimplemented method", 60,
                                  self._content_method_id)

    def _crash(self, error: AMQPConnectionError) -> None:
        """RabbitMQ decodes the properties in the channel process once the message is
        complete, and undecodable ones crash it (541 INTERNAL_ERROR): the message goes nowhere
        and the connection is closed, but only after the frames its reader has already read,
        whose errors come first (Connection.fail_after_input)."""
        self.closing = self.dead = True
        self.connection.fail_after_input(error)

    def _complete_publish(self, body: bytes) -> None:
        publish, exchange, props_raw = self._publish, self._publish_exchange, self._props_raw
        self._content_state = IDLE
        self._publish = None
        self._body_received = 0
        if not self._props_ok:  # refused once complete, as RabbitMQ's channel decodes them
            try:
                properties.validate(props_raw)
            except AMQPConnectionError as error:
                self._crash(error)
                return
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
                raise PreconditionFailed(f"invalid message: {{delivery_mode_unknown,{mode}}}")
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
        if flags & _USER_ID_FLAG:
            user_id = properties.get(props_raw, "user_id")
            if user_id != self.user.name:
                raise PreconditionFailed(
                    f"user_id property set to '{user_id}' but authenticated user was "
                    f"'{self.user.name}'"
                )
        if flags & _REPLY_TO_FLAG and properties.get(props_raw, "reply_to") == DIRECT_REPLY_TO:
            if self.reply_key is None:
                raise PreconditionFailed("fast reply consumer does not exist")
            props_raw = properties.replace_shortstr(
                props_raw, "reply_to", f"{DIRECT_REPLY_TO}.{self.reply_key}"
            )
        return props_raw

    def route(self, exchange: Exchange, message: Message, mandatory: bool) -> int:
        """Publish a complete message (VirtualHost.publish); basic.return if it is unroutable
        and mandatory. Returns the log ticket to wait for before confirming (0: none)."""
        self.has_published = True
        try:
            routed, ticket, refused = self.vhost.publish(
                exchange, message, mandatory=mandatory, confirm=self.confirm_mode)
        except (ValueError, IndexError, KeyError, struct.error) as exc:  # malformed headers
            raise AMQPConnectionError(SYNTAX_ERROR, f"malformed message properties: {exc}") from exc
        if refused and self.confirm_mode:
            self._nack_next = True
        if not routed and mandatory:
            self.connection.write(codec.encode_return(
                self.number, NO_ROUTE, "NO_ROUTE", message.route_bytes, message.props_raw,
                message.body, self.connection.frame_max,
            ))
        return ticket


def _sender_selected_keys(props_raw: bytes) -> tuple[bytes, tuple[str, ...]]:
    """RabbitMQ's sender-selected distribution: the CC and BCC headers (arrays of strings) add
    routing keys; BCC is removed before the message is stored."""
    headers = properties.get(props_raw, "headers") or {}
    keys: list[str] = []
    for name in ("CC", "BCC"):
        if name not in headers:
            continue
        value = headers[name]
        if not isinstance(value, list):
            raise PreconditionFailed(
                f'invalid message: {{unacceptable_type_in_header,"{name}",'
                f"{names.field_type_name(value)}}}"
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
        raise PreconditionFailed(prefix + erlang_pretty(error.term, len(prefix))) from None
