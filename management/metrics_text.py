"""The Prometheus text format (0.0.4) as rabbitmq_prometheus writes it: `# TYPE` then
`# HELP`, counters named with their `_total` in both, labels in the order the family declares
them (prometheus_client's writer sorts them by name), whole numbers without a decimal point.
Unlike RabbitMQ 3.10.8, label values are escaped as the format requires (`\\`, `"`, newline),
so a queue named `a"b` does not make the whole scrape unparseable."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

_TYPES = {"unknown": "untyped"}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    append = lines.append
    for family in families:
        name = family.name + "_total" if family.type == "counter" else family.name
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# TYPE {name} {_TYPES.get(family.type, family.type)}\n"
               f"# HELP {name} {help_text}\n")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{key}="{_escape(value)}"'
                                  for key, value in sample.labels.items())
                append(f"{sample.name}{{{labels}}} {_number(sample.value)}\n")
            else:
                append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(lines).encode()
