"""Dead-lettering, in-process: the copy's x-death and x-first-death-* headers for each reason
(rejected, expired, maxlen, delivery_limit), the dead-letter routing key, the cycle rule, and
the vhost's counters per reason and strategy."""

from __future__ import annotations

import asyncio
import datetime
import time

from core_kit import bodies, declare, headers, message, new_vhost, publish, turn


def dead_lettering_pair(vhost, **arguments):
    """A queue `work` dead-lettering through the default exchange to a queue `dead`."""
    dead = declare(vhost, "dead")
    work = declare(vhost, "work", x_dead_letter_exchange="", x_dead_letter_routing_key="dead",
                   **arguments)
    return work, dead


def only_death(dead) -> tuple[bytes, dict]:
    entry = dead.get(no_ack=True)
    assert entry is not None and dead.message_count == 0
    return entry.message.body, headers(entry.message.props_raw)


async def test_rejected_copy_has_x_death():
    vhost = new_vhost()
    work, dead = dead_lettering_pair(vhost)
    publish(vhost, "work", "payload", headers={"app": "kept"}, expiration=60000)
    before = time.time()
    entry = work.get(no_ack=False)
    work.reject(entry)
    await turn()
    body, found = only_death(dead)
    assert body == b"payload"
    death = found["x-death"]
    assert len(death) == 1
    assert {key: death[0][key] for key in ("count", "reason", "queue", "exchange",
                                           "routing-keys", "original-expiration")} == {
        "count": 1, "reason": "rejected", "queue": "work", "exchange": "",
        "routing-keys": ["work"], "original-expiration": "60000"}
    assert isinstance(death[0]["time"], datetime.datetime)
    assert death[0]["time"].timestamp() >= int(before)
    assert (found["x-first-death-reason"], found["x-first-death-queue"],
            found["x-first-death-exchange"], found["app"]) == ("rejected", "work", "", "kept")
    assert vhost.dead_lettered == {("classic", "rejected", "at_most_once"): 1}
    assert work.messages_dead_lettered == 1


async def test_second_death_in_the_same_queue_counts_up():
    vhost = new_vhost()
    work, dead = dead_lettering_pair(vhost)
    publish(vhost, "work", "m")
    work.reject(work.get(no_ack=False))
    await turn()
    copy = dead.get(no_ack=True).message
    # published to `work` again with its x-death (not a cycle: the death was a rejection)
    vhost.publish(vhost.exchanges[""], message(copy.body, "work", props_raw=copy.props_raw))
    work.reject(work.get(no_ack=False))
    await turn()
    _, found = only_death(dead)
    assert [(d["queue"], d["reason"], d["count"]) for d in found["x-death"]] == [
        ("work", "rejected", 2)]


async def test_expired_messages_are_dead_lettered_as_expired():
    vhost = new_vhost()
    work, dead = dead_lettering_pair(vhost, x_message_ttl=10)
    publish(vhost, "work", "old")
    await asyncio.sleep(0.05)  # the queue's expiry timer, no consumer, no get
    assert work.message_count == 0
    body, found = only_death(dead)
    assert body == b"old"
    assert found["x-death"][0]["reason"] == "expired"
    assert vhost.dead_lettered == {("classic", "expired", "at_most_once"): 1}


async def test_maxlen_drop_head_dead_letters_the_oldest():
    vhost = new_vhost()
    work, dead = dead_lettering_pair(vhost, x_max_length=2)
    for index in range(3):
        publish(vhost, "work", f"m{index}")
    assert bodies(work) == [b"m1", b"m2"]
    body, found = only_death(dead)
    assert (body, found["x-death"][0]["reason"]) == (b"m0", "maxlen")


async def test_delivery_limit_dead_letters_after_the_last_requeue():
    vhost = new_vhost()
    work, dead = dead_lettering_pair(vhost, x_delivery_limit=1)
    publish(vhost, "work", "m")
    work.requeue(work.get(no_ack=False))  # first return: within the limit
    assert work.message_count == 1 and dead.message_count == 0
    work.requeue(work.get(no_ack=False))  # second: over it
    assert work.message_count == 0
    _, found = only_death(dead)
    assert found["x-death"][0]["reason"] == "delivery_limit"


async def test_without_a_dead_letter_exchange_the_message_is_dropped_and_counted():
    vhost = new_vhost()
    work = declare(vhost, "work")
    publish(vhost, "work", "m")
    work.reject(work.get(no_ack=False))
    await turn()
    assert work.message_count == 0
    assert vhost.dead_lettered == {("classic", "rejected", "disabled"): 1}


async def test_a_cycle_without_rejection_is_dropped():
    """Expired in `a`, dead-lettered to `b`, expired there, dead-lettered back to `a`: the
    copy would go round for ever, so it is dropped (RabbitMQ's rule)."""
    vhost = new_vhost()
    a = declare(vhost, "a", x_message_ttl=5, x_dead_letter_exchange="",
                x_dead_letter_routing_key="b")
    b = declare(vhost, "b", x_message_ttl=5, x_dead_letter_exchange="",
                x_dead_letter_routing_key="a")
    publish(vhost, "a", "m")
    await asyncio.sleep(0.1)
    assert (a.message_count, b.message_count) == (0, 0)
    assert vhost.dead_lettered[("classic", "expired", "at_most_once")] == 2


async def test_dead_letter_routing_key_defaults_to_the_message_own():
    vhost = new_vhost()
    declare(vhost, "dead")
    work = declare(vhost, "work", x_dead_letter_exchange="amq.direct")
    vhost.bind(vhost.exchanges["amq.direct"], vhost.queues["dead"], "work", {})
    publish(vhost, "work", "m")
    work.reject(work.get(no_ack=False))
    await turn()
    entry = vhost.queues["dead"].get(no_ack=True)
    assert (entry.message.exchange, entry.message.routing_key) == ("amq.direct", "work")
