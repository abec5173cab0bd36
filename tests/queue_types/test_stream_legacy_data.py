"""Warren only: a data dir from a Warren older than streams (issue 13). Such a Warren ran a
queue declared `x-queue-type: stream` as a classic queue: its definitions say stream, and its
persistent messages are in the message store (the write-ahead log), not in a stream log. Warren
now moves them into the stream's log at start, in their order, and drops them from the message
store, so a reader from `first` gets them all, once, and a later restart neither loses nor
repeats them.

The old data dir is built the way an old Warren wrote it: a durable classic queue with messages
in the log (written by the current store code, whose record format has not changed), then its
definitions entry given `x-queue-type: stream`. --resident-head 8 makes most of the 40
messages catalog rows (on disk only) rather than objects, as in a long queue."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pika
import pytest
from brokers import run_warren
from client_helpers import opened
from queue_types_helpers import WARREN_ONLY, stream_reader

pytestmark = WARREN_ONLY

COUNT = 40
ARGS = ["--resident-head", "8"]


def _old_data_dir(directory: Path, how: str) -> None:
    """A data dir as an old Warren left it: queue `legacy` with COUNT persistent messages in
    the message store, recorded as x-queue-type stream."""
    with run_warren(directory, extra_args=ARGS) as broker:
        with opened(broker) as connection:
            channel = connection.channel()
            channel.queue_declare("legacy", durable=True)
            channel.confirm_delivery()
            for number in range(COUNT):
                channel.basic_publish("", "legacy", f"m{number}".encode(), pika.BasicProperties(
                    delivery_mode=2, headers={"n": number}))
            channel.basic_publish("", "legacy", b"transient")  # not logged: gone, as it was
        if how == "kill-9":
            broker.process.kill()
        else:
            broker.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.process.wait(timeout=15)
    definitions_path = directory / "data" / "definitions.json"
    definitions = json.loads(definitions_path.read_text())
    (entry,) = [queue for queue in definitions["queues"] if queue["name"] == "legacy"]
    entry["arguments"] = {"x-queue-type": "stream"}
    definitions_path.write_text(json.dumps(definitions))


def _read_all(broker) -> list:
    with stream_reader(broker, "legacy", "first") as reader:
        reader.wait(COUNT)
        assert reader.idle(0.5) == [f"m{number}".encode() for number in range(COUNT)]
        headers = [properties.headers for _, properties, _ in reader.deliveries]
    return headers


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_messages_an_old_warren_kept_for_a_stream_are_moved_into_it(tmp_path, how):
    _old_data_dir(tmp_path, how)
    with run_warren(tmp_path, extra_args=ARGS) as broker:
        with opened(broker) as connection:
            declared = connection.channel().queue_declare(
                "legacy", durable=True, arguments={"x-queue-type": "stream"})
            assert declared.method.message_count == COUNT
        headers = _read_all(broker)
        assert [h["x-stream-offset"] for h in headers] == list(range(COUNT))
        assert [h["n"] for h in headers] == list(range(COUNT))
        log_text = broker.log_path.read_text()
        assert f"moved {COUNT} messages an older Warren had kept" in log_text
    # Moved once: neither lost nor moved again after a restart (clean stop, then a crash).
    for stop in ("sigterm", "kill-9"):
        with run_warren(tmp_path, extra_args=ARGS) as broker:
            _read_all(broker)
            assert "older Warren" not in broker.log_path.read_text()
            if stop == "kill-9":
                broker.process.kill()
                broker.process.wait(timeout=15)
