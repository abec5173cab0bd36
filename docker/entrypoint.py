"""Container entrypoint: run `warren` as PID 1 with SIGTERM honoured from the first instant.

The kernel drops a signal sent to PID 1 that has no handler, and Warren installs its own SIGTERM
handler (stop accepting, 320 to clients, flush the log, exit 0) only once recovery is done and
before its ports open. Until then a `docker stop` would be ignored for up to the whole
--stop-timeout and end in SIGKILL. This handler exits at once instead, exactly as SIGTERM ends
a process that is not PID 1 (the write-ahead log is safe against that, as against kill -9);
Warren's own handler replaces it as soon as the broker is up. `docker run --init` or Compose's
`init: true` add an init process in front, which this then does not need but does not hinder.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_now)
    from broker.__main__ import main as warren_main  # after the handler: imports take a while

    return warren_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
