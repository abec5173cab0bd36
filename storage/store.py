"""The message store: which persistent messages each durable queue holds, kept in the
write-ahead log; recovery of that state on start; compaction of dead segments; paging of
message bodies out of memory (a logged body can always be read back from its segment).

A persistent message routed to durable queues is logged once (PUBLISH, listing the queues);
acks, rejects and drops are logged as REMOVE, deliveries as DELIVERED (so a message handed out
before a crash comes back redelivered), purges and deletes as PURGE. REMOVE and DELIVERED ids
are gathered during an event-loop turn and written as one record per queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from protocol import properties
from protocol.codec import shortstr
from storage import records
from storage.records import QueueKey
from storage.wal import SEGMENT_SIZE, CopiedRecord, WriteAheadLog, read_at, segment_path

if TYPE_CHECKING:
    from broker.message import Message
    from broker.queue import Queue

log = logging.getLogger(__name__)


class StorageError(Exception):
    """The data directory cannot be used; the message says why."""


@dataclass
class _Segment:
    number: int
    size: int = 0
    live_bytes: int = 0
    messages: dict[int, Message] = field(default_factory=dict)  # live messages logged here


class LoggedMessage(NamedTuple):
    """Where a logged message is, without its body."""

    segment: int
    published_at: int
    body_offset: int
    body_size: int
    exchange: str
    routing_key: str
    props_raw: bytes


@dataclass
class ScanResult:
    """What replaying the log found."""

    publishes: dict[int, LoggedMessage] = field(default_factory=dict)
    shared: dict = field(default_factory=dict)  # one copy of repeated names and properties
    members: dict[QueueKey, dict[int, bool]] = field(default_factory=dict)  # id -> delivered
    segment_sizes: dict[int, int] = field(default_factory=dict)
    corrupt_records: int = 0
    truncated_bytes: int = 0


def segment_numbers(directory: Path) -> list[int]:
    numbers = []
    for path in directory.glob("*.wal"):
        try:
            numbers.append(int(path.stem))
        except ValueError:
            continue
    return sorted(numbers)


def check_segments(directory: Path) -> None:
    """Refuse (before touching anything) segments this version cannot read."""
    for number in segment_numbers(directory):
        path = segment_path(directory, number)
        with open(path, "rb") as file:
            head = file.read(records.SEGMENT_HEADER_SIZE)
        if len(head) < records.SEGMENT_HEADER_SIZE:
            continue  # a segment torn at creation: recovery drops it
        try:
            version, _ = records.parse_segment_header(head)
        except records.CorruptRecord as exc:
            raise StorageError(f"{path}: {exc}") from exc
        if version != records.FORMAT_VERSION:
            raise StorageError(
                f"{path} has log format version {version}; this Warren reads version "
                f"{records.FORMAT_VERSION}"
            )


def scan(directory: Path) -> ScanResult:
    """Replay every segment in order. A torn or corrupt tail of the last segment is truncated;
    a corrupt record elsewhere is skipped (and counted)."""
    result = ScanResult()
    numbers = segment_numbers(directory)
    for index, number in enumerate(numbers):
        path = segment_path(directory, number)
        data = path.read_bytes()
        last = index == len(numbers) - 1
        end = _replay_segment(number, data, result)
        result.segment_sizes[number] = end
        if end < len(data):
            lost = len(data) - end
            result.truncated_bytes += lost
            if last:
                log.warning("%s: torn tail of %d bytes after offset %d truncated", path, lost, end)
                with open(path, "r+b") as file:
                    file.truncate(end)
            else:
                log.warning("%s: %d unreadable bytes after offset %d skipped", path, lost, end)
    return result


def _replay_segment(number: int, data: bytes, result: ScanResult) -> int:
    """Apply a segment's records; return the offset where readable data ends."""
    if len(data) < records.SEGMENT_HEADER_SIZE:
        return 0
    offset = records.SEGMENT_HEADER_SIZE
    while offset < len(data):
        try:
            read = records.read_record(data, offset)
            if read is None:  # the data ends inside this record: torn, unless its length lies
                raise records.CorruptRecord("record runs past the end of the segment")
            payload, next_offset = read
            record = records.decode_payload(payload, with_body=False)
            if isinstance(record, records.PublishRecord):
                record.body_offset += offset + records.RECORD_HEAD_SIZE  # now file-absolute
        except records.CorruptRecord as exc:
            resume = _next_good_record(data, offset + 1)
            if resume is None:
                return offset
            result.corrupt_records += 1
            log.warning("segment %d: corrupt record at offset %d skipped (%s)", number, offset, exc)
            offset = resume
            continue
        _apply(number, record, result)
        offset = next_offset
    return offset


