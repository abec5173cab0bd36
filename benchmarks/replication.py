"""Catch-up speed of the data-dir replication (storage/replication/): a leader data dir filled
with persistent 1 KB messages by the real Node and write-ahead log, then a follower in the same
process catching up over a socket on localhost: from an empty dir (every byte sent, written,
fsynced), and again from a dir equal to the leader's (only checksums compared). Printed: MB of
replicated files, seconds and MB/s of each catch-up, the median of --repeat runs.

    python3 benchmarks/replication.py [--megabytes 200] [--repeat 3]

What it says for operators: how long a follower that was away (or new) takes before it may
join the in-sync set again. Figures depend on the disk; the leader is idle meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests" / "storage")]

from replication_kit import declare, follower_for, publish, start_leader, stop  # noqa: E402

from storage.replication.files import list_files  # noqa: E402


async def catch_up(node, leader, directory: Path) -> float:
    follower = follower_for(leader, directory, f"f-{time.monotonic_ns()}")
    started = time.monotonic()
    task = asyncio.ensure_future(follower.run())
    while not follower.caught_up:
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    await stop(None, None, task)
    return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        node, leader, _ = await start_leader(work / "leader", in_sync=set(), min_in_sync=0)
        try:
            declare(node, "bench-replication")
            body = b"x" * 1024
            for n in range(args.megabytes * 1000):
                publish(node, "bench-replication", body)
                if n % 5000 == 0:
                    await node.store.wal.drain()
            await node.store.wal.drain()
            size = sum(info.size for info in list_files(work / "leader")) / 1e6
            empty, equal = [], []
            for repetition in range(args.repeat):
                target = work / f"follower{repetition}"
                empty.append(await catch_up(node, leader, target))
                equal.append(await catch_up(node, leader, target))
                shutil.rmtree(target)
        finally:
            await stop(node, leader)
    print(f"\ncatch-up of {size:.0f} MB of replicated files over localhost, medians of "
          f"{args.repeat}")
    print(f"{'follower dir':<28} {'seconds':>8} {'MB/s':>8}")
    for name, runs in (("empty (everything sent)", empty), ("equal (checksums only)", equal)):
        seconds = statistics.median(runs)
        print(f"{name:<28} {seconds:>8.2f} {size / seconds:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
