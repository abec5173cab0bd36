"""The definitions file as storage sees it: a JSON document read from disk. What it holds is
the broker's business (broker/definitions.py builds and applies it); the log writes it as the
bytes the broker hands over (`WriteAheadLog.definitions_changed`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from storage.iostats import IO_STATS


class DefinitionsError(Exception):
    """The definitions file cannot be used; the message says which entry and why."""


def read_document(path: Path | str) -> dict[str, Any]:
    """The JSON document at `path`; DefinitionsError when it cannot be read or parsed."""
    try:
        started = time.perf_counter()
        text = Path(path).read_bytes()
        IO_STATS.read(len(text), started)
        document = json.loads(text)
    except (OSError, ValueError) as exc:
        raise DefinitionsError(f"cannot read definitions from {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise DefinitionsError(f"cannot read definitions from {path}: not a JSON object")
    return document
