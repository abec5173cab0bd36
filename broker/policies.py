"""Policies: named, prioritised patterns whose definition (TTL, limits, dead-lettering...)
applies to the queues or exchanges whose names match, as RabbitMQ's policies do; operator
policies are the same objects in a table of their own, whose limits a queue's policy cannot
raise (`merged_definition`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from broker.patterns import compile_pattern

APPLY_TO = ("queues", "exchanges", "all")
# What RabbitMQ 3.10.8 stores as the apply-to of an operator policy set as a runtime parameter
# whose value has none: it applies to nothing
UNDEFINED = "undefined"


@dataclass
class Policy:
    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 0
    apply_to: str = "all"
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._regex = compile_pattern(self.pattern)  # raises InvalidPattern

    def applies_to(self, kind: str, name: str) -> bool:
        """kind: "queues" or "exchanges" (never for apply-to UNDEFINED)."""
        if self.apply_to not in ("all", kind):
            return False
        return self._regex.search(name) is not None

    def as_definition(self) -> dict[str, Any]:
        return {"vhost": self.vhost, "name": self.name, "pattern": self.pattern,
                "apply-to": self.apply_to, "definition": self.definition,
                "priority": self.priority}


def effective_policy(policies: dict[str, Policy], kind: str, name: str) -> Policy | None:
    """The matching policy of highest priority (ties: the first name in order)."""
    matching = [p for p in policies.values() if p.applies_to(kind, name)]
    if not matching:
        return None
    return min(matching, key=lambda policy: (-policy.priority, policy.name))


def merged_definition(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """The definition a queue runs with: its policy's and its operator policy's keys, the
    lower value where both set one (RabbitMQ 3.10's merge_operator_definitions: every key an
    operator policy takes is a limit), keys in RabbitMQ's (sorted) order."""
    definition = dict(policy.definition) if policy is not None else {}
    for key, value in (operator.definition if operator is not None else {}).items():
        current = definition.get(key)
        definition[key] = value if current is None or not _both_numbers(current, value) else (
            min(current, value))
    return dict(sorted(definition.items())) if operator is not None else definition


def _both_numbers(*values: Any) -> bool:
    return all(isinstance(value, int | float) and not isinstance(value, bool) for value in values)
