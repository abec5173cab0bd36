"""The storage's file I/O as the management API shows it: /api/nodes' io_* figures (reads,
writes, syncs, seeks and reopens of the data files, with bytes and mean times) and
/api/overview's disk_reads/disk_writes (message bodies read back from disk and written to it),
counted where storage/ makes each call (storage/iostats.py).

RabbitMQ 3.10.8 shows the same keys for its file handle cache and message store; what each
counts in Warren is in RABBITMQ_API.md, "Storage I/O". A Warren of its own (a lowered
resident head, so that bodies are read back from the log) keeps the deltas exact.
"""

from __future__ import annotations

import pika
from management_api import GUEST, Api

HEAD = 4  # --resident-head: messages behind it keep their bodies on disk only
BODY = b"x" * 1000
PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _figures(api: Api) -> dict:
    node = api.ok_json("/api/nodes")[0]
    figures = {key: value for key, value in node.items() if key.startswith("io_")}
    stats = api.ok_json("/api/overview")["message_stats"]
    figures.update((key, stats.get(key, 0)) for key in ("disk_reads", "disk_writes"))
    return figures


def _moved(before: dict, after: dict, key: str) -> float:
    return after[key] - before[key]


def test_storage_io_is_counted(warren_factory):
    broker = warren_factory(extra_args=["--resident-head", str(HEAD)])
    api = Api(broker.host, broker.management_port)
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        broker.host, broker.port, credentials=pika.PlainCredentials(*GUEST), heartbeat=0))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("durable", durable=True)
        start = _figures(api)
        assert {f"io_{op}_{figure}" for op in ("read", "write") for figure in (
            "count", "bytes", "avg_time")} <= start.keys()
        assert {"io_sync_count", "io_sync_avg_time", "io_seek_count", "io_seek_avg_time",
                "io_reopen_count", "io_read_count_details",
                "io_sync_avg_time_details"} <= start.keys()

        for _ in range(20):  # each confirmed once its record is fsynced
            channel.basic_publish("", "durable", BODY, PERSISTENT)
        published = _figures(api)
        assert _moved(start, published, "disk_writes") == 20  # one body per message
        assert _moved(start, published, "io_write_bytes") >= 20 * len(BODY)
        assert _moved(start, published, "io_write_count") >= 1
        assert _moved(start, published, "io_sync_count") >= 1
        assert published["io_write_avg_time"] > 0 and published["io_sync_avg_time"] > 0
        assert _moved(start, published, "disk_reads") == 0

        for _ in range(20):
            assert channel.basic_get("durable", auto_ack=True)[2] == BODY
        got = _figures(api)
        # the bodies behind the resident head were read back from the log
        assert _moved(published, got, "disk_reads") == 20 - HEAD
        assert _moved(published, got, "io_read_bytes") >= (20 - HEAD) * len(BODY)
        assert _moved(published, got, "io_read_count") >= 1
        assert _moved(published, got, "io_reopen_count") >= 1  # no read handle is kept open
        assert _moved(published, got, "disk_writes") == 0

        # a stream consumer reads its records at a position: a seek, then a read
        channel.queue_declare("stream", durable=True, arguments={"x-queue-type": "stream"})
        for _ in range(3):
            channel.basic_publish("", "stream", BODY)
        channel.basic_qos(prefetch_count=10)
        received: list[bytes] = []
        channel.basic_consume("stream", lambda _ch, _method, _props, body: received.append(body),
                              arguments={"x-stream-offset": "first"})
        while len(received) < 3:
            connection.process_data_events(0.1)
        streamed = _figures(api)
        assert _moved(got, streamed, "io_seek_count") >= 1
        assert _moved(got, streamed, "io_read_bytes") >= 3 * len(BODY)
    finally:
        connection.close()
