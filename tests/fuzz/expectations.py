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


def _stage(difference: Difference) -> str:
    return difference.case.seed.stage


HANDSHAKE_STAGES = ("start_ok", "tune_ok", "open")

ACCEPTABLE: list[Rule] = [
    Rule("reader crash",
         "RabbitMQ's reader process crashes on a method id it does not know or a field table "
         "it cannot parse and drops the TCP connection without a frame; Warren closes the "
         "connection with a reply code and a text naming the problem (deliberate, "
         "tests/broker/RABBITMQ_TEXTS.md)",
         lambda d: d.rabbitmq.kind == "closed" and d.warren.kind == "connection"),
    Rule("delayed silent close",
         "during the handshake RabbitMQ answers bad input with no frame and closes the socket "
         "3 s later (to slow down clients that retry); Warren closes it without a frame at "
         "once: no frame either way, only the delay differs",
         lambda d: d.rabbitmq.kind == "silent" and d.warren.kind == "closed"
         and _stage(d) in HANDSHAKE_STAGES),
]

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
