"""Helpers for the storage tests: a Warren subprocess that can be stopped (SIGTERM), killed
(SIGKILL) and started again on the SAME data dir and port, plus small pika helpers.

`WarrenNode` is the storage tests' counterpart of tests/conftest.py's `run_warren`: same
command line, but the data dir and the AMQP port outlive one process, and every start writes
its own log file (`broker-0.log`, `broker-1.log`, ...) so a test can grep what one start said.

`ConfirmingPublisher` publishes a list of persistent messages with publisher confirms through
pika's asynchronous SelectConnection, keeping many publishes in flight (the blocking adapter
waits for each confirm, one fsync per message). It records which messages were confirmed,
which were published but not yet confirmed when the connection died, and which were nacked.

`segment_records` lists the records of a segment file (offsets, types, decoded contents) with
storage/records.py, for the tests that damage segments on purpose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
from brokers import DEFINITIONS, REPO_ROOT, free_port, port_is_open
from client_helpers import close_quietly, parameters

TEST_DEFINITIONS = DEFINITIONS
PYTHON = sys.executable

PERSISTENT = pika.BasicProperties(delivery_mode=2)
TRANSIENT = pika.BasicProperties(delivery_mode=1)

SHUTDOWN_TEXT = "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"


class WarrenNode:
    """One broker identity: a data dir and a port, run by successive processes."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.port = free_port()
        self.management_port = free_port()
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.spawned_at = 0.0  # time.monotonic() of the last start's spawn
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "wal"

    def command(self, load_definitions: Path | None = None,
                extra_args: list[str] | None = None) -> list[str]:
        args = [
            PYTHON, "-m", "broker",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--management-port", str(self.management_port),
            "--data-dir", str(self.data_dir),
            "--log-level", "info",
            *self.extra_args,
            *(extra_args or []),
        ]
        if load_definitions is not None:
            args += ["--load-definitions", str(load_definitions)]
        return args

    def start(self, load_definitions: Path | None = None, wait: bool = True,
              timeout: float = 20.0) -> WarrenNode:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.log_path = self.directory / f"broker-{self.starts}.log"
        self.starts += 1
        self.spawned_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(load_definitions), cwd=REPO_ROOT, env={**os.environ, **self.env},
                stdout=log, stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"Warren exited with code {self.process.returncode} during start-up:\n"
                    f"{self.log_text()[-4000:]}"
                )
            if port_is_open(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"Warren did not listen on {self.port} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` (SIGTERM: a clean stop) and return the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process else 0
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"Warren did not exit within {timeout}s of signal {sig}") from None

    def stop_with_clients(self, connections, sig: int = signal.SIGTERM,
                          timeout: float = 10.0) -> list[tuple[int, str]]:
        """Signal the broker while pumping `connections` (pika BlockingConnections), so that
        they answer its connection.close at once; return each one's (reply code, text). The
        broker must then exit with code 0."""
        self.process.send_signal(sig)
        reasons = []
        deadline = time.monotonic() + timeout
        for connection in connections:
            try:
                while time.monotonic() < deadline:
                    connection.process_data_events(time_limit=0.05)
                raise AssertionError("the broker did not close a client connection")
            except pika.exceptions.ConnectionClosedByBroker as error:
                reasons.append((error.reply_code, error.reply_text))
        code = self.process.wait(timeout)
        assert code == 0, f"exit code {code}:\n{self.log_text()[-3000:]}"
        return reasons

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to write anything more."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, load_definitions: Path | None = None) -> WarrenNode:
        assert self.stop() == 0, f"clean stop failed:\n{self.log_text()[-4000:]}"
        return self.start(load_definitions)

    def crash_restart(self) -> WarrenNode:
        self.kill()
        return self.start()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def segments(self) -> list[Path]:
        return sorted(self.wal_dir.glob("*.wal"))

    def disk_bytes(self) -> int:
        """Total size of the segment files (the broker may delete one while we look)."""
        total = 0
        for path in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    # pika -------------------------------------------------------------------------------

    def parameters(self, **overrides) -> pika.ConnectionParameters:
        return parameters(self, **{"heartbeat": 0, **overrides})

    def connect(self, **overrides) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.parameters(**overrides))

    @contextlib.contextmanager
    def channel(self, **overrides) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
        connection = self.connect(**overrides)
        try:
            yield connection.channel()
        finally:
            close_quietly(connection)


