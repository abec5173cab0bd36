"""Memory of the management API's sample history (management/history.py) per object.

For N queues (default 1,000) the Series the sampler keeps per queue (last counts, rates and a
History of the queue's 12 figures under RabbitMQ's `basic` retention policy) are built and fed
an hour and a quarter of 5-second samples (both tiers full), in two cases: every figure
changing at every sample (the worst case: a busy queue) and no figure changing (an idle queue).
The bytes allocated per queue (tracemalloc) and the time to record one sample of all N busy
queues are printed. In process, no broker.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from management.rates import QUEUE, Series  # noqa: E402

WIDTH = len(QUEUE.names)
SAMPLES = 4500 // 5


def measure(count: int, busy: bool) -> tuple[float, float]:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start_ms = 1_700_000_000_000
    series = [Series((0,) * WIDTH, QUEUE.policy, start_ms) for _ in range(count)]
    for step in range(1, SAMPLES):
        now_ms = start_ms + step * 5000
        if busy:  # (the sampler records only changed figures: an idle queue adds nothing)
            counts = tuple(step * (column + 1) for column in range(WIDTH))
            for one in series:
                one.history.record(now_ms, counts)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    counts = tuple(range(WIDTH))
    began = time.perf_counter()
    for one in series:  # one sample of every queue, busy, without tracemalloc
        one.history.record(start_ms + SAMPLES * 5000, counts)
    return used / count, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=1_000)
    args = parser.parse_args()
    for busy in (True, False):
        per_queue, slowest = measure(args.queues, busy)
        print(f"{'busy' if busy else 'idle'} queues: {per_queue / 1024:.1f} KiB per queue "
              f"({per_queue * args.queues / 2**20:.0f} MiB for {args.queues}); one sample of "
              f"all {args.queues} busy: {slowest * 1000:.0f} ms")


if __name__ == "__main__":
    main()
