"""What storage needs of the broker's objects, as protocols storage owns (storage/ imports
nothing from broker/): a stored message (its routing info, raw properties, body and its place
in the log), a message holder (a queue, or a delayed exchange's held messages: anything the
log records messages for under a queue key) and the factory that makes a message back from
a log or page row. The broker's Message, Queue and Holding satisfy them; the node hands the
factory (`Message.logged`) to the stores it opens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from storage.catalog import Catalog, Rows
    from storage.records import QueueKey


class StoredMessage(Protocol):
    """A message as the stores see it. The store_* fields are the stores' own: set when the
    message is logged (store_id 0 = not logged), read back as it is acked or compacted."""

    exchange: str
    routing_key: str
    route_bytes: bytes  # exchange and routing key as encoded shortstrs
    props_raw: bytes
    body: bytes | None  # None while it is on disk only
    body_size: int
    timestamp: float  # when published, wall clock
    expiration: int | None
    persistent: bool
    store_id: int
    store_segment: int
    store_location: tuple[int, int]  # (segment, offset of the body)
    store_size: int  # bytes charged to its segment
    store_queues: list[MessageHolder]
    store_delivered: bool


class MakeLoggedMessage(Protocol):
    """Makes a message back from a row: its body is not read (body None, persistent)."""

    def __call__(self, exchange: str, routing_key: str, route_bytes: bytes, props_raw: bytes,
                 body_size: int, timestamp: float, expiration: int | None, store_id: int,
                 location: tuple[int, int], store_size: int,
                 delivered: bool) -> StoredMessage: ...


class MessageHolder(Protocol):
    """What holds logged messages under a queue key: a durable queue, or a durable delayed
    exchange's held messages. A holder that `keeps_cold_rows` takes recovered messages it
    alone holds as catalog rows (`restore_cold`) and reports them for the index snapshot
    (`cold_rows`); the others get every recovered message as an object (`restore`)."""

    keeps_cold_rows: bool

    @property
    def key(self) -> QueueKey: ...

    @property
    def deleted(self) -> bool: ...

    def restore(self, message: StoredMessage, redelivered: bool,
                logged_delivery: bool) -> None: ...

    def restore_cold(self, rows: Rows, catalog: Catalog, expirations: list[int | None],
                     all_redelivered: bool) -> None: ...

    def cold_rows(self) -> list[Rows]: ...

    def logged_flags(self) -> dict[int, bool]:
        """Store id -> whether the log has this holder's delivery of it, for the logged
        messages it holds as objects (absent: count it as delivered)."""
        ...

