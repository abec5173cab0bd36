"""Declaring quorum queues (x-queue-type: quorum), as RabbitMQ 3.10.8 answers
(RABBITMQ_QUEUE_TYPES.md §1): durable only; exclusive, auto-delete and non-durable declares and
the arguments quorum queues do not run get a 406 naming the property or the argument and the
queue type module; bad values of the arguments they do run get the same texts as on classic
queues; a queue keeps its type, so redeclaring it as another type is an inequivalent arg."""

from __future__ import annotations

import pytest
from client_helpers import channel_error
from queue_types_helpers import (
    QUORUM,
    declare_error,
    invalid_arg,
    invalid_property,
    unsupported_arg,
)

QUORUM_MODULE = "rabbit_quorum_queue"


@pytest.mark.parametrize(("options", "prop"), [
    ({"durable": False}, "non-durable"),
    ({"durable": True, "exclusive": True}, "exclusive-owner"),
    ({"durable": True, "auto_delete": True}, "auto-delete"),
], ids=["non-durable", "exclusive", "auto-delete"])
def test_a_quorum_queue_is_durable_only(broker, queues, options, prop):
    name = queues.name()
    assert declare_error(broker, name, QUORUM, **options) == invalid_property(prop, name)


def test_a_quorum_queue_cannot_be_server_named(broker):
    assert declare_error(broker, "", QUORUM, durable=True) == (
        406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type "
             "rabbit_quorum_queue")


@pytest.mark.parametrize(("arguments", "refused"), [
    ({"x-max-priority": 5}, "x-max-priority"),
    ({"x-queue-mode": "lazy"}, "x-queue-mode"),
    ({"x-queue-mode": "default"}, "x-queue-mode"),
    ({"x-queue-master-locator": "min-masters"}, "x-queue-master-locator"),
    ({"x-queue-version": 2}, "x-queue-version"),
    ({"x-max-age": "1h"}, "x-max-age"),
    # the first refused argument in RabbitMQ's list is the one named
    ({"x-max-priority": 5, "x-queue-mode": "lazy"}, "x-max-priority"),
], ids=["max-priority", "lazy", "queue-mode-default", "master-locator", "queue-version",
        "stream-max-age", "first-named"])
def test_arguments_quorum_queues_do_not_run_are_refused(broker, queues, arguments, refused):
    name = queues.name()
    assert declare_error(broker, name, {**QUORUM, **arguments}, durable=True) == (
        unsupported_arg(refused, name, QUORUM_MODULE))


@pytest.mark.parametrize("arguments", [
    {"x-overflow": "drop-head"},
    {"x-overflow": "reject-publish"},
    # the issue guessed a refusal; RabbitMQ 3.10.8 accepts it (and runs it as drop-head, see
    # test_quorum_messages.py)
    {"x-overflow": "reject-publish-dlx"},
    {"x-max-length": 10, "x-max-length-bytes": 1000},
    {"x-delivery-limit": 3},
    {"x-delivery-limit": "x"},  # not validated by RabbitMQ 3.10.8
    {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "k"},
    {"x-dead-letter-strategy": "at-most-once"},
    {"x-dead-letter-strategy": "at-least-once"},
    {"x-message-ttl": 1000},
    {"x-expires": 60000},
    {"x-single-active-consumer": True},
    {"x-single-active-consumer": False},
    {"x-quorum-initial-group-size": 1},
    {"x-queue-leader-locator": "client-local"},
    {"x-queue-leader-locator": "balanced"},
    {"x-max-in-memory-length": 10},
    {"x-foo": 1},  # unknown arguments are ignored, as on classic queues
], ids=lambda arguments: ",".join(f"{key}={value}" for key, value in arguments.items()))
def test_arguments_quorum_queues_run_are_accepted(channel, queues, arguments):
    name = queues.name()
    declared = channel.queue_declare(name, durable=True, arguments={**QUORUM, **arguments})
    assert declared.method.queue == name
    assert declared.method.message_count == 0
    # the same declare again is equivalent
    assert channel.queue_declare(name, durable=True, arguments={**QUORUM, **arguments})


