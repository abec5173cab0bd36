"""Trace sessions, Warren's own (RabbitMQ has no such thing): what the management UI's Trace
page shows. A session belongs to a vhost (`VirtualHost.trace_sessions`; the API starts it and
switches the vhost's firehose on, see management/api/trace_sessions.py) and keeps the last
`MAX_EVENTS` events of the messages that pass its filters: published (to which exchange,
routed to which queues), delivered (from which queue, redelivered or not), dead-lettered (from
which queue, why, and to which exchange and queues the copy went) and dropped (rejected,
expired or over a length limit with nowhere to go).

A message is followed by its journey key: its message_id property, else the message object's
identity in the broker (a dead-lettered copy joins its original's journey; a message read back
from disk after a restart starts a new one). Once a message passes the filters, its later
events are kept too, filtered or not, so its journey is whole.

Recording runs only while the vhost traces (its callers test `vhost.trace_sessions`); a
session nobody has read for `IDLE_SECONDS` ends by itself."""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

from broker.message import Message
from protocol import properties

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # per session: the oldest go first
MAX_FOLLOWED = 10_000  # journey keys a session remembers as passing its filters
IDLE_SECONDS = 120.0
BODY_PREVIEW = 200  # characters of the body an event shows
_ids = itertools.count(1)
# id(dead-lettered copy) -> (its timestamp, its original's journey key), the newest kept
_aliases: OrderedDict[int, tuple[float, str]] = OrderedDict()


class Named(Protocol):
    name: str


class TraceSession:
    """One trace: its filters (None: any) and the events recorded."""

    def __init__(self, vhost: str, exchange: str | None = None, queue: str | None = None,
                 routing_key: str | None = None,
                 on_end: Callable[[TraceSession], None] = lambda _session: None) -> None:
        self.id = next(_ids)
        self.vhost = vhost
        self.exchange = exchange or None
        self.queue = queue or None
        self.routing_key = routing_key or None
        self.on_end = on_end  # the session ended by itself (idle)
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._followed: OrderedDict[str, None] = OrderedDict()
        self._seq = 0
        self.last_read = time.monotonic()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "vhost": self.vhost, "exchange": self.exchange,
                "queue": self.queue, "routing_key": self.routing_key,
                "events": len(self.events)}

    def read(self, since: int) -> list[dict[str, Any]]:
        """The events after sequence number `since` (0: all that are kept)."""
        self.last_read = time.monotonic()
        return [event for event in self.events if event["seq"] > since]

    @property
    def idle(self) -> bool:
        return time.monotonic() - self.last_read > IDLE_SECONDS

    def record(self, event: dict[str, Any]) -> None:
        key = event["journey"]
        if key not in self._followed:
            if not self._passes(event):
                return
            self._followed[key] = None
            if len(self._followed) > MAX_FOLLOWED:
                self._followed.popitem(last=False)
        self._seq += 1
        self.events.append({**event, "seq": self._seq})

    def _passes(self, event: dict[str, Any]) -> bool:
        if self.exchange is not None and event.get("exchange") != self.exchange:
            return False
        if self.queue is not None and self.queue != event.get("queue") and (
                self.queue not in event.get("routed_queues", ())):
            return False
        return self.routing_key is None or any(
            topic_matches(self.routing_key, key) for key in event.get("routing_keys", ()))


class SessionHost(Protocol):
    trace_sessions: list[TraceSession]


def _guarded(record: Callable[..., None]) -> Callable[..., None]:
    """A recording that fails is logged (once) and skipped: the message it is about goes on."""
    @functools.wraps(record)
    def guarded(*args: Any) -> None:
        try:
            record(*args)
        except Exception:
            if not guarded.failed:  # type: ignore[attr-defined]
                guarded.failed = True  # type: ignore[attr-defined]
                log.exception("trace session: recording %s failed (logged once)",
                              record.__name__)
    guarded.failed = False  # type: ignore[attr-defined]
    return guarded


@_guarded
def published(host: SessionHost, message: Message, routed: Iterable[str],
              origin: dict[str, Any]) -> None:
    _record(host, _event("published", message, routed_queues=list(routed), **origin))