def _next_good_record(data: bytes, start: int) -> int | None:
    """The first offset from `start` where a whole, valid record begins (None: the rest is a
    torn tail)."""
    unpack, size = records.RECORD_HEAD.unpack_from, len(data)
    for offset in range(start, size - records.RECORD_HEAD_SIZE):
        length = unpack(data, offset)[0]
        if not 0 < length <= size - offset - records.RECORD_HEAD_SIZE:
            continue  # cheap rejection before the CRC
        try:
            read = records.read_record(data, offset)
            if read is not None:
                records.decode_payload(read[0])
                return offset
        except records.CorruptRecord:
            continue
    return None


def _apply(segment: int, record: records.Record, result: ScanResult) -> None:
    if isinstance(record, records.PublishRecord):
        if record.message_id in result.publishes:  # a copy moved forward lists current queues
            for key, members in result.members.items():
                if key not in record.queues:
                    members.pop(record.message_id, None)
        shared = result.shared
        result.publishes[record.message_id] = LoggedMessage(
            segment, record.published_at, record.body_offset, record.body_size,
            shared.setdefault(record.exchange, record.exchange),
            shared.setdefault(record.routing_key, record.routing_key),
            shared.setdefault(record.props_raw, record.props_raw),
        )
        for key in record.queues:
            members = result.members.setdefault(key, {})
            members.setdefault(record.message_id, False)
    elif isinstance(record, records.IdsRecord):
        members = result.members.get(record.queue)
        if members is None:
            return
        if record.record_type == records.REMOVE:
            for message_id in record.message_ids:
                members.pop(message_id, None)
        else:
            for message_id in record.message_ids:
                if message_id in members:
                    members[message_id] = True
    else:
        result.members.pop(record.queue, None)