@contextlib.contextmanager
def warren_node(directory: Path, **kwargs) -> Iterator[WarrenNode]:
    """A WarrenNode that is SIGKILLed (if still running) when the block ends."""
    node = WarrenNode(directory, **kwargs)
    try:
        yield node
    finally:
        node.kill()


def run_to_exit(args: list[str], timeout: float = 15.0) -> tuple[int, str, float]:
    """Run a broker command line that is expected to exit: (exit code, output, seconds)."""
    started = time.monotonic()
    try:
        done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"still running after {timeout}s: {exc.output!r}") from None
    output = (done.stdout + done.stderr).decode(errors="replace")
    return done.returncode, output, time.monotonic() - started


@dataclass
class Got:
    body: bytes
    redelivered: bool
    exchange: str = ""
    routing_key: str = ""
    properties: pika.BasicProperties | None = None


def get_all(channel, queue: str, ack: bool = True) -> list[Got]:
    """basic.get until the queue is empty. With ack=False the messages stay unacked (they go
    back to the queue, in order, when the channel closes)."""
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return found
        if ack:
            channel.basic_ack(method.delivery_tag)
        found.append(Got(body, method.redelivered, method.exchange, method.routing_key,
                         properties))


def consume_unacked(node: WarrenNode, queue: str, timeout: float = 5.0) -> list[Got]:
    """Every message of `queue`, through a consumer that acks nothing: when the connection
    closes they all go back to the queue, in order (marked redelivered)."""
    connection = node.connect()
    try:
        channel = connection.channel()
        count = channel.queue_declare(queue, passive=True).method.message_count
        found: list[Got] = []
        if count:
            for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
                assert method is not None, f"{queue}: only {len(found)} of {count} delivered"
                found.append(Got(body, method.redelivered, method.exchange, method.routing_key,
                                 properties))
                if len(found) == count:
                    break
        return found
    finally:
        close_quietly(connection)


def passive_queue_exists(connection, name: str) -> bool:
    channel = connection.channel()
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error
        return False
    channel.close()
    return True


def passive_exchange_exists(connection, name: str) -> bool:
    channel = connection.channel()
    try:
        channel.exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error
        return False
    channel.close()
    return True


def publish_confirmed(channel, queue: str, bodies: list[bytes], exchange: str = "",
                      properties: pika.BasicProperties = PERSISTENT) -> None:
    """Publish with confirms on a BlockingChannel (one round trip each: few messages only)."""
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish(exchange, queue, body, properties, mandatory=False)


# --------------------------------------------------------------------------------------------
# many persistent messages, confirmed asynchronously
# --------------------------------------------------------------------------------------------


@dataclass
class ConfirmingPublisher:
    """Publish `messages` ((exchange, routing key, body) triples) with confirms, keeping up to
    `window` unconfirmed. `run()` returns when all are confirmed, the connection is lost or
    the deadline passes; `error` then says why it stopped early."""

    parameters: pika.ConnectionParameters
    messages: list[tuple[str, str, bytes]]
    window: int = 200
    properties: pika.BasicProperties = field(default_factory=lambda: PERSISTENT)
    deadline: float = 60.0
    confirmed: list[bytes] = field(default_factory=list)
    nacked: list[bytes] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        self._next = 0
        self._tag = 0
        self._outstanding: dict[int, bytes] = {}
        self._connection: pika.SelectConnection | None = None
        self._channel = None
        self._stopping = False

    @property
    def unconfirmed(self) -> list[bytes]:
        """Published (perhaps) but neither confirmed nor nacked."""
        return list(self._outstanding.values())

    @property
    def published(self) -> int:
        return self._next

    def run(self) -> ConfirmingPublisher:
        try:
            self._connection = pika.SelectConnection(
                self.parameters, on_open_callback=self._opened,
                on_open_error_callback=self._failed, on_close_callback=self._closed,
            )
        except Exception as exc:  # noqa: BLE001 - recorded for the test to look at
            self.error = repr(exc)
            return self
        self._connection.ioloop.call_later(self.deadline, self._give_up)
        self._connection.ioloop.start()
        return self

    def _give_up(self) -> None:
        self.error = self.error or f"deadline of {self.deadline}s passed"
        self._close()

    def _close(self) -> None:
        self._stopping = True
        if self._connection.is_open:
            self._connection.close()
        elif self._connection.is_closed:
            self._connection.ioloop.stop()

    def _opened(self, connection) -> None:
        connection.channel(on_open_callback=self._channel_opened)

    def _failed(self, _connection, error) -> None:
        self.error = repr(error)
        self._connection.ioloop.stop()

    def _closed(self, _connection, reason) -> None:
        if not self._stopping and (self._outstanding or self._next < len(self.messages)):
            self.error = self.error or repr(reason)
        self._connection.ioloop.stop()

    def _channel_opened(self, channel) -> None:
        self._channel = channel
        channel.confirm_delivery(self._confirm, callback=lambda _frame: self._fill())

    def _fill(self) -> None:
        while (not self._stopping and self._next < len(self.messages)
               and len(self._outstanding) < self.window):
            exchange, routing_key, body = self.messages[self._next]
            self._next += 1
            self._tag += 1
            self._outstanding[self._tag] = body
            self._channel.basic_publish(exchange, routing_key, body, self.properties)
        if self._next >= len(self.messages) and not self._outstanding:
            self._close()

    def _confirm(self, frame) -> None:
        method = frame.method
        tags = [method.delivery_tag]
        if method.multiple:
            tags = [tag for tag in self._outstanding if tag <= method.delivery_tag]
        target = self.confirmed if isinstance(method, pika.spec.Basic.Ack) else self.nacked
        for tag in sorted(tags):
            body = self._outstanding.pop(tag, None)
            if body is not None:
                target.append(body)
        self._fill()


