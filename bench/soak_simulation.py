"""Soak run of the planner proof: many more random timelines than the normal test run.

Usage: python bench/soak_simulation.py [--timelines 100000] [--seed N] [--progress 1000]

Runs the same hypothesis-driven harness as tests/test_simulation.py (the edge
timelines first, then random ones from the seed) and prints the count of timelines,
syncs, deploys and violations, the wall and CPU time and the time per timeline.  A
progress line every ``--progress`` timelines (count, syncs, deploys, seconds) goes to
stdout as it happens, so a run stopped early still says how far it got and how fast.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timelines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, help="TLSA_SIM_SEED (default: the test's own)")
    parser.add_argument("--progress", type=int, default=1000, help="a progress line every N timelines")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TLSA_SIM_TIMELINES=str(args.timelines), TLSA_SIM_PROGRESS=str(args.progress))
    if args.seed is not None:
        env["TLSA_SIM_SEED"] = str(args.seed)
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
               "tests/test_simulation.py", "-k", "random_timelines"]
    print(f"$ TLSA_SIM_TIMELINES={args.timelines} {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    summary = ""
    tail: list[str] = []
    with subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            tail = [*tail[-40:], line.rstrip("\n")]
            if line.startswith(("progress", "simulation")):
                print(f"{line.rstrip()} [{time.perf_counter() - start:.0f} s wall]", flush=True)
            if line.startswith("simulation"):
                summary = line.strip()
        code = child.wait()
    elapsed = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    if not summary:
        print("\n".join(tail))
    per = elapsed / max(args.timelines, 1) * 1000
    print(
        f"{summary or 'no summary line'} ({elapsed:.0f} s wall, {cpu_s:.0f} s CPU, {per:.1f} ms wall and "
        f"{cpu_s / max(args.timelines, 1) * 1000:.1f} ms CPU per timeline, exit {code})",
        flush=True,
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
