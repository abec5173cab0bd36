"""The seeded mutator: case number -> (seed, damaged bytes), the same on every run and machine.

`make_case(n)` picks the seed kind by `n` (every kind gets its share), seeds `random.Random`
with `n`, builds the seed's frames and applies one to three mutations to its target frame.
Some mutations are blind (bit flips, boundary bytes, truncation, extension); the others use the
spans of wire.py: a length prefix set to 0, its maximum or one off, the frame type, channel or
end octet changed, the property flags of a content header changed, a field-table type tag
replaced with one that does not exist, non-UTF-8 bytes in a short string, an integer field set
to a boundary value. Edits inside a frame keep the frame size right most of the time, so that
the damage reaches the method, header or table parser instead of the frame splitter.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from seeds import SEEDS, Seed
from wire import LENGTH_KINDS, Span, Wire

BOUNDARY_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xCE)
FRAME_TYPES = (0, 1, 2, 3, 4, 8, 9, 0x41, 0xFF)
CHANNELS = (0, 2, 3, 0x7FFF, 0xFFFF)
BAD_TAGS = b"Z\x00?aceghjkmnopqrvwyzCEGHJKLMNOPQRUWXY\xff"
NON_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80abc", b"\xc0")


@dataclass
class Case:
    number: int
    seed: Seed
    mutations: list[str]
    data: bytes  # all of the seed's frames, the target one damaged

    @property
    def kind(self) -> str:
        return self.seed.kind


def make_case(number: int) -> Case:
    rng = random.Random(number)
    builder = SEEDS[number % len(SEEDS)]
    seed = builder(number, rng)
    target = seed.frames[seed.target].copy()
    names = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        name, mutate = rng.choice(MUTATIONS)
        if mutate(target, rng) is not False:
            names.append(name)
    if not names:  # nothing applied (no span of the kind): fall back to a bit flip
        flip_bit(target, rng)
        names.append("flip_bit")
    frames = [bytes(f.data) for f in seed.frames]
    frames[seed.target] = bytes(target.data)
    return Case(number, seed, names, b"".join(frames))


# -- helpers ---------------------------------------------------------------------------------------


def _spans(wire: Wire, *kinds: str) -> list[Span]:
    return [s for s in wire.spans if s.kind in kinds and s.offset < len(wire.data)]


def _payload_range(wire: Wire) -> tuple[int, int]:
    """Byte positions of the frame payload, or the whole data for the protocol header."""
    if any(s.kind == "frame_size" for s in wire.spans):
        return 7, max(len(wire.data) - 1, 7)
    return 0, len(wire.data)


def _fix_frame_size(rng: random.Random) -> bool:
    return rng.random() < 0.8


# -- blind mutations -----------------------------------------------------------------------------


def flip_bit(wire: Wire, rng: random.Random) -> None:
    position = rng.randrange(len(wire.data))
    wire.data[position] ^= 1 << rng.randrange(8)


def flip_payload_bit(wire: Wire, rng: random.Random) -> bool:
    start, stop = _payload_range(wire)
    if stop <= start:
        return False
    wire.data[rng.randrange(start, stop)] ^= 1 << rng.randrange(8)
    return True


def boundary_byte(wire: Wire, rng: random.Random) -> bool:
    start, stop = _payload_range(wire)
    if stop <= start:
        return False
    wire.data[rng.randrange(start, stop)] = rng.choice(BOUNDARY_BYTES)
    return True


def truncate(wire: Wire, rng: random.Random) -> bool:
    start, stop = _payload_range(wire)
    if stop <= start:
        return False
    cut = rng.randrange(start, stop)
    wire.delete(cut, stop, fix_lengths=_fix_frame_size(rng) and start == 7)
    return True


def extend(wire: Wire, rng: random.Random) -> None:
    start, stop = _payload_range(wire)
    position = rng.choice((stop, rng.randrange(start, stop + 1)))
    extra = rng.choice((b"\x00", b"\xff" * 3, bytes(rng.randrange(256) for _ in range(5)),
                        b"\x00" * 64))
    # Only the frame size follows: the payload gains bytes its own fields do not account for.
    framed = any(s.kind == "frame_size" for s in wire.spans)
    wire.insert(position, extra, fix_lengths=False)
    if framed and _fix_frame_size(rng):
        struct.pack_into(">I", wire.data, 3, len(wire.data) - 8)


# -- structure-aware mutations -------------------------------------------------------------------


def length_field(wire: Wire, rng: random.Random) -> bool:
    spans = _spans(wire, *LENGTH_KINDS)
    if not spans:
        return False
    span = rng.choice(spans)
    actual = span.end - span.content_start
    maximum = 0xFF if span.size == 1 else 0xFFFFFFFF
    value = rng.choice((0, maximum, actual + 1, max(actual - 1, 0), 0x7FFFFFFF & maximum,
                        actual + 2, actual * 2))
    wire.set_length(span, value)
    return True


def frame_type(wire: Wire, rng: random.Random) -> bool:
    if not _spans(wire, "frame_type"):
        return False
    wire.data[0] = rng.choice(FRAME_TYPES)
    return True


def channel_number(wire: Wire, rng: random.Random) -> bool:
    if not _spans(wire, "channel"):
        return False
    struct.pack_into(">H", wire.data, 1, rng.choice(CHANNELS))
    return True


def frame_end(wire: Wire, rng: random.Random) -> bool:
    spans = _spans(wire, "frame_end")
    if not spans:
        return False
    wire.data[spans[0].offset] = rng.choice((0x00, 0xCD, 0xCF, 0xFF, 0x0A))
    return True


def property_flags(wire: Wire, rng: random.Random) -> bool:
    spans = _spans(wire, "flags")
    if not spans:
        return False
    offset = spans[0].offset
    current = struct.unpack_from(">H", wire.data, offset)[0]
    value = rng.choice((current ^ (1 << rng.randrange(16)), current | 1, 0xFFFF, 0,
                        rng.randrange(0x10000), current ^ (1 << rng.randrange(2, 16))))
    struct.pack_into(">H", wire.data, offset, value)
    return True


def table_tag(wire: Wire, rng: random.Random) -> bool:
    spans = _spans(wire, "tag")
    if not spans:
        return False
    wire.data[rng.choice(spans).offset] = rng.choice(BAD_TAGS)
    return True


def non_utf8(wire: Wire, rng: random.Random) -> bool:
    spans = [s for s in _spans(wire, "shortstr", "longstr") if s.kind == "shortstr"]
    if not spans:
        return False
    span = rng.choice(spans)
    bad = rng.choice(NON_UTF8)
    if span.end > span.content_start and rng.random() < 0.5:
        position = rng.randrange(span.content_start, span.end)
        wire.data[position:position + 1] = bad[:1]
        return True
    wire.insert(rng.randrange(span.content_start, span.end + 1), bad,
                fix_lengths=_fix_frame_size(rng))
    return True


def integer_field(wire: Wire, rng: random.Random) -> bool:
    spans = _spans(wire, "octet", "short", "long", "longlong", "number", "bits")
    if not spans:
        return False
    span = rng.choice(spans)
    bits = span.size * 8
    current = int.from_bytes(wire.data[span.offset:span.offset + span.size], "big")
    value = rng.choice((0, (1 << bits) - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1,
                        (current + 1) % (1 << bits), (current - 1) % (1 << bits)))
    wire.data[span.offset:span.offset + span.size] = value.to_bytes(span.size, "big")
    return True


def drop_field(wire: Wire, rng: random.Random) -> bool:
    """Remove one whole field (a string with its length, an integer, a table entry's value)."""
    start, stop = _payload_range(wire)
    spans = [s for s in wire.spans if start <= s.offset < stop
             and s.kind not in ("text", "frame_end", "frame_type", "channel", "frame_size")]
    if not spans:
        return False
    span = rng.choice(spans)
    end = span.end if span.kind in LENGTH_KINDS else span.offset + span.size
    wire.delete(span.offset, end, fix_lengths=_fix_frame_size(rng))
    return True


MUTATIONS = [
    ("flip_bit", flip_bit),
    ("flip_payload_bit", flip_payload_bit),
    ("boundary_byte", boundary_byte),
    ("truncate", truncate),
    ("extend", extend),
    ("length_field", length_field),
    ("length_field", length_field),
    ("frame_type", frame_type),
    ("channel", channel_number),
    ("frame_end", frame_end),
    ("property_flags", property_flags),
    ("property_flags", property_flags),
    ("table_tag", table_tag),
    ("table_tag", table_tag),
    ("non_utf8", non_utf8),
    ("non_utf8", non_utf8),
    ("integer_field", integer_field),
    ("integer_field", integer_field),
    ("drop_field", drop_field),
]
