"""Benchmark: how long the user waits for the command to start, as installed.

A plain (non-editable) `pip install .` into a fresh venv, then each command run as a
process N times: `python -c pass` (the floor), `tlsa-manager --help`, `--version`,
`records FILE` on the bundled example.  Reports the minimum and the median wall time
and each command's excess over the floor.  Usage:

    python bench/bench_startup.py [--runs 30] [--python /usr/bin/python3]

The minimum is the figure to compare: it is the run least disturbed by other load.

With ``--fleet N``: what a `plan`/`sync` of N hosts spends before the first host is
planned, as CPU time (issue 14), each phase in a fresh process per run: the imports
of the sync path, the configuration (``load_config``), the issuer catalog and opening
the hosts (``runner.open_hosts``), then the whole `plan` command.  A zone-file fleet
(no servers needed) of N hosts in a zone of 5,000 other lines (bench_fleet's).  With
``--against DIR`` (another checkout, e.g. ``git worktree add /tmp/main main``) the same
phases of that tree alternate with this one's in the same run.  Both trees' modules
are byte-compiled in place first (bench_fleet.compile_once).  Usage:

    python bench/bench_startup.py --fleet 1000 --runs 15 [--against /tmp/main]

``--import-split``: the same imports in layers (standard library, importlib.metadata,
dnspython, cryptography, ours), each timed after the ones before it, with the CPU of
making our dataclasses and of dnspython's distribution version look-ups.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--python", default="python3", help="interpreter for the fresh venv")
    parser.add_argument("--fleet", type=int, default=0, help="startup phases of a fleet of N hosts (CPU)")
    parser.add_argument("--against", type=Path, help="with --fleet: another checkout to compare with")
    parser.add_argument("--import-split", action="store_true", help="the imports' CPU by layer")
    args = parser.parse_args()
    if args.import_split:
        from startup_phases import import_split

        import_split(args.runs)
        return
    if args.fleet:
        from startup_phases import fleet_phases

        fleet_phases(args.fleet, args.runs, args.against)
        return
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True)
        py, cli = str(venv / "bin" / "python"), str(venv / "bin" / "tlsa-manager")
        example = str(REPO / "examples" / "mail.example.com" / "fullchain.pem")
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "tlsa-manager --help": [cli, "--help"],
            "tlsa-manager --version": [cli, "--version"],
            "tlsa-manager records fullchain.pem": [cli, "records", example],
        }
        for cmd in cases.values():  # warm the page cache and .pyc files
            timed(cmd, 2)
        results = {name: timed(cmd, args.runs) for name, cmd in cases.items()}
    floor = min(results["python -c pass"])
    print(f"| command ({args.runs} runs) | min (s) | median (s) | min over `python -c pass` (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in results.items():
        print(f"| `{name}` | {min(times):.3f} | {statistics.median(times):.3f} | {min(times) - floor:+.3f} |")


if __name__ == "__main__":
    main()
