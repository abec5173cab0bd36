"""Dead-lettering: the copy of a message RabbitMQ 3.10 publishes to a queue's dead-letter
exchange — x-death entries, x-first-death-* headers, the expiration moved to
original-expiration — and its cycle rule (a message going round queues without a rejection
is dropped, not looped forever)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from broker.message import Message
from protocol import properties
from protocol.codec import shortstr
from protocol.fieldtable import PRE_ENCODED, TypedValue, encode_table, encode_value

if TYPE_CHECKING:
    from broker.queue import Queue

log = logging.getLogger(__name__)

# Encoded x-death values of first deaths, by what they are made of (time in whole seconds).
_first_deaths: dict[tuple, bytes] = {}


def dead_letter(queue: Queue, message: Message, reason: str) -> bool:
    """Publish the dead-lettered copy of `message` from `queue`; False if it went nowhere."""
    settings = queue.settings
    vhost = queue.vhost
    exchange = vhost.exchanges.get(settings.dead_letter_exchange or "")
    if settings.dead_letter_exchange is None or exchange is None:
        return False
    routing_key = settings.dead_letter_routing_key
    if message.body is None:  # paged out: the copy needs its bytes (a rare, small read)
        message.body = vhost.store.read_body_now(message)
    copy = _dead_lettered_copy(message, queue, reason, exchange.name, routing_key)
    targets = vhost.route(exchange, copy)
    if reason != "rejected":
        deaths = copy.typed_headers.get("x-death", ("A", ()))[1]
        targets = [target for target in targets if not _is_cycle(target.name, deaths)]
    if not targets:
        return False
    vhost.deliver(copy, targets)
    return True


def _dead_lettered_copy(message: Message, queue: Queue, reason: str, exchange: str,
                        routing_key: str | None) -> Message:
    headers = dict(message.typed_headers)
    death_keys = [message.routing_key, *_cc_keys(headers)]
    info: dict[str, TypedValue] = {
        "reason": ("S", reason.encode()),
        "queue": ("S", queue.name.encode()),
        "time": ("T", int(time.time())),
        "exchange": ("S", message.exchange.encode()),
        "routing-keys": ("A", tuple(("S", key.encode()) for key in death_keys)),
    }
    expiration = properties.get(message.props_raw, "expiration")
    if expiration is not None:
        info["original-expiration"] = ("S", expiration.encode())
    first_death = "x-death" not in headers
    _record_death(headers, info)
    headers = dict(sorted(headers.items()))  # RabbitMQ re-sorts the table it writes x-death in
    if routing_key is not None:
        headers.pop("CC", None)
        keys = [routing_key]
    else:
        keys = [message.routing_key, *message.cc]
    to_encode = headers
    if first_death:  # the common case: many messages die alike; encode their x-death once
        cache_key = (reason, queue.name, message.exchange, tuple(death_keys), expiration,
                     info["time"][1])
        encoded = _first_deaths.get(cache_key)
        if encoded is None:
            if len(_first_deaths) >= 256:
                _first_deaths.clear()
            encoded = _first_deaths[cache_key] = encode_value(headers["x-death"])
        to_encode = {**headers, "x-death": (PRE_ENCODED, encoded)}
    props_raw = properties.rebuild(
        message.props_raw, {"headers": encode_table(to_encode), "expiration": None}
    )
    copy = Message(exchange, keys[0], shortstr(exchange) + shortstr(keys[0]), props_raw,
                   message.body, message.body_size)
    copy._headers = headers  # what its properties now say, without decoding them again
    copy.cc = tuple(keys[1:])
    copy.persistent = message.persistent
    return copy


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


def _is_cycle(queue_name: str, deaths: tuple[TypedValue, ...]) -> bool:
    """RabbitMQ's rule: the target queue is already in x-death and no entry up to and
    including it was a rejection."""
    wanted = ("S", queue_name.encode())
    for entry in deaths:
        fields = entry[1] if entry[0] == "F" else {}
        if fields.get("reason") == ("S", b"rejected"):
            return False
        if fields.get("queue") == wanted:
            log.warning("dead-letter cycle through queue '%s': message dropped", queue_name)
            return True
    return False
