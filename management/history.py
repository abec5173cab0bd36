"""Sample history of the management API's figures, kept as RabbitMQ's management plugin keeps
it (its default `sample_retention_policies`) and answered in its `*_details` shape.

A `History` holds one object's figures (a queue's lengths and message counts, a connection's
bytes...) as rows `(timestamp, value, value, ...)` in one flat `array('q')` per retention tier:
a tier keeps a row per `incr` seconds for `age` seconds. A row is added only when a figure
changed (the sampler records only then; an idle object keeps one row per tier), so the memory
of an object is bounded by its busiest case: per tier `age / incr + 2` rows of `1 + width`
8-byte integers (a queue's 12 figures under the `basic` policy: (123 + 62) rows x 13 x 8 B =
19 KB at most, ~0.6 KB idle: benchmarks/api_history.py).

`details(...)` answers a `?lengths_age=&lengths_incr=` (or `msg_rates_*`, `data_rates_*`)
request: the samples newest first, every `incr` seconds back to `age`, with `avg` (the mean
of the samples), `avg_rate` (the change over the range per second) and `rate`."""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from typing import Any

# RabbitMQ 3.10's defaults (rabbit management app env, `sample_retention_policies`):
# (age, incr) in seconds per tier. `global` is the node's (overview), `basic` every object's.
RETENTION_POLICIES: dict[str, tuple[tuple[int, int], ...]] = {
    "global": ((605, 5), (3660, 60), (29400, 600), (86400, 1800)),
    "basic": ((605, 5), (3600, 60)),
    "detailed": ((605, 5),),
}
# How RabbitMQ 3.10.8's /api/overview shows them (`sample_retention_policies`).
SHOWN_RETENTION = {"global": [600, 3600, 28800, 86400], "basic": [600, 3600], "detailed": [600]}
RANGE_GROUPS = ("lengths", "msg_rates", "data_rates")  # the query parameters' prefixes


MAX_SAMPLES = 500  # more samples than this in one range: RabbitMQ's 400


class RangeError(ValueError):
    """A range RabbitMQ refuses: `Invalid range parameters: age A, incr I`."""


def ranges(query: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """The requested ranges by group: `{"lengths": (age, incr)}` for `?lengths_age=60&
    lengths_incr=5`. As in RabbitMQ 3.10.8, a group is asked for only with both parameters
    given as integers (else it is ignored); a range with an age or increment under 1 or of
    more than 500 increments is refused."""
    found = {}
    for group in RANGE_GROUPS:
        try:
            age, incr = int(query[f"{group}_age"]), int(query[f"{group}_incr"])
        except (KeyError, ValueError):
            continue
        if age <= 0 or incr <= 0 or age / incr > MAX_SAMPLES:
            raise RangeError(f"Invalid range parameters: age {age}, incr {incr}")
        found[group] = (age, incr)
    return found


class _Tier:
    __slots__ = ("age_ms", "incr_ms", "rows")

    def __init__(self, age: int, incr: int) -> None:
        self.age_ms, self.incr_ms = age * 1000, incr * 1000
        self.rows = array("q")


class History:
    """One object's figures over time (see the module docstring)."""

    __slots__ = ("width", "tiers")

    def __init__(self, width: int, policy: str) -> None:
        self.width = width
        self.tiers = [_Tier(age, incr) for age, incr in RETENTION_POLICIES[policy]]

    def record(self, now_ms: int, values: Sequence[int]) -> None:
        """The figures as of `now_ms`, if they changed since the last record (the caller
        knows: an unchanged figure needs no row, the last one still holds)."""
        step = self.width + 1
        for tier in self.tiers:
            rows, slot = tier.rows, now_ms - now_ms % tier.incr_ms
            if rows and rows[len(rows) - step] == slot:  # a later sample in the same slot
                rows[len(rows) - step + 1:] = array("q", values)
                continue
            rows.append(slot)
            rows.extend(values)
            # keep one row older than the tier's age: the value at its start
            oldest_kept = slot - tier.age_ms
            drop = 0
            while drop + step < len(rows) and rows[drop + step] <= oldest_kept:
                drop += step
            if drop:
                del rows[:drop]

    def value_at(self, tier: _Tier, column: int, timestamp: int) -> int:
        """The figure as it was at `timestamp`."""
        rows, step = tier.rows, self.width + 1
        index = len(rows) - step
        while index >= 0 and rows[index] > timestamp:
            index -= step
        return rows[index + 1 + column] if index >= 0 else 0  # 0 before the first sample

    def tier_for(self, age: int) -> _Tier:
        """The finest tier that reaches `age` seconds back (else the longest)."""
        for tier in self.tiers:
            if tier.age_ms >= age * 1000:
                return tier
        return self.tiers[-1]

    def details(self, column: int, rate: float, age: int, incr: int,
                now_ms: int) -> dict[str, Any]:
        """RabbitMQ's `<figure>_details` for a range: rate, samples, avg_rate, avg."""
        tier = self.tier_for(age)
        incr_ms = incr * 1000
        newest = now_ms - now_ms % incr_ms
        samples = [{"sample": self.value_at(tier, column, newest - step * incr_ms),
                    "timestamp": newest - step * incr_ms} for step in range(age // incr + 1)]
        first, last = samples[-1]["sample"], samples[0]["sample"]
        return {"rate": rate, "samples": samples,
                "avg_rate": (last - first) / age if age else 0.0,
                "avg": sum(sample["sample"] for sample in samples) / len(samples)}
