"""Policies: pattern, apply-to, priority and the queue/exchange keys they set, resolved against
arguments the way RabbitMQ 3.10 resolves them.

- message-ttl, expires, max-length, max-length-bytes, delivery-limit: the lower of policy and
  argument; overflow, dead-letter-exchange, dead-letter-routing-key, alternate-exchange: the
  argument (each key on its own: an argument DLX with a policy routing key uses both);
- only the matching policy of highest priority applies (no merging); apply-to filters first;
- delivery-limit applies to quorum queues only (a classic queue ignores it).

Against Warren the module's policies come from a definitions file (`--load-definitions`, the
`policies` entries of RabbitMQ's export format) given to a Warren of the module's own; against
RabbitMQ (WARREN_TEST_AMQP_PORT) the same entries are imported with `rabbitmqctl
import_definitions` and deleted afterwards. Every policy pattern starts with a prefix unique to
the run. See RABBITMQ_PRIORITY_POLICIES_DELAYED.md.
"""

from __future__ import annotations

import json
import os
import time

import pika
import pika.exceptions
import pytest
from brokers import DEFINITIONS, BrokerProcess, run_warren
from client_helpers import close_quietly, connect
from multi_consumer import REFERENCE, get_all, reference_clear_policies, reference_set_policies

PREFIX = f"lcbpol{os.getpid()}t{time.time_ns() % 10**10}"


def policy(key: str, definition: dict, apply_to: str = "queues", priority: int = 0,
           vhost: str = "/", pattern: str | None = None, name: str | None = None) -> dict:
    return {
        "vhost": vhost,
        "name": f"{PREFIX}-{name or key}",
        "pattern": pattern if pattern is not None else f"^{PREFIX}_{key}_",
        "apply-to": apply_to,
        "definition": definition,
        "priority": priority,
    }


def named(key: str, suffix: str) -> str:
    """A queue or exchange name that the policy `key` matches."""
    return f"{PREFIX}_{key}_{suffix}"


DLX_POLICY_EXCHANGE = f"{PREFIX}-dlx-policy"
AE_POLICY_EXCHANGE = f"{PREFIX}-ae-policy"

POLICIES = [
    policy("ml", {"max-length": 2}),
    policy("mlhigh", {"max-length": 5}),
    policy("mlb", {"max-length-bytes": 10}),
    policy("ttl", {"message-ttl": 500}),
    policy("exp", {"expires": 300}),
    policy("ovf", {"overflow": "reject-publish", "max-length": 2}),
    policy("dlx", {"dead-letter-exchange": DLX_POLICY_EXCHANGE,
                   "dead-letter-routing-key": "policy-key"}),
    policy("dlxonly", {"dead-letter-exchange": DLX_POLICY_EXCHANGE}),
    policy("two", {"max-length": 3}, priority=5, name="two-high"),
    policy("two", {"message-ttl": 100}, priority=1, name="two-low"),
    policy("exonly", {"max-length": 1}, apply_to="exchanges"),
    policy("all", {"max-length": 1}, apply_to="all"),
    policy("shadow", {"max-length": 10}, apply_to="exchanges", priority=9, name="shadow-ex"),
    policy("shadow", {"max-length": 1}, apply_to="queues", priority=1, name="shadow-q"),
    policy("ae", {"alternate-exchange": AE_POLICY_EXCHANGE}, apply_to="exchanges"),
    policy("aeq", {"alternate-exchange": AE_POLICY_EXCHANGE}, apply_to="queues"),
    policy("mid", {"max-length": 1}, pattern=f"{PREFIX}mid"),
    policy("vh", {"max-length": 1}, vhost="other"),
    policy("dl", {"delivery-limit": 1}),
    policy("dlhigh", {"delivery-limit": 3}),
]


