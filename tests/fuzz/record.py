"""Record RabbitMQ's answers to the fuzz cases into rabbitmq_outcomes.json.

    python3 tests/fuzz/record.py --port 5682 --http-port 15682 [--cases 3000]

The cases run twice and nothing is written unless both runs agree on every case (kind and
reply code), so that the recording holds only answers RabbitMQ gives every time.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the fuzzer, and the helpers of tests/

from campaign import run_campaign  # noqa: E402
from expectations import RECORDING, save  # noqa: E402


@dataclass
class BrokerAddress:
    host: str
    port: int
    management_port: int

    def assert_alive(self) -> None:
        """Not our process: a broker that stopped serving fails the publish/consume check."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5682)
    parser.add_argument("--http-port", type=int, default=15682)
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--broker", default="RabbitMQ 3.10.8")
    args = parser.parse_args()
    broker = BrokerAddress(args.host, args.port, args.http_port)
    runs = [run_campaign(broker, args.cases) for _ in range(2)]
    unstable = [n for n in range(args.cases)
                if runs[0].outcomes[n].key != runs[1].outcomes[n].key]
    for run in runs:
        for problem in run.broken + run.undecodable:
            print("check failed:", problem)
    if unstable:
        for n in unstable:
            print(f"case {n}: {runs[0].outcomes[n]} / {runs[1].outcomes[n]}")
        print(f"{len(unstable)} cases answered differently in two runs; nothing written")
        return 1
    save(runs[0].outcomes, runs[0].crcs, args.broker)
    print(f"{args.cases} outcomes written to {RECORDING}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
