"""Write-ahead log records: pure encoding and decoding, no I/O.

Segment file: a 16-byte header (magic, format version, segment number) followed by records.
Record: length (u32, of what follows the CRC), CRC32 (u32, of the same bytes), type (u8), body.
All integers are big-endian. See docs/storage-format.md for the layout of each record type.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"WARRENLG"
FORMAT_VERSION = 1
SEGMENT_HEADER = struct.Struct("!8sHHI")  # magic, version, reserved, segment number
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size
RECORD_HEAD = struct.Struct("!II")  # length, crc32
RECORD_HEAD_SIZE = RECORD_HEAD.size
MAX_RECORD_SIZE = 512 * 1024 * 1024

PUBLISH = 1  # a message and the durable queues it is in
REMOVE = 2  # messages that left a queue (ack, reject, expiry, drop)
DELIVERED = 3  # messages handed to a consumer (they come back redelivered after a crash)
PURGE = 4  # every message of a queue logged so far is gone (purge, delete)
# A queue's own state of messages it holds: how many times each came back to it
# (x-delivery-count), whether it keeps it as a dead letter (a reason code; 0: no) and, for one
# returned to the back of the queue, its place: an id taken from the message ids when it was
# returned (0: its own id's place). Absolute, so that a compaction copy may repeat it.
STATE = 5

_u16 = struct.Struct("!H")
_u32 = struct.Struct("!I")
_STATE_ENTRY = struct.Struct("!QIBQ")  # message id, returns, dead-letter reason code, place
# A PUBLISH payload's fixed start, after its type: message id, published at (ms since the
# epoch), queue count.
PUBLISH_HEAD = struct.Struct("!QQH")

QueueKey = tuple[str, str]  # (vhost, queue name)


class CorruptRecord(ValueError):
    """A record that does not parse or whose CRC does not match."""


def segment_header(number: int) -> bytes:
    return SEGMENT_HEADER.pack(MAGIC, FORMAT_VERSION, 0, number)


def parse_segment_header(data: bytes) -> tuple[int, int]:
    """(format version, segment number); raises CorruptRecord for a file that is not a segment."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptRecord("segment header truncated")
    magic, version, _, number = SEGMENT_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptRecord("not a Warren log segment (bad magic)")
    return version, number


def published_ms(timestamp: float) -> int:
    """A message's publication time as logged (ms since the epoch). A recovered message's
    timestamp is that figure / 1000, so this gives the same figure back."""
    return round(timestamp * 1000)


def frame(record_type: int, body: bytes) -> bytes:
    payload = bytes((record_type,)) + body
    return RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")  # a routing key may be any bytes
    return bytes((len(raw),)) + raw


def _queue_key(key: QueueKey) -> bytes:
    return _shortstr(key[0]) + _shortstr(key[1])


def publish_head(
    message_id: int, published_at: int, queues: list[QueueKey], exchange: str,
    routing_key: str, props_raw: bytes, body_size: int,
) -> bytes:
    """Everything of a PUBLISH body before the message body itself (which comes last, so a
    record can be rebuilt around body bytes read from another segment)."""
    return b"".join((
        PUBLISH_HEAD.pack(message_id, published_at, len(queues)),
        *(_queue_key(key) for key in queues),
        _shortstr(exchange),
        _shortstr(routing_key),
        _u32.pack(len(props_raw)),
        props_raw,
        _u32.pack(body_size),
    ))


def encode_publish(
    message_id: int, published_at: int, queues: list[QueueKey], exchange: str,
    routing_key: str, props_raw: bytes, body: bytes,
) -> tuple[bytes, int]:
    """The record, and where the message body starts inside it."""
    head = publish_head(message_id, published_at, queues, exchange, routing_key, props_raw,
                        len(body))
    return frame(PUBLISH, head + body), RECORD_HEAD_SIZE + 1 + len(head)


def publish_prefix(head: bytes) -> bytes:
    """The payload bytes of a PUBLISH record before its body (type byte + head)."""
    return bytes((PUBLISH,)) + head


def encode_ids(record_type: int, key: QueueKey, message_ids: Iterable[int]) -> bytes:
    """REMOVE or DELIVERED: a queue and message ids."""
    ids = array("Q", message_ids)
    if sys.byteorder == "little":
        ids.byteswap()
    return frame(record_type, _queue_key(key) + _u32.pack(len(ids)) + ids.tobytes())