class MessageStore:
    def __init__(self, directory: Path, definitions_path: Path,
                 segment_size: int = SEGMENT_SIZE) -> None:
        self.directory = directory
        self.definitions_path = definitions_path
        self.segment_size = segment_size
        self.wal: WriteAheadLog | None = None
        self._segments: OrderedDict[int, _Segment] = OrderedDict()
        self._next_id = 1
        self._removed: defaultdict[Queue, list[int]] = defaultdict(list)
        self._delivered: defaultdict[Queue, list[int]] = defaultdict(list)
        self._to_page_out: deque[tuple[int, Message]] = deque()
        # (ticket of the copies, segment to delete once they are durable, body moves)
        self._retiring: deque[tuple[int, int, list]] = deque()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warren-reader")
        self.recovered_messages = 0

    # -- start-up -------------------------------------------------------------------------

    def recover(self, scanned: ScanResult, queues: dict[QueueKey, Queue], clean: bool) -> None:
        """Put the scanned messages back into their durable queues, in their original order.
        Runs on the event loop before it serves anyone; then opens a fresh segment.

        After a clean shutdown the DELIVERED records say exactly which messages were handed
        out. After a crash the last of them may not have reached the disk, so every recovered
        message is marked redelivered: "may have been delivered before" is then the truth."""
        from broker.message import Message

        for number, size in scanned.segment_sizes.items():
            self._segments[number] = _Segment(number, size)
        messages: dict[int, Message] = {}
        routes: dict[tuple[str, str], bytes] = {}
        for key, members in scanned.members.items():
            queue = queues.get(key)
            if queue is None:
                continue  # the queue is gone; so are its messages
            for message_id in sorted(members):
                message = messages.get(message_id)
                if message is None:
                    logged = scanned.publishes[message_id]
                    route = (logged.exchange, logged.routing_key)
                    route_bytes = routes.get(route)
                    if route_bytes is None:
                        route_bytes = routes[route] = shortstr(route[0]) + shortstr(route[1])
                    # Bodies stay on disk: the queue pages them in as it reaches them.
                    message = Message(
                        logged.exchange, logged.routing_key, route_bytes, logged.props_raw, None,
                        logged.body_size,
                    )
                    message.store_id = message_id
                    message.persistent = True
                    message.expiration = stored_expiration(logged.props_raw)
                    message.timestamp = logged.published_at / 1000
                    message.store_segment = segment = logged.segment
                    message.store_location = (segment, logged.body_offset)
                    message.store_size = logged.body_size + len(logged.props_raw) + 64
                    message.store_queues = []
                    messages[message_id] = message
                    info = self._segments[segment]
                    info.messages[message_id] = message
                    info.live_bytes += message.store_size
                message.store_queues.append(queue)
                redelivered = members[message_id] or not clean
                message.store_delivered = message.store_delivered or redelivered
                queue.restore(message, redelivered)
        self.recovered_messages = len(messages)
        if scanned.publishes:
            self._next_id = max(scanned.publishes) + 1
        last = max(self._segments, default=0)
        self.wal = WriteAheadLog(self.directory, last + 1, self.segment_size,
                                 self.definitions_path)
        self.wal.before_flush = self._emit_pending
        self.wal.after_flush = self._after_flush
        self._segments[last + 1] = _Segment(last + 1, records.SEGMENT_HEADER_SIZE)
        self._compact()

    # -- logging --------------------------------------------------------------------------

    def persist(self, message: Message, queues: list[Queue]) -> int:
        """Log a persistent message routed to durable queues; return its durability ticket."""
        if message.body is None:  # re-logging a paged-out message (a delayed one, released)
            message.body = self.read_body_now(message)
        message_id = self._next_id
        self._next_id += 1
        record, body_at = records.encode_publish(
            message_id, int(message.timestamp * 1000), [queue.key for queue in queues],
            message.exchange, message.routing_key, message.props_raw, message.body,
        )
        ticket, segment, offset = self.wal.append(record)
        message.store_id = message_id
        message.store_segment = segment
        message.store_location = (segment, offset + body_at)
        message.store_size = len(record)
        message.store_queues = list(queues)
        info = self._segment(segment)
        info.size = offset + len(record)
        info.messages[message_id] = message
        info.live_bytes += len(record)
        return ticket

    def _segment(self, number: int) -> _Segment:
        info = self._segments.get(number)
        if info is None:
            info = self._segments[number] = _Segment(number, records.SEGMENT_HEADER_SIZE)
        return info

    def removed(self, queue: Queue, message: Message) -> None:
        """A persistent message left a durable queue (ack, reject, drop, expiry)."""
        try:
            message.store_queues.remove(queue)
        except ValueError:
            return
        self._removed[queue].append(message.store_id)
        if not message.store_queues:
            self._forget(message)
        self.wal.schedule()

    def delivered(self, queue: Queue, message: Message) -> None:
        message.store_delivered = True
        self._delivered[queue].append(message.store_id)
        self.wal.schedule()

    def purged(self, queue: Queue, messages: list[Message]) -> None:
        """Every message of a queue is gone at once (purge, delete)."""
        self._emit_pending()
        for message in messages:
            if message.store_id:
                try:
                    message.store_queues.remove(queue)
                except ValueError:
                    continue
                if not message.store_queues:
                    self._forget(message)
        self.wal.append(records.encode_purge(queue.key))

    def _forget(self, message: Message) -> None:
        info = self._segments.get(message.store_segment)
        if info is not None and info.messages.pop(message.store_id, None) is not None:
            info.live_bytes -= message.store_size

    def _emit_pending(self) -> None:
        for record_type, pending in ((records.DELIVERED, self._delivered),
                                     (records.REMOVE, self._removed)):
            for queue, ids in pending.items():
                self._append(records.encode_ids(record_type, queue.key, ids))
            pending.clear()

    def _append(self, record: bytes) -> None:
        _, segment, offset = self.wal.append(record)
        self._segment(segment).size = offset + len(record)

    # -- compaction -----------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        return sum(info.size for info in self._segments.values())

    @property
    def live_bytes(self) -> int:
        return sum(info.live_bytes for info in self._segments.values())

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def _compact(self) -> None:
        """Drop the oldest segments once nothing in them is live; when worth it, copy the live
        messages of the oldest segment forward first. Oldest-first keeps replay correct: a
        REMOVE never outlives the PUBLISH it cancels."""
        segments = self._segments
        while len(segments) > 1:
            number, info = next(iter(segments.items()))
            if number >= self.wal.segment:
                break
            if info.messages and not self._worth_copying(info):
                break
            moves = [self._copy_forward(message) for message in list(info.messages.values())]
            del segments[number]
            if not moves:  # nothing live: it can go with the next batch
                self.wal.delete_segment_when_durable(number)
                continue
            # Readers keep using the old copies until the new ones are on disk; only then is
            # the old segment deleted.
            self._retiring.append((self.wal.pending_ticket, number, moves))

    def _worth_copying(self, info: _Segment) -> bool:
        """Copy the live messages of the oldest segment forward when it is mostly dead (under
        a quarter live: little to rewrite) or when the log has grown past twice the live data
        plus one segment. A queue drained from its head frees most segments by itself, so a
        lower bar would mostly rewrite what is about to be acked."""
        if info.live_bytes * 4 < info.size:
            return True
        return self.disk_bytes > 2 * self.live_bytes + self.segment_size

    def _copy_forward(self, message: Message) -> tuple[Message, tuple[int, int]]:
        """Re-log a live message in the current segment; returns where its body will be."""
        old = self._segments.get(message.store_segment)
        if old is not None:
            old.messages.pop(message.store_id, None)
        queues = [queue.key for queue in message.store_queues]
        if message.body is not None:
            record, body_at = records.encode_publish(
                message.store_id, int(message.timestamp * 1000), queues, message.exchange,
                message.routing_key, message.props_raw, message.body,
            )
            size = len(record)
        else:  # paged out: the writer thread copies the body from the old segment
            prefix = records.publish_prefix(records.publish_head(
                message.store_id, int(message.timestamp * 1000), queues, message.exchange,
                message.routing_key, message.props_raw, message.body_size,
            ))
            record = CopiedRecord(prefix, *message.store_location, message.body_size)
            body_at = records.RECORD_HEAD_SIZE + len(prefix)
            size = body_at + message.body_size
        _, segment, offset = self.wal.append(record)
        info = self._segment(segment)
        info.size = offset + size
        info.messages[message.store_id] = message
        info.live_bytes += size
        message.store_segment = segment
        message.store_size = size
        if message.store_delivered:
            for queue in message.store_queues:
                self._delivered[queue].append(message.store_id)
        return message, (segment, offset + body_at)

    def _retire_segments(self) -> None:
        """Copies made by compaction are durable: point readers at them, delete the old."""
        durable, retiring = self.wal.durable_ticket, self._retiring
        while retiring and retiring[0][0] <= durable:
            _, number, moves = retiring.popleft()
            for message, location in moves:
                message.store_location = location
            self.wal.delete_segment_when_durable(number)

    # -- paging ---------------------------------------------------------------------------

    def page_out_when_durable(self, message: Message) -> None:
        """Drop the body from memory once its record is on disk (it is read back on demand)."""
        self._to_page_out.append((self.wal.pending_ticket, message))

    def _page_out(self) -> None:
        durable, pending = self.wal.durable_ticket, self._to_page_out
        while pending and pending[0][0] <= durable:
            message = pending.popleft()[1]
            if message.store_queues:
                message.body = None

    def page_in(self, messages: list[Message], done: Callable[[], None]) -> None:
        """Read the bodies of paged-out messages in the reader thread, then call `done`."""
        locations = [(*m.store_location, m.body_size) for m in messages]
        future = asyncio.get_running_loop().run_in_executor(
            self._reader, _read_bodies, self.directory, locations
        )

        def loaded(result: asyncio.Future) -> None:
            bodies = result.result() if not result.exception() else [None] * len(messages)
            for message, body in zip(messages, bodies, strict=True):
                if message.body is None and body is not None:
                    message.body = body
            done()

        future.add_done_callback(loaded)

    def read_body_now(self, message: Message) -> bytes:
        """Blocking read of one body (basic.get, which must answer in order)."""
        return read_at(self.directory, *message.store_location, message.body_size)

    def _after_flush(self) -> None:
        self._page_out()
        self._retire_segments()
        self._compact()

    async def close(self) -> None:
        if self.wal is not None:
            self._emit_pending()
            await self.wal.drain()
            self.wal.close()
            self._reader.shutdown(wait=True)
            log.info("write-ahead log: %d fsyncs, %d bytes written, %d segments, %d bytes on "
                     "disk", self.wal.fsyncs, self.wal.bytes_written, self.segment_count,
                     self.disk_bytes)


def _read_bodies(directory: Path, locations: list[tuple[int, int, int]]) -> list[bytes | None]:
    bodies: list[bytes | None] = []
    for segment, offset, size in locations:
        try:
            bodies.append(read_at(directory, segment, offset, size))
        except OSError:  # moved by compaction meanwhile: the queue asks again
            bodies.append(None)
    return bodies


def stored_expiration(props_raw: bytes) -> int | None:
    """The expiration property of a logged message (validated when it was published)."""
    value = properties.get(props_raw, "expiration") if properties.has(props_raw, "expiration") \
        else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
