"""Declaring an existing queue again, as RabbitMQ 3.10.8 answers (RABBITMQ_QUEUE_TYPES.md §1b):
nothing of the declare is checked then (values, the type's refusals) but the equivalence of the
arguments the existing queue's type runs; any other argument is accepted and ignored, as the
queue already exists. A compared argument that differs is `inequivalent arg`, also where a new
queue would have had `invalid arg` (x-max-length -1)."""

from __future__ import annotations

import pytest
from queue_types_helpers import QUORUM, STREAM, declare_error

CLASSIC: dict = {}

ACCEPTED = [
    (CLASSIC, {"x-max-in-memory-length": 5}),
    (CLASSIC, {"x-dead-letter-strategy": "at-least-once"}),
    (CLASSIC, {"x-quorum-initial-group-size": 3}),
    (CLASSIC, {"x-queue-leader-locator": "bogus"}),
    (CLASSIC, {"x-max-age": "1D"}),
    (CLASSIC, {"x-stream-max-segment-size-bytes": 5}),
    (CLASSIC, {"x-initial-cluster-size": 5}),
    (CLASSIC, {"x-foo": 1}),
    (QUORUM, {"x-max-priority": 5}),
    (QUORUM, {"x-queue-mode": "lazy"}),
    (QUORUM, {"x-max-age": "bogus"}),
    (QUORUM, {"x-queue-master-locator": "client-local"}),
    (QUORUM, {"x-queue-version": 2}),
    (QUORUM, {"x-initial-cluster-size": 1}),
    (STREAM, {"x-max-priority": 5}),
    (STREAM, {"x-max-length": -1}),
    (STREAM, {"x-queue-mode": "lazy"}),
    (STREAM, {"x-max-in-memory-length": 5}),
    (STREAM, {"x-delivery-limit": 5}),
    (STREAM, {"x-dead-letter-strategy": "at-least-once"}),
    (STREAM, {"x-message-ttl": 1000}),
    (STREAM, {"x-quorum-initial-group-size": 1}),
]
INEQUIVALENT = [
    (CLASSIC, "x-max-length", -1, "signedint"),
    (CLASSIC, "x-max-priority", 1000, "signedint"),
    (CLASSIC, "x-queue-version", 2, "signedint"),
    (QUORUM, "x-max-length", -1, "signedint"),
    (QUORUM, "x-max-in-memory-length", 5, "signedint"),
    (QUORUM, "x-delivery-limit", 5, "signedint"),
    (QUORUM, "x-dead-letter-strategy", "at-least-once", "longstr"),
    (QUORUM, "x-queue-leader-locator", "balanced", "longstr"),
    (QUORUM, "x-quorum-initial-group-size", 1, "signedint"),
    (STREAM, "x-max-age", "bogus", "longstr"),
    (STREAM, "x-max-length-bytes", 500, "signedint"),
    (STREAM, "x-queue-leader-locator", "balanced", "longstr"),
    (STREAM, "x-stream-max-segment-size-bytes", 1000000, "signedint"),
    (STREAM, "x-initial-cluster-size", 1, "signedint"),
]


def _type_id(arguments: dict) -> str:
    return arguments.get("x-queue-type", "classic")


@pytest.mark.parametrize(("kind", "added"), ACCEPTED,
                         ids=[f"{_type_id(k)}-{next(iter(a))}" for k, a in ACCEPTED])
def test_arguments_an_existing_queue_does_not_compare_are_accepted(channel, queues, kind,
                                                                  added):
    name = queues.name()
    channel.queue_declare(name, durable=True, arguments=kind)
    declared = channel.queue_declare(name, durable=True, arguments={**kind, **added})
    assert declared.method.queue == name


@pytest.mark.parametrize(("kind", "key", "value", "field_type"), INEQUIVALENT,
                         ids=[f"{_type_id(k)}-{key}" for k, key, _, _ in INEQUIVALENT])
def test_arguments_an_existing_queue_compares_are_inequivalent(broker, channel, queues, kind,
                                                              key, value, field_type):
    name = queues.name()
    channel.queue_declare(name, durable=True, arguments=kind)
    assert declare_error(broker, name, {**kind, key: value}, durable=True) == (
        406, f"PRECONDITION_FAILED - inequivalent arg '{key}' for queue '{name}' in vhost '/': "
             f"received the value '{value}' of type '{field_type}' but current is none")
