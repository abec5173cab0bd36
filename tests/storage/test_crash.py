"""SIGKILL at random moments: no confirmed message is ever lost.

Several rounds (seeded: set WARREN_CRASH_SEED to replay one) on one data dir, with small
log segments so that the log rolls over and compacts while it happens. Each round:

1. start Warren on the same data dir and port (sometimes SIGKILL it again during start-up,
   then start it once more: recovery itself must be crash-safe);
2. check every durable queue against what the test knows (below), then leave the messages
   where they are (fetched unacked, requeued by closing the channel);
3. publish persistent messages with confirms from three publishers at once: to a queue
   through the default exchange, to a queue through a durable direct exchange, and to two
   durable queues (and a transient one) through a durable fanout exchange; meanwhile two
   consumers take and ack messages from two of those queues, and another client declares
   durable queues one after another with one confirmed message in each;
4. SIGKILL the broker at a random moment.

What is checked after each restart, per durable queue:
- every confirmed message that no consumer acked is there, exactly once;
- a message that was acked (or whose publish was not confirmed) is there at most once;
- nothing else is there, and the queue is in publication order;
- every recovered message has redelivered=True (after an unclean stop Warren marks them all);
- the durable exchanges, queues and bindings are all back; transient queues are gone; every
  queue declared on the way whose message was confirmed is back with its message.
A final clean restart must then give back exactly the same messages.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field

import pika
import pika.exceptions
import pytest
from client_helpers import close_quietly
from warren_process import (
    PERSISTENT,
    ConfirmingPublisher,
    WarrenNode,
    consume_unacked,
    passive_exchange_exists,
    passive_queue_exists,
    publish_confirmed,
)

SEED = int(os.environ.get("WARREN_CRASH_SEED", "20261123"))
ROUNDS = 5
SEGMENT_SIZE = 65536

DIRECT = "crash-direct"
FANOUT = "crash-fanout"
Q_DEFAULT = "crash-q-default"  # published through "", consumed
Q_DIRECT = "crash-q-direct"  # published through crash-direct, never consumed
Q_FAN_CONSUMED = "crash-q-fan-consumed"  # fanout, consumed
Q_FAN_KEPT = "crash-q-fan-kept"  # fanout, never consumed
Q_TRANSIENT = "crash-q-transient"  # fanout, non-durable: gone after every crash
DURABLE_QUEUES = [Q_DEFAULT, Q_DIRECT, Q_FAN_CONSUMED, Q_FAN_KEPT]
PUBLISHERS = {  # name -> (exchange, routing key, durable queues reached)
    "default": ("", Q_DEFAULT, [Q_DEFAULT]),
    "direct": (DIRECT, "k", [Q_DIRECT]),
    "fanout": (FANOUT, "", [Q_FAN_CONSUMED, Q_FAN_KEPT]),
}


def message_key(body: bytes) -> tuple[int, str, int]:
    """(round, publisher, sequence) from a body 'RR:publisher:SSSSSS:padding'."""
    round_number, publisher, sequence, _ = body.split(b":", 3)
    return int(round_number), publisher.decode(), int(sequence)


@dataclass
class QueueModel:
    """What may and what must be in one durable queue, in publication order."""

    candidates: list[tuple] = field(default_factory=list)
    must: set[tuple] = field(default_factory=set)


def declare_topology(node: WarrenNode) -> None:
    with node.channel() as ch:
        ch.exchange_declare(DIRECT, "direct", durable=True)
        ch.exchange_declare(FANOUT, "fanout", durable=True)
        for name in DURABLE_QUEUES:
            ch.queue_declare(name, durable=True)
        ch.queue_bind(Q_DIRECT, DIRECT, "k")
        ch.queue_bind(Q_FAN_CONSUMED, FANOUT)
        ch.queue_bind(Q_FAN_KEPT, FANOUT)


def fetch_unacked(node: WarrenNode, queue: str) -> list[tuple[tuple, bool]]:
    """Every message of `queue` as (key, redelivered), left in the queue."""
    return [(message_key(got.body), got.redelivered) for got in consume_unacked(node, queue)]


def check_queue(queue: str, model: QueueModel, found: list[tuple[tuple, bool]],
                context: str) -> None:
    keys = [key for key, _ in found]
    assert len(set(keys)) == len(keys), f"{context}: {queue} has duplicates"
    candidates = set(model.candidates)
    foreign = [key for key in keys if key not in candidates]
    assert not foreign, f"{context}: {queue} has messages it should not have: {foreign[:5]}"
    lost = sorted(model.must - set(keys))
    assert not lost, (
        f"{context}: {queue} lost {len(lost)} confirmed messages, first {lost[:5]}"
    )
    assert keys == sorted(keys), f"{context}: {queue} is out of order"
    not_redelivered = [key for key, redelivered in found if not redelivered]
    assert not not_redelivered, (
        f"{context}: {queue}: recovered after a crash without redelivered=True: "
        f"{not_redelivered[:5]}"
    )


def check_definitions(node: WarrenNode, context: str) -> None:
    connection = node.connect()
    try:
        for name in (DIRECT, FANOUT):
            assert passive_exchange_exists(connection, name), f"{context}: exchange {name} lost"
        for name in DURABLE_QUEUES:
            assert passive_queue_exists(connection, name), f"{context}: queue {name} lost"
        assert not passive_queue_exists(connection, Q_TRANSIENT), (
            f"{context}: transient queue survived"
        )
    finally:
        close_quietly(connection)


class Consumer(threading.Thread):
    """Consumes one queue with manual acks until the broker dies; remembers what it acked."""

    def __init__(self, node: WarrenNode, queue: str, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.queue = queue
        self.prefetch = rng.randint(1, 100)
        self.ack_every = rng.randint(1, 20)
        self.acked: set[tuple] = set()
        self.unacked: list[tuple] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = self.node.connect()
        except pika.exceptions.AMQPError as exc:
            self.error = exc
            return
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(self.queue, self.on_message)
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=0.05)
        except (pika.exceptions.AMQPError, OSError):
            pass  # the broker was killed
        finally:
            close_quietly(connection)

    def on_message(self, channel, method, _properties, body) -> None:
        self.unacked.append(message_key(body))
        if len(self.unacked) >= self.ack_every:
            # Counted as acked before the ack is sent: it may or may not reach the broker.
            self.acked.update(self.unacked)
            self.unacked.clear()
            channel.basic_ack(method.delivery_tag, multiple=True)


class Declarer(threading.Thread):
    """Declares durable queues one after another until the broker dies, publishing one
    persistent message into each: a queue whose message was confirmed must come back (the
    definitions file is written before the records that need it)."""

    def __init__(self, node: WarrenNode, round_number: int, extras: dict[str, bytes]) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.round_number = round_number
        self.extras = extras

    def run(self) -> None:
        try:
            connection = self.node.connect()
            channel = connection.channel()
            channel.confirm_delivery()
            for index in range(100_000):
                name = f"crash-declared-{self.round_number}-{index}"
                channel.queue_declare(name, durable=True)
                channel.basic_publish("", name, name.encode(), PERSISTENT)
                self.extras[name] = name.encode()  # confirmed
        except (pika.exceptions.AMQPError, OSError):
            pass  # the broker was killed


def run_round(node: WarrenNode, round_number: int, rng: random.Random,
              models: dict[str, QueueModel], extras: dict[str, bytes]) -> dict[str, int]:
    """Publish, consume and declare until a random SIGKILL; update the models."""
    with node.channel() as ch:
        ch.queue_declare(Q_TRANSIENT, durable=False)
        ch.queue_bind(Q_TRANSIENT, FANOUT)

    publishers = {}
    for name, (exchange, routing_key, _queues) in PUBLISHERS.items():
        messages = [
            (exchange, routing_key,
             b"%02d:%s:%06d:" % (round_number, name.encode(), seq)
             + b"x" * rng.randint(0, 1500))
            for seq in range(20000)
        ]
        publishers[name] = ConfirmingPublisher(node.parameters(), messages,
                                               window=rng.randint(1, 300), deadline=30)
    consumers = [Consumer(node, Q_DEFAULT, rng), Consumer(node, Q_FAN_CONSUMED, rng)]
    threads = [threading.Thread(target=p.run, daemon=True) for p in publishers.values()]
    threads.append(Declarer(node, round_number, extras))
    for thread in [*threads, *consumers]:
        thread.start()
    time.sleep(rng.uniform(0.2, 1.2))
    node.kill()
    for consumer in consumers:
        consumer.stopping.set()
    for thread in [*threads, *consumers]:
        thread.join(15)
        assert not thread.is_alive(), "a client thread did not stop after the broker died"

    for name, publisher in publishers.items():
        sent = [message_key(body) for _, _, body in publisher.messages[: publisher.published]]
        confirmed = {message_key(body) for body in publisher.confirmed}
        for queue in PUBLISHERS[name][2]:
            models[queue].candidates.extend(sent)
            models[queue].must.update(confirmed)
    for consumer in consumers:
        models[consumer.queue].must.difference_update(consumer.acked)
    return {
        "published": sum(p.published for p in publishers.values()),
        "confirmed": sum(len(p.confirmed) for p in publishers.values()),
        "acked": sum(len(c.acked) for c in consumers),
    }


def verify(node: WarrenNode, models: dict[str, QueueModel], extras: dict[str, bytes],
           context: str) -> None:
    check_definitions(node, context)
    for queue in DURABLE_QUEUES:
        found = fetch_unacked(node, queue)
        check_queue(queue, models[queue], found, context)
        # From now on what was found is what the queue holds (and all of it is logged).
        keys = [key for key, _ in found]
        models[queue] = QueueModel(keys, set(keys))
    with node.channel() as ch:
        for queue, body in extras.items():
            method, _, got = ch.basic_get(queue, auto_ack=False)
            assert method is not None and got == body, f"{context}: {queue} lost its message"


def test_sigkill_at_random_moments_loses_no_confirmed_message(node_factory):
    rng = random.Random(SEED)
    node = node_factory(extra_args=["--segment-size", str(SEGMENT_SIZE)]).start()
    declare_topology(node)
    models = {queue: QueueModel() for queue in DURABLE_QUEUES}
    extras: dict[str, bytes] = {}  # queues declared on the way, one message in each
    figures = []
    started = time.monotonic()

    for round_number in range(ROUNDS):
        context = f"seed {SEED}, after round {round_number}"
        extra = f"crash-extra-{round_number}"
        with node.channel() as ch:
            ch.queue_declare(extra, durable=True)
            publish_confirmed(ch, extra, [extra.encode()])
        extras[extra] = extra.encode()

        figures.append(run_round(node, round_number, rng, models, extras))

        if rng.random() < 0.5:  # crash again while it recovers
            node.start(wait=False)
            time.sleep(rng.uniform(0.0, 0.6))
            node.kill()
        node.start()
        assert "Traceback" not in node.log_text(), node.log_text()[-3000:]
        verify(node, models, extras, context)

    assert node.stop() == 0
    node.start()
    verify(node, models, extras, f"seed {SEED}, clean restart after the last round")
    assert "Traceback" not in node.log_text()
    total = {key: sum(f[key] for f in figures) for key in figures[0]}
    print(f"\n{ROUNDS} rounds in {time.monotonic() - started:.1f}s: {total}, "
          f"{len(extras)} queues declared; "
          f"left: { {q: len(m.candidates) for q, m in models.items()} }")
    assert total["confirmed"] > 0


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_sigkill_right_after_confirms(node_factory, delay):
    """Kill as soon as (or shortly after) the last confirm arrives: every message is back."""
    node = node_factory().start()
    with node.channel() as ch:
        ch.queue_declare("right-after", durable=True)
    messages = [("", "right-after", b"%05d" % i) for i in range(2000)]
    publisher = ConfirmingPublisher(node.parameters(), messages, window=500).run()
    assert publisher.error is None and len(publisher.confirmed) == 2000
    time.sleep(delay)
    node.crash_restart()
    found = consume_unacked(node, "right-after")
    assert [got.body for got in found] == [b"%05d" % i for i in range(2000)]
    assert all(got.redelivered for got in found)
