"""The stream queue (x-queue-type: stream): an append-only log that consumers read, each with a
cursor of its own, as RabbitMQ 3.10's streams work over AMQP 0-9-1.

- Publishing appends to the stream's own log (storage/streamlog.py), written and fsynced with
  the write-ahead log's group commits; `log_ticket` is the commit the publisher confirm (or
  tx.commit-ok) waits for, persistent message or not (a stream keeps every message).
- Consuming: basic.qos is required (its prefetch is the consumer's credit, RabbitMQ's 406
  otherwise), auto-ack consumers are refused (540). Each consumer gets a `_Reader` starting at
  its x-stream-offset (first, last, next = the default, a number, a timestamp, an interval):
  records are read a bounded batch at a time in a reader thread (never on the event loop, so a
  reader from `first` on a big stream does not block it), the x-stream-offset header (long)
  spliced into each one's headers in sorted position there too, and delivered while the
  consumer has credit (consumers at the same place share reads: SHARED_READS). An ack gives
  credit back and removes nothing. What a write makes durable
  is offered to the readers waiting at the end.
- Refused as RabbitMQ refuses them (540 connection close): basic.get, queue.purge,
  basic.nack / basic.reject. Retention (x-max-age, x-max-length-bytes) drops whole segments.
- The management API's fields (`api_fields`): type stream, members/online/readers naming this
  node, messages = stored messages, none unacknowledged, and Warren's `stream_disk_bytes`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.errors import NotImplementedByBroker, PreconditionFailed
from broker.message import Message, QueuedMessage
from broker.queue import Queue
from broker.queue_args import QueueSettings, refuse_arguments
from broker.stream_args import MODULE, StartAt, parse_age, parse_offset
from protocol import properties
from protocol.fieldtable import encode_table
from protocol.tablesplice import encoded_entry, insert_sorted
from storage import streamlog
from storage.streamlog import SEGMENT_HEAD, Record, Segment, StreamLog

if TYPE_CHECKING:
    from collections.abc import Sequence

    from broker.consumer import Consumer

log = logging.getLogger(__name__)

# Reads run here, a bounded batch at a time: at most this many records or bytes per read.
READ_RECORDS = 2000
READ_BYTES = 4 * 1024 * 1024
# Readers at the same place share reads: the last few reads (done or under way) are kept, so
# consumers reading the same stretch (several from `first`) read and prepare it once.
SHARED_READS = 4
_READERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="warren-stream-read")
_LONG = struct.Struct("!q")
_HEADERS_FLAG = 0x20  # the headers bit of the property flags' first byte
_OFFSET_KEY = "x-stream-offset"
# Messages an older Warren logged in the message store for a stream it ran as a classic queue
# are moved into the stream's log this many at a time (`adopt_recovered`).
ADOPT_BATCH = 10_000



class StreamDelivery:
    """A record read for one consumer, in the shape a `DeliveryTarget` delivers (a queued
    message and its message in one object: streams have no requeue, no redelivery, no TTL):
    its property bytes already carry x-stream-offset."""

    __slots__ = ("seq", "route_bytes", "props_raw", "body", "timestamp")
    redelivered = False
    delivery_count = 0
    store_ref = None

    def __init__(self, seq: int, route_bytes: bytes, props_raw: bytes, body: bytes,
                 timestamp: int) -> None:
        self.seq = seq  # the offset
        self.route_bytes = route_bytes
        self.props_raw = props_raw
        self.body = body
        self.timestamp = timestamp / 1000

    @property
    def message(self) -> StreamDelivery:
        return self

    @property
    def body_size(self) -> int:
        return len(self.body)


def with_offset(props: bytes, offset: int) -> bytes:
    """The property bytes with an x-stream-offset header (long) among the headers, sorted."""
    entry = encoded_entry(_OFFSET_KEY, b"l" + _LONG.pack(offset))
    at = properties.headers_offset(props)
    if at is not None:
        if not props[0] & _HEADERS_FLAG:
            return properties.set_headers(props, at, struct.pack("!I", len(entry[1])) + entry[1])
        table = insert_sorted(props, at, (entry,))
        if table is not None:
            return properties.set_headers(props, at, table)
    headers = dict(properties.typed_headers(props))  # the general way: decode, add, encode
    headers[_OFFSET_KEY] = ("l", offset)
    return properties.rebuild(props, {"headers": encode_table(dict(sorted(headers.items())))})


def _prepare(records: list[Record]) -> list[StreamDelivery]:
    """Reader thread: records made ready to deliver."""
    return [StreamDelivery(offset, route, with_offset(props, offset), body, timestamp)
            for offset, timestamp, route, props, body in records]


class _Reader:
    """One consumer's cursor: the segment and file position it reads next, what it still skips
    (below an offset or a time, until it reaches them), records read and not yet delivered."""

    __slots__ = ("consumer", "segment", "position", "min_offset", "min_ts", "buffer", "reading")

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.segment: Segment | None = None
        self.position = SEGMENT_HEAD.size
        self.min_offset = 0
        self.min_ts = 0
        self.buffer: deque[StreamDelivery] = deque()
        self.reading = False


class _Companion:
    """The stream's writes, in the write-ahead log's batches (storage.wal.Companion)."""

    __slots__ = ("queue",)

    def __init__(self, queue: StreamQueue) -> None:
        self.queue = queue

    def take(self) -> Any:
        stream = self.queue.stream_log
        return stream.take() if stream is not None else None

    def write(self, payload: Any) -> None:
        self.queue.stream_log.write(payload)

    def written(self, payload: Any) -> None:
        self.queue.written(payload)


class StreamQueue(Queue):
    type_name = "stream"
    type_module = MODULE
    refused_consumer_arguments = ("x-priority",)
    supports_global_qos = False
    logs_itself = True  # VirtualHost.enqueue: not in the message store; confirm on log_ticket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream_log: StreamLog | None = None
        self.log_ticket = 0
        self._companion = _Companion(self)
        self._readers: dict[Consumer, _Reader] = {}
        self._reads: dict[tuple[int, int, int, int], asyncio.Future] = {}  # see SHARED_READS
        self.fresh = False  # declared now, not recovered: whatever is on disk under its name goes

    def created(self, recovered: bool) -> None:
        self.fresh = not recovered

    # -- the log --------------------------------------------------------------------------

    @property
    def log(self) -> StreamLog:
        """The stream's log, opened (recovered) at first use, once the node's storage is open."""
        if self.stream_log is None:
            size, age = self._retention()
            max_bytes = self.settings.max_length_bytes  # the argument's or a policy's, lower
            self.stream_log = StreamLog.open(
                self.directory,
                size or streamlog.DEFAULT_SEGMENT_SIZE,
                max_bytes if isinstance(max_bytes, int) else None, age,
                fresh=self.fresh, actions=self.vhost.store.wal.actions,
            )
        return self.stream_log

    @property
    def directory(self) -> Path:
        root = Path(self.vhost.store.directory).parent / "streams"
        return streamlog.stream_directory(root, self.vhost.name, self.name)

    @property
    def unacked_count(self) -> int:
        """Always 0, as RabbitMQ shows a stream (reading removes nothing, so nothing delivered
        is waiting to leave): the API and /metrics agree. The fronts' += on it is dropped."""
        return 0

    @unacked_count.setter
    def unacked_count(self, _value: int) -> None:
        pass

    def _retention(self) -> tuple[int | None, int | None]:
        """(segment size, max age in ms) from the arguments and the policy, the lower of
        each, as RabbitMQ resolves them (max-length-bytes comes resolved in `settings`)."""
        policy = self.vhost.policies.get(self.settings.policy or "")
        definition = policy.definition if policy is not None else {}
        sizes = [value for value in (self.arguments.get("x-stream-max-segment-size-bytes"),
                                     definition.get("stream-max-segment-size-bytes"))
                 if isinstance(value, int) and not isinstance(value, bool) and value > 0]
        ages = [parse_age(value) for value in (self.arguments.get("x-max-age"),
                                               definition.get("max-age"))
                if isinstance(value, str)]
        ages = [age for age in ages if age is not None]
        return (min(sizes) if sizes else None), (min(ages) if ages else None)

    def apply_settings(self, settings: QueueSettings) -> None:
        """A policy changed: its max-length-bytes, max-age, stream-max-segment-size-bytes
        (where lower than the argument's) apply from the next new segment on; a stream runs
        no other policy key."""
        self.settings = settings
        if self.stream_log is not None:
            size, age = self._retention()
            stream = self.stream_log
            stream.max_bytes, stream.max_age_ms = settings.max_length_bytes, age
            stream.segment_size = max(size or streamlog.DEFAULT_SEGMENT_SIZE, 64)

    def open_log(self) -> None:
        """Open (recover) the log now (blocking: the node calls it in a thread at start)."""
        self.log  # noqa: B018 - opened on first use

    @property
    def message_count(self) -> int:
        if self.stream_log is None and self.vhost.store is None:
            return 0
        return self.log.message_count

    @property
    def ready_bytes(self) -> int:
        return self.log.stored_bytes if self.stream_log is not None else 0

    @property
    def memory_estimate(self) -> int:
        buffered = sum(len(reader.buffer) for reader in self._readers.values())
        index = self.stream_log.index_bytes if self.stream_log is not None else 0
        return index + 1200 * buffered

    def api_fields(self, node: str) -> dict[str, Any]:
        """What the management API shows of a stream besides `type` (RabbitMQ 3.10.8's keys;
        the size on disk is Warren's own)."""
        count = self.message_count
        return {
            "members": [node], "online": [node],
            "readers": {node: len(self._readers)} if self._readers else {},
            "messages": count, "messages_ready": count, "messages_unacknowledged": 0,
            "stream_disk_bytes": self.log.disk_bytes if self.stream_log is not None else 0,
        }

    # -- publishing -------------------------------------------------------------------------

    def enqueue(self, message: Message) -> bool:
        self._append(message)
        return True

    def _append(self, message: Message) -> None:
        """Append to the log; `log_ticket` is the write-ahead log batch it is durable with."""
        body = message.body
        if body is None:  # a logged message coming back (dead-lettered here, or recovered)
            body = self.vhost.store.read_body_now(message)
        self.log.append(message.route_bytes, message.props_raw, body,
                        int(message.timestamp * 1000))
        self.log_ticket = self.vhost.store.wal.companion_pending(self._companion)

    async def adopt_recovered(self) -> int:
        """Move the messages recovered from the message store under this queue's name into
        its log, in their order, and drop them from the store; returns how many. A Warren from
        before streams (issue 13) ran a queue declared `x-queue-type: stream` as a classic
        queue and logged its persistent messages in the message store: without this they would
        stay there unread. A batch leaves the store only once the stream has it on disk, so a
        crash during the move appends at most that batch again at the next start (a
        duplicate, never a loss). The node calls this at start, before serving anyone."""
        moved = 0
        loop = asyncio.get_running_loop()
        store = self.vhost.store
        while self._messages:
            batch = []
            while len(batch) < ADOPT_BATCH:
                entry = self._messages.pop()  # (thaws the catalog rows as they come)
                if entry is None:
                    break
                batch.append(entry.message)
            if not batch:
                break
            on_disk_only = [message for message in batch if message.body is None]
            if on_disk_only:  # their bodies read in the store's reader thread, in one go
                read = loop.create_future()
                store.page_in(on_disk_only, lambda done=read: done.set_result(None))
                await read
            for message in batch:
                self._append(message)
            durable = loop.create_future()
            store.wal.when_durable(
                self.log_ticket, lambda done=durable: done.done() or done.set_result(None))
            await durable
            for message in batch:
                self.discard(message)
            moved += len(batch)
        if moved:
            log.warning("%s: moved %d messages an older Warren had kept for it as a classic "
                        "queue into the stream's log", self.describe(), moved)
        return moved

    def _schedule_expiry_after_recovery(self) -> None:
        """A stream ignores the expiration property: recovered messages (`adopt_recovered`)
        do not expire."""

    def written(self, payload: Any) -> None:
        """A batch is durable: readers at the end can go on."""
        if self.stream_log is None or self.deleted:
            return
        self.stream_log.written(payload)
        if self.stream_log.has_pending():  # retention's deletions
            self.vhost.store.wal.companion_pending(self._companion)
        if self._readers:
            self.dispatch()

    # -- consuming --------------------------------------------------------------------------

    def check_consumer(self, no_ack: bool, prefetch: int, arguments: dict[str, Any],
                       global_qos: bool = False) -> None:
        what = self.describe()
        refuse_arguments(arguments, self.refused_consumer_arguments, what, self.type_module)
        if no_ack:
            raise NotImplementedByBroker(
                f"automatic acknowledgement not supported by stream queues {what}")
        if not prefetch:
            raise PreconditionFailed(f"consumer prefetch count is not set for '{what}'")
        self.check_global_qos(global_qos)
        parse_offset(arguments, what)

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.add(consumer)
        if consumer.exclusive:
            self.exclusive_consumer = consumer
        reader = _Reader(consumer)
        self._start(reader, parse_offset(consumer.arguments, self.describe()))
        self._readers[consumer] = reader
        self.dispatch()

    def remove_consumer(self, consumer: Consumer, dispatch: bool = True) -> None:
        self.consumers.remove(consumer)
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        self._readers.pop(consumer, None)
        if not self._readers:
            self._reads.clear()

    def _start(self, reader: _Reader, start: StartAt) -> None:
        stream = self.log
        if start.kind == "first":
            reader.min_offset = stream.first_offset
        elif start.kind == "last":
            reader.min_offset = stream.last_chunk
        elif start.kind == "next":
            reader.min_offset = stream.next_offset
        elif start.kind == "offset":
            reader.min_offset = start.value
        else:
            reader.min_ts = start.value
        self._locate(reader)

    def _locate(self, reader: _Reader) -> None:
        """Put the cursor at the segment and mark before what it looks for."""
        stream = self.log
        if not stream.segments:
            reader.segment = None
            return
        if reader.min_ts:
            segment = stream.segment_at_time(reader.min_ts)
            reader.position = segment.place(None, reader.min_ts)
        else:
            segment = stream.segment_at(reader.min_offset)
            reader.position = segment.place(reader.min_offset, None)
        reader.segment = segment

    def dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            for reader in list(self._readers.values()):
                self._serve(reader)
        finally:
            self._dispatching = False

    def _serve(self, reader: _Reader) -> None:
        consumer, buffer = reader.consumer, reader.buffer
        target = consumer.target
        delivered = 0
        while buffer and consumer.can_take():
            target.deliver(consumer, self, buffer.popleft())  # type: ignore[arg-type]
            delivered += 1
        self.messages_delivered += delivered
        if len(buffer) < max(consumer.prefetch, 1) and not reader.reading:
            self._read_more(reader)

    def _read_more(self, reader: _Reader) -> None:
        stream = self.log
        if reader.segment is None:
            self._locate(reader)
            if reader.segment is None:
                return
        segment = reader.segment
        if segment not in stream.segments:  # retention dropped it: go on from the first
            reader.min_offset, reader.min_ts = stream.first_offset, 0
            self._locate(reader)
            segment = reader.segment
        if reader.position >= segment.end:
            following = stream.following(segment)
            if following is None:
                return  # at the end: `written` dispatches again
            reader.segment = segment = following
            reader.position = SEGMENT_HEAD.size
        reader.reading = True
        want = min(max(reader.consumer.prefetch * 2, 64), READ_RECORDS)
        key = (segment.first_offset, reader.position, segment.end, want)
        skipping = reader.min_offset > segment.first_offset or reader.min_ts
        future = None if skipping else self._reads.get(key)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(
                _READERS, _read_job, stream.directory, segment.first_offset, reader.position,
                segment.end, reader.min_offset, reader.min_ts, want)
            if not skipping:
                self._reads[key] = future
                if len(self._reads) > SHARED_READS:
                    del self._reads[next(iter(self._reads))]
        # called soon, never at once: a read found done does not recurse into _serve
        future.add_done_callback(lambda done: self._read_done(reader, segment, done))

    def _read_done(self, reader: _Reader, segment: Segment, done: asyncio.Future) -> None:
        reader.reading = False
        if self._readers.get(reader.consumer) is not reader or self.deleted:
            return
        error = done.exception()
        if isinstance(error, FileNotFoundError):
            reader.segment = None  # deleted by retention meanwhile: from the first again
            reader.min_offset, reader.min_ts = self.log.first_offset, 0
        elif error is not None:
            log.error("reading stream %s failed: %s; the consumer waits for the next append",
                      self.describe(), error)
            return
        else:
            ready, position = done.result()
            if reader.segment is segment:
                reader.position = position
            if ready:
                reader.min_offset = reader.min_ts = 0
                reader.buffer.extend(ready)
        self._serve(reader)

    # -- outcomes: an ack gives credit back, nothing else ----------------------------------

    def ack_all(self, entries: Sequence[QueuedMessage]) -> None:
        self.messages_acked += len(entries)

    def requeue(self, entry: QueuedMessage) -> None:
        """The channel went with this delivery unacked: nothing to put back."""

    def reject(self, entry: QueuedMessage) -> None:
        """Refused before it gets here (`check_settle`)."""

    def check_settle(self) -> None:
        raise NotImplementedByBroker(
            f"basic.nack and basic.reject not supported by stream queues {self.describe()}")

    # -- refused ------------------------------------------------------------------------------

    def get(self, no_ack: bool) -> QueuedMessage | None:
        raise NotImplementedByBroker(f"basic.get not supported by stream queues {self.describe()}")

    def take(self) -> QueuedMessage | None:
        return self.get(False)

    def purge(self) -> int:
        raise NotImplementedByBroker(
            f"queue.purge not supported by stream queues {self.describe()}")

    def drop_everything(self) -> None:
        """The stream is deleted: its directory goes with the next write."""
        self._cancel_timers()
        self._readers.clear()
        self._reads.clear()
        if self.vhost.store is not None:
            self.log.remove()
            self.vhost.store.wal.companion_pending(self._companion)


def _read_job(directory: Path, first_offset: int, position: int, end: int, min_offset: int,
              min_ts: int, want: int) -> tuple[list[StreamDelivery], int]:
    records, position = streamlog.read(directory, first_offset, position, end, min_offset,
                                       min_ts, want, READ_BYTES)
    return _prepare(records), position
