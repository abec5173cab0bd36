"""`warren` / `python -m broker`: parse flags, set up logging and uvloop, run the server;
`warren ctl ...` runs the admin CLI instead."""

from __future__ import annotations

import asyncio
import gc
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


# Python's cyclic garbage collector scans the young objects every 700 allocations of objects
# that can hold references. Every message makes a few (its objects, its unacknowledged
# record), and each young collection scans those still queued or unacknowledged again: with a
# backlog of messages, most of them, many times over (a fifth to a quarter of the broker's CPU
# time per message with a backlog, in benchmarks/profile.py). One every 100,000 instead lets
# most messages be acknowledged and freed before a collection sees them, and the older
# generations are scanned less often still (a full collection about every 20 million
# allocations, a few million messages). Only garbage in reference cycles (rare: reference
# counting frees the rest) waits longer for its collection. Against (10,000, 10, 10), on a quiet
# 2-core VM: 4 pairs 7.24-7.46 -> 6.53-6.61 us of CPU per message, 1 -> 1 6.80-7.03 -> 6.50-6.57.
GC_THRESHOLDS = (100_000, 20, 10)


def tune_gc() -> None:
    """The start-up's objects (modules, classes: never garbage) are left out of every later
    collection (gc.freeze), and young collections run less often (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


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
    tune_gc()
    try:
        run(serve(config))
    except (OSError, StorageError, DefinitionsError) as error:
        logging.getLogger(__name__).error("cannot start: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
