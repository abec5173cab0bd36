"""Declaring streams (x-queue-type: stream), as RabbitMQ 3.10.8 answers (RABBITMQ_QUEUE_TYPES.md
§4): durable only; retention by x-max-age (units Y, M, D, h, m, s; a positive integer and one
unit letter, nothing else) and x-max-length-bytes, segment size by
x-stream-max-segment-size-bytes; the classic/quorum arguments a stream cannot run (length in
messages, TTL, priorities, dead-lettering, single active consumer, overflow, expiry) get a 406
naming the argument and rabbit_stream_queue."""

from __future__ import annotations

import pytest
from client_helpers import channel_error, connection_error, opened
from queue_types_helpers import (
    RABBITMQ_ONLY,
    STREAM,
    WARREN_ONLY,
    declare_error,
    invalid_arg,
    invalid_property,
    unsupported_arg,
)

STREAM_MODULE = "rabbit_stream_queue"


@pytest.mark.parametrize(("options", "prop"), [
    ({"durable": False}, "non-durable"),
    ({"durable": True, "exclusive": True}, "exclusive-owner"),
    ({"durable": True, "auto_delete": True}, "auto-delete"),
], ids=["non-durable", "exclusive", "auto-delete"])
def test_a_stream_is_durable_only(broker, queues, options, prop):
    name = queues.name()
    assert declare_error(broker, name, STREAM, **options) == invalid_property(prop, name)


@pytest.mark.parametrize("arguments", [
    {"x-max-age": "1Y"},
    {"x-max-age": "1M"},
    {"x-max-age": "7D"},
    {"x-max-age": "1h"},
    {"x-max-age": "10m"},
    {"x-max-age": "10s"},
    {"x-max-length-bytes": 10_000_000},
    {"x-stream-max-segment-size-bytes": 1_000_000},
    {"x-max-age": "1D", "x-max-length-bytes": 10_000_000,
     "x-stream-max-segment-size-bytes": 500_000},
    {"x-initial-cluster-size": 1},
    {"x-foo": 1},  # unknown arguments are ignored
], ids=lambda arguments: ",".join(f"{key}={value}" for key, value in arguments.items()))
def test_retention_and_segment_arguments_are_accepted(channel, queues, arguments):
    name = queues.name()
    declared = channel.queue_declare(name, durable=True, arguments={**STREAM, **arguments})
    assert (declared.method.queue, declared.method.message_count) == (name, 0)
    assert channel.queue_declare(name, durable=True, arguments={**STREAM, **arguments})


@pytest.mark.parametrize(("arguments", "arg", "term"), [
    ({"x-max-age": "1x"}, "x-max-age", "invalid_max_age"),
    ({"x-max-age": "1d"}, "x-max-age", "invalid_max_age"),  # units are case-sensitive
    ({"x-max-age": "0s"}, "x-max-age", "invalid_max_age"),
    ({"x-max-age": "1.5h"}, "x-max-age", "invalid_max_age"),
    ({"x-max-age": 3600}, "x-max-age", "{unacceptable_type,signedint}"),
    ({"x-max-length-bytes": "x"}, "x-max-length-bytes", '"expected integer, got longstr"'),
    ({"x-max-length-bytes": -1}, "x-max-length-bytes", "{value_negative,-1}"),
    ({"x-stream-max-segment-size-bytes": "x"}, "x-stream-max-segment-size-bytes",
     '"expected integer, got longstr"'),
    ({"x-stream-max-segment-size-bytes": -1}, "x-stream-max-segment-size-bytes",
     "{value_negative,-1}"),
], ids=["max-age-unknown-unit", "max-age-lowercase-d", "max-age-zero", "max-age-fraction",
        "max-age-integer", "max-length-bytes-str", "max-length-bytes-negative", "segment-str",
        "segment-negative"])
def test_bad_values_get_rabbitmqs_texts(broker, queues, arguments, arg, term):
    name = queues.name()
    assert declare_error(broker, name, {**STREAM, **arguments}, durable=True) == (
        invalid_arg(arg, name, term))


