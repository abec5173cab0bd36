"""aio-pika applications as people write them: connect_robust, declare, publish with confirms,
consume with the async iterator and ack, topic routing, RPC by hand, with direct reply-to, and
with aio_pika.patterns.RPC, plus how broker errors surface."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest

TIMEOUT = 5


def url(broker) -> str:
    return f"amqp://guest:guest@{broker.host}:{broker.port}/"


@pytest.fixture
async def connection(broker):
    conn = await aio_pika.connect_robust(url(broker), timeout=TIMEOUT)
    try:
        yield conn
    finally:
        await conn.close()


async def test_publish_and_consume_with_the_async_iterator(connection, unique):
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=10)
    queue = await channel.declare_queue(unique, auto_delete=True)
    for i in range(5):
        await channel.default_exchange.publish(
            aio_pika.Message(body=f"message {i}".encode(), message_id=str(i)), routing_key=unique
        )

    received = []
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                received.append((message.body, message.message_id, message.redelivered))
            if len(received) == 5:
                break
    assert received == [(f"message {i}".encode(), str(i), False) for i in range(5)]
    # All acked: nothing left.
    declared = await channel.declare_queue(unique, passive=True)
    assert declared.declaration_result.message_count == 0
    await queue.delete()


async def test_message_properties_round_trip(connection, unique):
    channel = await connection.channel()
    queue = await channel.declare_queue(unique, exclusive=True)
    headers = {
        "str": "text",
        "int": 42,
        "negative": -7,
        "large": 2**40,
        "float": 1.5,
        "bool": True,
        "decimal": decimal.Decimal("2.50"),
        "bytes": bytearray(b"\x00\xff"),
        "none": None,
        "list": [1, "a", [2]],
        "table": {"nested": "yes"},
    }
    timestamp = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    await channel.default_exchange.publish(
        aio_pika.Message(
            body=b"{}",
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=3,
            correlation_id="corr",
            reply_to="somewhere",
            expiration=60,
            message_id="id-1",
            timestamp=timestamp,
            type="kind",
            user_id="guest",
            app_id="app",
        ),
        routing_key=unique,
    )
    message = await queue.get(timeout=TIMEOUT)
    await message.ack()
    assert message.body == b"{}"
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert message.headers == headers
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.priority == 3
    assert message.correlation_id == "corr"
    assert message.reply_to == "somewhere"
    assert message.expiration == 60
    assert message.message_id == "id-1"
    assert message.timestamp == timestamp
    assert message.type == "kind"
    assert message.user_id == "guest"
    assert message.app_id == "app"


async def test_topic_exchange_application(connection, unique):
    channel = await connection.channel()
    exchange = await channel.declare_exchange(unique, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    errors = await channel.declare_queue(f"{unique}-errors", exclusive=True)
    everything = await channel.declare_queue(f"{unique}-all", exclusive=True)
    await errors.bind(exchange, routing_key="*.error")
    await everything.bind(exchange, routing_key="#")
    for key in ("app.info", "app.error", "db.error", "app.db.error"):
        await exchange.publish(aio_pika.Message(body=key.encode()), routing_key=key)

    async def drain(queue) -> list[bytes]:
        bodies = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
        return bodies

    assert await drain(errors) == [b"app.error", b"db.error"]
    assert await drain(everything) == [b"app.info", b"app.error", b"db.error", b"app.db.error"]


async def test_nack_requeue_and_reject(connection, unique):
    channel = await connection.channel()
    queue = await channel.declare_queue(unique, exclusive=True)
    for body in (b"a", b"b"):
        await channel.default_exchange.publish(aio_pika.Message(body=body), routing_key=unique)
    first = await queue.get(timeout=TIMEOUT)
    await first.nack(requeue=True)
    again = await queue.get(timeout=TIMEOUT)
    assert (again.body, again.redelivered) == (b"a", True)
    await again.reject(requeue=False)
    last = await queue.get(timeout=TIMEOUT)
    assert (last.body, last.redelivered) == (b"b", False)
    await last.ack()
    assert await queue.get(fail=False) is None


async def test_rpc_with_an_exclusive_callback_queue(connection, unique):
    server_channel = await connection.channel()
    requests = await server_channel.declare_queue(unique, exclusive=True)

    async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            number = int(message.body)
            await server_channel.default_exchange.publish(
                aio_pika.Message(
                    body=str(number * number).encode(), correlation_id=message.correlation_id
                ),
                routing_key=message.reply_to,
            )

    await requests.consume(serve)

    client_channel = await connection.channel()
    callback = await client_channel.declare_queue(exclusive=True)  # aio-pika names it
    pending: dict[str, asyncio.Future] = {}

    async def on_response(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        pending.pop(message.correlation_id).set_result(int(message.body))

    await callback.consume(on_response, no_ack=True)

    async def call(number: int) -> int:
        correlation_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        pending[correlation_id] = future
        await client_channel.default_exchange.publish(
            aio_pika.Message(
                body=str(number).encode(), correlation_id=correlation_id, reply_to=callback.name
            ),
            routing_key=unique,
        )
        return await asyncio.wait_for(future, TIMEOUT)

    assert await asyncio.gather(*(call(n) for n in range(10))) == [n * n for n in range(10)]


async def test_rpc_with_direct_reply_to(connection, unique):
    server_channel = await connection.channel()
    requests = await server_channel.declare_queue(unique, exclusive=True)

    async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        assert message.reply_to.startswith("amq.rabbitmq.reply-to.")
        await server_channel.default_exchange.publish(
            aio_pika.Message(body=message.body.upper(), correlation_id=message.correlation_id),
            routing_key=message.reply_to,
        )

    await requests.consume(serve, no_ack=True)

    client_channel = await connection.channel()
    reply_queue = await client_channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
    replies: asyncio.Queue = asyncio.Queue()
    await reply_queue.consume(replies.put, no_ack=True)
    await client_channel.default_exchange.publish(
        aio_pika.Message(body=b"shout", correlation_id="1", reply_to="amq.rabbitmq.reply-to"),
        routing_key=unique,
    )
    reply = await asyncio.wait_for(replies.get(), TIMEOUT)
    assert (reply.body, reply.correlation_id) == (b"SHOUT", "1")


async def add(*, a: int, b: int) -> int:
    return a + b


async def test_aio_pika_rpc_pattern(connection, unique):
    channel = await connection.channel()
    rpc = await aio_pika.patterns.RPC.create(channel)
    await rpc.register(f"{unique}-add", add, auto_delete=True)
    assert await asyncio.wait_for(rpc.call(f"{unique}-add", kwargs={"a": 2, "b": 3}), TIMEOUT) == 5
    results = await asyncio.wait_for(
        asyncio.gather(*(rpc.call(f"{unique}-add", kwargs={"a": i, "b": i}) for i in range(20))),
        TIMEOUT,
    )
    assert results == [2 * i for i in range(20)]
    await rpc.close()


async def test_publisher_confirms_and_returns(broker, unique):
    connection = await aio_pika.connect(url(broker), timeout=TIMEOUT)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(unique, exclusive=True)
        confirmation = await channel.default_exchange.publish(
            aio_pika.Message(body=b"ok"), routing_key=queue.name
        )
        assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        with pytest.raises(aio_pika.exceptions.DeliveryError) as raised:
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"lost"), routing_key=f"{unique}-nobody", mandatory=True
            )
        assert raised.value.frame.reply_code == 312
    finally:
        await connection.close()


async def test_broker_errors_surface_as_aiormq_exceptions(connection, unique):
    channel = await connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity) as raised:
        await channel.declare_queue(unique, passive=True)
    assert raised.value.args[0] == f"NOT_FOUND - no queue '{unique}' in vhost '/'"

    channel = await connection.channel()
    await channel.declare_queue(unique, exclusive=True)
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as raised:
        await channel.declare_queue(unique, exclusive=True, auto_delete=True)
    assert raised.value.args[0] == (
        f"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{unique}' in vhost "
        "'/': received 'true' but current is 'false'"
    )

    # The connection survives channel errors.
    channel = await connection.channel()
    await channel.declare_queue(f"{unique}-after", exclusive=True)


async def test_transaction(connection, unique):
    channel = await connection.channel(publisher_confirms=False)
    queue = await channel.declare_queue(unique, exclusive=True)
    async with channel.transaction():
        await channel.default_exchange.publish(aio_pika.Message(body=b"1"), routing_key=unique)
        await channel.default_exchange.publish(aio_pika.Message(body=b"2"), routing_key=unique)
    transaction = channel.transaction()
    await transaction.select()
    await channel.default_exchange.publish(aio_pika.Message(body=b"3"), routing_key=unique)
    await transaction.rollback()
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body)
    assert bodies == [b"1", b"2"]
