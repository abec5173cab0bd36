"""The valid frames the fuzzer starts from, and the point of a connection where each is sent.

A `Seed` is a short list of frames that a correct client sends at one `stage` of a connection
(the protocol header, start-ok, tune-ok, connection.open, channel.open, or a method on open
channel 1), with `target` naming the frame the mutator damages. Frames carry their spans (see
wire.py). Names embed the case number so that concurrent cases never meet on a queue, an
exclusive consumer or a consumer tag; everything is declared in the fuzz vhost, which the test
creates and deletes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from wire import Wire, frame, method

VHOST = "warren-fuzz"
PUBLISH_QUEUE = "fuzz-published"
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

STAGES = ("header", "start_ok", "tune_ok", "open", "channel_open", "channel")
METHOD, HEADER, BODY = 1, 2, 3


@dataclass
class Seed:
    kind: str
    stage: str
    frames: list[Wire]
    target: int = 0
    # Unmutated frames sent on channel 1 before the case, each answered by (class, method).
    prelude: list[Wire] = field(default_factory=list)
    prelude_replies: list[tuple[int, int]] = field(default_factory=list)


def client_properties(case: int) -> dict:
    return {
        "product": "warren-fuzz",
        "version": "1.0",
        "platform": "Python",
        "information": "frame fuzzer",
        "connection_name": f"fuzz-{case}",
        "capabilities": {
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
            "basic.nack": True,
            "consumer_cancel_notify": True,
            "connection.blocked": True,
            "authentication_failure_close": True,
        },
    }


def start_ok(case: int) -> Wire:
    payload = (method(10, 11).table(client_properties(case)).shortstr("PLAIN")
               .longstr(b"\0guest\0guest").shortstr("en_US"))
    return frame(METHOD, 0, payload)


def tune_ok() -> Wire:
    return frame(METHOD, 0, method(10, 31).short(2047).long(131072).short(0))


def connection_open() -> Wire:
    return frame(METHOD, 0, method(10, 40).shortstr(VHOST).shortstr("").bits(False))


def channel_open(channel: int = 1) -> Wire:
    return frame(METHOD, channel, method(20, 10).shortstr(""))


def basic_qos(prefetch_count: int = 0) -> Wire:
    return frame(METHOD, 1, method(60, 10).long(0).short(prefetch_count).bits(False))


def queue_declare(name: str, exclusive: bool, arguments: dict | None = None) -> Wire:
    payload = (method(50, 10).short(0).shortstr(name)
               .bits(False, False, exclusive, exclusive, False).table(arguments or {}))
    return frame(METHOD, 1, payload)


def headers_table(case: int) -> dict:
    return {
        "text": "fuzz",
        "int": 42,
        "long": 2**40,
        "flag": True,
        "double": 1.5,
        "float": ("f", 0.25),
        "byte": ("b", -3),
        "short": ("s", -300),
        "ushort": ("u", 65000),
        "uint": ("i", 4_000_000_000),
        "stamp": ("T", 1_700_000_000),
        "decimal": ("D", (2, 12345)),
        "void": None,
        "binary": ("x", b"\x00\xff\x80"),
        "nested": {"case": case, "inner": {"deep": "yes"}},
        "list": [1, "two", {"three": 3}, [4]],
    }


def content_header(body_size: int, flags: int, properties: Callable[[Wire], None]) -> Wire:
    payload = method(60, 0).longlong(body_size).flags(flags)
    properties(payload)
    return frame(HEADER, 1, payload)


def full_properties(case: int) -> tuple[int, Callable[[Wire], None]]:
    def write(w: Wire) -> None:
        (w.shortstr("application/json").shortstr("utf-8").table(headers_table(case))
         .octet(2).octet(5).shortstr(f"corr-{case}").shortstr("reply.here").shortstr("600000")
         .shortstr(f"msg-{case}").longlong(1_700_000_000).shortstr("fuzz.type")
         .shortstr("guest").shortstr("fuzz-app").shortstr(""))

    return 0xFFFC, write


def publish_frames(case: int, header: Wire) -> list[Wire]:
    body = f"fuzz body {case}".encode()
    publish = frame(METHOD, 1, method(60, 40).short(0).shortstr("").shortstr(PUBLISH_QUEUE)
                    .bits(False, False))
    struct_size_fix(header, len(body))
    return [publish, header, frame(BODY, 1, Wire().raw(body))]


def struct_size_fix(header: Wire, body_size: int) -> None:
    """Set the body-size field of a content-header frame built with a placeholder size."""
    header.data[11:19] = body_size.to_bytes(8, "big")


# -- the seeds -----------------------------------------------------------------------------------


def seed_protocol_header(case: int, rng: random.Random) -> Seed:
    return Seed("protocol_header", "header", [Wire().raw(PROTOCOL_HEADER)])


def seed_start_ok(case: int, rng: random.Random) -> Seed:
    return Seed("start_ok", "start_ok", [start_ok(case)])


def seed_tune_ok(case: int, rng: random.Random) -> Seed:
    return Seed("tune_ok", "tune_ok", [tune_ok()])


def seed_connection_open(case: int, rng: random.Random) -> Seed:
    return Seed("connection_open", "open", [connection_open()])


def seed_channel_open(case: int, rng: random.Random) -> Seed:
    return Seed("channel_open", "channel_open", [channel_open(1)])


def seed_queue_declare(case: int, rng: random.Random) -> Seed:
    arguments = {"x-message-ttl": 60000, "x-max-length": 100, "x-overflow": "reject-publish"}
    return Seed("queue_declare", "channel", [queue_declare(f"fq-{case}", True, arguments)])


def seed_exchange_declare(case: int, rng: random.Random) -> Seed:
    payload = (method(40, 10).short(0).shortstr(f"fx-{case}").shortstr("direct")
               .bits(False, False, True, False, False).table({"alternate-exchange": "amq.fanout"}))
    return Seed("exchange_declare", "channel", [frame(METHOD, 1, payload)])


def seed_queue_bind(case: int, rng: random.Random) -> Seed:
    payload = (method(50, 20).short(0).shortstr(f"fb-{case}").shortstr("amq.headers")
               .shortstr(f"rk-{case}").bits(False).table({"x-match": "any", "k": f"v{case}"}))
    return Seed("queue_bind", "channel", [frame(METHOD, 1, payload)],
                prelude=[queue_declare(f"fb-{case}", True)], prelude_replies=[(50, 11)])


def seed_basic_qos(case: int, rng: random.Random) -> Seed:
    return Seed("basic_qos", "channel", [basic_qos(10)])


def seed_basic_consume(case: int, rng: random.Random) -> Seed:
    payload = (method(60, 20).short(0).shortstr(f"fc-{case}").shortstr(f"ct-{case}")
               .bits(False, False, False, False).table({"x-priority": 5}))
    return Seed("basic_consume", "channel", [frame(METHOD, 1, payload)],
                prelude=[queue_declare(f"fc-{case}", True)], prelude_replies=[(50, 11)])


def seed_basic_ack(case: int, rng: random.Random) -> Seed:
    # delivery tag 0 with multiple set acknowledges everything outstanding: valid with nothing.
    payload = method(60, 80).longlong(0).bits(True)
    return Seed("basic_ack", "channel", [frame(METHOD, 1, payload)])


def seed_confirm_select(case: int, rng: random.Random) -> Seed:
    return Seed("confirm_select", "channel", [frame(METHOD, 1, method(85, 10).bits(False))])


def seed_tx_select(case: int, rng: random.Random) -> Seed:
    return Seed("tx_select", "channel", [frame(METHOD, 1, method(90, 10))])


def _publish_seed(kind: str, target: int, case: int, header: Wire,
                  confirm: bool = False) -> Seed:
    seed = Seed(kind, "channel", publish_frames(case, header), target=target)
    if confirm:
        seed.prelude = [frame(METHOD, 1, method(85, 10).bits(False))]
        seed.prelude_replies = [(85, 11)]
    return seed


def seed_publish_method(case: int, rng: random.Random) -> Seed:
    flags, write = full_properties(case)
    return _publish_seed("publish_method", 0, case, content_header(0, flags, write))


def seed_publish_header(case: int, rng: random.Random) -> Seed:
    flags, write = full_properties(case)
    return _publish_seed("publish_header", 1, case, content_header(0, flags, write),
                         confirm=rng.random() < 0.3)


def seed_publish_header_nested(case: int, rng: random.Random) -> Seed:
    depth = rng.choice([2, 8, 64, 500, 3000])
    header = content_header(0, 0x2000, lambda w: w.nested_table(depth))
    return _publish_seed("publish_header_nested", 1, case, header)


def seed_publish_header_minimal(case: int, rng: random.Random) -> Seed:
    return _publish_seed("publish_header_minimal", 1, case, content_header(0, 0, lambda w: None))


def seed_publish_body(case: int, rng: random.Random) -> Seed:
    flags, write = full_properties(case)
    return _publish_seed("publish_body", 2, case, content_header(0, flags, write))


SEEDS: list[Callable[[int, random.Random], Seed]] = [
    seed_protocol_header, seed_start_ok, seed_tune_ok, seed_connection_open, seed_channel_open,
    seed_queue_declare, seed_exchange_declare, seed_queue_bind, seed_basic_qos,
    seed_basic_consume, seed_basic_ack, seed_confirm_select, seed_tx_select,
    seed_publish_method, seed_publish_header, seed_publish_header_nested,
    seed_publish_header_minimal, seed_publish_body,
]