@pytest.fixture(scope="module")
def policy_broker(tmp_path_factory):
    """A broker where POLICIES are in force."""
    if REFERENCE:
        reference_set_policies(POLICIES)
        try:
            yield BrokerProcess(port=int(os.environ["WARREN_TEST_AMQP_PORT"]))
        finally:
            reference_clear_policies(POLICIES)
        return
    directory = tmp_path_factory.mktemp("policies")
    document = json.loads(DEFINITIONS.read_text())
    document["policies"] = POLICIES
    path = directory / "definitions.json"
    path.write_text(json.dumps(document))
    with run_warren(directory, extra_args=["--load-definitions", str(path)]) as running:
        yield running
        running.assert_alive()


@pytest.fixture
def connection(policy_broker):
    connection = connect(policy_broker)
    yield connection
    close_quietly(connection)


@pytest.fixture
def channel(connection):
    return connection.channel()


@pytest.fixture
def cleanup(policy_broker):
    """cleanup(queues=[...], exchanges=[...]): deleted at the end of the test."""
    queues: list[str] = []
    exchanges: list[str] = []

    def register(queues_: list[str] = (), exchanges_: list[str] = ()) -> None:
        queues.extend(queues_)
        exchanges.extend(exchanges_)

    yield register
    connection = connect(policy_broker)
    try:
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    finally:
        close_quietly(connection)


def declare(channel, cleanup, name: str, arguments: dict | None = None, **flags) -> str:
    channel.queue_declare(name, arguments=arguments, **flags)
    cleanup([name])
    return name


def publish(channel, queue: str, bodies, exchange: str = "", properties=None) -> None:
    for body in bodies:
        channel.basic_publish(exchange, queue, body.encode() if isinstance(body, str) else body,
                              properties)


def bodies(channel, queue: str) -> list[str]:
    return [body.decode() for _m, _p, body in get_all(channel, queue)]


def count(channel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_count(channel, queue: str, wanted: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (found := count(channel, queue)) != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def queue_exists(connection, name: str) -> bool:
    channel = connection.channel()
    try:
        channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        assert error.reply_code == 404, error
        return False
    channel.close()
    return True


# -- length limits ----------------------------------------------------------------------------


def test_max_length_from_a_policy(channel, cleanup):
    queue = declare(channel, cleanup, named("ml", "plain"))
    publish(channel, queue, "01234")
    assert bodies(channel, queue) == ["3", "4"]


def test_max_length_policy_applies_to_exclusive_queues(channel, cleanup):
    queue = named("ml", "exclusive")
    channel.queue_declare(queue, exclusive=True)  # gone with the connection
    publish(channel, queue, "01234")
    assert bodies(channel, queue) == ["3", "4"]


@pytest.mark.parametrize(
    ("key", "argument", "kept"),
    [("ml", 4, ["3", "4"]), ("ml", 1, ["4"]), ("mlhigh", 3, ["2", "3", "4"]),
     ("mlhigh", 8, ["0", "1", "2", "3", "4"])],
    ids=["policy-2-arg-4", "policy-2-arg-1", "policy-5-arg-3", "policy-5-arg-8"],
)
def test_max_length_the_lower_wins(channel, cleanup, key, argument, kept):
    queue = declare(channel, cleanup, named(key, f"arg{argument}"), {"x-max-length": argument})
    publish(channel, queue, "01234")
    assert bodies(channel, queue) == kept


@pytest.mark.parametrize(
    ("argument", "kept"),
    [(None, ["mess3", "mess4"]), (100, ["mess3", "mess4"]), (5, ["mess4"])],
    ids=["policy-only", "arg-100", "arg-5"],
)
def test_max_length_bytes_the_lower_wins(channel, cleanup, argument, kept):
    """The policy allows 10 bytes: two 5-byte bodies."""
    arguments = {"x-max-length-bytes": argument} if argument is not None else None
    queue = declare(channel, cleanup, named("mlb", f"arg{argument}"), arguments)
    publish(channel, queue, ["mess0", "mess1", "mess2", "mess3", "mess4"])
    assert bodies(channel, queue) == kept


# -- overflow ---------------------------------------------------------------------------------


def test_overflow_from_a_policy(channel, cleanup):
    queue = declare(channel, cleanup, named("ovf", "plain"))
    publish(channel, queue, "0123")
    assert bodies(channel, queue) == ["0", "1"]


def test_overflow_policy_nacks_with_confirms(connection, cleanup):
    channel = connection.channel()
    queue = declare(channel, cleanup, named("ovf", "confirm"))
    channel.confirm_delivery()
    publish(channel, queue, "01")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"2")
    assert bodies(channel, queue) == ["0", "1"]


def test_overflow_the_argument_wins(channel, cleanup):
    queue = declare(channel, cleanup, named("ovf", "drophead"), {"x-overflow": "drop-head"})
    publish(channel, queue, "0123")
    assert bodies(channel, queue) == ["2", "3"]


# -- TTL and expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expiration"),
    [(None, None), ({"x-message-ttl": 60000}, None), (None, "60000")],
    ids=["policy-only", "arg-60000", "per-message-60000"],
)
def test_message_ttl_the_lower_wins(channel, cleanup, arguments, expiration):
    """The policy's TTL is 500 ms."""
    queue = declare(channel, cleanup, named("ttl", f"{bool(arguments)}{expiration}"), arguments)
    properties = pika.BasicProperties(expiration=expiration) if expiration else None
    channel.confirm_delivery()  # once confirmed, the message is in the queue
    publish(channel, queue, ["m"], properties=properties)
    assert count(channel, queue) == 1
    assert wait_count(channel, queue, 0) == 0


