"""Runs fuzz cases against a broker over real sockets and classifies what the broker did.

Each case gets its own connection. The handshake is done correctly up to the case's stage, then
the case's bytes go out followed by a probe whose answer proves the broker accepted them:

    stage         sent after the case bytes     "accepted" means
    header        -                             connection.start
    start_ok      -                             connection.tune
    tune_ok       connection.open               connection.open-ok
    open          -                             connection.open-ok
    channel_open  -                             channel.open-ok
    channel       basic.qos on channel 1        basic.qos-ok

The first of these decides the `Outcome`: a connection.close (its code), a channel.close, the
probe's answer, a protocol header sent back, the socket closed without a frame, or silence for
`answer_timeout` seconds (a close arriving shortly after the probe's answer still counts,
see `_classify`). Many cases run at once (asyncio), each closed with a reset so that
thousands of connections leave no TIME_WAIT sockets behind.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from mutator import Case
from seeds import (
    PROTOCOL_HEADER,
    basic_qos,
    channel_open,
    connection_open,
    start_ok,
    tune_ok,
)

ACCEPTED_BY = {
    "header": (10, 10),
    "start_ok": (10, 30),
    "tune_ok": (10, 41),
    "open": (10, 41),
    "channel_open": (20, 11),
    "channel": (60, 11),
}


@dataclass(frozen=True)
class Outcome:
    kind: str  # accepted | connection | channel | closed | silent | protocol_header
    code: int = 0
    class_id: int = 0
    method_id: int = 0
    text: str = ""

    @property
    def key(self) -> str:
        """What is compared between brokers: the kind of answer and its reply code."""
        return f"{self.kind} {self.code}" if self.kind in ("connection", "channel") else self.kind

    def to_json(self) -> list:
        return [self.kind, self.code, self.class_id, self.method_id, self.text]

    @classmethod
    def from_json(cls, value: list) -> Outcome:
        return cls(*value)

    def __str__(self) -> str:
        if self.kind in ("connection", "channel"):
            return (f"{self.kind}.close {self.code} ({self.class_id},{self.method_id}) "
                    f"{self.text!r}")
        return self.kind


class SetupFailed(Exception):
    """The correct part of the handshake did not go through: the broker, not the case, failed."""


class _Closed(Exception):
    pass


class FrameStream:
    """Frames read from an asyncio stream: (type, channel, payload), or b"AMQP..." headers."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = bytearray()

    async def next(self, deadline: float) -> tuple[int, int, bytes] | bytes:
        while True:
            if self.buffer[:4] == b"AMQP" and len(self.buffer) >= 8:
                header = bytes(self.buffer[:8])
                del self.buffer[:8]
                return header
            if len(self.buffer) >= 7 and self.buffer[:4] != b"AMQP":
                frame_type, channel, size = struct.unpack_from(">BHI", self.buffer)
                if len(self.buffer) >= size + 8:
                    payload = bytes(self.buffer[7:7 + size])
                    del self.buffer[:size + 8]
                    return frame_type, channel, payload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                raise
            except OSError as error:  # reset (TimeoutError, also an OSError, is silence)
                raise _Closed from error
            if not chunk:
                raise _Closed
            self.buffer += chunk


def _method_id(item: tuple[int, int, bytes] | bytes) -> tuple[int, int] | None:
    if isinstance(item, tuple) and item[0] == 1 and len(item[2]) >= 4:
        return struct.unpack_from(">HH", item[2])
    return None


def _close_outcome(kind: str, payload: bytes) -> Outcome:
    try:
        code, text_size = struct.unpack_from(">HB", payload, 4)
        text = payload[7:7 + text_size].decode("utf-8", "replace")
        class_id, method_id = struct.unpack_from(">HH", payload, 7 + text_size)
    except struct.error:
        return Outcome(kind, -1, text=payload.hex())
    return Outcome(kind, code, class_id, method_id, text)