@_guarded
def delivered(host: SessionHost, queue: str, message: Message, redelivered: bool,
              origin: dict[str, Any]) -> None:
    _record(host, _event("delivered", message, queue=queue, redelivered=redelivered, **origin))


@_guarded
def dead_lettered(host: SessionHost, queue: str, reason: str, message: Message,
                  copy: Message, targets: Collection[Named]) -> None:
    """`message` left `queue` for `reason`; its copy went to `copy.exchange`, and `targets`."""
    event = _event("dead_lettered", message, queue=queue, reason=reason,
                   dead_letter_exchange=copy.exchange,
                   dead_letter_routing_keys=[copy.routing_key, *copy.cc],
                   dead_letter_queues=sorted(target.name for target in targets))
    _alias(copy, event["journey"])
    _record(host, event)


@_guarded
def dropped(host: SessionHost, queue: str, reason: str, message: Message) -> None:
    """`message` left `queue` for `reason` with no dead-letter copy made."""
    _record(host, _event("dropped", message, queue=queue, reason=reason))


def _record(host: SessionHost, event: dict[str, Any]) -> None:
    for session in list(host.trace_sessions):
        if session.idle:
            host.trace_sessions.remove(session)
            session.on_end(session)
        else:
            session.record(event)


def _event(kind: str, message: Message, **fields: Any) -> dict[str, Any]:
    raw = message.props_raw
    exchange, keys = route_of(message)
    headers = properties.get(raw, "headers") if properties.has(raw, "headers") else None
    body = message.body or b""
    event = {
        "event": kind, "time": int(time.time() * 1000),
        "journey": journey_key(message),
        "exchange": exchange.decode("utf-8", "replace"),
        "routing_keys": [key.decode("utf-8", "replace") for key in keys],
        "message_id": properties.get(raw, "message_id"),
        "correlation_id": properties.get(raw, "correlation_id"),
        "x_death": _deaths(headers),
        "body": body[:BODY_PREVIEW * 4].decode("utf-8", "replace")[:BODY_PREVIEW],
        "body_size": message.body_size,
        **fields,
    }
    return event


def route_of(message: Message) -> tuple[bytes, list[bytes]]:
    """The exchange and routing keys (the CC and BCC ones after the first) of a message, or of
    a stream's delivery (which has only its route bytes), as the bytes published."""
    raw = message.route_bytes
    key_at = 1 + raw[0]
    keys = [raw[key_at + 1 : key_at + 1 + raw[key_at]]]
    keys.extend(key.encode("utf-8", "surrogateescape") for key in getattr(message, "cc", ()))
    return raw[1:key_at], keys


def journey_key(message: Message) -> str:
    """Its message_id, else the message object's identity (a dead-lettered copy's is mapped
    to its original's by `dead_lettered`)."""
    message_id = properties.get(message.props_raw, "message_id")
    if message_id:
        return "id:" + message_id
    alias = _aliases.get(id(message))
    if alias is not None and alias[0] == message.timestamp:
        return alias[1]
    # the address alone is reused as soon as a message is freed: with its publishing time
    return f"m:{id(message):x}:{message.timestamp!r}"


def _alias(copy: Message, key: str) -> None:
    _aliases[id(copy)] = (copy.timestamp, key)
    if len(_aliases) > MAX_FOLLOWED:
        _aliases.popitem(last=False)


def _deaths(headers: Any) -> list[dict[str, Any]] | None:
    """The x-death entries of a header table, as plain JSON values."""
    if not isinstance(headers, dict) or not isinstance(headers.get("x-death"), list):
        return None
    return [{key: _plain(entry.get(key)) for key in ("reason", "queue", "exchange", "count",
                                                      "routing-keys")}
            for entry in headers["x-death"] if isinstance(entry, dict)]


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def topic_matches(pattern: str, key: str) -> bool:
    """Whether a routing key matches a topic pattern (`*` one word, `#` zero or more)."""
    words, keys = pattern.split("."), key.split(".")
    positions = {0}
    for word in words:
        following: set[int] = set()
        for at in positions:
            if word == "#":
                following.update(range(at, len(keys) + 1))
            elif at < len(keys) and word in ("*", keys[at]):
                following.add(at + 1)
        positions = following
    return len(keys) in positions
