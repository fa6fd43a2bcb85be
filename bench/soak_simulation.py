"""Soak run of the planner proof: many more random timelines than the normal test run.

Usage: python bench/soak_simulation.py [--timelines 100000] [--seed N]
Runs the same hypothesis-driven harness as tests/test_simulation.py (the edge
timelines first, then random ones from the seed) and prints the count of timelines,
syncs, deploys and violations, the wall time and the time per timeline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timelines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, help="TLSA_SIM_SEED (default: the test's own)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TLSA_SIM_TIMELINES=str(args.timelines))
    if args.seed is not None:
        env["TLSA_SIM_SEED"] = str(args.seed)
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests/test_simulation.py",
            "-k",
            "random_timelines",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    line = next(
        (ln for ln in result.stdout.splitlines() if ln.startswith("simulation:")), result.stdout[-2000:]
    )
    per = elapsed / max(args.timelines, 1) * 1000
    print(f"{line} ({elapsed:.0f} s wall, {per:.1f} ms per timeline, exit {result.returncode})")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