class CaseRunner:
    """Runs cases against the broker at host:port (guest/guest, the fuzz vhost)."""

    def __init__(self, host: str, port: int, answer_timeout: float = 0.5,
                 settle: float = 0.1, setup_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.answer_timeout = answer_timeout
        self.settle = settle
        self.setup_timeout = setup_timeout

    async def run(self, case: Case) -> Outcome:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.setup_timeout)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            stream = FrameStream(reader)
            probe = await self._handshake(case, writer, stream)
            writer.write(case.data + probe)
            return await self._classify(stream, ACCEPTED_BY[case.seed.stage])
        finally:
            writer.transport.abort()

    async def _handshake(self, case: Case, writer: asyncio.StreamWriter,
                         stream: FrameStream) -> bytes:
        """The correct steps before the case's stage; returns the probe to send after it."""
        stage = case.seed.stage
        if stage == "header":
            return b""
        writer.write(PROTOCOL_HEADER)
        await self._expect(stream, [(10, 10)])
        if stage == "start_ok":
            return b""
        writer.write(bytes(start_ok(case.number).data))
        await self._expect(stream, [(10, 30)])
        if stage == "tune_ok":
            return bytes(connection_open().data)
        writer.write(bytes(tune_ok().data))
        if stage == "open":
            return b""
        writer.write(bytes(connection_open().data))
        await self._expect(stream, [(10, 41)])
        if stage == "channel_open":
            return b""
        prelude = case.seed.prelude
        writer.write(b"".join(bytes(f.data) for f in [channel_open(1), *prelude]))
        await self._expect(stream, [(20, 11), *case.seed.prelude_replies])
        return bytes(basic_qos(0).data)

    async def _expect(self, stream: FrameStream, methods: list[tuple[int, int]]) -> None:
        deadline = time.monotonic() + self.setup_timeout
        for expected in methods:
            while True:
                try:
                    item = await stream.next(deadline)
                except (TimeoutError, _Closed) as error:
                    raise SetupFailed(f"no {expected} from the broker: {error!r}") from None
                got = _method_id(item)
                if got is None and isinstance(item, tuple) and item[0] == 8:
                    continue  # heartbeat
                if got != expected:
                    raise SetupFailed(f"expected {expected}, got {item!r:.200}")
                break

    async def _classify(self, stream: FrameStream, accepted_by: tuple[int, int]) -> Outcome:
        """The most severe answer: connection.close or EOF end the case at once; after a
        channel.close or the probe's answer the case waits `settle` seconds more, because
        RabbitMQ may answer the probe before it closes the connection for a frame it got
        earlier (a method on a channel never opened)."""
        deadline = time.monotonic() + self.answer_timeout
        found: Outcome | None = None
        while True:
            try:
                item = await stream.next(deadline)
            except TimeoutError:
                return found or Outcome("silent")
            except _Closed:
                return Outcome("closed")
            if isinstance(item, bytes):
                return Outcome("protocol_header", text=item.hex())
            got = _method_id(item)
            if got == (10, 50):
                return _close_outcome("connection", item[2])
            if found is None and got in ((20, 40), accepted_by):
                found = (_close_outcome("channel", item[2]) if got == (20, 40)
                         else Outcome("accepted"))
                deadline = time.monotonic() + self.settle

    async def run_all(self, cases: Iterable[Case], concurrency: int = 16) -> dict[int, Outcome]:
        """Every case's outcome by case number, `concurrency` connections at a time."""
        outcomes: dict[int, Outcome] = {}
        queue = list(cases)
        queue.reverse()

        async def worker() -> None:
            while queue:
                case = queue.pop()
                outcomes[case.number] = await self.run(case)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return outcomes


def run_cases(host: str, port: int, cases: Iterable[Case], concurrency: int = 16,
              answer_timeout: float = 0.5, settle: float = 0.1) -> dict[int, Outcome]:
    runner = CaseRunner(host, port, answer_timeout=answer_timeout, settle=settle)
    return asyncio.run(runner.run_all(cases, concurrency))
