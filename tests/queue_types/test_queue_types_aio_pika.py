"""Quorum queues and streams through aio-pika, as an asyncio application uses them: a stream
read from `first` with a prefetch and acks, a second reader at a numeric offset, a quorum queue
with a delivery limit and its x-delivery-count, and the 406 of a non-durable quorum declare."""

from __future__ import annotations

import asyncio

import aio_pika
import aio_pika.exceptions
import pytest
from queue_types_helpers import QUORUM, STREAM

TIMEOUT = 5


@pytest.fixture
async def aio_connection(broker):
    connection = await aio_pika.connect_robust(
        f"amqp://guest:guest@{broker.host}:{broker.port}/", timeout=TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


async def read(queue, offset, count: int) -> list[tuple[bytes, int]]:
    """Consume `count` messages from `offset`, acking each: [(body, x-stream-offset)]."""
    got: list[tuple[bytes, int]] = []
    async with queue.iterator(arguments={"x-stream-offset": offset}) as messages:
        async for message in messages:
            async with message.process():
                got.append((message.body, message.headers["x-stream-offset"]))
            if len(got) == count:
                break
    return got


async def test_a_stream_read_from_first_and_from_an_offset(aio_connection, queues):
    name = queues.name("s")
    channel = await aio_connection.channel()  # publisher confirms by default
    await channel.set_qos(prefetch_count=10)
    stream = await channel.declare_queue(name, durable=True, arguments=STREAM)
    for index in range(4):
        await channel.default_exchange.publish(aio_pika.Message(b"m%d" % index), routing_key=name)
    expected = [(b"m0", 0), (b"m1", 1), (b"m2", 2), (b"m3", 3)]
    assert await asyncio.wait_for(read(stream, "first", 4), TIMEOUT) == expected
    other = await aio_connection.channel()
    await other.set_qos(prefetch_count=1)
    again = await other.get_queue(name, ensure=False)
    assert await asyncio.wait_for(read(again, 2, 2), TIMEOUT) == expected[2:]
    # reading removed nothing: a third read from first sees everything again
    assert await asyncio.wait_for(read(stream, "first", 4), TIMEOUT) == expected


async def test_a_quorum_queue_counts_redeliveries(aio_connection, queues):
    name = queues.name("q")
    channel = await aio_connection.channel()
    queue = await channel.declare_queue(
        name, durable=True, arguments={**QUORUM, "x-delivery-limit": 1})
    await channel.default_exchange.publish(aio_pika.Message(b"m"), routing_key=name)
    first = await queue.get(timeout=TIMEOUT)
    assert first.headers == {"x-delivery-count": 0}
    await first.reject(requeue=True)
    second = await queue.get(timeout=TIMEOUT)
    assert (second.body, second.redelivered, second.headers) == (
        b"m", True, {"x-delivery-count": 1})
    await second.reject(requeue=True)  # past the limit, no DLX: dropped
    await asyncio.sleep(0.2)
    assert await queue.get(fail=False, timeout=TIMEOUT) is None


async def test_a_non_durable_quorum_declare_is_refused(aio_connection, queues):
    name = queues.name("nd")
    channel = await aio_connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed) as refused:
        await channel.declare_queue(name, durable=False, arguments=QUORUM)
    assert refused.value.args[0] == (
        f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{name}' in vhost '/'")
