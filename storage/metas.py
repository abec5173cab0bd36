"""The metas of message rows: each distinct (exchange, routing key, raw properties) stored once,
with its expiration property, and counted by the rows that use it. A meta no row uses any more
is freed and its place reused, so that rows of messages with properties of their own (a
message id each, say) cost memory only while they are held.

Used by the message store for the messages it keeps as catalog rows (storage/store.py) and by
the page store for paged-out transient messages (storage/paging.py)."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable

Meta = tuple[str, str, bytes]  # exchange, routing key, raw properties
FREED: Meta = ("", "", b"")  # the place of a meta no row uses any more


class MetaTable:
    """`table[i]` and `expirations[i]` describe meta i; `add` and `release` count its rows."""

    def __init__(self, table: list[Meta] | None = None,
                 expirations: list[int | None] | None = None, used: Iterable[int] = ()) -> None:
        """Over an existing table (a recovered catalog's, changed in place), `used` giving
        the meta of every row still held."""
        self.table = [] if table is None else table
        self.expirations = [None] * len(self.table) if expirations is None else expirations
        counts = Counter(used)
        self.rows = array("I", [counts.get(index, 0) for index in range(len(self.table))])
        self._index = {meta: index for index, meta in enumerate(self.table) if self.rows[index]}
        self._free = [index for index, count in enumerate(self.rows) if not count]
        for index in self._free:
            self.table[index] = FREED
            self.expirations[index] = None

    def add(self, exchange: str, routing_key: str, props: bytes, expiration: int | None,
            count: int = 1) -> int:
        """The index of this meta (added if new), counted `count` more times (with 0 the
        caller must count it right after)."""
        meta = (exchange, routing_key, props)
        index = self._index.get(meta)
        if index is None:
            if self._free:
                index = self._free.pop()
                self.table[index] = meta
                self.expirations[index] = expiration
            else:
                index = len(self.table)
                self.table.append(meta)
                self.expirations.append(expiration)
                self.rows.append(0)
            self._index[meta] = index
        self.rows[index] += count
        return index

    def release(self, index: int, count: int = 1) -> None:
        """`count` rows using meta `index` are gone."""
        rows = self.rows
        rows[index] -= count
        if not rows[index]:
            meta = self.table[index]
            if self._index.get(meta) == index:
                del self._index[meta]
            self.table[index] = FREED
            self.expirations[index] = None
            self._free.append(index)
