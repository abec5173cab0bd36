"""Adding entries to an encoded field table without decoding and re-encoding it.

Dead-lettering writes a message's headers back sorted by key, with new entries (x-death,
x-first-death-*) among them; the general way is decode, add, sort, encode
(`encode_table(dict(sorted({**decode_table(raw), **new}.items())))`). When the table already is
what that would write — keys strictly increasing (so sorted, no duplicates), every value encoded
the way `encode_value` encodes its decoded form — the same bytes come from splicing the new,
already encoded entries in at their sorted places. `insert_sorted` does that, or says it cannot
(None) and the caller takes the general way.
"""

from __future__ import annotations

import bisect
import struct

from protocol.fieldtable import decode_value, encode_value

_u32 = struct.Struct("!I")

# Tags whose value bytes always come back unchanged from a decode and encode (fixed-size integers
# and timestamps, strings, void); with their fixed sizes (None: a u32 length follows the tag).
_VERBATIM_SIZES: dict[int, int | None] = {
    **{ord(tag): size for tag, size in (
        ("b", 1), ("B", 1), ("s", 2), ("U", 2), ("u", 2), ("I", 4), ("i", 4), ("l", 8),
        ("L", 8), ("T", 8),
    )},
    ord("S"): None, ord("x"): None, ord("V"): 0,
}  # fmt: skip


def sorted_entry_starts(data: bytes, offset: int = 0) -> tuple[list[bytes], list[int]] | None:
    """The keys and entry offsets of the table at `offset` (its 4-byte length first) plus the
    offset just past it as a last "start", if the table is canonical: re-encoding its decoded,
    key-sorted entries gives back exactly these bytes. None if it is not (or is malformed)."""
    try:
        return _scan(data, offset)
    except (IndexError, ValueError, UnicodeDecodeError, struct.error):
        return None


def _scan(data: bytes, offset: int) -> tuple[list[bytes], list[int]] | None:
    end = offset + 4 + _u32.unpack_from(data, offset)[0]
    if end > len(data):
        return None
    position = offset + 4
    keys: list[bytes] = []
    starts: list[int] = []
    previous = b""
    while position < end:
        name_end = position + 1 + data[position]
        key = data[position + 1 : name_end]
        if keys and key <= previous:
            return None  # out of order or a duplicate: the general way sorts or merges it
        key.decode()  # the general way decodes keys strictly
        value_end = _value_end(data, name_end)
        if value_end is None:
            return None
        keys.append(key)
        starts.append(position)
        previous = key
        position = value_end
    if position != end:
        return None
    starts.append(end)
    return keys, starts


def _value_end(data: bytes, offset: int) -> int | None:
    """Where the value at `offset` ends, if its bytes are canonical; else None."""
    tag = data[offset]
    if tag in _VERBATIM_SIZES:
        size = _VERBATIM_SIZES[tag]
        if size is None:
            size = 4 + _u32.unpack_from(data, offset + 1)[0]
        end = offset + 1 + size
        return end if end <= len(data) else None
    if tag == 0x74:  # "t": a boolean re-encodes as 0 or 1
        return offset + 2 if data[offset + 1] in (0, 1) else None
    # Floats, decimals, nested tables and arrays: canonical when a round trip changes nothing.
    value, end = decode_value(data, offset)
    return end if encode_value(value) == data[offset:end] else None


def insert_sorted(
    data: bytes, offset: int, entries: tuple[tuple[bytes, bytes], ...],
    refuse: tuple[bytes, ...] = (),
) -> bytes | None:
    """The table at `offset` (4-byte length first) with `entries` — (key, the entry's encoded
    bytes: key length, key, value), sorted by key — spliced in at their sorted places; the same
    bytes as decoding, adding, sorting and encoding it. None if the table is not canonical,
    already holds one of the keys, or holds a key of `refuse`."""
    scanned = sorted_entry_starts(data, offset)
    if scanned is None:
        return None
    keys, starts = scanned
    if refuse and not set(refuse).isdisjoint(keys):
        return None
    parts = []
    copied = offset + 4
    for key, encoded in entries:
        index = bisect.bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return None
        cut = starts[index]
        parts.append(data[copied:cut])
        parts.append(encoded)
        copied = cut
    parts.append(data[copied : starts[-1]])
    body = b"".join(parts)
    return _u32.pack(len(body)) + body


def encoded_entry(key: str, value: bytes) -> tuple[bytes, bytes]:
    """(key, its entry bytes) for `insert_sorted`, from an encoded value (tag byte first)."""
    raw_key = key.encode()
    return raw_key, bytes((len(raw_key),)) + raw_key + value
