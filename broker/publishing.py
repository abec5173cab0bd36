"""The publishing side of a channel, `Publishing`: basic.publish and its content header and
body frames assembled into a Message, checked (user_id, reply-to, expiration, delivery mode,
CC/BCC) and routed, with basic.return for an unroutable mandatory message; then handed to the
channel's confirms (protocol/confirms.py), or, in a transaction, routed but held by it
(protocol/transactions.py) until tx.commit puts it into its queues."""

from __future__ import annotations

import re
import struct
from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple

from broker import names
from broker.errors import NotImplementedByBroker, PreconditionFailed
from broker.message import Message
from broker.names import erlang_pretty
from broker.queue_args import InvalidArgument, check_expiry
from broker.topology import DIRECT_REPLY_TO
from protocol import codec, properties
from protocol.channelstate import CRASH
from protocol.confirms import ConfirmTracker
from protocol.constants import BASIC_PUBLISH, NO_ROUTE, SYNTAX_ERROR
from protocol.content import ContentAssembly
from protocol.errors import AMQPConnectionError
from protocol.transactions import TransactionBuffer

if TYPE_CHECKING:
    from broker.channel import Channel
    from broker.delivering import Deliveries, Unacked
    from broker.exchanges import Exchange
    from broker.queue import Queue

_USER_ID_FLAG = 0x0010
_REPLY_TO_FLAG = 0x0200
_HEADERS_FLAG = 0x2000
_EXPIRATION_FLAG = 0x0100
_DELIVERY_MODE_FLAG = 0x1000

CACHE_LIMIT = 1024  # entries in a connection's publish/properties caches


class PropertyFacts:
    """What publishing needs to know of one set of well-formed property bytes, found once for
    bytes a connection sends again and again (its properties cache): the bytes themselves
    (shared by the messages), whether they are `plain` (no user_id or reply-to to check, no
    expiration to parse, no CC or BCC header, a delivery mode of none, 1 or 2: a message is
    made from them as they are) and, if so, whether the message is persistent."""

    __slots__ = ("raw", "plain", "persistent")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        flags = (raw[0] << 8) | raw[1]
        mode = properties.delivery_mode(raw) if flags & _DELIVERY_MODE_FLAG else None
        self.plain = not (
            flags & (_USER_ID_FLAG | _REPLY_TO_FLAG | _EXPIRATION_FLAG)
            or flags & _HEADERS_FLAG and (b"\x02CC" in raw or b"\x03BCC" in raw)
            or mode not in (None, 1, 2)
        )
        self.persistent = mode == 2


class HeldPublish(NamedTuple):
    """A message published in a transaction: routed (and traced) at basic.publish, as RabbitMQ
    does, put into the queues its routing named at tx.commit (VirtualHost.route_publish,
    put_routed)."""

    exchange: Exchange
    message: Message
    mandatory: bool
    queues: Collection[Queue] | None  # None: held by a delayed exchange
    ticket: int  # the delayed exchange's log ticket, or 0