@pytest.mark.parametrize(("arguments", "refused"), [
    ({"x-max-length": 10}, "x-max-length"),
    ({"x-message-ttl": 1000}, "x-message-ttl"),
    ({"x-max-priority": 5}, "x-max-priority"),
    ({"x-dead-letter-exchange": "dlx"}, "x-dead-letter-exchange"),
    ({"x-dead-letter-routing-key": "k"}, "x-dead-letter-routing-key"),
    ({"x-single-active-consumer": True}, "x-single-active-consumer"),
    ({"x-overflow": "reject-publish"}, "x-overflow"),
    ({"x-expires": 10000}, "x-expires"),
    ({"x-queue-mode": "lazy"}, "x-queue-mode"),
    ({"x-delivery-limit": 3}, "x-delivery-limit"),
    ({"x-max-length": 5, "x-message-ttl": 5}, "x-max-length"),
], ids=["max-length", "message-ttl", "max-priority", "dlx", "dl-routing-key", "sac", "overflow",
        "expires", "queue-mode", "delivery-limit", "first-named"])
def test_arguments_streams_do_not_run_are_refused(broker, queues, arguments, refused):
    name = queues.name()
    assert declare_error(broker, name, {**STREAM, **arguments}, durable=True) == (
        unsupported_arg(refused, name, STREAM_MODULE))


def test_redeclaring_a_stream_as_classic_or_with_other_retention(connection, queues):
    """The part of the test below that needs no quorum queue."""
    channel = connection.channel()
    name = queues.stream(channel)
    assert channel_error(lambda: channel.queue_declare(name, durable=True)) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{name}' in vhost "
             "'/': received none but current is the value 'stream' of type 'longstr'")
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        name, durable=True, arguments={**STREAM, "x-max-age": "1h"})) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{name}' in vhost "
             "'/': received the value '1h' of type 'longstr' but current is none")
    channel = connection.channel()
    assert channel.queue_declare(name, durable=True, arguments=STREAM)


def test_redeclaring_a_stream_as_another_type_or_with_other_retention(connection, queues):
    channel = connection.channel()
    name = queues.stream(channel)
    prefix = (f"PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{name}' in "
              "vhost '/'")
    assert channel_error(lambda: channel.queue_declare(name, durable=True)) == (
        406, f"{prefix}: received none but current is the value 'stream' of type 'longstr'")
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        name, durable=True, arguments={"x-queue-type": "quorum"})) == (
        406, f"{prefix}: received 'quorum' but current is 'stream'")
    channel = connection.channel()
    assert channel_error(lambda: channel.queue_declare(
        name, durable=True, arguments={**STREAM, "x-max-age": "1h"})) == (
        406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '{name}' in vhost "
             "'/': received the value '1h' of type 'longstr' but current is none")


# An x-max-age with no leading number crashes RabbitMQ 3.10.8's parser: 541 INTERNAL_ERROR and
# the connection closed. Warren answers with the 406 it gives every other unparsable x-max-age.
UNPARSABLE_AGES = pytest.mark.parametrize("age", ["bogus", "h", ""], ids=["word", "unit", "empty"])


@RABBITMQ_ONLY
@UNPARSABLE_AGES
def test_rabbitmq_crashes_on_an_unparsable_max_age(broker, queues, age):
    name = queues.name()
    with opened(broker) as connection:
        channel = connection.channel()
        assert connection_error(lambda: channel.queue_declare(
            name, durable=True, arguments={**STREAM, "x-max-age": age})) == (541, "INTERNAL_ERROR")


@WARREN_ONLY
@UNPARSABLE_AGES
def test_warren_refuses_an_unparsable_max_age_with_a_406(broker, queues, age):
    name = queues.name()
    assert declare_error(broker, name, {**STREAM, "x-max-age": age}, durable=True) == (
        invalid_arg("x-max-age", name, "invalid_max_age"))


# A max-age policy that does not parse: RabbitMQ 3.10.8 answers an empty 500 (its validator
# crashes); Warren refuses it with a 400 saying what a max age is.
BAD_POLICY_AGES = pytest.mark.parametrize("age", ["bogus", 3600], ids=["word", "integer"])


def put_max_age_policy(api, queues, age) -> tuple[int, str]:
    name = f"{queues.prefix}-policy"
    answer = api.put(f"/api/policies/%2F/{name}", {
        "pattern": f"^{name}-nothing$", "apply-to": "queues", "definition": {"max-age": age}})
    api.delete(f"/api/policies/%2F/{name}")
    return answer.status, answer.body.decode(errors="replace")


@RABBITMQ_ONLY
@BAD_POLICY_AGES
def test_rabbitmq_crashes_on_an_unparsable_max_age_policy(api, queues, age):
    assert put_max_age_policy(api, queues, age) == (500, "")


@WARREN_ONLY
@BAD_POLICY_AGES
def test_warren_refuses_an_unparsable_max_age_policy_with_a_400(api, queues, age):
    status, body = put_max_age_policy(api, queues, age)
    assert status == 400
    assert "is not a valid max age" in body