def test_message_ttl_argument_lower_than_policy(channel, cleanup):
    queue = declare(channel, cleanup, named("ttl", "arg50"), {"x-message-ttl": 50})
    publish(channel, queue, ["m"])
    time.sleep(0.25)  # the policy's 500 ms have not passed yet
    assert count(channel, queue) == 0


@pytest.mark.parametrize("arguments", [None, {"x-expires": 60000}], ids=["policy-only", "arg"])
def test_expires_the_lower_wins(connection, channel, cleanup, arguments):
    """The policy's expiry is 300 ms. (Looking at the queue, even passively, is a use that
    restarts the timer: look once, later.)"""
    queue = declare(channel, cleanup, named("exp", f"{bool(arguments)}"), arguments)
    time.sleep(1.2)
    assert not queue_exists(connection, queue)


# -- dead-lettering ---------------------------------------------------------------------------


@pytest.fixture
def dead_letters(channel, cleanup):
    """Fanout exchanges `policy` (the policies' DLX) and `argument`, each with a queue bound;
    returns {kind: queue}."""
    found = {}
    for kind, exchange in (("policy", DLX_POLICY_EXCHANGE), ("argument", f"{PREFIX}-dlx-arg")):
        channel.exchange_declare(exchange, "fanout")
        queue = f"{exchange}-q"
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange)
        cleanup([queue], [exchange])
        found[kind] = queue
    return found


def reject_one(channel, queue: str) -> None:
    publish(channel, queue, ["dead"])
    method, _properties, _body = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=False)


def dead_lettered(channel, queue: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, properties, body
        time.sleep(0.05)
    return None


def test_dead_letter_exchange_and_key_from_a_policy(channel, cleanup, dead_letters):
    queue = declare(channel, cleanup, named("dlx", "plain"))
    reject_one(channel, queue)
    got = dead_lettered(channel, dead_letters["policy"])
    assert got is not None
    method, properties, body = got
    assert (method.exchange, method.routing_key, body) == (DLX_POLICY_EXCHANGE, "policy-key",
                                                            b"dead")
    death = properties.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"], death["exchange"],
            death["routing-keys"]) == ("rejected", queue, 1, "", [queue])
    assert properties.headers["x-first-death-reason"] == "rejected"
    assert properties.headers["x-first-death-queue"] == queue


def test_dead_letter_policy_without_key_keeps_the_routing_key(channel, cleanup, dead_letters):
    queue = declare(channel, cleanup, named("dlxonly", "plain"))
    reject_one(channel, queue)
    method, _properties, _body = dead_lettered(channel, dead_letters["policy"])
    assert method.routing_key == queue


