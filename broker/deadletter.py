"""Dead-lettering: the copy of a message RabbitMQ 3.10 publishes to a queue's dead-letter
exchange — x-death entries, x-first-death-* headers, the expiration moved to
original-expiration — and its cycle rule (a message going round queues without a rejection
is dropped, not looped forever).

The copy's property bytes are what decoding the headers, recording the death, sorting the table
and encoding it again gives (`_reencoded`). Two shortcuts give the same bytes for less:
messages alike (the same property bytes, dying from the same queue for the same reason in the
same second) get the same rewrite, so it is made once (`rewritten` caches it); and a first
death whose headers table encoding would write back unchanged (in any order) gets the new
entries spliced into the table's bytes (`_spliced`, with protocol/tablesplice.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from broker import stepfailures, tracesessions
from broker.message import Message
from protocol import properties, tablesplice
from protocol.codec import shortstr
from protocol.constants import PROPERTY_FLAGS
from protocol.fieldtable import PRE_ENCODED, TypedValue, encode_table, encode_value

if TYPE_CHECKING:
    from broker.exchanges import BoundQueue, Exchange
    from broker.queue_args import QueueSettings
    from broker.stepfailures import StepFailures
    from broker.tracesessions import TraceSession
    from storage.store import MessageStore

log = logging.getLogger(__name__)

_CACHE_LIMIT = 1024  # entries per cache below; a full cache is cleared, not evicted in order
_CACHED_PROPERTIES_MAX = 256  # bytes: longer property bytes are likely unique, not cached
_EXPIRATION_FLAG = next(flag for name, flag, _ in PROPERTY_FLAGS if name == "expiration")
# Keys a first death adds, sorted; and those that send a message the general way.
_FIRST_DEATH_KEYS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                     "x-first-death-reason")
_X_DEATH_ENTRY = b"\x07x-death"  # the start of an x-death entry in a table
_REFUSED_KEYS = (b"CC",)  # its keys join x-death's routing-keys; the copy may drop it


class Republisher(Protocol):
    """What dead-lettering needs of the vhost a message dies in (broker/vhost.py's
    `VirtualHost`): its exchanges, routing and delivery of the copy, the message store (to read
    a paged-out body back) and the step failures."""

    exchanges: dict[str, Exchange]
    store: MessageStore | None
    step_failures: StepFailures
    trace_sessions: list[TraceSession]  # broker/tracesessions.py

    def route(self, exchange: Exchange, message: Message) -> Collection[BoundQueue]: ...

    def enqueue(self, message: Message, queues: Collection[Any]) -> tuple[int, bool]: ...


class DyingQueue(Protocol):
    """The queue a message dies in (broker/queue.py's `Queue`, which imports this module)."""

    name: str
    settings: QueueSettings

    @property
    def vhost(self) -> Republisher: ...

    def describe(self) -> str: ...


class Rewrite(NamedTuple):
    """A dead-lettered copy's property bytes, and the queues its x-death makes a cycle of."""

    props_raw: bytes
    cycles: frozenset[str]


class DeathKey(NamedTuple):
    """What a death records besides the message's headers (time in whole seconds)."""

    reason: str
    queue: str
    exchange: str  # the message's
    routing_keys: tuple[str, ...]  # the message's routing key, then its CC header's keys
    expiration: str | None  # the message's expiration property
    time: int


class FirstDeath(NamedTuple):
    """What a first death adds, encoded once for all messages that die alike."""

    x_death: bytes  # the x-death value (tag byte first)
    entries: tuple[tuple[bytes, bytes], ...]  # (key, entry bytes) for tablesplice.insert_sorted
    table: bytes  # the headers table of a message that had none (4-byte length first)
    cycles: frozenset[str]


_rewrites: dict[tuple, Rewrite] = {}
_first_deaths: dict[DeathKey, FirstDeath] = {}
_route_bytes: dict[tuple[str, str], bytes] = {}


def dead_letter(queue: DyingQueue, message: Message, reason: str) -> bool:
    """Publish the dead-lettered copy of `message` from `queue`; False if it went nowhere.

    If its properties cannot be rewritten, the copy keeps them as they are (less the
    expiration), and the failure is counted and logged; if the copy cannot be routed or
    delivered, this raises, and the caller keeps the message."""
    settings = queue.settings
    vhost = queue.vhost
    exchange = vhost.exchanges.get(settings.dead_letter_exchange or "")
    if settings.dead_letter_exchange is None or exchange is None:
        return False
    routing_key = settings.dead_letter_routing_key
    if message.body is None:  # paged out: the copy needs its bytes (a rare, small read)
        message.body = vhost.store.read_body_now(message)
    try:
        rewrite = rewritten(message, queue.name, reason, routing_key is not None)
    except Exception as error:  # properties Warren cannot rewrite: not a reason to lose it
        vhost.step_failures.record(
            stepfailures.EXPIRY if reason == "expired" else stepfailures.DEAD_LETTER,
            queue.describe(), error,
            "the message was dead-lettered with its properties unchanged (no x-death)",
        )
        rewrite = unchanged(message, queue.name, reason)
    copy = _copy(message, rewrite.props_raw, exchange.name, routing_key)
    targets = vhost.route(exchange, copy)
    if rewrite.cycles:
        targets = _without_cycles(targets, rewrite.cycles)
    if not targets:
        return False
    if vhost.trace_sessions:
        tracesessions.dead_lettered(vhost, queue.name, reason, message, copy, targets)
    vhost.enqueue(copy, targets)
    return True


def rewritten(message: Message, queue: str, reason: str, drop_cc: bool) -> Rewrite:
    """The dead-lettered copy's properties: x-death recorded, expiration moved into it, the CC
    header dropped if `drop_cc` (the queue has a dead-letter routing key)."""
    raw = message.props_raw
    now = int(time.time())
    cacheable = type(raw) is bytes and len(raw) <= _CACHED_PROPERTIES_MAX
    if cacheable:
        key = (raw, reason, queue, message.exchange, message.routing_key, drop_cc, now)
        rewrite = _rewrites.get(key)
        if rewrite is not None:
            return rewrite
    rewrite = _spliced(message, queue, reason, now) or _reencoded(
        message, queue, reason, drop_cc, now
    )
    if cacheable:
        if len(_rewrites) >= _CACHE_LIMIT:
            _rewrites.clear()
        _rewrites[key] = rewrite
    return rewrite


def unchanged(message: Message, queue: str, reason: str) -> Rewrite:
    """The fallback when the rewrite fails: the message's own properties, without the
    expiration (a copy that expires again would be lost). With no x-death to look at, the
    cycle rule applies to this death alone: a copy that did not die rejected does not go back
    to the queue it died in."""
    raw = message.props_raw
    if properties.has(raw, "expiration"):
        raw = properties.rebuild(raw, {"expiration": None})
    return Rewrite(raw, frozenset() if reason == "rejected" else frozenset((queue,)))


def _copy(message: Message, props_raw: bytes, exchange: str, routing_key: str | None) -> Message:
    """The copy to publish: the queue's dead-letter routing key, else the message's own keys."""
    if routing_key is None:
        routing_key, cc = message.routing_key, message.cc
    else:
        cc = ()
    route = (exchange, routing_key)
    route_bytes = _route_bytes.get(route)
    if route_bytes is None:
        if len(_route_bytes) >= _CACHE_LIMIT:
            _route_bytes.clear()
        route_bytes = _route_bytes[route] = shortstr(exchange) + shortstr(routing_key)
    copy = Message(exchange, routing_key, route_bytes, props_raw, message.body,
                   message.body_size)
    copy.cc = cc
    copy.persistent = message.persistent
    return copy


# -- the splice: a first death, headers already as RabbitMQ would write them -------------------


def _spliced(message: Message, queue: str, reason: str, now: int) -> Rewrite | None:
    """The rewrite made on bytes, or None when the message needs the general way (it has died
    before, has a CC header, or headers that encoding would change)."""
    raw = message.props_raw
    if _X_DEATH_ENTRY in raw:  # most likely died before (else a value holds those bytes)
        return None
    offset = properties.headers_offset(raw)
    if offset is None:
        return None
    flags = (raw[0] << 8) | raw[1]
    expiration = properties.get(raw, "expiration") if flags & _EXPIRATION_FLAG else None
    first = first_death(DeathKey(reason, queue, message.exchange, (message.routing_key,),
                                 expiration, now))
    if properties.has(raw, "headers"):
        table = tablesplice.insert_sorted(raw, offset, first.entries, _REFUSED_KEYS)
        if table is None:
            return None
    else:
        table = first.table
    if expiration is None:
        props_raw = properties.set_headers(raw, offset, table)
    else:
        props_raw = properties.rebuild(raw, {"headers": table, "expiration": None})
    return Rewrite(props_raw, first.cycles)


def first_death(key: DeathKey) -> FirstDeath:
    """The encoded entries of a first death (cached: many messages die alike)."""
    first = _first_deaths.get(key)
    if first is None:
        if len(_first_deaths) >= _CACHE_LIMIT:
            _first_deaths.clear()
        headers: dict[str, TypedValue] = {}
        _record_death(headers, _death_info(key))
        encoded = {name: encode_value(headers[name]) for name in _FIRST_DEATH_KEYS}
        entries = tuple(tablesplice.encoded_entry(name, encoded[name])
                        for name in _FIRST_DEATH_KEYS)
        body = b"".join(entry for _, entry in entries)
        table = len(body).to_bytes(4, "big") + body
        first = _first_deaths[key] = FirstDeath(
            encoded["x-death"], entries, table, cycle_queues(headers["x-death"][1])
        )
    return first


# -- the general way: decode, record, sort, encode ---------------------------------------------


def _reencoded(message: Message, queue: str, reason: str, drop_cc: bool, now: int) -> Rewrite:
    """The rewrite made on decoded headers: any message, any x-death it already has."""
    headers = dict(message.typed_headers)
    expiration = properties.get(message.props_raw, "expiration")
    key = DeathKey(reason, queue, message.exchange, (message.routing_key, *_cc_keys(headers)),
                   expiration, now)
    first = "x-death" not in headers
    _record_death(headers, _death_info(key))
    # RabbitMQ re-sorts the table it writes x-death in, by the keys' bytes
    headers = dict(sorted(headers.items(), key=_key_bytes))
    if drop_cc:
        headers.pop("CC", None)
    to_encode = headers
    if first:  # x-death as the cache of first deaths has it encoded
        to_encode = {**headers, "x-death": (PRE_ENCODED, first_death(key).x_death)}
    props_raw = properties.rebuild(
        message.props_raw, {"headers": encode_table(to_encode), "expiration": None}
    )
    _, deaths = headers["x-death"]
    return Rewrite(props_raw, cycle_queues(deaths))


def _key_bytes(entry: tuple[str, TypedValue]) -> bytes:
    return entry[0].encode("utf-8", "surrogateescape")


def _death_info(key: DeathKey) -> dict[str, TypedValue]:
    """An x-death entry's fields but count, in RabbitMQ's order."""
    info: dict[str, TypedValue] = {
        "reason": ("S", key.reason.encode()),
        "queue": ("S", key.queue.encode()),
        "time": ("T", key.time),
        "exchange": ("S", key.exchange.encode("utf-8", "surrogateescape")),
        "routing-keys": ("A", tuple(("S", routing_key.encode("utf-8", "surrogateescape"))
                                    for routing_key in key.routing_keys)),
    }
    if key.expiration is not None:
        info["original-expiration"] = ("S", key.expiration.encode())
    return info


def _cc_keys(headers: dict[str, TypedValue]) -> list[str]:
    tag, items = headers.get("CC", ("V", None))
    if tag != "A":
        return []
    return [value.decode() for item_tag, value in items if item_tag in "Sx"]


def _record_death(headers: dict[str, TypedValue], info: dict[str, TypedValue]) -> None:
    """Update x-death as RabbitMQ does: the entry for this queue and reason gets its count
    incremented (keeping its other fields) and moves to the front; a new one starts at 1."""
    queue, reason = info["queue"], info["reason"]
    first_entry = ("A", (("F", {"count": ("l", 1), **info}),))  # in RabbitMQ's field order
    if "x-death" not in headers:
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue
        headers["x-first-death-exchange"] = info["exchange"]
        headers["x-death"] = first_entry
        return
    tag, deaths = headers["x-death"]
    if tag != "A":  # a client's x-death that is not an array: replaced, nothing else added
        headers["x-death"] = first_entry
        return
    matched, others = None, []
    for entry in reversed(deaths):  # RabbitMQ regroups the entries with a prepending fold
        fields = entry[1] if entry[0] == "F" else {}
        if matched is None and fields.get("queue") == queue and fields.get("reason") == reason:
            matched = dict(fields)
        else:
            others.append(entry)
    if matched is None:
        matched = {"count": ("l", 1), **info}
    else:
        count = matched.get("count", ("l", 0))[1]
        matched["count"] = ("l", count + 1)
    headers["x-death"] = ("A", (("F", _sorted(matched)), *others))


def _sorted(table: dict[str, TypedValue]) -> dict[str, TypedValue]:
    return dict(sorted(table.items()))


def cycle_queues(deaths: tuple[TypedValue, ...]) -> frozenset[str]:
    """RabbitMQ's rule: a copy routed to a queue already in x-death, with no rejection in the
    entries up to and including that queue's, is dropped. The queues it is dropped at."""
    names = set()
    for tag, fields in deaths:
        if tag != "F":
            continue
        if fields.get("reason") == ("S", b"rejected"):
            break
        queue_tag, queue = fields.get("queue", ("V", None))
        if queue_tag == "S":
            try:
                names.add(queue.decode())
            except UnicodeDecodeError:  # no queue is named so
                continue
    return frozenset(names)


def _without_cycles(targets: Collection[BoundQueue], cycles: frozenset[str]
                    ) -> list[BoundQueue]:
    kept = []
    for target in targets:
        if target.name in cycles:
            log.warning("dead-letter cycle through queue '%s': message dropped", target.name)
        else:
            kept.append(target)
    return kept
