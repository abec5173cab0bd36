"""Where Warren's CPU goes on the transient hot path: the broker's CPU time per message and a
py-spy profile of it, top functions by self time.

The workload is throughput.py's: amqperf, one publisher and one consumer on one transient
queue, 16-byte transient messages, the consumer with prefetch 1000 acking every 100 messages
(multiple=true). Warren is started here (`python -m broker`, free ports, temporary data
directory). First `--repeat` runs without the profiler give the CPU time per message
(utime + stime of the broker process over the run, divided by the messages: what a loaded
machine disturbs least) and the consumer's rate; then one more run is sampled by py-spy
(`--nonblocking`, so the broker is not paused; idle time in the event loop's poll is not
sampled), and the functions with the most samples at the top of the stack are printed, with
their share of all samples (self) and of the samples they are anywhere in (total).

    pip install py-spy                     # once (not a dependency of Warren)
    python3 benchmarks/profile.py                          # 300,000 messages, top 30
    python3 benchmarks/profile.py --count 600000 --rate 200 --top 40 --raw /tmp/warren.txt
    python3 benchmarks/profile.py --no-profile --repeat 5  # CPU per message only

`--raw FILE` keeps py-spy's collapsed stacks (one "frame;frame;... count" per line), which
flamegraph.pl or speedscope can draw. Needs benchmarks/bin/amqperf (build_amqperf.sh).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from common import (
    AMQPERF,
    BenchError,
    Broker,
    cpu_seconds,
    report_log,
    run_in_workdir,
    started_warren,
)
from throughput import Config, run_pair


def measured_run(broker: Broker, cfg: Config, count: int) -> tuple[float, float]:
    """One publisher/consumer run of `count` messages: (broker CPU µs per message, consumer
    msg/s)."""
    assert broker.process is not None
    before = cpu_seconds(broker.process.pid)
    _, con = run_pair(broker, cfg, count, [])
    after = cpu_seconds(broker.process.pid)
    if before is None or after is None:
        raise BenchError("the broker's CPU time could not be read")
    return (after - before) * 1e6 / count, float(con["rate"])


def profiled_run(broker: Broker, cfg: Config, count: int, rate: int, raw: Path
                 ) -> tuple[float, float]:
    """A run sampled by py-spy, which writes collapsed stacks to `raw`."""
    assert broker.process is not None
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(broker.process.pid), "--rate", str(rate),
         "--format", "raw", "--nolineno", "--nonblocking", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)  # let it attach before the messages flow
    try:
        if spy.poll() is not None:
            raise BenchError(f"py-spy failed: {spy.stderr.read().strip()[-500:]}")
        return measured_run(broker, cfg, count)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def read_stacks(raw: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: each line is `frame;frame;...;frame count`, outermost first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def print_profile(stacks: Counter[tuple[str, ...]], top: int) -> None:
    total = sum(stacks.values())
    if not total:
        print("py-spy took no samples")
        return
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in stacks.items():
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    print(f"\n{total:,} samples; top {top} functions by self time")
    print(f"{'self %':>7} {'total %':>8}  function (file)")
    for frame, count in own.most_common(top):
        print(f"{100 * count / total:>7.1f} {100 * anywhere[frame] / total:>8.1f}  {frame}")


def run(args: argparse.Namespace, workdir: Path) -> int:
    cfg = Config(args.count, 0, 0, args.warmup, args.timeout)
    with started_warren(workdir, args.warren_arg) as warren:
        if warren is None:
            return 1
        print(f"Warren: {warren.product} on port {warren.port}, pid {warren.process.pid}")
        if args.warmup:
            run_pair(warren, cfg, args.warmup, [])
        cpu, rates = [], []
        for i in range(args.repeat):
            per_message, rate = measured_run(warren, cfg, args.count)
            cpu.append(per_message)
            rates.append(rate)
            print(f"  run {i + 1}: {per_message:.2f} µs CPU/msg, consumer {rate:,.0f} msg/s",
                  flush=True)
        if cpu:
            print(f"median of {len(cpu)}: {statistics.median(cpu):.2f} µs CPU/msg, consumer "
                  f"{statistics.median(rates):,.0f} msg/s ({args.count:,} x 16 B, 1 -> 1, "
                  f"prefetch 1000, acks every 100)")
        if not args.no_profile:
            raw = args.raw or workdir / "py-spy.txt"
            per_message, rate = profiled_run(warren, cfg, args.count, args.rate, raw)
            print(f"profiled run: {per_message:.2f} µs CPU/msg, consumer {rate:,.0f} msg/s "
                  f"(sampled at {args.rate} Hz)")
            print_profile(read_stacks(raw), args.top)
    report_log(warren)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=300_000, help="messages per run")
    p.add_argument("--repeat", type=int, default=3, help="unprofiled runs for CPU per message")
    p.add_argument("--warmup", type=int, default=20_000, help="messages of a first, unmeasured run")
    p.add_argument("--timeout", type=float, default=300, help="seconds before a run is given up")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=30, help="functions to list")
    p.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks in this file")
    p.add_argument("--no-profile", action="store_true", help="CPU per message only, no py-spy")
    p.add_argument(
        "--warren-arg", action="append", default=[], metavar="ARG",
        help="extra argument for `python -m broker` (repeatable)",
    )  # fmt: skip
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_profile and shutil.which("py-spy") is None:
        print("py-spy is missing: pip install py-spy (or run with --no-profile)", file=sys.stderr)
        return 2
    return run_in_workdir(args, "warren-profile-", run, (AMQPERF,))


if __name__ == "__main__":
    sys.exit(main())
