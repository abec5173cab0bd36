"""The Prometheus text format (0.0.4) as rabbitmq_prometheus writes it: `# TYPE` then
`# HELP`, counters named with their `_total` in both, labels in the order the family declares
them (prometheus_client's writer sorts them by name), whole numbers without a decimal point.
Unlike RabbitMQ 3.10.8, label values are escaped as the format requires (`\\`, `"`, newline),
so a queue named `a"b` does not make the whole scrape unparseable."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import Metric

_TYPES = {"unknown": "untyped"}


class TextFamily:
    """A family whose sample lines are already text: the per-object families of many objects,
    where building a prometheus_client Sample per line cost several times the formatting."""

    __slots__ = ("name", "type", "documentation", "lines")

    def __init__(self, name: str, kind: str, documentation: str, lines: list[str]) -> None:
        self.name = name  # as written, `_total` included
        self.type = kind
        self.documentation = documentation
        self.lines = lines


def label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """`{name="value",...}` in the order given, values escaped."""
    pairs = zip(names, values, strict=True)
    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in pairs) + "}"


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    if value != value:  # NaN, as RabbitMQ writes a figure it lacks (head_message_timestamp)
        return "NaN"
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Metric | TextFamily]) -> bytes:
    lines: list[str] = []
    append = lines.append
    for family in families:
        text = family.__class__ is TextFamily
        name = family.name + "_total" if family.type == "counter" and not text else family.name
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# TYPE {name} {_TYPES.get(family.type, family.type)}\n"
               f"# HELP {name} {help_text}\n")
        if text:
            lines.extend(family.lines)  # type: ignore[union-attr]
            continue
        for sample in family.samples:  # type: ignore[union-attr]
            if sample.labels:
                labels = ",".join(f'{key}="{escape(value)}"'
                                  for key, value in sample.labels.items())
                append(f"{sample.name}{{{labels}}} {number(sample.value)}\n")
            else:
                append(f"{sample.name} {number(sample.value)}\n")
    return "".join(lines).encode()