@pytest.mark.parametrize(("arguments", "arg", "term"), [
    ({"x-dead-letter-strategy": "bogus"}, "x-dead-letter-strategy", "invalid_dlx_strategy"),
    ({"x-dead-letter-strategy": 1}, "x-dead-letter-strategy", "{unacceptable_type,signedint}"),
    ({"x-overflow": "bogus"}, "x-overflow", "invalid_overflow"),
    ({"x-max-length": "x"}, "x-max-length", '"expected integer, got longstr"'),
    ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
    ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
    ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
    ({"x-quorum-initial-group-size": "x"}, "x-quorum-initial-group-size",
     '"expected integer, got longstr"'),
    ({"x-quorum-initial-group-size": 0}, "x-quorum-initial-group-size", "{value_zero,0}"),
    ({"x-quorum-initial-group-size": -1}, "x-quorum-initial-group-size", "{value_negative,-1}"),
    ({"x-queue-leader-locator": "min-masters"}, "x-queue-leader-locator",
     "invalid_queue_locator_arg"),
    ({"x-queue-leader-locator": 1}, "x-queue-leader-locator", "{unacceptable_type,signedint}"),
], ids=["dl-strategy-bogus", "dl-strategy-int", "overflow-bogus", "max-length-str",
        "max-length-negative", "ttl-negative", "expires-zero", "group-size-str",
        "group-size-zero", "group-size-negative", "leader-locator-bogus", "leader-locator-int"])
def test_bad_values_get_rabbitmqs_texts(broker, queues, arguments, arg, term):
    name = queues.name()
    assert declare_error(broker, name, {**QUORUM, **arguments}, durable=True) == (
        invalid_arg(arg, name, term))


def inequivalent(queue: str, arg: str, received: str, current: str) -> tuple[int, str]:
    return 406, (f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{queue}' in vhost "
                 f"'/': received {received} but current is {current}")


@pytest.mark.parametrize(("first", "second", "received", "current"), [
    ({}, QUORUM, "the value 'quorum' of type 'longstr'", "none"),
    ({"x-queue-type": "classic"}, QUORUM, "'quorum'", "'classic'"),
    (QUORUM, {}, "none", "the value 'quorum' of type 'longstr'"),
    (QUORUM, {"x-queue-type": "classic"}, "'classic'", "'quorum'"),
    (QUORUM, {"x-queue-type": "stream"}, "'stream'", "'quorum'"),
], ids=["classic-then-quorum", "explicit-classic-then-quorum", "quorum-then-plain",
        "quorum-then-classic", "quorum-then-stream"])
def test_redeclaring_as_another_type_is_inequivalent(connection, queues, first, second,
                                                    received, current):
    name = queues.name()
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments=first)
    assert channel_error(lambda: channel.queue_declare(name, durable=True, arguments=second)) == (
        inequivalent(name, "x-queue-type", received, current))
    # the queue is untouched: a passive declare still finds it
    assert connection.channel().queue_declare(name, passive=True).method.queue == name


def test_redeclaring_with_other_properties_or_arguments_is_inequivalent(connection, queues):
    channel = connection.channel()
    name = queues.quorum(channel)
    assert channel_error(lambda: channel.queue_declare(name, durable=False, arguments=QUORUM)) == (
        inequivalent(name, "durable", "'false'", "'true'"))
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        name, durable=True, arguments={**QUORUM, "x-delivery-limit": 3})) == (
        inequivalent(name, "x-delivery-limit", "the value '3' of type 'signedint'", "none"))


@pytest.mark.parametrize(("name", "arguments", "options", "expected"), [
    # a server-named declare is refused before any argument is looked at
    ("", {"x-overflow": "bogus", "x-max-priority": 5}, {"durable": False},
     (406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type "
           "rabbit_quorum_queue")),
    # the values of the arguments it runs, then the arguments it refuses ...
    ("q", {"x-max-priority": 5, "x-overflow": "bogus"}, {"durable": True},
     ("invalid_arg", "x-overflow", "invalid_overflow")),
    # ... whose values are not checked
    ("q", {"x-max-priority": "x"}, {"durable": True}, ("unsupported", "x-max-priority")),
    # then the properties: auto-delete, exclusive, non-durable
    ("q", {"x-max-priority": 5}, {"durable": False}, ("unsupported", "x-max-priority")),
    ("q", {}, {"durable": True, "auto_delete": True, "exclusive": True},
     ("property", "auto-delete")),
    ("q", {}, {"durable": False, "exclusive": True}, ("property", "exclusive-owner")),
], ids=["server-named-first", "values-first", "refused-value-unchecked",
        "refused-before-properties", "auto-delete-first", "exclusive-before-durable"])
def test_the_order_of_the_refusals(broker, queues, name, arguments, options, expected):
    queue = queues.name() if name else ""
    answer = declare_error(broker, queue, {**QUORUM, **arguments}, **options)
    if expected[0] == "invalid_arg":
        expected = invalid_arg(expected[1], queue, expected[2])
    elif expected[0] == "unsupported":
        expected = unsupported_arg(expected[1], queue, QUORUM_MODULE)
    elif expected[0] == "property":
        expected = invalid_property(expected[1], queue)
    assert answer == expected
