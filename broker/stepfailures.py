"""Failures of the steps that read or rewrite a message's properties after it was published
(dead-lettering, expiry, the delayed exchange's release, x-delivery-count, the management
API's get, the firehose's trace copy). Such a step must not lose the message: the step keeps
it where it was, or dead-letters it unchanged (a traced message goes on untraced), and reports
the failure here — counted per step (plain ints that /metrics shows as
warren_message_step_failures_total) and logged once per step and queue, so that a flood of
alike messages writes one line, not one per message."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"  # rejected, maxlen, delivery_limit
EXPIRY = "expiry"  # dead-lettering an expired message
DELAYED = "delayed"  # a delayed exchange releasing a message
DELIVERY_COUNT = "delivery_count"  # x-delivery-count added on delivery
MANAGEMENT_GET = "management_get"  # POST /api/queues/{vhost}/{name}/get
TRACE = "trace"  # the firehose's copy of a publish or delivery (broker/tracing.py)
STEPS = (DEAD_LETTER, EXPIRY, DELAYED, DELIVERY_COUNT, MANAGEMENT_GET, TRACE)

_LOGGED_LIMIT = 10_000  # (step, place) pairs remembered; past that, forgotten and logged again


class StepFailures:
    """The node's counts of failed steps, and the (step, place) pairs already logged."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(STEPS, 0)
        self._logged: set[tuple[str, str]] = set()

    def record(self, step: str, place: str, error: BaseException, outcome: str) -> None:
        """Count a failure of `step` at `place` (a queue's or exchange's describe()), and log
        it with its traceback the first time it happens there; `outcome` says what became of
        the message."""
        self.counts[step] += 1
        key = (step, place)
        if key in self._logged:
            return
        if len(self._logged) >= _LOGGED_LIMIT:
            self._logged.clear()
        self._logged.add(key)
        log.error("%s failed in %s: %s: %s; %s (logged once for this %s, counted in "
                  "warren_message_step_failures_total{step=\"%s\"})",
                  step, place, type(error).__name__, error, outcome,
                  place.split(" ", 1)[0], step, exc_info=error)
