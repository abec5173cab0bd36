"""Adding entries to an encoded field table without decoding and re-encoding it.

Dead-lettering writes a message's headers back sorted by key, with new entries (x-death,
x-first-death-*) among them; the general way is decode, add, sort, encode
(`encode_table(dict(sorted({**decode_table(raw), **new}.items())))`). When the table is made of
entries that encoding writes back unchanged — each value encoded the way `encode_value`
encodes its decoded form, keys unique — the same bytes come from sorting the entries' bytes,
the new (already encoded) ones among them (UTF-8 bytes sort as the decoded keys do).
`insert_sorted` does that, or says it cannot (None) and the caller takes the general way.
"""

from __future__ import annotations

import struct

from protocol.fieldtable import decode_value, encode_value

_u32 = struct.Struct("!I")

# Tags whose value bytes always come back unchanged from a decode and encode (fixed-size integers
# and timestamps, strings, void); with their fixed sizes (None: a u32 length follows the tag).
_VERBATIM_SIZES: dict[int, int | None] = {
    **{ord(tag): size for tag, size in (
        ("b", 1), ("B", 1), ("s", 2), ("U", 2), ("u", 2), ("I", 4), ("i", 4), ("l", 8),
        ("T", 8),
    )},
    ord("S"): None, ord("x"): None, ord("V"): 0,
}  # fmt: skip


def entries(
    data: bytes, offset: int = 0, refuse: frozenset[bytes] | set[bytes] = frozenset()
) -> list[tuple[bytes, bytes]] | None:
    """The entries of the table at `offset` (its 4-byte length first) as (key, the entry's
    bytes), if every value is canonical — encoding its decoded form gives back its bytes — and
    every key valid UTF-8 and not in `refuse`; None if not (or if the table is malformed)."""
    try:
        return _scan(data, offset, refuse)
    except (IndexError, ValueError, UnicodeDecodeError, struct.error):
        return None


def _scan(
    data: bytes, offset: int, refuse: frozenset[bytes] | set[bytes]
) -> list[tuple[bytes, bytes]] | None:
    end = offset + 4 + _u32.unpack_from(data, offset)[0]
    if end > len(data):
        return None
    position = offset + 4
    found = []
    while position < end:
        name_end = position + 1 + data[position]
        key = data[position + 1 : name_end]
        if key in refuse:
            return None  # before its value is checked: that may cost a round trip
        key.decode()  # the general way decodes keys strictly
        value_end = _value_end(data, name_end)
        if value_end is None:
            return None
        found.append((key, data[position:value_end]))
        position = value_end
    return found if position == end else None


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
    data: bytes, offset: int, additions: tuple[tuple[bytes, bytes], ...],
    refuse: tuple[bytes, ...] = (),
) -> bytes | None:
    """The table at `offset` (4-byte length first) with `additions` — (key, the entry's encoded
    bytes: key length, key, value) — added and all entries sorted by key: the same bytes as
    decoding, adding, sorting and encoding it. None if a value is not canonical, a key occurs
    twice (the general way keeps one of them) or is one of `refuse`."""
    found = entries(data, offset, {key for key, _ in additions}.union(refuse))
    if found is None:
        return None
    merged = sorted(found + list(additions))
    if len({key for key, _ in merged}) < len(merged):
        return None
    body = b"".join([entry for _, entry in merged])
    return _u32.pack(len(body)) + body


def encoded_entry(key: str, value: bytes) -> tuple[bytes, bytes]:
    """(key, its entry bytes) for `insert_sorted`, from an encoded value (tag byte first)."""
    raw_key = key.encode()
    return raw_key, bytes((len(raw_key),)) + raw_key + value
