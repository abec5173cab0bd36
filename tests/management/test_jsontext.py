"""management/jsontext.py: the deep fallback writes what json.dumps writes, at any depth."""

from __future__ import annotations

import decimal
import json
import math
import sys

import pytest

from management.jsontext import deep_dumps, dumps

SAMPLES = [
    {"a": [1, 2.5, None, True, False, "x\u00e9\"\n", {"b": {}}, []], "n": math.nan, "k": {}},
    [], {}, "s", 3, -0.0, math.inf, [[[]]], {"x": [{"y": [1]}]}, (1, 2),
    {"d": decimal.Decimal("1.50"), "b": b"raw", "\udcff key": "v"},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_deep_dumps_writes_what_json_dumps_writes(value):
    assert deep_dumps(value, str) == json.dumps(value, default=str)


def test_values_deeper_than_json_dumps_goes_are_written_whole():
    value: object = "bottom"
    for level in range(5000):
        value = {"a": value} if level % 2 else [value, 1]
    text = dumps(value, str)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(30_000)
    try:
        assert json.loads(text) == value
    finally:
        sys.setrecursionlimit(limit)