class Publishing:
    """A channel's publishes: the content being assembled, and what is routed where."""

    def __init__(self, channel: Channel, deliveries: Deliveries, confirms: ConfirmTracker,
                 transaction: TransactionBuffer[HeldPublish, Unacked]) -> None:
        self.channel = channel
        self.connection = channel.connection
        self.vhost = channel.vhost
        self.user = channel.user
        self.deliveries = deliveries  # for the direct reply-to consumer's key
        self.confirms = confirms
        self.transaction = transaction
        self.has_published = False  # a publisher, for rabbitmq_global_publishers
        self._permitted_exchange: str | None = None  # last exchange we checked write access to
        # The content being assembled: its frames in content, the publish it follows here.
        self.content = ContentAssembly()
        self._publish: codec.Publish | None = None
        self._publish_exchange: Exchange | None = None
        self._props_raw = b""
        self._props_ok = True  # whether _props_raw are well-formed property bytes
        self._facts: PropertyFacts | None = None  # of _props_raw, when they are cached
        self._max_size = self.connection.node.config.max_message_size

    def reset(self) -> None:
        """The channel closes: a content being assembled is dropped."""
        self.content.reset()
        self._publish = None

    def on_publish(self, publish: codec.Publish) -> None:
        self._take_publish(publish)
        self.content.start(BASIC_PUBLISH)

    def on_header(self, payload: bytes) -> None:
        taken = self.content.header(payload)
        if taken is None:  # content only checked (of a method only servers send)
            return
        props_raw, body_size = taken
        self._take_properties(props_raw, body_size)
        if body_size == 0:
            self.complete(b"")

    def publish_whole(self, publish: codec.Publish, props_raw: bytes, bodies: list[bytes]
                      ) -> None:
        """basic.publish with its whole content, once for each of `bodies` (the same publish
        repeated, which the frame reader found together: codec.PUBLISH_CONTENT): what
        on_publish, on_header and complete do, in one step per message. (Nothing a message
        does changes what `_take_publish` found for the next: it is asked once.)"""
        self._take_publish(publish)
        facts = self.connection.properties_cache.get(props_raw)
        if facts is None or not facts.plain:
            lifecycle = self.channel.lifecycle
            for body in bodies:
                if lifecycle.state:  # the channel crashed (541): what follows is dropped
                    return
                self._publish = publish
                self._take_properties(props_raw, len(body))
                self.complete(body)
            return
        self._publish = None
        exchange, mandatory, max_size = self._publish_exchange, publish.mandatory, self._max_size
        for body in bodies:
            if len(body) > max_size:
                self._check_size(len(body))
            message = Message(publish.exchange, publish.routing_key, publish.route_bytes,
                              facts.raw, body)
            message.persistent = facts.persistent
            self._publish_message(exchange, message, mandatory)

    def _take_publish(self, publish: codec.Publish) -> None:
        exchange = self.vhost.exchange_for_publish(
            self.user, publish.exchange, publish.routing_key,
            publish.exchange == self._permitted_exchange)
        self._permitted_exchange = publish.exchange
        if publish.immediate:
            raise NotImplementedByBroker("immediate=true")
        self._publish = publish
        self._publish_exchange = exchange

    def _take_properties(self, props_raw: bytes, body_size: int) -> None:
        facts = None
        if len(props_raw) <= 256:
            # Identical property bytes are shared between messages, and checked only once: the
            # cache holds well-formed bytes only.
            cache = self.connection.properties_cache
            facts = cache.get(props_raw)
            if facts is not None:
                props_raw = facts.raw
                self._props_ok = True
            elif properties.well_formed(props_raw):
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                facts = cache[props_raw] = PropertyFacts(props_raw)
                self._props_ok = True
            else:
                self._props_ok = False
        else:
            self._props_ok = properties.well_formed(props_raw)
        self._check_size(body_size)
        self._props_raw = props_raw
        self._facts = facts

    def _check_size(self, body_size: int) -> None:
        if body_size > self._max_size:
            self.content.reset()
            raise PreconditionFailed(
                f"message size {body_size} is larger than configured max size {self._max_size}"
            )

    def _crash(self, error: AMQPConnectionError) -> None:
        """RabbitMQ decodes the properties in the channel process once the message is
        complete, and undecodable ones crash it (541 INTERNAL_ERROR): the message goes nowhere
        and the connection is closed, but only after the frames its reader has already read,
        whose errors come first (Connection.fail_after_input)."""
        self.channel.lifecycle.on(CRASH)
        self.connection.fail_after_input(error)

    def complete(self, body: bytes) -> None:
        """The content is complete (`body` is the whole body): make the message and route it."""
        publish, exchange, props_raw = self._publish, self._publish_exchange, self._props_raw
        self._publish = None
        facts = self._facts
        if facts is not None and facts.plain:  # (the common case: nothing to check or parse)
            message = Message(publish.exchange, publish.routing_key, publish.route_bytes,
                              props_raw, body)
            message.persistent = facts.persistent
        else:
            message = self._checked_message(publish, props_raw, body)
            if message is None:  # the channel crashed (541)
                return
        self._publish_message(exchange, message, publish.mandatory)

    def _publish_message(self, exchange: Exchange, message: Message, mandatory: bool) -> None:
        """A complete message: held by the transaction, or published (VirtualHost.publish's
        two steps, one call less) and confirmed later; basic.return if it is unroutable and
        mandatory."""
        if self.transaction.active:
            self._hold(exchange, message, mandatory)
            return
        self.has_published = True
        vhost, confirms = self.vhost, self.confirms
        try:
            queues, ticket = vhost.route_publish(exchange, message, self.channel,
                                                 confirms.active)
            routed, ticket, refused = vhost.put_routed(exchange, message, queues, ticket,
                                                       mandatory, self.channel.stats.routed)
        except (ValueError, IndexError, KeyError, struct.error) as exc:  # malformed headers
            raise _malformed(exc) from exc
        self._routed(exchange, message, routed, mandatory)
        if confirms.active:
            self.channel.confirm_later(ticket, refused)

    def _checked_message(self, publish: codec.Publish, props_raw: bytes, body: bytes
                         ) -> Message | None:
        """The message of a publish whose properties need a look (see `PropertyFacts.plain`):
        refused (PreconditionFailed), or their values taken, as RabbitMQ's channel does."""
        if not self._props_ok:  # refused once complete, as RabbitMQ's channel decodes them
            try:
                properties.validate(props_raw)
            except AMQPConnectionError as error:
                self._crash(error)
                return None
        flags = (props_raw[0] << 8) | props_raw[1] if len(props_raw) >= 2 else 0
        if flags & (_USER_ID_FLAG | _REPLY_TO_FLAG):
            props_raw = self._check_special_properties(flags, props_raw)
        cc: tuple[str, ...] = ()
        if flags & _HEADERS_FLAG and (b"\x02CC" in props_raw or b"\x03BCC" in props_raw):
            props_raw, cc = _sender_selected_keys(props_raw)
        message = Message(publish.exchange, publish.routing_key, publish.route_bytes, props_raw,
                          body)
        if cc:
            message.cc = cc
        if flags & _EXPIRATION_FLAG:
            message.expiration = _parse_expiration(properties.get(props_raw, "expiration"))
        if flags & _DELIVERY_MODE_FLAG:
            mode = properties.delivery_mode(props_raw)
            if mode not in (1, 2):
                raise PreconditionFailed(f"invalid message: {{delivery_mode_unknown,{mode}}}")
            message.persistent = mode == 2
        return message

    def _check_special_properties(self, flags: int, props_raw: bytes) -> bytes:
        if flags & _USER_ID_FLAG:
            user_id = properties.get(props_raw, "user_id")
            if user_id != self.user.name:
                raise PreconditionFailed(
                    f"user_id property set to '{user_id}' but authenticated user was "
                    f"'{self.user.name}'"
                )
        if flags & _REPLY_TO_FLAG and properties.get(props_raw, "reply_to") == DIRECT_REPLY_TO:
            reply_key = self.deliveries.reply_key
            if reply_key is None:
                raise PreconditionFailed("fast reply consumer does not exist")
            props_raw = properties.replace_shortstr(
                props_raw, "reply_to", f"{DIRECT_REPLY_TO}.{reply_key}"
            )
        return props_raw

    def _hold(self, exchange: Exchange, message: Message, mandatory: bool) -> None:
        """A publish in a transaction: routed now (direct replies handed over, the publish
        traced), held until tx.commit (`commit`) or dropped at tx.rollback."""
        try:
            queues, ticket = self.vhost.route_publish(exchange, message, self.channel)
        except (ValueError, IndexError, KeyError, struct.error) as exc:  # malformed headers
            raise _malformed(exc) from exc
        if queues is not None:  # (routing may give an exchange's own set, which changes)
            queues = tuple(queues)
        self.transaction.hold_publish(HeldPublish(exchange, message, mandatory, queues, ticket))

    def commit(self, held: HeldPublish) -> int:
        """tx.commit: put a held publish into the queues its routing named that still exist;
        basic.return if it reaches none and is mandatory. Returns the log ticket to wait for
        before commit-ok, or 0."""
        self.has_published = True
        queues = held.queues if held.queues is None else self.vhost.queues_now(held.queues)
        routed, ticket, _ = self.vhost.put_routed(held.exchange, held.message, queues,
                                                  held.ticket, held.mandatory,
                                                  self.channel.stats.routed)
        self._routed(held.exchange, held.message, routed, held.mandatory)
        return ticket

    def _routed(self, exchange: Exchange, message: Message, routed: int,
                mandatory: bool) -> None:
        """The channel's counts of a publish into `exchange` put into `routed` queues;
        basic.return for an unroutable mandatory one."""
        stats = self.channel.stats
        if exchange is stats.last_exchange:
            counts = stats.last_exchange_counts
        else:  # (in confirm mode, this publish's number starts a run of confirms)
            confirms = self.confirms
            counts = stats.exchange_counts(
                exchange, confirms.published_seq + 1 if confirms.active else 0)
        counts.published += 1
        if not routed:
            if mandatory:
                counts.returned += 1
                self.connection.write(codec.encode_return(
                    self.channel.number, NO_ROUTE, "NO_ROUTE", message.route_bytes,
                    message.props_raw, message.body, self.connection.frame_max,
                ))
            else:
                counts.dropped += 1


def _malformed(exc: Exception) -> AMQPConnectionError:
    return AMQPConnectionError(SYNTAX_ERROR, f"malformed message properties: {exc}")


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
