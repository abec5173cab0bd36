"""What the fuzzer needs from a broker besides the cases: the fuzz vhost, and the checks made
after each batch (another connection publishes and consumes; every message left in the fuzz
vhost's queues has properties that decode)."""

from __future__ import annotations

import contextlib
import uuid

import pika
from content_header import Undecodable, check_content_header
from management_api import Api, q
from pamqp import commands
from raw_amqp import FRAME_HEADER, FRAME_METHOD, RawAMQP
from seeds import PUBLISH_QUEUE, VHOST

ALL = {"configure": ".*", "write": ".*", "read": ".*"}


class FuzzVhost:
    """Creates the fuzz vhost (guest may do anything in it) and deletes it with all it holds."""

    def __init__(self, host: str, management_port: int) -> None:
        self.api = Api(host, management_port)

    def create(self) -> None:
        self.delete()
        for path, body in ((f"/api/vhosts/{q(VHOST)}", None),
                           (f"/api/permissions/{q(VHOST)}/guest", ALL)):
            answer = self.api.put(path, body)
            assert answer.status in (201, 204), (path, answer)
        self.api.create_queue(VHOST, PUBLISH_QUEUE)

    def delete(self) -> None:
        with contextlib.suppress(OSError):  # a broker that died takes its vhost with it
            self.api.delete(f"/api/vhosts/{q(VHOST)}")

    def queue_names(self) -> list[str]:
        return [entry["name"] for entry in self.api.ok_json(f"/api/queues/{q(VHOST)}?columns=name")]


def undecodable_messages(broker, queues: list[str]) -> list[str]:
    """Take every message from `queues` (basic.get, no ack) and describe each whose content
    header does not decode; an empty list means all decoded."""
    problems = []
    with RawAMQP.connect(broker) as amqp:
        amqp.handshake(vhost=VHOST)
        amqp.open_channel(1)
        for queue in queues:
            while True:
                amqp.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
                frame_type, _, payload = amqp.read_raw_frame()
                assert frame_type == FRAME_METHOD, (queue, frame_type, payload[:40])
                if payload[:4] in (b"\x00\x3c\x00\x48",):  # basic.get-empty
                    break
                if payload[:4] != b"\x00\x3c\x00\x47":  # not basic.get-ok
                    raise AssertionError(f"basic.get on {queue!r}: {payload[:80]!r}")
                frame_type, _, header = amqp.read_raw_frame()
                assert frame_type == FRAME_HEADER, (queue, frame_type)
                body_size = int.from_bytes(header[4:12], "big")
                received = 0
                while received < body_size:
                    received += len(amqp.read_raw_frame()[2])
                try:
                    check_content_header(header)
                except Undecodable as error:
                    problems.append(f"{queue}: {error}; header {header[:48].hex(' ')}"
                                    f"{' ...' if len(header) > 48 else ''}")
        amqp.close_connection()
    return problems


def publish_and_consume(broker) -> None:
    """A new pika connection declares a fresh queue, publishes to it and consumes the message."""
    name = f"fuzz-check-{uuid.uuid4().hex[:12]}"
    body = name.encode()
    connection = pika.BlockingConnection(pika.ConnectionParameters(
        host=broker.host, port=broker.port, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5))
    try:
        channel = connection.channel()
        channel.queue_declare(name, exclusive=True)
        channel.confirm_delivery()
        channel.basic_publish("", name, body, pika.BasicProperties(headers={"k": "v"}))
        for method, properties, received in channel.consume(name, inactivity_timeout=5):
            assert method is not None, f"no message consumed from {name} within 5 s"
            assert received == body and properties.headers == {"k": "v"}
            channel.basic_ack(method.delivery_tag)
            break
        channel.cancel()
    finally:
        connection.close()
