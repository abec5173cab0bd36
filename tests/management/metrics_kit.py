"""Scraping Prometheus text in the metrics tests: `Scrape` (one scrape parsed with
prometheus_client's parser, plus its raw `# TYPE`/`# HELP` lines), the base URL of the broker
under test's metrics, and polling helpers (RabbitMQ updates some figures every 5 s).
The `scrape` fixture is in conftest.py next to this file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

POLL_TIMEOUT = 15.0
EXTERNAL = bool(os.environ.get("WARREN_TEST_AMQP_PORT"))


@dataclass
class Scrape:
    """One scrape: the raw text, its `# TYPE`/`# HELP` lines and every sample by name."""

    path: str
    text: str
    content_type: str
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for line in self.text.splitlines():
            if line.startswith("# TYPE ") or line.startswith("# HELP "):
                _, kind, rest = line.split(" ", 2)
                name, _, value = rest.partition(" ")
                (self.types if kind == "TYPE" else self.helps)[name] = value
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])

    def find(self, name: str, **labels: str) -> float | None:
        """The value of the one sample `name` whose labels include `labels`; None if absent."""
        matches = [v for got, v in self.series(name) if labels.items() <= got.items()]
        assert len(matches) <= 1, f"{self.path}: several {name}{labels}: {self.series(name)}"
        return matches[0] if matches else None

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        assert found is not None, (
            f"{self.path}: no sample {name}{labels}; its samples: {self.series(name)[:8]}"
        )
        return found

    def queue(self, name: str, queue: str, vhost: str = "/") -> float | None:
        """A per-object queue gauge; checks the labels are exactly vhost and queue."""
        matches = [(lab, v) for lab, v in self.series(name) if lab.get("queue") == queue]
        if not matches:
            return None
        assert len(matches) == 1, f"{self.path}: several {name} for queue {queue!r}: {matches}"
        labels, value = matches[0]
        assert labels == {"vhost": vhost, "queue": queue}, f"{name} labels: {labels}"
        return value


def metrics_base(broker) -> str:
    port = os.environ.get("WARREN_TEST_METRICS_PORT")
    if port:
        return f"http://{broker.host}:{port}"
    if EXTERNAL:
        pytest.skip("set WARREN_TEST_METRICS_PORT to the prometheus port of the external broker")
    if broker.management_port is None:
        pytest.skip("broker has no management port")
    return f"http://{broker.host}:{broker.management_port}"


def wait_until(
    check: Callable[[], None],
    timeout: float = POLL_TIMEOUT,
    pump: pika.BlockingConnection | None = None,
) -> None:
    """Run `check` (which asserts) until it passes; re-raise its last failure at the deadline.

    `pump` is a pika connection whose I/O is processed between attempts (for consumers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if pump is not None:
            pump.process_data_events(time_limit=0.1)
        else:
            time.sleep(0.1)


def wait_for_deltas(
    scrape,
    before: Scrape,
    expected: dict[tuple, float],
    pump: pika.BlockingConnection | None = None,
    path: str = "/metrics",
) -> None:
    """Wait until every (name, labels...) key grew by its expected amount since `before`.

    Keys are (name,) or (name, (("label", "value"), ...))."""

    def check() -> None:
        now = scrape(path)
        wrong = []
        for key, want in expected.items():
            name, labels = key[0], dict(key[1]) if len(key) > 1 else {}
            got = now.value(name, **labels) - before.value(name, **labels)
            if got != want:
                wrong.append(f"{name}{labels}: expected +{want:g}, got +{got:g}")
        assert not wrong, "; ".join(wrong)

    wait_until(check, pump=pump)


def key(name: str, **labels: str) -> tuple:
    return (name, tuple(sorted(labels.items()))) if labels else (name,)