def test_dead_letter_exchange_argument_wins_key_from_policy(channel, cleanup, dead_letters):
    queue = declare(channel, cleanup, named("dlx", "argdlx"),
                    {"x-dead-letter-exchange": f"{PREFIX}-dlx-arg"})
    reject_one(channel, queue)
    method, _properties, _body = dead_lettered(channel, dead_letters["argument"])
    assert (method.exchange, method.routing_key) == (f"{PREFIX}-dlx-arg", "policy-key")
    assert channel.basic_get(dead_letters["policy"], auto_ack=True)[0] is None


def test_dead_letter_arguments_win(channel, cleanup, dead_letters):
    queue = declare(channel, cleanup, named("dlx", "argboth"),
                    {"x-dead-letter-exchange": f"{PREFIX}-dlx-arg",
                     "x-dead-letter-routing-key": "argument-key"})
    reject_one(channel, queue)
    method, _properties, _body = dead_lettered(channel, dead_letters["argument"])
    assert method.routing_key == "argument-key"
    assert channel.basic_get(dead_letters["policy"], auto_ack=True)[0] is None


# -- which policy -----------------------------------------------------------------------------


def test_only_the_highest_priority_policy_applies(channel, cleanup):
    """two-high (priority 5: max-length 3) and two-low (priority 1: message-ttl 100) both
    match: max-length applies, the TTL does not."""
    queue = declare(channel, cleanup, named("two", "q"))
    publish(channel, queue, "01234")
    time.sleep(0.4)
    assert bodies(channel, queue) == ["2", "3", "4"]


def test_exchanges_policy_does_not_apply_to_queues(channel, cleanup):
    queue = declare(channel, cleanup, named("exonly", "q"))
    publish(channel, queue, "012")
    assert bodies(channel, queue) == ["0", "1", "2"]


def test_all_policy_applies_to_queues(channel, cleanup):
    queue = declare(channel, cleanup, named("all", "q"))
    publish(channel, queue, "012")
    assert bodies(channel, queue) == ["2"]


def test_apply_to_filters_before_priority(channel, cleanup):
    """shadow-ex (exchanges, priority 9) does not hide shadow-q (queues, priority 1)."""
    queue = declare(channel, cleanup, named("shadow", "q"))
    publish(channel, queue, "012")
    assert bodies(channel, queue) == ["2"]


def test_pattern_is_searched_unanchored(channel, cleanup):
    queue = declare(channel, cleanup, f"before-{PREFIX}mid-after")
    publish(channel, queue, "012")
    assert bodies(channel, queue) == ["2"]


def test_policy_of_another_vhost_does_not_apply(channel, cleanup):
    queue = declare(channel, cleanup, named("vh", "q"))
    publish(channel, queue, "012")
    assert bodies(channel, queue) == ["0", "1", "2"]


def test_no_policy_no_limit(channel, cleanup):
    queue = declare(channel, cleanup, f"{PREFIX}_nopolicy_q")
    publish(channel, queue, "01234")
    assert bodies(channel, queue) == ["0", "1", "2", "3", "4"]


def test_redeclare_compares_arguments_only(connection, channel, cleanup):
    queue = declare(channel, cleanup, named("ml", "redeclare"), {"x-max-length": 4})
    again = connection.channel()
    assert again.queue_declare(queue, arguments={"x-max-length": 4}).method.queue == queue


# -- alternate exchange (exchange policies) ---------------------------------------------------


@pytest.fixture
def alternates(channel, cleanup):
    found = {}
    for kind, exchange in (("policy", AE_POLICY_EXCHANGE), ("argument", f"{PREFIX}-ae-arg")):
        channel.exchange_declare(exchange, "fanout")
        queue = f"{exchange}-q"
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange)
        cleanup([queue], [exchange])
        found[kind] = queue
    return found


def test_alternate_exchange_from_an_exchanges_policy(channel, cleanup, alternates):
    exchange = named("ae", "x")
    channel.exchange_declare(exchange, "direct")
    cleanup([], [exchange])
    channel.basic_publish(exchange, "nowhere", b"unroutable")
    assert bodies(channel, alternates["policy"]) == ["unroutable"]


