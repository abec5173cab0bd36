"""Run Warren from a Config built field by field, for tests that need fields the command line
does not set (resource alarm thresholds, ...): `python tests/launch_warren.py` with the fields as
a JSON object in $WARREN_TEST_CONFIG (paths as strings, tuples as lists). Logging and the event
loop are set up as `python -m broker` sets them up."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.config import Config  # noqa: E402
from broker.server import serve  # noqa: E402


def config_from_json(text: str) -> Config:
    fields = json.loads(text)
    kinds = {field.name: str(field.type) for field in dataclasses.fields(Config)}
    for name, value in fields.items():
        if value is not None and kinds[name].startswith("Path"):
            fields[name] = Path(value)
        elif value is not None and kinds[name].startswith("tuple"):
            fields[name] = tuple(value)
    return Config(**fields)


def main() -> None:
    config = config_from_json(os.environ["WARREN_TEST_CONFIG"])
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    import uvloop

    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
