"""The quorum and stream arguments on a classic queue, as RabbitMQ 3.10.8 answers
(RABBITMQ_QUEUE_TYPES.md §1b): each is refused with a 406 naming it and `rabbit_classic_queue`,
whatever its value and whatever the queue's properties; with several, the first in the order the
client sent them is named; a bad value of an argument classic queues run is named first.
x-delivery-limit is the exception in Warren: its classic queues run it (RabbitMQ refuses it;
tests/lifecycle/test_delivery_limit.py), so that case runs against RabbitMQ only."""

from __future__ import annotations

import pytest
from queue_types_helpers import REFERENCE, declare_error, invalid_arg, unsupported_arg

CLASSIC_MODULE = "rabbit_classic_queue"

REFUSED = [
    ({"x-dead-letter-strategy": "at-least-once"}, "x-dead-letter-strategy"),
    ({"x-dead-letter-strategy": "bogus"}, "x-dead-letter-strategy"),
    ({"x-quorum-initial-group-size": 3}, "x-quorum-initial-group-size"),
    ({"x-quorum-initial-group-size": -1}, "x-quorum-initial-group-size"),
    ({"x-queue-leader-locator": "balanced"}, "x-queue-leader-locator"),
    ({"x-queue-leader-locator": 5}, "x-queue-leader-locator"),
    ({"x-max-in-memory-length": 5}, "x-max-in-memory-length"),
    ({"x-max-in-memory-bytes": 5}, "x-max-in-memory-bytes"),
    ({"x-max-age": "1D"}, "x-max-age"),
    ({"x-stream-max-segment-size-bytes": 100}, "x-stream-max-segment-size-bytes"),
    ({"x-initial-cluster-size": 3}, "x-initial-cluster-size"),
    # the first in the client's order is named
    ({"x-queue-leader-locator": "balanced", "x-quorum-initial-group-size": 3},
     "x-queue-leader-locator"),
    ({"x-quorum-initial-group-size": 3, "x-queue-leader-locator": "balanced"},
     "x-quorum-initial-group-size"),
    ({"x-max-age": "1D", "x-max-in-memory-bytes": 3}, "x-max-age"),
    ({"x-queue-type": "classic", "x-dead-letter-strategy": "at-most-once"},
     "x-dead-letter-strategy"),
]


def _id(arguments: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in arguments.items())


@pytest.mark.parametrize(("arguments", "refused"), REFUSED, ids=[_id(a) for a, _ in REFUSED])
def test_arguments_of_other_queue_types_are_refused_on_a_classic_queue(broker, queues, arguments,
                                                                      refused):
    name = queues.name()
    assert declare_error(broker, name, arguments) == unsupported_arg(refused, name,
                                                                      CLASSIC_MODULE)


@pytest.mark.parametrize("options", [{"durable": True}, {"exclusive": True},
                                     {"auto_delete": True}], ids=lambda o: next(iter(o)))
def test_the_refusal_does_not_depend_on_the_queue_properties(broker, queues, options):
    name = queues.name()
    assert declare_error(broker, name, {"x-max-in-memory-length": 5}, **options) == (
        unsupported_arg("x-max-in-memory-length", name, CLASSIC_MODULE))


def test_a_bad_value_of_a_classic_argument_is_named_first(broker, queues):
    name = queues.name()
    assert declare_error(broker, name, {"x-dead-letter-strategy": "at-most-once",
                                        "x-max-length": -1}) == (
        invalid_arg("x-max-length", name, "{value_negative,-1}"))


@pytest.mark.skipif(not REFERENCE, reason="Warren's classic queues run x-delivery-limit")
def test_rabbitmq_refuses_a_delivery_limit_on_a_classic_queue(broker, queues):
    name = queues.name()
    assert declare_error(broker, name, {"x-delivery-limit": 5}) == unsupported_arg(
        "x-delivery-limit", name, CLASSIC_MODULE)
