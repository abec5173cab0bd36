"""What storage needs of the broker's objects, as protocols storage owns (storage/ imports
nothing from broker/).

The stores speak queue keys, message ids and places in the log: a message is logged for a
list of queue keys, removed from or delivered by a queue key, and carries one `StoreRef`
(storage/storeref.py) as its `store_ref`. Storage calls back into a holder only where it must:
recovery puts recovered messages (or catalog rows) into the holders by key, and the index
snapshot at a clean stop asks each holder what it holds. A holder is a durable queue or a
durable delayed exchange's held messages; the node hands the stores a `MakeLoggedMessage`
(`Message.logged`) to build messages back from rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from storage.catalog import Catalog, Rows
    from storage.storeref import StoreRef


class StoredMessage(Protocol):
    """A message as the stores see it: what its record holds, its body (None while it is on
    disk only) and `store_ref`, the stores' own field (None: not logged)."""

    exchange: str
    routing_key: str
    route_bytes: bytes  # exchange and routing key as encoded shortstrs
    props_raw: bytes
    body: bytes | None
    body_size: int
    timestamp: float  # when published, wall clock
    expiration: int | None
    persistent: bool
    store_ref: StoreRef | None


class MakeLoggedMessage(Protocol):
    """Makes a message back from a row: its body is not read (body None); the stores set
    `persistent` from its delivery mode afterwards."""

    def __call__(self, exchange: str, routing_key: str, route_bytes: bytes, props_raw: bytes,
                 body_size: int, timestamp: float, expiration: int | None,
                 store_ref: StoreRef | None) -> StoredMessage: ...


class MessageHolder(Protocol):
    """What holds logged messages under a queue key, as recovery and the index snapshot call
    it: a durable queue, or a durable delayed exchange's held messages. A holder that
    `keeps_cold_rows` takes recovered messages it alone holds as catalog rows
    (`restore_cold`) and reports them for the snapshot (`cold_rows`); the others get every
    recovered message as an object (`restore`)."""

    keeps_cold_rows: bool

    def restore(self, message: StoredMessage, redelivered: bool,
                logged_delivery: bool) -> None: ...

    def restore_cold(self, rows: Rows, catalog: Catalog, expirations: list[int | None],
                     all_redelivered: bool) -> None: ...

    def cold_rows(self) -> list[Rows]: ...

    def logged_deliveries(self) -> Iterable[tuple[StoredMessage, bool]]:
        """The logged messages it holds ready as objects, each with whether the log has this
        holder's delivery of it (one it does not list counts as delivered: handed out)."""
        ...