def publish_many(node: WarrenNode, messages: list[tuple[str, str, bytes]],
                 window: int = 200, properties: pika.BasicProperties = PERSISTENT) -> None:
    """Publish messages (persistent unless told) with confirms; all must be confirmed."""
    publisher = ConfirmingPublisher(node.parameters(), messages, window=window,
                                    properties=properties).run()
    assert publisher.error is None, publisher.error
    assert not publisher.nacked, f"{len(publisher.nacked)} nacked"
    assert len(publisher.confirmed) == len(messages)


def drain(node: WarrenNode, queue: str, count: int, batch: int = 200,
          timeout: float = 30.0) -> list[Got]:
    """Consume and ack exactly `count` messages of `queue`, and deliver no other (it would come
    back redelivered): a consumer with prefetch `batch` acks once per full window, which is
    then exactly what the broker has sent; when less than a window remains, the consumer is
    cancelled and basic.get takes the rest. (A basic.qos sent after basic.consume does not
    change that consumer's prefetch, in RabbitMQ as in Warren.)"""
    connection = node.connect()
    try:
        channel = connection.channel()
        window = max(1, min(batch, count))
        channel.basic_qos(prefetch_count=window)
        got: list[Got] = []
        deadline = time.monotonic() + timeout
        if count:
            for method, _properties, body in channel.consume(queue, inactivity_timeout=1.0):
                assert time.monotonic() < deadline, f"drained only {len(got)} of {count}"
                if method is None:
                    continue
                got.append(Got(body, method.redelivered))
                if len(got) % window == 0:
                    last_window = count - len(got) < window
                    if last_window:
                        channel.cancel()
                    channel.basic_ack(method.delivery_tag, multiple=True)
                    if last_window:
                        break
        while len(got) < count:
            assert time.monotonic() < deadline, f"drained only {len(got)} of {count}"
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None, f"{queue}: empty after {len(got)} of {count}"
            got.append(Got(body, method.redelivered))
        channel.close()
        return got
    finally:
        close_quietly(connection)


# --------------------------------------------------------------------------------------------
# segment files (format: storage/records.py, docs/storage-format.md)
# --------------------------------------------------------------------------------------------


@dataclass
class SegmentRecord:
    offset: int  # of the record's length field in the file
    end: int  # offset just past the record
    record_type: int
    record: object  # storage.records.PublishRecord / IdsRecord / PurgeRecord


def segment_records(path: Path) -> list[SegmentRecord]:
    """Every record of an intact segment file, in order."""
    from storage import records

    data = path.read_bytes()
    found = []
    offset = records.SEGMENT_HEADER_SIZE
    while offset < len(data):
        read = records.read_record(data, offset)
        assert read is not None, f"{path}: torn record at {offset}"
        payload, end = read
        found.append(SegmentRecord(offset, end, payload[0], records.decode_payload(payload)))
        offset = end
    return found
