"""Bounded memory under a slow reader and a fast writer: a consumer with no prefetch limit on a
long queue behind a socket that reads slowly must not make the broker encode the whole queue.

Each test starts a Warren of its own (its RSS is what is measured), fills a transient queue over
a raw socket, and consumes over a raw socket whose receive buffer is made small. Message bodies
carry their sequence number in their first 8 bytes, so order and completeness are checked.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from client_helpers import deadline
from pamqp import commands, frame
from pamqp.header import ContentHeader
from raw_amqp import RawAMQP

MESSAGES = 50_000
SIZE = 2048
PAYLOAD = MESSAGES * SIZE
FRAME_METHOD = 1
FRAME_BODY = 3
DECLARE_OK = struct.pack(">HH", 50, 11)  # queue.declare-ok


def rss(pid: int) -> int:
    """The resident set size of process `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def connected(broker, receive_buffer: int | None = None) -> RawAMQP:
    """A raw AMQP connection, handshake done and channel 1 open; with `receive_buffer`, the
    socket's SO_RCVBUF is set before connecting (so the TCP window stays small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((broker.host, broker.port))
    amqp = RawAMQP(sock)
    amqp.handshake()
    amqp.open_channel(1)
    return amqp


def message_count(amqp: RawAMQP, queue: str) -> int:
    ok = amqp.call(1, commands.Queue.Declare(queue=queue, passive=True))
    assert isinstance(ok, commands.Queue.DeclareOk), ok
    return ok.message_count


def fill(amqp: RawAMQP, queue: str, count: int = MESSAGES, size: int = SIZE) -> None:
    """Declare `queue` and publish `count` transient messages of `size` bytes numbered 0..count-1
    (pipelined, no confirms); return once the queue holds them all."""
    amqp.call(1, commands.Queue.Declare(queue=queue))
    publish = frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
    header = frame.marshal(ContentHeader(0, size, commands.Basic.Properties()), 1)
    body_frame = struct.pack(">BHI", FRAME_BODY, 1, size)
    padding = b"x" * (size - 8)
    batch = []
    for number in range(count):
        batch.append(publish + header + body_frame + number.to_bytes(8, "big") + padding + b"\xce")
        if len(batch) == 2000 or number == count - 1:
            amqp.send(b"".join(batch))
            batch.clear()
    give_up = time.monotonic() + max(30.0, count / 5000)
    while message_count(amqp, queue) < count:
        assert time.monotonic() < give_up, "the published messages did not all arrive"
        time.sleep(0.05)


class BodyReader:
    """Reads the frames a consumer receives as raw bytes and keeps the sequence numbers of the
    message bodies, in arrival order (fast enough to drain a long queue in Python), and the
    message counts of the queue.declare-ok frames among them."""

    def __init__(self, amqp: RawAMQP) -> None:
        self.sock = amqp.sock
        self.buffer = bytearray(amqp.buffer)
        amqp.buffer = b""
        self.numbers: list[int] = []
        self.declared_counts: list[int] = []

    def read_some(self, size: int) -> None:
        chunk = self.sock.recv(size)
        assert chunk, "the broker closed the connection"
        self.buffer += chunk
        self._parse()

    def _parse(self) -> None:
        buffer, offset = self.buffer, 0
        while len(buffer) - offset >= 7:
            frame_type, _channel, size = struct.unpack_from(">BHI", buffer, offset)
            end = offset + 8 + size
            if end > len(buffer):
                break
            if frame_type == FRAME_BODY:
                self.numbers.append(int.from_bytes(buffer[offset + 7:offset + 15], "big"))
            elif frame_type == FRAME_METHOD and buffer[offset + 7:offset + 11] == DECLARE_OK:
                name_end = offset + 12 + buffer[offset + 11]
                self.declared_counts.append(struct.unpack_from(">I", buffer, name_end)[0])
            offset = end
        del buffer[:offset]

    def read_until(self, count: int, timeout: float = 30.0) -> None:
        give_up = time.monotonic() + timeout
        while len(self.numbers) < count:
            remaining = give_up - time.monotonic()
            assert remaining > 0, f"{len(self.numbers)} of {count} messages arrived in time"
            self.sock.settimeout(remaining)
            self.read_some(1 << 20)


def round_trip(broker, queue: str) -> None:
    """Another connection publishes a message and gets it back: the broker's loop is free."""
    with connected(broker) as amqp:
        amqp.timeout = 3.0
        amqp.call(1, commands.Queue.Declare(queue=queue, auto_delete=True))
        amqp.publish(1, "", queue, b"ping")
        reply = amqp.call(1, commands.Basic.Get(queue=queue, no_ack=True))
        assert isinstance(reply, commands.Basic.GetOk), reply
        amqp.read_method()  # the content header
        assert amqp.read_method()[1].value == b"ping"
        amqp.close_connection()


def check_slow_reader(broker, queue: str, no_ack: bool, count: int, size: int) -> None:
    """Fill `queue`, consume it without a prefetch limit over a socket that reads slowly while
    sampling the broker's RSS and doing a round trip on another connection, then read it all."""
    pid = broker.process.pid
    payload = count * size
    with connected(broker) as publisher:
        fill(publisher, queue, count, size)
    baseline = rss(pid)

    with connected(broker, receive_buffer=4096) as consumer:
        # No basic.qos: the consumer has no prefetch limit.
        consumer.send_method(1, commands.Basic.Consume(queue=queue, no_ack=no_ack))
        reader = BodyReader(consumer)
        peak = baseline
        started = time.monotonic()
        checked_other_connection = False
        while time.monotonic() - started < 2.0:
            reader.read_some(4096)
            time.sleep(0.02)
            peak = max(peak, rss(pid))
            if not checked_other_connection and time.monotonic() - started > 0.5:
                round_trip(broker, f"{queue}-ping")
                checked_other_connection = True
        # Encoding the whole queue would take at least its payload again (more with framing).
        assert peak - baseline < payload / 4, (
            f"RSS grew by {(peak - baseline) >> 20} MiB with a slow reader "
            f"(baseline {baseline >> 20} MiB, payload {payload >> 20} MiB)"
        )
        assert len(reader.numbers) < count / 4

        consumer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # read fast now
        reader.read_until(count, timeout=max(30.0, count / 5000))
        assert reader.numbers == list(range(count))
        if not no_ack:
            consumer.send_method(1, commands.Basic.Ack(delivery_tag=count, multiple=True))
        assert message_count(consumer, queue) == 0
    broker.assert_alive()


@pytest.mark.parametrize("no_ack", [True, False], ids=["auto-ack", "manual-ack"])
def test_slow_reader_without_prefetch_keeps_memory_bounded(warren_factory, no_ack):
    queue = f"backpressure-{'auto' if no_ack else 'manual'}"
    # Paging the queue's tail out (2 s after it arrived) would fall into the measured window
    # and add its own bookkeeping to the RSS on a slow machine: this test is about dispatch.
    no_paging = ["--page-out-after", "3600000"]
    check_slow_reader(warren_factory(extra_args=no_paging), queue, no_ack, MESSAGES, SIZE)


def test_slow_reader_of_large_messages_without_prefetch_keeps_memory_bounded(warren_factory):
    """400 messages of 120 KB (48 MB): dispatch hands a consumer without a prefetch limit many
    messages at once (a run, up to 1000), and still stops at the connection's turn budget."""
    no_paging = ["--page-out-after", "3600000"]
    check_slow_reader(warren_factory(extra_args=no_paging), "backpressure-large", False, 400,
                      120_000)


@pytest.mark.slow
def test_slow_reader_on_a_million_message_queue(warren_factory):
    with deadline(600):
        check_slow_reader(warren_factory(), "backpressure-million", True, 1_000_000, 256)


def test_fast_reader_without_prefetch_keeps_memory_bounded(warren_factory):
    """A socket that keeps up does not let dispatch encode the whole queue in one loop turn
    either: the output of a turn is bounded, and the loop serves other connections between."""
    broker = warren_factory()
    pid = broker.process.pid
    queue = "backpressure-fast"
    with connected(broker) as publisher:
        fill(publisher, queue)
    baseline = rss(pid)
    with connected(broker) as consumer:
        consumer.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
        reader = BodyReader(consumer)
        peak = baseline
        give_up = time.monotonic() + 30
        consumer.sock.settimeout(5)
        while len(reader.numbers) < MESSAGES:
            assert time.monotonic() < give_up, f"{len(reader.numbers)} messages in 30 s"
            reader.read_some(1 << 20)
            peak = max(peak, rss(pid))
        assert reader.numbers == list(range(MESSAGES))
    assert peak - baseline < PAYLOAD / 4, (
        f"RSS grew by {(peak - baseline) >> 20} MiB with a fast reader "
        f"(baseline {baseline >> 20} MiB, payload {PAYLOAD >> 20} MiB)"
    )
    broker.assert_alive()


def test_other_consumers_of_the_queue_keep_receiving(warren_factory):
    """While a slow reader's connection is backed up, its consumer is passed over: a consumer
    on another connection of the same queue gets the rest, and nothing is lost or doubled."""
    broker = warren_factory()
    queue = "backpressure-shared"
    count = 30_000  # 30 MiB: several times what a backed-up connection holds
    with connected(broker) as publisher:
        fill(publisher, queue, count, 1024)
    with connected(broker, receive_buffer=4096) as slow:
        slow.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
        slow_reader = BodyReader(slow)
        slow_reader.read_some(4096)
        with connected(broker) as fast:
            fast.send_method(1, commands.Basic.Qos(prefetch_count=0))
            fast.expect(commands.Basic.QosOk)
            fast.send_method(1, commands.Basic.Consume(queue=queue, no_ack=True))
            fast_reader = BodyReader(fast)
            give_up = time.monotonic() + 20
            fast.sock.settimeout(0.5)
            while fast_reader.declared_counts[-1:] != [0]:  # until the queue is empty
                assert time.monotonic() < give_up, f"{queue} never became empty"
                try:
                    fast_reader.read_some(1 << 20)
                except TimeoutError:  # a pause in deliveries: ask how many are left
                    fast.send_method(1, commands.Queue.Declare(queue=queue, passive=True))
        taken_by_fast = len(fast_reader.numbers)
        assert taken_by_fast > count / 2, f"the other consumer got only {taken_by_fast}"
        slow_reader.read_until(count - taken_by_fast)
    assert sorted(slow_reader.numbers + fast_reader.numbers) == list(range(count))
    assert slow_reader.numbers == sorted(slow_reader.numbers)
    assert fast_reader.numbers == sorted(fast_reader.numbers)
    broker.assert_alive()
