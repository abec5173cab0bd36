"""The frame fuzzer's tests: the raw-AMQP helpers of tests/broker and the management API client
of tests/management are importable from here."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS / "broker"), str(TESTS / "management")]
