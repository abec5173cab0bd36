"""A published message: routing info, raw property bytes and body, shared by every queue it
was routed to (fan-out never copies the body). The body of a logged message deep in a long
queue may be paged out (None) and read back from the log before it is delivered."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from protocol import properties
from protocol.fieldtable import TypedValue

if TYPE_CHECKING:
    from storage.storeref import StoreRef


class Message:
    __slots__ = (
        "exchange", "routing_key", "route_bytes", "props_raw", "body", "_headers", "cc",
        "body_size", "timestamp", "expiration", "persistent", "store_ref",
    )

    def __init__(
        self, exchange: str, routing_key: str, route_bytes: bytes, props_raw: bytes,
        body: bytes | None, body_size: int | None = None,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.route_bytes = route_bytes  # exchange and routing key as encoded shortstrs
        self.props_raw = props_raw
        self.body = body
        self.body_size = len(body) if body_size is None else body_size
        self.timestamp = time.time()  # when published (wall clock): TTLs count from here
        self.expiration: int | None = None  # the expiration property, in ms, once validated
        self.persistent = False  # delivery_mode 2
        self._headers: dict[str, TypedValue] | None = None
        self.cc: tuple[str, ...] = ()  # extra routing keys from the CC and BCC headers
        # The message store's, set when it logs the message (for durable queues): None while
        # it is not logged. Only storage reads what is in it.
        self.store_ref: StoreRef | None = None

    @classmethod
    def logged(cls, exchange: str, routing_key: str, route_bytes: bytes, props_raw: bytes,
               body_size: int, timestamp: float, expiration: int | None,
               store_ref: StoreRef | None) -> Message:
        """A message made back from a row of the stores, its body still on disk (made in bulk
        as messages held as rows reach the head of their queue: no __init__). Persistent until
        the store that made it sets `persistent` from its delivery mode."""
        message = cls.__new__(cls)
        message.exchange = exchange
        message.routing_key = routing_key
        message.route_bytes = route_bytes
        message.props_raw = props_raw
        message.body = None
        message.body_size = body_size
        message.timestamp = timestamp
        message.expiration = expiration
        message.persistent = True
        message._headers = None
        message.cc = ()
        message.store_ref = store_ref
        return message

    def unlogged_twin(self) -> Message:
        """The same message (body shared, not copied) without the store's reference, for
        queues that do not hold the logged original."""
        twin = Message(self.exchange, self.routing_key, self.route_bytes, self.props_raw,
                       self.body, self.body_size)
        twin.timestamp, twin.expiration, twin.persistent = (self.timestamp, self.expiration,
                                                             self.persistent)
        twin.cc = self.cc
        return twin

    @property
    def typed_headers(self) -> dict[str, TypedValue]:
        """The headers table with AMQP value types kept (for the headers exchange)."""
        if self._headers is None:
            self._headers = properties.typed_headers(self.props_raw)
        return self._headers


class QueuedMessage:
    """A message's place in one queue: its position (for requeue order) and redelivery flag."""

    __slots__ = ("message", "seq", "redelivered", "logged_delivery", "priority", "expires_at",
                 "delivery_count")

    def __init__(self, message: Message, seq: int, priority: int = 0,
                 expires_at: float | None = None) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = False
        # The log says this queue delivered it (it differs from `redelivered` after a crash,
        # when every recovered message is marked redelivered, logged or not).
        self.logged_delivery = False
        self.priority = priority
        self.expires_at = expires_at  # wall-clock seconds, or None
        self.delivery_count = 0  # deliveries that ended in a requeue (x-delivery-count)

    def __lt__(self, other: QueuedMessage) -> bool:
        return self.seq < other.seq
