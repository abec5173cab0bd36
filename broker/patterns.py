"""Regular expressions that users give (permissions, policy patterns): compiled once, and a bad
one refused with the message and offset RabbitMQ's PCRE (Erlang `re`) reports for it, so that
the management API can answer with RabbitMQ's error bodies."""

from __future__ import annotations

import re


class InvalidPattern(ValueError):
    """A pattern that does not compile: PCRE's `message` and `offset` where known."""

    def __init__(self, pattern: str, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.pattern = pattern
        self.message = message
        self.offset = offset


def compile_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        message, position = _pcre_error(pattern, exc)
        # PCRE counts bytes of UTF-8, Python characters
        offset = len(pattern[:position].encode()) if position >= 0 else position
        raise InvalidPattern(pattern, message, offset) from None
    except (TypeError, OverflowError, RecursionError) as exc:
        raise InvalidPattern(str(pattern), str(exc), 0) from None


def _pcre_error(pattern: str, exc: re.error) -> tuple[str, int]:
    """Python's wording of the common mistakes turned into PCRE's (as seen from RabbitMQ);
    anything else keeps Python's message and position."""
    message, position = exc.msg, exc.pos or 0
    if message.startswith("missing ), unterminated subpattern"):
        return "missing )", len(pattern)
    if message == "unterminated character set":
        return "missing terminating ] for character class", len(pattern)
    if message in ("nothing to repeat", "multiple repeat"):
        return "nothing to repeat", position
    if message == "unbalanced parenthesis":
        return "unmatched parentheses", position
    if message == "bad escape (end of pattern)":
        return "\\ at end of pattern", len(pattern)
    if message == "min repeat greater than max repeat":
        return "numbers out of order in {} quantifier", pattern.find("}", position)
    if message.startswith("bad character range"):
        return "range out of order in character class", position + 2
    return message, position
