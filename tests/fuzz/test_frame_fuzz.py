"""Frame fuzzing: mutated start-ok, method, content-header and body frames over real sockets.

Cases 0..N-1 (N = the cases recorded from RabbitMQ, 3000; `WARREN_FUZZ_CASES=100000` for a
long run) each open a connection, do the handshake up to the point where their frame belongs,
send the damaged frame and a probe, and note what the broker answered (runner.py). Then:

- the broker survived every batch and another connection still publishes and consumes;
- no queue holds a message whose properties do not decode (content_header.py);
- for each seed kind, Warren's answer to every case is RabbitMQ's (same close kind and reply
  code), as recorded in rabbitmq_outcomes.json, or a difference listed in expectations.py;
  past the recorded cases, RabbitMQ's answer to the same bytes if a recorded case has them,
  otherwise one RabbitMQ gave to some case of the same kind (a rough check: RabbitMQ may give
  answers the recording never saw).

Run against RabbitMQ itself (WARREN_TEST_AMQP_PORT and WARREN_TEST_HTTP_PORT), the same
comparison checks that the recording is still what RabbitMQ answers. A failing case is
reproduced from its number alone: `make_case(n)` builds the same bytes everywhere, and the
failure message prints them.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from campaign import CampaignResult, run_campaign
from expectations import Difference, Recording, classify
from mutator import make_case
from seeds import SEEDS

RECORDING = Recording.load()
CASES = int(os.environ.get("WARREN_FUZZ_CASES") or len(RECORDING))
KINDS = [make_case(n).kind for n in range(len(SEEDS))]  # case n has seed kind n % len(SEEDS)


@pytest.fixture(scope="module")
def campaign(broker) -> CampaignResult:
    if broker.management_port is None:
        pytest.skip("the fuzzer creates its vhost through the management API: "
                    "set WARREN_TEST_HTTP_PORT")
    return run_campaign(broker, CASES, expected=lambda n: RECORDING.outcome(n).key
                        if n < len(RECORDING) else None)


def test_broker_serves_other_connections_after_every_batch(campaign):
    assert not campaign.broken, "\n".join(campaign.broken)


def test_queues_hold_only_messages_whose_properties_decode(campaign):
    assert not campaign.undecodable, (f"{len(campaign.undecodable)} messages:\n"
                                      + "\n".join(campaign.undecodable[:20]))


def test_cases_are_the_recorded_ones(campaign):
    """The seeds and mutator still make the bytes RabbitMQ answered (else: record.py)."""
    changed = [n for n in range(min(CASES, len(RECORDING))) if campaign.crcs[n] != RECORDING.crc(n)]
    assert not changed, (f"{len(changed)} cases changed since the recording (first: "
                         f"{changed[:10]}); run tests/fuzz/record.py against RabbitMQ")


def _differences(campaign: CampaignResult, kind: str) -> list[Difference]:
    """Cases of `kind` whose answer is not RabbitMQ's: for recorded cases, and for cases past
    the recording whose bytes a recorded case has, RabbitMQ's answer to those bytes; for other
    cases past the recording, any answer RabbitMQ gave to that kind (or a difference from one
    of those that an ACCEPTABLE rule explains)."""
    index = KINDS.index(kind)
    recorded = {}  # (key, text) -> outcome: each distinct answer to this kind
    by_crc = {}  # the recorded answer to the same bytes
    for n in range(index, len(RECORDING), len(SEEDS)):
        outcome = RECORDING.outcome(n)
        recorded.setdefault((outcome.key, outcome.text), outcome)
        by_crc.setdefault(RECORDING.crc(n), outcome)
    recorded_keys = {key for key, _ in recorded}
    differences = []
    for n in range(index, CASES, len(SEEDS)):
        warren = campaign.outcomes[n]
        rabbitmq = RECORDING.outcome(n) if n < len(RECORDING) else by_crc.get(campaign.crcs[n])
        if rabbitmq is not None:
            if rabbitmq.key != warren.key:
                differences.append(Difference(make_case(n), rabbitmq, warren))
        elif warren.key not in recorded_keys:
            case = make_case(n)
            candidates = [Difference(case, outcome, warren) for outcome in recorded.values()]
            if not any(classify(d)[0] == "acceptable" for d in candidates):
                differences.append(min(candidates, key=lambda d: classify(d)[0] != "known bug"))
    return differences


@pytest.mark.parametrize("kind", KINDS)
def test_answers_are_rabbitmqs(campaign, kind):
    groups: dict[str, list[Difference]] = defaultdict(list)
    for difference in _differences(campaign, kind):
        verdict, rule = classify(difference)
        if verdict != "acceptable":
            groups[rule.name if rule else "unexplained"].append(difference)
    unexplained = groups.pop("unexplained", [])
    if unexplained:
        listing = "\n".join(d.describe() for d in unexplained[:40])
        known = "".join(f"; {len(v)} known bug '{k}'" for k, v in groups.items())
        pytest.fail(f"{len(unexplained)} {kind} cases answered unlike RabbitMQ{known}:\n{listing}")
    if groups:
        pytest.xfail("known bugs: " + "; ".join(f"{name} ({len(found)} cases, first: case "
                                                 f"{found[0].case.number})"
                                                 for name, found in groups.items()))
