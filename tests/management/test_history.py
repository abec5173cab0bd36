"""management/history.py by itself: a History keeps RabbitMQ's tiers with bounded memory, and
answers ranges with the value each sample time had (the API's shape is tested over HTTP in
test_api_samples.py)."""

from __future__ import annotations

import pytest

from management.history import History, RangeError, ranges
from management.rates import Kind, Rates


def test_rows_stay_bounded_under_constant_change():
    """A figure that changes at every 5-second sample for two hours keeps at most
    age/incr + 2 rows per tier (basic: 605/5 and 3600/60)."""
    history = History(width=12, policy="basic")
    start = 1_700_000_000_000
    for step in range(2 * 3600 // 5):
        history.record(start + step * 5000, [step] * 12)
    fine, coarse = history.tiers
    assert len(fine.rows) // 13 <= 605 // 5 + 2
    assert len(coarse.rows) // 13 <= 3600 // 60 + 2


def test_an_unchanged_figure_adds_no_rows():
    """The sampler records a row only when a figure moved (an idle queue costs nothing)."""
    figures = {"value": 1}
    rates, obj = Rates(), object()
    reader = {obj: figures}
    kind = Kind(("value",), ("lengths",), lambda key: (reader[key]["value"],), "global")
    for step in range(1000):
        rates.sample(kind, [obj], 5.0, 1_700_000_000_000 + step * 5000)
    history = rates.series[kind][obj].history
    assert all(len(tier.rows) == 2 for tier in history.tiers)
    figures["value"] = 2
    rates.sample(kind, [obj], 5.0, 1_700_000_000_000 + 1000 * 5000)
    assert all(len(tier.rows) == 4 for tier in history.tiers)
    assert rates.series[kind][obj].rates == (0.2,)


def test_samples_are_the_values_at_their_times():
    history = History(width=1, policy="basic")
    start = 1_700_000_000_000  # a multiple of 5000 ms
    for step, value in enumerate((0, 0, 4, 4, 10)):
        history.record(start + step * 5000, [value])
    now = start + 4 * 5000
    details = history.details(0, 1.2, 20, 5, now)
    assert [sample["sample"] for sample in details["samples"]] == [10, 4, 4, 0, 0]
    assert details["avg"] == pytest.approx(18 / 5)
    assert details["avg_rate"] == pytest.approx(10 / 20)
    assert details["rate"] == 1.2
    before = history.details(0, 0.0, 10, 5, start - 5000)
    assert [sample["sample"] for sample in before["samples"]] == [0, 0, 0]  # before any


def test_ranges_as_rabbitmq_reads_them():
    assert ranges({"lengths_age": "60", "lengths_incr": "5", "msg_rates_age": "x",
                   "msg_rates_incr": "5", "data_rates_age": "10"}) == {"lengths": (60, 5)}
    for age, incr in (("0", "5"), ("5", "0"), ("-5", "1"), ("501", "1")):
        with pytest.raises(RangeError, match=f"Invalid range parameters: age {age}, incr"):
            ranges({"lengths_age": age, "lengths_incr": incr})