def encode_states(key: QueueKey, states: Iterable[tuple[int, int, int, int]]) -> bytes:
    """STATE: a queue and (message id, returns, dead-letter reason code, place) entries."""
    entries = [_STATE_ENTRY.pack(*state) for state in states]
    return frame(STATE, _queue_key(key) + _u32.pack(len(entries)) + b"".join(entries))


def decode_states(data: bytes, offset: int, end: int) -> list[tuple[int, int, int, int]]:
    """The entries of a STATE record whose count is at `offset` (its payload ends at `end`)."""
    count = _u32.unpack_from(data, offset)[0]
    offset += 4
    if offset + count * _STATE_ENTRY.size != end:
        raise CorruptRecord("state record size mismatch")
    return [_STATE_ENTRY.unpack_from(data, offset + index * _STATE_ENTRY.size)
            for index in range(count)]


def encode_purge(key: QueueKey) -> bytes:
    return frame(PURGE, _queue_key(key))


@dataclass
class PublishRecord:
    message_id: int
    published_at: int
    queues: list[QueueKey]
    exchange: str
    routing_key: str
    props_raw: bytes
    body: bytes | None  # None when decoded without it
    body_size: int
    body_offset: int  # of the body inside the record's payload, for reading it back


@dataclass
class IdsRecord:
    record_type: int
    queue: QueueKey
    message_ids: list[int]


@dataclass
class PurgeRecord:
    queue: QueueKey


@dataclass
class StateRecord:
    queue: QueueKey
    states: list[tuple[int, int, int, int]]  # (message id, returns, reason code, place)


Record = PublishRecord | IdsRecord | PurgeRecord | StateRecord


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise CorruptRecord("record body truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def shortstr(self) -> str:
        return self.take(self.take(1)[0]).decode()

    def any_shortstr(self) -> str:
        """A shortstr that may hold any bytes (a routing key: RabbitMQ checks no UTF-8 in
        basic.publish), kept by surrogateescape."""
        return self.take(self.take(1)[0]).decode("utf-8", "surrogateescape")

    def queue_key(self) -> QueueKey:
        return self.shortstr(), self.shortstr()

    def u32(self) -> int:
        return _u32.unpack(self.take(4))[0]


def decode_payload(payload: bytes, with_body: bool = True) -> Record:
    """A record from its payload (type byte + body), CRC already checked. Without `with_body`
    a PUBLISH record only says where its message body is."""
    if not payload:
        raise CorruptRecord("empty record")
    record_type = payload[0]
    reader = _Reader(payload, 1)
    try:
        if record_type == PUBLISH:
            message_id, published_at, count = PUBLISH_HEAD.unpack(reader.take(PUBLISH_HEAD.size))
            queues = [reader.queue_key() for _ in range(count)]
            exchange = reader.any_shortstr()
            routing_key = reader.any_shortstr()
            props_raw = reader.take(reader.u32())
            body_size = reader.u32()
            body_offset = reader.offset
            if body_offset + body_size != len(payload):
                raise CorruptRecord("publish record body size mismatch")
            body = payload[body_offset:] if with_body else None
            return PublishRecord(message_id, published_at, queues, exchange, routing_key,
                                 props_raw, body, body_size, body_offset)
        if record_type in (REMOVE, DELIVERED):
            key = reader.queue_key()
            count = reader.u32()
            ids = list(struct.unpack(f"!{count}Q", reader.take(8 * count)))
            return IdsRecord(record_type, key, ids)
        if record_type == PURGE:
            return PurgeRecord(reader.queue_key())
        if record_type == STATE:
            key = reader.queue_key()
            return StateRecord(key, decode_states(payload, reader.offset, len(payload)))
    except (UnicodeDecodeError, struct.error) as exc:
        raise CorruptRecord(str(exc)) from exc
    raise CorruptRecord(f"unknown record type {record_type}")


def read_record(data: bytes, offset: int) -> tuple[bytes, int] | None:
    """(payload, next offset) of the record at `offset`; None if the data ends inside it;
    CorruptRecord if its length is absurd or its CRC does not match."""
    if offset + RECORD_HEAD_SIZE > len(data):
        return None
    length, crc = RECORD_HEAD.unpack_from(data, offset)
    if length == 0 or length > MAX_RECORD_SIZE:
        raise CorruptRecord(f"bad record length {length}")
    end = offset + RECORD_HEAD_SIZE + length
    if end > len(data):
        return None
    payload = data[offset + RECORD_HEAD_SIZE : end]
    if zlib.crc32(payload) != crc:
        raise CorruptRecord("CRC mismatch")
    return payload, end
