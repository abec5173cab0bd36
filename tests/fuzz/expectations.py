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


def _is(outcome: Outcome, key: str, *texts: str) -> bool:
    """`outcome` has this key ("connection 501", "accepted"...) and every text in its reply."""
    return outcome.key == key and all(text in outcome.text for text in texts)


HANDSHAKE_STAGES = ("start_ok", "tune_ok", "open")

ACCEPTABLE: list[Rule] = [
    Rule("reader crash",
         "RabbitMQ's reader process crashes on a method id it does not know or a field table "
         "it cannot parse and drops the TCP connection without a frame; Warren closes the "
         "connection with a reply code and a text naming the problem (deliberate, "
         "tests/broker/RABBITMQ_TEXTS.md; some of these Warren closes are the 541 of the "
         "arguments-table bug below)",
         lambda d: d.rabbitmq.kind == "closed" and d.warren.kind == "connection"),
    Rule("delayed silent close",
         "during the handshake RabbitMQ answers bad input with no frame and closes the socket "
         "3 s later (to slow down clients that retry); Warren closes it without a frame at "
         "once: no frame either way, only the delay differs",
         lambda d: d.rabbitmq.kind == "silent" and d.warren.kind == "closed"
         and _stage(d) in HANDSHAKE_STAGES),
    Rule("early size refusal",
         "a content header announcing more than max_message_size (128 MiB): RabbitMQ waits "
         "for the body (its size check runs on the complete message; not sent here), Warren "
         "refuses the message at the header with 406 instead of buffering it",
         lambda d: _is(d.rabbitmq, "connection 505", "expected content body")
         and _is(d.warren, "channel 406", "message size")),
]

# Differences that are Warren bugs, each named after the bug and the branch expected to fix it.
KNOWN_BUGS: list[Rule] = [
    Rule("unowned: 541 for an undecodable arguments table",
         "protocol/fieldtable.py raises IndexError or ValueError('field table length "
         "mismatch') out of arguments_table: the connection gets 541 INTERNAL_ERROR and the "
         "log a traceback, where RabbitMQ answers 501 'cannot decode'",
         lambda d: _is(d.warren, "connection 541", "internal error")),
    Rule("unowned: handshake errors answered with a frame",
         "before connection.open-ok RabbitMQ answers malformed frames with no frame at all and "
         "closes the socket 3 s later; Warren sends a connection.close (501, 505, 504, 530)",
         lambda d: d.warren.kind == "connection"
         and (d.rabbitmq.kind == "silent" and _stage(d) in HANDSHAKE_STAGES
              or d.rabbitmq.kind == "accepted" and _stage(d) == "header")),
    Rule("wire: undecodable content-header properties",
         "properties RabbitMQ cannot decode (truncated or overrunning fields, unknown table "
         "tags, trailing bytes, deep tables with a bad length) get 541 INTERNAL_ERROR there; "
         "Warren stores and delivers them, or answers 502 or 501; flag bits 0-1, which "
         "RabbitMQ ignores, get 502; a header of 12 or 13 bytes (no property flags), which "
         "RabbitMQ takes, gets 501 unknown_frame",
         lambda d: _is(d.rabbitmq, "connection 541", "INTERNAL_ERROR")
         or _is(d.warren, "connection 502", "malformed content header properties")
         or (_is(d.rabbitmq, "connection 505", "expected content body")
             and _is(d.warren, "connection 501", "unknown_frame"))),
    Rule("wire: non-UTF-8 short strings",
         "RabbitMQ lets non-UTF-8 bytes through in names, table keys and client properties "
         "(and refuses them with 501 'Malformed UTF-8 in shortstr' in channel.open's reserved "
         "field); Warren refuses method arguments with them with 501 'cannot decode' (and "
         "accepts the channel.open)",
         lambda d: ("Malformed UTF-8" in d.rabbitmq.text and d.warren.key != d.rabbitmq.key)
         or (_is(d.warren, "connection 501", "cannot decode")
             and d.rabbitmq.key != "connection 501")),
    Rule("unowned: method arguments decoded laxly",
         "RabbitMQ refuses method arguments it cannot decode exactly (bytes after the last "
         "argument, a string or table running past the frame) with 501 'cannot decode' before "
         "anything else (in the handshake: no frame, socket closed 3 s later); Warren accepts "
         "them, or checks the channel or the method first",
         lambda d: (_is(d.rabbitmq, "connection 501", "cannot decode")
                    and d.warren.key != "connection 501")
         or (d.rabbitmq.kind == "silent" and d.warren.kind == "accepted"
             and _stage(d) in HANDSHAKE_STAGES)),
    Rule("unowned: field-table values running past their table",
         "a table value whose length runs past the table: RabbitMQ's parser crashes and the "
         "connection is dropped; Warren's decoder slices what is there and accepts the table",
         lambda d: d.rabbitmq.kind == "closed" and d.warren.kind in ("accepted", "channel")),
    Rule("unowned: content frame on a channel never opened",
         "a content header or body on a channel that is not open: RabbitMQ 505 'expected "
         "method frame, got non method frame instead', Warren 504 'expected channel.open'",
         lambda d: _is(d.rabbitmq, "connection 505", "expected method frame")
         and d.warren.key == "connection 504"),
    Rule("unowned: content-header class and weight not checked",
         "a content header whose class is not 60 or whose weight is not 0: RabbitMQ 505 "
         "'expected content header for class 60, got ...', Warren accepts it (or answers "
         "something else first)",
         lambda d: _is(d.rabbitmq, "connection 505", "expected content header for class 60, got")
         and d.warren.key != "connection 505"),
    Rule("unowned: short frames checked after the state",
         "a content-header or body frame too short to be one: RabbitMQ 501 'unknown_frame' "
         "whatever the channel state, Warren 505 or 504 from the state first",
         lambda d: _is(d.rabbitmq, "connection 501", "unknown_frame")
         and d.warren.key in ("connection 505", "connection 504")),
    Rule("unowned: server-only methods",
         "a method only a server sends (tx.select-ok, queue.declare-ok...) with valid "
         "arguments: RabbitMQ 503 COMMAND_INVALID, Warren 540 NOT_IMPLEMENTED",
         lambda d: _is(d.rabbitmq, "connection 503") and _is(d.warren, "connection 540")),
    Rule("unowned: protocol header answered before 8 bytes",
         "fewer than 8 bytes of a wrong protocol header: RabbitMQ waits for the rest, Warren "
         "sends its protocol header and closes at once",
         lambda d: d.rabbitmq.kind == "silent" and d.warren.kind == "protocol_header"),
]


def classify(difference: Difference) -> tuple[str, Rule | None]:
    """("acceptable" | "known bug" | "unexplained", the rule that matched)."""
    for rule in ACCEPTABLE:
        if rule.matches(difference):
            return "acceptable", rule
    for rule in KNOWN_BUGS:
        if rule.matches(difference):
            return "known bug", rule
    return "unexplained", None
