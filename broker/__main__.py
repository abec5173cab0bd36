"""`warren` / `python -m broker`: parse flags, set up logging and uvloop, run the server;
`warren ctl ...` runs the admin CLI instead."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime

from broker.config import Config, parse_args
from broker.definitions import DefinitionsError
from broker.server import serve
from storage.store import StorageError


class RabbitStyleFormatter(logging.Formatter):
    """`2026-11-23 13:50:01.123456+00:00 [info] <broker.connection> message`, as RabbitMQ logs."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(" ")
        line = f"{stamp} [{record.levelname.lower()}] <{record.name}> {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(config: Config) -> None:
    if config.log_file is not None:
        # Names a client sent as bytes that are not UTF-8 are logged as \x escapes.
        handler: logging.Handler = logging.FileHandler(
            config.log_file, encoding="utf-8", errors="backslashreplace")
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(RabbitStyleFormatter())
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:  # `warren ctl ...`: the admin CLI, over the HTTP API
        from management.cli import main as ctl_main

        return ctl_main(argv[1:])
    config = parse_args(argv)
    try:
        configure_logging(config)
    except OSError as error:
        sys.stderr.write(f"warren: configuration error: cannot open log file: {error}\n")
        return 2
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