def test_alternate_exchange_argument_wins(channel, cleanup, alternates):
    exchange = named("ae", "withargument")
    channel.exchange_declare(exchange, "direct",
                             arguments={"alternate-exchange": f"{PREFIX}-ae-arg"})
    cleanup([], [exchange])
    channel.basic_publish(exchange, "nowhere", b"unroutable")
    assert bodies(channel, alternates["argument"]) == ["unroutable"]
    assert bodies(channel, alternates["policy"]) == []


def test_queues_policy_does_not_apply_to_exchanges(channel, cleanup, alternates):
    exchange = named("aeq", "x")
    channel.exchange_declare(exchange, "direct")
    cleanup([], [exchange])
    channel.basic_publish(exchange, "nowhere", b"unroutable")
    channel.queue_declare(alternates["policy"], passive=True)
    assert bodies(channel, alternates["policy"]) == []


# -- delivery limit ---------------------------------------------------------------------------


def deliveries_until_gone(channel, queue: str, limit: int = 8) -> int:
    """Publish one message, then get and reject (requeue) it until it is gone; how many times
    it was delivered."""
    publish(channel, queue, ["m"])
    delivered = 0
    deadline = time.monotonic() + 5
    while delivered < limit and time.monotonic() < deadline:
        method, _properties, _body = channel.basic_get(queue)
        if method is None:
            if delivered and count(channel, queue) == 0:
                break
            time.sleep(0.02)
            continue
        delivered += 1
        channel.basic_reject(method.delivery_tag, requeue=True)
    return delivered


@pytest.mark.skipif(not REFERENCE, reason="Warren offers delivery limits on classic queues")
def test_delivery_limit_policy_is_ignored_by_classic_queues_in_rabbitmq(channel, cleanup):
    """RabbitMQ 3.10 refuses an x-delivery-limit argument on a classic queue (406) and ignores
    a delivery-limit policy there."""
    queue = declare(channel, cleanup, named("dl", "classic"))
    assert deliveries_until_gone(channel, queue, limit=5) == 5
    method, properties, _body = channel.basic_get(queue, auto_ack=True)
    assert method.redelivered
    assert not (properties.headers or {}).get("x-delivery-count")


@pytest.mark.skipif(REFERENCE, reason="Warren extension: delivery limits on classic queues")
@pytest.mark.parametrize(
    ("key", "arguments", "deliveries"),
    [("dl", {}, 2), ("dl", {"x-delivery-limit": 3}, 2), ("dlhigh", {"x-delivery-limit": 1}, 2)],
    ids=["policy-1", "policy-1-arg-3", "policy-3-arg-1"],
)
def test_delivery_limit_policy_on_classic_queues_in_warren(channel, cleanup, key, arguments,
                                                          deliveries):
    """Warren takes x-delivery-limit on classic queues too (tests/lifecycle/
    test_delivery_limit.py); a policy then resolves as on quorum queues (the lower wins)."""
    queue = declare(channel, cleanup, named(key, f"classic{len(arguments)}"), arguments)
    assert deliveries_until_gone(channel, queue) == deliveries


@pytest.mark.parametrize(
    ("key", "arguments", "deliveries"),
    [("dl", {}, 2), ("dl", {"x-delivery-limit": 3}, 2), ("dlhigh", {"x-delivery-limit": 1}, 2),
     ("dlhigh", {}, 4)],
    ids=["policy-1", "policy-1-arg-3", "policy-3-arg-1", "policy-3"],
)
def test_delivery_limit_on_quorum_queues_the_lower_wins(channel, cleanup, key, arguments,
                                                       deliveries):
    queue = declare(channel, cleanup, named(key, f"quorum{len(arguments)}"),
                    {"x-queue-type": "quorum", **arguments}, durable=True)
    assert deliveries_until_gone(channel, queue) == deliveries


def test_routing_key_argument_still_needs_a_dlx_argument(connection, cleanup):
    """Arguments are validated on their own: a policy's DLX does not make a lone
    x-dead-letter-routing-key argument acceptable."""
    queue = named("dlxonly", "lonekey")
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(queue, arguments={"x-dead-letter-routing-key": "k"})
    assert closed.value.args == (
        406,
        f"PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue '{queue}' in "
        "vhost '/': routing_key_but_no_dlx_defined",
    )
