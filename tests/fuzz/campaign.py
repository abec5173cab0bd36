"""A fuzz campaign: cases 0..count-1 in batches against one broker, with the after-batch checks.

After every batch the broker process must still run (for Warren), a new pika connection must
publish and consume on a fresh queue, and every message the batch left in the fuzz vhost's
queues must have properties that decode (the messages are taken out, so each batch checks its
own). Failures of these checks are collected, not raised, so that a report can show them with
the batch they followed; a dead broker ends the campaign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from expectations import case_crc
from fuzz_broker import FuzzVhost, publish_and_consume, undecodable_messages
from mutator import make_case
from runner import Outcome, SetupFailed, run_cases

BATCH = 500
TIMED = ("silent", "accepted")  # outcomes decided by a timeout


@dataclass
class CampaignResult:
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    crcs: dict[int, int] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)  # broker died or stopped serving
    undecodable: list[str] = field(default_factory=list)  # messages whose properties fail


def run_campaign(broker, count: int, batch: int = BATCH, concurrency: int = 16,
                 expected: Callable[[int], str | None] = lambda n: None) -> CampaignResult:
    """Run cases 0..count-1 against `broker` (needs .host, .port, .management_port).

    Silence and the probe's answer are decided by timeouts, which a loaded machine can beat:
    a case whose outcome is `silent` or `accepted` where `expected(n)` names another answer
    runs once more with patient timeouts (2 s, and 0.5 s after the probe), and that counts.
    """
    result = CampaignResult()
    vhost = FuzzVhost(broker.host, broker.management_port)
    vhost.create()
    try:
        for start in range(0, count, batch):
            cases = [make_case(n) for n in range(start, min(count, start + batch))]
            result.crcs.update((case.number, case_crc(case)) for case in cases)
            where = f"after cases {start}..{cases[-1].number}"
            try:
                outcomes = run_cases(broker.host, broker.port, cases, concurrency)
            except (OSError, SetupFailed) as error:  # refused, reset, or a handshake that failed
                result.broken.append(f"during cases {start}..{cases[-1].number}: {error!r}")
                broker.assert_alive()
                break
            doubtful = [case for case in cases if outcomes[case.number].kind in TIMED
                        and expected(case.number) not in (None, outcomes[case.number].key)]
            outcomes.update(run_cases(broker.host, broker.port, doubtful, 2 * concurrency,
                                      answer_timeout=2.0, settle=0.5))
            result.outcomes.update(outcomes)
            try:
                broker.assert_alive()
            except AssertionError as error:
                result.broken.append(f"{where}: {error}")
                break
            try:
                publish_and_consume(broker)
            except Exception as error:  # any failure here is the finding
                result.broken.append(f"{where}: publish/consume failed: {error!r}")
            result.undecodable += [f"{where}: {problem}"
                                   for problem in undecodable_messages(broker, vhost.queue_names())]
    finally:
        vhost.delete()
    return result
