"""A publisher confirm for a message in a stream is sent only once the stream's log is on disk,
whatever else the message reaches and whichever queues the vhost has: here a transient message
to a stream, in a vhost that also has a quorum queue (which makes transient messages take the
path that logs them for quorum queues). The stream's first write fails (tests/fault_broker.py):
the confirm must wait until the log has written it again, and the messages must then be in the
stream. The log tries a failed write again by itself a second later (`Node._storage_write_result`),
also when the failure is no OSError, so a confirm does not wait for the next publish."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_helpers import opened
from pamqp import commands
from queue_types_helpers import QUORUM, STREAM, WARREN_ONLY, stream_reader
from raw_amqp import RawAMQP, content_header_payload

pytestmark = WARREN_ONLY

FAULT_BROKER = Path(__file__).resolve().parents[1] / "fault_broker.py"


@contextlib.contextmanager
def confirming_client(broker) -> Iterator[RawAMQP]:
    """A raw client with channel 1 open in confirm mode."""
    with RawAMQP.connect(broker) as client:
        client.handshake()
        client.open_channel(1)
        client.send_method(1, commands.Confirm.Select())
        client.expect(commands.Confirm.SelectOk, channel=1)
        yield client

def test_a_transient_message_is_confirmed_once_the_stream_has_it_on_disk(warren_factory):
    broker = warren_factory(launcher=[sys.executable, str(FAULT_BROKER), "stream_write:1"])
    with opened(broker) as connection:
        channel = connection.channel()
        channel.queue_declare("any-quorum", durable=True, arguments=QUORUM)
        channel.queue_declare("events", durable=True, arguments=STREAM)
    with confirming_client(broker) as client:
        client.publish_raw(1, "", "events", content_header_payload(5, 0, b""), [b"first"])
        # The stream's write failed: no confirm before the log has written it again (its own
        # retry comes a second after the failure, or the next publish's write).
        with pytest.raises(TimeoutError):
            client.read_method(timeout=0.5)
        client.publish_raw(1, "", "events", content_header_payload(6, 0, b""), [b"second"])
        confirmed = 0
        while confirmed < 2:
            ack = client.expect(commands.Basic.Ack, channel=1, timeout=10)
            confirmed = ack.delivery_tag
    with stream_reader(broker, "events", "first") as reader:
        assert reader.wait(2) == [b"first", b"second"]


def test_a_failed_write_is_tried_again_without_more_traffic(warren_factory):
    """The stream's write raises (no OSError): the log tries again a second later by itself,
    so the confirm comes without another publish, and the message is in the stream."""
    broker = warren_factory(launcher=[sys.executable, str(FAULT_BROKER), "stream_write:2"])
    with opened(broker) as connection:
        connection.channel().queue_declare("events", durable=True, arguments=STREAM)
    with confirming_client(broker) as client:
        client.publish_raw(1, "", "events", content_header_payload(4, 0, b""), [b"only"])
        with pytest.raises(TimeoutError):
            client.read_method(timeout=0.5)
        # Two failed writes (the first and the first retry), then the second retry writes it.
        ack = client.expect(commands.Basic.Ack, channel=1, timeout=10)
        assert ack.delivery_tag == 1
    with stream_reader(broker, "events", "first") as reader:
        assert reader.wait(1) == [b"only"]
