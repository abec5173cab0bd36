"""Firehose tracing, as RabbitMQ 3.10's rabbit_trace: while a vhost traces
(`VirtualHost.tracing`, switched by `Node.set_tracing`), a copy of every message published in it
goes to its `amq.rabbitmq.trace` exchange with the routing key `publish.<exchange>` once it is
routed (VirtualHost.route_publish: at basic.publish, in a transaction too), and a copy of every
delivery (to a consumer or a get) with `deliver.<queue>`.

A copy has the original body and one property, a headers table with RabbitMQ's names, types and
order: exchange_name, routing_keys (the routing key, then the CC and BCC keys), properties (the
message's, last property first, strings as longstr and numbers as 32-bit signedint), node, then
vhost, connection, channel, user and routed_queues for a publish, or redelivered, vhost,
connection, channel and user for a delivery. Messages of the trace exchange itself are never
traced, so that consuming traces makes none. Copies are routed as the core's own publishes are:
counted by no channel or exchange (tests/broker/RABBITMQ_TRACING.md).

Callers test `vhost.tracing` before calling here: tracing off costs the hot path one attribute
check. While nothing is bound to the trace exchange no copy is made; a copy's header table is
written directly, its properties entry encoded once per distinct property bytes. A copy that
cannot be made is counted and logged as a step failure; the message it copies goes on
untraced. The vhost's trace sessions (broker/tracesessions.py, the UI's Trace page)
record the same publishes and deliveries."""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection
from typing import Any, NamedTuple, Protocol

from broker import tracesessions
from broker.message import Message, QueuedMessage
from broker.nodename import node_name
from broker.stepfailures import TRACE, StepFailures
from protocol import properties
from protocol.codec import shortstr
from protocol.constants import PROPERTY_FLAGS
from protocol.fieldtable import TypedValue, encode_table

TRACE_EXCHANGE = "amq.rabbitmq.trace"
_HEADERS_ONLY = struct.pack("!H", 0x2000)  # the property flags of a copy: headers alone
_TRACE_EXCHANGE_BYTES = shortstr(TRACE_EXCHANGE)
_REPLY_TO_PREFIX = b"amq.rabbitmq.reply-to."
CACHE_LIMIT = 1024  # entries of each cache below
_properties_cache: dict[bytes, bytes] = {}  # property bytes -> their traced table (tag F)
_origin_cache: dict[tuple[str, Origin], bytes] = {}  # -> the entries vhost ... user
_u32 = struct.Struct("!I")
_i32 = struct.Struct("!i")
# The header names as table keys (length byte first), in RabbitMQ's order.
_NAMES = {name: bytes((len(name),)) + name.encode() for name in (
    "exchange_name", "routing_keys", "properties", "node", "redelivered", "vhost",
    "connection", "channel", "user", "routed_queues")}


class Origin(NamedTuple):
    """Who published or received: the connection's name, the channel number, the user."""

    connection: str
    channel: int
    user: str

    def trace_origin(self) -> Origin:
        return self


# A publish whose front named no origin (none does today; kept for the core's own callers).
UNKNOWN = Origin("", 0, "")


class Traced(Protocol):
    """What a traced publish or delivery comes from: an AMQP channel, or an `Origin` (the
    management API's publish and get)."""

    def trace_origin(self) -> Origin: ...


class Named(Protocol):
    name: str


class DeliveringQueue(Protocol):
    """The queue a traced delivery comes from (broker/queue.py's Queue, a stream)."""

    name: str

    def delivery_properties(self, entry: QueuedMessage, always: bool = False) -> bytes: ...


class TracingHost(Protocol):
    """What tracing needs of broker/vhost.py's VirtualHost (a protocol: the vhost calls here)."""

    name: str
    exchanges: dict[str, Any]
    step_failures: StepFailures
    trace_sessions: list[tracesessions.TraceSession]
    route: Callable[[Any, Message], Collection[Any]]
    enqueue: Callable[[Message, Collection[Any]], Any]


def published(vhost: TracingHost, message: Message, queues: Collection[Named],
              source: Traced) -> None:
    """Trace a routed publish as `publish.<exchange>` (routed to `queues`, maybe none)."""
    if message.exchange == TRACE_EXCHANGE:
        return
    try:
        copied = _copies_go_somewhere(vhost)
        if not (copied or vhost.trace_sessions):
            return
        origin = source.trace_origin()
        routed = _routed(message, queues)
        if copied:
            _publish_copy(vhost, "publish." + message.exchange, message,
                          _message_part(message, message.props_raw)
                          + _origin_part(vhost, origin)
                          + _NAMES["routed_queues"] + _array(routed))
        if vhost.trace_sessions:
            tracesessions.published(vhost, message, (name.decode("utf-8", "replace")
                                                     for name in routed), origin._asdict())
    except Exception as error:
        _failed(vhost, f"exchange '{message.exchange}'", error)


