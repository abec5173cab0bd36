"""RabbitMQ's recorded answers to the fuzz cases, and the rules for comparing Warren's to them.

`rabbitmq_outcomes.json` holds, for case numbers 0..N-1, what RabbitMQ 3.10.8 did (kind, reply
code, class/method, text) and a CRC-32 of the case's bytes, so that a change to the seeds or
the mutator is noticed instead of comparing against answers to other bytes. It is written by
`python3 tests/fuzz/record.py` against the reference RabbitMQ.

A difference between Warren and RabbitMQ on a case is either *acceptable* (an `ACCEPTABLE`
rule matches it; RABBITMQ_FUZZ.md says why), a *known bug* (a `KNOWN_BUGS` rule matches it:
the test reports it as xfail, naming the bug), or unexplained, which fails the test.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mutator import Case
from runner import Outcome

RECORDING = Path(__file__).resolve().parent / "rabbitmq_outcomes.json"
TEXT_KEPT = 80  # characters of each reply text kept in the recording


def case_crc(case: Case) -> int:
    return zlib.crc32(case.data)


def save(outcomes: dict[int, Outcome], crcs: dict[int, int], broker: str) -> None:
    rows = []
    for number in sorted(outcomes):
        outcome = outcomes[number]
        rows.append([*outcome.to_json()[:4], outcome.text[:TEXT_KEPT], crcs[number]])
    document = {"broker": broker, "cases": len(rows), "outcomes": rows}
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    RECORDING.write_text(text.replace('],[', '],\n[') + "\n")


@dataclass
class Recording:
    broker: str
    rows: list[list]

    @classmethod
    def load(cls) -> Recording:
        document = json.loads(RECORDING.read_text())
        return cls(document["broker"], document["outcomes"])

    def __len__(self) -> int:
        return len(self.rows)

    def outcome(self, number: int) -> Outcome:
        return Outcome.from_json(self.rows[number][:5])

    def crc(self, number: int) -> int:
        return self.rows[number][5]


@dataclass
class Difference:
    case: Case
    rabbitmq: Outcome
    warren: Outcome

    def describe(self) -> str:
        return (f"case {self.case.number} ({self.case.kind}, {'+'.join(self.case.mutations)}): "
                f"RabbitMQ {self.rabbitmq}, Warren {self.warren}\n"
                f"    bytes {self.case.data[:160].hex(' ')}"
                f"{' ...' if len(self.case.data) > 160 else ''}")


@dataclass
class Rule:
    name: str
    why: str
    matches: Callable[[Difference], bool]


def _is(outcome: Outcome, key: str, *texts: str) -> bool:
    """`outcome` has this key ("connection 501", "accepted"...) and every text in its reply."""
    return outcome.key == key and all(text in outcome.text for text in texts)


ACCEPTABLE: list[Rule] = [
    Rule("reader crash",
         "RabbitMQ's reader process crashes on a method id it does not know or a field table "
         "it cannot parse and drops the TCP connection without a frame; Warren closes the "
         "connection with a reply code and a text naming the problem: 540 for the method, "
         "501 'cannot decode' for the table (deliberate, tests/broker/RABBITMQ_TEXTS.md; "
         "during the handshake Warren drops the socket too)",
         lambda d: d.rabbitmq.kind == "closed" and d.warren.kind == "connection"),
    Rule("early size refusal",
         "a content header announcing more than max_message_size (128 MiB): RabbitMQ waits "
         "for the body (its size check runs on the complete message; not sent here), Warren "
         "refuses the message at the header with 406 instead of buffering it",
         lambda d: _is(d.rabbitmq, "connection 505", "expected content body")
         and _is(d.warren, "channel 406", "message size")),
    Rule("decoder crash on channel 0",
         "method arguments on channel 0 of an open connection that do not decode: RabbitMQ's "
         "reader does not take its decoder's failure there for an AMQP error and closes the "
         "connection with a bare 541 INTERNAL_ERROR; Warren names the problem with the 501 "
         "'cannot decode' RabbitMQ itself sends for the same bytes on any other channel "
         "(deliberate, tests/broker/RABBITMQ_TEXTS.md)",
         lambda d: _is(d.rabbitmq, "connection 541", "INTERNAL_ERROR")
         and _is(d.warren, "connection 501", "cannot decode")),
]

# Differences that are Warren bugs, each named after the bug and the branch expected to fix it
# (the per-kind test xfails naming it). None is known.
KNOWN_BUGS: list[Rule] = []


def classify(difference: Difference) -> tuple[str, Rule | None]:
    """("acceptable" | "known bug" | "unexplained", the rule that matched)."""
    for rule in ACCEPTABLE:
        if rule.matches(difference):
            return "acceptable", rule
    for rule in KNOWN_BUGS:
        if rule.matches(difference):
            return "known bug", rule
    return "unexplained", None
