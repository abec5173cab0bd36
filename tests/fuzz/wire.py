"""A span-recording AMQP 0-9-1 encoder: builds valid frames and remembers where each field is.

The fuzzer mutates frames with knowledge of their structure: it sets a length prefix to 0 or
one past its content, replaces a field-table type tag, puts non-UTF-8 bytes into a short string,
changes the property flags of a content header. `Wire` encodes fields the way the spec does and
records a `Span` for every field; `frame()` wraps a payload into a frame and shifts its spans.

Length spans (`shortstr`, `longstr`, `table`, `array`, `frame_size`) know the range of the
content they measure, so that an insertion or deletion inside that range can keep every
enclosing length right (`Wire.insert`, `Wire.delete`) when a mutation wants the inner parser,
not the frame splitter, to meet the damage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

FRAME_END = 0xCE
LENGTH_KINDS = {"shortstr": 1, "longstr": 4, "table": 4, "array": 4, "frame_size": 4}


@dataclass
class Span:
    """A field at `offset` of `size` bytes; a length field measures data[offset+size:end]."""

    offset: int
    size: int
    kind: str
    end: int = 0

    @property
    def content_start(self) -> int:
        return self.offset + self.size


class Wire:
    """Bytes being encoded plus the spans of the fields written so far."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.spans: list[Span] = []

    # -- integers ------------------------------------------------------------------------------

    def _int(self, fmt: str, value: int, kind: str) -> Wire:
        self.spans.append(Span(len(self.data), struct.calcsize(fmt), kind))
        self.data += struct.pack(fmt, value)
        return self

    def octet(self, value: int) -> Wire:
        return self._int(">B", value, "octet")

    def short(self, value: int) -> Wire:
        return self._int(">H", value, "short")

    def long(self, value: int) -> Wire:
        return self._int(">I", value, "long")

    def longlong(self, value: int) -> Wire:
        return self._int(">Q", value, "longlong")

    def bits(self, *flags: bool) -> Wire:
        value = sum(1 << i for i, flag in enumerate(flags) if flag)
        return self._int(">B", value, "bits")

    def flags(self, value: int) -> Wire:
        return self._int(">H", value, "flags")

    # -- strings and tables ----------------------------------------------------------------------

    def _sized(self, kind: str, content: bytes) -> Wire:
        size = LENGTH_KINDS[kind]
        start = len(self.data)
        self.data += struct.pack(">B" if size == 1 else ">I", len(content))
        self.spans.append(Span(start, size, kind, start + size + len(content)))
        if content:
            self.spans.append(Span(len(self.data), len(content), "text"))
        self.data += content
        return self

    def shortstr(self, value: str | bytes) -> Wire:
        return self._sized("shortstr", value.encode() if isinstance(value, str) else value)

    def longstr(self, value: str | bytes) -> Wire:
        return self._sized("longstr", value.encode() if isinstance(value, str) else value)

    def _container(self, kind: str, write_items) -> Wire:
        start = len(self.data)
        self.data += b"\0\0\0\0"
        span = Span(start, 4, kind)
        self.spans.append(span)
        write_items()
        span.end = len(self.data)
        struct.pack_into(">I", self.data, start, span.end - start - 4)
        return self

    def table(self, items: dict[str, Any]) -> Wire:
        def write() -> None:
            for key, value in items.items():
                self.shortstr(key)
                self.value(value)

        return self._container("table", write)

    def array(self, values: list[Any]) -> Wire:
        def write() -> None:
            for value in values:
                self.value(value)

        return self._container("array", write)

    def nested_table(self, depth: int, key: str = "n") -> Wire:
        """`depth` tables each holding the next under `key`, the innermost {"leaf": "x"}.
        Written without recursion: depths of thousands are the point."""
        opened = []
        for _ in range(depth - 1):
            opened.append(Span(len(self.data), 4, "table"))
            self.spans.append(opened[-1])
            self.data += b"\0\0\0\0"
            self.shortstr(key).tag("F")
        self.table({"leaf": "x"})
        for span in reversed(opened):
            span.end = len(self.data)
            struct.pack_into(">I", self.data, span.offset, span.end - span.offset - 4)
        return self

    def tag(self, tag: str) -> Wire:
        self.spans.append(Span(len(self.data), 1, "tag"))
        self.data += tag.encode()
        return self

    def value(self, value: Any) -> Wire:
        """A tagged field value; `(tag, raw)` tuples pick the tag, plain values are inferred."""
        if isinstance(value, tuple):
            tag, raw = value
        elif isinstance(value, bool):
            tag, raw = "t", value
        elif isinstance(value, int):
            tag, raw = ("I", value) if -2**31 <= value < 2**31 else ("l", value)
        elif isinstance(value, float):
            tag, raw = "d", value
        elif isinstance(value, str):
            tag, raw = "S", value
        elif isinstance(value, bytes):
            tag, raw = "x", value
        elif isinstance(value, dict):
            tag, raw = "F", value
        elif isinstance(value, list):
            tag, raw = "A", value
        elif value is None:
            tag, raw = "V", None
        else:
            raise TypeError(f"no AMQP field type for {value!r}")
        self.tag(tag)
        fixed = {"t": ">B", "b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I",
                 "l": ">q", "T": ">Q", "f": ">f", "d": ">d"}
        if tag in fixed:
            self.spans.append(Span(len(self.data), struct.calcsize(fixed[tag]), "number"))
            self.data += struct.pack(fixed[tag], int(raw) if tag == "t" else raw)
        elif tag == "D":
            scale, digits = raw
            self.octet(scale)._int(">i", digits, "number")
        elif tag in "Sx":
            self.longstr(raw)
        elif tag == "F":
            self.table(raw)
        elif tag == "A":
            self.array(raw)
        elif tag != "V":
            raise ValueError(f"unknown tag {tag}")
        return self

    def raw(self, data: bytes) -> Wire:
        self.data += data
        return self

    # -- composition -----------------------------------------------------------------------------

    def append(self, other: Wire) -> Wire:
        shift = len(self.data)
        for span in other.spans:
            self.spans.append(Span(span.offset + shift, span.size, span.kind,
                                   span.end + shift if span.end else 0))
        self.data += other.data
        return self

    def copy(self) -> Wire:
        twin = Wire()
        return twin.append(self)

    # -- edits that keep enclosing lengths consistent ---------------------------------------

    def _length_spans_around(self, position: int) -> list[Span]:
        return [s for s in self.spans
                if s.kind in LENGTH_KINDS and s.content_start <= position <= s.end]

    def insert(self, position: int, data: bytes, fix_lengths: bool) -> None:
        """Insert `data` at `position`; with fix_lengths, every length around it grows too."""
        around = self._length_spans_around(position) if fix_lengths else []
        around_ids = {id(span) for span in around}
        self.data[position:position] = data
        for span in self.spans:
            if span.offset >= position:
                span.offset += len(data)
            if span.end and span.end >= position and (id(span) in around_ids
                                                      or span.offset >= position):
                span.end += len(data)
        for span in around:
            self._write_length(span, span.end - span.content_start)

    def delete(self, start: int, stop: int, fix_lengths: bool) -> None:
        """Remove data[start:stop]; with fix_lengths, lengths that contain the range shrink."""
        count = stop - start
        around = [s for s in self._length_spans_around(start) if s.end >= stop] \
            if fix_lengths else []
        del self.data[start:stop]
        kept = []
        for span in self.spans:
            if span.offset >= stop:
                span.offset -= count
            elif span.offset + span.size > start:
                continue  # the field itself was (partly) removed
            if span.end and (span.end >= stop):
                span.end -= count
            kept.append(span)
        self.spans = kept
        kept_ids = {id(span) for span in kept}
        for span in around:
            if id(span) in kept_ids:
                self._write_length(span, span.end - span.content_start)

    def _write_length(self, span: Span, value: int) -> None:
        if span.size == 1:
            self.data[span.offset] = value & 0xFF
        else:
            struct.pack_into(">I", self.data, span.offset, value & 0xFFFFFFFF)

    def set_length(self, span: Span, value: int) -> None:
        self._write_length(span, value)


def method(class_id: int, method_id: int) -> Wire:
    return Wire().short(class_id).short(method_id)


def frame(frame_type: int, channel: int, payload: Wire) -> Wire:
    """A whole frame around `payload`, with spans for type, channel, size and end octet."""
    out = Wire()
    out.spans.append(Span(0, 1, "frame_type"))
    out.spans.append(Span(1, 2, "channel"))
    out.spans.append(Span(3, 4, "frame_size", 7 + len(payload.data)))
    out.data += struct.pack(">BHI", frame_type, channel, len(payload.data))
    out.append(payload)
    out.spans.append(Span(len(out.data), 1, "frame_end"))
    out.data.append(FRAME_END)
    return out