def delivered(vhost: TracingHost, queue: DeliveringQueue, entry: QueuedMessage,
              source: Traced, get: bool = False) -> None:
    """Trace a delivery (or, `get`, a get) from `queue` as `deliver.<queue>`, with the
    properties as delivered (a quorum queue's x-delivery-count)."""
    message = entry.message
    try:
        if message.route_bytes.startswith(_TRACE_EXCHANGE_BYTES):
            return
        copied = _copies_go_somewhere(vhost)
        if not (copied or vhost.trace_sessions):
            return
        origin = source.trace_origin()
        if copied:
            props_raw = (queue.delivery_properties(entry, always=True) if get
                         else queue.delivery_properties(entry) if entry.delivery_count
                         else message.props_raw)
            _publish_copy(vhost, "deliver." + queue.name, message,
                          _message_part(message, props_raw)
                          + _NAMES["redelivered"] + b"I" + _i32.pack(int(entry.redelivered))
                          + _origin_part(vhost, origin))
        if vhost.trace_sessions:
            tracesessions.delivered(vhost, queue.name, message, entry.redelivered,
                                    origin._asdict())
    except Exception as error:
        _failed(vhost, f"queue '{queue.name}'", error)


def _copies_go_somewhere(vhost: TracingHost) -> bool:
    """Whether a copy can reach anything: the trace exchange has a binding or an alternate
    exchange (else making copies that go nowhere would only cost)."""
    exchange = vhost.exchanges[TRACE_EXCHANGE]
    return bool(exchange.bindings) or exchange.alternate_exchange is not None


def _routed(message: Message, queues: Collection[Named]) -> list[bytes]:
    """The queue names RabbitMQ's routing returns, sorted: for the default exchange, every
    routing key but direct reply-to's, whether a queue has that name or not."""
    if message.exchange:
        return sorted({_raw(queue.name) for queue in queues})
    return sorted({key for key in map(_raw, (message.routing_key, *message.cc))
                   if not key.startswith(_REPLY_TO_PREFIX)})


def _message_part(message: Message, props_raw: bytes) -> bytes:
    """The table entries every copy starts with: exchange_name, routing_keys, properties,
    node."""
    exchange, keys = tracesessions.route_of(message)
    return (_NAMES["exchange_name"] + _longstr(exchange)
            + _NAMES["routing_keys"] + _array(keys)
            + _NAMES["properties"] + _properties_table(props_raw)
            + _NAMES["node"] + _longstr(_raw(node_name())))


def _origin_part(vhost: TracingHost, origin: Origin) -> bytes:
    """The entries vhost, connection, channel and user (the same for a channel's copies)."""
    key = (vhost.name, origin)
    encoded = _origin_cache.get(key)
    if encoded is None:
        if len(_origin_cache) >= CACHE_LIMIT:
            _origin_cache.clear()
        encoded = _origin_cache[key] = (
            _NAMES["vhost"] + _longstr(_raw(vhost.name))
            + _NAMES["connection"] + _longstr(_raw(origin.connection))
            + _NAMES["channel"] + b"I" + _i32.pack(origin.channel)
            + _NAMES["user"] + _longstr(_raw(origin.user)))
    return encoded


def _longstr(raw: bytes) -> bytes:
    return b"S" + _u32.pack(len(raw)) + raw


def _array(raws: list[bytes]) -> bytes:
    data = b"".join([b"S" + _u32.pack(len(raw)) + raw for raw in raws])
    return b"A" + _u32.pack(len(data)) + data


def _properties_table(props_raw: bytes) -> bytes:
    """The message's properties as RabbitMQ's msg_to_table writes them (tag F included): in
    reverse order of the P_basic record, strings as longstr, the octets and the timestamp as
    signedint (which, as in Erlang's <<V:32/signed>>, keeps only the low 32 bits of a
    timestamp). Publishers repeat the same properties: each is encoded once."""
    encoded = _properties_cache.get(props_raw)
    if encoded is None:
        if len(_properties_cache) >= CACHE_LIMIT:
            _properties_cache.clear()
        encoded = _properties_cache[props_raw] = b"F" + encode_table(_table_of(props_raw))
    return encoded


def _table_of(props_raw: bytes) -> dict[str, TypedValue]:
    shown = properties.decode_all(props_raw)
    table: dict[str, TypedValue] = {}
    for name, _, kind in reversed(PROPERTY_FLAGS):
        if name not in shown:
            continue
        value = shown[name]
        if kind == "shortstr":
            table[name] = ("S", value)
        elif kind == "table":
            table[name] = ("F", value)
        else:
            table[name] = ("I", (value + 2**31) % 2**32 - 2**31)
    return table


def _publish_copy(vhost: TracingHost, routing_key: str, message: Message,
                  entries: bytes) -> None:
    """Publish the copy whose headers table holds `entries` (encoded) to the trace exchange."""
    copy = Message(TRACE_EXCHANGE, routing_key, _TRACE_EXCHANGE_BYTES + shortstr(routing_key),
                   _HEADERS_ONLY + _u32.pack(len(entries)) + entries, message.body,
                   message.body_size)
    queues = vhost.route(vhost.exchanges[TRACE_EXCHANGE], copy)
    if queues:
        vhost.enqueue(copy, queues)


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _failed(vhost: TracingHost, place: str, error: Exception) -> None:
    vhost.step_failures.record(TRACE, f"{place} in vhost '{vhost.name}'", error,
                               "the message went on untraced")
