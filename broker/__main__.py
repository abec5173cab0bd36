"""`warren` / `python -m broker`: parse flags, set up logging and uvloop, run the server;
`warren ctl ...` runs the admin CLI instead."""

from __future__ import annotations

import asyncio
import logging
import sys

from broker.config import parse_args
from broker.server import serve
from storage.definitions import DefinitionsError
from storage.store import StorageError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:  # `warren ctl ...`: the admin CLI, over the HTTP API
        from management.cli import main as ctl_main

        return ctl_main(argv[1:])
    config = parse_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
    )
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # uvloop is a dependency; tolerate its absence on exotic platforms
        run = asyncio.run
    try:
        run(serve(config))
    except (OSError, StorageError, DefinitionsError) as error:
        logging.getLogger(__name__).error("cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
